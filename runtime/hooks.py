"""OCI hooks: prestart, createRuntime, createContainer, startContainer, poststart, poststop.

Each hook gets the container state JSON on stdin, its own args (args[0] is argv[0]) and env, and
is killed when it outlives its timeout. Only imported when a config has hooks, so subprocess
stays off the hot path.
"""
from __future__ import annotations

import json
import subprocess

from .errors import RuntimeFailure
from .spec import Hook, Spec


def state_json(spec: Spec, container_id: str, status: str, pid: int, created: str = "") -> bytes:
    from .state import hook_state
    return hook_state(spec, container_id, status, pid)


def run_hook(kind: str, index: int, hook: Hook, state: bytes) -> None:
    argv = hook.args or [hook.path]
    try:
        p = subprocess.run(argv, executable=hook.path, input=state, env=_env(hook.env),
                           timeout=hook.timeout, capture_output=True, close_fds=True)
    except subprocess.TimeoutExpired:
        raise RuntimeFailure(f"hooks.{kind}[{index}]: {hook.path}: timed out after "
                             f"{hook.timeout}s") from None
    except OSError as e:
        raise RuntimeFailure(f"hooks.{kind}[{index}]: {hook.path}: {e.strerror}") from None
    if p.returncode != 0:
        detail = (p.stderr or p.stdout).decode(errors="replace").strip().splitlines()
        why = f": {detail[-1]}" if detail else ""
        raise RuntimeFailure(f"hooks.{kind}[{index}]: {hook.path}: exit status {p.returncode}{why}")


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
