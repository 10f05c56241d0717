/* tally-address.c — addresses and mailboxes: tell, ask, replies, stop.
 *
 * A TallyAddress is an actor's mailbox: any thread sends to it, and the actor's own
 * thread handles what arrives, one message at a time. Every batch of words Tally counts
 * crosses a mailbox, so a tell must be cheap: one lock and no allocation (the queue's link lives in
 * the TallyMessage header), a wakeup of the receiver only when its queue goes from empty
 * to non-empty, and a receiver that takes the whole queue at once and handles it without
 * holding any lock. A bounded mailbox pushes back on its senders instead of growing.
 *
 * The receiving side is a custom GSource (mailbox_dispatch()); asks are TallyOps that a
 * reply completes exactly once. pthread mutexes, condition variables and g_atomic_* are
 * used rather than GMutex/GCond: on Linux GLib implements those directly with futexes,
 * which ThreadSanitizer cannot see, so every hand-off would be reported as a race; with
 * pthreads TSan checks this file's synchronisation for real.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-actor-private.h"

#include <errno.h>

/* Most messages one dispatch handles before letting other sources of the context run. */
#define BATCH_MAX 4096
/* While senders wait for room, room is given back every quarter of the capacity (but not
 * more often than every RELEASE_MIN handled messages): waiters wake a few times per
 * mailbox-full instead of once per message. */
#define RELEASE_MIN 16

typedef enum
{
  TALLY_OP_ASK,
  TALLY_OP_TELL,
} TallyOpKind;

struct _TallyOp
{
  gint ref_count; /* atomic */
  TallyOpKind kind;
  GDestroyNotify free_reply; /* immutable */

  pthread_mutex_t lock;
  pthread_cond_t cond; /* ask_sync waits here */
  gboolean done;       /* under lock */
  gint completed;      /* atomic: set once done, read without the lock by op_wait() */
  gpointer reply;      /* under lock */
  GError *error;       /* under lock */

  /* Async forms. The context and address are immutable; task, cancellable and cancel_id
   * are touched only on the caller's thread. */
  gint fired;            /* atomic: done, tells the notify source to dispatch */
  GMainContext *context; /* ref, under lock: the caller's thread-default context */
  GTask *task;
  GCancellable *cancellable;
  gulong cancel_id;
  TallyAddress *address; /* ref, tell_async only: to withdraw a waiting message */
};

typedef struct
{
  TallyMessage *message;
  TallyOp *op; /* ref, tell_async only; an ask's op hangs on the message */
} TallyWaiter;

typedef struct
{
  GSource parent;
  TallyAddress *address; /* ref */
} TallyMailboxSource;

typedef struct
{
  GSource parent;
  TallyOp *op; /* ref */
} TallyNotifySource;

/* ---------------------------------------------------------------------------------------
 * Ops: one pending reply (ask) or one pending enqueue (tell_async)
 *
 * An ask links a TallyOp to the message (message->reply_to). The reply (or an error, or
 * CLOSED when the message is freed unhandled) completes the op exactly once; later
 * completions are freed. ask_sync spins briefly for the reply, then waits on the op's
 * condition variable with a timeout (op_wait()).
 * The async forms attach a small "notify" GSource to the caller's thread-default context
 * when they are called; completion sets the op's atomic `fired` flag and wakes that
 * context, whose dispatch then returns the GTask on the caller's own thread.
 * ------------------------------------------------------------------------------------- */

static TallyOp *
op_new (TallyOpKind kind, GDestroyNotify free_reply)
{
  TallyOp *op = g_new0 (TallyOp, 1);

  op->ref_count = 1;
  op->kind = kind;
  op->free_reply = free_reply;
  pthread_mutex_init (&op->lock, NULL);
  tally_cond_init_monotonic (&op->cond);
  return op;
}

static TallyOp *
op_ref (TallyOp *op)
{
  g_atomic_int_inc (&op->ref_count);
  return op;
}

void
tally_op_unref (TallyOp *op)
{
  if (!g_atomic_int_dec_and_test (&op->ref_count))
    return;

  if (op->reply != NULL && op->free_reply != NULL)
    op->free_reply (op->reply);
  g_clear_error (&op->error);
  g_clear_object (&op->task);
  g_clear_object (&op->cancellable);
  g_clear_pointer (&op->context, g_main_context_unref);
  g_clear_pointer (&op->address, tally_address_unref);
  pthread_cond_destroy (&op->cond);
  pthread_mutex_destroy (&op->lock);
  g_free (op);
}

/* Completes @op with @reply (transfer full) or @error (transfer full). The first
 * completion wins; the values of later ones (a reply after a timeout or a cancellation)
 * are freed here. Any thread. */
void
tally_op_complete (TallyOp *op, gpointer reply, GError *error)
{
  gboolean first;

  pthread_mutex_lock (&op->lock);
  first = !op->done;
  if (first)
    {
      op->done = TRUE;
      op->reply = reply;
      op->error = error;
      g_atomic_int_set (&op->completed, 1);
      /* Woken under the lock: the notify dispatch takes the context reference out under
       * the same lock, so the caller's context is never used (or freed) here after that. */
      if (op->context != NULL)
        {
          g_atomic_int_set (&op->fired, 1);
          g_main_context_wakeup (op->context);
        }
    }
  pthread_mutex_unlock (&op->lock);
  /* An ask_sync waiter is signalled after the unlock: signalled under the lock, it woke
   * only to wait for the lock this thread still held, two more futex calls and a switch
   * per round trip (strace of bench-actors --case ask). The caller holds a reference to
   * @op, so the condition variable outlives this call whatever the waiter does. */
  if (first)
    pthread_cond_signal (&op->cond);

  if (!first)
    {
      if (reply != NULL && op->free_reply != NULL)
        op->free_reply (reply);
      g_clear_error (&error);
    }
}

/* How long ask_sync spins for a reply before it sleeps, in microseconds. An actor that
 * was idle takes a few microseconds to wake and answer; if the asker is asleep by then,
 * its own wake-up adds as much again (each a futex wake and a switch; more on a virtual
 * machine, whose idle processors sleep in the hypervisor). Spinning first, as
 * folly::Baton does and as glibc's adaptive mutexes do for a lock, catches most replies
 * awake: bench-actors --case ask, 50,000 round trips on 2 processors, went from 8-15 us to
 * 1.2-3.6 us quiet and from 15-26 us to 3.2-4.6 us beside two busy loops
 * (tests/bench/README.md). A reply that takes longer costs at most this much CPU more. */
#define OP_SPIN_US 50

/* Spins until @op completes or OP_SPIN_US pass, on machines with more than one processor
 * (on one, the replier cannot run while the asker spins). The caller then takes the
 * lock, which orders what the replier wrote before it set `completed`. */
static void
op_spin (TallyOp *op)
{
  static gint multi = -1; /* atomic: more than one processor, once known */
  gint64 until;
  guint n = 0;

  if (G_UNLIKELY (g_atomic_int_get (&multi) < 0))
    g_atomic_int_set (&multi, g_get_num_processors () > 1);
  if (!g_atomic_int_get (&multi))
    return;
  until = g_get_monotonic_time () + OP_SPIN_US;
  while (!g_atomic_int_get (&op->completed))
    {
#if defined(__x86_64__) || defined(__i386__)
      __builtin_ia32_pause ();
#elif defined(__aarch64__)
      __asm__ __volatile__("yield");
#endif
      /* The clock is read every 64 turns: a few hundred nanoseconds apart. */
      if ((++n & 63) == 0 && g_get_monotonic_time () >= until)
        return;
    }
}

/* Blocks until @op completes or @timeout_ms (0: forever) passes, spinning first. */
static gpointer
op_wait (TallyOp *op, guint timeout_ms, GError **error)
{
  struct timespec deadline;
  gboolean timed_out = FALSE;
  gpointer reply;
  GError *op_error;

  if (timeout_ms > 0)
    tally_deadline_from_ms (&deadline, timeout_ms);

  op_spin (op);
  pthread_mutex_lock (&op->lock);
  while (!op->done)
    {
      if (timeout_ms == 0)
        pthread_cond_wait (&op->cond, &op->lock);
      else if (pthread_cond_timedwait (&op->cond, &op->lock, &deadline) == ETIMEDOUT && !op->done)
        {
          op->done = TRUE; /* a late reply is now freed by tally_op_complete() */
          timed_out = TRUE;
        }
    }
  reply = g_steal_pointer (&op->reply);
  op_error = g_steal_pointer (&op->error);
  pthread_mutex_unlock (&op->lock);

  if (timed_out)
    {
      g_set_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_TIMEOUT, "no reply within %u ms",
                   timeout_ms);
      return NULL;
    }
  if (op_error != NULL)
    {
      g_propagate_error (error, op_error);
      return NULL;
    }
  return reply;
}

static gboolean
notify_ready (GSource *source)
{
  return g_atomic_int_get (&((TallyNotifySource *)source)->op->fired) != 0;
}

static gboolean
notify_prepare (GSource *source, gint *timeout)
{
  *timeout = -1;
  return notify_ready (source);
}

static gboolean
notify_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  TallyOp *op = ((TallyNotifySource *)source)->op;
  g_autoptr (GTask) task = g_steal_pointer (&op->task);
  g_autoptr (GMainContext) context = NULL;
  gpointer reply;
  GError *error;

  /* The context is released here, on its own thread: GLib's internals are not visible to
   * ThreadSanitizer, so freeing it on the replier's thread would look like a race. */
  pthread_mutex_lock (&op->lock);
  reply = g_steal_pointer (&op->reply);
  error = g_steal_pointer (&op->error);
  context = g_steal_pointer (&op->context);
  pthread_mutex_unlock (&op->lock);

  if (op->cancel_id != 0)
    g_cancellable_disconnect (op->cancellable, op->cancel_id);
  op->cancel_id = 0;

  if (error != NULL)
    g_task_return_error (task, error);
  else if (op->kind == TALLY_OP_ASK)
    g_task_return_pointer (task, reply, op->free_reply);
  else
    g_task_return_boolean (task, TRUE);
  return G_SOURCE_REMOVE;
}

static void
notify_finalize (GSource *source)
{
  tally_op_unref (((TallyNotifySource *)source)->op);
}

static GSourceFuncs notify_funcs = {
  .prepare = notify_prepare,
  .check = notify_ready,
  .dispatch = notify_dispatch,
  .finalize = notify_finalize,
};

static void withdraw_waiter (TallyAddress *self, TallyOp *op);

static void
op_cancelled (GCancellable *cancellable, gpointer data)
{
  TallyOp *op = data;

  if (op->kind == TALLY_OP_TELL)
    withdraw_waiter (op->address, op);
  else
    tally_op_complete (
        op, NULL, g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED, "the ask was cancelled"));
}

/* An op whose completion is delivered through a GTask on the caller's thread-default
 * context. Called on the caller's thread. */
static TallyOp *
op_new_async (TallyOpKind kind, GDestroyNotify free_reply, gpointer source_tag,
              GCancellable *cancellable, GAsyncReadyCallback callback, gpointer user_data)
{
  TallyOp *op = op_new (kind, free_reply);
  GSource *source;

  op->context = g_main_context_ref_thread_default ();
  op->task = g_task_new (NULL, NULL, callback, user_data);
  g_task_set_source_tag (op->task, source_tag);

  source = g_source_new (&notify_funcs, sizeof (TallyNotifySource));
  ((TallyNotifySource *)source)->op = op_ref (op);
  g_source_set_static_name (source, kind == TALLY_OP_ASK ? "TallyActor ask" : "TallyActor tell");
  g_source_attach (source, op->context);
  g_source_unref (source);
  return op;
}

static void
op_watch_cancellable (TallyOp *op, GCancellable *cancellable)
{
  if (cancellable == NULL)
    return;
  op->cancellable = g_object_ref (cancellable);
  op->cancel_id = g_cancellable_connect (cancellable, G_CALLBACK (op_cancelled), op_ref (op),
                                         (GDestroyNotify)tally_op_unref);
}

/* Answers the ask of @message (if any) with @error (transfer full). */
static void
answer_error (TallyMessage *message, GError *error)
{
  TallyOp *op = g_steal_pointer (&message->reply_to);

  if (op == NULL)
    {
      g_error_free (error);
      return;
    }
  tally_op_complete (op, NULL, error);
  tally_op_unref (op);
}

/* ---------------------------------------------------------------------------------------
 * The queue
 * ------------------------------------------------------------------------------------- */

static inline gboolean
has_room_locked (TallyAddress *self)
{
  return self->capacity == 0 || self->length < self->capacity;
}

static inline void
update_waiting_locked (TallyAddress *self)
{
  g_atomic_int_set (&self->n_waiting, (gint)(self->waiters.length + self->n_blocked));
}

/* Appends @message; returns whether the context must be woken (the queue was empty).
 * Senders on any thread append to this singly linked queue under the address's mutex; the
 * link is the message's own `next`, so a tell allocates nothing. Waking the context
 * (g_main_context_wakeup) only on the empty to non-empty step, with the source's
 * prepare/check reading the atomic `pending` flag, makes a busy mailbox cost one wakeup
 * per batch rather than one per message. */
static inline gboolean
enqueue_locked (TallyAddress *self, TallyMessage *message)
{
  message->next = NULL;
  if (self->tail != NULL)
    self->tail->next = message;
  else
    self->head = message;
  self->tail = message;
  self->length++;

  if (g_atomic_int_get (&self->pending) == 0)
    {
      g_atomic_int_set (&self->pending, 1);
      return TRUE;
    }
  return FALSE;
}

/* Closes the mailbox for sends; the waiters for room are moved to @failed. */
static gboolean
close_locked (TallyAddress *self, gboolean kill, GQueue *failed)
{
  gboolean was_closed = self->closed;

  if (kill)
    g_atomic_int_set (&self->killed, TRUE);
  if (was_closed)
    return FALSE;

  self->closed = TRUE;
  while (self->waiters.length > 0)
    g_queue_push_tail (failed, g_queue_pop_head (&self->waiters));
  update_waiting_locked (self);
  pthread_cond_broadcast (&self->room_cond);
  g_atomic_int_set (&self->pending, 1);
  return TRUE;
}

static void
fail_waiters (GQueue *failed)
{
  TallyWaiter *waiter;

  while ((waiter = g_queue_pop_head (failed)) != NULL)
    {
      tally_message_free (waiter->message); /* answers an ask with CLOSED */
      if (waiter->op != NULL)
        {
          tally_op_complete (waiter->op, NULL,
                             g_error_new_literal (TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED,
                                                  "the actor stopped"));
          tally_op_unref (waiter->op);
        }
      g_free (waiter);
    }
}

static void
succeed_waiters (GQueue *admitted)
{
  TallyOp *op;

  while ((op = g_queue_pop_head (admitted)) != NULL)
    {
      tally_op_complete (op, NULL, NULL);
      tally_op_unref (op);
    }
}

/* Receiver side: gives back the room of handled messages and lets waiters in. The tell
 * ops admitted are moved to @admitted, to be completed once the lock is released.
 *
 * Capacity: `length` counts messages queued plus those taken by the receiver and not yet
 * handled. The receiver calls this under the lock once per batch (or every quarter of the
 * capacity, at least RELEASE_MIN, while someone waits for room): it subtracts what it
 * handled, then lets waiters in: first the tell_async/ask_async waiters in FIFO order,
 * which it enqueues itself, then blocked tellers. (A sender whose thread runs the
 * receiver's own context never blocks; see push().) */
static void
release_locked (TallyAddress *self, GQueue *admitted)
{
  self->length -= self->unreleased;
  self->unreleased = 0;

  if (self->closed)
    return;
  while (self->waiters.length > 0 && has_room_locked (self))
    {
      TallyWaiter *waiter = g_queue_pop_head (&self->waiters);

      enqueue_locked (self, waiter->message);
      if (waiter->op != NULL)
        g_queue_push_tail (admitted, waiter->op);
      g_free (waiter);
    }
  update_waiting_locked (self);
  if (self->n_blocked > 0 && has_room_locked (self))
    pthread_cond_broadcast (&self->room_cond);
}

static void
free_message_list (TallyMessage *list)
{
  while (list != NULL)
    {
      TallyMessage *next = list->next;

      list->next = NULL;
      tally_message_free (list);
      list = next;
    }
}

/* Whether the calling thread runs (or has pushed as its thread-default) @context, so
 * that waiting for @context to make progress would never end. */
gboolean
tally_context_is_callers (GMainContext *context)
{
  GMainContext *thread_default = g_main_context_get_thread_default ();

  if (thread_default == context)
    return TRUE;
  return g_main_context_is_owner (context);
}

typedef enum
{
  TALLY_PUSH_TRY,
  TALLY_PUSH_BLOCK,
} TallyPushMode;

/* Enqueues @message or fails; never consumes @message on failure. */
static gboolean
push (TallyAddress *self, TallyMessage *message, TallyPushMode mode, guint timeout_ms,
      GError **error)
{
  struct timespec deadline;
  gboolean own_known = FALSE, own = FALSE, wake;

  pthread_mutex_lock (&self->lock);
  for (;;)
    {
      if (self->closed)
        {
          pthread_mutex_unlock (&self->lock);
          g_set_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED,
                       "%s is closed: %s not sent", self->name, message->type->name);
          return FALSE;
        }
      if (has_room_locked (self) && self->waiters.length == 0)
        break;
      if (mode == TALLY_PUSH_BLOCK && !own_known)
        {
          /* Decided outside our lock: it may take the context's lock. */
          pthread_mutex_unlock (&self->lock);
          own = tally_context_is_callers (self->context);
          own_known = TRUE;
          if (timeout_ms > 0)
            tally_deadline_from_ms (&deadline, timeout_ms);
          pthread_mutex_lock (&self->lock);
          continue;
        }
      if (mode == TALLY_PUSH_TRY || own)
        {
          pthread_mutex_unlock (&self->lock);
          g_set_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_FULL,
                       "the mailbox of %s is full (%u messages): %s not sent", self->name,
                       self->capacity, message->type->name);
          return FALSE;
        }

      self->n_blocked++;
      update_waiting_locked (self);
      if (timeout_ms == 0)
        pthread_cond_wait (&self->room_cond, &self->lock);
      else if (pthread_cond_timedwait (&self->room_cond, &self->lock, &deadline) == ETIMEDOUT)
        {
          self->n_blocked--;
          update_waiting_locked (self);
          pthread_mutex_unlock (&self->lock);
          g_set_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_TIMEOUT,
                       "no room in the mailbox of %s within %u ms", self->name, timeout_ms);
          return FALSE;
        }
      self->n_blocked--;
      update_waiting_locked (self);
    }

  wake = enqueue_locked (self, message);
  pthread_mutex_unlock (&self->lock);

  if (wake)
    tally_waker_notify (self->waker);
  return TRUE;
}

/* Enqueues @message now if there is room, else queues it as a waiter. Consumes
 * @message; completes @tell_op (nullable) once enqueued or refused. */
static void
push_async (TallyAddress *self, TallyMessage *message, TallyOp *tell_op)
{
  gboolean wake;

  pthread_mutex_lock (&self->lock);
  if (self->closed)
    {
      pthread_mutex_unlock (&self->lock);
      if (tell_op != NULL)
        tally_op_complete (tell_op, NULL,
                           g_error_new (TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED,
                                        "%s is closed: %s not sent", self->name,
                                        message->type->name));
      tally_message_free (message);
      return;
    }
  if (has_room_locked (self) && self->waiters.length == 0)
    {
      wake = enqueue_locked (self, message);
      pthread_mutex_unlock (&self->lock);
      if (wake)
        tally_waker_notify (self->waker);
      if (tell_op != NULL)
        tally_op_complete (tell_op, NULL, NULL);
      return;
    }

  {
    TallyWaiter *waiter = g_new0 (TallyWaiter, 1);

    waiter->message = message;
    waiter->op = tell_op != NULL ? op_ref (tell_op) : NULL;
    g_queue_push_tail (&self->waiters, waiter);
    update_waiting_locked (self);
  }
  pthread_mutex_unlock (&self->lock);
}

/* A cancelled tell_async gives up its wait for room, if it is still waiting. */
static void
withdraw_waiter (TallyAddress *self, TallyOp *op)
{
  TallyWaiter *found = NULL;

  pthread_mutex_lock (&self->lock);
  for (GList *l = self->waiters.head; l != NULL; l = l->next)
    {
      TallyWaiter *waiter = l->data;

      if (waiter->op == op)
        {
          found = waiter;
          g_queue_delete_link (&self->waiters, l);
          update_waiting_locked (self);
          break;
        }
    }
  pthread_mutex_unlock (&self->lock);

  if (found == NULL)
    return; /* already enqueued (or refused): that outcome stands */
  tally_message_free (found->message);
  tally_op_complete (op, NULL,
                     g_error_new_literal (G_IO_ERROR, G_IO_ERROR_CANCELLED,
                                          "the tell was cancelled while waiting for room"));
  tally_op_unref (found->op);
  g_free (found);
}

/* ---------------------------------------------------------------------------------------
 * The mailbox source: the receiving side, on the actor's own thread
 * ------------------------------------------------------------------------------------- */

static void
finish (TallyAddress *self)
{
  TallyActor *actor = self->actor;
  TallyActorClass *klass = TALLY_ACTOR_GET_CLASS (actor);

  if (klass->stopping != NULL)
    klass->stopping (actor);

  tally_actor_remove_timers (actor);
  g_source_destroy (self->source); /* the dispatch keeps it alive until it returns */
  g_clear_pointer (&self->source, g_source_unref);
  self->finished = TRUE;

  if (klass->stopped != NULL)
    klass->stopped (actor);

  self->actor = NULL;
  pthread_mutex_lock (&self->lock);
  self->stopped = TRUE;
  pthread_cond_broadcast (&self->stopped_cond);
  pthread_mutex_unlock (&self->lock);

  g_object_unref (actor);
  tally_arbiter_actor_finished (self->arbiter, self);
}

static void
restart (TallyAddress *self)
{
  TallyActor *old = self->actor;
  TallyActor *fresh = self->new_func (self->new_data);
  TallyActorClass *klass;

  if (fresh == NULL || !TALLY_IS_ACTOR (fresh))
    {
      g_critical ("the factory of %s returned no actor; keeping the failed instance", self->name);
      return;
    }
  tally_actor_remove_timers (old);
  self->actor = NULL;
  self->cached_type = NULL; /* the factory may return another class */
  tally_actor_bind (fresh, self);
  g_object_unref (old);

  klass = TALLY_ACTOR_GET_CLASS (fresh);
  if (klass->started != NULL)
    klass->started (fresh);
}

static void
report_failure (TallyAddress *self, const TallyMessageType *type, const GError *error)
{
  if (self->failure_func == NULL)
    {
      g_warning ("%s failed handling %s: %s (no supervisor, so it keeps running)", self->name,
                 type->name, error->message);
      return;
    }
  if (self->failure_func (self, error, self->failure_data) == TALLY_FAILURE_RESTART)
    restart (self);
}

static void
handle (TallyAddress *self, TallyMessage *message)
{
  TallyActor *actor = self->actor;
  const TallyMessageType *type = message->type;
  g_autoptr (GError) error = NULL;
  TallyHandlerFunc handler;
  gboolean ok, deferred;

  /* Most mailboxes see one message type after another: skip the class table then. */
  if (G_LIKELY (type == self->cached_type))
    handler = self->cached_handler;
  else
    {
      handler = tally_actor_lookup_handler (actor, type);
      self->cached_type = type;
      self->cached_handler = handler;
    }

  tally_message_mark_handling (message);
  if (G_UNLIKELY (handler == NULL))
    {
      if (message->reply_to != NULL)
        answer_error (message, g_error_new (TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_UNHANDLED,
                                            "%s has no handler for %s", self->name, type->name));
      else
        g_warning ("%s has no handler for %s; message dropped", self->name, type->name);
      tally_message_free (message);
      return;
    }

  ok = handler (actor, message, &error);
  deferred = tally_message_take_deferred (message);

  if (G_LIKELY (ok))
    {
      if (deferred)
        return;
      if (G_LIKELY (message->reply_to == NULL))
        type->free_message (message); /* a tell: nothing to answer */
      else
        {
          tally_message_reply (message, NULL);
          tally_message_free (message);
        }
      return;
    }

  if (error == NULL)
    {
      g_critical ("a handler of %s for %s returned FALSE without setting an error", self->name,
                  type->name);
      error = g_error_new (G_IO_ERROR, G_IO_ERROR_FAILED, "%s failed handling %s", self->name,
                           type->name);
    }
  /* The supervisor acts first, so an asker that sees the error also sees its outcome
   * (restarted, or closed after an escalation). */
  report_failure (self, type, error);
  if (!deferred)
    {
      answer_error (message, g_error_copy (error));
      tally_message_free (message);
    }
}

static gboolean
mailbox_ready (GSource *source)
{
  TallyAddress *self = ((TallyMailboxSource *)source)->address;

  return !self->started || self->local_head != NULL || g_atomic_int_get (&self->pending) != 0;
}

static gboolean
mailbox_prepare (GSource *source, gint *timeout)
{
  *timeout = -1;
  return mailbox_ready (source);
}

/* The receiving side, on the actor's own thread: each round takes the whole shared queue
 * in one locked swap (giving back room in the same critical section) and handles it
 * without holding any lock, up to BATCH_MAX messages per dispatch. */
static gboolean
mailbox_dispatch (GSource *source, GSourceFunc callback, gpointer user_data)
{
  TallyAddress *self = ((TallyMailboxSource *)source)->address;
  guint budget = BATCH_MAX;

  if (!self->started)
    {
      TallyActorClass *klass = TALLY_ACTOR_GET_CLASS (self->actor);

      self->started = TRUE;
      if (klass->started != NULL)
        klass->started (self->actor);
    }

  for (;;)
    {
      GQueue admitted = G_QUEUE_INIT;
      TallyMessage *dropped = NULL;
      gboolean closed, killed;

      /* The one lock of a batch: give back room, let waiters in, take the queue. */
      pthread_mutex_lock (&self->lock);
      release_locked (self, &admitted);
      if (self->local_head == NULL)
        {
          self->local_head = self->head;
          self->head = self->tail = NULL;
          g_atomic_int_set (&self->pending, 0);
        }
      closed = self->closed;
      killed = self->killed;
      if (killed)
        {
          dropped = self->head;
          self->head = self->tail = NULL;
        }
      pthread_mutex_unlock (&self->lock);
      succeed_waiters (&admitted);

      if (killed)
        {
          free_message_list (g_steal_pointer (&self->local_head));
          free_message_list (dropped);
          finish (self);
          return G_SOURCE_REMOVE;
        }
      if (self->local_head == NULL)
        {
          if (!closed)
            return G_SOURCE_CONTINUE;
          finish (self);
          return G_SOURCE_REMOVE;
        }
      if (budget == 0)
        return G_SOURCE_CONTINUE;

      while (self->local_head != NULL && budget > 0)
        {
          TallyMessage *message = self->local_head;

          /* The list was written on the senders' cores: start loading the next message
           * while this one is handled. */
          self->local_head = message->next;
          if (self->local_head != NULL)
            __builtin_prefetch (self->local_head);
          handle (self, message);
          self->unreleased++;
          budget--;
          if (G_UNLIKELY (self->unreleased >= self->release_every
                          && g_atomic_int_get (&self->n_waiting) > 0))
            break;
          if (G_UNLIKELY (g_atomic_int_get (&self->killed)))
            break;
        }
    }
}

static void
mailbox_finalize (GSource *source)
{
  tally_address_unref (((TallyMailboxSource *)source)->address);
}

static GSourceFuncs mailbox_funcs = {
  .prepare = mailbox_prepare,
  .check = mailbox_ready,
  .dispatch = mailbox_dispatch,
  .finalize = mailbox_finalize,
};

/* Owner thread: creates the mailbox source and attaches it; the first dispatch runs the
 * `started` hook. */
void
tally_address_attach (TallyAddress *self)
{
  GSource *source = g_source_new (&mailbox_funcs, sizeof (TallyMailboxSource));

  ((TallyMailboxSource *)source)->address = tally_address_ref (self);
  g_source_set_static_name (source, "TallyActor mailbox");
  g_source_attach (source, self->context);
  self->source = source;
}

/* ---------------------------------------------------------------------------------------
 * Addresses
 * ------------------------------------------------------------------------------------- */

TallyAddress *
tally_address_new (TallyArbiter *arbiter, guint capacity, const char *name)
{
  TallyAddress *self = g_new0 (TallyAddress, 1);

  self->ref_count = 1;
  self->arbiter = arbiter;
  self->context = g_main_context_ref (tally_arbiter_get_context (arbiter));
  self->waker = tally_waker_ref (arbiter->waker);
  self->capacity = capacity;
  self->release_every = MAX (capacity / 4, RELEASE_MIN);
  self->name = g_strdup (name);
  pthread_mutex_init (&self->lock, NULL);
  pthread_cond_init (&self->room_cond, NULL);
  tally_cond_init_monotonic (&self->stopped_cond);
  g_queue_init (&self->waiters);
  return self;
}

void
tally_address_set_supervision (TallyAddress *self, TallyFailureFunc failure_func,
                               gpointer failure_data, TallyActorNewFunc new_func, gpointer new_data,
                               GDestroyNotify supervision_destroy)
{
  self->failure_func = failure_func;
  self->failure_data = failure_data;
  self->new_func = new_func;
  self->new_data = new_data;
  self->supervision_destroy = supervision_destroy;
}

/* The arbiter refused the actor (it is stopping): the address is closed at once. */
void
tally_address_discard_unstarted (TallyAddress *self, TallyActor *actor)
{
  pthread_mutex_lock (&self->lock);
  self->closed = TRUE;
  self->stopped = TRUE;
  g_atomic_int_set (&self->killed, TRUE);
  pthread_mutex_unlock (&self->lock);
  self->actor = NULL;
  self->finished = TRUE;
  g_object_unref (actor);
}

TallyAddress *
tally_address_ref (TallyAddress *self)
{
  g_return_val_if_fail (self != NULL, NULL);

  g_atomic_int_inc (&self->ref_count);
  return self;
}

void
tally_address_unref (TallyAddress *self)
{
  GQueue waiters;

  g_return_if_fail (self != NULL);

  if (!g_atomic_int_dec_and_test (&self->ref_count))
    return;

  /* Only an address whose mailbox never ran can still hold messages here. */
  waiters = self->waiters;
  g_queue_init (&self->waiters);
  fail_waiters (&waiters);
  free_message_list (g_steal_pointer (&self->local_head));
  free_message_list (g_steal_pointer (&self->head));
  g_clear_pointer (&self->source, g_source_unref);
  if (self->supervision_destroy != NULL)
    self->supervision_destroy (self->failure_data);
  g_main_context_unref (self->context);
  tally_waker_unref (self->waker);
  pthread_cond_destroy (&self->stopped_cond);
  pthread_cond_destroy (&self->room_cond);
  pthread_mutex_destroy (&self->lock);
  g_free (self->name);
  g_free (self);
}

gboolean
tally_address_tell (TallyAddress *self, TallyMessage *message, GError **error)
{
  g_return_val_if_fail (self != NULL, FALSE);
  g_return_val_if_fail (message != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  if (G_LIKELY (push (self, message, TALLY_PUSH_BLOCK, 0, error)))
    return TRUE;
  tally_message_free (message);
  return FALSE;
}

gboolean
tally_address_try_tell (TallyAddress *self, TallyMessage *message, GError **error)
{
  g_return_val_if_fail (self != NULL, FALSE);
  g_return_val_if_fail (message != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  return push (self, message, TALLY_PUSH_TRY, 0, error);
}

gboolean
tally_address_tell_many (TallyAddress *self, TallyMessage **messages, guint n_messages,
                         GError **error)
{
  gboolean wake = FALSE, own_known = FALSE, own = FALSE;
  TallyActorError failure;
  guint i = 0;

  g_return_val_if_fail (self != NULL, FALSE);
  g_return_val_if_fail (messages != NULL || n_messages == 0, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  pthread_mutex_lock (&self->lock);
  for (;;)
    {
      if (self->closed)
        {
          failure = TALLY_ACTOR_ERROR_CLOSED;
          break;
        }
      while (i < n_messages && has_room_locked (self) && self->waiters.length == 0)
        wake |= enqueue_locked (self, messages[i++]);
      if (i == n_messages)
        {
          pthread_mutex_unlock (&self->lock);
          if (wake)
            tally_waker_notify (self->waker);
          return TRUE;
        }

      /* Full. Outside our lock: tell the receiver what is queued (before we wait on it)
       * and find out whether waiting could ever end. */
      if (wake || !own_known)
        {
          pthread_mutex_unlock (&self->lock);
          if (wake)
            tally_waker_notify (self->waker);
          wake = FALSE;
          if (!own_known)
            own = tally_context_is_callers (self->context);
          own_known = TRUE;
          pthread_mutex_lock (&self->lock);
          continue;
        }
      if (own)
        {
          failure = TALLY_ACTOR_ERROR_FULL;
          break;
        }
      self->n_blocked++;
      update_waiting_locked (self);
      pthread_cond_wait (&self->room_cond, &self->lock);
      self->n_blocked--;
      update_waiting_locked (self);
    }
  pthread_mutex_unlock (&self->lock);
  if (wake)
    tally_waker_notify (self->waker);

  g_set_error (error, TALLY_ACTOR_ERROR, failure, "%s %s: %u of %u messages not sent", self->name,
               failure == TALLY_ACTOR_ERROR_CLOSED ? "is closed" : "has a full mailbox",
               n_messages - i, n_messages);
  for (; i < n_messages; i++)
    tally_message_free (messages[i]);
  return FALSE;
}

void
tally_address_tell_async (TallyAddress *self, TallyMessage *message, GCancellable *cancellable,
                          GAsyncReadyCallback callback, gpointer user_data)
{
  TallyOp *op;

  g_return_if_fail (self != NULL);
  g_return_if_fail (message != NULL);

  op = op_new_async (TALLY_OP_TELL, NULL, tally_address_tell_async, cancellable, callback,
                     user_data);
  op->address = tally_address_ref (self);
  push_async (self, message, op);
  op_watch_cancellable (op, cancellable);
  tally_op_unref (op);
}

gboolean
tally_address_tell_finish (TallyAddress *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), FALSE);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == tally_address_tell_async, FALSE);

  return g_task_propagate_boolean (G_TASK (result), error);
}

void
tally_address_ask_async (TallyAddress *self, TallyMessage *message, GCancellable *cancellable,
                         GAsyncReadyCallback callback, gpointer user_data)
{
  TallyOp *op;

  g_return_if_fail (self != NULL);
  g_return_if_fail (message != NULL);
  g_return_if_fail (message->reply_to == NULL);

  op = op_new_async (TALLY_OP_ASK, message->type->free_reply, tally_address_ask_async, cancellable,
                     callback, user_data);
  message->reply_to = op_ref (op);
  op_watch_cancellable (op, cancellable);
  push_async (self, message, NULL);
  tally_op_unref (op);
}

gpointer
tally_address_ask_finish (TallyAddress *self, GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_is_valid (result, NULL), NULL);
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == tally_address_ask_async, NULL);

  return g_task_propagate_pointer (G_TASK (result), error);
}

gpointer
tally_address_ask_sync (TallyAddress *self, TallyMessage *message, guint timeout_ms, GError **error)
{
  g_autoptr (GError) local_error = NULL;
  gint64 start = g_get_monotonic_time ();
  TallyOp *op;
  gpointer reply;

  g_return_val_if_fail (self != NULL, NULL);
  g_return_val_if_fail (message != NULL, NULL);
  g_return_val_if_fail (message->reply_to == NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  if (tally_context_is_callers (self->context))
    {
      g_set_error (error, TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_WOULD_DEADLOCK,
                   "ask_sync of %s to %s from the thread that runs its context",
                   message->type->name, self->name);
      tally_message_free (message);
      return NULL;
    }

  op = op_new (TALLY_OP_ASK, message->type->free_reply);
  message->reply_to = op_ref (op);
  if (!push (self, message, TALLY_PUSH_BLOCK, timeout_ms, &local_error))
    {
      tally_message_free (message);
      tally_op_unref (op);
      g_propagate_error (error, g_steal_pointer (&local_error));
      return NULL;
    }
  if (timeout_ms > 0)
    {
      /* One budget for the wait for room and the wait for the reply. */
      gint64 spent_ms = (g_get_monotonic_time () - start) / 1000;

      timeout_ms = spent_ms >= timeout_ms ? 1 : timeout_ms - (guint)spent_ms;
    }
  reply = op_wait (op, timeout_ms, error);
  tally_op_unref (op);
  return reply;
}

void
tally_address_stop (TallyAddress *self)
{
  GQueue failed = G_QUEUE_INIT;
  gboolean closed_now;

  g_return_if_fail (self != NULL);

  pthread_mutex_lock (&self->lock);
  closed_now = close_locked (self, FALSE, &failed);
  pthread_mutex_unlock (&self->lock);

  fail_waiters (&failed);
  if (closed_now)
    g_main_context_wakeup (self->context);
}

/* A supervisor gave up: close now and drop what is queued (asks get CLOSED). */
void
tally_address_close_now (TallyAddress *self)
{
  GQueue failed = G_QUEUE_INIT;

  pthread_mutex_lock (&self->lock);
  close_locked (self, TRUE, &failed);
  g_atomic_int_set (&self->pending, 1);
  pthread_mutex_unlock (&self->lock);

  fail_waiters (&failed);
  g_main_context_wakeup (self->context);
}

gboolean
tally_address_wait_stopped (TallyAddress *self, guint timeout_ms)
{
  struct timespec deadline;
  gboolean stopped;

  g_return_val_if_fail (self != NULL, FALSE);

  pthread_mutex_lock (&self->lock);
  stopped = self->stopped;
  pthread_mutex_unlock (&self->lock);
  if (stopped)
    return TRUE;
  if (tally_context_is_callers (self->context))
    return FALSE;

  if (timeout_ms > 0)
    tally_deadline_from_ms (&deadline, timeout_ms);
  pthread_mutex_lock (&self->lock);
  while (!self->stopped)
    {
      if (timeout_ms == 0)
        pthread_cond_wait (&self->stopped_cond, &self->lock);
      else if (pthread_cond_timedwait (&self->stopped_cond, &self->lock, &deadline) == ETIMEDOUT)
        break;
    }
  stopped = self->stopped;
  pthread_mutex_unlock (&self->lock);
  return stopped;
}

gboolean
tally_address_is_closed (TallyAddress *self)
{
  gboolean closed;

  g_return_val_if_fail (self != NULL, TRUE);

  pthread_mutex_lock (&self->lock);
  closed = self->closed;
  pthread_mutex_unlock (&self->lock);
  return closed;
}

guint
tally_address_get_length (TallyAddress *self)
{
  guint length;

  g_return_val_if_fail (self != NULL, 0);

  pthread_mutex_lock (&self->lock);
  length = self->length;
  pthread_mutex_unlock (&self->lock);
  return length;
}

guint
tally_address_get_capacity (TallyAddress *self)
{
  g_return_val_if_fail (self != NULL, 0);

  return self->capacity;
}
