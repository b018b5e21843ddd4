#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The Telegram channel's scenarios (issue 13, docs/TELEGRAM.md) against the
fake Bot API (tests/fake_telegram.py) on loopback: the real server binary,
no network, no LLM key (the offline responder answers).

  CCA_SERVER=build/call-center-agents CCA_DATA_DIR=data \\
      python3 tests/integration/test_telegram.py [scenario ...]

Every scenario runs by default; name some to run only those (--list shows
them). Exit 0 when all passed, 1 when one failed, 77 (skip) without
CCA_SERVER. Each scenario gets a fresh temporary directory, its own fake and
its own server (PORT=0), stopped and removed afterwards, also on failure.
Texts the bot chooses (greetings, cards, notices) are not fixed: the checks
are on structure (methods, chats, keyboards, protect_content, script of the
language) and on what the dialogs over REST hold.
"""
import collections
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
import fake_telegram  # noqa: E402
from fake_telegram import FakeBotAPI, SEND_METHODS  # noqa: E402

TOKEN = "123456:TEST-token"
PIN = "1234"
SECRET = "s3cret-phrase"
CYRILLIC = re.compile(r"[А-Яа-яЁё]")
LATIN = re.compile(r"[A-Za-z]")


def say(*a):
    print(*a, flush=True)


class Failure(AssertionError):
    pass


def check(cond, msg, *detail):
    if not cond:
        raise Failure(msg + ("\n" + "\n".join(str(d) for d in detail) if detail else ""))


def wait_until(fn, timeout, what, interval=0.1):
    """Poll @fn until it returns a true value (returned); Failure at @timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except Failure as e:
            last = e
        if time.monotonic() >= deadline:
            raise Failure("timeout (%.0f s) waiting for %s (last: %s)" % (timeout, what, last))
        time.sleep(interval)


def is_russian(text):
    return bool(CYRILLIC.search(text or ""))


def is_english(text):
    return bool(LATIN.search(text or "")) and not CYRILLIC.search(text or "")


def buttons(markup):
    """The callback_data of every button of an InlineKeyboardMarkup (flat)."""
    if not isinstance(markup, dict):
        return []
    return [b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row]


# ---------------------------------------------------------------------------
# The server under test.
# ---------------------------------------------------------------------------

def _pdeathsig():
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


# ---------------------------------------------------------------------------
# The PostgreSQL mode of the suite (tests/pg/suite.sh): CCA_TEST_STORE=postgres
# and CCA_TEST_DATABASE_URL, a running throwaway server. Each scenario's
# directory gets a database of its own there, as harness.c does for C tests.
# ---------------------------------------------------------------------------

def store_pg():
    return os.environ.get("CCA_TEST_STORE") == "postgres"


def pg_dbname(path):
    """The database of directory @path: its last component in [a-z0-9_] and an
    FNV-1a (64 bits) hash of the whole path (the names harness.c gives)."""
    h = 14695981039346656037
    for b in path.encode():
        h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    base = "".join(c if re.fullmatch(r"[a-z0-9]", c) else "_"
                   for c in os.path.basename(path).lower()[:40])
    name = "%s_%016x" % (base, h)
    check(re.fullmatch(r"[a-z0-9_]{1,63}", name) is not None, "bad database name %r" % name)
    return name


def psql():
    """psql of the newest /usr/lib/postgresql/<major>/bin (or PG_BIN, or PATH)."""
    cands = []
    if os.environ.get("PG_BIN"):
        cands.append(os.path.join(os.environ["PG_BIN"], "psql"))
    majors = []
    for d in os.listdir("/usr/lib/postgresql") if os.path.isdir("/usr/lib/postgresql") else []:
        if d.isdigit():
            majors.append(int(d))
    cands += ["/usr/lib/postgresql/%d/bin/psql" % m for m in sorted(majors, reverse=True)]
    cands.append(shutil.which("psql") or "")
    for c in cands:
        if c and os.access(c, os.X_OK):
            return c
    raise Failure("CCA_TEST_STORE=postgres: no psql found")


def pg_sql(sql):
    """Run @sql (psql's input, ON_ERROR_STOP) on CCA_TEST_DATABASE_URL as given."""
    r = subprocess.run([psql(), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", os.environ["CCA_TEST_DATABASE_URL"]],
                       input=sql, capture_output=True, text=True, timeout=60)
    return r.returncode, r.stderr


def pg_database_url(path):
    """The DATABASE_URL of directory @path's own database, created on first use."""
    base = os.environ.get("CCA_TEST_DATABASE_URL", "")
    check(base != "", "CCA_TEST_STORE=postgres needs CCA_TEST_DATABASE_URL (tests/pg/suite.sh)")
    name = pg_dbname(path)
    # [a-z0-9_] only: safe inside the quotes of SQL and of a conninfo string.
    rc, err = pg_sql("SELECT 'CREATE DATABASE \"%s\"' WHERE NOT EXISTS "
                     "(SELECT 1 FROM pg_database WHERE datname = '%s')\\gexec\n" % (name, name))
    check(rc == 0 or "already exists" in err, "CREATE DATABASE %s: %s" % (name, err))
    if re.match(r"postgres(ql)?://", base):
        import urllib.parse
        u = urllib.parse.urlsplit(base)
        return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, u.fragment))
    return "%s dbname='%s'" % (base, name)  # a later keyword wins in libpq


def pg_drop(path):
    pg_sql('DROP DATABASE IF EXISTS "%s" WITH (FORCE)\n' % pg_dbname(path))


class Server:
    """The server binary in @tmp with the Telegram channel on @fake."""

    def __init__(self, tmp, fake, extra_env=None):
        self.tmp = tmp
        self.fake = fake
        self.extra_env = dict(extra_env or {})
        self.proc = None
        self.port = None
        self.runs = 0
        self.log_path = None

    def env(self):
        env = {k: os.environ[k] for k in ("PATH", "LD_LIBRARY_PATH", "ASAN_OPTIONS", "UBSAN_OPTIONS",
                                          "LSAN_OPTIONS", "TZ", "LC_ALL") if k in os.environ}
        env.update({
            "PORT": "0",
            "HOST": "127.0.0.1",
            "DIALOGS_STORAGE_PATH": os.path.join(self.tmp, "dialogs"),
            "DATA_DIR": os.environ["CCA_DATA_DIR"],
            "LOG_LEVEL": "info",
            "TELEGRAM_BOT_TOKEN": TOKEN,
            "TELEGRAM_API_BASE_URL": self.fake.base_url,
            "TELEGRAM_POLL_TIMEOUT_S": "5",
            "OPERATOR_PINS": PIN,
            "OPERATOR_SECRET": SECRET,
        })
        if store_pg():
            env.update({"STORE": "postgres", "DATABASE_URL": pg_database_url(self.tmp)})
        env.update(self.extra_env)
        return env

    def start(self, timeout=30):
        self.runs += 1
        self.log_path = os.path.join(self.tmp, "server-%d.log" % self.runs)
        log = open(self.log_path, "wb")
        # Run from the temporary directory so that no stray .env is read.
        self.proc = subprocess.Popen([os.environ["CCA_SERVER"]], cwd=self.tmp, env=self.env(),
                                     stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     preexec_fn=_pdeathsig)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.log_text()
            m = re.search(r"event=listening.*?port=(\d+)", text)
            if m:
                self.port = int(m.group(1))
                return self
            if self.proc.poll() is not None:
                raise Failure("the server exited (%s) before listening:\n%s" % (
                    self.proc.returncode, self.log_tail()))
            time.sleep(0.02)
        raise Failure("the server did not listen within %d s:\n%s" % (timeout, self.log_tail()))

    def log_text(self, path=None):
        try:
            with open(path or self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def all_logs(self):
        return "".join(self.log_text(os.path.join(self.tmp, "server-%d.log" % i))
                       for i in range(1, self.runs + 1))

    def log_tail(self, n=25):
        return "\n".join("    " + ln for ln in self.log_text().splitlines()[-n:])

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self, timeout=30):
        """SIGTERM; the exit status (None when it had to be killed)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
                self.proc = None
                return None
        rc = self.proc.returncode
        self.proc = None
        return rc

    # -- REST ---------------------------------------------------------------
    def rest(self, method, path, body=None, token=None, headers=None, timeout=30):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        h = dict(headers or {})
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        if token:
            h["Authorization"] = "Bearer " + token
        try:
            conn.request(method, path, body=data, headers=h)
            resp = conn.getresponse()
            raw = resp.read()
        finally:
            conn.close()
        try:
            obj = json.loads(raw) if raw else None
        except ValueError:
            obj = raw.decode("utf-8", "replace")
        return resp.status, obj

    def ok(self, method, path, body=None, token=None, want=(200, 201, 202)):
        st, obj = self.rest(method, path, body, token)
        check(st in want, "%s %s answered %s: %s" % (method, path, st, obj))
        return obj

    def dialogs_of(self, user_id):
        """Every dialog (full documents) of Telegram user @user_id, oldest first."""
        items, cursor = [], None
        while True:
            path = "/api/v1/dialogues?customer_id=tg:%d&view=full&limit=100" % user_id
            if cursor:
                path += "&cursor=" + cursor
            obj = self.ok("GET", path)
            items += obj.get("items", [])
            cursor = obj.get("next_cursor")
            if not cursor:
                break
        items.sort(key=lambda d: (d.get("created_at") or "", d.get("dialog_id")))
        return items

    def open_dialog(self, user_id):
        ds = [d for d in self.dialogs_of(user_id) if d.get("status") != "closed"]
        check(len(ds) <= 1, "tg:%d has %d open dialogs (one open dialog per chat)" % (user_id, len(ds)),
              [d["dialog_id"] for d in ds])
        return ds[0] if ds else None

    def dialog(self, dialog_id):
        return self.ok("GET", "/api/v1/dialogue/%s" % dialog_id)

    def operators(self):
        obj = self.ok("GET", "/api/v1/operators")
        return obj.get("items", obj) if isinstance(obj, dict) else obj

    def register_rest_operator(self, name, **kw):
        body = dict({"secret": SECRET, "name": name, "languages": ["ru", "en"]}, **kw)
        obj = self.ok("POST", "/api/v1/operators/register", body)
        return obj["operator_id"], obj["token"]


def customer_texts(doc):
    return [m["content"] for m in doc.get("messages", []) if m.get("role") == "customer"]


def bot_messages(doc):
    """The messages of @doc the customer is sent (AI, operator, system)."""
    return [m for m in doc.get("messages", []) if m.get("role") in ("agent", "operator", "system")]


# ---------------------------------------------------------------------------
# A scenario's context.
# ---------------------------------------------------------------------------

class Ctx:
    def __init__(self, name):
        self.name = name
        self.tmp = tempfile.mkdtemp(prefix="cca-tg-%s-" % name)
        self.fake = FakeBotAPI(TOKEN).start()
        self.servers = []
        self.notes = []
        self.failures = []

    def server(self, wait_method="getUpdates", **env):
        s = Server(self.tmp, self.fake, {k: str(v) for k, v in env.items()})
        self.servers.append(s)
        s.start()
        # The channel starts: getMe, then polling (or setWebhook).
        self.fake.wait_call(wait_method, timeout=20, answered=False)
        return s

    def expect(self, cond, msg):
        """A check that lets the scenario go on; failures raised by done()."""
        if not cond:
            self.failures.append(msg)
            say("  # FAILED CHECK: " + msg.split("\n")[0])
        return cond

    def done(self):
        check(not self.failures, "%d check(s) failed:\n%s" % (len(self.failures), "\n".join(self.failures)))

    def note(self, msg):
        self.notes.append(msg)
        say("  # " + msg)

    def close(self, failed):
        problems = []
        for s in self.servers:
            if s.proc is not None:
                rc = s.stop()
                if rc != 0 and not failed:
                    problems.append("the server exited with %s on SIGTERM:\n%s" % (rc, s.log_tail()))
            logs = s.all_logs()
            if TOKEN in logs or TOKEN.split(":")[1] in logs:
                problems.append("the bot token appears in the server log")
        self.fake.stop()
        if store_pg() and not os.environ.get("TG_TEST_KEEP"):
            pg_drop(self.tmp)
        if os.environ.get("TG_TEST_KEEP"):
            say("  # temporary directory kept: %s" % self.tmp)
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)
        return problems

    def assert_no_violations(self):
        v = self.fake.violations
        check(not v, "the channel sent %d malformed request(s) to the Bot API:\n%s" % (
            len(v), "\n".join("  #%d %s: %s\n    %s" % (x["seq"], x["method"], x["problem"],
                                                         json.dumps(x["params"], ensure_ascii=False)[:400])
                              for x in v[:10])))


def wait_send(ctx, chat_id, since, method="sendMessage", pred=None, timeout=15, n=1):
    return ctx.fake.wait_call(method, chat_id=chat_id, since=since, pred=pred, timeout=timeout, n=n)


# ---------------------------------------------------------------------------
# (a) A Russian customer, the AI, the queue, an operator registered by PIN.
# ---------------------------------------------------------------------------

def russian_conversation(ctx):
    fake = ctx.fake
    srv = ctx.server()
    ivan = fake.user(5001, "Иван", "ru")
    anna = fake.user(7001, "Анна", "ru")
    t_start = time.monotonic()

    # /start: a greeting that asks for the name, in Russian.
    m = fake.mark()
    fake.send_text(ivan, "/start")
    greet = wait_send(ctx, 5001, m)
    check(is_russian(greet.get("text")), "the greeting is not in Russian: %r" % greet.get("text"))
    check(not greet.get("protect_content"), "a customer's message is protected")

    # The name goes into the profile.
    m = fake.mark()
    fake.send_text(ivan, "Иван Петров")
    saved = wait_send(ctx, 5001, m)
    check(is_russian(saved.get("text")), "the name confirmation is not Russian: %r" % saved.get("text"))

    def profile_name():
        st, obj = srv.rest("GET", "/api/v1/customers/tg:5001")
        return st == 200 and (obj.get("customer") or {}).get("full_name") == "Иван Петров" and obj
    prof = wait_until(profile_name, 10, "the profile tg:5001 with full_name Иван Петров")
    check(prof["customer"].get("language") in (None, "ru"), "profile language %r" % prof["customer"].get("language"))

    # A question: the AI answers it, and the answer reaches the chat.
    m = fake.mark()
    q = "Как сбросить пароль от личного кабинета?"
    fake.send_text(ivan, q)
    ans = wait_send(ctx, 5001, m)
    d = wait_until(lambda: (lambda x: x if x and q in customer_texts(x) and
                            any(mm["role"] == "agent" for mm in x["messages"]) else None)(srv.open_dialog(5001)),
                   10, "the dialog with the question and the AI's answer")
    check(d.get("source") == "telegram", "the dialog's source is %r, not telegram" % d.get("source"))
    check(d.get("customer_id") == "tg:5001", "customer_id %r" % d.get("customer_id"))
    agent = [mm for mm in d["messages"] if mm["role"] == "agent"]
    check(ans.get("text") == agent[-1]["content"],
          "the AI's answer was not sent verbatim", "sent: %r" % ans.get("text"),
          "dialog: %r" % agent[-1]["content"])
    cust = [mm for mm in d["messages"] if mm["role"] == "customer" and mm["content"] == q][0]
    ch = cust.get("channel") or {}
    check(ch.get("name") == "telegram" and ch.get("chat_id") == 5001 and isinstance(ch.get("message_id"), int),
          "the customer message's channel object: %r" % ch)
    dialog_id = d["dialog_id"]

    # Asks for a human: nobody is on shift, so the queue.
    m = fake.mark()
    fake.send_text(ivan, "Позовите оператора, пожалуйста")
    d = wait_until(lambda: (lambda x: x if x and x["status"] == "queued" else None)(srv.dialog(dialog_id)),
                   10, "the dialog queued")
    queue_msgs = [mm for mm in d["messages"] if mm.get("kind") == "queue"]
    check(queue_msgs, "no queue notice in the dialog", [mm for mm in d["messages"]][-3:])
    qn = wait_send(ctx, 5001, m, pred=lambda c: c.get("text") == queue_msgs[-1]["content"])
    check(is_russian(qn.get("text")), "the queue notice is not Russian")

    # An operator registers by PIN; the command message is deleted.
    m = fake.mark()
    reg = fake.send_text(anna, "/operator " + PIN)
    reg_mid = reg["message"]["message_id"]
    fake.wait_call("deleteMessage", chat_id=7001, since=m, ok=None,
                   pred=lambda c: c.get("message_id") == reg_mid, timeout=10)
    regd = wait_send(ctx, 7001, m)
    check(regd.get("protect_content") is True, "a message to an operator without protect_content: %r" % regd)
    ops = wait_until(lambda: [o for o in srv.operators() if o.get("name", "").startswith("Анна")],
                     10, "the operator Анна in GET /operators")
    check(len(ops) == 1, "%d operators named Анна" % len(ops))
    op_id = ops[0]["operator_id"]

    # /available: the queued dialog is hers, with a card.
    m = fake.mark()
    fake.send_text(anna, "/available")
    card = wait_send(ctx, 7001, m, pred=lambda c: any(
        (b or "").startswith("f:") for b in buttons(c.get("reply_markup"))), timeout=15)
    check(card.get("protect_content") is True, "the card is not protected")
    datas = buttons(card.get("reply_markup"))
    nums = {b.split(":", 1)[1] for b in datas}
    check(len(nums) == 1 and sorted(b[0] for b in datas) == ["a", "e", "f"],
          "the card's keyboard: %r" % datas)
    number = nums.pop()
    check(re.match(r"^[1-9]\d{0,3}$", number), "client number %r" % number)
    d = wait_until(lambda: (lambda x: x if x["status"] == "assigned" else None)(srv.dialog(dialog_id)),
                   10, "the dialog assigned")
    check(d["owner"].get("operator_id") == op_id, "the dialog's owner: %r" % d["owner"])
    assigned = [mm for mm in d["messages"] if mm.get("kind") == "assigned"]
    check(assigned, "no 'assigned' notice")
    wait_send(ctx, 5001, m, pred=lambda c: c.get("text") == assigned[-1]["content"])

    # The customer's photo: copied to the operator from the customer's chat.
    m = fake.mark()
    ph = fake.send_photo(ivan, caption="Вот скриншот ошибки")
    ph_mid = ph["message"]["message_id"]
    cp = wait_send(ctx, 7001, m, method="copyMessage",
                   pred=lambda c: c.get("from_chat_id") == 5001 and c.get("message_id") == ph_mid)
    check(cp.get("protect_content") is True, "the copy to the operator is not protected")
    d = wait_until(lambda: (lambda x: x if any((mm.get("channel") or {}).get("media") == "photo"
                                               for mm in x["messages"]) else None)(srv.dialog(dialog_id)),
                   10, "the photo stored in the dialog")
    pm = [mm for mm in d["messages"] if (mm.get("channel") or {}).get("media") == "photo"][-1]
    check(pm["role"] == "customer" and pm["channel"].get("file_id") == ph["message"]["photo"][-1]["file_id"],
          "the photo message: %r" % pm)

    # Customer text: relayed as "<name> (#n): text".
    m = fake.mark()
    fake.send_text(ivan, "Ошибка 403 при входе")
    relay = wait_send(ctx, 7001, m, pred=lambda c: (c.get("text") or "").endswith("Ошибка 403 при входе"))
    check(re.match(r"^.+ \(#%s\): Ошибка 403 при входе$" % number, relay.get("text")),
          "the relay's form: %r" % relay.get("text"))
    check(relay.get("protect_content") is True, "the relay is not protected")

    # /focus, then plain text reaches the customer verbatim.
    m = fake.mark()
    fake.send_text(anna, "/focus " + number)
    wait_send(ctx, 7001, m)
    m = fake.mark()
    reply = "Здравствуйте, Иван! Сбросьте кэш браузера и войдите снова."
    fake.send_text(anna, reply)
    got = wait_send(ctx, 5001, m, pred=lambda c: c.get("text") == reply)
    check(not got.get("reply_markup"), "an operator's words came with a keyboard")
    d = srv.dialog(dialog_id)
    check(any(mm["role"] == "operator" and mm["content"] == reply for mm in d["messages"]),
          "the operator's reply is not in the dialog")

    # The operator's photo: copied to the customer.
    m = fake.mark()
    oph = fake.send_photo(anna, caption="Вот так")
    oph_mid = oph["message"]["message_id"]
    wait_send(ctx, 5001, m, method="copyMessage",
              pred=lambda c: c.get("from_chat_id") == 7001 and c.get("message_id") == oph_mid)

    # /end: the closing notice and the rating keyboard.
    m = fake.mark()
    fake.send_text(anna, "/end")
    d = wait_until(lambda: (lambda x: x if x["status"] == "closed" else None)(srv.dialog(dialog_id)),
                   10, "the dialog closed")
    rate = wait_send(ctx, 5001, m, pred=lambda c: any((b or "").startswith("r:") for b in buttons(
        c.get("reply_markup"))))
    check(buttons(rate.get("reply_markup")) == ["r:%d:%s" % (i, dialog_id) for i in range(1, 6)],
          "the rating keyboard: %r" % buttons(rate.get("reply_markup")))
    closing = [mm for mm in d["messages"] if mm.get("kind") == "closing"]
    if closing:
        wait_send(ctx, 5001, m, pred=lambda c: c.get("text") == closing[-1]["content"])
    else:
        ctx.note("no 'closing' system message in the dialog after /end")

    # The customer presses 5.
    m = fake.mark()
    press = fake.press(ivan, "r:5:%s" % dialog_id, message=rate.result)
    qid = press["callback_query"]["id"]
    fake.wait_call("answerCallbackQuery", since=m, pred=lambda c: c.get("callback_query_id") == qid, timeout=10)
    d = wait_until(lambda: (lambda x: x if (x.get("rating") or {}).get("score") == 5 else None)(srv.dialog(dialog_id)),
                   10, "the rating 5 stored")
    check(d["rating"].get("operator_id") == op_id, "the rating's operator: %r" % d["rating"])

    # Nothing else went wrong.
    fake.wait_quiet(1.5, 15)
    ctx.assert_no_violations()
    check(not fake.rejections, "requests the Bot API refused: %s" % fake.rejections)
    # Each of the dialog's messages went to the customer once, in order.
    d = srv.dialog(dialog_id)
    expect = [mm["content"] for mm in bot_messages(d)
              if not (mm["role"] == "operator" and (mm.get("channel") or {}).get("media"))]
    got = [t for t in fake.sent_texts(5001) if t in set(expect)]
    check(got == expect, "the dialog's messages and what the customer was sent differ",
          "dialog: %s" % [x[:50] for x in expect], "sent:   %s" % [x[:50] for x in got])
    sends = [c for c in fake.calls if c.method in SEND_METHODS and c.ok]
    dup = collections.Counter((c.chat_id, c.method, c.get("text"), c.get("message_id")) for c in sends)
    dup = {k: n for k, n in dup.items() if n > 1 and not (k[0] == 5001 and k[2] in expect)}
    check(not dup, "a message was sent twice: %s" % list(dup))
    say(transcript(fake, {5001: "Иван (customer)", 7001: "Анна (operator)"}, t_start))


def transcript(fake, names, t0):
    """Who said what, from the fake's point of view."""
    lines = ["--- transcript (through the fake Bot API) ---"]
    with fake._lock:
        events = []
        for (t, chat, d, what) in fake.transcript:
            if d == "in" and chat in names and t >= t0:
                events.append((t, "%s → bot" % names[chat], what))
        for c in fake.calls:
            if c.t_recv < t0 or not c.ok:
                continue
            who = names.get(c.chat_id)
            if c.method == "sendMessage" and who:
                extra = ""
                kb = buttons(c.get("reply_markup"))
                if kb:
                    extra += "  [buttons: %s]" % " ".join(kb)
                if c.get("protect_content"):
                    extra += "  (protected)"
                events.append((c.t_recv, "bot → %s" % who, c.get("text") + extra))
            elif c.method == "copyMessage" and who:
                events.append((c.t_recv, "bot → %s" % who, "[copy of message %s from %s]%s%s" % (
                    c.get("message_id"), names.get(c.get("from_chat_id"), c.get("from_chat_id")),
                    " caption: " + c.get("caption") if c.get("caption") else "",
                    "  (protected)" if c.get("protect_content") else "")))
            elif c.method == "deleteMessage" and who:
                events.append((c.t_recv, "bot", "[deletes message %s in %s's chat]" % (c.get("message_id"), who)))
            elif c.method == "answerCallbackQuery":
                events.append((c.t_recv, "bot", "[answers the button press%s]" % (
                    ": " + c.get("text") if c.get("text") else "")))
    events.sort(key=lambda e: e[0])
    for t, who, what in events:
        lines.append("%6.1fs  %-26s %s" % (t - t0, who + ":", what.replace("\n", "\n" + " " * 35)))
    return "\n".join(lines)


# ---------------------------------------------------------------------------
# (a') Wrong PINs are refused and rate-limited.
# ---------------------------------------------------------------------------

def wrong_pin(ctx):
    fake = ctx.fake
    srv = ctx.server(OPERATOR_REGISTER_PER_MIN=3)
    boris = fake.user(7002, "Борис", "ru")
    replies = []
    for i in range(12):
        m = fake.mark()
        u = fake.send_text(boris, "/operator 99%02d" % i)
        mid = u["message"]["message_id"]
        r = wait_send(ctx, 7002, m, timeout=10)
        fake.wait_call("deleteMessage", chat_id=7002, since=m, ok=None,
                       pred=lambda c: c.get("message_id") == mid, timeout=10)
        replies.append(r.get("text"))
        if len(replies) > 1 and replies[-1] != replies[0]:
            break
    check(len(replies) > 1 and replies[-1] != replies[0],
          "12 wrong PINs, and the refusal never changed to a rate limit: %r" % replies[:3])
    ctx.note("rate-limited after %d wrong PINs: %r" % (len(replies) - 1, replies[-1]))
    check(any(ch.isdigit() for ch in replies[-1]), "the rate-limit reply names no wait: %r" % replies[-1])
    check(is_russian(replies[0]), "the refusal is not Russian: %r" % replies[0])
    # While limited, even the right PIN is refused.
    m = fake.mark()
    fake.send_text(boris, "/operator " + PIN)
    wait_send(ctx, 7002, m, timeout=10)
    time.sleep(0.5)
    check(not [o for o in srv.operators() if o.get("name", "").startswith("Борис")],
          "the right PIN was accepted while rate-limited")
    # And someone else is not affected.
    m = fake.mark()
    fake.send_text(fake.user(7003, "Вера", "ru"), "/operator " + PIN)
    wait_until(lambda: [o for o in srv.operators() if o.get("name", "").startswith("Вера")], 10,
               "another user registers while Борис is limited")
    ctx.assert_no_violations()


# ---------------------------------------------------------------------------
# (b) An English customer queued with a position while the operator is busy.
# ---------------------------------------------------------------------------

def english_queue(ctx):
    fake = ctx.fake
    srv = ctx.server(OPERATOR_MAX_DIALOGS=1)
    op = fake.user(7101, "Olga", "en")
    m = fake.mark()
    fake.send_text(op, "/operator " + PIN)
    wait_send(ctx, 7101, m)
    m = fake.mark()
    fake.send_text(op, "/available")
    wait_send(ctx, 7101, m)

    a = fake.user(6001, "Alice", "en")
    fake.send_text(a, "Hello, I need to talk to a human please")
    da = wait_until(lambda: (lambda x: x if x and x["status"] == "assigned" else None)(srv.open_dialog(6001)),
                    15, "Alice's dialog assigned to the operator")
    card_a = fake.wait_call("sendMessage", chat_id=7101, pred=lambda c: buttons(c.get("reply_markup")), timeout=10)
    check(is_english(card_a.get("text")), "the card is not English for an English operator: %r" % card_a.get("text"))

    positions = {}
    for uid, name, n in ((6002, "Bob", 1), (6003, "Carol", 2)):
        u = fake.user(uid, name, "en")
        m = fake.mark()
        fake.send_text(u, "Hi. I want to talk to a real person")
        d = wait_until(lambda: (lambda x: x if x and x["status"] == "queued" else None)(srv.open_dialog(uid)),
                       15, "%s queued" % name)
        q = srv.ok("GET", "/api/v1/dialogue/%s/queue" % d["dialog_id"])
        check(q.get("position") == n, "%s's position %r, expected %d" % (name, q.get("position"), n))
        qmsgs = [mm["content"] for mm in srv.dialog(d["dialog_id"])["messages"] if mm.get("kind") == "queue"]
        check(len(qmsgs) == 1, "%s's dialog has %d queue notices" % (name, len(qmsgs)))
        check(re.search(r"\b%d\b" % n, qmsgs[0]), "the queue notice does not say %d: %r" % (n, qmsgs[0]))
        notice = wait_send(ctx, uid, m, pred=lambda c: c.get("text") == qmsgs[0])
        check(is_english(notice.get("text")), "the queue notice is not English: %r" % notice.get("text"))
        positions[name] = (d["dialog_id"], notice.get("text"))
    ctx.note("queue notice: %r" % positions["Carol"][1])

    # The operator ends Alice's dialog: Bob (first in the queue) is hers.
    m = fake.mark()
    fake.send_text(op, "/end")
    wait_until(lambda: srv.dialog(da["dialog_id"])["status"] == "closed", 10, "Alice's dialog closed")
    bob_id = positions["Bob"][0]
    wait_until(lambda: srv.dialog(bob_id)["status"] == "assigned", 10, "Bob's dialog assigned")
    card = wait_send(ctx, 7101, m, pred=lambda c: any((b or "").startswith("f:") for b in buttons(c.get("reply_markup"))))
    check(card.get("protect_content") is True, "the card is not protected")
    check("Bob" in card.get("text", ""), "Bob's card does not name him: %r" % card.get("text"))
    q = srv.ok("GET", "/api/v1/dialogue/%s/queue" % positions["Carol"][0])
    check(q.get("position") == 1, "Carol moved to position %r, not 1" % q.get("position"))
    fake.wait_quiet(1.5, 15)
    ctx.assert_no_violations()


# ---------------------------------------------------------------------------
# (c) REST operators and Telegram operators on one queue.
# ---------------------------------------------------------------------------

def rest_and_telegram(ctx):
    fake = ctx.fake
    srv = ctx.server()
    rita_id, rita = srv.register_rest_operator("Rita")
    srv.ok("PUT", "/api/v1/operators/me/status", {"status": "available"}, token=rita)

    # A Telegram customer asks for a human: Rita (REST) has it, answers over REST.
    tom = fake.user(6101, "Tom", "en")
    fake.send_text(tom, "Can I talk to a human operator?")
    d = wait_until(lambda: (lambda x: x if x and x["status"] == "assigned" else None)(srv.open_dialog(6101)),
                   15, "Tom's dialog assigned")
    check(d["owner"]["operator_id"] == rita_id, "Tom's dialog went to %r, not Rita" % d["owner"])
    m = fake.mark()
    srv.ok("POST", "/api/v1/dialogue/%s/reply" % d["dialog_id"], {"message": "Hi Tom, Rita here (REST)."},
           token=rita)
    wait_send(ctx, 6101, m, pred=lambda c: c.get("text") == "Hi Tom, Rita here (REST).")
    # Tom's answer reaches Rita's dialog over REST.
    fake.send_text(tom, "Thanks Rita, my invoice is missing")
    wait_until(lambda: "Thanks Rita, my invoice is missing" in customer_texts(srv.dialog(d["dialog_id"])),
               10, "Tom's message in the dialog")
    m = fake.mark()
    srv.ok("POST", "/api/v1/dialogue/%s/close" % d["dialog_id"], {"reason": "resolved"}, token=rita)
    rate = wait_send(ctx, 6101, m, pred=lambda c: any((b or "").startswith("r:") for b in buttons(c.get("reply_markup"))))
    check(buttons(rate.get("reply_markup"))[-1] == "r:5:%s" % d["dialog_id"], "rating keyboard after a REST close")
    srv.ok("PUT", "/api/v1/operators/me/status", {"status": "busy"}, token=rita)

    # A Telegram operator (shared secret) gets a REST dialog, with a card.
    max_ = fake.user(7201, "Max", "en")
    m = fake.mark()
    reg = fake.send_text(max_, "/register " + SECRET)
    fake.wait_call("deleteMessage", chat_id=7201, since=m, ok=None,
                   pred=lambda c: c.get("message_id") == reg["message"]["message_id"], timeout=10)
    wait_send(ctx, 7201, m)
    m = fake.mark()
    fake.send_text(max_, "/available")
    wait_send(ctx, 7201, m)
    web = srv.ok("POST", "/api/v1/dialogue/create", {"customer_info": {"name": "Web Client"}})
    m = fake.mark()
    st = srv.ok("POST", "/api/v1/dialogue/%s/message" % web["dialog_id"], {"message": "I want to talk to a human"})
    check(st.get("status") == "assigned", "the REST dialog is %r, not assigned" % st.get("status"))
    card = wait_send(ctx, 7201, m, pred=lambda c: any((b or "").startswith("f:") for b in buttons(c.get("reply_markup"))))
    check(card.get("protect_content") is True, "the card is not protected")
    check("Web Client" in card.get("text", ""), "the card does not name the customer: %r" % card.get("text"))
    number = buttons(card.get("reply_markup"))[0].split(":")[1]
    # Max answers with /reply; the web customer sees it over REST.
    fake.send_text(max_, "/reply %s Hello from Telegram!" % number)
    wait_until(lambda: any(mm["role"] == "operator" and mm["content"] == "Hello from Telegram!"
                           for mm in srv.dialog(web["dialog_id"])["messages"]), 10,
               "Max's reply in the REST dialog")
    # The web customer writes: relayed to Max.
    m = fake.mark()
    srv.ok("POST", "/api/v1/dialogue/%s/message" % web["dialog_id"], {"message": "Great, thank you"})
    relay = wait_send(ctx, 7201, m, pred=lambda c: (c.get("text") or "").endswith("Great, thank you"))
    check(re.match(r"^Web Client \(#%s\): Great, thank you$" % number, relay.get("text")),
          "relay %r" % relay.get("text"))
    # Nothing is ever sent to a chat for the REST customer.
    fake.wait_quiet(1.5, 15)
    check(not fake.rejections, "requests the Bot API refused: %s" % fake.rejections)
    ctx.assert_no_violations()


# ---------------------------------------------------------------------------
# (a'') Media of every kind, edits, the operator's commands, an operator who
# blocked the bot.
# ---------------------------------------------------------------------------

def media_and_commands(ctx):
    fake = ctx.fake
    srv = ctx.server()
    oleg = fake.user(7301, "Олег", "ru")
    m = fake.mark()
    fake.send_text(oleg, "/operator " + PIN)
    wait_send(ctx, 7301, m)
    m = fake.mark()
    fake.send_text(oleg, "/available")
    wait_send(ctx, 7301, m)
    op_id = [o for o in srv.operators() if o.get("name", "").startswith("Олег")][0]["operator_id"]

    petr = fake.user(6301, "Пётр", "ru")
    m = fake.mark()
    fake.send_text(petr, "Здравствуйте, соедините с оператором")
    card = wait_send(ctx, 7301, m, pred=lambda c: any((b or "").startswith("f:") for b in buttons(c.get("reply_markup"))))
    number = buttons(card.get("reply_markup"))[0].split(":")[1]
    d = wait_until(lambda: (lambda x: x if x and x["status"] == "assigned" else None)(srv.open_dialog(6301)),
                   10, "Пётр's dialog assigned")
    dialog_id = d["dialog_id"]

    # Every kind of media: copied to the operator, stored with type and file id.
    sent_media = []
    for kind, fn in (("document", lambda: fake.send_document(petr, caption="Счёт за октябрь")),
                     ("voice", lambda: fake.send_voice(petr)),
                     ("sticker", lambda: fake.send_sticker(petr))):
        m = fake.mark()
        up = fn()
        msg = up["message"]
        file_id = msg[kind]["file_id"]
        cp = wait_send(ctx, 7301, m, method="copyMessage",
                       pred=lambda c, mid=msg["message_id"]: c.get("from_chat_id") == 6301 and c.get("message_id") == mid)
        check(cp.get("protect_content") is True, "the %s copy to the operator is not protected" % kind)
        sent_media.append((kind, file_id))
    d = wait_until(lambda: (lambda x: x if sum(1 for mm in x["messages"] if (mm.get("channel") or {}).get("media"))
                            >= 3 else None)(srv.dialog(dialog_id)), 10, "three media messages stored")
    stored = [(mm["channel"]["media"], mm["channel"].get("file_id"), mm["role"]) for mm in d["messages"]
              if (mm.get("channel") or {}).get("media")]
    check([(k, f, "customer") for k, f in sent_media] == stored, "stored media %r, sent %r" % (stored, sent_media))
    doc_msg = [mm for mm in d["messages"] if (mm.get("channel") or {}).get("media") == "document"][0]
    check(doc_msg["channel"].get("caption") == "Счёт за октябрь", "the document's caption: %r" % doc_msg["channel"])

    # An edited message is recorded as an edit.
    m = fake.mark()
    up = fake.send_text(petr, "Номер заказа 123")
    wait_send(ctx, 7301, m, pred=lambda c: (c.get("text") or "").endswith("Номер заказа 123"))
    m = fake.mark()
    fake.edit_text(petr, up["message"]["message_id"], "Номер заказа 124")
    wait_send(ctx, 7301, m, pred=lambda c: "Номер заказа 124" in (c.get("text") or ""))
    d = wait_until(lambda: (lambda x: x if any((mm.get("channel") or {}).get("edit") for mm in x["messages"])
                            else None)(srv.dialog(dialog_id)), 10, "the edit recorded")
    ed = [mm for mm in d["messages"] if (mm.get("channel") or {}).get("edit")][0]
    check(ed["content"] == "Номер заказа 124" and ed["channel"].get("message_id") == up["message"]["message_id"],
          "the edit: %r" % ed)

    # A customer's message of 4,096 characters (Telegram's most) reaches the
    # operator with the name in front: split into messages that fit.
    para = ("Подробности: приложение закрывается при входе, версия 5.2, Android 14. " * 20).strip()
    long = "\n\n".join([para] * 4)[:4096].strip()
    m = fake.mark()
    fake.send_text(petr, long)
    parts = wait_until(lambda: (lambda p: p if len(" ".join(p).split()) >= len(long.split()) + 2 else None)(
        [c.get("text") for c in fake.calls_of("sendMessage", 7301, m, ok=True)]), 20, "the long relay's pieces")
    check(len(parts) >= 2 and all(len(p.encode("utf-16-le")) // 2 <= 4096 for p in parts),
          "pieces of %s units" % [len(p) for p in parts])
    check(" ".join(parts).split() == ("Пётр (#%s): " % number + long).split(),
          "the pieces do not make up the message: %r ... %r" % (parts[0][:80], parts[-1][-80:]))
    ctx.note("a %d-character message went to the operator as %d messages (%s)" % (
        len(long), len(parts), [len(p) for p in parts]))

    # The operator's commands answer the operator, protected.
    fake.wait_quiet(1.2, 10)
    for cmd, need in (("/status", None), ("/clients", None), ("/help", "/reply"), ("/stats", None)):
        m = fake.mark()
        fake.send_text(oleg, cmd)
        r = wait_send(ctx, 7301, m)
        check(r.get("protect_content") is True, "%s's answer is not protected" % cmd)
        check(is_russian(r.get("text")), "%s's answer is not Russian: %r" % (cmd, r.get("text")))
        if need:
            check(need in r.get("text"), "%s's answer lacks %s: %r" % (cmd, need, r.get("text")))
        if cmd == "/clients":
            check("#" + number in r.get("text"), "/clients does not list #%s: %r" % (number, r.get("text")))

    # /history: a document, sent as multipart/form-data.
    m = fake.mark()
    fake.send_text(oleg, "/history " + number)
    h = wait_send(ctx, 7301, m, method="sendDocument")
    doc = h.get("document")
    check(hasattr(doc, "data") and doc.content_type.startswith("text/"), "/history's document: %r" % (doc,))
    body = doc.data.decode("utf-8")
    check("Номер заказа" in body and "соедините с оператором" in body, "the history lacks the dialog: %r" % body[:300])
    check(h.get("protect_content") is True, "the history is not protected")
    check(h.content_type.startswith("multipart/form-data"), "sendDocument as %r" % h.content_type)

    # /ai: back to the AI; the customer is told.
    m = fake.mark()
    fake.send_text(oleg, "/ai " + number)
    d = wait_until(lambda: (lambda x: x if x["status"] in ("active", "escalated") else None)(srv.dialog(dialog_id)),
                   10, "the dialog handed back")
    check(d["owner"].get("kind") == "agent", "the owner after /ai: %r" % d["owner"])
    hb = [mm for mm in d["messages"] if mm.get("kind") == "handed_back"]
    check(hb, "no handed_back notice")
    wait_send(ctx, 6301, m, pred=lambda c: c.get("text") == hb[-1]["content"])

    # /busy, /offline: the REST view follows.
    for cmd, status in (("/busy", "busy"), ("/offline", "offline"), ("/available", "available")):
        m = fake.mark()
        fake.send_text(oleg, cmd)
        wait_send(ctx, 7301, m)
        wait_until(lambda st=status: [o for o in srv.operators() if o["operator_id"] == op_id][0]["status"] == st,
                   10, "operator status %s after %s" % (status, cmd))

    # The operator blocks the bot: set offline, the dialog requeued.
    fake.wait_quiet(1.2, 10)
    fake.block(7301)
    vera = fake.user(6302, "Vera", "en")
    m = fake.mark()
    fake.send_text(vera, "I want to talk to a human")
    fake.wait_call(chat_id=7301, since=m, ok=False, timeout=15)
    wait_until(lambda: [o for o in srv.operators() if o["operator_id"] == op_id][0]["status"] == "offline",
               10, "the operator who blocked the bot set offline")
    wait_until(lambda: (lambda x: x if x and x["status"] == "queued" else None)(srv.open_dialog(6302)),
               10, "Vera's dialog requeued")
    time.sleep(2)
    first = fake.calls_of(chat_id=7301, since=m, ok=False)[0]
    after = fake.calls_of(chat_id=7301, since=first.seq + 1)
    check(not after, "calls to the operator's chat after its 403: %s" % after)
    ctx.assert_no_violations()


# ---------------------------------------------------------------------------
# (d) Faults: 429, 502, a dropped connection, malformed JSON, duplicates, 403.
# ---------------------------------------------------------------------------

def faults(ctx):
    fake = ctx.fake
    srv = ctx.server()

    # 429 with retry_after 3: the retry comes no earlier.
    u1 = fake.user(6201, "Rick", "en")
    fake.fault("429", "sendMessage", chat_id=6201, retry_after=3)
    m = fake.mark()
    fake.send_text(u1, "Hello, what are your opening hours?")
    first = fake.wait_call("sendMessage", chat_id=6201, since=m, ok=False, timeout=15)
    check(first.status == 429, "the first send got %s" % first.status)
    again = fake.wait_call("sendMessage", chat_id=6201, since=first.seq + 1, ok=None, timeout=15)
    gap = again.t_recv - first.t_done
    check(gap >= 3.0 - 0.02, "the retry came %.3f s after a 429 with retry_after 3" % gap)
    check(again.ok and again.get("text") == first.get("text"), "the retry is not the same message")
    ctx.note("429 retry_after=3: the retry after %.2f s" % gap)

    # 502 twice, then a dropped connection: delivered later.
    u2 = fake.user(6202, "Gina", "en")
    fake.fault("502", "sendMessage", chat_id=6202, count=2)
    m = fake.mark()
    fake.send_text(u2, "Hello, is delivery free?")
    ok2 = fake.wait_call("sendMessage", chat_id=6202, since=m, timeout=30)
    fails = fake.calls_of("sendMessage", 6202, m, ok=False)
    check(len(fails) == 2 and all(c.status == 502 for c in fails), "the 502s: %s" % fails)
    check(all(c.get("text") == ok2.get("text") for c in fails), "a different message after 502")
    u3 = fake.user(6203, "Dan", "en")
    fake.fault("drop", "sendMessage", chat_id=6203)
    m = fake.mark()
    fake.send_text(u3, "Hello, do you ship abroad?")
    ok3 = fake.wait_call("sendMessage", chat_id=6203, since=m, timeout=30)
    dropped = fake.calls_of("sendMessage", 6203, m, pred=lambda c: c.fault == "drop")
    check(len(dropped) == 1 and dropped[0].get("text") == ok3.get("text"), "the dropped send was not retried")
    ctx.note("502 x2 then delivered after %.2f s; dropped then delivered after %.2f s" % (
        ok2.t_recv - fails[0].t_recv, ok3.t_recv - dropped[0].t_recv))

    # getUpdates: malformed JSON, a 502 and a dropped connection; polling goes on.
    u4 = fake.user(6204, "Mona", "en")
    for kind in ("malformed", "502", "drop"):
        fake.fault(kind, "getUpdates")
        fake.send_text(u4, "wake the poll (%s)" % kind)   # answers the poll held now
        fake.wait_call("getUpdates", ok=None, pred=lambda c, k=kind: c.fault == k, timeout=20)
    fake.send_text(u4, "Are you still there?")
    d = wait_until(lambda: (lambda x: x if x and "Are you still there?" in customer_texts(x) else None)(
        srv.open_dialog(6204)), 30, "Mona's last message handled after the poll faults")
    texts = customer_texts(d)
    check(texts.count("Are you still there?") == 1 and all(
        texts.count("wake the poll (%s)" % k) == 1 for k in ("malformed", "502", "drop")),
        "Mona's messages after poll faults: %r" % texts)

    # A duplicated update (twice in one batch; once more later): handled once.
    u5 = fake.user(6205, "Dave", "en")
    m = fake.mark()
    fake.send_text(u5, "Duplicate me: what is my order status?", duplicate=True)
    wait_send(ctx, 6205, m, timeout=15)
    up = fake.send_text(u5, "Second question: can I pay by card?")
    wait_until(lambda: "Second question: can I pay by card?" in customer_texts(srv.open_dialog(6205) or {}),
               10, "Dave's second message")
    fake.redeliver_update(up)
    fake.send_text(u5, "Third question: where is my parcel?")
    wait_until(lambda: "Third question: where is my parcel?" in customer_texts(srv.open_dialog(6205) or {}),
               10, "Dave's third message")
    fake.wait_quiet(2.0, 20)
    d = srv.open_dialog(6205)
    texts = customer_texts(d)
    for t in ("Duplicate me: what is my order status?", "Second question: can I pay by card?",
              "Third question: where is my parcel?"):
        check(texts.count(t) == 1, "%r is %d times in the dialog" % (t, texts.count(t)), texts)
    expect = collections.Counter(mm["content"] for mm in bot_messages(d))
    sent = collections.Counter(fake.sent_texts(6205))
    check(all(sent[k] >= n for k, n in expect.items()), "undelivered: %s" % (expect - sent))
    check(sent == expect, "Dave was sent duplicates: %s" % (sent - expect))

    # 403: a customer blocks the bot while a REST operator talks to them.
    rid, rtok = srv.register_rest_operator("Rosa")
    srv.ok("PUT", "/api/v1/operators/me/status", {"status": "available"}, token=rtok)
    u6 = fake.user(6206, "Bill", "en")
    fake.send_text(u6, "Please connect me to an operator")
    d = wait_until(lambda: (lambda x: x if x and x["status"] == "assigned" else None)(srv.open_dialog(6206)),
                   15, "Bill's dialog assigned")
    assigned = [mm for mm in d["messages"] if mm.get("kind") == "assigned"][-1]
    fake.wait_call("sendMessage", chat_id=6206, pred=lambda c: c.get("text") == assigned["content"], timeout=15)
    fake.wait_quiet(1.2, 10)
    fake.block(6206)
    m = fake.mark()
    srv.ok("POST", "/api/v1/dialogue/%s/reply" % d["dialog_id"], {"message": "Hello Bill (1)"}, token=rtok)
    first403 = fake.wait_call("sendMessage", chat_id=6206, since=m, ok=False, timeout=10)
    check(first403.status == 403, "not 403: %s" % first403)
    srv.ok("POST", "/api/v1/dialogue/%s/reply" % d["dialog_id"], {"message": "Hello Bill (2)"}, token=rtok)
    srv.ok("POST", "/api/v1/dialogue/%s/close" % d["dialog_id"], {"reason": "resolved"}, token=rtok)
    time.sleep(4)
    after = fake.calls_of(chat_id=6206, since=first403.seq + 1)
    check(not after, "%d call(s) to a chat that blocked the bot after its 403:\n%s" % (
        len(after), "\n".join(repr(c) for c in after)))
    ctx.note("403: no call to the blocked chat in 4 s after the first 403")

    # The fake refused nothing else, and every request was well formed.
    ctx.assert_no_violations()
    check(not fake.rejections, "requests the Bot API refused: %s" % fake.rejections)


# ---------------------------------------------------------------------------
# (e) SIGKILL during a burst of 200 updates; restart; nothing lost or doubled.
# ---------------------------------------------------------------------------

QUESTIONS_EN = ["How do I reset my password?", "Where is my order?", "Can I change my delivery address?",
                "Do you have a discount for students?", "How do I cancel my subscription?"]
QUESTIONS_RU = ["Как сбросить пароль?", "Где мой заказ?", "Можно изменить адрес доставки?",
                "Есть ли скидка для студентов?", "Как отменить подписку?"]


def burst(fake, chats, per_chat, base_uid):
    """@chats users each sending @per_chat distinct questions, interleaved.
    Returns {user_id: [texts]}."""
    users = []
    for i in range(chats):
        ru = i % 2 == 0
        users.append(fake.user(base_uid + i, ("Клиент%d" if ru else "Client%d") % i, "ru" if ru else "en"))
    sent = {u.id: [] for u in users}
    for k in range(per_chat):
        for i, u in enumerate(users):
            qs = QUESTIONS_RU if i % 2 == 0 else QUESTIONS_EN
            text = "%s (#%d-%d)" % (qs[k % len(qs)], i, k)
            fake.send_text(u, text)
            sent[u.id].append(text)
    return sent


def delivery_report(srv, fake, sent):
    """Per chat: every update handled once, every bot message delivered; the
    duplicates. Returns (problems, duplicates, undelivered, handled)."""
    problems, dups, undelivered, handled = [], 0, 0, 0
    for uid, texts in sent.items():
        ds = srv.dialogs_of(uid)
        got = collections.Counter(t for d in ds for t in customer_texts(d))
        for t in texts:
            if got[t] != 1:
                problems.append("chat %d: %r handled %d times" % (uid, t, got[t]))
            else:
                handled += 1
        expect = collections.Counter(mm["content"] for d in ds for mm in bot_messages(d))
        out = collections.Counter(fake.sent_texts(uid))
        for text, n in expect.items():
            if out[text] < n:
                undelivered += n - out[text]
                problems.append("chat %d: %r delivered %d of %d times" % (uid, text[:60], out[text], n))
        for text, n in out.items():
            extra = n - max(expect.get(text, 0), 1)
            if extra > 0:
                dups += extra
    return problems, dups, undelivered, handled


def close_sends(fake, limit=0.95):
    """(chat, dt, seq a, seq b) of consecutive ok sends to one chat under @limit s apart."""
    by_chat = {}
    for c in fake.calls_of(ok=True, pred=lambda c: c.method in SEND_METHODS):
        by_chat.setdefault(c.chat_id, []).append(c)
    out = []
    for chat, cs in by_chat.items():
        for a, b in zip(cs, cs[1:]):
            if b.t_recv - a.t_recv < limit:
                out.append((chat, b.t_recv - a.t_recv, a, b))
    return out


def sigkill_burst(ctx):
    fake = ctx.fake
    srv = ctx.server()
    chats = 40
    t0 = time.monotonic()
    sent = burst(fake, chats, 5, 8000)
    kills = []
    # Kill 1: at the first sends, while a batch of updates may be unconfirmed.
    # Kill 2: once some more sends are through, but not all.
    for at in (1, 80):
        wait_until(lambda: len(fake.calls_of("sendMessage", ok=True)) >= at, 30, "%d sends" % at,
                   interval=0.002)
        n = len(fake.calls_of("sendMessage", ok=True))
        pend = fake.pending_count()
        srv.kill()
        kills.append(time.monotonic())
        ctx.note("SIGKILL after %d sends (%.2f s into the burst), %d updates unconfirmed" % (
            n, time.monotonic() - t0, pend))
        check(n < 200, "all sends were through before the kill (%d): the burst was too slow" % n)
        srv.start()
        kills.append(time.monotonic())

    def settled():
        if fake.pending_count() > 0:
            return False
        return fake.wait_quiet(3.0, 1.0)
    wait_until(settled, 120, "the restarted server to settle", interval=0.5)
    problems, dups, undelivered, handled = delivery_report(srv, fake, sent)
    ctx.note("after restart: %d of 200 updates handled once, %d messages undelivered, %d duplicate sends "
             "(bound %d)" % (handled, undelivered, dups, chats))
    ctx.expect(not problems, "%d problem(s):\n%s" % (len(problems), "\n".join(problems[:30])))
    ctx.expect(dups <= chats, "%d duplicate sends, more than one per chat (%d)" % (dups, chats))
    s = fake.stats()
    ctx.note("per-chat min interval %.3f s; max %d sends in any 1 s (across the restarts)" % (
        s["per_chat_min_interval"] or -1, s["global_max_per_1s"]))
    close = close_sends(fake)
    within = [x for x in close if x[2].t_recv > kills[-1]]
    ctx.expect(not within, "%d pair(s) of sends to one chat less than 0.95 s apart within one run (after the "
                           "last restart)" % len(within))
    if close:
        ctx.note("%d pair(s) of sends to one chat under 0.95 s apart, %d of them within one run" % (
            len(close), len(within)))
    for chat, dt, a, b in (within or close)[:10 if within else 3]:
        ctx.note("chat %d: sends %.3f s apart at %.3f and %.3f s (kills/restarts at %s): %r / %r" % (
            chat, dt, a.t_recv - t0, b.t_recv - t0, ["%.3f" % (k - t0) for k in kills],
            (a.get("text") or "")[:40], (b.get("text") or "")[:40]))
    ctx.assert_no_violations()
    ctx.done()


# ---------------------------------------------------------------------------
# (f) A flood of 1,000 updates from 200 chats: the Bot API's limits kept.
# ---------------------------------------------------------------------------

def flood(ctx):
    fake = ctx.fake
    srv = ctx.server()
    t0 = time.monotonic()
    sent = burst(fake, 200, 5, 9000)

    def all_answered():
        return len(fake.calls_of("sendMessage", ok=True)) >= 1000 and fake.pending_count() == 0 \
            and fake.wait_quiet(2.0, 0.5)
    wait_until(all_answered, 150, "1,000 answers", interval=0.5)
    dt = time.monotonic() - t0
    s = fake.stats()
    span = s["last_send"] - s["first_send"]
    ctx.note("flood: %d sends in %.1f s (%.1f/s from the first to the last send); per-chat min interval "
             "%.3f s; max %d sends in any 1 s (the window starting %.2f s after the first send)" % (
                 s["sends"], span, (s["sends"] - 1) / span if span > 0 else 0, s["per_chat_min_interval"] or -1,
                 s["global_max_per_1s"], s["global_max_window_start"] or 0))
    ctx.expect(s["per_chat_min_interval"] is not None and s["per_chat_min_interval"] >= 0.95,
               "two sends to one chat %.3f s apart" % (s["per_chat_min_interval"] or -1))
    if not ctx.expect(s["global_max_per_1s"] <= 31, "%d sends in one second (at most 31)" % s["global_max_per_1s"]):
        ts = sorted(c.t_recv - s["first_send"] for c in fake.calls_of(ok=True, pred=lambda c: c.method in SEND_METHODS))
        bins = collections.Counter(int(t * 4) for t in ts if t < 5)
        ctx.note("sends per 250 ms over the first 5 s: %s" % [bins.get(i, 0) for i in range(20)])
    problems, dups, undelivered, handled = delivery_report(srv, fake, sent)
    ctx.note("flood: %d of 1000 updates handled once, %d messages undelivered, %d duplicates" % (
        handled, undelivered, dups))
    ctx.expect(not problems, "%d problem(s):\n%s" % (len(problems), "\n".join(problems[:30])))
    ctx.expect(dups == 0, "%d duplicate sends without any fault" % dups)
    ctx.assert_no_violations()
    ctx.done()


# ---------------------------------------------------------------------------
# (g) Webhook mode: setWebhook with a secret; updates POSTed to the server.
# ---------------------------------------------------------------------------

def webhook(ctx):
    fake = ctx.fake
    url = "https://support.example.org/api/v1/telegram/webhook"
    srv = ctx.server(wait_method="setWebhook", TELEGRAM_WEBHOOK_URL=url)
    sw = fake.wait_call("setWebhook", timeout=10)
    secret = sw.get("secret_token")
    check(sw.get("url") == url, "setWebhook url %r" % sw.get("url"))
    check(isinstance(secret, str) and len(secret) >= 16 and TOKEN.split(":")[1] not in secret,
          "setWebhook secret_token %r" % secret)
    check(set(sw.get("allowed_updates") or []) >= {"message", "callback_query"},
          "setWebhook allowed_updates %r" % sw.get("allowed_updates"))
    hook = "/api/v1/telegram/webhook"

    def post(update, token=secret):
        h = {"X-Telegram-Bot-Api-Secret-Token": token} if token is not None else {}
        return srv.rest("POST", hook, update, headers=h)

    zoe = fake.user(6401, "Zoe", "en")
    up = fake.send_text(zoe, "/start")
    for bad in (None, "wrong", secret[:-1] + ("0" if secret[-1] != "0" else "1")):
        st, obj = post(up, bad)
        check(st in (401, 403), "a webhook POST with secret %r answered %s" % (bad, st))
    check(not fake.calls_of("sendMessage"), "a refused webhook update was handled")
    m = fake.mark()
    st, obj = post(up)
    check(st == 200, "the webhook answered %s: %s" % (st, obj))
    wait_send(ctx, 6401, m)
    # A question, delivered twice (Telegram retries): handled once.
    m = fake.mark()
    q = fake.send_text(zoe, "Zoe here. How do I reset my password?")
    check(post(q)[0] == 200, "the question's webhook POST")
    wait_send(ctx, 6401, m)
    check(post(q)[0] == 200, "a repeated webhook update is not answered 200")
    time.sleep(1.5)
    d = srv.open_dialog(6401)
    check(customer_texts(d).count("Zoe here. How do I reset my password?") == 1,
          "the repeated update was handled %d times" % customer_texts(d).count("Zoe here. How do I reset my password?"))
    check(not fake.calls_of("getUpdates"), "getUpdates was called in webhook mode")
    ctx.assert_no_violations()


def fake_selftest(ctx):
    """The fake Bot API itself (tests/fake_telegram.py --selftest)."""
    check(fake_telegram.selftest() == 0, "the fake's self-test failed")


SCENARIOS = [fake_selftest, russian_conversation, wrong_pin, media_and_commands, english_queue, rest_and_telegram, faults,
             webhook, sigkill_burst, flood]


def main(argv):
    if "--list" in argv:
        for f in SCENARIOS:
            say(f.__name__)
        return 0
    if not os.environ.get("CCA_SERVER"):
        say("# skip: CCA_SERVER is not set")
        return 77
    if not os.environ.get("CCA_DATA_DIR"):
        os.environ["CCA_DATA_DIR"] = os.path.join(os.path.dirname(os.path.dirname(HERE)), "data")
    names = [a for a in argv if not a.startswith("-")]
    by_name = {f.__name__: f for f in SCENARIOS}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        say("unknown scenario(s): %s; known: %s" % (unknown, ", ".join(by_name)))
        return 2
    todo = [by_name[n] for n in names] if names else SCENARIOS
    failed = []
    t_all = time.monotonic()
    for fn in todo:
        say("=== %s" % fn.__name__)
        t0 = time.monotonic()
        ctx = Ctx(fn.__name__)
        err = None
        try:
            fn(ctx)
        except Exception as e:  # noqa: BLE001 - report any failure with context
            err = e
            say("FAIL %s: %s" % (fn.__name__, e if isinstance(e, Failure) else traceback.format_exc()))
            say("  calls (newest last):\n" + ctx.fake.dump(0, 60))
            for s in ctx.servers:
                state = "running" if s.proc is not None and s.proc.poll() is None else \
                    "exited with %s" % (s.proc.returncode if s.proc is not None else "?")
                say("  server (%s) log %s (tail):\n%s" % (state, s.log_path, s.log_tail(30)))
        problems = ctx.close(err is not None)
        for p in problems:
            say("FAIL %s: %s" % (fn.__name__, p))
        if err is not None or problems:
            failed.append(fn.__name__)
        else:
            say("ok   %s (%.1f s)" % (fn.__name__, time.monotonic() - t0))
    say("=== %d scenario(s), %d failed%s, %.0f s" % (len(todo), len(failed),
                                                     ": " + ", ".join(failed) if failed else "",
                                                     time.monotonic() - t_all))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
