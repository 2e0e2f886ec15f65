"""features, ps, update, events, checkpoint/restore with real containers, and the small parts of
the runc contract containerd and podman depend on (GUIDE.md section 1)."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from runtime.container import Container
from runtime.events import parse_duration
from runtime.spec import NAMESPACE_TYPES, SPEC_VERSION
from runtime.update import parse_size


def wait_for(pred, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def start(runp, bundle, cid: str, *args: str, resources: dict | None = None) -> int:
    """Create and start a container running `args`; returns its init pid."""
    if resources:
        bundle.config["linux"]["resources"] = resources
    bundle.set_args(*args)
    runp("run", "-d", "--bundle", str(bundle.path), cid)
    return runp.state(cid)["pid"]


def cgroup_file(runp, cid: str, controller: str, name: str) -> str:
    d = Container(str(runp.root), cid).cgroup().path(controller)
    with open(os.path.join(d, name)) as f:
        return f.read().strip()


# --- features -----------------------------------------------------------------------------------

def test_features_document(runp):
    p = runp("features")
    assert p.stderr == b""
    f = json.loads(p.stdout)
    assert f["ociVersionMin"] == "1.0.0" and f["ociVersionMax"] == SPEC_VERSION
    assert f["hooks"] == ["prestart", "createRuntime", "createContainer", "startContainer",
                          "poststart", "poststop"]
    opts = set(f["mountOptions"])
    assert {"ro", "rw", "rbind", "bind", "nosuid", "rprivate", "rro", "tmpcopyup", "idmap",
            "ridmap"} <= opts
    lx = f["linux"]
    assert lx["namespaces"] == list(NAMESPACE_TYPES)
    assert lx["capabilities"][0] == "CAP_CHOWN" and "CAP_CHECKPOINT_RESTORE" in lx["capabilities"]
    assert lx["cgroup"] == {"v1": True, "v2": True, "systemd": True,
                            "systemdUser": lx["cgroup"]["systemdUser"], "rdma": True}
    assert lx["mountExtensions"] == {"idmap": {"enabled": True}}  # (Linux 5.12+, as here)
    assert lx["intelRdt"] == {"enabled": True, "schemata": True, "monitoring": True}
    assert lx["netDevices"] == {"enabled": True}
    assert lx["memoryPolicy"]["modes"] == sorted(
        ["MPOL_DEFAULT", "MPOL_BIND", "MPOL_INTERLEAVE", "MPOL_WEIGHTED_INTERLEAVE",
         "MPOL_PREFERRED", "MPOL_PREFERRED_MANY", "MPOL_LOCAL"])
    assert lx["memoryPolicy"]["flags"] == ["MPOL_F_NUMA_BALANCING", "MPOL_F_RELATIVE_NODES",
                                           "MPOL_F_STATIC_NODES"]
    sc = lx["seccomp"]
    assert sc["enabled"] is True
    assert "SCMP_ARCH_X86_64" in sc["archs"]
    assert set(sc["supportedFlags"]) <= set(sc["knownFlags"])
    # (the criu annotations: tests/test_checkpoint.py)


def test_features_seccomp_claims_hold(runp):
    """Every architecture, action, operator and supported flag the document names compiles."""
    from runtime.linux import seccomp
    sc = json.loads(runp("features").stdout)["linux"]["seccomp"]
    for arch in sc["archs"]:
        assert seccomp.build({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch],
                              "syscalls": [{"names": ["chroot"], "action": "SCMP_ACT_ERRNO"}]})
    for action in sc["actions"]:
        cfg = {"defaultAction": "SCMP_ACT_ALLOW",
               "syscalls": [{"names": ["chroot"], "action": action}]}
        if action == "SCMP_ACT_NOTIFY":
            cfg["listenerPath"] = "/nonexistent"
        assert seccomp.build(cfg) is not None
    for op in sc["operators"]:
        seccomp.build({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{
            "names": ["personality"], "action": "SCMP_ACT_ERRNO",
            "args": [{"index": 0, "value": 8, "valueTwo": 8, "op": op}]}]})
    for flag in sc["supportedFlags"]:
        seccomp.build({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]})


def test_features_mount_options_are_known(bundle, runp, cid):
    """A tmpfs mounted with every flag-like option the document names (the exclusive ones
    left out) is accepted."""
    sample = ["ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "rprivate",
              "rnosuid", "strictatime", "tmpcopyup"]
    opts = set(json.loads(runp("features").stdout)["mountOptions"])
    assert set(sample) <= opts
    bundle.config["mounts"].append({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                                    "options": sample})
    bundle.set_args("sh", "-c", "grep ' /tmp ' /proc/mounts")
    p = runp("run", "--bundle", str(bundle.path), cid)
    line = p.stdout.decode()
    assert "ro," in line and "nosuid" in line and "noexec" in line


# --- ps -----------------------------------------------------------------------------------------

def test_ps_json_is_only_the_pid_array(runp, bundle, cid):
    init = start(runp, bundle, cid, "sh", "-c", "sleep 100 & sleep 101")
    pids = wait_for(lambda: (lambda v: len(v) == 2 and v)(json.loads(runp("ps", "--format", "json", cid).stdout)),
                    what="two processes")
    p = runp("ps", "--format", "json", cid)
    assert p.stderr == b""
    assert p.stdout == (json.dumps(sorted(pids, key=pids.index), separators=(",", ":")) + "\n").encode()
    assert init in pids
    for pid in pids:
        assert open(f"/proc/{pid}/comm").read().strip() == "sleep"


def test_ps_table_and_ps_args(runp, bundle, cid):
    init = start(runp, bundle, cid, "sleep", "100")
    out = runp("ps", cid).stdout.decode().splitlines()
    assert out[0].split()[:2] == ["UID", "PID"]
    assert len(out) == 2 and out[1].split()[1] == str(init) and "sleep 100" in out[1]
    out = runp("ps", cid, "-o", "pid,comm").stdout.decode().splitlines()
    assert [line.split() for line in out] == [["PID", "COMMAND"], [str(init), "sleep"]]
    p = runp("ps", cid, "-o", "comm", check=False)
    assert p.returncode == 1 and b"couldn't find PID field" in p.stderr


def test_ps_stopped_and_unknown(runp, bundle, cid):
    start(runp, bundle, cid, "true")
    wait_for(lambda: runp.state(cid)["status"] == "stopped", what="the container to stop")
    assert runp("ps", "--format", "json", cid).stdout == b"[]\n"
    p = runp("ps", "--format", "json", "no-such-container", check=False)
    assert p.returncode == 1 and b"does not exist" in p.stderr


# --- update -------------------------------------------------------------------------------------

def test_parse_size():
    assert parse_size("1024") == 1024
    assert parse_size("512m") == 512 << 20
    assert parse_size("1.5g") == 3 << 29
    assert parse_size("64MiB") == 64 << 20
    assert parse_size("2kb") == 2048
    assert parse_size("-1") == -1
    for bad in ("", "m", "12x", "-5", "1..5g"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_update_flags(runp, bundle, cid):
    start(runp, bundle, cid, "sleep", "100", resources={"memory": {"limit": 64 << 20}})
    runp("update", "--memory", "128m", "--memory-reservation", "32m", "--pids-limit", "30",
         "--cpu-share", "512", "--cpu-period", "100000", "--cpu-quota", "50000",
         "--cpuset-cpus", "0", cid)
    assert cgroup_file(runp, cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert cgroup_file(runp, cid, "memory", "memory.soft_limit_in_bytes") == str(32 << 20)
    assert cgroup_file(runp, cid, "pids", "pids.max") == "30"
    assert cgroup_file(runp, cid, "cpu", "cpu.shares") == "512"
    assert cgroup_file(runp, cid, "cpu", "cpu.cfs_quota_us") == "50000"
    assert cgroup_file(runp, cid, "cpuset", "cpuset.cpus") == "0"
    runp("update", "--cpu-shares", "256", "--pids-limit", "-1", cid)
    assert cgroup_file(runp, cid, "cpu", "cpu.shares") == "256"
    assert cgroup_file(runp, cid, "pids", "pids.max") == "max"
    # untouched fields keep their values
    assert cgroup_file(runp, cid, "memory", "memory.limit_in_bytes") == str(128 << 20)
    assert runp.state(cid)["status"] == "running"


def test_update_resources_stdin_and_file(runp, bundle, cid, tmp_path):
    start(runp, bundle, cid, "sleep", "100")
    res = {"memory": {"limit": 96 << 20}, "pids": {"limit": 25}}
    p = runp("update", "--resources", "-", cid, input=json.dumps(res).encode())
    assert p.stdout == p.stderr == b""
    assert cgroup_file(runp, cid, "memory", "memory.limit_in_bytes") == str(96 << 20)
    assert cgroup_file(runp, cid, "pids", "pids.max") == "25"
    f = tmp_path / "res.json"
    f.write_text(json.dumps({"cpu": {"shares": 300}}))
    runp("update", f"--resources={f}", cid)
    assert cgroup_file(runp, cid, "cpu", "cpu.shares") == "300"


def test_update_errors(runp, bundle, cid, make_bundle):
    start(runp, bundle, cid, "sleep", "100")
    p = runp("update", "--memory", "lots", cid, check=False)
    assert p.returncode == 1 and b"--memory" in p.stderr
    p = runp("update", "-r", "-", cid, input=b'{"memory": {"limit": "x"}}', check=False)
    assert p.returncode == 1 and b"memory.limit" in p.stderr and b"standard input" in p.stderr
    p = runp("update", "-r", "-", cid, input=b"{not json", check=False)
    assert p.returncode == 1 and b"invalid JSON" in p.stderr
    p = runp("update", "--memory", "64m", "no-such-container", check=False)
    assert p.returncode == 1 and b"does not exist" in p.stderr
    runp("kill", cid, "KILL")
    wait_for(lambda: runp.state(cid)["status"] == "stopped", what="the container to stop")
    p = runp("update", "--memory", "64m", cid, check=False)
    assert p.returncode == 1 and b"container not running" in p.stderr


# --- events -------------------------------------------------------------------------------------

def test_parse_duration():
    assert parse_duration("5s") == 5
    assert parse_duration("100ms") == pytest.approx(0.1)
    assert parse_duration("1m30s") == 90
    assert parse_duration("1.5h") == 5400
    assert parse_duration("2") == 2
    for bad in ("", "s", "5x", "1m3"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_events_stats(runp, bundle, cid):
    start(runp, bundle, cid, "sleep", "100", resources={"memory": {"limit": 64 << 20},
                                                       "pids": {"limit": 20}})
    p = runp("events", "--stats", cid)
    lines = p.stdout.decode().splitlines()
    assert len(lines) == 1 and p.stderr == b""
    ev = json.loads(lines[0])
    assert ev["type"] == "stats" and ev["id"] == cid
    assert ev["data"]["memory"]["usage"]["limit"] == 64 << 20
    assert ev["data"]["pids"]["current"] >= 1 and ev["data"]["pids"]["limit"] == 20
    assert ev["data"]["cpu"]["usage"]["total"] > 0


def test_events_stream_reports_oom_and_ends(runp, bundle, cid):
    """A process the OOM killer kills shows up as an "oom" event; the stream ends with the
    container."""
    start(runp, bundle, cid, "sh", "-c", "sleep 1; exec tail /dev/zero",
          resources={"memory": {"limit": 16 << 20, "swap": 16 << 20}})
    p = runp("events", "--interval", "300ms", cid, timeout=60)
    events = [json.loads(line) for line in p.stdout.decode().splitlines()]
    kinds = [e["type"] for e in events]
    assert "stats" in kinds and "oom" in kinds, kinds
    assert all(e["id"] == cid for e in events)
    assert runp.state(cid)["status"] == "stopped"


def test_events_errors(runp, bundle, cid):
    p = runp("events", "--stats", "no-such-container", check=False)
    assert p.returncode == 1 and b"does not exist" in p.stderr
    p = runp("events", "--interval", "soon", "x", check=False)
    assert p.returncode == 1 and b"--interval" in p.stderr
    start(runp, bundle, cid, "true")
    wait_for(lambda: runp.state(cid)["status"] == "stopped", what="the container to stop")
    p = runp("events", "--stats", cid, check=False)
    assert p.returncode == 1 and b"container not running" in p.stderr


# --- the contract details the engines rely on ---------------------------------------------------

def test_delete_force_of_unknown_id_succeeds(runp):
    assert runp("delete", "--force", "never-existed").returncode == 0
    p = runp("delete", "never-existed", check=False)
    assert p.returncode == 1 and b"does not exist" in p.stderr


def test_kill_all_on_stopped_container_succeeds(runp, bundle, cid):
    start(runp, bundle, cid, "true")
    wait_for(lambda: runp.state(cid)["status"] == "stopped", what="the container to stop")
    assert runp("kill", "--all", cid, "9").returncode == 0
    p = runp("kill", cid, "9", check=False)
    assert p.returncode == 1 and b"container not running" in p.stderr


def test_pid_file_written_before_create_returns(runp, bundle, cid, tmp_path):
    pf = tmp_path / "pids" / "init.pid"
    pf.parent.mkdir()
    bundle.set_args("sleep", "100")
    runp("create", "--bundle", str(bundle.path), "--pid-file", str(pf), cid)
    assert pf.read_text() == str(runp.state(cid)["pid"])  # decimal, no newline
    assert os.listdir(pf.parent) == ["init.pid"]  # the temporary file was renamed


def test_json_log_lines(runp, tmp_path):
    log = tmp_path / "log.json"
    p = runp("--log", str(log), "--log-format", "json", "kill", "no-such-container", "9",
             check=False)
    assert p.returncode == 1
    lines = log.read_text().splitlines()
    last = json.loads(lines[-1])
    assert last["level"] == "error" and "does not exist" in last["msg"]
    assert last["time"].endswith("Z") and "T" in last["time"]
    for line in lines:
        json.loads(line)


def test_version_lines(runp):
    lines = runp("--version").stdout.decode().splitlines()
    assert lines[0].startswith("runp version ")
    assert lines[1].startswith("commit: ")
    assert lines[2] == f"spec: {SPEC_VERSION}"


def test_leaked_fd3_does_not_reach_the_container(runp, bundle, cid, tmp_path):
    """containerd's shim starts create with its socket on fd 3, without close-on-exec."""
    bundle.set_args("sh", "-c", "ls /proc/1/fd; true")
    # the shell opens fd 3 without close-on-exec, then becomes runp
    p = subprocess.run(["sh", "-c", 'exec "$@" 3<"$0"', str(tmp_path),
                        *runp.cmd("run", "--bundle", str(bundle.path), cid)],
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == [b"0", b"1", b"2"]
