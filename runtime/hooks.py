"""OCI hooks: prestart, createRuntime, createContainer, startContainer, poststart, poststop.

Each hook gets the container state JSON on stdin, its own args (args[0] is argv[0]) and env, and
is killed when it outlives its timeout. Only imported when a config has hooks, so subprocess
stays off the hot path.
"""
from __future__ import annotations

import os
import signal
import subprocess

from . import jsonlite
from .errors import RuntimeFailure
from .spec import Hook, Spec


def run_hook(kind: str, index: int, hook: Hook, state: bytes) -> None:
    """Run one hook; RuntimeFailure if it cannot start, fails or outlives its timeout.

    stdin, stdout and stderr are memory files, not pipes: a hook that leaves a background
    child holding its output cannot make us wait for EOF. The hook leads its own process
    group, so on timeout the whole group is killed, not just the first process."""
    where = f"hooks.{kind}[{index}]: {hook.path}"
    argv = hook.args or [hook.path]
    files = [os.memfd_create(f"hook-{name}", os.MFD_CLOEXEC) for name in ("in", "out", "err")]
    try:
        os.write(files[0], state)
        os.lseek(files[0], 0, os.SEEK_SET)
        try:
            p = subprocess.Popen(argv, executable=hook.path, stdin=files[0], stdout=files[1],
                                 stderr=files[2], env=_env(hook.env), close_fds=True,
                                 start_new_session=True)
        except OSError as e:
            raise RuntimeFailure(f"{where}: {e.strerror}") from None
        try:
            code = p.wait(timeout=hook.timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
            raise RuntimeFailure(f"{where}: timed out after {hook.timeout}s (killed)") from None
        if code != 0:
            why = f"exit status {code}" if code > 0 else f"killed by signal {-code}"
            detail = (_read(files[2]) or _read(files[1])).strip().splitlines()
            raise RuntimeFailure(f"{where}: {why}" + (f": {detail[-1]}" if detail else ""))
    finally:
        for fd in files:
            os.close(fd)


def _read(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 65536).decode(errors="replace")


def _env(env: list[str]) -> dict[str, str]:
    return dict(e.split("=", 1) for e in env if "=" in e)


def run(spec: Spec, kind: str, state: bytes, warn_only: bool = False, log=None) -> None:
    """Run every hook of `kind` in order. With warn_only a failure is logged and the rest run."""
    for i, hook in enumerate(spec.hooks.get(kind, [])):
        try:
            run_hook(kind, i, hook, state)
        except RuntimeFailure as e:
            if not warn_only:
                raise
            if log is not None:
                log.warning(str(e))


def run_in_container(spec: Spec, kind: str, state: bytes) -> None:
    """createContainer/startContainer: run from the container init (its namespaces). The
    state's pid is the init's as the container sees it (runtime-spec: "for hooks executed in
    the container namespace, it is the pid as seen by the container")."""
    st = jsonlite.loads(state)
    st["pid"] = os.getpid()
    run(spec, kind, jsonlite.dumps(st).encode())


# `runp start` and startContainer hooks: start opens the exec fifo for reading before it writes
# the start byte; the init keeps its (close-on-exec) end open through the hooks and until its
# exec. When no writer is left start sees POLLHUP: an empty fifo means the exec happened, text
# is the init's error. runtime-spec: a failing startContainer hook fails start.

def wait_start_verdict(fd: int) -> None:
    """In `runp start`: wait until the init has exec'd (return) or failed (RuntimeFailure)."""
    import select
    import time
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLHUP)
    while not any(ev & select.POLLHUP for _, ev in poller.poll()):
        time.sleep(0.002)  # POLLIN alone: our start byte is still unread, or text is arriving
    data = b""
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
    if data.startswith(b"0"):  # the start byte, never read: the init died before it
        raise RuntimeFailure("cannot start a container that has stopped")
    if data:
        raise RuntimeFailure(data.decode(errors="replace").strip())


def report_start_failure(fd: int, msg: str) -> None:
    """In the init: the verdict for a waiting `runp start` (see wait_start_verdict)."""
    try:
        os.write(fd, msg.removeprefix("runp: ").encode()[:4000])
    except OSError:
        pass
