"""Mount behaviour callers get from runc (issue #19, items 5, 7 and 12a), side by side with it.

- A read-only tmpfs (a "ro" /dev above all) is mounted writable and made read-only at the end,
  after what goes under it (/dev/pts, the devices, /dev/console, mount points): runc's
  finalizeRootfs. A read-only bind stays read-only from the start, as in runc.
- --no-pivot leaves nothing of the host's mount tree in the container's namespace (the kernel
  then refuses a fresh procfs or sysfs in a nested user namespace, as with runc), and never
  touches the host's namespace doing so.
- A tmpfs over an existing directory takes its mode unless mode= is given (runc 1.2; runc 1.1.5
  chmods after mounting, so mode= loses there; crun 1.8.1 does not copy the mode at all).
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import shutil
import socket
import struct
import subprocess
from pathlib import Path

import pytest

from conftest import make_traversable, new_id
from runtime.linux import arch

RUNC = shutil.which("runc")
CRUN = shutil.which("crun")
pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

USERNS = {"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
          "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}


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


# --- item 7: --no-pivot leaves no host mounts behind -----------------------------------------------

NESTED = {  # fresh procfs / sysfs in a nested user namespace: allowed only if one is fully visible
    "proc": "busybox unshare -r -m -p -f busybox mount -t proc proc /mnt",
    "sysfs": "busybox unshare -r -m -n busybox mount -t sysfs sysfs /mnt",
}


def nested_mount(bundle, fs: str = "proc", userns: bool = False) -> None:
    """The bundle's process tries the nested mount of `fs`, as uid 1000 (mapping uid 0 into a
    nested user namespace needs CAP_SETFCAP, which the default capabilities lack)."""
    cfg = bundle.config
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    if userns:
        cfg["linux"]["namespaces"].append({"type": "user"})
        cfg["linux"].update(USERNS)
        make_traversable(bundle.rootfs)
    (bundle.rootfs / "mnt").mkdir()
    bundle.set_args("sh", "-c", NESTED[fs] + " 2>&1 && echo MOUNTED; true")


REFUSED = "mount: permission denied (are you root?)\n"


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
@pytest.mark.parametrize("fs", ["proc", "sysfs"])
def test_no_pivot_nested_mount_refused(runp, bundle, cid, tmp_path, fs, userns, host_unchanged):
    """Inside a --no-pivot container a nested user namespace cannot mount a fresh procfs or
    sysfs: the host's are not left under the root (runp allowed it), as with runc (and as
    without --no-pivot)."""
    nested_mount(bundle, fs, userns)
    for flags in ((), ("--no-pivot",)):
        p = runp("run", *flags, "-b", str(bundle.path), new_id(), check=False)
        assert p.returncode == 0, p.stderr
        assert p.stdout.decode() == REFUSED, flags
        if RUNC is not None:
            code, theirs, err = run_in(runc_cmd(tmp_path), bundle, *flags)
            assert (code, theirs) == (0, p.stdout.decode()), err


NS_GET_MNTNS_ID = (2 << 30) | (8 << 16) | (0xB7 << 8) | 0x5  # _IOR(0xb7, 5, __u64)
SYS_listmount = arch.number("listmount")
LSMT_ROOT = 0xFFFFFFFFFFFFFFFF


def namespace_mount_count(pid: int) -> int:
    """How many mounts the mount namespace of `pid` holds, reachable from its root or not
    (listmount(2) with the namespace's id, Linux 6.11+)."""
    fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    try:
        ns_id = struct.unpack("Q", fcntl.ioctl(fd, NS_GET_MNTNS_ID, b"\0" * 8))[0]
    finally:
        os.close(fd)
    req = struct.pack("IIQQQ", 32, 0, LSMT_ROOT, 0, ns_id)  # struct mnt_id_req, version 1
    buf = (ctypes.c_uint64 * 4096)()
    libc = ctypes.CDLL(None, use_errno=True)
    n = libc.syscall(SYS_listmount, req, buf, 4096, 0)
    if n < 0:
        raise OSError(ctypes.get_errno(), "listmount")
    return n


def reachable_mount_count(pid: int) -> int:
    with open(f"/proc/{pid}/mountinfo") as f:  # (relative to its root: the rest is left out)
        return sum(1 for _ in f)


def unreachable_mounts(pid: int) -> int:
    try:
        return namespace_mount_count(pid) - reachable_mount_count(pid)
    except OSError as e:
        if e.errno in (errno.ENOSYS, errno.ENOTTY, errno.EINVAL):
            pytest.skip(f"this kernel cannot list a namespace's mounts: {e}")
        raise


def test_no_pivot_keeps_only_the_old_root(runp, bundle, cid, host_unchanged):
    """Of the host's mounts only the old root stays in the container's namespace (it cannot
    go: --no-pivot exists for roots that cannot be moved). runc leaves all but the procfs and
    sysfs ones; runp left every one of them."""
    below_root = unreachable_mounts(os.getpid())  # what our own "/" sits on (an initramfs)
    bundle.set_args("sleep", "1000")
    runp("run", "-d", "--no-pivot", "-b", str(bundle.path), cid)
    pid = runp.state(cid)["pid"]
    assert unreachable_mounts(pid) <= below_root + 1  # + the old root itself
    runp("delete", "--force", cid)


STAND_IN_HOST = r"""
set -e
# A stand-in host, as a systemd host is: every mount shared. It is a private copy of ours,
# so nothing done in it can reach our own namespace.
mount --make-rshared /
mount -t tmpfs tmpfs "$DIR"
cp -a "$BUNDLE" "$DIR/bundle"
# Another engine's mounts, shaped as podman's: its overlay directory bound on itself with a
# container's overlay under it, a tmpfs stacked on another, all in peer groups that a mount
# namespace of the engine's own shares (conmon keeps one).
mkdir -p "$ENGINE/overlay/c/lower" "$ENGINE/overlay/c/upper" "$ENGINE/overlay/c/work" \
    "$ENGINE/overlay/c/merged" "$ENGINE/shm"
mount --bind "$ENGINE/overlay" "$ENGINE/overlay"
mount --make-private "$ENGINE/overlay"  # as podman makes it; then shared as all here
mount --make-shared "$ENGINE/overlay"
c="$ENGINE/overlay/c"
mount -t overlay overlay -o "lowerdir=$c/lower,upperdir=$c/upper,workdir=$c/work" "$c/merged"
mount -t tmpfs shm "$ENGINE/shm"
mount -t tmpfs shm "$ENGINE/shm"
setpriv --pdeathsig KILL unshare --mount --propagation unchanged sleep 600 &
trap 'kill $!' EXIT
# A mount runp could touch never vanishes from here; the host may still take one away: the
# kernel detaches a mount in every namespace when its mount point is removed (podman removes
# a container's "merged" and "userdata" directories after unmounting them). Each snapshot
# lists the mount points of "before" that are gone.
snapshot() {
    cat /proc/self/mountinfo > "$OUT/$1"
    cut -d' ' -f5 "$OUT/before" | while read -r mp; do
        [ -e "$(printf '%b' "$mp")" ] || printf '%s\n' "$mp"
    done > "$OUT/$1.gone"
}
snapshot before
"$@" create $FLAGS -b "$DIR/bundle" "$ID" > "$OUT/create.out" 2>&1 < /dev/null
snapshot during
"$@" start "$ID"
i=0
until "$@" state "$ID" | grep -q '"stopped"'; do
    i=$((i + 1)); [ $i -lt 600 ] || exit 9; sleep 0.05
done
"$@" delete "$ID"
snapshot after
"""


def mounts_changed(out: Path, when: str) -> tuple[list[str], list[str]]:
    """The stand-in's mounts that went away by `when` (but for those whose mount point the
    host removed) and those that came."""
    before = (out / "before").read_text().splitlines()
    now = (out / when).read_text().splitlines()
    gone = set((out / f"{when}.gone").read_text().splitlines())
    return ([ln for ln in before if ln not in now and ln.split()[4] not in gone],
            [ln for ln in now if ln not in before])


@pytest.mark.parametrize("flags", ["--no-pivot", ""], ids=["no-pivot", "pivot"])
def test_never_touches_the_host(runp, bundle, cid, tmp_path, flags, host_unchanged):
    """In a host namespace whose mounts are all shared, with rootfsPropagation "rshared" and
    the bundle on a mount of its own: the host's namespace is the same before, during and
    after, another engine's mounts included. (runp's MS_MOVE onto the shared "/" put the
    container's root and all its mounts on the host's "/", for good; runc 1.1.5 unmounts the
    host's /proc there.)"""
    bundle.config["linux"]["rootfsPropagation"] = "rshared"
    nested_mount(bundle)
    out = tmp_path / "out"
    out.mkdir()
    stand_in = tmp_path / "stand-in"
    stand_in.mkdir()
    env = dict(os.environ, DIR=str(stand_in), ENGINE=str(tmp_path / "engine"), FLAGS=flags,
               BUNDLE=str(bundle.path), OUT=str(out), ID=cid)
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        STAND_IN_HOST, "sh", *runp.cmd()], env=env, capture_output=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    created = out / "create.out"  # create's output, and the container's (its stdio)
    assert p.returncode == 0, (p.stderr, created.read_text() if created.exists() else "")
    engine = [ln for ln in (out / "before").read_text().splitlines() if "/engine/" in ln]
    assert len(engine) == 4, engine
    assert mounts_changed(out, "during") == ([], [])
    assert mounts_changed(out, "after") == ([], [])
    assert created.read_text() == REFUSED


HIDDEN_PROCFS = r"""
# A host whose procfs at $DIR/proc is hidden under a tmpfs on $DIR: no path reaches it (runc
# 1.1.5 leaves it, fully visible, under a --no-pivot root), yet the kernel counts it.
mkdir -p "$DIR/proc"
mount -t proc proc "$DIR/proc"
mount -t tmpfs tmpfs "$DIR"
"$@" run --no-pivot -b "$BUNDLE" "$ID" > "$OUT/stdout" 2> "$OUT/stderr" < /dev/null
echo $? > "$OUT/code"
"""


@pytest.mark.parametrize("userns", [False, True], ids=["root", "userns"])
def test_no_pivot_hidden_host_procfs(runp, bundle, cid, tmp_path, userns, host_unchanged):
    """A host procfs hidden under another mount is detached once that one is gone; in a user
    namespace, where the host's mounts are locked and can be neither detached nor reached to
    be covered, create fails (naming it) rather than run a container that could mount a
    fresh procfs."""
    nested_mount(bundle, userns=userns)
    out = tmp_path / "out"
    out.mkdir()
    hide = tmp_path / "hide"
    env = dict(os.environ, DIR=str(hide), BUNDLE=str(bundle.path), OUT=str(out), ID=cid)
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        HIDDEN_PROCFS, "sh", *runp.cmd()], env=env, capture_output=True,
                       timeout=120, stdin=subprocess.DEVNULL)
    assert p.returncode == 0, p.stderr
    code, stderr = int((out / "code").read_text()), (out / "stderr").read_text()
    if userns:
        assert code == 1
        assert stderr.count("\n") == 1 and stderr.endswith(
            f"--no-pivot: the host's proc at {hide}/proc cannot be detached or covered: it "
            "would stay visible to the container\n"), stderr
    else:
        assert (code, stderr) == (0, "")
        assert (out / "stdout").read_text() == REFUSED


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
