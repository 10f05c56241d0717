/* tally-message.c — the message header's helpers: init, free, reply, defer.
 *
 * A message's header carries the link of its mailbox queue (`next`) and, for an ask, the
 * pending reply (`reply_to`, a TallyOp of tally-address.c). Replying completes that op
 * exactly once; freeing a message that was asked and never answered answers it with
 * %TALLY_ACTOR_ERROR_CLOSED, so no asker waits forever. A handler that defers a message
 * marks it here, and the mailbox (tally-address.c) then leaves it to the handler.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#include "tally-actor-private.h"

/* A handler that calls tally_message_defer() leaves this in message->next, which is
 * otherwise NULL while the message is being handled. */
static TallyMessage deferred_mark;

void
tally_message_init (TallyMessage *message, const TallyMessageType *type)
{
  g_return_if_fail (message != NULL);
  g_return_if_fail (type != NULL && type->free_message != NULL);

  message->type = type;
  message->next = NULL;
  message->reply_to = NULL;
}

void
tally_message_free (TallyMessage *message)
{
  TallyOp *op;

  if (message == NULL)
    return;

  op = g_steal_pointer (&message->reply_to);
  if (op != NULL)
    {
      tally_op_complete (op, NULL,
                         g_error_new (TALLY_ACTOR_ERROR, TALLY_ACTOR_ERROR_CLOSED,
                                      "%s was not handled: the actor is closed",
                                      message->type->name));
      tally_op_unref (op);
    }
  message->type->free_message (message);
}

void
tally_message_reply (TallyMessage *message, gpointer reply)
{
  TallyOp *op;

  g_return_if_fail (message != NULL);

  op = g_steal_pointer (&message->reply_to);
  if (op == NULL)
    {
      if (reply != NULL && message->type->free_reply != NULL)
        message->type->free_reply (reply);
      return;
    }
  tally_op_complete (op, reply, NULL);
  tally_op_unref (op);
}

TallyMessage *
tally_message_defer (TallyMessage *message)
{
  g_return_val_if_fail (message != NULL, NULL);

  message->next = &deferred_mark;
  return message;
}

gboolean
tally_message_is_ask (const TallyMessage *message)
{
  g_return_val_if_fail (message != NULL, FALSE);

  return message->reply_to != NULL;
}

void
tally_message_mark_handling (TallyMessage *message)
{
  message->next = NULL;
}

gboolean
tally_message_take_deferred (TallyMessage *message)
{
  if (message->next != &deferred_mark)
    return FALSE;
  message->next = NULL;
  return TRUE;
}
