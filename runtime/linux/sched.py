"""process.scheduler, process.ioPriority and linux.personality: three per-process attributes
that survive execve, so the container init sets them before it reports ready and a value the
kernel refuses fails `create` (config.md: an unsupported value MUST be an error, never ignored).

`validate` checks the config without touching the process (the parent calls it before forking);
`apply` makes the syscalls (sched_setattr, ioprio_set, personality) through ctypes.
"""
from __future__ import annotations

import ctypes
import os

from ..errors import ConfigError
from . import sys as _sys

POLICIES = {"SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
            "SCHED_IDLE": 5, "SCHED_DEADLINE": 6}  # SCHED_ISO is not in mainline Linux
SCHED_FLAGS = {"SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02,
               "SCHED_FLAG_DL_OVERRUN": 0x04, "SCHED_FLAG_KEEP_POLICY": 0x08,
               "SCHED_FLAG_KEEP_PARAMS": 0x10, "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20,
               "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40}
IOPRIO_CLASSES = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
PERSONALITIES = {"LINUX": 0x0000, "LINUX32": 0x0008}
IOPRIO_WHO_PROCESS = 1


class _SchedAttr(ctypes.Structure):
    _fields_ = [("size", ctypes.c_uint32), ("sched_policy", ctypes.c_uint32),
                ("sched_flags", ctypes.c_uint64), ("sched_nice", ctypes.c_int32),
                ("sched_priority", ctypes.c_uint32), ("sched_runtime", ctypes.c_uint64),
                ("sched_deadline", ctypes.c_uint64), ("sched_period", ctypes.c_uint64)]


def _int(d: dict, key: str, path: str, lo: int, hi: int) -> int:
    v = d.get(key, 0)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise ConfigError(f"{path}.{key}", f"must be an integer from {lo} to {hi}")
    return v


def validate(scheduler: dict | None, io_priority: dict | None, personality: dict | None) -> None:
    """Raise ConfigError (naming the JSON path) for anything apply() could not do."""
    if scheduler is not None:
        p = "process.scheduler"
        if scheduler.get("policy") not in POLICIES:
            raise ConfigError(f"{p}.policy", f'unsupported policy {scheduler.get("policy")!r}')
        _int(scheduler, "nice", p, -20, 19)
        _int(scheduler, "priority", p, 0, 99)
        for key in ("runtime", "deadline", "period"):
            _int(scheduler, key, p, 0, 2**64 - 1)
        flags = scheduler.get("flags") or []
        if not isinstance(flags, list):
            raise ConfigError(f"{p}.flags", "must be an array")
        for i, f in enumerate(flags):
            if f not in SCHED_FLAGS:
                raise ConfigError(f"{p}.flags[{i}]", f"unsupported flag {f!r}")
    if io_priority is not None:
        p = "process.ioPriority"
        if io_priority.get("class") not in IOPRIO_CLASSES:
            raise ConfigError(f"{p}.class", f'unsupported class {io_priority.get("class")!r}')
        _int(io_priority, "priority", p, 0, 7)
    if personality is not None:
        p = "linux.personality"
        if personality.get("domain") not in PERSONALITIES:
            raise ConfigError(f"{p}.domain", f'unsupported domain {personality.get("domain")!r}')
        if personality.get("flags"):
            raise ConfigError(f"{p}.flags", "no personality flags are supported")


def apply(scheduler: dict | None, io_priority: dict | None, personality: dict | None) -> None:
    """Set the attributes on the calling process (the container init, before exec)."""
    validate(scheduler, io_priority, personality)
    if personality is not None:
        if _sys.libc.personality(ctypes.c_ulong(PERSONALITIES[personality["domain"]])) == -1:
            raise _error("linux.personality", ctypes.get_errno())
    if scheduler is not None:
        attr = _SchedAttr(ctypes.sizeof(_SchedAttr), POLICIES[scheduler["policy"]],
                          sum(SCHED_FLAGS[f] for f in scheduler.get("flags") or []),
                          scheduler.get("nice", 0), scheduler.get("priority", 0),
                          scheduler.get("runtime", 0), scheduler.get("deadline", 0),
                          scheduler.get("period", 0))
        nr = ctypes.c_long(_sys.NR["sched_setattr"])
        if _sys.libc.syscall(nr, 0, ctypes.byref(attr), 0) == -1:
            raise _error("process.scheduler", ctypes.get_errno())
    if io_priority is not None:
        value = IOPRIO_CLASSES[io_priority["class"]] << 13 | io_priority.get("priority", 0)
        nr = ctypes.c_long(_sys.NR["ioprio_set"])
        if _sys.libc.syscall(nr, IOPRIO_WHO_PROCESS, 0, value) == -1:
            raise _error("process.ioPriority", ctypes.get_errno())


def _error(path: str, err: int) -> ConfigError:
    return ConfigError(path, f"the kernel refused it: {os.strerror(err)}")
