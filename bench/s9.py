# SPDX-License-Identifier: MIT
"""S9 (the Telegram channel, issue 13, docs/TELEGRAM.md): relay latency from
an update returned by getUpdates to the sendMessage/copyMessage call that it
causes arriving at a fake Bot API, and the Bot API's limits kept under load.
Called by bench/run.py (Bench.s9), which starts and stops the server and
prints the table.

The fake is tests/fake_telegram.py, run inside this process (no control
routes, no extra HTTP): it records for each update when getUpdates first
returned it and for each call when its request line was read, both on its
monotonic clock. A latency is t_recv(send) - t_returned(update). The fake
here also stamps when a getUpdates answer was written to the socket, so the
latency splits into the fake's JSON dump and write of that answer and the
rest (loopback, the server, and the fake's wake-up to read the send: a
Python thread waiting for the GIL; not separable without kernel stamps).
The fake's own service time is measured alone first: sendMessage answered,
open loop from bench/loadgen at each rate. Python's cyclic garbage collector
pauses every thread of this process, the fake's included, for as long as it
walks the heap (8-15 ms seen as the fake's records grew): it runs between
the runs, not during them (the collections are counted and timed).

Two relay paths, on one durable server (STORAGE_FSYNC=true, as S2/S7) with
the limits lifted: TELEGRAM_SEND_RATE=100000 (the setting's maximum: the
scheduler then spaces sends 10 us apart) and TELEGRAM_CHAT_INTERVAL_MS=1:

  AI:       a customer's text -> the AI's answer (offline responder, no
            OPENAI key) sendMessage to that chat; CHATS chats, the updates
            going to the chats in turn; a warm-up gives every chat its dialog
            first, so the runs measure turns of open dialogs;
  operator: OPS Telegram operators ("/operator 1234", "/available", limit
            OPERATOR_MAX_DIALOGS=50), OPS x 50 customers who asked for "a
            human operator" (each dialog assigned, the card delivered); then
            their follow-ups, each relayed to the owner's chat: texts as
            sendMessage, every 5th a photo as copyMessage with the text as
            its caption (matched by a number in the text or caption).

Each path at 100, 500 and 1,000 updates/s (paced one update at a time on the
fake's clock; before each run the store has written everything, as
run.py's settle). Then the AI path at 100/s once more on the same store with
STORAGE_FSYNC=false (info: the share of the turn's durable commit). Then the
same store and fake with the server restarted on the default limits (30/s
overall, 1 s per chat): 100 updates/s for 2 s from 20 chats (the per-chat
limit binds: 20 chats x 1/s) and 1,000 updates/s for 1 s from 1,000 chats
(the global limit binds): the largest number of sends in any 1-s window
(and 0.95-s window) and the smallest interval between two sends to one
chat, as the fake saw them, the achieved send rate, and the latencies
(queueing: info).

Every run checks that each update caused exactly one send (no loss, no
duplicate, no stray send), and that the fake saw no malformed request. The
server's CPU (utime + stime, /proc) per update is taken over each lifted
run, with this process's (the fake's and the pacer's) beside it.
"""
import gc
import json
import math
import os
import re
import resource
import sys
import threading
import time

PROFILES = {
    "full": dict(chats=1000, warm_rate=500, rates=[(100, 10.0), (500, 2.0), (1000, 3.0)],
                 nosync=(100, 10.0),
                 ops=20, op_max=50, esc_rate=400,
                 limited=[(100, 2.0, 20), (1000, 1.0, 1000)],
                 drain_timeout=60, limited_timeout=120, quiet_s=0.5, limited_quiet_s=1.5,
                 calib_s=2),
    "smoke": dict(chats=20, warm_rate=200, rates=[(100, 0.2), (1000, 0.05)],
                  nosync=(100, 0.2),
                  ops=2, op_max=5, esc_rate=200,
                  limited=[(100, 0.1, 5), (1000, 0.01, 10)],
                  drain_timeout=20, limited_timeout=30, quiet_s=0.15, limited_quiet_s=0.3,
                  calib_s=0.2),
}
TOKEN = "123456:bench-s9-token"
PIN = "1234"
TARGET_US = 5000          # added p99 below the rate limits
GLOBAL_LIMIT = 30         # sends in any 1 s (the Bot API's, the server's default)
CHAT_INTERVAL_S = 1.0     # between two sends to one chat (idem)
CHAT_INTERVAL_TOL = 0.95  # as the fake sees it: arrival jitter of two sends
SEND_METHODS = ("sendMessage", "copyMessage", "sendDocument", "forwardMessage")
AI_TEXT = "How much is the Pro plan?"
HUMAN_TEXT = "I want to talk to a human operator"
PHOTO_EVERY = 5           # operator path: every 5th follow-up is a photo (copyMessage)
ID_AI, ID_CUST, ID_OP = 1000001, 2000001, 900001

_tl = threading.local()


def load_fake(root):
    """tests/fake_telegram.py as a module, with the timing subclasses."""
    sys.path.insert(0, os.path.join(root, "tests"))
    import fake_telegram as ft

    class TimedHandler(ft._Handler):
        def setup(self):
            super().setup()
            with self.fake._lock:
                self.fake.connections += 1

        def _send(self, status, obj=None, raw=None):
            super()._send(status, obj, raw)
            if isinstance(obj, dict) and isinstance(obj.get("result"), list) \
                    and self.path.lower().endswith("/getupdates"):
                now = time.monotonic()
                w = self.fake.t_written
                for u in obj["result"]:
                    if isinstance(u, dict) and u.get("update_id") not in w:
                        w[u.get("update_id")] = now

    class TimedFake(ft.FakeBotAPI):
        def __init__(self, *a, **kw):
            self.t_written = {}  # update_id -> the getUpdates answer holding it written
            self.connections = 0  # accepted
            super().__init__(*a, **kw)

        def start(self):
            super().start()
            # Our handler from the first connection on (none came yet).
            handler = type("Handler", (TimedHandler,), {"fake": self})
            self._server.RequestHandlerClass = handler
            return self
    return TimedFake


def pct(sorted_vals, q):
    if not sorted_vals:
        return 0
    return sorted_vals[max(1, int(math.ceil(q / 100.0 * len(sorted_vals)))) - 1]


def summary(vals):
    s = sorted(vals)
    if not s:
        return dict(n=0, p50=0, p90=0, p99=0, max=0, mean=0)
    return dict(n=len(s), p50=pct(s, 50), p90=pct(s, 90), p99=pct(s, 99), max=s[-1],
                mean=sum(s) / len(s))


class GcTimer:
    """Times the collections of Python's cyclic GC (every thread waits)."""

    def __init__(self):
        self.t = None
        self.reset()

    def reset(self):
        self.count, self.total_s, self.max_s = 0, 0.0, 0.0

    def __call__(self, phase, info):
        if phase == "start":
            self.t = time.perf_counter()
        elif self.t is not None:
            d = time.perf_counter() - self.t
            self.count += 1
            self.total_s += d
            self.max_s = max(self.max_s, d)

    def figures(self):
        return dict(collections=self.count, total_ms=self.total_s * 1e3,
                    max_ms=self.max_s * 1e3)


class Calls:
    """Reads the fake's calls incrementally (a short hold of its lock)."""

    def __init__(self, fake):
        self.fake = fake
        self.idx = 0

    def new(self):
        with self.fake._lock:
            out = self.fake.calls[self.idx:]
            self.idx = len(self.fake.calls)
        return out


def is_send(c):
    return c.method in SEND_METHODS and c.ok


def relayed(c):
    """What a relay to an operator carries: its text, or a copy's caption."""
    return str(c.params.get("text", c.params.get("caption", "")))


def describe(c):
    return "%s %s %s" % (c.method, c.chat_id, str(c.params.get("text", ""))[:60])


def listen_overflows():
    """The kernel's count of connections dropped by full listen queues."""
    try:
        lines = open("/proc/net/netstat").read().splitlines()
        for h, v in zip(lines[0::2], lines[1::2]):
            h, v = h.split(), v.split()
            if "ListenOverflows" in h:
                return int(v[h.index("ListenOverflows")])
    except (OSError, ValueError):
        pass
    return None


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def self_cpu_s():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def offer(fake, items, rate):
    """Enqueue @items ((user, text) pairs: a text message; (user, text,
    "photo"): a photo with @text as its caption) at @rate per second, each at
    its due time (late ones at once: no coordinated omission of the pacer).
    Returns the updates' (update_id, chat_id) and the offered rate."""
    out = []
    t0 = time.monotonic()
    for i, item in enumerate(items):
        due = t0 + i / rate
        d = due - time.monotonic()
        if d > 0:
            time.sleep(d)
        if len(item) > 2 and item[2] == "photo":
            u = fake.send_photo(item[0], caption=item[1])
        else:
            u = fake.send_text(item[0], item[1])
        out.append((u["update_id"], item[0].id))
    span = time.monotonic() - t0
    return out, (len(items) - 1) / span if span > 0 and len(items) > 1 else 0


def wait_sends(calls, want, timeout, quiet_s, match):
    """Collects the sends of @calls until @want matched (match(call) true),
    then until no send came for @quiet_s. Returns (matched, other sends)."""
    got, other = [], []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    while time.monotonic() < deadline:
        new = [c for c in calls.new() if c.method in SEND_METHODS]
        for c in new:
            (got if match(c) else other).append(c)
        if new:
            last = time.monotonic()
        if len(got) >= want and time.monotonic() - last >= quiet_s:
            break
        time.sleep(0.02)
    return got, other


def latencies(fake, pairs):
    """Figures of (update_id, send call) pairs, in microseconds: the latency
    (t_recv is when the send's request line was read), from the update's
    enqueueing (its wait for the next getUpdates included), and the two parts
    of the latency: the fake writing its getUpdates answer, the rest."""
    log = fake.update_log
    tot, enq, fout, srv = [], [], [], []
    for uid, c in pairs:
        rec = log.get(uid)
        if rec is None or rec["t_returned"] is None:
            continue
        tot.append((c.t_recv - rec["t_returned"]) * 1e6)
        enq.append((c.t_recv - rec["t_enqueued"]) * 1e6)
        tw = fake.t_written.get(uid)
        if tw is not None:
            fout.append((tw - rec["t_returned"]) * 1e6)
            srv.append((c.t_recv - tw) * 1e6)
    return dict(latency=summary(tot), from_enqueued=summary(enq), fake_out=summary(fout),
                after_written=summary(srv))


def pair_in_order(updates, sends):
    """AI path: the k-th update of a chat with the k-th send to it. Returns the
    pairs, updates without a send, and sends beyond the updates."""
    by_chat_u, by_chat_s = {}, {}
    for uid, chat in updates:
        by_chat_u.setdefault(chat, []).append(uid)
    for c in sends:
        by_chat_s.setdefault(c.chat_id, []).append(c)
    pairs, lost, extra = [], 0, 0
    for chat, uids in by_chat_u.items():
        ss = sorted(by_chat_s.get(chat, []), key=lambda c: c.seq)
        pairs += list(zip(uids, ss))
        lost += max(0, len(uids) - len(ss))
        extra += max(0, len(ss) - len(uids))
    extra += sum(len(v) for k, v in by_chat_s.items() if k not in by_chat_u)
    return pairs, lost, extra


def max_in_window(ts, w):
    """The largest number of the sorted times @ts within any window of @w s."""
    best, j = 0, 0
    for i in range(len(ts)):
        while ts[i] - ts[j] >= w:
            j += 1
        best = max(best, i - j + 1)
    return best


def limits_seen(sends):
    """The largest number of sends in any 1 s window (and in any 0.95 s
    window: 50 ms of arrival jitter allowed, as for the per-chat interval),
    the smallest interval between two sends to one chat, and the send rate
    (first to last), all on the fake's arrival times."""
    ts = sorted(c.t_recv for c in sends)
    by_chat = {}
    for c in sends:
        by_chat.setdefault(c.chat_id, []).append(c.t_recv)
    iv = [b - a for v in by_chat.values() for a, b in zip(sorted(v), sorted(v)[1:])]
    span = ts[-1] - ts[0] if len(ts) > 1 else 0
    return dict(max_per_1s=max_in_window(ts, 1.0),
                max_per_095s=max_in_window(ts, CHAT_INTERVAL_TOL),
                chat_min_interval_s=min(iv) if iv else None,
                chats_with_repeats=sum(1 for v in by_chat.values() if len(v) > 1),
                send_rate=(len(ts) - 1) / span if span > 0 else 0, span_s=span,
                sends=len(ts))


class S9:
    def __init__(self, b, log, root, settle):
        self.b, self.log, self.root, self.settle = b, log, root, settle
        self.p = PROFILES["smoke" if b.args.smoke else "full"]
        self.res = dict(profile=self.p, problems=[])
        self.problems = self.res["problems"]

    def server(self, fake, storage, limits, fsync=True):
        extra = {"TELEGRAM_BOT_TOKEN": TOKEN, "TELEGRAM_API_BASE_URL": fake.base_url,
                 "TELEGRAM_POLL_TIMEOUT_S": "5", "OPERATOR_PINS": PIN,
                 "OPERATOR_MAX_DIALOGS": str(self.p["op_max"])}
        if limits == "lifted":
            extra.update(TELEGRAM_SEND_RATE="100000", TELEGRAM_CHAT_INTERVAL_MS="1")
        gen = fake.poll_gen
        srv = self.b.server(storage, fsync=fsync, extra=extra)
        # The channel is up when it polls (a killed server's poll may still wait).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (fake.poll_gen > gen and fake.polls_waiting):
            time.sleep(0.01)
        if fake.poll_gen <= gen:
            raise RuntimeError("the server never called getUpdates")
        return srv

    def gc_off(self):
        """No collection during a run: one now, then none until gc.enable()."""
        gc.collect()
        gc.disable()
        self.gc.reset()

    def run_path(self, fake, calls, srv, name, items_of, rate, secs, match_fn):
        """One measured run: updates from items_of(n) at @rate for @secs."""
        n = max(2, int(round(rate * secs)))
        items = items_of(n)
        # The store has written what the previous step changed (its
        # checkpoints would compete with this run), and nothing is in flight.
        self.settle(srv.base, 60)
        time.sleep(self.p["quiet_s"])
        stray = [c for c in calls.new() if c.method in SEND_METHODS]
        self.gc_off()
        try:
            c0, f0, k0 = cpu_s(srv.pid), self_cpu_s(), fake.connections
            t0 = time.monotonic()
            updates, offered = offer(fake, items, rate)
            t_offered = time.monotonic() - t0
            sends, other = wait_sends(calls, n, self.p["drain_timeout"], self.p["quiet_s"],
                                      match_fn)
            cpu, fcpu = cpu_s(srv.pid) - c0, self_cpu_s() - f0
            gcf = self.gc.figures()
        finally:
            gc.enable()
        r = dict(rate=rate, updates=n, offered_rate=offered, offer_s=t_offered,
                 drain_s=time.monotonic() - t0, server_cpu_s=cpu,
                 server_cpu_per_update_us=cpu / n * 1e6, bench_cpu_per_update_us=fcpu / n * 1e6,
                 connections=fake.connections - k0, sends_before=len(stray),
                 other_sends=len(other), other_sample=[describe(c) for c in other[:5]],
                 gc=gcf)
        return r, updates, sends

    def calibrate(self, fake):
        """The fake alone: sendMessage answered, open loop (bench/loadgen, C)
        at each rate of the runs. Its round trip and CPU per call bound what
        it adds to a latency and the rate it can serve."""
        user = fake.user(ID_AI - 1, "Calibration", "en")
        body = json.dumps({"chat_id": user.id, "text": "Pro (Профи) — 1990 ₽ (RUB)/month: "
                           "300 Mbit/s internet, a Wi-Fi 6 router"}, ensure_ascii=False)
        out = self.res["fake_alone"] = {}
        for rate, _ in self.p["rates"]:
            f0 = self_cpu_s()
            r = self.b.loadgen("%s/bot%s/sendMessage" % (fake.base_url, TOKEN), method="POST",
                               body=body, header=["Content-Type: application/json"], conns=16,
                               rate=rate, duration=self.p["calib_s"],
                               warmup=self.p["calib_s"] / 6)["main"]
            r["fake_cpu_per_call_us"] = (self_cpu_s() - f0) / max(1, r["ok"]) * 1e6
            out[str(rate)] = r
            self.log("S9 fake alone, sendMessage at %d/s: p50 %.0f p99 %.0f us, %.0f us CPU "
                     "per call" % (rate, r["p50_us"], r["p99_us"], r["fake_cpu_per_call_us"]))

    def lifted(self, TimedFake, work):
        p, b = self.p, self.b
        fake = TimedFake(TOKEN).start()
        calls = Calls(fake)
        self.calibrate(fake)
        srv = self.server(fake, os.path.join(work, "dialogs"), "lifted")
        self.res["server_pid_lifted"] = srv.pid
        out = self.res["lifted"] = {}
        try:
            # AI path: the warm-up gives each chat its dialog.
            users = [fake.user(ID_AI + i, "A%d" % (ID_AI + i), "en") for i in range(p["chats"])]
            t = time.monotonic()
            calls.new()
            ups, _ = offer(fake, [(u, AI_TEXT) for u in users], p["warm_rate"])
            got, other = wait_sends(calls, len(ups), p["drain_timeout"], p["quiet_s"],
                                    lambda c: ID_AI <= (c.chat_id or 0) < ID_CUST)
            out["warmup"] = dict(updates=len(ups), sends=len(got), other=len(other),
                                 s=time.monotonic() - t)
            self.log("S9 AI warm-up: %d updates, %d sends in %.1f s" % (
                len(ups), len(got), out["warmup"]["s"]))
            if len(got) < len(ups):
                self.problems.append("AI warm-up: %d answers to %d chats" % (len(got), len(ups)))
            for rate, secs in p["rates"]:
                r = self.ai_run(fake, calls, srv, users, rate, secs)
                out["ai_%d" % rate] = r
                self.check(r, "AI path at %d/s" % rate)
                self.log("S9 AI %d/s: %d updates, p50 %.0f p99 %.0f max %.0f us; lost %d extra %d" % (
                    rate, r["updates"], r["latency"]["p50"], r["latency"]["p99"],
                    r["latency"]["max"], r["lost"], r["extra"]))

            # Operator path: operators, then customers asking for a person.
            ops = [fake.user(ID_OP + i, "Op%d" % i, "en") for i in range(p["ops"])]
            calls.new()
            for o in ops:
                fake.send_text(o, "/operator " + PIN)
            got, _ = wait_sends(calls, len(ops), 30, p["quiet_s"],
                                lambda c: "registered" in str(c.params.get("text", "")))
            for o in ops:
                fake.send_text(o, "/available")
            got2, _ = wait_sends(calls, len(ops), 30, p["quiet_s"],
                                 lambda c: "available" in str(c.params.get("text", "")))
            if len(got) < len(ops) or len(got2) < len(ops):
                raise RuntimeError("operators: %d registered, %d available of %d" % (
                    len(got), len(got2), len(ops)))
            seats = p["ops"] * p["op_max"]
            custs = [fake.user(ID_CUST + i, "C%d" % (ID_CUST + i), "en") for i in range(seats)]
            t = time.monotonic()
            offer(fake, [(u, HUMAN_TEXT) for u in custs], p["esc_rate"])
            cards, other = wait_sends(calls, seats, p["drain_timeout"], p["quiet_s"],
                                      lambda c: str(c.params.get("text", "")).startswith(
                                          "New client"))
            assigned = set()
            for c in cards:
                m = re.search(r"#\d+: C(\d+)", c.params.get("text", ""))
                if m:
                    assigned.add(int(m.group(1)))
            out["escalation"] = dict(customers=seats, cards=len(cards), assigned=len(assigned),
                                     other_sends=len(other), s=time.monotonic() - t)
            self.log("S9 operators: %d, %d customers assigned (%d cards) in %.1f s" % (
                len(ops), len(assigned), len(cards), out["escalation"]["s"]))
            self.settle(srv.base, 60)
            if len(assigned) < seats:
                self.problems.append("escalation: %d of %d customers assigned" % (
                    len(assigned), seats))
            held = [u for u in custs if u.id in assigned]
            if not held:
                raise RuntimeError("no customer was assigned to a Telegram operator")
            op_ids = {o.id for o in ops}
            seq = [0]
            for rate, secs in p["rates"]:
                def items_of(n):
                    out_items = []
                    for i in range(n):
                        seq[0] += 1
                        out_items.append((held[i % len(held)],
                                          "Where is my order? ref %d" % seq[0])
                                         + (("photo",) if seq[0] % PHOTO_EVERY == 0 else ()))
                    return out_items
                first = seq[0] + 1
                r, updates, sends = self.run_path(
                    fake, calls, srv, "op", items_of, rate, secs,
                    lambda c: c.chat_id in op_ids and "ref " in relayed(c))
                uid_of = {first + i: uid for i, (uid, _) in enumerate(updates)}
                pairs, seen, extra = [], set(), 0
                for c in sends:
                    m = re.search(r"ref (\d+)", relayed(c))
                    uid = uid_of.get(int(m.group(1))) if m else None
                    if uid is None or uid in seen:
                        extra += 1
                        continue
                    seen.add(uid)
                    pairs.append((uid, c))
                methods = {}
                for c in sends:
                    methods[c.method] = methods.get(c.method, 0) + 1
                r.update(latencies(fake, pairs), lost=len(updates) - len(seen), extra=extra,
                         limits=limits_seen(sends), chats=len({ch for _, ch in updates}),
                         operator_chats=len({c.chat_id for c in sends}), methods=methods,
                         copy=latencies(fake, [(u, c) for u, c in pairs
                                               if c.method == "copyMessage"])["latency"])
                out["op_%d" % rate] = r
                self.check(r, "operator relay at %d/s" % rate)
                self.log("S9 operator %d/s: %d updates, p50 %.0f p99 %.0f max %.0f us; lost %d "
                         "extra %d" % (rate, r["updates"], r["latency"]["p50"],
                                       r["latency"]["p99"], r["latency"]["max"],
                                       r["lost"], extra))
        finally:
            b.kill(srv)
        return fake, calls, users

    def ai_run(self, fake, calls, srv, users, rate, secs):
        """The AI path at @rate for @secs (the dialogs exist): its figures."""
        def items_of(n):
            return [(users[i % len(users)], AI_TEXT) for i in range(n)]
        r, updates, sends = self.run_path(fake, calls, srv, "ai", items_of, rate, secs,
                                          lambda c: ID_AI <= (c.chat_id or 0) < ID_CUST)
        pairs, lost, extra = pair_in_order(updates, sends)
        r.update(latencies(fake, pairs), lost=lost, extra=extra, limits=limits_seen(sends),
                 chats=len({ch for _, ch in updates}))
        return r

    def nosync(self, fake, calls, users, work):
        """The AI path again, the same store, STORAGE_FSYNC=false: how much of
        the latency the durable commit of the turn is (info)."""
        rate, secs = self.p["nosync"]
        srv = self.server(fake, os.path.join(work, "dialogs"), "lifted", fsync=False)
        try:
            r = self.ai_run(fake, calls, srv, users, rate, secs)
        finally:
            self.b.kill(srv)
        self.res["lifted"]["ai_%d_nosync" % rate] = r
        self.check(r, "AI path at %d/s, no fsync" % rate)
        self.log("S9 AI %d/s, no fsync: p50 %.0f p99 %.0f max %.0f us" % (
            rate, r["latency"]["p50"], r["latency"]["p99"], r["latency"]["max"]))

    def limited(self, fake, calls, users, work):
        """The same store and fake, the server on the default limits."""
        p = self.p
        out = self.res["limited"] = {}
        calls.new()
        srv = self.server(fake, os.path.join(work, "dialogs"), "default")
        try:
            time.sleep(0.5)
            startup = [c for c in calls.new() if is_send(c)]
            out["sends_at_restart"] = len(startup)
            if startup:
                self.problems.append("%d sends after the restart, before any update" %
                                     len(startup))
            for rate, secs, nchats in p["limited"]:
                chats = users[:nchats]

                def items_of(n):
                    return [(chats[i % len(chats)], AI_TEXT) for i in range(n)]
                self.gc_off()
                try:
                    c0 = cpu_s(srv.pid)
                    n = max(2, int(round(rate * secs)))
                    updates, offered = offer(fake, items_of(n), rate)
                    sends, other = wait_sends(calls, n, p["limited_timeout"],
                                              p["limited_quiet_s"],
                                              lambda c: ID_AI <= (c.chat_id or 0) < ID_CUST)
                    gcf = self.gc.figures()
                finally:
                    gc.enable()
                pairs, lost, extra = pair_in_order(updates, sends)
                r = dict(rate=rate, updates=n, chats=nchats, offered_rate=offered,
                         other_sends=len(other), lost=lost, extra=extra,
                         server_cpu_per_update_us=(cpu_s(srv.pid) - c0) / n * 1e6,
                         limits=limits_seen(sends + other), gc=gcf)
                r.update(latencies(fake, pairs))
                out["ai_%d" % rate] = r
                self.check(r, "default limits at %d/s" % rate)
                lm = r["limits"]
                self.log("S9 limits %d/s x %.2g s, %d chats: %d sends in %.1f s (%.1f/s), max %d "
                         "in 1 s, chat min interval %s s" % (
                             rate, secs, nchats, lm["sends"], lm["span_s"], lm["send_rate"],
                             lm["max_per_1s"], "%.3f" % lm["chat_min_interval_s"]
                             if lm["chat_min_interval_s"] is not None else "-"))
        finally:
            self.b.kill(srv)

    def check(self, r, what):
        if r["lost"] or r["extra"] or r["other_sends"]:
            self.problems.append("%s: %d updates without their send, %d sends beyond them, "
                                 "%d other sends" % (what, r["lost"], r["extra"],
                                                     r["other_sends"]))

    def run(self):
        TimedFake = load_fake(self.root)
        work = os.path.join(self.b.work, "s9")
        os.makedirs(work, exist_ok=True)
        old = sys.getswitchinterval()
        # The fake's handler threads and the pacer share the GIL: a thread
        # woken by a request waits at most this long for it (default 5 ms).
        sys.setswitchinterval(0.0005)
        self.gc = GcTimer()
        gc.callbacks.append(self.gc)
        lo0 = listen_overflows()
        fake = None
        try:
            fake, calls, users = self.lifted(TimedFake, work)
            self.nosync(fake, calls, users, work)
            self.limited(fake, calls, users, work)
            self.res["fake_violations"] = list(fake.violations)[:20]
            self.res["fake_rejections"] = list(fake.rejections)[:20]
            if fake.violations or fake.rejections:
                self.problems.append("the fake saw %d malformed and %d refused requests" % (
                    len(fake.violations), len(fake.rejections)))
            st = fake.stats()
            lo1 = listen_overflows()
            self.res["listen_overflows"] = lo1 - lo0 if lo0 is not None and lo1 is not None \
                else None
            self.res["fake_connections"] = fake.connections
            self.res["fake_by_method"] = st["by_method"]
            self.res["fake_calls"] = st["calls"]
        finally:
            sys.setswitchinterval(old)
            gc.callbacks.remove(self.gc)
            gc.enable()
            if fake is not None:
                fake.stop()
        return self.res


def table(b, res, fmt):
    """The rows of S9 (b.row), from the figures of S9.run."""
    L = res.get("lifted", {})
    fa = res.get("fake_alone", {})
    for key, label in (("ai", "AI path"), ("op", "operator relay")):
        for rate, _ in res["profile"]["rates"]:
            r = L.get("%s_%d" % (key, rate))
            if r is None:
                continue
            lat = r["latency"]
            where = "%d chats" % r["chats"] if key == "ai" else \
                "%d customers -> %d operator chats" % (r["chats"], r.get("operator_chats", 0))
            b.row("S9", "%s, %d updates/s (%s, limits lifted): getUpdates -> send p99, us" % (
                label, rate, where), fmt(lat["p99"]),
                "p50 %s, max %s; n=%d; offered %s/s, sent %s/s" % (
                    fmt(lat["p50"]), fmt(lat["max"]), lat["n"], fmt(r["offered_rate"]),
                    fmt(r["limits"]["send_rate"])),
                "<= %d us" % TARGET_US, b.at_most(lat["p99"], TARGET_US, " us"))
            if r.get("copy", {}).get("n"):
                b.row("S9", "  copyMessage (photos, every %dth) p50/p99, us" % PHOTO_EVERY,
                      "%s/%s" % (fmt(r["copy"]["p50"]), fmt(r["copy"]["p99"])),
                      "n=%d; %s" % (r["copy"]["n"], ", ".join(
                          "%s %d" % kv for kv in sorted(r["methods"].items()))), "-", "info")
            b.row("S9", "  the fake writing its getUpdates answer p50/p99; the rest p50/p99, us",
                  "%s/%s" % (fmt(r["fake_out"]["p50"]), fmt(r["fake_out"]["p99"])),
                  "rest %s/%s; enqueued -> send p50/p99 %s/%s" % (
                      fmt(r["after_written"]["p50"]), fmt(r["after_written"]["p99"]),
                      fmt(r["from_enqueued"]["p50"]), fmt(r["from_enqueued"]["p99"])),
                  "-", "info")
            b.row("S9", "  server CPU per update, us", fmt(r["server_cpu_per_update_us"]),
                  "bench process (fake + pacer) %s us; %d updates in %.1f s; GC max %s ms" % (
                      fmt(r["bench_cpu_per_update_us"]), r["updates"], r["drain_s"],
                      fmt(r["gc"]["max_ms"])),
                  "-", "info (x updates/s = cores used)")
    rate = res["profile"]["nosync"][0]
    r = L.get("ai_%d_nosync" % rate)
    if r is not None:
        b.row("S9", "AI path, %d updates/s, STORAGE_FSYNC=false: getUpdates -> send p99, us" % rate,
              fmt(r["latency"]["p99"]), "p50 %s, max %s; n=%d; the fake's answer p50/p99 %s/%s" % (
                  fmt(r["latency"]["p50"]), fmt(r["latency"]["max"]), r["latency"]["n"],
                  fmt(r["fake_out"]["p50"]), fmt(r["fake_out"]["p99"])),
              "-", "info (the turn's fsync taken out)")
    for rate, _ in res["profile"]["rates"]:
        r = fa.get(str(rate))
        if r is not None:
            b.row("S9", "fake alone: sendMessage round trip at %d/s (loadgen, 16 conns), "
                  "p50/p99, us" % rate, "%s/%s" % (fmt(r["p50_us"]), fmt(r["p99_us"])),
                  "p99.9 %s; fake CPU %s us per call; %d calls" % (
                      fmt(r["p999_us"]), fmt(r["fake_cpu_per_call_us"]), r["ok"]),
                  "-", "info (the fake is Python: one core at most)")
    Lm = res.get("limited", {})
    for rate, secs, nchats in res["profile"]["limited"]:
        r = Lm.get("ai_%d" % rate)
        if r is None:
            continue
        lm = r["limits"]
        b.row("S9", "default limits, %d updates/s x %g s from %d chats: max sends in any 1 s" % (
            rate, secs, nchats), str(lm["max_per_1s"]),
            "%d sends in %.1f s: %.1f/s" % (lm["sends"], lm["span_s"], lm["send_rate"]),
            "<= %d" % GLOBAL_LIMIT, b.at_most(lm["max_per_1s"], GLOBAL_LIMIT))
        b.row("S9", "  max sends in any %.2f s (arrival jitter of 50 ms allowed)" %
              CHAT_INTERVAL_TOL, str(lm["max_per_095s"]), "", "<= %d" % GLOBAL_LIMIT,
              b.at_most(lm["max_per_095s"], GLOBAL_LIMIT))
        mi = lm["chat_min_interval_s"]
        if mi is not None:
            b.row("S9", "  smallest interval between two sends to one chat, s", "%.3f" % mi,
                  "%d chats got more than one" % lm["chats_with_repeats"],
                  ">= %.2f s (1 s less 50 ms of jitter)" % CHAT_INTERVAL_TOL,
                  "met" if mi >= CHAT_INTERVAL_TOL else "missed by %.3f s" % (
                      CHAT_INTERVAL_TOL - mi))
        b.row("S9", "  getUpdates -> send p50/p99 (queueing), ms", "%s/%s" % (
            fmt(r["latency"]["p50"] / 1000), fmt(r["latency"]["p99"] / 1000)),
            "max %s ms; n=%d; GC max %s ms" % (fmt(r["latency"]["max"] / 1000),
                                               r["latency"]["n"], fmt(r["gc"]["max_ms"])),
            "-", "info")
    if res["problems"]:
        b.row("S9", "failures (lost or extra sends, malformed requests)",
              str(len(res["problems"])), res["problems"][0][:80], "0",
              "missed by %d" % len(res["problems"]))


def run(b, fmt, log, root, settle):
    """Bench.s9 (@b): fills b.raw["S9"] and the table rows; @fmt, @log and
    @settle are run.py's number formatter, logger and store settling, @root
    the source tree."""
    res = S9(b, log, root, settle).run()
    b.raw["S9"] = res
    table(b, res, fmt)
