#!/usr/bin/env python3
"""An OCI runtime-spec (v1.3.0) conformance suite for any runc-compatible runtime binary.

Every case checks one MUST or SHOULD of runtime.md, runtime-linux.md, config.md or
config-linux.md that a runtime can be checked against from the outside, and names the sentence
(file + short quote). A case builds a bundle (a busybox-static rootfs), drives the runtime
through create/start/state/kill/delete, and observes from outside (the state JSON,
/proc/<pid>/..., cgroup files, the runtime's mount table) and from inside (busybox commands whose
output goes to the container's stdout or to a host directory bind-mounted at /out).

    python3 conformance/oci_conformance.py [--runtime PATH] [--only PATTERN ...] [--json OUT] [-v]
    python3 conformance/oci_conformance.py --compare A.json B.json   # markdown table of differences

The runtime gets a private --root in a temporary directory, so runc and runp can be compared on
the same machine. Output is TAP version 13 with a per-section count summary; the exit status is 1
when a case fails. A case the machine cannot support is skipped with the reason; a case where the
spec text and the opencontainers runtime-tools validation suite disagree is reported as TODO
(counted apart, not as a failure). Each case cleans up after itself: containers, processes, the
cgroups under /oci-conformance, mounts under the work directory; whatever a runtime leaves
behind fails the case. Root only; stdlib only.

This file is the command line and the runner; the cases are in cases/ (one module per area of
the spec), what they are written against in harness.py and registry.py.
"""
from __future__ import annotations

import argparse
import ctypes
import fnmatch
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

# the suite's own modules (registry, harness, cases/) sit next to this script, also when it is
# loaded from elsewhere (tests/test_conformance.py)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import cases  # noqa: E402,F401  (registers every case)
from harness import Suite, T, mount_points_under, read  # noqa: E402
from registry import CASES, SECTIONS, Case, Fail, Skip  # noqa: E402

SPEC = "v1.3.0"
DEFAULT_RUNTIME = "/work/main/.venv/bin/runp"
PR_SET_CHILD_SUBREAPER = 36


def run_suite(runtime: str, only: list[str], verbose: bool, keep: bool) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="oci-conformance-"))
    os.chmod(work, 0o755)
    # bundles on a tmpfs of our own: making a rootfs on a busy disk costs more than the case
    on_tmpfs = subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755,size=2g", "oci-conformance",
                               str(work)], capture_output=True).returncode == 0
    suite = Suite(runtime, work, verbose)
    selected = [c for c in CASES if not only or any(
        fnmatch.fnmatch(c.name, p) or fnmatch.fnmatch(c.section, p) or p in c.name for p in only)]
    print("TAP version 13")
    print(f"# runtime: {runtime}; spec {SPEC}; work dir {work}")
    print(f"1..{len(selected)}", flush=True)
    results = []
    t0 = time.monotonic()
    try:
        for n, c in enumerate(selected, 1):
            results.append(_run_case(suite, c, n))
    finally:
        left = suite.cleanup()
        if left:
            print(f"# cgroups left behind: {left}")
        if not keep:
            for mp in reversed(mount_points_under(str(work))):
                subprocess.run(["umount", "-l", mp], capture_output=True)
            if on_tmpfs:
                subprocess.run(["umount", "-l", str(work)], capture_output=True)
            shutil.rmtree(work, ignore_errors=True)
    _summary(results, time.monotonic() - t0)
    return results


def _run_case(suite: Suite, c: Case, n: int) -> dict:
    t = T(suite, c, n)
    status, msg = "ok", ""
    t0 = time.monotonic()
    try:
        c.fn(t)
    except Skip as e:
        status, msg = "skip", str(e)
    except Fail as e:
        status, msg = "fail", str(e)
    except Exception as e:  # noqa: BLE001 - a crash of a case is its failure
        status, msg = "fail", f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=3)}"
    leaks = t.close()
    if leaks and status != "skip":
        status = "fail"
        msg = (msg + "\n" if msg else "") + "left behind: " + "; ".join(leaks)
    if status == "fail" and c.conflict:
        status = "todo"
    elif status == "fail" and c.level == "SHOULD":
        status = "should"
    secs = time.monotonic() - t0
    line = f"{c.section}: {c.name} - {c.title} [{c.level}, {c.ref}: \"{c.quote}\"]"
    if status == "ok":
        print(f"ok {n} - {line}")
    elif status == "skip":
        print(f"ok {n} - {line} # SKIP {msg}")
    elif status == "todo":
        print(f"not ok {n} - {line} # TODO spec/runtime-tools conflict: {c.conflict}")
    elif status == "should":
        print(f"not ok {n} - {line} # TODO SHOULD not met")
    else:
        print(f"not ok {n} - {line}")
    if status in ("fail", "todo", "should") or t.notes:
        print("  ---")
        if msg:
            print("  message: |")
            for ml in msg.strip().splitlines():
                print(f"    {ml}")
        for note in t.notes:
            print(f"  note: {note}")
        print("  ...")
    sys.stdout.flush()
    return {"n": n, "name": c.name, "section": c.section, "title": c.title, "level": c.level,
            "ref": c.ref, "quote": c.quote, "status": status, "message": msg, "notes": t.notes,
            "conflict": c.conflict, "seconds": round(secs, 2)}


def _summary(results: list[dict], secs: float) -> None:
    """Counts per section: ok, fail (a MUST), should (a SHOULD not met), todo (a conflict
    between the spec and runtime-tools), skip."""
    keys = ("ok", "fail", "should", "todo", "skip")
    print("# " + f"{'section':32}" + "".join(f"{k:>7}" for k in keys))
    tot = dict.fromkeys(keys, 0)
    for sec in SECTIONS:
        rs = [r for r in results if r["section"] == sec]
        if not rs:
            continue
        cnt = {k: sum(1 for r in rs if r["status"] == k) for k in keys}
        for k in keys:
            tot[k] += cnt[k]
        print("# " + f"{sec:32}" + "".join(f"{cnt[k]:>7}" for k in keys))
    print("# " + f"{'total':32}" + "".join(f"{tot[k]:>7}" for k in keys)
          + f"   ({len(results)} cases, {secs:.0f}s)")
    for k in ("fail", "should", "todo"):
        names = [r["name"] for r in results if r["status"] == k]
        if names:
            print(f"# {k}: {' '.join(names)}")


def compare(a_path: str, b_path: str) -> int:
    """A markdown table of the cases whose outcome differs between two --json results."""
    a, b = json.loads(read(a_path)), json.loads(read(b_path))
    an, bn = a.get("runtime", a_path), b.get("runtime", b_path)
    ra = {r["name"]: r for r in a["results"]}
    rb = {r["name"]: r for r in b["results"]}
    print(f"| case | level | spec | {os.path.basename(an)} | {os.path.basename(bn)} |")
    print("|---|---|---|---|---|")
    diff = 0
    for name in [r["name"] for r in a["results"]] + [n for n in rb if n not in ra]:
        x, y = ra.get(name), rb.get(name)
        sx, sy = (x or {}).get("status", "-"), (y or {}).get("status", "-")
        if sx != sy:
            diff += 1
            c = x or y
            print(f"| {name} | {c['level']} | {c['ref']} | {sx} | {sy} |")
    print(f"\n{diff} cases differ")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runtime", default=os.environ.get("RUNTIME", DEFAULT_RUNTIME),
                    help=f"the runtime binary (default {DEFAULT_RUNTIME})")
    ap.add_argument("--only", nargs="+", action="extend", default=[], metavar="PATTERN",
                    help="run only cases whose name or section matches (glob or substring)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--compare", nargs=2, metavar=("A.json", "B.json"),
                    help="print a markdown table of the cases whose outcome differs")
    ap.add_argument("-v", "--verbose", action="store_true", help="show every runtime call")
    args = ap.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    if args.list:
        for c in CASES:
            print(f"{c.section:30} {c.name:40} {c.level:6} {c.ref}")
        return 0
    if os.geteuid() != 0:
        print("1..0 # SKIP the conformance suite needs root")
        return 0
    runtime = shutil.which(args.runtime) or args.runtime
    if not os.access(runtime, os.X_OK):
        print(f"Bail out! runtime {runtime} is not executable")
        return 2
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    results = run_suite(runtime, args.only, args.verbose, args.keep)
    if args.json:
        Path(args.json).write_text(json.dumps({"runtime": runtime, "spec": SPEC, "results": results},
                                              indent=1))
    return 1 if any(r["status"] == "fail" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
