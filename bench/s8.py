# SPDX-License-Identifier: MIT
"""S8 (support records, docs/RECORDS.md): exports and statistics over a large
store. Called by bench/run.py (Bench.s8), which starts and stops processes and
prints the table.

  1. `call-center-agents demo-data --dialogs 100000 --customers 5000
     --operators 50 --seed 1 --quiet --storage <work>/s8/dialogs` (timed);
  2. the server on that store with DIALOG_CACHE_MB=16 (so its RSS shows the
     index and the export, not the document cache), durable as in S2/S7;
  3. GET /api/v1/exports/dialogs?format=csv, three times: dialogs/s = rows /
     wall time (request sent -> last byte), the median judged; the same for
     NDJSON; every export must hold every dialog;
  4. GET /api/v1/stats twenty times, one after the other on one keep-alive
     connection: p50 and max;
  5. the server's VmRSS (/proc/<pid>/status) sampled every 10 ms: before, the
     peak during each CSV and each NDJSON export;
  6. the server again with the default DIALOG_CACHE_MB: idle RSS and the peaks
     of one CSV and one NDJSON export (info).

The client reads the body in 1 MiB blocks and only counts newlines, so it
costs little of the two cores it shares with the server. Targets (the records
issue): CSV >= 20,000 dialogs/s, /stats <= 200 ms, RSS during an export
< 64 MiB.
"""
import http.client
import json
import os
import statistics
import threading
import time

PROFILES = {
    "full": dict(dialogs=100000, customers=5000, operators=50, seed=1, runs=3,
                 stats_calls=20, cache_mb=16, start_timeout=900, gen_timeout=3600),
    "smoke": dict(dialogs=2000, customers=200, operators=5, seed=1, runs=1,
                  stats_calls=5, cache_mb=16, start_timeout=120, gen_timeout=300),
}
CSV_TARGET = 20000      # dialogs/s
STATS_TARGET_MS = 200   # per call
RSS_TARGET_MIB = 64     # during an export
MIB = 2 ** 20


def vmrss(pid):
    """VmRSS of @pid in bytes (0 when gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class RssSampler(threading.Thread):
    """VmRSS every 10 ms; peak() since the last reset()."""

    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid = pid
        self.stop = False
        self.lock = threading.Lock()
        self.max = 0
        self.samples = 0

    def run(self):
        while not self.stop:
            v = vmrss(self.pid)
            with self.lock:
                self.max = max(self.max, v)
                self.samples += 1
            time.sleep(0.01)

    def reset(self):
        with self.lock:
            self.max = vmrss(self.pid)
            self.samples = 0

    def peak(self):
        with self.lock:
            return self.max, self.samples


def stream(port, path, timeout=900):
    """GET @path; reads the whole body counting newlines. Returns the figures."""
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path)
    resp = conn.getresponse()
    t_head = time.monotonic()
    nbytes = newlines = 0
    last = b""
    while True:
        block = resp.read(1 << 20)
        if not block:
            break
        nbytes += len(block)
        newlines += block.count(b"\n")
        last = block[-1:]
    t1 = time.monotonic()
    out = dict(status=resp.status, content_type=resp.getheader("Content-Type"),
               bytes=nbytes, newlines=newlines, ends_with_newline=last == b"\n",
               wall_s=t1 - t0, first_byte_ms=(t_head - t0) * 1000)
    conn.close()
    return out


def stats_calls(port, n):
    """@n GET /api/v1/stats on one keep-alive connection: latencies (ms), last body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    lat, body, status = [], None, 0
    for _ in range(n):
        t0 = time.monotonic()
        conn.request("GET", "/api/v1/stats")
        resp = conn.getresponse()
        data = resp.read()
        lat.append((time.monotonic() - t0) * 1000)
        status = resp.status
        if status != 200:
            break
        body = data
    conn.close()
    return lat, status, json.loads(body) if body else None


def tree_bytes(path):
    total = files = 0
    for root, _, names in os.walk(path):
        for n in names:
            try:
                total += os.path.getsize(os.path.join(root, n))
                files += 1
            except OSError:
                pass
    return total, files


def tail(path, n=1500):
    try:
        with open(path, "rb") as f:
            return f.read()[-n:].decode(errors="replace")
    except OSError:
        return ""


def exports(log, srv, fmt_name, runs, sampler, want, problems):
    """@runs exports of format @fmt_name; each with its peak RSS. Returns the list."""
    out = []
    for _ in range(runs):
        sampler.reset()
        r = stream(srv.port, "/api/v1/exports/dialogs?format=%s" % fmt_name)
        r["peak_rss"], r["rss_samples"] = sampler.peak()
        r["rows"] = r["newlines"] - (1 if fmt_name == "csv" else 0)
        r["dialogs_per_s"] = r["rows"] / r["wall_s"] if r["wall_s"] > 0 else 0
        if r["status"] != 200 or r["rows"] != want or not r["ends_with_newline"]:
            problems.append("%s export: status %s, %d rows of %d%s" % (
                fmt_name, r["status"], r["rows"], want,
                "" if r["ends_with_newline"] else ", cut short"))
        out.append(r)
        log("S8 %s export: %d rows in %.2f s (%.0f dialogs/s), peak RSS %.1f MiB" % (
            fmt_name, r["rows"], r["wall_s"], r["dialogs_per_s"], r["peak_rss"] / MIB))
    return out


def mib_fmt(v):
    return "%.1f" % (v / MIB)


def start_server(b, storage, extra, timeout, settle):
    """The server on @storage; returns it, the seconds to its first answer and
    the seconds until it is quiet: the store has written what start-up changed
    (@settle: run.py's, on cca_store_dirty_documents) and VmRSS moved less than
    1 MiB over the last second (at most 60 s)."""
    t0 = time.monotonic()
    srv = b.server(storage, fsync=True, extra=extra, timeout=timeout)
    srv.port = int(srv.base.rsplit(":", 1)[1])
    up = time.monotonic() - t0
    settle(srv.base, 60)
    last = vmrss(srv.pid)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        time.sleep(1)
        now = vmrss(srv.pid)
        if abs(now - last) < MIB:
            break
        last = now
    return srv, up, time.monotonic() - t0


def run(b, fmt, log, root, settle):
    """Bench.s8 (@b): fills b.raw["S8"] and the table rows; @fmt, @log and
    @settle are run.py's number formatter, logger and store settling, @root
    the source tree."""
    p = PROFILES["smoke" if b.args.smoke else "full"]
    n = p["dialogs"]
    work = os.path.join(b.work, "s8")
    storage = os.path.join(work, "dialogs")
    os.makedirs(work, exist_ok=True)
    exe = os.path.join(b.build, "call-center-agents")
    res = dict(profile=p, problems=[])
    problems = res["problems"]

    # 1. the store
    cmd = [exe, "demo-data", "--dialogs", str(n), "--customers", str(p["customers"]),
           "--operators", str(p["operators"]), "--seed", str(p["seed"]), "--quiet",
           "--storage", storage]
    res["demo_command"] = " ".join(cmd[1:-1] + ["<work>/s8/dialogs"])
    t0 = time.monotonic()
    gen = b.spawn("s8-demo", cmd, env={"DATA_DIR": os.path.join(root, "data"),
                                       "LOG_LEVEL": "warning"}, cwd=work)
    try:
        rc = gen.wait(p["gen_timeout"])
    finally:
        b.kill(gen)
    res["demo_s"] = time.monotonic() - t0
    if rc != 0:
        raise RuntimeError("demo-data exited with %s: %s" % (
            rc, tail(os.path.join(b.work, "s8-demo.log"))))
    res["store_bytes"], res["store_files"] = tree_bytes(storage)
    log("S8 demo-data: %d dialogs in %.1f s, store %.0f MB in %d files" % (
        n, res["demo_s"], res["store_bytes"] / 1e6, res["store_files"]))

    # 2..5. small cache
    srv, res["start_s"], res["quiet_s"] = start_server(
        b, storage, {"DIALOG_CACHE_MB": str(p["cache_mb"])}, p["start_timeout"], settle)
    res["idle_rss"] = vmrss(srv.pid)
    sampler = RssSampler(srv.pid)
    sampler.start()
    try:
        lat, st, body = stats_calls(srv.port, 1)
        total = (body or {}).get("dialogs", {}).get("total")
        if st != 200 or total != n:
            problems.append("/stats: status %s, dialogs.total %s of %d" % (st, total, n))
        res["csv"] = exports(log, srv, "csv", p["runs"], sampler, n, problems)
        res["ndjson"] = exports(log, srv, "ndjson", p["runs"], sampler, n, problems)
        sampler.reset()
        lat, st, body = stats_calls(srv.port, p["stats_calls"])
        res["stats_peak_rss"], _ = sampler.peak()
        if st != 200 or len(lat) != p["stats_calls"]:
            problems.append("/stats: status %s after %d calls" % (st, len(lat)))
        res["stats_ms"] = lat
        res["stats_bytes"] = len(json.dumps(body)) if body else 0
        res["rss_after"] = vmrss(srv.pid)
    finally:
        sampler.stop = True
        sampler.join()
        b.kill(srv)

    # 6. the default cache
    srv, res["default_start_s"], res["default_quiet_s"] = start_server(
        b, storage, {}, p["start_timeout"], settle)
    res["default_idle_rss"] = vmrss(srv.pid)
    sampler = RssSampler(srv.pid)
    sampler.start()
    try:
        res["default_csv"] = exports(log, srv, "csv", 1, sampler, n, problems)[0]
        res["default_ndjson"] = exports(log, srv, "ndjson", 1, sampler, n, problems)[0]
    finally:
        sampler.stop = True
        sampler.join()
        b.kill(srv)
    b.raw["S8"] = res

    # the table
    csv_rates = [r["dialogs_per_s"] for r in res["csv"]]
    nd_rates = [r["dialogs_per_s"] for r in res["ndjson"]]
    csv_med = statistics.median(csv_rates)
    nd_med = statistics.median(nd_rates)
    b.row("S8", "demo-data --dialogs %d --customers %d --operators %d: s" % (
        n, p["customers"], p["operators"]), "%.1f" % res["demo_s"],
        "%s dialogs/s; store %.0f MB, %d files" % (
            fmt(n / res["demo_s"]), res["store_bytes"] / 1e6, res["store_files"]),
        "-", "info")
    b.row("S8", "server start on %d dialogs, s; idle RSS (DIALOG_CACHE_MB=%d), MiB" % (
        n, p["cache_mb"]), "%.1f; %s" % (res["start_s"], mib_fmt(res["idle_rss"])),
        "quiet after %.1f s" % res["quiet_s"], "-", "info")
    b.row("S8", "CSV export, dialogs/s (median of %d)" % len(csv_rates), fmt(csv_med),
          "runs %s; %.1f MB; first byte %s ms" % (
              ", ".join(fmt(x) for x in csv_rates), res["csv"][0]["bytes"] / 1e6,
              fmt(res["csv"][0]["first_byte_ms"])),
          ">= %s" % fmt(CSV_TARGET), b.at_least(csv_med, CSV_TARGET))
    b.row("S8", "NDJSON export, dialogs/s (median of %d)" % len(nd_rates), fmt(nd_med),
          "runs %s; %.1f MB" % (", ".join(fmt(x) for x in nd_rates),
                                res["ndjson"][0]["bytes"] / 1e6), "-", "info")
    lat = sorted(res["stats_ms"]) or [0]
    p50 = lat[max(1, (50 * len(lat) + 99) // 100) - 1]
    b.row("S8", "GET /stats with %d dialogs, p50 of %d calls, ms" % (n, len(lat)),
          "%.1f" % p50, "max %.1f; %s B" % (lat[-1], fmt(res["stats_bytes"])),
          "<= %d ms" % STATS_TARGET_MS, b.at_most(p50, STATS_TARGET_MS, " ms"))
    b.row("S8", "GET /stats, max of %d calls, ms" % len(lat), "%.1f" % lat[-1], "",
          "<= %d ms" % STATS_TARGET_MS, b.at_most(lat[-1], STATS_TARGET_MS, " ms"))
    for name in ("csv", "ndjson"):
        peak = max(r["peak_rss"] for r in res[name])
        b.row("S8", "peak RSS during the %s exports (DIALOG_CACHE_MB=%d), MiB" % (
            name.upper(), p["cache_mb"]), mib_fmt(peak),
            "idle before %s (+%s); %d samples" % (
                mib_fmt(res["idle_rss"]), mib_fmt(max(0, peak - res["idle_rss"])),
                sum(r["rss_samples"] for r in res[name])),
            "< %d MiB" % RSS_TARGET_MIB,
            b.at_most(peak / MIB, RSS_TARGET_MIB, " MiB"))
    b.row("S8", "default DIALOG_CACHE_MB: idle; CSV peak; NDJSON peak RSS, MiB",
          "%s; %s; %s" % (mib_fmt(res["default_idle_rss"]),
                          mib_fmt(res["default_csv"]["peak_rss"]),
                          mib_fmt(res["default_ndjson"]["peak_rss"])),
          "CSV %s, NDJSON %s dialogs/s" % (fmt(res["default_csv"]["dialogs_per_s"]),
                                           fmt(res["default_ndjson"]["dialogs_per_s"])),
          "-", "info")
    if problems:
        b.row("S8", "failures (statuses, dialogs missing from an export)",
              str(len(problems)), problems[0][:80], "0", "missed by %d" % len(problems))
