"""Bind mounts and user namespaces: the rootfs and bind sources of a container in a user
namespace, from directories its root cannot search (issue #19, item 4), and idmapped bind
mounts (mounts[].uidMappings/gidMappings, "idmap"/"ridmap"; issue #14).

Root of the container's user namespace is uid 100000 on the host: it cannot look a path up
through a 0700 directory of host root, which is what `mktemp -d` makes. The init therefore
never looks the rootfs or a bind source up itself: a helper with the host's credentials opens
them in the container's mount namespace (runtime/linux/mount_sources.py). Unlike the rest of
the suite, these tests never call conftest.make_traversable: the directories stay 0700.

runc 1.1.5 (and runc's main branch, which still binds root.path onto itself from inside the
user namespace) fails a bundle below such a directory with "permission denied"; it does open
bind sources on the host's side, so those cases are compared with it.

runc 1.1.5 ignores idmapped mounts altogether (the files keep their owners, no error); crun
1.8.1 makes them (it predates "ridmap" and the spec's text), so the cases it shares are
compared with crun.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest

from conftest import Bundle, new_id

RUNC = shutil.which("runc")
CRUN = shutil.which("crun")
IDMAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]
needs_runc = pytest.mark.skipif(RUNC is None, reason="runc is not installed")
needs_crun = pytest.mark.skipif(CRUN is None, reason="crun is not installed")


def mounts_below(path: Path) -> list[str]:
    """Lines of our /proc/self/mountinfo whose root or mount point lies below `path`."""
    p = str(path)
    return [line for line in Path("/proc/self/mountinfo").read_text().splitlines() if p in line]


def processes_with(word: str) -> list[int]:
    """Pids whose command line mentions `word` (a container id)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                cmd = Path(f"/proc/{d}/cmdline").read_bytes()
            except OSError:
                continue
            if word.encode() in cmd:
                out.append(int(d))
    return out


@pytest.fixture
def private_dir():
    """A 0700 directory of host root, as `mktemp -d` makes; no mount below it may outlive the
    test."""
    d = Path(tempfile.mkdtemp(prefix="runp-userns-"))
    st = d.stat()
    assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o700
    yield d
    left = mounts_below(d)
    for line in reversed(left):  # (a failing test must not leave them to the next one)
        subprocess.run(["umount", "-l", line.split()[4]], capture_output=True)
    shutil.rmtree(d)
    assert not left, f"mounts left behind: {left}"


@pytest.fixture
def open_dir():
    """A directory everyone may search: for bundles that runc, too, must be able to reach."""
    d = Path(tempfile.mkdtemp(prefix="runp-userns-open-"))
    d.chmod(0o755)
    yield d
    left = mounts_below(d)
    shutil.rmtree(d)
    assert not left, f"mounts left behind: {left}"


def userns_bundle(parent: Path, template: Path, *args: str) -> Bundle:
    path = parent / "bundle"
    path.mkdir()
    b = Bundle(path, template)
    lx = b.config["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = IDMAP
    lx["gidMappings"] = IDMAP
    b.config["process"]["args"] = list(args)
    return b.write()


def bind(source: Path | str, dest: str, *options: str) -> dict:
    return {"destination": dest, "type": "bind", "source": str(source), "options": list(options)}


def sources(private: Path) -> Path:
    """private/data/f (and a symlink private/link -> data) as host root makes them."""
    data = private / "data"
    data.mkdir()
    (data / "f").write_text("from the host\n")
    (private / "file").write_text("a bound file\n")
    (private / "link").symlink_to(data)
    (private / "filelink").symlink_to(private / "file")
    return data


def run_runc(bundle: Bundle, tmp_path: Path) -> subprocess.CompletedProcess:
    cmd = [RUNC, "--root", str(tmp_path / "runc-root")]
    cid = new_id("runc")
    try:
        return subprocess.run(cmd + ["run", "-b", str(bundle.path), cid], capture_output=True,
                              timeout=60)
    finally:
        subprocess.run(cmd + ["delete", "--force", cid], capture_output=True, timeout=30)


def test_bundle_below_private_dir_runs(runp, cid, private_dir, rootfs_template):
    """The rootfs below a 0700 directory of host root: root.path is opened on the host's side
    and bound from that fd. (runc fails here: "mount ...rootfs: permission denied".)"""
    b = userns_bundle(private_dir, rootfs_template, "sh", "-c", "id; cat /proc/self/uid_map; "
                      "stat -c %u /bin/busybox")
    p = runp("run", "-b", str(b.path), cid)
    out = p.stdout.decode().split("\n")
    assert out[0] == "uid=0(root) gid=0(root)"
    assert out[1].split() == ["0", "100000", "65536"]
    assert out[2] == "65534"  # host root's files: not mapped into the container
    assert runp.ids() == []


def test_bundle_below_private_dir_no_pivot(runp, cid, private_dir, rootfs_template):
    """--no-pivot moves the rootfs onto / through the same fd (never by path)."""
    b = userns_bundle(private_dir, rootfs_template, "sh", "-c", "id -u; ls /")
    out = runp("run", "--no-pivot", "-b", str(b.path), cid).stdout.decode().split()
    assert out[0] == "0" and "bin" in out


def test_relative_bind_source_in_private_bundle(runp, cid, private_dir, rootfs_template):
    """A source relative to the bundle, itself below a 0700 directory."""
    b = userns_bundle(private_dir, rootfs_template, "cat", "/var/f")
    (b.path / "data").mkdir()
    (b.path / "data" / "f").write_text("relative\n")
    b.config["mounts"].append(bind("data", "/var", "rbind", "ro"))
    b.write()
    assert runp("run", "-b", str(b.path), cid).stdout == b"relative\n"


SCRIPT = ("cat /var/f /home/user/f /etc/group /etc/passwd; stat -c %u /var/f; "
          "touch /home/user/new 2>&1; touch /var/new 2>&1; ls /proc/self/fd; "
          "grep -c ' /var \\| /home/user \\| /etc/group \\| /etc/passwd ' /proc/self/mountinfo")


@needs_runc
def test_bind_sources_below_private_dir_as_runc(runp, cid, private_dir, open_dir,
                                                rootfs_template, tmp_path):
    """Bind sources below a 0700 directory: a directory (rw, rbind), the same through a
    symlink (ro), a file and a file through a symlink. Same output as runc 1.1.5, which opens
    its bind sources on the host's side too: the files readable, the read-only bind read-only,
    the rw one still refusing the unmapped host root's directory to the container's root
    (plain permissions), no fd but 0-2 (and ls's own) in the container."""
    sources(private_dir)
    b = userns_bundle(open_dir, rootfs_template, "sh", "-c", SCRIPT)
    b.config["mounts"] += [bind(private_dir / "data", "/var", "rbind", "rw"),
                           bind(private_dir / "link", "/home/user", "rbind", "ro"),
                           bind(private_dir / "file", "/etc/group", "bind"),
                           bind(private_dir / "filelink", "/etc/passwd", "bind", "ro")]
    b.write()
    p = runp("run", "-b", str(b.path), cid)
    out = p.stdout.decode()
    assert out.startswith("from the host\nfrom the host\na bound file\na bound file\n65534\n")
    assert "/home/user/new: Read-only file system" in out
    assert "/var/new: Permission denied" in out
    assert out.endswith("0\n1\n2\n3\n4\n"), out  # 4 mounts; fds 0-2 and ls's directory
    r = run_runc(b, tmp_path)
    assert r.returncode == 0, r.stderr
    assert out == r.stdout.decode()


@needs_runc
def test_locked_host_flags_survive(runp, cid, private_dir, open_dir, rootfs_template, tmp_path):
    """A source on a read-only nosuid host mount stays so even for a container root with
    CAP_SYS_ADMIN: the helper opens it in the container's mount namespace, whose copy of the
    host mount is locked (a clone of the host's own mount, attached there, would not be).
    runc gives the same answer."""
    data = sources(private_dir)
    ro = private_dir / "ro"
    ro.mkdir()
    subprocess.run(["mount", "--bind", str(data), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro,nosuid", str(ro)], check=True)
        b = userns_bundle(open_dir, rootfs_template, "sh", "-c",
                          "mount -o remount,bind,rw /var 2>&1 || echo refused; "
                          "mount -o remount,bind,suid /var 2>&1 || echo refused; "
                          "touch /var/new 2>&1; grep ' /var ' /proc/self/mountinfo | "
                          "grep -o 'ro,nosuid'")
        caps = b.config["process"]["capabilities"]
        for kind in caps:
            caps[kind] = sorted(set(caps[kind]) | {"CAP_SYS_ADMIN"})
        b.config["mounts"].append(bind(ro, "/var", "rbind"))
        b.write()
        out = runp("run", "-b", str(b.path), cid).stdout.decode()
        assert out.count("refused") == 2 and "Read-only file system" in out, out
        assert out.endswith("ro,nosuid\n"), out
        r = run_runc(b, tmp_path)
        assert r.returncode == 0, r.stderr
        assert out == r.stdout.decode()
    finally:
        subprocess.run(["umount", str(ro)], check=True)


@needs_runc
def test_rbind_and_bind_of_a_source_with_a_submount(runp, cid, private_dir, open_dir,
                                                    rootfs_template, tmp_path):
    """rbind takes the mounts below the source along (open_tree AT_RECURSIVE); a plain bind
    of a directory with a host mount below it fails, as for runc (the kernel refuses to
    reveal what a mount locked for the user namespace hides)."""
    data = sources(private_dir)
    (data / "sub").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "sub", str(data / "sub")], check=True)
    try:
        (data / "sub" / "g").write_text("on the tmpfs\n")
        b = userns_bundle(open_dir, rootfs_template, "cat", "/var/sub/g")
        b.config["mounts"].append(bind(data, "/var", "rbind"))
        b.write()
        assert runp("run", "-b", str(b.path), cid).stdout == b"on the tmpfs\n"
        r = run_runc(b, tmp_path)
        assert (r.returncode, r.stdout) == (0, b"on the tmpfs\n"), r.stderr
        b.config["mounts"][-1]["options"] = ["bind"]
        b.write()
        p = runp("run", "-b", str(b.path), new_id(), check=False)
        assert p.returncode == 1
        assert p.stderr.decode().startswith(f"config.json: mounts[{len(b.config['mounts']) - 1}]:")
        assert run_runc(b, tmp_path).returncode != 0
    finally:
        subprocess.run(["umount", str(data / "sub")], check=True)


def test_missing_source_fails_cleanly(runp, cid, private_dir, rootfs_template):
    """A source that does not exist: one line naming the mount, exit 1, and nothing left:
    no state, no mount, no process (the helper included)."""
    sources(private_dir)
    b = userns_bundle(private_dir, rootfs_template, "true")
    b.config["mounts"] += [bind(private_dir / "data", "/var", "rbind"),
                           bind(private_dir / "missing", "/home/user", "rbind")]
    b.write()
    index = len(b.config["mounts"]) - 1
    p = runp("create", "-b", str(b.path), cid, check=False)
    assert p.returncode == 1
    assert p.stderr.decode() == (f"config.json: mounts[{index}]: mount {private_dir}/missing to "
                                 "/home/user: No such file or directory\n")
    assert runp.ids() == []
    assert mounts_below(private_dir) == []
    assert processes_with(cid) == []


def _procfs_root(path: str) -> bool:
    return os.stat(path).st_ino == 1 and "thread-self" in os.listdir(path)


def test_created_container_holds_no_host_fd(runp, cid, private_dir, rootfs_template):
    """Between create and start the init keeps none of the fds the helper opened (rootfs,
    its parent mount, the sources): they are closed once the mounts are made."""
    sources(private_dir)
    b = userns_bundle(private_dir, rootfs_template, "true")
    b.config["mounts"].append(bind(private_dir / "data", "/var", "rbind"))
    b.write()
    runp("create", "-b", str(b.path), cid)
    try:
        pid = runp.state(cid)["pid"]
        held = [os.readlink(f"/proc/{pid}/fd/{n}") for n in os.listdir(f"/proc/{pid}/fd")
                 if not _procfs_root(f"/proc/{pid}/fd/{n}")]  # (runtime/linux/procfs.py's)
        assert not [h for h in held if str(private_dir) in h or h == "/"], held
    finally:
        runp("delete", "--force", cid)


# --- idmapped mounts (issue #14) ----------------------------------------------------------------

def host_dir(path: Path, uid: int) -> Path:
    """A directory with a file f in it, both owned by uid:uid on the host."""
    path.mkdir()
    (path / "f").write_text("x\n")
    for p in (path, path / "f"):
        os.chown(p, uid, uid)
    return path


def idmapped_bind(source: Path, dest: str, container_id: int, host_id: int, *options: str) -> dict:
    m = bind(source, dest, *options)
    m["uidMappings"] = m["gidMappings"] = [{"containerID": container_id, "hostID": host_id,
                                           "size": 1}]
    return m


# the owner of f, a file made through the mount (reads "made"), whether the mount is idmapped
IDMAP_SCRIPT = ("stat -c %u:%g /var/f; touch /var/new 2>&1 && echo made; "
                "grep -c ' /var .*idmapped' /proc/self/mountinfo")


def check_idmapped_run(cmd: list[str], src: Path, host_owner: int) -> None:
    """Run a bundle with IDMAP_SCRIPT on an idmapped /var of `src`: its f reads as root's
    and the file made through the mount is host_owner's on the host (removed again)."""
    # stdin a pipe, not the host's /dev/null: crun 1.8.1 chowns its stdio to the container's
    # root, /dev/null included (runp and runc leave them alone)
    p = subprocess.run(cmd, capture_output=True, timeout=60, input=b"")
    assert (p.returncode, p.stdout) == (0, b"0:0\nmade\n1\n"), p.stderr
    st = (src / "new").stat()
    assert (st.st_uid, st.st_gid) == (host_owner, host_owner)
    (src / "new").unlink()


def crun_cmd(bundle: Bundle, tmp_path: Path) -> list[str]:
    """crun 1.8.1 run (and delete --force, whatever happened) on this hybrid-cgroup host: in
    a mount namespace without the cgroup2 mount, which it refuses (GUIDE.md section 5); it
    reads ociVersion 1.0.x only."""
    bundle.config["ociVersion"] = "1.0.2"
    bundle.write()
    script = ('umount -l /sys/fs/cgroup/unified 2>/dev/null; "$0" --root "$1" run -b "$2" "$3"; '
              'rc=$?; "$0" --root "$1" delete --force "$3" 2>/dev/null; exit $rc')
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, CRUN,
            str(tmp_path / "crun-root"), str(bundle.path), new_id("crun")]


@pytest.mark.parametrize("runtime", ["runp", pytest.param("crun", marks=needs_crun)])
def test_idmapped_bind(runp, cid, private_dir, open_dir, rootfs_template, tmp_path, runtime):
    """No user namespace, a mapping of its own (1000 on disk is 0 through the mount): a file
    that uid 1000 owns on the host is root's inside, and root's new file is 1000's on the
    host. crun 1.8.1 gives the same."""
    src = host_dir(private_dir / "data", 1000)
    (open_dir / "bundle").mkdir()
    b = Bundle(open_dir / "bundle", rootfs_template)
    b.config["process"]["args"] = ["sh", "-c", IDMAP_SCRIPT]
    b.config["mounts"].append(idmapped_bind(src, "/var", 1000, 0, "bind", "idmap"))
    b.write()
    cmd = runp.cmd("run", "-b", str(b.path), cid) if runtime == "runp" else crun_cmd(b, tmp_path)
    check_idmapped_run(cmd, src, 1000)


@pytest.mark.parametrize("runtime", ["runp", pytest.param("crun", marks=needs_crun)])
def test_idmapped_bind_takes_the_containers_mapping(runp, cid, private_dir, open_dir,
                                                    rootfs_template, tmp_path, runtime):
    """A user namespace (0 is 100000) and "idmap" without mappings of its own: the mount takes
    the container's, so host root's files are the container root's (65534, unmapped,
    without the idmap) and what it makes is host root's. For runp the source lies below a
    0700 directory: the helper with the host's credentials makes the idmapped copy. crun
    agrees (given a source it can reach from the user namespace)."""
    src = host_dir(private_dir / "data", 0)
    b = userns_bundle(open_dir, rootfs_template, "sh", "-c", IDMAP_SCRIPT)
    b.config["mounts"].append(bind(src, "/var", "bind", "idmap"))
    b.write()
    if runtime == "runp":
        cmd = runp.cmd("run", "-b", str(b.path), cid)
    else:
        private_dir.chmod(0o755)
        cmd = crun_cmd(b, tmp_path)
    check_idmapped_run(cmd, src, 0)


def test_idmapped_bind_own_mapping_in_userns(runp, cid, private_dir, rootfs_template):
    """A user namespace and a mapping of the mount's own: 1000 on disk is 100000 through the
    mount, the container's root."""
    src = host_dir(private_dir / "data", 1000)
    b = userns_bundle(private_dir, rootfs_template, "sh", "-c", IDMAP_SCRIPT)
    b.config["mounts"].append(idmapped_bind(src, "/var", 1000, 100000, "rbind", "idmap"))
    b.write()
    assert runp("run", "-b", str(b.path), cid).stdout == b"0:0\nmade\n1\n"
    assert (src / "new").stat().st_uid == 1000


def test_ridmap_maps_the_mounts_below(runp, cid, private_dir, rootfs_template):
    """rbind with "ridmap" maps the mounts below the source too; with "idmap" only the top
    one (AT_RECURSIVE or not for mount_setattr). Read-only stays read-only."""
    src = host_dir(private_dir / "data", 1000)
    (src / "sub").mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,uid=1000,gid=1000", "sub",
                    str(src / "sub")], check=True)
    try:
        (private_dir / "bundle").mkdir()
        b = Bundle(private_dir / "bundle", rootfs_template)
        b.config["process"]["args"] = ["sh", "-c", "stat -c %u /var/sub /home/user/sub; "
                                       "touch /home/user/x 2>&1 || true"]
        b.config["mounts"] += [idmapped_bind(src, "/var", 1000, 0, "rbind", "ridmap"),
                               idmapped_bind(src, "/home/user", 1000, 0, "rbind", "idmap", "ro")]
        b.write()
        out = runp("run", "-b", str(b.path), cid).stdout.decode()
        assert out == "0\n1000\ntouch: /home/user/x: Read-only file system\n"
    finally:
        subprocess.run(["umount", str(src / "sub")], check=True)


IDMAP_ERRORS = {  # mount -> the error after "config.json: mounts[N]: "
    "tmpfs": ({"destination": "/var", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]},
              "idmapped mounts are only supported for bind mounts"),
    "sysfs": (idmapped_bind(Path("/sys/kernel"), "/var", 0, 1000, "rbind", "idmap"),
              "mount /sys/kernel to /var: idmapped mount: the filesystem does not support it "
              "(mount_setattr: Invalid argument)"),
    "one mapping": ({**bind(Path("/tmp"), "/var", "bind", "idmap"),
                     "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]},
                    "uidMappings and gidMappings must be given together"),
    "no mapping": (bind(Path("/tmp"), "/var", "bind", "ridmap"),
                   "an idmapped mount without uidMappings and gidMappings takes the "
                   "container's, but it has no user namespace"),
}


@pytest.mark.parametrize("case,userns", [(c, u) for c in IDMAP_ERRORS for u in (False, True)
                                          if not (c == "no mapping" and u)])  # (fine in a userns)
def test_idmapped_mount_errors(runp, cid, private_dir, rootfs_template, case, userns):
    """An idmap that cannot be: one line naming the mount, exit 1, nothing left behind."""
    mount, error = IDMAP_ERRORS[case]
    if userns:
        b = userns_bundle(private_dir, rootfs_template, "true")
    else:
        (private_dir / "bundle").mkdir()
        b = Bundle(private_dir / "bundle", rootfs_template)
    b.config["mounts"].append(mount)
    b.write()
    p = runp("create", "-b", str(b.path), cid, check=False)
    assert (p.returncode, p.stderr.decode()) == (
        1, f"config.json: mounts[{len(b.config['mounts']) - 1}]: {error}\n")
    assert runp.ids() == []
    assert mounts_below(private_dir) == []
    assert processes_with(cid) == []
