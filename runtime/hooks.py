"""OCI hooks: prestart, createRuntime, createContainer, startContainer, poststart, poststop.

Each hook gets the container state JSON on stdin, its own args (args[0] is argv[0]) and is
killed when it outlives its timeout. Its environment, as runc 1.1.5 gives it (observed side by
side; the runtime-spec leaves it open): the hook's `env` if given (replacing, never merged;
"env": [] is an empty environment); without one the environment of whatever runs it, which for
the hooks run on the host (prestart, createRuntime, poststart, poststop) is runp's own, and for
the two run in the container init the process's: process.env for createContainer, plus HOME
for startContainer (runc's init has replaced its environment with process.env by then, and has
set HOME for startContainer). Only imported when a config has hooks, so subprocess stays off
the hot path.

Where they run, as runc 1.1.5 (observed side by side, tests/test_hooks.py): prestart,
createRuntime and poststart from the bundle directory (runc changes into it at create, and
1.1.5 runs poststart there too), poststop from the caller's directory (the bundle's under `run`);
createContainer from the rootfs, as root with every capability, before pivot_root;
startContainer as the container process itself: after the whole privilege drop (uid, gids,
capabilities, no_new_privs, seccomp), from process.cwd, right before the execve.
"""
from __future__ import annotations

import os
import signal
import subprocess

from . import jsonlite
from .errors import RuntimeFailure
from .spec import Hook, Spec


def run_hook(kind: str, index: int, hook: Hook, state: bytes,
             default_env: list[str] | None = None, cwd: str | None = None) -> None:
    """Run one hook; RuntimeFailure if it cannot start, fails or outlives its timeout.
    `default_env` is its environment when it has no `env` (None: ours); `cwd` its working
    directory (None: ours).

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
                                 stderr=files[2], env=_env(hook.env, default_env), close_fds=True,
                                 start_new_session=True, cwd=cwd)
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


def _env(env: list[str] | None, default: list[str] | None) -> dict[str, str]:
    """The hook's environment for Popen (`default` None: ours); later entries win, as in runc."""
    env = env if env is not None else default if default is not None else _own_environ()
    return dict(e.split("=", 1) for e in env if "=" in e)


def _own_environ() -> list[str]:
    """runp's environment as its caller gave it. Not os.environ: CPython's C locale coercion
    (PEP 538; -I ignores PYTHONCOERCECLOCALE) adds LC_CTYPE=C.UTF-8 there when the caller
    has no locale set, as containerd's shim has not. The kernel's copy is the original."""
    try:
        with open("/proc/self/environ", "rb") as f:
            return [os.fsdecode(e) for e in f.read().split(b"\0") if e]
    except OSError:
        return [f"{k}={v}" for k, v in os.environ.items()]


def run(spec: Spec, kind: str, state: bytes, warn_only: bool = False, log=None,
        default_env: list[str] | None = None, cwd: str | None = None) -> None:
    """Run every hook of `kind` in order. With warn_only a failure is logged and the rest run."""
    for i, hook in enumerate(spec.hooks.get(kind, [])):
        try:
            run_hook(kind, i, hook, state, default_env, cwd)
        except RuntimeFailure as e:
            if not warn_only:
                raise
            if log is not None:
                log.warning(str(e))


def run_in_container(spec: Spec, kind: str, state: bytes, process_env: list[str]) -> None:
    """createContainer/startContainer: run from the container init (its namespaces), with
    `process_env` for hooks without `env` (see the module docstring). The state's pid is the
    init's as the container sees it (runtime-spec: "for hooks executed in the container
    namespace, it is the pid as seen by the container")."""
    st = jsonlite.loads(state)
    st["pid"] = os.getpid()
    run(spec, kind, jsonlite.dumps(st).encode(), default_env=process_env)


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
