"""runp's own JSON Schemas (schemas/) and `runp check` (runtime/check.py): no containers, fast."""
from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parent.parent
if str(TOP) not in sys.path:
    sys.path.insert(0, str(TOP))

from runtime import check  # noqa: E402
from runtime.spec import default_spec  # noqa: E402

SCHEMAS = TOP / "schemas"
NEW_NS = len(default_spec()["linux"]["namespaces"])  # where an appended namespace lands
SCHEMA_FILES = ("defs.json", "config-schema.json", "config-linux.json", "state-schema.json")


def _check(cfg, bundle: Path) -> list[str]:
    """What `runp check` (check.check_bundle) says about cfg, in a bundle with a rootfs."""
    (bundle / "rootfs").mkdir(exist_ok=True)
    (bundle / "config.json").write_text(json.dumps(cfg))
    return check.check_bundle(str(bundle))


# --- the schema files themselves -----------------------------------------------------------------

@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_file_is_valid_2020_12(name):
    import jsonschema
    doc = json.loads((SCHEMAS / name).read_text())
    jsonschema.Draft202012Validator.check_schema(doc)
    assert doc["$id"].endswith("/" + name)


def _refs(node, out):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                out.append(v)
            else:
                _refs(v, out)
    elif isinstance(node, list):
        for v in node:
            _refs(v, out)
    return out


def test_every_ref_resolves():
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012
    docs = {n: json.loads((SCHEMAS / n).read_text()) for n in SCHEMA_FILES}
    registry = Registry().with_resources(
        (d["$id"], DRAFT202012.create_resource(d)) for d in docs.values())
    count = 0
    for d in docs.values():
        resolver = registry.resolver(base_uri=d["$id"])
        for ref in _refs(d, []):
            assert resolver.lookup(ref).contents is not None, ref
            count += 1
    assert count > 50


def test_schema_dir_is_the_checkout():
    assert check.schema_dir() == SCHEMAS


# --- default_spec ------------------------------------------------------------------------------

@pytest.mark.parametrize("rootless", [False, True])
def test_default_spec_is_valid(rootless, tmp_path):
    assert _check(default_spec(rootless=rootless), tmp_path) == []


@pytest.mark.parametrize("rootless", [False, True])
def test_check_bundle_default_spec(tmp_path, rootless):
    (tmp_path / "rootfs").mkdir()
    (tmp_path / "config.json").write_text(json.dumps(default_spec(rootless=rootless)))
    assert check.check_bundle(str(tmp_path)) == []


# --- broken configs: each names the JSON path ----------------------------------------------------

def _set(path, value):
    def f(c):
        node = c
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    return f


def _del(*path):
    def f(c):
        node = c
        for p in path[:-1]:
            node = node[p]
        del node[path[-1]]
    return f


def _append(path, value):
    def f(c):
        node = c
        for p in path:
            node = node[p]
        node.append(value)
    return f


SECCOMP = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
           "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW",
                         "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]}]}


def _seccomp(**over):
    def f(c):
        s = copy.deepcopy(SECCOMP)
        for k, v in over.items():
            if k == "op":
                s["syscalls"][0]["args"][0]["op"] = v
            elif k == "names":
                s["syscalls"][0]["names"] = v
            else:
                s[k] = v
        c["linux"]["seccomp"] = s
    return f


BROKEN = [
    ("missing ociVersion", _del("ociVersion"), "ociVersion", "is required"),
    ("ociVersion not semver", _set(["ociVersion"], "1.3"), "ociVersion", "SemVer"),
    ("ociVersion wrong type", _set(["ociVersion"], 1), "ociVersion", "must be a string, not integer"),
    ("missing root", _del("root"), "root", "is required"),
    ("root.path wrong type", _set(["root", "path"], ["rootfs"]), "root.path", "must be a string"),
    ("terminal not bool", _set(["process", "terminal"], "yes"), "process.terminal", "must be a boolean"),
    ("negative uid", _set(["process", "user", "uid"], -1), "process.user.uid", "between 0 and 4294967295"),
    ("uid too large", _set(["process", "user", "uid"], 1 << 32), "process.user.uid", "out of range"),
    ("float gid", _set(["process", "user", "gid"], 1.0), "process.user.gid", "must be an integer"),
    ("missing gid", _del("process", "user", "gid"), "process.user.gid", "is required"),
    ("negative additional gid", _set(["process", "user", "additionalGids"], [1, -2]),
     "process.user.additionalGids[1]", "out of range"),
    ("relative cwd", _set(["process", "cwd"], "tmp"), "process.cwd", "not an absolute path"),
    ("missing cwd", _del("process", "cwd"), "process.cwd", "is required"),
    ("empty args", _set(["process", "args"], []), "process.args", "at least one element"),
    ("args not strings", _set(["process", "args"], ["sh", 1]), "process.args[1]", "must be a string"),
    ("bad capability name", _set(["process", "capabilities", "bounding"], ["CAP_KILL", "CAP_CHOWN", "kill"]),
     "process.capabilities.bounding[2]", "not a capability name"),
    ("bad rlimit type", _set(["process", "rlimits"], [{"type": "NOFILE", "soft": 1, "hard": 1}]),
     "process.rlimits[0].type", "not an rlimit name"),
    ("negative rlimit", _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "soft": -1, "hard": 1}]),
     "process.rlimits[0].soft", "out of range"),
    ("rlimit missing hard", _set(["process", "rlimits"], [{"type": "RLIMIT_NOFILE", "soft": 1}]),
     "process.rlimits[0].hard", "is required"),
    ("duplicate rlimit", _append(["process", "rlimits"], {"type": "RLIMIT_NOFILE", "soft": 1, "hard": 1}),
     "process.rlimits[1].type", "duplicate rlimit"),
    ("oomScoreAdj out of range", _set(["process", "oomScoreAdj"], 1001), "process.oomScoreAdj", "between -1000 and 1000"),
    ("bad scheduler policy", _set(["process", "scheduler"], {"policy": "SCHED_FAST"}),
     "process.scheduler.policy", "is not one of"),
    ("bad ioPriority class", _set(["process", "ioPriority"], {"class": "RT", "priority": 0}),
     "process.ioPriority.class", "is not one of"),
    ("ioPriority out of range", _set(["process", "ioPriority"], {"class": "IOPRIO_CLASS_BE", "priority": 8}),
     "process.ioPriority.priority", "between 0 and 7"),
    ("bad execCPUAffinity", _set(["process", "execCPUAffinity"], {"initial": "0-3,x"}),
     "process.execCPUAffinity.initial", "0-3,7"),
    ("consoleSize missing width", _set(["process", "consoleSize"], {"height": 24}),
     "process.consoleSize.width", "is required"),
    ("mount without destination", _set(["mounts", 2], {"type": "tmpfs"}), "mounts[2].destination", "is required"),
    ("relative mount destination", _set(["mounts", 3, "destination"], "dev/shm"),
     "mounts[3].destination", "not an absolute path"),
    ("mount uidMappings alone", _set(["mounts", 0, "uidMappings"], [{"containerID": 0, "hostID": 1, "size": 1}]),
     "mounts[0].uidMappings", "gidMappings"),
    ("relative hook path", _set(["hooks"], {"createRuntime": [{"path": "bin/hook"}]}),
     "hooks.createRuntime[0].path", "not an absolute path"),
    ("zero hook timeout", _set(["hooks"], {"poststop": [{"path": "/bin/true", "timeout": 0}]}),
     "hooks.poststop[0].timeout", "greater than zero"),
    ("annotation value not string", _set(["annotations"], {"com.example.n": 1}),
     "annotations.com.example.n", "must be a string"),
    ("unknown namespace type", _append(["linux", "namespaces"], {"type": "net"}),
     f"linux.namespaces[{NEW_NS}].type", '"net" is not one of'),
    ("duplicate namespace", _append(["linux", "namespaces"], {"type": "pid"}),
     f"linux.namespaces[{NEW_NS}].type", "duplicate namespace"),
    ("relative namespace path", _set(["linux", "namespaces", 1], {"type": "network", "path": "proc/1/ns/net"}),
     "linux.namespaces[1].path", "not an absolute path"),
    ("negative hostID", _set(["linux", "uidMappings"], [{"containerID": 0, "hostID": -5, "size": 1}]),
     "linux.uidMappings[0].hostID", "out of range"),
    ("idmap missing size", _set(["linux", "gidMappings"], [{"containerID": 0, "hostID": 5}]),
     "linux.gidMappings[0].size", "is required"),
    ("bad clock", _set(["linux", "timeOffsets"], {"realtime": {"secs": 1}}),
     "linux.timeOffsets.realtime", "not a valid key"),
    ("device type", _set(["linux", "devices"], [{"type": "x", "path": "/dev/x", "major": 1, "minor": 1}]),
     "linux.devices[0].type", "is not one of"),
    ("device without major", _set(["linux", "devices"], [{"type": "c", "path": "/dev/x", "minor": 1}]),
     "linux.devices[0].major", "is required"),
    ("device relative path", _set(["linux", "devices"], [{"type": "p", "path": "fifo"}]),
     "linux.devices[0].path", "not an absolute path"),
    ("cgroup rule allow missing", _set(["linux", "resources", "devices"], [{"access": "rwm"}]),
     "linux.resources.devices[0].allow", "is required"),
    ("cgroup rule bad access", _set(["linux", "resources", "devices"], [{"allow": True, "access": "rwx"}]),
     "linux.resources.devices[0].access", "r, w and m"),
    ("memory limit float", _set(["linux", "resources", "memory"], {"limit": 1.5}),
     "linux.resources.memory.limit", "must be an integer"),
    ("swappiness > 100", _set(["linux", "resources", "memory"], {"swappiness": 101}),
     "linux.resources.memory.swappiness", "between 0 and 100"),
    ("cpu shares negative", _set(["linux", "resources", "cpu"], {"shares": -1}),
     "linux.resources.cpu.shares", "out of range"),
    ("cpu burst > quota", _set(["linux", "resources", "cpu"], {"quota": 1000, "burst": 2000}),
     "linux.resources.cpu.burst", "larger than quota"),
    ("cpus list", _set(["linux", "resources", "cpu"], {"cpus": "0-3;7"}), "linux.resources.cpu.cpus", "0-3,7"),
    ("pids string", _set(["linux", "resources", "pids"], {"limit": "max"}),
     "linux.resources.pids.limit", "must be an integer"),
    ("blkio weight uint16", _set(["linux", "resources", "blockIO"], {"weight": 70000}),
     "linux.resources.blockIO.weight", "between 0 and 65535"),
    ("weightDevice without weight", _set(["linux", "resources", "blockIO"], {"weightDevice": [{"major": 8, "minor": 0}]}),
     "linux.resources.blockIO.weightDevice[0]", "weight or leafWeight"),
    ("throttle without rate", _set(["linux", "resources", "blockIO"], {"throttleReadBpsDevice": [{"major": 8, "minor": 0}]}),
     "linux.resources.blockIO.throttleReadBpsDevice[0].rate", "is required"),
    ("hugepage size", _set(["linux", "resources", "hugepageLimits"], [{"pageSize": "2M", "limit": 1}]),
     "linux.resources.hugepageLimits[0].pageSize", "page size"),
    ("net priority", _set(["linux", "resources", "network"], {"priorities": [{"name": "eth0", "priority": -1}]}),
     "linux.resources.network.priorities[0].priority", "out of range"),
    ("rdma empty entry", _set(["linux", "resources", "rdma"], {"mlx5_1": {}}),
     "linux.resources.rdma.mlx5_1", "hcaHandles or hcaObjects"),
    ("unified value not string", _set(["linux", "resources", "unified"], {"memory.max": 1024}),
     "linux.resources.unified.memory.max", "must be a string"),
    ("bad rootfsPropagation", _set(["linux", "rootfsPropagation"], "sharedd"),
     "linux.rootfsPropagation", '"sharedd" is not one of'),
    ("unknown seccomp default action", _seccomp(defaultAction="SCMP_ACT_DENY"),
     "linux.seccomp.defaultAction", "is not one of"),
    ("unknown seccomp arch", _seccomp(architectures=["SCMP_ARCH_AMD64"]),
     "linux.seccomp.architectures[0]", "is not one of"),
    ("unknown seccomp flag", _seccomp(flags=["SECCOMP_FILTER_FLAG_NEW_LISTENER"]),
     "linux.seccomp.flags[0]", "is not one of"),
    ("unknown seccomp operator", _seccomp(op="SCMP_CMP_IN"),
     "linux.seccomp.syscalls[0].args[0].op", "is not one of"),
    ("empty syscall names", _seccomp(names=[]), "linux.seccomp.syscalls[0].names", "at least one element"),
    ("listenerMetadata without listenerPath", _seccomp(listenerMetadata="x"),
     "linux.seccomp.listenerMetadata", "listenerPath"),
    ("sysctl value not string", _set(["linux", "sysctl"], {"net.ipv4.ip_forward": 1}),
     "linux.sysctl.net.ipv4.ip_forward", "must be a string"),
    ("relative masked path", _set(["linux", "maskedPaths"], ["/proc/kcore", "proc/keys"]),
     "linux.maskedPaths[1]", "not an absolute path"),
    ("relative readonly path", _set(["linux", "readonlyPaths"], ["sys"]),
     "linux.readonlyPaths[0]", "not an absolute path"),
    ("personality domain", _set(["linux", "personality"], {"domain": "LINUX64"}),
     "linux.personality.domain", "is not one of"),
    ("memBwSchema prefix", _set(["linux", "intelRdt"], {"memBwSchema": "L3:0=7f"}),
     "linux.intelRdt.memBwSchema", "MB:"),
    ("schemata newline", _set(["linux", "intelRdt"], {"schemata": ["L3:0=7f\nMB:0=20"]}),
     "linux.intelRdt.schemata[0]", "newlines"),
    ("netDevices entry not object", _set(["linux", "netDevices"], {"eth1": "eth0"}),
     "linux.netDevices.eth1", "must be an object"),
    ("memoryPolicy mode", _set(["linux", "memoryPolicy"], {"mode": "MPOL_ANY"}),
     "linux.memoryPolicy.mode", "is not one of"),
]


@pytest.mark.parametrize("mutate,path,problem", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_config(mutate, path, problem, tmp_path):
    cfg = default_spec()
    mutate(cfg)
    lines = _check(cfg, tmp_path)
    hits = [ln for ln in lines if ln.startswith(f"config.json: {path}: ")]
    assert hits, f"no problem reported at {path}: {lines}"
    assert any(problem in ln for ln in hits), hits


def test_every_problem_is_reported_sorted_by_path(tmp_path):
    cfg = default_spec()
    del cfg["ociVersion"]
    cfg["process"]["capabilities"]["bounding"][2] = "cap_kill"
    cfg["process"]["capabilities"]["bounding"] += ["CAP_SYS_ADMIN"] * 8 + ["x"]
    cfg["linux"]["namespaces"].append({"type": "foo"})
    cfg["hooks"] = {"prestart": [{"path": "hook"}]}
    lines = _check(cfg, tmp_path)
    paths = [ln.split(": ")[1] for ln in lines]
    assert paths == ["hooks.prestart[0].path", f"linux.namespaces[{NEW_NS}].type", "ociVersion",
                     "process.capabilities.bounding[2]", "process.capabilities.bounding[11]"]


def test_unknown_properties_are_allowed(tmp_path):
    cfg = default_spec()
    cfg["org.example.extension"] = {"x": 1}
    cfg["process"]["somethingNew"] = True
    cfg["linux"]["resources"]["futureController"] = {"limit": 1}
    cfg["hooks"] = {"futureHook": [{"path": "relative is fine here, unknown kind"}]}
    assert _check(cfg, tmp_path) == []


def test_windows_config_skips_posix_requirements(tmp_path):
    cfg = {"ociVersion": "1.3.0", "process": {"cwd": "C:\\", "commandLine": "cmd.exe", "user": {"username": "x"}},
           "windows": {"layerFolders": []}}
    assert _check(cfg, tmp_path) == []


def test_not_an_object(tmp_path):
    assert _check([], tmp_path) == ["config.json: must be an object, not array"]


# --- check_bundle: files ----------------------------------------------------------------------------

def test_missing_config(tmp_path):
    lines = check.check_bundle(str(tmp_path))
    assert len(lines) == 1 and "no such file or directory" in lines[0]


def test_invalid_json(tmp_path):
    (tmp_path / "config.json").write_text('{"ociVersion": ')
    lines = check.check_bundle(str(tmp_path))
    assert len(lines) == 1 and lines[0].startswith("config.json: invalid JSON")


def test_missing_rootfs(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(default_spec()))
    assert check.check_bundle(str(tmp_path)) == [
        f"config.json: root.path: {tmp_path / 'rootfs'} does not exist"]


def test_rootfs_relative_to_bundle_not_cwd(tmp_path, monkeypatch):
    (tmp_path / "b" / "rootfs").mkdir(parents=True)
    (tmp_path / "b" / "config.json").write_text(json.dumps(default_spec()))
    monkeypatch.chdir(tmp_path)
    assert check.check_bundle("b") == []


# --- state ---------------------------------------------------------------------------------------

STATE = {"ociVersion": "1.3.0", "id": "x", "status": "running", "pid": 1, "bundle": "/b"}


def validate_state(obj) -> list[str]:
    """Problems of a state object with schemas/state-schema.json, in `runp check`'s line format.
    Only tests need it: runp writes states, nobody hands it one to check."""
    return check._lines("state", check._schema_problems("state-schema.json", obj))


def test_state_valid():
    assert validate_state(STATE) == []


def test_state_runc_extras_valid():
    st = dict(STATE, status="paused", rootfs="/b/rootfs", created="2024-05-01T10:20:30.123456789Z",
              owner="", annotations={"a": "b"})
    assert validate_state(st) == []
    assert validate_state(dict(STATE, status="stopped", pid=0)) == []
    assert validate_state({k: v for k, v in STATE.items() if k != "pid"} | {"status": "creating"}) == []


def test_state_bad_status():
    lines = validate_state(dict(STATE, status="bogus"))
    assert len(lines) == 1 and lines[0].startswith("state: status: ") and "bogus" in lines[0]


@pytest.mark.parametrize("change,path", [
    ({"pid": None}, "pid"),          # required when running
    ({"pid": 0}, "pid"),             # a running container has a real pid
    ({"bundle": "b"}, "bundle"),
    ({"id": ""}, "id"),
    ({"id": None}, "id"),
    ({"annotations": {"k": 1}}, "annotations.k"),
])
def test_state_broken(change, path):
    st = dict(STATE)
    for k, v in change.items():
        if v is None:
            del st[k]
        else:
            st[k] = v
    lines = validate_state(st)
    assert any(ln.startswith(f"state: {path}: ") for ln in lines), lines


# --- hot path --------------------------------------------------------------------------------------

def test_jsonschema_stays_off_the_cli_import_path():
    code = ("import sys; import runtime.cli, runtime.check; "
            "assert 'jsonschema' not in sys.modules, 'jsonschema imported'")
    subprocess.run([sys.executable, "-c", code], cwd=TOP, check=True)
