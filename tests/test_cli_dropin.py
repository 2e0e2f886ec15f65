"""Drop-in fidelity of the command line (issue 19, items 2, 3 and 10), runp and runc 1.1.5 side
by side on the same bundle, each with its own --root:

- `exec` exits 255 when the runtime itself fails and the process's own status otherwise;
  `run` and `create` exit 1 on their own failures (runc 1.1.5 uses 255 for exec only);
- `kill ID 0` / `kill --all ID 0`, the liveness probe;
- the global --log, --log-format and --debug flags on every command, and a --log that cannot
  be opened.

Each test checks runp, then runc with the same expectations (skipped when runc is missing).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import Runp, new_id, proc_alive
from test_commands import wait_for

RUNC = shutil.which("runc")
NO_RUNC = "runc is not installed: runp was checked alone"


@pytest.fixture
def runtimes(runp, tmp_path):
    """(runp, runc or None): runc with its own state root, emptied at teardown."""
    runc = Runp(tmp_path / "runc-state", RUNC) if RUNC else None
    yield runp, runc
    if runc is not None and runc.root.exists():
        for cid in os.listdir(runc.root):
            subprocess.run(runc.cmd("delete", "--force", cid), capture_output=True, timeout=30)
        assert not os.listdir(runc.root), "runc containers survived force delete"


def both(runtimes):
    """runp, then runc; skips (after runp passed) when runc is missing."""
    runp, runc = runtimes
    yield "runp", runp
    if runc is None:
        pytest.skip(NO_RUNC)
    yield "runc", runc


def running(rt, bundle) -> str:
    """A running container (init `sleep 1000`) of runtime `rt`; its id."""
    cid = new_id()
    rt("run", "-d", "-b", str(bundle.path), cid)
    return cid


def json_lines(path: Path) -> list[dict]:
    """Every line of a --log-format json log, each of which must be one JSON object."""
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    for entry in lines:
        assert {"level", "msg", "time"} <= set(entry), entry
    return lines


# --- item 2: exec exits 255 when the runtime fails, the process's status otherwise ---------------

# (case id, exec arguments before/after the id; {cid} and {tmp} are filled in, the status, a
# phrase both runtimes put in the error). The phrases callers match are kept: podman maps
# "executable file not found" / "no such file or directory" to 127, "permission denied" to 126.
EXEC_FAILURES = [
    ("unknown-id", ["exec", "no-such-ctr", "true"], "does not exist"),
    ("pid-file-dir", ["exec", "--pid-file", "{tmp}/missing/dir/pid", "{cid}", "sleep", "77"],
     "no such file or directory"),
    ("not-found", ["exec", "{cid}", "no-such-binary"], "executable file not found"),
    ("not-executable", ["exec", "{cid}", "/etc/passwd"], "permission denied"),
    ("cwd-missing", ["exec", "--cwd", "/no/such/dir", "{cid}", "true"],
     'chdir to cwd ("/no/such/dir") set in config.json failed: no such file or directory'),
    ("cwd-relative", ["exec", "--cwd", "rel", "{cid}", "true"], "absolute path"),
    ("user-uid", ["exec", "--user", "abc", "{cid}", "true"], "parsing"),
    ("user-gid", ["exec", "--user", "0:abc", "{cid}", "true"], "parsing"),
    ("process-json", ["exec", "--process", "{tmp}/bad.json", "{cid}"], "exec failed"),
    ("process-missing", ["exec", "--process", "{tmp}/missing.json", "{cid}"],
     "no such file or directory"),
    ("no-args", ["exec", "{cid}"], "args cannot be empty"),
    ("tty-detach", ["exec", "-t", "-d", "{cid}", "true"], "cannot allocate tty"),
]


@pytest.mark.parametrize("args,phrase", [c[1:] for c in EXEC_FAILURES],
                         ids=[c[0] for c in EXEC_FAILURES])
def test_exec_own_failure_exits_255(runtimes, bundle, tmp_path, args, phrase):
    """runc: fatalWithCode(fmt.Errorf("exec failed: %w", err), 255), with the line in the log."""
    bundle.set_args("sleep", "1000")
    (tmp_path / "bad.json").write_text('{"args": ["true"], "cwd": "/"')
    for name, rt in both(runtimes):
        cid = running(rt, bundle)
        log = tmp_path / f"{name}.log"
        argv = [a.format(cid=cid, tmp=tmp_path) for a in args]
        p = rt("--log", str(log), "--log-format", "json", *argv, check=False)
        err = p.stderr.decode()
        assert p.returncode == 255, (name, p.returncode, err)
        assert "exec failed: " in err and phrase in err.lower(), (name, err)
        last = json_lines(log)[-1]
        assert last["level"] == "error" and last["msg"].startswith("exec failed: "), (name, last)
        assert phrase in last["msg"].lower(), (name, last)
        # the process of a failed exec is gone: only the init is left
        pids = json.loads(rt("ps", "--format", "json", cid).stdout)
        assert pids == [rt.state(cid)["pid"]], (name, pids)
        rt("delete", "--force", cid)


@pytest.mark.parametrize("state", ["paused", "stopped"])
def test_exec_in_paused_or_stopped_container_exits_255(runtimes, bundle, state):
    bundle.set_args("sleep", "1000")
    for name, rt in both(runtimes):
        cid = running(rt, bundle)
        if state == "paused":
            rt("pause", cid)
        else:
            rt("kill", cid, "KILL")
            wait_for(lambda: rt.state(cid)["status"] == "stopped", what=f"{name} stopped")
        p = rt("exec", cid, "true", check=False)
        assert p.returncode == 255, (name, p.returncode, p.stderr)
        assert f"exec failed: cannot exec in a {state} container".encode() in p.stderr, \
            (name, p.stderr)
        rt("delete", "--force", cid)


@pytest.mark.parametrize("args", [["exec"], ["exec", "--no-such-flag", "{cid}", "true"],
                                  ["exec", "--preserve-fds", "x", "{cid}", "true"]],
                         ids=["no-id", "unknown-flag", "bad-int-flag"])
def test_exec_usage_errors_exit_1(runtimes, bundle, args):
    """Usage errors come before the exec itself: runc exits 1 for those."""
    bundle.set_args("sleep", "1000")
    for name, rt in both(runtimes):
        cid = running(rt, bundle)
        p = rt(*[a.format(cid=cid) for a in args], check=False)
        assert p.returncode == 1, (name, p.returncode, p.stderr)
        rt("delete", "--force", cid)


@pytest.mark.parametrize("script,code", [("exit 1", 1), ("exit 3", 3), ("exit 255", 255),
                                         ("kill -9 $$", 137), ("kill -TERM $$", 143)])
def test_exec_returns_the_process_status_unchanged(runtimes, bundle, tmp_path, script, code):
    """The process's own status, 255 and 128+signal included, and no error line in the log."""
    bundle.set_args("sleep", "1000")
    for name, rt in both(runtimes):
        cid = running(rt, bundle)
        log = tmp_path / f"{name}.log"
        log.write_text("")
        p = rt("--log", str(log), "--log-format", "json", "exec", cid, "sh", "-c", script,
               check=False)
        assert (p.returncode, p.stderr) == (code, b""), name
        assert not [e for e in json_lines(log) if e["level"] == "error"], name
        rt("delete", "--force", cid)


RUN_FAILURES = [
    ("not-found", {"args": ["no-such-binary"]}, [], "executable file not found"),
    ("not-executable", {"args": ["/etc/passwd"]}, [], "permission denied"),
    ("cwd-relative", {"cwd": "rel"}, [], "absolute path"),
    ("pid-file-dir", {}, ["--pid-file", "{tmp}/missing/dir/pid"], "no such file or directory"),
]


@pytest.mark.parametrize("cmd", ["run", "create"])
@pytest.mark.parametrize("process,flags,phrase", [c[1:] for c in RUN_FAILURES],
                         ids=[c[0] for c in RUN_FAILURES])
def test_run_and_create_own_failure_exit_1(runtimes, bundle, tmp_path, cmd, process, flags, phrase):
    """runc 1.1.5 returns run/create errors to main (fatal: exit 1), never 255: unchanged."""
    bundle.config["process"].update({"args": ["true"], **process})
    bundle.write()
    for name, rt in both(runtimes):
        cid = new_id()
        log = tmp_path / f"{name}.log"
        p = rt("--log", str(log), "--log-format", "json", cmd,
               *[f.format(tmp=tmp_path) for f in flags], "-b", str(bundle.path), cid, check=False)
        assert p.returncode == 1, (name, p.returncode, p.stderr)
        assert phrase in p.stderr.decode().lower(), (name, p.stderr)
        assert phrase in json_lines(log)[-1]["msg"].lower(), name
        assert not rt.root.exists() or cid not in os.listdir(rt.root), f"{name}: {cid} left"


@pytest.mark.parametrize("script,code", [("exit 1", 1), ("exit 3", 3), ("exit 255", 255)])
def test_run_returns_the_container_status_unchanged(runtimes, bundle, script, code):
    bundle.set_args("sh", "-c", script)
    for name, rt in both(runtimes):
        p = rt("run", "-b", str(bundle.path), new_id(), check=False)
        assert (p.returncode, p.stderr) == (code, b""), name


def test_pid_file_error_names_the_file_and_leaves_nothing(runp, bundle, tmp_path):
    """A --pid-file that is a directory: the error names it, not a temporary file, and no
    temporary file is left beside it (runc 1.1.5 leaves its `.NAME` behind: runp only)."""
    bundle.set_args("sleep", "1000")
    target = tmp_path / "pids" / "init.pid"
    target.mkdir(parents=True)
    cid = new_id()
    p = runp("create", "--pid-file", str(target), "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 1 and f"--pid-file {target}: ".encode() in p.stderr, p.stderr
    assert b".tmp." not in p.stderr
    assert os.listdir(target.parent) == ["init.pid"]
    assert cid not in runp.ids()
    cid = running(runp, bundle)
    p = runp("exec", "--pid-file", str(target), cid, "sleep", "77", check=False)
    assert p.returncode == 255 and f"--pid-file {target}: ".encode() in p.stderr, p.stderr
    assert os.listdir(target.parent) == ["init.pid"]


# --- item 3: kill with signal 0 ------------------------------------------------------------------

def test_kill_signal_0_probes_liveness(runtimes, bundle):
    """0 sends nothing: it succeeds on a created, running or paused container (which stays as
    it was) and fails on a stopped one with "container not running"; --all succeeds on a
    stopped container, as runc's (its cgroup is still there)."""
    bundle.set_args("sleep", "1000")
    for name, rt in both(runtimes):
        cid = new_id()
        rt("create", "-b", str(bundle.path), cid)
        pid = rt.state(cid)["pid"]
        for status, change in (("created", None), ("running", "start"), ("paused", "pause")):
            if change:
                rt(change, cid)
            for flags in ([], ["--all"]):
                p = rt("kill", *flags, cid, "0", check=False)
                assert (p.returncode, p.stderr) == (0, b""), (name, status, flags, p.stderr)
                assert proc_alive(pid), (name, status, flags)
                if name == "runp" or not flags:  # runc 1.1.5's --all thaws a paused container
                    assert rt.state(cid)["status"] == status, (name, status, flags)
        rt("kill", cid, "KILL")
        wait_for(lambda: rt.state(cid)["status"] == "stopped", what=f"{name} stopped")
        p = rt("kill", cid, "0", check=False)
        assert p.returncode == 1 and b"container not running" in p.stderr, (name, p.stderr)
        assert rt("kill", "--all", cid, "0", check=False).returncode == 0, name
        rt("delete", cid)
        for sig in ("0", "NOSUCHSIG"):  # the id is looked up before the signal is parsed
            p = rt("kill", cid, sig, check=False)
            assert p.returncode == 1 and b"does not exist" in p.stderr, (name, sig, p.stderr)


def test_shim_teardown_sequence(runtimes, bundle, tmp_path):
    """What containerd's runc v2 shim runs to stop and remove a pod's container (traced for
    issue 18): `kill ID 9`, `kill --all ID 9` once the init has exited, `delete ID`, and
    `delete --force ID` once more when the shim itself is deleted. Each exits 0 and logs
    nothing, the last one with the container long gone; an id that cannot be a container's is
    still an error with --force."""
    bundle.set_args("sleep", "1000")
    for name, rt in both(runtimes):
        log = tmp_path / f"{name}-log.json"
        shim = ["--log", str(log), "--log-format", "json"]
        cid = running(rt, bundle)
        pid = rt.state(cid)["pid"]
        rt(*shim, "kill", cid, "9")
        wait_for(lambda: not proc_alive(pid), what=f"{name}'s init to exit")
        for args in (["kill", "--all", cid, "9"], ["delete", cid], ["delete", "--force", cid]):
            p = rt(*shim, *args, check=False)
            assert (p.returncode, p.stdout, p.stderr) == (0, b"", b""), (name, args, p.stderr)
        assert not log.exists() or log.read_text() == "", (name, log.read_text())
        assert rt.ids() == [], name
        p = rt("delete", "--force", "../x", check=False)
        assert p.returncode == 1 and b"invalid container id format" in p.stderr.lower(), \
            (name, p.stderr)


# --- item 10: --log, --log-format, --debug on every command --------------------------------------

# every command, with arguments that would let it run if the log could be opened
COMMANDS = {
    "create": ["create", "-b", "{bundle}", "{new}"], "start": ["start", "{cid}"],
    "run": ["run", "-d", "-b", "{bundle}", "{new}"], "exec": ["exec", "{cid}", "true"],
    "kill": ["kill", "{cid}", "0"], "delete": ["delete", "--force", "{cid}"],
    "state": ["state", "{cid}"], "list": ["list"], "pause": ["pause", "{cid}"],
    "resume": ["resume", "{cid}"], "ps": ["ps", "{cid}"],
    "update": ["update", "--pids-limit", "100", "{cid}"], "events": ["events", "--stats", "{cid}"],
    "features": ["features"], "spec": ["spec", "-b", "{tmp}/spec"],
    "checkpoint": ["checkpoint", "{cid}"], "restore": ["restore", "{cid}"],
    "no command": [], "help": ["help"],
}


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("bad", ["missing-dir", "directory"])
@pytest.mark.parametrize("cmd", list(COMMANDS))
def test_unopenable_log_fails_every_command(runtimes, bundle, tmp_path, cmd, bad, fmt):
    """runc opens --log before any command runs (a path in a missing directory, or a
    directory): exit 1, `open PATH: <reason>` on stderr in the --log-format, nothing done."""
    bundle.set_args("sleep", "1000")
    (tmp_path / "spec").mkdir()
    path = tmp_path / "no" / "dir" / "log" if bad == "missing-dir" else tmp_path
    reason = "no such file or directory" if bad == "missing-dir" else "is a directory"
    for name, rt in both(runtimes):
        cid = running(rt, bundle)
        argv = [a.format(cid=cid, new=new_id(), bundle=bundle.path, tmp=tmp_path)
                for a in COMMANDS[cmd]]
        pid = rt.state(cid)["pid"]
        p = rt("--log", str(path), "--log-format", fmt, *argv, check=False)
        err = p.stderr.decode()
        assert p.returncode == 1, (name, p.returncode, err)
        assert p.stdout == b"", (name, p.stdout[:200])
        lines = err.splitlines()
        assert len(lines) == 1, (name, err)
        if fmt == "json":
            entry = json.loads(lines[0])
            assert (entry["level"], entry["msg"]) == ("error", f"open {path}: {reason}"), name
        else:
            assert f"open {path}: {reason}" in lines[0], (name, err)
        assert rt.state(cid)["status"] == "running" and proc_alive(pid), name  # nothing ran
        assert rt.ids() == [cid], name
        assert not (tmp_path / "spec" / "config.json").exists(), name
        assert not path.is_file(), name
        rt("delete", "--force", cid)


def test_version_does_not_open_the_log(runtimes, tmp_path):
    for name, rt in both(runtimes):
        p = rt("--log", str(tmp_path / "no" / "log"), "--version", check=False)
        assert p.returncode == 0 and p.stdout.startswith(f"{name} version ".encode()), name


def test_bad_log_format(runtimes):
    for name, rt in both(runtimes):
        p = rt("--log-format", "xml", "list", check=False)
        assert p.returncode == 1 and b"invalid log-format: xml" in p.stderr, (name, p.stderr)


def test_every_command_logs_as_asked(runtimes, bundle, tmp_path):
    """One container's whole life with --log FILE --debug --log-format json on every call:
    the same exit status and stdout as without the flags, nothing on stderr on success,
    every log line a JSON object, debug lines from the commands that start processes
    (create, exec, run; runc logs its nsexec steps there), and an error line for a failure."""
    bundle.set_args("sleep", "1000")
    (tmp_path / "spec-runp").mkdir()
    (tmp_path / "spec-runc").mkdir()
    for name, rt in both(runtimes):
        cid = new_id()
        log = tmp_path / f"{name}.log"

        def call(*args: str, code: int = 0, debug: bool = False, error: bool = False) -> bytes:
            log.unlink(missing_ok=True)  # each call creates it, as runc's does
            p = rt("--log", str(log), "--debug", "--log-format", "json", *args, check=False)
            assert p.returncode == code, (name, args, p.returncode, p.stderr)
            entries = json_lines(log)
            levels = {e["level"] for e in entries}
            if debug:
                assert "debug" in levels, (name, args, entries)
            if error:
                assert entries[-1]["level"] == "error", (name, args, entries)
                assert p.stderr.strip() and len(p.stderr.strip().splitlines()) == 1, (name, args)
            else:
                assert "error" not in levels, (name, args, entries)
                assert p.stderr == b"", (name, args, p.stderr)
            return p.stdout

        call("create", "-b", str(bundle.path), cid, debug=True)
        call("kill", cid, "0")
        call("start", cid)
        assert json.loads(call("state", cid))["status"] == "running"
        assert cid in call("list", "-q").decode().split()
        assert call("exec", cid, "echo", "hi", debug=True) == b"hi\n"
        call("exec", cid, "sh", "-c", "exit 4", code=4, debug=True)
        call("exec", "-d", cid, "true", debug=True)
        call("exec", cid, "no-such-binary", code=255, debug=True, error=True)
        pids = json.loads(call("ps", "--format", "json", cid))
        assert rt.state(cid)["pid"] in pids
        call("pause", cid)
        call("resume", cid)
        call("update", "--pids-limit", "100", cid)
        assert "data" in json.loads(call("events", "--stats", cid).splitlines()[0])
        assert "ociVersionMax" in json.loads(call("features"))
        call("spec", "-b", str(tmp_path / f"spec-{name}"))
        assert (tmp_path / f"spec-{name}" / "config.json").exists()
        call("delete", cid, code=1, error=True)
        call("kill", cid, "KILL")
        wait_for(lambda: rt.state(cid)["status"] == "stopped", what=f"{name} stopped")
        call("delete", cid)
        call("state", cid, code=1, error=True)
        bundle.set_args("sh", "-c", "exit 3")
        call("run", "-b", str(bundle.path), new_id(), code=3, debug=True)
        bundle.set_args("sleep", "1000")


def test_log_fd_never_reaches_the_container(runp, bundle, cid, tmp_path):
    """With --log FILE --debug the init and an exec'd process still get only fds 0-2 (the
    log fd sits above 1000, close-on-exec, and is closed before exec)."""
    bundle.set_args("sleep", "1000")
    log = tmp_path / "log.json"
    flags = ("--log", str(log), "--debug", "--log-format", "json")
    runp(*flags, "create", "-b", str(bundle.path), cid)
    runp(*flags, "start", cid)
    init = runp.state(cid)["pid"]
    pf = tmp_path / "exec.pid"
    runp(*flags, "exec", "-d", "--pid-file", str(pf), cid, "sleep", "1000")
    for pid in (init, int(pf.read_text())):
        wait_for(lambda: os.readlink(f"/proc/{pid}/exe").endswith("busybox"), what="exec")
        fds = sorted(int(n) for n in os.listdir(f"/proc/{pid}/fd"))
        assert fds == [0, 1, 2], (pid, fds)
        assert str(log) not in [os.readlink(f"/proc/{pid}/fd/{n}") for n in fds]
    assert [e for e in json_lines(log) if e["level"] == "debug"]
    os.kill(int(pf.read_text()), signal.SIGKILL)


def test_extra_arguments_are_usage_errors(runtimes, tmp_path):
    """features, list and spec take no arguments: runc exits 1 with the usage error."""
    for name, rt in both(runtimes):
        for args in (["features", "x"], ["list", "x"], ["spec", "-b", str(tmp_path), "x"]):
            p = rt(*args, check=False)
            assert p.returncode == 1 and b"requires exactly 0 argument" in p.stderr, \
                (name, args, p.stderr)
        assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize("args, words", [
    (["delete", "a", "b"], b'"delete" requires exactly 1 argument(s)'),
    (["delete"], b'"delete" requires exactly 1 argument(s)'),
    (["state", "a", "b"], b'"state" requires exactly 1 argument(s)'),
    (["start"], b'"start" requires exactly 1 argument(s)'),
    (["kill"], b'"kill" requires a minimum of 1 argument(s)'),
    (["kill", "a", "KILL", "x"], b'"kill" requires a maximum of 2 argument(s)'),
])
def test_argument_counts_as_runc(runtimes, args, words):
    """runc's checkArgs: exit 1 with its words; runp used to delete every id it was given."""
    for name, rt in both(runtimes):
        p = rt(*args, check=False)
        # (runc logs through logrus, its quotes escaped)
        assert p.returncode == 1 and words in p.stderr.replace(b'\\"', b'"'), (name, p.stderr)
