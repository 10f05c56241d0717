/* tally-actor.h — the actor runtime: arbiters, actors, typed messages, addresses.
 *
 * An *arbiter* is a thread running a GMainLoop on its own GMainContext (or a wrapper
 * around a context the caller already iterates, such as the main context). Several actors
 * can live on one arbiter. An *actor* is a TallyActor subclass that owns private state and
 * a *mailbox*; the mailbox is a GSource attached to the arbiter's context that drains
 * messages in batches and wakes the context only when it goes from empty to non-empty.
 * Only the actor's handlers touch its state, always on its arbiter's thread, so the state
 * needs no locks.
 *
 * Messages are plain structs whose first member is a TallyMessage header naming its
 * TallyMessageType. Each actor class declares which message types it handles with
 * tally_actor_class_add_handler(), as actix's `Handler<M>` does.
 *
 * A TallyAddress is the refcounted handle by which others reach an actor: tell (fire and
 * forget), try_tell (fail at once when full), tell_async (wait for room without blocking a
 * thread), ask_async/ask_finish (reply delivered on the caller's thread-default main
 * context, as GTask does) and ask_sync (for code outside a main loop, with a timeout).
 *
 * Ordering: messages from one sender thread to one actor are handled in the order sent.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* ---------------------------------------------------------------------------------------
 * Errors
 * ------------------------------------------------------------------------------------- */

/**
 * TALLY_ACTOR_ERROR:
 *
 * Error domain of the actor runtime. Errors in this domain are from #TallyActorError.
 */
#define TALLY_ACTOR_ERROR (tally_actor_error_quark ())

/**
 * TallyActorError:
 * @TALLY_ACTOR_ERROR_CLOSED: the actor is stopping or has stopped (or its supervisor gave
 *   up on it); the message was not and will not be handled.
 * @TALLY_ACTOR_ERROR_FULL: the mailbox holds its capacity of messages.
 * @TALLY_ACTOR_ERROR_TIMEOUT: tally_address_ask_sync() got no reply in time.
 * @TALLY_ACTOR_ERROR_WOULD_DEADLOCK: a synchronous call was made from the thread that runs
 *   the target actor's own context, where waiting could never end. Use the async form.
 * @TALLY_ACTOR_ERROR_UNHANDLED: the actor's class has no handler for the message type.
 * @TALLY_ACTOR_ERROR_CANCELLED: reserved; cancellation itself is reported as
 *   %G_IO_ERROR_CANCELLED, as GIO does.
 *
 * Errors of the actor runtime.
 */
typedef enum
{
  TALLY_ACTOR_ERROR_CLOSED,
  TALLY_ACTOR_ERROR_FULL,
  TALLY_ACTOR_ERROR_TIMEOUT,
  TALLY_ACTOR_ERROR_WOULD_DEADLOCK,
  TALLY_ACTOR_ERROR_UNHANDLED,
  TALLY_ACTOR_ERROR_CANCELLED,
} TallyActorError;

GQuark tally_actor_error_quark (void);

/* ---------------------------------------------------------------------------------------
 * Messages
 * ------------------------------------------------------------------------------------- */

typedef struct _TallyMessage TallyMessage;
typedef struct _TallyMessageType TallyMessageType;

/**
 * TallyMessageType:
 * @name: a static name for logs and errors, such as "AddWords".
 * @free_message: frees a whole message of this type (header included); required.
 * @free_reply: frees a reply value of this type when nobody takes it; %NULL when replies
 *   need no freeing (or the type has none).
 *
 * Describes one message type. Declare one `static const` instance per type; the runtime
 * compares types by address.
 */
struct _TallyMessageType
{
  const char *name;
  GDestroyNotify free_message;
  GDestroyNotify free_reply;
};

/**
 * TallyMessage:
 * @type: the message's type.
 *
 * Header that starts every message struct:
 *
 * |[<!-- language="C" -->
 * typedef struct { TallyMessage parent; char *word; } AddWord;
 * static void add_word_free (gpointer p) { AddWord *m = p; g_free (m->word); g_free (m); }
 * static const TallyMessageType add_word_type = { "AddWord", add_word_free, NULL };
 *
 * AddWord *m = g_new0 (AddWord, 1);
 * tally_message_init (&m->parent, &add_word_type);
 * ]|
 *
 * A message belongs to one owner at a time: the sender until a tell succeeds, then the
 * runtime, which frees it after its handler returns (unless the handler deferred it).
 */
struct _TallyMessage
{
  const TallyMessageType *type;
  /*< private >*/
  TallyMessage *next;
  gpointer reply_to;
};

/**
 * tally_message_init:
 * @message: (not nullable): the header of a freshly allocated message
 * @type: (not nullable): its type, which must outlive the message
 *
 * Initializes the header. Any thread.
 */
void tally_message_init (TallyMessage *message, const TallyMessageType *type);

/**
 * tally_message_free:
 * @message: (transfer full) (nullable): a message no one else owns
 *
 * Frees @message with its type's @free_message. A pending ask that was never answered is
 * answered with %TALLY_ACTOR_ERROR_CLOSED. Any thread.
 */
void tally_message_free (TallyMessage *message);

/**
 * tally_message_reply:
 * @message: the message being handled (or one deferred with tally_message_defer())
 * @reply: (transfer full) (nullable): the reply value; freed with the type's @free_reply
 *   when nobody asked or the asker has gone
 *
 * Sets the reply to an ask. Call at most once per message, from the handler or, for a
 * deferred message, later from the actor's context. A told (not asked) message ignores
 * the reply and frees it. A handler that returns %TRUE without replying answers the ask
 * with a %NULL reply.
 */
void tally_message_reply (TallyMessage *message, gpointer reply);

/**
 * tally_message_defer:
 * @message: the message being handled
 *
 * Takes the message out of the runtime's hands so the handler can reply later (for example
 * after asking another actor). The caller then owns @message and must eventually call
 * tally_message_reply() and tally_message_free().
 *
 * Returns: (transfer full): @message
 */
TallyMessage *tally_message_defer (TallyMessage *message);

/**
 * tally_message_is_ask:
 * @message: a message
 *
 * Returns: whether someone waits for a reply to @message
 */
gboolean tally_message_is_ask (const TallyMessage *message);

/* ---------------------------------------------------------------------------------------
 * Arbiters
 * ------------------------------------------------------------------------------------- */

typedef struct _TallyArbiter TallyArbiter;

/**
 * tally_arbiter_new:
 * @name: (not nullable): thread name, at most 15 bytes shown by the kernel
 *
 * Starts a thread that runs a GMainLoop on a new GMainContext, pushed as that thread's
 * thread-default context. Any thread.
 *
 * When idle, the thread watches for new messages for up to 20 µs (spinning) before it
 * sleeps in poll() (it stops spinning for 100 ms when it finds itself preempted while
 * spinning, as on a busy machine), and senders skip the wakeup system call while it is
 * awake; while its mailboxes stay busy it polls its file descriptors only every 16th loop
 * iteration. This is what makes tells and ping-pong between arbiters cheap.
 *
 * Returns: (transfer full): the arbiter; stop it with tally_arbiter_stop() (dropping the
 *   last reference also stops it)
 */
G_GNUC_WARN_UNUSED_RESULT
TallyArbiter *tally_arbiter_new (const char *name);

/**
 * tally_arbiter_new_for_context:
 * @context: (nullable): a context the caller iterates itself; %NULL for the global default
 *
 * Wraps an existing context, for actors that live on the main thread. No thread is
 * started; whoever owns @context runs it. Actors started on the wrapper need that
 * context to be iterated to start, handle messages and stop. Any thread.
 *
 * Returns: (transfer full): the arbiter
 */
G_GNUC_WARN_UNUSED_RESULT
TallyArbiter *tally_arbiter_new_for_context (GMainContext *context);

/**
 * tally_arbiter_get_context:
 * @arbiter: an arbiter
 *
 * Returns: (transfer none): the context its actors run on
 */
GMainContext *tally_arbiter_get_context (TallyArbiter *arbiter);

/**
 * tally_arbiter_stop:
 * @arbiter: an arbiter
 *
 * Stops every actor still running on @arbiter (each handles everything sent to it before,
 * as tally_address_stop() says), quits the loop and joins the thread. Idempotent. Must not
 * be called from the arbiter's own thread (nor from a handler). For an arbiter made with
 * tally_arbiter_new_for_context() it iterates that context until its actors have stopped
 * when the caller can acquire it, and otherwise waits for its owner to run them to the
 * end. Actors started on a stopped arbiter get an address that is already closed.
 */
void tally_arbiter_stop (TallyArbiter *arbiter);

TallyArbiter *tally_arbiter_ref (TallyArbiter *arbiter);

/**
 * tally_arbiter_unref:
 * @arbiter: (transfer full): an arbiter
 *
 * Drops a reference; the last one stops the arbiter first, as tally_arbiter_stop() does
 * (so it must not be dropped on the arbiter's own thread). Running actors do not hold a
 * reference to their arbiter.
 */
void tally_arbiter_unref (TallyArbiter *arbiter);

/* ---------------------------------------------------------------------------------------
 * Actors
 * ------------------------------------------------------------------------------------- */

#define TALLY_TYPE_ACTOR (tally_actor_get_type ())
G_DECLARE_DERIVABLE_TYPE (TallyActor, tally_actor, TALLY, ACTOR, GObject)

typedef struct _TallyAddress TallyAddress;

/**
 * TallyHandlerFunc:
 * @self: the actor, on its arbiter's thread
 * @message: (transfer none): the message; reply with tally_message_reply()
 * @error: return location for a failure
 *
 * Handles one message. Returning %FALSE with @error set reports the failure to the
 * actor's supervisor (which may restart it, see tally-supervisor.h) and then answers an
 * ask with that error, so an asker that sees the error also sees the supervisor's
 * decision. An actor without a supervisor logs a warning and keeps running (the same
 * instance, with its state).
 *
 * Returns: %TRUE on success
 */
typedef gboolean (*TallyHandlerFunc) (TallyActor *self, TallyMessage *message, GError **error);

/**
 * TallyActorClass:
 * @started: runs on the actor's context before its first message
 * @stopping: runs once a stop has been requested, after every message sent before it was
 *   handled; new sends already fail with %TALLY_ACTOR_ERROR_CLOSED
 * @stopped: runs last, after the mailbox is closed and its timers removed
 */
struct _TallyActorClass
{
  GObjectClass parent_class;

  void (*started) (TallyActor *self);
  void (*stopping) (TallyActor *self);
  void (*stopped) (TallyActor *self);

  /*< private >*/
  gpointer handlers;
  gpointer padding[8];
};

/**
 * tally_actor_class_add_handler:
 * @klass: an actor class, in its class_init
 * @type: a message type
 * @handler: its handler
 *
 * Declares that actors of @klass handle @type. Subclasses inherit their parent's handlers
 * and may override them.
 */
void tally_actor_class_add_handler (TallyActorClass *klass, const TallyMessageType *type,
                                    TallyHandlerFunc handler);

/**
 * tally_actor_get_address:
 * @self: a started actor
 *
 * Returns: (transfer none) (nullable): its address, %NULL before it is started
 */
TallyAddress *tally_actor_get_address (TallyActor *self);

/**
 * tally_actor_get_context:
 * @self: a started actor
 *
 * Returns: (transfer none): the context its handlers, hooks and timers run on
 */
GMainContext *tally_actor_get_context (TallyActor *self);

/**
 * tally_actor_run_later:
 * @self: a started actor, from its own context
 * @delay_ms: delay in milliseconds
 * @func: callback, run once on the actor's context
 * @user_data: data for @func
 * @destroy: (nullable): frees @user_data
 *
 * Returns: a source id valid on the actor's context; timers are removed when it stops
 */
guint tally_actor_run_later (TallyActor *self, guint delay_ms, GSourceFunc func, gpointer user_data,
                             GDestroyNotify destroy);

/**
 * tally_actor_run_interval:
 * @self: a started actor, from its own context
 * @interval_ms: period in milliseconds
 * @func: callback, run on the actor's context until it returns %G_SOURCE_REMOVE
 * @user_data: data for @func
 * @destroy: (nullable): frees @user_data
 *
 * Returns: a source id valid on the actor's context; timers are removed when it stops
 */
guint tally_actor_run_interval (TallyActor *self, guint interval_ms, GSourceFunc func,
                                gpointer user_data, GDestroyNotify destroy);

/**
 * tally_actor_cancel_timer:
 * @self: an actor, from its own context
 * @timer_id: an id from tally_actor_run_later() or tally_actor_run_interval()
 */
void tally_actor_cancel_timer (TallyActor *self, guint timer_id);

/**
 * tally_actor_start:
 * @actor: (transfer full): a new, unstarted actor
 * @arbiter: (nullable): where it runs; %NULL for the calling thread's thread-default
 *   context: on an arbiter's own thread (in a handler) that arbiter, elsewhere a wrapper
 *   as made by tally_arbiter_new_for_context(), one per context, kept for the life of
 *   the process (nothing stops it: stop such actors with tally_address_stop())
 * @mailbox_capacity: the most messages its mailbox holds; 0 means unbounded
 *
 * Attaches the actor's mailbox to @arbiter's context and schedules its `started` hook.
 * Messages may be sent to the address at once; they wait until the actor has started.
 * The arbiter keeps the actor running until it is stopped, whether or not anyone still
 * holds its address. Any thread.
 *
 * Returns: (transfer full): the actor's address
 */
G_GNUC_WARN_UNUSED_RESULT
TallyAddress *tally_actor_start (TallyActor *actor, TallyArbiter *arbiter, guint mailbox_capacity);

/* ---------------------------------------------------------------------------------------
 * Addresses
 * ------------------------------------------------------------------------------------- */

TallyAddress *tally_address_ref (TallyAddress *address);
void tally_address_unref (TallyAddress *address);

/**
 * tally_address_tell:
 * @address: the receiver
 * @message: (transfer full): the message; consumed whatever happens
 * @error: return location for %TALLY_ACTOR_ERROR_CLOSED or %TALLY_ACTOR_ERROR_FULL
 *
 * Fire and forget. When the mailbox is full, a sender on another thread blocks until there
 * is room or the actor stops; a sender running on the receiver's own context never blocks
 * (that would deadlock): its message is refused with %TALLY_ACTOR_ERROR_FULL and freed.
 * Inside actors prefer tally_address_try_tell() or tally_address_tell_async(). Any thread.
 *
 * Returns: %TRUE if the message was enqueued
 */
gboolean tally_address_tell (TallyAddress *address, TallyMessage *message, GError **error);

/**
 * tally_address_try_tell:
 * @address: the receiver
 * @message: (transfer full): the message; consumed only on success
 * @error: return location for %TALLY_ACTOR_ERROR_CLOSED or %TALLY_ACTOR_ERROR_FULL
 *
 * Enqueues @message if there is room now, or fails at once. On failure the caller still
 * owns @message (so it can keep it and try again). Any thread.
 *
 * Returns: %TRUE if the message was enqueued
 */
gboolean tally_address_try_tell (TallyAddress *address, TallyMessage *message, GError **error);

/**
 * tally_address_tell_many:
 * @address: the receiver
 * @messages: (array length=n_messages) (transfer full): the messages, in sending order;
 *   all consumed whatever happens (the array itself stays the caller's)
 * @n_messages: how many
 * @error: return location for %TALLY_ACTOR_ERROR_CLOSED or %TALLY_ACTOR_ERROR_FULL
 *
 * Tells @n_messages messages under one lock of the mailbox (and at most one wakeup of
 * its context) instead of one each: the fast path for a sender with a batch ready. What
 * does not fit in a bounded mailbox is then told one by one, blocking or failing as
 * tally_address_tell() does; on failure the messages not enqueued are freed. Any thread.
 *
 * Returns: %TRUE if every message was enqueued
 */
gboolean tally_address_tell_many (TallyAddress *address, TallyMessage **messages, guint n_messages,
                                  GError **error);

/**
 * tally_address_tell_async:
 * @address: the receiver
 * @message: (transfer full): the message; consumed whatever happens
 * @cancellable: (nullable): cancels the wait for room
 * @callback: called on the caller's thread-default context once @message is enqueued, or
 *   the actor stopped
 * @user_data: data for @callback
 *
 * Enqueues @message as soon as there is room without blocking any thread: the form of
 * backpressure to use from inside an actor.
 */
void tally_address_tell_async (TallyAddress *address, TallyMessage *message,
                               GCancellable *cancellable, GAsyncReadyCallback callback,
                               gpointer user_data);
gboolean tally_address_tell_finish (TallyAddress *address, GAsyncResult *result, GError **error);

/**
 * tally_address_ask_async:
 * @address: the receiver
 * @message: (transfer full): the message; consumed whatever happens
 * @cancellable: (nullable): abandons the wait for the reply (the message may still be handled)
 * @callback: called on the caller's thread-default main context with the reply
 * @user_data: data for @callback
 *
 * Sends @message and delivers the handler's reply (or its error) to @callback. Waits for
 * room like tally_address_tell_async(). Safe between actors on the same arbiter.
 */
void tally_address_ask_async (TallyAddress *address, TallyMessage *message,
                              GCancellable *cancellable, GAsyncReadyCallback callback,
                              gpointer user_data);

/**
 * tally_address_ask_finish:
 * @address: the receiver
 * @result: the result given to the callback
 * @error: return location for the handler's error, %TALLY_ACTOR_ERROR_CLOSED,
 *   %TALLY_ACTOR_ERROR_UNHANDLED or %G_IO_ERROR_CANCELLED
 *
 * Returns: (transfer full) (nullable): the reply, to be freed as its message type says
 */
gpointer tally_address_ask_finish (TallyAddress *address, GAsyncResult *result, GError **error);

/**
 * tally_address_ask_sync:
 * @address: the receiver
 * @message: (transfer full): the message; consumed whatever happens
 * @timeout_ms: the longest wait in milliseconds, for room in a full mailbox and for the
 *   reply together; 0 waits forever
 * @error: return location for %TALLY_ACTOR_ERROR_TIMEOUT, %TALLY_ACTOR_ERROR_WOULD_DEADLOCK,
 *   %TALLY_ACTOR_ERROR_CLOSED, %TALLY_ACTOR_ERROR_UNHANDLED, or the handler's error
 *
 * Blocks the calling thread until the reply comes, for code outside a main loop (a CLI,
 * a test). Called from the thread that runs the receiver's context it fails at once with
 * %TALLY_ACTOR_ERROR_WOULD_DEADLOCK instead of hanging. On timeout a late reply is freed.
 *
 * Returns: (transfer full) (nullable): the reply
 */
gpointer tally_address_ask_sync (TallyAddress *address, TallyMessage *message, guint timeout_ms,
                                 GError **error);

/**
 * tally_address_stop:
 * @address: an actor's address
 *
 * Asks the actor to stop: sends after this call fail with %TALLY_ACTOR_ERROR_CLOSED;
 * messages enqueued before it are still handled; then `stopping`, then the mailbox is
 * closed and `stopped` runs. Senders blocked for room and tell_async()/ask_async() calls
 * still waiting for room are answered with %TALLY_ACTOR_ERROR_CLOSED (their messages were
 * never enqueued). Idempotent; any thread; does not wait.
 */
void tally_address_stop (TallyAddress *address);

/**
 * tally_address_wait_stopped:
 * @address: an actor's address
 * @timeout_ms: the longest wait in milliseconds; 0 waits forever
 *
 * Blocks until the actor's `stopped` hook has run. Fails (returns %FALSE) from the
 * actor's own thread or on timeout.
 *
 * Returns: %TRUE once stopped
 */
gboolean tally_address_wait_stopped (TallyAddress *address, guint timeout_ms);

/**
 * tally_address_is_closed:
 * @address: an actor's address
 *
 * Returns: whether sends now fail with %TALLY_ACTOR_ERROR_CLOSED
 */
gboolean tally_address_is_closed (TallyAddress *address);

/**
 * tally_address_get_length:
 * @address: an actor's address
 *
 * Returns: the number of messages waiting in the mailbox, a snapshot that may be stale
 */
guint tally_address_get_length (TallyAddress *address);

/**
 * tally_address_get_capacity:
 * @address: an actor's address
 *
 * Returns: the mailbox capacity in messages, 0 for unbounded
 */
guint tally_address_get_capacity (TallyAddress *address);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyArbiter, tally_arbiter_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyAddress, tally_address_unref)
G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyMessage, tally_message_free)

G_END_DECLS
