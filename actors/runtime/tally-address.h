/* tally-address.h — addresses: how others reach an actor through its bounded mailbox.
 *
 * A TallyAddress is the refcounted handle of one actor's mailbox: tell (fire and forget,
 * blocking a foreign thread while the mailbox is full), try_tell (fail at once when full),
 * tell_many (a batch under one lock), tell_async (wait for room without blocking a
 * thread), ask_async/ask_finish (the reply delivered on the caller's thread-default main
 * context, as GTask does) and ask_sync (for code outside a main loop, with a timeout).
 *
 * Ordering: messages from one sender thread to one actor are handled in the order sent.
 * Failures are %TALLY_ACTOR_ERROR errors (tally-actor.h).
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>

#include "tally-message.h"

G_BEGIN_DECLS

typedef struct _TallyAddress TallyAddress;

/**
 * tally_address_ref:
 * @address: an actor's address
 *
 * Takes a reference. A reference keeps the address valid (sends to a stopped actor fail
 * with %TALLY_ACTOR_ERROR_CLOSED), not the actor running. Any thread.
 *
 * Returns: (transfer full): @address
 */
TallyAddress *tally_address_ref (TallyAddress *address);

/**
 * tally_address_unref:
 * @address: (transfer full): an actor's address
 *
 * Drops a reference. Dropping the last one does not stop the actor (its arbiter keeps it
 * running until tally_address_stop() or tally_arbiter_stop()). Any thread.
 */
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

/**
 * tally_address_tell_finish:
 * @address: the receiver
 * @result: the result given to the callback of tally_address_tell_async()
 * @error: return location for %TALLY_ACTOR_ERROR_CLOSED or %G_IO_ERROR_CANCELLED
 *
 * Returns: %TRUE if the message was enqueued
 */
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

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyAddress, tally_address_unref)

G_END_DECLS
