"""OCI hooks: all six kinds run in order, in the right namespaces, with the state on stdin, their
own args (args[0] is argv0) and env; failures fail the operation and leave nothing behind, or
only warn (poststart, poststop); a hook that outlives its timeout is killed."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import new_id, proc_alive

RUNC = shutil.which("runc")

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
IN_CONTAINER = ("createContainer", "startContainer")

# Records what a hook saw into $2/<kind>.*: its state (stdin), mount and pid namespaces and
# env; appends the kind to $2/order.
RECORD = r'''
kind=$1; d=$2
cat > "$d/$kind.state"
readlink /proc/self/ns/mnt > "$d/$kind.mnt"
readlink /proc/self/ns/pid > "$d/$kind.pid"
env > "$d/$kind.env"
echo "$kind" >> "$d/order"
'''


def hook(kind: str, logdir: str, script: str = RECORD, **extra) -> dict:
    """A hook running busybox (the host's, or the container's for startContainer). busybox
    picks its applet by argv0: the hook runs only if args[0] ("sh") is passed as argv0, not the
    path."""
    h = {"path": "/bin/busybox", "args": ["sh", "-c", script, "sh", kind, logdir],
         "env": ["PATH=/usr/bin:/bin", f"HOOK_KIND={kind}"]}
    h.update(extra)
    return h


@pytest.fixture
def logdir(tmp_path, bundle) -> Path:
    """A host directory the hooks write to, also at /hooklog in the container."""
    d = tmp_path / "hooklog"
    d.mkdir()
    (bundle.rootfs / "hooklog").mkdir()
    bundle.config["mounts"].append({"destination": "/hooklog", "type": "bind",
                                    "source": str(d), "options": ["rbind", "rw"]})
    return d


def add_hooks(bundle, logdir: Path, kinds=KINDS, **per_kind) -> None:
    hooks = bundle.config.setdefault("hooks", {})
    for k in kinds:
        where = "/hooklog" if k == "startContainer" else str(logdir)
        hooks.setdefault(k, []).append(per_kind.get(k) or hook(k, where))
    bundle.write()


def order(logdir: Path) -> list[str]:
    p = logdir / "order"
    return p.read_text().split() if p.exists() else []


def wait_for(pred, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def cgroup_dirs(bundle, cid: str) -> list[str]:
    from runtime.linux.cgroups import open_manager
    return open_manager(bundle.config["linux"].get("cgroupsPath"), cid).dirs()


MARKER_ENV = {**os.environ, "RUNP_HOOK_TEST_MARKER": "leak"}


# --- every kind, in order ------------------------------------------------------------------------

def test_all_hooks_order_state_namespaces_env_args(runp, bundle, cid, logdir):
    bundle.config["annotations"] = {"org.example.hooks": "yes"}
    bundle.config["process"]["args"] = ["sh", "-c", "echo process >> /hooklog/order; exec sleep 1000"]
    add_hooks(bundle, logdir)
    runp("create", "-b", str(bundle.path), cid, env=MARKER_ENV)
    assert order(logdir) == ["prestart", "createRuntime", "createContainer"]
    init = runp.state(cid)["pid"]
    runp("start", cid, env=MARKER_ENV)
    wait_for(lambda: "process" in order(logdir) and "poststart" in order(logdir))
    got = order(logdir)
    assert got[:4] == ["prestart", "createRuntime", "createContainer", "startContainer"]
    assert set(got[4:]) == {"poststart", "process"}
    runp("kill", cid, "KILL")
    wait_for(lambda: runp.state(cid)["status"] == "stopped")
    runp("delete", cid, env=MARKER_ENV)
    assert order(logdir)[-1] == "poststop"

    host_mnt, host_pid = os.readlink("/proc/self/ns/mnt"), os.readlink("/proc/self/ns/pid")
    ctr_mnt = Path(logdir / "startContainer.mnt").read_text().strip()
    assert ctr_mnt != host_mnt
    expect_status = {"prestart": "created", "createRuntime": "created",
                     "createContainer": "created", "startContainer": "created",
                     "poststart": "running", "poststop": "stopped"}
    for k in KINDS:
        st = json.loads((logdir / f"{k}.state").read_text())
        assert st["id"] == cid, k
        assert st["status"] == expect_status[k], (k, st)
        assert st["bundle"] == str(bundle.path), k
        assert st["annotations"] == {"org.example.hooks": "yes"}, k
        assert st["ociVersion"] == bundle.config["ociVersion"], k
        if k in IN_CONTAINER:  # the pid as the container sees it (a new pid namespace)
            assert st["pid"] == 1, k
        elif k != "poststop":
            assert st["pid"] == init, k
        mnt = (logdir / f"{k}.mnt").read_text().strip()
        pidns = (logdir / f"{k}.pid").read_text().strip()
        if k in IN_CONTAINER:
            assert mnt == ctr_mnt and pidns != host_pid, k
        else:
            assert mnt == host_mnt and pidns == host_pid, k
        env = (logdir / f"{k}.env").read_text().splitlines()
        assert f"HOOK_KIND={k}" in env, (k, env)
        assert not any("RUNP_HOOK_TEST_MARKER" in e for e in env), (k, env)


def test_create_container_hook_runs_before_pivot(runp, bundle, cid, logdir):
    """createContainer runs in the container's mount namespace before pivot_root: the host's
    filesystem (and the rootfs under its host path) is still what it sees."""
    script = 'test -d "$1" && echo "before-pivot" > "$2/cc"; cat > /dev/null'
    add_hooks(bundle, logdir, kinds=("createContainer",),
              createContainer={"path": "/bin/sh", "args": ["sh", "-c", script, "sh",
                                                          str(bundle.rootfs), str(logdir)]})
    bundle.set_args("true")
    runp("run", "-b", str(bundle.path), cid)
    assert (logdir / "cc").read_text() == "before-pivot\n"


# --- failures ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_leaves_nothing(runp, bundle, cid, logdir, kind):
    bundle.config["linux"]["cgroupsPath"] = f"/runp-hooktest/{cid}"
    fail = 'cat > "$1/state"; echo "hook says no" >&2; exit 3'
    add_hooks(bundle, logdir, kinds=KINDS)
    hooks = bundle.config["hooks"]
    where = str(logdir)
    hooks[kind].insert(0, {"path": "/bin/sh", "args": ["sh", "-c", fail, "sh", where]})
    bundle.write()
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert f"hooks.{kind}[0]" in err and "exit status 3" in err and "hook says no" in err, err
    # the failing hook stopped the rest: its kind's second hook and every later kind, but
    # the lifecycle goes on at delete: the poststop hooks run
    assert order(logdir) == list(KINDS[:KINDS.index(kind)]) + ["poststop"]
    # nothing left: no state, no process, no cgroup
    assert cid not in runp.ids()
    assert not (runp.root / cid).exists()
    init = json.loads((logdir / "state").read_text())["pid"]
    if kind == "createContainer":
        assert init == 1  # as the container sees it; the cgroup check below covers it
    else:
        wait_for(lambda: not proc_alive(init))
    for d in cgroup_dirs(bundle, cid):
        assert not os.path.exists(d), d


def test_failing_start_container_hook(runp, bundle, cid, logdir):
    """start waits for the startContainer hooks: their failure fails start, and the
    container is stopped without its process having run."""
    fail = 'cat > /dev/null; echo "no start" >&2; exit 4'
    bundle.config["process"]["args"] = ["sh", "-c", "echo ran > /hooklog/process"]
    add_hooks(bundle, logdir, kinds=("startContainer",),
              startContainer={"path": "/bin/busybox", "args": ["sh", "-c", fail]})
    runp("create", "-b", str(bundle.path), cid)
    p = runp("start", cid, check=False)
    assert p.returncode != 0
    err = p.stderr.decode()
    assert "hooks.startContainer[0]" in err and "exit status 4: no start" in err, err
    wait_for(lambda: runp.state(cid)["status"] == "stopped")
    assert not (logdir / "process").exists(), "the process ran although startContainer failed"
    runp("delete", cid)
    # the same through run, which deletes the container
    p = runp("run", "-b", str(bundle.path), cid, check=False)
    assert p.returncode != 0 and b"hooks.startContainer[0]" in p.stderr
    assert not (logdir / "process").exists()
    assert cid not in runp.ids()


def test_start_waits_for_start_container_hooks(runp, bundle, cid, logdir):
    """With startContainer hooks, start returns after the exec: the process has run by then
    (a quick program), and exec failures are reported by start too."""
    bundle.config["process"]["args"] = ["sh", "-c", "echo ran > /hooklog/process; sleep 100"]
    add_hooks(bundle, logdir, kinds=("startContainer", "poststart"))
    runp("create", "-b", str(bundle.path), cid)
    runp("start", cid)
    assert order(logdir)[:2] == ["startContainer", "poststart"]
    assert runp.state(cid)["status"] == "running"
    runp("delete", "-f", cid)
    bundle.config["process"]["args"] = ["/etc/passwd"]  # not executable: fails at exec
    bundle.write()
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    if p.returncode == 0:  # the lookup may already refuse it at create
        p = runp("start", cid, check=False)
        assert p.returncode != 0 and b"permission denied" in p.stderr.lower(), p.stderr


def test_failing_poststart_only_warns(runp, bundle, cid, logdir):
    bundle.set_args("sleep", "1000")
    fail = {"path": "/bin/sh", "args": ["sh", "-c", "exit 5"]}
    bundle.config["hooks"] = {"poststart": [fail, hook("poststart", str(logdir))]}
    bundle.write()
    runp("create", "-b", str(bundle.path), cid)
    p = runp("start", cid)
    assert b"hooks.poststart[0]" in p.stderr and b"exit status 5" in p.stderr
    assert order(logdir) == ["poststart"]  # the next hook still ran
    assert runp.state(cid)["status"] == "running"


def test_failing_poststop_only_warns(runp, bundle, cid, logdir):
    bundle.set_args("true")
    fail = {"path": "/bin/sh", "args": ["sh", "-c", "exit 6"]}
    bundle.config["hooks"] = {"poststop": [fail, hook("poststop", str(logdir))]}
    bundle.write()
    runp("run", "-d", "-b", str(bundle.path), cid)
    wait_for(lambda: runp.state(cid)["status"] == "stopped")
    p = runp("delete", cid)
    assert b"hooks.poststop[0]" in p.stderr and b"exit status 6" in p.stderr
    assert order(logdir) == ["poststop"]
    assert cid not in runp.ids()


def test_missing_hook_binary_fails_create(runp, bundle, cid):
    bundle.config["hooks"] = {"prestart": [{"path": "/no/such/hook"}]}
    bundle.write()
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    assert p.returncode != 0 and b"/no/such/hook" in p.stderr
    assert cid not in runp.ids()


# --- timeouts ------------------------------------------------------------------------------------

def test_hook_timeout_kills_it(runp, bundle, cid, logdir):
    # the hook and a child of it: both must be gone after the timeout
    slow = 'echo $$ > "$1/hook.pid"; sleep 100 & echo $! > "$1/child.pid"; wait'
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/sh", "args": ["sh", "-c", slow, "sh",
                                                                       str(logdir)],
                                            "timeout": 1}]}
    bundle.write()
    t0 = time.monotonic()
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    assert p.returncode != 0 and b"timed out" in p.stderr, p.stderr
    assert time.monotonic() - t0 < 20
    for f in ("hook.pid", "child.pid"):
        pid = int((logdir / f).read_text())
        wait_for(lambda: not proc_alive(pid), timeout=5)
    assert cid not in runp.ids()


def test_poststop_timeout_only_warns(runp, bundle, cid, logdir):
    bundle.set_args("true")
    slow = {"path": "/bin/sh", "args": ["sh", "-c", "exec sleep 100"], "timeout": 1}
    bundle.config["hooks"] = {"poststop": [slow, hook("poststop", str(logdir))]}
    bundle.write()
    runp("run", "-d", "-b", str(bundle.path), cid)
    wait_for(lambda: runp.state(cid)["status"] == "stopped")
    p = runp("delete", cid)
    assert b"timed out" in p.stderr
    assert order(logdir) == ["poststop"]


def test_hook_with_background_child_does_not_block(runp, bundle, cid, logdir):
    """A hook that leaves a child holding its stdout must not hang create (no pipes)."""
    script = 'cat > /dev/null; (sleep 30; echo late) & echo $! > "$1/bg.pid"; exit 0'
    bundle.config["hooks"] = {"prestart": [{"path": "/bin/sh",
                                            "args": ["sh", "-c", script, "sh", str(logdir)]}]}
    bundle.set_args("true")
    t0 = time.monotonic()
    try:
        runp("run", "-b", str(bundle.path), cid, timeout=25)
        assert time.monotonic() - t0 < 20
    finally:
        bg = logdir / "bg.pid"
        if bg.exists():
            try:
                os.kill(int(bg.read_text()), 9)
            except ProcessLookupError:
                pass


# --- the environment of a hook (runc 1.1.5's, observed side by side) -----------------------------

# the caller's environment: no locale variable, as containerd's shim (CPython would add
# LC_CTYPE=C.UTF-8 to its own, PEP 538)
CALLER_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "MARKER": "from-the-caller"}
# what busybox sh adds itself (SHLVL; PWD is left out: runc runs hooks from the bundle dir)
SHELL_ENV = ["SHLVL=1"]


def hook_envs(cmd: list[str], bundle, logdir: Path, env_of_hooks) -> dict[str, list[str]]:
    """Run the bundle's process through its whole life with one hook of each kind that
    records its environment; {kind: sorted env lines}. `env_of_hooks`: the hooks' "env"
    (None: no such key)."""
    hooks = bundle.config["hooks"] = {}
    for k in KINDS:
        where = "/hooklog" if k == "startContainer" else str(logdir)
        h = {"path": "/bin/busybox",
             "args": ["sh", "-c", f'env | grep -v "^PWD=" | sort > {where}/{k}']}
        if env_of_hooks is not None:
            h["env"] = env_of_hooks
        hooks[k] = [h]
    bundle.set_args("sleep", "1000")
    return whole_life(cmd, bundle, logdir, env=CALLER_ENV)


def whole_life(cmd: list[str], bundle, logdir: Path, foreground: bool = False,
               **kw) -> dict[str, list[str]]:
    """The bundle's container through its whole life under `cmd` (create, start, kill,
    delete; or `run` in the foreground), gone afterwards whatever happened; then what each
    hook wrote into logdir/<kind>, {kind: lines}. `kw`: for subprocess.run (env, cwd)."""
    cid = new_id()

    def call(*args: str) -> None:
        with tempfile.TemporaryFile() as err:  # (not a pipe: the container inherits it)
            p = subprocess.run(cmd + list(args), stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err, timeout=60, **kw)
            err.seek(0)
            assert p.returncode == 0, (args, err.read())
    try:
        if foreground:
            call("run", "-b", str(bundle.path), cid)
        else:
            call("create", "-b", str(bundle.path), cid)
            call("start", cid)
            call("kill", cid, "KILL")
            wait_for(lambda: b'"stopped"' in subprocess.run(cmd + ["state", cid],
                                                            capture_output=True).stdout)
            call("delete", cid)
    finally:
        subprocess.run(cmd + ["delete", "-f", cid], capture_output=True, timeout=60)
    out = {}
    for k in KINDS:
        out[k] = (logdir / k).read_text().splitlines()
        (logdir / k).unlink()
    return out


def runtimes(runp, tmp_path) -> dict[str, list[str]]:
    out = {"runp": runp.cmd()}
    if RUNC:
        out["runc"] = [RUNC, "--root", str(tmp_path / "runc-root")]
    return out


def test_hooks_without_env_inherit_as_with_runc(runp, bundle, logdir, tmp_path):
    """No "env": the hooks run on the host see runp's own environment (callers' hooks rely on
    its PATH), exactly as the caller gave it; the two run in the container init see the
    process's environment (later entries winning), startContainer with HOME too."""
    bundle.config["process"]["env"] = ["PATH=/bin:/x", "DUP=1", "DUP=2", "TERM=xterm"]
    host = sorted([f"{k}={v}" for k, v in CALLER_ENV.items()] + SHELL_ENV)
    process = sorted(["PATH=/bin:/x", "DUP=2", "TERM=xterm"] + SHELL_ENV)
    out = {name: hook_envs(cmd, bundle, logdir, None)
           for name, cmd in runtimes(runp, tmp_path).items()}
    assert out["runp"] == {"prestart": host, "createRuntime": host, "poststart": host,
                           "poststop": host, "createContainer": process,
                           "startContainer": sorted(process + ["HOME=/root"])}, out["runp"]
    if RUNC:
        assert out["runp"] == out["runc"]


@pytest.mark.parametrize("env", [["A=1", "PATH=/bin", "A=2"], []], ids=["given", "empty"])
def test_hook_env_replaces_as_with_runc(runp, bundle, logdir, tmp_path, env):
    """A hook's "env" is its whole environment, never merged with runp's or the process's
    (later entries win); "env": [] is an empty one."""
    want = sorted(["A=2", "PATH=/bin"] if env else [])
    out = {name: hook_envs(cmd, bundle, logdir, env)
           for name, cmd in runtimes(runp, tmp_path).items()}
    for k in KINDS:
        got = [e for e in out["runp"][k] if e not in SHELL_ENV and not e.startswith("PATH=/sbin")]
        assert got == want, (k, out["runp"][k])  # (busybox sets a PATH of its own if none)
    if RUNC:
        assert out["runp"] == out["runc"]


# --- who, where and under what a hook runs (runc 1.1.5's, observed side by side) ----------------

# Records the hook's cwd, ids and the credential lines of /proc/self/status into $2/<kind>.
CREDS = r'''k=$1; d=$2; { echo "pwd=$(pwd -P)"; echo "id=$(id -u):$(id -g):$(id -G)";
grep -E "^(CapEff|CapPrm|CapBnd|CapAmb|CapInh|NoNewPrivs|Seccomp):" /proc/self/status; } > "$d/$k"'''


def hook_creds(cmd: list[str], bundle, logdir: Path, caller: Path, foreground: bool) -> dict:
    """One hook of each kind recording CREDS, through the container's whole life (whole_life)
    run from `caller` as the working directory; {kind: its lines}."""
    bundle.config["hooks"] = {k: [{"path": "/bin/busybox", "args": [
        "sh", "-c", CREDS, "sh", k, "/hooklog" if k == "startContainer" else str(logdir)]}]
        for k in KINDS}
    bundle.write()
    return whole_life(cmd, bundle, logdir, foreground, cwd=caller)


def _status_line(name: str) -> str:
    return next(line for line in Path("/proc/self/status").read_text().splitlines()
                if line.startswith(name + ":"))


@pytest.mark.parametrize("foreground", [False, True], ids=["create-start-delete", "run"])
def test_hook_credentials_and_cwd_as_with_runc(runp, bundle, logdir, tmp_path, foreground):
    """startContainer hooks run as runc 1.1.5's init runs them: after the whole privilege drop
    (process.user, capabilities, no_new_privs, seccomp), from process.cwd; runp ran them as
    root with every capability, from "/". The others run as root with runp's capabilities:
    createContainer from the rootfs, prestart/createRuntime/poststart from the bundle (runc
    changes into it at create, and 1.1.5 runs poststart there), poststop from the caller's
    directory (`delete`) or the bundle (`run`); runp ran them all from the caller's."""
    caller = tmp_path / "caller"
    caller.mkdir()
    logdir.chmod(0o777)  # (startContainer writes it as uid 1000)
    p = bundle.config["process"]
    p["args"] = ["true"] if foreground else ["sleep", "1000"]
    p["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [1001]}
    p["cwd"] = "/tmp"
    p["noNewPrivileges"] = True
    p["capabilities"] = {k: ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
                         for k in ("bounding", "effective", "permitted", "inheritable")}
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["getpriority"], "action": "SCMP_ACT_ERRNO"}]}
    out = {name: hook_creds(cmd, bundle, logdir, caller, foreground)
           for name, cmd in runtimes(runp, tmp_path).items()}
    host_caps = _status_line("CapBnd").split()[1]
    as_root = ["id=0:0:0", f"CapInh:\t{'0' * 16}", f"CapPrm:\t{host_caps}",
               f"CapEff:\t{host_caps}", f"CapBnd:\t{host_caps}", f"CapAmb:\t{'0' * 16}",
               "NoNewPrivs:\t0", "Seccomp:\t0"]
    b = os.path.realpath(bundle.path)
    want = {k: [f"pwd={b}"] + as_root for k in ("prestart", "createRuntime", "poststart")}
    want["createContainer"] = [f"pwd={b}/rootfs"] + as_root
    want["poststop"] = [f"pwd={b if foreground else os.path.realpath(caller)}"] + as_root
    caps = f"{(1 << 5 | 1 << 10):016x}"  # CAP_KILL, CAP_NET_BIND_SERVICE
    want["startContainer"] = [
        "pwd=/tmp", "id=1000:1000:1000 1001", f"CapInh:\t{caps}", f"CapPrm:\t{'0' * 16}",
        f"CapEff:\t{'0' * 16}", f"CapBnd:\t{caps}", f"CapAmb:\t{'0' * 16}", "NoNewPrivs:\t1",
        "Seccomp:\t2"]
    wrong = [k for k in KINDS if sorted(out["runp"][k]) != sorted(want[k])]
    assert not wrong, {k: out["runp"][k] for k in wrong}
    if RUNC:
        assert out["runp"] == out["runc"]
