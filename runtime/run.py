"""`runp run`: create + start, then (in the foreground) forward signals, wait, delete.

runp makes itself a child subreaper before forking, so the container init (whose parent, stage
1, exits during create) is re-parented to runp and its exit status can be collected.
"""
from __future__ import annotations

import os
import signal

from .container import Container, CreateOptions

FORWARDED = [s for s in signal.Signals if s not in (signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD,
                                                     signal.SIGWINCH)]


def run(root: str, container_id: str, bundle: str, opts: CreateOptions, *, detach: bool = False,
        keep: bool = False) -> int:
    if detach:
        c = Container.create(root, container_id, bundle, opts)
        _start_or_destroy(c)
        return 0
    c = Container.create(root, container_id, bundle, opts, foreground=True)
    pid = c.state.pid
    pending: list[int] = []

    def forward(signum, _frame):
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    proxy = None
    try:
        for s in FORWARDED:
            try:
                signal.signal(s, forward)
            except (OSError, ValueError):
                pass
        if c.console_master is not None:
            from .console import Proxy
            proxy = Proxy(c.console_master)
            signal.signal(signal.SIGWINCH, lambda *_: proxy.resize())
        _start_or_destroy(c)
        del pending
        if proxy is not None:
            with proxy:
                proxy.pump(lambda: _reaped(pid) is not None)
        code = _wait(pid)
    finally:
        if c.console_master is not None:
            os.close(c.console_master)
        if not keep:
            try:
                c.delete(force=True)
            except Exception:  # noqa: BLE001 - the exit status matters more than cleanup noise
                pass
    return code


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
