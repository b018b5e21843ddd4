#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Two instances on one PostgreSQL database behind nginx, with the proxy file
of the compose profile (deploy/nginx/cca.conf, addresses replaced), all on
loopback: a throwaway PostgreSQL (tests/pg/pg.sh), the real server twice
(one active, one standby) and Debian's nginx.

  - every request through nginx reaches the active instance (the standby's
    503s are retried on it), an event stream flows through unbuffered;
  - SIGKILL of the active instance: requests through nginx fail for a moment
    (503), then succeed on the promoted standby; every acknowledged message is
    there, in order.

TAP output; "1..0 # SKIP" when nginx or the PostgreSQL server binaries are
missing (scripts/test installs both).
"""
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.realpath(os.path.join(os.path.dirname(__file__), "..", ".."))
SERVER = os.environ.get("CCA_SERVER", os.path.join(ROOT, "build", "call-center-agents"))
DATA = os.environ.get("CCA_DATA_DIR", os.path.join(ROOT, "data"))
sys.path.insert(0, os.path.join(ROOT, "deploy", "nginx"))
from render import render  # noqa: E402  (deploy/nginx/cca.conf, addresses replaced)

n_test = 0
failed = 0


def ok(cond, what):
    global n_test, failed
    n_test += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", n_test, what), flush=True)
    if not cond:
        failed += 1
    return cond


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def request(port, method, path, body=None, headers=None, timeout=10):
    """(status, parsed JSON or None, headers); status 0 when no answer."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    hdrs = dict(headers or {})
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        hdrs["Content-Type"] = "application/json"
    try:
        c.request(method, path, body=data, headers=hdrs)
        r = c.getresponse()
        raw = r.read()
        try:
            js = json.loads(raw) if raw else None
        except ValueError:
            js = None
        return r.status, js, dict(r.getheaders())
    except OSError:
        return 0, None, {}
    finally:
        c.close()


class Pair:
    def __init__(self, tmp, url):
        self.tmp = tmp
        self.url = url
        self.procs = {}

    def server(self, name):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        log = os.path.join(d, "server.log")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "STORE": "postgres",
               "DATABASE_URL": self.url, "PORT": "0", "HOST": "127.0.0.1",
               "DATA_DIR": DATA, "DIALOGS_STORAGE_PATH": os.path.join(d, "dialogs"),
               "LOG_LEVEL": "info"}
        with open(log, "w") as f:
            p = subprocess.Popen([SERVER], cwd=d, env=env, stdout=f, stderr=subprocess.STDOUT)
        self.procs[name] = (p, 0, log)  # stopped at the end even if it never listens
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            with open(log) as f:
                text = f.read()
            i = text.find("event=listening")
            if i >= 0:
                port = int(text[text.index("port=", i) + 5:].split()[0])
                self.procs[name] = (p, port, log)
                return port, "role=standby" in text
            if p.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError("server %s did not start:\n%s" % (name, text[-2000:]))

    def nginx(self, pa, pb):
        nd = os.path.join(self.tmp, "nginx")
        port = free_port()
        conf = render(nd, port, [pa, pb])
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        p = subprocess.Popen([exe, "-p", nd, "-c", conf],
                             stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        self.procs["nginx"] = (p, port, os.path.join(nd, "error.log"))
        t0 = time.monotonic()
        while time.monotonic() - t0 < 10:
            if request(port, "GET", "/api/v1/health/live")[0] == 200:
                return port
            time.sleep(0.05)
        raise RuntimeError("nginx did not start")

    def kill(self, name, sig=signal.SIGKILL):
        p = self.procs.pop(name)[0]
        p.send_signal(sig)
        p.wait(timeout=60)

    def stop_all(self):
        for name in list(self.procs):
            try:
                self.kill(name, signal.SIGTERM)
            except Exception:
                self.procs.get(name, (None,))[0] and self.procs[name][0].kill()


def sse_first_frames(port, path, until, timeout=5.0):
    """Read an event stream through nginx until @until is seen; the text read."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n" % path).encode())
    got = b""
    t0 = time.monotonic()
    try:
        while until.encode() not in got and time.monotonic() - t0 < timeout:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except socket.timeout:
        pass
    return s, got.decode("utf-8", "replace")


def run_checks(pair):
    """The 9 checks (TAP lines) on a started PostgreSQL server."""
    pa, standby_a = pair.server("a")
    pb, standby_b = pair.server("b")
    ok(not standby_a and standby_b, "a is active, b is its standby")
    px = pair.nginx(pa, pb)

    st, js, _ = request(px, "GET", "/api/v1/health/ready")
    ok(st == 200, "ready through nginx (the standby's 503 retried on the active): %d" % st)
    st, js, _ = request(px, "POST", "/api/v1/dialogue/create", {"customer_id": "ngx"})
    ok(st == 201 and js is not None, "create through nginx: %d" % st)
    did = js["dialog_id"] if js else ""
    path = "/api/v1/dialogue/%s/message" % did
    statuses = [request(px, "POST", path, {"message": "before %d" % i})[0] for i in range(30)]
    ok(all(s in (200, 202) for s in statuses),
       "30 messages through nginx, none refused by the standby: %s" % sorted(set(statuses)))

    sock, text = sse_first_frames(px, "/api/v1/dialogue/%s/events" % did, "retry:")
    ok("200" in text.split("\r\n", 1)[0] and "retry:" in text,
       "an event stream through nginx starts at once")
    st, _, _ = request(px, "POST", path, {"message": "live event"})
    got = text if st in (200, 202) else ""
    t0 = time.monotonic()
    sock.settimeout(0.5)
    while "live event" not in got and time.monotonic() - t0 < 5:
        try:
            chunk = sock.recv(4096)
            if not chunk:
                break
            got += chunk.decode("utf-8", "replace")
        except socket.timeout:
            pass
    sock.close()
    ok("live event" in got, "an event reaches the stream through nginx unbuffered")

    # SIGKILL of the active instance; nginx sends everything to b once promoted.
    acked = ["before %d" % i for i in range(30) if statuses[i] in (200, 202)]
    acked.append("live event")
    pair.kill("a")
    t_kill = time.monotonic()
    first_ok = None
    fails = 0
    i = 0
    while time.monotonic() - t_kill < 30 and (first_ok is None or i < 20):
        text_i = "after %d" % i
        st, _, _ = request(px, "POST", path, {"message": text_i},
                           headers={"Idempotency-Key": "ngx-after-%d" % i})
        if st in (200, 202):
            acked.append(text_i)
            if first_ok is None:
                first_ok = time.monotonic() - t_kill
            i += 1
        else:
            fails += 1
            time.sleep(0.02)
    ok(first_ok is not None, "requests through nginx succeed again after the SIGKILL")
    print("# first success through nginx %.0f ms after the SIGKILL; %d requests refused "
          "meanwhile" % ((first_ok or 0) * 1000, fails), flush=True)
    st, js, _ = request(px, "GET", "/api/v1/dialogue/%s" % did)
    texts = [m["content"] for m in (js or {}).get("messages", []) if m.get("role") == "customer"]
    ok(texts == acked, "every acknowledged message, in order (%d of %d)" % (len(texts), len(acked)))
    st, js, _ = request(pb, "GET", "/api/v1/health/ready")
    ok(st == 200, "b is the active instance now")


def main():
    # meson's timeout and Ctrl-C: unwind through the finally below (servers,
    # nginx, the PostgreSQL server and the directory all go).
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(1))
    if not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
        print("1..0 # SKIP nginx is not installed (apt-get install nginx)")
        return 0
    tmp = tempfile.mkdtemp(prefix="cca-ngx-", dir="/tmp")
    os.chmod(tmp, 0o711)
    pgdir = os.path.join(tmp, "pg")
    pair = None
    try:
        r = subprocess.run([os.path.join(ROOT, "tests", "pg", "pg.sh"), "start", pgdir],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        if r.returncode == 77:
            print("1..0 # SKIP no PostgreSQL server binaries (apt-get install postgresql)")
            return 0
        if r.returncode != 0:
            print("Bail out! tests/pg/pg.sh start failed: %s" % r.stderr[-500:])
            return 1
        pair = Pair(tmp, r.stdout.splitlines()[0])
        print("1..9", flush=True)
        try:
            run_checks(pair)
        except Exception as e:  # a broken harness is a failure, not a crash
            ok(False, "harness: %r" % e)
    finally:
        if pair is not None:
            pair.stop_all()
        if os.path.isdir(pgdir):
            subprocess.run([os.path.join(ROOT, "tests", "pg", "pg.sh"), "stop", pgdir],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
