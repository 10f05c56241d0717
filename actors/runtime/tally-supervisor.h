/* tally-supervisor.h — supervisors: restart failed actors, give up and escalate as OTP does.
 *
 * A TallySupervisor watches the actors started through it (its children). When a child's
 * handler fails, the supervisor restarts it behind the same address, so senders keep the
 * address and the messages queued for it; when failures come too often it gives up,
 * closes its children and escalates to its parent supervisor, as OTP's one-for-one
 * strategy with `intensity` and `period` does. tally_supervisor_new() describes a restart
 * and an escalation step by step.
 *
 * An actor started with plain tally_actor_start() has no supervisor: when its handler
 * fails the runtime logs a warning and the same instance keeps running.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include "tally-actor.h"

G_BEGIN_DECLS

/**
 * TallyActorFactory:
 * @data: the data given to tally_supervisor_start_child()
 *
 * Creates a new, unstarted instance of a child actor. Called once by
 * tally_supervisor_start_child() on the calling thread, then once per restart on the
 * child's own context; it must be safe to call from both.
 *
 * Returns: (transfer full): a new actor
 */
typedef TallyActor *(*TallyActorFactory) (gpointer data);

#define TALLY_TYPE_SUPERVISOR (tally_supervisor_get_type ())
G_DECLARE_FINAL_TYPE (TallySupervisor, tally_supervisor, TALLY, SUPERVISOR, GObject)

/**
 * tally_supervisor_new:
 * @parent: (nullable): the supervisor this one escalates to
 * @max_restarts: the most restarts allowed within @period_ms (OTP's `intensity`)
 * @period_ms: the sliding window for @max_restarts, in milliseconds (OTP's `period`)
 *
 * Creates a one-for-one supervisor. Any thread.
 *
 * When a child's handler fails (returns %FALSE with a GError), the asker of that message
 * gets the error and the supervisor restarts the child: a fresh instance from the child's
 * factory takes over behind the same address, with the messages still queued for it, and
 * its `started` hook runs again. The failed instance's timers are removed and it is
 * released (its dispose/finalize run; its `stopping`/`stopped` hooks do not, since its
 * mailbox lives on).
 *
 * If more than @max_restarts restarts would happen within @period_ms the supervisor gives
 * up. It then closes every child (messages still queued are dropped and their asks
 * answered with %TALLY_ACTOR_ERROR_CLOSED; later sends fail with
 * %TALLY_ACTOR_ERROR_CLOSED), emits #TallySupervisor::escalated and reports the failure to
 * @parent, if any, which counts it against its own intensity (and may escalate in turn).
 * Children of an escalated supervisor are not restarted.
 *
 * Returns: (transfer full): the supervisor
 */
G_GNUC_WARN_UNUSED_RESULT
TallySupervisor *tally_supervisor_new (TallySupervisor *parent, guint max_restarts,
                                       guint period_ms);

/**
 * tally_supervisor_start_child:
 * @self: a supervisor
 * @factory: creates each instance of the child
 * @data: data for @factory
 * @destroy: (nullable): frees @data once the child's address is freed
 * @arbiter: (nullable): where the child runs, as for tally_actor_start()
 * @mailbox_capacity: the child's mailbox capacity in messages; 0 for unbounded
 *
 * Creates the child's first instance with @factory and starts it, supervised. Any thread.
 * On an escalated supervisor the child is not started and the address returned is
 * already closed.
 *
 * Returns: (transfer full): the child's address, which stays the same across restarts
 */
G_GNUC_WARN_UNUSED_RESULT
TallyAddress *tally_supervisor_start_child (TallySupervisor *self, TallyActorFactory factory,
                                            gpointer data, GDestroyNotify destroy,
                                            TallyArbiter *arbiter, guint mailbox_capacity);

/**
 * tally_supervisor_stop:
 * @self: a supervisor
 *
 * Stops every child as tally_address_stop() does (each handles what was sent before).
 * Does not wait; use tally_address_wait_stopped() or tally_arbiter_stop(). Any thread.
 */
void tally_supervisor_stop (TallySupervisor *self);

/**
 * tally_supervisor_get_restarts:
 * @self: a supervisor
 *
 * Returns: how many restarts the supervisor has made so far. Any thread.
 */
guint tally_supervisor_get_restarts (TallySupervisor *self);

/**
 * tally_supervisor_is_escalated:
 * @self: a supervisor
 *
 * Returns: whether the supervisor gave up (exceeded its intensity). Any thread.
 */
gboolean tally_supervisor_is_escalated (TallySupervisor *self);

G_END_DECLS
