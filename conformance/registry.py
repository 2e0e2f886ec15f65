"""The case registry: @case registers a function as one case of a section, in import order
(which is the order the cases run and are numbered in); check/eq fail a case, Skip skips it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

LEVELS = ("MUST", "SHOULD")


class Skip(Exception):
    """The machine (or a precondition outside the runtime) cannot support this case."""


class Fail(AssertionError):
    pass


@dataclass
class Case:
    section: str
    name: str
    title: str
    ref: str       # spec file (and anchor)
    quote: str     # the sentence checked, shortened
    level: str
    fn: Callable[["T"], None]
    conflict: str = ""  # where runtime-tools asserts the opposite of the spec text


CASES: list[Case] = []
SECTIONS = ["lifecycle/state", "operations errors", "config: root", "config: mounts",
            "config: process", "config: user", "config: hostname", "config: env",
            "config: rlimits", "config: caps", "config: extensibility", "linux: namespaces",
            "linux: idmaps", "linux: devices", "linux: sysctl", "linux: masked/readonly paths",
            "linux: rootfsPropagation", "linux: seccomp", "linux: cgroups", "hooks"]


def case(section: str, name: str, title: str, ref: str, quote: str, level: str = "MUST",
         conflict: str = ""):
    assert section in SECTIONS and level in LEVELS, (section, level)

    def deco(fn: Callable[["T"], None]):
        assert all(c.name != name for c in CASES), name
        CASES.append(Case(section, name, title, ref, quote, level, fn, conflict))
        return fn
    return deco


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise Fail(msg)


def eq(actual, expected, what: str) -> None:
    if actual != expected:
        raise Fail(f"{what}: expected {expected!r}, got {actual!r}")
