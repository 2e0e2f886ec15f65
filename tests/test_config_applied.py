"""Each part of config.json is applied: namespaces, id maps, mounts, devices, process fields."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import host_mounts, make_traversable, new_id


def run_out(runp, bundle, cid, *args: str) -> str:
    bundle.set_args(*args)
    p = runp("run", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 0, p.stderr.decode()
    return p.stdout.decode()


def ns_inode(pid: int | str, name: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{name}")


# --- namespaces ------------------------------------------------------------------------------

def test_new_namespaces(runp, bundle, cid):
    lx = bundle.config["linux"]
    lx["namespaces"] += [{"type": t} for t in ("time", "cgroup")  # (spec has cgroup on pure v2)
                         if not any(ns["type"] == t for ns in lx["namespaces"])]
    bundle.set_args("sleep", "100")
    runp("run", "-d", "-b", str(bundle.path), cid)
    pid = runp.state(cid)["pid"]
    for name in ("pid", "net", "ipc", "uts", "mnt", "cgroup", "time"):
        assert ns_inode(pid, name) != ns_inode("self", name), name
    for name in ("user",):
        assert ns_inode(pid, name) == ns_inode("self", name), name
    runp("delete", "-f", cid)


def test_join_namespace_by_path(runp, make_bundle):
    a, b = make_bundle(), make_bundle()
    a.set_args("sleep", "100")
    ida, idb = new_id(), new_id()
    runp("run", "-d", "-b", str(a.path), ida)
    pid = runp.state(ida)["pid"]
    lx = b.config["linux"]
    lx["namespaces"] = [ns for ns in lx["namespaces"] if ns["type"] not in ("network", "uts")]
    lx["namespaces"] += [{"type": "network", "path": f"/proc/{pid}/ns/net"},
                         {"type": "uts", "path": f"/proc/{pid}/ns/uts"}]
    b.config.pop("hostname")
    b.set_args("sleep", "100")
    runp("run", "-d", "-b", str(b.path), idb)
    pidb = runp.state(idb)["pid"]
    assert ns_inode(pidb, "net") == ns_inode(pid, "net")
    assert ns_inode(pidb, "uts") == ns_inode(pid, "uts")
    assert ns_inode(pidb, "mnt") != ns_inode(pid, "mnt")
    runp("delete", "-f", idb)
    runp("delete", "-f", ida)


def test_join_bad_namespace_path(runp, bundle, cid):
    lx = bundle.config["linux"]
    lx["namespaces"] = [ns for ns in lx["namespaces"] if ns["type"] != "network"]
    lx["namespaces"].append({"type": "network", "path": "/proc/self/ns/pid"})
    bundle.write()
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert b"linux.namespaces[" in p.stderr
    assert not (runp.root / cid).exists()


def test_user_namespace_maps(runp, bundle, cid):
    make_traversable(bundle.rootfs)
    lx = bundle.config["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 1000}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 1000}]
    out = run_out(runp, bundle, cid, "sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u")
    lines = [line.split() for line in out.splitlines()]
    assert lines[0] == ["0", "200000", "1000"]
    assert lines[1] == ["0", "300000", "1000"]
    assert lines[2] == ["0"]


def test_user_namespace_files_owned_by_mapped_root(runp, bundle, cid, tmp_path):
    host = tmp_path / "shared"
    host.mkdir()
    os.chown(host, 200000, 300000)
    make_traversable(bundle.rootfs)
    make_traversable(host)
    (bundle.rootfs / "host").mkdir()  # the rootfs belongs to host root: mapped root cannot mkdir
    lx = bundle.config["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    bundle.config["mounts"].append({"destination": "/host", "type": "bind", "source": str(host),
                                    "options": ["rbind"]})
    run_out(runp, bundle, cid, "touch", "/host/made-inside")
    st = (host / "made-inside").stat()
    assert (st.st_uid, st.st_gid) == (200000, 300000)


def test_time_namespace_offsets(runp, bundle, cid):
    lx = bundle.config["linux"]
    lx["namespaces"].append({"type": "time"})
    lx["timeOffsets"] = {"monotonic": {"secs": 86400 * 400, "nanosecs": 0},
                         "boottime": {"secs": 86400 * 500, "nanosecs": 0}}
    out = run_out(runp, bundle, cid, "cat", "/proc/uptime")
    up = float(out.split()[0])
    assert up > 86400 * 500 - 10


def test_network_namespace_loopback_up(runp, bundle, cid):
    out = run_out(runp, bundle, cid, "cat", "/sys/class/net/lo/operstate", "/sys/class/net/lo/flags")
    flags = int(out.split()[1], 16)
    assert flags & 1, out


def test_hostname_domainname(runp, bundle, cid):
    bundle.config["hostname"] = "box-1"
    bundle.config["domainname"] = "example.org"
    out = run_out(runp, bundle, cid, "sh", "-c", "hostname; cat /proc/sys/kernel/domainname")
    assert out.split() == ["box-1", "example.org"]


def test_sysctl(runp, bundle, cid):
    bundle.config["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "123456789"}
    out = run_out(runp, bundle, cid, "cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/shmmax")
    assert out.split() == ["1", "123456789"]
    assert Path("/proc/sys/kernel/shmmax").read_text().strip() != "123456789"


# --- rootfs and mounts ---------------------------------------------------------------------------

def test_readonly_root(runp, bundle, cid):
    bundle.config["root"]["readonly"] = True
    bundle.write()
    out = run_out(runp, bundle, cid, "sh", "-c", "touch /x 2>&1; touch /tmp/y 2>&1; echo done")
    assert "Read-only file system" in out


def test_mount_options(runp, bundle, cid, tmp_path):
    host = tmp_path / "src"
    host.mkdir()
    (host / "f").write_text("content")
    m = bundle.config["mounts"]
    m.append({"destination": "/ro", "type": "bind", "source": str(host), "options": ["bind", "ro"]})
    m.append({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
              "options": ["size=1m", "mode=700", "noexec", "nosuid", "nodev"]})
    m.append({"destination": "/a/b/c/deep", "type": "tmpfs", "source": "tmpfs"})
    m.append({"destination": "/file", "type": "bind", "source": str(host / "f"), "options": ["rbind", "ro"]})
    out = run_out(runp, bundle, cid, "sh", "-c",
                  "cat /ro/f; echo; touch /ro/x 2>&1; grep -E ' /(ro|t|a/b/c/deep|file) ' /proc/self/mounts;"
                  " stat -c %a /t; cat /file")
    assert out.startswith("content\n")
    assert "Read-only file system" in out
    lines = {line.split()[1]: line.split()[3].split(",") for line in out.splitlines() if line.startswith(("/", "tmpfs"))
             and len(line.split()) > 3}
    assert "ro" in lines["/ro"]
    assert {"nosuid", "nodev", "noexec"} <= set(lines["/t"])
    assert "size=1024k" in lines["/t"]
    assert "/a/b/c/deep" in lines
    assert "ro" in lines["/file"]
    assert "700" in out.split() and out.endswith("content")


def test_recursive_readonly(runp, bundle, cid, tmp_path):
    src = tmp_path / "tree"
    (src / "sub").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(src / "sub")], check=True)
    try:
        bundle.config["mounts"].append({"destination": "/tree", "type": "bind", "source": str(src),
                                        "options": ["rbind", "rro"]})
        out = run_out(runp, bundle, cid, "sh", "-c", "touch /tree/sub/x 2>&1; echo end")
        assert "Read-only file system" in out
    finally:
        subprocess.run(["umount", str(src / "sub")], check=True)


def test_rootfs_propagation_private_does_not_leak(runp, bundle, cid):
    before = host_mounts(bundle.path)
    bundle.config["linux"]["rootfsPropagation"] = "private"
    run_out(runp, bundle, cid, "true")
    assert host_mounts(bundle.path) == before


def test_no_pivot(runp, bundle, cid):
    bundle.set_args("sh", "-c", "ls /; cat /proc/self/mountinfo | head -1")
    p = runp("run", "--no-pivot", "-b", str(bundle.path), cid)
    assert "bin" in p.stdout.decode().split()


def test_devices(runp, bundle, cid):
    bundle.config["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 0, "gid": 5},
        {"path": "/dev/sub/dir/loopx", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600},
        {"path": "/dev/myfifo", "type": "p"},
    ]
    bundle.config["linux"]["resources"]["devices"] = [{"allow": True, "access": "rwm"}]
    out = run_out(runp, bundle, cid, "sh", "-c",
                  "stat -c '%n %F %t:%T %a %u:%g' /dev/fuse /dev/sub/dir/loopx /dev/myfifo /dev/null")
    lines = out.splitlines()
    assert lines[0] == "/dev/fuse character special file a:e5 640 0:5"
    assert lines[1] == "/dev/sub/dir/loopx block special file 7:c8 600 0:0"
    assert lines[2].startswith("/dev/myfifo fifo")
    assert lines[3].startswith("/dev/null character special file 1:3 666")


@pytest.mark.parametrize("path", ["/dev/foo/", "/dev//foo", "/dev/sub/../foo", "//dev/foo"])
def test_device_path_is_cleaned_as_runc(runp, bundle, cid, tmp_path, path):
    """A linux.devices path is cleaned lexically, as runc's securejoin does: a trailing
    slash, a doubled one or a ".." is no error, and the node lands at /dev/foo (no /dev/sub)."""
    bundle.config["linux"]["devices"] = [{"path": path, "type": "c", "major": 1, "minor": 5,
                                          "fileMode": 0o640, "uid": 7, "gid": 8}]
    check = "stat -c '%n %F %t:%T %a %u:%g' /dev/foo; ls /dev"
    out = run_out(runp, bundle, cid, "sh", "-c", check)
    assert out.splitlines()[0] == "/dev/foo character special file 1:5 640 7:8", out
    assert "sub" not in out.split()
    runc = shutil.which("runc")
    if runc:
        p = subprocess.run([runc, "--root", str(tmp_path / "runc-root"), "run", "-b",
                            str(bundle.path), new_id()], capture_output=True, timeout=60)
        assert (p.returncode, p.stdout.decode()) == (0, out)


def test_default_dev_symlinks(runp, bundle, cid):
    out = run_out(runp, bundle, cid, "sh", "-c",
                  "for f in fd stdin stdout stderr ptmx; do echo $f $(readlink /dev/$f); done")
    assert out.splitlines() == ["fd /proc/self/fd", "stdin /proc/self/fd/0", "stdout /proc/self/fd/1",
                                "stderr /proc/self/fd/2", "ptmx pts/ptmx"]


# --- the process ---------------------------------------------------------------------------------

def test_user_groups_umask(runp, bundle, cid):
    u = bundle.config["process"]["user"]
    u.update(uid=1000, gid=1000, additionalGids=[5, 65534], umask=0o027)
    out = run_out(runp, bundle, cid, "sh", "-c", "id -u; id -g; id -G; umask; echo $HOME")
    lines = out.split("\n")
    assert lines[0] == "1000" and lines[1] == "1000"
    assert set(lines[2].split()) == {"1000", "5", "65534"}
    assert lines[3] == "0027"
    assert lines[4] == "/home/user"


def test_cwd_and_env(runp, bundle, cid):
    p = bundle.config["process"]
    p["cwd"] = "/work/dir"  # does not exist: created, as runc does
    p["env"] = ["PATH=/bin", "A=1", "B=two words", "HOME=/custom"]
    out = run_out(runp, bundle, cid, "sh", "-c", "pwd; echo $A; echo $B; echo $HOME; env | wc -l")
    assert out.splitlines()[:4] == ["/work/dir", "1", "two words", "/custom"]


def test_rlimits(runp, bundle, cid):
    bundle.config["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200},
    ]
    out = run_out(runp, bundle, cid, "sh", "-c", "ulimit -n; ulimit -Hn; ulimit -c; ulimit -u")
    assert out.split() == ["512", "1024", "0", "100"]


def test_rlimit_that_cannot_be_raised_fails_create(runp, bundle, cid):
    """Raising a hard limit needs CAP_SYS_RESOURCE: create fails, not the started process."""
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard == resource.RLIM_INFINITY:
        pytest.skip("no finite hard limit to exceed")
    bundle.config["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]
    bundle.write()
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    if p.returncode == 0:
        runp("delete", "-f", cid)
        pytest.skip("this host lets root raise hard limits")
    assert b"process.rlimits" in p.stderr
    assert not (runp.root / cid).exists()


def test_oom_score_adj(runp, bundle, cid):
    bundle.config["process"]["oomScoreAdj"] = 500
    out = run_out(runp, bundle, cid, "cat", "/proc/self/oom_score_adj")
    assert out.strip() == "500"


def test_relative_args_and_path_lookup(runp, bundle, cid):
    bundle.config["process"]["env"] = ["PATH=/nowhere:/bin"]
    out = run_out(runp, bundle, cid, "echo", "found")
    assert out == "found\n"


def test_init_process_name_and_parent(runp, bundle, cid):
    """While it waits for start, the init is pid 1 of its pid namespace and runs no user code."""
    bundle.set_args("sleep", "100")
    runp("create", "-b", str(bundle.path), cid)
    pid = runp.state(cid)["pid"]
    status = Path(f"/proc/{pid}/status").read_text()
    nspid = [line for line in status.splitlines() if line.startswith("NSpid:")][0].split()
    assert nspid[-1] == "1"
    time.sleep(0.1)
    runp("delete", "-f", cid)
