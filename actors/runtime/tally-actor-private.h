/* tally-actor-private.h — internals shared by the actor runtime's files.
 *
 * tally-actor.c (the TallyActor class, handlers, timers), tally-message.c (the message
 * header's helpers), tally-address.c (the mailbox GSource, tell/ask and replies) and
 * tally-arbiter.c (threads and contexts) share the structs below. Nothing outside those
 * files of actors/runtime/ includes this header.
 *
 * Locking: every field that more than one thread touches is either written under the
 * struct's pthread mutex or accessed with g_atomic_*; "owner" fields are touched only on
 * the thread that runs the actor's context. pthread primitives (not GMutex/GCond, which
 * are futex-based on Linux and invisible to ThreadSanitizer) keep the runtime checkable
 * by TSan.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include "tally-actor.h"

#include <pthread.h>

G_BEGIN_DECLS

typedef struct _TallyOp TallyOp;

/* How senders wake an arbiter's thread: shared (refcounted) by the arbiter and the
 * addresses of its actors, so a late sender never touches a freed arbiter. A thread
 * arbiter spins for a short while before it sleeps in poll(); while it is awake or
 * spinning (`sleeping` is 0) a sender only raises `work` and skips the eventfd write of
 * g_main_context_wakeup(). Dekker-style: the sender stores `work` then loads `sleeping`,
 * the arbiter stores `sleeping` then loads `work`, both sequentially consistent, so one
 * of them always sees the other and no wakeup is lost. */
typedef struct
{
  gint ref_count;        /* atomic */
  gint work;             /* atomic: a mailbox of this arbiter went non-empty */
  gint sleeping;         /* atomic: the thread is (about to be) blocked in poll() */
  gboolean spins;        /* immutable: thread arbiters only */
  GMainContext *context; /* ref */
} TallyWaker;

/* What a supervisor wants done with an actor whose handler failed. */
typedef enum
{
  TALLY_FAILURE_KEEP,    /* keep the instance running (no supervisor) */
  TALLY_FAILURE_RESTART, /* replace the instance behind the same address */
  TALLY_FAILURE_CLOSED,  /* the supervisor closed the address (escalation) */
} TallyFailureAction;

/* Called on the failing actor's context, after the failed message was answered. */
typedef TallyFailureAction (*TallyFailureFunc) (TallyAddress *address, const GError *error,
                                                gpointer data);
typedef TallyActor *(*TallyActorNewFunc) (gpointer data);

struct _TallyAddress
{
  gint ref_count; /* atomic */

  /* Immutable after tally_actor_start(). */
  GMainContext *context; /* ref */
  TallyArbiter *arbiter; /* no ref: valid while the actor runs (the arbiter outlives it) */
  TallyWaker *waker;     /* ref */
  guint capacity;        /* 0 = unbounded */
  guint release_every;   /* give room back after this many handled messages */
  char *name;            /* the actor's type name, for logs */

  pthread_mutex_t lock;
  pthread_cond_t room_cond;    /* blocked tellers wait here for room or close */
  pthread_cond_t stopped_cond; /* tally_address_wait_stopped() */

  /* Under lock. */
  TallyMessage *head, *tail; /* the shared queue: senders append, the owner swaps it out */
  guint length;              /* queued + taken by the owner but not yet handled */
  GQueue waiters;            /* TallyWaiter: tell_async/ask_async waiting for room */
  guint n_blocked;           /* tellers blocked on room_cond */
  gboolean closed;           /* sends fail with CLOSED */
  gboolean killed;           /* closed by a supervisor: queued messages are dropped */
  gboolean stopped;          /* the `stopped` hook has run */

  /* Atomic. */
  gint pending;   /* 1 once the shared queue went non-empty (or a stop came) until swapped */
  gint n_waiting; /* waiters.length + n_blocked, read without the lock */

  /* Owner thread only. */
  GSource *source;                     /* the mailbox GSource (ref), NULL until attached */
  TallyActor *actor;                   /* ref; NULL once stopped */
  TallyMessage *local_head;            /* taken from the shared queue, not yet handled */
  const TallyMessageType *cached_type; /* the last type handled, and its handler */
  TallyHandlerFunc cached_handler;
  guint unreleased; /* handled messages not yet subtracted from length */
  gboolean started;
  gboolean finished;

  /* Supervision: set before the actor starts, or on the owner thread. */
  TallyFailureFunc failure_func;
  gpointer failure_data;
  TallyActorNewFunc new_func;
  gpointer new_data;
  GDestroyNotify supervision_destroy; /* frees failure_data at the address's end */
};

struct _TallyArbiter
{
  gint ref_count; /* atomic */
  char *name;
  GMainContext *context; /* ref */
  TallyWaker *waker;     /* ref */
  GMainLoop *loop;       /* thread arbiters only */
  GThread *thread;       /* NULL for wrapped contexts */
  GSource *control;      /* attaches mailboxes and runs stops on the owner thread */
  gboolean implicit;     /* made for tally_actor_start (…, NULL, …); lives for the process */

  pthread_mutex_t lock;
  pthread_cond_t cond;
  GPtrArray *starting;     /* under lock: TallyAddress refs waiting for their mailbox */
  guint n_actors;          /* under lock: started and not yet stopped */
  gboolean stop_requested; /* under lock */
  gboolean joined;         /* under lock */
  gint control_pending;    /* atomic */

  GPtrArray *running; /* owner thread: TallyAddress refs with an attached mailbox */
};

/* tally-actor.c */
TallyAddress *tally_actor_start_supervised (TallyActor *actor, TallyArbiter *arbiter,
                                            guint mailbox_capacity, TallyFailureFunc failure_func,
                                            gpointer failure_data, TallyActorNewFunc new_func,
                                            gpointer new_data, GDestroyNotify supervision_destroy);
void tally_actor_bind (TallyActor *self, TallyAddress *address);
TallyHandlerFunc tally_actor_lookup_handler (TallyActor *self, const TallyMessageType *type);
void tally_actor_remove_timers (TallyActor *self);

/* tally-message.c */
gboolean tally_message_take_deferred (TallyMessage *message);
void tally_message_mark_handling (TallyMessage *message);

/* tally-address.c */
TallyAddress *tally_address_new (TallyArbiter *arbiter, guint capacity, const char *name);
void tally_address_attach (TallyAddress *address);
void tally_address_close_now (TallyAddress *address);
void tally_address_discard_unstarted (TallyAddress *address, TallyActor *actor);
void tally_address_set_supervision (TallyAddress *address, TallyFailureFunc failure_func,
                                    gpointer failure_data, TallyActorNewFunc new_func,
                                    gpointer new_data, GDestroyNotify supervision_destroy);
void tally_op_complete (TallyOp *op, gpointer reply, GError *error);
void tally_op_unref (TallyOp *op);
gboolean tally_context_is_callers (GMainContext *context);

/* tally-arbiter.c */
TallyArbiter *tally_arbiter_get_implicit (void);
gboolean tally_arbiter_add_actor (TallyArbiter *self, TallyAddress *address);
void tally_arbiter_actor_finished (TallyArbiter *self, TallyAddress *address);
void tally_arbiter_wake (TallyArbiter *self);
TallyWaker *tally_waker_ref (TallyWaker *waker);
void tally_waker_unref (TallyWaker *waker);

/* A sender made a mailbox of @waker's arbiter non-empty. Any thread. */
static inline void
tally_waker_notify (TallyWaker *waker)
{
  if (waker->spins)
    {
      g_atomic_int_set (&waker->work, 1);
      if (!g_atomic_int_get (&waker->sleeping))
        return;
    }
  g_main_context_wakeup (waker->context);
}

/* Absolute CLOCK_MONOTONIC deadline @timeout_ms from now, for pthread_cond_timedwait. */
void tally_deadline_from_ms (struct timespec *deadline, guint timeout_ms);
void tally_cond_init_monotonic (pthread_cond_t *cond);

G_END_DECLS
