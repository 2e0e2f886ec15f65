"""Defects found in earlier reviews, each compared with runc 1.1.5 where it behaves the same:
a symlinked root.path, a failed unshare masked by the setns after it, a cgroup that cannot be
removed at delete, mount destinations inside /proc."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import cgroup_roots, force_delete, new_id, proc_alive

RUNC = shutil.which("runc")
SETPRIV = shutil.which("setpriv")


def runtimes(runp, tmp_path) -> dict[str, list[str]]:
    out = {"runp": runp.cmd()}
    if RUNC:
        out["runc"] = [RUNC, "--root", str(tmp_path / "runc-root")]
    return out


def call(cmd: list[str], *args: str, prefix: list[str] = (), **kw) -> subprocess.CompletedProcess:
    """Files, not pipes: a created container inherits the runtime's stdio."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(list(prefix) + cmd + list(args), stdout=out, stderr=err,
                           stdin=subprocess.DEVNULL, timeout=60, **kw)
        out.seek(0)
        err.seek(0)
        p.stdout, p.stderr = out.read(), err.read()
    return p


def run_both(runp, bundle, tmp_path, *args: str, prefix: list[str] = ()) -> dict:
    """`run` the bundle with runp and runc: {name: (status, stderr)}; nothing left behind."""
    out = {}
    for name, cmd in runtimes(runp, tmp_path).items():
        cid = new_id(name)
        try:
            p = call(cmd, "run", *args, "-b", str(bundle.path), cid, prefix=prefix)
        finally:
            force_delete(cmd, cid)
        out[name] = (p.returncode, p.stderr.decode(errors="replace"))
    return out


# --- 3. root.path through a symlink ---------------------------------------------------------------

@pytest.mark.parametrize("how", ["relative-link", "absolute-through-link"])
def test_symlinked_root_path_refused_as_runc(runp, bundle, tmp_path, how):
    """runc 1.1.5 refuses a root.path that is a symlink, or an absolute one with a symlink on
    its way ("invalid rootfs: not an absolute path, or a symlink"): the directory it mounts
    must be the one the config names. runp did run it. Nothing is left behind."""
    if how == "relative-link":
        (bundle.path / "rootlink").symlink_to("rootfs")
        bundle.config["root"]["path"] = "rootlink"
    else:
        (tmp_path / "bundle-link").symlink_to(bundle.path)
        bundle.config["root"]["path"] = str(tmp_path / "bundle-link" / "rootfs")
    bundle.write()
    out = run_both(runp, bundle, tmp_path)
    code, err = out["runp"]
    assert code == 1, err
    assert err.count("\n") == 1 and "config.json: root.path: " in err \
        and "invalid rootfs: not an absolute path, or a symlink" in err, err
    assert not runp.ids()
    if RUNC:
        assert out["runc"][0] == 1 and \
            "invalid rootfs: not an absolute path, or a symlink" in out["runc"][1], out["runc"]


def test_symlinked_bundle_with_relative_root_runs_as_runc(runp, bundle, tmp_path):
    """A bundle reached through a symlink, with a relative root.path, is fine for both: runc
    resolves the bundle directory (it changes into it) before it joins root.path."""
    (tmp_path / "bundle-link").symlink_to(bundle.path)
    bundle.write()
    for name, cmd in runtimes(runp, tmp_path).items():
        cid = new_id(name)
        try:
            p = call(cmd, "run", "-b", str(tmp_path / "bundle-link"), cid)
        finally:
            force_delete(cmd, cid)
        assert p.returncode == 0, (name, p.stderr)


# --- 4. a failed unshare is the error reported ----------------------------------------------------

@pytest.mark.skipif(SETPRIV is None, reason="setpriv (util-linux) is not installed")
def test_failed_unshare_is_reported_not_the_setns_after_it(runp, bundle, tmp_path):
    """runp's host uid 0 without CAP_SYS_ADMIN (dropped from the bounding set): the kernel
    refuses unshare(CLONE_NEWPID). The error must name the unshare, not the setns back to
    our own pid namespace that followed it (which fails the same way and used to replace it:
    "setns: Operation not permitted"). runc fails at its unshare too."""
    out = run_both(runp, bundle, tmp_path, prefix=[SETPRIV, "--bounding-set", "-sys_admin"])
    code, err = out["runp"]
    assert code == 1, err
    assert "unshare" in err and "setns" not in err and "Operation not permitted" in err, err
    assert err.count("\n") == 1, err
    assert not runp.ids()
    if RUNC:
        assert out["runc"][0] != 0 and "failed to unshare" in out["runc"][1], out["runc"]


# --- 5. a cgroup that cannot be removed at delete -------------------------------------------------

def _cgroup_dir(name: str) -> Path | None:
    """The container's cgroup directory in the first hierarchy that has it (v1 or cgroup2)."""
    for root in cgroup_roots():
        d = Path(root) / name
        if d.is_dir():
            return d
    return None


def _remove_cgroup(name: str) -> None:
    for root in cgroup_roots():
        d = Path(root) / name
        for _ in range(50):
            try:
                d.rmdir()
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)
                continue
            break
        assert not d.exists(), f"{d} left behind"


def test_delete_with_busy_cgroup_removes_the_rest_and_reports(runp, bundle, tmp_path):
    """A stopped container whose cgroup a host process still uses: rmdir fails (EBUSY) after
    the retries. runc 1.1.5's destroy carries on (state dir removed), logs the error and
    `delete` exits 0. runp raised the RuntimeFailure through an `except OSError` meant for
    it: delete failed with the state dir kept, so a retried delete would run the poststop
    hooks again. Now as runc: exit 0, one error line naming the cgroup, the container gone."""
    bundle.set_args("sleep", "1000")
    for name, cmd in runtimes(runp, tmp_path).items():
        cid = new_id(name)
        cgname = f"runp-leftovers-{cid}"
        bundle.config["linux"]["cgroupsPath"] = f"/{cgname}"
        bundle.write()
        squatter = None
        try:
            p = call(cmd, "run", "-d", "-b", str(bundle.path), cid)
            assert p.returncode == 0, (name, p.stderr)
            init = json.loads(call(cmd, "state", cid).stdout)["pid"]
            d = _cgroup_dir(cgname)
            assert d is not None, name
            squatter = subprocess.Popen(["sleep", "1000"])
            (d / "cgroup.procs").write_text(str(squatter.pid))
            os.kill(init, 9)
            deadline = time.monotonic() + 10
            while b'"stopped"' not in call(cmd, "state", cid).stdout:
                assert time.monotonic() < deadline, name
                time.sleep(0.05)
            p = call(cmd, "delete", cid)
            err = p.stderr.decode(errors="replace")
            assert p.returncode == 0, (name, err)
            assert "level=error" in err and str(d) in err and "busy" in err, (name, err)
            assert call(cmd, "state", cid).returncode != 0, name  # gone
        finally:
            if squatter is not None:
                squatter.kill()
                squatter.wait()
            force_delete(cmd, cid)
            _remove_cgroup(cgname)


# --- 2. mount destinations inside /proc -----------------------------------------------------------

def _in_proc_case(bundle, case: str) -> dict:
    """Set up `case`; the mount it adds."""
    marker = bundle.path / "marker"
    marker.write_text("MARKER\n")
    if case == "link-into-proc":  # an image symlink leading into the container's /proc
        (bundle.rootfs / "evil").symlink_to("/proc/self/oom_score_adj")
        return {"destination": "/evil", "type": "bind", "source": str(marker), "options": ["bind"]}
    if case == "below-proc":
        return {"destination": "/proc/foo/bar", "type": "bind", "source": str(bundle.path),
                "options": ["rbind"]}
    if case == "devpts-in-proc":
        return {"destination": "/proc/xx", "type": "devpts", "source": "devpts"}
    if case == "not-procfs-on-proc":
        return {"destination": "/proc", "type": "bind", "source": str(bundle.path),
                "options": ["rbind"]}
    if case == "lxcfs-file":  # what lxcfs binds: allowed
        return {"destination": "/proc/cpuinfo", "type": "bind", "source": str(marker),
                "options": ["bind"]}
    if case == "procfs-on-proc":  # a procfs (the host's) bound on /proc: allowed
        return {"destination": "/proc", "type": "bind", "source": "/proc", "options": ["rbind"]}
    if case == "tmpfs-in-proc":  # runc 1.1.5 does not check tmpfs mounts
        return {"destination": "/proc/driver", "type": "tmpfs", "source": "tmpfs"}
    raise AssertionError(case)


REFUSED = {"link-into-proc": "inside /proc", "below-proc": "inside /proc",
           "devpts-in-proc": "inside /proc", "not-procfs-on-proc": "not of type proc"}


@pytest.mark.parametrize("case", list(REFUSED) + ["lxcfs-file", "procfs-on-proc", "tmpfs-in-proc"])
def test_mount_destination_inside_proc_as_runc(runp, bundle, tmp_path, case):
    """runc 1.1.5 (checkProcMount, on the destination resolved in the rootfs after the mounts
    before it) refuses a bind or a mount of another type (not proc, sysfs, mqueue, tmpfs,
    cgroup) below /proc, but on the files lxcfs emulates, and on /proc itself anything but a
    procfs. runp mounted them all: an over-mounted /proc file takes the writes meant for the
    container's own (CVE-2025-52881). Refused in one line naming the mount's destination,
    resolved inside the rootfs (an image symlink is followed as the container sees it)."""
    bundle.config["mounts"].append(_in_proc_case(bundle, case))
    index = len(bundle.config["mounts"]) - 1
    bundle.set_args("sh", "-c", "head -1 /proc/cpuinfo")
    out = run_both(runp, bundle, tmp_path)
    for name, (code, err) in out.items():
        if case in REFUSED:
            assert code != 0 and REFUSED[case] in err, (name, code, err)
        else:
            assert code == 0, (name, err)
    code, err = out["runp"]
    if case in REFUSED:
        assert code == 1 and err.count("\n") == 1, err
        assert err.startswith(f"config.json: mounts[{index}].destination: "), err
        if case == "link-into-proc":
            assert "it resolves to /proc/1/oom_score_adj in the rootfs" in err, err
    assert not runp.ids()
