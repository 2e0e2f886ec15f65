#!/usr/bin/env python3
"""Run the opencontainers runtime-tools validation suite against a runtime.

The suite (https://github.com/opencontainers/runtime-tools) is *not* part of
this repository: build it yourself (``make runtimetest validation-executables``
in a checkout, Go >= 1.21) and point ``--suite`` at the checkout.

Each validation program ``validation/<name>/<name>.t`` is a TAP producer that
drives ``$RUNTIME`` with create/start/state/kill/delete.  This runner runs the
programs one at a time from the checkout's root, with a per-program timeout,
parses their TAP, cleans up what they leave behind (containers, cgroups,
mounts, bundles in the temporary directory), and prints a per-program table.
Failures that are known bugs of the suite, or that this kind of machine cannot
pass, are marked as such, so what remains is the runtime's own.

Plain Python 3.11 standard library; no third-party imports.

Usage:
    python3 conformance/runtime_tools.py --runtime PATH --suite DIR \
        [--only NAME ...] [--timeout 120] [--json OUT] [--output-dir DIR] [-v]

Exit status: 0 if no failure is the runtime's own, 1 otherwise, 2 on usage or
setup errors.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import dataclasses
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Iterable

# --------------------------------------------------------------------------
# TAP parsing
# --------------------------------------------------------------------------

_POINT_RE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")
_PLAN_RE = re.compile(r"^1\.\.(\d+)\s*(?:#\s*(.*))?$")
_DIRECTIVE_RE = re.compile(r"(?:^|\s)#\s*(SKIP|TODO)\S*\b\s*(.*)$", re.IGNORECASE)
_BAIL_RE = re.compile(r"^Bail out!\s*(.*)$", re.IGNORECASE)


@dataclass
class TestPoint:
    ok: bool
    number: int | None
    description: str
    directive: str | None = None  # "skip" or "todo"
    reason: str = ""
    yaml: str | None = None  # raw text of the YAML block that follows, if any

    @property
    def skipped(self) -> bool:
        return self.directive == "skip"

    @property
    def todo(self) -> bool:
        return self.directive == "todo"

    @property
    def failed(self) -> bool:
        # A failing TODO point is expected to fail; it is not a failure.
        return not self.ok and not self.todo


@dataclass
class TapResult:
    points: list[TestPoint] = field(default_factory=list)
    # Sum of all plan lines: some programs concatenate two TAP streams
    # (linux_cgroups_cpus prints "1..112" and then "TAP version 13", "1..0").
    plan: int | None = None
    plans: list[int] = field(default_factory=list)
    plan_directive: str = ""  # e.g. "SKIP reason" on "1..0 # SKIP reason"
    bailed: str | None = None
    # YAML blocks that do not belong to a test point.  The validation
    # programs print such a block (with an "error" key) when they fail
    # before or outside any test point.
    orphan_yaml: list[str] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)

    @property
    def passed(self) -> int:
        return sum(1 for p in self.points if p.ok and not p.skipped)

    @property
    def failed(self) -> int:
        return sum(1 for p in self.points if p.failed)

    @property
    def skipped(self) -> int:
        return sum(1 for p in self.points if p.skipped)

    @property
    def todo(self) -> int:
        return sum(1 for p in self.points if p.todo)

    def orphan_errors(self) -> list[str]:
        """Error messages of YAML blocks that belong to no test point."""
        errors = []
        for block in self.orphan_yaml:
            data = parse_yaml_block(block)
            err = data.get("error") if isinstance(data, dict) else None
            if err:
                errors.append(str(err))
        return errors


def parse_tap(text: str) -> TapResult:
    """Parse TAP (version 12/13) as the validation programs print it.

    Only lines at column 0 are TAP elements; indented lines belong to YAML
    blocks (``  ---`` ... ``  ...``) or to subtests, which are ignored.
    """
    result = TapResult()
    lines = text.splitlines()
    i = 0
    # The last test point; a YAML block belongs to it unless a plan, a bail
    # out or another YAML block came in between.  Stray lines (descriptions
    # continued on a new line, "# diagnostics") do not break the link.
    last_point: TestPoint | None = None
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if line.startswith(" ") and stripped == "---":
            indent = line[: len(line) - len(line.lstrip())]
            body = []
            i += 1
            while i < len(lines):
                inner = lines[i]
                if inner.strip() == "..." and inner.startswith(indent):
                    break
                body.append(inner[len(indent):] if inner.startswith(indent) else inner.lstrip())
                i += 1
            block = "\n".join(body)
            if last_point is not None and last_point.yaml is None:
                last_point.yaml = block
            else:
                result.orphan_yaml.append(block)
            last_point = None
            i += 1
            continue
        i += 1
        if not line or line[0].isspace():
            continue
        m = _POINT_RE.match(line)
        if m:
            ok = m.group(1) == "ok"
            number = int(m.group(2)) if m.group(2) else None
            rest = m.group(3)
            directive = None
            reason = ""
            d = _DIRECTIVE_RE.search(rest)
            if d:
                directive = d.group(1).lower()
                reason = d.group(2).strip()
                rest = rest[: d.start()].rstrip()
            point = TestPoint(ok, number, rest.strip(), directive, reason)
            result.points.append(point)
            last_point = point
            continue
        m = _PLAN_RE.match(line)
        if m:
            result.plans.append(int(m.group(1)))
            result.plan = sum(result.plans)
            result.plan_directive = (m.group(2) or "").strip() or result.plan_directive
            last_point = None
            continue
        m = _BAIL_RE.match(line)
        if m:
            result.bailed = m.group(1).strip() or "bail out"
            last_point = None
            continue
        if line.startswith("#"):
            result.diagnostics.append(line[1:].strip())
            continue
        # "TAP version 13" and anything unknown are ignored.
    return result


def parse_yaml_block(block: str):
    """Best-effort reading of a YAML block.

    tap-go writes JSON-style YAML; plain ``key: value`` lines are also read.
    Returns a dict (possibly empty).
    """
    try:
        data = json.loads(block)
        return data if isinstance(data, dict) else {"value": data}
    except ValueError:
        pass
    data = {}
    for line in block.splitlines():
        m = re.match(r"^([A-Za-z_][\w .-]*):\s*(.*)$", line)
        if m:
            data[m.group(1).strip()] = m.group(2).strip().strip("'\"")
    return data


# --------------------------------------------------------------------------
# Known failures (GUIDE.md section 6)
# --------------------------------------------------------------------------

SUITE_BUG = "suite bug"
MACHINE_LACKS = "machine lacks"


@dataclass(frozen=True)
class KnownFailure:
    program: str
    category: str  # SUITE_BUG or MACHINE_LACKS
    why: str
    # Which failures of the program this covers:
    #   points: regex on a failing point's description, or None for any point
    #   number: a failing point's number (with or without a description match)
    #   program: regex on a program-level failure's text ("error: ...",
    #            "exit 1", "timeout", ...), or None for none; ".*" for any.
    points: str | None = None
    number: int | None = None
    program_level: str | None = None
    any_point: bool = False


_ANY = ".*"

KNOWN_FAILURES: tuple[KnownFailure, ...] = (
    # ---- bugs of the suite itself, on any runtime ----
    KnownFailure("delete_resources", SUITE_BUG, "compares two pointers",
                 points=r"pids limit is set correctly"),
    KnownFailure("linux_cgroups_pids", SUITE_BUG, "compares two pointers",
                 points=r"pids limit is set correctly"),
    KnownFailure("linux_cgroups_relative_pids", SUITE_BUG, "compares two pointers",
                 points=r"pids limit is set correctly"),
    KnownFailure("hooks", SUITE_BUG, "its expected text never matches",
                 program_level=r"Hooks MUST be called in the listed order"),
    KnownFailure("prestart", SUITE_BUG, "expects prestart hooks after start",
                 program_level=r"Pre-start hooks MUST be called after the `start` operation"),
    KnownFailure("misc_props", SUITE_BUG, "no /runtimetest in that bundle", number=1),
    # point 7 says "start MUST generate an error if process was not set" but asserts err == nil;
    # runc and runp both give the error, so both "fail" it (found after the guide was written)
    KnownFailure("start", SUITE_BUG, "point 7 asserts the opposite of its own text", number=7),
    KnownFailure("pidfile", SUITE_BUG, "the process has exited before the kill",
                 points=r"--pid-file"),
    KnownFailure("process_rlimits", SUITE_BUG, "a Go program raises its own soft NOFILE limit",
                 points=r"RLIMIT_NOFILE"),
    KnownFailure("process_capabilities_fail", SUITE_BUG,
                 "asserts the pre-1.1 text (an unknown capability is an error); runtime-spec 1.3 "
                 "says warn and go on, as runc does", any_point=True, program_level=_ANY),
    # ---- what this machine cannot do ----
    KnownFailure("linux_cgroups_blkio", MACHINE_LACKS, "blkio has no weight files",
                 any_point=True, program_level=_ANY),
    KnownFailure("linux_cgroups_relative_blkio", MACHINE_LACKS, "blkio has no weight files",
                 any_point=True, program_level=_ANY),
    KnownFailure("linux_cgroups_hugetlb", MACHINE_LACKS, "no v1 hugetlb controller",
                 any_point=True, program_level=_ANY),
    KnownFailure("linux_cgroups_relative_hugetlb", MACHINE_LACKS, "no v1 hugetlb controller",
                 any_point=True, program_level=_ANY),
    KnownFailure("linux_cgroups_network", MACHINE_LACKS, "no net_cls/net_prio controllers",
                 any_point=True, program_level=_ANY),
    KnownFailure("linux_cgroups_relative_network", MACHINE_LACKS,
                 "no net_cls/net_prio controllers", any_point=True, program_level=_ANY),
    KnownFailure("linux_cgroups_memory", MACHINE_LACKS, "kmem limits read back unlimited",
                 points=r"memory kernel(TCP)? is set correctly"),
    KnownFailure("linux_cgroups_relative_memory", MACHINE_LACKS,
                 "kmem limits read back unlimited",
                 points=r"memory kernel(TCP)? is set correctly"),
    KnownFailure("linux_process_apparmor_profile", MACHINE_LACKS, "no AppArmor",
                 any_point=True, program_level=_ANY),
    KnownFailure("process_capabilities", MACHINE_LACKS, "root lacks CAP_SYS_RESOURCE",
                 any_point=True, program_level=_ANY),
)


def classify_point(program: str, point: TestPoint,
                   known: Iterable[KnownFailure] = KNOWN_FAILURES) -> KnownFailure | None:
    """The known-failure entry that covers a failing test point, if any."""
    for k in known:
        if k.program != program:
            continue
        if k.any_point:
            return k
        if k.number is not None and point.number == k.number:
            if k.points is None or re.search(k.points, point.description):
                return k
            continue
        if k.points is not None and k.number is None and re.search(k.points, point.description):
            return k
    return None


def classify_program_failure(program: str, text: str,
                             known: Iterable[KnownFailure] = KNOWN_FAILURES) -> KnownFailure | None:
    """The known-failure entry that covers a program-level failure, if any."""
    for k in known:
        if k.program == program and k.program_level is not None:
            if re.search(k.program_level, text, re.DOTALL):
                return k
    return None


# --------------------------------------------------------------------------
# Per-program result
# --------------------------------------------------------------------------


@dataclass
class Failure:
    kind: str  # "point" or "program"
    text: str  # description of the point, or the program-level reason
    number: int | None = None
    detail: str = ""
    known: str | None = None  # category, or None when it is the runtime's own
    why: str = ""


@dataclass
class ProgramResult:
    name: str
    ok: int = 0
    not_ok: int = 0
    skip: int = 0
    todo: int = 0
    plan: int | None = None
    returncode: int | None = None
    timed_out: bool = False
    seconds: float = 0.0
    failures: list[Failure] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)
    stderr_tail: str = ""

    @property
    def own_failures(self) -> list[Failure]:
        return [f for f in self.failures if f.known is None]

    @property
    def known_failures(self) -> list[Failure]:
        return [f for f in self.failures if f.known is not None]

    @property
    def program_errors(self) -> int:
        return sum(1 for f in self.failures if f.kind == "program")

    @property
    def status(self) -> str:
        if not self.failures:
            return "pass"
        reasons = sorted({f.text.split(":")[0] for f in self.failures if f.kind == "program"})
        suffix = f" ({', '.join(reasons)})" if reasons else ""
        own = self.own_failures
        if not own:
            cats = sorted({f.known for f in self.failures if f.known})
            return "known: " + " + ".join(cats) + suffix
        if len(own) < len(self.failures):
            return f"FAIL{suffix} [{len(own)} own, {len(self.failures) - len(own)} known]"
        return "FAIL" + suffix


def _short(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _point_detail(point: TestPoint) -> str:
    if not point.yaml:
        return ""
    data = parse_yaml_block(point.yaml)
    parts = []
    for key in ("error", "actual", "expected", "stderr"):
        value = data.get(key)
        if value not in (None, "", [], {}):
            parts.append(f"{key}={json.dumps(value) if not isinstance(value, str) else value}")
    return _short("; ".join(parts))


def evaluate(name: str, tap_text: str, returncode: int | None, timed_out: bool,
             stderr_text: str = "", known: Iterable[KnownFailure] = KNOWN_FAILURES) -> ProgramResult:
    """Turn one program's TAP output and exit status into a ProgramResult."""
    known = tuple(known)
    tap = parse_tap(tap_text)
    res = ProgramResult(name=name, ok=tap.passed, not_ok=tap.failed, skip=tap.skipped,
                        todo=tap.todo, plan=tap.plan, returncode=returncode,
                        timed_out=timed_out)
    res.stderr_tail = _short("\n".join(stderr_text.strip().splitlines()[-3:]), 500)

    for p in tap.points:
        if not p.failed:
            continue
        k = classify_point(name, p, known)
        res.failures.append(Failure("point", p.description, p.number, _point_detail(p),
                                    k.category if k else None, k.why if k else ""))

    program_level: list[tuple[str, str]] = []
    if timed_out:
        program_level.append(("timeout", ""))
    elif returncode is not None and returncode != 0:
        if returncode < 0:
            program_level.append((f"signal {-returncode}", res.stderr_tail))
        else:
            program_level.append((f"exit {returncode}", res.stderr_tail))
    if tap.bailed is not None:
        program_level.append((f"bail out: {tap.bailed}", ""))
    for err in tap.orphan_errors():
        program_level.append((f"error: {_short(err, 200)}", ""))
    if not timed_out and tap.bailed is None:
        count = len(tap.points)
        if tap.plan is not None and tap.plan != count:
            program_level.append((f"incomplete: plan 1..{tap.plan}, {count} points", ""))
        elif tap.plan is None and count > 0:
            program_level.append((f"incomplete: no plan after {count} points", ""))

    for text, detail in program_level:
        k = classify_program_failure(name, text, known)
        res.failures.append(Failure("program", text, None, detail,
                                    k.category if k else None, k.why if k else ""))
    return res


# --------------------------------------------------------------------------
# Machine state: containers, mounts, cgroups, temporary bundles
# --------------------------------------------------------------------------

SUITE_TMP_PREFIXES = ("ocitest", "oci-pid")
SUITE_CGROUP_NAMES = ("cgrouptest", "testdir")
_UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _unescape_mountinfo(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def read_mounts() -> list[tuple[int, str, str]]:
    """(mount id, mount point, fs type) for every mount in our namespace."""
    mounts = []
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) < 7:
                    continue
                sep = fields.index("-") if "-" in fields else None
                fstype = fields[sep + 1] if sep is not None and sep + 1 < len(fields) else ""
                mounts.append((int(fields[0]), _unescape_mountinfo(fields[4]), fstype))
    except OSError:
        pass
    return mounts


def cgroup_roots() -> list[str]:
    seen = []
    for _, point, fstype in read_mounts():
        if fstype in ("cgroup", "cgroup2") and point not in seen and os.path.isdir(point):
            seen.append(point)
    return seen


def cgroup_dirs(roots: Iterable[str]) -> set[str]:
    dirs = set()
    for root in roots:
        for dirpath, dirnames, _ in os.walk(root):
            for d in dirnames:
                dirs.add(os.path.join(dirpath, d))
    return dirs


def suite_tmp_dir() -> str:
    # Go's os.TempDir(): $TMPDIR, else /tmp.
    return os.environ.get("TMPDIR") or "/tmp"


def suite_tmp_entries(tmp: str) -> set[str]:
    try:
        return {os.path.join(tmp, n) for n in os.listdir(tmp)
                if n.startswith(SUITE_TMP_PREFIXES)}
    except OSError:
        return set()


def _is_under(path: str, top: str) -> bool:
    return path == top or path.startswith(top.rstrip("/") + "/")


_libc = None


def _umount_lazy(path: str) -> bool:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    MNT_DETACH = 2
    if _libc.umount2(os.fsencode(path), MNT_DETACH) == 0:
        return True
    return subprocess.run(["umount", "-l", path], capture_output=True).returncode == 0


@dataclass
class Snapshot:
    containers: set[str]
    mount_ids: set[int]
    cgroups: set[str]
    tmp_entries: set[str]


class Janitor:
    """Takes a snapshot before a program and removes what it left after."""

    def __init__(self, runtime: str, tmp: str):
        self.runtime = runtime
        self.tmp = os.path.realpath(tmp)
        self.roots = cgroup_roots()

    def list_containers(self) -> set[str]:
        try:
            out = subprocess.run([self.runtime, "list", "-q"], capture_output=True,
                                 text=True, timeout=30, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired):
            return set()
        if out.returncode != 0:
            return set()
        return {line.strip() for line in out.stdout.splitlines() if line.strip()}

    def snapshot(self) -> Snapshot:
        return Snapshot(self.list_containers(), {m[0] for m in read_mounts()},
                        cgroup_dirs(self.roots), suite_tmp_entries(self.tmp))

    def _container_bundle(self, cid: str) -> str | None:
        try:
            out = subprocess.run([self.runtime, "state", cid], capture_output=True, text=True,
                                 timeout=30, stdin=subprocess.DEVNULL)
            return json.loads(out.stdout).get("bundle") if out.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired, ValueError, AttributeError):
            return None

    def _is_suite_path(self, path: str | None) -> bool:
        """Whether path lies in one of the suite's temporary bundles."""
        if not path:
            return False
        rel = os.path.relpath(os.path.realpath(path), self.tmp)
        if rel == "." or rel.startswith(".."):
            return False
        return rel.split("/", 1)[0].startswith(SUITE_TMP_PREFIXES)

    def cleanup(self, before: Snapshot) -> list[str]:
        """Remove what appeared since `before` and belongs to the suite."""
        done: list[str] = []
        # 1. containers the program left in the runtime's state directory
        seen_ids: set[str] = set()
        for cid in sorted(self.list_containers() - before.containers):
            bundle = self._container_bundle(cid)
            if bundle is not None and not self._is_suite_path(bundle):
                done.append(f"left alone container {cid} (bundle {bundle})")
                continue
            seen_ids.add(cid)
            try:
                r = subprocess.run([self.runtime, "delete", "--force", cid], capture_output=True,
                                   text=True, timeout=60, stdin=subprocess.DEVNULL)
                done.append(f"deleted container {cid}" + ("" if r.returncode == 0 else
                            f" (delete --force failed: {_short(r.stderr, 120)})"))
            except (OSError, subprocess.TimeoutExpired) as e:
                done.append(f"could not delete container {cid}: {e}")

        # 2. mounts under the suite's temporary bundles
        new_tmp = suite_tmp_entries(self.tmp) - before.tmp_entries
        tops = [os.path.realpath(p) for p in new_tmp]
        leaked = [(mid, point) for mid, point, _ in read_mounts()
                  if mid not in before.mount_ids]
        ours = [(mid, p) for mid, p in leaked if any(_is_under(p, t) for t in tops)
                or self._is_suite_path(p)]
        for mid, point in sorted(ours, key=lambda m: (-m[1].count("/"), -m[0])):
            if _umount_lazy(point):
                done.append(f"unmounted {point}")
            else:
                done.append(f"could not unmount {point}")
        for mid, point in leaked:
            if (mid, point) not in ours:
                done.append(f"new mount outside the suite's bundles left alone: {point}")

        # 3. cgroups the runs created: suite-named ones (/cgrouptest and
        # testdir/cgrouptest/container, the latter relative to the caller's
        # cgroup) and ones named by a container id.  Processes are killed
        # only in the suite-named ones and those of containers seen above;
        # a cgroup merely named like a UUID is only rmdir'ed if empty.
        new_cg = cgroup_dirs(self.roots) - before.cgroups
        for path in sorted(new_cg, key=lambda p: -p.count("/")):
            parts = [p for p in path.split("/") if p]
            suite_owned = any(p in SUITE_CGROUP_NAMES or p in seen_ids for p in parts)
            if not suite_owned and not any(_UUID_RE.match(p) for p in parts):
                done.append(f"new cgroup left alone: {path}")
                continue
            if remove_cgroup(path, kill=suite_owned):
                done.append(f"removed cgroup {path}")
            else:
                done.append(f"could not remove cgroup {path}")

        # 4. temporary bundles (only once nothing is mounted under them)
        mounted = [p for _, p, _ in read_mounts()]
        for top in sorted(new_tmp):
            real = os.path.realpath(top)
            if any(_is_under(m, real) for m in mounted):
                done.append(f"kept {top}: something is still mounted under it")
                continue
            shutil.rmtree(top, ignore_errors=True)
            done.append(f"removed {top}" if not os.path.exists(top) else f"could not remove {top}")
        return done


def remove_cgroup(path: str, attempts: int = 20, kill: bool = True) -> bool:
    """rmdir one (leaf) cgroup; with kill, thaw it and kill what is inside first."""
    if kill:
        for name, value in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            try:
                with open(os.path.join(path, name), "w") as f:
                    f.write(value)
            except OSError:
                pass
    for _ in range(attempts):
        try:
            os.rmdir(path)
            return True
        except FileNotFoundError:
            return True
        except OSError:
            if not kill:
                return False
        try:
            with open(os.path.join(path, "cgroup.procs")) as f:
                pids = [int(x) for x in f.read().split()]
        except (OSError, ValueError):
            pids = []
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.05)
    return False


def preclean_cgroups(roots: Iterable[str]) -> list[str]:
    """Remove stale suite cgroups (/cgrouptest, /testdir) from earlier runs.

    Their presence changes what the cgroup programs see.
    """
    done = []
    own = []  # relative cgroup paths are relative to the caller's cgroup
    try:
        with open("/proc/self/cgroup") as f:
            own = [line.rstrip("\n").split(":", 2)[2] for line in f if line.count(":") >= 2]
    except OSError:
        pass
    parents = []
    for root in roots:
        for rel in ["/"] + own:
            parent = os.path.normpath(root + "/" + rel)
            if parent not in parents and os.path.isdir(parent):
                parents.append(parent)
    for root in parents:
        for name in SUITE_CGROUP_NAMES:
            top = os.path.join(root, name)
            if not os.path.isdir(top):
                continue
            subdirs = [top] + sorted(cgroup_dirs([top]))
            for path in sorted(subdirs, key=lambda p: -p.count("/")):
                done.append(("removed stale cgroup " if remove_cgroup(path)
                             else "could not remove stale cgroup ") + path)
    return done


# --------------------------------------------------------------------------
# Running
# --------------------------------------------------------------------------


def goarch() -> str:
    m = platform.machine().lower()
    return {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64",
            "i386": "386", "i686": "386", "ppc64le": "ppc64le", "s390x": "s390x"}.get(m, m)


def discover(suite: str) -> dict[str, str | None]:
    """name -> path of the built program (None when only the source exists)."""
    vdir = os.path.join(suite, "validation")
    programs: dict[str, str | None] = {}
    for name in sorted(os.listdir(vdir)):
        d = os.path.join(vdir, name)
        if name == "util" or not os.path.isdir(d):
            continue
        exe = os.path.join(d, name + ".t")
        if os.access(exe, os.X_OK):
            programs[name] = exe
        elif os.path.exists(os.path.join(d, name + ".go")):
            programs[name] = None
    return programs


def run_program(name: str, exe: str, suite: str, runtime: str, timeout: float,
                output_dir: str | None) -> tuple[str, str, int | None, bool, float]:
    env = dict(os.environ)
    env["RUNTIME"] = runtime
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.monotonic()
        # Files rather than pipes: a container or runtime process that
        # inherits stdout must not keep us waiting after the program ends.
        proc = subprocess.Popen([exe], cwd=suite, env=env, stdin=subprocess.DEVNULL,
                                stdout=out, stderr=err, start_new_session=True)
        timed_out = False
        try:
            rc: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except OSError:
                proc.kill()
            rc = proc.wait()
        # Anything still alive in the program's session is its leftovers.
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        tap_text = out.read().decode("utf-8", "replace")
        err_text = err.read().decode("utf-8", "replace")
    if output_dir:
        with open(os.path.join(output_dir, name + ".tap"), "w") as f:
            f.write(tap_text)
        with open(os.path.join(output_dir, name + ".stderr"), "w") as f:
            f.write(err_text)
    return tap_text, err_text, rc, timed_out, seconds


def format_table(results: list[ProgramResult]) -> str:
    width = max([len("program")] + [len(r.name) for r in results])
    head = f"{'program':<{width}}  {'ok':>5}  {'not ok':>6}  {'skip':>4}  {'err':>3}  {'known':>5}  {'secs':>6}  status"
    lines = [head, "-" * len(head)]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.ok:>5}  {r.not_ok:>6}  {r.skip:>4}  "
                     f"{r.program_errors:>3}  {len(r.known_failures):>5}  {r.seconds:>6.1f}  {r.status}")
    lines.append("-" * len(head))
    t = totals(results)
    lines.append(f"{'total':<{width}}  {t['ok']:>5}  {t['not_ok']:>6}  {t['skip']:>4}  "
                 f"{t['program_errors']:>3}  {t['known_suite_bug'] + t['known_machine_lacks']:>5}  "
                 f"{t['seconds']:>6.1f}")
    return "\n".join(lines)


def totals(results: list[ProgramResult]) -> dict:
    failures = [f for r in results for f in r.failures]
    return {
        "programs": len(results),
        "ok": sum(r.ok for r in results),
        "not_ok": sum(r.not_ok for r in results),
        "skip": sum(r.skip for r in results),
        "todo": sum(r.todo for r in results),
        "program_errors": sum(r.program_errors for r in results),
        "failures": len(failures),
        "known_suite_bug": sum(1 for f in failures if f.known == SUITE_BUG),
        "known_machine_lacks": sum(1 for f in failures if f.known == MACHINE_LACKS),
        "own_failures": sum(1 for f in failures if f.known is None),
        "programs_clean": sum(1 for r in results if not r.failures),
        "programs_clean_but_known": sum(1 for r in results if r.failures and not r.own_failures),
        "programs_with_own_failures": sum(1 for r in results if r.own_failures),
        "seconds": round(sum(r.seconds for r in results), 1),
    }


def format_summary(results: list[ProgramResult], verbose: bool = False) -> str:
    t = totals(results)
    lines = [
        f"points: {t['ok']} ok, {t['not_ok']} not ok, {t['skip']} skip"
        + (f", {t['todo']} todo" if t["todo"] else "")
        + f"; program-level failures: {t['program_errors']}",
        f"failures: {t['failures']} = {t['own_failures']} the runtime's own"
        f" + {t['known_suite_bug']} known: suite bug + {t['known_machine_lacks']} known: machine lacks",
        f"programs: {t['programs']}, {t['programs_clean']} fail nothing, "
        f"{t['programs_clean_but_known']} fail only known points, "
        f"{t['programs_with_own_failures']} have failures of their own",
    ]
    own = [(r.name, f) for r in results for f in r.own_failures]
    if own:
        lines.append("")
        lines.append("the runtime's own failures:")
        for name, f in own:
            where = f"#{f.number} " if f.number is not None else ""
            lines.append(f"  {name}: {where}{_short(f.text, 160)}")
            if f.detail:
                lines.append(f"      {_short(f.detail, 240)}")
    if verbose:
        known = [(r.name, f) for r in results for f in r.known_failures]
        if known:
            lines.append("")
            lines.append("known failures:")
            for name, f in known:
                where = f"#{f.number} " if f.number is not None else ""
                lines.append(f"  {name}: {where}{_short(f.text, 120)}  [known: {f.known}: {f.why}]")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runtime", required=True, help="runtime binary (name or path), given to the programs as $RUNTIME")
    ap.add_argument("--suite", required=True, help="root of a built runtime-tools checkout")
    ap.add_argument("--only", nargs="+", action="extend", metavar="NAME", default=[],
                    help="run only these programs (repeatable)")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per program (default 120)")
    ap.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    ap.add_argument("--output-dir", metavar="DIR", help="keep each program's TAP and stderr here")
    ap.add_argument("--no-cleanup", action="store_true", help="leave what the programs leave behind")
    ap.add_argument("-v", "--verbose", action="store_true", help="progress, cleanup actions and known failures")
    args = ap.parse_args(argv)

    runtime = shutil.which(args.runtime)
    if not runtime:
        print(f"runtime not found or not executable: {args.runtime}", file=sys.stderr)
        return 2
    runtime = os.path.abspath(runtime)
    suite = os.path.abspath(args.suite)
    if not os.path.isdir(os.path.join(suite, "validation")):
        print(f"{suite}: no validation/ directory; is this a runtime-tools checkout?", file=sys.stderr)
        return 2
    problems = []
    if not os.access(os.path.join(suite, "runtimetest"), os.X_OK):
        problems.append("runtimetest is not built")
    rootfs = os.path.join(suite, f"rootfs-{goarch()}.tar.gz")
    if not os.path.exists(rootfs):
        problems.append(f"{os.path.basename(rootfs)} is missing")
    programs = discover(suite)
    if args.only:
        unknown = [n for n in args.only if n not in programs]
        if unknown:
            print(f"unknown program(s): {', '.join(unknown)}", file=sys.stderr)
            return 2
        programs = {n: programs[n] for n in sorted(set(args.only))}
    missing = [n for n, exe in programs.items() if exe is None]
    if missing:
        problems.append("not built: " + ", ".join(missing))
    if problems:
        print("the suite is not built (make runtimetest validation-executables): "
              + "; ".join(problems), file=sys.stderr)
        return 2
    if args.output_dir:
        os.makedirs(args.output_dir, exist_ok=True)

    janitor = Janitor(runtime, suite_tmp_dir())
    if not args.no_cleanup:
        for msg in preclean_cgroups(janitor.roots):
            print(f"# {msg}", file=sys.stderr)

    results: list[ProgramResult] = []
    wall = time.monotonic()
    for name, exe in programs.items():
        assert exe is not None
        before = janitor.snapshot()
        if args.verbose:
            print(f"# {name} ...", file=sys.stderr, flush=True)
        tap_text, err_text, rc, timed_out, seconds = run_program(
            name, exe, suite, runtime, args.timeout, args.output_dir)
        res = evaluate(name, tap_text, rc, timed_out, err_text)
        res.seconds = seconds
        if not args.no_cleanup:
            res.cleanup = janitor.cleanup(before)
            if args.verbose:
                for msg in res.cleanup:
                    print(f"#   {msg}", file=sys.stderr)
        if args.verbose:
            print(f"#   {res.status} ({seconds:.1f}s)", file=sys.stderr, flush=True)
        results.append(res)
    wall = time.monotonic() - wall

    print(f"runtime-tools validation: RUNTIME={runtime} suite={suite}")
    print(format_table(results))
    print()
    print(format_summary(results, args.verbose))
    print(f"\nwall time: {wall:.1f}s")

    if args.json:
        doc = {
            "runtime": runtime,
            "suite": suite,
            "timeout": args.timeout,
            "wall_seconds": round(wall, 1),
            "totals": totals(results),
            "programs": [dict(dataclasses.asdict(r), status=r.status) for r in results],
        }
        with open(args.json, "w") as f:
            json.dump(doc, f, indent=2)
            f.write("\n")

    return 0 if not any(r.own_failures for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
