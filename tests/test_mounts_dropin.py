"""Mount behaviour callers get from runc (issue #19), side by side with it.

- A read-only tmpfs (a "ro" /dev above all) is mounted writable and made read-only at the end,
  after what goes under it (/dev/pts, the devices, /dev/console, mount points): runc's
  finalizeRootfs. A read-only bind stays read-only from the start, as in runc.
- A tmpfs over an existing directory takes its mode unless mode= is given (runc 1.2; runc 1.1.5
  chmods after mounting, so mode= loses there; crun 1.8.1 does not copy the mode at all).
"""
from __future__ import annotations

import errno
import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from conftest import new_id

RUNC = shutil.which("runc")
CRUN = shutil.which("crun")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


# --- helpers ---------------------------------------------------------------------------------------

def run_in(cmd: list[str], bundle, *flags: str) -> tuple[int, str, str]:
    """`run` the bundle with a runtime's command line (ending in its global flags); the
    container is force-deleted whatever happens."""
    cid = new_id("mnt")
    try:
        p = subprocess.run(cmd + ["run", *flags, "-b", str(bundle.path), cid],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    finally:
        subprocess.run(cmd + ["delete", "--force", cid], capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def runc_cmd(tmp_path: Path) -> list[str]:
    return [RUNC, "--root", str(tmp_path / "runc-root")]


def crun_cmd(tmp_path: Path) -> list[str]:
    """crun 1.8.1 refuses hybrid cgroups: run it where the unified tree is unmounted (GUIDE 5)."""
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'umount -l /sys/fs/cgroup/unified; exec crun "$@"', "sh",
            "--root", str(tmp_path / "crun-root")]


def mount(cfg: dict, dest: str, typ: str, source: str, *options: str) -> None:
    cfg["mounts"].append({"destination": dest, "type": typ, "source": source,
                          "options": list(options)})


def set_mount_options(cfg: dict, dest: str, *extra: str) -> None:
    for m in cfg["mounts"]:
        if m["destination"] == dest:
            m["options"] = m.get("options", []) + list(extra)
            return
    raise AssertionError(f"no mount on {dest} in the config")


def visible_host_mounts() -> list[str]:
    """The host's procfs and sysfs mounts (what --no-pivot must never unmount on the host)."""
    with open("/proc/self/mountinfo") as f:
        return [ln for ln in f if ln.split(" - ", 1)[1].split()[0] in ("proc", "sysfs")]


@pytest.fixture
def host_unchanged(tmp_path):
    """No mount of the test's files appears on the host, and none of the host's procfs or
    sysfs mounts goes away (other helpers' containers come and go, so nothing stricter)."""
    before = visible_host_mounts()
    yield
    with open("/proc/self/mountinfo") as f:
        ours = [ln for ln in f if str(tmp_path) in ln]
    assert ours == [], ours
    assert visible_host_mounts() == before


# --- item 5: read-only mounts with mounts below them ----------------------------------------------

DEV_VIEW = ("cut -d' ' -f5,6 /proc/self/mountinfo | grep '^/dev' | sort; "
            "stat -c '%n %F %t:%T %a' /dev/null /dev/zero /dev/full /dev/random /dev/urandom "
            "/dev/tty; readlink /dev/ptmx /dev/fd; touch /dev/x 2>/dev/null && echo writable "
            "|| echo read-only; touch /dev/shm/x && echo shm-writable")


@pytest.mark.parametrize("root_readonly", [False, True], ids=["rw-root", "ro-root"])
def test_read_only_dev(runp, bundle, cid, tmp_path, root_readonly, host_unchanged):
    """/dev with "ro": /dev/pts, /dev/shm, /dev/mqueue are mounted on it, the devices and
    links made, then it is read-only (runp failed on /dev/pts: "Read-only file system").
    readonlyPaths and maskedPaths under /dev still apply; so does a read-only root."""
    cfg = bundle.config
    set_mount_options(cfg, "/dev", "ro")
    cfg["root"]["readonly"] = root_readonly
    cfg["linux"]["readonlyPaths"].append("/dev/mqueue")
    cfg["linux"]["maskedPaths"].append("/dev/full")
    bundle.set_args("sh", "-c", DEV_VIEW + "; touch /mqueue-test 2>/dev/null || echo root-ro")
    p = runp("run", "-b", str(bundle.path), cid, check=False)
    out = p.stdout.decode()
    assert p.returncode == 0, p.stderr
    lines = out.splitlines()
    assert "/dev ro,nosuid" in lines
    assert any(ln.startswith("/dev/pts rw,") for ln in lines), out
    assert any(ln.startswith("/dev/mqueue ro,") for ln in lines), out  # readonlyPaths
    assert "/dev/null character special file 1:3 666" in lines
    assert "/dev/full character special file 1:3 666" in lines  # masked: /dev/null bound on it
    tail = ["read-only", "shm-writable"] + (["root-ro"] if root_readonly else [])
    assert lines[-len(tail):] == tail, out
    if RUNC is not None:
        code, theirs, err = run_in(runc_cmd(tmp_path), bundle)
        assert code == 0, err
        assert out == theirs


def test_read_only_dev_with_terminal(runp, bundle, cid, tmp_path, host_unchanged):
    """/dev/console (the pty's slave bound on it) is made on a "ro" /dev before it turns
    read-only."""
    cfg = bundle.config
    set_mount_options(cfg, "/dev", "ro")
    cfg["process"]["terminal"] = True
    bundle.set_args("sh", "-c", "stat -L -c '%F %t' /dev/console; stat -L -c '%F %t' "
                    "/proc/self/fd/0; cut -d' ' -f5,6 /proc/self/mountinfo | grep '^/dev '")
    expected = "character special file 88\ncharacter special file 88\n/dev ro,nosuid\n"
    assert run_with_console(runp.cmd(), bundle, tmp_path / "runp.sock") == expected
    if RUNC is not None:
        assert run_with_console(runc_cmd(tmp_path), bundle, tmp_path / "runc.sock") == expected


def run_with_console(cmd: list[str], bundle, sock_path: Path) -> str:
    """create with --console-socket, start, and read the container's terminal to the end."""
    cid = new_id("tty")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(sock_path))
    srv.listen(1)
    srv.settimeout(30)
    master = -1
    try:
        p = subprocess.run(cmd + ["create", "--console-socket", str(sock_path), "-b",
                                  str(bundle.path), cid], capture_output=True, timeout=60,
                           stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
        conn, _ = srv.accept()
        with conn:
            _, fds, _, _ = socket.recv_fds(conn, 4096, 1)
        master = fds[0]
        subprocess.run(cmd + ["start", cid], check=True, capture_output=True, timeout=60)
        out = b""
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError as e:  # EIO: every slave fd is closed, the process is gone
                assert e.errno == errno.EIO
                break
            if not chunk:
                break
            out += chunk
        return out.decode().replace("\r\n", "\n")
    finally:
        if master >= 0:
            os.close(master)
        srv.close()
        subprocess.run(cmd + ["delete", "--force", cid], capture_output=True, timeout=30)


def test_read_only_tmpfs_with_mounts_below(runp, bundle, cid, tmp_path, host_unchanged):
    """A "ro" tmpfs gets the mount points of later mounts (made in it), then turns
    read-only, as with runc; "rro" then covers the mounts below too."""
    cfg = bundle.config
    mount(cfg, "/data", "tmpfs", "tmpfs", "ro", "mode=755")
    mount(cfg, "/data/sub/dir", "tmpfs", "tmpfs", "mode=700")
    mount(cfg, "/all", "tmpfs", "tmpfs", "rro")
    mount(cfg, "/all/sub", "tmpfs", "tmpfs")
    bundle.set_args("sh", "-c", "cut -d' ' -f5,6 /proc/self/mountinfo | grep -E '^/(data|all)'"
                    "; stat -c '%n %a' /data /data/sub /data/sub/dir; touch /data/x 2>/dev/null "
                    "|| echo data-ro; touch /data/sub/dir/x && echo sub-rw; touch /all/sub/x "
                    "2>/dev/null || echo all-sub-ro")
    p = runp("run", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().splitlines() == [
        "/data ro,relatime", "/data/sub/dir rw,relatime", "/all ro,relatime",
        "/all/sub ro,relatime", "/data 755", "/data/sub 755", "/data/sub/dir 700", "data-ro",
        "sub-rw", "all-sub-ro"]
    if RUNC is not None:
        # runc 1.1.5 ignores "rro" on a tmpfs (it returns before applying recursive flags)
        del cfg["mounts"][-2:]
        bundle.write()
        ours = runp("run", "-b", str(bundle.path), new_id(), check=False)
        code, theirs, err = run_in(runc_cmd(tmp_path), bundle)
        assert code == 0, err
        assert ours.stdout.decode() == theirs


@pytest.mark.parametrize("sub_exists", [True, False], ids=["existing", "missing"])
def test_read_only_bind_with_mount_below(runp, bundle, cid, tmp_path, sub_exists, host_unchanged):
    """A "ro" bind is read-only at once, as in runc: a mount onto a directory in it works, a
    mount point it lacks is an error, never made in the host's directory."""
    src = tmp_path / "hostdir"
    (src / "sub").mkdir(parents=True)
    before = sorted(os.listdir(src))
    dest = "/data/sub" if sub_exists else "/data/new"
    mount(bundle.config, "/data", "bind", str(src), "rbind", "ro")
    mount(bundle.config, dest, "tmpfs", "tmpfs")
    bundle.set_args("sh", "-c", "cut -d' ' -f5,6 /proc/self/mountinfo | grep '^/data'")
    p = runp("run", "-b", str(bundle.path), cid, check=False)
    if sub_exists:
        assert p.returncode == 0, p.stderr
        assert p.stdout.decode() == "/data ro,relatime\n/data/sub rw,relatime\n"
    else:
        assert p.returncode == 1
        assert p.stderr.decode().strip().endswith(
            f"config.json: mounts[{len(bundle.config['mounts']) - 1}]: mount tmpfs to "
            "/data/new: Read-only file system"), p.stderr
    assert sorted(os.listdir(src)) == before
    if RUNC is not None:
        code, theirs, _ = run_in(runc_cmd(tmp_path), bundle)
        assert (code == 0) == sub_exists
        assert theirs == p.stdout.decode()


# --- item 12a: a tmpfs over a directory takes its mode ---------------------------------------------

def mode_bundle(bundle):
    root = bundle.rootfs
    for name, mode in (("d700", 0o700), ("d2750", 0o2750), ("explicit", 0o700), ("copy", 0o700)):
        (root / name).mkdir()
        os.chmod(root / name, mode)
    (root / "copy" / "file").write_text("kept\n")
    cfg = bundle.config
    for dest in ("/d700", "/tmp", "/d2750", "/missing"):
        mount(cfg, dest, "tmpfs", "tmpfs", "nosuid")
    mount(cfg, "/explicit", "tmpfs", "tmpfs", "nosuid", "mode=751")
    mount(cfg, "/copy", "tmpfs", "tmpfs", "tmpcopyup")
    return bundle.set_args("sh", "-c", "stat -c '%n %a' /d700 /tmp /d2750 /missing /explicit "
                           "/copy; cat /copy/file")


def test_tmpfs_takes_the_directory_mode(runp, make_bundle, cid, tmp_path):
    """0700, 1777 and 2750 directories keep their mode under a tmpfs; a missing one gets
    tmpfs's 1777; mode= wins over the directory's (runc 1.2). runc 1.1.5 agrees but for
    mode=, which its chmod after mounting overrides; crun 1.8.1 takes mode= but never the
    directory's mode: each is compared where it behaves as specified. (A fresh bundle each:
    a runtime leaves the mount points it made in the rootfs.)"""
    bundle = mode_bundle(make_bundle())
    p = runp("run", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 0, p.stderr
    ours = p.stdout.decode().splitlines()
    assert ours == ["/d700 700", "/tmp 1777", "/d2750 2750", "/missing 1777", "/explicit 751",
                    "/copy 700", "kept"]
    if RUNC is not None:
        code, theirs, err = run_in(runc_cmd(tmp_path), mode_bundle(make_bundle()))
        assert code == 0, err
        theirs = theirs.splitlines()
        assert theirs[:4] + theirs[5:] == ours[:4] + ours[5:]
    if CRUN is not None:
        bundle = mode_bundle(make_bundle())
        bundle.config["ociVersion"] = "1.0.2"  # all crun 1.8.1 accepts
        code, theirs, err = run_in(crun_cmd(tmp_path), bundle.write())
        assert code == 0, err
        assert theirs.splitlines()[3:5] == ours[3:5]


def test_tmpcopyup_mode_option_wins(runp, bundle, cid):
    """tmpcopyup copies the directory (its mode too); a mode= in the options still wins."""
    (bundle.rootfs / "copy").mkdir(mode=0o700)
    (bundle.rootfs / "copy" / "file").write_text("kept\n")
    mount(bundle.config, "/copy", "tmpfs", "tmpfs", "tmpcopyup", "mode=755", "ro")
    bundle.set_args("sh", "-c", "stat -c '%n %a' /copy; cat /copy/file; touch /copy/x "
                    "2>/dev/null || echo read-only")
    p = runp("run", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode() == "/copy 755\nkept\nread-only\n"
