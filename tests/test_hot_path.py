"""The hot path stays light: what create/start/state/kill/delete/run/list import (issue 8).

Every runp call pays for its imports, so each hot-path command is run as callers run it (the
installed `runp` script, its own #! interpreter and flags, a real container in a private root)
with -X importtime: CPython then prints every module it imports to stderr, in the parent and in
the forked container init alike (the init imports before pivot_root, which counts towards
create). What the same interpreter imports for an empty script is subtracted; everything else
must be on the command's allow-list (runtime.* modules are allowed). This catches a regression
(say a top-level `import json`) at once, where a timed test would be flaky on a shared machine.

"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from conftest import RUNP, TOP, Bundle, Runp, new_id

HOT = ("create", "state", "list", "start", "kill", "delete", "run")

# Needed by every hot-path command today (measured at 5c2977e): os, the JSON scanner (_json,
# through runtime.jsonlite; the json package would bring re), file locks.
COMMON = {
    "os", "stat", "_stat", "posixpath", "genericpath", "_collections_abc",  # site imports them too
    "__future__", "_json", "errno", "fcntl",
    "encodings.utf_8_sig",  # the codec for JSON that may start with a BOM: 0.1 ms
}
# create and run fork the init and talk to it: the init pipe (_socket + struct for fd passing,
# not the socket module, whose enums cost milliseconds), syscalls (ctypes), rlimits (resource).
SETUP = {"_socket", "ctypes", "_ctypes", "ctypes._endian", "types", "struct", "_struct", "resource",
         "math"}  # types: ctypes needs it; math: the v2 cpu.weight conversion (both C, cheap)
ALLOWED = {cmd: COMMON | (SETUP if cmd in ("create", "run") else set()) for cmd in HOT}

# Never on the hot path, whatever the lists above say (hooks may run subprocesses, but the
# bundles here have no hooks). socket, signal and enum went in issue 8 (5 ms).
FORBIDDEN = {"jsonschema", "pyroute2", "argparse", "runtime.check", "pkg_resources", "prctl",
             "subprocess", "dataclasses", "typing", "json", "re", "inspect",
             "socket", "signal", "enum", "selectors", "array"}


def _is_runtime(name: str) -> bool:
    return (name == "runtime" or name.startswith("runtime.")) and name != "runtime.check"


def importtime(text: str) -> dict[str, str]:
    """Module name -> the module that imported it ("" at top level), from -X importtime output.
    A module is printed after the ones it imports, one indentation level deeper."""
    rows = []
    for line in text.splitlines():
        if line.startswith("import time:") and "imported package" not in line:
            name = line.split("|", 2)[2]
            rows.append((name.strip(), (len(name) - len(name.lstrip())) // 2))
    parents = {}
    for i, (name, depth) in enumerate(rows):
        parent = next((n for n, d in rows[i + 1:] if d < depth), "")
        parents.setdefault(name, parent)
    return parents


def _launcher() -> list[str]:
    """How the runp script starts, with -X importtime added: its #! interpreter and flags (a
    launcher running python -I ignores PYTHONPROFILEIMPORTTIME), then the script itself."""
    with open(RUNP, "rb") as f:
        first = f.readline().decode(errors="replace")
    if first.startswith("#!") and "python" in os.path.basename(first[2:].split()[0]):
        return [*first[2:].split(), "-X", "importtime", RUNP]
    return [RUNP]  # not a Python script: only the environment variable can help


@pytest.fixture(scope="module")
def hot_imports(tmp_path_factory, rootfs_template) -> dict[str, dict[str, str]]:
    """Run each hot-path command once against real containers; what each one imported."""
    tmp = tmp_path_factory.mktemp("hot")
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}
    launcher = _launcher()
    interp = launcher[:-1] if len(launcher) > 1 else [str(TOP / ".venv" / "bin" / "python")]
    empty = tmp / "empty.py"  # a script, as runp is: running a file imports a little more than -c
    empty.write_text("# runp launcher stand-in\nimport sys\n")
    startup = importtime(subprocess.run([*interp, str(empty)], env=env, capture_output=True,
                                        text=True, check=True).stderr)
    runp = Runp(tmp / "state")
    traced = Runp(tmp / "state")
    traced.cmd = lambda *args: [*launcher, "--root", str(traced.root), *args]  # type: ignore
    sleeper = Bundle(tmp / "b1", rootfs_template)
    sleeper.set_args("sleep", "100")
    true = Bundle(tmp / "b2", rootfs_template)
    true.set_args("true")
    cid, cid2 = new_id("hot"), new_id("hot")
    out: dict[str, dict[str, str]] = {}

    def measure(cmd: str, *args: str) -> None:
        p = traced(cmd, *args, env=env)
        mods = importtime(p.stderr.decode(errors="replace"))
        assert "runtime.cli" in mods, f"no import profile from runp {cmd}: {p.stderr[-300:]!r}"
        out[cmd] = {m: by for m, by in mods.items() if m not in startup}

    try:
        measure("create", "--bundle", str(sleeper.path), cid)
        measure("state", cid)
        measure("list")
        measure("start", cid)
        measure("kill", cid, "KILL")
        deadline = time.monotonic() + 10
        while json.loads(runp("state", cid).stdout)["status"] != "stopped":
            assert time.monotonic() < deadline, "container did not stop after kill"
            time.sleep(0.02)
        measure("delete", cid)
        measure("run", "--bundle", str(true.path), cid2)
        yield out
    finally:
        for c in (cid, cid2):
            runp("delete", "--force", c, check=False)
        left = os.listdir(runp.root) if runp.root.exists() else []
        assert not left, f"containers left behind: {left}"


def _explain(mods: dict[str, str], names: set[str]) -> str:
    return ", ".join(f"{n} (imported by {mods[n] or 'top level'})" for n in sorted(names))


@pytest.mark.parametrize("cmd", HOT)
def test_hot_path_imports_only_allowed_modules(hot_imports, cmd):
    mods = hot_imports[cmd]
    forbidden = {m for m in mods if m.split(".")[0] in FORBIDDEN or m in FORBIDDEN}
    assert not forbidden, f"runp {cmd} imports {_explain(mods, forbidden)}"
    extra = {m for m in mods if not _is_runtime(m)} - ALLOWED[cmd]
    assert not extra, (f"runp {cmd} imports modules outside its allow-list: {_explain(mods, extra)}"
                       " -- import them lazily where they are used, or (if measured cheap and "
                       "really needed) add them to the allow-list in tests/test_hot_path.py")


def test_bench_quick_run(tmp_path):
    """hack/bench --quick --only run works end to end (and cleans up) within a minute."""
    out = tmp_path / "out"
    t0 = time.monotonic()
    p = subprocess.run([str(TOP / "hack" / "bench"), "--quick", "--only", "run",
                        "--no-setup", "--no-plot", "--runp", RUNP, "--out", str(out)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    assert time.monotonic() - t0 < 60
    data = json.loads((out / "bench.json").read_text())
    med = data["results"]["run.per_container"]["median"]
    assert {"runp", "runc"} <= set(med), data["results"]
    assert all(v > 0 for v in med.values())
    assert "runp/runc" in data["results"]["run.per_container"]["ratio"]
    assert (out / "bench.md").read_text().startswith("# hack/bench")
