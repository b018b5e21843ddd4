#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Benchmark driver: runs scenarios S1..S6 of the performance issue with the
peers side by side, S7 of the operators issue (issue 11), S8 of the
support records (exports and statistics over 100,000 dialogs, bench/s8.py)
and S9 of the Telegram channel (relay latency and the Bot API's limits
against tests/fake_telegram.py, bench/s9.py), prints one table and writes
the raw figures as JSON. S2, S3 and S7 also run with STORE=postgres against
one throwaway PostgreSQL server (tests/pg/pg.sh) started for the run, a
fresh database per server, stopped at the end whatever happens.

Called by scripts/bench, which installs the packages and builds the binaries;
see docs/BENCHMARKS.md. Never asserts timings: the exit code is 0 when every
scenario ran (targets met or missed), 1 when a scenario could not run.
"""
import argparse
import datetime
import json
import math
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PG_SH = os.path.join(ROOT, "tests", "pg", "pg.sh")
sys.path.insert(0, os.path.join(ROOT, "deploy", "nginx"))
from render import render as render_nginx  # noqa: E402  (deploy/nginx/cca.conf)
PG_POOL_SIZE = "4"  # DATABASE_POOL_SIZE of the postgres runs: the writer and 3 readers
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
FAKE_KEY = "bench-key"
OPERATOR_SECRET = "bench-operator-secret"
MSG_TECH = "Не могу войти в аккаунт, приложение не работает"
CREATE_BODY = json.dumps({"customer_id": "bench", "initial_message": MSG_TECH},
                         ensure_ascii=False)
EMPTY_CREATE_BODY = json.dumps({"customer_id": "bench"})
MESSAGE_BODY = json.dumps({"message": MSG_TECH}, ensure_ascii=False)
FAKE_BODY = json.dumps({"model": "gpt-4o-mini", "max_tokens": 1000, "messages": [
    {"role": "system", "content": "You are a support agent."},
    {"role": "user", "content": MSG_TECH}]}, ensure_ascii=False)

# Load per scenario: (full, smoke).
PROFILES = {
    "full": dict(s1_secs=8, s1_conns=64, s2_dialogs=4000, s2_conns=64, s2_secs=8,
                 s2_open_share=0.5, s2_open_secs=8, s2_open_warmup=1, s2_open_conns=512,
                 fsync_secs=4, s3_dialogs=1000, s3_alt=100, s3_secs=20, s3_latency=1000,
                 s3_ramp_ms=1000, s3_think_ms="0-100", s3_warmup=2,
                 s4_turns=10000, s4_latency=5000, s4_ramp=4000, s5_dialogs=2000,
                 s5_conns=16, s5_secs=6, s6_lengths=[10, 100, 1000],
                 s6_dialogs=[10, 10, 3], s6_rounds=[3, 3, 10],
                 s7_ops=200, s7_max=3, s7_dialogs=10600, s7_paced=3000, s7_rate=1000,
                 s7_conns=32, s7_storm_conns=64, s7_queue_gets=200, s7_timeout=120),
    "smoke": dict(s1_secs=1, s1_conns=8, s2_dialogs=20, s2_conns=4, s2_secs=0.3,
                  s2_open_share=0.5, s2_open_secs=0.3, s2_open_warmup=0.1, s2_open_conns=8,
                  fsync_secs=0.2, s3_dialogs=10, s3_alt=4, s3_secs=0.5, s3_latency=50,
                  s3_ramp_ms=50, s3_think_ms="0-10", s3_warmup=0.1,
                  s4_turns=40, s4_latency=300, s4_ramp=400, s5_dialogs=10,
                  s5_conns=2, s5_secs=0.3, s6_lengths=[4, 10, 20],
                  s6_dialogs=[2, 2, 2], s6_rounds=[2, 2, 2],
                  s7_ops=5, s7_max=3, s7_dialogs=50, s7_paced=25, s7_rate=1000,
                  s7_conns=4, s7_storm_conns=4, s7_queue_gets=20, s7_timeout=20),
}


def log(*a):
    print("[bench %s]" % time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http(method, url, body=None, timeout=30):
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_http(url, proc, timeout=30):
    t_end = time.time() + timeout
    while time.time() < t_end:
        if proc.poll() is not None:
            raise RuntimeError("process exited with %s before answering %s" % (proc.returncode, url))
        try:
            st, _ = http("GET", url, timeout=2)
            if st < 500:
                return
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.05)
    raise RuntimeError("no answer from %s" % url)


# ---------------------------------------------------------------- /proc


def proc_stat(pid):
    """utime+stime in seconds, RSS in bytes, threads, write_bytes, wchar."""
    out = {}
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["cpu_s"] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    out["rss"] = int(fields[21]) * PAGE
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    try:
        with open("/proc/%d/io" % pid) as f:
            for line in f:
                k, v = line.split(":")
                if k in ("write_bytes", "wchar"):
                    out[k] = int(v)
    except OSError:
        pass
    return out


def tree_pids(pid):
    pids = [pid]
    try:
        for child in open("/proc/%d/task/%d/children" % (pid, pid)).read().split():
            pids += tree_pids(int(child))
    except OSError:
        pass
    return pids


def tree_cpu(pid):
    return sum(proc_stat(p)["cpu_s"] for p in tree_pids(pid))


class Sampler(threading.Thread):
    """Samples threads and RSS of a pid every 50 ms; keeps the maxima."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.stop, self.max_rss, self.max_threads = pid, False, 0, 0

    def run(self):
        while not self.stop:
            try:
                st = proc_stat(self.pid)
                self.max_rss = max(self.max_rss, st["rss"])
                self.max_threads = max(self.max_threads, st["threads"])
            except OSError:
                return
            time.sleep(0.05)


# ---------------------------------------------------------------- processes


class Bench:
    def __init__(self, args):
        self.args = args
        self.p = PROFILES["smoke" if args.smoke else "full"]
        self.build = os.path.join(ROOT, args.build_dir)
        self.bin = os.path.join(self.build, "bench")
        stamp = datetime.datetime.now().strftime("%Y%m%dT%H%M%S")
        self.stamp = stamp
        self.work = os.path.join(ROOT, "bench", ".work", stamp)
        os.makedirs(self.work, exist_ok=True)
        self.procs = []
        self.rows = []
        self.raw = {}
        self.failed = []
        self.pg = None        # the throwaway PostgreSQL: dict(url, bin), once started
        self.pg_dir = None    # its directory (and parent) from the start on, for pg_stop
        self.pg_skip = None   # why the postgres rows cannot run (pg.sh exited 77)
        self.pg_dbs = 0

    def spawn(self, name, cmd, env=None, cwd=None, pipe=False):
        """Starts cmd (stderr to WORK/name.log; stdout too unless pipe)."""
        logf = open(os.path.join(self.work, name + ".log"), "ab")
        full_env = dict(os.environ)
        for k in list(full_env):
            if k.startswith(("OPENAI_", "DATABASE_")) or \
                    k in ("STORAGE_FSYNC", "THREADS", "PORT", "HOST", "STORE"):
                del full_env[k]
        full_env.update(env or {})
        p = subprocess.Popen(cmd, env=full_env, cwd=cwd or self.work,
                             stdout=subprocess.PIPE if pipe else logf,
                             stderr=logf, stdin=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def kill(self, p, timeout=60):
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if p in self.procs:
            self.procs.remove(p)

    def kill_all(self):
        for p in list(self.procs):
            self.kill(p, timeout=10)

    # ------------------------------------------------------------ PostgreSQL

    def pg_available(self):
        """Starts the run's PostgreSQL server on first use (tests/pg/pg.sh: a
        Unix socket in a fresh directory under /tmp, whose parents the
        `postgres` user can search when we are root). False, with the reason
        in self.pg_skip, when pg.sh says the server binaries are missing
        (exit 77); any other failure raises."""
        if self.pg is not None:
            return True
        if self.pg_skip is not None:
            return False
        parent = tempfile.mkdtemp(prefix="cca-bench-pg-", dir="/tmp")
        os.chmod(parent, 0o711)
        d = os.path.join(parent, "pg")
        log("starting a throwaway PostgreSQL in %s" % d)
        self.pg_dir = (parent, d)  # stopped at the end even if interrupted while starting
        r = subprocess.run([PG_SH, "start", d], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
        if r.returncode == 77:
            self.pg_dir = None
            os.rmdir(parent)
            self.pg_skip = "no PostgreSQL server binaries (tests/pg/pg.sh exit 77)"
            log("postgres rows skipped: %s" % self.pg_skip)
            return False
        if r.returncode != 0:
            self.pg_dir = None
            shutil.rmtree(parent, ignore_errors=True)
            raise RuntimeError("tests/pg/pg.sh start failed (%d): %s" % (
                r.returncode, r.stderr.strip()[-300:]))
        self.pg = dict(url=r.stdout.strip(), bin=pg_bin_dir())
        return True

    def pg_database(self):
        """A fresh database (CREATE DATABASE with the server's own psql), as
        a DATABASE_URL."""
        if not self.pg_available():
            raise RuntimeError(self.pg_skip)
        self.pg_dbs += 1
        name = "bench%d" % self.pg_dbs
        subprocess.run([os.path.join(self.pg["bin"], "psql"), "-X", "-q", "-v",
                        "ON_ERROR_STOP=1", "-d", self.pg["url"], "-c",
                        "CREATE DATABASE %s ENCODING 'UTF8'" % name], check=True,
                       stdout=subprocess.DEVNULL)
        return self.pg["url"].replace("dbname=postgres", "dbname=" + name)

    def pg_stop(self):
        if self.pg_dir is None:
            return
        parent, d = self.pg_dir
        log("stopping the throwaway PostgreSQL")
        subprocess.run([PG_SH, "stop", d])
        shutil.rmtree(parent, ignore_errors=True)
        self.pg = self.pg_dir = None

    def pg_rows(self, scen, fn):
        """Runs fn (the scenario's postgres part, which adds its own rows)
        when a PostgreSQL server can run; otherwise one visible "skipped"
        row. A failure of the postgres part is the scenario's failure, with
        the file store's rows kept."""
        if not self.pg_available():
            self.row(scen, "STORE=postgres rows", "skipped", self.pg_skip, "-", "skipped")
            return
        t = time.time()
        try:
            fn()
            log("%s STORE=postgres part done in %.1f s" % (scen, time.time() - t))
        except Exception as e:
            traceback.print_exc()
            if scen not in self.failed:
                self.failed.append(scen)
            self.row(scen, "STORE=postgres: scenario failed", "-", "", "-", "error: %s" % e)
        finally:
            self.kill_all()


    def fake(self, latency_ms):
        exe = os.path.join(self.build, "tests", "fake_openai")
        p = self.spawn("fake", [exe, "--port", "0", "--latency-ms", str(latency_ms),
                                "--key", FAKE_KEY], pipe=True)
        line = p.stdout.readline().decode()
        if not line.startswith("port="):
            raise RuntimeError("fake_openai did not print its port")
        p.port = int(line.strip().split("=")[1])
        p.base = "http://127.0.0.1:%d" % p.port
        threading.Thread(target=p.stdout.read, daemon=True).start()
        return p

    def server(self, storage, fsync=True, fake=None, extra=None, timeout=30, store="file",
               database_url=None):
        """Our server; store="postgres" gives it a fresh database of the
        run's PostgreSQL server (the data then lives there, not in storage),
        or @database_url (a second instance on it is a standby: live, not ready)."""
        port = free_port()
        os.makedirs(storage, exist_ok=True)
        env = {"HOST": "127.0.0.1", "PORT": str(port), "DIALOGS_STORAGE_PATH": storage,
               "DATA_DIR": os.path.join(ROOT, "data"), "LOG_LEVEL": "warning",
               "THREADS": "2", "MAX_CONNECTIONS": "19000", "CONNECTION_TIMEOUT_S": "120",
               "LLM_TIMEOUT_S": "60", "MAX_PENDING_TURNS": "20000",
               "STORAGE_FSYNC": "true" if fsync else "false", "OPENAI_API_KEY": ""}
        if fake is not None:
            env.update({"OPENAI_API_KEY": FAKE_KEY, "OPENAI_BASE_URL": fake.base + "/v1"})
        env["STORE"] = store
        if store == "postgres":
            env.update({"DATABASE_URL": database_url or self.pg_database(),
                        "DATABASE_POOL_SIZE": PG_POOL_SIZE})
        env.update(extra or {})
        p = self.spawn("server", [os.path.join(self.build, "call-center-agents")], env)
        p.base = "http://127.0.0.1:%d" % port
        p.port = port
        p.database_url = env.get("DATABASE_URL")
        wait_http(p.base + "/api/v1/health/live", p, timeout=timeout)
        return p

    def fastapi(self, storage, fake):
        port = free_port()
        os.makedirs(storage, exist_ok=True)
        env = {"STORAGE": storage, "OPENAI_BASE_URL": fake.base + "/v1",
               "OPENAI_API_KEY": FAKE_KEY}
        p = self.spawn("fastapi", [sys.executable, "-m", "uvicorn", "--app-dir",
                                   os.path.join(ROOT, "bench", "peers"), "fastapi_peer:app",
                                   "--host", "127.0.0.1", "--port", str(port),
                                   "--workers", str(self.args.fastapi_workers),
                                   "--no-access-log", "--log-level", "warning",
                                   "--backlog", "4096"], env)
        p.base = "http://127.0.0.1:%d" % port
        wait_http(p.base + "/health", p)
        return p

    def loadgen(self, url, **kw):
        cmd = [os.path.join(self.bin, "loadgen"), "--url", url]
        for k, v in kw.items():
            if v is None:
                continue
            if isinstance(v, list):
                for item in v:
                    cmd += ["--" + k.replace("_", "-"), str(item)]
            else:
                cmd += ["--" + k.replace("_", "-"), str(v)]
        out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE).stdout
        return json.loads(out)

    def make_dialogs(self, base, n, path, conns=16, body=EMPTY_CREATE_BODY):
        if os.path.exists(path):
            os.unlink(path)
        r = self.loadgen(base + "/api/v1/dialogue/create", method="POST", body=body,
                         conns=min(conns, n), requests=n, save_ids=path, timeout=120)
        ids = [l for l in open(path).read().split("\n") if l]
        if len(ids) != n:
            raise RuntimeError("created %d of %d dialogs (%s)" % (len(ids), n, r["first_error"]))
        return ids

    def wrk(self, url, secs, conns):
        out = subprocess.run(["wrk", "-t2", "-c%d" % conns, "-d%ds" % max(1, int(secs)),
                              "--latency", url], check=True, stdout=subprocess.PIPE,
                             text=True).stdout
        res = {"rps": 0.0, "non2xx": 0, "errors": 0}
        units = {"us": 1, "ms": 1e3, "s": 1e6}
        for line in out.splitlines():
            w = line.split()
            if line.startswith("Requests/sec:"):
                res["rps"] = float(w[1])
            elif line.strip().startswith(("50%", "99%")) and len(w) == 2:
                v = w[1]
                for u in ("us", "ms", "s"):
                    if v.endswith(u):
                        res["p%s_us" % w[0][:2]] = float(v[:-len(u)]) * units[u]
                        break
            elif "Non-2xx" in line:
                res["non2xx"] = int(w[-1])
            elif line.strip().startswith("Socket errors"):
                res["errors"] = sum(int(x.strip(",")) for x in w[3::2])
        return res

    # ------------------------------------------------------------ table

    def row(self, scen, metric, ours, peers, target, verdict):
        self.rows.append(dict(scenario=scen, metric=metric, ours=ours, peers=peers,
                              target=target, verdict=verdict))

    @staticmethod
    def at_least(value, bound):
        if bound <= 0:
            return "n/a"
        if value >= bound:
            return "met"
        return "missed by %.0f%%" % ((bound - value) / bound * 100)

    @staticmethod
    def at_most(value, bound, unit=""):
        if value <= bound:
            return "met"
        return "missed by %s%s" % (fmt(value - bound), unit)

    # ------------------------------------------------------------ S1

    def s1(self):
        p = self.p
        srv = self.server(os.path.join(self.work, "s1-ours"), fsync=False)
        st, body = http("POST", srv.base + "/api/v1/dialogue/create", CREATE_BODY)
        did = json.loads(body)["dialog_id"]
        doc = b""
        for _ in range(100):
            st, doc = http("GET", srv.base + "/api/v1/dialogue/" + did)
            if len(doc) >= 8192:
                break
            http("POST", srv.base + "/api/v1/dialogue/%s/message" % did, MESSAGE_BODY)
        dfile = os.path.join(self.work, "dialog.json")
        with open(dfile, "wb") as f:
            f.write(doc)
        res = {"dialog_bytes": len(doc)}
        res["ours"] = self.wrk(srv.base + "/api/v1/dialogue/" + did, p["s1_secs"], p["s1_conns"])
        self.kill(srv)

        bare_port_file = os.path.join(self.work, "bare.port")
        bare = self.spawn("bare_mhd", [os.path.join(self.bin, "bare_mhd"), "--file", dfile,
                                       "--threads", "2", "--port-file", bare_port_file],
                          pipe=True)
        bare_port = int(bare.stdout.readline().decode().strip().split("=")[1])
        res["bare_mhd"] = self.wrk("http://127.0.0.1:%d/api/v1/dialogue/%s" % (bare_port, did),
                                   p["s1_secs"], p["s1_conns"])
        self.kill(bare)

        res["nginx"] = self.nginx_run(dfile, did)

        fake = self.fake(0)
        fstore = os.path.join(self.work, "s1-fastapi")
        os.makedirs(fstore, exist_ok=True)
        shutil.copy(dfile, os.path.join(fstore, did + ".json"))
        fa = self.fastapi(fstore, fake)
        res["fastapi"] = self.wrk(fa.base + "/api/v1/dialogue/" + did, p["s1_secs"],
                                  p["s1_conns"])
        self.kill(fa)
        self.kill(fake)
        self.raw["S1"] = res

        o, b, n, f = (res[k]["rps"] for k in ("ours", "bare_mhd", "nginx", "fastapi"))
        peers = "bare MHD %s, nginx %s, FastAPI %s" % (fmt(b), fmt(n), fmt(f))
        self.row("S1", "GET %d B dialog, req/s (c=%d)" % (len(doc), p["s1_conns"]), fmt(o),
                 peers, ">= 60% of bare MHD", self.at_least(o, 0.6 * b))
        self.row("S1", "ours / FastAPI req/s", "%.1fx" % (o / f if f else 0), "", ">= 10x",
                 self.at_least(o, 10 * f))
        self.row("S1", "p99 latency, us", fmt(res["ours"].get("p99_us", 0)),
                 "bare %s, nginx %s, FastAPI %s" % tuple(
                     fmt(res[k].get("p99_us", 0)) for k in ("bare_mhd", "nginx", "fastapi")),
                 "-", "info")
        bad = sum(res[k]["non2xx"] for k in ("ours", "bare_mhd", "nginx", "fastapi"))
        if bad:
            self.row("S1", "non-2xx answers", str(bad), "", "0", "missed by %d" % bad)

    def nginx_run(self, dfile, did):
        port = free_port()
        ndir = os.path.join(self.work, "nginx")
        os.makedirs(os.path.join(ndir, "api", "v1", "dialogue"), exist_ok=True)
        shutil.copy(dfile, os.path.join(ndir, "api", "v1", "dialogue", did))
        conf = os.path.join(ndir, "nginx.conf")
        user = "user root;\n" if os.geteuid() == 0 else ""
        with open(conf, "w") as f:
            f.write("""%sworker_processes 2;
daemon off;
pid %s/nginx.pid;
error_log %s/error.log warn;
events { worker_connections 20000; use epoll; }
http {
  access_log off;
  keepalive_requests 10000000;
  client_body_temp_path %s/tmp; proxy_temp_path %s/tmp; fastcgi_temp_path %s/tmp;
  uwsgi_temp_path %s/tmp; scgi_temp_path %s/tmp;
  default_type application/json;
  server { listen 127.0.0.1:%d; root %s; location / { } }
}
""" % (user, ndir, ndir, ndir, ndir, ndir, ndir, ndir, port, ndir))
        os.makedirs(os.path.join(ndir, "tmp"), exist_ok=True)
        ng = self.spawn("nginx", [shutil.which("nginx") or "/usr/sbin/nginx", "-c", conf,
                                  "-p", ndir])
        url = "http://127.0.0.1:%d/api/v1/dialogue/%s" % (port, did)
        wait_http(url, ng)
        res = self.wrk(url, self.p["s1_secs"], self.p["s1_conns"])
        self.kill(ng)
        return res

    # ------------------------------------------------------------ S2

    def s2(self):
        """Durable turns: the throughput at saturation (closed loop, c connections:
        its p99 is queueing, 64 / throughput by Little's law, so info only), then
        on the same durable server the latency in an open loop at a constant rate
        below saturation (a share of the durable rate just measured), which is
        the figure judged against the disk's fsync p99; then no-sync saturation."""
        p = self.p
        res = {}
        store = os.path.join(self.work, "s2-durable")
        os.makedirs(store, exist_ok=True)
        out = subprocess.run([os.path.join(self.bin, "fsync_probe"), "--dir", store,
                              "--seconds", str(p["fsync_secs"])], check=True,
                             stdout=subprocess.PIPE).stdout
        res["disk"] = disk = json.loads(out)
        url = "/api/v1/dialogue/{id}/message"
        for mode, fsync in (("durable", True), ("nosync", False)):
            srv = self.server(os.path.join(self.work, "s2-" + mode), fsync=fsync)
            idf = os.path.join(self.work, "s2-%s.ids" % mode)
            self.make_dialogs(srv.base, p["s2_dialogs"], idf, conns=p["s2_conns"])
            b0 = scrape_batch(srv.base)
            res[mode] = self.loadgen(srv.base + url, method="POST", body=MESSAGE_BODY, ids=idf,
                                     id_mode="cycle", conns=p["s2_conns"],
                                     duration=p["s2_secs"])
            b1 = scrape_batch(srv.base)
            res[mode]["batch"] = batch_mean(b0, b1)
            if mode == "durable":
                rate = max(1.0, round(p["s2_open_share"] * res[mode]["main"]["rps"]))
                r = self.loadgen(srv.base + url, method="POST", body=MESSAGE_BODY, ids=idf,
                                 id_mode="cycle", conns=p["s2_open_conns"], rate=rate,
                                 warmup=p["s2_open_warmup"], duration=p["s2_open_secs"])
                r["batch"] = batch_mean(b1, scrape_batch(srv.base))
                r["rate"] = rate
                r["share_of_saturation"] = p["s2_open_share"]
                res["durable_open"] = r
            self.kill(srv)
        self.raw["S2"] = res
        d, n, o = res["durable"]["main"], res["nosync"]["main"], res["durable_open"]["main"]
        rate = res["durable_open"]["rate"]
        self.row("S2", "durable turns/s, closed loop (c=%d)" % p["s2_conns"], fmt(d["rps"]),
                 "disk fsync %s/s; no-sync %s/s" % (fmt(disk["rate_per_s"]), fmt(n["rps"])),
                 ">= 5x fsync rate", self.at_least(d["rps"], 5 * disk["rate_per_s"]))
        self.row("S2", "durable p99, open loop at %s turns/s (%d%% of saturation), us" % (
            fmt(rate), round(100 * p["s2_open_share"])), fmt(o["p99_us"]),
                 "fsync p99 %s (p50 %s); p50 %s" % (fmt(disk["p99_us"]), fmt(disk["p50_us"]),
                                                    fmt(o["p50_us"])),
                 "<= fsync p99 + 1 ms", self.at_most(o["p99_us"], disk["p99_us"] + 1000, " us"))
        if o["offered_rps"] < 0.98 * rate:
            self.row("S2", "open loop: offered turns/s (in-flight cap %d)" % p["s2_open_conns"],
                     fmt(o["offered_rps"]), "rate %s" % fmt(rate), "-",
                     "info (the cap held requests back: the p99 above is low)")
        self.row("S2", "durable p99 at saturation (c=%d, queueing), us" % p["s2_conns"],
                 fmt(d["p99_us"]), "p50 %s; Little: c/rate = %s" % (
                     fmt(d["p50_us"]), fmt(p["s2_conns"] / d["rps"] * 1e6 if d["rps"] else 0)),
                 "-", "info")
        self.row("S2", "durable / no-sync turns/s", pct_s(d["rps"], n["rps"]), "", ">= 80%",
                 self.at_least(d["rps"], 0.8 * n["rps"]))
        if res["durable"]["batch"]:
            self.row("S2", "mean group-commit batch: saturation; open loop",
                     "%.1f; %.1f" % (res["durable"]["batch"], res["durable_open"]["batch"]),
                     "", "-", "info")
        self.row("S2", "loadgen CPU per request, us: saturation; open loop",
                 "%s; %s" % (fmt(res["durable"]["loadgen_cpu_us_per_request"]),
                             fmt(res["durable_open"]["loadgen_cpu_us_per_request"])),
                 "", "-", "info (shares the cores with the server)")
        bad = sum(x["non2xx"] + x["errors"] for x in (d, n, o))
        if bad:
            self.row("S2", "failed turns", str(bad), "", "0", "missed by %d" % bad)
        self.pg_rows("S2", lambda: self.s2_pg(res))
        self.pg_rows("S2", lambda: self.s2_pg_pair(res))

    def s2_pg(self, res):
        """S2's durable closed loop again with STORE=postgres (same dialogs,
        connections and duration), judged against the file store's figure of
        this run."""
        p = self.p
        srv = self.server(os.path.join(self.work, "s2-pg"), store="postgres")
        idf = os.path.join(self.work, "s2-pg.ids")
        self.make_dialogs(srv.base, p["s2_dialogs"], idf, conns=p["s2_conns"])
        b0 = scrape_batch(srv.base)
        r = self.loadgen(srv.base + "/api/v1/dialogue/{id}/message", method="POST",
                         body=MESSAGE_BODY, ids=idf, id_mode="cycle", conns=p["s2_conns"],
                         duration=p["s2_secs"])
        r["batch"] = batch_mean(b0, scrape_batch(srv.base))
        self.kill(srv)
        res["postgres"] = r
        d, g = res["durable"]["main"], r["main"]
        self.row("S2", "durable turns/s, STORE=postgres, closed loop (c=%d)" % p["s2_conns"],
                 fmt(g["rps"]), "file %s/s: %s of it" % (fmt(d["rps"]), pct_s(g["rps"], d["rps"])),
                 ">= 50% of file", self.at_least(g["rps"], 0.5 * d["rps"]))
        self.row("S2", "STORE=postgres p50/p99 at saturation, us; mean batch",
                 "%s/%s; %.1f" % (fmt(g["p50_us"]), fmt(g["p99_us"]), r["batch"]),
                 "file %s/%s; %.1f" % (fmt(d["p50_us"]), fmt(d["p99_us"]),
                                       res["durable"]["batch"]), "-", "info")
        bad = g["non2xx"] + g["errors"]
        if bad:
            self.row("S2", "STORE=postgres failed turns", str(bad), r.get("first_error", ""),
                     "0", "missed by %d" % bad)

    def s2_pg_pair(self, res):
        """S2's durable closed loop through nginx (deploy/nginx/cca.conf) in
        front of two instances on one database: one active, one standby that
        answers 503 and is retried on the active one. Judged against issue
        15's 1.5x of one instance, which an active/standby pair cannot reach
        (docs/internals/store_pg.md, "Several instances")."""
        p = self.p
        a = self.server(os.path.join(self.work, "s2-pair-a"), store="postgres")
        b = self.server(os.path.join(self.work, "s2-pair-b"), store="postgres",
                        database_url=a.database_url)
        nd = os.path.join(self.work, "s2-pair-nginx")
        port = free_port()
        conf = render_nginx(nd, port, [a.port, b.port], worker_processes=1,
                            worker_connections=4096)
        ng = self.spawn("nginx", [shutil.which("nginx") or "/usr/sbin/nginx", "-p", nd,
                                  "-c", conf])
        base = "http://127.0.0.1:%d" % port
        wait_http(base + "/api/v1/health/ready", ng)
        idf = os.path.join(self.work, "s2-pair.ids")
        self.make_dialogs(base, p["s2_dialogs"], idf, conns=p["s2_conns"])
        r = self.loadgen(base + "/api/v1/dialogue/{id}/message", method="POST",
                         body=MESSAGE_BODY, ids=idf, id_mode="cycle", conns=p["s2_conns"],
                         duration=p["s2_secs"])
        for x in (ng, b, a):
            self.kill(x)
        res["postgres_pair"] = r
        one, g = res["postgres"]["main"], r["main"]
        self.row("S2", "durable turns/s, STORE=postgres, 2 instances behind nginx (c=%d)" %
                 p["s2_conns"], fmt(g["rps"]),
                 "1 instance direct %s/s: %s of it; p99 %s us" % (
                     fmt(one["rps"]), pct_s(g["rps"], one["rps"]), fmt(g["p99_us"])),
                 ">= 1.5x one instance", self.at_least(g["rps"], 1.5 * one["rps"]) +
                 " (one active, one standby: availability, not capacity)")
        bad = g["non2xx"] + g["errors"]
        if bad:
            self.row("S2", "STORE=postgres, 2 instances: failed turns", str(bad),
                     r.get("first_error", ""), "0", "missed by %d" % bad)

    # ------------------------------------------------------------ S3

    def s3(self):
        """Added latency: ours (no-sync, as the FastAPI peer never flushes), the
        FastAPI peer, and ours durable (info: the flush is part of a real turn).
        Each dialog's loop (and each direct one) starts at a random instant of the
        ramp and waits a random think time between turns, so the turns are not
        sent in synchronised waves; the ramp and the first cycle are warm-up."""
        p = self.p
        fake = self.fake(p["s3_latency"])
        res = {"fake_latency_ms": p["s3_latency"], "ramp_ms": p["s3_ramp_ms"],
               "think_ms": p["s3_think_ms"], "warmup_s": p["s3_warmup"]}
        for name in ("ours", "fastapi", "ours_durable"):
            if name == "fastapi":
                srv = self.fastapi(os.path.join(self.work, "s3-fastapi"), fake)
            else:
                srv = self.server(os.path.join(self.work, "s3-" + name), fake=fake,
                                  fsync=name == "ours_durable")
            res[name] = self.s3_run(name, srv, fake)
            self.kill(srv)
        self.raw["S3"] = res
        self.s3_rows(res)
        self.pg_rows("S3", lambda: self.s3_pg(res, fake))
        self.kill(fake)

    def s3_pg(self, res, fake):
        """S3's durable run again with STORE=postgres, same fake and load."""
        p = self.p
        srv = self.server(os.path.join(self.work, "s3-pg"), fake=fake, store="postgres")
        res["ours_postgres"] = g = self.s3_run("ours_postgres", srv, fake)
        self.kill(srv)
        d = res["ours_durable"]
        self.row("S3", "added p50/p99 STORE=postgres, us",
                 "%s/%s" % (fmt(g["added_p50_us"]), fmt(g["added_p99_us"])),
                 "file durable %s/%s; turns/s %s (%s)" % (
                     fmt(d["added_p50_us"]), fmt(d["added_p99_us"]), fmt(g["main"]["rps"]),
                     fmt(g["main"]["offered_rps"])), "-", "info")
        bad = g["main"]["non2xx"] + g["main"]["errors"]
        if bad:
            self.row("S3", "STORE=postgres failed turns", str(bad),
                     g.get("first_error", "")[:80], "0", "missed by %d" % bad)

    def s3_run(self, name, srv, fake):
        """One S3 load against srv (ours or the FastAPI peer)."""
        p = self.p
        idf = os.path.join(self.work, "s3-%s.ids" % name)
        self.make_dialogs(srv.base, p["s3_dialogs"], idf, conns=64)
        c0 = tree_cpu(srv.pid)
        r = self.loadgen(srv.base + "/api/v1/dialogue/{id}/message", method="POST",
                         body=MESSAGE_BODY, ids=idf, id_mode="sticky",
                         conns=p["s3_dialogs"], duration=p["s3_secs"],
                         alt_url=fake.base + "/v1/chat/completions", alt_body=FAKE_BODY,
                         alt_header="Authorization: Bearer " + FAKE_KEY,
                         alt_conns=p["s3_alt"], ramp_ms=p["s3_ramp_ms"],
                         think_ms=p["s3_think_ms"], warmup=p["s3_warmup"], timeout=120)
        # the server's CPU over the whole run (warm-up included) per answered turn
        r["server_cpu_s"] = tree_cpu(srv.pid) - c0
        r["server_cpu_us_per_turn"] = r["server_cpu_s"] / max(
            1, r["main"]["requests"] + r["main"]["warmup_excluded"]) * 1e6
        r["added_p50_us"] = r["main"]["p50_us"] - r["alt"]["p50_us"]
        r["added_p99_us"] = r["main"]["p99_us"] - r["alt"]["p99_us"]
        if name != "fastapi":
            r["overhead_histogram"] = scrape_overhead(srv.base)
        return r

    def s3_rows(self, res):
        p = self.p
        o, f, d = res["ours"], res["fastapi"], res["ours_durable"]
        self.row("S3", "added p99, no-sync (fake %d ms, %d dialogs, ramp %d ms, think %s ms), us"
                 % (p["s3_latency"], p["s3_dialogs"], p["s3_ramp_ms"], p["s3_think_ms"]),
                 fmt(o["added_p99_us"]), "FastAPI %s" % fmt(f["added_p99_us"]), "<= 2000 us",
                 self.at_most(o["added_p99_us"], 2000, " us"))
        self.row("S3", "added p99 vs FastAPI", fmt(o["added_p99_us"]),
                 "FastAPI/20 = %s" % fmt(f["added_p99_us"] / 20), "<= 1/20 of FastAPI",
                 self.at_most(o["added_p99_us"], max(f["added_p99_us"], 0) / 20, " us"))
        self.row("S3", "added p50, no-sync, us", fmt(o["added_p50_us"]),
                 "FastAPI %s" % fmt(f["added_p50_us"]), "-", "info")
        self.row("S3", "added p50/p99 durable (with fsync), us",
                 "%s/%s" % (fmt(d["added_p50_us"]), fmt(d["added_p99_us"])), "", "-", "info")
        self.row("S3", "turns/s answered (offered)", "%s (%s)" % (
            fmt(o["main"]["rps"]), fmt(o["main"]["offered_rps"])),
                 "FastAPI %s (%s); direct %s (%s)" % (
                     fmt(f["main"]["rps"]), fmt(f["main"]["offered_rps"]),
                     fmt(o["alt"]["rps"]), fmt(o["alt"]["offered_rps"])), "-", "info")
        self.row("S3", "direct to fake p50/p99, us", "%s/%s" % (
            fmt(o["alt"]["p50_us"]), fmt(o["alt"]["p99_us"])),
                 "FastAPI run %s/%s" % (fmt(f["alt"]["p50_us"]), fmt(f["alt"]["p99_us"])), "-",
                 "info")
        self.row("S3", "server CPU per turn (whole process), us",
                 fmt(o["server_cpu_us_per_turn"]), "FastAPI %s; ours durable %s" % (
                     fmt(f["server_cpu_us_per_turn"]), fmt(d["server_cpu_us_per_turn"])), "-",
                 "info (x turns/s = cores used)")
        self.row("S3", "loadgen CPU per request, us", fmt(o["loadgen_cpu_us_per_request"]),
                 "FastAPI run %s; durable run %s" % (
                     fmt(f["loadgen_cpu_us_per_request"]),
                     fmt(d["loadgen_cpu_us_per_request"])), "-",
                 "info (shares the cores with the server)")
        bad = sum(r["main"]["non2xx"] + r["main"]["errors"] for r in (o, f, d))
        if bad:
            self.row("S3", "failed turns (all runs)", str(bad), "", "0", "missed by %d" % bad)

    # ------------------------------------------------------------ S4

    def s4(self):
        p = self.p
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        # the server holds one client and one upstream socket per turn
        n = min(p["s4_turns"], (hard - 300) // 2) if hard != resource.RLIM_INFINITY \
            else p["s4_turns"]
        fake = self.fake(p["s4_latency"])
        srv = self.server(os.path.join(self.work, "s4"), fake=fake)
        time.sleep(0.5)
        idle = proc_stat(srv.pid)
        # one turn first: the caches a first turn warms are not per-turn growth
        http("POST", srv.base + "/api/v1/dialogue/create", CREATE_BODY, timeout=120)
        time.sleep(0.2)
        before = proc_stat(srv.pid)
        samp = Sampler(srv.pid)
        samp.start()
        r = self.loadgen(srv.base + "/api/v1/dialogue/create", method="POST", body=CREATE_BODY,
                         conns=n, requests=n, rate=p["s4_ramp"], timeout=120)["main"]
        samp.stop = True
        samp.join()
        st, stats = http("GET", fake.base + "/_fake/stats")
        max_in_flight = json.loads(stats).get("max_in_flight", 0)
        time.sleep(2)
        after = proc_stat(srv.pid)
        self.kill(srv)
        self.kill(fake)
        growth = (samp.max_rss - before["rss"]) / max(1, max_in_flight)
        res = dict(requested=p["s4_turns"], turns=n, nofile_hard=hard, load=r,
                   max_in_flight_upstream=max_in_flight, idle_rss=idle["rss"],
                   idle_threads=idle["threads"], rss_before=before["rss"],
                   peak_rss=samp.max_rss, max_threads=samp.max_threads, rss_after=after["rss"],
                   growth_per_turn=growth)
        self.raw["S4"] = res
        errors = r["non2xx"] + r["errors"] + (n - r["requests"])
        label = "%d turns (fake %d ms)" % (n, p["s4_latency"])
        if n < p["s4_turns"]:
            label += ", capped by nofile %d" % hard
        self.row("S4", label + ": errors", str(errors),
                 "in flight at fake: %d" % max_in_flight, "0",
                 "met" if errors == 0 else "missed by %d" % errors)
        self.row("S4", "max threads", str(samp.max_threads), "idle %d" % idle["threads"], "<= 8",
                 self.at_most(samp.max_threads, 8))
        self.row("S4", "RSS growth per in-flight turn, KiB", "%.1f" % (growth / 1024), "",
                 "<= 16 KiB", self.at_most(growth / 1024, 16, " KiB"))
        self.row("S4", "idle RSS, MiB", "%.1f" % (idle["rss"] / 2**20), "", "<= 16 MiB",
                 self.at_most(idle["rss"] / 2**20, 16, " MiB"))
        grown = max(0, samp.max_rss - idle["rss"])
        self.row("S4", "RSS after load, MiB", "%.1f" % (after["rss"] / 2**20),
                 "peak %.1f" % (samp.max_rss / 2**20), "<= idle + 25% of growth",
                 self.at_most(after["rss"] / 2**20, (idle["rss"] + 0.25 * grown) / 2**20,
                              " MiB"))

    # ------------------------------------------------------------ S5

    def s5(self):
        p = self.p
        res = {}
        fake = self.fake(0)
        for name in ("ours", "ours_llm", "fastapi"):
            if name == "ours":
                srv = self.server(os.path.join(self.work, "s5-ours"), fsync=False)
            elif name == "ours_llm":
                srv = self.server(os.path.join(self.work, "s5-ours-llm"), fsync=False, fake=fake)
            else:
                srv = self.fastapi(os.path.join(self.work, "s5-fastapi"), fake)
            idf = os.path.join(self.work, "s5-%s.ids" % name)
            self.make_dialogs(srv.base, p["s5_dialogs"], idf)
            if name != "fastapi":
                settle(srv.base)  # the creates' file writes are not the turns' work
            c0 = tree_cpu(srv.pid)
            r = self.loadgen(srv.base + "/api/v1/dialogue/{id}/message", method="POST",
                             body=MESSAGE_BODY, ids=idf, id_mode="cycle", conns=p["s5_conns"],
                             duration=p["s5_secs"])["main"]
            if name != "fastapi":
                settle(srv.base)  # but the turns' deferred file writes are
            c1 = tree_cpu(srv.pid)
            r["cpu_s"] = c1 - c0
            r["cpu_us_per_turn"] = (c1 - c0) / max(1, r["ok"]) * 1e6
            res[name] = r
            self.kill(srv)
        self.kill(fake)
        self.raw["S5"] = res
        o, l, f = (res[k]["cpu_us_per_turn"] for k in ("ours", "ours_llm", "fastapi"))
        self.row("S5", "CPU per offline turn (no-sync), us", fmt(o),
                 "FastAPI %s (fake 0 ms); ours with fake %s" % (fmt(f), fmt(l)), "<= 100 us",
                 self.at_most(o, 100, " us"))
        self.row("S5", "FastAPI / ours CPU per turn", "%.1fx" % (f / o if o else 0), "",
                 ">= 10x", self.at_least(f, 10 * o))

    # ------------------------------------------------------------ S6

    def s6(self):
        p = self.p
        res = {}
        store = os.path.join(self.work, "s6")
        srv = self.server(store, fsync=False)
        ids = {}
        for length, m in zip(p["s6_lengths"], p["s6_dialogs"]):
            idf = os.path.join(self.work, "s6-%d.ids" % length)
            ids[length] = idf
            self.make_dialogs(srv.base, m, idf, body=CREATE_BODY)
            turns = m * (length - 2) // 2
            if turns:
                self.loadgen(srv.base + "/api/v1/dialogue/{id}/message", method="POST",
                             body=MESSAGE_BODY, ids=idf, id_mode="cycle", conns=m,
                             requests=turns, timeout=300)
        self.kill(srv)
        srv = self.server(store, fsync=True)
        for length, m, rounds in zip(p["s6_lengths"], p["s6_dialogs"], p["s6_rounds"]):
            first = open(ids[length]).readline().strip()
            size = len(http("GET", srv.base + "/api/v1/dialogue/" + first)[1])
            b0 = proc_stat(srv.pid)
            j0 = scrape_value(srv.base, "cca_store_journal_bytes_total")
            r = self.loadgen(srv.base + "/api/v1/dialogue/{id}/message", method="POST",
                             body=MESSAGE_BODY, ids=ids[length], id_mode="cycle", conns=1,
                             requests=m * rounds, timeout=120)["main"]
            settle(srv.base)  # the checkpoints of these turns count too
            b1 = proc_stat(srv.pid)
            j1 = scrape_value(srv.base, "cca_store_journal_bytes_total")
            # Bytes flushed on the critical path (the journal), when the store says.
            r["journal_bytes_per_turn"] = (j1 - j0) / max(1, r["ok"]) \
                if j0 is not None and j1 is not None else None
            r["dialog_bytes"] = size
            r["write_bytes_per_turn"] = (b1.get("write_bytes", 0) - b0.get("write_bytes", 0)) \
                / max(1, r["ok"])
            r["wchar_per_turn"] = (b1.get("wchar", 0) - b0.get("wchar", 0)) / max(1, r["ok"])
            res[length] = r
        self.kill(srv)
        self.raw["S6"] = res
        ls = p["s6_lengths"]
        for length in ls:
            r = res[length]
            jb = r.get("journal_bytes_per_turn")
            self.row("S6", "%d msgs (%s B): turn p50/p99 us; B written/turn" % (
                length, fmt(r["dialog_bytes"])),
                "%s/%s; %s" % (fmt(r["p50_us"]), fmt(r["p99_us"]),
                               fmt(r["write_bytes_per_turn"])),
                "wchar/turn %s%s" % (fmt(r["wchar_per_turn"]),
                                     "; journal (flushed before the answer) %s" % fmt(jb)
                                     if jb is not None else ""), "-", "info")
        top = res[ls[-1]]
        self.row("S6", "B written per turn / dialog size at %d msgs" % ls[-1],
                 "%.2f" % (top["write_bytes_per_turn"] / max(1, top["dialog_bytes"])), "",
                 "-", "info (1 would mean the whole file is rewritten per turn)")
        lo, hi = res[ls[-2]], res[ls[-1]]
        span = math.log(ls[-1] / ls[-2])
        for what, key in (("latency p50", "p50_us"), ("bytes written", "write_bytes_per_turn"),
                          ("journal bytes", "journal_bytes_per_turn")):
            if (lo.get(key) or 0) > 0 and (hi.get(key) or 0) > 0:
                k = math.log(hi[key] / lo[key]) / span
                self.row("S6", "%s growth exponent %d->%d msgs" % (what, ls[-2], ls[-1]),
                         "%.2f" % k, "", "< 1 (sublinear)",
                         "met" if k < 1 else "missed by %.2f" % (k - 1 + 1e-9))

    # ------------------------------------------------------------ S7

    def s7(self):
        """Operators (issue 11): OPS operators (max_dialogs 3) with open event
        streams, DIALOGS dialogs escalating: the first PACED at a constant rate
        (the latency from the handoff request to the operator's "assigned"
        event, for the ones assigned at once), the rest as fast as the server
        answers (all queue); GET /queue with DIALOGS - OPS x 3 queued; then a
        close storm (each operator closes their dialogs, each close assigns the
        queue head) for assignments/s. bench/loadgen/s7.c does the work; the
        server is durable (STORAGE_FSYNC=true), as a real deployment."""
        r = self.s7_run("file")
        self.raw["S7"] = r
        self.s7_rows(r)
        self.pg_rows("S7", self.s7_pg)
        self.row("S7", "STORE=postgres, 2 instances on one database", "not run",
                 "one is active and assigns alone, the other a standby (S2 measures the "
                 "pair behind nginx)", "-", "info")

    def s7_pg(self):
        """S7 again with STORE=postgres: the escalation -> event latency and
        the close storm's assignments/s, beside the file store's."""
        f = self.raw["S7"]
        self.raw["S7"]["postgres"] = g = self.s7_run("postgres")
        ev, fev = g["escalation"]["event"], f["escalation"]["event"]
        self.row("S7", "STORE=postgres: escalation -> operator event p99 at %s escalations/s "
                 "(%d assigned at once), us" % (fmt(g["paced"]["rate"]), ev["samples"]),
                 fmt(ev["p99_us"]), "p50 %s; file p99 %s (p50 %s)" % (
                     fmt(ev["p50_us"]), fmt(fev["p99_us"]), fmt(fev["p50_us"])),
                 "<= 5000 us", self.at_most(ev["p99_us"], 5000, " us"))
        self.row("S7", "STORE=postgres: assignments/s, close storm (c=%d, queue of %d drained)"
                 % (g["storm"]["conns"], g["storm_summary"]["expected"]),
                 fmt(g["storm_summary"]["assignments_per_s"]), "file %s; close p50/p99 %s/%s us" % (
                     fmt(f["storm_summary"]["assignments_per_s"]), fmt(g["storm"]["p50_us"]),
                     fmt(g["storm"]["p99_us"])), "-", "info")
        self.row("S7", "STORE=postgres: escalations/s, closed loop (c=%d)" % g["max"]["conns"],
                 fmt(g["max"]["rps"]), "file %s" % fmt(f["max"]["rps"]), "-", "info")
        bad = self.s7_bad(g)
        if bad:
            self.row("S7", "STORE=postgres: failures (requests, missing events, resyncs, "
                     "streams ended, queue length off)", str(bad), g["first_error"][:80], "0",
                     "missed by %d" % bad)

    @staticmethod
    def s7_bad(r):
        esc, e, s, ss = r["escalation"], r["events"], r["streams"], r["storm_summary"]
        queued = r["dialogs"] - r["seats"]
        bad = sum(r[k]["non2xx"] + r[k]["errors"] for k in
                  ("register", "status", "create", "paced", "max", "queue", "storm"))
        bad += esc["paced_missing_events"] + e["resync"] + s["ended"]
        bad += max(0, ss["expected"] - ss["assigned"])
        bad += abs(r["queue_length"] - queued) if r["queue_length"] >= 0 else queued
        return bad

    def s7_run(self, store):
        """One run of bench/loadgen/s7.c against a fresh durable server."""
        p = self.p
        srv = self.server(os.path.join(self.work, "s7-" + store), store=store, extra={
            "OPERATOR_SECRET": OPERATOR_SECRET,
            "QUEUE_MAX": str(max(20000, 2 * p["s7_dialogs"])),
            "OPERATOR_REGISTER_PER_MIN": "10000"})
        time.sleep(0.5)
        idle = proc_stat(srv.pid)
        samp = Sampler(srv.pid)
        samp.start()
        c0 = tree_cpu(srv.pid)
        cmd = [os.path.join(self.bin, "s7"), "--url", srv.base, "--pid", str(srv.pid),
               "--secret", OPERATOR_SECRET, "--operators", str(p["s7_ops"]),
               "--max-dialogs", str(p["s7_max"]), "--dialogs", str(p["s7_dialogs"]),
               "--paced", str(p["s7_paced"]), "--rate", str(p["s7_rate"]),
               "--conns", str(p["s7_conns"]), "--storm-conns", str(p["s7_storm_conns"]),
               "--queue-gets", str(p["s7_queue_gets"]), "--timeout", str(p["s7_timeout"])]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE)
        samp.stop = True
        samp.join()
        try:
            r = json.loads(proc.stdout)
        except ValueError:
            raise RuntimeError("s7 exited with %d without its JSON" % proc.returncode)
        if "fatal" in r:
            raise RuntimeError("%s: %s" % (r["fatal"], r.get("first_error", "")))
        r["server_cpu_s"] = tree_cpu(srv.pid) - c0
        r["idle_rss"], r["idle_threads"] = idle["rss"], idle["threads"]
        r["sampled_max_threads"] = max(samp.max_threads, r["server"]["max_threads"])
        r["sampled_peak_rss"] = samp.max_rss
        self.kill(srv)
        return r

    def s7_rows(self, r):
        ops = r["operators"]
        pa, mx, qu, st = r["paced"], r["max"], r["queue"], r["storm"]
        esc, ss = r["escalation"], r["storm_summary"]
        ev = esc["event"]
        rate = pa["rate"]
        self.row("S7", "escalation -> operator event p99 at %s escalations/s "
                 "(%d assigned at once), us" % (fmt(rate), ev["samples"]), fmt(ev["p99_us"]),
                 "p50 %s; handoff answer p50/p99 %s/%s" % (
                     fmt(ev["p50_us"]), fmt(pa["p50_us"]), fmt(pa["p99_us"])),
                 "<= 5000 us", self.at_most(ev["p99_us"], 5000, " us"))
        if pa["offered_rps"] < 0.98 * rate:
            self.row("S7", "paced escalations: offered/s (in-flight cap %d)" % pa["conns"],
                     fmt(pa["offered_rps"]), "rate %s; send lag p99 %s us" % (
                         fmt(rate), fmt(pa["send_lag_p99_us"])), "-",
                     "info (the generator fell behind the rate)")
        self.row("S7", "escalations/s, closed loop (c=%d, %d dialogs, all queueing)" % (
            mx["conns"], mx["requests"]), fmt(mx["rps"]),
                 "handoff p50/p99 %s/%s us" % (fmt(mx["p50_us"]), fmt(mx["p99_us"])),
                 "-", "info")
        self.row("S7", "assignments/s, close storm (c=%d, queue of %d drained)" % (
            st["conns"], ss["expected"]), fmt(ss["assignments_per_s"]),
                 "close p50/p99 %s/%s us; %d assigned" % (
                     fmt(st["p50_us"]), fmt(st["p99_us"]), ss["assigned"]), "-", "info")
        self.row("S7", "GET /queue p99 with %d queued (limit 100), us" % r["queue_length"],
                 fmt(qu["p99_us"]), "p50 %s; %s B" % (fmt(qu["p50_us"]),
                                                    fmt(r["queue_bytes"])), "-", "info")
        th = r["sampled_max_threads"]
        self.row("S7", "max threads", str(th), "idle %d" % r["idle_threads"], "<= 8",
                 self.at_most(th, 8))
        s = r["streams"]
        per = s["rss_per_stream_kb"]
        self.row("S7", "RSS per open event stream, KiB (%d streams)" % s["open"],
                 "%.1f" % per, "RSS %.1f -> %.1f MiB" % (s["rss_before_kb"] / 1024,
                                                       s["rss_after_kb"] / 1024),
                 "<= 8 KiB", self.at_most(per, 8, " KiB"))
        e = r["events"]
        self.row("S7", "events received over %d streams: total; queue broadcasts; MB" % ops,
                 "%d; %d; %.1f" % (e["total"], e["queue"], e["bytes"] / 1e6),
                 "server CPU %.1f s; loadgen CPU %.1f s" % (r["server_cpu_s"],
                                                             r["loadgen_cpu_s"]),
                 "-", "info")
        bad = self.s7_bad(r)
        if bad:
            self.row("S7", "failures (requests, missing events, resyncs, streams ended, "
                     "queue length off)", str(bad), r["first_error"][:80], "0",
                     "missed by %d" % bad)

    # ------------------------------------------------------------ S8

    def s8(self):
        """Support records: demo-data writes 100,000 dialogs, then CSV and
        NDJSON exports of all of them (dialogs/s, the server's peak RSS) and
        GET /stats latency, with a 16 MiB document cache and with the default
        one (bench/s8.py does it)."""
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        import s8
        s8.run(self, fmt, log, ROOT, settle)

    # ------------------------------------------------------------ S9

    def s9(self):
        """The Telegram channel (issue 13): relay latency from an update
        returned by getUpdates to the sendMessage/copyMessage it causes
        arriving at the fake Bot API (tests/fake_telegram.py, in this
        process), AI path and operator relay, at 100, 500 and 1,000
        updates/s with the limits lifted; then the default limits (30/s, 1 s
        per chat) as the fake measures them (bench/s9.py does it)."""
        sys.path.insert(0, os.path.join(ROOT, "bench"))
        import s9
        s9.run(self, fmt, log, ROOT, settle)

    # ------------------------------------------------------------ main

    def run(self):
        only = [s.strip().upper() for s in self.args.only.split(",")] if self.args.only \
            else ["S1", "S2", "S3", "S4", "S5", "S6", "S7", "S8", "S9"]
        started = time.time()
        machine = machine_info()
        for s in only:
            fn = getattr(self, s.lower(), None)
            if fn is None:
                raise SystemExit("unknown scenario %s" % s)
            log("%s ..." % s)
            t = time.time()
            try:
                fn()
            except Exception as e:  # keep going: the other scenarios still run
                traceback.print_exc()
                self.failed.append(s)
                self.row(s, "scenario failed", "-", "", "-", "error: %s" % e)
            finally:
                self.kill_all()
            log("%s done in %.1f s" % (s, time.time() - t))
        machine["loadavg_end"] = os.getloadavg()
        if self.args.smoke:  # tiny loads: no target is judged, only errors are kept
            for r in self.rows:
                if not r["verdict"].startswith("error"):
                    r["verdict"] = ""
        result = dict(mode="smoke" if self.args.smoke else "full", started=self.stamp,
                      duration_s=round(time.time() - started, 1), machine=machine,
                      scenarios=self.raw, table=self.rows, failed=self.failed)
        os.makedirs(os.path.join(ROOT, "bench", "results"), exist_ok=True)
        out = os.path.join(ROOT, "bench", "results", "%s%s.json" % (
            self.stamp, "-smoke" if self.args.smoke else ""))
        with open(out, "w") as f:
            json.dump(result, f, indent=2, default=str)
        print_table(self.rows, result)
        print("raw figures: %s" % os.path.relpath(out, ROOT))
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        return 1 if self.failed else 0


def pg_bin_dir():
    """The directory of the server binaries tests/pg/pg.sh uses: PG_BIN, or
    the newest /usr/lib/postgresql/<major>/bin."""
    if os.environ.get("PG_BIN") and os.access(os.path.join(os.environ["PG_BIN"], "initdb"),
                                               os.X_OK):
        return os.environ["PG_BIN"]
    best = None
    base = "/usr/lib/postgresql"
    for v in os.listdir(base) if os.path.isdir(base) else []:
        d = os.path.join(base, v, "bin")
        if v.isdigit() and os.access(os.path.join(d, "initdb"), os.X_OK):
            if best is None or int(v) > best[0]:
                best = (int(v), d)
    if best is None:
        raise RuntimeError("no /usr/lib/postgresql/<major>/bin")
    return best[1]


def scrape(base):
    st, body = http("GET", base + "/metrics")
    return body.decode() if st == 200 else ""


def scrape_batch(base):
    """(sum, count) of the cca_store_batch_size histogram (cumulative)."""
    s = c = 0.0
    for line in scrape(base).splitlines():
        if line.startswith("cca_store_batch_size_sum"):
            s = float(line.split()[-1])
        elif line.startswith("cca_store_batch_size_count"):
            c = float(line.split()[-1])
    return s, c


def scrape_value(base, name):
    """The value of one unlabelled sample of /metrics, or None when absent."""
    for line in scrape(base).splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def settle(base, limit_s=30):
    """Wait until the store has written every change to its files (the work a
    change leaves for later belongs to it); at once for a server without
    cca_store_dirty_documents."""
    deadline = time.time() + limit_s
    while time.time() < deadline:
        n = scrape_value(base, "cca_store_dirty_documents")
        if n is None or n == 0:
            return
        time.sleep(0.05)


def batch_mean(before, after):
    """Mean group-commit batch between two scrape_batch() readings."""
    c = after[1] - before[1]
    return (after[0] - before[0]) / c if c else 0


def scrape_overhead(base):
    return [l for l in scrape(base).splitlines() if l.startswith("cca_turn_overhead_seconds")]


def fmt(v):
    if isinstance(v, str):
        return v
    a = abs(v)
    if a >= 100:
        return "%d" % round(v)
    if a >= 10:
        return "%.1f" % v
    return "%.2f" % v


def pct_s(a, b):
    return "%.0f%%" % (a / b * 100) if b else "n/a"


def machine_info():
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = int(line.split()[1]) * 1024
    except OSError:
        pass
    return dict(cpu=cpu, cores=os.cpu_count(), mem_bytes=mem, kernel=platform.release(),
                loadavg_start=os.getloadavg(),
                nofile=resource.getrlimit(resource.RLIMIT_NOFILE))


def print_table(rows, result):
    smoke = result["mode"] == "smoke"
    head = ("scenario", "metric", "ours", "peer(s)", "target", "verdict")
    cells = [(r["scenario"], r["metric"], r["ours"], r["peers"], r["target"], r["verdict"])
             for r in rows]
    if smoke:
        # No verdict column: a smoke run judges nothing. A scenario that could
        # not run still shows its error.
        if any(c[5] for c in cells):
            head = head[:5] + ("error",)
        else:
            head = head[:5]
            cells = [c[:5] for c in cells]
    cells = [head] + cells
    w = [max(len(str(c[i])) for c in cells) for i in range(len(head))]
    m = result["machine"]
    print("\n%s run, %s, %d cores, load average %.1f at start, %.1f at end, %.0f s" % (
        result["mode"], m["cpu"], m["cores"], m["loadavg_start"][0], m["loadavg_end"][0],
        result["duration_s"]))
    if smoke:
        print("Smoke run: tiny loads that only prove the benchmark scripts work. These "
              "figures are not measurements and no target is judged (scripts/bench "
              "without --smoke measures; docs/BENCHMARKS.md).")
    for i, c in enumerate(cells):
        print(" | ".join(str(x).ljust(w[k]) for k, x in enumerate(c)).rstrip())
        if i == 0:
            print("-+-".join("-" * k for k in w))


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="tiny loads: prove the scripts work")
    ap.add_argument("--only", default="", help="comma-separated scenarios, e.g. S1,S3")
    ap.add_argument("--build-dir", default="build-bench")
    ap.add_argument("--keep", action="store_true", help="keep bench/.work/<stamp> (storage, logs)")
    ap.add_argument("--fastapi-workers", type=int, default=1,
                    help="uvicorn workers of the FastAPI peer (the seed runs 1)")
    args = ap.parse_args()
    b = Bench(args)
    # SIGTERM unwinds like Ctrl-C, so the finally below stops what we started
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        return b.run()
    finally:
        b.kill_all()
        b.pg_stop()


if __name__ == "__main__":
    sys.exit(main())
