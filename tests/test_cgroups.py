"""runtime.linux.cgroups against the host's real cgroups (root only).

Every test works in its own /runp-test-<random> cgroup and cleans up (processes killed, dirs
removed) whether it passes or fails. The same tests run on v1, hybrid and pure v2 hosts: the
expected file and value come from where the manager put each controller, and checks that only
make sense on one kind of host are skipped on the others.
"""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from conftest import cgroup_roots
from runtime.errors import ConfigError, RuntimeFailure
from runtime.linux import cgroups as cg
from runtime.linux.cgroup_recorded import rmdir_retry
from runtime.linux.cgroups import bpf, common, devices, systemd, v2

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for real cgroups")

MODE = cg.detect()
HAS_V1 = MODE in ("v1", "hybrid")
HAS_V2 = MODE in ("v2", "hybrid")
PY = sys.executable
MiB = 1 << 20


# --- fixtures -----------------------------------------------------------------------------------

def _kill_tree(d: str) -> None:
    for p in common.procs(d):
        try:
            os.kill(p, signal.SIGKILL)
        except OSError:
            pass
    if os.path.exists(f"{d}/freezer.state"):
        try:
            common.write(d, "freezer.state", "THAWED")
        except OSError:
            pass
    if os.path.exists(f"{d}/cgroup.freeze"):
        try:
            common.write(d, "cgroup.freeze", "0")
        except OSError:
            pass


def _force_remove(name: str) -> list[str]:
    """Kill what is left in /<name> in every hierarchy (thawing it), then remove the dirs."""
    tops = [root + name for root in cgroup_roots() if os.path.isdir(root + name)]
    for top in tops:
        for dirpath, _, _ in os.walk(top, topdown=False):
            _kill_tree(dirpath)
    left = []
    for top in tops:
        for dirpath, _, _ in os.walk(top, topdown=False):
            if rmdir_retry(dirpath, True) is not None:
                left.append(dirpath)
    return left


class Env:
    """Managers and processes made by one test, all cleaned up afterwards."""

    def __init__(self) -> None:
        self.name = f"/runp-test-{uuid.uuid4().hex[:12]}"
        self.managers: list[cg.Manager] = []
        self.procs: list[subprocess.Popen] = []

    def manager(self, sub: str = "c", create: bool = True, **kw) -> cg.Manager:
        m = cg.open_manager(f"{self.name}/{sub}", sub, **kw)
        self.managers.append(m)
        if create:
            m.create()
        return m

    def spawn(self, *args: str, **kw) -> subprocess.Popen:
        p = subprocess.Popen(list(args), **kw)
        self.procs.append(p)
        return p

    def sleeper(self, m: cg.Manager | None = None) -> subprocess.Popen:
        p = self.spawn("sleep", "1000")
        if m is not None:
            m.add_pid(p.pid)
        return p

    def cleanup(self) -> list[str]:
        for m in self.managers:
            try:
                m.kill_all(signal.SIGKILL)
            except Exception:
                pass
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        for m in self.managers:
            try:
                m.destroy()
            except Exception:
                pass
        return _force_remove(self.name)


@pytest.fixture
def env():
    e = Env()
    yield e
    left = e.cleanup()
    assert not left, f"cgroups left behind: {left}"


def ctl_file(m: cg.Manager, ctrl: str, v1name: str, v2name: str) -> str:
    w = m.where(ctrl)
    assert w is not None, f"no {ctrl} controller"
    return os.path.join(w[1], v1name if w[0] == "v1" else v2name)


def read_ctl(m: cg.Manager, ctrl: str, v1name: str, v2name: str | None = None) -> str:
    with open(ctl_file(m, ctrl, v1name, v2name or v1name)) as f:
        return f.read().strip()


def kind(m: cg.Manager, ctrl: str) -> str | None:
    w = m.where(ctrl)
    return w[0] if w else None


def block_device() -> tuple[int, int] | None:
    names = sorted(os.listdir("/sys/block"), key=lambda n: n.startswith(("loop", "ram", "zram")))
    for name in names:
        try:
            with open(f"/sys/block/{name}/dev") as f:
                maj, mnr = f.read().strip().split(":")
            return int(maj), int(mnr)
        except OSError:
            continue
    return None


def wait_for(cond, timeout: float = 10.0, what: str = "condition") -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


# --- detection and paths ------------------------------------------------------------------------

def test_detect_matches_mounts():
    assert MODE in ("v1", "v2", "hybrid")
    if MODE == "v2":
        assert os.path.exists("/sys/fs/cgroup/cgroup.controllers")
    else:
        assert common.v1_mounts(), "v1 or hybrid host without v1 hierarchies"
    assert (MODE == "hybrid") == os.path.exists("/sys/fs/cgroup/unified/cgroup.controllers")


def test_absolute_path_is_below_each_hierarchy_root():
    m = cg.open_manager("/a/../b//c/", "id")
    for ctrl, d in m.paths.items():
        mnt = next(mp for mp, _, ctrls in common.v1_mounts() if ctrl in ctrls)
        assert d == mnt + "/b/c"
    if MODE == "v2":
        assert m.unified == "/sys/fs/cgroup/b/c" and not m.paths
    elif MODE == "hybrid":
        assert m.unified == "/sys/fs/cgroup/unified/b/c"
    else:
        assert m.unified is None


def test_relative_and_default_paths_follow_runc():
    own = common.own_cgroups()
    for m, inner in ((cg.open_manager("x/../y", "id"), "y"),
                     (cg.open_manager(None, "myid"), "myid"),
                     (cg.open_manager("", "myid"), "myid")):
        if HAS_V1:
            for mnt, root, ctrls in common.v1_mounts():
                c = sorted(ctrls)[0]
                mine = next((own[k] for k in sorted(ctrls) if k in own), "/")
                if root != "/" and mine.startswith(root):
                    mine = mine[len(root):] or "/"
                assert m.paths[c] == common.join(mnt, mine, inner)
        if HAS_V2:
            base = "/sys/fs/cgroup" if MODE == "v2" else "/sys/fs/cgroup/unified"
            assert m.unified == common.join(base, os.path.dirname(own[""]), inner)


def test_clean_path_and_mountinfo_escapes():
    assert common.clean_path("/a/./b/../c//") == "/a/c"
    assert common.clean_path("../../x") == "x"
    assert common.clean_path("/../..") == "/"
    assert common.join("/sys/fs/cgroup/memory", "/", "a/b") == "/sys/fs/cgroup/memory/a/b"
    assert common._unescape("/a\\040b") == "/a b"
    assert common.page_size_name(2 << 20) == "2MB" and common.page_size_bytes("1GB") == 1 << 30


def test_escaping_relative_path_stays_below():
    m = cg.open_manager("../../../../etc", "id")
    for d in m.dirs():
        assert d.endswith("/etc") and d.startswith("/sys/fs/cgroup/")


@pytest.mark.parametrize("bad", ["/", "..", "/../", "."])
def test_root_cgroup_is_refused(bad):
    with pytest.raises(ConfigError) as e:
        cg.open_manager(bad, "id")
    assert str(e.value).startswith("config.json: linux.cgroupsPath: ")


def test_systemd_paths():
    assert systemd.expand_slice("system.slice") == "/system.slice"
    assert systemd.expand_slice("a-b-c.slice") == "/a.slice/a-b.slice/a-b-c.slice"
    assert systemd.expand_slice("-.slice") == "/"
    for bad in ("foo", "a--b.slice", "-a.slice", "a/b.slice", ".slice"):
        with pytest.raises(ConfigError):
            systemd.expand_slice(bad)
    u = systemd.parse("machine-x.slice:libpod:abc", "abc")
    assert u["unit"] == "libpod-abc.scope"
    assert u["path"] == "/machine.slice/machine-x.slice/libpod-abc.scope"
    assert systemd.parse(None, "abc")["path"] == "/system.slice/runc-abc.scope"
    if not systemd.running():  # the manager asks systemd at once (test_systemd.py)
        with pytest.raises(RuntimeFailure) as rf:
            cg.open_manager("user.slice:docker:123", "123", systemd=True)
        assert str(rf.value) == systemd.NOT_RUNNING
    for bad in ("/abs/path", "a:b", "a:b:c:d", "system.slice:x:"):
        with pytest.raises(ConfigError) as e:
            cg.open_manager(bad, "id", systemd=True)
        assert "linux.cgroupsPath" in str(e.value)


# --- create / destroy ---------------------------------------------------------------------------

def test_create_and_destroy(env):
    m = env.manager("c", create=False)
    assert not m.exists()
    m.create()
    for d in m.dirs():
        assert os.path.isdir(d)
    parents = {os.path.dirname(d) for d in m.dirs()}
    assert set(m.created) == set(m.dirs()) | parents
    m.destroy()
    for d in m.created + m.dirs() + list(parents):
        assert not os.path.exists(d)
    assert m.created == []


def test_destroy_keeps_a_made_parent_while_used_then_the_last_removes_it(env):
    a = env.manager("a")                 # makes /runp-test-X and /runp-test-X/a
    b = env.manager("b")                 # makes only /runp-test-X/b
    assert all(not c.endswith(env.name) for c in b.created)
    a.destroy()                          # the parent is still used by b: it stays
    assert all(os.path.isdir(os.path.dirname(d)) for d in b.dirs())
    b.destroy()                          # runp made the parent (for a): the last one removes it
    for d in b.dirs():
        assert not os.path.exists(os.path.dirname(d))


def test_destroy_keeps_existing_parents(env):
    for d in env.manager("c", create=False).dirs():
        os.makedirs(os.path.dirname(d), exist_ok=True)   # made by someone else first
    m = env.manager("c")
    m.destroy()
    for d in m.dirs():
        assert not os.path.exists(d)
        assert os.path.isdir(os.path.dirname(d))


def test_destroy_removes_sub_cgroups_made_inside(env):
    m = env.manager()
    for d in m.dirs():
        os.makedirs(f"{d}/inner/deeper")
    m.destroy()
    assert not any(os.path.exists(d) for d in m.dirs())


def test_destroy_waits_for_exiting_processes(env):
    m = env.manager()
    p = env.sleeper(m)
    p.kill()          # still exiting (and not reaped) when destroy starts: it retries EBUSY
    m.destroy()
    assert not m.exists()
    p.wait()


def test_destroy_reports_busy_cgroup(env):
    m = env.manager()
    env.sleeper(m)
    with pytest.raises(RuntimeFailure) as e:
        m.destroy()
    assert "cannot remove cgroup" in str(e.value)
    m.kill_all(signal.SIGKILL)
    for p in env.procs:
        p.wait()
    m.destroy()
    assert not m.exists()


def test_create_refuses_populated_cgroup(env):
    m = env.manager()
    env.sleeper(m)
    again = cg.open_manager(f"{env.name}/c", "c")
    with pytest.raises(RuntimeFailure, match="not empty: 1 process"):
        again.create()


def test_create_refuses_frozen_cgroup(env):
    m = env.manager()
    m.freeze()
    again = cg.open_manager(f"{env.name}/c", "c")
    with pytest.raises(RuntimeFailure, match="frozen"):
        again.create()
    m.thaw()


def test_state_round_trip(env):
    m = env.manager()
    p = env.sleeper(m)
    d = json.loads(json.dumps(m.to_dict()))
    m2 = cg.Manager.from_dict(d)
    assert m2.dirs() == m.dirs() and m2.created == m.created and m2.mode == MODE
    assert m2.pids() == [p.pid]
    m2.kill_all(signal.SIGKILL)
    p.wait()
    m2.destroy()
    assert not m.exists()


# --- processes ----------------------------------------------------------------------------------

def test_add_pid_joins_every_hierarchy(env):
    m = env.manager()
    p = env.sleeper(m)
    mine = common.own_cgroups(p.pid)
    for ctrl, d in m.paths.items():
        mnt = next(mp for mp, _, ctrls in common.v1_mounts() if ctrl in ctrls)
        assert mnt + mine[ctrl] == d
    if m.unified:
        base = "/sys/fs/cgroup" if MODE == "v2" else "/sys/fs/cgroup/unified"
        assert common.join(base, mine[""]) == m.unified
    assert m.pids() == [p.pid]


def test_pids_is_recursive(env):
    m = env.manager()
    p1 = env.sleeper(m)
    p2 = env.sleeper()
    for d in {m.path("devices"), m.path("")}:     # where pids() looks
        os.mkdir(f"{d}/sub")
        common.write(f"{d}/sub", "cgroup.procs", str(p2.pid))
    assert sorted(m.pids()) == sorted([p1.pid, p2.pid])


COUNTER = """
import os, sys, time
sys.stdin.readline()
i = 0
while True:
    i += 1
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(i))
    os.rename(sys.argv[1] + ".tmp", sys.argv[1])
    time.sleep(0.005)
"""


def _count(path: str) -> int:
    try:
        with open(path) as f:
            return int(f.read() or 0)
    except (OSError, ValueError):
        return 0


def test_freeze_stops_and_thaw_resumes(env, tmp_path):
    m = env.manager()
    counter = str(tmp_path / "count")
    p = env.spawn(PY, "-c", COUNTER, counter, stdin=subprocess.PIPE)
    m.add_pid(p.pid)
    p.stdin.write(b"go\n")
    p.stdin.flush()
    wait_for(lambda: _count(counter) > 5, what="the counter to count")
    assert not m.frozen()
    m.freeze()
    assert m.frozen()
    time.sleep(0.1)
    a = _count(counter)
    time.sleep(0.3)
    assert _count(counter) == a, "a frozen process kept counting"
    m.thaw()
    assert not m.frozen()
    wait_for(lambda: _count(counter) > a + 5, what="the counter to resume")


def test_kill_all(env):
    m = env.manager()
    ps = [env.sleeper(m) for _ in range(3)]
    m.kill_all(signal.SIGTERM)
    for p in ps:
        assert p.wait(timeout=10) == -signal.SIGTERM
    wait_for(lambda: m.pids() == [], what="the cgroup to empty")
    ps = [env.sleeper(m) for _ in range(2)]
    m.kill_all(signal.SIGKILL)
    for p in ps:
        assert p.wait(timeout=10) == -signal.SIGKILL
    assert not m.frozen()


def test_kill_all_keeps_a_paused_container_paused(env):
    m = env.manager()
    p = env.spawn(PY, "-c", "import signal, time\nsignal.signal(signal.SIGUSR1, lambda *a: None)\n"
                            "print('ready', flush=True)\ntime.sleep(1000)", stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    m.add_pid(p.pid)
    m.freeze()
    m.kill_all(signal.SIGUSR1)
    assert m.frozen()
    m.kill_all(signal.SIGKILL)
    assert p.wait(timeout=10) == -signal.SIGKILL


def test_kill_all_on_a_removed_cgroup_is_quiet(env):
    m = env.manager()
    m.destroy()
    m.kill_all(signal.SIGKILL)
    m.kill_all(signal.SIGTERM)
    assert m.pids() == []


# --- resources: memory --------------------------------------------------------------------------

def test_memory_limit_reservation_swap(env):
    m = env.manager()
    m.apply({"memory": {"limit": 64 * MiB, "reservation": 32 * MiB, "swap": 96 * MiB,
                        "kernel": -1, "kernelTCP": -1 if kind(m, "memory") == "v2" else None,
                        "useHierarchy": True, "checkBeforeUpdate": True}})
    assert read_ctl(m, "memory", "memory.limit_in_bytes", "memory.max") == str(64 * MiB)
    assert read_ctl(m, "memory", "memory.soft_limit_in_bytes", "memory.low") == str(32 * MiB)
    sw = ctl_file(m, "memory", "memory.memsw.limit_in_bytes", "memory.swap.max")
    if os.path.exists(sw):
        want = 96 * MiB if kind(m, "memory") == "v1" else 32 * MiB   # v2: swap alone
        assert open(sw).read().strip() == str(want)


def test_memory_unlimited(env):
    m = env.manager()
    m.apply({"memory": {"limit": 64 * MiB}})
    m.update({"memory": {"limit": -1}})
    v = read_ctl(m, "memory", "memory.limit_in_bytes", "memory.max")
    assert v == "max" or int(v) >= 1 << 62


@pytest.mark.skipif(not HAS_V1, reason="v1 memory files")
def test_memory_v1_only_fields(env):
    m = env.manager()
    if kind(m, "memory") != "v1":
        pytest.skip("memory is not on v1 here")
    m.apply({"memory": {"swappiness": 17, "disableOOMKiller": True,
                        "kernelTCP": 16 * MiB, "kernel": 16 * MiB}})
    assert read_ctl(m, "memory", "memory.swappiness") == "17"
    assert "oom_kill_disable 1" in read_ctl(m, "memory", "memory.oom_control")
    assert read_ctl(m, "memory", "memory.kmem.tcp.limit_in_bytes") == str(16 * MiB)
    m.update({"memory": {"disableOOMKiller": False}})
    assert "oom_kill_disable 0" in read_ctl(m, "memory", "memory.oom_control")
    with pytest.raises(ConfigError, match=r"linux.resources.memory.swappiness: must be between"):
        m.apply({"memory": {"swappiness": 101}})
    if read_ctl(m, "memory", "memory.use_hierarchy") == "1":
        try:
            m.apply({"memory": {"useHierarchy": False}})
        except ConfigError as e:
            assert e.path == "linux.resources.memory.useHierarchy"


def test_memory_v2_refuses_what_it_cannot_convert(env):
    m = env.manager()
    if kind(m, "memory") != "v2":
        pytest.skip("memory is not on v2 here")
    for field, val in (("swappiness", 10), ("disableOOMKiller", True), ("useHierarchy", False)):
        with pytest.raises(ConfigError) as e:
            m.apply({"memory": {field: val}})
        assert str(e.value).startswith(f"config.json: linux.resources.memory.{field}: "
                                       "not supported on this host")
    m.apply({"memory": {"kernel": 1 << 20, "kernelTCP": 1 << 20, "useHierarchy": True}})


def test_memory_swap_below_limit_is_an_error(env):
    m = env.manager()
    if not os.path.exists(ctl_file(m, "memory", "memory.memsw.limit_in_bytes",
                                   "memory.swap.max")):
        pytest.skip("no swap accounting")
    with pytest.raises(ConfigError) as e:
        m.apply({"memory": {"limit": 64 * MiB, "swap": 32 * MiB}})
    assert e.value.path.startswith("linux.resources.memory.")


HOG = """
import sys
sys.stdin.readline()
buf = bytearray(int(sys.argv[1]))
for i in range(0, len(buf), 4096):
    buf[i] = 1
print("ok", flush=True)
sys.stdin.readline()
"""


def _hog(env, m, size: int) -> subprocess.Popen:
    p = env.spawn(PY, "-c", HOG, str(size), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    m.add_pid(p.pid)
    p.stdin.write(b"go\n")
    p.stdin.flush()
    return p


def test_memory_update_below_usage(env):
    m = env.manager()
    m.apply({"memory": {"limit": 256 * MiB}})
    p = _hog(env, m, 48 * MiB)
    assert p.stdout.readline() == b"ok\n"
    with pytest.raises(ConfigError) as e:
        m.update({"memory": {"limit": 8 * MiB, "checkBeforeUpdate": True}})
    assert e.value.path == "linux.resources.memory.limit"
    assert "rejecting memory limit" in e.value.problem
    assert read_ctl(m, "memory", "memory.limit_in_bytes", "memory.max") == str(256 * MiB)
    m.update({"memory": {"limit": 128 * MiB, "checkBeforeUpdate": True}})
    assert read_ctl(m, "memory", "memory.limit_in_bytes", "memory.max") == str(128 * MiB)


def test_oom_kill_is_counted(env):
    m = env.manager()
    res = {"memory": {"limit": 32 * MiB}}
    if os.path.exists(ctl_file(m, "memory", "memory.memsw.limit_in_bytes", "memory.swap.max")):
        res["memory"]["swap"] = 32 * MiB      # no swapping out of the OOM
    m.apply(res)
    assert m.oom_events() == 0
    p = _hog(env, m, 128 * MiB)
    assert p.wait(timeout=60) == -signal.SIGKILL
    wait_for(lambda: m.oom_events() >= 1, what="the OOM kill to be counted")


# --- resources: cpu -----------------------------------------------------------------------------

def test_cpu_shares_to_weight():
    assert [v2.cpu_shares_to_weight(s) for s in (0, 2, 1024, 262144, 512, 100)] == \
        [0, 1, 100, 10000, 59, 17]
    assert v2.blkio_weight_to_io_weight(10) == 1
    assert v2.blkio_weight_to_io_weight(1000) == 10000
    assert v2.blkio_weight_to_io_weight(500) == 4950
    assert v2.memory_swap_to_v2(200, 100) == 100
    assert v2.memory_swap_to_v2(0, -1) == -1
    with pytest.raises(ValueError):
        v2.memory_swap_to_v2(50, 100)


def test_cpu_fields(env):
    m = env.manager()
    m.apply({"cpu": {"shares": 512, "quota": 50000, "period": 200000, "cpus": "0", "mems": "0"}})
    if kind(m, "cpu") == "v1":
        assert read_ctl(m, "cpu", "cpu.shares") == "512"
        assert read_ctl(m, "cpu", "cpu.cfs_quota_us") == "50000"
        assert read_ctl(m, "cpu", "cpu.cfs_period_us") == "200000"
    else:
        assert read_ctl(m, "cpu", "", "cpu.weight") == str(v2.cpu_shares_to_weight(512))
        assert read_ctl(m, "cpu", "", "cpu.max") == "50000 200000"
    assert read_ctl(m, "cpuset", "cpuset.cpus") == "0"
    assert read_ctl(m, "cpuset", "cpuset.mems") == "0"
    # period only: the quota stays (runc's update behaviour)
    m.update({"cpu": {"period": 100000}})
    if kind(m, "cpu") == "v1":
        assert read_ctl(m, "cpu", "cpu.cfs_quota_us") == "50000"
        assert read_ctl(m, "cpu", "cpu.cfs_period_us") == "100000"
    else:
        assert read_ctl(m, "cpu", "", "cpu.max") == "50000 100000"
    m.update({"cpu": {"quota": -1}})
    if kind(m, "cpu") == "v1":
        assert read_ctl(m, "cpu", "cpu.cfs_quota_us") == "-1"
    else:
        assert read_ctl(m, "cpu", "", "cpu.max") == "max 100000"


def test_cpu_burst_and_idle(env):
    m = env.manager()
    if not os.path.exists(ctl_file(m, "cpu", "cpu.cfs_burst_us", "cpu.max.burst")):
        with pytest.raises(ConfigError, match="cpu.burst: not supported"):
            m.apply({"cpu": {"quota": 50000, "period": 100000, "burst": 10000}})
    else:
        m.apply({"cpu": {"quota": 50000, "period": 100000, "burst": 10000}})
        assert read_ctl(m, "cpu", "cpu.cfs_burst_us", "cpu.max.burst") == "10000"
    if os.path.exists(ctl_file(m, "cpu", "cpu.idle", "cpu.idle")):
        m.apply({"cpu": {"idle": 1}})
        assert read_ctl(m, "cpu", "cpu.idle") == "1"
        m.apply({"cpu": {"idle": 0}})
        assert read_ctl(m, "cpu", "cpu.idle") == "0"


def test_cpu_realtime(env):
    m = env.manager()
    res = {"cpu": {"realtimeRuntime": 5000, "realtimePeriod": 1000000}}
    if kind(m, "cpu") == "v2" or not os.path.exists(ctl_file(m, "cpu", "cpu.rt_runtime_us",
                                                             "cpu.rt_runtime_us")):
        with pytest.raises(ConfigError, match=r"cpu.realtime\w+: not supported on this host"):
            m.apply(res)
        return
    m.apply(res)      # the parent runp made gets the budget too
    assert read_ctl(m, "cpu", "cpu.rt_runtime_us") == "5000"
    assert read_ctl(m, "cpu", "cpu.rt_period_us") == "1000000"


def test_cpuset_of_new_v1_cgroups_is_initialised(env):
    m = env.manager()
    assert read_ctl(m, "cpuset", "cpuset.cpus", "cpuset.cpus.effective") != ""
    env.sleeper(m)      # would fail with ENOSPC on an empty v1 cpuset


# --- resources: pids, blkio, hugetlb, network, rdma, unified ------------------------------------

@pytest.mark.parametrize("limit,want", [(50, "50"), (-1, "max"), (0, "0")])
def test_pids_limit(env, limit, want):
    m = env.manager()
    m.apply({"pids": {"limit": limit}})
    assert read_ctl(m, "pids", "pids.max") == want


def test_pids_limit_is_enforced(env):
    m = env.manager()
    m.apply({"pids": {"limit": 1}})
    p = env.spawn("sh", "-c", "read x; sleep 0.1 & wait; echo $?", stdin=subprocess.PIPE,
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    m.add_pid(p.pid)
    out, err = p.communicate(b"\n", timeout=10)
    assert b"fork" in err.lower() or b"resource" in err.lower() or out.strip() != b"0"


def test_blkio_throttle(env):
    dev = block_device()
    if dev is None:
        pytest.skip("no block device")
    maj, mnr = dev
    m = env.manager()
    m.apply({"blockIO": {"throttleReadBpsDevice": [{"major": maj, "minor": mnr, "rate": 1 << 20}],
                         "throttleWriteIOPSDevice": [{"major": maj, "minor": mnr, "rate": 300}]}})
    if kind(m, "blkio") == "v1":
        assert read_ctl(m, "blkio", "blkio.throttle.read_bps_device") == f"{maj}:{mnr} {1 << 20}"
        assert read_ctl(m, "blkio", "blkio.throttle.write_iops_device") == f"{maj}:{mnr} 300"
    else:
        line = read_ctl(m, "blkio", "", "io.max")
        assert f"{maj}:{mnr} rbps={1 << 20} wbps=max riops=max wiops=300" in line


def test_blkio_weight(env):
    m = env.manager()
    files = ("blkio.weight", "blkio.bfq.weight") if kind(m, "blkio") == "v1" else \
        ("io.bfq.weight", "io.weight")
    w = m.where("blkio")
    present = [f for f in files if os.path.exists(f"{w[1]}/{f}")]
    if not present:
        with pytest.raises(ConfigError) as e:
            m.apply({"blockIO": {"weight": 500}})
        assert str(e.value).startswith(
            "config.json: linux.resources.blockIO.weight: not supported on this host")
        return
    m.apply({"blockIO": {"weight": 500}})
    got = open(f"{w[1]}/{present[0]}").read().split()
    want = "500" if present[0] != "io.weight" else str(v2.blkio_weight_to_io_weight(500))
    assert want in got


def test_blkio_leaf_weight(env):
    m = env.manager()
    w = m.where("blkio")
    if w[0] == "v1" and os.path.exists(f"{w[1]}/blkio.leaf_weight"):
        m.apply({"blockIO": {"leafWeight": 300}})
        assert read_ctl(m, "blkio", "blkio.leaf_weight") == "300"
    else:
        with pytest.raises(ConfigError, match="blockIO.leafWeight: not supported on this host"):
            m.apply({"blockIO": {"leafWeight": 300}})


def test_hugetlb(env):
    sizes = common.hugepage_sizes()
    if not sizes:
        pytest.skip("no huge pages")
    m = env.manager()
    if m.where("hugetlb") is None:
        with pytest.raises(ConfigError, match="hugepageLimits: not supported on this host"):
            m.apply({"hugepageLimits": [{"pageSize": sizes[0], "limit": 0}]})
        return
    size = common.page_size_bytes(sizes[0])
    m.apply({"hugepageLimits": [{"pageSize": sizes[0], "limit": 4 * size}]})
    assert read_ctl(m, "hugetlb", f"hugetlb.{sizes[0]}.limit_in_bytes",
                    f"hugetlb.{sizes[0]}.max") == str(4 * size)
    if MODE == "hybrid" and not any("hugetlb" in c for _, _, c in common.v1_mounts()):
        assert kind(m, "hugetlb") == "v2"       # only on the cgroup2 side here
    with pytest.raises(ConfigError, match=r"hugepageLimits\[0\].pageSize: unknown huge page"):
        m.apply({"hugepageLimits": [{"pageSize": "3MB", "limit": 0}]})


def test_network(env):
    m = env.manager()
    res = {"network": {"classID": 0x100001, "priorities": [{"name": "lo", "priority": 5}]}}
    if kind(m, "net_cls") != "v1" or kind(m, "net_prio") != "v1":
        with pytest.raises(ConfigError, match=r"linux.resources.network.\w+: not supported"):
            m.apply(res)
        return
    m.apply(res)
    assert read_ctl(m, "net_cls", "net_cls.classid") == str(0x100001)
    assert "lo 5" in read_ctl(m, "net_prio", "net_prio.ifpriomap")


def test_rdma(env):
    m = env.manager()
    if m.where("rdma") is None:
        with pytest.raises(ConfigError, match=r"linux.resources.rdma: not supported"):
            m.apply({"rdma": {"mlx5_1": {"hcaHandles": 3}}})
    else:
        # no RDMA device here: the kernel refuses the name, which is still the field's error
        with pytest.raises(ConfigError, match=r"linux.resources.rdma.nodev"):
            m.apply({"rdma": {"nodev": {"hcaHandles": 3, "hcaObjects": 10}}})


def test_unified(env):
    m = env.manager()
    if not HAS_V2:
        with pytest.raises(ConfigError, match="linux.resources.unified: not supported"):
            m.apply({"unified": {"pids.max": "10"}})
        return
    if MODE == "v2":
        m.apply({"unified": {"pids.max": "10", "memory.high": "50000000"}})
        assert read_ctl(m, "pids", "", "pids.max") == "10"
        assert open(f"{m.unified}/memory.high").read().strip() == str(50000000 // 4096 * 4096)
    else:
        sizes = common.hugepage_sizes()
        if "hugetlb" in v2.controllers(m.unified) and sizes:
            m.apply({"unified": {f"hugetlb.{sizes[0]}.max": "0"}})
            assert open(f"{m.unified}/hugetlb.{sizes[0]}.max").read().strip() == "0"
        with pytest.raises(ConfigError) as e:
            m.apply({"unified": {"memory.high": "1000000"}})
        assert e.value.path == 'linux.resources.unified["memory.high"]'
        assert "bound to cgroup v1" in e.value.problem
    with pytest.raises(ConfigError, match="no slashes"):
        m.apply({"unified": {"../x": "1"}})
    with pytest.raises(ConfigError, match="CONTROLLER.PARAMETER"):
        m.apply({"unified": {"nodot": "1"}})
    with pytest.raises(ConfigError, match="not available"):
        m.apply({"unified": {"nosuchctl.max": "1"}})


def test_bad_values_name_the_field(env):
    m = env.manager()
    for res, path in (({"memory": {"limit": "lots"}}, "linux.resources.memory.limit"),
                      ({"cpu": {"shares": True}}, "linux.resources.cpu.shares"),
                      ({"pids": []}, "linux.resources.pids"),
                      ({"devices": [{"allow": True, "type": "x"}]},
                       "linux.resources.devices[0].type"),
                      ({"devices": [{"allow": True, "access": "rwx"}]},
                       "linux.resources.devices[0].access"),
                      ({"devices": [{"access": "rwm"}]}, "linux.resources.devices[0].allow")):
        with pytest.raises(ConfigError) as e:
            m.apply(res)
        assert e.value.path == path, (res, str(e.value))


def test_update_names_fields_relative_to_given_path(env):
    m = env.manager()
    with pytest.raises(ConfigError) as e:
        m.update({"memory": {"limit": "x"}}, path="")
    assert e.value.path == "memory.limit"


# --- devices ------------------------------------------------------------------------------------

def test_default_devices_follow_runc():
    got = [r.cgroup_string() for r in devices.DEFAULT_RULES]
    for want in ("c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
                 "c 1:9 rwm", "c 5:0 rwm", "c 5:1 rwm", "c 5:2 rwm", "c 136:* rwm",
                 "c 10:200 rwm"):
        assert want in got
    assert all(r.allow for r in devices.DEFAULT_RULES)


def test_emulator():
    E = devices.Emulator
    R = devices.Rule
    e = E.from_rules([R("a", -1, -1, 7, False), R("c", 1, 3, 3, True), R("c", 1, 3, 4, True),
                      R("c", 1, 3, 2, False)])
    assert not e.default_allow and e.rules == {("c", 1, 3): 5}
    e = E.from_rules([R("a", -1, -1, 7, True), R("b", 8, 0, 7, False)])
    assert e.default_allow and e.rules == {("b", 8, 0): 7}
    with pytest.raises(ValueError, match="punch a hole"):
        E.from_rules([R("c", -1, -1, 7, True), R("c", 1, 3, 7, False)])
    lst = E.from_list("c 1:3 rwm\nc 136:* rw\nb *:* m\n")
    assert lst.rules == {("c", 1, 3): 7, ("c", 136, -1): 3, ("b", -1, -1): 4}
    assert E.from_list("a *:* rwm\n").default_allow
    # minimal transition: drop w from 136:*, add 1:5
    target = E.from_rules([R("c", 1, 3, 7, True), R("c", 136, -1, 1, True),
                           R("b", -1, -1, 4, True), R("c", 1, 5, 7, True)])
    assert [r.cgroup_string() + (" +" if r.allow else " -") for r in lst.transition(target)] == \
        ["c 136:* w -", "c 1:5 rwm +"]


def _v1_devices(m):
    w = m.where("devices")
    if w is None or w[0] != "v1":
        pytest.skip("devices are not on v1 here")
    return w[1]


def test_devices_v1_podman_config(env):
    m = env.manager()
    d = _v1_devices(m)
    m.apply({"devices": [{"allow": False, "access": "rwm"}]})
    assert open(f"{d}/devices.list").read().splitlines() == \
        [r.cgroup_string() for r in devices.DEFAULT_RULES]


def test_devices_v1_config_order_then_defaults(env):
    m = env.manager()
    d = _v1_devices(m)
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},
                         {"allow": True, "type": "b", "major": 8, "minor": 0, "access": "r"}]})
    lines = open(f"{d}/devices.list").read().splitlines()
    assert lines[:2] == ["c 10:229 rw", "b 8:0 r"]
    assert lines[2:] == [r.cgroup_string() for r in devices.DEFAULT_RULES]


def test_devices_v1_deny_after_allow(env):
    m = env.manager()
    d = _v1_devices(m)
    # a later deny of a default device wins over the config's earlier allow ... and the
    # defaults come after the config, so /dev/null is allowed again in the end (as in runc)
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                         {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "w"}]})
    assert "c 1:3 rwm" in open(f"{d}/devices.list").read().splitlines()


def test_devices_v1_privileged(env):
    m = env.manager()
    d = _v1_devices(m)
    m.apply({"devices": [{"allow": True, "access": "rwm"}]})
    assert open(f"{d}/devices.list").read().split("\n")[0] == "a *:* rwm"


def test_devices_v1_hole_punching_is_refused(env):
    m = env.manager()
    _v1_devices(m)
    with pytest.raises(ConfigError) as e:
        m.apply({"devices": [{"allow": False, "access": "rwm"},
                             {"allow": True, "type": "c", "access": "rwm"},
                             {"allow": False, "type": "c", "major": 1, "minor": 3,
                              "access": "rwm"}]})
    assert e.value.path == "linux.resources.devices[2]"


def test_devices_v1_update_is_a_transition(env):
    m = env.manager()
    d = _v1_devices(m)
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}]})
    m.update({"memory": {}})      # no "devices": left alone
    assert "c 10:229 rw" in open(f"{d}/devices.list").read().splitlines()
    m.update({"devices": [{"allow": False, "access": "rwm"},
                          {"allow": True, "type": "c", "major": 10, "minor": 230,
                           "access": "r"}]})
    lines = open(f"{d}/devices.list").read().splitlines()
    assert "c 10:229 rw" not in lines and "c 10:230 r" in lines and "c 1:3 rwm" in lines


OPEN_DEV = """
import os, sys
sys.stdin.readline()
try:
    os.close(os.open(sys.argv[1], os.O_RDONLY))
    print("ok")
except OSError as e:
    print(e.errno)
"""


def _open_in(env, join, dev: str = "/dev/null") -> str:
    p = env.spawn(PY, "-c", OPEN_DEV, dev, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    join(p.pid)
    out, _ = p.communicate(b"\n", timeout=30)
    return out.decode().strip()


def _unified_root() -> str:
    if MODE == "v2":
        return common.CGROUP_ROOT
    if MODE == "hybrid":
        return common.UNIFIED_HYBRID
    pytest.skip("no cgroup2 hierarchy")


def test_bpf_program_builds_like_runc():
    prog = bpf.build_program(devices.with_defaults(
        devices.rules_from_config([{"allow": False, "access": "rwm"}], "d")))
    assert len(prog) % 8 == 0
    # 6 loads, one block per clean rule, 2 for the default
    assert prog[:8] == bytes([0x61, 0x12, 0, 0, 0, 0, 0, 0])
    assert prog[-8:] == bytes([0x95, 0, 0, 0, 0, 0, 0, 0])
    assert prog[-16:-8] == bytes([0xB4, 0, 0, 0, 0, 0, 0, 0])     # default deny


@pytest.mark.parametrize("rules,expect", [
    ([{"allow": False, "access": "rwm"},
      {"allow": True, "type": "c", "major": 1, "minor": 5, "access": "rwm"}], "denied"),
    ([{"allow": False, "access": "rwm"},
      {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "r"}], "ok"),
    ([{"allow": False, "access": "rwm"},
      {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "w"}], "denied"),
    ([{"allow": True, "access": "rwm"},
      {"allow": False, "type": "c", "major": 1, "access": "rwm"}], "denied"),
    ([{"allow": True, "access": "rwm"}], "ok"),
])
def test_bpf_device_program_on_unified(env, rules, expect):
    """The v2 device program on the cgroup2 hierarchy (hybrid: /sys/fs/cgroup/unified)."""
    root = _unified_root()
    d = root + env.name
    os.makedirs(d)
    rs = devices.rules_from_config(rules, "d")
    bpf.set_v2(d, rs, len(rs), "linux.resources.devices")
    assert len(bpf.attached_programs(d)) == 1
    got = _open_in(env, lambda pid: common.write(d, "cgroup.procs", str(pid)))
    assert got == ("ok" if expect == "ok" else str(errno.EPERM))
    # replacing (update) keeps exactly one program and takes effect
    allow = devices.rules_from_config([{"allow": True, "access": "rwm"}], "d")
    bpf.set_v2(d, allow, 1, "linux.resources.devices")
    assert len(bpf.attached_programs(d)) == 1
    assert _open_in(env, lambda pid: common.write(d, "cgroup.procs", str(pid))) == "ok"


def test_devices_through_the_manager(env):
    m = env.manager()
    m.apply({"devices": [{"allow": False, "access": "rwm"},
                         {"allow": False, "type": "c", "major": 1, "minor": 3, "access": "rwm"}]})
    # the defaults come after the config: /dev/null is allowed again (runc does the same)
    assert _open_in(env, m.add_pid) == "ok"
    w = m.where("devices")
    if w[0] == "v2":
        assert len(bpf.attached_programs(w[1])) == 1
    if not os.path.exists("/dev/loop0"):
        return
    # a device outside the default list is denied, unless the config allows it
    m2 = env.manager("deny")
    m2.apply({"devices": [{"allow": False, "access": "rwm"}]})
    assert _open_in(env, m2.add_pid, "/dev/loop0") == str(errno.EPERM)
    m3 = env.manager("allow")
    m3.apply({"devices": [{"allow": False, "access": "rwm"},
                          {"allow": True, "type": "b", "major": 7, "access": "r"}]})
    assert _open_in(env, m3.add_pid, "/dev/loop0") == "ok"
    # update replaces the rules (v2: the program) of a cgroup with processes in it
    m2.update({"devices": [{"allow": False, "access": "rwm"},
                           {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"}]})
    assert _open_in(env, m2.add_pid, "/dev/loop0") == "ok"
    if m2.where("devices")[0] == "v2":
        assert len(bpf.attached_programs(m2.path("devices"))) == 1


# --- statistics ---------------------------------------------------------------------------------

BUSY = """
import sys, time
sys.stdin.readline()
buf = bytearray(int(sys.argv[1]))
for i in range(0, len(buf), 4096):
    buf[i] = 1
start = time.process_time()  # CPU time, not wall time: the machine may be busy
while time.process_time() - start < 0.3:
    pass
print("done", flush=True)
sys.stdin.readline()
"""


def test_stats(env):
    m = env.manager()
    m.apply({"memory": {"limit": 256 * MiB}, "pids": {"limit": 100}})
    p = env.spawn(PY, "-c", BUSY, str(32 * MiB), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    m.add_pid(p.pid)
    s1 = env.sleeper(m)
    p.stdin.write(b"go\n")
    p.stdin.flush()
    assert p.stdout.readline() == b"done\n"
    s = json.loads(json.dumps(m.stats()))
    assert set(s) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt",
                      "network_interfaces"}
    assert s["pids"] == {"current": 2, "limit": 100}
    assert s["cpu"]["usage"]["total"] > 100_000_000          # ns: > 0.1 s busy
    assert s["cpu"]["usage"]["user"] + s["cpu"]["usage"]["kernel"] > 0
    assert s["memory"]["usage"]["limit"] == 256 * MiB
    assert s["memory"]["usage"]["usage"] >= 32 * MiB
    assert s["memory"]["raw"]
    if kind(m, "memory") == "v2":
        assert "file" in s["memory"]["raw"]
    else:
        assert "total_rss" in s["memory"]["raw"]
    for ps, h in s["hugetlb"].items():
        assert ps in common.hugepage_sizes() and "failcnt" in h
    assert "sched_load_balance" in s["cpuset"]
    del s1


def test_stats_of_an_empty_cgroup(env):
    m = env.manager()
    s = m.stats()
    assert s["pids"] == {} and s["intel_rdt"] == {} and s["network_interfaces"] is None
    # runc 1.1's shape: these objects are always present
    assert {"usage", "throttling"} <= set(s["cpu"])
    assert {"usage", "swap", "kernel", "kernelTCP"} <= set(s["memory"])
    assert "failcnt" in s["memory"]["usage"] and "limit" in s["memory"]["usage"]
