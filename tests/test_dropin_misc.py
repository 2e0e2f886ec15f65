"""Drop-in details callers notice: `runp spec` writes runc's template (a cgroup namespace only
on a pure cgroup v2 host), and what a container built from it sees."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import new_id

TOP = Path(__file__).resolve().parent.parent
RUNC = shutil.which("runc")
PURE_V2 = os.path.exists("/sys/fs/cgroup/cgroup.controllers")
# the two lines where runp's template is its own: the spec version it implements, its name
OWN = {"ociVersion": "1.0.2-dev", "hostname": "runc"}


def spec_text(cmd: list[str], where: Path, rootless: bool) -> str:
    where.mkdir()
    subprocess.run(cmd + ["spec"] + (["--rootless"] if rootless else []), cwd=where, check=True,
                   capture_output=True, timeout=60)
    return (where / "config.json").read_text()


def as_runc_would(text: str) -> str:
    """runp's template with runc's ociVersion and hostname."""
    cfg = json.loads(text)
    for key, value in OWN.items():
        old = json.dumps({key: cfg[key]})[1:-1]
        assert text.count(old) == 1, key
        text = text.replace(old, json.dumps({key: value})[1:-1])
    return text


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_spec_is_runcs_template(runp, tmp_path, rootless):
    """Byte for byte runc's `spec` (but ociVersion and hostname); on this hybrid host that
    means no cgroup namespace, which a caller may then add without a "duplicate" error."""
    ours = spec_text(runp.cmd(), tmp_path / "runp", rootless)
    namespaces = [ns["type"] for ns in json.loads(ours)["linux"]["namespaces"]]
    assert ("cgroup" in namespaces) == PURE_V2, namespaces
    if RUNC:
        assert as_runc_would(ours) == spec_text([RUNC], tmp_path / "runc", rootless)


@pytest.mark.skipif(os.environ.get("RUNP_SKIP_VM") == "1", reason="RUNP_SKIP_VM=1")
@pytest.mark.skipif(os.environ.get("V2VM") == "1", reason="already inside a v2vm VM")
@pytest.mark.skipif(os.geteuid() != 0, reason="hack/v2vm needs root")
@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
def test_spec_on_a_pure_cgroup_v2_host(tmp_path):
    """On a pure cgroup v2 host (hack/v2vm, a few seconds) both templates have the cgroup
    namespace, and still differ only in ociVersion and hostname."""
    script = (f"cd /tmp && mkdir a b && (cd a && runc spec) && (cd b && {TOP}/.venv/bin/runp spec)"
              " && diff a/config.json b/config.json; grep -c '\"cgroup\"' b/config.json; exit 3")
    r = subprocess.run([str(TOP / "hack" / "v2vm"), "--timeout", "300", "--", "sh", "-c", script],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 3, (r.returncode, r.stdout, r.stderr)
    lines = [line for line in r.stdout.splitlines() if line[:1] in "<>0123456789"]
    assert sorted(line for line in lines if line[:1] in "<>") == [
        '< \t"hostname": "runc",', '< \t"ociVersion": "1.0.2-dev",',
        '> \t"hostname": "runp",', '> \t"ociVersion": "1.3.0",'], r.stdout
    assert lines[-1] == "3", r.stdout  # the cgroup mount's type and source, the namespace


def spec_bundle(runp, bundle) -> dict:
    """The bundle's config as `runp spec` writes it, made to run our commands."""
    cfg = json.loads(spec_text(runp.cmd(), bundle.path / "spec", False))
    cfg["process"]["terminal"] = False
    cfg["root"]["readonly"] = False
    return cfg


def test_spec_config_gets_a_cgroup_namespace_from_the_caller(runp, bundle, cid):
    """A caller that adds its own cgroup namespace to runp's template (as it must for runc's
    on a v1 or hybrid host) gets one, not a "duplicate namespace" error."""
    if PURE_V2:
        pytest.skip("on a pure cgroup v2 host the template has the cgroup namespace already")
    cfg = spec_bundle(runp, bundle)
    cfg["linux"]["namespaces"].append({"type": "cgroup"})
    cfg["process"]["args"] = ["cat", "/proc/self/cgroup"]
    bundle.write(cfg)
    p = runp("run", "-b", str(bundle.path), cid)
    assert all(line.endswith(":/") for line in p.stdout.decode().splitlines()), p.stdout


def test_spec_config_cgroup_paths_as_runc(runp, bundle, tmp_path):
    """Without a cgroup namespace (runc's template here) a process exec'd into the container
    sees the container's real cgroup paths, as under runc, not "/"."""
    cfg = spec_bundle(runp, bundle)
    cfg["process"]["args"] = ["sleep", "1000"]
    bundle.write(cfg)
    runtimes = {"runp": runp.cmd()}
    if RUNC:
        runtimes["runc"] = [RUNC, "--root", str(tmp_path / "runc-root")]
    out = {}
    for name, cmd in runtimes.items():
        cid = new_id()
        try:
            subprocess.run(cmd + ["run", "-d", "-b", str(bundle.path), cid], check=True,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=60)
            p = subprocess.run(cmd + ["exec", cid, "cat", "/proc/self/cgroup"],
                               capture_output=True, timeout=60)
            out[name] = p.stdout.decode().replace(cid, "ID")
        finally:
            subprocess.run(cmd + ["delete", "-f", cid], capture_output=True, timeout=60)
    lines = out["runp"].splitlines()
    if PURE_V2:
        assert lines == ["0::/"], lines
    else:
        assert lines and all(line.endswith("/ID") for line in lines), lines
    if RUNC:
        assert out["runp"] == out["runc"]
