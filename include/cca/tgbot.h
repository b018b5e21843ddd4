/* SPDX-License-Identifier: MIT */
#ifndef CCA_TGBOT_H
#define CCA_TGBOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "cca/common.h"
#include "cca/text.h"

/*
 * The Telegram bot's words and commands (docs/TELEGRAM.md): what the bot says
 * to customers and operators in Russian and English, the command names, the
 * cards that announce an assignment, the inline keyboards and their
 * callback data. The commands follow the seed bots (seeds 001, 002, 004:
 * /register, /operator, /available, /busy, /offline, /status, /clients,
 * /focus, /reply, /next, /use, /end, /done, /history, /stats, /ai, /help).
 * The dialog's own notices (queued with position, an operator joined, closed)
 * are made by handoff.c and reach Telegram as dialog messages; they are not
 * here.
 *
 * Pure: no I/O, no globals but constant tables; every function is
 * thread-safe. Every text is plain text (sent without parse_mode), so
 * customer words placed in it can never become markup.
 */

/* The commands the bot knows (cca_tgbot_cmd_parse). */
enum cca_tgbot_cmd {
    CCA_TGBOT_CMD_NONE, /* not a command we know */
    CCA_TGBOT_CMD_START,
    CCA_TGBOT_CMD_HELP,
    CCA_TGBOT_CMD_REGISTER, /* /register <secret>; also /register_support (seed 001) */
    CCA_TGBOT_CMD_OPERATOR, /* /operator <PIN> (seed 004) */
    CCA_TGBOT_CMD_AVAILABLE,
    CCA_TGBOT_CMD_BUSY,
    CCA_TGBOT_CMD_OFFLINE,
    CCA_TGBOT_CMD_STATUS,
    CCA_TGBOT_CMD_CLIENTS,
    CCA_TGBOT_CMD_FOCUS,   /* /focus <client> */
    CCA_TGBOT_CMD_REPLY,   /* /reply <client> <text> */
    CCA_TGBOT_CMD_NEXT,    /* take the first queued dialog */
    CCA_TGBOT_CMD_USE,     /* /use <client>: take that dialog, or focus it when it is
                              already ours */
    CCA_TGBOT_CMD_END,     /* /end [client]; also /done and /end_chat (seed 001) */
    CCA_TGBOT_CMD_HISTORY, /* /history <client> [limit] */
    CCA_TGBOT_CMD_STATS,
    CCA_TGBOT_CMD_AI, /* /ai [client]: hand back to the AI */
    CCA_TGBOT_CMD__COUNT,
};

/*
 * cca_tgbot_cmd_parse - the command named @name (lower case, without '/' or
 * "@bot", as cca_tg_command gives it): the names above and their aliases
 * ("done", "end_chat", "register_support"). CCA_TGBOT_CMD_NONE otherwise.
 */
enum cca_tgbot_cmd cca_tgbot_cmd_parse(const char *name);

/* cca_tgbot_cmd_operator - true for the commands only an operator may use. */
bool cca_tgbot_cmd_operator(enum cca_tgbot_cmd cmd);

/*
 * cca_tgbot_lang - the language to speak to a user: Russian when
 * @language_code (Telegram's IETF tag, may be NULL or "") is ru, uk, be or
 * kk (any case, with or without a region after '-' or '_'), English for any
 * other non-empty tag, else the script of @text (cca_text_detect_lang; @text
 * may be NULL: English).
 */
enum cca_lang cca_tgbot_lang(const char *language_code, const char *text);

/* The fixed phrases. Those with arguments are printf formats; the comment
 * gives the arguments, in order (a "%s name" is the name to show: the caller
 * passes "Client #<n>" or the like when there is none). Those without
 * arguments hold no '%', so they may go through cca_tgbot_format too. */
enum cca_tgbot_msg {
    CCA_TGBOT_GREETING,       /* /start from a new customer: hello, ask the name */
    CCA_TGBOT_WELCOME_BACK,   /* %s name: /start from a known customer */
    CCA_TGBOT_NAME_SAVED,     /* %s name: the name was stored; ask the question */
    CCA_TGBOT_BAD_NAME,       /* the name was empty, too long or a command: ask again */
    CCA_TGBOT_RATE_ASK,       /* after the close: rate us 1 to 5 (the keyboard follows) */
    CCA_TGBOT_RATE_THANKS,    /* %d score */
    CCA_TGBOT_HELP_CUSTOMER,  /* /help from a customer */
    CCA_TGBOT_HELP_OPERATOR,  /* /help from an operator: every command, one a line */
    CCA_TGBOT_REGISTERED,     /* %s operator name: linked, how to go available */
    CCA_TGBOT_ALREADY,        /* /register or /operator from a linked operator */
    CCA_TGBOT_BAD_SECRET,     /* a wrong secret or PIN (never says which) */
    CCA_TGBOT_TOO_MANY,       /* %d seconds: wrong secrets rate-limited */
    CCA_TGBOT_REG_CLOSED,     /* neither OPERATOR_SECRET nor OPERATOR_PINS is set */
    CCA_TGBOT_NOT_OPERATOR,   /* an operator command from someone who is not one */
    CCA_TGBOT_STATUS_SET,     /* %s status name ("available", ...), localised by caller */
    CCA_TGBOT_NO_CLIENTS,     /* no dialog assigned */
    CCA_TGBOT_UNKNOWN_CLIENT, /* %s what was typed: no such client of yours */
    CCA_TGBOT_FOCUS_SET,      /* %u short number, %s customer name */
    CCA_TGBOT_NEED_FOCUS,     /* plain text with several clients and no focus */
    CCA_TGBOT_QUEUE_EMPTY,    /* /next with nobody waiting */
    CCA_TGBOT_ENDED,          /* %u short number, %s customer name: closed */
    CCA_TGBOT_HANDED_BACK,    /* %u short number, %s customer name: back to the AI */
    CCA_TGBOT_USAGE,          /* %s usage line: wrong arguments */
    CCA_TGBOT_UNKNOWN_COMMAND, /* a command we do not know: see /help */
    CCA_TGBOT_FAILED,          /* %s reason: the service refused (e.g. at the limit) */
    CCA_TGBOT_CUSTOMER_GONE, /* %u short number, %s name: the customer blocked the bot */
    CCA_TGBOT_TRANSFERRED,   /* %u short number, %s name: moved to another operator */
    CCA_TGBOT_MSG__COUNT,
};

/* cca_tgbot_text - the phrase @m in @lang (static); "" for a bad value. */
const char *cca_tgbot_text(enum cca_tgbot_msg m, enum cca_lang lang);

/*
 * cca_tgbot_format - @m in @lang with its printf arguments (see the enum)
 * formatted, as a new string (free). Never NULL: "" for a bad @m or @lang.
 * The arguments are data (a '%' in them is printed as it is).
 */
char *cca_tgbot_format(enum cca_lang lang, enum cca_tgbot_msg m, ...);

/* cca_tgbot_status_name - "доступен"/"available", ... for an operator status
 * name ("available", "busy", "offline"); the name itself when unknown. Static. */
const char *cca_tgbot_status_name(const char *status, enum cca_lang lang);

/*
 * cca_tgbot_usage - the usage line of @cmd ("/reply <client> <text>"), the
 * same in both languages but for the placeholders. Static; "" for NONE.
 */
const char *cca_tgbot_usage(enum cca_tgbot_cmd cmd, enum cca_lang lang);

/*
 * cca_tgbot_commands - the command list for setMyCommands in @lang: a new
 * array of {command, description} (BotCommand: command 1-32 of [a-z0-9_],
 * description 1-256 characters), every command above but the aliases, in
 * enum order. One list for everybody (the default scope): customers see the
 * operator commands too, and are refused them (NOT_OPERATOR).
 */
json_t *cca_tgbot_commands(enum cca_lang lang);

/* One line of a card or a list: a message of the dialog. All borrowed. */
struct cca_tgbot_line {
    const char *role; /* "user", "assistant", "operator", "system" */
    const char *text;
};

/*
 * struct cca_tgbot_card - what an operator is told of a dialog given to them
 * (seed 002: "the operator gets a notification"). All borrowed.
 * @number:      the short number the operator types for this client (>= 1).
 * @name:        the customer's name ("" or NULL: shown as "Client #<number>").
 * @lang:        the customer's language ("ru", "en", or NULL).
 * @channel:     the dialog's channel ("telegram", "api", ...), may be NULL.
 * @reason:      why it came to a human (the AI's routing reason or the
 *               handoff's reason), may be NULL.
 * @waited_s:    seconds the customer waited in the queue, < 0 unknown.
 * @lines, @nlines: the last messages, oldest first (at most 5 are shown;
 *               each text cut to 300 characters with "…").
 * @transfer:    the dialog came by transfer from another operator.
 */
struct cca_tgbot_card {
    unsigned number;
    const char *name;
    const char *lang;
    const char *channel;
    const char *reason;
    double waited_s;
    const struct cca_tgbot_line *lines;
    size_t nlines;
    bool transfer;
};

/*
 * cca_tgbot_card_text - the card in the operator's language @lang (new
 * string): a heading ("New client #3: Anna", or the transfer's), the
 * language, channel, reason and wait when known, the last messages as
 * "<who>: <text>", and how to answer. Every piece the card takes from @c
 * stays on its own line (line breaks and other controls in it become spaces);
 * a message or the reason longer than 300 code points keeps 299 and "…", a
 * name is cut the same way at 64.
 */
char *cca_tgbot_card_text(const struct cca_tgbot_card *c, enum cca_lang lang);

/*
 * Callback data of the inline buttons (at most CCA_TG_CALLBACK_MAX bytes):
 *   "f:<number>"  focus (reply) the client,  "e:<number>"  end (close),
 *   "a:<number>"  hand back to the AI,       "r:<score>:<dialog uuid>" rating.
 */
enum cca_tgbot_action {
    CCA_TGBOT_ACT_NONE,
    CCA_TGBOT_ACT_FOCUS,
    CCA_TGBOT_ACT_END,
    CCA_TGBOT_ACT_AI,
    CCA_TGBOT_ACT_RATE,
};

/* cca_tgbot_card_keyboard - the card's buttons (reply, close, hand back) for
 * client @number in @lang: a new InlineKeyboardMarkup. */
json_t *cca_tgbot_card_keyboard(unsigned number, enum cca_lang lang);

/* cca_tgbot_rate_keyboard - the 1..5 rating buttons of dialog @dialog_id
 * (a UUID, canonicalised into the data): a new InlineKeyboardMarkup, one row;
 * NULL when @dialog_id is NULL or not a UUID. */
json_t *cca_tgbot_rate_keyboard(const char *dialog_id);

/*
 * cca_tgbot_parse_callback - the action of callback data @data (may be NULL):
 * *ret_number for FOCUS/END/AI (1..9999 in plain digits, no sign or leading
 * zero), *ret_score (1..5) and @dialog_id (37 bytes, canonical) for RATE.
 * CCA_TGBOT_ACT_NONE for anything malformed. Only the outputs of the action
 * found are written, none for NONE; each may be NULL.
 */
enum cca_tgbot_action cca_tgbot_parse_callback(const char *data, unsigned *ret_number,
                                               int *ret_score, char dialog_id[37]);

/*
 * cca_tgbot_parse_client - the client named by the first word of @args: a
 * short number ("3" or "#3", 1..9999) into *ret_number with @dialog_id "", or
 * a dialog id (any UUID spelling, canonicalised) into @dialog_id with
 * *ret_number 0. *ret_rest points after the word and its following
 * whitespace (borrowed from @args). Returns false when the first word is
 * neither (or @args is NULL or blank); then nothing is written.
 * @ret_number and @ret_rest may be NULL.
 */
bool cca_tgbot_parse_client(const char *args, unsigned *ret_number, char dialog_id[37],
                            const char **ret_rest);

/* One client in /status or /clients. All borrowed. */
struct cca_tgbot_client {
    unsigned number;
    const char *name;
    const char *status; /* the dialog's status */
    double waiting_s;   /* since the customer's last unanswered message, < 0: none */
    bool focused;
};

/*
 * cca_tgbot_clients_text - /clients (and the body of /status): one line per
 * client ("#3 Anna - in progress, waiting for a reply 2 min", the focused
 * one marked), at most 100 then "… and N more", or the NO_CLIENTS phrase;
 * @status (the operator's status name, localised here) is put first when not
 * NULL (/status). New string.
 */
char *cca_tgbot_clients_text(const char *status, const struct cca_tgbot_client *c,
                             size_t n, enum cca_lang lang);

/*
 * cca_tgbot_relay_text - a customer's message as an operator sees it (seed
 * 001: "signed with the client's name"): "<name> (#<number>): <text>", with
 * "[<media>] " before @text for media (@media "" or NULL: none; @text may be
 * NULL). Without a name: "#<number>: <text>". The name is kept on one line
 * and cut at 64 code points; @text is whole (cca_tg_split a long one).
 * New string.
 */
char *cca_tgbot_relay_text(const char *name, unsigned number, const char *media,
                           const char *text);

/*
 * cca_tgbot_stats_text - an operator's statistics (the JSON of
 * cca_stats_operator_json, record.h, borrowed) as a few lines in @lang:
 * dialogs handled and open, messages, first response and handle time p50,
 * CSAT average and count. A missing or null figure reads as 0 or "no data"
 * (@stats may be NULL). New string.
 */
char *cca_tgbot_stats_text(json_t *stats, enum cca_lang lang);

#endif
