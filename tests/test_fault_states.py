"""Create against a host in a bad state: a cgroup that is frozen already, a state root that is full
or read-only. Each fails at once with one line and leaves nothing half-made."""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Runp, cgroup_roots, force_delete, new_id

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

    def make(how: str, leaf_exists: bool = True) -> str:
        for r in cgroup_roots():
            d = Path(r) / name
            d.mkdir()
            if leaf_exists:
                (d / "leaf").mkdir()
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
    # (runp's own teardown comes later: without the fix an init stays in there, frozen)
    for r in cgroup_roots():
        top = Path(r) / name
        for f, v in (("freezer.state", "THAWED"), ("cgroup.freeze", "0")):
            for d in (top, top / "leaf"):
                if (d / f).exists():
                    (d / f).write_text(v)
        for procs in top.glob("**/cgroup.procs"):
            for pid in procs.read_text().split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
    for r in cgroup_roots():
        for d in sorted((Path(r) / name).glob("**/"), key=lambda p: -len(p.parts)):
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


# --- a full or read-only state root --------------------------------------------------------------

@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs, unmounted afterwards."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=True)


def _nothing_left(root: Path, cid: str, cgroup: str) -> None:
    assert not (root / cid).exists(), list((root / cid).iterdir())
    for r in cgroup_roots():
        assert not (Path(r) / cgroup.lstrip("/")).exists(), r
        assert not (Path(r) / cgroup.lstrip("/")).parent.exists(), r


def test_create_on_a_full_state_root(bundle, small_tmpfs):
    """The state root fills up at every point of create in turn (the config copy, the fifo,
    state.json: 6 KiB of annotations make each take pages): create either works or fails with
    one line naming the file, and leaves no state dir, cgroup or process. (Before, the line
    named no file: "runp: No space left on device".)"""
    r = Runp(small_tmpfs / "root")
    bundle.config["annotations"] = {"big": "x" * 6000}
    failed = 0
    for free_kib in (0, 4, 8, 12, 16, 20, 24, 28, 32, 40):
        cid = new_id("full")
        cgroup = f"/runp-test-full-{cid}/c"
        bundle.config["linux"]["cgroupsPath"] = cgroup
        bundle.write()
        fill = small_tmpfs / "fill"
        fd = os.open(fill, os.O_WRONLY | os.O_CREAT)
        try:  # fill up, then give back what should stay free
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        os.truncate(fill, max(0, fill.stat().st_size - free_kib * 1024))
        try:
            p = r("create", "--bundle", str(bundle.path), cid, check=False)
            err = p.stderr.decode()
            if p.returncode == 0:
                r("delete", "--force", cid)
            else:
                failed += 1
                assert p.returncode == 1 and err.count("\n") == 1, err
                assert "no space left on device" in err.lower() and str(small_tmpfs) in err, err
            _nothing_left(small_tmpfs / "root", cid, cgroup)
            assert r("list").returncode == 0
        finally:
            fill.unlink()
            force_delete(r.cmd(), cid)
    assert failed, "the state root never filled up"


@pytest.mark.parametrize("root_exists", [False, True])
def test_create_on_a_read_only_state_root(bundle, small_tmpfs, root_exists):
    """A read-only state root (made before, or not): one line naming the directory, nothing
    made."""
    if root_exists:
        (small_tmpfs / "root").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    r = Runp(small_tmpfs / "root")
    cid = new_id("ro")
    cgroup = f"/runp-test-ro-{cid}/c"
    bundle.config["linux"]["cgroupsPath"] = cgroup
    bundle.write()
    p = r("create", "--bundle", str(bundle.path), cid, check=False)
    err = p.stderr.decode()
    assert p.returncode == 1 and err.count("\n") == 1, err
    assert "read-only file system" in err.lower() and str(small_tmpfs / "root") in err, err
    _nothing_left(small_tmpfs / "root", cid, cgroup)
