"""Rootless mode: runp run by an ordinary user, or as root of a user namespace that is not the
host's (rootless podman starts conmon and the runtime in one: uid 0 there, no real privileges).

The decisions are runc's: the state root defaults to $XDG_RUNTIME_DIR/runp, and a cgroup that
cannot be made for lack of permission is done without (rootless_cgroups(); the policy is in
runtime/linux/cgroups/rootless.py). The kernel's rules for the unprivileged (devices bound, not
made; no way back into the caller's pid namespace; setgroups denied before a gid_map of one's
own gid; newuidmap for more) are applied where they bite, asking in_user_namespace(),
unprivileged() or the euid.

Cheap for root callers: the euid comes first, and /proc/self/uid_map is read (once per process)
only when the answer depends on it. Only `os` is imported: the CLI calls this on every command.
"""
from __future__ import annotations

import os

from .errors import RuntimeFailure

DEFAULT_ROOT = "/run/runp"
_FULL_MAP = [b"0", b"0", b"4294967295"]  # the initial user namespace's uid_map
_in_userns: bool | None = None


def in_user_namespace() -> bool:
    """Whether this process runs in a user namespace that does not map the whole id range (runc's
    userns.RunningInUserNS): its root is not the host's root. Cached: ask before unsharing one."""
    global _in_userns
    if _in_userns is None:
        try:
            fd = os.open("/proc/self/uid_map", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            _in_userns = False  # no /proc: as runc, assume the host's
        else:
            try:
                _in_userns = os.read(fd, 4096).split() != _FULL_MAP
            finally:
                os.close(fd)
    return _in_userns


def unprivileged() -> bool:
    """Ids and mounts the kernel gives only to the host's root are out of reach: a non-zero
    euid, or root of a user namespace (e.g. podman's)."""
    return os.geteuid() != 0 or in_user_namespace()


def default_root() -> tuple[str, bool]:
    """The state root when --root is not given, and whether it is $XDG_RUNTIME_DIR's. As runc:
    the XDG directory for a non-root caller, and for root of a user namespace unless $USER says
    "root"; never for the host's root (whose login sessions set XDG_RUNTIME_DIR=/run/user/0)."""
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if not xdg:
        return DEFAULT_ROOT, False
    if os.geteuid() == 0 and (not in_user_namespace() or os.environ.get("USER") == "root"):
        return DEFAULT_ROOT, False
    return xdg.rstrip("/") + "/runp", True


def make_xdg_root(root: str) -> None:
    """A state root in $XDG_RUNTIME_DIR: private (0700) and sticky, so that the periodic clean-up
    of that directory (XDG Base Directory spec, systemd-logind) leaves it alone, as runc does."""
    os.makedirs(root, 0o700, exist_ok=True)
    os.chmod(root, 0o1700)


_BOOL = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}


def parse_flag(value: str | None) -> bool | None:
    """--rootless: true, false or auto (None); Go's boolean spellings, as runc accepts them."""
    if value is None or value.lower() in ("", "auto"):
        return None
    b = _BOOL.get(value.lower())
    if b is None:
        raise RuntimeFailure(f'invalid value "{value}" for flag --rootless: want true, false or auto')
    return b


def rootless_cgroups(flag: bool | None) -> bool:
    """Whether a cgroup that cannot be made for lack of permission is done without (runc's
    shouldUseRootlessCgroupManager): --rootless true/false decides; auto: yes for a non-root
    caller, no for the host's root, and yes for root of a user namespace (runc: as the cgroup
    path alone cannot tell whether it is ours to write)."""
    if flag is not None:
        return flag
    return os.geteuid() != 0 or in_user_namespace()


def check_config(spec) -> None:
    """What a non-root caller cannot have at all (runc's rootless validation): a container
    without a user namespace would need the host's privileges for every other namespace."""
    if spec.linux.namespace("user") is None:
        from .errors import ConfigError
        raise ConfigError("linux.namespaces", "a rootless container needs a user namespace "
                                              "(runp spec --rootless makes such a config)")


def single_own_id(maps: list, own: int) -> bool:
    """A map of one id, the caller's own: what the kernel lets an unprivileged process write
    itself (for a gid_map only once setgroups is denied), and what needs no newuidmap."""
    return len(maps) == 1 and maps[0].size == 1 and maps[0].host_id == own


_TOOL_DIRS = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin")


def map_with_tool(pid: int, name: str, maps: list) -> None:
    """Write /proc/<pid>/uid_map or gid_map with newuidmap/newgidmap (setuid root; Debian's
    uidmap package), which grant the ranges /etc/subuid and /etc/subgid give the caller: what a
    non-root caller needs for more than its own id, as runc does. A failure is a RuntimeFailure
    with the tool's own message."""
    tool = "newuidmap" if name == "uid_map" else "newgidmap"
    dirs = [d for d in os.environ.get("PATH", "").split(":") if d.startswith("/")] + list(_TOOL_DIRS)
    path = next((p for p in (f"{d}/{tool}" for d in dirs) if os.access(p, os.X_OK)), None)
    if path is None:
        raise RuntimeFailure(f"{tool} is not installed (Debian package uidmap): a non-root user "
                             "can map only its own id")
    argv = [path, str(pid)] + [str(v) for m in maps for v in (m.container_id, m.host_id, m.size)]
    import subprocess  # (20 ms, on this rare path only: all fds but 0-2 closed for a setuid tool)
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RuntimeFailure(f"{tool}: {getattr(e, 'strerror', None) or e}") from None
    if p.returncode != 0:
        lines = p.stdout.decode(errors="replace").strip().splitlines()
        why = lines[-1].removeprefix(f"{tool}: ") if lines else f"exit status {p.returncode}"
        raise RuntimeFailure(f"{tool}: {why}")
