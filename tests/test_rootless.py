"""Rootless runp (issue 14): run by an ordinary user (the `rootless_user` fixture: a throw-away
user with a subuid/subgid range) and as root of a user namespace, side by side with runc 1.1.5
where it behaves as runc does.

What a non-root caller gets: the state root in $XDG_RUNTIME_DIR/runp; its own uid/gid mapped
directly (setgroups denied first), more through newuidmap/newgidmap; no cgroup where its cgroup is
not delegated (and an error naming the field when a limit needs one), a cgroup where it is;
devices bound; /sys bound when sysfs cannot be mounted; a one-line error naming the field for what
it may not raise. Cgroup ownership (v2 only) is tested as root; the v2 case runs in the v2 VM
(tests/test_v2_host.py). Rootless podman is in tests/integration/test_podman_rootless.py.
"""
from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from conftest import TOP, containers_in, make_traversable, new_id
from test_lifecycle import wait_for

RUNC = shutil.which("runc") or "/usr/sbin/runc"


def _mode() -> str:
    from runtime.linux import cgroups
    return cgroups.detect()


# --- a bundle of the user's own, from `runp spec --rootless` ---------------------------------------

class UserBundle:
    """A bundle in the user's home, owned by it, its config.json written by `runp spec --rootless`
    run as the user; write() saves changes (as the user's file)."""

    def __init__(self, user, template: Path) -> None:
        self.user = user
        self.path = user.home / f"bundle-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        shutil.copytree(template, self.path / "rootfs", symlinks=True)
        for p in [self.path, *self.path.rglob("*")]:
            os.lchown(p, user.uid, user.gid)
        p = user.runp_cmd("spec", "--rootless", cwd=str(self.path))
        assert p.returncode == 0, p.stderr
        self.config = json.loads((self.path / "config.json").read_text())
        self.config["process"]["terminal"] = False

    def write(self, *args: str) -> "UserBundle":
        if args:
            self.config["process"]["args"] = list(args)
        (self.path / "config.json").write_text(json.dumps(self.config))
        os.chown(self.path / "config.json", self.user.uid, self.user.gid)
        return self

    def remove(self) -> None:
        shutil.rmtree(self.path)


@pytest.fixture
def ubundle(rootless_user, rootfs_template):
    b = UserBundle(rootless_user, rootfs_template)
    yield b
    for rt in (rootless_user.runp, RUNC):  # no container may survive a test, pass or fail
        left = rootless_user.run([rt, "list", "-q"]).stdout.split()
        for c in left:
            rootless_user.run([rt, "delete", "--force", c])
        assert not left, f"{rt} containers left: {left}"
    b.remove()


def run_both(user, b: UserBundle, *args: str, runtimes=("runp", "runc")) -> dict:
    """`run ID` of the bundle as the user, with runp and (for comparison) runc, each with its
    default root; {runtime: CompletedProcess}."""
    out = {}
    for rt in runtimes:
        binary = user.runp if rt == "runp" else RUNC
        if rt == "runc" and not os.access(RUNC, os.X_OK):
            continue
        out[rt] = user.run([binary, *args, "run", new_id("rl")], cwd=str(b.path))
    return out


def one_line_error(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    return lines[0]


# --- as an ordinary user --------------------------------------------------------------------------

def test_spec_rootless_bundle_runs_as_user(rootless_user, ubundle):
    """The acceptance case: `runp spec --rootless`, then `runp run` as a non-root user; the
    state goes to $XDG_RUNTIME_DIR/runp (0700, sticky, as runc's), nothing stays there."""
    ubundle.write("sh", "-c", "id; cat /proc/self/setgroups; echo x > /dev/null && echo null-ok")
    res = run_both(rootless_user, ubundle)
    for rt, p in res.items():
        assert p.returncode == 0, (rt, p.stderr)
        # (no groups=: the user was started without supplementary groups, and with setgroups
        # denied the container keeps the caller's)
        assert p.stdout == "uid=0(root) gid=0(root)\ndeny\nnull-ok\n", (rt, p.stdout)
    root = rootless_user.runtime_dir / "runp"
    st = root.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (rootless_user.uid, 0o1700)
    assert containers_in(root) == []


def test_lifecycle_as_user(rootless_user, ubundle):
    """create/start/state/exec/ps/kill/delete as the user, in a container without a cgroup
    (the user's is not delegated): kill --all and ps fall back to the init; pause says why not."""
    ubundle.write("sleep", "1000")
    cid, u = new_id("rl"), rootless_user
    p = u.runp_cmd("run", "--detach", cid, cwd=str(ubundle.path))
    assert p.returncode == 0, p.stderr
    state = json.loads(u.runp_cmd("state", cid).stdout)
    assert state["status"] == "running"
    saved = json.loads((u.runtime_dir / "runp" / cid / "state.json").read_text())
    assert saved["runp"]["cgroup"] == {}
    p = u.runp_cmd("exec", cid, "sh", "-c", "id -u; ls -l /dev/null")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[0] == "0"
    assert p.stdout.splitlines()[1].startswith("crw-rw-rw-")  # the host's node, bound
    assert str(state["pid"]) in u.runp_cmd("ps", cid).stdout
    err = one_line_error(u.runp_cmd("pause", cid))
    assert err == f"runp: cannot pause container {cid}: it has no cgroup (rootless, and the " \
                  "caller's cgroup is not delegated)"
    assert u.runp_cmd("kill", "--all", cid, "KILL").returncode == 0
    assert u.runp_cmd("delete", "--force", cid).returncode == 0
    assert u.runp_cmd("list", "-q").stdout == ""


def test_subuid_ranges_through_newuidmap(rootless_user, ubundle):
    """More than its own id: newuidmap/newgidmap write the maps from /etc/subuid and /etc/subgid
    (setgroups stays allowed), as runc does; root (0) inside is the user, 1.. its range."""
    u = rootless_user
    lx = ubundle.config["linux"]
    lx["uidMappings"] = [{"containerID": 0, "hostID": u.uid, "size": 1},
                         {"containerID": 1, "hostID": u.subuid[0], "size": u.subuid[1]}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": u.gid, "size": 1},
                         {"containerID": 1, "hostID": u.subgid[0], "size": u.subgid[1]}]
    ubundle.write("sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups")
    res = run_both(u, ubundle)
    want = [["0", str(u.uid), "1"], ["1", str(u.subuid[0]), str(u.subuid[1])],
            ["0", str(u.gid), "1"], ["1", str(u.subgid[0]), str(u.subgid[1])], ["allow"]]
    for rt, p in res.items():
        assert p.returncode == 0, (rt, p.stderr)
        assert [line.split() for line in p.stdout.splitlines()] == want, (rt, p.stdout)


def test_unmappable_ids_are_a_one_line_error(rootless_user, ubundle):
    """Host ids the user was not given (here: root's) fail with newuidmap's reason, naming the
    field, and leave nothing behind."""
    lx = ubundle.config["linux"]
    lx["uidMappings"] = [{"containerID": 0, "hostID": 0, "size": 1}]
    ubundle.write("true")
    err = one_line_error(rootless_user.runp_cmd("run", new_id("rl"), cwd=str(ubundle.path)))
    # (bookworm's newuidmap: "uid range [0-1) -> [0-1) not allowed")
    assert err.startswith("config.json: linux.uidMappings: newuidmap: ") and \
        err.count("newuidmap") == 1, err
    assert containers_in(rootless_user.runtime_dir / "runp") == []


def _no_userns(c: dict, u) -> None:
    lx = c["linux"]
    lx["namespaces"] = [ns for ns in lx["namespaces"] if ns["type"] != "user"]
    del lx["uidMappings"], lx["gidMappings"]


@pytest.mark.parametrize("what,change,field", [
    ("no user namespace", _no_userns, "linux.namespaces: a rootless container needs a user namespace"),
    ("pids limit", lambda c, u: c["linux"].setdefault("resources", {}).update(pids={"limit": 50}),
     "linux.resources.pids.limit: rootless: cannot create cgroup "),
    ("memory limit", lambda c, u: c["linux"].setdefault("resources", {}).update(
        memory={"limit": 64 << 20}), "linux.resources.memory.limit: rootless: cannot create cgroup "),
    ("rlimit above the hard limit", lambda c, u: c["process"].update(rlimits=[
        {"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 1024},
        {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 1 << 40}]), "process.rlimits[1]: cannot set "
                                                                     "RLIMIT_NPROC to 1000:1099511627776"),
    ("lower oomScoreAdj", lambda c, u: c["process"].update(oomScoreAdj=-500),
     "process.oomScoreAdj: write /proc/self/oom_score_adj: cannot set -500"),
])
def test_what_needs_root_is_a_one_line_error(rootless_user, ubundle, what, change, field):
    """Limits that need a cgroup the user may not make, or privileges it lacks: one line naming
    the field, exit status 1, nothing left (state dir, process)."""
    change(ubundle.config, rootless_user)
    ubundle.write("true")
    err = one_line_error(rootless_user.runp_cmd("run", new_id("rl"), cwd=str(ubundle.path)))
    assert err.startswith(f"config.json: {field}"), err
    assert containers_in(rootless_user.runtime_dir / "runp") == []
    assert not [p for p in rootless_user.processes() if _is_runp(p)]


def _is_runp(pid: int) -> bool:
    try:
        return b"runp" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_sysfs_bound_when_it_cannot_be_mounted(rootless_user, ubundle):
    """A fresh sysfs needs a network namespace of our own: without one runp binds the host's
    /sys, read-only down to every submount (runc 1.1.5 fails: "operation not permitted")."""
    cfg = ubundle.config
    sys_mount = next(m for m in cfg["mounts"] if m["destination"] == "/sys")
    sys_mount.update(type="sysfs", source="sysfs", options=["nosuid", "noexec", "nodev", "ro"])
    ubundle.write("sh", "-c", "grep -c ' /sys' /proc/self/mounts; "
                              "awk '$2 ~ /^\\/sys/ && $4 !~ /^ro/' /proc/self/mounts; "
                              "ls /sys/kernel >/dev/null && echo sys-ok")
    res = run_both(rootless_user, ubundle)
    p = res["runp"]
    assert p.returncode == 0, p.stderr
    count, *rw, last = p.stdout.splitlines()
    assert int(count) >= 1 and rw == [] and last == "sys-ok", p.stdout
    if "runc" in res:
        assert res["runc"].returncode != 0 and "operation not permitted" in res["runc"].stderr


def test_without_cgroup_or_cgroupns(rootless_user, ubundle):
    """No cgroup of its own and the caller's cgroup namespace: nothing to show at /sys/fs/cgroup
    (v1: an empty tmpfs; pure v2, where cgroup2 cannot be mounted there: an empty read-only one)."""
    lx = ubundle.config["linux"]
    lx["namespaces"] = [ns for ns in lx["namespaces"] if ns["type"] != "cgroup"]
    ubundle.write("sh", "-c", "ls -A /sys/fs/cgroup | wc -l; touch /sys/fs/cgroup/x || echo ro")
    p = rootless_user.runp_cmd("run", new_id("rl"), cwd=str(ubundle.path))
    assert p.returncode == 0, p.stderr
    assert p.stdout.split("\n")[0].strip() == "0" and p.stdout.rstrip().endswith("ro"), p.stdout


def test_rootless_flag(rootless_user, ubundle, runp, bundle, cid):
    """--rootless true|false|auto: false makes a non-root caller's cgroup errors fatal again
    (as runc's), a wrong value is a usage error; as root, true lets a limit-free container do
    without a cgroup it cannot make (here: none, so nothing changes)."""
    ubundle.write("true")
    u = rootless_user
    err = one_line_error(u.runp_cmd("--rootless", "maybe", "run", new_id("rl"), cwd=str(ubundle.path)))
    assert err == 'runp: invalid value "maybe" for flag --rootless: want true, false or auto'
    p = u.runp_cmd("--rootless", "false", "run", new_id("rl"), cwd=str(ubundle.path))
    assert p.returncode == 1 and "cannot create cgroup" in p.stderr and "Permission denied" in p.stderr
    runc = u.run([RUNC, "--rootless", "false", "run", new_id("rl")], cwd=str(ubundle.path))
    assert runc.returncode != 0
    assert u.runp_cmd("--rootless", "auto", "run", new_id("rl"), cwd=str(ubundle.path)).returncode == 0
    bundle.set_args("true")
    assert runp("--rootless", "true", "run", "-b", str(bundle.path), cid).returncode == 0


# --- a delegated cgroup ---------------------------------------------------------------------------

@pytest.fixture
def delegated(rootless_user):
    """A cgroup given to the user, as a systemd user instance gets one: v1 pids (this host's
    hybrid layout) or cgroup2 (with pids enabled below it), directory and cgroup.procs chowned.
    The user's commands start in <it>/leaf (v2: the container's cgroup goes beside the caller's
    own one, v1: below it). Yields (cgroup dirs to start in, the pids directory)."""
    name = f"runp-deleg-{uuid.uuid4().hex[:8]}"
    mode = _mode()
    if mode == "v2":
        base = Path("/sys/fs/cgroup") / name
        roots = [base]
    else:
        from runtime.linux.cgroups import common
        pids_mnt = next((m for m, _, ctrls in common.v1_mounts() if "pids" in ctrls), None)
        if pids_mnt is None:
            pytest.skip("no v1 pids hierarchy")
        base = Path(pids_mnt) / name
        roots = [base] + ([Path(common.UNIFIED_HYBRID) / name] if mode == "hybrid" else [])
    made = []
    try:
        for r in roots:
            (r / "leaf").mkdir(parents=True)
            made += [r / "leaf", r]
            for p in (r, r / "cgroup.procs", r / "leaf", r / "leaf" / "cgroup.procs"):
                os.chown(p, rootless_user.uid, rootless_user.gid)
            if r.parent == Path("/sys/fs/cgroup") and mode == "v2":
                (r / "cgroup.subtree_control").write_text("+pids")
                os.chown(r / "cgroup.subtree_control", rootless_user.uid, rootless_user.gid)
        yield [str(r / "leaf") for r in roots], base
    finally:
        for d in made:  # leaf first; the user's processes are gone (each test waits for them)
            try:
                os.rmdir(d)
            except OSError as e:
                pytest.fail(f"cannot remove {d}: {e}")


def test_delegated_cgroup_is_used(rootless_user, ubundle, delegated):
    """Where the caller's cgroup is delegated to it the container gets a cgroup there, with the
    limits asked for; a limit for a controller that is not delegated names its field."""
    starts, base = delegated
    u = rootless_user
    ubundle.config["linux"]["resources"] = {"pids": {"limit": 20}}
    ubundle.write("sleep", "1000")
    cid = new_id("rl")
    p = u.runp_cmd("run", "--detach", cid, cwd=str(ubundle.path), cgroups=tuple(starts))
    assert p.returncode == 0, p.stderr
    d = base / cid if _mode() == "v2" else base / "leaf" / cid  # v1: below the caller's cgroup
    try:
        assert (d / "pids.max").read_text().strip() == "20"
        pid = json.loads(u.runp_cmd("state", cid).stdout)["pid"]
        assert str(pid) in (d / "cgroup.procs").read_text().split()
    finally:
        assert u.runp_cmd("delete", "--force", cid).returncode == 0
    assert not d.exists()
    if _mode() != "v2":  # v1: memory is not delegated
        ubundle.config["linux"]["resources"] = {"pids": {"limit": 20}, "memory": {"limit": 64 << 20}}
        ubundle.write("true")
        err = one_line_error(u.runp_cmd("run", new_id("rl"), cwd=str(ubundle.path),
                                        cgroups=tuple(starts)))
        assert err.startswith("config.json: linux.resources.memory.limit: rootless: cannot create "
                              "cgroup "), err
    assert [e.name for e in os.scandir(base) if e.is_dir()] == ["leaf"]
    assert [e.name for e in os.scandir(base / "leaf") if e.is_dir()] == []


# --- as root of a user namespace (rootless podman's situation) -----------------------------------

def _default_root(env: dict, userns: bool) -> str:
    code = (f"import sys; sys.path.insert(0, {str(TOP)!r}); "
            "from runtime.rootless import default_root; print(*default_root())")
    argv = [sys.executable, "-c", code]
    if userns:
        argv = ["unshare", "--user", "--map-root-user", *argv]
    p = subprocess.run(argv, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_default_root_as_runc_decides():
    """runc's rule (shouldHonorXDGRuntimeDir): the host's root keeps /run/runp even with
    XDG_RUNTIME_DIR set (root's login sessions have /run/user/0); root of a user namespace
    uses $XDG_RUNTIME_DIR/runp unless USER is root; no XDG_RUNTIME_DIR: /run/runp."""
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    assert _default_root({**base, "XDG_RUNTIME_DIR": "/run/user/0"}, False) == "/run/runp False"
    assert _default_root({**base, "XDG_RUNTIME_DIR": "/tmp/x"}, True) == "/tmp/x/runp True"
    assert _default_root({**base, "XDG_RUNTIME_DIR": "/tmp/x", "USER": "root"}, True) == \
        "/run/runp False"
    assert _default_root(base, True) == "/run/runp False"


# --- cgroup ownership (runtime-spec "Cgroup ownership"; runc 1.2) ---------------------------------

def _ownership_bundle(bundle, writable: bool):
    make_traversable(bundle.rootfs)
    cfg = bundle.config
    lx = cfg["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    if not any(ns["type"] == "cgroup" for ns in lx["namespaces"]):  # (runp spec: v2 only)
        lx["namespaces"].append({"type": "cgroup"})
    m = next(m for m in cfg["mounts"] if m["destination"] == "/sys/fs/cgroup")
    m["options"] = [o for o in m["options"] if o != "ro"] + ([] if writable else ["ro"])
    cfg["process"]["user"] = {"uid": 1000, "gid": 1000}
    return bundle


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_cgroup_given_to_the_container_on_v2(runp, bundle, cid):
    """cgroup v2, a new cgroup and user namespace, a read-write /sys/fs/cgroup: the container's
    cgroup and the files of /sys/kernel/cgroup/delegate belong to the host uid of
    process.user.uid (1000 -> 201000), so the container manages its own subtree; the other
    files stay root's. On v1 (hybrid included) the spec says not to (see the test below)."""
    if _mode() != "v2":
        pytest.skip("cgroup v2 only (runs in the v2 VM: tests/test_v2_host.py)")
    _ownership_bundle(bundle, writable=True)
    bundle.set_args("sh", "-c", "mkdir /sys/fs/cgroup/sub && echo made; sleep 1000")
    runp("run", "--detach", "-b", str(bundle.path), cid)
    try:
        from runtime.linux import cgroups
        d = Path(cgroups.Manager.from_dict(
            json.loads((runp.root / cid / "state.json").read_text())["runp"]["cgroup"]).unified)
        try:
            delegate = Path("/sys/kernel/cgroup/delegate").read_text().split()
        except OSError:
            delegate = ["cgroup.procs", "cgroup.subtree_control", "cgroup.threads"]
        assert d.stat().st_uid == 201000
        for name in delegate:
            if (d / name).exists():
                assert (d / name).stat().st_uid == 201000, name
        assert (d / "cgroup.freeze").stat().st_uid == 0
        wait_for(lambda: (d / "sub").is_dir(), what="the container to make a sub-cgroup")
    finally:
        runp("delete", "--force", cid)


@pytest.mark.parametrize("writable", [True, False])
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_cgroup_stays_roots_otherwise(runp, bundle, cid, writable):
    """Not on a host using v1 (hybrid here), and never with a read-only cgroup mount."""
    if _mode() == "v2" and writable:
        pytest.skip("on v2 a writable mount gives the cgroup away (the test above)")
    _ownership_bundle(bundle, writable=writable)
    bundle.set_args("sleep", "1000")
    runp("run", "--detach", "-b", str(bundle.path), cid)
    try:
        cg = json.loads((runp.root / cid / "state.json").read_text())["runp"]["cgroup"]
        dirs = [d for d in [*cg["paths"].values(), cg.get("unified")] if d]
        assert dirs and all(Path(d).stat().st_uid == 0 for d in dirs)
        assert all(Path(d, "cgroup.procs").stat().st_uid == 0 for d in dirs)
    finally:
        runp("delete", "--force", cid)
