/* tally-actor.c — the TallyActor base class: handlers by message type, lifecycle, timers.
 *
 * An actor class declares the message types it handles in its class_init with
 * tally_actor_class_add_handler(). The table is a small array searched by comparing
 * TallyMessageType pointers; GObject copies a parent's class struct into its subclasses,
 * so a subclass starts with its parent's table and copies it the first time it adds a
 * handler of its own (copy on write), which gives inheritance and overriding.
 *
 * tally_actor_start() gives the actor an address (its mailbox, see tally-address.c) on an
 * arbiter (tally-arbiter.c). From then on handlers, hooks and timers run only on that
 * arbiter's context. Timers are GLib timeout sources attached to that context and recorded
 * in the actor, so stopping (or restarting) the actor removes them.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-actor-private.h"

#include <time.h>

/* clang-format off */ G_DEFINE_QUARK (tally-actor-error-quark, tally_actor_error) /* clang-format on */

/* ---------------------------------------------------------------------------------------
 * The class and its handler table
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  const TallyMessageType *type;
  TallyHandlerFunc handler;
} TallyHandlerEntry;

typedef struct
{
  GType owner; /* the class that may modify this table in place */
  guint n_entries;
  TallyHandlerEntry entries[];
} TallyHandlerTable;

typedef struct
{
  TallyAddress *address; /* ref, from tally_actor_start() on */
  GHashTable *timers;    /* owner thread: source id -> GSource (ref) */
} TallyActorPrivate;

G_DEFINE_TYPE_WITH_PRIVATE (TallyActor, tally_actor, G_TYPE_OBJECT)

static void
timer_source_drop (gpointer data)
{
  GSource *source = data;

  g_source_destroy (source);
  g_source_unref (source);
}

static void
tally_actor_dispose (GObject *object)
{
  TallyActor *self = TALLY_ACTOR (object);
  TallyActorPrivate *priv = tally_actor_get_instance_private (self);

  tally_actor_remove_timers (self);
  g_clear_pointer (&priv->address, tally_address_unref);

  G_OBJECT_CLASS (tally_actor_parent_class)->dispose (object);
}

static void
tally_actor_finalize (GObject *object)
{
  TallyActor *self = TALLY_ACTOR (object);
  TallyActorPrivate *priv = tally_actor_get_instance_private (self);

  g_clear_pointer (&priv->timers, g_hash_table_unref);

  G_OBJECT_CLASS (tally_actor_parent_class)->finalize (object);
}

static void
tally_actor_class_init (TallyActorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->dispose = tally_actor_dispose;
  object_class->finalize = tally_actor_finalize;
}

static void
tally_actor_init (TallyActor *self)
{
  TallyActorPrivate *priv = tally_actor_get_instance_private (self);

  priv->timers = g_hash_table_new_full (NULL, NULL, NULL, timer_source_drop);
}

void
tally_actor_class_add_handler (TallyActorClass *klass, const TallyMessageType *type,
                               TallyHandlerFunc handler)
{
  TallyHandlerTable *table;
  GType owner;

  g_return_if_fail (TALLY_IS_ACTOR_CLASS (klass));
  g_return_if_fail (type != NULL);
  g_return_if_fail (handler != NULL);

  owner = G_TYPE_FROM_CLASS (klass);
  table = klass->handlers;

  for (guint i = 0; table != NULL && i < table->n_entries; i++)
    if (table->entries[i].type == type && table->owner == owner)
      {
        table->entries[i].handler = handler;
        return;
      }

  if (table == NULL || table->owner != owner)
    {
      /* First handler of this class: copy the inherited table (class data lives as long
       * as the class, that is, for the process). */
      guint n = table != NULL ? table->n_entries : 0;
      TallyHandlerTable *copy
          = g_malloc (sizeof (TallyHandlerTable) + (n + 1) * sizeof (TallyHandlerEntry));

      copy->owner = owner;
      copy->n_entries = n;
      if (n > 0)
        memcpy (copy->entries, table->entries, n * sizeof (TallyHandlerEntry));
      table = copy;
      klass->handlers = table;

      /* An inherited entry for the same type is overridden in place. */
      for (guint i = 0; i < table->n_entries; i++)
        if (table->entries[i].type == type)
          {
            table->entries[i].handler = handler;
            return;
          }
    }
  else
    {
      table = g_realloc (table, sizeof (TallyHandlerTable)
                                    + (table->n_entries + 1) * sizeof (TallyHandlerEntry));
      klass->handlers = table;
    }

  table->entries[table->n_entries].type = type;
  table->entries[table->n_entries].handler = handler;
  table->n_entries++;
}

TallyHandlerFunc
tally_actor_lookup_handler (TallyActor *self, const TallyMessageType *type)
{
  const TallyHandlerTable *table = TALLY_ACTOR_GET_CLASS (self)->handlers;

  if (table == NULL)
    return NULL;
  for (guint i = 0; i < table->n_entries; i++)
    if (table->entries[i].type == type)
      return table->entries[i].handler;
  return NULL;
}

/* ---------------------------------------------------------------------------------------
 * Addresses, contexts, start
 * ------------------------------------------------------------------------------------- */

void
tally_actor_bind (TallyActor *self, TallyAddress *address)
{
  TallyActorPrivate *priv = tally_actor_get_instance_private (self);

  g_return_if_fail (priv->address == NULL);

  priv->address = tally_address_ref (address);
  address->actor = self;
}

TallyAddress *
tally_actor_get_address (TallyActor *self)
{
  TallyActorPrivate *priv;

  g_return_val_if_fail (TALLY_IS_ACTOR (self), NULL);

  priv = tally_actor_get_instance_private (self);
  return priv->address;
}

GMainContext *
tally_actor_get_context (TallyActor *self)
{
  TallyActorPrivate *priv;

  g_return_val_if_fail (TALLY_IS_ACTOR (self), NULL);

  priv = tally_actor_get_instance_private (self);
  g_return_val_if_fail (priv->address != NULL, NULL);
  return priv->address->context;
}

TallyAddress *
tally_actor_start_supervised (TallyActor *actor, TallyArbiter *arbiter, guint mailbox_capacity,
                              TallyFailureFunc failure_func, gpointer failure_data,
                              TallyActorNewFunc new_func, gpointer new_data,
                              GDestroyNotify supervision_destroy)
{
  g_autoptr (TallyArbiter) implicit = NULL;
  TallyAddress *address;

  g_return_val_if_fail (TALLY_IS_ACTOR (actor), NULL);

  if (arbiter == NULL)
    arbiter = implicit = tally_arbiter_get_implicit ();

  address = tally_address_new (arbiter, mailbox_capacity, G_OBJECT_TYPE_NAME (actor));
  tally_address_set_supervision (address, failure_func, failure_data, new_func, new_data,
                                 supervision_destroy);
  tally_actor_bind (actor, address);
  if (!tally_arbiter_add_actor (arbiter, address))
    tally_address_discard_unstarted (address, actor);
  return address;
}

TallyAddress *
tally_actor_start (TallyActor *actor, TallyArbiter *arbiter, guint mailbox_capacity)
{
  return tally_actor_start_supervised (actor, arbiter, mailbox_capacity, NULL, NULL, NULL, NULL,
                                       NULL);
}

/* ---------------------------------------------------------------------------------------
 * Timers
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  TallyActor *actor; /* no ref: the actor removes its timers before it goes */
  GSourceFunc func;
  gpointer user_data;
  GDestroyNotify destroy;
  guint id;
  gboolean repeat;
} TallyTimer;

static gboolean
timer_fire (gpointer data)
{
  TallyTimer *timer = data;
  TallyActorPrivate *priv = tally_actor_get_instance_private (timer->actor);
  gboolean again = timer->func (timer->user_data) && timer->repeat;

  /* The dispatch holds its own reference to the source and to @timer until we return. */
  if (!again)
    g_hash_table_remove (priv->timers, GUINT_TO_POINTER (timer->id));
  return again;
}

static void
timer_free (gpointer data)
{
  TallyTimer *timer = data;

  if (timer->destroy != NULL)
    timer->destroy (timer->user_data);
  g_free (timer);
}

static guint
add_timer (TallyActor *self, guint ms, gboolean repeat, GSourceFunc func, gpointer user_data,
           GDestroyNotify destroy)
{
  TallyActorPrivate *priv = tally_actor_get_instance_private (self);
  TallyTimer *timer;
  GSource *source;

  g_return_val_if_fail (priv->address != NULL, 0);
  g_return_val_if_fail (func != NULL, 0);

  timer = g_new0 (TallyTimer, 1);
  timer->actor = self;
  timer->func = func;
  timer->user_data = user_data;
  timer->destroy = destroy;
  timer->repeat = repeat;

  source = g_timeout_source_new (ms);
  g_source_set_static_name (source, repeat ? "TallyActor interval" : "TallyActor timer");
  g_source_set_callback (source, timer_fire, timer, timer_free);
  timer->id = g_source_attach (source, priv->address->context);
  g_hash_table_insert (priv->timers, GUINT_TO_POINTER (timer->id), source);
  return timer->id;
}

guint
tally_actor_run_later (TallyActor *self, guint delay_ms, GSourceFunc func, gpointer user_data,
                       GDestroyNotify destroy)
{
  g_return_val_if_fail (TALLY_IS_ACTOR (self), 0);

  return add_timer (self, delay_ms, FALSE, func, user_data, destroy);
}

guint
tally_actor_run_interval (TallyActor *self, guint interval_ms, GSourceFunc func, gpointer user_data,
                          GDestroyNotify destroy)
{
  g_return_val_if_fail (TALLY_IS_ACTOR (self), 0);

  return add_timer (self, interval_ms, TRUE, func, user_data, destroy);
}

void
tally_actor_cancel_timer (TallyActor *self, guint timer_id)
{
  TallyActorPrivate *priv;

  g_return_if_fail (TALLY_IS_ACTOR (self));

  priv = tally_actor_get_instance_private (self);
  g_hash_table_remove (priv->timers, GUINT_TO_POINTER (timer_id));
}

void
tally_actor_remove_timers (TallyActor *self)
{
  TallyActorPrivate *priv = tally_actor_get_instance_private (self);

  if (priv->timers != NULL)
    g_hash_table_remove_all (priv->timers);
}

/* ---------------------------------------------------------------------------------------
 * Monotonic deadlines for pthread_cond_timedwait
 * ------------------------------------------------------------------------------------- */

void
tally_cond_init_monotonic (pthread_cond_t *cond)
{
  pthread_condattr_t attr;

  pthread_condattr_init (&attr);
  pthread_condattr_setclock (&attr, CLOCK_MONOTONIC);
  pthread_cond_init (cond, &attr);
  pthread_condattr_destroy (&attr);
}

void
tally_deadline_from_ms (struct timespec *deadline, guint timeout_ms)
{
  clock_gettime (CLOCK_MONOTONIC, deadline);
  deadline->tv_sec += timeout_ms / 1000;
  deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
  if (deadline->tv_nsec >= 1000000000L)
    {
      deadline->tv_sec++;
      deadline->tv_nsec -= 1000000000L;
    }
}
