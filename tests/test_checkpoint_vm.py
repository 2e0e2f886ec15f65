"""checkpoint and restore with criu, where criu works: inside the throw-away VM (hack/v2vm boots
Debian's 6.1 kernel, on which Debian's criu 3.17 passes `criu check`; this host's 6.18 kernel
breaks it). One boot runs every test below the line; on the host only
test_checkpoint_tests_pass_in_the_vm runs (it boots the VM), and the others say they run there.

podman's and containerd's checkpoints (tests/integration/test_checkpoint_engines.py) run in the
same boot.

A busybox counter prints 0, 1, 2, ... to its stdout, a pipe of ours. After a checkpoint the
container is gone and the old pipe ends; the restored container writes to the pipe the
restoring runtime was given (descriptors.json, inherit_fd) and must print exactly the number
after the last one the old pipe carried.

Skipped with RUNP_SKIP_VM=1, without root, or when hack/v2vm cannot set the VM up.
"""
from __future__ import annotations

import json
import os
import re
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import RUNP, Runp, force_delete, new_id, proc_alive

IN_VM = os.environ.get("V2VM") == "1"
RUNC = shutil.which("runc")
COUNTER = "i=0; while true; do echo $i; i=$((i+1)); sleep 0.1; done"
# podman and containerd (tests/integration/conftest.py sets them up privately) in the same boot
INNER_TESTS = ["tests/test_checkpoint_vm.py", "tests/integration/test_checkpoint_engines.py"]
BUDGET = 6 * 60       # seconds the VM part may take in CI (about 5: boot 25 s, tests 270 s)
VM_TIMEOUT = 30 * 60  # past this hack/v2vm kills QEMU (exit 124): a loaded host is slow


# --- on the host: boot the VM once, run this file's tests there -------------------------------

@pytest.mark.skipif(IN_VM, reason="already inside a v2vm VM")
@pytest.mark.skipif(os.environ.get("RUNP_SKIP_VM") == "1", reason="RUNP_SKIP_VM=1")
@pytest.mark.skipif(os.geteuid() != 0, reason="hack/v2vm needs root (apt-get, /boot/vmlinuz-*)")
def test_checkpoint_tests_pass_in_the_vm(capsys):
    from vmrun import check_run, run_pytest
    setup = "echo \"criu check: $(criu check 2>&1 | tail -n 1)\"; "
    r, took = run_pytest(INNER_TESTS, VM_TIMEOUT, "runp-criu-", ["--install", "criu"], setup)
    with capsys.disabled():
        print("\n".join(line for line in r.stdout.splitlines() if line.startswith("criu ")))
    check_run(r, took, f"criu VM: {' '.join(INNER_TESTS)}", "criu check: Looks good.", 9,
              VM_TIMEOUT, BUDGET, capsys)


# --- inside the VM ----------------------------------------------------------------------------

vm_only = pytest.mark.skipif(not IN_VM, reason="runs inside the criu VM "
                             "(test_checkpoint_tests_pass_in_the_vm)")


class Pipes:
    """A container's stdio: stdin and stdout+stderr pipes whose other ends we keep."""

    def __init__(self) -> None:
        self.in_r, self.in_w = os.pipe()
        self.out_r, self.out_w = os.pipe()
        self.buf = b""

    def given(self) -> dict:
        return {"stdin": self.in_r, "stdout": self.out_w, "stderr": self.out_w}

    def handed_over(self) -> None:
        """The runtime has them: keep only our ends (stdout ends when the container does)."""
        os.close(self.in_r)
        os.close(self.out_w)

    def numbers(self, at_least: int = 1, timeout: float = 60) -> list[int]:
        """Read until `at_least` new lines have come (or the pipe ends); the numbers."""
        deadline = time.monotonic() + timeout
        got: list[int] = []
        while len(got) < at_least:
            left = deadline - time.monotonic()
            assert left > 0, f"timed out; read {self.buf[-200:]!r}"
            r, _, _ = select.select([self.out_r], [], [], left)
            if not r:
                continue
            data = os.read(self.out_r, 4096)
            if not data:
                break
            self.buf += data
            *lines, self.buf = self.buf.split(b"\n")
            for ln in lines:
                ln = ln.strip(b"\r")
                assert re.fullmatch(rb"\d+", ln), f"not a number: {ln!r}"
                got.append(int(ln))
        return got

    def drain(self) -> list[int]:
        """What has come so far (at least one number)."""
        got = self.numbers(1)
        while select.select([self.out_r], [], [], 0)[0]:
            more = self.numbers(1)
            if not more:
                break
            got += more
        return got

    def rest(self) -> list[int]:
        """Everything until the pipe ends (the writer is gone)."""
        return self.numbers(at_least=1 << 30)

    def close(self) -> None:
        for fd in (self.in_w, self.out_r):
            os.close(fd)


class Rt:
    """runp or runc with a private root, as the tests drive both."""

    def __init__(self, name: str, binary: str, root: Path) -> None:
        self.name = name
        self.cmd = [binary, "--root", str(root)]

    def __call__(self, *args: str, check: bool = True, timeout: float = 300, **kw):
        p = subprocess.run(self.cmd + list(args), timeout=timeout, **{
            "stdin": subprocess.DEVNULL, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE,
            **kw})
        if check:
            assert p.returncode == 0, f"{self.name} {' '.join(args)}: {p.stderr!r}{p.stdout!r}"
        return p

    def detached(self, pipes: Pipes, *args: str) -> float:
        """`run -d` / `restore -d` with our pipes as the container's stdio; seconds it took."""
        t0 = time.monotonic()
        p = subprocess.run(self.cmd + list(args), timeout=300, **pipes.given())
        took = time.monotonic() - t0
        pipes.handed_over()
        assert p.returncode == 0, f"{self.name} {' '.join(args)} exited {p.returncode}: " \
                                  f"{os.read(pipes.out_r, 4096) if select.select([pipes.out_r], [], [], 0)[0] else b''!r}"
        return took

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def gone(self, cid: str) -> bool:
        return self("state", cid, check=False).returncode != 0


def counter_bundle(make_bundle, *, terminal: bool = False):
    b = make_bundle()
    b.config["process"]["terminal"] = terminal
    b.set_args("sh", "-c", COUNTER)
    return b


def checkpoint_and_restore(rt: Rt, cid: str, pipes: Pipes, img: Path, bundle) -> tuple[Pipes, float, float]:
    """Checkpoint the running counter into `img`, check it is gone, restore it with new pipes
    and check it counts on from the last number; (new pipes, checkpoint s, restore s)."""
    assert pipes.numbers(3)
    pid = rt.state(cid)["pid"]
    t0 = time.monotonic()
    rt("checkpoint", "--image-path", str(img), cid)
    t_ckpt = time.monotonic() - t0
    assert rt.gone(cid), f"{rt.name}: the container is still there after checkpoint"
    assert not proc_alive(pid)
    assert (img / "descriptors.json").exists()
    last = pipes.rest()[-1]   # the old pipe ends: nobody writes to it any more
    pipes.close()
    new = Pipes()
    t_rst = rt.detached(new, "restore", "-d", "--image-path", str(img),
                        "--bundle", str(bundle.path), cid)
    nums = new.numbers(3)
    assert nums[:3] == [last + 1, last + 2, last + 3], (rt.name, last, nums)
    st = rt.state(cid)
    assert st["status"] == "running" and st["pid"] != pid and proc_alive(st["pid"])
    return new, t_ckpt, t_rst


@vm_only
def test_counter_counts_on_after_restore_runp_and_runc(make_bundle, tmp_path, capsys):
    """Twice per runtime, alternating runc and runp: checkpoint, restore, count on. Between the
    two rounds the restored container answers state, ps and exec like any other."""
    rts = [Rt("runp", RUNP, tmp_path / "runp-root")]
    if RUNC:
        rts.insert(0, Rt("runc", RUNC, tmp_path / "runc-root"))
    bundles, ids, pipes, times = {}, {}, {}, {rt.name: [] for rt in rts}
    try:
        for rt in rts:
            bundles[rt.name] = counter_bundle(make_bundle)
            ids[rt.name] = new_id("cr")
            pipes[rt.name] = Pipes()
            rt.detached(pipes[rt.name], "run", "-d", "--bundle", str(bundles[rt.name].path),
                        ids[rt.name])
        for rnd in (1, 2):
            for rt in rts:
                cid = ids[rt.name]
                pipes[rt.name], tc, tr = checkpoint_and_restore(
                    rt, cid, pipes[rt.name], tmp_path / f"img-{rt.name}-{rnd}", bundles[rt.name])
                times[rt.name].append((tc, tr))
                if rnd == 1:
                    ps = rt("ps", cid).stdout.decode()
                    assert "while true" in ps, ps
                    ex = rt("exec", cid, "sh", "-c", "echo $$; cat /proc/1/cmdline")
                    assert ex.stdout.split(b"\n")[0] != b"1" and b"while true" in ex.stdout
        for rt in rts:
            cid = ids[rt.name]
            pid = rt.state(cid)["pid"]
            rt("kill", cid, "KILL")
            deadline = time.monotonic() + 30
            while proc_alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            rt("delete", cid)
            assert rt.gone(cid)
    finally:
        for rt in rts:
            if rt.name in ids:
                force_delete(rt.cmd, ids[rt.name])
        for p in pipes.values():
            try:
                p.close()
            except OSError:
                pass
    with capsys.disabled():
        for name, t in times.items():
            sys.stdout.write(f"\ncriu timing: {name}: checkpoint {', '.join(f'{c:.2f}' for c, _ in t)}"
                             f" s; restore {', '.join(f'{r:.2f}' for _, r in t)} s\n")
        if "runc" in times:
            c_runp, c_runc = sum(c for c, _ in times["runp"]), sum(c for c, _ in times["runc"])
            r_runp, r_runc = sum(r for _, r in times["runp"]), sum(r for _, r in times["runc"])
            sys.stdout.write(f"criu timing: runp/runc: checkpoint {c_runp / c_runc:.2f}x, "
                             f"restore {r_runp / r_runc:.2f}x (sums of 2 alternating rounds)\n")


@pytest.fixture
def rp(tmp_path):
    """runp with a private root; every container left is force-deleted, and must go."""
    r = Runp(tmp_path / "state")
    yield Rt("runp", RUNP, r.root)
    root = r.root
    if root.exists():
        for cid in os.listdir(root):
            subprocess.run(r.cmd("delete", "--force", cid), capture_output=True, timeout=60)
        assert not os.listdir(root), f"containers survived: {os.listdir(root)}"


def cgroup_of(rt: Rt, cid: str) -> str:
    state = json.loads((Path(rt.cmd[2]) / cid / "state.json").read_text())
    return state["runp"]["cgroup"]["unified"]


@vm_only
def test_leave_running_then_restore_into_a_new_id(rp, make_bundle, tmp_path):
    """--leave-running: the container goes on (same pid); its image restores beside it under
    another id, in that id's own cgroup, counting on from the checkpoint's number."""
    b = counter_bundle(make_bundle)
    cid, copy = new_id("lr"), new_id("copy")
    pipes, new = Pipes(), Pipes()
    try:
        rp.detached(pipes, "run", "-d", "--bundle", str(b.path), cid)
        assert pipes.numbers(3)
        pid = rp.state(cid)["pid"]
        before = pipes.drain()[-1]   # printed before the dump
        rp("checkpoint", "--leave-running", "--image-path", str(tmp_path / "img"), cid)
        st = rp.state(cid)
        assert (st["status"], st["pid"]) == ("running", pid)
        after = pipes.drain()[-1]    # printed by the time the dump was done
        assert pipes.numbers(2)[:2] == [after + 1, after + 2]   # it goes on
        rp.detached(new, "restore", "-d", "--image-path", str(tmp_path / "img"), "--bundle",
                    str(b.path), copy)
        first = new.numbers(3)
        assert before < first[0] <= after + 1 and first[1:3] == [first[0] + 1, first[0] + 2], \
            (before, after, first)
        cst = rp.state(copy)
        assert cst["status"] == "running" and cst["pid"] not in (pid, 0)
        assert rp.state(cid)["status"] == "running"
        cg = cgroup_of(rp, copy)
        assert cg != cgroup_of(rp, cid)
        assert str(cst["pid"]) in Path(cg, "cgroup.procs").read_text().split()
        for c in (cid, copy):
            rp("delete", "--force", c)
            assert rp.gone(c)
        assert not os.path.exists(cg)
    finally:
        pipes.close()
        new.close()


@vm_only
def test_pre_dump_then_final_dump(rp, make_bundle, tmp_path):
    """--pre-dump leaves the container running; the final dump names it with --parent-path
    (relative to --image-path, as runc requires) and restores like any other."""
    b = counter_bundle(make_bundle)
    cid = new_id("pd")
    pipes = Pipes()
    img = tmp_path / "images"
    try:
        rp.detached(pipes, "run", "-d", "--bundle", str(b.path), cid)
        assert pipes.numbers(2)
        rp("checkpoint", "--pre-dump", "--image-path", str(img / "pre"), cid)
        assert rp.state(cid)["status"] == "running"
        assert pipes.numbers(2)
        p = rp("checkpoint", "--image-path", str(img / "final"), "--parent-path", "/abs", cid,
               check=False)
        assert p.returncode == 1 and b"--parent-path must be relative" in p.stderr
        pipes, _, _ = checkpoint_and_restore_final(rp, cid, pipes, img, b)
        assert os.path.islink(img / "final" / "parent")
        rp("delete", "--force", cid)
    finally:
        pipes.close()


def checkpoint_and_restore_final(rt, cid, pipes, img, b):
    """The final dump with --parent-path ../pre, then restore."""
    pid = rt.state(cid)["pid"]
    rt("checkpoint", "--image-path", str(img / "final"), "--parent-path", "../pre", cid)
    assert rt.gone(cid) and not proc_alive(pid)
    last = pipes.rest()[-1]
    pipes.close()
    new = Pipes()
    rt.detached(new, "restore", "-d", "--image-path", str(img / "final"), "--bundle",
                str(b.path), cid)
    assert new.numbers(2)[:2] == [last + 1, last + 2]
    return new, 0, 0


@vm_only
def test_tty_through_the_console_socket(rp, make_bundle, tmp_path):
    """A terminal container: the restored pty's master reaches the new --console-socket
    (criu's orphan-pts-master), and the counter goes on there."""
    from test_terminal import ConsoleReceiver
    b = counter_bundle(make_bundle, terminal=True)
    cid = new_id("tty")
    recv1 = ConsoleReceiver(str(tmp_path / "c1.sock"))
    recv2 = ConsoleReceiver(str(tmp_path / "c2.sock"))
    terms = []
    try:
        rp("run", "-d", "--console-socket", recv1.path, "--bundle", str(b.path), cid)
        t1, _ = recv1.receive()
        terms.append(t1)
        t1.expect(re.compile(rb"\r\n(\d+)\r\n\d+\r\n"), 60)
        pid = rp.state(cid)["pid"]
        rp("checkpoint", "--image-path", str(tmp_path / "img"), cid)
        assert rp.gone(cid) and not proc_alive(pid)
        seen = []
        try:
            while True:
                seen.append(t1.expect(b"\r\n", 5))
        except AssertionError:
            pass  # the pty ends (EIO) once its last slave is gone
        nums = [int(x) for x in re.findall(rb"(\d+)\r\n", t1.buf + b"".join(seen))]
        last = nums[-1]
        rp("restore", "-d", "--console-socket", recv2.path, "--image-path", str(tmp_path / "img"),
           "--bundle", str(b.path), cid)
        t2, _ = recv2.receive()
        terms.append(t2)
        got = t2.expect(re.compile(rb"(\d+)\r\n(\d+)\r\n(\d+)\r\n"), 60)
        after = [int(x) for x in re.findall(rb"(\d+)\r\n", got)]
        assert after[:3] == [last + 1, last + 2, last + 3], (last, got)
        assert rp.state(cid)["status"] == "running"
        rp("delete", "--force", cid)
    finally:
        for t in terms:
            t.close()
        recv1.close()
        recv2.close()


def counter_processes(marker: str) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{d}/cmdline").read_bytes():
                    out.append(int(d))
            except OSError:
                pass
    return out


@vm_only
def test_failed_restore_leaves_nothing_behind(rp, make_bundle, tmp_path):
    """A restore criu refuses (an image without its memory pages) fails with one line naming
    criu's reason and its log, and leaves no state dir, cgroup, mount or process behind;
    restoring onto an existing id, or from a directory that is no checkpoint, fails first."""
    b = counter_bundle(make_bundle)
    cid, bad = new_id("ok"), new_id("bad")
    marker = f"mark-{cid}"
    b.set_args("sh", "-c", COUNTER, marker)
    pipes = Pipes()
    img = tmp_path / "img"
    try:
        rp.detached(pipes, "run", "-d", "--bundle", str(b.path), cid)
        assert pipes.numbers(2)
        rp("checkpoint", "--leave-running", "--image-path", str(img), cid)
        p = rp("restore", "-d", "--image-path", str(img), "--bundle", str(b.path), cid, check=False)
        assert p.returncode == 1 and b"already exists" in p.stderr, p.stderr
        p = rp("restore", "-d", "--image-path", str(tmp_path), "--bundle", str(b.path), bad,
               check=False)
        assert p.returncode == 1 and b"descriptors.json" in p.stderr, p.stderr
        rp("delete", "--force", cid)
        for page in img.glob("pages-*.img"):
            page.unlink()
        before = counter_processes(marker)
        assert before == []
        p = rp("restore", "-d", "--image-path", str(img), "--bundle", str(b.path), bad,
               check=False)
        err = p.stderr.decode()
        assert p.returncode == 1, err
        assert err.count("\n") == 1 and "criu failed: type RESTORE" in err and "restore.log" in err
        assert rp.gone(bad) and not (Path(rp.cmd[2]) / bad).exists()
        assert not any(bad in d for d, _, _ in os.walk("/sys/fs/cgroup")), "a cgroup is left"
        assert "criu-root" not in Path("/proc/self/mountinfo").read_text()
        assert counter_processes(marker) == []
    finally:
        pipes.close()


@vm_only
def test_foreground_restore_waits_and_returns_the_status(rp, make_bundle, tmp_path):
    """restore without --detach is `run`: the restored process writes to restore's own stdio,
    restore waits for it, exits with its status and deletes the container."""
    b = counter_bundle(make_bundle)
    b.set_args("sh", "-c", "i=0; while [ $i -lt 40 ]; do echo $i; i=$((i+1)); sleep 0.1; done; "
               "exit 7")
    cid = new_id("fg")
    pipes, new = Pipes(), Pipes()
    try:
        rp.detached(pipes, "run", "-d", "--bundle", str(b.path), cid)
        assert pipes.numbers(3)
        rp("checkpoint", "--image-path", str(tmp_path / "img"), cid)
        last = pipes.rest()[-1]
        assert last < 35, "the counter ended before the checkpoint: make it longer"
        p = subprocess.run(rp.cmd + ["restore", "--image-path", str(tmp_path / "img"),
                                     "--bundle", str(b.path), cid], timeout=300, **new.given())
        new.handed_over()
        assert p.returncode == 7
        assert new.rest() == list(range(last + 1, 40))
        assert rp.gone(cid) and not (Path(rp.cmd[2]) / cid).exists()
    finally:
        pipes.close()
        new.close()
