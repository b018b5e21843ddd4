#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check that the synthetic templates copy no dataset text (issue 16).

    python3 tools/router/check_overlap.py [DATASET.jsonl ...]

Compares every template of tools/router/synth.py, and every sentence it
generates, with the "text" of each row of the given JSONL files (default:
data/routing/dev/*.jsonl, the router's development sets): a sentence that
appears verbatim in a dataset (sentences of 3 words or more: "Thanks." and
"Hello!" are not copying), or any run of 5 words shared with one, is
printed. Words are compared case-folded, without punctuation; template slots
({b}, {nom}, ...) never match. Exit status 1 when anything is found.
"""

import glob
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import synth  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
N = 5
WORD = re.compile(r"[\w'’-]+|\{\w+\}", re.UNICODE)


def words(text):
    return [w.casefold().replace("ё", "е").replace("’", "'") for w in WORD.findall(text)]


def sentences(text):
    return [s for s in re.split(r"(?<=[.?!])\s+", text.strip()) if s]


def key(ws):
    return " ".join(ws)


def main():
    paths = sys.argv[1:] or sorted(
        glob.glob(os.path.join(ROOT, "data", "routing", "dev", "*.jsonl")))
    sents, grams = {}, {}
    for p in paths:
        name = os.path.basename(p)
        with open(p, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                text = json.loads(line)["text"]
                for s in sentences(text):
                    ws = words(s)
                    if len(ws) >= 3:
                        sents.setdefault(key(ws), name)
                ws = words(text)
                for i in range(len(ws) - N + 1):
                    grams.setdefault(key(ws[i:i + N]), (name, text))
    found = 0
    items = []
    for lang, table in (("en", synth.EN), ("ru", synth.RU)):
        for label, temps in table.items():
            items += [("template %s/%s" % (lang, label), t) for t in temps]
        items += [("generated %s" % lang, r["text"]) for r in synth.generate(lang)]
    seen = set()
    for where, text in items:
        for s in sentences(text):
            k = key(words(s))
            if k in sents and (where, k) not in seen:
                seen.add((where, k))
                found += 1
                print("%s: sentence %r is in %s" % (where, s, sents[k]))
        ws = words(text)
        for i in range(len(ws) - N + 1):
            k = key(ws[i:i + N])
            if k in grams and (where, k) not in seen:
                seen.add((where, k))
                found += 1
                print("%s: %r shares %r with %s: %r" % (where, text, k, *grams[k]))
    print("%d overlaps" % found, file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
