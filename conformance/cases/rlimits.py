"""The "config: rlimits" cases: process.rlimits (config.md POSIX process)."""
from __future__ import annotations

import re

from harness import T
from registry import case, eq


L = "config: rlimits"


def _limits(text: str) -> dict[str, tuple[str, str]]:
    out = {}
    for line in text.splitlines()[1:]:
        parts = re.split(r"\s{2,}", line.strip())
        if len(parts) >= 3:
            out[parts[0]] = (parts[1], parts[2])
    return out


@case(L, "rlimits.values", "rlimits set soft and hard limits",
      "config.md#posix-process", "rlim.rlim_cur MUST match the configured value. / rlim.rlim_max MUST match the configured value.")
def _(t: T):
    b = t.bundle("cat", "/proc/self/limits")
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
                            {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
                            {"type": "RLIMIT_NPROC", "soft": 1111, "hard": 2222}]
    lim = _limits(t.ok_run(b).out)
    eq(lim.get("Max open files"), ("123", "456"), "NOFILE")
    eq(lim.get("Max core file size"), ("0", "4096"), "CORE")
    eq(lim.get("Max processes"), ("1111", "2222"), "NPROC")


@case(L, "rlimits.unknown", "an unknown rlimit type is an error",
      "config.md#posix-process", "The runtime MUST generate an error for any values which cannot be mapped to a relevant kernel interface.")
def _(t: T):
    b = t.bundle("true")
    b.process["rlimits"] = [{"type": "RLIMIT_NOSUCH", "soft": 1, "hard": 1}]
    t.create_fails(b, "RLIMIT_NOSUCH is no rlimit")


@case(L, "rlimits.duplicate", "a duplicated rlimit type is an error",
      "config.md#posix-process", "If rlimits contains duplicated entries with same type, the runtime MUST generate an error.")
def _(t: T):
    b = t.bundle("true")
    b.process["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100},
                            {"type": "RLIMIT_NOFILE", "soft": 200, "hard": 200}]
    t.create_fails(b, "RLIMIT_NOFILE is given twice")
