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

from conftest import RUNP, TOP, Bundle, Runp, containers_in, new_id
from runtime.linux import arch

GETPID = arch.number("getpid")

HOT = ("create", "state", "list", "start", "kill", "kill --all", "delete", "delete --force", "run")

# Needed by every hot-path command today (measured at 5c2977e): the JSON scanner (_json,
# through runtime.jsonlite; the json package would bring re), file locks. Not os: the commands
# made for every container use runtime.oslite (posix's functions; `import os` costs 1.0 ms).
# Nor __future__: `from __future__ import annotations` imports that module (0.08-0.13 ms), so
# the modules these commands load go without it (issue 18).
COMMON = {
    "_json", "errno", "fcntl",
    "gc",  # built in: the CLI turns the cyclic collector off (runtime/cli.py)
}
# create and run fork the init and talk to it: the init pipe (_socket + struct for fd passing,
# not the socket module, whose enums cost milliseconds), syscalls (_ctypes through
# runtime.linux.libc: the ctypes package costs 2 ms more), rlimits (resource); and os.
SETUP = {"__future__", "_socket", "_ctypes", "struct", "_struct", "resource",
         "math",  # math: the v2 cpu.weight conversion (C, cheap)
         "os", "stat", "_stat", "posixpath", "genericpath", "_collections_abc"}
ALLOWED = {cmd: COMMON | (SETUP if cmd in ("create", "run") else set()) for cmd in HOT}

# Never on the hot path, whatever the lists above say (hooks may run subprocesses, but the
# bundles here have no hooks). socket, signal and enum went in issue 8 (5 ms), ctypes later
# (2 ms; seccomp and sched still use it, lazily).
FORBIDDEN = {"jsonschema", "pyroute2", "argparse", "runtime.check", "pkg_resources", "prctl",
             "subprocess", "dataclasses", "typing", "json", "re", "inspect",
             "socket", "signal", "enum", "selectors", "array", "ctypes"}


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

    def measure(cmd: str, *args: str, label: str = "") -> None:
        p = traced(*cmd.split(), *args, env=env)
        mods = importtime(p.stderr.decode(errors="replace"))
        assert "runtime.cli" in mods, f"no import profile from runp {cmd}: {p.stderr[-300:]!r}"
        out[label or cmd] = {m: by for m, by in mods.items() if m not in startup}

    try:
        measure("create", "--bundle", str(sleeper.path), cid)
        measure("state", cid)
        measure("list")
        measure("start", cid)
        measure("kill", cid, "0", label="kill 0")  # any signal but SIGKILL, e.g. podman stop's
        measure("kill", cid, "KILL")
        deadline = time.monotonic() + 10
        while json.loads(runp("state", cid).stdout)["status"] != "stopped":
            assert time.monotonic() < deadline, "container did not stop after kill"
            time.sleep(0.02)
        # containerd's shim, after every container exit (issue 18: it imported signal and enum)
        measure("kill --all", cid, "9")
        measure("delete", cid)
        # and once more, as the shim does after every delete: the container is gone by then
        measure("delete --force", cid)
        measure("run", "--bundle", str(true.path), cid2)
        yield out
    finally:
        for c in (cid, cid2):
            runp("delete", "--force", c, check=False)
        left = containers_in(runp.root)
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



@pytest.mark.parametrize("cmd", ("state", "start", "kill", "kill --all", "delete", "delete --force"))
def test_small_commands_skip_the_cgroup_package(hot_imports, cmd):
    """The commands callers make for every container do not load the cgroup manager (its
    import is ~0.5 ms of a ~9 ms call): delete removes the recorded directories through
    runtime.linux.cgroup_recorded alone. Nor runtime.rootless (the CLI has chosen the root)."""
    mods = hot_imports[cmd]
    loaded = sorted(m for m in mods if m == "runtime.linux.cgroups" or m.startswith("runtime.linux.cgroups."))
    assert not loaded, f"runp {cmd} imports {_explain(mods, set(loaded))}"
    # nor the rootless policy: the CLI passes the root it chose (about 0.1 ms a module, issue 18)
    assert "runtime.rootless" not in mods, f"runp {cmd} imports {_explain(mods, {'runtime.rootless'})}"
    # nor @record's module: State is a plain class (0.15 ms a call, issue 18)
    assert "runtime.records" not in mods, f"runp {cmd} imports {_explain(mods, {'runtime.records'})}"
    if cmd == "delete":
        assert "runtime.linux.cgroup_recorded" in mods, "delete removed no cgroup?"

def test_kill_without_sigkill_reads_no_freezer(hot_imports):
    """Only the init's SIGKILL acts on a paused container (it thaws it): `kill ID SIG` with any
    other signal does not ask the freezer, nor load the module that would (issue 18)."""
    mods = hot_imports["kill 0"]
    assert "runtime.linux.cgroup_recorded" not in mods, \
        f"runp kill ID 0 imports {_explain(mods, {'runtime.linux.cgroup_recorded'})}"
    assert "runtime.linux.cgroup_recorded" in hot_imports["kill"], "kill ID KILL reads no freezer?"


def test_delete_force_of_a_gone_container_reads_no_state(hot_imports):
    """containerd's shim runs `delete --force ID` after each container's `delete` (two per pod):
    with no state directory left, neither the lifecycle code nor the JSON scanner (a shared
    library) is loaded (issue 18)."""
    mods = hot_imports["delete --force"]
    loaded = {"runtime.container", "runtime.jsonlite", "_json"} & set(mods)
    assert not loaded, f"runp delete --force (container gone) imports {_explain(mods, loaded)}"


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


# --- what the hot path is built from ----------------------------------------------------------

def test_debug_logs_each_setup_phase(runp, bundle, cid, tmp_path):
    """--debug: how long each setup phase took, parent and container init alike (issue 8)."""
    log = tmp_path / "log.json"
    bundle.set_args("true")
    runp("--debug", "--log", str(log), "--log-format", "json", "run", "--bundle", str(bundle.path), cid)
    phases = {}
    for line in log.read_text().splitlines():
        msg = json.loads(line)["msg"]
        if msg.startswith("phase "):
            name, _, took = msg[len("phase "):].rpartition(": ")
            assert took.endswith(" ms") and float(took[:-3]) >= 0, msg
            phases[name] = float(took[:-3])
    for name in ("parse", "fork", "prepare", "namespaces", "mounts", "cgroups", "cgroup join",
                 "handshake", "state saved"):
        assert name in phases, f"no phase {name!r} in {sorted(phases)}"


@pytest.mark.parametrize("text, want", [
    # hybrid: the cgroup2 file first (no controllers: the cheapest move), then v1 ones
    ("12:pids:/user.slice\n4:cpu,cpuacct:/a\n1:name=systemd:/x\n0::/user.slice/s\n",
     ["/sys/fs/cgroup/unified/user.slice/s/cgroup.procs", "/sys/fs/cgroup/user.slice/s/cgroup.procs",
      "/sys/fs/cgroup/pids/user.slice/cgroup.procs", "/sys/fs/cgroup/cpu,cpuacct/a/cgroup.procs"]),
    ("0::/\n", ["/sys/fs/cgroup/unified/cgroup.procs", "/sys/fs/cgroup/cgroup.procs"]),  # pure v2, root
    ("", []),
])
def test_cgroup_prime_candidates(text, want):
    from runtime.linux import cgroup_prime
    assert cgroup_prime.candidates(text) == want


def test_cgroup_prime_moves_nothing_and_leaks_no_low_fd():
    """The head-start move puts runp where it already is, from a thread holding an fd >= 1000
    (a low one could be mistaken for a caller's fd: --preserve-fds, CVE-2024-21626)."""
    from runtime.linux import cgroup_prime
    code = (
        "import json, os, sys, time\n"
        f"sys.path.insert(0, {str(TOP)!r})\n"
        "from runtime.linux import cgroup_prime\n"
        "before = open('/proc/self/cgroup').read()\n"
        "fds = lambda: set(map(int, os.listdir('/proc/self/fd')))\n"
        "low = fds()\n"
        "cgroup_prime.start()\n"
        "during = fds()\n"
        "time.sleep(0.5)\n"
        "after = fds()\n"
        "print(json.dumps({'same': open('/proc/self/cgroup').read() == before,\n"
        "                  'during': sorted(during - low), 'after': sorted(after - low)}))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    r = json.loads(p.stdout)
    assert r["same"], "the prime move changed our cgroup"
    assert all(fd >= 1000 for fd in r["during"]), f"prime thread fds: {r['during']}"
    assert r["after"] == [], f"fds left open: {r['after']}"
    with open("/proc/self/cgroup") as f:
        assert cgroup_prime.candidates(f.read())  # this host has some


def test_libc_calls_without_ctypes():
    """runtime.linux.libc: int and long results, errno, buffers, and no ctypes package."""
    code = (
        "import os, sys, struct\n"
        f"sys.path.insert(0, {str(TOP)!r})\n"
        "from runtime.linux import libc, sys as lsys\n"
        f"assert libc.function('getpid')() == os.getpid() == libc.syscall({GETPID})\n"
        "assert libc.function('close')(987654) == -1 and libc.get_errno() == 9\n"  # EBADF, int result
        "fd = os.open('/proc', os.O_RDONLY)\n"
        "buf = libc.buffer(120)\n"
        "assert libc.function('fstatfs')(fd, buf) == 0\n"
        "assert struct.unpack_from('l', buf.raw)[0] == 0x9FA0\n"  # PROC_SUPER_MAGIC
        "fd2 = lsys.openat2(fd, 'self/../self/status', os.O_RDONLY, lsys.RESOLVE_IN_ROOT)\n"
        "assert os.read(fd2, 5) == b'Name:'\n"
        "try:\n"
        "    lsys.openat2(fd, 'self/exe', os.O_RDONLY, lsys.RESOLVE_NO_MAGICLINKS)\n"
        "    raise SystemExit('magic link followed')\n"
        "except OSError as e:\n"
        "    assert e.errno == 40, e\n"  # ELOOP
        "lsys.prctl(lsys.PR_SET_NAME, b'libc-test')\n"
        "assert open('/proc/self/comm').read() == 'libc-test\\n'\n"
        "assert 'ctypes' not in sys.modules\n"
    )
    p = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


def test_oslite_is_os_without_its_import(tmp_path):
    """runtime.oslite: posix's functions (os's very objects), os.path's join/exists/isdir/dirname
    as posixpath computes them, and everything else from os itself, loaded only when asked."""
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(TOP)!r})\n"
        "from runtime import oslite\n"
        "assert 'os' not in sys.modules and '_collections_abc' not in sys.modules\n"
        "assert oslite.open is __import__('posix').open and oslite._exit is __import__('posix')._exit\n"
        "assert 'os' not in sys.modules\n"
        "env = oslite.environ\n"  # falls back to os: str keys, as os.environ
        "import os, posixpath\n"
        "assert env is os.environ and oslite.makedirs is os.makedirs\n"
        "assert oslite.path.normpath is posixpath.normpath\n"
        "for a, *b in [('a', 'b'), ('/a/', 'b', 'c'), ('a', '/b'), ('', 'b'), ('a', ''), ('/', ''),\n"
        "              ('a//', 'b/'), ('/x',)]:\n"
        "    assert oslite.path.join(a, *b) == posixpath.join(a, *b), (a, b)\n"
        "from pathlib import Path\n"
        "assert oslite.path.join(Path('/r'), 'c') == '/r/c' and oslite.path.join(b'/r', b'c') == b'/r/c'\n"
        "assert oslite.path.dirname(Path('/r/c')) == '/r'\n"
        "for p in ['/a/b', '/a/b/', 'a', '/', '//a', '///a//b', '', 'a/b//', '/a']:\n"
        "    assert oslite.path.dirname(p) == posixpath.dirname(p), p\n"
        f"d = {str(tmp_path)!r}\n"
        "open(d + '/f', 'w').close()\n"
        "os.symlink(d + '/nowhere', d + '/dangling')\n"
        "for p in [d, d + '/f', d + '/dangling', d + '/missing', d + '/f/x', 'a\\0b']:\n"
        "    assert oslite.path.exists(p) == posixpath.exists(p), p\n"
        "    assert oslite.path.isdir(p) == posixpath.isdir(p), p\n"
    )
    p = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0, p.stderr
