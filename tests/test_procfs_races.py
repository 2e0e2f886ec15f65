"""The two races of issue #16: /proc writes an over-mount can redirect (CVE-2025-52881), and
`runp exec`'s magic-link check against a program swapped after it (CVE-2019-5736 class).

Each attack is shown to win without its defence (see the docstrings for how that was checked).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from conftest import new_id, force_delete

RUNC = shutil.which("runc")
HOST_PYTHON = os.path.realpath(sys.executable)


@pytest.fixture
def canary():
    """A host process whose oom_score_adj (0) is where a redirected write would land."""
    p = subprocess.Popen(["sleep", "600"])
    try:
        assert _oom(p.pid) == "0"
        yield p
    finally:
        p.kill()
        p.wait()


def _oom(pid: int) -> str:
    return Path(f"/proc/{pid}/oom_score_adj").read_text().strip()


def _over_mount(bundle, target: str, source: str) -> None:
    """What the CVE's racing container achieves, made deterministic: `target` (a /proc path
    of the container's, "/proc/1/..." for its init) ends up with a bind of `source` on it
    after every check of the config's mounts. A mount destination can no longer do it: one
    that resolves inside /proc is refused, as by runc 1.1.5 (tests/test_leftovers.py). A
    createContainer hook can: it runs as root in the container's mount namespace, after
    the mounts and before pivot_root, with the host's /proc (and the canary in it) at hand."""
    bundle.config.setdefault("hooks", {}).setdefault("createContainer", []).append(
        {"path": "/bin/busybox",
         "args": ["mount", "--bind", source, f"{bundle.rootfs}{target}"]})


def test_oom_score_adj_write_cannot_be_redirected(runp, bundle, cid, canary):
    """Attack (CVE-2025-52881): the container's /proc/self/oom_score_adj (the init is pid 1
    of its namespace: /proc/1/oom_score_adj) has a bind of a HOST process's oom_score_adj on
    it when the init writes process.oomScoreAdj (_over_mount); the file is on procfs, so a
    procfs check passes, and the host process gets the value.
    Defence: the write goes below the init's own procfs (linux/procfs.py: fsmount'ed before
    any of the container's mounts, openat2 RESOLVE_NO_XDEV), where nothing is mounted.
    Verified: with process.set_oom_score_adj writing "/proc/self/oom_score_adj" again, the
    canary's score becomes 500 and the container's stays 0 (this test fails).
    runc 1.1.5 is not redirected either: it writes the score from the host, through the
    init's /proc/<pid> (runc fixed the in-container writes in 1.2.8/1.3.3 with a private
    procfs, as runp does)."""
    _over_mount(bundle, "/proc/1/oom_score_adj", f"/proc/{canary.pid}/oom_score_adj")
    bundle.config["process"]["oomScoreAdj"] = 500
    bundle.set_args("sleep", "100")
    runp("create", "-b", str(bundle.path), cid)
    try:
        init = runp.state(cid)["pid"]
        assert _oom(canary.pid) == "0", "the write landed on the host process"
        assert _oom(init) == "500", "the container's own score was not set"
    finally:
        runp("delete", "--force", cid)
    if RUNC is not None:
        root = ["runc", "--root", str(bundle.path.parent / "runc-root")]
        rid = new_id("runc")
        try:
            with tempfile.TemporaryFile() as err:  # (not a pipe: the container inherits it)
                p = subprocess.run(root + ["create", "-b", str(bundle.path), rid], stderr=err,
                                   stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                                   timeout=60)
                err.seek(0)
                assert p.returncode == 0, err.read()
            assert _oom(canary.pid) == "0"
        finally:
            force_delete(root, rid)


def test_sysctl_write_cannot_be_redirected(runp, bundle, cid, canary):
    """Attack: as above, on a sysctl (linux.sysctl net.ipv4.ip_unprivileged_port_start): the
    container's /proc/sys file has a bind of a host process's oom_score_adj on it.
    Defence: sysctls are written below runp's own procfs; the value lands in the container's
    network namespace. Verified: with mounts.write_sysctls writing "/proc/sys/..." (the old
    write_proc_file, with its procfs check), the canary's score becomes 500 (runc 1.1.5,
    which writes sysctls through the container's /proc, gives the canary 500 too)."""
    key = "net/ipv4/ip_unprivileged_port_start"
    _over_mount(bundle, f"/proc/sys/{key}", f"/proc/{canary.pid}/oom_score_adj")
    bundle.config["linux"]["sysctl"] = {key.replace("/", "."): "500"}
    bundle.set_args("sleep", "100")
    runp("create", "-b", str(bundle.path), cid)
    try:
        init = runp.state(cid)["pid"]
        assert _oom(canary.pid) == "0", "the sysctl landed on the host process"
        inside = subprocess.run(["nsenter", f"--net=/proc/{init}/ns/net", "cat",
                                 f"/proc/sys/{key}"], capture_output=True, text=True, check=True)
        assert inside.stdout.strip() == "500"
    finally:
        runp("delete", "--force", cid)


def test_exec_oom_score_adj_not_redirected_from_inside(runp, bundle, cid, tmp_path):
    """Attack: a process already in the container (root with CAP_SYS_ADMIN) mounts a tmpfs
    over its /proc whose "self" leads to pid 1's directory of a procfs it mounted elsewhere;
    `runp exec` with oomScoreAdj then writes the container init's score, not its own.
    Defence: exec's helper opens its procfs root on the host's side, before it joins the
    container (exec._helper_main), and the process writes below it.
    Verified: with the old path write the init's score becomes 700 and the exec'd process's
    stays 0 (this test fails)."""
    bundle.config["process"]["capabilities"] = {
        k: ["CAP_SYS_ADMIN", "CAP_DAC_OVERRIDE"]
        for k in ("bounding", "effective", "permitted")}
    bundle.config["linux"]["maskedPaths"] = []
    bundle.config["linux"]["readonlyPaths"] = []
    bundle.set_args("sh", "-c", "mkdir -p /p2 && mount -t proc proc /p2 && "
                    "mount -t tmpfs tmpfs /proc && ln -s /p2/1 /proc/self && "
                    "ln -s /p2/1 /proc/thread-self && touch /tmp/ready && exec sleep 100")
    runp("run", "-d", "-b", str(bundle.path), cid)
    try:
        init = runp.state(cid)["pid"]
        _wait(lambda: (bundle.rootfs / "tmp" / "ready").exists(), "the over-mount")
        proc = dict(bundle.config["process"], args=["sleep", "100"], oomScoreAdj=700)
        (tmp_path / "p.json").write_text(json.dumps(proc))
        pidf = tmp_path / "exec.pid"
        p = runp("exec", "-d", "--pid-file", str(pidf), "--process", str(tmp_path / "p.json"),
                 cid, check=False)
        assert p.returncode == 0, p.stderr
        assert _oom(init) == "0", "the exec's write landed on the container's init"
        assert _oom(int(pidf.read_text())) == "700"
    finally:
        runp("delete", "--force", cid)


def _wait(cond, what: str, timeout: float = 10) -> None:
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


SWAPPER = r"""
import os
open("/tmp/swapping", "w").close()
while True:
    for target in ("/good", "/evil"):
        os.symlink(target, "/tmp/l")
        os.rename("/tmp/l", "/prog")
"""


def test_exec_check_cannot_be_raced_by_the_container(runp, bundle, cid):
    """Attack (CVE-2019-5736 through `runp exec`, raced): a process in the container swaps
    /prog between a harmless script and one whose interpreter is /proc/self/exe, as fast as
    it can, while `runp exec cid /prog` runs again and again. A check of the path followed by
    an execve of the path can see the harmless one and exec the other: the kernel then runs
    runp's own executable, the HOST's python, inside the container (it prints EVIL-RAN; the
    image carries the libraries python needs to start, as an attacker's would).
    Defence: process.open_program opens /prog and its interpreters (RESOLVE_IN_ROOT |
    RESOLVE_NO_MAGICLINKS), checks through those fds and execs the final binary's fd
    (execveat), so what was checked is what runs.
    Verified: with the old check (openat2 of the path, then execve of the path) 2-9 of 40
    runs print EVIL-RAN here (this test fails); with the fd, none in 40.
    runc 1.1.5 has no such check (it protects its binary by running from a sealed memfd copy
    instead); runp's executable is the host interpreter, which it cannot copy per exec."""
    from test_cve import evil_rootfs_with_python_libs
    r = bundle.rootfs
    evil_rootfs_with_python_libs(r)
    shutil.copy2(HOST_PYTHON, r / "bin" / "swapper-python")  # the container's own copy
    (r / "swapper.py").write_text(SWAPPER)
    (r / "good").write_text("#!/bin/sh\necho GOOD\n")
    (r / "evil").write_text("#!/proc/self/exe -Scprint('EVIL-RAN')\n")
    for f in ("good", "evil"):
        (r / f).chmod(0o755)
    bundle.set_args("/bin/swapper-python", "-S", "/swapper.py")
    runp("run", "-d", "-b", str(bundle.path), cid)
    try:
        _wait(lambda: (r / "tmp" / "swapping").exists(), "the swapper")
        results = {"GOOD": 0, "refused": 0, "other": 0}
        evil = []
        for _ in range(40):
            p = runp("exec", cid, "/prog", check=False, timeout=30)
            out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
            if "EVIL-RAN" in out or "Python" in err:
                evil.append((p.returncode, out, err))
            elif "GOOD" in out:
                results["GOOD"] += 1
            elif "magic link" in err:
                results["refused"] += 1
            else:  # e.g. /prog missing for a moment: not what this test is about
                results["other"] += 1
        assert not evil, f"the host interpreter ran {len(evil)} times: {evil[:2]} ({results})"
        assert results["GOOD"] and results["refused"], results  # the swap really raced us
    finally:
        runp("delete", "--force", cid)


def test_exec_of_scripts_keeps_argv_and_fds(runp, bundle, cid):
    """Running the checked binary through its fd must not change what a script sees: $0 is
    the script's path (the kernel would say /dev/fd/N), the #! argument comes through, and no
    fd of runp's reaches it; an unexecutable script is refused as execve would. The name the
    kernel gives the process is the file's own: "busybox" for sleep -> busybox (runc:
    "sleep"); the container's init keeps runc's name (it is run by path)."""
    r = bundle.rootfs
    (r / "bin" / "show").write_text("#!/bin/sh -e\necho \"$0|$*\"; ls /proc/self/fd\n")
    (r / "bin" / "show").chmod(0o755)
    (r / "bin" / "nested").write_text("#!/bin/show\n")
    (r / "bin" / "nested").chmod(0o755)
    (r / "noexec").write_text("#!/bin/sh\necho NO\n")
    (r / "noexec").chmod(0o644)
    bundle.set_args("sleep", "100")
    runp("run", "-d", "-b", str(bundle.path), cid)
    try:
        p = runp("exec", cid, "show", "a", "b c")
        assert p.stdout.decode().split() == ["/bin/show|a", "b", "c", "0", "1", "2", "3"]
        p = runp("exec", cid, "/bin/nested", "x")  # sh -e /bin/show /bin/nested x
        assert p.stdout.decode().splitlines()[0] == "/bin/show|/bin/nested x"
        p = runp("exec", cid, "/noexec", check=False)
        assert p.returncode != 0 and b"permission denied" in p.stderr.lower(), p.stderr
        assert runp("exec", cid, "cat", "/proc/1/comm").stdout == b"sleep\n"
        assert runp("exec", cid, "cat", "/proc/self/comm").stdout == b"busybox\n"
    finally:
        runp("delete", "--force", cid)


def test_masks_and_read_only_paths_not_redirected_through_proc_fd(runp, bundle, cid):
    """Attack (CVE-2025-31133 class): a directory of symlinks is bound over the container's
    /proc/self/fd (the init's /proc/1/fd: _over_mount), every one leading to /decoy. After
    pivot_root, a mount made on "/proc/self/fd/N" goes there: the masks and the read-only
    bind land on /decoy, and the masked file and the read-only directory stay as they were.
    Defence: masks, read-only paths and /dev/console are mounted on fds (open_tree, fsmount,
    move_mount, mount_setattr), with no /proc path at all (mounts.py).
    Verified: with the old fd_path mounts the container reads SECRET and writes into /ro."""
    fake = bundle.path / "fake-fd"
    fake.mkdir()
    for n in range(0, 1100):
        (fake / str(n)).symlink_to("/decoy")
    (bundle.rootfs / "decoy").write_text("decoy\n")
    (bundle.rootfs / "secret").write_text("SECRET\n")
    (bundle.rootfs / "ro").mkdir()
    lx = bundle.config["linux"]
    lx["maskedPaths"] = ["/secret"]
    lx["readonlyPaths"] = ["/ro"]
    _over_mount(bundle, "/proc/1/fd", str(fake))
    bundle.set_args("sh", "-c", "cat /secret; touch /ro/x 2>/dev/null && echo WRITABLE; "
                    "echo end")
    p = runp("run", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 0, p.stderr
    assert p.stdout.decode().split() == ["end"], p.stdout


def test_seccomp_profile_without_execveat_still_runs(runp, bundle, cid):
    """A profile that allows execve but not execveat (nor faccessat2), as a hand-written
    allow-list may: `runp exec` still runs the process (it falls back to execve of the path,
    what runc does anyway), a script included."""
    (bundle.rootfs / "script").write_text("#!/bin/sh\necho RAN $0\n")
    (bundle.rootfs / "script").chmod(0o755)
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "syscalls": [{"names": ["execveat", "faccessat2"], "action": "SCMP_ACT_ERRNO",
                      "errnoRet": 1}]}
    bundle.set_args("sleep", "100")
    runp("run", "-d", "-b", str(bundle.path), cid)
    try:
        p = runp("exec", cid, "/script", check=False)
        assert (p.returncode, p.stdout) == (0, b"RAN /script\n"), p.stderr
    finally:
        runp("delete", "--force", cid)
