"""What hack/kill-sweep, hack/load and hack/fuzz share: spawning runp without the subprocess
module (so that reaping orphans never steals a status), bundles, and the host check that nothing
of a container is left (state dir, mount, cgroup in every hierarchy, process, interface).

The scripts make themselves a child subreaper: every process a killed runp leaves behind (its
helpers, the container's init) is re-parented to them, so "no process left" is "no child left".
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(TOP / "tests"))
sys.path.insert(0, str(TOP))

from conftest import (base_config, build_rootfs, cgroup_roots, containers_in,  # noqa: E402,F401
                      proc_alive)

PR_SET_CHILD_SUBREAPER = 36
RUNP = str(TOP / ".venv" / "bin" / "runp")


def become_subreaper() -> None:
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_CHILD_SUBREAPER)")
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)


class Reaper:
    """Spawns commands (posix_spawn: safe from worker threads) and collects every child's exit
    status with waitpid(-1), under a lock so that worker threads can share it."""

    def __init__(self) -> None:
        self.statuses: dict[int, int] = {}
        self.spawned: set[int] = set()  # only their statuses are kept: see _reap
        self.lock = threading.Lock()

    def spawn(self, argv: list[str], out: str, group: bool = False, stdin: str = "/dev/null",
              env: dict | None = None) -> int:
        acts = [(os.POSIX_SPAWN_OPEN, 0, stdin, os.O_RDONLY, 0),
                (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
                (os.POSIX_SPAWN_DUP2, 1, 2)]
        kw = {"setpgroup": 0} if group else {}
        with self.lock:  # (so that _reap knows it before it can exit)
            pid = os.posix_spawn(argv[0], argv, os.environ if env is None else env,
                                 file_actions=acts, **kw)
            self.spawned.add(pid)
        return pid

    def reap(self) -> None:
        with self.lock:
            self._reap()

    def _reap(self) -> None:
        while True:
            try:
                pid, st = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            # An orphan's status (a container init, a helper of a killed runp) is dropped:
            # kept, it would be taken for the status of a later command given the same pid.
            if pid in self.spawned:
                self.spawned.discard(pid)
                self.statuses[pid] = st

    def wait(self, pid: int, timeout: float) -> int | None:
        """The exit code (negative: killed by that signal), or None after `timeout`."""
        deadline = time.monotonic() + timeout
        delay = 0.0005
        while True:
            with self.lock:
                self._reap()
                if pid in self.statuses:
                    return os.waitstatus_to_exitcode(self.statuses.pop(pid))
            if time.monotonic() > deadline:
                return None
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def run(self, argv: list[str], out: str, timeout: float, stdin: str = "/dev/null",
            env: dict | None = None) -> tuple[int | str, str]:
        """Run to the end; ("hang", output) if it took longer than `timeout` (then killed)."""
        pid = self.spawn(argv, out, stdin=stdin, env=env)
        rc: int | str | None = self.wait(pid, timeout)
        if rc is None:
            os.kill(pid, signal.SIGKILL)
            self.wait(pid, 30)
            rc = "hang"
        return rc, Path(out).read_text(errors="replace")


def make_bundle(path: Path, template: Path, cfg: dict) -> Path:
    if not (path / "rootfs").exists():
        shutil.copytree(template, path / "rootfs", symlinks=True)
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def children() -> list[int]:
    """Our live (non-zombie) children: with a subreaper, every orphan of ours too."""
    out = []
    for t in os.listdir("/proc/self/task"):
        try:
            out += [int(x) for x in Path(f"/proc/self/task/{t}/children").read_text().split()]
        except OSError:
            pass
    return [k for k in out if proc_alive(k)]


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return "?"


class HostCheck:
    """What a container may leave on the host, compared with before: state dirs under `root`,
    mounts mentioning `work`, cgroups below /<tag> in every hierarchy, our children, runp's
    temporary copy-up directories in /tmp; and network interfaces that appeared (reported
    apart: on a shared host other programs make them too)."""

    def __init__(self, reaper: Reaper, root: Path, work: Path, tag: str) -> None:
        self.reaper = reaper
        self.root = root
        self.work = str(work)
        self.tag = tag
        self.net0 = set(os.listdir("/sys/class/net"))
        self.new_interfaces: set[str] = set()
        self.tmp0 = self._tmp()

    @staticmethod
    def _tmp() -> set[str]:
        return {n for n in os.listdir("/tmp") if n.startswith("runp-tmpcopyup-")}

    def leaks(self, cid: str | None = None, wait: float = 5.0) -> list[str]:
        """cid: that container's traces; None: any container's (and the shared parent cgroup)."""
        out = []
        names = [cid] if cid else containers_in(self.root)
        for n in names:
            if (self.root / n).exists():
                out.append(f"state dir {self.root / n} left: {os.listdir(self.root / n)}")
        with open("/proc/self/mountinfo") as f:
            mounts = [ln.split()[4] for ln in f if self.work in ln]
        if mounts:
            out.append(f"mounts left: {mounts}")
        for r in cgroup_roots():
            d = Path(r) / self.tag / cid if cid else Path(r) / self.tag
            if d.exists():
                out.append(f"cgroup left: {d}")
        deadline = time.monotonic() + wait
        while True:
            self.reaper.reap()
            kids = children()
            if not kids or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        if kids:
            out.append("processes left: " + ", ".join(f"{k} {cmdline(k)}" for k in kids))
            for k in kids:
                try:
                    os.kill(k, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        net = set(os.listdir("/sys/class/net")) - self.net0
        if net:  # runp makes none (a container's netns has only lo): these are another
            # program's on this shared host, unless they stay; told, not counted
            self.new_interfaces |= net
            self.net0 |= net
        tmp = self._tmp() - self.tmp0
        if tmp:  # one that goes at once is a create's at work (another script's, at the same time)
            time.sleep(1)
            tmp &= self._tmp()
        if tmp:
            out.append(f"left in /tmp: {sorted(tmp)}")
            self.tmp0 |= tmp
        return out

    def remove_parent_cgroups(self) -> None:
        """After a failed run: the shared parent cgroups, so that nothing outlives the script."""
        for r in cgroup_roots():
            d = Path(r) / self.tag
            if d.exists():
                for sub in sorted(d.glob("**/"), key=lambda p: -len(p.parts)):
                    try:
                        sub.rmdir()
                    except OSError:
                        pass
