"""OCI hooks: prestart, createRuntime, createContainer, startContainer, poststart, poststop.

Each hook gets the container state JSON on stdin, its own args (args[0] is argv[0]) and env, and
is killed when it outlives its timeout. Only imported when a config has hooks, so subprocess
stays off the hot path.
"""
from __future__ import annotations

import os
import signal
import subprocess

from .errors import RuntimeFailure
from .spec import Hook, Spec


def state_json(spec: Spec, container_id: str, status: str, pid: int, created: str = "") -> bytes:
    from .state import hook_state
    return hook_state(spec, container_id, status, pid)


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
    """createContainer/startContainer: run from the container init (its namespaces)."""
    run(spec, kind, state)
