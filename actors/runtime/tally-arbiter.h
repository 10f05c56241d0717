/* tally-arbiter.h — arbiters: the threads and main contexts that actors run on.
 *
 * An arbiter is a thread running a GMainLoop on its own GMainContext, or a wrapper around
 * a context the caller already iterates (such as the main context). Several actors can
 * live on one arbiter; their handlers, hooks and timers all run on its thread, one at a
 * time, which is why an actor's state needs no locks. Stopping an arbiter stops its actors
 * and joins its thread.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

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

/**
 * tally_arbiter_ref:
 * @arbiter: an arbiter
 *
 * Takes a reference. Any thread.
 *
 * Returns: (transfer full): @arbiter
 */
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

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyArbiter, tally_arbiter_unref)

G_END_DECLS
