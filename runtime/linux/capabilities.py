"""process.capabilities: parse the five sets and apply them in the container init.

Applying is split around the uid switch the way runc does it: the bounding set is reduced while
we are still root (PR_CAPBSET_DROP needs CAP_SETPCAP), PR_SET_KEEPCAPS carries the permitted set
across setuid(), and only then are effective/permitted/inheritable set with capset(2) and the
ambient set raised (ambient needs the cap in both permitted and inheritable).

The calls go through runtime.linux.sys (on _ctypes): python-prctl would cost an extra import
for four prctl calls.
"""
from __future__ import annotations

import os
import struct

from ..records import record

TYPE_CHECKING = False  # typing costs ~2 ms to import; annotations are strings anyway
if TYPE_CHECKING:
    from typing import Any, Callable

from ..errors import ConfigError, json_type
from . import sys as _sys

CAPS: dict[str, int] = {
    "CAP_CHOWN": 0,
    "CAP_DAC_OVERRIDE": 1,
    "CAP_DAC_READ_SEARCH": 2,
    "CAP_FOWNER": 3,
    "CAP_FSETID": 4,
    "CAP_KILL": 5,
    "CAP_SETGID": 6,
    "CAP_SETUID": 7,
    "CAP_SETPCAP": 8,
    "CAP_LINUX_IMMUTABLE": 9,
    "CAP_NET_BIND_SERVICE": 10,
    "CAP_NET_BROADCAST": 11,
    "CAP_NET_ADMIN": 12,
    "CAP_NET_RAW": 13,
    "CAP_IPC_LOCK": 14,
    "CAP_IPC_OWNER": 15,
    "CAP_SYS_MODULE": 16,
    "CAP_SYS_RAWIO": 17,
    "CAP_SYS_CHROOT": 18,
    "CAP_SYS_PTRACE": 19,
    "CAP_SYS_PACCT": 20,
    "CAP_SYS_ADMIN": 21,
    "CAP_SYS_BOOT": 22,
    "CAP_SYS_NICE": 23,
    "CAP_SYS_RESOURCE": 24,
    "CAP_SYS_TIME": 25,
    "CAP_SYS_TTY_CONFIG": 26,
    "CAP_MKNOD": 27,
    "CAP_LEASE": 28,
    "CAP_AUDIT_WRITE": 29,
    "CAP_AUDIT_CONTROL": 30,
    "CAP_SETFCAP": 31,
    "CAP_MAC_OVERRIDE": 32,
    "CAP_MAC_ADMIN": 33,
    "CAP_SYSLOG": 34,
    "CAP_WAKE_ALARM": 35,
    "CAP_BLOCK_SUSPEND": 36,
    "CAP_AUDIT_READ": 37,
    "CAP_PERFMON": 38,
    "CAP_BPF": 39,
    "CAP_CHECKPOINT_RESTORE": 40,
}
CAP_NAMES: dict[int, str] = {v: k for k, v in CAPS.items()}

SET_NAMES = ("bounding", "effective", "inheritable", "permitted", "ambient")

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


@record
class CapSets:
    """The five sets as capability numbers. A set absent from config.json is empty (runc)."""

    bounding: frozenset[int] = frozenset()
    effective: frozenset[int] = frozenset()
    inheritable: frozenset[int] = frozenset()
    permitted: frozenset[int] = frozenset()
    ambient: frozenset[int] = frozenset()


def mask(caps: frozenset[int] | set[int]) -> int:
    """The bit mask of a set, as /proc/PID/status shows it (CapEff: etc.)."""
    m = 0
    for c in caps:
        m |= 1 << c
    return m


_LAST_CAP: int | None = None


def last_cap() -> int:
    """The highest capability number this kernel knows (read once per process). Read below
    our own procfs: a file mounted over the container's /proc/sys/kernel/cap_last_cap could
    otherwise make runp believe in fewer capabilities, and leave the others in the bounding
    set."""
    global _LAST_CAP
    if _LAST_CAP is None:
        from . import procfs
        try:
            _LAST_CAP = int(procfs.read("sys/kernel/cap_last_cap"))
        except OSError:
            _LAST_CAP = max(CAPS.values())
    return _LAST_CAP


def host_bounding() -> int:
    """This process's bounding set: a capability outside it can never be granted. Read with
    PR_CAPBSET_READ, not /proc/self/status: the init parses capabilities after pivot_root,
    in a container that need not mount /proc."""
    m = 0
    for c in range(last_cap() + 1):
        try:
            if _sys.prctl(_sys.PR_CAPBSET_READ, c) == 1:
                m |= 1 << c
        except OSError:  # EINVAL: beyond this kernel's last capability
            break
    return m


def parse(caps: dict | None, path: str = "process.capabilities",
          warn: Callable[[str], None] | None = None, file: str = "config.json") -> CapSets | None:
    """Validate process.capabilities and map names to numbers.

    None (no `capabilities` object) returns None: like runc, the init then leaves the capability
    sets alone. An unknown name, or one the host cannot grant (beyond cap_last_cap or outside
    our bounding set), raises ConfigError; if `warn` is given it is called with the message and
    the name is dropped instead, which is what runtime-spec 1.3 asks ("MUST be logged as a
    warning ... SHOULD NOT fail") and what runc does. Wrong JSON types always raise. `file`
    is what the messages name (config.json, or exec's --process file).
    """
    def problem(where: str, what: str) -> None:
        err = ConfigError(where, what, file=file)
        if warn is None:
            raise err
        warn(str(err))
    return _parse(caps, path, problem)


def _parse(caps: dict | None, path: str, problem: Callable[[str, str], None]) -> CapSets | None:
    """parse(), with each name that cannot be granted handed to `problem` (path, what)."""
    if caps is None:
        return None
    if not isinstance(caps, dict):
        raise ConfigError(path, f"must be an object, not {json_type(caps)}")
    avail: int | None = None
    sets: dict[str, frozenset[int]] = {}
    for name in SET_NAMES:
        where = f"{path}.{name}"
        val = caps.get(name)
        if val is None:
            sets[name] = frozenset()
            continue
        if not isinstance(val, list):
            raise ConfigError(where, f"must be an array, not {json_type(val)}")
        out: set[int] = set()
        for i, cap in enumerate(val):
            item = f"{where}[{i}]"
            if not isinstance(cap, str):
                raise ConfigError(item, f"must be a string, not {json_type(cap)}")
            num = CAPS.get(cap)
            if num is None:
                problem(item, f'unknown capability "{cap}"')
                continue
            if avail is None:
                avail = host_bounding() & ((1 << (last_cap() + 1)) - 1)
            if not avail >> num & 1:
                problem(item, f'capability "{cap}" is not available on this host')
                continue
            out.add(num)
        sets[name] = frozenset(out)
    return CapSets(**sets)


def drop_bounding(caps: CapSets | None) -> None:
    """Reduce the bounding set to caps.bounding (PR_CAPBSET_DROP needs CAP_SETPCAP: before the
    user switch). With `caps` None nothing changes."""
    if caps is None:
        return
    for c in range(last_cap() + 1):
        if c not in caps.bounding and _sys.prctl(_sys.PR_CAPBSET_READ, c) == 1:
            _sys.prctl(_sys.PR_CAPBSET_DROP, c)


def apply(caps: CapSets | None, switch_user: Callable[[], None],
          warn: Callable[[str], None] | None = None) -> None:
    """Drop the bounding set, switch user keeping caps, then set E/P/I and the ambient set.

    Call in the container init, as (namespaced) root with CAP_SETPCAP, after everything that
    needs privileges and before exec. `switch_user` does setgroups/setgid/setuid. With `caps`
    None only the user is switched (runc: no capabilities object means no capability changes).
    An ambient capability that cannot be raised (not in permitted and inheritable) raises
    OSError, or is reported through `warn` and skipped (runc only warns).
    """
    drop_bounding(caps)
    _sys.prctl(_sys.PR_SET_KEEPCAPS, 1)
    switch_user()
    _sys.prctl(_sys.PR_SET_KEEPCAPS, 0)
    if caps is None:
        return
    capset(caps.effective, caps.permitted, caps.inheritable)
    try:
        _sys.prctl(_sys.PR_CAP_AMBIENT, _sys.PR_CAP_AMBIENT_CLEAR_ALL)
    except OSError as e:
        if e.errno != 22:  # EINVAL: kernel without ambient capabilities (< 4.3)
            raise
    for c in sorted(caps.ambient):
        try:
            _sys.prctl(_sys.PR_CAP_AMBIENT, _sys.PR_CAP_AMBIENT_RAISE, c)
        except OSError as e:
            name = CAP_NAMES.get(c, str(c))
            msg = f"cannot raise ambient capability {name}: {os.strerror(e.errno or 0)}"
            if warn is None:
                raise OSError(e.errno, msg) from None
            warn(msg)


def capset(effective: frozenset[int], permitted: frozenset[int],
           inheritable: frozenset[int]) -> None:
    """capset(2) on this thread with the 64-bit (version 3, two-word) interface."""
    hdr = struct.pack("Ii", _LINUX_CAPABILITY_VERSION_3, 0)  # struct __user_cap_header_struct
    e, p, i = mask(effective), mask(permitted), mask(inheritable)
    data = b"".join(struct.pack("III", e >> s & 0xFFFFFFFF, p >> s & 0xFFFFFFFF, i >> s & 0xFFFFFFFF)
                    for s in (0, 32))  # struct __user_cap_data_struct[2]
    ret = _sys.syscall(_sys.NR["capset"], hdr, data)
    if ret == -1:
        err = _sys.get_errno()
        raise OSError(err, f"capset: {os.strerror(err)}")


def unavailable(caps: object, path: str = "process.capabilities") -> list[tuple[str, str]]:
    """(JSON path, problem) for every name in well-typed sets that this host cannot grant:
    what create and exec drop with a warning, and what `runp check` reports as an error."""
    found: list[tuple[str, str]] = []
    if isinstance(caps, dict):
        sets = {k: v for k, v in caps.items() if k in SET_NAMES and isinstance(v, list)}
        _parse(sets, path, lambda where, problem: found.append((where, problem)))
    return found

