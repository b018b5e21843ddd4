#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""A fake Telegram Bot API server on loopback, for the Telegram channel's
tests (issue 13, tests/integration/test_telegram.py) and benchmarks.

It serves POST and GET <base>/bot<token>/<method> like https://api.telegram.org
(the Bot API reference, https://core.telegram.org/bots/api: "Making requests",
"Getting updates", "Available types", "Available methods", "Updating
messages"), records every call, checks each request against the documented
shapes of the methods the channel uses, and answers like Telegram does.

In-process use (Python 3, stdlib only):

    fake = FakeBotAPI("123456:TEST-token").start()   # 127.0.0.1, port 0
    fake.base_url                                      # http://127.0.0.1:N
    ivan = fake.user(1001, "Иван", "ru")
    fake.send_text(ivan, "/start")                     # an Update is queued
    call = fake.wait_call("sendMessage", chat_id=1001)
    fake.violations                                    # [] when every request was well formed
    fake.stop()

Command line:

    python3 tests/fake_telegram.py --port 0 --token T   # prints "port=N", serves
    python3 tests/fake_telegram.py --selftest           # exercises the fake itself

and the control routes of the command-line mode (never recorded as calls):

    POST /_fake/updates   a JSON list of Update objects or simple specs
                          ({"chat_id", "text" | "photo" | "document" | "voice" |
                          "sticker" | "callback_data" [+ "message_id"], "first_name",
                          "language_code", "caption", "edit_of"}) to enqueue;
                          answers {"ok": true, "update_ids": [...]}
    GET  /_fake/calls?since=K   calls with seq >= K: {"calls": [...], "next": K'}
    GET  /_fake/updates?since=K the update log (enqueued / first returned times)
    POST /_fake/fault     {"method", "kind": "429"|"502"|"500"|"drop"|"malformed"|"403",
                          "count", "chat_id", "retry_after"}
    POST /_fake/block, /_fake/unblock   {"chat_id"}
    GET  /_fake/stats     the measurements (rates, duplicates, counts)
    POST /_fake/reset     forget calls and measurements (chats and updates stay)

Times are time.monotonic() of the fake's process, in seconds.

Measurements (stats()): per chat, the smallest interval between two
consecutive successful sends (sendMessage, copyMessage, sendDocument,
forwardMessage) to that chat; globally, the largest number of successful
sends in any 1-second sliding window; duplicates of outgoing messages (the
same chat and text, or the same copied message, sent successfully more than
once).
"""
import argparse
import email.parser
import email.policy
import hashlib
import json
import re
import socket
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SEND_METHODS = ("sendMessage", "copyMessage", "sendDocument", "forwardMessage")
UPDATE_TYPES = (
    "message", "edited_message", "channel_post", "edited_channel_post",
    "business_connection", "business_message", "edited_business_message",
    "deleted_business_messages", "message_reaction", "message_reaction_count",
    "inline_query", "chosen_inline_result", "callback_query", "shipping_query",
    "pre_checkout_query", "purchased_paid_media", "poll", "poll_answer",
    "my_chat_member", "chat_member", "chat_join_request", "chat_boost",
    "removed_chat_boost")
BUTTON_ACTIONS = ("url", "callback_data", "web_app", "login_url", "switch_inline_query",
                  "switch_inline_query_current_chat", "switch_inline_query_chosen_chat",
                  "copy_text", "callback_game", "pay")
CHAT_ACTIONS = ("typing", "upload_photo", "record_video", "upload_video", "record_voice",
                "upload_voice", "upload_document", "choose_sticker", "find_location",
                "record_video_note", "upload_video_note")
PARSE_MODES = ("HTML", "Markdown", "MarkdownV2")
COMMAND_RE = re.compile(r"^[a-z0-9_]{1,32}$")
SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


def utf16_len(s):
    """The length of @s in UTF-16 code units: what the Bot API counts."""
    return len(s.encode("utf-16-le", "surrogatepass")) // 2


# ---------------------------------------------------------------------------
# Request shapes. Each method: {field: (kind, required, check)}; kinds are
# "int", "str", "bool", "obj", "arr", "chat" (Integer or String), "markup"
# (any reply markup), "inline" (InlineKeyboardMarkup), "file" (InputFile or
# String). A field not listed is a violation (a typo the Bot API would
# silently ignore is still a bug of ours).
# ---------------------------------------------------------------------------

def _len_between(lo, hi, units=True):
    def check(v):
        n = utf16_len(v) if units else len(v.encode())
        if n < lo or n > hi:
            return "length %d not in %d..%d" % (n, lo, hi)
        return None
    return check


def _int_between(lo, hi):
    def check(v):
        if v < lo or (hi is not None and v > hi):
            return "value %d not in %s..%s" % (v, lo, hi if hi is not None else "")
        return None
    return check


def _one_of(values):
    def check(v):
        return None if v in values else "%r is not one of %s" % (v, ", ".join(values))
    return check


def _nonblank(v):
    if v.strip() == "":
        return "text is empty (all whitespace)"
    return _len_between(1, 4096)(v)


def _lang_code(v):
    return None if v == "" or re.match(r"^[a-z]{2}$", v) else "not a two-letter ISO 639-1 code"


def _allowed_updates(v):
    for t in v:
        if not isinstance(t, str) or t not in UPDATE_TYPES:
            return "unknown update type %r" % (t,)
    return None


def _commands(v):
    if len(v) > 100:
        return "more than 100 commands"
    seen = set()
    for c in v:
        if not isinstance(c, dict):
            return "a command is not an object"
        extra = set(c) - {"command", "description"}
        if extra:
            return "BotCommand has unknown fields %s" % sorted(extra)
        cmd, desc = c.get("command"), c.get("description")
        if not isinstance(cmd, str) or not COMMAND_RE.match(cmd):
            return "command %r is not 1-32 of [a-z0-9_]" % (cmd,)
        if not isinstance(desc, str) or not 1 <= utf16_len(desc) <= 256:
            return "description of %r is not 1-256 characters" % (cmd,)
        if cmd in seen:
            return "command %r twice" % (cmd,)
        seen.add(cmd)
    return None


def _scope(v):
    types = ("default", "all_private_chats", "all_group_chats",
             "all_chat_administrators", "chat", "chat_administrators", "chat_member")
    if v.get("type") not in types:
        return "BotCommandScope type %r unknown" % (v.get("type"),)
    return None


def _url(v):
    return None if re.match(r"^https?://[^\s]+$", v) else "not an http(s) URL"


def _secret(v):
    return None if SECRET_TOKEN_RE.match(v) else "secret_token is not 1-256 of [A-Za-z0-9_-]"


COMMON_SEND = {
    "business_connection_id": ("str", False, None),
    "message_thread_id": ("int", False, None),
    "direct_messages_topic_id": ("int", False, None),
    "disable_notification": ("bool", False, None),
    "protect_content": ("bool", False, None),
    "allow_paid_broadcast": ("bool", False, None),
    "message_effect_id": ("str", False, None),
    "reply_parameters": ("obj", False, None),
    "reply_to_message_id": ("int", False, None),
    "allow_sending_without_reply": ("bool", False, None),
    "reply_markup": ("markup", False, None),
    "suggested_post_parameters": ("obj", False, None),
}

SHAPES = {
    "getMe": {},
    "logOut": {},
    "close": {},
    "getWebhookInfo": {},
    "getUpdates": {
        "offset": ("int", False, None),
        "limit": ("int", False, _int_between(1, 100)),
        "timeout": ("int", False, _int_between(0, None)),
        "allowed_updates": ("arr", False, _allowed_updates),
    },
    "setMyCommands": {
        "commands": ("arr", True, _commands),
        "scope": ("obj", False, _scope),
        "language_code": ("str", False, _lang_code),
    },
    "deleteMyCommands": {
        "scope": ("obj", False, _scope),
        "language_code": ("str", False, _lang_code),
    },
    "getMyCommands": {
        "scope": ("obj", False, _scope),
        "language_code": ("str", False, _lang_code),
    },
    "sendMessage": dict(COMMON_SEND, **{
        "chat_id": ("chat", True, None),
        "text": ("str", True, _nonblank),
        "parse_mode": ("str", False, _one_of(PARSE_MODES)),
        "entities": ("arr", False, None),
        "link_preview_options": ("obj", False, None),
        "disable_web_page_preview": ("bool", False, None),
    }),
    "copyMessage": dict(COMMON_SEND, **{
        "chat_id": ("chat", True, None),
        "from_chat_id": ("chat", True, None),
        "message_id": ("int", True, None),
        "video_start_timestamp": ("int", False, None),
        "caption": ("str", False, _len_between(0, 1024)),
        "parse_mode": ("str", False, _one_of(PARSE_MODES)),
        "caption_entities": ("arr", False, None),
        "show_caption_above_media": ("bool", False, None),
    }),
    "forwardMessage": {
        "chat_id": ("chat", True, None),
        "message_thread_id": ("int", False, None),
        "from_chat_id": ("chat", True, None),
        "message_id": ("int", True, None),
        "video_start_timestamp": ("int", False, None),
        "disable_notification": ("bool", False, None),
        "protect_content": ("bool", False, None),
    },
    "sendDocument": dict(COMMON_SEND, **{
        "chat_id": ("chat", True, None),
        "document": ("file", True, None),
        "thumbnail": ("file", False, None),
        "caption": ("str", False, _len_between(0, 1024)),
        "parse_mode": ("str", False, _one_of(PARSE_MODES)),
        "caption_entities": ("arr", False, None),
        "disable_content_type_detection": ("bool", False, None),
    }),
    "sendChatAction": {
        "business_connection_id": ("str", False, None),
        "chat_id": ("chat", True, None),
        "message_thread_id": ("int", False, None),
        "action": ("str", True, _one_of(CHAT_ACTIONS)),
    },
    "answerCallbackQuery": {
        "callback_query_id": ("str", True, None),
        "text": ("str", False, _len_between(0, 200)),
        "show_alert": ("bool", False, None),
        "url": ("str", False, None),
        "cache_time": ("int", False, _int_between(0, None)),
    },
    "deleteMessage": {
        "chat_id": ("chat", True, None),
        "message_id": ("int", True, None),
    },
    "editMessageReplyMarkup": {
        "business_connection_id": ("str", False, None),
        "chat_id": ("chat", False, None),
        "message_id": ("int", False, None),
        "inline_message_id": ("str", False, None),
        "reply_markup": ("inline", False, None),
    },
    "editMessageText": {
        "business_connection_id": ("str", False, None),
        "chat_id": ("chat", False, None),
        "message_id": ("int", False, None),
        "inline_message_id": ("str", False, None),
        "text": ("str", True, _nonblank),
        "parse_mode": ("str", False, _one_of(PARSE_MODES)),
        "entities": ("arr", False, None),
        "link_preview_options": ("obj", False, None),
        "reply_markup": ("inline", False, None),
    },
    "setWebhook": {
        "url": ("str", True, _url),
        "certificate": ("file", False, None),
        "ip_address": ("str", False, None),
        "max_connections": ("int", False, _int_between(1, 100)),
        "allowed_updates": ("arr", False, _allowed_updates),
        "drop_pending_updates": ("bool", False, None),
        "secret_token": ("str", False, _secret),
    },
    "deleteWebhook": {
        "drop_pending_updates": ("bool", False, None),
    },
}
METHOD_NAMES = {m.lower(): m for m in SHAPES}
JSON_KINDS = ("obj", "arr", "markup", "inline")


def check_inline_keyboard(m):
    """Problems of an InlineKeyboardMarkup @m (a list, empty when fine)."""
    if not isinstance(m, dict):
        return ["reply_markup is not an object"]
    if set(m) != {"inline_keyboard"}:
        return ["InlineKeyboardMarkup fields %s" % sorted(m)]
    rows = m["inline_keyboard"]
    if not isinstance(rows, list):
        return ["inline_keyboard is not an array"]
    out, total = [], 0
    for row in rows:
        if not isinstance(row, list):
            out.append("a row of inline_keyboard is not an array")
            continue
        if len(row) > 8:
            out.append("a row of %d buttons (at most 8)" % len(row))
        for b in row:
            total += 1
            if not isinstance(b, dict):
                out.append("a button is not an object")
                continue
            if not isinstance(b.get("text"), str) or b["text"] == "":
                out.append("a button without text")
            acts = [k for k in b if k in BUTTON_ACTIONS]
            extra = [k for k in b if k not in BUTTON_ACTIONS and k not in ("text", "style", "icon_custom_emoji_id")]
            if len(acts) != 1:
                out.append("button %r has %d actions (exactly one)" % (b.get("text"), len(acts)))
            if extra:
                out.append("button %r has unknown fields %s" % (b.get("text"), extra))
            if "callback_data" in b:
                d = b["callback_data"]
                if not isinstance(d, str) or not 1 <= len(d.encode()) <= 64:
                    out.append("callback_data %r is not 1-64 bytes" % (d,))
    if total > 100:
        out.append("%d buttons (at most 100)" % total)
    return out


def check_markup(m):
    """Problems of any reply_markup (InlineKeyboardMarkup, ReplyKeyboardMarkup,
    ReplyKeyboardRemove, ForceReply)."""
    if not isinstance(m, dict):
        return ["reply_markup is not an object"]
    if "inline_keyboard" in m:
        return check_inline_keyboard(m)
    if "keyboard" in m:
        return [] if isinstance(m["keyboard"], list) else ["keyboard is not an array"]
    if m.get("remove_keyboard") is True or m.get("force_reply") is True:
        return []
    return ["reply_markup of no known kind: %s" % sorted(m)]


class BadRequest(Exception):
    """A violation: the request breaks the Bot API's documented shape."""


def _kind_ok(kind, v):
    if kind == "int":
        return isinstance(v, int) and not isinstance(v, bool)
    if kind == "str":
        return isinstance(v, str)
    if kind == "bool":
        return isinstance(v, bool)
    if kind == "obj" or kind in ("markup", "inline"):
        return isinstance(v, dict)
    if kind == "arr":
        return isinstance(v, list)
    if kind == "chat":
        return (isinstance(v, int) and not isinstance(v, bool)) or (
            isinstance(v, str) and re.match(r"^(-?\d+|@[A-Za-z0-9_]{5,32})$", v) is not None)
    if kind == "file":
        return isinstance(v, (str, UploadedFile))
    return False


def _coerce_form(kind, v):
    """A form or query value (a string) as the JSON value it stands for."""
    if isinstance(v, UploadedFile):
        return v
    if kind == "int" or kind == "chat":
        if re.match(r"^-?\d+$", v):
            return int(v)
        return v
    if kind == "bool":
        return {"true": True, "false": False, "1": True, "0": False}.get(v.lower(), v)
    if kind in JSON_KINDS:
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def validate(method, params, strict_json=True):
    """The params of @method with the form values coerced; raises BadRequest
    with every problem found."""
    shape = SHAPES[method]
    problems = []
    out = {}
    for k, v in params.items():
        if k not in shape:
            problems.append("unknown field %r" % k)
            continue
        kind, _, check = shape[k]
        if not strict_json:
            v = _coerce_form(kind, v)
        out[k] = v
        if not _kind_ok(kind, v):
            problems.append("%s: %r is not of type %s" % (k, v if not isinstance(v, UploadedFile) else v, kind))
            continue
        if kind == "markup":
            problems += ["%s: %s" % (k, p) for p in check_markup(v)]
        elif kind == "inline":
            problems += ["%s: %s" % (k, p) for p in check_inline_keyboard(v)]
        if check is not None and kind != "file":
            p = check(v)
            if p:
                problems.append("%s: %s" % (k, p))
    for k, (kind, required, _) in shape.items():
        if required and k not in params:
            problems.append("missing required field %r" % k)
    if method in ("editMessageReplyMarkup", "editMessageText"):
        if "inline_message_id" not in params and not ("chat_id" in params and "message_id" in params):
            problems.append("neither chat_id and message_id nor inline_message_id")
    if problems:
        raise BadRequest("; ".join(problems))
    return out


class UploadedFile:
    """One file part of a multipart/form-data request."""

    def __init__(self, filename, content_type, data):
        self.filename = filename
        self.content_type = content_type
        self.data = data

    def __repr__(self):
        return "<file %r %s %d bytes>" % (self.filename, self.content_type, len(self.data))

    def describe(self):
        return {"filename": self.filename, "content_type": self.content_type,
                "size": len(self.data), "sha256": hashlib.sha256(self.data).hexdigest()}


def parse_multipart(content_type, body):
    """The fields of a multipart/form-data body (RFC 7578): name -> str or
    UploadedFile. Raises BadRequest when it does not parse."""
    if "boundary=" not in content_type:
        raise BadRequest("multipart/form-data without a boundary")
    head = ("Content-Type: %s\r\nMIME-Version: 1.0\r\n\r\n" % content_type).encode()
    msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
    if not msg.is_multipart():
        raise BadRequest("multipart body does not parse")
    fields = {}
    for part in msg.iter_parts():
        cd = part.get("Content-Disposition", "")
        if not str(cd).startswith("form-data"):
            raise BadRequest("a part without Content-Disposition: form-data")
        name = part.get_param("name", header="content-disposition")
        if not name:
            raise BadRequest("a part without a name")
        filename = part.get_param("filename", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        if filename is not None:
            fields[name] = UploadedFile(filename, part.get_content_type(), data)
        else:
            fields[name] = data.decode("utf-8", "strict")
    if msg.defects:
        raise BadRequest("multipart defects: %s" % [type(d).__name__ for d in msg.defects])
    return fields


# ---------------------------------------------------------------------------
# The fake.
# ---------------------------------------------------------------------------

class TgUser:
    """A Telegram user who talks to the bot in a private chat (chat id = user id)."""

    def __init__(self, user_id, first_name, language_code=None, last_name=None,
                 username=None):
        self.id = user_id
        self.first_name = first_name
        self.language_code = language_code
        self.last_name = last_name
        self.username = username

    def obj(self):
        u = {"id": self.id, "is_bot": False, "first_name": self.first_name}
        if self.last_name:
            u["last_name"] = self.last_name
        if self.username:
            u["username"] = self.username
        if self.language_code:
            u["language_code"] = self.language_code
        return u

    def chat(self):
        c = {"id": self.id, "type": "private", "first_name": self.first_name}
        if self.last_name:
            c["last_name"] = self.last_name
        if self.username:
            c["username"] = self.username
        return c


class Call:
    """One request the fake received."""

    __slots__ = ("seq", "method", "http_method", "content_type", "params", "t_recv",
                 "t_done", "status", "answer", "fault", "violation", "chat_id")

    def __init__(self, seq, method, http_method, content_type, params, t_recv):
        self.seq = seq
        self.method = method
        self.http_method = http_method
        self.content_type = content_type
        self.params = params
        self.t_recv = t_recv
        self.t_done = None
        self.status = None
        self.answer = None
        self.fault = None
        self.violation = None
        cid = params.get("chat_id") if isinstance(params, dict) else None
        self.chat_id = cid if isinstance(cid, int) and not isinstance(cid, bool) else None

    @property
    def ok(self):
        return self.status == 200 and isinstance(self.answer, dict) and self.answer.get("ok") is True

    @property
    def result(self):
        return self.answer.get("result") if isinstance(self.answer, dict) else None

    def get(self, key, default=None):
        return self.params.get(key, default)

    def to_json(self):
        params = {k: (v.describe() if isinstance(v, UploadedFile) else v)
                  for k, v in self.params.items()}
        return {"seq": self.seq, "method": self.method, "http_method": self.http_method,
                "params": params, "t_recv": self.t_recv, "t_done": self.t_done,
                "status": self.status, "answer": self.answer, "fault": self.fault,
                "violation": self.violation}

    def __repr__(self):
        p = {k: (v if not isinstance(v, str) or len(v) < 80 else v[:77] + "...")
             for k, v in self.params.items()}
        return "#%d %s %s -> %s%s" % (self.seq, self.method, json.dumps(p, ensure_ascii=False, default=repr),
                                      self.status, " [%s]" % self.fault if self.fault else "")


class Fault:
    """Answers to inject: the next @count calls of @method (any when None),
    optionally only those to @chat_id."""

    KINDS = ("429", "500", "502", "drop", "malformed", "403", "400")

    def __init__(self, kind, method=None, count=1, chat_id=None, retry_after=1,
                 delivered=False, description=None):
        if kind not in self.KINDS:
            raise ValueError("fault kind %r" % kind)
        self.kind = kind
        self.method = method
        self.count = count
        self.chat_id = chat_id
        self.retry_after = retry_after
        self.delivered = delivered
        self.description = description

    def matches(self, method, chat_id):
        return (self.count > 0 and (self.method is None or self.method == method)
                and (self.chat_id is None or self.chat_id == chat_id))


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    # socketserver's default listen backlog is 5: a burst of new connections
    # past it has its SYNs dropped and retried by the kernel a second later,
    # which would bunch the measured send times (and look like a client that
    # ignores the rate limits).
    request_queue_size = 1024

    def handle_error(self, request, client_address):
        # A client that went away (a SIGKILLed server) is no error of ours.
        if isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class FakeBotAPI:
    """The fake Bot API (see the module's comment). Thread-safe."""

    def __init__(self, token="123456:TEST-token", host="127.0.0.1", port=0,
                 bot_username="cca_test_bot", control=False, log=None):
        self.token = token
        self.bot_id = int(token.split(":", 1)[0]) if re.match(r"^\d+:", token) else 1
        self.bot_username = bot_username
        self.host = host
        self._want_port = port
        self.control = control
        self.log = log
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._server = None
        self._thread = None
        self._stopping = False
        self.reset_all()

    # -- state -------------------------------------------------------------
    def reset_all(self):
        with self._lock:
            self.calls = []
            self.violations = []     # shape violations: each {"seq","method","problem","params"}
            self.rejections = []     # semantic 400s (message not found, not modified, ...)
            self.faults = []
            self.blocked = {}        # chat_id -> monotonic time it was blocked
            self.sends_after_block = {}  # chat_id -> calls to it after its first 403
            self.chats = {}          # chat_id -> Chat object
            self.users = {}          # user id -> TgUser
            self.messages = {}       # (chat_id, message_id) -> message dict
            self.next_msg_id = {}    # chat_id -> last message id used
            self.pending = []        # updates not yet confirmed, in update_id order
            self.next_update_id = 100000
            self.update_log = {}     # update_id -> {"t_enqueued", "t_returned", "chat_id", "kind"}
            self.redeliver = []      # updates to return once more whatever the offset
            self.allowed_updates = None
            self.poll_gen = 0
            self.poll_conflicts = 0
            self.polls_waiting = 0
            self.callback_ids = {}   # id -> answered?
            self.webhook = None
            self.commands = {}       # language_code -> commands
            self.transcript = []     # (t, chat_id, direction, what)

    def reset_calls(self):
        with self._lock:
            self.calls = []
            self.violations = []
            self.rejections = []
            self.sends_after_block = {}

    # -- lifecycle ---------------------------------------------------------
    def start(self):
        fake = self

        class Handler(_Handler):
            pass
        Handler.fake = fake
        self._server = _Server((self.host, self._want_port), Handler)
        self.port = self._server.server_address[1]
        self.base_url = "http://%s:%d" % (self.host, self.port)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        with self._lock:
            self._stopping = True
            self._cond.notify_all()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *a):
        self.stop()

    # -- chats and messages --------------------------------------------------
    def _new_msg_id(self, chat_id):
        n = self.next_msg_id.get(chat_id, 0) + 1
        self.next_msg_id[chat_id] = n
        return n

    def user(self, user_id, first_name="User", language_code=None, last_name=None,
             username=None):
        """A user (and their private chat) the bot knows of."""
        u = TgUser(user_id, first_name, language_code, last_name, username)
        with self._lock:
            self.users[user_id] = u
            self.chats[user_id] = u.chat()
        return u

    def _bot_user(self):
        return {"id": self.bot_id, "is_bot": True, "first_name": "CCA Test Bot",
                "username": self.bot_username}

    # -- updates -----------------------------------------------------------
    def enqueue(self, update, duplicate=False):
        """Queue the Update @update (a dict; update_id assigned when absent).
        @duplicate: queue it twice, same update_id (returned twice in a row).
        Returns the update."""
        with self._lock:
            if "update_id" not in update:
                self.next_update_id += 1
                update = dict(update, update_id=self.next_update_id)
            else:
                self.next_update_id = max(self.next_update_id, update["update_id"])
            kind = next((k for k in update if k != "update_id"), "?")
            body = update.get(kind) if isinstance(update.get(kind), dict) else {}
            chat = (body.get("chat") or (body.get("message") or {}).get("chat") or {})
            self.update_log.setdefault(update["update_id"], {
                "update_id": update["update_id"], "kind": kind, "chat_id": chat.get("id"),
                "t_enqueued": time.monotonic(), "t_returned": None, "returned": 0})
            self.pending.append(update)
            if duplicate:
                self.pending.append(update)
            self._cond.notify_all()
        return update

    def redeliver_update(self, update):
        """Return @update (already returned once) again with the next
        getUpdates answer, whatever offset it asks for: a duplicate the way a
        confused Bot API server or a proxy could make one."""
        with self._lock:
            self.redeliver.append(update)
            self._cond.notify_all()

    def _message(self, user, extra, message_id=None):
        with self._lock:
            if user.id not in self.users:
                self.users[user.id] = user
                self.chats[user.id] = user.chat()
            mid = message_id or self._new_msg_id(user.id)
            m = {"message_id": mid, "from": user.obj(), "chat": user.chat(),
                 "date": int(time.time())}
            m.update(extra)
            self.messages[(user.id, mid)] = dict(m, _from_bot=False)
            what = extra.get("text")
            if what is None:
                what = "[%s]" % next(iter(extra), "?")
                if extra.get("caption"):
                    what += " " + extra["caption"]
            self.transcript.append((time.monotonic(), user.id, "in", what))
        return m

    def send_text(self, user, text, duplicate=False):
        """@user writes @text to the bot. Returns the Update."""
        extra = {"text": text}
        m = re.match(r"^/[A-Za-z0-9_]+(@[A-Za-z0-9_]+)?", text)
        if m:
            extra["entities"] = [{"type": "bot_command", "offset": 0,
                                  "length": utf16_len(m.group(0))}]
        return self.enqueue({"message": self._message(user, extra)}, duplicate=duplicate)

    def _file_ids(self, prefix, file_id):
        fid = file_id or "%s-%d-%d" % (prefix, int(time.time() * 1000) % 10**8, self.next_update_id + 1)
        return fid, hashlib.sha1(fid.encode()).hexdigest()[:16]

    def send_photo(self, user, file_id=None, caption=None, duplicate=False):
        fid, uid = self._file_ids("AgACAgPhoto", file_id)
        sizes = [{"file_id": fid + "-s", "file_unique_id": uid + "s", "width": 90, "height": 60,
                  "file_size": 1200},
                 {"file_id": fid, "file_unique_id": uid, "width": 1280, "height": 853,
                  "file_size": 98765}]
        extra = {"photo": sizes}
        if caption is not None:
            extra["caption"] = caption
        return self.enqueue({"message": self._message(user, extra)}, duplicate=duplicate)

    def send_document(self, user, file_id=None, file_name="invoice.pdf",
                      mime_type="application/pdf", caption=None):
        fid, uid = self._file_ids("BQACAgDoc", file_id)
        extra = {"document": {"file_id": fid, "file_unique_id": uid, "file_name": file_name,
                              "mime_type": mime_type, "file_size": 23456}}
        if caption is not None:
            extra["caption"] = caption
        return self.enqueue({"message": self._message(user, extra)})

    def send_voice(self, user, file_id=None, duration=3):
        fid, uid = self._file_ids("AwACAgVoice", file_id)
        return self.enqueue({"message": self._message(user, {"voice": {
            "file_id": fid, "file_unique_id": uid, "duration": duration,
            "mime_type": "audio/ogg", "file_size": 5120}})})

    def send_sticker(self, user, file_id=None, emoji="👍"):
        fid, uid = self._file_ids("CAACAgSticker", file_id)
        return self.enqueue({"message": self._message(user, {"sticker": {
            "file_id": fid, "file_unique_id": uid, "type": "regular", "width": 512,
            "height": 512, "is_animated": False, "is_video": False, "emoji": emoji}})})

    def edit_text(self, user, message_id, text):
        """@user edits their message @message_id to @text: an edited_message update."""
        with self._lock:
            old = self.messages.get((user.id, message_id))
            date = old["date"] if old else int(time.time()) - 5
            m = {"message_id": message_id, "from": user.obj(), "chat": user.chat(),
                 "date": date, "edit_date": int(time.time()), "text": text}
            if old is not None:
                old["text"] = text
        return self.enqueue({"edited_message": m})

    def press(self, user, data, message=None, message_id=None):
        """@user presses an inline button with callback data @data under the
        bot's message @message (a Message dict as the fake answered it) or
        @message_id in @user's chat. Returns the Update (its
        callback_query.id is what answerCallbackQuery must name)."""
        with self._lock:
            if message is None and message_id is not None:
                stored = self.messages.get((user.id, message_id))
                if stored is not None:
                    message = {k: v for k, v in stored.items() if not k.startswith("_")}
            if message is None:
                message = {"message_id": message_id or 0, "chat": user.chat(),
                           "date": int(time.time())}
            cq_id = "%d%06d" % (user.id, len(self.callback_ids) + 1)
            self.callback_ids[cq_id] = False
            cq = {"id": cq_id, "from": user.obj(), "message": message,
                  "chat_instance": str(-abs(hash((self.bot_id, user.id))) % 10**18),
                  "data": data}
            self.transcript.append((time.monotonic(), user.id, "in", "[button %s]" % data))
        return self.enqueue({"callback_query": cq})

    def spec_update(self, spec):
        """An Update from a simple spec (the control route's form)."""
        if not isinstance(spec, dict):
            raise ValueError("an update spec is an object")
        if any(k in spec for k in UPDATE_TYPES):
            return self.enqueue(spec)
        cid = spec.get("chat_id", spec.get("user_id"))
        if not isinstance(cid, int):
            raise ValueError("a spec needs chat_id")
        with self._lock:
            u = self.users.get(cid)
        if u is None or "first_name" in spec or "language_code" in spec:
            u = self.user(cid, spec.get("first_name", u.first_name if u else "User%d" % cid),
                          spec.get("language_code", u.language_code if u else None))
        dup = bool(spec.get("duplicate"))
        if "callback_data" in spec:
            return self.press(u, spec["callback_data"], message_id=spec.get("message_id"))
        if "edit_of" in spec:
            return self.edit_text(u, spec["edit_of"], spec.get("text", ""))
        if "photo" in spec:
            return self.send_photo(u, spec["photo"] or None, spec.get("caption"), duplicate=dup)
        if "document" in spec:
            return self.send_document(u, spec["document"] or None, caption=spec.get("caption"))
        if "voice" in spec:
            return self.send_voice(u, spec["voice"] or None)
        if "sticker" in spec:
            return self.send_sticker(u, spec["sticker"] or None)
        if "text" in spec:
            return self.send_text(u, spec["text"], duplicate=dup)
        raise ValueError("a spec needs text, photo, document, voice, sticker or callback_data")

    # -- faults --------------------------------------------------------------
    def fault(self, kind, method=None, count=1, chat_id=None, retry_after=1, delivered=False,
              description=None):
        """Make the next @count calls of @method (optionally to @chat_id) fail
        with @kind: "429" (retry_after), "500", "502", "drop" (the connection
        closed without an answer; @delivered: the message counts as sent
        all the same), "malformed" (200 with a body that is not JSON), "403"
        (for one call; see block() for a lasting block), "400"."""
        f = Fault(kind, method, count, chat_id, retry_after, delivered, description)
        with self._lock:
            self.faults.append(f)
        return f

    def clear_faults(self):
        with self._lock:
            self.faults = []

    def block(self, chat_id):
        """The user of @chat_id blocks the bot: every call to that chat is
        answered 403 until unblock()."""
        with self._lock:
            self.blocked.setdefault(chat_id, None)

    def unblock(self, chat_id):
        with self._lock:
            self.blocked.pop(chat_id, None)

    # -- queries -------------------------------------------------------------
    def calls_of(self, method=None, chat_id=None, since=0, ok=None, pred=None):
        """Calls (seq >= @since) of @method to @chat_id; @ok True: only those
        answered ok; @pred: a further filter."""
        with self._lock:
            out = []
            for c in self.calls[since:] if since <= len(self.calls) else []:
                if method is not None and c.method != method:
                    continue
                if chat_id is not None and c.chat_id != chat_id:
                    continue
                if ok is not None and c.ok != ok:
                    continue
                if pred is not None and not pred(c):
                    continue
                out.append(c)
            return out

    def mark(self):
        """The seq the next call will have (for since=)."""
        with self._lock:
            return len(self.calls)

    def wait_call(self, method=None, chat_id=None, since=0, pred=None, timeout=10.0, ok=True,
                  n=1, answered=True):
        """Wait until @n calls match (see calls_of) and, when @answered, were
        answered; returns the last of the first @n, or raises AssertionError
        with the call log. @ok True (default): only calls answered ok."""
        deadline = time.monotonic() + timeout
        if not answered:
            ok = None
        with self._lock:
            while True:
                got = [c for c in self.calls_of(method, chat_id, since, ok, pred)
                       if c.t_done is not None or not answered]
                if len(got) >= n:
                    return got[n - 1]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(
                        "no %s call%s%s within %.1f s (got %d of %d); calls since %d:\n%s" % (
                            method or "matching", " to chat %s" % chat_id if chat_id else "",
                            " (filtered)" if pred else "", timeout, len(got), n, since,
                            self.dump(since)))
                self._cond.wait(min(left, 0.2))

    def wait_quiet(self, idle=2.0, timeout=60.0, methods=None):
        """Wait until no call (but getUpdates) arrived for @idle seconds.
        Returns True, or False at @timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                last = 0.0
                for c in reversed(self.calls):
                    if c.method != "getUpdates" and (methods is None or c.method in methods):
                        last = max(c.t_recv, c.t_done or 0.0)
                        break
                busy = any(c.t_done is None and c.method != "getUpdates" for c in self.calls[-50:])
            if not busy and time.monotonic() - last >= idle:
                return True
            time.sleep(0.1)
        return False

    def sent_texts(self, chat_id, since=0):
        return [c.params.get("text") for c in self.calls_of("sendMessage", chat_id, since, ok=True)]

    def pending_count(self):
        with self._lock:
            return len(self.pending)

    def dump(self, since=0, limit=80):
        with self._lock:
            calls = [c for c in self.calls[since:] if c.method != "getUpdates" or c.result]
            lines = [repr(c) for c in calls[-limit:]]
            if len(calls) > limit:
                lines.insert(0, "... %d earlier" % (len(calls) - limit))
            return "\n".join("  " + ln for ln in lines)

    # -- measurements -----------------------------------------------------------
    def stats(self):
        with self._lock:
            sends = [c for c in self.calls if c.method in SEND_METHODS and c.ok]
            by_chat = {}
            for c in sends:
                by_chat.setdefault(c.chat_id, []).append(c.t_recv)
            min_iv = {}
            for chat, ts in by_chat.items():
                ts.sort()
                if len(ts) > 1:
                    min_iv[chat] = min(b - a for a, b in zip(ts, ts[1:]))
            ts = sorted(c.t_recv for c in sends)
            best, j, best_at = 0, 0, None
            for i in range(len(ts)):
                while ts[i] - ts[j] >= 1.0:
                    j += 1
                if i - j + 1 > best:
                    best, best_at = i - j + 1, ts[j]
            t_first = ts[0] if ts else None
            keys = {}
            for c in sends:
                if c.method == "sendMessage":
                    k = (c.chat_id, "text", c.params.get("text"))
                elif c.method == "sendDocument":
                    d = c.params.get("document")
                    k = (c.chat_id, "doc", d.describe()["sha256"] if isinstance(d, UploadedFile) else d)
                else:
                    k = (c.chat_id, c.method, c.params.get("from_chat_id"), c.params.get("message_id"))
                keys[k] = keys.get(k, 0) + 1
            dups = {k: n - 1 for k, n in keys.items() if n > 1}
            by_method = {}
            for c in self.calls:
                d = by_method.setdefault(c.method, {})
                d[str(c.status)] = d.get(str(c.status), 0) + 1
            return {
                "calls": len(self.calls),
                "sends": len(sends),
                "by_method": by_method,
                "per_chat_min_interval": min(min_iv.values()) if min_iv else None,
                "per_chat_min_interval_by_chat": min_iv,
                "global_max_per_1s": best,
                "global_max_window_start": (best_at - t_first) if best_at is not None else None,
                "first_send": t_first,
                "last_send": ts[-1] if ts else None,
                "duplicates": sum(dups.values()),
                "duplicate_keys": [list(k) + [n] for k, n in dups.items()],
                "violations": len(self.violations),
                "rejections": len(self.rejections),
                "poll_conflicts": self.poll_conflicts,
                "pending_updates": len(self.pending),
                "blocked": list(self.blocked),
                "sends_after_block": dict(self.sends_after_block),
            }

    # -- the Bot API ------------------------------------------------------------
    def _record(self, method, http_method, ctype, params, t_recv=None):
        t_recv = t_recv if t_recv is not None else time.monotonic()
        with self._lock:
            c = Call(len(self.calls), method, http_method, ctype, params, t_recv)
            self.calls.append(c)
            return c

    def _finish(self, call, status, answer):
        with self._lock:
            call.status = status
            call.answer = answer
            call.t_done = time.monotonic()
            self._cond.notify_all()

    def _take_fault(self, method, chat_id):
        with self._lock:
            for f in self.faults:
                if f.matches(method, chat_id):
                    f.count -= 1
                    return f
            return None

    def handle(self, method, params):
        """The answer (HTTP status, body object) to a validated call. Called
        with the lock NOT held (getUpdates waits)."""
        fn = getattr(self, "_m_" + method, None)
        if fn is None:
            return 200, {"ok": True, "result": True}
        return fn(params)

    def _err(self, code, description, **parameters):
        a = {"ok": False, "error_code": code, "description": description}
        if parameters:
            a["parameters"] = parameters
        return code, a

    def _reject(self, call, description):
        with self._lock:
            self.rejections.append({"seq": call.seq, "method": call.method,
                                    "problem": description, "params": call.to_json()["params"]})
        return self._err(400, "Bad Request: " + description)

    def _chat_known(self, chat_id):
        return chat_id in self.chats

    # getMe
    def _m_getMe(self, p):
        u = dict(self._bot_user(), can_join_groups=True, can_read_all_group_messages=False,
                 supports_inline_queries=False, can_connect_to_business=False,
                 has_main_web_app=False)
        return 200, {"ok": True, "result": u}

    def _m_getUpdates(self, p):
        call = p["__call"]
        timeout = p.get("timeout", 0)
        limit = p.get("limit", 100)
        deadline = time.monotonic() + min(timeout, 600)
        with self._lock:
            if self.webhook is not None:
                return self._err(409, "Conflict: can't use getUpdates method while webhook is "
                                      "active; use deleteWebhook to delete the webhook first")
            self.poll_gen += 1
            gen = self.poll_gen
            self._cond.notify_all()
            if "allowed_updates" in p:
                self.allowed_updates = p["allowed_updates"] or None
            offset = p.get("offset")
            if offset is not None:
                if offset < 0:
                    keep = -offset
                    self.pending = self.pending[-keep:] if keep < len(self.pending) else self.pending
                else:
                    self.pending = [u for u in self.pending if u["update_id"] >= offset]
            self.polls_waiting += 1
            try:
                while True:
                    if self._stopping:
                        return 200, {"ok": True, "result": []}
                    if gen != self.poll_gen:
                        self.poll_conflicts += 1
                        return self._err(409, "Conflict: terminated by other getUpdates request; "
                                              "make sure that only one bot instance is running")
                    if self.allowed_updates:
                        keep = []
                        for u in self.pending:
                            kind = next(k for k in u if k != "update_id")
                            if kind in self.allowed_updates:
                                keep.append(u)
                        self.pending = keep
                    out = list(self.redeliver) + self.pending[:limit]
                    if out:
                        self.redeliver = []
                        now = time.monotonic()
                        for u in out:
                            rec = self.update_log.get(u["update_id"])
                            if rec is not None:
                                rec["returned"] += 1
                                if rec["t_returned"] is None:
                                    rec["t_returned"] = now
                        return 200, {"ok": True, "result": out}
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return 200, {"ok": True, "result": []}
                    self._cond.wait(left)
            finally:
                self.polls_waiting -= 1

    def _m_setMyCommands(self, p):
        with self._lock:
            self.commands[p.get("language_code", "")] = p["commands"]
        return 200, {"ok": True, "result": True}

    def _m_deleteMyCommands(self, p):
        with self._lock:
            self.commands.pop(p.get("language_code", ""), None)
        return 200, {"ok": True, "result": True}

    def _m_getMyCommands(self, p):
        with self._lock:
            return 200, {"ok": True, "result": self.commands.get(p.get("language_code", ""), [])}

    def _store_out(self, chat_id, msg, what):
        self.messages[(chat_id, msg["message_id"])] = dict(msg, _from_bot=True)
        self.transcript.append((time.monotonic(), chat_id, "out", what))

    def _out_message(self, chat_id, extra):
        mid = self._new_msg_id(chat_id)
        m = {"message_id": mid, "from": self._bot_user(), "chat": self.chats[chat_id],
             "date": int(time.time())}
        m.update(extra)
        return m

    def _m_sendMessage(self, p):
        call = p["__call"]
        chat = p["chat_id"]
        with self._lock:
            if not self._chat_known(chat):
                return self._reject(call, "chat not found")
            extra = {"text": p["text"]}
            if isinstance(p.get("reply_markup"), dict) and "inline_keyboard" in p["reply_markup"]:
                extra["reply_markup"] = p["reply_markup"]
            if p.get("protect_content"):
                extra["has_protected_content"] = True
            m = self._out_message(chat, extra)
            self._store_out(chat, m, p["text"])
        return 200, {"ok": True, "result": m}

    def _m_copyMessage(self, p, forward=False):
        call = p["__call"]
        chat, src, mid = p["chat_id"], p["from_chat_id"], p["message_id"]
        with self._lock:
            if not self._chat_known(chat) or not self._chat_known(src):
                return self._reject(call, "chat not found")
            orig = self.messages.get((src, mid))
            if orig is None:
                return self._reject(call, "message to copy not found")
            extra = {k: v for k, v in orig.items()
                     if k in ("text", "photo", "document", "voice", "sticker", "caption",
                              "video", "audio", "animation", "contact", "location")}
            if "caption" in p:
                extra["caption"] = p["caption"]
            m = self._out_message(chat, extra)
            what = "[copy of %s/%s: %s]" % (src, mid, orig.get("text") or next(
                (k for k in ("photo", "document", "voice", "sticker") if k in orig), "?"))
            self._store_out(chat, m, what)
        if forward:
            return 200, {"ok": True, "result": m}
        return 200, {"ok": True, "result": {"message_id": m["message_id"]}}

    def _m_forwardMessage(self, p):
        return self._m_copyMessage(p, forward=True)

    def _m_sendDocument(self, p):
        call = p["__call"]
        chat = p["chat_id"]
        doc = p["document"]
        with self._lock:
            if not self._chat_known(chat):
                return self._reject(call, "chat not found")
            if isinstance(doc, UploadedFile):
                if len(doc.data) == 0:
                    return self._reject(call, "file must be non-empty")
                d = {"file_id": "BQACAgUp-%d" % call.seq, "file_unique_id": "u%d" % call.seq,
                     "file_name": doc.filename, "mime_type": doc.content_type,
                     "file_size": len(doc.data)}
            else:
                d = {"file_id": doc, "file_unique_id": "u%d" % call.seq}
            extra = {"document": d}
            if "caption" in p:
                extra["caption"] = p["caption"]
            m = self._out_message(chat, extra)
            self._store_out(chat, m, "[document %s]" % d.get("file_name", d["file_id"]))
        return 200, {"ok": True, "result": m}

    def _m_sendChatAction(self, p):
        with self._lock:
            if not self._chat_known(p["chat_id"]):
                return self._reject(p["__call"], "chat not found")
        return 200, {"ok": True, "result": True}

    def _m_answerCallbackQuery(self, p):
        call = p["__call"]
        with self._lock:
            qid = p["callback_query_id"]
            if qid not in self.callback_ids or self.callback_ids[qid]:
                return self._reject(call, "query is too old and response timeout expired or "
                                          "query ID is invalid")
            self.callback_ids[qid] = True
        return 200, {"ok": True, "result": True}

    def _m_deleteMessage(self, p):
        call = p["__call"]
        with self._lock:
            key = (p["chat_id"], p["message_id"])
            m = self.messages.get(key)
            if m is None or m.get("_deleted"):
                return self._reject(call, "message to delete not found")
            m["_deleted"] = True
            self.transcript.append((time.monotonic(), p["chat_id"], "out",
                                    "[deleted message %d]" % p["message_id"]))
        return 200, {"ok": True, "result": True}

    def _m_editMessageReplyMarkup(self, p):
        call = p["__call"]
        with self._lock:
            if "inline_message_id" in p:
                return 200, {"ok": True, "result": True}
            m = self.messages.get((p["chat_id"], p["message_id"]))
            if m is None or m.get("_deleted"):
                return self._reject(call, "message to edit not found")
            if not m.get("_from_bot"):
                return self._reject(call, "message can't be edited")
            new = p.get("reply_markup")
            if new is not None and not new.get("inline_keyboard"):
                new = None
            if new == m.get("reply_markup"):
                return self._reject(call, "message is not modified: specified new message "
                                          "content and reply markup are exactly the same as a "
                                          "current content and reply markup of the message")
            if new is None:
                m.pop("reply_markup", None)
            else:
                m["reply_markup"] = new
            out = {k: v for k, v in m.items() if not k.startswith("_")}
            out["edit_date"] = int(time.time())
        return 200, {"ok": True, "result": out}

    def _m_editMessageText(self, p):
        call = p["__call"]
        with self._lock:
            if "inline_message_id" in p:
                return 200, {"ok": True, "result": True}
            m = self.messages.get((p["chat_id"], p["message_id"]))
            if m is None or m.get("_deleted"):
                return self._reject(call, "message to edit not found")
            if not m.get("_from_bot"):
                return self._reject(call, "message can't be edited")
            if m.get("text") == p["text"] and m.get("reply_markup") == p.get("reply_markup"):
                return self._reject(call, "message is not modified")
            m["text"] = p["text"]
            if "reply_markup" in p:
                m["reply_markup"] = p["reply_markup"]
            out = {k: v for k, v in m.items() if not k.startswith("_")}
        return 200, {"ok": True, "result": out}

    def _m_setWebhook(self, p):
        with self._lock:
            self.webhook = dict(p)
            self.webhook.pop("__call", None)
            if p.get("drop_pending_updates"):
                self.pending = []
            self._cond.notify_all()
        return 200, {"ok": True, "result": True, "description": "Webhook was set"}

    def _m_deleteWebhook(self, p):
        with self._lock:
            self.webhook = None
            if p.get("drop_pending_updates"):
                self.pending = []
        return 200, {"ok": True, "result": True, "description": "Webhook was deleted"}

    def _m_getWebhookInfo(self, p):
        with self._lock:
            w = self.webhook or {}
            return 200, {"ok": True, "result": {
                "url": w.get("url", ""), "has_custom_certificate": False,
                "pending_update_count": len(self.pending)}}

    # -- control routes (command-line mode) ------------------------------------
    def control_route(self, http_method, path, query, body):
        if path == "/_fake/updates" and http_method == "POST":
            specs = json.loads(body or b"[]")
            if isinstance(specs, dict):
                specs = [specs]
            ids = [self.spec_update(s)["update_id"] for s in specs]
            return 200, {"ok": True, "update_ids": ids}
        if path == "/_fake/updates" and http_method == "GET":
            since = int(query.get("since", ["0"])[0])
            with self._lock:
                log = sorted((r for r in self.update_log.values() if r["update_id"] >= since),
                             key=lambda r: r["update_id"])
            return 200, {"ok": True, "updates": log}
        if path == "/_fake/calls":
            since = int(query.get("since", ["0"])[0])
            with self._lock:
                calls = [c.to_json() for c in self.calls[since:]]
                return 200, {"ok": True, "calls": calls, "next": len(self.calls)}
        if path == "/_fake/fault" and http_method == "POST":
            f = json.loads(body or b"{}")
            self.fault(str(f.get("kind")), f.get("method"), int(f.get("count", 1)),
                       f.get("chat_id"), f.get("retry_after", 1), bool(f.get("delivered")))
            return 200, {"ok": True}
        if path in ("/_fake/block", "/_fake/unblock") and http_method == "POST":
            f = json.loads(body or b"{}")
            (self.block if path == "/_fake/block" else self.unblock)(int(f["chat_id"]))
            return 200, {"ok": True}
        if path == "/_fake/stats":
            s = self.stats()
            s["per_chat_min_interval_by_chat"] = {
                str(k): v for k, v in s["per_chat_min_interval_by_chat"].items()}
            with self._lock:
                s["violation_list"] = list(self.violations)
                s["rejection_list"] = list(self.rejections[-50:])
            return 200, dict(s, ok=True)
        if path == "/_fake/reset" and http_method == "POST":
            self.reset_calls()
            return 200, {"ok": True}
        return 404, {"ok": False, "description": "no such control route"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeBotAPI/1.0"
    # Headers and body are two writes: without TCP_NODELAY, Nagle's algorithm
    # and the client's delayed ACK could hold an answer back ~40 ms.
    disable_nagle_algorithm = True
    fake = None  # set by FakeBotAPI.start

    def log_message(self, fmt, *args):
        if self.fake.log:
            self.fake.log("%s %s" % (self.address_string(), fmt % args))

    def parse_request(self):
        # The time the request line arrived: taken before any lock of ours,
        # so that the fake's own pauses never bunch the measured send times.
        self._t_line = time.monotonic()
        return super().parse_request()

    def do_GET(self):
        self._serve("GET")

    def do_POST(self):
        self._serve("POST")

    def _read_body(self):
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline()
                n = int(line.split(b";")[0].strip() or b"0", 16)
                if n == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def _send(self, status, obj=None, raw=None):
        body = raw if raw is not None else json.dumps(obj, ensure_ascii=False).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _drop(self):
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _serve(self, http_method):
        fake = self.fake
        url = urllib.parse.urlsplit(self.path)
        body = self._read_body() if http_method == "POST" else b""
        query = urllib.parse.parse_qs(url.query, keep_blank_values=True)
        if url.path.startswith("/_fake/"):
            if not fake.control:
                return self._send(404, {"ok": False, "error_code": 404, "description": "Not Found"})
            try:
                status, obj = fake.control_route(http_method, url.path, query, body)
            except (ValueError, KeyError, TypeError) as e:
                status, obj = 400, {"ok": False, "description": str(e)}
            return self._send(status, obj)
        m = re.match(r"^/bot([^/]*)/([A-Za-z]+)$", url.path)
        if not m:
            return self._send(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        if m.group(1) != fake.token:
            return self._send(401, {"ok": False, "error_code": 401, "description": "Unauthorized"})
        method = METHOD_NAMES.get(m.group(2).lower())
        ctype = self.headers.get("Content-Type", "")
        if method is None:
            call = fake._record(m.group(2), http_method, ctype, {}, self._t_line)
            with fake._lock:
                fake.violations.append({"seq": call.seq, "method": m.group(2),
                                        "problem": "method not modelled by the fake", "params": {}})
            call.violation = "unknown method"
            status, ans = 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
            fake._finish(call, status, ans)
            return self._send(status, ans)

        # Parse the parameters: query string, then the body by its type.
        params, strict, problem = {}, False, None
        for k, v in query.items():
            params[k] = v[-1]
        mime = ctype.split(";")[0].strip().lower()
        try:
            if body:
                if mime == "application/json":
                    try:
                        obj = json.loads(body.decode("utf-8"))
                    except (UnicodeDecodeError, ValueError) as e:
                        raise BadRequest("body is not JSON: %s" % e)
                    if not isinstance(obj, dict):
                        raise BadRequest("JSON body is not an object")
                    if params:
                        raise BadRequest("both a query string and a JSON body")
                    params, strict = obj, True
                elif mime == "application/x-www-form-urlencoded":
                    for k, v in urllib.parse.parse_qs(body.decode("utf-8"), keep_blank_values=True).items():
                        params[k] = v[-1]
                elif mime == "multipart/form-data":
                    params.update(parse_multipart(ctype, body))
                else:
                    raise BadRequest("unsupported Content-Type %r" % ctype)
            if method == "sendDocument" and isinstance(params.get("document"), UploadedFile) \
                    and mime != "multipart/form-data":
                raise BadRequest("a file outside multipart/form-data")
            if method == "sendDocument" and isinstance(params.get("document"), str) \
                    and mime == "multipart/form-data" and params["document"] == "":
                raise BadRequest("document is empty")
            params = validate(method, params, strict_json=strict)
        except BadRequest as e:
            problem = str(e)
        call = fake._record(method, http_method, ctype, params, self._t_line)
        if problem is not None:
            call.violation = problem
            with fake._lock:
                fake.violations.append({"seq": call.seq, "method": method, "problem": problem,
                                        "params": call.to_json()["params"]})
            status, ans = fake._err(400, "Bad Request: " + problem)
            fake._finish(call, status, ans)
            return self._send(status, ans)

        # A blocked chat, then the faults, then the method itself.
        chat = call.chat_id
        with fake._lock:
            blocked = chat is not None and chat in fake.blocked and method != "getUpdates"
            if blocked:
                if fake.blocked[chat] is None:
                    fake.blocked[chat] = call.t_recv
                else:
                    fake.sends_after_block[chat] = fake.sends_after_block.get(chat, 0) + 1
        if blocked:
            status, ans = fake._err(403, "Forbidden: bot was blocked by the user")
            call.fault = "blocked"
            fake._finish(call, status, ans)
            return self._send(status, ans)
        f = fake._take_fault(method, chat)
        if f is not None:
            call.fault = f.kind
            if f.kind == "drop":
                if f.delivered:
                    params["__call"] = call
                    fake.handle(method, params)
                    params.pop("__call", None)
                fake._finish(call, None, None)
                return self._drop()
            if f.kind == "malformed":
                raw = b'{"ok":true,"result":[{"update_id":'  # cut JSON
                fake._finish(call, 200, None)
                return self._send(200, raw=raw)
            if f.kind == "429":
                status, ans = fake._err(429, "Too Many Requests: retry after %d" % f.retry_after,
                                        retry_after=f.retry_after)
            elif f.kind == "403":
                status, ans = fake._err(403, f.description or "Forbidden: bot was blocked by the user")
            elif f.kind == "400":
                status, ans = fake._err(400, f.description or "Bad Request: injected")
            else:
                code = int(f.kind)
                status, ans = code, {"ok": False, "error_code": code,
                                     "description": "Bad Gateway" if code == 502 else
                                     "Internal Server Error"}
            fake._finish(call, status, ans)
            return self._send(status, ans)
        params["__call"] = call
        try:
            status, ans = fake.handle(method, params)
        finally:
            params.pop("__call", None)
        fake._finish(call, status, ans)
        return self._send(status, ans)


# ---------------------------------------------------------------------------
# Self-test (python3 tests/fake_telegram.py --selftest), with urllib only.
# ---------------------------------------------------------------------------

def _req(url, obj=None, method="POST", raw=None, ctype="application/json", timeout=30):
    import urllib.request
    import urllib.error
    data = raw if raw is not None else (json.dumps(obj).encode() if obj is not None else None)
    r = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        r.add_header("Content-Type", ctype)
    try:
        with urllib.request.urlopen(r, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def selftest():
    import subprocess
    import urllib.error
    failures = []

    def check(cond, what):
        print("%s %s" % ("ok  " if cond else "FAIL", what), flush=True)
        if not cond:
            failures.append(what)

    fake = FakeBotAPI("42:SELF-test").start()
    api = fake.base_url + "/bot42:SELF-test/"
    try:
        st, b = _req(api + "getMe", {})
        check(st == 200 and json.loads(b)["result"]["is_bot"] is True, "getMe answers a bot User")
        st, b = _req(fake.base_url + "/bot42:WRONG/getMe", {})
        check(st == 401 and json.loads(b) == {"ok": False, "error_code": 401,
                                              "description": "Unauthorized"}, "a wrong token is 401")
        st, b = _req(api + "GETME", method="GET")
        check(st == 200, "method names are case-insensitive, GET works")

        # Long polling: held open, answered when an update arrives.
        t0 = time.monotonic()
        st, b = _req(api + "getUpdates", {"timeout": 1, "limit": 10})
        dt = time.monotonic() - t0
        check(st == 200 and json.loads(b)["result"] == [] and 0.9 <= dt < 2.0,
              "an empty getUpdates is held for its timeout (%.2f s)" % dt)
        ivan = fake.user(1001, "Иван", "ru")
        threading.Timer(0.3, lambda: fake.send_text(ivan, "/start")).start()
        t0 = time.monotonic()
        st, b = _req(api + "getUpdates", {"timeout": 5, "allowed_updates": ["message", "callback_query"]})
        dt = time.monotonic() - t0
        ups = json.loads(b)["result"]
        check(st == 200 and len(ups) == 1 and 0.25 <= dt < 1.0,
              "a held getUpdates is answered as soon as an update arrives (%.2f s)" % dt)
        check(ups[0]["message"]["text"] == "/start" and ups[0]["message"]["entities"][0]["type"] == "bot_command",
              "a command message has its bot_command entity")
        uid = ups[0]["update_id"]
        st, b = _req(api + "getUpdates", {"timeout": 0})
        check(len(json.loads(b)["result"]) == 1, "an update is returned again until confirmed")
        for i in range(5):
            fake.send_text(ivan, "msg %d" % i)
        st, b = _req(api + "getUpdates", {"offset": uid + 1, "limit": 2, "timeout": 0})
        got = json.loads(b)["result"]
        check([u["message"]["text"] for u in got] == ["msg 0", "msg 1"], "offset confirms, limit caps")
        st, b = _req(api + "getUpdates", {"offset": got[-1]["update_id"] + 1, "timeout": 0})
        got = json.loads(b)["result"]
        check([u["message"]["text"] for u in got] == ["msg 2", "msg 3", "msg 4"], "the rest after the offset")
        last = got[-1]["update_id"]
        st, b = _req(api + "getUpdates", {"offset": last + 1, "limit": 101, "timeout": 0})
        check(st == 400 and fake.violations and "limit" in fake.violations[-1]["problem"],
              "limit 101 is a violation")
        fake.violations.clear()

        # Duplicates and other update kinds.
        u = fake.send_photo(ivan, caption="скрин")
        fake.redeliver_update(u)
        st, b = _req(api + "getUpdates", {"offset": last + 1, "timeout": 0})
        got = json.loads(b)["result"]
        check(len(got) == 2 and got[0]["update_id"] == got[1]["update_id"] and "photo" in got[0]["message"],
              "a redelivered update comes twice")
        last = got[-1]["update_id"]
        _req(api + "getUpdates", {"offset": last + 1, "timeout": 0,
                                  "allowed_updates": ["message", "edited_message", "callback_query"]})
        fake.send_document(ivan)
        fake.send_voice(ivan)
        fake.send_sticker(ivan)
        fake.edit_text(ivan, 2, "msg 0 (edited)")
        st, b = _req(api + "getUpdates", {"offset": last + 1, "timeout": 0})
        got = json.loads(b)["result"]
        check([next(k for k in x if k != "update_id") for x in got] ==
              ["message", "message", "message", "edited_message"], "document, voice, sticker, edit")
        last = got[-1]["update_id"]

        # Sending, copying, keyboards, callbacks.
        kb = {"inline_keyboard": [[{"text": str(i), "callback_data": "r:%d:x" % i} for i in range(1, 6)]]}
        st, b = _req(api + "sendMessage", {"chat_id": 1001, "text": "Оцените", "reply_markup": kb})
        msg = json.loads(b)["result"]
        check(st == 200 and msg["chat"]["id"] == 1001 and msg["message_id"] > 0, "sendMessage answers a Message")
        st, b = _req(api + "sendMessage", {"chat_id": 1001, "text": "x", "protect_content": "yes"})
        check(st == 400 and "protect_content" in fake.violations[-1]["problem"], "a string for a bool is a violation")
        st, b = _req(api + "sendMessage", {"chat_id": 1001, "text": "a" * 4097})
        check(st == 400 and "4097" in fake.violations[-1]["problem"], "text over 4096 units is a violation")
        st, b = _req(api + "sendMessage", {"chat_id": 1001, "text": "😀" * 2049})
        check(st == 400, "4098 UTF-16 units of emoji is a violation")
        st, b = _req(api + "sendMessage", {"chat_id": 1001, "text": "😀" * 2048})
        check(st == 200, "4096 UTF-16 units of emoji is fine")
        st, b = _req(api + "sendMessage", {"chat_id": 1001, "text": "x", "reply_markup": {
            "inline_keyboard": [[{"text": "b", "callback_data": "r:5:" + "f" * 61}]]}})
        check(st == 400 and "64" in fake.violations[-1]["problem"], "callback_data over 64 bytes is a violation")
        st, b = _req(api + "sendMessage", {"chat_id": 1001, "text": "x", "protect_contents": True})
        check(st == 400 and "unknown field" in fake.violations[-1]["problem"], "an unknown field is a violation")
        st, b = _req(api + "sendMessage", {"chat_id": 1001})
        check(st == 400 and "text" in fake.violations[-1]["problem"], "a missing text is a violation")
        nviol = len(fake.violations)
        fake.violations.clear()
        st, b = _req(api + "sendMessage", {"chat_id": 999999, "text": "x"})
        check(st == 400 and fake.rejections and "chat not found" in fake.rejections[-1]["problem"],
              "an unknown chat is a rejection (not a violation)")
        check(not fake.violations and nviol == 6, "six violations were recorded (%d)" % nviol)
        op = fake.user(2002, "Anna", "en")
        st, b = _req(api + "copyMessage", {"chat_id": 2002, "from_chat_id": 1001, "message_id": 7,
                                           "protect_content": True})
        check(st == 200 and "message_id" in json.loads(b)["result"], "copyMessage answers a MessageId")
        st, b = _req(api + "copyMessage", {"chat_id": 2002, "from_chat_id": 1001, "message_id": 999})
        check(st == 400, "copying a message that does not exist is refused")
        up = fake.press(ivan, "r:5:x", message=msg)
        qid = up["callback_query"]["id"]
        st, b = _req(api + "answerCallbackQuery", {"callback_query_id": qid, "text": "Спасибо!"})
        check(st == 200, "answerCallbackQuery")
        st, b = _req(api + "answerCallbackQuery", {"callback_query_id": qid})
        check(st == 400, "a callback query is answered once")
        st, b = _req(api + "editMessageReplyMarkup", {"chat_id": 1001, "message_id": msg["message_id"]})
        check(st == 200 and "reply_markup" not in json.loads(b)["result"], "editMessageReplyMarkup removes a keyboard")
        st, b = _req(api + "editMessageReplyMarkup", {"chat_id": 1001, "message_id": msg["message_id"]})
        check(st == 400 and "not modified" in json.loads(b)["description"], "a second removal is 'not modified'")
        st, b = _req(api + "deleteMessage", {"chat_id": 1001, "message_id": 1})
        check(st == 200, "deleteMessage of the customer's message")
        st, b = _req(api + "setMyCommands", {"commands": [{"command": "help", "description": "Помощь"}],
                                             "language_code": "ru"})
        check(st == 200, "setMyCommands")
        st, b = _req(api + "setMyCommands", {"commands": [{"command": "Help!", "description": "x"}]})
        check(st == 400 and "command" in fake.violations[-1]["problem"], "a bad command name is a violation")
        fake.violations.clear()

        # sendDocument as multipart/form-data; form-urlencoded.
        boundary = "b0undary-XyZ"
        mp = ("--%s\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n2002\r\n"
              "--%s\r\nContent-Disposition: form-data; name=\"protect_content\"\r\n\r\ntrue\r\n"
              "--%s\r\nContent-Disposition: form-data; name=\"document\"; filename=\"history.txt\"\r\n"
              "Content-Type: text/plain\r\n\r\nИван: привет\r\n--%s--\r\n" % ((boundary,) * 4)).encode()
        st, b = _req(api + "sendDocument", raw=mp, ctype="multipart/form-data; boundary=" + boundary)
        res = json.loads(b).get("result", {})
        check(st == 200 and res.get("document", {}).get("file_name") == "history.txt",
              "sendDocument multipart with a file part (%s)" % (fake.violations or ""))
        st, b = _req(api + "sendMessage", raw=b"chat_id=1001&text=form+text",
                     ctype="application/x-www-form-urlencoded")
        check(st == 200, "form-urlencoded sendMessage")
        check(not fake.violations, "no violations from well-formed requests")

        # Faults.
        fake.fault("429", "sendMessage", retry_after=3)
        st, b = _req(api + "sendMessage", {"chat_id": 1001, "text": "t"})
        j = json.loads(b)
        check(st == 429 and j["parameters"]["retry_after"] == 3 and
              j["description"] == "Too Many Requests: retry after 3", "429 with retry_after")
        fake.fault("502", "sendMessage", chat_id=2002)
        st, _ = _req(api + "sendMessage", {"chat_id": 1001, "text": "t"})
        st2, _ = _req(api + "sendMessage", {"chat_id": 2002, "text": "t"})
        check(st == 200 and st2 == 502, "a 502 for one chat only")
        fake.fault("drop", "sendMessage")
        try:
            _req(api + "sendMessage", {"chat_id": 1001, "text": "dropped"})
            check(False, "a dropped connection raises")
        except (urllib.error.URLError, ConnectionError, OSError) as e:
            check(True, "a dropped connection (%s)" % type(e).__name__)
        fake.fault("malformed", "getUpdates")
        st, b = _req(api + "getUpdates", {"offset": last + 1, "timeout": 0})
        try:
            json.loads(b)
            check(False, "malformed JSON")
        except ValueError:
            check(st == 200, "malformed JSON from getUpdates")
        fake.block(1001)
        st, b = _req(api + "sendMessage", {"chat_id": 1001, "text": "t"})
        check(st == 403 and json.loads(b)["description"] == "Forbidden: bot was blocked by the user",
              "403 blocked")
        _req(api + "sendMessage", {"chat_id": 1001, "text": "t2"})
        check(fake.stats()["sends_after_block"] == {1001: 1}, "sends after the block are counted")
        fake.unblock(1001)

        # Conflicting polls.
        last = fake.next_update_id
        res = {}
        th = threading.Thread(target=lambda: res.update(a=_req(api + "getUpdates", {"offset": last + 1, "timeout": 5})))
        th.start()
        time.sleep(0.3)
        st, b = _req(api + "getUpdates", {"offset": last + 1, "timeout": 0})
        th.join()
        check(res["a"][0] == 409 and fake.poll_conflicts == 1,
              "a second poll ends the first with 409 (%s, %d)" % (res["a"][0], fake.poll_conflicts))

        # Rates and duplicates.
        fake.reset_calls()
        for i in range(3):
            _req(api + "sendMessage", {"chat_id": 1001, "text": "same"})
            time.sleep(0.05)
        _req(api + "sendMessage", {"chat_id": 2002, "text": "same"})
        s = fake.stats()
        check(s["duplicates"] == 2 and s["global_max_per_1s"] == 4 and
              0.04 <= s["per_chat_min_interval"] < 0.5, "measurements: %s" % {
                  k: s[k] for k in ("duplicates", "global_max_per_1s", "per_chat_min_interval")})
        c = fake.wait_call("sendMessage", chat_id=2002, timeout=1)
        check(c.get("text") == "same", "wait_call finds a call")
    finally:
        fake.stop()

    # Command-line mode and the control routes, from another process.
    p = subprocess.Popen([sys.executable, __file__, "--port", "0", "--token", "7:CLI"],
                         stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        check(line.startswith("port="), "the command line prints port=N")
        base = "http://127.0.0.1:%d" % int(line.strip().split("=")[1])
        st, b = _req(base + "/_fake/updates", [{"chat_id": 5, "text": "hi", "language_code": "en"},
                                               {"chat_id": 5, "photo": ""}])
        check(st == 200 and len(json.loads(b)["update_ids"]) == 2, "POST /_fake/updates")
        st, b = _req(base + "/bot7:CLI/getUpdates", {"timeout": 1})
        check(len(json.loads(b)["result"]) == 2, "the updates come out of getUpdates")
        _req(base + "/_fake/fault", {"kind": "429", "method": "sendMessage", "retry_after": 2})
        st, _ = _req(base + "/bot7:CLI/sendMessage", {"chat_id": 5, "text": "x"})
        st2, _ = _req(base + "/bot7:CLI/sendMessage", {"chat_id": 5, "text": "x"})
        check(st == 429 and st2 == 200, "POST /_fake/fault")
        st, b = _req(base + "/_fake/calls?since=1", method="GET")
        j = json.loads(b)
        check(st == 200 and j["next"] == 3 and [c["method"] for c in j["calls"]] == ["sendMessage"] * 2,
              "GET /_fake/calls?since=")
        st, b = _req(base + "/_fake/stats", method="GET")
        check(st == 200 and json.loads(b)["sends"] == 1, "GET /_fake/stats")
        st, b = _req(base + "/_fake/updates?since=0", method="GET")
        check(st == 200 and all(u["t_returned"] for u in json.loads(b)["updates"]), "GET /_fake/updates")
    finally:
        p.terminate()
        p.wait(5)
    print("selftest: %s" % ("FAILED: %d" % len(failures) if failures else "passed"))
    return 1 if failures else 0


def main():
    ap = argparse.ArgumentParser(description="A fake Telegram Bot API on loopback.")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--token", default="123456:TEST-token")
    ap.add_argument("--verbose", action="store_true", help="log every request to stderr")
    ap.add_argument("--selftest", action="store_true")
    a = ap.parse_args()
    if a.selftest:
        return selftest()
    log = (lambda s: print(s, file=sys.stderr, flush=True)) if a.verbose else None
    fake = FakeBotAPI(a.token, a.host, a.port, control=True, log=log).start()
    print("port=%d" % fake.port, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
