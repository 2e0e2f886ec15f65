"""Start the kernel's cgroup-migration grace period early, in the background.

Moving a process between cgroups (a write to cgroup.procs, in v1 and v2 alike) takes the
kernel's global cgroup_threadgroup_rwsem for writing. The first writer after a quiet spell
waits for an RCU grace period (rcu_sync_enter): 4-15 ms on a small VM, the largest single cost
of `runp run`. Writers that come while that window is open (and for one grace period after the
last one left) do not wait. create, run and exec can move their process only late, once the
container's cgroup exists; so, first thing, a thread moves runp into the cgroup it is already
in: a move that changes nothing, whose wait overlaps with parsing the config and building the
container instead of following it. runc hides the same wait behind the start of `runc init`.

Best effort: on any error (no cgroupfs, read-only, not permitted) the real move simply waits
itself. Hosts whose cgroupfs is mounted with favordynmods never wait.
"""
from __future__ import annotations

import _thread
import fcntl
import os

_PROC_CGROUP = "/proc/self/cgroup"


def candidates(proc_cgroup: str) -> list[str]:
    """cgroup.procs files of the cgroups this process is in, cheapest first: the cgroup2 one
    (hybrid layout, then pure v2), then the v1 hierarchies mounted under their own names."""
    out: list[str] = []
    v1: list[str] = []
    for line in proc_cgroup.splitlines():
        hid, _, rest = line.partition(":")
        ctrls, _, path = rest.partition(":")
        path = path.rstrip("/")
        if hid == "0" and not ctrls:
            out += [f"/sys/fs/cgroup/unified{path}/cgroup.procs", f"/sys/fs/cgroup{path}/cgroup.procs"]
        elif ctrls and not ctrls.startswith("name="):
            v1.append(f"/sys/fs/cgroup/{ctrls}{path}/cgroup.procs")
    return out + v1


def _open_own_procs() -> int | None:
    """Our own cgroup.procs, opened for writing at an fd far above any a container may be
    given (--preserve-fds): the caller's fds must not shift while another thread holds it."""
    try:
        fd = os.open(_PROC_CGROUP, os.O_RDONLY | os.O_CLOEXEC)
        try:
            files = candidates(os.read(fd, 65536).decode())
        finally:
            os.close(fd)
    except OSError:
        return None
    for path in files:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 1000)
        except OSError:
            return None
        finally:
            os.close(fd)
    return None


def _move_self(fd: int) -> None:
    try:
        os.write(fd, str(os.getpid()).encode())
    except OSError:
        pass
    finally:
        os.close(fd)


def start() -> None:
    """Begin the grace period now, in a thread (the write sleeps with the GIL released)."""
    fd = _open_own_procs()
    if fd is None:
        return
    try:
        _thread.start_new_thread(_move_self, (fd,))
    except RuntimeError:  # no thread could be made: nothing lost but the head start
        os.close(fd)
