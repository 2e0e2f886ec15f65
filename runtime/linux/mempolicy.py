"""linux.memoryPolicy: the NUMA memory policy (set_mempolicy(2)) of the container's processes.

The policy is inherited across fork and kept across execve, so the container init sets it on
itself before it reports ready (a policy the kernel refuses fails `create`), and `runp exec`'s
process sets it before its exec, as runc does for both.
"""
from __future__ import annotations

import os

from ..errors import ConfigError
from ..spec import MemoryPolicy
from . import sys as lsys

MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
         "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}
FLAGS = {"MPOL_F_STATIC_NODES": 1 << 15, "MPOL_F_RELATIVE_NODES": 1 << 14,
         "MPOL_F_NUMA_BALANCING": 1 << 13}
PATH = "linux.memoryPolicy"
NODES_ONLINE = "/sys/devices/system/node/online"


def online_nodes() -> list[int] | None:
    """The host's online NUMA nodes; None where the kernel has no NUMA support (no file)."""
    from ..spec import parse_id_list
    try:
        with open(NODES_ONLINE) as f:
            return parse_id_list(f.read().strip(), NODES_ONLINE, "node")
    except OSError:
        return None


def check(mp: MemoryPolicy) -> None:
    """Before anything is made, on the host (its /sys): every node named must exist.
    MPOL_F_RELATIVE_NODES numbers nodes relative to the allowed set, so any number is
    fine there (set_mempolicy(2) folds them)."""
    if "MPOL_F_RELATIVE_NODES" in mp.flags or not mp.nodes:
        return
    online = online_nodes()
    if online is None:
        raise ConfigError(PATH, f"this kernel has no NUMA support ({NODES_ONLINE} is missing)")
    missing = [n for n in mp.nodes if n not in online]
    if missing:
        have = ",".join(map(str, online))
        raise ConfigError(f"{PATH}.nodes", f"node {missing[0]} does not exist (online: {have})")


def nodemask(nodes: list[int]) -> bytes:
    """The nodemask as the kernel reads it: an array of unsigned longs, node n at bit n."""
    words = [0] * (max(nodes) // 64 + 1 if nodes else 1)
    for n in nodes:
        words[n // 64] |= 1 << (n % 64)
    return b"".join(w.to_bytes(8, "little") for w in words)


def apply(mp: MemoryPolicy) -> None:
    """set_mempolicy(mode | flags, nodemask, maxnode) on the calling thread (the process's
    only one: runp's init and exec'd process run no threads)."""
    mode = MODES[mp.mode] | sum(FLAGS[f] for f in mp.flags)
    if mp.nodes:
        mask = nodemask(mp.nodes)
        ret = lsys.syscall(lsys.NR["set_mempolicy"], mode, mask, len(mask) * 8 + 1)
    else:
        ret = lsys.syscall(lsys.NR["set_mempolicy"], mode, None, 0)
    if ret == -1:
        err = lsys.get_errno()
        raise ConfigError(PATH, f"set_mempolicy({mp.mode}{''.join('|' + f for f in mp.flags)}"
                          f"{', nodes ' + ','.join(map(str, mp.nodes)) if mp.nodes else ''}): "
                          f"{os.strerror(err)}")
