"""runtime-spec 1.3 fields runp used to read without applying: linux.memoryPolicy,
process.execCPUAffinity, process.scheduler/ioPriority and linux.personality for `runp exec`,
linux.netDevices and linux.intelRdt. Each is observed from inside a real container, or refused
with its JSON path (exit 1, nothing left behind)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import new_id

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _run(runp, bundle, cid, *args, check=True):
    bundle.set_args(*args)
    return runp("run", "--bundle", str(bundle.path), cid, check=check)


def _created_and_exec(runp, bundle, cid, *args, process=None, check=True):
    """Create a container that sleeps, exec `args` in it (or the --process document)."""
    bundle.set_args("sleep", "1000")
    runp("create", "--bundle", str(bundle.path), cid)
    runp("start", cid)
    if process is not None:
        pf = bundle.path / "process.json"
        pf.write_text(json.dumps(process))
        return runp("exec", "--process", str(pf), cid, check=check)
    return runp("exec", cid, *args, check=check)


def _error_line(p) -> str:
    lines = p.stderr.decode().strip().splitlines()
    assert lines, p
    return lines[-1]


def _assert_nothing_left(runp, cid):
    assert cid not in runp.ids()
    assert not (runp.root / cid).exists()


# --- linux.memoryPolicy --------------------------------------------------------------------------

def test_memory_policy_applied_to_init_and_exec(runp, bundle, cid):
    """set_mempolicy before exec: numa_maps shows the task's policy on every mapping, in the
    container's process and in one `runp exec` starts."""
    bundle.config["linux"]["memoryPolicy"] = {"mode": "MPOL_BIND", "nodes": "0"}
    out = _run(runp, bundle, cid, "head", "-1", "/proc/self/numa_maps").stdout.decode()
    assert " bind:0 " in out, out
    bundle.config["linux"]["memoryPolicy"] = {"mode": "MPOL_INTERLEAVE", "nodes": "0",
                                              "flags": ["MPOL_F_STATIC_NODES"]}
    bundle.write()
    cid2 = new_id()
    out = _created_and_exec(runp, bundle, cid2, "head", "-1", "/proc/self/numa_maps").stdout.decode()
    assert " interleave=static:0 " in out, out
    out = runp("exec", cid2, "cat", "/proc/1/numa_maps").stdout.decode()
    assert " interleave=static:0 " in out.splitlines()[0]
    runp("delete", "-f", cid2)


def test_memory_policy_local_and_default(runp, bundle, cid):
    bundle.config["linux"]["memoryPolicy"] = {"mode": "MPOL_LOCAL"}
    out = _run(runp, bundle, cid, "head", "-1", "/proc/self/numa_maps").stdout.decode()
    assert " local " in out, out


@pytest.mark.parametrize("policy, path, words", [
    ({"mode": "MPOL_BIND", "nodes": "0,7"}, "linux.memoryPolicy.nodes", "node 7 does not exist"),
    ({"mode": "MPOL_ALL"}, "linux.memoryPolicy.mode", 'unknown mode "MPOL_ALL"'),
    ({"mode": "MPOL_BIND"}, "linux.memoryPolicy.nodes", "needs at least one node"),
    ({"mode": "MPOL_LOCAL", "nodes": "0"}, "linux.memoryPolicy.nodes", "takes no nodes"),
    ({"mode": "MPOL_BIND", "nodes": "0-x"}, "linux.memoryPolicy.nodes", "invalid node list"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES", "MPOL_F_RELATIVE_NODES"]},
     "linux.memoryPolicy.flags", "exclude each other"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NONE"]},
     "linux.memoryPolicy.flags[0]", 'unknown flag "MPOL_F_NONE"'),
    # the kernel's own refusal (NUMA balancing is for MPOL_BIND/PREFERRED_MANY only) names it too
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]},
     "linux.memoryPolicy", "Invalid argument"),
])
def test_memory_policy_refused(runp, bundle, cid, policy, path, words):
    bundle.config["linux"]["memoryPolicy"] = policy
    p = _run(runp, bundle, cid, "true", check=False)
    assert p.returncode == 1
    line = _error_line(p)
    assert line.startswith(f"config.json: {path}: ") or f"config.json: {path}: " in line, line
    assert words in line
    _assert_nothing_left(runp, cid)


# --- process.execCPUAffinity, and exec applying what the init applies -----------------------------

def _cpus_allowed(text: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in text.splitlines()
                if line.startswith("Cpus_allowed_list:"))


needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs")


@needs_two_cpus
def test_exec_cpu_affinity_final(runp, bundle, cid):
    """initial while runp's process joins the cgroup, final after: the process runs on final;
    the container's init is not affected (config.md: not applicable to the init)."""
    bundle.config["process"]["execCPUAffinity"] = {"initial": "0", "final": "1"}
    out = _created_and_exec(runp, bundle, cid, "cat", "/proc/self/status").stdout.decode()
    assert _cpus_allowed(out) == "1"
    init = runp("exec", cid, "cat", "/proc/1/status").stdout.decode()
    assert _cpus_allowed(init) == "0-1"


@needs_two_cpus
def test_exec_cpu_affinity_initial_only(runp, bundle, cid):
    """Without final the runtime leaves the affinity to the kernel after the cgroup join: the
    initial one, as the container's cpuset allows all CPUs."""
    bundle.config["process"]["execCPUAffinity"] = {"initial": "1"}
    out = _created_and_exec(runp, bundle, cid, "cat", "/proc/self/status").stdout.decode()
    assert _cpus_allowed(out) == "1"


def test_exec_cpu_affinity_refused(runp, bundle, cid):
    bundle.config["process"]["execCPUAffinity"] = {"initial": "0", "final": "1-0"}
    bundle.write()
    p = runp("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert _error_line(p) == ('config.json: process.execCPUAffinity.final: invalid CPU range '
                              '"1-0" in "1-0"')
    _assert_nothing_left(runp, cid)
    # a CPU this machine does not have: sched_setaffinity refuses it, exec fails (255)
    bundle.config["process"]["execCPUAffinity"] = {"final": "1000"}
    p = _created_and_exec(runp, bundle, cid, "true", check=False)
    assert p.returncode == 255
    assert "config.json: process.execCPUAffinity.final: sched_setaffinity: Invalid argument" \
        in _error_line(p)


def _sched_fields(stat: str) -> tuple[int, int]:
    """(rt_priority, policy) from /proc/<pid>/stat (fields 40 and 41)."""
    rest = stat[stat.rfind(")") + 2:].split()
    return int(rest[37]), int(rest[38])


def test_exec_applies_scheduler_ioprio_personality(runp, bundle, cid):
    """`runp exec` sets process.scheduler, process.ioPriority and linux.personality on its
    process as the container init does: seen from inside."""
    bundle.config["process"]["scheduler"] = {"policy": "SCHED_BATCH", "nice": 5}
    bundle.config["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    bundle.config["linux"]["personality"] = {"domain": "LINUX32"}
    script = "cat /proc/self/stat; busybox ionice -p $$; uname -m"
    out = _created_and_exec(runp, bundle, cid, "sh", "-c", script).stdout.decode().splitlines()
    assert _sched_fields(out[0]) == (0, 3)  # SCHED_BATCH
    assert out[0].split()[18] == "5"  # nice
    assert out[1].strip() == "idle", out  # (busybox prints no level for the idle class)
    assert out[2] == "i686"


def test_exec_process_file_scheduler(runp, bundle, cid):
    """--process: its own scheduler is applied; an invalid one names the --process file."""
    proc = {"args": ["cat", "/proc/self/stat"], "cwd": "/", "user": {"uid": 0, "gid": 0},
            "scheduler": {"policy": "SCHED_IDLE"}, "ioPriority": {"class": "IOPRIO_CLASS_BE",
                                                                  "priority": 6}}
    out = _created_and_exec(runp, bundle, cid, process=proc).stdout.decode()
    assert _sched_fields(out) == (0, 5)  # SCHED_IDLE
    proc["scheduler"] = {"policy": "SCHED_FIFO", "priority": 100}
    pf = bundle.path / "process.json"
    pf.write_text(json.dumps(proc))
    p = runp("exec", "--process", str(pf), cid, check=False)
    assert p.returncode == 255
    assert f"{pf}: process.scheduler.priority: must be an integer from 0 to 99" in _error_line(p)


# --- linux.netDevices ------------------------------------------------------------------------------

def _ip(*args: str, check: bool = True) -> str:
    p = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and p.returncode:
        raise AssertionError(f"ip {' '.join(args)}: {p.stderr}")
    return p.stdout if p.returncode == 0 else ""


@pytest.fixture
def veth():
    """A veth pair on the host, its first end with an IPv4 and an IPv6 address and up; removed
    at the end, pass or fail (wherever the test left it: deleting an end deletes both)."""
    made = []

    def make() -> tuple[str, str]:
        tag = os.urandom(4).hex()
        a, b = f"rpa{tag}", f"rpb{tag}"
        _ip("link", "add", a, "type", "veth", "peer", "name", b)
        made.append(b)
        _ip("addr", "add", "10.213.7.1/24", "dev", a)
        _ip("addr", "add", "fd00:213:7::1/64", "dev", a, "nodad")
        _ip("link", "set", a, "up")
        return a, b
    yield make
    for b in made:
        _ip("link", "del", b, check=False)


def _host_view(name: str) -> tuple[bool, set[str]]:
    """(up, {"10.213.7.1/24", "fd00:213:7::1/64"}): what the tests check of a host device."""
    out = _ip("-o", "addr", "show", "dev", name)
    addrs = {w[w.index("inet") + 1] if "inet" in w else w[w.index("inet6") + 1]
             for w in (line.split() for line in out.splitlines())}
    flags = _ip("-o", "link", "show", name).split("<", 1)[1].split(">", 1)[0].split(",")
    return "UP" in flags, {a for a in addrs if not a.startswith("fe80")}


KEPT = {"10.213.7.1/24", "fd00:213:7::1/64"}


def _netns_bundle(bundle, devices: dict) -> None:
    bundle.config["linux"]["netDevices"] = devices
    bundle.config["process"]["args"] = ["sleep", "1000"]
    bundle.write()


def test_netdevice_moved_renamed_kept_addresses(runp, bundle, cid, veth):
    """Moved into the container's namespace under its new name, with its permanent global
    addresses (IPv4 and IPv6) and up; gone from the host. On delete runp does not move it
    back (config-linux.md MUST NOT): the kernel destroys a virtual device with its
    namespace, and so both ends of the veth pair."""
    a, b = veth()
    _netns_bundle(bundle, {a: {"name": "ctr0"}})
    runp("create", "--bundle", str(bundle.path), cid)
    assert not _ip("link", "show", a, check=False)
    out = runp("exec", cid, "ip", "-o", "addr", "show", "dev", "ctr0").stdout.decode()
    assert "inet 10.213.7.1/24" in out and "inet6 fd00:213:7::1/64" in out, out
    link = runp("exec", cid, "ip", "-o", "link", "show", "ctr0").stdout.decode()
    assert "UP" in link.split("<", 1)[1].split(">", 1)[0].split(","), link
    runp("delete", "-f", cid)
    import time
    deadline = time.monotonic() + 20
    while _ip("link", "show", b, check=False) and time.monotonic() < deadline:
        time.sleep(0.1)  # the kernel frees a network namespace in a work queue
    assert not _ip("link", "show", b, check=False)


def test_netdevice_default_name_and_template(runp, bundle, cid, veth):
    (a, _), (c, _) = veth(), veth()
    _netns_bundle(bundle, {a: {}, c: {"name": "net%d"}})
    runp("create", "--bundle", str(bundle.path), cid)
    names = runp("exec", cid, "ls", "/sys/class/net").stdout.decode().split()
    assert sorted(names) == sorted([a, "lo", "net0"])


def test_netdevice_user_namespace(runp, bundle, cid, veth):
    """With a user namespace the init comes from stage 1, which may report its pid after the
    init asked for the move: the parent answers once it knows the pid."""
    from conftest import make_traversable
    a, _ = veth()
    make_traversable(bundle.rootfs)
    lx = bundle.config["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = [{"containerID": 0, "hostID": 200000, "size": 65536}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": 300000, "size": 65536}]
    _netns_bundle(bundle, {a: {"name": "eth0"}})
    runp("create", "--bundle", str(bundle.path), cid)
    out = runp("exec", cid, "ip", "-o", "addr", "show", "dev", "eth0").stdout.decode()
    assert "inet 10.213.7.1/24" in out and "inet6 fd00:213:7::1/64" in out, out


def test_netdevice_joined_namespace_stays_there(runp, bundle, cid, veth):
    """Into a network namespace joined by path (as runc); on delete the device stays in it
    (config-linux.md: the runtime MUST NOT move it out): it is the namespace owner's."""
    a, _ = veth()
    ns = f"rpns{os.urandom(4).hex()}"
    _ip("netns", "add", ns)
    try:
        lx = bundle.config["linux"]
        lx["namespaces"] = [n for n in lx["namespaces"] if n["type"] != "network"] + [
            {"type": "network", "path": f"/run/netns/{ns}"}]
        _netns_bundle(bundle, {a: {"name": "ctr1"}})
        runp("create", "--bundle", str(bundle.path), cid)
        runp("delete", "-f", cid)
        out = _ip("-n", ns, "-o", "addr", "show", "dev", "ctr1")
        assert "inet 10.213.7.1/24" in out and "inet6 fd00:213:7::1/64" in out, out
        assert not _ip("link", "show", a, check=False)
    finally:
        _ip("netns", "del", ns, check=False)


def _assert_back_on_host(name: str) -> None:
    assert _host_view(name) == (True, KEPT)


def test_netdevice_missing(runp, bundle, cid, veth):
    a, _ = veth()
    _netns_bundle(bundle, {a: {"name": "ctr0"}, "rpnosuchdev": {}})
    p = runp("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert _error_line(p) == ("config.json: linux.netDevices.rpnosuchdev: no such network "
                              "device in the runtime's namespace")
    _assert_nothing_left(runp, cid)
    _assert_back_on_host(a)  # moved first, then moved back with what it had


def test_netdevice_name_clash_inside(runp, bundle, cid, veth):
    (a, _), (c, _) = veth(), veth()
    _netns_bundle(bundle, {a: {"name": "ctr0"}, c: {"name": "lo"}})
    p = runp("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert _error_line(p) == (f'config.json: linux.netDevices.{c}: a device named "lo" exists '
                              "in the container's network namespace")
    _assert_nothing_left(runp, cid)
    _assert_back_on_host(a)
    _assert_back_on_host(c)


def test_netdevice_back_on_host_after_a_later_failure(runp, bundle, cid, veth):
    """The container init fails after the move (a mount): the device is back on the host,
    not destroyed with the namespace."""
    a, _ = veth()
    bundle.config["mounts"].append({"destination": "/x", "type": "bind",
                                    "source": "/nonexistent-runp-src", "options": ["bind"]})
    _netns_bundle(bundle, {a: {"name": "ctr0"}})
    p = runp("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert "/nonexistent-runp-src" in _error_line(p)
    _assert_nothing_left(runp, cid)
    _assert_back_on_host(a)


def test_netdevice_needs_network_namespace(runp, bundle, cid, veth):
    a, _ = veth()
    bundle.config["linux"]["namespaces"] = [ns for ns in bundle.config["linux"]["namespaces"]
                                            if ns["type"] != "network"]
    _netns_bundle(bundle, {a: {}})
    p = runp("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert _error_line(p) == ("config.json: linux.netDevices: moving network devices requires "
                              "a network namespace (the container shares the runtime's)")
    _assert_nothing_left(runp, cid)
    _assert_back_on_host(a)


@pytest.mark.parametrize("devices, path", [
    ({"a/b": {}}, "linux.netDevices.a/b"),
    ({"eth%d": {}}, "linux.netDevices.eth%d"),
    ({"rpx": {"name": "x" * 16}}, "linux.netDevices.rpx.name"),
    ({"rpx": {"name": "."}}, "linux.netDevices.rpx.name"),
    ({"rpx": {"name": "a b"}}, "linux.netDevices.rpx.name"),
    ({"rpx": {"name": "a:b"}}, "linux.netDevices.rpx.name"),
    ({"rpx": {"name": "net%s"}}, "linux.netDevices.rpx.name"),
    ({"rpx": {"name": "c0"}, "rpy": {"name": "c0"}}, "linux.netDevices"),
])
def test_netdevice_names_refused(runp, bundle, cid, devices, path):
    """The kernel's dev_valid_name() rules (1-15 bytes, not . or .., no / : or space), a "%d"
    template only for the name inside, no two devices with one name."""
    _netns_bundle(bundle, devices)
    p = runp("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert _error_line(p).startswith(f"config.json: {path}: "), _error_line(p)
    _assert_nothing_left(runp, cid)


# --- linux.intelRdt --------------------------------------------------------------------------------

def _resctrl_mounted() -> bool:
    return any(line.split(" - ", 1)[1].startswith("resctrl ")
               for line in Path("/proc/self/mountinfo").read_text().splitlines())


@pytest.mark.skipif(_resctrl_mounted(), reason="this host has resctrl mounted")
@pytest.mark.parametrize("rdt", [{"closID": "guaranteed", "schemata": ["L3:0=7f0"]},
                                 {"l3CacheSchema": "L3:0=7f0"}, {"closID": "gold"}])
def test_intel_rdt_refused_without_resctrl(runp, bundle, cid, tmp_path, rdt):
    """config-linux.md: no resctrl mounted in the runtime's namespace MUST be an error. runc
    1.1.5 refuses an l3CacheSchema too ("Intel RDT/CAT is not enabled"), but runs a closID
    alone without any resctrl group."""
    bundle.config["linux"]["intelRdt"] = rdt
    p = _run(runp, bundle, cid, "true", check=False)
    assert p.returncode == 1
    assert _error_line(p) == ("config.json: linux.intelRdt: no resctrl filesystem is mounted in "
                              "the runtime's mount namespace (mount -t resctrl resctrl "
                              "/sys/fs/resctrl)")
    _assert_nothing_left(runp, cid)
    runc = shutil.which("runc")
    if runc is None or "l3CacheSchema" not in rdt:
        return
    from conftest import force_delete
    cmd = [runc, "--root", str(tmp_path / "runc-root")]
    try:
        p = subprocess.run(cmd + ["run", "--bundle", str(bundle.path), cid], capture_output=True,
                           timeout=60)
        assert p.returncode == 1 and b"Intel RDT/CAT is not enabled" in p.stderr, p.stderr
    finally:
        force_delete(cmd, cid)


@pytest.mark.parametrize("rdt, path", [
    ({"closID": "../x"}, "linux.intelRdt.closID"),
    ({"closID": ".."}, "linux.intelRdt.closID"),
    ({"memBwSchema": "L3:0=20"}, "linux.intelRdt.memBwSchema"),
    ({"l3CacheSchema": "L3:0=f\nMB:0=20"}, "linux.intelRdt.l3CacheSchema"),
    ({"schemata": ["L3:0=f", "L2:0=f\n"]}, "linux.intelRdt.schemata[1]"),
])
def test_intel_rdt_values_refused(runp, bundle, cid, rdt, path):
    bundle.config["linux"]["intelRdt"] = rdt
    p = _run(runp, bundle, cid, "true", check=False)
    assert p.returncode == 1
    assert _error_line(p).startswith(f"config.json: {path}: "), _error_line(p)
    _assert_nothing_left(runp, cid)


@pytest.fixture
def resctrl(tmp_path, monkeypatch):
    """A directory shaped like a resctrl mount (info/, the default group's schemata and
    tasks, mon_groups/), where runp's intelrdt module finds resctrl: this host has none (no
    RDT in its CPU), and resctrl cannot be faked for the runp binary (find_root reads the
    kernel's mountinfo). So the container is made in-process, through runtime.Container."""
    from runtime.linux import intelrdt
    root = tmp_path / "resctrl"
    for d in ("info/L3", "info/MB", "info/L3_MON", "mon_groups"):
        (root / d).mkdir(parents=True)
    (root / "schemata").write_text("    L3:0=7ff\n    MB:0=100\n")
    (root / "tasks").write_text("")
    monkeypatch.setattr(intelrdt, "find_root", lambda: str(root))
    return root


def _forget_kernfs_files(group: Path) -> None:
    """resctrl's files belong to their directory and go with its rmdir; on the stand-in they
    are ordinary files the test removes (after checking them) so that runp's rmdir works."""
    for f in ("tasks", "schemata"):
        (group / f).unlink(missing_ok=True)


def _exec_pid(tmp_path, root: str, cid: str) -> int:
    """`runp exec -d true` in-process (the resctrl stand-in is in this process); its pid, reaped
    (it is our child: exec makes its caller the subreaper)."""
    from runtime.exec import ExecOptions, exec_in
    pidfile = tmp_path / f"exec-{os.urandom(3).hex()}.pid"
    assert exec_in(root, cid, ExecOptions(args=["true"], detach=True, pid_file=str(pidfile))) == 0
    pid = int(pidfile.read_text())
    os.waitpid(pid, 0)
    return pid


def test_intel_rdt_group_made_written_updated_removed(tmp_path, bundle, resctrl, runp):
    from runtime import Container
    from runtime.update import update
    bundle.config["linux"]["intelRdt"] = {"l3CacheSchema": "L3:0=7f0", "memBwSchema": "MB:0=20",
                                          "schemata": ["L2:0=f"]}
    bundle.set_args("sleep", "1000")
    root, cid = str(runp.root), new_id()
    c = Container.create(root, cid, str(bundle.path))
    try:
        group = resctrl / cid  # no closID: the container id, made by runp
        assert (group / "schemata").read_text() == "L3:0=7f0\nMB:0=20\nL2:0=f\n"  # that order
        assert (group / "tasks").read_text() == str(c.state.pid)
        assert _exec_pid(tmp_path, root, cid) == int((group / "tasks").read_text())
        update(root, cid, {"l3-cache-schema": "L3:0=ff"}, None)
        assert (group / "schemata").read_text() == "L3:0=ff\nMB:0=20\nL2:0=f\n"
        update(root, cid, {"mem-bw-schema": "MB:0=70"}, None)
        assert (group / "schemata").read_text() == "L3:0=7f0\nMB:0=70\nL2:0=f\n"
        from runtime.errors import RuntimeFailure
        with pytest.raises(RuntimeFailure, match="--mem-bw-schema: 'L3:0=1' must start with 'MB:'"):
            update(root, cid, {"mem-bw-schema": "L3:0=1"}, None)
        _forget_kernfs_files(group)
    finally:
        c.delete(force=True)
    assert not group.exists()
    assert sorted(p.name for p in resctrl.iterdir()) == ["info", "mon_groups", "schemata", "tasks"]


def test_intel_rdt_existing_group_with_monitoring(tmp_path, bundle, resctrl, runp):
    """closID without schemata: the pre-made group is joined; enableMonitoring: a MON group
    named after the container, removed on delete; the closID group stays."""
    from runtime import Container
    grp = resctrl / "gold"
    (grp / "mon_groups").mkdir(parents=True)
    (grp / "schemata").write_text("    L3:0=0f0\n    MB:0=50\n")
    bundle.config["linux"]["intelRdt"] = {"closID": "gold", "enableMonitoring": True}
    bundle.set_args("sleep", "1000")
    cid = new_id()
    c = Container.create(str(runp.root), cid, str(bundle.path))
    try:
        pid = str(c.state.pid)
        assert (grp / "tasks").read_text() == pid
        assert (grp / "mon_groups" / cid / "tasks").read_text() == pid
        pid = str(_exec_pid(tmp_path, str(runp.root), cid))  # runp exec's process too
        assert (grp / "tasks").read_text() == pid
        assert (grp / "mon_groups" / cid / "tasks").read_text() == pid
        assert (grp / "schemata").read_text() == "    L3:0=0f0\n    MB:0=50\n"  # untouched
        _forget_kernfs_files(grp / "mon_groups" / cid)
    finally:
        c.delete(force=True)
    assert not (grp / "mon_groups" / cid).exists() and grp.is_dir()
    # matching schemata (as resctrl reads them back: padded, leading zeros dropped) are fine
    bundle.config["linux"]["intelRdt"] = {"closID": "gold", "l3CacheSchema": "L3:0=00f0",
                                          "memBwSchema": "MB:0=50"}
    bundle.write()
    c = Container.create(str(runp.root), new_id(), str(bundle.path))
    c.delete(force=True)


@pytest.mark.parametrize("rdt, path, words", [
    ({"closID": "gold", "l3CacheSchema": "L3:0=ff"}, "linux.intelRdt.l3CacheSchema",
     'differs: wants "L3:0=ff", has "L3:0=0f0"'),
    ({"closID": "gold", "schemata": ["MB:0=50", "L2:0=3"]}, "linux.intelRdt.schemata[1]",
     'wants "L2:0=3", has "L2:"'),
    ({"closID": "silver"}, "linux.intelRdt.closID", "does not exist"),
])
def test_intel_rdt_existing_group_refused(tmp_path, bundle, resctrl, runp, rdt, path, words):
    """A closID group that exists MUST match the schemata given; one that does not exist
    MUST exist when none are given. Nothing is left behind."""
    from runtime import Container
    from runtime.errors import ConfigError
    grp = resctrl / "gold"
    grp.mkdir()
    (grp / "schemata").write_text("    L3:0=0f0\n    MB:0=50\n")
    (grp / "tasks").write_text("")
    bundle.config["linux"]["intelRdt"] = rdt
    bundle.set_args("sleep", "1000")
    cid = new_id()
    with pytest.raises(ConfigError) as e:
        Container.create(str(runp.root), cid, str(bundle.path))
    assert e.value.path == path and words in e.value.problem, e.value
    assert (grp / "tasks").read_text() == ""
    assert sorted(p.name for p in resctrl.iterdir()) == ["gold", "info", "mon_groups",
                                                         "schemata", "tasks"]
    assert not (runp.root / cid).exists()


def test_update_rdt_flags_without_intel_rdt(runp, bundle, cid):
    bundle.set_args("sleep", "1000")
    runp("create", "--bundle", str(bundle.path), cid)
    p = runp("update", "--l3-cache-schema", "L3:0=f", cid, check=False)
    assert p.returncode == 1
    assert _error_line(p).endswith("updating a non-existent Intel RDT configuration is not "
                                   "supported (the container has no linux.intelRdt)")
