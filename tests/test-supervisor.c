/* test-supervisor.c — one-for-one restarts, the intensity limit and escalation.
 *
 * A worker actor counts Add messages and fails on Fail. A Block message holds the worker
 * on a gate so that the test can queue messages behind a failure and see what happens to
 * them: kept for the fresh instance on a restart, answered CLOSED on escalation.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-actor.h"
#include "tally-supervisor.h"
#include "tally-test-util.h"

#include <pthread.h>

typedef struct
{
  TallyMessage parent;
  TallyTestGate *gate;
} Msg;

static void
msg_free (gpointer p)
{
  g_free (p);
}

static const TallyMessageType add_type = { "Add", msg_free, NULL };
static const TallyMessageType get_type = { "Get", msg_free, g_free };
static const TallyMessageType fail_type = { "Fail", msg_free, NULL };
static const TallyMessageType block_type = { "Block", msg_free, NULL };

static TallyMessage *
new_msg (const TallyMessageType *type, TallyTestGate *gate)
{
  Msg *m = g_new0 (Msg, 1);

  tally_message_init (&m->parent, type);
  m->gate = gate;
  return &m->parent;
}

/* ---------------------------------------------------------------------------------------
 * The worker
 * ------------------------------------------------------------------------------------- */

#define TEST_TYPE_WORKER (test_worker_get_type ())
G_DECLARE_FINAL_TYPE (TestWorker, test_worker, TEST, WORKER, TallyActor)

struct _TestWorker
{
  TallyActor parent_instance;
  guint64 count;
};

G_DEFINE_FINAL_TYPE (TestWorker, test_worker, TALLY_TYPE_ACTOR)

static gint starts;
static gint timer_runs;

static gboolean
handle_add (TallyActor *actor, TallyMessage *message, GError **error)
{
  TEST_WORKER (actor)->count++;
  return TRUE;
}

static gboolean
handle_get (TallyActor *actor, TallyMessage *message, GError **error)
{
  guint64 *reply = g_new (guint64, 1);

  *reply = TEST_WORKER (actor)->count;
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
  tally_test_gate_enter (((Msg *)message)->gate);
  return TRUE;
}

static gboolean
tick (gpointer data)
{
  g_atomic_int_inc (&timer_runs);
  return G_SOURCE_CONTINUE;
}

static void
worker_started (TallyActor *actor)
{
  g_atomic_int_inc (&starts);
  /* A timer per instance: a restart must remove the failed instance's timer. */
  tally_actor_run_interval (actor, 3600 * 1000, tick, NULL, NULL);
}

static void
test_worker_class_init (TestWorkerClass *klass)
{
  TallyActorClass *actor_class = TALLY_ACTOR_CLASS (klass);

  actor_class->started = worker_started;
  tally_actor_class_add_handler (actor_class, &add_type, handle_add);
  tally_actor_class_add_handler (actor_class, &get_type, handle_get);
  tally_actor_class_add_handler (actor_class, &fail_type, handle_fail);
  tally_actor_class_add_handler (actor_class, &block_type, handle_block);
}

static void
test_worker_init (TestWorker *self)
{
}

static TallyActor *
worker_factory (gpointer data)
{
  if (data != NULL)
    g_atomic_int_inc ((gint *)data);
  return g_object_new (TEST_TYPE_WORKER, NULL);
}

/* ---------------------------------------------------------------------------------------
 * Helpers
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  TallyAddress *address;
  gboolean done;
  guint64 *reply;
  GError *error;
} Asked;

static void
ask_done (GObject *source, GAsyncResult *result, gpointer data)
{
  Asked *a = data;

  a->reply = tally_address_ask_finish (a->address, result, &a->error);
  a->done = TRUE;
}

static void
wait_asked (Asked *a)
{
  while (!a->done)
    g_main_context_iteration (NULL, TRUE);
}

static void
fail_sync (TallyAddress *address)
{
  g_autoptr (GError) error = NULL;

  g_assert_null (tally_address_ask_sync (address, new_msg (&fail_type, NULL), 0, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
}

typedef struct
{
  pthread_mutex_t lock;
  guint count;
  char *message;
} Escalations;

static void
on_escalated (TallySupervisor *supervisor, GError *error, gpointer data)
{
  Escalations *e = data;

  pthread_mutex_lock (&e->lock);
  e->count++;
  g_free (e->message);
  e->message = g_strdup (error->message);
  pthread_mutex_unlock (&e->lock);
}

static guint
escalations_count (Escalations *e)
{
  guint n;

  pthread_mutex_lock (&e->lock);
  n = e->count;
  pthread_mutex_unlock (&e->lock);
  return n;
}

/* ---------------------------------------------------------------------------------------
 * Tests
 * ------------------------------------------------------------------------------------- */

/* A failure is answered to its asker; a fresh instance takes over behind the same address
 * and handles the messages queued behind the failure. */
static void
test_restart (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("supervised");
  g_autoptr (TallySupervisor) supervisor = tally_supervisor_new (NULL, 2, 60000);
  g_autoptr (TallyAddress) address = NULL;
  gint made = 0;
  Asked failed = { 0 }, counted = { 0 };
  TallyTestGate gate;

  g_atomic_int_set (&starts, 0);
  g_atomic_int_set (&timer_runs, 0);
  address = tally_supervisor_start_child (supervisor, worker_factory, &made, NULL, arbiter, 0);
  failed.address = counted.address = address;
  tally_test_gate_init (&gate);
  g_assert_true (tally_address_tell (address, new_msg (&block_type, &gate), NULL));
  tally_test_gate_wait_entered (&gate);
  g_assert_true (tally_address_tell (address, new_msg (&add_type, NULL), NULL));
  g_assert_true (tally_address_tell (address, new_msg (&add_type, NULL), NULL));
  tally_address_ask_async (address, new_msg (&fail_type, NULL), NULL, ask_done, &failed);
  for (guint i = 0; i < 3; i++)
    g_assert_true (tally_address_tell (address, new_msg (&add_type, NULL), NULL));
  tally_address_ask_async (address, new_msg (&get_type, NULL), NULL, ask_done, &counted);
  tally_test_gate_open (&gate);

  wait_asked (&failed);
  g_assert_error (failed.error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&failed.error);
  wait_asked (&counted);
  g_assert_no_error (counted.error);
  g_assert_cmpuint (*counted.reply, ==, 3); /* the fresh instance's count */
  g_free (counted.reply);

  g_assert_cmpint (g_atomic_int_get (&made), ==, 2);
  g_assert_cmpint (g_atomic_int_get (&starts), ==, 2);
  g_assert_cmpuint (tally_supervisor_get_restarts (supervisor), ==, 1);
  g_assert_false (tally_supervisor_is_escalated (supervisor));
  g_assert_false (tally_address_is_closed (address));

  tally_supervisor_stop (supervisor);
  g_assert_true (tally_address_wait_stopped (address, 0));
  g_assert_cmpint (g_atomic_int_get (&timer_runs), ==, 0);
  tally_arbiter_stop (arbiter);
  tally_test_gate_clear (&gate);
}

/* More than max_restarts failures within the period: escalate, close every child. */
static void
test_intensity (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("supervised");
  g_autoptr (TallySupervisor) supervisor = tally_supervisor_new (NULL, 2, 60000);
  g_autoptr (TallyAddress) a
      = tally_supervisor_start_child (supervisor, worker_factory, NULL, NULL, arbiter, 0);
  g_autoptr (TallyAddress) b
      = tally_supervisor_start_child (supervisor, worker_factory, NULL, NULL, arbiter, 0);
  g_autoptr (TallyAddress) late = NULL;
  g_autoptr (GError) error = NULL;
  Escalations escalations = { .count = 0 };
  Asked failed = { .address = a }, queued = { .address = a };
  TallyTestGate gate;

  pthread_mutex_init (&escalations.lock, NULL);
  g_signal_connect (supervisor, "escalated", G_CALLBACK (on_escalated), &escalations);
  tally_test_gate_init (&gate);

  fail_sync (a);
  fail_sync (a);
  g_assert_cmpuint (tally_supervisor_get_restarts (supervisor), ==, 2);
  g_assert_false (tally_supervisor_is_escalated (supervisor));

  /* The third failure within the period, with an ask queued behind it. */
  g_assert_true (tally_address_tell (a, new_msg (&block_type, &gate), NULL));
  tally_test_gate_wait_entered (&gate);
  tally_address_ask_async (a, new_msg (&fail_type, NULL), NULL, ask_done, &failed);
  tally_address_ask_async (a, new_msg (&get_type, NULL), NULL, ask_done, &queued);
  tally_test_gate_open (&gate);

  wait_asked (&failed);
  g_assert_error (failed.error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA);
  g_clear_error (&failed.error);
  wait_asked (&queued);
  g_assert_error (queued.error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_clear_error (&queued.error);

  g_assert_true (tally_supervisor_is_escalated (supervisor));
  g_assert_cmpuint (tally_supervisor_get_restarts (supervisor), ==, 2);
  g_assert_cmpuint (escalations_count (&escalations), ==, 1);
  g_assert_cmpstr (escalations.message, ==, "told to fail");

  /* Every child is closed: sends fail, both stop. */
  g_assert_false (tally_address_tell (a, new_msg (&add_type, NULL), &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_false (tally_address_tell (b, new_msg (&add_type, NULL), &error));
  g_assert_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED);
  g_clear_error (&error);
  g_assert_true (tally_address_wait_stopped (a, 0));
  g_assert_true (tally_address_wait_stopped (b, 0));

  /* A child started on an escalated supervisor is closed at once. */
  late = tally_supervisor_start_child (supervisor, worker_factory, NULL, NULL, arbiter, 0);
  g_assert_true (tally_address_is_closed (late));

  tally_arbiter_stop (arbiter);
  g_free (escalations.message);
  pthread_mutex_destroy (&escalations.lock);
  tally_test_gate_clear (&gate);
}

/* Failures further apart than the period never add up. */
static void
test_period (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("supervised");
  g_autoptr (TallySupervisor) supervisor = tally_supervisor_new (NULL, 1, 1);
  g_autoptr (TallyAddress) address
      = tally_supervisor_start_child (supervisor, worker_factory, NULL, NULL, arbiter, 0);

  for (guint i = 0; i < 3; i++)
    {
      fail_sync (address);
      g_usleep (5000); /* well past the 1 ms period, on the monotonic clock */
    }
  g_assert_cmpuint (tally_supervisor_get_restarts (supervisor), ==, 3);
  g_assert_false (tally_supervisor_is_escalated (supervisor));
  g_assert_false (tally_address_is_closed (address));
  tally_arbiter_stop (arbiter);
}

/* A supervisor that gives up reports to its parent, which counts it as one failure. */
static void
test_escalate_to_parent (void)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("tree");
  g_autoptr (TallySupervisor) patient = tally_supervisor_new (NULL, 1, 60000);
  g_autoptr (TallySupervisor) strict = tally_supervisor_new (NULL, 0, 60000);
  g_autoptr (TallySupervisor) child_of_patient = tally_supervisor_new (patient, 0, 60000);
  g_autoptr (TallySupervisor) child_of_strict = tally_supervisor_new (strict, 0, 60000);
  g_autoptr (TallyAddress) p
      = tally_supervisor_start_child (patient, worker_factory, NULL, NULL, arbiter, 0);
  g_autoptr (TallyAddress) s
      = tally_supervisor_start_child (strict, worker_factory, NULL, NULL, arbiter, 0);
  g_autoptr (TallyAddress) w1
      = tally_supervisor_start_child (child_of_patient, worker_factory, NULL, NULL, arbiter, 0);
  g_autoptr (TallyAddress) w2
      = tally_supervisor_start_child (child_of_strict, worker_factory, NULL, NULL, arbiter, 0);
  Escalations escalations = { .count = 0 };

  pthread_mutex_init (&escalations.lock, NULL);
  g_signal_connect (strict, "escalated", G_CALLBACK (on_escalated), &escalations);

  /* The patient parent absorbs one failure of its child supervisor. */
  fail_sync (w1);
  g_assert_true (tally_address_wait_stopped (w1, 0));
  g_assert_true (tally_supervisor_is_escalated (child_of_patient));
  g_assert_false (tally_supervisor_is_escalated (patient));
  g_assert_false (tally_address_is_closed (p));

  /* The strict one (intensity 0) gives up too and closes its own children. */
  fail_sync (w2);
  g_assert_true (tally_address_wait_stopped (w2, 0));
  g_assert_true (tally_supervisor_is_escalated (child_of_strict));
  g_assert_true (tally_supervisor_is_escalated (strict));
  g_assert_true (tally_address_wait_stopped (s, 0));
  g_assert_cmpuint (escalations_count (&escalations), ==, 1);

  tally_arbiter_stop (arbiter);
  g_free (escalations.message);
  pthread_mutex_destroy (&escalations.lock);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/supervisor/restart", test_restart);
  g_test_add_func ("/supervisor/intensity", test_intensity);
  g_test_add_func ("/supervisor/period", test_period);
  g_test_add_func ("/supervisor/escalate-to-parent", test_escalate_to_parent);
  return g_test_run ();
}
