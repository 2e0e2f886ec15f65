"""Invalid configs: one line naming the JSON path, exit 1, and nothing left behind."""
from __future__ import annotations

import os

import pytest

from conftest import base_config, deep, host_mounts


# where a namespace appended to base_config() lands: `runp spec` has a cgroup namespace only on
# a pure cgroup v2 host, as runc's template
NEW_NS = len(base_config()["linux"]["namespaces"])

CASES = [
    ("ociVersion", lambda c: c.pop("ociVersion"), "ociVersion: is required"),
    ("ociVersion bad", lambda c: c.update(ociVersion="banana"), "ociVersion:"),
    ("ociVersion major", lambda c: c.update(ociVersion="2.0.0"), "ociVersion: unsupported"),
    ("no root", lambda c: c.pop("root"), "root: is required"),
    ("root path type", lambda c: c["root"].update(path=5), "root.path: must be a string"),
    ("root missing dir", lambda c: c["root"].update(path="nope"), "root.path:"),
    ("args type", lambda c: c["process"].update(args="sh"), "process.args: must be an array"),
    ("args empty", lambda c: c["process"].update(args=[]), "process.args:"),
    ("arg item", lambda c: c["process"].update(args=["sh", 3]), "process.args[1]: must be a string"),
    ("cwd relative", lambda c: c["process"].update(cwd="tmp"), "process.cwd:"),
    ("uid type", lambda c: c["process"]["user"].update(uid="0"), "process.user.uid: must be an integer"),
    ("uid negative", lambda c: c["process"]["user"].update(uid=-1), "process.user.uid:"),
    ("env form", lambda c: c["process"].update(env=["PATH=/bin", "BROKEN"]), "process.env[1]:"),
    ("rlimit type", lambda c: c["process"]["rlimits"][0].update(type="RLIMIT_FOO"),
     'process.rlimits[0].type: unknown rlimit "RLIMIT_FOO"'),
    ("namespace type", lambda c: c["linux"]["namespaces"].append({"type": "bogus"}),
     f'linux.namespaces[{NEW_NS}].type: unknown namespace type "bogus"'),
    ("namespace dup", lambda c: c["linux"]["namespaces"].append({"type": "pid"}),
     f"linux.namespaces[{NEW_NS}].type: duplicate"),
    ("mount dest type", lambda c: c["mounts"][0].update(destination=1), "mounts[0].destination:"),
    ("mount options", lambda c: c["mounts"][1].update(options="ro"), "mounts[1].options: must be an array"),
    ("propagation", lambda c: c["linux"].update(rootfsPropagation="sideways"), "linux.rootfsPropagation:"),
    ("hook path", lambda c: c.update(hooks={"prestart": [{"path": "rel"}]}), "hooks.prestart[0].path:"),
    ("seccomp action", lambda c: c["linux"].update(seccomp={"defaultAction": "SCMP_ACT_NOPE"}),
     "linux.seccomp.defaultAction:"),
    ("uidmap without userns", lambda c: c["linux"].update(uidMappings=[{"containerID": 0, "hostID": 1000, "size": 1}]),
     "linux.uidMappings:"),
    ("userns without mount ns", lambda c: c["linux"].update(
        namespaces=[{"type": "user"}, {"type": "pid"}],
        uidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}],
        gidMappings=[{"containerID": 0, "hostID": 100000, "size": 65536}]),
     "linux.namespaces: a new user namespace needs a mount namespace"),
    ("hostname without uts", lambda c: c["linux"].update(namespaces=[{"type": "mount"}]), "hostname:"),
    ("not an object", lambda c: c.clear() or c.update(process=[]), "ociVersion: is required"),
]


@pytest.mark.parametrize("name,mutate,expect", CASES, ids=[c[0] for c in CASES])
def test_invalid_config(runp, bundle, cid, name, mutate, expect):
    cfg = deep(base_config())
    mutate(cfg)
    bundle.write(cfg)
    before = host_mounts(bundle.path)
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert expect in err, err
    assert err.startswith("config.json: "), err
    assert len(err.strip().splitlines()) == 1, err
    assert not (runp.root / cid).exists(), "state dir left behind"
    assert host_mounts(bundle.path) == before


def test_invalid_json(runp, bundle, cid):
    (bundle.path / "config.json").write_text("{not json")
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 1 and b"config.json" in p.stderr and b"invalid JSON" in p.stderr


def test_missing_config(runp, tmp_path, cid):
    p = runp("create", "-b", str(tmp_path), cid, check=False)
    assert p.returncode == 1 and b"config.json" in p.stderr


def test_missing_binary_leaves_nothing(runp, bundle, cid):
    bundle.set_args("/no/such/binary")
    before = host_mounts(bundle.path)
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert b"no such file or directory" in p.stderr
    assert not (runp.root / cid).exists()
    assert host_mounts(bundle.path) == before
    bundle.set_args("nosuchcmd")
    p = runp("run", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert b'exec: "nosuchcmd": executable file not found in $PATH' in p.stderr
    assert not (runp.root / cid).exists()


def test_bad_mount_leaves_nothing(runp, bundle, cid):
    cfg = bundle.config
    cfg["mounts"].append({"destination": "/data", "type": "bind", "source": "/no/such/source"})
    bundle.write()
    before = host_mounts(bundle.path)
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    err = p.stderr.decode()
    assert p.returncode == 1
    assert "mounts[7]" in err and "/data" in err, err
    assert not (runp.root / cid).exists()
    assert host_mounts(bundle.path) == before
    # no process of that container survived
    out = os.popen("ps -eo args").read()
    assert str(bundle.path) not in out


def test_check_command_reports_every_violation(runp, bundle):
    cfg = deep(base_config())
    cfg["process"]["user"]["uid"] = "root"
    cfg["linux"]["namespaces"].append({"type": "bogus"})
    bundle.write(cfg)
    p = runp("check", "-b", str(bundle.path), check=False)
    out = p.stdout.decode()
    assert p.returncode == 1
    assert "process.user.uid" in out and f"linux.namespaces[{NEW_NS}]" in out, out
    bundle.write(base_config())
    assert runp("check", "-b", str(bundle.path)).returncode == 0
