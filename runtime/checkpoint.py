"""`runp checkpoint` / `runp restore`: not possible yet, and saying exactly why.

runc checkpoints with CRIU. runp has no CRIU driver yet, and on the machines it is tested on
CRIU cannot work anyway (Debian's criu 3.17 fails `criu check` on their kernel). The commands
exist so that callers get runc's interface: podman probes `checkpoint --help` (exit 0), and
containerd's shim passes runc's flags. Every real attempt fails with one line naming the reason:
criu is not installed, criu is unusable on this host (the last line of `criu check`), or
runp's own missing implementation.
"""
from __future__ import annotations

from .errors import RuntimeFailure

# runc's flags, accepted so that a caller's command line is never a usage error
CHECKPOINT_FLAGS: dict = {
    "image-path": (("--image-path",), True), "work-path": (("--work-path",), True),
    "parent-path": (("--parent-path",), True), "leave-running": (("--leave-running",), False),
    "tcp-established": (("--tcp-established",), False),
    "ext-unix-sk": (("--ext-unix-sk",), False), "shell-job": (("--shell-job",), False),
    "lazy-pages": (("--lazy-pages",), False), "status-fd": (("--status-fd",), True),
    "page-server": (("--page-server",), True), "file-locks": (("--file-locks",), False),
    "pre-dump": (("--pre-dump",), False),
    "manage-cgroups-mode": (("--manage-cgroups-mode",), True),
    "empty-ns": (("--empty-ns",), "list"), "auto-dedup": (("--auto-dedup",), False),
    "help": (("--help", "-h"), False),
}
RESTORE_FLAGS: dict = {
    "console-socket": (("--console-socket",), True), "image-path": (("--image-path",), True),
    "work-path": (("--work-path",), True), "tcp-established": (("--tcp-established",), False),
    "ext-unix-sk": (("--ext-unix-sk",), False), "shell-job": (("--shell-job",), False),
    "file-locks": (("--file-locks",), False),
    "manage-cgroups-mode": (("--manage-cgroups-mode",), True),
    "bundle": (("--bundle", "-b"), True), "detach": (("--detach", "-d"), False),
    "pid-file": (("--pid-file",), True), "no-subreaper": (("--no-subreaper",), False),
    "no-pivot": (("--no-pivot",), False), "empty-ns": (("--empty-ns",), "list"),
    "auto-dedup": (("--auto-dedup",), False), "lazy-pages": (("--lazy-pages",), False),
    "lsm-profile": (("--lsm-profile",), True), "lsm-mount-context": (("--lsm-mount-context",), True),
    "help": (("--help", "-h"), False),
}


def criu_problem(criu: str = "criu") -> str:
    """Why checkpoint/restore cannot run here (one line)."""
    import shutil
    import subprocess
    path = shutil.which(criu)
    if path is None:
        return (f"criu ({criu}) is not installed: checkpoint/restore needs it "
                "(Debian: apt-get install criu)")
    try:
        p = subprocess.run([path, "check"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"criu ({path}) is unusable on this host: criu check: {e}"
    if p.returncode != 0:
        lines = [ln.strip() for ln in p.stdout.decode(errors="replace").splitlines() if ln.strip()]
        why = lines[-1] if lines else f"exit status {p.returncode}"
        return f"criu ({path}) is unusable on this host: criu check failed: {why}"
    return f"runp does not implement checkpoint/restore with criu yet (criu at {path} passes criu check)"


def checkpoint(root: str, container_id: str, criu: str | None) -> None:
    from .container import Container
    from .errors import NotRunning
    c = Container(root, container_id)
    if c.status() == "stopped":
        raise NotRunning(container_id)
    raise RuntimeFailure(f"cannot checkpoint container {container_id}: {criu_problem(criu or 'criu')}")


def restore(root: str, container_id: str, criu: str | None) -> None:
    from .state import StateDir
    if StateDir(root, container_id).exists():
        from .errors import ContainerExists
        raise ContainerExists(container_id)
    raise RuntimeFailure(f"cannot restore container {container_id}: {criu_problem(criu or 'criu')}")
