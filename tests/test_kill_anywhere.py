"""runp killed at any instant (the OOM killer, a shim's timeout, a node going down): the container
stays consistent and `delete --force` leaves nothing on the host.

The sweep itself is hack/kill-sweep (it explains how it picks kill points and what it checks);
CI runs a subset of it (about 500 points over every command). The regression tests below kill a
create at the two points where the sweep found leaks before the fix: right after the cgroup was
made, and after the init reported ready but before state.json was saved; and check that the
cleanup of such a half-made container spares a cgroup it did not make.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import TOP, cgroup_roots, new_id, proc_alive
from test_spec13_fields import (KEPT, _forget_kernfs_files, _host_view, _ip,  # noqa: F401
                               resctrl, veth)  # (fixtures)

SWEEP = TOP / "hack" / "kill-sweep"


def test_kill_sweep_ci_subset(tmp_path):
    """~46 kill points for each of 11 commands (create, run -d, run, start, exec, kill, delete,
    delete --force, pause, resume, update): none inconsistent, none leaking."""
    out = tmp_path / "sweep.json"
    p = subprocess.run([sys.executable, str(SWEEP), "--points", "46", "--json", str(out)],
                       capture_output=True, text=True, timeout=600)
    assert out.exists(), p.stdout + p.stderr
    res = json.loads(out.read_text())
    assert res["points"] >= 500, p.stdout
    assert not res["failures"], "\n".join(res["failures"][:20]) + "\n" + p.stdout
    assert res["consistent"] == res["points"] and res["leaks"] == 0
    assert p.returncode == 0, p.stdout + p.stderr
    # every phase --debug names for create was a kill point
    phases = {ph for cmd, ph, *_ in res["table"] if cmd == "create"}
    for want in ("parse", "fork", "prepare", "cgroups", "mounts", "ready", "handshake"):
        assert want in phases, sorted(phases)


def _create_killed_at(runp, bundle, cid: str, phase: str, stop_at: str | None = None) -> None:
    """`runp create` with its --debug log on a FIFO, SIGKILLed when `phase` is logged; with
    `stop_at`, SIGSTOPped when that phase is logged first, so that a `phase` logged by the init
    finds create exactly there, whatever the machine's load."""
    fifo = Path(runp.root).parent / f"{cid}.fifo"
    os.mkfifo(fifo)
    rfd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
    p = subprocess.Popen(runp.cmd("--debug", "--log", str(fifo), "create", "--bundle",
                                  str(bundle.path), cid),
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    buf = b""
    deadline = time.monotonic() + 60
    try:
        stopped = False
        while f"phase {phase}:".encode() not in buf:
            assert time.monotonic() < deadline and p.poll() is None, buf.decode()
            if select.select([rfd], [], [], 0.1)[0]:
                buf += os.read(rfd, 65536)
            if stop_at and not stopped and f"phase {stop_at}:".encode() in buf:
                p.send_signal(signal.SIGSTOP)
                stopped = True
    finally:
        # also when the phase never came: a stopped create would keep the state dir's lock
        p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        os.close(rfd)


def _cgroup_dirs(name: str) -> list[Path]:
    return [Path(r) / name.lstrip("/") for r in cgroup_roots()]


@pytest.mark.parametrize("phase", ["cgroups", "ready"])
def test_killed_create_leaves_nothing(runp, bundle, phase):
    """Killed after it made the cgroup ("cgroups"), or once the init is ready and blocked on the
    exec fifo in that cgroup ("ready", logged by the init: create is about to save state.json):
    the container does not exist for `state`, and `delete --force` kills its init and removes
    the cgroup it never recorded in state.json (before the fix both stayed: the cgroup in every
    hierarchy, the init for good). The kill lands a little after the line is logged; where it
    came after state.json after all (a busy machine), or before the init could send "ready"
    (then it exits by itself), the attempt is undone and made again."""
    bundle.config["process"]["args"] = ["sleep", "1000"]
    for _attempt in range(10):
        cid = new_id("kill")
        path = f"/runp-test-kill-{cid}"
        bundle.config["linux"]["cgroupsPath"] = path
        bundle.write()
        # "ready" is the init's: create is stopped at its last step before it ("cgroup join")
        _create_killed_at(runp, bundle, cid, phase,
                          stop_at="cgroup join" if phase == "ready" else None)
        time.sleep(0.2)  # an init whose "ready" found create gone exits: let it
        made = [d for d in _cgroup_dirs(path) if d.exists()]
        pids: set[int] = set()
        for d in made:
            pids |= {int(x) for x in (d / "cgroup.procs").read_text().split()}
        if not (Path(runp.root) / cid / "state.json").exists() and (pids or phase != "ready"):
            break
        runp("delete", "--force", cid)
    else:
        raise AssertionError(f"10 kills at {phase!r} all came after state.json was saved, or "
                             "before the init could say it was ready")
    try:
        st = runp("state", cid, check=False)
        assert st.returncode == 1 and b"does not exist" in st.stderr, st.stderr
        assert b"Traceback" not in st.stderr
        assert made, "the kill came before the cgroup was made"
        runp("delete", "--force", cid)
        assert not (Path(runp.root) / cid).exists()
        left = [str(d) for d in _cgroup_dirs(path) if d.exists()]
        assert not left, left
        deadline = time.monotonic() + 10
        while any(proc_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not [p for p in pids if proc_alive(p)]
    finally:
        for p in pids:
            if proc_alive(p):
                os.kill(p, signal.SIGKILL)
        for d in _cgroup_dirs(path):
            try:
                d.rmdir()
            except OSError:
                pass


def test_half_made_delete_spares_a_cgroup_it_did_not_make(runp, make_bundle):
    """A create killed after it recorded its cgroup plan but before its emptiness check leaves
    creating.json naming a cgroup that existed before (here a running container's): deleting the
    half-made container removes its state dir and must not kill what runs in that cgroup."""
    b = make_bundle()
    owner, half = new_id("own"), new_id("half")
    path = f"/runp-test-share-{owner}"
    b.config["process"]["args"] = ["sleep", "1000"]
    b.config["linux"]["cgroupsPath"] = path
    b.write()
    runp("run", "-d", "--bundle", str(b.path), owner)
    try:
        pid = runp.state(owner)["pid"]
        st = json.loads((Path(runp.root) / owner / "state.json").read_text())
        cg = dict(st["runp"]["cgroup"], created=[])  # existed before the killed create
        d = Path(runp.root) / half
        d.mkdir()
        (d / "creating.json").write_text(json.dumps({"cgroup": cg}))
        runp("delete", half)
        assert not d.exists()
        assert proc_alive(pid) and runp.state(owner)["status"] == "running"
    finally:
        runp("delete", "--force", owner, check=False)


# --- what create makes besides the cgroup: linux.netDevices, linux.intelRdt ---------------------

def _half_made(runp, cid: str) -> None:
    d = Path(runp.root) / cid
    assert d.is_dir() and not (d / "state.json").exists(), "create was not killed midway"


def _assert_gone(runp, cid: str, init: int) -> None:
    """delete removed the half-made container's state dir and killed its init."""
    assert not (Path(runp.root) / cid).exists()
    deadline = time.monotonic() + 10
    while proc_alive(init) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not proc_alive(init)


def test_killed_create_gives_moved_net_devices_back(runp, bundle, veth):
    """A create stopped once it moved a veth end into the container's namespace and killed
    when the init reported ready (so the init lives on, blocked on the exec fifo, with the
    device): `delete --force` moves the device back to the host with its name, addresses and up
    state, as a failed create does, before it kills the init. Before the fix creating.json did
    not name the device: delete killed the init and the kernel destroyed the veth pair with its
    namespace."""
    bundle.config["process"]["args"] = ["sleep", "1000"]
    for _attempt in range(10):
        a, _ = veth()
        cid = new_id("kill")
        path = f"/runp-test-kill-{cid}"
        bundle.config["linux"]["cgroupsPath"] = path
        bundle.config["linux"]["netDevices"] = {a: {"name": "ctr0"}}
        bundle.write()
        # stopped once the init has every answer it waits for (its own "cgroup wait", after
        # the devices' move: create logs "net devices" before it answers)
        _create_killed_at(runp, bundle, cid, "ready", stop_at="cgroup wait")
        _half_made(runp, cid)
        pids = {int(p) for d in _cgroup_dirs(path) for p in (d / "cgroup.procs").read_text().split()}
        if pids:
            break
        runp("delete", "--force", cid)  # killed before the init could send "ready": it exited
    else:
        raise AssertionError("10 kills all came before the init could say it was ready")
    [init] = pids
    try:
        assert proc_alive(init) and not _ip("link", "show", a, check=False)
        runp("delete", "--force", cid)
        assert _host_view(a) == (True, KEPT)
        _assert_gone(runp, cid, init)
    finally:
        if proc_alive(init):
            os.kill(init, signal.SIGKILL)


def _kill_self(*_args) -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.mark.parametrize("where, clos", [("apply", None), ("after", None), ("apply", "gold")])
def test_killed_create_removes_its_resctrl_group(runp, bundle, resctrl, where, clos):
    """linux.intelRdt of a create killed inside intelrdt.apply (the group made, written and
    joined; create had recorded only its plan) or right after it (the record of what apply
    made): `delete` removes the group runp made, or with a closID group made by someone else
    the MON group only, and kills the init. Before the fix creating.json did not name them and
    they stayed. No resctrl here: the stand-in directory of test_spec13_fields, so the create
    runs through the Python API in a child of ours, which SIGKILLs itself at that point."""
    from runtime import Container
    from runtime.linux import intelrdt
    cid = new_id("kill")
    if clos:
        group = resctrl / clos
        (group / "mon_groups").mkdir(parents=True)
        bundle.config["linux"]["intelRdt"] = {"closID": clos, "enableMonitoring": True}
    else:
        group = resctrl / cid
        bundle.config["linux"]["intelRdt"] = {"l3CacheSchema": "L3:0=7f0"}
    bundle.set_args("sleep", "1000")
    child = os.fork()
    if child == 0:
        try:
            if where == "apply":  # the last step of apply: everything made
                real = intelrdt.add_task
                intelrdt.add_task = lambda rec, pid: (real(rec, pid), _kill_self())
            else:  # the step of create after apply
                from runtime.create import Creator
                Creator._delegate_cgroup = _kill_self
            Container.create(str(runp.root), cid, str(bundle.path))
        finally:
            os._exit(1)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == -signal.SIGKILL
    _half_made(runp, cid)
    joined = group / "mon_groups" / cid if clos else group
    init = int((joined / "tasks").read_text())
    try:
        _forget_kernfs_files(joined)
        runp("delete", cid)
        assert not joined.exists()
        assert group.is_dir() == bool(clos)  # a closID group is its maker's
        _assert_gone(runp, cid, init)
    finally:
        if proc_alive(init):
            os.kill(init, signal.SIGKILL)
