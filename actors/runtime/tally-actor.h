/* tally-actor.h — the actor runtime's actor class and error domain; the umbrella header.
 *
 * An *actor* is a TallyActor subclass that owns private state and a *mailbox*; the
 * mailbox is a GSource attached to its arbiter's context (tally-arbiter.h) that drains
 * messages (tally-message.h) in batches and wakes the context only when it goes from
 * empty to non-empty. Only the actor's handlers touch its state, always on its arbiter's
 * thread, so the state needs no locks. Others reach it through its address
 * (tally-address.h): tell, try_tell, tell_async, ask_async, ask_sync.
 *
 * Including this header includes the message, arbiter and address headers too.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <gio/gio.h>

#include "tally-address.h"
#include "tally-arbiter.h"
#include "tally-message.h"

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
 * Actors
 * ------------------------------------------------------------------------------------- */

#define TALLY_TYPE_ACTOR (tally_actor_get_type ())
G_DECLARE_DERIVABLE_TYPE (TallyActor, tally_actor, TALLY, ACTOR, GObject)

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

G_END_DECLS
