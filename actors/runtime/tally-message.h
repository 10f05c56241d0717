/* tally-message.h — messages: the plain structs that actors hand each other.
 *
 * A message is a struct whose first member is a TallyMessage header naming its
 * TallyMessageType (name and free functions; types are compared by address). Each actor
 * class declares which message types it handles (tally_actor_class_add_handler(), as
 * actix's `Handler<M>` does). A message has one owner at a time: the sender until a tell
 * succeeds, then the runtime, which frees it after its handler returns (unless the handler
 * deferred it to reply later). The reply to an ask travels back through the header.
 *
 * Copyright the Tally authors. SPDX-License-Identifier: MIT
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

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

G_DEFINE_AUTOPTR_CLEANUP_FUNC (TallyMessage, tally_message_free)

G_END_DECLS
