"""`runp run`: create + start, then (in the foreground) forward signals, wait, delete.

runp makes itself a child subreaper before forking, so the container init (whose parent, stage
1, exits during create) is re-parented to runp and its exit status can be collected. It stays
one while the container runs, so what the container orphans (without a pid namespace of its
own) comes to runp and is reaped; `--no-subreaper` (runc's flag) gives that up once the init
is ours: orphans then go to the host's init or the nearest subreaper above runp.
"""
from __future__ import annotations

import os

import _signal  # the signal module builds enums on import: milliseconds on every run

from .container import Container
from .log import log

TYPE_CHECKING = False
if TYPE_CHECKING:
    from .create import CreateOptions


def run(root: str, container_id: str, bundle: str, opts: CreateOptions, *, detach: bool = False,
        keep: bool = False, subreaper: bool = True) -> int:
    if detach:
        c = Container.create(root, container_id, bundle, opts)
        _start_or_destroy(c)
        return 0
    c = Container.create(root, container_id, bundle, opts, foreground=True)
    pid = c.state.pid
    if not subreaper:  # the init is our child by now (see the module's docstring)
        from .linux import sys as lsys
        lsys.prctl(lsys.PR_SET_CHILD_SUBREAPER, 0)

    proxy = None
    import gc
    gc.freeze()  # runp's CLI runs without the collector; we may now wait for days:
    gc.enable()  # on, for what is made from now (see runtime/cli.py)
    try:
        from .signals import Forwarder
        Forwarder().to(pid)
        if c.console_master is not None:
            from .console import Proxy
            proxy = Proxy(c.console_master)
            _signal.signal(_signal.SIGWINCH, lambda *_: proxy.resize())
        _start_or_destroy(c)
        log.phase("started")
        if proxy is not None:
            with proxy:
                proxy.pump(lambda: _reaped(pid) is not None)
        code = _wait(pid)
        log.phase("exited")
    finally:
        if c.console_master is not None:
            os.close(c.console_master)
        if not keep:
            _delete(c)
            log.phase("deleted")
    return code


def _delete(c: Container) -> None:
    """Delete after the container exited; a failure is reported (the exit status is still
    the container's), after one retry for a cgroup still busy with an exiting process."""
    for attempt in (1, 2):
        try:
            c.delete(force=True)
            return
        except Exception as e:  # noqa: BLE001
            if attempt == 2:
                log.warning(f"delete {c.id}: {e}")
                import sys
                sys.stderr.write(f"runp: delete {c.id}: {e}\n")


_exited: dict[int, int] = {}


def _reaped(pid: int) -> int | None:
    """Reap whatever has exited (orphans are re-parented to us too); status of `pid` if done."""
    while True:
        try:
            p, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if p == 0:
            break
        _exited[p] = status
    return _exited.get(pid)


def _wait(pid: int) -> int:
    status = _exited.get(pid)
    while status is None:
        try:
            p, st = os.waitpid(-1, 0)
        except ChildProcessError:
            return 255
        _exited[p] = st
        status = _exited.get(pid)
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def _start_or_destroy(c: Container) -> None:
    try:
        c.start()
    except BaseException:
        c.delete(force=True)
        raise
