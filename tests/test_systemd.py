"""The systemd cgroup driver, the parts that need no systemd: unit naming, the translation of
linux.resources and org.systemd.property.* annotations into unit properties (against runc's
rules), the D-Bus client (wire format, and a real conversation with a private dbus-daemon), and
`--systemd-cgroup` on a host where systemd is not PID 1 (this one): runc's one-line error and
nothing left behind.

The driver against a real systemd runs in a VM booted with systemd (tests/test_systemd_vm.py).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import new_id
from runtime.errors import ConfigError, RuntimeFailure
from runtime.linux.cgroups import dbus, systemd as sd
from runtime.linux.cgroups.devices import rules_from_config, with_defaults

INF = 2**64 - 1


def props(lst: list) -> dict:
    """[(name, (sig, value))] -> {name: (sig, value)}, the last value of a name winning."""
    return {name: v for name, v in lst}


# --- naming ---------------------------------------------------------------------------------------

def test_unit_name_and_cgroup_path():
    u = sd.parse("system.slice:runp:t1", "x")
    assert (u["unit"], u["slice"], u["path"]) == ("runp-t1.scope", "system.slice",
                                                  "/system.slice/runp-t1.scope")
    u = sd.parse("kubepods-besteffort-pod12.slice:cri-containerd:abc", "x")
    assert u["path"] == ("/kubepods.slice/kubepods-besteffort.slice/"
                         "kubepods-besteffort-pod12.slice/cri-containerd-abc.scope")
    assert sd.parse("", "c1")["unit"] == "runc-c1.scope"           # runc's default
    assert sd.parse("", "c1")["slice"] == "system.slice"
    assert sd.parse("", "c1", user=True)["slice"] == "user.slice"
    assert sd.parse(":libpod:c2", "x")["path"] == "/system.slice/libpod-c2.scope"
    assert sd.parse("machine.slice:x:my.slice", "x")["unit"] == "my.slice"  # a slice: as named
    assert sd.parse("-.slice:p:n", "x")["path"] == "/p-n.scope"


@pytest.mark.parametrize("path", ["/default/x", "a:b", "a:b:c:d", "system.slice:p:",
                                  "bad-.slice:p:n", "x:p:n", "system.slice:p:a/b"])
def test_bad_cgroups_path_names_the_field(path):
    with pytest.raises(ConfigError) as e:
        sd.parse(path, "x")
    assert e.value.path == "linux.cgroupsPath"


# --- resources ------------------------------------------------------------------------------------

def test_v2_memory_cpu_pids_io_properties():
    r = {"memory": {"limit": 64 << 20, "reservation": 32 << 20, "swap": 96 << 20},
         "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "cpus": "0-1", "mems": "0"},
         "pids": {"limit": 42}, "blockIO": {"weight": 500}}
    p = props(sd.resource_properties(r, v1=False, version=252, devices=False))
    assert p["MemoryMax"] == ("t", 64 << 20)
    assert p["MemoryLow"] == ("t", 32 << 20)
    assert p["MemorySwapMax"] == ("t", 32 << 20)          # v2: swap alone (runc's conversion)
    assert p["CPUWeight"] == ("t", 100)                   # the fs driver's cpu.weight for 1024
    assert p["CPUQuotaPerSecUSec"] == ("t", 500000)
    assert p["CPUQuotaPeriodUSec"] == ("t", 100000)
    assert p["AllowedCPUs"] == ("ay", b"\x03")
    assert p["AllowedMemoryNodes"] == ("ay", b"\x01")
    assert p["TasksMax"] == ("t", 42)
    assert p["IOWeight"] == ("t", 1 + (500 - 10) * 9999 // 990)
    assert "MemoryLimit" not in p and "CPUShares" not in p


def test_v1_properties_use_the_legacy_names():
    r = {"memory": {"limit": 1 << 30}, "cpu": {"shares": 512}, "blockIO": {"weight": 300},
         "pids": {"limit": -1}}
    p = props(sd.resource_properties(r, v1=True, version=252, devices=False))
    assert p == {"MemoryLimit": ("t", 1 << 30), "CPUShares": ("t", 512),
                 "BlockIOWeight": ("t", 300), "TasksMax": ("t", INF)}


def test_cpu_quota_rounds_up_to_10ms_and_old_systemd_gets_no_period():
    p = props(sd.resource_properties({"cpu": {"quota": 12345, "period": 100000}}, False, 252,
                                     False))
    assert p["CPUQuotaPerSecUSec"] == ("t", 130000)       # 123.45 ms/s -> 130 ms/s
    p = props(sd.resource_properties({"cpu": {"quota": 20000}}, False, 0, False))
    assert p == {"CPUQuotaPerSecUSec": ("t", 200000)}      # default period 100 ms, no version
    p = props(sd.resource_properties({"cpu": {"quota": -1, "period": 50000}}, False, 241, False))
    assert p == {"CPUQuotaPerSecUSec": ("t", INF)}         # 241: no CPUQuotaPeriodUSec yet
    assert props(sd.resource_properties({"cpu": {"cpus": "0"}}, False, 243, False)) == {}


def test_cpuset_bitmask_is_little_endian_per_byte():
    assert sd.range_to_bits("0-2,9") == bytes([0b111, 0b10])
    assert sd.range_to_bits("8") == b"\x00\x01"
    assert sd.range_to_bits(" 1 , 3-4 ,") == bytes([0b11010])
    for bad in ("", "3-1", "x", "-1"):
        with pytest.raises(ValueError):
            sd.range_to_bits(bad)
    with pytest.raises(ConfigError) as e:
        sd.resource_properties({"cpu": {"cpus": "2-1"}}, False, 252, False)
    assert e.value.path == "linux.resources.cpu.cpus"


def test_swap_errors_and_unlimited_values():
    with pytest.raises(ConfigError) as e:
        sd.resource_properties({"memory": {"limit": 100 << 20, "swap": 50 << 20}}, False, 0, False)
    assert e.value.path == "linux.resources.memory.swap"
    p = props(sd.resource_properties({"memory": {"limit": -1, "swap": -1}}, False, 0, False))
    assert p == {"MemoryMax": ("t", INF), "MemorySwapMax": ("t", INF)}
    assert sd.resource_properties({"pids": {"limit": 0}}, False, 0, False) == []


def test_unified_keys_with_a_property():
    u = {"memory.high": "100000000", "memory.min": "max", "pids.max": "7", "cpu.weight": "50",
         "cpu.max": "25000 50000", "io.max": "8:0 rbps=1", "memory.oom.group": "1"}
    p = props(sd.resource_properties({"unified": u}, False, 252, False))
    assert p == {"MemoryHigh": ("t", 100000000), "MemoryMin": ("t", INF), "TasksMax": ("t", 7),
                 "CPUWeight": ("t", 50), "CPUQuotaPeriodUSec": ("t", 50000),
                 "CPUQuotaPerSecUSec": ("t", 500000)}
    with pytest.raises(ConfigError) as e:
        sd.resource_properties({"unified": {"memory.high": "lots"}}, False, 252, False)
    assert e.value.path == "linux.resources.unified['memory.high']"
    assert sd.resource_properties({"unified": u}, True, 252, False) == []  # v1: no unified


def test_device_rules_become_a_strict_allow_list():
    rules = with_defaults(rules_from_config([{"allow": False, "access": "rwm"},
                                             {"allow": True, "type": "c", "major": 1, "minor": 3,
                                              "access": "r"}], "d"))
    p = sd.resource_properties({"devices": [{"allow": False, "access": "rwm"}]}, False, 0, True)
    assert p[0] == ("DevicePolicy", ("s", "strict"))
    assert p[1] == ("DeviceAllow", ("a(ss)", []))           # reset first (matters on update)
    allow = dict(p[2][1][1])
    # runc's default devices: mknod of anything, the usual nodes, all ptys (a device group)
    assert allow["char-*"] == "m" and allow["block-*"] == "m"
    assert allow["/dev/char/1:3"] == "rwm" and allow["/dev/char/5:2"] == "rwm"
    assert allow["char-pts"] == "rwm"
    assert all(not k.startswith("/dev/") or os.path.exists(k) or os.path.exists("/sys" + k)
               for k in allow)
    assert dict(props(sd.device_properties(rules))["DeviceAllow"][1])["/dev/char/1:3"] == "rwm"


def test_device_black_list_cannot_be_expressed():
    allow_all = rules_from_config([{"allow": True, "access": "rwm"}], "d")
    assert sd.device_properties(allow_all) == [("DevicePolicy", ("s", "auto")),
                                               ("DeviceAllow", ("a(ss)", []))]
    deny_one = rules_from_config([{"allow": True}, {"allow": False, "type": "c", "major": 1,
                                                    "minor": 3}], "d")
    assert sd.device_properties(deny_one) == [("DevicePolicy", ("s", "strict")),
                                              ("DeviceAllow", ("a(ss)", []))]


def test_unit_properties_match_runc():
    u = sd.parse("machine.slice:libpod:abc", "x")
    p = props(sd.unit_properties(u, 4242, v1=False))
    assert p["Slice"] == ("s", "machine.slice") and p["Delegate"] == ("b", True)
    assert p["PIDs"] == ("au", [4242]) and p["DefaultDependencies"] == ("b", False)
    for name in ("MemoryAccounting", "CPUAccounting", "IOAccounting", "TasksAccounting"):
        assert p[name] == ("b", True)
    assert "BlockIOAccounting" in props(sd.unit_properties(u, 1, v1=True))
    s = props(sd.unit_properties(sd.parse("machine.slice:x:pod.slice", "x"), 1, False))
    assert s["Wants"] == ("as", ["machine.slice"]) and "Delegate" not in s


# --- annotations ----------------------------------------------------------------------------------

def test_annotations_become_properties():
    a = {"org.systemd.property.CollectMode": "'inactive-or-failed'",
         "org.systemd.property.TimeoutStopSec": "uint64 5",
         "org.systemd.property.RuntimeMaxUSec": "@t 1000",
         "org.systemd.property.CPUAccounting": "true",
         "org.systemd.property.DeviceAllow": "[('/dev/fuse', 'rw')]",
         "io.kubernetes.other": "ignored"}
    assert props(sd.annotation_properties(a)) == {
        "CollectMode": ("s", "inactive-or-failed"), "TimeoutStopUSec": ("t", 5_000_000),
        "RuntimeMaxUSec": ("t", 1000), "CPUAccounting": ("b", True),
        "DeviceAllow": ("a(ss)", [("/dev/fuse", "rw")])}


@pytest.mark.parametrize("key,value", [("org.systemd.property.A1x", "1"),
                                       ("org.systemd.property.Ab", "1"),
                                       ("org.systemd.property.Foo", "[]"),
                                       ("org.systemd.property.Foo", "'unterminated"),
                                       ("org.systemd.property.TimeoutSec", "'five'")])
def test_bad_annotations_name_the_key(key, value):
    with pytest.raises(ConfigError) as e:
        sd.annotation_properties({key: value})
    assert e.value.path == f"annotations[{key!r}]"


def test_gvariant_text_form():
    t = dbus.parse_text
    assert t("42") == ("i", 42) and t("-1") == ("i", -1) and t("1.5") == ("d", 1.5)
    assert t("uint32 7") == ("u", 7) and t("int64 -3") == ("x", -3) and t("byte 0x10") == ("y", 16)
    assert t("'it\\'s'") == ("s", "it's") and t('"two words"') == ("s", "two words")
    assert t("objectpath '/a/b'") == ("o", "/a/b")
    assert t("[1, 2, 3]") == ("ai", [1, 2, 3]) and t("@as []") == ("as", [])
    assert t("('a', uint64 2)") == ("(st)", ("a", 2))
    assert t("{'k': <1>}") == ("a{sv}", {"k": ("i", 1)})
    assert t("@a{st} {'x': 1}") == ("a{st}", {"x": 1})
    for bad in ("", "[]", "[1, 'a']", "uint64 -1", "byte 256", "int32 3000000000", "(1", "@q x",
                "true false"):
        with pytest.raises(ValueError):
            t(bad)


# --- the D-Bus wire format and client -------------------------------------------------------------

def test_marshalling_round_trip_and_alignment():
    sig = "ssa(sv)a(sa(sv))"
    values = ["runp-x.scope", "replace",
              [("Delegate", ("b", True)), ("PIDs", ("au", [7, 8])),
               ("AllowedCPUs", ("ay", b"\x03")), ("MemoryMax", ("t", 1 << 40)),
               ("DeviceAllow", ("a(ss)", [("/dev/null", "rwm")]))], []]
    data = dbus.marshal(sig, values)
    # "runp-x.scope": length 12 (u32), 12 bytes, NUL (17 bytes); "replace" at 20 (4-aligned)
    assert data[:4] == (12).to_bytes(4, "little") and data[20:24] == (7).to_bytes(4, "little")
    assert data[17:20] == b"\0\0\0"
    # read back as the client reads every reply: a whole message through decode()
    msg, _ = dbus.decode(dbus.encode_call(1, None, "/o", "o.I", "M", sig, values))
    out = msg.body
    assert out[0:2] == values[0:2] and out[3] == []
    # a variant unmarshals to its value
    assert out[2] == [("Delegate", True), ("PIDs", [7, 8]), ("AllowedCPUs", b"\x03"),
                      ("MemoryMax", 1 << 40), ("DeviceAllow", [("/dev/null", "rwm")])]
    assert dbus.split_signature("sa{sv}(ii)aay") == ["s", "a{sv}", "(ii)", "aay"]
    with pytest.raises(ValueError):
        dbus.split_signature("a(")


def test_message_encode_decode():
    wire = dbus.encode_call(5, "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
                            "org.freedesktop.systemd1.Manager", "StopUnit", "ss", ["a.scope", "fail"])
    assert len(wire) % 8 == (len(dbus.marshal("ss", ["a.scope", "fail"])) % 8)
    assert dbus.decode(wire[:-1]) is None                  # incomplete: wait for more
    msg, n = dbus.decode(wire + b"extra")
    assert n == len(wire) and msg.type == dbus.METHOD_CALL and msg.serial == 5
    assert msg.member == "StopUnit" and msg.body == ["a.scope", "fail"]


def test_address_parsing():
    assert dbus.socket_path("unix:path=/run/user/1000/bus") == "/run/user/1000/bus"
    assert dbus.socket_path("tcp:host=x;unix:abstract=/tmp/dbus-x,guid=1") == "\0/tmp/dbus-x"
    assert dbus.socket_path("unix:path=/a%20b") == "/a b"
    with pytest.raises(dbus.DBusError):
        dbus.socket_path("tcp:host=localhost,port=1")


@pytest.fixture
def bus_daemon():
    """A private dbus-daemon (session configuration) on a socket of our own."""
    daemon = shutil.which("dbus-daemon")
    if not daemon:
        pytest.skip("dbus-daemon is not installed (Debian package dbus-daemon)")
    d = tempfile.mkdtemp(prefix="runp-dbus-")
    sock = os.path.join(d, "bus")
    p = subprocess.Popen([daemon, "--session", "--nofork", "--nopidfile",
                          f"--address=unix:path={sock}"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            assert p.poll() is None, p.stderr.read()
            assert time.monotonic() < deadline, "dbus-daemon did not come up"
            time.sleep(0.02)
        yield sock
    finally:
        p.terminate()
        p.wait(10)
        shutil.rmtree(d, ignore_errors=True)


def test_client_talks_to_a_real_bus(bus_daemon):
    """Auth, Hello, method calls with replies and errors, and signals, against dbus-daemon."""
    c = dbus.Connection(bus_daemon, hello=True, timeout=10)
    try:
        bus = ("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus")
        (names,) = c.call(*bus, "ListNames")
        assert "org.freedesktop.DBus" in names
        (bus_id,) = c.call(*bus, "GetId")
        assert len(bus_id) == 32
        with pytest.raises(dbus.DBusError) as e:
            c.call(*bus, "GetNameOwner", "s", ["org.example.Nobody"])
        assert e.value.name == "org.freedesktop.DBus.Error.NameHasNoOwner"
        c.call(*bus, "AddMatch", "s", ["type='signal',member='NameOwnerChanged'"])
        other = dbus.Connection(bus_daemon, hello=True, timeout=10)  # a new name appears
        try:
            msg = c.wait_signal("NameOwnerChanged", lambda body: body[0].startswith(":")
                                and body[1] == "" and body[2] == body[0])
            assert msg.type == dbus.SIGNAL
        finally:
            other.close()
    finally:
        c.close()


def test_connection_errors_are_one_line(tmp_path):
    with pytest.raises(dbus.DBusError) as e:
        dbus.Connection(str(tmp_path / "nothing"), hello=False, timeout=2)
    assert "nothing" in str(e.value) and "\n" not in str(e.value)


# --- a host without systemd ------------------------------------------------------------------------

pytestmark_no_systemd = pytest.mark.skipif(sd.running(), reason="systemd is PID 1 here")


@pytestmark_no_systemd
def test_systemd_cgroup_fails_where_systemd_does_not_run(runp, bundle, cid, tmp_path):
    """runc's message, exit 1, and nothing left: no state dir, no cgroup, no process."""
    bundle.config["linux"]["cgroupsPath"] = f"system.slice:runp:{cid}"
    bundle.write()
    before = set(os.listdir("/proc"))
    p = runp("--systemd-cgroup", "create", "--bundle", str(bundle.path), cid, check=False)
    err = p.stderr.decode().strip()
    assert p.returncode == 1
    assert err.splitlines() == ["runp: systemd not running on this host, cannot use systemd "
                                "cgroups manager"]
    assert not runp.root.exists() or not os.listdir(runp.root)
    assert not list(Path("/sys/fs/cgroup").glob(f"**/runp-{cid}.scope"))
    time.sleep(0.1)
    assert not [pid for pid in set(os.listdir("/proc")) - before
                if pid.isdigit() and cid.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()]
    runc = shutil.which("runc")
    if runc:
        r = subprocess.run([runc, "--root", str(tmp_path / "runc"), "--systemd-cgroup", "create",
                            "--bundle", str(bundle.path), new_id()], capture_output=True,
                           text=True, timeout=60)
        assert r.returncode == 1 and "systemd not running on this host, cannot use systemd " \
            "cgroups manager" in r.stderr


def test_systemd_cgroup_path_format_error(runp, bundle, cid):
    bundle.config["linux"]["cgroupsPath"] = "/default/" + cid
    bundle.write()
    p = runp("--systemd-cgroup", "run", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert p.stderr.decode().strip().splitlines() == [
        f"config.json: linux.cgroupsPath: expected \"slice:prefix:name\" for systemd "
        f"cgroups, got '/default/{cid}'"]
    assert not runp.root.exists() or not os.listdir(runp.root)


def test_features_claim_the_systemd_driver():
    import json
    from conftest import RUNP
    out = json.loads(subprocess.run([RUNP, "features"], capture_output=True, check=True).stdout)
    cg = out["linux"]["cgroup"]
    assert cg["systemd"] is True
    assert cg["systemdUser"] == sd.user_instance_reachable()


def test_no_systemd_error_before_connecting():
    if sd.running():
        pytest.skip("systemd is PID 1 here")
    with pytest.raises(RuntimeFailure) as e:
        sd.Systemd(user=False)
    assert str(e.value) == sd.NOT_RUNNING
