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
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import fnmatch
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SPEC = "v1.3.0"
DEFAULT_RUNTIME = "/work/main/.venv/bin/runp"
BUSYBOX = "/bin/busybox"
CGROUP_PARENT = "oci-conformance"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_CAPS = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
                "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
                "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"]
CAP_NUMBERS = {n: i for i, n in enumerate(
    "CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP LINUX_IMMUTABLE "
    "NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER SYS_MODULE SYS_RAWIO "
    "SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE SYS_RESOURCE SYS_TIME "
    "SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP MAC_OVERRIDE MAC_ADMIN SYSLOG "
    "WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF CHECKPOINT_RESTORE".split())}
# the busybox applets the cases use (a link per applet: every bundle gets its own copy)
APPLETS = ("sh cat echo true false sleep touch stat mount umount id grep hostname env pwd ls wc "
           "head readlink uname ionice tty stty test mkdir rm ln printf tr cut sort kill ps "
           "mknod chmod sed seq xargs").split()
AUTO_CGROUP = "@auto"  # replaced by /oci-conformance/<id> at create
MARKER_ENV = "OCI_CONFORMANCE_MARKER"  # in the runtime's environment, never in a hook's
LEVELS = ("MUST", "SHOULD")
STATUSES = ("creating", "created", "running", "stopped")
PR_SET_CHILD_SUBREAPER = 36


# ---------------------------------------------------------------------------------------------
# registry

class Skip(Exception):
    """The machine (or a precondition outside the runtime) cannot support this case."""


class Fail(AssertionError):
    pass


@dataclass
class Case:
    section: str
    name: str
    title: str
    ref: str       # spec file (and anchor)
    quote: str     # the sentence checked, shortened
    level: str
    fn: Callable[["T"], None]
    conflict: str = ""  # where runtime-tools asserts the opposite of the spec text


CASES: list[Case] = []
SECTIONS = ["lifecycle/state", "operations errors", "config: root", "config: mounts",
            "config: process", "config: user", "config: hostname", "config: env",
            "config: rlimits", "config: caps", "config: extensibility", "linux: namespaces",
            "linux: idmaps", "linux: devices", "linux: sysctl", "linux: masked/readonly paths",
            "linux: rootfsPropagation", "linux: seccomp", "linux: cgroups", "hooks"]


def case(section: str, name: str, title: str, ref: str, quote: str, level: str = "MUST",
         conflict: str = ""):
    assert section in SECTIONS and level in LEVELS, (section, level)

    def deco(fn: Callable[["T"], None]):
        assert all(c.name != name for c in CASES), name
        CASES.append(Case(section, name, title, ref, quote, level, fn, conflict))
        return fn
    return deco


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise Fail(msg)


def eq(actual, expected, what: str) -> None:
    if actual != expected:
        raise Fail(f"{what}: expected {expected!r}, got {actual!r}")


# ---------------------------------------------------------------------------------------------
# host facts

def read(path: str | Path, default: str | None = None) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        if default is None:
            raise
        return default


def ns_inode(pid: int | str, ns: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{ns}")


def parse_mountinfo(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        left, _, right = line.partition(" - ")
        f = left.split()
        r = right.split()
        if len(f) < 6 or len(r) < 2:
            continue
        out.append({"id": int(f[0]), "parent": int(f[1]), "mp": _unescape(f[4]),
                    "root": _unescape(f[3]), "opts": set(f[5].split(",")), "optional": f[6:],
                    "fstype": r[0], "source": r[1],
                    "super": set(r[2].split(",")) if len(r) > 2 else set()})
    return out


def _unescape(s: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


def mount_points_under(prefix: str) -> list[str]:
    prefix = prefix.rstrip("/") + "/"
    return [m["mp"] for m in parse_mountinfo(read("/proc/self/mountinfo"))
            if m["mp"].startswith(prefix)]


def proc_state(pid: int) -> str | None:
    """The state letter of /proc/<pid>/stat, None if gone."""
    try:
        data = read(f"/proc/{pid}/stat")
    except OSError:
        return None
    return data[data.rfind(")") + 2]


def alive(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def status_field(pid: int | str, name: str) -> str:
    for line in read(f"/proc/{pid}/status").splitlines():
        if line.startswith(name + ":"):
            return line.split(":", 1)[1].strip()
    raise KeyError(name)


def cap_mask(names: list[str]) -> int:
    m = 0
    for n in names:
        m |= 1 << CAP_NUMBERS[n[4:]]
    return m


def our_children() -> list[int]:
    """Processes whose parent is this suite: runtimes have exited, so these are containers'
    processes re-parented to us (we are a child subreaper)."""
    me = str(os.getpid())
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                s = read(f"/proc/{d}/stat")
            except OSError:
                continue
            if s[s.rfind(")") + 2:].split()[1] == me and proc_state(int(d)) not in ("Z", "X", None):
                out.append(int(d))
    return out


def reap_all() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class Cgroups:
    """Where each controller lives on this host (v1 hierarchy, the unified v2 hierarchy, or
    nowhere), to find a container's cgroup files from outside."""

    def __init__(self) -> None:
        self.v1: dict[str, str] = {}   # controller -> mount point
        self.v2: str | None = None
        self.v2_controllers: set[str] = set()
        for m in parse_mountinfo(read("/proc/self/mountinfo")):
            if m["fstype"] == "cgroup":
                for o in m["super"]:
                    if o in ("rw", "ro") or "=" in o and not o.startswith("name="):
                        continue
                    self.v1.setdefault(o, m["mp"])
            elif m["fstype"] == "cgroup2" and self.v2 is None:
                self.v2 = m["mp"]
        if self.v2:
            self.v2_controllers = set(read(os.path.join(self.v2, "cgroup.controllers"), "").split())
        self.pure_v2 = not self.v1 and self.v2 is not None

    def roots(self) -> list[str]:
        return sorted(set(self.v1.values()) | ({self.v2} if self.v2 else set()))

    def file(self, pid: int, controller: str, v1name: str, v2name: str | None) -> tuple[str, str]:
        """(version, path) of a cgroup file of `pid` for `controller`; Skip when absent."""
        lines = read(f"/proc/{pid}/cgroup").splitlines()
        if controller in self.v1:
            for line in lines:
                _, ctrls, path = line.split(":", 2)
                if controller in ctrls.split(","):
                    return "v1", os.path.join(self.v1[controller] + path, v1name)
        if self.v2 and controller in self.v2_controllers and v2name:
            for line in lines:
                if line.startswith("0::"):
                    return "v2", os.path.join(self.v2 + line[3:], v2name)
        raise Skip(f"no {controller} cgroup controller on this machine")

    def paths_for(self, cgpath: str) -> list[str]:
        return [os.path.join(r, cgpath.lstrip("/")) for r in self.roots()]


# ---------------------------------------------------------------------------------------------
# bundles and the runtime

def build_template(dest: Path) -> None:
    """A busybox-static rootfs: /bin/busybox, a symlink per applet, passwd/group, mount points."""
    for d in ("bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/user", "out", "var"):
        (dest / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, dest / "bin" / "busybox")
    for a in APPLETS:
        (dest / "bin" / a).symlink_to("busybox")
    (dest / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n"
                                         "user:x:1000:1000:user:/home/user:/bin/sh\n"
                                         "nobody:x:65534:65534:nobody:/:/bin/sh\n")
    (dest / "etc" / "group").write_text("root:x:0:\nuser:x:1000:\nnogroup:x:65534:\n")
    (dest / "tmp").chmod(0o1777)


def base_config(out_dir: str) -> dict:
    """A config like `runc spec` (no terminal, writable root) plus /out, in its own cgroup."""
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0}, "args": ["true"],
            "env": [PATH_ENV, "TERM=xterm"], "cwd": "/",
            "capabilities": {k: list(DEFAULT_CAPS) for k in ("bounding", "effective", "permitted")},
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True},
        "root": {"path": "rootfs", "readonly": False},
        "hostname": "oci-conformance",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/out", "type": "bind", "source": out_dir, "options": ["rbind", "rw"]},
        ],
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            "cgroupsPath": AUTO_CGROUP,
        },
    }


class Bundle:
    def __init__(self, path: Path, template: Path) -> None:
        self.path = path
        self.rootfs = path / "rootfs"
        self.out = path.parent / (path.name + "-out")
        path.mkdir(parents=True)
        self.out.mkdir()
        self.out.chmod(0o777)
        shutil.copytree(template, self.rootfs, symlinks=True)
        self.config = base_config(str(self.out))
        self.auto_cgroup = AUTO_CGROUP

    @property
    def process(self) -> dict:
        return self.config["process"]

    @property
    def linux(self) -> dict:
        return self.config["linux"]

    def args(self, *args: str) -> "Bundle":
        self.config["process"]["args"] = list(args)
        return self

    def sh(self, script: str) -> "Bundle":
        return self.args("sh", "-c", script)

    def namespaces(self, *types: str) -> "Bundle":
        self.linux["namespaces"] = [{"type": t} for t in types]
        return self

    def mount(self, dest: str, typ: str, source: str, options: list[str] | None = None) -> "Bundle":
        m = {"destination": dest, "type": typ, "source": source}
        if options is not None:
            m["options"] = options
        self.config["mounts"].append(m)
        return self

    def write(self) -> None:
        (self.path / "config.json").write_text(json.dumps(self.config, indent=1))


@dataclass
class Run:
    """What one container run left: its exit status (None if unknown), stdout+stderr, files."""
    rc: int | None
    out: str
    bundle: Bundle
    cid: str


class Proc:
    def __init__(self, rc: int, out: str, err: str, args: list[str]) -> None:
        self.rc, self.out, self.err, self.args = rc, out, err, args

    def __str__(self) -> str:
        return f"`{' '.join(self.args)}` exited {self.rc}: {(self.err or self.out).strip()[-400:]}"


class Suite:
    def __init__(self, runtime: str, work: Path, verbose: bool = False) -> None:
        self.runtime = runtime
        self.work = work
        self.root = work / "root"
        self.template = work / "template" / "rootfs"
        self.verbose = verbose
        self.cg = Cgroups()
        build_template(self.template)
        self.caps_bounding = int(status_field("self", "CapBnd"), 16)

    def cleanup(self) -> list[str]:
        """Remove the cgroup parents; returns what could not be removed."""
        left = []
        for r in self.cg.roots():
            p = os.path.join(r, CGROUP_PARENT)
            if os.path.isdir(p):
                for d, subdirs, _ in sorted(os.walk(p), key=lambda x: -len(x[0])):
                    try:
                        os.rmdir(d)
                    except OSError:
                        left.append(d)
        return left


class T:
    """One case's context: its bundles, the containers it made, and their cleanup."""

    def __init__(self, suite: Suite, c: Case, n: int) -> None:
        self.s = suite
        self.case = c
        self.dir = suite.work / f"case{n:03d}"
        self.dir.mkdir()
        self.ids: list[str] = []
        self.cgpaths: dict[str, str] = {}
        self.pids: dict[str, int] = {}
        self.files: dict[str, Path] = {}
        self.cleanups: list[Callable[[], None]] = []
        self.nb = 0
        self.notes: list[str] = []

    # -- building -------------------------------------------------------------------------------
    def bundle(self, *args: str) -> Bundle:
        self.nb += 1
        b = Bundle(self.dir / f"bundle{self.nb}", self.s.template)
        if args:
            b.args(*args)
        return b

    def new_id(self) -> str:
        cid = f"oci-{self.case.name.replace('.', '-').replace('_', '-')[:30]}-{uuid.uuid4().hex[:6]}"
        self.ids.append(cid)
        return cid

    def defer(self, fn: Callable[[], None]) -> None:
        self.cleanups.append(fn)

    # -- the runtime ------------------------------------------------------------------------------
    def rt(self, *args: str, timeout: float = 30, cwd: str | None = None, stdout=None, stderr=None,
           preexec_fn=None, env_extra: dict | None = None) -> Proc:
        """Run the runtime with our private --root. Output goes through files, never pipes: a
        created container inherits the runtime's stdio."""
        argv = [self.s.runtime, "--root", str(self.s.root), *args]
        env = dict(os.environ, **{MARKER_ENV: "leak"}, **(env_extra or {}))
        with tempfile.TemporaryFile(dir=self.dir) as o, tempfile.TemporaryFile(dir=self.dir) as e:
            for attempt in range(100):
                try:
                    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=stdout or o,
                                       stderr=stderr or e, timeout=timeout, cwd=cwd, env=env,
                                       preexec_fn=preexec_fn)
                    break
                except subprocess.TimeoutExpired:
                    raise Fail(f"`{' '.join(args)}` did not return within {timeout}s") from None
                except FileNotFoundError:  # a reinstall of the runtime in progress: wait for it
                    if attempt == 99 or cwd and not os.path.isdir(cwd):
                        raise
                    time.sleep(0.1)
            o.seek(0)
            e.seek(0)
            out, err = o.read().decode(errors="replace"), e.read().decode(errors="replace")
        if self.s.verbose:
            print(f"#   $ {' '.join(args)} -> {p.returncode} {err.strip()[:200]}", flush=True)
        return Proc(p.returncode, out, err, list(args))

    def create(self, b: Bundle, cid: str | None = None, extra: tuple[str, ...] = (),
               preexec_fn=None, cwd: str | None = None, bundle_arg: str | None = None) -> str:
        cid = self._prepare(b, cid)
        p = self._create(b, cid, extra, preexec_fn, cwd, bundle_arg)
        if p.rc != 0:
            raise Fail(f"create failed ({p.rc}): {self.output(cid).strip()[-400:]}")
        self.pids[cid] = self.state(cid).get("pid", 0)
        return cid

    def _prepare(self, b: Bundle, cid: str | None) -> str:
        cid = cid or self.new_id()
        if cid not in self.ids:
            self.ids.append(cid)
        lx = b.config.get("linux", {})
        if lx.get("cgroupsPath") in (AUTO_CGROUP, b.auto_cgroup):  # one cgroup per container
            lx["cgroupsPath"] = b.auto_cgroup = f"/{CGROUP_PARENT}/{cid}"
        if lx.get("cgroupsPath"):
            self.cgpaths[cid] = lx["cgroupsPath"]
        b.write()
        return cid

    def _create(self, b: Bundle, cid: str, extra, preexec_fn, cwd, bundle_arg) -> Proc:
        out = open(self.dir / f"{cid}.stdout", "wb+")
        self.files[cid] = self.dir / f"{cid}.stdout"
        try:
            return self.rt("create", "--bundle", bundle_arg or str(b.path), *extra, cid,
                           stdout=out, stderr=out, preexec_fn=preexec_fn, cwd=cwd)
        finally:
            out.close()

    def create_fails(self, b: Bundle, what: str, extra: tuple[str, ...] = ()) -> Proc:
        """create must fail and leave nothing: no container, process, cgroup or mount."""
        cid = self._prepare(b, None)
        mounts = mount_points_under(str(self.s.work))
        p = self._create(b, cid, extra, None, None, None)
        if p.rc == 0:
            self.pids[cid] = self.state(cid).get("pid", 0)
            raise Fail(f"create succeeded although {what}")
        self.assert_gone(cid, "after the failed create")
        now = mount_points_under(str(self.s.work))
        check(now == mounts, f"the failed create left mounts: {sorted(set(now) - set(mounts))}")
        return p

    def output(self, cid: str) -> str:
        return read(self.files[cid], "")

    def start(self, cid: str) -> None:
        p = self.rt("start", cid)
        if p.rc != 0:
            raise Fail(f"start failed: {p}")

    def state(self, cid: str) -> dict:
        p = self.rt("state", cid)
        if p.rc != 0:
            raise Fail(f"state failed: {p}")
        try:
            return json.loads(p.out)
        except ValueError:
            raise Fail(f"state printed no JSON: {p.out[:200]!r}") from None

    def status(self, cid: str) -> str:
        return self.state(cid).get("status", "")

    def kill(self, cid: str, sig: str = "KILL") -> None:
        p = self.rt("kill", cid, sig)
        if p.rc != 0:
            raise Fail(f"kill failed: {p}")

    def delete(self, cid: str, force: bool = False) -> None:
        p = self.rt("delete", *(["--force"] if force else []), cid)
        if p.rc != 0:
            raise Fail(f"delete failed: {p}")

    def wait_exit(self, cid: str, timeout: float = 10) -> int | None:
        """Wait for the container process to exit; its exit status when it was re-parented
        to us (we are a child subreaper), else None."""
        pid = self.pids[cid]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                got, st = os.waitpid(pid, os.WNOHANG)
                if got == pid:
                    return os.waitstatus_to_exitcode(st)
            except ChildProcessError:
                if not alive(pid):
                    return None
            time.sleep(0.01)
        raise Fail(f"the container process {pid} did not exit within {timeout}s")

    def wait_status(self, cid: str, status: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            last = self.status(cid)
            if last == status:
                return
            time.sleep(0.05)
        raise Fail(f"status stayed {last!r}, expected {status!r}")

    def run(self, b: Bundle, timeout: float = 10) -> Run:
        """create, start, wait for the exit, delete: the whole lifecycle of one container."""
        cid = self.create(b)
        self.start(cid)
        rc = self.wait_exit(cid, timeout)
        out = self.output(cid)
        self.delete(cid)
        return Run(rc, out, b, cid)

    def ok_run(self, b: Bundle, timeout: float = 10) -> Run:
        r = self.run(b, timeout)
        if r.rc not in (0, None):
            raise Fail(f"the container process exited {r.rc}: {r.out.strip()[-300:]}")
        return r

    def expect_error(self, *args: str, what: str) -> Proc:
        p = self.rt(*args)
        check(p.rc != 0, f"`{' '.join(args)}` succeeded although {what}")
        return p

    def skip(self, why: str) -> None:
        raise Skip(why)

    # -- cleanup -----------------------------------------------------------------------------------
    def assert_gone(self, cid: str, when: str) -> None:
        p = self.rt("state", cid)
        check(p.rc != 0, f"the container still exists {when} (state: {p.out.strip()[:100]})")
        left = self.leftover_cgroups(cid)
        check(not left, f"cgroups left {when}: {left}")
        others = {p for c, p in self.pids.items() if c != cid}
        procs = [p for p in our_children() if p not in others]
        check(not procs, f"processes left {when}: {procs}")

    def leftover_cgroups(self, cid: str) -> list[str]:
        cg = self.cgpaths.get(cid)
        if not cg or not cg.startswith(f"/{CGROUP_PARENT}/"):
            return []
        return [p for p in self.s.cg.paths_for(cg) if os.path.isdir(p)]

    def close(self) -> list[str]:
        """Undo everything; return what the runtime left behind (each is a failure)."""
        leaks: list[str] = []
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception as e:  # noqa: BLE001 - cleanup goes on
                leaks.append(f"cleanup: {e}")
        for cid in self.ids:
            p = self.rt("delete", "--force", cid)
            if self.rt("state", cid).rc == 0:
                leaks.append(f"container {cid} survived delete --force ({p.err.strip()[:100]})")
        for pid in our_children():
            leaks.append(f"process {pid} ({read(f'/proc/{pid}/cmdline', '').replace(chr(0), ' ')[:60]})")
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.01) if leaks else None
        reap_all()
        for cid in self.ids:
            for d in self.leftover_cgroups(cid):
                leaks.append(f"cgroup {d}")
                _remove_cgroup(d)
        for mp in reversed(mount_points_under(str(self.dir))):
            leaks.append(f"mount {mp}")
            subprocess.run(["umount", "-l", mp], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)
        return leaks


def _remove_cgroup(d: str) -> None:
    for p in read(os.path.join(d, "cgroup.procs"), "").split():
        try:
            os.kill(int(p), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass
    for _ in range(50):
        try:
            for sub, _, _ in sorted(os.walk(d), key=lambda x: -len(x[0])):
                os.rmdir(sub)
            return
        except OSError:
            time.sleep(0.02)


# ---------------------------------------------------------------------------------------------
# helpers for the cases

def inside_mounts(r: Run | str) -> list[dict]:
    return parse_mountinfo(r.out if isinstance(r, Run) else r)


def find_mount(mounts: list[dict], mp: str) -> dict:
    found = [m for m in mounts if m["mp"] == mp]
    check(bool(found), f"no mount at {mp} inside the container")
    return found[-1]


def kv_lines(text: str) -> dict[str, str]:
    out = {}
    for line in text.splitlines():
        k, sep, v = line.partition("=")
        if sep:
            out[k.strip()] = v.strip()
    return out


class ConsoleSocket:
    """The --console-socket peer: receives the pty master the runtime sends (one SCM_RIGHTS fd)."""

    def __init__(self, t: T) -> None:
        self.path = str(t.dir / "console.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(1)
        self.sock.settimeout(15)
        self.master: int | None = None
        self.name = ""
        self.error = ""
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()
        t.defer(self.close)

    def _accept(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                msg, fds, _, _ = socket.recv_fds(conn, 4096, 4)
                self.name = msg.decode(errors="replace")
                if fds:
                    self.master = fds[0]
                    for fd in fds[1:]:
                        os.close(fd)
        except OSError as e:
            self.error = str(e)

    def wait(self) -> int:
        self.thread.join(15)
        check(self.master is not None, f"no pty master arrived on the console socket {self.error}")
        return self.master  # type: ignore[return-value]

    def close(self) -> None:
        self.sock.close()
        if self.master is not None:
            os.close(self.master)
            self.master = None


def hook(script: str, *, path: str = "/bin/sh", timeout: int | None = None,
         env: list[str] | None = None) -> dict:
    h = {"path": path, "args": ["sh", "-c", script]}
    if env is not None:
        h["env"] = env
    if timeout is not None:
        h["timeout"] = timeout
    return h


# =============================================================================================
# lifecycle/state (runtime.md)

S = "lifecycle/state"


@case(S, "state.created", "create leaves a container in state created with the state fields",
      "runtime.md#query-state", "This operation MUST return the state of a container as specified in the State section.")
def _(t: T):
    b = t.bundle("sleep", "10")
    b.config["annotations"] = {"org.example.conformance": "yes"}
    cid = t.create(b)
    st = t.state(cid)
    eq(st.get("id"), cid, "state.id")
    eq(st.get("status"), "created", "state.status")
    check(isinstance(st.get("pid"), int) and st["pid"] > 0, f"state.pid {st.get('pid')!r} is no pid")
    check(alive(st["pid"]), f"state.pid {st['pid']} is not a live process")
    eq(st.get("bundle"), str(b.path), "state.bundle")
    check(isinstance(st.get("ociVersion"), str) and st["ociVersion"], "state.ociVersion is empty")


@case(S, "state.schema", "the state JSON adheres to schema/state-schema.json",
      "runtime.md#state", "When serialized in JSON, the format MUST adhere to the JSON Schema schema/state-schema.json.")
def _(t: T):
    b = t.bundle("sleep", "10")
    b.config["annotations"] = {"org.example.a": "1", "org.example.b": "two"}
    cid = t.create(b)
    for phase in ("created", "running", "stopped"):
        if phase == "running":
            t.start(cid)
        if phase == "stopped":
            t.kill(cid, "KILL")
            t.wait_exit(cid)
        st = t.state(cid)
        for k in ("ociVersion", "id", "status", "bundle"):
            check(k in st, f"{phase}: required property {k} missing")
        check(re.fullmatch(r"\d+\.\d+\.\d+(-[0-9A-Za-z.+-]+)?(\+[0-9A-Za-z.-]+)?", st["ociVersion"]) is not None,
              f"{phase}: ociVersion {st['ociVersion']!r} is not SemVer")
        check(isinstance(st["id"], str), f"{phase}: id is not a string")
        check(st["status"] in STATUSES, f"{phase}: status {st['status']!r} not in {STATUSES}")
        eq(st["status"], phase, "status")
        if "pid" in st:
            check(isinstance(st["pid"], int) and st["pid"] >= 0, f"{phase}: pid {st['pid']!r} is not an integer >= 0")
        check(isinstance(st["bundle"], str), f"{phase}: bundle is not a string")
        ann = st.get("annotations", {})
        check(isinstance(ann, dict) and all(isinstance(k, str) and k and isinstance(v, str)
                                            for k, v in ann.items()),
              f"{phase}: annotations {ann!r} is not a map of strings")


@case(S, "create.not_run", "the user program does not run at create",
      "runtime.md#create", "process.args MUST NOT be applied until triggered by the start operation.")
def _(t: T):
    b = t.bundle().sh("echo ran > /out/ran")
    cid = t.create(b)
    time.sleep(0.3)
    check(not (b.out / "ran").exists(), "the program ran before start")
    eq(t.status(cid), "created", "status after create")


@case(S, "start.runs", "start runs the program given by process",
      "runtime.md#start", "This operation MUST run the user-specified program as specified by process.")
def _(t: T):
    b = t.bundle().args("sh", "-c", "echo \"$0:$1\" > /out/ran", "zero", "one")
    cid = t.create(b)
    t.start(cid)
    t.wait_exit(cid)
    eq(read(b.out / "ran", "").strip(), "zero:one", "what the program wrote")


@case(S, "state.running", "a started container whose program runs is running",
      "runtime.md#state", "running: the container process has executed the user-specified program but has not exited")
def _(t: T):
    cid = t.create(t.bundle("sleep", "10"))
    t.start(cid)
    eq(t.status(cid), "running", "status after start")


@case(S, "state.stopped", "a container whose process exited is stopped",
      "runtime.md#state", "stopped: the container process has exited")
def _(t: T):
    cid = t.create(t.bundle("true"))
    t.start(cid)
    t.wait_exit(cid)
    t.wait_status(cid, "stopped", 5)


@case(S, "state.pid", "state.pid is the container process, as seen from the runtime's pid namespace",
      "runtime.md#state", "pid ... is the ID of the container process. For hooks executed in the runtime namespace, it is the pid as seen by the runtime.")
def _(t: T):
    cid = t.create(t.bundle("sleep", "10"))
    t.start(cid)
    pid = t.state(cid)["pid"]
    eq(read(f"/proc/{pid}/cmdline").split("\0")[:2], ["sleep", "10"], f"/proc/{pid}/cmdline")
    check(ns_inode(pid, "pid") != ns_inode("self", "pid"), "the process is not in a new pid namespace")
    eq(status_field(pid, "NSpid").split()[-1], "1", "its pid inside the container")


@case(S, "state.bundle_absolute", "state.bundle is absolute even when create got a relative path",
      "runtime.md#state", "bundle (string, REQUIRED) is the absolute path to the container's bundle directory.")
def _(t: T):
    b = t.bundle("sleep", "10")
    cid = t.create(b, cwd=str(b.path.parent), bundle_arg=b.path.name)
    eq(t.state(cid).get("bundle"), str(b.path), "state.bundle")


@case(S, "state.annotations", "state.annotations are the config's annotations",
      "runtime.md#state", "annotations (map, OPTIONAL) contains the list of annotations associated with the container.")
def _(t: T):
    b = t.bundle("true")
    ann = {"org.example.key": "value", "com.example.other": "x y"}
    b.config["annotations"] = ann
    cid = t.create(b)
    eq(t.state(cid).get("annotations"), ann, "state.annotations")


@case(S, "create.config_frozen", "changing config.json after create does not affect the container",
      "runtime.md#lifecycle", "Any updates to config.json after this step MUST NOT affect the container.")
def _(t: T):
    b = t.bundle().sh("echo original > /out/which; hostname > /out/host")
    cid = t.create(b)
    b.sh("echo changed > /out/which")
    b.config["hostname"] = "changed-host"
    b.write()
    t.start(cid)
    t.wait_exit(cid)
    eq(read(b.out / "which", "").strip(), "original", "the program that ran")
    eq(read(b.out / "host", "").strip(), "oci-conformance", "the hostname")


@case(S, "kill.signal", "kill delivers the signal to the container process",
      "runtime.md#kill", "This operation MUST send the specified signal to the container process.")
def _(t: T):
    b = t.bundle().sh("trap 'echo USR1 > /out/sig; exit 3' USR1; touch /out/ready; "
                      "while :; do sleep 0.05; done")
    cid = t.create(b)
    t.start(cid)
    _wait_exists(b.out / "ready")
    t.kill(cid, "USR1")
    rc = t.wait_exit(cid)
    eq(read(b.out / "sig", "").strip(), "USR1", "what the trap recorded")
    check(rc in (3, None), f"exit status {rc}, expected 3 from the trap")


def _wait_exists(path: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise Fail(f"{path.name} did not appear within {timeout}s")
        time.sleep(0.02)


@case(S, "kill.created", "kill also works on a created container",
      "runtime.md#kill", "Attempting to send a signal to a container that is neither created nor running MUST have no effect")
def _(t: T):
    cid = t.create(t.bundle("sleep", "10"))
    t.kill(cid, "KILL")
    t.wait_exit(cid)
    t.wait_status(cid, "stopped", 5)


@case(S, "kill.signal_names", "kill accepts the signal by name and by number",
      "runtime.md#kill", "This operation MUST send the specified signal to the container process.")
def _(t: T):
    for sig, name in (("TERM", "TERM"), ("SIGHUP", "HUP"), ("10", "USR1")):
        b = t.bundle().sh(f"trap 'echo {name} > /out/sig; exit 0' {name}; touch /out/ready; "
                          "while :; do sleep 0.05; done")
        cid = t.create(b)
        t.start(cid)
        _wait_exists(b.out / "ready")
        t.kill(cid, sig)
        t.wait_exit(cid)
        eq(read(b.out / "sig", "").strip(), name, f"kill {sig}")
        t.delete(cid)


@case(S, "delete.resources", "delete removes the container, its process and its cgroup",
      "runtime.md#delete", "Deleting a container MUST delete the resources that were created during the create step.")
def _(t: T):
    cid = t.create(t.bundle("sleep", "10"))
    t.start(cid)
    pid = t.pids[cid]
    cg = [p for p in t.s.cg.paths_for(t.cgpaths[cid]) if os.path.isdir(p)]
    check(bool(cg), f"no cgroup {t.cgpaths[cid]} while the container runs")
    t.kill(cid, "KILL")
    t.wait_exit(cid)
    t.delete(cid)
    t.assert_gone(cid, "after delete")
    check(not alive(pid), "the container process survived delete")
    p = t.rt("list", "--format", "json")
    check(cid not in p.out, "the container is still listed")


@case(S, "delete.keeps_foreign", "delete keeps what the container used but did not create",
      "runtime.md#delete", "Note that resources associated with the container, but not created by this container, MUST NOT be deleted.")
def _(t: T):
    if not shutil.which("ip"):
        t.skip("no ip(8) to make a named network namespace")
    netns = f"oci-conf-{uuid.uuid4().hex[:8]}"
    if subprocess.run(["ip", "netns", "add", netns], capture_output=True).returncode != 0:
        t.skip("ip netns add failed")
    t.defer(lambda: subprocess.run(["ip", "netns", "del", netns], capture_output=True))
    src = t.dir / "shared-src"
    src.mkdir()
    (src / "keep").write_text("keep")
    b = t.bundle("true").mount("/shared", "bind", str(src), ["bind"])
    b.linux["namespaces"] = [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"},
                             {"type": "network", "path": f"/run/netns/{netns}"}]
    r = t.ok_run(b)
    check(os.path.exists(f"/run/netns/{netns}"), "the joined network namespace was removed")
    check((src / "keep").exists(), "the bind-mount source lost its content")
    check((b.rootfs / "bin" / "busybox").exists() and (b.path / "config.json").exists(),
          "the bundle lost its content")
    del r


@case(S, "scope.independent", "operations on one container leave another one alone",
      "runtime.md#scope-of-a-container", "The entity using a runtime to create a container MUST be able to use the operations defined in this specification against that same container.")
def _(t: T):
    b = t.bundle("sleep", "10")
    a = t.create(b)
    c = t.create(b)
    t.start(a)
    t.start(c)
    t.kill(a, "KILL")
    t.wait_exit(a)
    t.wait_status(a, "stopped")
    eq(t.status(c), "running", "the other container's status")
    t.delete(a)
    eq(t.status(c), "running", "the other container's status after delete")


# =============================================================================================
# operations errors (runtime.md)

E = "operations errors"


@case(E, "state.no_id", "state without an id is an error",
      "runtime.md#query-state", "This operation MUST generate an error if it is not provided the ID of a container.")
def _(t: T):
    t.expect_error("state", what="no id was given")


@case(E, "state.unknown", "state of an unknown id is an error",
      "runtime.md#query-state", "Attempting to query a container that does not exist MUST generate an error.")
def _(t: T):
    t.expect_error("state", "oci-no-such-container", what="the container does not exist")


@case(E, "create.no_id", "create without an id is an error and creates nothing",
      "runtime.md#create", "This operation MUST generate an error if it is not provided a path to the bundle and the container ID to associate with the container.")
def _(t: T):
    b = t.bundle("true")
    b.write()
    t.expect_error("create", "--bundle", str(b.path), what="no id was given")
    eq(t.rt("list", "-q").out.split(), [], "containers listed")
    check(not our_children(), "a process was left")


@case(E, "create.no_bundle", "create without a bundle (and no config.json in the cwd) is an error",
      "runtime.md#create", "This operation MUST generate an error if it is not provided a path to the bundle and the container ID to associate with the container.")
def _(t: T):
    empty = t.dir / "empty"
    empty.mkdir()
    cid = t.new_id()
    p = t.rt("create", cid, cwd=str(empty))
    check(p.rc != 0, "create succeeded without a bundle")
    t.assert_gone(cid, "after the failed create")


@case(E, "create.duplicate_id", "a second create with the same id fails and leaves the first alone",
      "runtime.md#create", "If the ID provided is not unique across all containers within the scope of the runtime ... MUST generate an error and a new container MUST NOT be created.")
def _(t: T):
    b1, b2 = t.bundle("sleep", "10"), t.bundle("sleep", "10")
    cid = t.create(b1)
    before = t.state(cid)
    b2.linux["cgroupsPath"] = f"/{CGROUP_PARENT}/{cid}-second"
    b2.write()
    p = t.rt("create", "--bundle", str(b2.path), cid)
    check(p.rc != 0, "the second create succeeded")
    after = t.state(cid)
    eq((after["pid"], after["bundle"], after["status"]), (before["pid"], before["bundle"], "created"),
       "the first container")
    check(not any(os.path.isdir(d) for d in t.s.cg.paths_for(f"/{CGROUP_PARENT}/{cid}-second")),
          "the failed create left its cgroup")
    check(our_children() == [before["pid"]], f"processes: {our_children()}")


@case(E, "create.invalid_id", "an invalid id is an error and creates nothing",
      "runtime.md#create", "... or is not valid in any other way, the implementation MUST generate an error and a new container MUST NOT be created.")
def _(t: T):
    b = t.bundle("true")
    b.linux.pop("cgroupsPath")
    b.write()
    for bad in ("../escape", "a/b", ""):
        p = t.rt("create", "--bundle", str(b.path), bad)
        check(p.rc != 0, f"create accepted the id {bad!r}")
    check(not (t.s.work / "escape").exists(), "../escape created something outside the root")
    eq(t.rt("list", "-q").out.split(), [], "containers listed")
    check(not our_children(), "a process was left")


@case(E, "create.cannot_apply", "a config that cannot be applied fails create and leaves nothing",
      "runtime.md#create", "If the runtime cannot apply a property as specified in the configuration, it MUST generate an error and a new container MUST NOT be created.")
def _(t: T):
    b = t.bundle("true").mount("/data", "bind", str(t.dir / "no-such-source"), ["bind"])
    t.create_fails(b, "a bind-mount source does not exist")


@case(E, "errors.no_trace", "a failed create leaves the environment as it was (no mounts, cgroups, processes, state)",
      "runtime.md#errors", "generating an error MUST leave the state of the environment as if the operation were never attempted")
def _(t: T):
    b = t.bundle("/no/such/program")
    b.linux["sysctl"] = {"net.oci.no.such.key": "1"}
    t.create_fails(b, "a sysctl does not exist")
    b2 = t.bundle("true")
    b2.config["root"]["path"] = "no-such-rootfs"
    t.create_fails(b2, "root.path does not exist")


@case(E, "start.no_id", "start without an id is an error",
      "runtime.md#start", "This operation MUST generate an error if it is not provided the container ID.")
def _(t: T):
    t.expect_error("start", what="no id was given")


@case(E, "start.unknown", "start of an unknown id is an error",
      "runtime.md#start", "Attempting to start a container that is not created MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    t.expect_error("start", "oci-no-such-container", what="the container does not exist")


@case(E, "start.running", "start of a running container is an error and has no effect",
      "runtime.md#start", "Attempting to start a container that is not created MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    b = t.bundle().sh("echo run >> /out/count; sleep 10")
    cid = t.create(b)
    t.start(cid)
    _wait_exists(b.out / "count")
    pid = t.state(cid)["pid"]
    t.expect_error("start", cid, what="the container is running")
    time.sleep(0.2)
    eq(read(b.out / "count").split(), ["run"], "runs of the program")
    st = t.state(cid)
    eq((st["status"], st["pid"]), ("running", pid), "status and pid")


@case(E, "start.stopped", "start of a stopped container is an error and has no effect",
      "runtime.md#start", "Attempting to start a container that is not created MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    b = t.bundle().sh("echo run >> /out/count")
    cid = t.create(b)
    t.start(cid)
    t.wait_exit(cid)
    t.expect_error("start", cid, what="the container is stopped")
    time.sleep(0.2)
    eq(read(b.out / "count").split(), ["run"], "runs of the program")
    eq(t.status(cid), "stopped", "status")


@case(E, "start.no_process", "a container created without process cannot be started",
      "runtime.md#start", "This operation MUST generate an error if process was not set.")
def _(t: T):
    b = t.bundle()
    del b.config["process"]
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    check(p.rc == 0, f"create refused a config without process, which config.md makes REQUIRED only "
                     f"when start is called: {p}")
    t.pids[cid] = t.state(cid).get("pid", 0)
    t.expect_error("start", cid, what="process was not set")


@case(E, "kill.no_id", "kill without an id is an error",
      "runtime.md#kill", "This operation MUST generate an error if it is not provided the container ID.")
def _(t: T):
    t.expect_error("kill", what="no id was given")


@case(E, "kill.unknown", "kill of an unknown id is an error",
      "runtime.md#kill", "Attempting to send a signal to a container that is neither created nor running MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    t.expect_error("kill", "oci-no-such-container", "KILL", what="the container does not exist")


@case(E, "kill.stopped", "kill of a stopped container is an error and has no effect",
      "runtime.md#kill", "Attempting to send a signal to a container that is neither created nor running MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    cid = t.create(t.bundle("true"))
    t.start(cid)
    t.wait_exit(cid)
    t.wait_status(cid, "stopped")
    t.expect_error("kill", cid, "TERM", what="the container is stopped")
    eq(t.status(cid), "stopped", "status")


@case(E, "delete.no_id", "delete without an id is an error",
      "runtime.md#delete", "This operation MUST generate an error if it is not provided the container ID.")
def _(t: T):
    t.expect_error("delete", what="no id was given")


@case(E, "delete.created", "delete of a created container is an error and has no effect",
      "runtime.md#delete", "Attempting to delete a container that is not stopped MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    b = t.bundle().sh("echo ran > /out/ran")
    cid = t.create(b)
    pid = t.pids[cid]
    t.expect_error("delete", cid, what="the container is created, not stopped")
    st = t.state(cid)
    eq((st["status"], st["pid"]), ("created", pid), "status and pid")
    check(alive(pid), "the container process is gone")
    t.start(cid)
    t.wait_exit(cid)
    eq(read(b.out / "ran", "").strip(), "ran", "the program after start")


@case(E, "delete.running", "delete of a running container is an error and has no effect",
      "runtime.md#delete", "Attempting to delete a container that is not stopped MUST have no effect on the container and MUST generate an error.")
def _(t: T):
    cid = t.create(t.bundle("sleep", "10"))
    t.start(cid)
    pid = t.pids[cid]
    t.expect_error("delete", cid, what="the container is running")
    st = t.state(cid)
    eq((st["status"], st["pid"]), ("running", pid), "status and pid")
    check(alive(pid), "the container process is gone")


# =============================================================================================
# config: root (config.md)

R = "config: root"


@case(R, "root.relative_and_absolute", "root.path may be relative to the bundle or absolute",
      "config.md#root", "On POSIX platforms, path is either an absolute path or a relative path to the bundle.")
def _(t: T):
    for path in ("rootfs", None):
        b = t.bundle().sh("cat /etc/marker")
        (b.rootfs / "etc" / "marker").write_text("this rootfs\n")
        b.config["root"]["path"] = path or str(b.rootfs)
        eq(t.ok_run(b).out.strip(), "this rootfs", f"root.path {b.config['root']['path']}")


@case(R, "root.missing", "a root.path that is not a directory is an error",
      "config.md#root", "A directory MUST exist at the path declared by the field.")
def _(t: T):
    b = t.bundle("true")
    b.config["root"]["path"] = "no-such-dir"
    t.create_fails(b, "root.path does not exist")
    b2 = t.bundle("true")
    (b2.path / "afile").write_text("")
    b2.config["root"]["path"] = "afile"
    t.create_fails(b2, "root.path is a file")


@case(R, "root.readonly", "root.readonly makes the root filesystem read-only",
      "config.md#root", "If true then the root filesystem MUST be read-only inside the container")
def _(t: T):
    b = t.bundle().sh("touch /newfile 2>&1; echo rc=$?; cat /proc/self/mountinfo")
    b.config["root"]["readonly"] = True
    r = t.ok_run(b)
    check("rc=0" not in r.out, "touch /newfile succeeded")
    check("Read-only file system" in r.out, f"touch did not fail with EROFS: {r.out[:200]}")
    check("ro" in find_mount(inside_mounts(r.out.split("\n", 2)[-1]), "/")["opts"], "/ is not mounted ro")
    check(not (b.rootfs / "newfile").exists(), "the file reached the rootfs")


@case(R, "root.readonly_default", "without readonly the root filesystem is writable",
      "config.md#root", "readonly (bool, OPTIONAL) If true then the root filesystem MUST be read-only inside the container, defaults to false.")
def _(t: T):
    b = t.bundle().sh("touch /newfile && echo ok")
    del b.config["root"]["readonly"]
    eq(t.ok_run(b).out.strip(), "ok", "touch /newfile")
    check((b.rootfs / "newfile").exists(), "the file is not in the rootfs")


# =============================================================================================
# config: mounts (config.md)

M = "config: mounts"


@case(M, "mounts.order", "mounts are made in the listed order",
      "config.md#mounts", "The runtime MUST mount entries in the listed order.")
def _(t: T):
    b = t.bundle().sh("stat -c %a /same; cat /proc/self/mountinfo")
    b.mount("/a", "tmpfs", "tmpfs", ["size=1m"]).mount("/a/b", "tmpfs", "tmpfs", ["size=1m"])
    b.mount("/same", "tmpfs", "tmpfs", ["mode=711"]).mount("/same", "tmpfs", "tmpfs", ["mode=750"])
    r = t.ok_run(b)
    first, _, rest = r.out.partition("\n")
    eq(first.strip(), "750", "mode of /same (the last mount on it is on top)")
    mps = [m["mp"] for m in inside_mounts(rest)]
    check("/a" in mps and "/a/b" in mps, f"missing /a or /a/b in {mps}")
    check(mps.index("/a") < mps.index("/a/b"), "/a/b was mounted before /a")


@case(M, "mounts.relative_destination", "a relative destination is taken relative to /",
      "config.md#mounts", "it MAY be a relative path, in which case it MUST be interpreted as relative to \"/\".")
def _(t: T):
    b = t.bundle().sh("cat /proc/self/mountinfo")
    b.mount("relmnt", "tmpfs", "tmpfs", ["size=1m"])
    find_mount(inside_mounts(t.ok_run(b)), "/relmnt")


@case(M, "mounts.bind", "bind mounts a host directory and a host file",
      "config.md#mounts", "bind | MUST | Bind mount")
def _(t: T):
    src = t.dir / "src"
    src.mkdir()
    (src / "hello").write_text("from host\n")
    f = t.dir / "file"
    f.write_text("a file\n")
    b = t.bundle().sh("cat /data/hello /etc/bound; echo from container > /data/back")
    b.mount("/data", "bind", str(src), ["bind"]).mount("/etc/bound", "bind", str(f), ["bind"])
    eq(t.ok_run(b).out.split("\n")[:2], ["from host", "a file"], "what the container read")
    eq(read(src / "back", "").strip(), "from container", "what the host sees")


def _host_submount(t: T) -> Path:
    """A host directory with a tmpfs mounted on src/sub (unmounted at cleanup)."""
    src = t.dir / "src"
    (src / "sub").mkdir(parents=True)
    (src / "top").write_text("top\n")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(src / "sub")],
                      capture_output=True).returncode != 0:
        t.skip("cannot mount a tmpfs on the host")
    t.defer(lambda: subprocess.run(["umount", "-l", str(src / "sub")], capture_output=True))
    (src / "sub" / "inner").write_text("inner\n")
    return src


@case(M, "mounts.rbind", "rbind is recursive, bind is not",
      "config.md#mounts", "rbind | MUST | Recursive bind mount")
def _(t: T):
    src = _host_submount(t)
    b = t.bundle().sh("cat /r/sub/inner 2>/dev/null || echo none; cat /n/sub/inner 2>/dev/null || echo none")
    b.mount("/r", "bind", str(src), ["rbind"]).mount("/n", "bind", str(src), ["bind"])
    eq(t.ok_run(b).out.split(), ["inner", "none"], "/r/sub/inner and /n/sub/inner")


@case(M, "mounts.flags", "the mount(8) flag options are applied",
      "config.md#mounts", "ro, nosuid, nodev, noexec, noatime, nodiratime ... | MUST | [^1] (mount(8))")
def _(t: T):
    b = t.bundle().sh("cat /proc/self/mountinfo")
    b.mount("/m1", "tmpfs", "tmpfs", ["ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime"])
    b.mount("/m2", "tmpfs", "tmpfs", ["rw", "suid", "dev", "exec", "relatime"])
    b.mount("/m3", "tmpfs", "tmpfs", ["nosuid", "strictatime"])
    ms = inside_mounts(t.ok_run(b))
    m1, m2, m3 = (find_mount(ms, p)["opts"] for p in ("/m1", "/m2", "/m3"))
    for o in ("ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime"):
        check(o in m1, f"/m1 lacks {o}: {sorted(m1)}")
    check("rw" in m2 and not m2 & {"nosuid", "nodev", "noexec"} and "relatime" in m2,
          f"/m2 options {sorted(m2)}")
    check("nosuid" in m3 and not m3 & {"relatime", "noatime"}, f"/m3 options {sorted(m3)} (strictatime)")


@case(M, "mounts.bind_ro", "a read-only bind mount cannot be written",
      "config.md#mounts", "ro | MUST | [^1] (mount(8))")
def _(t: T):
    src = t.dir / "src"
    src.mkdir()
    b = t.bundle().sh("touch /data/x 2>&1; echo rc=$?")
    b.mount("/data", "bind", str(src), ["bind", "ro"])
    r = t.ok_run(b)
    check("Read-only file system" in r.out, f"write did not fail with EROFS: {r.out.strip()}")
    check(not (src / "x").exists(), "the file reached the host")


@case(M, "mounts.fs_options", "unknown options are passed on as filesystem options",
      "config.md#mounts", "Runtimes SHOULD treat unknown options as filesystem-specific ones", level="SHOULD")
def _(t: T):
    b = t.bundle().sh("stat -c %a /m; cat /proc/self/mountinfo")
    b.mount("/m", "tmpfs", "tmpfs", ["size=1m", "mode=0710", "nr_inodes=100"])
    r = t.ok_run(b)
    first, _, rest = r.out.partition("\n")
    eq(first.strip(), "710", "mode of /m")
    sup = find_mount(inside_mounts(rest), "/m")["super"]
    check("size=1024k" in sup and "nr_inodes=100" in sup, f"super options {sorted(sup)}")


@case(M, "mounts.propagation", "propagation options set the mount's propagation type",
      "config.md#mounts", "shared, private, unbindable ... | MUST | Bind mount propagation")
def _(t: T):
    b = t.bundle().sh("cat /proc/self/mountinfo")
    b.mount("/shr", "tmpfs", "tmpfs", ["size=1m", "shared"])
    b.mount("/unb", "tmpfs", "tmpfs", ["size=1m", "unbindable"])
    b.mount("/prv", "tmpfs", "tmpfs", ["size=1m", "private"])
    ms = inside_mounts(t.ok_run(b))
    shr, unb, prv = (find_mount(ms, p)["optional"] for p in ("/shr", "/unb", "/prv"))
    check(any(o.startswith("shared:") for o in shr), f"/shr is not shared: {shr}")
    check("unbindable" in unb, f"/unb is not unbindable: {unb}")
    check(not prv, f"/prv is not private: {prv}")


@case(M, "mounts.rro", "rro makes a recursive bind mount read-only throughout",
      "config.md#mounts", "rro | SHOULD | Recursive ro", level="SHOULD")
def _(t: T):
    src = _host_submount(t)
    b = t.bundle().sh("touch /r/x 2>/dev/null; echo top=$?; touch /r/sub/x 2>/dev/null; echo sub=$?")
    b.mount("/r", "bind", str(src), ["rbind", "rro"])
    eq(t.ok_run(b).out.split(), ["top=1", "sub=1"], "writes on /r and /r/sub")


@case(M, "mounts.nosymfollow", "nosymfollow is applied",
      "config.md#mounts", "nosymfollow | SHOULD | (Introduced in kernel 5.10, util-linux 2.38)", level="SHOULD")
def _(t: T):
    b = t.bundle().sh("cat /proc/self/mountinfo")
    b.mount("/nsf", "tmpfs", "tmpfs", ["size=1m", "nosymfollow"])
    opts = find_mount(inside_mounts(t.ok_run(b)), "/nsf")["opts"]
    check("nosymfollow" in opts, f"/nsf options {sorted(opts)}")


@case(M, "mounts.idmap", "an idmap mount is idmapped (or create fails), never mounted unmapped",
      "config.md#mounts", "idmap ... Indicates that the mount MUST have an idmapping applied.")
def _(t: T):
    src = t.dir / "src"
    src.mkdir()
    (src / "f").write_text("x")
    b = t.bundle().sh("stat -c %u /data/f")
    b.config["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                               "options": ["bind", "idmap"],
                               # as runc and crun read a mount's mapping (runc's idmap.bats):
                               # what the filesystem has as containerID shows as hostID
                               "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                               "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc != 0:
        t.notes.append("create refused the idmap mount")
        t.assert_gone(cid, "after the refused create")
        return
    t.pids[cid] = t.state(cid)["pid"]
    t.start(cid)
    t.wait_exit(cid)
    eq(t.output(cid).strip(), "1000", "owner of a host-root file under the idmapped mount")


# =============================================================================================
# config: process (config.md)

P = "config: process"


@case(P, "process.args_path", "args[0] is looked up like execvp's file, args are argv",
      "config.md#process", "at least one entry is REQUIRED (non-Windows), and that entry is used with the same semantics as execvp's file.")
def _(t: T):
    b = t.bundle("echo", "hello", "two words")
    eq(t.ok_run(b).out, "hello two words\n", "echo's output")


@case(P, "process.args_empty", "empty args is an error",
      "config.md#valid-values", "Runtimes MUST generate an error when invalid or unsupported values are encountered. (args: at least one entry is REQUIRED)")
def _(t: T):
    b = t.bundle()
    b.process["args"] = []
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc == 0:
        t.pids[cid] = t.state(cid)["pid"]
        check(t.rt("start", cid).rc != 0, "create and start accepted empty process.args")
    else:
        t.assert_gone(cid, "after the failed create")


@case(P, "process.cwd", "the process starts in cwd",
      "config.md#process", "cwd (string, REQUIRED) is the working directory that will be set for the executable.")
def _(t: T):
    b = t.bundle("pwd")
    (b.rootfs / "work" / "dir").mkdir(parents=True)
    b.process["cwd"] = "/work/dir"
    eq(t.ok_run(b).out.strip(), "/work/dir", "pwd")


@case(P, "process.cwd_relative", "a relative cwd is an error",
      "config.md#process", "cwd ... This value MUST be an absolute path.")
def _(t: T):
    b = t.bundle("pwd")
    b.process["cwd"] = "tmp"
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc == 0:
        t.pids[cid] = t.state(cid)["pid"]
        check(t.rt("start", cid).rc != 0, "a relative cwd was accepted")
    else:
        t.assert_gone(cid, "after the failed create")


@case(P, "process.terminal", "terminal: the process gets a pty (sent over --console-socket) of consoleSize",
      "config.md#process", "terminal (bool, OPTIONAL) specifies whether a terminal is attached to the process; consoleSize ... specifies the console size in characters of the terminal.")
def _(t: T):
    b = t.bundle().sh("tty > /out/tty; stty size > /out/size; test -t 0 && test -t 1 && echo yes > /out/isatty")
    b.process["terminal"] = True
    b.process["consoleSize"] = {"height": 33, "width": 77}
    cs = ConsoleSocket(t)
    cid = t.create(b, extra=("--console-socket", cs.path))
    cs.wait()
    t.start(cid)
    t.wait_exit(cid)
    check(read(b.out / "tty", "").startswith("/dev/pts/") or read(b.out / "tty", "").startswith("/dev/console"),
          f"tty: {read(b.out / 'tty', '')!r}")
    eq(read(b.out / "size", "").strip(), "33 77", "stty size")
    eq(read(b.out / "isatty", "").strip(), "yes", "stdin/stdout are terminals")


@case(P, "process.console_size_ignored", "consoleSize without terminal is ignored",
      "config.md#process", "Runtimes MUST ignore consoleSize if terminal is false or unset.")
def _(t: T):
    b = t.bundle("echo", "fine")
    b.process["consoleSize"] = {"height": 10, "width": 20}
    eq(t.ok_run(b).out.strip(), "fine", "output")


@case(P, "process.oom_score_adj", "oomScoreAdj is set",
      "config.md#posix-process", "If oomScoreAdj is set, the runtime MUST set oom_score_adj to the given value.")
def _(t: T):
    b = t.bundle("cat", "/proc/self/oom_score_adj")
    b.process["oomScoreAdj"] = 345
    eq(t.ok_run(b).out.strip(), "345", "oom_score_adj")


@case(P, "process.oom_score_adj_unset", "without oomScoreAdj the caller's value is kept",
      "config.md#posix-process", "If oomScoreAdj is not set, the runtime MUST NOT change the value of oom_score_adj.")
def _(t: T):
    def preexec() -> None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("123")
    b = t.bundle("cat", "/proc/self/oom_score_adj")
    cid = t.create(b, preexec_fn=preexec)
    t.start(cid)
    t.wait_exit(cid)
    eq(t.output(cid).strip(), "123", "oom_score_adj (the runtime was started with 123)")


@case(P, "process.no_new_privileges", "noNewPrivileges sets no_new_privs",
      "config.md#linux-process", "noNewPrivileges (bool, OPTIONAL) setting noNewPrivileges to true prevents the process from gaining additional privileges.")
def _(t: T):
    b = t.bundle("grep", "NoNewPrivs", "/proc/self/status")
    out = t.ok_run(b).out.split()
    eq(out[-1:], ["1"], "NoNewPrivs with noNewPrivileges true")


@case(P, "process.scheduler", "scheduler is applied (or create fails), never ignored",
      "config.md#valid-values", "scheduler (object, OPTIONAL) is an object describing the scheduler properties for the process. / Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def _(t: T):
    b = t.bundle("cat", "/proc/self/stat")
    b.process["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc != 0:
        t.notes.append("create refused scheduler")
        t.assert_gone(cid, "after the refused create")
        return
    t.pids[cid] = t.state(cid)["pid"]
    t.start(cid)
    t.wait_exit(cid)
    st = t.output(cid)
    fields = st[st.rfind(")") + 2:].split()
    eq((fields[38], fields[16]), ("3", "7"), "(policy, nice) from /proc/self/stat (SCHED_BATCH=3)")


@case(P, "process.io_priority", "ioPriority is applied (or create fails), never ignored",
      "config.md#valid-values", "ioPriority (object, OPTIONAL) configures the I/O priority settings for the container's processes / Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def _(t: T):
    b = t.bundle("ionice")
    b.process["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc != 0:
        t.notes.append("create refused ioPriority")
        t.assert_gone(cid, "after the refused create")
        return
    t.pids[cid] = t.state(cid)["pid"]
    t.start(cid)
    t.wait_exit(cid)
    check(t.output(cid).strip().startswith("idle"), f"ionice: {t.output(cid).strip()!r}")


@case(P, "process.personality", "linux.personality LINUX32 makes uname report a 32-bit machine (or create fails)",
      "config-linux.md#personality", "LINUX32 will set the uname system call to show a 32 bit CPU type, such as i686.")
def _(t: T):
    if os.uname().machine != "x86_64":
        t.skip("the check knows x86_64 only")
    b = t.bundle("uname", "-m")
    b.linux["personality"] = {"domain": "LINUX32"}
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc != 0:
        t.notes.append("create refused personality")
        t.assert_gone(cid, "after the refused create")
        return
    t.pids[cid] = t.state(cid)["pid"]
    t.start(cid)
    t.wait_exit(cid)
    check(re.fullmatch(r"i[3-6]86", t.output(cid).strip()) is not None, f"uname -m: {t.output(cid).strip()!r}")


# =============================================================================================
# config: user (config.md)

U = "config: user"


@case(U, "user.uid_gid", "the process runs as user.uid / user.gid",
      "config.md#posix-platform-user", "uid (int, REQUIRED) specifies the user ID in the container namespace. / gid (int, REQUIRED) specifies the group ID")
def _(t: T):
    b = t.bundle().sh("id -u; id -g; grep -E '^(Uid|Gid):' /proc/self/status")
    b.process["user"] = {"uid": 1000, "gid": 1001}
    out = t.ok_run(b).out.split("\n")
    eq(out[:2], ["1000", "1001"], "id -u, id -g")
    eq(out[2].split()[1:], ["1000"] * 4, "real/effective/saved/fs uid")
    eq(out[3].split()[1:], ["1001"] * 4, "real/effective/saved/fs gid")


@case(U, "user.additional_gids", "additionalGids are the supplementary groups, and only they",
      "config.md#posix-platform-user", "additionalGids (array of ints, OPTIONAL) specifies additional group IDs in the container namespace to be added to the process.")
def _(t: T):
    b = t.bundle("grep", "^Groups:", "/proc/self/status")
    b.process["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 6, 4242]}
    eq(sorted(t.ok_run(b).out.split()[1:], key=int), ["5", "6", "4242"], "Groups")
    b2 = t.bundle("grep", "^Groups:", "/proc/self/status")
    b2.process["user"] = {"uid": 1000, "gid": 1000}
    eq(t.ok_run(b2).out.split()[1:], [], "Groups without additionalGids")


@case(U, "user.umask", "user.umask is the process's umask",
      "config.md#posix-platform-user", "umask (int, OPTIONAL) specifies the umask of the user.")
def _(t: T):
    b = t.bundle().sh("umask; touch /tmp/f; stat -c %a /tmp/f")
    b.process["user"] = {"uid": 0, "gid": 0, "umask": 0o027}
    eq(t.ok_run(b).out.split(), ["0027", "640"], "umask and the mode of a new file")


# =============================================================================================
# config: hostname (config.md)

H = "config: hostname"


@case(H, "hostname.set", "hostname is what the container sees",
      "config.md#hostname", "hostname (string, OPTIONAL) specifies the container's hostname as seen by processes running inside the container.")
def _(t: T):
    b = t.bundle("hostname")
    b.config["hostname"] = "conformance-host"
    eq(t.ok_run(b).out.strip(), "conformance-host", "hostname")
    check(os.uname().nodename != "conformance-host", "the host's hostname changed")


@case(H, "domainname.set", "domainname is what the container sees",
      "config.md#domainname", "domainname (string, OPTIONAL) specifies the container's domainname as seen by processes running inside the container.")
def _(t: T):
    b = t.bundle("cat", "/proc/sys/kernel/domainname")
    b.config["domainname"] = "conformance.test"
    eq(t.ok_run(b).out.strip(), "conformance.test", "domainname")


# =============================================================================================
# config: env (config.md)

V = "config: env"


@case(V, "env.exact", "env is the process's environment",
      "config.md#process", "env (array of strings, OPTIONAL) with the same semantics as IEEE Std 1003.1-2008's environ.")
def _(t: T):
    b = t.bundle("env")
    b.process["env"] = [PATH_ENV, "FOO=bar", "EQ=a=b=c", "EMPTY=", "SPACE=x y"]
    got = t.ok_run(b).out.splitlines()
    for e in b.process["env"]:
        check(e in got, f"{e!r} missing from {got}")
    check(not any(g.startswith(MARKER_ENV) for g in got), "the runtime's own environment leaked in")


@case(V, "env.path_lookup", "args[0] is found through the env's PATH",
      "config.md#process", "that entry is used with the same semantics as execvp's file.")
def _(t: T):
    b = t.bundle("myprog")
    (b.rootfs / "opt" / "bin").mkdir(parents=True)
    (b.rootfs / "opt" / "bin" / "myprog").write_text("#!/bin/sh\necho found me\n")
    (b.rootfs / "opt" / "bin" / "myprog").chmod(0o755)
    b.process["env"] = ["PATH=/opt/bin:/bin"]
    eq(t.ok_run(b).out.strip(), "found me", "output")


# =============================================================================================
# config: rlimits (config.md)

L = "config: rlimits"


def _limits(text: str) -> dict[str, tuple[str, str]]:
    out = {}
    for line in text.splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) >= 3:
            out[parts[0]] = (parts[1], parts[2])
    return out


@case(L, "rlimits.values", "rlimits set soft and hard limits",
      "config.md#posix-process", "rlim.rlim_cur MUST match the configured value. / rlim.rlim_max MUST match the configured value.")
def _(t: T):
    b = t.bundle("cat", "/proc/self/limits")
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
                            {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
                            {"type": "RLIMIT_NPROC", "soft": 1111, "hard": 2222}]
    lim = _limits(t.ok_run(b).out)
    eq(lim.get("Max open files"), ("123", "456"), "NOFILE")
    eq(lim.get("Max core file size"), ("0", "4096"), "CORE")
    eq(lim.get("Max processes"), ("1111", "2222"), "NPROC")


@case(L, "rlimits.unknown", "an unknown rlimit type is an error",
      "config.md#posix-process", "The runtime MUST generate an error for any values which cannot be mapped to a relevant kernel interface.")
def _(t: T):
    b = t.bundle("true")
    b.process["rlimits"] = [{"type": "RLIMIT_NOSUCH", "soft": 1, "hard": 1}]
    t.create_fails(b, "RLIMIT_NOSUCH is no rlimit")


@case(L, "rlimits.duplicate", "a duplicated rlimit type is an error",
      "config.md#posix-process", "If rlimits contains duplicated entries with same type, the runtime MUST generate an error.")
def _(t: T):
    b = t.bundle("true")
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100},
                            {"type": "RLIMIT_NOFILE", "soft": 200, "hard": 200}]
    t.create_fails(b, "RLIMIT_NOFILE is given twice")


# =============================================================================================
# config: caps (config.md)

C = "config: caps"


def _caps(text: str) -> dict[str, int]:
    return {k: int(v, 16) for k, v in kv_lines(text.replace(":\t", "=")).items() if k.startswith("Cap")}


@case(C, "caps.sets", "each capability set is exactly the configured one",
      "config.md#linux-process", "effective / bounding / inheritable / permitted ... an array of ... capabilities that are kept for the process.")
def _(t: T):
    b = t.bundle("grep", "^Cap", "/proc/self/status")
    # uid 0 execs with effective = permitted whatever was set before (capabilities(7)), so the
    # config keeps them equal; permitted, inheritable and bounding all differ.
    b.process["capabilities"] = {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW", "CAP_SETUID"],
        "permitted": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "effective": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
        "inheritable": ["CAP_KILL"]}
    caps = _caps(t.ok_run(b).out)
    for key, field_ in (("bounding", "CapBnd"), ("permitted", "CapPrm"), ("effective", "CapEff"),
                        ("inheritable", "CapInh")):
        eq(hex(caps.get(field_, -1)), hex(cap_mask(b.process["capabilities"][key])), field_)
    eq(caps.get("CapAmb"), 0, "CapAmb")


@case(C, "caps.ambient", "ambient capabilities survive the switch to a non-root user",
      "config.md#linux-process", "ambient (array of strings, OPTIONAL) the ambient field is an array of ambient capabilities that are kept for the process.")
def _(t: T):
    b = t.bundle("grep", "^Cap", "/proc/self/status")
    b.process["user"] = {"uid": 1000, "gid": 1000}
    nb = ["CAP_NET_BIND_SERVICE"]
    b.process["capabilities"] = {k: list(nb) for k in ("bounding", "permitted", "effective",
                                                       "inheritable", "ambient")}
    caps = _caps(t.ok_run(b).out)
    m = cap_mask(nb)
    eq((caps.get("CapAmb"), caps.get("CapEff"), caps.get("CapPrm")), (m, m, m), "CapAmb/CapEff/CapPrm")


@case(C, "caps.none", "an empty capabilities object leaves the process without capabilities",
      "config.md#linux-process", "capabilities (object, OPTIONAL) is an object containing arrays that specifies the sets of capabilities for the process.")
def _(t: T):
    b = t.bundle("grep", "^Cap", "/proc/self/status")
    b.process["capabilities"] = {}
    caps = _caps(t.ok_run(b).out)
    eq({k: v for k, v in caps.items() if v}, {}, "non-empty capability sets")


@case(C, "caps.unknown_warns", "an unknown capability is logged as a warning, create goes on",
      "config.md#linux-process", "Any value which cannot be mapped to a relevant kernel interface, or cannot be granted otherwise MUST be logged as a warning by the runtime.",
      conflict="runtime-tools process_capabilities_fail asserts an error (the pre-1.1 text)")
def _(t: T):
    b = t.bundle("true")
    b.process["capabilities"]["bounding"].append("CAP_NO_SUCH_THING")
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    check(p.rc == 0, f"create failed: {read(t.files[cid], '').strip()[:300]}")
    t.pids[cid] = t.state(cid)["pid"]
    check("CAP_NO_SUCH_THING" in t.output(cid), "no warning names CAP_NO_SUCH_THING")


@case(C, "caps.not_grantable", "a capability the runtime does not have does not fail create",
      "config.md#linux-process", "Runtimes SHOULD NOT fail if the container configuration requests capabilities that cannot be granted", level="SHOULD")
def _(t: T):
    missing = [n for n, i in CAP_NUMBERS.items() if not t.s.caps_bounding >> i & 1 and i <= 40]
    if not missing:
        t.skip("this runtime environment has every capability")
    b = t.bundle("grep", "^CapBnd", "/proc/self/status")
    want = ["CAP_CHOWN", f"CAP_{missing[0]}"]
    b.process["capabilities"] = {k: list(want) for k in ("bounding", "permitted", "effective")}
    r = t.ok_run(b)
    check(_caps(r.out).get("CapBnd", 0) & cap_mask(["CAP_CHOWN"]), f"CapBnd lacks CAP_CHOWN: {r.out}")


# =============================================================================================
# config: extensibility (config.md)

X = "config: extensibility"


@case(X, "config.unknown_properties", "unknown properties are ignored",
      "config.md#extensibility", "Runtimes MAY log unknown properties but MUST otherwise ignore them.")
def _(t: T):
    b = t.bundle("echo", "fine")
    b.config["org.example.unknown"] = {"nested": [1, 2, 3]}
    b.process["org.example.field"] = True
    b.linux["org.example.field"] = "x"
    b.config["mounts"][0]["org.example.field"] = 1
    eq(t.ok_run(b).out.strip(), "fine", "output")


@case(X, "config.unknown_annotations", "unknown annotation keys are handled like any unknown property",
      "config.md#annotations", "Runtimes MUST handle unknown annotation keys like any other unknown property.")
def _(t: T):
    b = t.bundle("echo", "fine")
    b.config["annotations"] = {"org.opencontainers.made.up": "1", "com.example.x": "y"}
    eq(t.ok_run(b).out.strip(), "fine", "output")


@case(X, "config.invalid_value", "an invalid value (an unknown namespace type) is an error",
      "config.md#valid-values", "Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def _(t: T):
    b = t.bundle("true")
    b.linux["namespaces"].append({"type": "nosuchns"})
    t.create_fails(b, "the namespace type nosuchns does not exist")


@case(X, "config.invalid_json", "a config.json that is not JSON is an error",
      "config.md#valid-values", "Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def _(t: T):
    b = t.bundle("true")
    cid = t._prepare(b, None)
    (b.path / "config.json").write_text("{\"ociVersion\": ")
    p = t._create(b, cid, (), None, None, None)
    check(p.rc != 0, "create accepted a truncated config.json")
    t.assert_gone(cid, "after the failed create")


# =============================================================================================
# linux: namespaces (config-linux.md)

N = "linux: namespaces"
NS_PROC = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
           "cgroup": "cgroup", "user": "user", "time": "time"}


@case(N, "ns.new", "each listed namespace without path is new",
      "config-linux.md#namespaces", "If path is not specified, the runtime MUST create a new container namespace of type type.")
def _(t: T):
    types = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    if os.path.exists("/proc/self/ns/time"):
        types.append("time")
    b = t.bundle("sleep", "10").namespaces(*types)
    cid = t.create(b)
    pid = t.pids[cid]
    same = [ty for ty in types if ns_inode(pid, NS_PROC[ty]) == ns_inode("self", NS_PROC[ty])]
    eq(same, [], "namespaces shared with the runtime's")


@case(N, "ns.inherit", "namespaces not listed are the runtime's",
      "config-linux.md#namespaces", "If a namespace type is not specified in the namespaces array, the container MUST inherit the runtime namespace of that type.")
def _(t: T):
    b = t.bundle("sleep", "10").namespaces("mount")
    b.config.pop("hostname")
    b.config["mounts"] = [m for m in b.config["mounts"] if m["destination"] not in ("/sys", "/dev/mqueue")]
    cid = t.create(b)
    pid = t.pids[cid]
    differ = [ty for ty in ("pid", "network", "ipc", "uts", "cgroup", "user")
              if ns_inode(pid, NS_PROC[ty]) != ns_inode("self", NS_PROC[ty])]
    eq(differ, [], "namespaces not inherited")


@case(N, "ns.inherit_all", "without any namespace, even the mount namespace is the runtime's",
      "config-linux.md#namespaces", "If a namespace type is not specified in the namespaces array, the container MUST inherit the runtime namespace of that type.")
def _(t: T):
    b = t.bundle().sh("cat /etc/marker; sleep 10")
    (b.rootfs / "etc" / "marker").write_text("in rootfs\n")
    b.config.pop("hostname")
    b.linux["namespaces"] = []  # the mounts are made in the runtime's namespace, under the rootfs
    cid = t.create(b)
    pid = t.pids[cid]
    differ = [ty for ty in NS_PROC if os.path.exists(f"/proc/self/ns/{NS_PROC[ty]}")
              and ns_inode(pid, NS_PROC[ty]) != ns_inode("self", NS_PROC[ty])]
    eq(differ, [], "namespaces not inherited")
    t.start(cid)
    deadline = time.monotonic() + 5
    while "in rootfs" not in t.output(cid) and time.monotonic() < deadline:
        time.sleep(0.02)
    eq(t.output(cid).strip(), "in rootfs", "what the process read from its root")


@case(N, "ns.join_path", "a namespace given by path is joined",
      "config-linux.md#namespaces", "The runtime MUST place the container process in the namespace associated with that path.")
def _(t: T):
    a = t.create(t.bundle("sleep", "10"))
    apid = t.pids[a]
    b = t.bundle("sleep", "10")
    b.linux["namespaces"] = [{"type": "mount"}, {"type": "pid"}] + [
        {"type": ty, "path": f"/proc/{apid}/ns/{NS_PROC[ty]}"} for ty in ("network", "ipc", "uts")]
    b.config.pop("hostname")
    c = t.create(b)
    cpid = t.pids[c]
    for ty in ("network", "ipc", "uts"):
        eq(ns_inode(cpid, NS_PROC[ty]), ns_inode(apid, NS_PROC[ty]), f"{ty} namespace")


@case(N, "ns.path_wrong_type", "a path to a namespace of another type is an error",
      "config-linux.md#namespaces", "The runtime MUST generate an error if path is not associated with a namespace of type type.")
def _(t: T):
    a = t.create(t.bundle("sleep", "10"))
    b = t.bundle("true")
    b.linux["namespaces"] = [{"type": "mount"}, {"type": "pid"},
                             {"type": "network", "path": f"/proc/{t.pids[a]}/ns/uts"}]
    t.create_fails(b, "the network namespace path is a uts namespace")


@case(N, "ns.path_relative", "a relative namespace path is an error",
      "config-linux.md#namespaces", "This value MUST be an absolute path in the runtime mount namespace.")
def _(t: T):
    b = t.bundle("true")
    b.linux["namespaces"] = [{"type": "mount"}, {"type": "network", "path": "proc/self/ns/net"}]
    t.create_fails(b, "the namespace path is relative")


@case(N, "ns.duplicate", "a namespace type listed twice is an error",
      "config-linux.md#namespaces", "If a namespaces field contains duplicated namespaces with same type, the runtime MUST generate an error.")
def _(t: T):
    b = t.bundle("true")
    b.linux["namespaces"].append({"type": "pid"})
    t.create_fails(b, "pid is listed twice")


@case(N, "ns.pid_isolated", "in a new pid namespace the process is pid 1 and sees only its own",
      "config-linux.md#namespaces", "pid processes inside the container will only be able to see other processes inside the same container", level="SHOULD")
def _(t: T):
    r = t.ok_run(t.bundle().sh("echo $$; cd /proc && echo [0-9]*"))  # builtins only: no children
    lines = r.out.split("\n")
    eq(lines[0], "1", "$$")
    eq(lines[1].split(), ["1"], "the processes in /proc")


@case(N, "ns.time_offsets", "timeOffsets shift the clocks of a new time namespace",
      "config-linux.md#offset-for-time-namespace", "timeOffsets (object, OPTIONAL) sets the offset for Time Namespace.")
def _(t: T):
    if not os.path.exists("/proc/self/ns/time"):
        t.skip("no time namespaces in this kernel")
    b = t.bundle("cat", "/proc/uptime").namespaces("pid", "network", "ipc", "uts", "mount", "time")
    b.linux["timeOffsets"] = {"boottime": {"secs": 864000}, "monotonic": {"secs": 86400}}
    up = float(t.ok_run(b).out.split()[0])
    host = float(read("/proc/uptime").split()[0])
    check(up - host > 863000, f"uptime inside {up}, outside {host}")


# =============================================================================================
# linux: idmaps (config-linux.md)

I = "linux: idmaps"


def _userns_bundle(t: T, *args: str) -> Bundle:
    b = t.bundle(*args).namespaces("pid", "network", "ipc", "uts", "mount", "user")
    b.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    b.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    return b


def _need_userns(t: T) -> None:
    if read("/proc/sys/user/max_user_namespaces", "1").strip() == "0":
        t.skip("user namespaces are disabled")


@case(I, "userns.maps", "uidMappings/gidMappings are the user namespace's maps",
      "config-linux.md#user-namespace-mappings", "uidMappings (array of objects, OPTIONAL) describes the user namespace uid mappings from the host to the container.")
def _(t: T):
    _need_userns(t)
    cid = t.create(_userns_bundle(t, "sleep", "10"))
    pid = t.pids[cid]
    eq(read(f"/proc/{pid}/uid_map").split(), ["0", "100000", "65536"], "uid_map")
    eq(read(f"/proc/{pid}/gid_map").split(), ["0", "100000", "65536"], "gid_map")
    check(ns_inode(pid, "user") != ns_inode("self", "user"), "no new user namespace")


@case(I, "userns.ids", "inside, the process is root; on the host, its files belong to the mapped ids",
      "config-linux.md#user-namespace-mappings", "containerID ... is the starting uid/gid in the container. hostID ... is the starting uid/gid on the host to be mapped to containerID.")
def _(t: T):
    _need_userns(t)
    b = _userns_bundle(t).sh("id -u; id -g; touch /out/made")
    eq(t.ok_run(b).out.split(), ["0", "0"], "id -u, id -g")
    st = os.stat(b.out / "made")
    eq((st.st_uid, st.st_gid), (100000, 100000), "owner of the file on the host")


@case(I, "userns.no_chown", "the rootfs keeps its ownership",
      "config-linux.md#user-namespace-mappings", "The runtime SHOULD NOT modify the ownership of referenced filesystems to realize the mapping.", level="SHOULD")
def _(t: T):
    _need_userns(t)
    b = _userns_bundle(t, "true")
    t.ok_run(b)
    owners = {(os.lstat(p).st_uid, os.lstat(p).st_gid) for p in
              (b.rootfs, b.rootfs / "bin", b.rootfs / "bin" / "busybox", b.rootfs / "etc" / "passwd")}
    eq(owners, {(0, 0)}, "owners of rootfs files")


# =============================================================================================
# linux: devices (config-linux.md)

D = "linux: devices"


@case(D, "devices.char", "a configured character device exists with its numbers, mode and owner",
      "config-linux.md#devices", "devices (array of objects, OPTIONAL) lists devices that MUST be available in the container.")
def _(t: T):
    b = t.bundle("stat", "-c", "%F|%t|%T|%a|%u|%g", "/dev/conf-null")
    b.linux["devices"] = [{"path": "/dev/conf-null", "type": "c", "major": 1, "minor": 3,
                           "fileMode": 0o640, "uid": 1, "gid": 2}]
    eq(t.ok_run(b).out.strip(), "character special file|1|3|640|1|2", "stat of /dev/conf-null")


@case(D, "devices.types", "block, fifo and unbuffered char devices, also outside /dev",
      "config-linux.md#devices", "type (string, REQUIRED) - type of device: c, b, u or p. / The path MAY be anywhere in the container filesystem, notably outside of /dev.")
def _(t: T):
    b = t.bundle().sh("for f in /dev/conf-blk /dev/conf-fifo /dev/conf-u /mydevs/zero; do "
                      "stat -c '%F|%t|%T' $f; done")
    b.linux["devices"] = [
        {"path": "/dev/conf-blk", "type": "b", "major": 7, "minor": 200},
        {"path": "/dev/conf-fifo", "type": "p"},
        {"path": "/dev/conf-u", "type": "u", "major": 1, "minor": 5},
        {"path": "/mydevs/zero", "type": "c", "major": 1, "minor": 5}]
    eq(t.ok_run(b).out.split("\n")[:4],
       ["block special file|7|c8", "fifo|0|0", "character special file|1|5",
        "character special file|1|5"], "stat of the devices")


@case(D, "devices.conflict", "a file at a device's path that does not match is an error",
      "config-linux.md#devices", "If a file already exists at path that does not match the requested device, the runtime MUST generate an error.")
def _(t: T):
    b = t.bundle("true")
    (b.rootfs / "mydevs").mkdir()
    (b.rootfs / "mydevs" / "null").write_text("a regular file\n")
    b.linux["devices"] = [{"path": "/mydevs/null", "type": "c", "major": 1, "minor": 3}]
    t.create_fails(b, "a regular file is at the device's path")
    eq(read(b.rootfs / "mydevs" / "null"), "a regular file\n", "the file in the rootfs")


@case(D, "devices.default", "the default devices are supplied",
      "config-linux.md#default-devices", "In addition to any devices configured with this setting, the runtime MUST also supply: /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty, /dev/ptmx")
def _(t: T):
    names = ["null", "zero", "full", "random", "urandom", "tty"]
    b = t.bundle().sh("for f in " + " ".join(f"/dev/{n}" for n in names) +
                      "; do stat -L -c '%n|%F|%t|%T' $f; done; readlink /dev/ptmx; stat -L -c '%F|%t|%T' /dev/ptmx")
    lines = t.ok_run(b).out.splitlines()
    want = {"null": "1|3", "zero": "1|5", "full": "1|7", "random": "1|8", "urandom": "1|9", "tty": "5|0"}
    for n, line in zip(names, lines):
        eq(line, f"/dev/{n}|character special file|{want[n]}", f"/dev/{n}")
    rest = lines[len(names):]
    ptmx = rest[-1] if rest else ""
    eq(ptmx, "character special file|5|2", "/dev/ptmx (followed)")
    if len(rest) == 2:
        check(rest[0] in ("pts/ptmx", "/dev/pts/ptmx"), f"/dev/ptmx links to {rest[0]!r}")


@case(D, "devices.default_usable", "the default devices work under a deny-all device cgroup rule",
      "config-linux.md#default-devices", "In addition to any devices configured with this setting, the runtime MUST also supply: ...")
def _(t: T):
    b = t.bundle().sh("echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c "
                      "&& echo ok")
    b.linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    eq(t.ok_run(b).out.split(), ["4", "4", "ok"], "using /dev/null, /dev/zero, /dev/urandom")


@case(D, "devices.console", "with terminal, /dev/console is the pty",
      "config-linux.md#default-devices", "/dev/console is set up if terminal is enabled in the config by bind mounting the pseudoterminal pty to /dev/console.")
def _(t: T):
    b = t.bundle().sh("stat -c '%F|%t' /dev/console > /out/console; tty > /out/tty")
    b.process["terminal"] = True
    cs = ConsoleSocket(t)
    cid = t.create(b, extra=("--console-socket", cs.path))
    cs.wait()
    t.start(cid)
    t.wait_exit(cid)
    eq(read(b.out / "console", "").strip(), "character special file|88", "/dev/console (pts major 136=0x88)")


@case(D, "devices.symlinks", "/dev/fd, /dev/stdin, /dev/stdout, /dev/stderr are the standard symlinks",
      "runtime-linux.md#dev-symbolic-links", "runtimes MUST create the following symlinks if the source file exists after processing mounts")
def _(t: T):
    b = t.bundle().sh("for f in fd stdin stdout stderr; do readlink /dev/$f; done")
    eq(t.ok_run(b).out.split(), ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2"],
       "symlink targets")


@case(D, "devices.cgroup_order", "device cgroup rules apply in the listed order",
      "config-linux.md#allowed-device-list", "The runtime MUST apply entries in the listed order.")
def _(t: T):
    if not os.path.exists("/dev/fuse"):
        t.skip("no /dev/fuse (10:229) on this machine to probe with")
    fuse = {"type": "c", "major": 10, "minor": 229, "access": "rwm"}
    results = []
    for rules in ([{"allow": True, **fuse}, {"allow": False, **fuse}],
                  [{"allow": False, **fuse}, {"allow": True, **fuse}]):
        b = t.bundle().sh("(: < /dev/conf-fuse) 2>&1 && echo opened; true")  # a subshell: the redirection may fail
        b.linux["devices"] = [{"path": "/dev/conf-fuse", "type": "c", "major": 10, "minor": 229}]
        b.linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}, *rules]}
        results.append(t.ok_run(b).out.strip())
    check("Operation not permitted" in results[0], f"allow then deny: {results[0]!r}")
    eq(results[1], "opened", "deny then allow")


# =============================================================================================
# linux: sysctl (config-linux.md)

Y = "linux: sysctl"


@case(Y, "sysctl.set", "sysctl values are set in the container's namespaces",
      "config-linux.md#sysctl", "sysctl (object, OPTIONAL) allows kernel parameters to be modified at runtime for the container.")
def _(t: T):
    b = t.bundle("cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/msgmax", "/proc/sys/net/core/somaxconn")
    b.linux["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.msgmax": "4321", "net.core.somaxconn": "77"}
    eq(t.ok_run(b).out.split(), ["1", "4321", "77"], "the sysctls inside")
    check(read("/proc/sys/kernel/msgmax").strip() != "4321", "the host's kernel.msgmax changed")


@case(Y, "sysctl.unknown", "an unknown sysctl is an error",
      "runtime.md#create", "If the runtime cannot apply a property as specified in the configuration, it MUST generate an error and a new container MUST NOT be created.")
def _(t: T):
    b = t.bundle("true")
    b.linux["sysctl"] = {"net.ipv4.no_such_sysctl": "1"}
    t.create_fails(b, "the sysctl does not exist")


# =============================================================================================
# linux: masked/readonly paths (config-linux.md)

K = "linux: masked/readonly paths"


@case(K, "masked.paths", "masked files and directories cannot be read",
      "config-linux.md#masked-paths", "maskedPaths (array of strings, OPTIONAL) will mask over the provided paths inside the container so that they cannot be read.")
def _(t: T):
    b = t.bundle().sh("echo \"[$(cat /etc/secret)]\"; echo \"[$(ls /secretdir)]\"; echo \"[$(cat /proc/kcore 2>/dev/null | head -c 1 | wc -c)]\"")
    (b.rootfs / "etc" / "secret").write_text("s3cret\n")
    (b.rootfs / "secretdir").mkdir()
    (b.rootfs / "secretdir" / "file").write_text("x")
    b.linux["maskedPaths"] = ["/etc/secret", "/secretdir", "/proc/kcore", "/no/such/path"]
    b.process["capabilities"] = {k: ["CAP_SYS_RAWIO"] + DEFAULT_CAPS for k in ("bounding", "effective", "permitted")}
    eq(t.ok_run(b).out.split(), ["[]", "[]", "[0]"], "/etc/secret, ls /secretdir, /proc/kcore")


@case(K, "masked.relative", "a relative masked path is an error",
      "config-linux.md#masked-paths", "The values MUST be absolute paths in the container namespace.")
def _(t: T):
    b = t.bundle("true")
    (b.rootfs / "etc" / "secret").write_text("s3cret\n")
    b.linux["maskedPaths"] = ["etc/secret"]
    t.create_fails(b, "a masked path is relative")


@case(K, "readonly.paths", "readonly paths cannot be written",
      "config-linux.md#readonly-paths", "readonlyPaths (array of strings, OPTIONAL) will set the provided paths as readonly inside the container.")
def _(t: T):
    b = t.bundle().sh("exec 2>/dev/null; touch /rodir/x; echo dir=$?; echo y >> /etc/rofile; echo file=$?; "
                      "echo 1 > /proc/sys/kernel/ns_last_pid; echo sys=$?; touch /tmp/ok; echo tmp=$?")
    (b.rootfs / "rodir").mkdir()
    (b.rootfs / "etc" / "rofile").write_text("x\n")
    b.linux["readonlyPaths"] = ["/rodir", "/etc/rofile", "/proc/sys", "/no/such/path"]
    eq(t.ok_run(b).out.split(), ["dir=1", "file=1", "sys=1", "tmp=0"], "writes")
    eq(read(b.rootfs / "etc" / "rofile"), "x\n", "the read-only file")


@case(K, "readonly.relative", "a relative readonly path is an error",
      "config-linux.md#readonly-paths", "The values MUST be absolute paths in the container namespace.")
def _(t: T):
    b = t.bundle("true")
    (b.rootfs / "rodir").mkdir()
    b.linux["readonlyPaths"] = ["rodir"]
    t.create_fails(b, "a readonly path is relative")


# =============================================================================================
# linux: rootfsPropagation (config-linux.md)

G = "linux: rootfsPropagation"


def _root_mount(t: T, prop: str) -> dict:
    b = t.bundle("cat", "/proc/self/mountinfo")
    b.linux["rootfsPropagation"] = prop
    return find_mount(inside_mounts(t.ok_run(b)), "/")


@case(G, "propagation.shared", "shared: the root mount is in a peer group of its own",
      "config-linux.md#rootfs-mount-propagation", "shared: the rootfs mount belongs to a new peer group. ... Note this does not mean that it's shared with the host.")
def _(t: T):
    opt = _root_mount(t, "shared")["optional"]
    groups = [o for o in opt if o.startswith("shared:")]
    check(bool(groups), f"/ is not shared: {opt}")
    host_groups = {o for m in parse_mountinfo(read("/proc/self/mountinfo")) for o in m["optional"]}
    check(groups[0] not in host_groups, f"/ shares {groups[0]} with the host")


@case(G, "propagation.private", "private: the root mount propagates nothing",
      "config-linux.md#rootfs-mount-propagation", "private: the rootfs mount doesn't receive mount propagation events from the host")
def _(t: T):
    opt = _root_mount(t, "private")["optional"]
    eq(opt, [], "propagation fields of /")


@case(G, "propagation.slave", "slave: the root mount is not shared",
      "config-linux.md#rootfs-mount-propagation", "slave: the rootfs mount receives propagation events from the host ... but not the other way around.")
def _(t: T):
    opt = _root_mount(t, "slave")["optional"]
    check(not any(o.startswith("shared:") for o in opt), f"/ is shared: {opt}")


@case(G, "propagation.unbindable", "unbindable: the root mount cannot be bind-mounted",
      "config-linux.md#rootfs-mount-propagation", "unbindable: the rootfs mount is a private mount that cannot be bind-mounted.")
def _(t: T):
    opt = _root_mount(t, "unbindable")["optional"]
    check("unbindable" in opt, f"/ is not unbindable: {opt}")


@case(G, "propagation.no_leak", "mounts made in a shared-root container do not reach the host",
      "config-linux.md#rootfs-mount-propagation", "shared ... Note this does not mean that it's shared with the host.")
def _(t: T):
    b = t.bundle().sh("mount -t tmpfs tmpfs /mnt && touch /mnt/inner && echo mounted")
    (b.rootfs / "mnt").mkdir()
    b.linux["rootfsPropagation"] = "shared"
    b.process["capabilities"] = {k: ["CAP_SYS_ADMIN"] + DEFAULT_CAPS for k in ("bounding", "effective", "permitted")}
    b.process.pop("noNewPrivileges")
    eq(t.ok_run(b).out.strip(), "mounted", "the mount inside")
    check(not (b.rootfs / "mnt" / "inner").exists(), "the container's mount reached the host")
    check(not mount_points_under(str(b.path)), "a mount under the bundle appeared on the host")


# =============================================================================================
# linux: seccomp (config-linux.md)

Z = "linux: seccomp"


def _seccomp(b: Bundle, syscalls: list[dict], default: str = "SCMP_ACT_ALLOW", **extra) -> None:
    b.linux["seccomp"] = {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64"],
                          "syscalls": syscalls, **extra}


@case(Z, "seccomp.errno_default", "a SCMP_ACT_ERRNO rule without errnoRet fails the syscall with EPERM",
      "config-linux.md#seccomp", "errnoRet (uint, OPTIONAL) - the errno return code to use. ... The default is EPERM.")
def _(t: T):
    b = t.bundle().sh("mkdir /tmp/x 2>&1; echo still alive")
    _seccomp(b, [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}])
    out = t.ok_run(b).out
    check("Operation not permitted" in out and "still alive" in out, f"output: {out.strip()!r}")
    check(not (b.rootfs / "tmp" / "x").exists(), "mkdir succeeded")


@case(Z, "seccomp.errno_ret", "errnoRet is the errno the syscall fails with",
      "config-linux.md#seccomp", "errnoRet (uint, OPTIONAL) - the errno return code to use.")
def _(t: T):
    b = t.bundle().sh("mkdir /tmp/x 2>&1; echo still alive")
    _seccomp(b, [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSPC}])
    out = t.ok_run(b).out
    check("No space left on device" in out, f"output: {out.strip()!r}")


@case(Z, "seccomp.args", "argument conditions select which calls match",
      "config-linux.md#seccomp", "args (array of objects, OPTIONAL) - the specific syscall in seccomp.")
def _(t: T):
    b = t.bundle().sh("trap '' USR1 USR2; kill -USR2 $$ && echo usr2=ok; kill -USR1 $$ 2>/dev/null || echo usr1=blocked")
    _seccomp(b, [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                  "args": [{"index": 1, "value": int(signal.SIGUSR1), "op": "SCMP_CMP_EQ"}]}])
    eq(t.ok_run(b).out.split(), ["usr2=ok", "usr1=blocked"], "kill USR2 / kill USR1")


@case(Z, "seccomp.default_errno", "defaultAction with defaultErrnoRet applies to unlisted syscalls",
      "config-linux.md#seccomp", "defaultErrnoRet (uint, OPTIONAL) - the errno return code to use.")
def _(t: T):
    b = t.bundle().sh("mkdir /tmp/x 2>&1; echo still alive")
    allow = ("read write open openat close stat fstat lstat newfstatat statx poll lseek mmap mprotect munmap brk "
             "rt_sigaction rt_sigprocmask rt_sigreturn ioctl pread64 readv writev access pipe pipe2 select "
             "sched_yield dup dup2 dup3 nanosleep clock_nanosleep getpid getppid getuid geteuid getgid getegid "
             "fork vfork clone clone3 execve execveat exit exit_group wait4 waitid kill uname fcntl getcwd "
             "chdir fchdir arch_prctl set_tid_address set_robust_list rseq prlimit64 getrlimit setpgid "
             "getpgrp getpgid setsid getdents64 getdents readlink readlinkat faccessat faccessat2 "
             "futex sigaltstack gettid tgkill getrandom umask capget capset prctl "
             "setresuid setresgid setgroups setuid setgid getgroups close_range fstatfs statfs "
             "sched_getaffinity madvise mremap membarrier rt_sigtimedwait").split()  # what a runtime may
    # still call between loading the filter and execve
    _seccomp(b, [{"names": allow, "action": "SCMP_ACT_ALLOW"}], default="SCMP_ACT_ERRNO",
             defaultErrnoRet=errno.EROFS)
    b.process["noNewPrivileges"] = True
    out = t.ok_run(b).out
    check("Read-only file system" in out and "still alive" in out, f"output: {out.strip()!r}")


@case(Z, "seccomp.errno_on_non_errno_action", "errnoRet on an action without errno is an error",
      "config-linux.md#seccomp", "When the action doesn't support an errno, the runtime MUST print and error and fail.")
def _(t: T):
    b = t.bundle("true")
    _seccomp(b, [{"names": ["mkdir"], "action": "SCMP_ACT_LOG", "errnoRet": 5}])
    t.create_fails(b, "errnoRet was given for SCMP_ACT_LOG")


@case(Z, "seccomp.empty_names", "a rule with no names is an error",
      "config-linux.md#seccomp", "names MUST contain at least one entry.")
def _(t: T):
    b = t.bundle("true")
    _seccomp(b, [{"names": [], "action": "SCMP_ACT_ERRNO"}])
    t.create_fails(b, "a syscall rule has no names")


@case(Z, "seccomp.unknown_action", "an unknown action is an error",
      "config.md#valid-values", "Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def _(t: T):
    b = t.bundle("true")
    _seccomp(b, [{"names": ["mkdir"], "action": "SCMP_ACT_NO_SUCH"}])
    t.create_fails(b, "the action SCMP_ACT_NO_SUCH does not exist")


class _Agent:
    """A seccomp agent at listenerPath: records every connection's message and fds."""

    def __init__(self, t: T) -> None:
        self.path = str(t.dir / "agent.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.msgs: list[tuple[bytes, int, bool]] = []  # (payload, number of fds, closed after)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        t.defer(self.sock.close)

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            data, fds, _, _ = socket.recv_fds(conn, 65536, 8)
            for fd in fds:
                os.close(fd)
            closed = False
            try:
                while True:
                    more = conn.recv(65536)
                    if not more:
                        closed = True
                        break
                    data += more
            except OSError:
                pass
            self.msgs.append((data, len(fds), closed))


@case(Z, "seccomp.notify", "SCMP_ACT_NOTIFY: one container process state with the seccomp fd goes to listenerPath",
      "config-linux.md#seccomp", "The runtime MUST send exactly one container process state per connection. The connection MUST NOT be reused and it MUST be closed after sending a seccomp state.")
def _(t: T):
    agent = _Agent(t)
    b = t.bundle("sleep", "10")
    _seccomp(b, [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
             listenerPath=agent.path, listenerMetadata="conformance-meta")
    cid = t.create(b)
    t.start(cid)
    agent.thread.join(10)
    check(len(agent.msgs) == 1, f"{len(agent.msgs)} connections reached the agent")
    data, nfds, closed = agent.msgs[0]
    eq(nfds, 1, "fds sent with SCM_RIGHTS")
    check(closed, "the runtime did not close the connection")
    msg = json.loads(data)
    eq(msg.get("fds"), ["seccompFd"], "fds")
    eq(msg.get("metadata"), "conformance-meta", "metadata")
    eq(msg.get("state", {}).get("id"), cid, "state.id")
    check(isinstance(msg.get("pid"), int) and msg["pid"] > 0, f"pid {msg.get('pid')!r}")


@case(Z, "seccomp.listener_unreachable", "a listenerPath nobody listens on is an error",
      "config-linux.md#seccomp", "If sending to this socket fails, the runtime MUST generate an error.")
def _(t: T):
    b = t.bundle("true")
    _seccomp(b, [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
             listenerPath=str(t.dir / "nobody.sock"))
    t.create_fails(b, "nothing listens on listenerPath")


@case(Z, "seccomp.metadata_without_path", "listenerMetadata without listenerPath is an error",
      "config-linux.md#seccomp", "listenerMetadata ... This field MUST NOT be set if listenerPath is not set.")
def _(t: T):
    b = t.bundle("true")
    _seccomp(b, [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}], listenerMetadata="x")
    t.create_fails(b, "listenerMetadata is set without listenerPath")


# =============================================================================================
# linux: cgroups (config-linux.md)

Q = "linux: cgroups"


def _cg_values(t: T, resources: dict, files: list[tuple[str, str, str | None]],
               b: Bundle | None = None) -> dict[str, tuple[str, str]]:
    """Create a container with `resources`, read (controller, v1 file, v2 file) from outside."""
    b = b or t.bundle("sleep", "10")
    b.linux["resources"] = resources
    cid = t.create(b)
    pid = t.pids[cid]
    out = {}
    for ctrl, v1, v2 in files:
        ver, path = t.s.cg.file(pid, ctrl, v1, v2)
        out[v1] = (ver, read(path, "<missing>").strip())
    return out


@case(Q, "cgroups.path_absolute", "an absolute cgroupsPath is relative to the cgroup mount point, the same each time",
      "config-linux.md#cgroups-path", "In the case of an absolute path (starting with /), the runtime MUST take the path to be relative to the cgroups mount point. / ... MUST consistently attach to the same place")
def _(t: T):
    path = f"/{CGROUP_PARENT}/abs-{uuid.uuid4().hex[:8]}"
    seen = []
    for _ in range(2):
        b = t.bundle("sleep", "10")
        b.linux["cgroupsPath"] = path
        cid = t.create(b)
        pid = t.pids[cid]
        lines = read(f"/proc/{pid}/cgroup").splitlines()
        mine = [ln.split(":", 2)[2] for ln in lines]
        check(all(p == path for p in mine), f"/proc/{pid}/cgroup: {lines}")
        for r in t.s.cg.roots():
            check(str(pid) in read(os.path.join(r + path, "cgroup.procs"), "").split(),
                  f"pid {pid} not in {r + path}/cgroup.procs")
        seen.append(mine)
        t.delete(cid, force=True)
        t.wait_exit(cid, 5)
    eq(seen[0], seen[1], "the cgroups of two containers with the same cgroupsPath")
    for d in t.s.cg.paths_for(path):
        if os.path.isdir(d):
            _remove_cgroup(d)


@case(Q, "cgroups.path_relative", "a relative cgroupsPath is accepted",
      "config-linux.md#cgroups-path", "In the case of a relative path (not starting with /), the runtime MAY interpret the path relative to a runtime-determined location in the cgroups hierarchy.")
def _(t: T):
    rel = f"{CGROUP_PARENT}-rel/{uuid.uuid4().hex[:8]}"
    t.defer(lambda: _remove_rel_parents(t.s.cg.roots(), f"{CGROUP_PARENT}-rel"))
    b = t.bundle("sleep", "10")
    b.linux["cgroupsPath"] = rel
    cid = t.create(b)
    lines = read(f"/proc/{t.pids[cid]}/cgroup").splitlines()
    check(all(ln.split(":", 2)[2].endswith("/" + rel) for ln in lines), f"/proc/<pid>/cgroup: {lines}")
    t.delete(cid, force=True)
    t.wait_exit(cid, 5)
    left = [d for r in t.s.cg.roots() for d in _dirs_ending(r, rel)]
    check(not left, f"the relative cgroup survived delete: {left}")


def _dirs_ending(root: str, rel: str) -> list[str]:
    """Directories under a cgroup root whose path ends with `rel` (where a runtime put it)."""
    out = []
    for d, subdirs, _ in os.walk(root):
        if d.endswith("/" + rel):
            out.append(d)
        subdirs[:] = [s for s in subdirs if s.startswith(CGROUP_PARENT) or "/" + CGROUP_PARENT in d
                      or d.count("/") < root.count("/") + 3]
    return out


def _remove_rel_parents(root_list: list[str], first: str) -> None:
    for r in root_list:
        for d, _, _ in os.walk(r):
            if os.path.basename(d) == first:
                _remove_cgroup(d)


@case(Q, "cgroups.memory", "memory limit and reservation are written to the memory controller",
      "config-linux.md#memory", "memory (object, OPTIONAL) represents the cgroup subsystem memory and it's used to set limits on the container's memory usage.")
def _(t: T):
    v = _cg_values(t, {"memory": {"limit": 64 << 20, "reservation": 32 << 20}},
                   [("memory", "memory.limit_in_bytes", "memory.max"),
                    ("memory", "memory.soft_limit_in_bytes", "memory.low")])
    eq(v["memory.limit_in_bytes"][1], str(64 << 20), "memory limit")
    eq(v["memory.soft_limit_in_bytes"][1], str(32 << 20), "memory reservation")


@case(Q, "cgroups.memory_swap", "memory swap (memory+swap) is written",
      "config-linux.md#memory", "swap (int64, OPTIONAL) - sets limit of memory+Swap usage")
def _(t: T):
    v = _cg_values(t, {"memory": {"limit": 64 << 20, "swap": 96 << 20}},
                   [("memory", "memory.memsw.limit_in_bytes", "memory.swap.max")])
    ver, val = v["memory.memsw.limit_in_bytes"]
    if val == "<missing>":
        t.skip("no swap accounting on this machine")
    eq(val, str(96 << 20) if ver == "v1" else str(32 << 20), f"memory+swap ({ver})")


@case(Q, "cgroups.cpu", "cpu shares, quota and period are written",
      "config-linux.md#cpu", "cpu (object, OPTIONAL) represents the cgroup subsystems cpu and cpusets.")
def _(t: T):
    v = _cg_values(t, {"cpu": {"shares": 512, "quota": 50000, "period": 100000}},
                   [("cpu", "cpu.shares", "cpu.weight"), ("cpu", "cpu.cfs_quota_us", "cpu.max"),
                    ("cpu", "cpu.cfs_period_us", "cpu.max")])
    if v["cpu.shares"][0] == "v1":
        eq((v["cpu.shares"][1], v["cpu.cfs_quota_us"][1], v["cpu.cfs_period_us"][1]),
           ("512", "50000", "100000"), "cpu.shares, cpu.cfs_quota_us, cpu.cfs_period_us")
    else:
        eq(v["cpu.cfs_quota_us"][1], "50000 100000", "cpu.max")
        check(v["cpu.shares"][1] not in ("100", "<missing>"), f"cpu.weight {v['cpu.shares'][1]} (shares 512)")


@case(Q, "cgroups.cpuset", "cpuset cpus and mems are written",
      "config-linux.md#cpu", "cpus (string, OPTIONAL) - list of CPUs the container will run on. / mems ... list of memory nodes")
def _(t: T):
    v = _cg_values(t, {"cpu": {"cpus": "0", "mems": "0"}},
                   [("cpuset", "cpuset.cpus", "cpuset.cpus"), ("cpuset", "cpuset.mems", "cpuset.mems")])
    eq((v["cpuset.cpus"][1], v["cpuset.mems"][1]), ("0", "0"), "cpuset.cpus, cpuset.mems")


@case(Q, "cgroups.pids", "the pids limit is written",
      "config-linux.md#pids", "limit (int64, OPTIONAL) - specifies the maximum number of tasks in the cgroup")
def _(t: T):
    v = _cg_values(t, {"pids": {"limit": 42}}, [("pids", "pids.max", "pids.max")])
    eq(v["pids.max"][1], "42", "pids.max")
    v = _cg_values(t, {"pids": {"limit": -1}}, [("pids", "pids.max", "pids.max")])
    eq(v["pids.max"][1], "max", "pids.max for -1")


@case(Q, "cgroups.pids_zero", "a pids limit of 0 is written as 0",
      "config-linux.md#pids", "0 is a valid limit value for the pids cgroup controller from the kernel's perspective and SHOULD be treated as such by runtimes.", level="SHOULD")
def _(t: T):
    v = _cg_values(t, {"pids": {"limit": 0}}, [("pids", "pids.max", "pids.max")])
    eq(v["pids.max"][1], "0", "pids.max")


@case(Q, "cgroups.hugetlb", "hugepage limits are written",
      "config-linux.md#huge-page-limits", "hugepageLimits (array of objects, OPTIONAL) represents the hugetlb controller which allows to limit the HugeTLB reservations (if supported) or usage (page fault).")
def _(t: T):
    if not os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        t.skip("no 2MB huge pages on this machine")
    v = _cg_values(t, {"hugepageLimits": [{"pageSize": "2MB", "limit": 4 << 20}]},
                   [("hugetlb", "hugetlb.2MB.limit_in_bytes", "hugetlb.2MB.max")])
    eq(v["hugetlb.2MB.limit_in_bytes"][1], str(4 << 20), "hugetlb 2MB limit")


@case(Q, "cgroups.blkio", "the blkio weight is written",
      "config-linux.md#block-io", "blockIO (object, OPTIONAL) represents the cgroup subsystem blkio which implements the block IO controller.")
def _(t: T):
    probe = t.bundle("sleep", "10")
    cid = t.create(probe)
    try:
        ver, path = t.s.cg.file(t.pids[cid], "blkio", "blkio.weight", "io.weight")
    except Skip:
        ver, path = "", ""
    if not path or not os.path.exists(path):
        try:
            ver, path = t.s.cg.file(t.pids[cid], "io", "blkio.weight", "io.weight")
        except Skip:
            path = ""
    t.delete(cid, force=True)
    t.wait_exit(cid, 5)
    if not path or not os.path.exists(path):
        t.skip("no blkio/io weight file on this machine (no CFQ/BFQ weight support)")
    v = _cg_values(t, {"blockIO": {"weight": 300}}, [("blkio", "blkio.weight", "io.weight")])
    check(v["blkio.weight"][1] in ("300", "default 300") or v["blkio.weight"][1].endswith(" 300"),
          f"blkio weight {v['blkio.weight'][1]!r}")


@case(Q, "cgroups.network", "net_cls classID is written",
      "config-linux.md#network", "network (object, OPTIONAL) represents the cgroup subsystems net_cls and net_prio.")
def _(t: T):
    if "net_cls" not in t.s.cg.v1:
        t.skip("no net_cls controller on this machine")
    v = _cg_values(t, {"network": {"classID": 0x100001}}, [("net_cls", "net_cls.classid", None)])
    eq(v["net_cls.classid"][1], str(0x100001), "net_cls.classid")


@case(Q, "cgroups.unified", "unified keys are written to the v2 cgroup",
      "config-linux.md#unified", "Each key in the map refers to a file in the cgroup unified hierarchy. ... Configuration unknown to the runtime MUST still be written to the relevant file.")
def _(t: T):
    cg = t.s.cg
    if cg.pure_v2 and "pids" in cg.v2_controllers:
        key, val, want = "pids.max", "77", "77"
    elif cg.v2 and "hugetlb" in cg.v2_controllers and os.path.isdir("/sys/kernel/mm/hugepages/hugepages-2048kB"):
        key, val, want = "hugetlb.2MB.max", str(6 << 20), str(6 << 20)
    else:
        t.skip("no controller in the unified hierarchy to write to")
    b = t.bundle("sleep", "10")
    b.linux["resources"] = {"unified": {key: val}}
    cid = t.create(b)
    line = [ln for ln in read(f"/proc/{t.pids[cid]}/cgroup").splitlines() if ln.startswith("0::")]
    check(bool(line), "the container is in no v2 cgroup")
    eq(read(os.path.join(cg.v2 + line[0][3:], key), "<missing>").strip(), want, key)


@case(Q, "cgroups.unified_unknown_controller", "a unified key of a missing controller is an error",
      "config-linux.md#unified", "The runtime MUST generate an error when the configuration refers to a cgroup controller that is not present or that cannot be enabled.")
def _(t: T):
    if not t.s.cg.v2:
        t.skip("no cgroup v2 hierarchy")
    b = t.bundle("true")
    b.linux["resources"] = {"unified": {"nosuchcontroller.max": "1"}}
    t.create_fails(b, "the controller nosuchcontroller does not exist")


# =============================================================================================
# hooks (config.md, runtime.md)

W = "hooks"


def _hook_log(b: Bundle, name: str, extra: str = "") -> dict:
    """A runtime-namespace hook (host /bin/sh) that records its order, stdin and namespaces."""
    d = b.out
    return hook(f"cat > {d}/{name}.json; echo {name} >> {d}/order; "
                f"readlink /proc/self/ns/mnt > {d}/{name}.mnt; readlink /proc/self/ns/net > {d}/{name}.net; "
                f"{extra}")


def _chook(b: Bundle, name: str) -> dict:
    """A startContainer hook: a script that exists only in the container's rootfs."""
    script = b.rootfs / "bin" / "chook"
    script.write_text("#!/bin/sh\ncat > /out/$1.json; echo $1 >> /out/order\n")
    script.chmod(0o755)
    return {"path": "/bin/chook", "args": ["chook", name]}


def _all_hooks(b: Bundle) -> None:
    b.config["hooks"] = {
        "prestart": [_hook_log(b, "prestart")],
        "createRuntime": [_hook_log(b, "createRuntime")],
        "createContainer": [_hook_log(b, "createContainer")],
        "startContainer": [_chook(b, "startContainer")],
        "poststart": [_hook_log(b, "poststart")],
        "poststop": [_hook_log(b, "poststop")]}


def _order(b: Bundle) -> list[str]:
    return read(b.out / "order", "").split()


@case(W, "hooks.lifecycle_order", "hooks run at their lifecycle steps, in lifecycle order",
      "runtime.md#lifecycle", "3. prestart ... 4. createRuntime ... 5. createContainer ... 7. startContainer ... 8. run the user-specified program ... 9. poststart ... 13. poststop hooks MUST be invoked by the runtime.")
def _(t: T):
    b = t.bundle().sh("echo process >> /out/order; sleep 0.2")
    _all_hooks(b)
    cid = t.create(b)
    eq(_order(b), ["prestart", "createRuntime", "createContainer"], "hooks run by create")
    t.start(cid)
    got = _order(b)
    check("poststart" in got, f"poststart had not run when start returned: {got}")
    eq(got[:4], ["prestart", "createRuntime", "createContainer", "startContainer"], "order")
    t.wait_exit(cid)
    check("process" in got[4:] or "process" in _order(b)[4:], "the program did not run after startContainer")
    check("poststop" not in _order(b), "poststop ran before delete")
    t.delete(cid)
    check(_order(b)[-1:] == ["poststop"], f"poststop did not run last by delete: {_order(b)}")


@case(W, "hooks.listed_order", "hooks of one kind run in the listed order",
      "config.md#posix-platform-hooks", "Hooks MUST be called in the listed order.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"prestart": [hook(f"echo p{i} >> {b.out}/order") for i in range(1, 4)],
                         "poststop": [hook(f"echo s{i} >> {b.out}/order") for i in range(1, 3)]}
    t.ok_run(b)
    eq(_order(b), ["p1", "p2", "p3", "s1", "s2"], "order")


@case(W, "hooks.state_stdin", "each hook gets the container state on stdin",
      "config.md#posix-platform-hooks", "The state of the container MUST be passed to hooks over stdin so that they may do work appropriate to the current state of the container.")
def _(t: T):
    b = t.bundle("sleep", "0.2")
    _all_hooks(b)
    cid = t.create(b)
    pid = t.pids[cid]
    t.start(cid)
    t.wait_exit(cid)
    t.delete(cid)
    for name in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"):
        raw = read(b.out / f"{name}.json", "")
        try:
            st = json.loads(raw)
        except ValueError:
            raise Fail(f"{name}: stdin was no JSON state: {raw[:100]!r}") from None
        eq(st.get("id"), cid, f"{name}: id")
        eq(st.get("bundle"), str(b.path), f"{name}: bundle")
        check(st.get("status") in STATUSES, f"{name}: status {st.get('status')!r}")
        check(isinstance(st.get("ociVersion"), str), f"{name}: ociVersion")
        if name in ("prestart", "createRuntime", "poststart"):
            eq(st.get("pid"), pid, f"{name}: pid (as seen by the runtime)")


@case(W, "hooks.state_pid_container", "hooks in the container namespace see the pid as the container sees it",
      "runtime.md#state", "For hooks executed in the container namespace, it is the pid as seen by the container.")
def _(t: T):
    b = t.bundle("true")
    _all_hooks(b)
    t.ok_run(b)
    for name in ("createContainer", "startContainer"):
        eq(json.loads(read(b.out / f"{name}.json", "{}")).get("pid"), 1, f"{name}: pid")


@case(W, "hooks.namespaces", "runtime-namespace hooks run in the runtime's namespaces, createContainer in the container's",
      "config.md#posix-platform-hooks", "The prestart hooks MUST be executed in the runtime namespace. / The createContainer hooks MUST be executed in the container namespace.")
def _(t: T):
    b = t.bundle("sleep", "0.2")
    _all_hooks(b)
    cid = t.create(b)
    pid = t.pids[cid]
    cmnt, cnet = ns_inode(pid, "mnt"), ns_inode(pid, "net")
    t.start(cid)
    t.wait_exit(cid)
    t.delete(cid)
    me = (ns_inode("self", "mnt"), ns_inode("self", "net"))
    for name in ("prestart", "createRuntime", "poststart", "poststop"):
        eq((read(b.out / f"{name}.mnt", "").strip(), read(b.out / f"{name}.net", "").strip()), me,
           f"{name}: mnt and net namespaces")
    eq((read(b.out / "createContainer.mnt", "").strip(), read(b.out / "createContainer.net", "").strip()),
       (cmnt, cnet), "createContainer: mnt and net namespaces")


@case(W, "hooks.before_pivot", "prestart/createRuntime/createContainer run after the mounts, before pivot_root",
      "config.md#prestart", "The prestart hooks MUST be called as part of the create operation after the runtime environment has been created ... but before the pivot_root or any equivalent operation has been executed.")
def _(t: T):
    b = t.bundle("true")
    d = b.out
    probe = ("pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' {f}); "
             "readlink /proc/$pid/root > {d}/{n}.root; "
             "grep -c ' {rootfs}/out ' /proc/$pid/mountinfo > {d}/{n}.mounts")
    hooks = {}
    for n in ("prestart", "createRuntime"):
        hooks[n] = [hook(f"cat > {d}/{n}.json; " + probe.format(f=f"{d}/{n}.json", d=d, n=n, rootfs=b.rootfs))]
    hooks["createContainer"] = [hook(f"readlink /proc/self/root > {d}/createContainer.root; "
                                     f"grep -c ' {b.rootfs}/out ' /proc/self/mountinfo > {d}/createContainer.mounts")]
    b.config["hooks"] = hooks
    t.ok_run(b)
    for n in ("prestart", "createRuntime", "createContainer"):
        eq(read(d / f"{n}.root", "").strip(), "/", f"{n}: the container process's root (not pivoted yet)")
        eq(read(d / f"{n}.mounts", "").strip(), "1", f"{n}: the container's /out mount is made")


@case(W, "hooks.start_container_path", "a startContainer hook path resolves in the container",
      "config.md#posix-platform-hooks", "startContainer ... The value of path MUST resolve in the container namespace.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"startContainer": [_chook(b, "startContainer")]}
    check(not os.path.exists("/bin/chook"), "/bin/chook exists on the host")
    t.ok_run(b)
    eq(_order(b), ["startContainer"], "hooks run")


@case(W, "hooks.args_env", "a hook gets exactly its args (argv[0] included) and env",
      "config.md#posix-platform-hooks", "args (array of strings, OPTIONAL) with the same semantics as IEEE Std 1003.1-2008 execv's argv. / env ... same semantics as environ.")
def _(t: T):
    b = t.bundle("true")
    d = b.out
    b.config["hooks"] = {"prestart": [{"path": BUSYBOX, "args": ["sh", "-c", f"echo \"$0\" > {d}/argv0; env > {d}/env", "zeroth"],
                                       "env": ["FOO=bar", "PATH=/bin:/usr/bin"]}]}
    t.ok_run(b)
    eq(read(d / "argv0", "").strip(), "zeroth", "$0")
    env = read(d / "env", "").splitlines()
    check("FOO=bar" in env, f"FOO=bar missing: {env}")
    check(not any(e.startswith(MARKER_ENV) for e in env), "the runtime's environment leaked into the hook")


@case(W, "hooks.timeout", "a hook that outlives its timeout is aborted and fails create",
      "config.md#posix-platform-hooks", "timeout (int, OPTIONAL) is the number of seconds before aborting the hook.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"prestart": [hook("exec sleep 20", timeout=1)]}
    t0 = time.monotonic()
    t.create_fails(b, "the prestart hook timed out")
    check(time.monotonic() - t0 < 10, f"create took {time.monotonic() - t0:.1f}s with a 1s timeout")


@case(W, "hooks.timeout_zero", "a timeout of 0 is an error",
      "config.md#posix-platform-hooks", "If set, timeout MUST be greater than zero.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"prestart": [hook("true", timeout=0)]}
    t.create_fails(b, "a hook has timeout 0")


@case(W, "hooks.path_relative", "a relative hook path is an error",
      "config.md#posix-platform-hooks", "This specification extends the IEEE standard in that path MUST be absolute.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"prestart": [{"path": "bin/true"}]}
    t.create_fails(b, "a hook path is relative")


def _failing(b: Bundle, kind: str) -> None:
    hooks = {"poststop": [hook(f"echo poststop >> {b.out}/order")]}
    if kind == "startContainer":
        script = b.rootfs / "bin" / "failhook"
        script.write_text("#!/bin/sh\nexit 1\n")
        script.chmod(0o755)
        hooks[kind] = [{"path": "/bin/failhook"}]
    else:
        hooks[kind] = [hook("exit 1")]
    b.config["hooks"] = hooks


for _kind in ("prestart", "createRuntime", "createContainer"):
    def _make(kind: str):
        @case(W, f"hooks.{kind}_fails", f"a failing {kind} hook fails create, which leaves nothing",
              "runtime.md#lifecycle", f"If any {kind} hook fails, the runtime MUST generate an error, stop the container, and continue the lifecycle at step 12.")
        def _(t: T):
            b = t.bundle().sh("echo process >> /out/order")
            _failing(b, kind)
            t.create_fails(b, f"the {kind} hook failed")
            check("process" not in _order(b), "the program ran")
    _make(_kind)


@case(W, "hooks.failed_create_poststop", "after a failing prestart hook the poststop hooks still run (step 12, then 13)",
      "runtime.md#lifecycle", "If any prestart hook fails, the runtime MUST ... continue the lifecycle at step 12. / 13. The poststop hooks MUST be invoked by the runtime.")
def _(t: T):
    b = t.bundle("true")
    _failing(b, "prestart")
    t.create_fails(b, "the prestart hook failed")
    eq(_order(b), ["poststop"], "hooks run")


@case(W, "hooks.startContainer_fails", "a failing startContainer hook fails start; the program does not run",
      "runtime.md#lifecycle", "If any startContainer hook fails, the runtime MUST generate an error, stop the container, and continue the lifecycle at step 12.")
def _(t: T):
    b = t.bundle().sh("echo process >> /out/order")
    _failing(b, "startContainer")
    cid = t.create(b)
    p = t.rt("start", cid)
    check(p.rc != 0, "start succeeded although the startContainer hook failed")
    t.wait_exit(cid, 5)
    time.sleep(0.1)
    check("process" not in _order(b), "the program ran")
    eq(t.status(cid), "stopped", "status")


@case(W, "hooks.poststart_fails", "a failing poststart hook fails start and stops the container",
      "runtime.md#lifecycle", "If any poststart hook fails, the runtime MUST generate an error, stop the container, and continue the lifecycle at step 12.",
      conflict="runtime-tools poststart_fail asserts a warning and an unaffected lifecycle (the pre-1.3 text)")
def _(t: T):
    b = t.bundle("sleep", "10")
    b.config["hooks"] = {"poststart": [hook("exit 1")]}
    cid = t.create(b)
    p = t.rt("start", cid)
    check(p.rc != 0, "start succeeded although the poststart hook failed")
    t.wait_exit(cid, 5)


@case(W, "hooks.poststop_fails", "a failing poststop hook is a warning: delete succeeds, later hooks run",
      "runtime.md#lifecycle", "If any poststop hook fails, the runtime MUST log a warning, but the remaining hooks and lifecycle continue as if the hook had succeeded.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"poststop": [hook("exit 1"), hook(f"echo second >> {b.out}/order")]}
    cid = t.create(b)
    t.start(cid)
    t.wait_exit(cid)
    t.delete(cid)
    t.assert_gone(cid, "after delete")
    eq(_order(b), ["second"], "hooks run after the failing one")


# =============================================================================================
# the runner

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
