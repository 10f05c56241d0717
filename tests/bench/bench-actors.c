/* bench-actors.c — Tally's actor runtime under load; bench-caf.cpp is the same in CAF.
 *
 * Cases (tests/bench/actors.sh runs both programs and prints the table):
 *   tell-1-unbatched  one sender thread, tally_address_tell() per message, one actor
 *   tell-1-batched    the same with tally_address_tell_many() in batches of BATCH
 *   tell-2-senders    two sender threads telling (unbatched) into one mailbox
 *   tell-2-batched    two sender threads, tally_address_tell_many() in batches of BATCH
 *   pingpong          round trip between two actors on two arbiters (two threads)
 *   pingpong-1-thread the same with both actors on one arbiter
 *   ask               round trip by ask across two threads: a plain thread calls
 *                     tally_address_ask_sync() on an actor on an arbiter, one at a time
 *
 * Each message is a malloc'd struct with an integer, freed by the runtime after the
 * handler; mailboxes of the tell cases hold at most CAPACITY messages (senders block); the counting
 * actor signals the main thread when it has seen them all, and the time is taken from the first
 * send to that signal. Every case runs --runs times and the median is printed as `case unit value`
 * lines.
 *
 * Usage: bench-actors [--messages N] [--rounds R] [--runs K] [--case NAME]
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-actor.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BATCH 1024
/* Mailbox capacity of the tell cases. Bounded, as Tally's mailboxes are meant to be: an
 * unbounded one lets a fast sender queue millions of messages, and the benchmark then
 * measures page faults; 8192 messages of 40 bytes also stay in the CPU caches. */
#define CAPACITY 8192

typedef struct
{
  TallyMessage parent;
  gint64 value;
  TallyAddress *from; /* borrowed, ping-pong only */
} Number;

static void
number_free (gpointer p)
{
  free (p);
}

static const TallyMessageType number_type = { "Number", number_free, NULL };
static const TallyMessageType ping_type = { "Ping", number_free, NULL };
static const TallyMessageType pong_type = { "Pong", number_free, NULL };

static inline TallyMessage *
number_new (const TallyMessageType *type, gint64 value, TallyAddress *from)
{
  Number *m = malloc (sizeof *m);

  tally_message_init (&m->parent, type);
  m->value = value;
  m->from = from;
  return &m->parent;
}

/* The main thread waits here for an actor to say "done". */
static pthread_mutex_t done_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t done_cond = PTHREAD_COND_INITIALIZER;
static gboolean done;

static void
signal_done (void)
{
  pthread_mutex_lock (&done_lock);
  done = TRUE;
  pthread_cond_signal (&done_cond);
  pthread_mutex_unlock (&done_lock);
}

static void
wait_done (void)
{
  pthread_mutex_lock (&done_lock);
  while (!done)
    pthread_cond_wait (&done_cond, &done_lock);
  done = FALSE;
  pthread_mutex_unlock (&done_lock);
}

/* ---------------------------------------------------------------------------------------
 * Actors
 * ------------------------------------------------------------------------------------- */

#define BENCH_TYPE_COUNTER (bench_counter_get_type ())
G_DECLARE_FINAL_TYPE (BenchCounter, bench_counter, BENCH, COUNTER, TallyActor)

struct _BenchCounter
{
  TallyActor parent_instance;
  gint64 count;
  gint64 target;
};

G_DEFINE_FINAL_TYPE (BenchCounter, bench_counter, TALLY_TYPE_ACTOR)

static gboolean
counter_number (TallyActor *actor, TallyMessage *message, GError **error)
{
  BenchCounter *self = (BenchCounter *)actor;

  self->count += ((Number *)message)->value;
  if (G_UNLIKELY (self->count == self->target))
    signal_done ();
  return TRUE;
}

static void
bench_counter_class_init (BenchCounterClass *klass)
{
  tally_actor_class_add_handler (TALLY_ACTOR_CLASS (klass), &number_type, counter_number);
}

static void
bench_counter_init (BenchCounter *self)
{
}

#define BENCH_TYPE_PLAYER (bench_player_get_type ())
G_DECLARE_FINAL_TYPE (BenchPlayer, bench_player, BENCH, PLAYER, TallyActor)

struct _BenchPlayer
{
  TallyActor parent_instance;
  TallyAddress *peer; /* borrowed */
  gint64 rounds;
};

G_DEFINE_FINAL_TYPE (BenchPlayer, bench_player, TALLY_TYPE_ACTOR)

/* The ponger answers every Ping with a Pong to its sender. */
static gboolean
player_ping (TallyActor *actor, TallyMessage *message, GError **error)
{
  Number *ping = (Number *)message;

  return tally_address_tell (ping->from, number_new (&pong_type, ping->value, NULL), error);
}

/* The pinger sends the next Ping until the last round comes back. */
static gboolean
player_pong (TallyActor *actor, TallyMessage *message, GError **error)
{
  BenchPlayer *self = (BenchPlayer *)actor;
  gint64 round = ((Number *)message)->value;

  if (round == self->rounds)
    {
      signal_done ();
      return TRUE;
    }
  return tally_address_tell (
      self->peer, number_new (&ping_type, round + 1, tally_actor_get_address (actor)), error);
}

static void
bench_player_class_init (BenchPlayerClass *klass)
{
  tally_actor_class_add_handler (TALLY_ACTOR_CLASS (klass), &ping_type, player_ping);
  tally_actor_class_add_handler (TALLY_ACTOR_CLASS (klass), &pong_type, player_pong);
}

static void
bench_player_init (BenchPlayer *self)
{
}

/* The answerer replies to every Ping with its value plus one (as a pointer). */
#define BENCH_TYPE_ANSWERER (bench_answerer_get_type ())
G_DECLARE_FINAL_TYPE (BenchAnswerer, bench_answerer, BENCH, ANSWERER, TallyActor)

struct _BenchAnswerer
{
  TallyActor parent_instance;
};

G_DEFINE_FINAL_TYPE (BenchAnswerer, bench_answerer, TALLY_TYPE_ACTOR)

static gboolean
answerer_ping (TallyActor *actor, TallyMessage *message, GError **error)
{
  tally_message_reply (message, GSIZE_TO_POINTER ((gsize)((Number *)message)->value + 1));
  return TRUE;
}

static void
bench_answerer_class_init (BenchAnswererClass *klass)
{
  tally_actor_class_add_handler (TALLY_ACTOR_CLASS (klass), &ping_type, answerer_ping);
}

static void
bench_answerer_init (BenchAnswerer *self)
{
}

/* ---------------------------------------------------------------------------------------
 * Cases
 * ------------------------------------------------------------------------------------- */

typedef struct
{
  TallyAddress *address;
  gint64 n;
  gboolean batched;
} Sender;

static gpointer
send_all (gpointer data)
{
  Sender *s = data;

  if (!s->batched)
    {
      for (gint64 i = 0; i < s->n; i++)
        tally_address_tell (s->address, number_new (&number_type, 1, NULL), NULL);
      return NULL;
    }
  for (gint64 i = 0; i < s->n; i += BATCH)
    {
      TallyMessage *batch[BATCH];
      guint k = (guint)MIN (BATCH, s->n - i);

      for (guint j = 0; j < k; j++)
        batch[j] = number_new (&number_type, 1, NULL);
      tally_address_tell_many (s->address, batch, k, NULL);
    }
  return NULL;
}

/* Messages per second with @n_senders threads sending @n messages in all. */
static double
run_tell (gint64 n, guint n_senders, gboolean batched)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("bench-counter");
  BenchCounter *counter = g_object_new (BENCH_TYPE_COUNTER, NULL);
  g_autoptr (TallyAddress) address = NULL;
  Sender senders[2];
  GThread *threads[2];
  gint64 start, elapsed;

  counter->target = n;
  address = tally_actor_start (TALLY_ACTOR (counter), arbiter, CAPACITY);

  start = g_get_monotonic_time ();
  for (guint i = 0; i < n_senders; i++)
    {
      senders[i].address = address;
      senders[i].n = n / n_senders;
      senders[i].batched = batched;
      threads[i] = g_thread_new ("bench-sender", send_all, &senders[i]);
    }
  wait_done ();
  elapsed = g_get_monotonic_time () - start;
  for (guint i = 0; i < n_senders; i++)
    g_thread_join (threads[i]);
  tally_arbiter_stop (arbiter);
  return (double)n / ((double)elapsed / G_USEC_PER_SEC);
}

/* Microseconds per round trip, between two arbiters or on one. */
static double
run_pingpong (gint64 rounds, gboolean one_arbiter)
{
  g_autoptr (TallyArbiter) one = tally_arbiter_new ("bench-ping");
  g_autoptr (TallyArbiter) two
      = one_arbiter ? tally_arbiter_ref (one) : tally_arbiter_new ("bench-pong");
  BenchPlayer *pinger = g_object_new (BENCH_TYPE_PLAYER, NULL);
  BenchPlayer *ponger = g_object_new (BENCH_TYPE_PLAYER, NULL);
  g_autoptr (TallyAddress) ping_address = NULL;
  g_autoptr (TallyAddress) pong_address = NULL;
  gint64 start, elapsed;

  pinger->rounds = rounds;
  ping_address = tally_actor_start (TALLY_ACTOR (pinger), one, 0);
  pong_address = tally_actor_start (TALLY_ACTOR (ponger), two, 0);
  pinger->peer = pong_address;

  start = g_get_monotonic_time ();
  tally_address_tell (pong_address, number_new (&ping_type, 1, ping_address), NULL);
  wait_done ();
  elapsed = g_get_monotonic_time () - start;
  tally_arbiter_stop (one);
  tally_arbiter_stop (two);
  return (double)elapsed / (double)rounds;
}

/* Microseconds per ask round trip from this thread to an actor on an arbiter. */
static double
run_ask (gint64 rounds)
{
  g_autoptr (TallyArbiter) arbiter = tally_arbiter_new ("bench-answer");
  BenchAnswerer *answerer = g_object_new (BENCH_TYPE_ANSWERER, NULL);
  g_autoptr (TallyAddress) address = tally_actor_start (TALLY_ACTOR (answerer), arbiter, 0);
  gsize value = 0;
  gint64 start, elapsed;

  start = g_get_monotonic_time ();
  for (gint64 i = 0; i < rounds; i++)
    {
      g_autoptr (GError) error = NULL;
      gpointer reply = tally_address_ask_sync (
          address, number_new (&ping_type, (gint64)value, NULL), 0, &error);

      if (error != NULL)
        g_error ("bench-actors: ask failed: %s", error->message);
      value = GPOINTER_TO_SIZE (reply);
    }
  elapsed = g_get_monotonic_time () - start;
  g_assert_cmpuint (value, ==, (gsize)rounds);
  tally_arbiter_stop (arbiter);
  return (double)elapsed / (double)rounds;
}

static int
compare_doubles (const void *a, const void *b)
{
  double x = *(const double *)a, y = *(const double *)b;

  return (x > y) - (x < y);
}

static double
median (double *values, guint n)
{
  qsort (values, n, sizeof (double), compare_doubles);
  return values[n / 2];
}

int
main (int argc, char **argv)
{
  gint64 messages = 10000000, rounds = 100000;
  gint runs = 3;
  g_autofree char *only = NULL;
  GOptionEntry entries[] = {
    { "case", 'c', 0, G_OPTION_ARG_STRING, &only, "Run only this case", "NAME" },
    { "messages", 'n', 0, G_OPTION_ARG_INT64, &messages, "Messages per tell case", "N" },
    { "rounds", 'r', 0, G_OPTION_ARG_INT64, &rounds, "Ping-pong round trips", "R" },
    { "runs", 'k', 0, G_OPTION_ARG_INT, &runs, "Runs per case (the median is printed)", "K" },
    { NULL },
  };
  g_autoptr (GOptionContext) options = g_option_context_new ("- Tally actor benchmark");
  g_autoptr (GError) error = NULL;
  double *values;

  g_option_context_add_main_entries (options, entries, NULL);
  if (!g_option_context_parse (options, &argc, &argv, &error) || runs < 1 || messages < 2
      || rounds < 1)
    {
      fprintf (stderr, "bench-actors: %s\n", error != NULL ? error->message : "bad arguments");
      return 2;
    }
  messages -= messages % (2 * BATCH);
  values = g_new (double, runs);

  if (only == NULL || strcmp (only, "tell-1-unbatched") == 0)
    {
      for (gint i = 0; i < runs; i++)
        values[i] = run_tell (messages, 1, FALSE);
      printf ("tell-1-unbatched msgs/s %.0f\n", median (values, runs));
      fflush (stdout);
    }
  if (only == NULL || strcmp (only, "tell-1-batched") == 0)
    {
      for (gint i = 0; i < runs; i++)
        values[i] = run_tell (messages, 1, TRUE);
      printf ("tell-1-batched msgs/s %.0f\n", median (values, runs));
      fflush (stdout);
    }
  if (only == NULL || strcmp (only, "tell-2-senders") == 0)
    {
      for (gint i = 0; i < runs; i++)
        values[i] = run_tell (messages, 2, FALSE);
      printf ("tell-2-senders msgs/s %.0f\n", median (values, runs));
      fflush (stdout);
    }
  if (only == NULL || strcmp (only, "tell-2-batched") == 0)
    {
      for (gint i = 0; i < runs; i++)
        values[i] = run_tell (messages, 2, TRUE);
      printf ("tell-2-batched msgs/s %.0f\n", median (values, runs));
      fflush (stdout);
    }
  if (only == NULL || strcmp (only, "pingpong") == 0)
    {
      for (gint i = 0; i < runs; i++)
        values[i] = run_pingpong (rounds, FALSE);
      printf ("pingpong us/round-trip %.3f\n", median (values, runs));
      fflush (stdout);
    }
  if (only == NULL || strcmp (only, "pingpong-1-thread") == 0)
    {
      for (gint i = 0; i < runs; i++)
        values[i] = run_pingpong (rounds, TRUE);
      printf ("pingpong-1-thread us/round-trip %.3f\n", median (values, runs));
      fflush (stdout);
    }

  if (only == NULL || strcmp (only, "ask") == 0)
    {
      for (gint i = 0; i < runs; i++)
        values[i] = run_ask (rounds);
      printf ("ask us/round-trip %.3f\n", median (values, runs));
      fflush (stdout);
    }

  g_free (values);
  return 0;
}
