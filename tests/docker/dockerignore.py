#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Which files a `docker build` would send, computed from .dockerignore without docker.

A port of the code docker uses, so the answer is the daemon's, not a guess:
  * moby/patternmatcher ignorefile/ignorefile.go (ReadAll): how the file is read;
  * moby/patternmatcher patternmatcher.go: pattern compilation (Go filepath.Match
    syntax plus `**`), `!` exceptions, the last matching pattern wins, a pattern
    that matches a parent directory matches everything below it;
  * tonistiigi/fsutil filter.go (filterFS.Walk, used by BuildKit): the walk, which
    skips an excluded directory unless an exception could re-include something
    inside it.

    dockerignore.py ROOT            print the files of ROOT's build context
    dockerignore.py ROOT PATH...    print "excluded PATH" or "included PATH"
"""
import os
import posixpath
import re
import sys

_ESCAPE = set(".+()|{}$")
_PATTERN_CHARS = "*[]?^\\"


def go_clean(p):
    """Go's filepath.Clean on a slash path."""
    if p == "":
        return "."
    c = posixpath.normpath(p)
    if c.startswith("//"):  # normpath keeps a leading '//', Go does not
        c = "/" + c.lstrip("/")
    return c


def read_ignore_file(text):
    """ignorefile.ReadAll: the list of patterns, '!' kept as a prefix."""
    out = []
    if text.startswith("\ufeff"):
        text = text[1:]
    for line in text.splitlines():
        if line.startswith("#"):  # a comment only in column 1
            continue
        p = line.strip()
        if not p:
            continue
        invert = p[0] == "!"
        if invert:
            p = p[1:].strip()
        if p:
            p = go_clean(p)
            if len(p) > 1 and p[0] == "/":
                p = p[1:]
        out.append("!" + p if invert else p)
    return out


class Pattern:
    def __init__(self, text):
        self.exclusion = False
        p = go_clean(text.strip())
        if p[0] == "!":
            if len(p) == 1:
                raise ValueError('illegal exclusion pattern: "!"')
            self.exclusion = True
            p = p[1:]
        self.cleaned = p
        self.dirs = p.split("/")
        self._compile()

    def _compile(self):
        reg = "^"
        kind = "exact"
        p = self.cleaned
        i = pos = 0
        while pos < len(p):
            ch = p[pos]
            pos += 1
            if ch == "*":
                if pos < len(p) and p[pos] == "*":
                    pos += 1
                    if pos < len(p) and p[pos] == "/":  # "**/" is "**"
                        pos += 1
                    if pos == len(p):  # "**" at the end: everything below
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            reg += ".*"
                            kind = "regexp"
                    else:
                        reg += "(.*/)?"
                        kind = "regexp"
                    if i == 0:
                        kind = "suffix"
                else:
                    reg += "[^/]*"
                    kind = "regexp"
            elif ch == "?":
                reg += "[^/]"
                kind = "regexp"
            elif ch in _ESCAPE:
                reg += "\\" + ch
            elif ch == "\\":
                if pos < len(p):
                    reg += "\\" + p[pos]
                    pos += 1
                    kind = "regexp"
                else:  # Go's regexp rejects a trailing backslash
                    raise ValueError("bad pattern %r" % p)
            elif ch in "[]":
                reg += ch
                kind = "regexp"
            else:
                reg += ch
            i += 1
        self.kind = kind
        self.regexp = re.compile(reg + "$") if kind == "regexp" else None

    def match(self, path):
        if self.kind == "exact":
            return path == self.cleaned
        if self.kind == "prefix":
            return path.startswith(self.cleaned[:-2])
        if self.kind == "suffix":
            suffix = self.cleaned[2:]
            if path.endswith(suffix):
                return True
            return suffix[:1] == "/" and path == suffix[1:]
        return self.regexp.match(path) is not None

    def without_trailing_glob(self):
        s = self.cleaned
        for t in ("/**", "/*"):
            if s.endswith(t):
                s = s[: -len(t)]
        return s


class Matcher:
    def __init__(self, patterns):
        self.patterns = [Pattern(p) for p in patterns]
        self.exclusions = any(p.exclusion for p in self.patterns)
        self.only_prefix_exceptions = not any(
            p.exclusion and any(c in p.without_trailing_glob() for c in _PATTERN_CHARS)
            for p in self.patterns)

    def _parents_match(self, pattern, path):
        parent = go_clean(posixpath.dirname(path))
        if parent == ".":
            return False
        dirs = parent.split("/")
        return any(pattern.match("/".join(dirs[: i + 1])) for i in range(len(dirs)))

    def excluded(self, path):
        """MatchesOrParentMatches: True when PATH stays out of the context."""
        matched = False
        for p in self.patterns:
            if p.exclusion != matched:
                continue
            if p.match(path) or self._parents_match(p, path):
                matched = not p.exclusion
        return matched

    def excluded_with_parent(self, path, parent_info):
        """MatchesUsingParentResults: (excluded, info to pass to the children)."""
        matched = False
        info = [False] * len(self.patterns)
        for i, p in enumerate(self.patterns):
            m = parent_info[i] if parent_info else False
            if not m:
                if p.exclusion != matched:
                    continue
                m = p.match(path)
                if not m and not parent_info:
                    m = self._parents_match(p, path)
            info[i] = m
            if m:
                matched = not p.exclusion
        return matched, info

    def may_reinclude_below(self, directory):
        """fsutil's shortcut: can an exception re-include something inside DIR?"""
        if not self.only_prefix_exceptions:
            return True
        if not self.exclusions:
            return False
        prefix = directory + "/"
        return any(p.exclusion and (p.without_trailing_glob() + "/").startswith(prefix)
                   for p in self.patterns)


def load(root):
    try:
        with open(os.path.join(root, ".dockerignore"), encoding="utf-8") as f:
            return Matcher(read_ignore_file(f.read()))
    except FileNotFoundError:
        return Matcher([])


def context_files(root, matcher=None):
    """Sorted relative paths of the files (and symlinks) BuildKit would send."""
    m = matcher or load(root)
    out = []
    infos = {"": None}

    def walk(rel):
        full = os.path.join(root, rel) if rel else root
        for entry in sorted(os.scandir(full), key=lambda e: e.name):
            path = posixpath.join(rel, entry.name) if rel else entry.name
            excluded, info = m.excluded_with_parent(path, infos[rel])
            if entry.is_dir(follow_symlinks=False):
                if excluded and not m.may_reinclude_below(path):
                    continue
                infos[path] = info
                walk(path)
            elif not excluded:
                out.append(path)

    walk("")
    return out


def main(argv):
    if len(argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    root = argv[1]
    m = load(root)
    if len(argv) == 2:
        for f in context_files(root, m):
            print(f)
        return 0
    for p in argv[2:]:
        c = go_clean(p)
        print("%s %s" % ("excluded" if c != "." and m.excluded(c) else "included", p))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
