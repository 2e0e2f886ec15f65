"""Every field of the runtime-spec 1.3 config schema is applied, warned about or refused
(issue #15), as runtime/field_handling.py records it.

- Every leaf path of schemas/config-schema.json (with its $refs into defs.json and
  config-linux.json) has an entry, and every entry is a leaf of the schema.
- An APPLIED entry names a test that exists.
- A WARNED entry is run in a real container: create succeeds and a warning line of the json
  log names the JSON path.
- Two APPLIED entries no other test observed in a container are observed here: the four
  blkio throttles and weightDevice (applied, or refused naming the path where the host's blkio
  has no weight files).
"""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import sys
from pathlib import Path

import pytest

from conftest import TOP
from runtime import field_handling as fh
from runtime.process import lsm_enabled

SCHEMAS = TOP / "schemas"


# --- the schema's leaves ------------------------------------------------------------------------

def _resolve(docs: dict, ref: str, cur: str) -> tuple[dict, str]:
    f, _, frag = ref.partition("#")
    f = f or cur
    node = docs[f]
    for part in frag.strip("/").split("/"):
        if part:
            node = node[part]
    return node, f


def _walk(docs: dict, node: dict, cur: str, path: str, out: set[str], seen: frozenset) -> None:
    """Leaf paths below `node`: properties are followed, arrays are transparent, an object
    without properties (a map such as annotations or linux.sysctl) is a leaf."""
    if "$ref" in node:
        key = (node["$ref"], cur)
        if key in seen:
            out.add(path)
            return
        target, f = _resolve(docs, node["$ref"], cur)
        _walk(docs, target, f, path, out, seen | {key})
        node = {k: v for k, v in node.items() if k != "$ref"}
        if not any(k in node for k in ("properties", "items", "allOf", "anyOf", "oneOf")):
            return
    combined = False
    for comb in ("allOf", "anyOf", "oneOf"):
        for sub in node.get(comb, []):
            _walk(docs, sub, cur, path, out, seen)
            combined = True
    if "properties" in node:
        for k, v in node["properties"].items():
            _walk(docs, v, cur, f"{path}.{k}" if path else k, out, seen)
    elif isinstance(node.get("items"), dict):
        _walk(docs, node["items"], cur, path, out, seen)
    elif not combined:
        out.add(path)


def schema_leaves() -> set[str]:
    docs = {f.name: json.loads(f.read_text()) for f in SCHEMAS.glob("*.json")}
    out: set[str] = set()
    _walk(docs, docs["config-schema.json"], "config-schema.json", "", out, frozenset())
    out.discard("")
    # an object both mapped and with properties (blockIO.weightDevice) is its properties
    return {p for p in out if not any(q.startswith(p + ".") for q in out)}


LEAVES = sorted(schema_leaves())


def test_the_walk_finds_the_schema():
    assert len(LEAVES) > 150
    assert {"process.capabilities.bounding", "linux.resources.memory.limit",
            "linux.seccomp.syscalls.args.op", "mounts.options", "hooks.poststop.timeout",
            "linux.netDevices", "process.execCPUAffinity.final"} <= set(LEAVES)


def test_every_schema_field_has_an_entry():
    missing = [p for p in LEAVES if fh.handling(p) is None]
    assert not missing, f"schema fields without an entry in runtime/field_handling.py: {missing}"


def test_every_entry_is_a_schema_field():
    sections = {p.split(".", 1)[0] for p in LEAVES}
    stale = [p for p in fh.FIELDS if p not in LEAVES and p not in sections]
    assert not stale, stale
    assert {h for h, _ in fh.FIELDS.values()} <= {fh.APPLIED, fh.WARNED, fh.REFUSED}


# --- APPLIED: the observing test exists ---------------------------------------------------------

def _test_names(rel: str) -> list[str]:
    tree = ast.parse((TOP / rel).read_text())
    return [n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)
            and n.name.startswith("test")]


def _conformance_cases() -> set[str]:
    spec = importlib.util.spec_from_file_location("oci_conformance_fields",
                                                  TOP / "conformance" / "oci_conformance.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["oci_conformance_fields"] = mod
    spec.loader.exec_module(mod)
    return {c.name for c in mod.CASES}


APPLIED = sorted({ev for h, ev in fh.FIELDS.values() if h == fh.APPLIED})


@pytest.mark.parametrize("evidence", APPLIED)
def test_applied_field_has_its_test(evidence):
    if evidence.startswith("conformance:"):
        assert evidence.split(":", 1)[1] in _conformance_cases(), evidence
        return
    rel, name = evidence.split("::")
    # the name, or a prefix of names (test_netdevices: test_netdevices_move, ...)
    assert any(t == name or t.startswith(name + "_") for t in _test_names(rel)), evidence


# --- WARNED: a real container logs a warning naming the path ------------------------------------

def _set(path: str, value):
    def change(cfg: dict) -> None:
        *parents, last = path.split(".")
        d = cfg
        for p in parents:
            d = d.setdefault(p, {})
        d[last] = value
    return change


# path -> (config change, why the warning cannot be observed here, or None)
_APPARMOR, _SELINUX = lsm_enabled()
WARNED_CASES = {
    "process.commandLine": (_set("process.commandLine", "cmd.exe /c dir"), None),
    "process.user.username": (_set("process.user.username", "ContainerUser"), None),
    "process.apparmorProfile": (_set("process.apparmorProfile", "runp-test"),
                                "AppArmor is enabled: the profile is applied" if _APPARMOR else None),
    "process.selinuxLabel": (_set("process.selinuxLabel", "system_u:system_r:container_t:s0"),
                             "SELinux is enabled: the label is applied" if _SELINUX else None),
    "linux.mountLabel": (_set("linux.mountLabel", "system_u:object_r:container_file_t:s0"),
                         "SELinux is enabled: the label is applied" if _SELINUX else None),
    "linux.resources.memory.kernel": (_set("linux.resources.memory.kernel", 64 << 20), None),
    **{s: (_set(s, {}), None) for s in ("windows", "solaris", "vm", "zos", "freebsd")},
}


def test_every_warned_entry_has_a_case():
    warned = {p for p, (h, _) in fh.FIELDS.items() if h == fh.WARNED}
    assert warned == set(WARNED_CASES)
    assert not [p for p, (h, _) in fh.FIELDS.items() if h == fh.REFUSED]  # none today


@pytest.mark.parametrize("path", sorted(WARNED_CASES))
def test_warned_field_names_its_path(runp, bundle, cid, tmp_path, path):
    change, not_here = WARNED_CASES[path]
    if not_here:
        pytest.skip(not_here)
    change(bundle.config)
    bundle.write()
    log = tmp_path / "log.json"
    p = runp("--log", str(log), "--log-format", "json", "create", "-b", str(bundle.path), cid,
             check=False)
    lines = [json.loads(ln) for ln in log.read_text().splitlines()] if log.exists() else []
    assert p.returncode == 0, lines
    runp("delete", "--force", cid)
    warnings = [ln["msg"] for ln in lines if ln["level"] == "warning"]
    assert any(w.startswith(f"config.json: {path}: ") for w in warnings), warnings


# --- APPLIED fields observed only here ----------------------------------------------------------

def _block_device() -> tuple[int, int] | None:
    from test_container_cgroups import block_device
    return block_device()


def _blkio_dir(runp, cid: str) -> str:
    pid = runp.state(cid)["pid"]
    with open(f"/proc/{pid}/cgroup") as f:
        lines = [ln.rstrip("\n").split(":", 2) for ln in f]
    for _, ctrls, path in lines:
        if "blkio" in ctrls.split(","):
            return f"/sys/fs/cgroup/blkio{path}"
    return "/sys/fs/cgroup" + next(p for _, c, p in lines if c == "")


def test_every_throttle_applied(runp, bundle, cid):
    dev = _block_device()
    if dev is None:
        pytest.skip("no block device on this host")
    maj, mnr = dev
    names = {"throttleReadBpsDevice": ("blkio.throttle.read_bps_device", "rbps", 1 << 20),
             "throttleWriteBpsDevice": ("blkio.throttle.write_bps_device", "wbps", 2 << 20),
             "throttleReadIOPSDevice": ("blkio.throttle.read_iops_device", "riops", 300),
             "throttleWriteIOPSDevice": ("blkio.throttle.write_iops_device", "wiops", 400)}
    bundle.config["linux"]["resources"] = {"blockIO": {
        k: [{"major": maj, "minor": mnr, "rate": rate}] for k, (_, _, rate) in names.items()}}
    bundle.set_args("true")
    runp("create", "-b", str(bundle.path), cid)
    d = _blkio_dir(runp, cid)
    if os.path.exists(f"{d}/io.max"):
        line = next(ln for ln in Path(f"{d}/io.max").read_text().splitlines()
                    if ln.startswith(f"{maj}:{mnr} "))
        assert sorted(line.split()[1:]) == sorted(f"{key}={rate}" for _, key, rate in names.values())
    else:
        for k, (f, _, rate) in names.items():
            assert Path(f"{d}/{f}").read_text().split() == [f"{maj}:{mnr}", str(rate)], k


def test_weight_device_applied_or_refused(runp, bundle, cid):
    """blkio.weight_device (v1, CFQ/BFQ) or io.bfq.weight (v2) where the host has it; else
    create fails naming the field (this host's blkio has no weight files)."""
    dev = _block_device()
    if dev is None:
        pytest.skip("no block device on this host")
    maj, mnr = dev
    bundle.config["linux"]["resources"] = {"blockIO": {"weightDevice": [
        {"major": maj, "minor": mnr, "weight": 500}]}}
    bundle.set_args("true")
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    if p.returncode != 0:
        err = p.stderr.decode()
        assert err.startswith("config.json: linux.resources.blockIO.weightDevice[0]"), err
        assert not (runp.root / cid).exists()
        return
    d = _blkio_dir(runp, cid)
    for f in ("blkio.weight_device", "blkio.bfq.weight_device", "io.bfq.weight"):
        if os.path.exists(f"{d}/{f}"):
            assert f"{maj}:{mnr} 500" in Path(f"{d}/{f}").read_text(), f
            return
    pytest.fail(f"create succeeded but no weight file in {d}")
