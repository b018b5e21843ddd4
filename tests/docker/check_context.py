#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Check the Docker build context that .dockerignore leaves (see check-context.sh).

    check_context.py ROOT

1. Path rules: secrets, customer data, build trees and node_modules are out;
   what the Dockerfile builds from is in.
2. The same paths as files in a scratch tree, walked the way BuildKit walks.
3. ROOT's real tree: nothing forbidden in the context, every tracked file the
   build needs present.
4. When meson is installed: `meson setup` on a copy of the context alone, with
   the Dockerfile's options, so a missing file fails here and not in docker.
Exit 0 when every check passed, 1 otherwise.
"""
import os
import shutil
import subprocess
import sys
import tempfile

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dockerignore  # noqa: E402

# The build stage's configure step (Dockerfile); keep the two in step.
MESON_OPTIONS = ["--buildtype=release", "-Dslow_tests=false"]

MUST_EXCLUDE = [
    ".env",
    "storage/dialogs/3f9c1b2e-0000-4000-8000-000000000001.json",
    "storage/dialogs/.gitkeep",
    "build/build.ninja",
    "build/call-center-agents",
    "build-asan/meson-logs/testlog.txt",
    "build-release/call-center-agents",
    "build-fuzz/artifacts/http_body-crash-1",
    "build-bench/bench/loadgen",
    "tools/node_modules/@redocly/cli/package.json",
    "tools/node_modules/.bin/prism",
    "bench/results/20261121-smoke.json",
    ".git/config",
    "data/routing/dev/routing_dev_en.jsonl",
    "src/.env",
    "data/.env",
    "tests/scratch.tmp",
]
MUST_INCLUDE = [
    "meson.build",
    "meson_options.txt",
    "openapi.yaml",
    "src/main.c",
    "src/web.c",
    "tools/embed-web",
    "tools/vendor-web",
    "web/console/index.html",
    "web/docs/index.html",
    "web/vendor/swagger-ui/swagger-ui-bundle.js",
    "include/cca/common.h",
    "tests/meson.build",
    "tests/fuzz/meson.build",
    "tools/format-check",
    "data/agents/agents.json",
    "data/knowledge/sales.json",
    "data/routing/lexicon.json",
    "data/routing/router-model.txt",
]
# Directories whose tracked files the image build reads (besides MUST_INCLUDE).
NEEDED_TREES = ["src/", "include/", "tests/", "web/", "data/agents/", "data/knowledge/"]
FORBIDDEN_PREFIXES = [".env", ".git/", "storage/", "build", "tools/node_modules/",
                      "bench/", "docs/", "scripts/"]

failures = 0


def check(ok, what):
    global failures
    print("%s - %s" % ("ok" if ok else "not ok", what))
    if not ok:
        failures += 1


def path_rules(m):
    for p in MUST_EXCLUDE:
        check(m.excluded(p), "rule excludes %s" % p)
    for p in MUST_INCLUDE:
        check(not m.excluded(p), "rule includes %s" % p)


def scratch_tree(root):
    with tempfile.TemporaryDirectory(prefix="cca-docker-context-") as tmp:
        shutil.copy(os.path.join(root, ".dockerignore"), tmp)
        for p in MUST_EXCLUDE + MUST_INCLUDE:
            full = os.path.join(tmp, p)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "w") as f:
                f.write("x\n")
        got = set(dockerignore.context_files(tmp))
    for p in MUST_EXCLUDE:
        check(p not in got, "scratch tree: %s stays out" % p)
    for p in MUST_INCLUDE:
        check(p in got, "scratch tree: %s is sent" % p)
    extra = sorted(got - set(MUST_INCLUDE))
    check(not extra, "scratch tree: nothing else is sent %s" % (extra or ""))


def tracked_files(root):
    try:
        out = subprocess.run(["git", "-C", root, "ls-files", "-z"], check=True,
                             capture_output=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    return [p for p in out.decode("utf-8", "replace").split("\0") if p]


def real_tree(root, m):
    files = dockerignore.context_files(root, m)
    check(bool(files), "real tree: the context is not empty (%d files)" % len(files))
    bad = [f for f in files if any(f.startswith(p) for p in FORBIDDEN_PREFIXES)]
    check(not bad, "real tree: no secret, storage, build, node_modules, bench or docs "
          "file is sent %s" % (bad[:10] or ""))
    tracked = tracked_files(root)
    if tracked is None:
        print("# real tree: not a git work tree, tracked-file check skipped")
        return files
    sent = set(files)
    needed = [f for f in tracked
              if (f in MUST_INCLUDE or any(f.startswith(t) for t in NEEDED_TREES))
              and os.path.exists(os.path.join(root, f))]
    missing = [f for f in needed if f not in sent]
    check(not missing, "real tree: all %d tracked files the build needs are sent %s"
          % (len(needed), missing[:10] or ""))
    return files


def configure(root, files):
    if os.environ.get("CCA_DOCKER_CONTEXT_CONFIGURE", "1") == "0":
        print("# configure check skipped (CCA_DOCKER_CONTEXT_CONFIGURE=0)")
        return
    meson = shutil.which("meson")
    if meson is None:
        print("# meson not found: configure check skipped")
        return
    with tempfile.TemporaryDirectory(prefix="cca-docker-configure-") as tmp:
        src = os.path.join(tmp, "src")
        for f in files:
            dst = os.path.join(src, f)
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            shutil.copy2(os.path.join(root, f), dst, follow_symlinks=False)
        r = subprocess.run([meson, "setup", os.path.join(tmp, "build"), src] + MESON_OPTIONS,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            sys.stdout.write(r.stdout[-3000:] + r.stderr[-3000:])
        check(r.returncode == 0, "meson setup succeeds on the context alone (%s)"
              % " ".join(MESON_OPTIONS))


def main(argv):
    if len(argv) != 2:
        sys.stderr.write(__doc__)
        return 2
    root = os.path.abspath(argv[1])
    if not os.path.isfile(os.path.join(root, ".dockerignore")):
        check(False, "%s/.dockerignore exists" % root)
        return 1
    m = dockerignore.load(root)
    path_rules(m)
    scratch_tree(root)
    files = real_tree(root, m)
    configure(root, files)
    print("docker context: %s" % ("all checks passed" if failures == 0
                                   else "%d checks failed" % failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
