/* tally-supervisor.c — one-for-one supervision with an OTP-style restart intensity.
 *
 * Each child's address carries a small TallyChild record (factory, data, a weak reference
 * to the supervisor). When a handler fails, the runtime calls on_child_failed() on the
 * child's own context after answering the failed message; the supervisor decides under
 * its lock: the failure times within the last `period_ms` are kept in a queue, and a
 * failure that finds `max_restarts` of them already there escalates instead of
 * restarting. A restart is done by the runtime (tally-address.c): it builds a fresh
 * instance with the factory behind the same address. Escalation closes every child with
 * tally_address_close_now(), emits ::escalated and reports the same error to the parent
 * supervisor, which treats it as one failure of its own.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-supervisor.h"
#include "tally-actor-private.h"

struct _TallySupervisor
{
  GObject parent_instance;

  TallySupervisor *parent; /* ref, nullable */
  guint max_restarts;
  guint period_ms;

  pthread_mutex_t lock;
  GQueue failure_times; /* under lock: monotonic µs of recent failures, oldest first */
  GPtrArray *children;  /* under lock: TallyAddress refs */
  guint restarts;       /* under lock */
  gboolean escalated;   /* under lock */
};

typedef struct
{
  GWeakRef supervisor;
  TallyActorFactory factory;
  gpointer data;
  GDestroyNotify destroy;
} TallyChild;

enum
{
  SIGNAL_ESCALATED,
  N_SIGNALS
};

static guint signals[N_SIGNALS];

G_DEFINE_FINAL_TYPE (TallySupervisor, tally_supervisor, G_TYPE_OBJECT)

static void
tally_supervisor_finalize (GObject *object)
{
  TallySupervisor *self = TALLY_SUPERVISOR (object);

  g_clear_object (&self->parent);
  g_queue_clear_full (&self->failure_times, g_free);
  g_ptr_array_unref (self->children);
  pthread_mutex_destroy (&self->lock);

  G_OBJECT_CLASS (tally_supervisor_parent_class)->finalize (object);
}

static void
tally_supervisor_class_init (TallySupervisorClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);

  object_class->finalize = tally_supervisor_finalize;

  /**
   * TallySupervisor::escalated:
   * @self: the supervisor
   * @error: the failure that exceeded the restart intensity
   *
   * Emitted once, when the supervisor gives up, after it closed its children. Runs on the
   * context of the child whose failure exceeded the intensity (or of the grandchild, for
   * a failure reported by a child supervisor).
   */
  signals[SIGNAL_ESCALATED]
      = g_signal_new ("escalated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                      NULL, G_TYPE_NONE, 1, G_TYPE_ERROR);
}

static void
tally_supervisor_init (TallySupervisor *self)
{
  pthread_mutex_init (&self->lock, NULL);
  g_queue_init (&self->failure_times);
  self->children = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_address_unref);
}

TallySupervisor *
tally_supervisor_new (TallySupervisor *parent, guint max_restarts, guint period_ms)
{
  TallySupervisor *self;

  g_return_val_if_fail (parent == NULL || TALLY_IS_SUPERVISOR (parent), NULL);

  self = g_object_new (TALLY_TYPE_SUPERVISOR, NULL);
  self->parent = parent != NULL ? g_object_ref (parent) : NULL;
  self->max_restarts = max_restarts;
  self->period_ms = period_ms;
  return self;
}

static gboolean note_failure (TallySupervisor *self, const GError *error);

static void
escalate (TallySupervisor *self, const GError *error)
{
  g_autoptr (GPtrArray) children = NULL;
  TallySupervisor *parent = self->parent;

  pthread_mutex_lock (&self->lock);
  children = g_ptr_array_ref (self->children);
  pthread_mutex_unlock (&self->lock);

  /* After `escalated` is set no child is added, so the array no longer changes. */
  for (guint i = 0; i < children->len; i++)
    tally_address_close_now (children->pdata[i]);

  g_signal_emit (self, signals[SIGNAL_ESCALATED], 0, error);

  /* One failure of the parent's, counted against its own intensity. */
  if (parent != NULL)
    note_failure (parent, error);
}

/* Records one failure. Returns TRUE if the failed child may be restarted; otherwise the
 * supervisor has escalated (now or before). */
static gboolean
note_failure (TallySupervisor *self, const GError *error)
{
  gint64 now = g_get_monotonic_time ();
  gint64 window = (gint64)self->period_ms * 1000;
  gboolean restart;

  pthread_mutex_lock (&self->lock);
  if (self->escalated)
    {
      pthread_mutex_unlock (&self->lock);
      return FALSE;
    }
  while (self->failure_times.length > 0
         && now - *(gint64 *)g_queue_peek_head (&self->failure_times) > window)
    g_free (g_queue_pop_head (&self->failure_times));

  restart = self->failure_times.length < self->max_restarts;
  if (restart)
    {
      g_queue_push_tail (&self->failure_times, g_memdup2 (&now, sizeof now));
      self->restarts++;
    }
  else
    self->escalated = TRUE;
  pthread_mutex_unlock (&self->lock);

  if (!restart)
    {
      g_log_structured (G_LOG_DOMAIN, G_LOG_LEVEL_MESSAGE, "MESSAGE",
                        "supervisor gave up after %u restarts within %u ms: %s", self->max_restarts,
                        self->period_ms, error->message);
      escalate (self, error);
    }
  return restart;
}

static TallyFailureAction
on_child_failed (TallyAddress *address, const GError *error, gpointer data)
{
  TallyChild *child = data;
  g_autoptr (TallySupervisor) self = g_weak_ref_get (&child->supervisor);

  if (self == NULL)
    {
      g_warning ("%s failed and its supervisor is gone: %s (it keeps running)", address->name,
                 error->message);
      return TALLY_FAILURE_KEEP;
    }
  return note_failure (self, error) ? TALLY_FAILURE_RESTART : TALLY_FAILURE_CLOSED;
}

static TallyActor *
child_new_instance (gpointer data)
{
  TallyChild *child = data;

  return child->factory (child->data);
}

static void
child_free (gpointer data)
{
  TallyChild *child = data;

  g_weak_ref_clear (&child->supervisor);
  if (child->destroy != NULL)
    child->destroy (child->data);
  g_free (child);
}

TallyAddress *
tally_supervisor_start_child (TallySupervisor *self, TallyActorFactory factory, gpointer data,
                              GDestroyNotify destroy, TallyArbiter *arbiter, guint mailbox_capacity)
{
  TallyChild *child;
  TallyActor *actor;
  TallyAddress *address;
  gboolean escalated;

  g_return_val_if_fail (TALLY_IS_SUPERVISOR (self), NULL);
  g_return_val_if_fail (factory != NULL, NULL);

  child = g_new0 (TallyChild, 1);
  g_weak_ref_init (&child->supervisor, self);
  child->factory = factory;
  child->data = data;
  child->destroy = destroy;

  actor = factory (data);
  g_return_val_if_fail (TALLY_IS_ACTOR (actor), NULL);

  address = tally_actor_start_supervised (actor, arbiter, mailbox_capacity, on_child_failed, child,
                                          child_new_instance, child, child_free);

  pthread_mutex_lock (&self->lock);
  escalated = self->escalated;
  if (!escalated)
    g_ptr_array_add (self->children, tally_address_ref (address));
  pthread_mutex_unlock (&self->lock);

  if (escalated)
    tally_address_close_now (address);
  return address;
}

void
tally_supervisor_stop (TallySupervisor *self)
{
  g_autoptr (GPtrArray) children = NULL;

  g_return_if_fail (TALLY_IS_SUPERVISOR (self));

  pthread_mutex_lock (&self->lock);
  children = g_ptr_array_new_with_free_func ((GDestroyNotify)tally_address_unref);
  for (guint i = 0; i < self->children->len; i++)
    g_ptr_array_add (children, tally_address_ref (self->children->pdata[i]));
  pthread_mutex_unlock (&self->lock);

  for (guint i = 0; i < children->len; i++)
    tally_address_stop (children->pdata[i]);
}

guint
tally_supervisor_get_restarts (TallySupervisor *self)
{
  guint restarts;

  g_return_val_if_fail (TALLY_IS_SUPERVISOR (self), 0);

  pthread_mutex_lock (&self->lock);
  restarts = self->restarts;
  pthread_mutex_unlock (&self->lock);
  return restarts;
}

gboolean
tally_supervisor_is_escalated (TallySupervisor *self)
{
  gboolean escalated;

  g_return_val_if_fail (TALLY_IS_SUPERVISOR (self), FALSE);

  pthread_mutex_lock (&self->lock);
  escalated = self->escalated;
  pthread_mutex_unlock (&self->lock);
  return escalated;
}
