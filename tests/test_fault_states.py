"""Create against a host in a bad state: a cgroup that is frozen already, a state root that is full
or read-only. Each fails at once with one line and leaves nothing half-made."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import cgroup_roots, force_delete, new_id

RUNC = shutil.which("runc")


def _hierarchy(name: str) -> str | None:
    """The root of the v1 freezer hierarchy ("freezer") or of cgroup2 ("v2")."""
    for r in cgroup_roots():
        if (Path(r).name == "freezer") if name == "freezer" else \
                os.path.exists(f"{r}/cgroup.controllers"):
            return r
    return None


@pytest.fixture
def frozen_cgroup():
    """Make /<name>/leaf in every hierarchy, and freeze one of them (`how`: "v1" the freezer
    hierarchy's freezer.state, "v2" cgroup2's cgroup.freeze, "parent" the v1 parent only, so
    that a leaf made below it is born frozen); thawed and removed afterwards."""
    name = f"runp-test-frozen-{new_id()}"
    made: list[Path] = []

    def make(how: str, leaf_exists: bool = True) -> str:
        for r in cgroup_roots():
            d = Path(r) / name
            d.mkdir()
            made.append(d)
            if leaf_exists:
                (d / "leaf").mkdir()
                made.append(d / "leaf")
        target = None
        if how in ("v1", "parent"):
            root = _hierarchy("freezer")
            if root is None:
                pytest.skip("no v1 freezer hierarchy")
            target = Path(root) / name / ("leaf" if how == "v1" else "")
            (target / "freezer.state").write_text("FROZEN")
        else:
            root = _hierarchy("v2")
            if root is None:
                pytest.skip("no cgroup2 hierarchy")
            target = Path(root) / name / "leaf"
            (target / "cgroup.freeze").write_text("1")
        return f"/{name}/leaf"

    yield make
    for r in cgroup_roots():
        for f, v in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            for d in (Path(r) / name, Path(r) / name / "leaf"):
                if (d / f).exists():
                    (d / f).write_text(v)
    for d in reversed(made):
        for _ in range(100):
            try:
                d.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.05)


@pytest.mark.parametrize("how", ["v1", "v2", "parent"])
def test_create_in_frozen_cgroup_fails_at_once(runp, bundle, cid, frozen_cgroup, how):
    """runc 1.1.5 refuses a frozen v1 cgroup, but hangs on one frozen through cgroup2 on this
    hybrid host (its init stops on joining it), as runp did; now all three fail within the
    command's own time, naming linux.cgroupsPath, and nothing is left: no state dir, no process
    in the frozen cgroup, no cgroup runp made."""
    path = frozen_cgroup(how, leaf_exists=how != "parent")
    bundle.config["linux"]["cgroupsPath"] = path
    bundle.write()
    p = runp("create", "--bundle", str(bundle.path), cid, check=False, timeout=60)
    err = p.stderr.decode()
    assert p.returncode == 1, err
    assert err.count("\n") == 1 and "config.json: linux.cgroupsPath: " in err, err
    assert "container's cgroup unexpectedly frozen" in err, err  # runc's words
    assert not (runp.root / cid).exists()
    for r in cgroup_roots():
        procs = Path(r) / path.lstrip("/") / "cgroup.procs"
        assert not procs.exists() or not procs.read_text().strip(), r
        if how == "parent":  # the leaf was runp's to make: it is gone again
            assert not (Path(r) / path.lstrip("/")).exists(), r


@pytest.mark.skipif(RUNC is None, reason="runc is not installed")
def test_frozen_v1_cgroup_refused_as_runc(runp, bundle, cid, frozen_cgroup, tmp_path):
    path = frozen_cgroup("v1")
    bundle.config["linux"]["cgroupsPath"] = path
    bundle.write()
    runc = [RUNC, "--root", str(tmp_path / "runc-root")]
    rc_id = new_id("runc")
    try:
        q = subprocess.run(runc + ["create", "--bundle", str(bundle.path), rc_id],
                           capture_output=True, timeout=60)
    finally:
        force_delete(runc, rc_id)
    p = runp("create", "--bundle", str(bundle.path), cid, check=False, timeout=60)
    assert q.returncode == p.returncode == 1
    assert b"container's cgroup unexpectedly frozen" in q.stderr
    assert b"container's cgroup unexpectedly frozen" in p.stderr
