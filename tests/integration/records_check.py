#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks of the support records' exports for tests/integration/test_records.c
(docs/RECORDS.md), with Python's own csv module as the independent reader.

  records_check.py stats CSV STATS_JSON
      The dialog CSV export (utf-8-sig: with or without a byte order mark)
      recomputed against GET /api/v1/stats: dialogs.total, by_status,
      by_channel, messages, ai (closed, contained, containment_rate),
      escalations (total, rate, abandoned, by_trigger), csat (count, average,
      distribution), tokens.total, and count/p50/p90/mean of queue_wait_s,
      first_human_response_s, handle_time_s and first_response_s (exact
      nearest rank over the CSV's values, |diff| < 0.0015 s).

  records_check.py subset FULL_CSV GOT_IDS [--customer_id X] [--operator_id X]
                          [--status X] [--agent X] [--from T] [--to T]
                          [--nonempty] [--proper]
      The ids in GOT_IDS (one per line, in the order an export gave them) are
      exactly the rows of FULL_CSV that match the filter, in the CSV's order.
      --nonempty: the expected subset has a row; --proper: and not every row.

  records_check.py rows CSV [--columns A,B,...] [--kind K] [--contains TEXT]
      CSV parses; every row has as many fields as the header; the header is
      the given columns (when given); every row's "kind" is K (when given);
      TEXT occurs in some field (when given). Prints "rows=N".

Every line printed starts with "# " (the caller is a TAP test). Exit 0 when
every check passed, 1 on a mismatch (each one printed), 2 on bad usage or an
unreadable input.
"""
import argparse
import collections
import csv
import datetime
import json
import re
import sys

DIALOG_COLUMNS = [
    "dialog_id", "customer_id", "customer_name", "channel", "agents", "operators",
    "operator_ids", "status", "created_at", "closed_at", "messages", "tokens",
    "first_response_s", "queue_wait_s", "first_human_response_s", "handle_time_s",
    "escalation_trigger", "csat", "close_reason",
]
DURATIONS = ["queue_wait_s", "first_human_response_s", "handle_time_s",
             "first_response_s"]
TRIGGERS = ["customer_request", "supervisor", "degraded", "api"]
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
TOL = 0.0015


def say(*a):
    print("#", *a, flush=True)


class Checker:
    def __init__(self):
        self.problems = []

    def fail(self, msg):
        self.problems.append(msg)
        say("MISMATCH:", msg)

    def eq(self, what, got, want):
        if got != want:
            self.fail("%s: CSV says %r, JSON says %r" % (what, got, want))

    def near(self, what, got, want):
        if got is None or want is None:
            if got is not None or want is not None:
                self.fail("%s: CSV says %r, JSON says %r" % (what, got, want))
            return
        if not isinstance(want, (int, float)) or abs(got - want) >= TOL:
            self.fail("%s: CSV says %r, JSON says %r" % (what, got, want))


def read_csv(path):
    """(header, rows as dicts); exits 2 when the file is not CSV at all."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f, strict=True)
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        say("cannot read %s as CSV: %s" % (path, e))
        sys.exit(2)
    if not rows:
        say("%s is empty: not even a header row" % path)
        sys.exit(2)
    return rows[0], rows[1:]


def as_dicts(header, rows, ck):
    out = []
    for i, r in enumerate(rows):
        if len(r) != len(header):
            ck.fail("row %d has %d fields, the header %d: %r" % (i + 2, len(r), len(header),
                                                                  r[:4]))
            continue
        out.append(dict(zip(header, r)))
    return out


def parse_ms(s):
    """RFC 3339 UTC (as cca_time_format writes it) into Unix milliseconds."""
    s = s.strip()
    if s.endswith("Z"):
        s = s[:-1] + "+00:00"
    t = datetime.datetime.fromisoformat(s)
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return round(t.timestamp() * 1000)


def window_ms(s, end):
    """A from/to query value: RFC 3339 or YYYY-MM-DD (as "to": the end of that day)."""
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", s):
        d = datetime.datetime.strptime(s, "%Y-%m-%d").replace(tzinfo=datetime.timezone.utc)
        ms = round(d.timestamp() * 1000)
        return ms + (86400000 if end else 0)
    return parse_ms(s)


def seconds_ms(s, what, ck):
    """A duration field ("12.345") as integer milliseconds; None when empty."""
    if s == "":
        return None
    if not re.fullmatch(r"\d+\.\d{3}", s):
        ck.fail("%s: %r is not seconds with 3 decimals" % (what, s))
        return None
    a, b = s.split(".")
    return int(a) * 1000 + int(b)


def nearest_rank(sorted_ms, pct):
    """pN: the value at 1-based rank ceil(N/100 * count), in seconds."""
    n = len(sorted_ms)
    rank = max(1, (pct * n + 99) // 100)
    return sorted_ms[rank - 1] / 1000.0


def figures(values_ms):
    if not values_ms:
        return dict(count=0, p50=None, p90=None, mean=None)
    v = sorted(values_ms)
    return dict(count=len(v), p50=nearest_rank(v, 50), p90=nearest_rank(v, 90),
                mean=sum(v) / len(v) / 1000.0)


def rate(num, den):
    return num / den if den else None


def cmd_stats(a):
    ck = Checker()
    header, raw = read_csv(a.csv)
    if header != DIALOG_COLUMNS:
        ck.fail("header is %r, want %r" % (header, DIALOG_COLUMNS))
        return ck
    rows = as_dicts(header, raw, ck)
    try:
        with open(a.stats, encoding="utf-8") as f:
            st = json.load(f)
    except (OSError, ValueError) as e:
        say("cannot read %s as JSON: %s" % (a.stats, e))
        sys.exit(2)

    ids = [r["dialog_id"] for r in rows]
    bad = [i for i in ids if not UUID.match(i)]
    if bad:
        ck.fail("dialog_id not a UUID: %r" % bad[:3])
    if len(set(ids)) != len(ids):
        ck.fail("dialog_id repeated: %d rows, %d ids" % (len(ids), len(set(ids))))

    d = st.get("dialogs", {})
    ck.eq("dialogs.total", len(rows), d.get("total"))
    by_status = collections.Counter(r["status"] for r in rows)
    want = d.get("by_status", {})
    for k in set(by_status) | set(want):
        ck.eq("dialogs.by_status.%s" % k, by_status.get(k, 0), want.get(k, 0))
    by_channel = collections.Counter(r["channel"] or "unknown" for r in rows)
    ck.eq("dialogs.by_channel", dict(by_channel), d.get("by_channel"))
    for agent in ("tech_support", "sales", "supervisor"):
        n = sum(1 for r in rows if agent in r["agents"].split(";"))
        ck.eq("dialogs.by_agent.%s" % agent, n, d.get("by_agent", {}).get(agent))

    msgs = sum(int(r["messages"]) for r in rows if r["messages"].isdigit())
    ck.eq("messages", msgs, st.get("messages"))

    closed = [r for r in rows if r["status"] == "closed"]
    contained = [r for r in closed if r["escalation_trigger"] == ""]
    ai = st.get("ai", {})
    ck.eq("ai.closed", len(closed), ai.get("closed"))
    ck.eq("ai.contained", len(contained), ai.get("contained"))
    ck.near("ai.containment_rate", rate(len(contained), len(closed)),
            ai.get("containment_rate"))

    esc = [r["escalation_trigger"] for r in rows if r["escalation_trigger"] != ""]
    unknown = set(esc) - set(TRIGGERS)
    if unknown:
        ck.fail("escalation_trigger values outside %r: %r" % (TRIGGERS, unknown))
    e = st.get("escalations", {})
    ck.eq("escalations.total", len(esc), e.get("total"))
    ck.near("escalations.rate", rate(len(esc), len(rows)), e.get("rate"))
    abandoned = [r for r in rows if r["escalation_trigger"] != "" and
                 r["status"] == "closed" and r["operator_ids"] == ""]
    ck.eq("escalations.abandoned", len(abandoned), e.get("abandoned"))
    by_trigger = collections.Counter(esc)
    want = e.get("by_trigger", {})
    for k in set(TRIGGERS) | set(want):
        ck.eq("escalations.by_trigger.%s" % k, by_trigger.get(k, 0), want.get(k))

    scores = []
    for r in rows:
        if r["csat"] == "":
            continue
        if r["csat"] not in ("1", "2", "3", "4", "5"):
            ck.fail("csat %r of %s is not 1..5" % (r["csat"], r["dialog_id"]))
            continue
        scores.append(int(r["csat"]))
    c = st.get("csat", {})
    ck.eq("csat.count", len(scores), c.get("count"))
    ck.near("csat.average", sum(scores) / len(scores) if scores else None,
            c.get("average"))
    dist = collections.Counter(str(s) for s in scores)
    for k in "12345":
        ck.eq("csat.distribution.%s" % k, dist.get(k, 0), c.get("distribution", {}).get(k))

    tokens = sum(int(r["tokens"]) for r in rows if re.fullmatch(r"-?\d+", r["tokens"]))
    ck.eq("tokens.total", tokens, st.get("tokens", {}).get("total"))
    # tokens.by_agent has no column: not checked.

    for col in DURATIONS:
        vals = [seconds_ms(r[col], "%s of %s" % (col, r["dialog_id"]), ck) for r in rows]
        got = figures([v for v in vals if v is not None])
        want = st.get(col)
        if not isinstance(want, dict):
            ck.fail("%s missing from the statistics" % col)
            continue
        ck.eq("%s.count" % col, got["count"], want.get("count"))
        for k in ("p50", "p90", "mean"):
            ck.near("%s.%s" % (col, k), got[k], want.get(k))
    # The durations' own rules (record.h): handle time only for closed dialogs a
    # human had, queue wait and first human response only for escalated ones.
    for r in rows:
        if r["handle_time_s"] != "" and (r["status"] != "closed" or r["operator_ids"] == ""):
            ck.fail("%s has a handle time but is %s with operators %r" % (
                r["dialog_id"], r["status"], r["operator_ids"]))
        if r["queue_wait_s"] != "" and r["escalation_trigger"] == "":
            ck.fail("%s has a queue wait but no escalation" % r["dialog_id"])
    say("stats: %d rows, %d closed, %d escalated, %d rated, %s checked" % (
        len(rows), len(closed), len(esc), len(scores), a.stats))
    return ck


def cmd_subset(a):
    ck = Checker()
    header, raw = read_csv(a.csv)
    rows = as_dicts(header, raw, ck)
    lo = window_ms(a.from_, False) if a.from_ else None
    hi = window_ms(a.to, True) if a.to else None
    want = []
    for r in rows:
        if a.customer_id is not None and r["customer_id"] != a.customer_id:
            continue
        if a.operator_id is not None and a.operator_id not in r["operator_ids"].split(";"):
            continue
        if a.status is not None and r["status"] != a.status:
            continue
        if a.agent is not None and a.agent not in r["agents"].split(";"):
            continue
        created = parse_ms(r["created_at"])
        if lo is not None and created < lo:
            continue
        if hi is not None and created >= hi:
            continue
        want.append(r["dialog_id"])
    with open(a.got, encoding="utf-8") as f:
        got = [line.strip() for line in f if line.strip()]
    if got != want:
        extra = [i for i in got if i not in set(want)]
        missing = [i for i in want if i not in set(got)]
        ck.fail("filter %s: the export gave %d dialogs, the CSV says %d "
                "(%d not expected, e.g. %r; %d missing, e.g. %r%s)" % (
                    a.label, len(got), len(want), len(extra), extra[:2], len(missing),
                    missing[:2], "; same set, other order" if not extra and not missing
                    else ""))
    if (a.nonempty or a.proper) and not want:
        ck.fail("filter %s: matches no row of the CSV (a useless check)" % a.label)
    if a.proper and len(want) == len(rows):
        ck.fail("filter %s: matches every row of the CSV (a useless check)" % a.label)
    say("subset %s: %d of %d rows" % (a.label, len(want), len(rows)))
    return ck


def cmd_rows(a):
    ck = Checker()
    header, raw = read_csv(a.csv)
    if a.columns is not None and header != a.columns.split(","):
        ck.fail("header is %r, want %r" % (header, a.columns.split(",")))
    rows = as_dicts(header, raw, ck)
    if a.kind is not None:
        if "kind" not in header:
            ck.fail("no kind column in %r" % header)
        else:
            other = collections.Counter(r["kind"] for r in rows if r["kind"] != a.kind)
            if other:
                ck.fail("rows of another kind than %s: %r" % (a.kind, dict(other)))
    if a.contains is not None:
        if not any(a.contains in v for r in raw for v in r):
            ck.fail("no field contains %r" % a.contains)
    say("rows=%d" % len(raw))
    return ck


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("stats")
    s.add_argument("csv")
    s.add_argument("stats")
    s = sub.add_parser("subset")
    s.add_argument("csv")
    s.add_argument("got")
    s.add_argument("--label", default="")
    for k in ("customer_id", "operator_id", "status", "agent", "to"):
        s.add_argument("--" + k)
    s.add_argument("--from", dest="from_")
    s.add_argument("--nonempty", action="store_true")
    s.add_argument("--proper", action="store_true")
    s = sub.add_parser("rows")
    s.add_argument("csv")
    s.add_argument("--columns")
    s.add_argument("--kind")
    s.add_argument("--contains")
    a = ap.parse_args()
    ck = {"stats": cmd_stats, "subset": cmd_subset, "rows": cmd_rows}[a.cmd](a)
    if ck.problems:
        say("%s: %d mismatch(es)" % (a.cmd, len(ck.problems)))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
