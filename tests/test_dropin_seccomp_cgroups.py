"""Drop-in fidelity with runc (issue #19): seccomp's answer to syscalls a profile does not know,
and no cgroup left behind after a realtime `update`. Real containers, runc side by side.
"""
from __future__ import annotations

import errno
import os
import shutil
import subprocess
import tempfile

import pytest

from conftest import cgroup_roots, new_id
from test_container_cgroups import _kill_and_remove, dirs_named

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

RUNC = shutil.which("runc")


def run_in(cmd: list[str], bundle, cid: str) -> tuple[int, str]:
    """`run` the bundle with a runtime's command line; always force-delete afterwards."""
    try:
        p = subprocess.run(cmd + ["run", "--bundle", str(bundle.path), cid], capture_output=True,
                           timeout=60)
    finally:
        subprocess.run(cmd + ["delete", "--force", cid], capture_output=True, timeout=30)
    return p.returncode, p.stdout.decode() + p.stderr.decode()


# --- seccomp: ENOSYS above the highest syscall the profile names ---------------------------------

# Makes each raw syscall its arguments name and prints what came back: "NR" through the x86_64
# syscall instruction, "i386:NR" through int $0x80 (the kernel's 32-bit entry, seccomp arch
# AUDIT_ARCH_I386), "x32:NR" with the x32 bit set. busybox cannot make a raw syscall.
SYSNO_C = r"""
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        char *arg = argv[i];
        long r;
        if (strncmp(arg, "i386:", 5) == 0) {
            long nr = strtol(arg + 5, NULL, 0);
            __asm__ volatile ("int $0x80" : "=a"(r) : "a"(nr), "b"(0), "c"(0), "d"(0) : "memory");
            if (r < 0 && r > -4096) { errno = -r; r = -1; }
        } else if (strncmp(arg, "x32:", 4) == 0) {
            r = syscall(0x40000000L | strtol(arg + 4, NULL, 0), 0, 0, 0);
        } else {
            r = syscall(strtol(arg, NULL, 0), 0, 0, 0);
        }
        printf("%s=%s\n", arg, r == -1 ? strerrorname_np(errno) : "ok");
        fflush(stdout);
    }
    return 0;
}
"""

RSEQ = 334            # x86_64 numbers
ACCT = 163            # below rseq, named by no allow-list here: the default action decides
GETTID = 186
CLONE3 = 435          # newer than the profiles below: what broke real images (glibc's fallback
                      # to clone needs ENOSYS)


def allow_list_up_to_rseq() -> list[str]:
    """The container profile's allow-list of test_seccomp (enough for the static helper, and
    for runc 1.1.5, which still runs its Go code after it loads the filter) without the calls
    newer than rseq: so 335 and above are "newer than the profile"."""
    import seccomp as scmp
    from test_seccomp import SYSCALLS_ALLOWED
    return [n for n in SYSCALLS_ALLOWED if 0 <= scmp.resolve_syscall(scmp.Arch.X86_64, n) <= RSEQ]


@pytest.fixture(scope="module")
def sysno(tmp_path_factory) -> str:
    if os.uname().machine != "x86_64":
        pytest.skip("the helper makes x86_64, i386 and x32 syscalls")
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed (hack/setup installs it)")
    d = tmp_path_factory.mktemp("sysno")
    (d / "sysno.c").write_text(SYSNO_C)
    subprocess.run([gcc, "-static", "-O2", "-o", str(d / "sysno"), str(d / "sysno.c")],
                   check=True, capture_output=True, timeout=120)
    return str(d / "sysno")


def profile(default: str, arches: list[str] | None, **extra) -> dict:
    cfg = {"defaultAction": default,
           "syscalls": [{"names": allow_list_up_to_rseq(), "action": "SCMP_ACT_ALLOW"}], **extra}
    if arches is not None:
        cfg["architectures"] = arches
    return cfg


ALL_X86 = ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
# case: (seccomp profile, calls, expected output lines, whether runc 1.1.5 agrees)
SECCOMP_CASES = {
    # podman's and docker's kind of profile, with EPERM as the default errno
    "errno-default": (profile("SCMP_ACT_ERRNO", ALL_X86),
                      ["1000", str(CLONE3), str(ACCT), "i386:1000", "x32:1000", f"x32:{ACCT}"],
                      ["1000=ENOSYS", f"{CLONE3}=ENOSYS", f"{ACCT}=EPERM", "i386:1000=ENOSYS",
                       "x32:1000=ENOSYS", f"x32:{ACCT}=EPERM"], True),
    "errno-ret": (profile("SCMP_ACT_ERRNO", ["SCMP_ARCH_X86_64"], defaultErrnoRet=errno.EACCES),
                  ["1000", str(ACCT)], ["1000=ENOSYS", f"{ACCT}=EACCES"], True),
    # a call the profile does not know gets ENOSYS instead of killing the process
    "kill-default": (profile("SCMP_ACT_KILL", ["SCMP_ARCH_X86_64"]), [str(CLONE3), "1000"],
                     [f"{CLONE3}=ENOSYS", "1000=ENOSYS"], True),
    # a permissive default lets every call through: gettid runs although 186 > mkdir's 83
    "allow-default": ({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
                       "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]},
                      [str(GETTID), "1000"], [f"{GETTID}=ok", "1000=ENOSYS"], True),
    "log-default": ({"defaultAction": "SCMP_ACT_LOG", "architectures": ["SCMP_ARCH_X86_64"],
                     "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]},
                    [str(GETTID)], [f"{GETTID}=ok"], True),
    # no "architectures": the native one still gets the stub (runc 1.1.15 and later; 1.1.5
    # left the stub empty and answered EPERM)
    "no-architectures": (profile("SCMP_ACT_ERRNO", None), ["1000", str(ACCT)],
                         ["1000=ENOSYS", f"{ACCT}=EPERM"], False),
}


@pytest.mark.parametrize("case", list(SECCOMP_CASES))
def test_unknown_syscall_gets_enosys_like_runc(runp, bundle, tmp_path, sysno, case):
    """A syscall number above the highest one the profile names (one newer than the profile,
    as clone3 was) returns ENOSYS, so libc falls back, instead of the default action; numbers
    below it, and every call under a permissive default, get what the profile says."""
    cfg, calls, want, runc_agrees = SECCOMP_CASES[case]
    shutil.copy2(sysno, bundle.rootfs / "sysno")
    bundle.config["linux"]["seccomp"] = cfg
    # runc then loads the filter right before exec, as runp always does (without it, runc's
    # own setup after the load would need the profile to allow it)
    bundle.config["process"]["noNewPrivileges"] = True
    bundle.set_args("/sysno", *calls)
    code, out = run_in(runp.cmd(), bundle, new_id("runp"))
    assert (code, out.split()) == (0, want), out
    if RUNC is None or not runc_agrees:
        return
    code, out = run_in([RUNC, "--root", str(tmp_path / "runc-root")], bundle, new_id("runc"))
    assert (code, out.split()) == (0, want), f"runc: {out}"


# --- cgroups: a realtime update, then delete ------------------------------------------------------

RT = ("--cpu-rt-period", "1000000", "--cpu-rt-runtime", "10000")   # runc's flag names


@pytest.fixture
def cgroup_names():
    """Names (parts of cgroup paths) a test uses: afterwards no cgroup with one of them may be
    left in any hierarchy; leftovers are removed, then fail the test."""
    names: list[str] = []
    yield names
    left = sorted({d for n in names for d in dirs_named(n)}, key=len)
    for d in reversed(left):
        mark = parent_mark(d)
        _kill_and_remove(d)
        if os.path.exists(mark):
            os.unlink(mark)
    assert not left, f"cgroup directories survived: {left}"


def parent_mark(d: str) -> str:
    """Where runp marks a parent cgroup it made (runtime.linux.cgroup_recorded.PARENT_MARKS)."""
    st = os.stat(d)
    return f"/run/runp-cgroup-parents/{st.st_dev}-{st.st_ino}"


def rt_capable() -> str:
    from runtime.linux.cgroups import common
    cpu = next((m for m, _, ctrls in common.v1_mounts() if "cpu" in ctrls), None)
    if cpu is None or not os.path.exists(f"{cpu}/cpu.rt_runtime_us"):
        pytest.skip("no v1 cpu controller with realtime group scheduling on this host")
    return cpu


def sleeper(bundle, cgroups_path: str | None = None):
    bundle.config["process"]["args"] = ["sleep", "1000"]
    if cgroups_path:
        bundle.config["linux"]["cgroupsPath"] = cgroups_path
    return bundle.write()


@pytest.mark.parametrize("runtime", ["runp", "runc"])
def test_realtime_update_then_delete_leaves_no_cgroup(runp, bundle, tmp_path, cgroup_names,
                                                      runtime):
    """update gives the container a realtime budget; delete still removes its cgroup in every
    hierarchy, budget and all, as runc does."""
    cpu = rt_capable()
    if runtime == "runc" and RUNC is None:
        pytest.skip("runc is not installed")
    cmd = runp.cmd() if runtime == "runp" else [RUNC, "--root", str(tmp_path / "runc-root")]
    cid = new_id(runtime)
    cgroup_names.append(cid)
    sleeper(bundle)
    try:
        # a file, not a pipe: the detached container keeps its stderr open
        with tempfile.TemporaryFile() as err:
            p = subprocess.run(cmd + ["run", "--detach", "--bundle", str(bundle.path), cid],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                               timeout=60)
            err.seek(0)
            assert p.returncode == 0, err.read()
        p = subprocess.run(cmd + ["update", *RT, cid], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        mine = [d for d in dirs_named(cid) if d.startswith(cpu + "/")]
        assert len(mine) == 1, mine
        assert open(f"{mine[0]}/cpu.rt_runtime_us").read().strip() == "10000"
        assert open(f"{mine[0]}/cgroup.procs").read().split(), "the container is not in it"
    finally:
        subprocess.run(cmd + ["delete", "--force", cid], capture_output=True, timeout=30)
    assert not dirs_named(cid)


def test_shared_parent_goes_with_the_last_container(runp, make_bundle, cgroup_names):
    """Two containers below a parent cgroup runp made for the first one ("/pod/a", "/pod/b"),
    which the first one's realtime update gave a budget: the first goes while the second still
    uses the parent, so the second must remove it, budget and all. (runc 1.1.5 never removes
    parents, and refuses the realtime update because it gives the parent no budget; the
    runtime-spec has delete remove what create made.)"""
    cpu = rt_capable()
    pod = new_id("pod")
    cgroup_names.append(pod)
    a, b = new_id("a"), new_id("b")
    runp("create", "--bundle", str(sleeper(make_bundle(), f"/{pod}/{a}").path), a)
    runp("create", "--bundle", str(sleeper(make_bundle(), f"/{pod}/{b}").path), b)
    parents = sorted(d for d in dirs_named(pod) if os.path.basename(d) == pod)
    assert len(parents) == len(set(map(os.path.dirname, parents))) > 1, parents
    marks = [parent_mark(d) for d in parents]
    runp("update", *RT, a)
    assert open(f"{cpu}/{pod}/cpu.rt_runtime_us").read().strip() == "10000"
    runp("delete", "--force", a)
    assert not dirs_named(a)
    assert all(os.path.isdir(d) for d in parents)      # b still uses them
    runp("delete", "--force", b)
    assert not dirs_named(pod)
    assert not [m for m in marks if os.path.exists(m)]


def test_create_makes_again_a_parent_removed_meanwhile(monkeypatch, cgroup_names):
    """Now that any container's delete removes a parent runp made, a create below it can find
    the parent gone between its check and its mkdir: it makes the parent again."""
    from runtime.linux.cgroups import common
    root = cgroup_roots()[0]
    pod = new_id("pod")
    cgroup_names.append(pod)
    parent = f"{root}/{pod}"
    os.mkdir(parent)
    real_mkdir = os.mkdir
    calls = []

    def racing_mkdir(path, mode=0o777):
        if not calls:
            os.rmdir(parent)          # the last sibling's delete, just before our mkdir
        calls.append(path)
        real_mkdir(path, mode)

    monkeypatch.setattr(common.os, "mkdir", racing_mkdir)
    created: list[str] = []
    common.mkdirs(f"{parent}/ctr", created)
    monkeypatch.undo()
    assert created == [parent, f"{parent}/ctr"]
    for d in reversed(created):
        os.rmdir(d)
