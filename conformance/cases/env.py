"""The "config: env" cases: process.env and the PATH lookup of args[0] (config.md Process)."""
from __future__ import annotations

from harness import MARKER_ENV, PATH_ENV, T
from registry import case, check, eq


V = "config: env"


@case(V, "env.exact", "env is the process's environment",
      "config.md#process", "env (array of strings, OPTIONAL) with the same semantics as IEEE Std 1003.1-2008's environ.")
def _(t: T):
    b = t.bundle("env")
    b.process["env"] = [PATH_ENV, "FOO=bar", "EQ=a=b=c", "EMPTY=", "SPACE=x y"]
    got = t.ok_run(b).out.splitlines()
    for e in b.process["env"]:
        check(e in got, f"{e!r} missing from {got}")
    check(not any(g.startswith(MARKER_ENV) for g in got), "the runtime's own environment leaked in")


@case(V, "env.path_lookup", "args[0] is found through the env's PATH",
      "config.md#process", "that entry is used with the same semantics as execvp's file.")
def _(t: T):
    b = t.bundle("myprog")
    (b.rootfs / "opt" / "bin").mkdir(parents=True)
    (b.rootfs / "opt" / "bin" / "myprog").write_text("#!/bin/sh\necho found me\n")
    (b.rootfs / "opt" / "bin" / "myprog").chmod(0o755)
    b.process["env"] = ["PATH=/opt/bin:/bin"]
    eq(t.ok_run(b).out.strip(), "found me", "output")
