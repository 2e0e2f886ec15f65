"""`runp features` says what this machine does (issue #15): every namespace it lists can be
made (all at once, in one container), every capability it lists is one the kernel knows
(cap_last_cap) and a container asking for all of them runs, every seccomp action it lists
loads in a real container, and every mount option it lists is a flag, a propagation or an
extension, never filesystem data (test_mount_keywords mounts each keyword for real).
"""
from __future__ import annotations

import json
import os

import pytest

from runtime.linux import capabilities as caps
from runtime.linux.mounts import MountOptions

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
USERNS = {"uidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}],
          "gidMappings": [{"containerID": 0, "hostID": 100000, "size": 65536}]}


@pytest.fixture
def features(runp) -> dict:
    return json.loads(runp("features").stdout)


def test_every_listed_namespace_is_made(features, runp, bundle, cid):
    listed = features["linux"]["namespaces"]
    files = {"network": "net", "mount": "mnt"}
    assert listed == [n for n in ("pid", "network", "mount", "ipc", "uts", "user", "cgroup",
                                  "time") if os.path.exists(f"/proc/self/ns/{files.get(n, n)}")]
    lx = bundle.config["linux"]
    lx["namespaces"] = [{"type": n} for n in listed]
    if "user" in listed:
        lx.update(USERNS)
    bundle.set_args("sh", "-c", "for n in /proc/self/ns/*; do readlink $n; done")
    p = runp("run", "-b", str(bundle.path), cid)
    inside = set(p.stdout.decode().split())
    for n in listed:
        ours = os.readlink(f"/proc/self/ns/{files.get(n, n)}")
        assert ours not in inside and ours.split(":")[0] + ":[" in " ".join(inside), n


def test_every_listed_capability_is_known_and_granted_or_warned(features, runp, bundle, cid,
                                                                tmp_path):
    listed = features["linux"]["capabilities"]
    assert len(listed) == caps.last_cap() + 1
    assert [caps.CAPS[n] for n in listed] == list(range(caps.last_cap() + 1))
    bundle.config["process"]["capabilities"] = {"bounding": listed, "effective": listed,
                                                "permitted": listed}
    bundle.set_args("grep", "^CapEff", "/proc/self/status")
    log = tmp_path / "log.json"
    p = runp("--log", str(log), "--log-format", "json", "run", "-b", str(bundle.path),
             cid)
    granted = int(p.stdout.split()[1], 16)
    assert granted == caps.host_bounding() & caps.mask({caps.CAPS[n] for n in listed})
    lacking = [n for n in listed if not granted >> caps.CAPS[n] & 1]
    warned = [json.loads(ln)["msg"] for ln in log.read_text().splitlines()]
    for n in lacking:
        assert any(f'"{n}" is not available' in w for w in warned), (n, warned)


def test_every_listed_seccomp_action_loads(features, runp, bundle, cid):
    sc = features["linux"]["seccomp"]
    if not sc["enabled"]:
        pytest.skip("no libseccomp binding")
    # syscalls busybox `true` never makes, one per action
    unused = iter(["acct", "swapon", "swapoff", "reboot", "kexec_load", "init_module",
                   "delete_module", "quotactl", "nfsservctl", "lookup_dcookie"])
    rules = [{"names": [next(unused)], "action": a} for a in sc["actions"]
             if a not in ("SCMP_ACT_ALLOW", "SCMP_ACT_NOTIFY")]  # NOTIFY needs a listener
    bundle.config["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW",
                                         "architectures": sc["archs"], "syscalls": rules}
    bundle.set_args("grep", "^Seccomp:", "/proc/self/status")
    p = runp("run", "-b", str(bundle.path), cid)
    assert p.stdout.split()[1] == b"2"


def test_every_listed_mount_option_is_not_data(features):
    for opt in features["mountOptions"]:
        assert MountOptions([opt]).data == [], opt


def test_every_mounted_keyword_is_listed(features):
    """What test_mount_keywords mounts for real (config.md's flag keywords) is claimed."""
    from test_mount_keywords import KEYWORDS
    assert set(KEYWORDS) - set(features["mountOptions"]) == set()
