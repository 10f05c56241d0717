/* test-actor.c — the actor runtime: tell, ask, capacity, stop, timers, arbiters.
 *
 * The tests use a counter actor. Several of them put the actor on a wrapped context that
 * nobody iterates until the test says so, which makes "the mailbox is full" or "the reply
 * has not come yet" states exact instead of timed. Test-side synchronisation uses pthreads
 * and g_atomic_* so the suite stays meaningful under ThreadSanitizer.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-actor.h"
#include "tally-test-util.h"

#include <pthread.h>
#include <string.h>

#define N_SENDERS 8
#define N_PER_SENDER 100000

/* ---------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  TallyMessage parent;
  guint sender;
  guint seq;
} Add;

typedef struct
{
  TallyMessage parent;
} Get;

typedef struct
{
  TallyMessage parent;
  TallyTestGate *gate;
} Block;

typedef struct
{
  TallyMessage parent;
  TallyAddress *other;
} AskOther;

static void
plain_free (gpointer p)
{
  g_free (p);
}

static void
ask_other_free (gpointer p)
{
  AskOther *m = p;

  g_clear_pointer (&m->other, tally_address_unref);
  g_free (m);
}

static const TallyMessageType add_type = { "Add", plain_free, NULL };
static const TallyMessageType get_type = { "Get", plain_free, g_free };
static const TallyMessageType fail_type = { "Fail", plain_free, NULL };
static const TallyMessageType block_type = { "Block", plain_free, NULL };
static const TallyMessageType ask_other_type = { "AskOther", ask_other_free, g_free };
static const TallyMessageType sync_other_type = { "SyncOther", ask_other_free, g_free };
static const TallyMessageType timers_type = { "Timers", plain_free, NULL };
static const TallyMessageType unknown_type = { "Unknown", plain_free, NULL };
static const TallyMessageType spawn_type = { "Spawn", plain_free, g_free };

static TallyMessage *
new_add (guint sender, guint seq)
{
  Add *m = g_new0 (Add, 1);

  tally_message_init (&m->parent, &add_type);
  m->sender = sender;
  m->seq = seq;
  return &m->parent;
}

static TallyMessage *
new_plain (const TallyMessageType *type)
{
  Get *m = g_new0 (Get, 1);

  tally_message_init (&m->parent, type);
  return &m->parent;
}

static TallyMessage *
new_block (TallyTestGate *gate)
{
  Block *m = g_new0 (Block, 1);

  tally_message_init (&m->parent, &block_type);
  m->gate = gate;
  return &m->parent;
}

static TallyMessage *
new_ask_other (const TallyMessageType *type, TallyAddress *other)
{
  AskOther *m = g_new0 (AskOther, 1);

  tally_message_init (&m->parent, type);
  m->other = tally_address_ref (other);
  return &m->parent;
}

/* ---------------------------------------------------------------------------------------
 * The counter actor
 * ------------------------------------------------------------------------------------- */

/* Lifecycle events of every counter, in order, for the stop test. */
static pthread_mutex_t events_lock = PTHREAD_MUTEX_INITIALIZER;
static GString *events;

static void
note_event (const char *what)
{
  pthread_mutex_lock (&events_lock);
  if (events == NULL)
    events = g_string_new (NULL);
  g_string_append_printf (events, "%s;", what);
  pthread_mutex_unlock (&events_lock);
}

static char *
take_events (void)
{
  char *s;

  pthread_mutex_lock (&events_lock);
  s = events != NULL ? g_string_free (events, FALSE) : g_strdup ("");
  events = NULL;
  pthread_mutex_unlock (&events_lock);
  return s;
}

#define TEST_TYPE_COUNTER (test_counter_get_type ())
G_DECLARE_FINAL_TYPE (TestCounter, test_counter, TEST, COUNTER, TallyActor)

struct _TestCounter
{
  TallyActor parent_instance;
  guint64 count;
  guint next_seq[N_SENDERS];
  guint fifo_violations;
  gboolean log_events;

  /* Timers test. */
  gint *later_fired;
  gint *interval_fired;
  gint *endless_fired;
};

G_DEFINE_TYPE (TestCounter, test_counter, TALLY_TYPE_ACTOR) /* derived below */

static gboolean
handle_add (TallyActor *actor, TallyMessage *message, GError **error)
{
  TestCounter *self = TEST_COUNTER (actor);
  Add *m = (Add *)message;

  if (m->sender < N_SENDERS)
    {
      if (m->seq != self->next_seq[m->sender])
        self->fifo_violations++;
      self->next_seq[m->sender] = m->seq + 1;
    }
  self->count++;
  if (self->log_events)
    note_event ("add");
  return TRUE;
}

static gboolean
handle_get (TallyActor *actor, TallyMessage *message, GError **error)
{
  TestCounter *self = TEST_COUNTER (actor);
  guint64 *reply = g_new (guint64, 1);

  *reply = self->count + 1000000ull * self->fifo_violations;
  if (self->log_events)
    note_event ("get");
  tally_message_reply (message, reply);
  return TRUE;
}

static gboolean
handle_fail (TallyActor *actor, TallyMessage *message, GError **error)
{
  g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "told to fail");
  return FALSE;
}

static gboolean
handle_block (TallyActor *actor, TallyMessage *message, GError **error)
{
  tally_test_gate_enter (((Block *)message)->gate);
  return TRUE;
}

static void
other_answered (GObject *source, GAsyncResult *result, gpointer data)
{
  TallyMessage *deferred = data;
  AskOther *m = (AskOther *)deferred;
  g_autoptr (GError) error = NULL;
  guint64 *count = tally_address_ask_finish (m->other, result, &error);
  guint64 *reply = g_new (guint64, 1);

  g_assert_no_error (error);
  *reply = *count + 1000;
  g_free (count);
  tally_message_reply (deferred, reply);
  tally_message_free (deferred);
}

/* Asks another actor (on the same arbiter, in the test) and answers later. */
static gboolean
handle_ask_other (TallyActor *actor, TallyMessage *message, GError **error)
{
  AskOther *m = (AskOther *)message;

  tally_address_ask_async (m->other, new_plain (&get_type), NULL, other_answered,
                           tally_message_defer (message));
  return TRUE;
}

/* Calls ask_sync on an actor of the same arbiter; replies with the error code it got. */
static gboolean
handle_sync_other (TallyActor *actor, TallyMessage *message, GError **error)
{
  AskOther *m = (AskOther *)message;
  g_autoptr (GError) local_error = NULL;
  gpointer reply = tally_address_ask_sync (m->other, new_plain (&get_type), 5000, &local_error);
  guint64 *code = g_new (guint64, 1);

  g_assert_null (reply);
  *code = G_MAXUINT64;
  if (local_error != NULL && local_error->domain == TALLY_ACTOR_ERROR)
    *code = (guint64)local_error->code;
  tally_message_reply (message, code);
  return TRUE;
}

static gboolean
later_cb (gpointer data)
{
  g_atomic_int_inc ((gint *)data);
  return G_SOURCE_REMOVE;
}

static gboolean
interval_cb (gpointer data)
{
  gint *fired = data;

  g_atomic_int_inc (fired);
  return g_atomic_int_get (fired) < 3 ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

static gboolean
endless_cb (gpointer data)
{
  g_atomic_int_inc ((gint *)data);
  return G_SOURCE_CONTINUE;
}

static gint timers_destroyed;

static void
count_destroy (gpointer data)
{
  g_atomic_int_inc (&timers_destroyed);
}

static gboolean
handle_timers (TallyActor *actor, TallyMessage *message, GError **error)
{
  TestCounter *self = TEST_COUNTER (actor);
  guint never;

  g_assert_true (g_main_context_is_owner (tally_actor_get_context (actor)));
  tally_actor_run_later (actor, 5, later_cb, self->later_fired, count_destroy);
  tally_actor_run_interval (actor, 2, interval_cb, self->interval_fired, count_destroy);
  tally_actor_run_interval (actor, 1, endless_cb, self->endless_fired, count_destroy);
  never = tally_actor_run_later (actor, 3600 * 1000, later_cb, self->later_fired, count_destroy);
  tally_actor_cancel_timer (actor, never);
  return TRUE;
}

static TallyActor *counter_new (gboolean log_events);

/* Starts a counter with no arbiter from inside a handler; replies with 1 if it landed on
 * this actor's own context (and so on this arbiter), after asking it for its count. */
static gboolean
handle_spawn (TallyActor *actor, TallyMessage *message, GError **error)
{
  TallyActor *child = counter_new (FALSE);
  g_autoptr (TallyAddress) address = tally_actor_start (child, NULL, 0);
  guint64 *same = g_new (guint64, 1);

  *same = tally_actor_get_context (child) == tally_actor_get_context (actor);
  tally_address_stop (address);
  tally_message_reply (message, same);
  return TRUE;
}

static void
counter_started (TallyActor *actor)
{
  if (TEST_COUNTER (actor)->log_events)
    note_event ("started");
}

static void
counter_stopping (TallyActor *actor)
{
  if (TEST_COUNTER (actor)->log_events)
    note_event ("stopping");
}

static void
counter_stopped (TallyActor *actor)
{
  if (TEST_COUNTER (actor)->log_events)
    note_event ("stopped");
}

static void
test_counter_class_init (TestCounterClass *klass)
{
  TallyActorClass *actor_class = TALLY_ACTOR_CLASS (klass);

  actor_class->started = counter_started;
  actor_class->stopping = counter_stopping;
  actor_class->stopped = counter_stopped;
  tally_actor_class_add_handler (actor_class, &add_type, handle_add);
  tally_actor_class_add_handler (actor_class, &get_type, handle_get);
  tally_actor_class_add_handler (actor_class, &fail_type, handle_fail);
  tally_actor_class_add_handler (actor_class, &block_type, handle_block);
  tally_actor_class_add_handler (actor_class, &ask_other_type, handle_ask_other);
  tally_actor_class_add_handler (actor_class, &sync_other_type, handle_sync_other);
  tally_actor_class_add_handler (actor_class, &timers_type, handle_timers);
  tally_actor_class_add_handler (actor_class, &spawn_type, handle_spawn);
}

static void
test_counter_init (TestCounter *self)
{
}

static TallyActor *
counter_new (gboolean log_events)
{
  TestCounter *self = g_object_new (TEST_TYPE_COUNTER, NULL);

  self->log_events = log_events;
  return TALLY_ACTOR (self);
}

/* A subclass that overrides one handler and inherits the others. */
#define TEST_TYPE_DOUBLER (test_doubler_get_type ())
G_DECLARE_FINAL_TYPE (TestDoubler, test_doubler, TEST, DOUBLER, TallyActor)

struct _TestDoubler
{
  TestCounter parent_instance;
};

G_DEFINE_FINAL_TYPE (TestDoubler, test_doubler, TEST_TYPE_COUNTER)

static gboolean
doubler_add (TallyActor *actor, TallyMessage *message, GError **error)
{
  TEST_COUNTER (actor)->count += 2;
  return TRUE;
}

static void
test_doubler_class_init (TestDoublerClass *klass)
{
  tally_actor_class_add_handler (TALLY_ACTOR_CLASS (klass), &add_type, doubler_add);
}

static void
test_doubler_init (TestDoubler *self)
{
}

/* ---------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------- */

static guint64
ask_count (TallyAddress *address)
{
  g_autoptr (GError) error = NULL;
  guint64 *reply = tally_address_ask_sync (address, new_plain (&get_type), 0, &error);
  guint64 count;

  g_assert_no_error (error);
  g_assert_nonnull (reply);
  count = *reply;
  g_free (reply);
  return count;
}

typedef struct
{
  gboolean done;
  gpointer reply;
  GError *error;
  TallyAddress *address;
} AsyncResult;

static void
ask_done (GObject *source, GAsyncResult *result, gpointer data)
{
  AsyncResult *r = data;

  r->reply = tally_address_ask_finish (r->address, result, &r->error);
  r->done = TRUE;
}

static void
tell_done (GObject *source, GAsyncResult *result, gpointer data)
{
  AsyncResult *r = data;

  r->reply = GINT_TO_POINTER (tally_address_tell_finish (r->address, result, &r->error));
  r->done = TRUE;
}

static void
iterate_until (GMainContext *context, gboolean *done)
{
  while (!*done)
    g_main_context_iteration (context, TRUE);
}

/* Warnings the runtime is expected to log are counted here instead of aborting. */
static gint expected_warnings;

static GLogWriterOutput
test_log_writer (GLogLevelFlags level, const GLogField *fields, gsize n_fields, gpointer data)
{
  for (gsize i = 0; i < n_fields; i++)
    if (strcmp (fields[i].key, "MESSAGE") == 0 && (level & G_LOG_LEVEL_WARNING)
        && strstr (fields[i].value, "keeps running") != NULL)
      {
        g_atomic_int_inc (&expected_warnings);
        return G_LOG_WRITER_HANDLED;
      }
  if (level & (G_LOG_LEVEL_WARNING | G_LOG_LEVEL_CRITICAL | G_LOG_LEVEL_ERROR))
    {
      g_log_writer_default (level, fields, n_fields, data);
      g_error ("unexpected warning");
    }
  return g_log_writer_default (level, fields, n_fields, data);
}

/* ---------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  TallyAddress *address;
  guint sender;
  guint n;
} Sender;

static gpointer
sender_thread (gpointer data)
{
  Sender *s = data;

  for (guint i = 0; i < s->n; i++)
    g_assert_true (tally_address_tell (s->address, new_add (s->sender, i), NULL));
  return NULL;
}

/* 8 threads tell one actor at once: every message counted, each sender's in order. */
static void
test_many_senders (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("counter");
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 0);
  GThread *threads[N_SENDERS];
  Sender senders[N_SENDERS];

  for (guint i = 0; i < N_SENDERS; i++)
    {
      senders[i].address = address;
      senders[i].sender = i;
      senders[i].n = N_PER_SENDER;
      threads[i] = g_thread_new ("sender", sender_thread, &senders[i]);
    }
  for (guint i = 0; i < N_SENDERS; i++)
    g_thread_join (threads[i]);

  /* Count plus a million per FIFO violation: exact equality checks both. */
  g_assert_cmpuint (ask_count (address), ==, N_SENDERS * N_PER_SENDER);
  tally_arbiter_stop (arbiter);
  g_assert_true (tally_address_is_closed (address));
}

/* The same through a bounded mailbox, where senders block for room. */
static void
test_many_senders_bounded (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("counter");
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 16);
  GThread *threads[N_SENDERS];
  Sender senders[N_SENDERS];

  for (guint i = 0; i < N_SENDERS; i++)
    {
      senders[i].address = address;
      senders[i].sender = i;
      senders[i].n = N_PER_SENDER / 5;
      threads[i] = g_thread_new ("sender", sender_thread, &senders[i]);
    }
  for (guint i = 0; i < N_SENDERS; i++)
    g_thread_join (threads[i]);

  g_assert_cmpuint (ask_count (address), ==, N_SENDERS * (N_PER_SENDER / 5));
  g_assert_cmpuint (tally_address_get_capacity (address), ==, 16);
  tally_arbiter_stop (arbiter);
}

/* An ask sent after tells by the same sender sees all of them; tell_many keeps order. */
static void
test_ask_after_tells (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("counter");
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 0);
  TallyMessage *batch[100];

  for (guint round = 1; round <= 5; round++)
    {
      for (guint i = 0; i < 1000; i++)
        g_assert_true (tally_address_tell (address, new_add (0, (round - 1) * 1100 + i), NULL));
      for (guint i = 0; i < G_N_ELEMENTS (batch); i++)
        batch[i] = new_add (0, (round - 1) * 1100 + 1000 + i);
      g_assert_true (tally_address_tell_many (address, batch, G_N_ELEMENTS (batch), NULL));
      g_assert_cmpuint (ask_count (address), ==, round * 1100);
    }
  tally_arbiter_stop (arbiter);
}

/* tell_many into a small mailbox waits for room and keeps the order; from the
 * receiver's own context it fails with FULL, to a closed actor with CLOSED. */
static void
test_tell_many_bounded (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("counter");
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 8);
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (TallyArbiter) wrapped = tally_arbiter_new_for_context (context);
  g_autoptr (TallyAddress) local = tally_actor_start (counter_new (FALSE), wrapped, 8);
  g_autoptr (GError) error = NULL;
  TallyMessage *batch[100];

  for (guint round = 0; round < 10; round++)
    {
      for (guint i = 0; i < G_N_ELEMENTS (batch); i++)
        batch[i] = new_add (0, round * G_N_ELEMENTS (batch) + i);
      g_assert_true (tally_address_tell_many (address, batch, G_N_ELEMENTS (batch), &error));
      g_assert_no_error (error);
    }
  g_assert_cmpuint (ask_count (address), ==, 1000); /* + 1000000 per order violation */

  g_main_context_push_thread_default (context);
  for (guint i = 0; i < 20; i++)
    batch[i] = new_add (0, i);
  g_assert_false (tally_address_tell_many (local, batch, 20, &error)); /* the rest freed */
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_FULL);
  g_clear_error (&error);
  g_main_context_pop_thread_default (context);
  g_assert_cmpuint (tally_address_get_length (local), ==, 8);

  tally_address_stop (address);
  for (guint i = 0; i < 3; i++)
    batch[i] = new_add (0, i);
  g_assert_false (tally_address_tell_many (address, batch, 3, &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);

  tally_arbiter_stop (arbiter);
  tally_arbiter_stop (wrapped);
}

/* Stop: what was sent before is handled, then stopping, then stopped; later sends fail. */
static void
test_stop (void)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new_for_context (context);
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (TRUE), arbiter, 0);
  g_autoptr (GError) error = NULL;
  g_autofree char *log = NULL;
  AsyncResult before = { .address = address }, after = { .address = address };
  TallyMessage *kept;

  for (guint i = 0; i < 3; i++)
    g_assert_true (tally_address_tell (address, new_add (0, i), NULL));
  tally_address_ask_async (address, new_plain (&get_type), NULL, ask_done, &before);
  g_assert_cmpuint (tally_address_get_length (address), ==, 4);

  tally_address_stop (address);
  tally_address_stop (address); /* idempotent */
  g_assert_true (tally_address_is_closed (address));

  g_assert_false (tally_address_tell (address, new_add (0, 3), &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_clear_error (&error);
  kept = new_add (0, 3);
  g_assert_false (tally_address_try_tell (address, kept, &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_clear_error (&error);
  tally_message_free (kept);
  g_assert_null (tally_address_ask_sync (address, new_plain (&get_type), 0, &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_clear_error (&error);
  tally_address_ask_async (address, new_plain (&get_type), NULL, ask_done, &after);

  /* Nobody has run the actor's context yet: nothing handled, not stopped. */
  g_assert_false (tally_address_wait_stopped (address, 1));
  g_assert_cmpstr ((log = take_events ()), ==, "");
  g_clear_pointer (&log, g_free);

  tally_arbiter_stop (arbiter); /* runs the context until its actors have stopped */
  g_assert_true (tally_address_wait_stopped (address, 0));
  g_assert_cmpstr ((log = take_events ()), ==, "started;add;add;add;get;stopping;stopped;");

  iterate_until (NULL, &before.done);
  g_assert_no_error (before.error);
  g_assert_cmpuint (*(guint64 *)before.reply, ==, 3);
  g_free (before.reply);
  iterate_until (NULL, &after.done);
  g_assert_error (after.error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_assert_null (after.reply);
  g_clear_error (&after.error);

  tally_arbiter_stop (arbiter); /* idempotent */
}

/* Stopping an arbiter stops its actors, which handle what was already queued. */
static void
test_arbiter_stop (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("two");
  g_autoptr (TallyAddress) a = tally_actor_start (counter_new (FALSE), arbiter, 0);
  g_autoptr (TallyAddress) b = tally_actor_start (counter_new (FALSE), arbiter, 0);
  g_autoptr (TallyAddress) late = NULL;
  g_autoptr (GError) error = NULL;
  TallyTestGate gate;

  tally_test_gate_init (&gate);
  g_assert_true (tally_address_tell (a, new_block (&gate), NULL));
  tally_test_gate_wait_entered (&gate);
  for (guint i = 0; i < 10; i++)
    g_assert_true (tally_address_tell (a, new_add (0, i), NULL));
  g_assert_true (tally_address_tell (b, new_add (0, 0), NULL));
  tally_test_gate_open (&gate);
  tally_arbiter_stop (arbiter);
  g_assert_true (tally_address_wait_stopped (a, 0));
  g_assert_true (tally_address_wait_stopped (b, 0));
  g_assert_cmpuint (tally_address_get_length (a), ==, 0);
  g_assert_cmpuint (tally_address_get_length (b), ==, 0);

  /* An actor started on a stopped arbiter is closed at once. */
  late = tally_actor_start (counter_new (FALSE), arbiter, 0);
  g_assert_true (tally_address_is_closed (late));
  g_assert_false (tally_address_tell (late, new_add (0, 0), &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  tally_test_gate_clear (&gate);
}

/* FULL: try_tell on a full mailbox keeps the message with the caller; a tell from the
 * receiver's own context is refused instead of deadlocking. */
static void
test_full (void)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new_for_context (context);
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 2);
  g_autoptr (GError) error = NULL;
  TallyMessage *third = new_add (0, 2);

  g_assert_true (tally_address_try_tell (address, new_add (0, 0), NULL));
  g_assert_true (tally_address_tell (address, new_add (0, 1), NULL));
  g_assert_cmpuint (tally_address_get_length (address), ==, 2);

  g_assert_false (tally_address_try_tell (address, third, &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_FULL);
  g_clear_error (&error);
  g_assert_true (third->type == &add_type); /* still ours */

  g_main_context_push_thread_default (context);
  g_assert_false (tally_address_tell (address, third, &error)); /* consumed */
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_FULL);
  g_clear_error (&error);
  g_main_context_pop_thread_default (context);

  /* A blocking ask from another thread waits for room, then times out. */
  g_assert_null (tally_address_ask_sync (address, new_plain (&get_type), 20, &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_TIMEOUT);
  g_clear_error (&error);
  g_assert_cmpuint (tally_address_get_length (address), ==, 2);

  /* Handled, the two make room again. */
  while (tally_address_get_length (address) > 0)
    g_main_context_iteration (context, TRUE);
  g_assert_true (tally_address_try_tell (address, new_add (0, 2), NULL));
  tally_arbiter_stop (arbiter);
}

/* TIMEOUT: nobody runs the receiver; the late reply is freed when it finally comes. */
static void
test_timeout (void)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new_for_context (context);
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 0);
  g_autoptr (GError) error = NULL;

  g_assert_null (tally_address_ask_sync (address, new_plain (&get_type), 30, &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_TIMEOUT);
  g_assert_cmpuint (tally_address_get_length (address), ==, 1);

  /* The Get is handled now and its reply dropped (valgrind checks it is freed). */
  while (tally_address_get_length (address) > 0)
    g_main_context_iteration (context, TRUE);
  tally_arbiter_stop (arbiter);
}

/* WOULD_DEADLOCK: ask_sync from the thread that runs the receiver's context. */
static void
test_would_deadlock (void)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (TallyArbiter) wrapped = tally_arbiter_new_for_context (context);
  g_autoptr (TallyAddress) local = tally_actor_start (counter_new (FALSE), wrapped, 0);
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("pair");
  g_autoptr (TallyAddress) a = tally_actor_start (counter_new (FALSE), arbiter, 0);
  g_autoptr (TallyAddress) b = tally_actor_start (counter_new (FALSE), arbiter, 0);
  g_autoptr (GError) error = NULL;
  guint64 *code;

  g_assert_true (g_main_context_acquire (context));
  g_assert_null (tally_address_ask_sync (local, new_plain (&get_type), 1000, &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_WOULD_DEADLOCK);
  g_clear_error (&error);
  g_main_context_release (context);

  /* A handler on arbiter "pair" asking its neighbour synchronously. */
  code = tally_address_ask_sync (a, new_ask_other (&sync_other_type, b), 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*code, ==, TALLY_ACTOR_ERROR_WOULD_DEADLOCK);
  g_free (code);

  tally_arbiter_stop (arbiter);
  tally_arbiter_stop (wrapped);
}

/* A handler asks another actor on the same arbiter (ask_async + defer): no deadlock. */
static void
test_ask_same_arbiter (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("pair");
  g_autoptr (TallyAddress) a = tally_actor_start (counter_new (FALSE), arbiter, 0);
  g_autoptr (TallyAddress) b = tally_actor_start (counter_new (FALSE), arbiter, 1);
  g_autoptr (GError) error = NULL;
  guint64 *reply;

  for (guint i = 0; i < 5; i++)
    g_assert_true (tally_address_tell (b, new_add (0, i), NULL));
  reply = tally_address_ask_sync (a, new_ask_other (&ask_other_type, b), 0, &error);
  g_assert_no_error (error);
  g_assert_cmpuint (*reply, ==, 1005);
  g_free (reply);
  tally_arbiter_stop (arbiter);
}

/* tell_async waits for room without blocking the caller, then succeeds. */
static void
test_tell_async (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("slow");
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 1);
  g_autoptr (GError) error = NULL;
  AsyncResult told = { .address = address }, asked = { .address = address };
  TallyMessage *extra = new_add (0, 9);
  TallyTestGate gate;

  tally_test_gate_init (&gate);
  g_assert_true (tally_address_tell (address, new_block (&gate), NULL));
  tally_test_gate_wait_entered (&gate);

  tally_address_tell_async (address, new_add (0, 0), NULL, tell_done, &told);
  tally_address_ask_async (address, new_plain (&get_type), NULL, ask_done, &asked);
  for (guint i = 0; i < 10; i++)
    g_main_context_iteration (NULL, FALSE);
  g_assert_false (told.done);
  g_assert_false (asked.done);
  /* Waiters go first: a try_tell does not overtake them even once there is room. */
  g_assert_false (tally_address_try_tell (address, extra, &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_FULL);
  g_clear_error (&error);
  tally_message_free (extra);

  tally_test_gate_open (&gate);
  iterate_until (NULL, &told.done);
  g_assert_no_error (told.error);
  g_assert_true (GPOINTER_TO_INT (told.reply));
  iterate_until (NULL, &asked.done);
  g_assert_no_error (asked.error);
  g_assert_cmpuint (*(guint64 *)asked.reply, ==, 1);
  g_free (asked.reply);

  tally_arbiter_stop (arbiter);
  tally_test_gate_clear (&gate);
}

/* tell_async waiting for room when the actor stops: CLOSED; cancelled: CANCELLED. */
static void
test_tell_async_closed_cancelled (void)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new_for_context (context);
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 1);
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  AsyncResult cancelled = { .address = address }, closed = { .address = address };
  AsyncResult asked = { .address = address };

  g_assert_true (tally_address_tell (address, new_add (0, 0), NULL));
  tally_address_tell_async (address, new_add (0, 1), cancellable, tell_done, &cancelled);
  tally_address_tell_async (address, new_add (0, 2), NULL, tell_done, &closed);
  tally_address_ask_async (address, new_plain (&get_type), NULL, ask_done, &asked);

  g_cancellable_cancel (cancellable);
  iterate_until (NULL, &cancelled.done);
  g_assert_error (cancelled.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_clear_error (&cancelled.error);

  tally_address_stop (address);
  iterate_until (NULL, &closed.done);
  g_assert_error (closed.error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_clear_error (&closed.error);
  iterate_until (NULL, &asked.done);
  g_assert_error (asked.error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_clear_error (&asked.error);

  tally_arbiter_stop (arbiter);
}

/* Unhandled types and failing handlers without a supervisor. */
static void
test_unhandled_and_failure (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("fail");
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 0);
  g_autoptr (GError) error = NULL;

  g_assert_null (tally_address_ask_sync (address, new_plain (&unknown_type), 0, &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_UNHANDLED);
  g_clear_error (&error);

  g_assert_true (tally_address_tell (address, new_add (0, 0), NULL));
  g_assert_null (tally_address_ask_sync (address, new_plain (&fail_type), 0, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&error);
  /* No supervisor: a warning, and the same instance keeps its state. */
  g_assert_true (tally_address_tell (address, new_add (0, 1), NULL));
  g_assert_cmpuint (ask_count (address), ==, 2);
  g_assert_cmpint (g_atomic_int_get (&expected_warnings), ==, 1);
  tally_arbiter_stop (arbiter);
}

/* Subclasses inherit handlers and may override them. */
static void
test_inheritance (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("inherit");
  g_autoptr (TallyAddress) address
      = tally_actor_start (g_object_new (TEST_TYPE_DOUBLER, NULL), arbiter, 0);

  g_assert_true (tally_address_tell (address, new_add (0, 0), NULL));
  g_assert_cmpuint (ask_count (address), ==, 2);
  tally_arbiter_stop (arbiter);
}

/* Timers run on the actor's context and are removed when it stops. */
static void
test_timers (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("timers");
  TestCounter *counter = TEST_COUNTER (counter_new (FALSE));
  g_autoptr (TallyAddress) address = NULL;
  gint later = 0, interval = 0, endless = 0;

  counter->later_fired = &later;
  counter->interval_fired = &interval;
  counter->endless_fired = &endless;
  address = tally_actor_start (TALLY_ACTOR (counter), arbiter, 0);
  g_assert_true (tally_address_tell (address, new_plain (&timers_type), NULL));

  /* Not a timed assertion: wait as long as it takes (meson's timeout bounds it). */
  while (g_atomic_int_get (&later) < 1 || g_atomic_int_get (&interval) < 3
         || g_atomic_int_get (&endless) < 5)
    g_usleep (1000);
  /* The cancelled timer, the run_later and the finished interval were destroyed. */
  while (g_atomic_int_get (&timers_destroyed) < 3)
    g_usleep (1000);

  tally_address_stop (address);
  g_assert_true (tally_address_wait_stopped (address, 0));
  g_assert_cmpint (g_atomic_int_get (&timers_destroyed), ==, 4); /* the endless one too */
  g_assert_cmpint (g_atomic_int_get (&later), ==, 1);
  g_assert_cmpint (g_atomic_int_get (&interval), ==, 3);
  tally_arbiter_stop (arbiter);
}

/* A handler that starts an actor with no arbiter puts it on its own arbiter, which then
 * stops it with the rest. */
static void
test_spawn_in_handler (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("parent");
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 0);
  g_autoptr (GError) error = NULL;
  guint64 *same = tally_address_ask_sync (address, new_plain (&spawn_type), 0, &error);

  g_assert_no_error (error);
  g_assert_cmpuint (*same, ==, 1);
  g_free (same);
  tally_arbiter_stop (arbiter);
}

/* ask_async with a cancellable: cancelling abandons the wait for the reply. */
static void
test_ask_cancelled (void)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new_for_context (context);
  g_autoptr (TallyAddress) address = tally_actor_start (counter_new (FALSE), arbiter, 0);
  g_autoptr (GCancellable) cancellable = g_cancellable_new ();
  AsyncResult asked = { .address = address };

  tally_address_ask_async (address, new_plain (&get_type), cancellable, ask_done, &asked);
  g_cancellable_cancel (cancellable);
  iterate_until (NULL, &asked.done);
  g_assert_error (asked.error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  g_assert_null (asked.reply);
  g_clear_error (&asked.error);

  /* The Get is still handled; its reply is freed (valgrind checks). */
  tally_arbiter_stop (arbiter);
}

/* An actor started with no arbiter lives on the caller's thread-default context. */
static void
test_default_context (void)
{
  g_autoptr (GMainContext) context = g_main_context_new ();
  g_autoptr (TallyAddress) address = NULL;
  AsyncResult asked = { 0 };

  g_main_context_push_thread_default (context);
  address = tally_actor_start (counter_new (FALSE), NULL, 0);
  asked.address = address;
  g_assert_true (tally_address_tell (address, new_add (0, 0), NULL));
  tally_address_ask_async (address, new_plain (&get_type), NULL, ask_done, &asked);
  iterate_until (context, &asked.done);
  g_assert_no_error (asked.error);
  g_assert_cmpuint (*(guint64 *)asked.reply, ==, 1);
  g_free (asked.reply);

  tally_address_stop (address);
  while (!tally_address_wait_stopped (address, 1))
    g_main_context_iteration (context, TRUE);
  g_main_context_pop_thread_default (context);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_log_set_writer_func (test_log_writer, NULL, NULL);

  g_test_add_func ("/actor/many-senders", test_many_senders);
  g_test_add_func ("/actor/many-senders-bounded", test_many_senders_bounded);
  g_test_add_func ("/actor/ask-after-tells", test_ask_after_tells);
  g_test_add_func ("/actor/tell-many-bounded", test_tell_many_bounded);
  g_test_add_func ("/actor/stop", test_stop);
  g_test_add_func ("/actor/arbiter-stop", test_arbiter_stop);
  g_test_add_func ("/actor/full", test_full);
  g_test_add_func ("/actor/timeout", test_timeout);
  g_test_add_func ("/actor/would-deadlock", test_would_deadlock);
  g_test_add_func ("/actor/ask-same-arbiter", test_ask_same_arbiter);
  g_test_add_func ("/actor/tell-async", test_tell_async);
  g_test_add_func ("/actor/tell-async-closed-cancelled", test_tell_async_closed_cancelled);
  g_test_add_func ("/actor/unhandled-and-failure", test_unhandled_and_failure);
  g_test_add_func ("/actor/inheritance", test_inheritance);
  g_test_add_func ("/actor/timers", test_timers);
  g_test_add_func ("/actor/default-context", test_default_context);
  g_test_add_func ("/actor/spawn-in-handler", test_spawn_in_handler);
  g_test_add_func ("/actor/ask-cancelled", test_ask_cancelled);
  return g_test_run ();
}
