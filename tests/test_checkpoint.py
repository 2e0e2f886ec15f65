"""checkpoint / restore where criu cannot work (this host: Debian's criu 3.17 fails `criu check` on
kernel 6.18), or is not installed: one line saying why and what to install, nothing changed or
left behind; the flags and states runc refuses. Where criu works they run for real in
tests/test_checkpoint_vm.py (a VM with Debian's 6.1 kernel).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time

import pytest

from conftest import force_delete, new_id

RUNC = shutil.which("runc")
CRIU = shutil.which("criu") or ("/usr/sbin/criu" if os.path.exists("/usr/sbin/criu") else None)


def criu_check() -> tuple[int, str] | None:
    """(exit status, first Error line or last line) of `criu check`, None without criu."""
    if CRIU is None:
        return None
    p = subprocess.run([CRIU, "check"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    lines = [ln.strip() for ln in p.stdout.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error")]
    return p.returncode, (errors[0] if errors else lines[-1] if lines else "")


CHECK = criu_check()
criu_unusable = pytest.mark.skipif(CHECK is not None and CHECK[0] == 0,
                                   reason="criu works here (tests/test_checkpoint_vm.py tests it)")


def start(runp, bundle, cid, *args):
    bundle.set_args(*args)
    runp("run", "-d", "--bundle", str(bundle.path), cid, stdin=subprocess.DEVNULL)


def test_checkpoint_help_is_supported(runp):
    """podman decides that the runtime can checkpoint from `checkpoint --help`'s exit code."""
    assert runp("checkpoint", "--help").returncode == 0
    assert runp("restore", "--help").returncode == 0


def cgroup_dirs_named(name: str) -> list[str]:
    from conftest import cgroup_roots
    out = []
    for root in cgroup_roots():
        for d, subdirs, _ in os.walk(root):
            out += [os.path.join(d, s) for s in subdirs if s == name]
    return out


@criu_unusable
def test_checkpoint_and_restore_say_why_not(runp, bundle, cid, tmp_path):
    """One line: criu's own reason (the first Error of `criu check`) or that criu is missing,
    and what to install. The container keeps running (the failed dump destroys nothing, as
    with runc); the failed restore leaves no state dir, cgroup or mount behind."""
    start(runp, bundle, cid, "sleep", "100")
    pid = runp.state(cid)["pid"]
    img = tmp_path / "img"
    p = runp("checkpoint", "--image-path", str(img), "--work-path", str(tmp_path / "work"), cid,
             check=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"runp: cannot checkpoint container {cid}: criu"), err
    if CHECK is None:
        assert "is not installed" in err and "apt-get install criu" in err, err
    else:
        assert "is unusable with kernel" in err and CHECK[1] in err, err
        assert "install a criu release that supports this kernel" in err
    st = runp.state(cid)
    assert (st["status"], st["pid"]) == ("running", pid)
    restored = new_id("restored")
    p = runp("restore", "-d", "--image-path", str(img), "--bundle", str(bundle.path), restored,
             check=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and len(err.strip().splitlines()) == 1, err
    assert f"cannot restore container {restored}: criu" in err, err
    if CHECK is not None:
        assert CHECK[1] in err
    assert restored not in runp.ids() and not (runp.root / restored).exists()
    assert cgroup_dirs_named(restored) == []
    with open("/proc/self/mountinfo") as f:
        assert "criu-root" not in f.read()


def test_criu_flag_names_the_binary(runp, bundle, cid, tmp_path):
    """--criu PATH (a global flag, as runc's): a missing binary is named, with what to install;
    features then says checkpointing is off and names no criu version."""
    start(runp, bundle, cid, "sleep", "100")
    nope = str(tmp_path / "no-criu")
    for args in (["checkpoint", cid], ["restore", "-d", "--image-path", str(tmp_path), "--bundle",
                                       str(bundle.path), new_id()]):
        p = runp("--criu", nope, *args, check=False)
        err = p.stderr.decode()
        assert p.returncode == 1 and len(err.strip().splitlines()) == 1, err
        assert f"criu ({nope}) is not installed" in err and "apt-get install criu" in err, err
    ann = json.loads(runp("--criu", nope, "features").stdout)["annotations"]
    assert ann["org.opencontainers.runp.checkpoint.enabled"] == "false"
    assert "org.criu.version" not in ann


def test_features_tell_whether_criu_works(runp):
    ann = json.loads(runp("features").stdout)["annotations"]
    enabled = ann["org.opencontainers.runp.checkpoint.enabled"]
    assert enabled == ("true" if CHECK is not None and CHECK[0] == 0 else "false")
    if CRIU is None:
        assert "org.criu.version" not in ann
    else:
        out = subprocess.run([CRIU, "--version"], capture_output=True, text=True).stdout
        assert f"Version: {ann['org.criu.version']}" in out


def test_refused_states_and_flags_as_runc(runp, bundle, tmp_path):
    """Before criu is asked: a created container cannot be checkpointed, nor can an unknown id;
    --manage-cgroups-mode and --empty-ns take only what runc takes; --parent-path must be
    relative. runc side by side where it is installed."""
    rts = {"runp": runp.cmd()}
    if RUNC:
        rts["runc"] = [RUNC, "--root", str(tmp_path / "runc-root")]
    bundle.set_args("sleep", "100")
    for name, cmd in rts.items():
        cid = new_id(name)
        try:
            # (not pipes: the created container keeps its stdio open)
            subprocess.run(cmd + ["create", "--bundle", str(bundle.path), cid], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
            p = subprocess.run(cmd + ["checkpoint", "--image-path", str(tmp_path / "i"), cid],
                               capture_output=True, text=True, timeout=60)
            assert p.returncode == 1 and "cannot be checkpointed in created state" in p.stderr, \
                (name, p.stderr)
            p = subprocess.run(cmd + ["checkpoint", "no-such-id"], capture_output=True, text=True,
                               timeout=60)
            assert p.returncode == 1 and "does not exist" in p.stderr, (name, p.stderr)
        finally:
            force_delete(cmd, cid)
    for flags, message in ((["--manage-cgroups-mode", "sometimes"], "manage-cgroups-mode"),
                           (["--empty-ns", "pid"], 'namespace "pid" is not supported'),
                           (["--parent-path", "/abs"], "--parent-path must be relative")):
        cid = new_id()
        start(runp, bundle, cid, "sleep", "100")
        p = runp("checkpoint", "--image-path", str(tmp_path / "j"), *flags, cid, check=False)
        assert p.returncode == 1 and message in p.stderr.decode(), (flags, p.stderr)
        assert runp.state(cid)["status"] == "running"
        runp("delete", "--force", cid)


def test_null_stdio_is_the_containers_own(runp, bundle, tmp_path):
    """Stdio that is the host's /dev/null (containerd's shim and conmon give detached containers
    that stdin) is reopened as the container's /dev/null, as runc does: criu cannot checkpoint
    a file on a mount the container does not have. runc side by side."""
    rts = {"runp": runp.cmd()}
    if RUNC:
        rts["runc"] = [RUNC, "--root", str(tmp_path / "runc-root")]
    # the mount the fd is on must be one the container has
    bundle.set_args("sh", "-c", "id=$(grep mnt_id /proc/self/fdinfo/0 | tr -dc 0-9); "
                    "grep -c \"^$id \" /proc/self/mountinfo")
    for name, cmd in rts.items():
        cid = new_id(name)
        out = tmp_path / f"{name}.out"
        try:   # detached: in the foreground runc gives the container pipes of its own
            with open(os.devnull) as null, open(out, "w") as o:
                subprocess.run(cmd + ["run", "-d", "--bundle", str(bundle.path), cid], stdin=null,
                               stdout=o, stderr=o, timeout=60, check=True)
            deadline = time.monotonic() + 30
            while not out.read_text().strip() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert out.read_text().strip() == "1", (name, out.read_text())
        finally:
            force_delete(cmd, cid)


@pytest.mark.skipif(CRIU is None, reason="criu is not installed")
def test_criu_answers_over_its_rpc_socket():
    """The swrk client (runtime/criu.py) works where criu's kernel probe fails: the VERSION
    request needs none, and its answer matches `criu --version`."""
    from runtime import criu
    major, minor, sub = (criu.version(CRIU) // 10000, criu.version(CRIU) // 100 % 100,
                         criu.version(CRIU) % 100)
    assert criu.version_text(CRIU).split(".")[:3] == [str(major), str(minor), str(sub)]
    assert not [p for p in os.listdir("/proc") if p.isdigit() and _is_swrk(p)], "criu left running"


def _is_swrk(pid: str) -> bool:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().split(b"\0")[1:2] == [b"swrk"]
    except OSError:
        return False
