"""Security settings observed from inside real containers: capabilities, no_new_privs, seccomp
(incl. a podman-sized profile and a notify agent), masked and read-only paths, LSM labels."""
from __future__ import annotations

import errno
import fcntl
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import threading
from pathlib import Path

import pytest

from conftest import mounted_with, new_id
from runtime.linux import arch
from runtime.linux.capabilities import CAPS, host_bounding

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def run(runp, bundle, cid, *args: str, ok: bool = True, extra: tuple[str, ...] = ()):
    """`runp run` in the foreground; stdout and stderr as text."""
    bundle.set_args(*args)
    p = runp(*extra, "run", "-b", str(bundle.path), cid, check=False)
    out, err = p.stdout.decode(), p.stderr.decode()
    if ok:
        assert p.returncode == 0, f"exit {p.returncode}: {err}"
    return p.returncode, out, err


def status_of(text: str) -> dict[str, str]:
    """/proc/<pid>/status as a dict."""
    out = {}
    for line in text.splitlines():
        k, _, v = line.partition(":")
        out[k] = v.strip()
    return out


def mask(names) -> int:
    m = 0
    for n in names:
        m |= 1 << CAPS[n]
    return m


def hexcaps(m: int) -> str:
    return f"{m:016x}"


# --- capabilities and no_new_privs -----------------------------------------------------------------

DEFAULT = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
PODMAN = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
          "CAP_NET_BIND_SERVICE", "CAP_SETFCAP", "CAP_SETGID", "CAP_SETPCAP", "CAP_SETUID",
          "CAP_SYS_CHROOT"]
ALL_HOST = [n for n, v in CAPS.items() if host_bounding() >> v & 1]

CAP_CASES = {
    # name: (uid, capabilities object or None, noNewPrivileges)
    "default-root": (0, {k: DEFAULT for k in ("bounding", "effective", "permitted", "ambient")}, True),
    "empty-root": (0, {}, True),
    "absent-root": (0, None, False),
    "podman-root": (0, {"bounding": PODMAN, "effective": PODMAN, "permitted": PODMAN,
                        "inheritable": ["CAP_KILL", "CAP_CHOWN"]}, False),
    "all-host-root": (0, {k: ALL_HOST for k in ("bounding", "effective", "permitted",
                                               "inheritable")}, True),
    "ambient-user": (1000, {"bounding": PODMAN, "effective": ["CAP_NET_BIND_SERVICE", "CAP_KILL"],
                            "permitted": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"],
                            "inheritable": ["CAP_NET_BIND_SERVICE", "CAP_KILL", "CAP_CHOWN"],
                            "ambient": ["CAP_NET_BIND_SERVICE", "CAP_KILL"]}, True),
    "no-ambient-user": (1000, {"bounding": PODMAN, "effective": PODMAN, "permitted": PODMAN,
                               "inheritable": ["CAP_CHOWN"]}, False),
    # CAP_KILL is not inheritable, so it cannot become ambient: dropped with a warning (runc)
    "bad-ambient-user": (1000, {"bounding": DEFAULT, "effective": DEFAULT, "permitted": DEFAULT,
                                "inheritable": ["CAP_NET_BIND_SERVICE"],
                                "ambient": ["CAP_NET_BIND_SERVICE", "CAP_KILL"]}, True),
}


def expected_caps(uid: int, caps: dict | None) -> dict[str, int]:
    """What /proc/self/status must show after execve of a file without file capabilities.

    For root (execve semantics, capabilities(7)): P' = bounding | inheritable | ambient and
    E' = P'. For anyone else: P' = E' = ambient. Bounding, inheritable and ambient are kept.
    An ambient capability is only raised if it is permitted and inheritable.
    """
    if caps is None:  # no capabilities object: runc leaves the sets alone (root keeps all)
        bnd, inh, amb = host_bounding(), 0, 0
    else:
        bnd, inh = mask(caps.get("bounding", [])), mask(caps.get("inheritable", []))
        amb = mask(caps.get("ambient", [])) & inh & mask(caps.get("permitted", []))
    prm = (bnd | inh | amb) if uid == 0 else amb
    return {"CapBnd": bnd, "CapInh": inh, "CapAmb": amb, "CapPrm": prm, "CapEff": prm}


@pytest.mark.parametrize("case", list(CAP_CASES))
def test_capabilities_and_nnp_in_status(runp, bundle, cid, case):
    uid, caps, nnp = CAP_CASES[case]
    proc = bundle.config["process"]
    proc["user"] = {"uid": uid, "gid": uid}
    proc["noNewPrivileges"] = nnp
    if caps is None:
        proc.pop("capabilities", None)
    else:
        proc["capabilities"] = caps
    _, out, _ = run(runp, bundle, cid, "cat", "/proc/self/status")
    st = status_of(out)
    want = expected_caps(uid, caps)
    got = {k: int(st[k], 16) for k in want}
    assert {k: hexcaps(v) for k, v in got.items()} == {k: hexcaps(v) for k, v in want.items()}
    assert st["NoNewPrivs"] == ("1" if nnp else "0")
    assert st["Seccomp"] == "0" and st["Seccomp_filters"] == "0"
    assert st["Uid"].split() == [str(uid)] * 4 and st["Gid"].split() == [str(uid)] * 4


def test_capabilities_are_enforced(runp, bundle, cid):
    """The sets are not only reported: without CAP_CHOWN root cannot chown, without
    CAP_NET_RAW it cannot open a raw socket, and a non-root user with ambient CAP_CHOWN can."""
    proc = bundle.config["process"]
    proc["capabilities"] = {k: ["CAP_KILL"] for k in ("bounding", "effective", "permitted")}
    code, out, err = run(runp, bundle, cid, "sh", "-c",
                         "touch /tmp/f; chown 1000 /tmp/f && echo CHOWNED", ok=False)
    assert "CHOWNED" not in out and "Operation not permitted" in err
    proc["user"] = {"uid": 1000, "gid": 1000}
    proc["capabilities"] = {k: ["CAP_CHOWN"] for k in ("bounding", "effective", "permitted",
                                                        "inheritable", "ambient")}
    _, out, _ = run(runp, bundle, cid, "sh", "-c",
                    "touch /tmp/f; chown 1234 /tmp/f && stat -c %u /tmp/f")
    assert out.strip() == "1234"


# --- the privilege drop happens at create, before the wait for start (as runc's) ---------------

RUNC = shutil.which("runc")
# what the created init shows of its credentials and filter (its main thread: runc's other
# threads keep root's until its execve)
DROPPED = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
           "NoNewPrivs", "Seccomp", "Seccomp_filters")


def _created_init(cmd: list[str], bundle, cid: str) -> tuple[dict[str, str], str]:
    """(its /proc status lines of DROPPED, its cwd) of the init of a created container."""
    subprocess.run(cmd + ["create", "-b", str(bundle.path), cid], check=True,  # (no pipes: the
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # container keeps them)
                   stderr=subprocess.DEVNULL, timeout=60)
    state = json.loads(subprocess.run(cmd + ["state", cid], check=True, capture_output=True,
                                      timeout=30).stdout)
    assert state["status"] == "created"
    pid = state["pid"]
    st = status_of(Path(f"/proc/{pid}/status").read_text())
    return {k: st[k] for k in DROPPED}, os.readlink(f"/proc/{pid}/cwd")


def test_created_init_has_dropped_privileges_as_runc(runp, bundle, tmp_path):
    """Between create and start the init already has the process's uid, gids, capabilities,
    no_new_privs, filter and cwd, as runc 1.1.5's init (finalizeNamespace and seccomp come
    before the exec fifo in standard_init_linux.go): `start` then only wakes it for the execve.
    runp dropped them only after start (0.46 ms from start's wake-up of the init to its
    execve, runc's 0.21: the killsig race of runtime-tools)."""
    proc = bundle.config["process"]
    proc["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 7]}
    proc["noNewPrivileges"] = True
    proc["cwd"] = "/tmp"
    proc["capabilities"] = {k: ["CAP_KILL", "CAP_CHOWN"] for k in
                            ("bounding", "effective", "permitted", "inheritable", "ambient")}
    bundle.config["linux"]["seccomp"] = allow_but([{"names": ["mkdir", "mkdirat"],
                                                    "action": "SCMP_ACT_ERRNO"}])
    bundle.set_args("sleep", "1000")
    cid = new_id()
    try:
        ours, cwd = _created_init(runp.cmd(), bundle, cid)
    finally:
        runp("delete", "--force", cid, check=False)
    caps = hexcaps(mask(["CAP_KILL", "CAP_CHOWN"]))
    assert ours == {"Uid": "1000\t1000\t1000\t1000", "Gid": "1000\t1000\t1000\t1000",
                    "Groups": "5 7", **{k: caps for k in DROPPED if k.startswith("Cap")},
                    "NoNewPrivs": "1", "Seccomp": "2", "Seccomp_filters": "1"}
    assert cwd == "/tmp"
    if RUNC is None:
        pytest.skip("runc is not installed: runp's side checked alone")
    runc = [RUNC, "--root", str(tmp_path / "runc-root")]
    cid = new_id("runc")
    try:
        assert _created_init(runc, bundle, cid) == (ours, cwd)
    finally:
        subprocess.run(runc + ["delete", "--force", cid], capture_output=True, timeout=30)


def test_privilege_drop_failure_fails_create_as_runc(runp, bundle, tmp_path):
    """A uid the user namespace does not map cannot be switched to: create fails naming the
    field, as runc's ("cannot set uid to unmapped user in user namespace"), and leaves nothing.
    runp's create succeeded, and so did start, and the container was stopped at once ("runp:
    Invalid argument" on its stderr)."""
    from conftest import make_traversable
    make_traversable(bundle.rootfs)
    bundle.config["process"]["user"] = {"uid": 1000, "gid": 0}
    lx = bundle.config["linux"]
    lx["namespaces"].append({"type": "user"})
    lx["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10}]
    lx["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 10}]
    bundle.set_args("sleep", "1000")
    cid = new_id()
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    assert p.returncode == 1, p.stderr
    assert p.stderr.decode().strip().splitlines()[-1].endswith(
        "process.user.uid: unable to setup user: cannot set uid 1000 to unmapped user in user "
        "namespace"), p.stderr
    assert cid not in runp.ids() and not (Path(runp.root) / cid).exists()
    if RUNC is None:
        pytest.skip("runc is not installed: runp's side checked alone")
    runc = [RUNC, "--root", str(tmp_path / "runc-root")]
    r = subprocess.run(runc + ["create", "-b", str(bundle.path), new_id("runc")],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert r.returncode == 1 and b"cannot set uid to unmapped user in user namespace" in r.stderr


def test_no_new_privs_blocks_file_capabilities(runp, bundle, cid):
    """A binary with file capabilities (cap_net_raw+ep) grants them to uid 1000 only without
    noNewPrivileges. (busybox drops setuid itself, so file capabilities show it instead.)"""
    import shutil
    rootfs = bundle.rootfs
    (rootfs / "fcap").mkdir()
    shutil.copy2(rootfs / "bin" / "busybox", rootfs / "fcap" / "busybox")
    # struct vfs_cap_data, revision 2, effective flag: permitted = inheritable-less NET_RAW
    os.setxattr(rootfs / "fcap" / "busybox", "security.capability",
                struct.pack("<IIIII", 0x02000001, 1 << CAPS["CAP_NET_RAW"], 0, 0, 0))
    proc = bundle.config["process"]
    proc["user"] = {"uid": 1000, "gid": 1000}
    proc["capabilities"] = {"bounding": ["CAP_NET_RAW", "CAP_KILL"]}
    for nnp, want in ((True, 0), (False, 1 << CAPS["CAP_NET_RAW"])):
        if not nnp and "nosuid" in mounted_with(rootfs):
            pytest.skip(f"{rootfs} is on a nosuid mount: exec ignores file capabilities there")
        proc["noNewPrivileges"] = nnp
        _, out, _ = run(runp, bundle, cid, "/fcap/busybox", "cat", "/proc/self/status")
        st = status_of(out)
        assert int(st["CapEff"], 16) == want, f"noNewPrivileges={nnp}"
        assert st["NoNewPrivs"] == str(int(nnp))


# --- seccomp ---------------------------------------------------------------------------------------

def allow_but(rules: list[dict]) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"],
            "syscalls": rules}


@pytest.mark.parametrize("nnp", [True, False])
def test_seccomp_denies_mkdir_with_eperm(runp, bundle, cid, nnp):
    bundle.config["process"]["noNewPrivileges"] = nnp
    bundle.config["linux"]["seccomp"] = allow_but(
        [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}])
    code, out, err = run(runp, bundle, cid, "sh", "-c",
                         "grep -E '^(Seccomp|NoNewPrivs)' /proc/self/status; mkdir /tmp/d && echo MADE",
                         ok=False)
    st = status_of(out)
    assert st["Seccomp"] == "2" and st["Seccomp_filters"] == "1"
    assert st["NoNewPrivs"] == ("1" if nnp else "0")
    assert "MADE" not in out
    assert "mkdir: can't create directory '/tmp/d': Operation not permitted" in err
    assert not (bundle.rootfs / "tmp" / "d").exists()


@pytest.mark.parametrize("ret,text", [(errno.EDQUOT, "Disk quota exceeded"),
                                      (errno.ENOSPC, "No space left on device"),
                                      (errno.EXDEV, "Invalid cross-device link")])
def test_seccomp_custom_errno_ret(runp, bundle, cid, ret, text):
    bundle.config["linux"]["seccomp"] = allow_but(
        [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": ret}])
    code, _, err = run(runp, bundle, cid, "mkdir", "/tmp/d", ok=False)
    assert code == 1 and f"'/tmp/d': {text}" in err


def test_seccomp_default_errno_ret(runp, bundle, cid):
    """Everything not allowed fails with defaultErrnoRet (here: mkdir, EROFS)."""
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.EROFS,
        "syscalls": [{"names": sorted(set(PODMAN_ALLOWED) - {"mkdir", "mkdirat"}),
                      "action": "SCMP_ACT_ALLOW"}] + PODMAN_CONDITIONAL}
    code, out, err = run(runp, bundle, cid, "sh", "-c", "echo alive; mkdir /tmp/d", ok=False)
    assert out == "alive\n" and "Read-only file system" in err


def test_seccomp_argument_conditions(runp, bundle, cid):
    """kill(pid, SIGUSR1) is denied but kill(pid, 0) is not (SCMP_CMP_EQ on arg 1);
    chmod with the setuid bit is denied (SCMP_CMP_MASKED_EQ), a plain chmod is not."""
    bundle.config["linux"]["seccomp"] = allow_but([
        {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
         "args": [{"index": 1, "value": 10, "op": "SCMP_CMP_EQ"}]},
        {"names": ["chmod"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 1, "value": 0o4000, "valueTwo": 0o4000, "op": "SCMP_CMP_MASKED_EQ"}]},
        {"names": ["fchmodat"], "action": "SCMP_ACT_ERRNO",
         "args": [{"index": 2, "value": 0o4000, "valueTwo": 0o4000, "op": "SCMP_CMP_MASKED_EQ"}]},
    ])
    script = ("trap '' USR1; kill -0 $$ && echo SIG0; kill -USR1 $$ && echo USR1; "
              "touch /tmp/f; chmod 755 /tmp/f && echo CHMOD; chmod 4755 /tmp/f && echo SUID; "
              "stat -c %a /tmp/f")
    _, out, err = run(runp, bundle, cid, "sh", "-c", script)
    assert out.split() == ["SIG0", "CHMOD", "755"], (out, err)
    assert "can't kill pid" in err and "Permission denied" in err
    assert "chmod: /tmp/f: Operation not permitted" in err


# A podman/moby-style default profile as podman passes it to the runtime (its "includes" for
# the default capability set already resolved): ~330 names, some unknown to libseccomp 2.5.4.
PODMAN_ALLOWED = """
accept accept4 access adjtimex alarm arch_prctl bind brk cachestat capget capset chdir chmod
chown chown32 chroot clock_adjtime clock_adjtime64 clock_getres clock_getres_time64
clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 close close_range connect
copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl epoll_ctl_old
epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod
fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock
fork fremovexattr fsetxattr fstat fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate
ftruncate64 futex futex_requeue futex_time64 futex_wait futex_waitv futex_wake futimesat
get_mempolicy get_robust_list get_thread_area getcpu getcwd getdents getdents64 getegid
getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32 getitimer getpeername getpgid
getpgrp getpid getppid getpriority getrandom getresgid getresgid32 getresuid getresuid32
getrlimit getrusage getsid getsockname getsockopt gettid gettimeofday getuid getuid32 getxattr
getxattrat inotify_add_watch inotify_init inotify_init1 inotify_rm_watch io_cancel io_destroy
io_getevents io_pgetevents io_pgetevents_time64 io_setup io_submit io_uring_enter
io_uring_register io_uring_setup ioctl ioprio_get ioprio_set ipc kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen
listmount listxattr listxattrat llistxattr lremovexattr lseek lsetxattr lsm_get_self_attr
lsm_list_modules lsm_set_self_attr lstat lstat64 madvise map_shadow_stack mbind membarrier
memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2
modify_ldt mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync
munlock munlockall munmap name_to_handle_at nanosleep newfstatat open openat openat2 pause
pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2 pkey_alloc pkey_free pkey_mprotect poll
ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64 process_mrelease pselect6
pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv recv recvfrom
recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr removexattrat rename renameat
renameat2 restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo
rt_sigreturn rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo
sched_get_priority_max sched_get_priority_min sched_getaffinity sched_getattr sched_getparam
sched_getscheduler sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity
sched_setattr sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop
semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto set_mempolicy
set_robust_list set_thread_area set_tid_address setfsgid setfsgid32 setfsuid setfsuid32 setgid
setgid32 setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid
setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit setsid setsockopt setuid
setuid32 setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount statx
symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create timer_delete
timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate
truncate64 ugetrlimit umask uname unlink unlinkat uretprobe utime utimensat utimensat_time64
utimes vfork wait4 waitid waitpid write writev _llseek _newselect
""".split()
PODMAN_EPERM = """
acct add_key bpf clock_settime delete_module finit_module init_module kexec_file_load
kexec_load keyctl lookup_dcookie mount move_mount open_by_handle_at open_tree perf_event_open
pivot_root quotactl quotactl_fd reboot request_key setns settimeofday
swapoff swapon sysfs umount umount2 unshare uselib userfaultfd ustat vm86 vm86old
""".split()
PODMAN_CONDITIONAL = [
    *({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
       "args": [{"index": 0, "value": v, "op": "SCMP_CMP_EQ"}]}
      for v in (0, 8, 131072, 131080, 4294967295)),
    # no namespace flags in clone(2); clone3 cannot be filtered by argument: ENOSYS -> clone
    {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
    {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS},
    # every socket but AF_VSOCK; NETLINK_AUDIT gets EINVAL
    {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
     "args": [{"index": 0, "value": 40, "op": "SCMP_CMP_NE"}]},
    {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EINVAL,
     "args": [{"index": 0, "value": 16, "op": "SCMP_CMP_EQ"},
              {"index": 2, "value": 9, "op": "SCMP_CMP_EQ"}]},
]


def podman_profile() -> dict:
    return {
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": errno.ENOSYS,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": PODMAN_ALLOWED, "action": "SCMP_ACT_ALLOW"},
            *PODMAN_CONDITIONAL,
            {"names": PODMAN_EPERM, "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM},
        ],
    }


def test_podman_profile_is_realistic():
    import seccomp
    names = PODMAN_ALLOWED + PODMAN_EPERM
    assert len(names) >= 300 and len(set(names)) == len(names)
    unknown = [n for n in names if seccomp.resolve_syscall(seccomp.Arch.NATIVE, n) < 0]
    assert {"mseal", "statmount", "listmount", "uretprobe"} <= set(unknown)


@pytest.mark.parametrize("uid,nnp", [(0, False), (0, True), (1000, False)])
def test_podman_default_profile_busybox_shell(runp, bundle, cid, uid, nnp):
    """The profile loads (with noNewPrivileges false it is loaded before the uid switch and the
    capability changes, which must then still work under it) and a shell works: fork/exec,
    files, pipes, ps; unlisted syscalls get ENOSYS, the EPERM list EPERM."""
    proc = bundle.config["process"]
    proc["user"] = {"uid": uid, "gid": uid}
    proc["noNewPrivileges"] = nnp
    proc["capabilities"] = {k: PODMAN for k in ("bounding", "effective", "permitted")}
    bundle.config["linux"]["seccomp"] = podman_profile()
    script = ("mkdir -p /tmp/d && echo hello > /tmp/d/f && cat /tmp/d/f | tr a-z A-Z; "
              "ls /tmp/d; id -u; ps -o pid,comm | grep -c ps; "
              "grep -E '^Seccomp' /proc/self/status | tr '\\n\\t' '  '; echo; "
              "hostname other; mount -t tmpfs t /tmp/d; echo done")
    _, out, err = run(runp, bundle, cid, "sh", "-c", script)
    lines = out.splitlines()
    assert lines[:4] == ["HELLO", "f", str(uid), "1"], (out, err)
    assert lines[4].split() == ["Seccomp:", "2", "Seccomp_filters:", "1"]
    assert lines[5] == "done"
    assert "hostname: sethostname: Function not implemented" in err  # not listed: ENOSYS
    assert "mount: permission denied" in err  # the EPERM list (busybox's words for EPERM)


# struct seccomp_notif is 80 bytes, seccomp_notif_resp 24: _IOWR('!', 0|1, size)
NOTIF_RECV = 0xC0502100
NOTIF_SEND = 0xC0182101
# busybox's mkdir(2): the mkdir syscall where there is one, mkdirat elsewhere (aarch64)
SYS_mkdir = arch.number("mkdir")
if SYS_mkdir is None:
    SYS_mkdir = arch.number("mkdirat")


class Agent:
    """A seccomp agent on a unix socket: takes the listener fd and the state, then answers
    every notification with -EXDEV until the container is gone."""

    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(str(path))
        self.sock.listen(1)
        self.sock.settimeout(30)
        self.msg: dict = {}
        self.fds: list[int] = []
        self.seen: list[tuple[int, int]] = []  # (syscall nr, pid)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.sock.accept()
            with conn:
                data, self.fds, _, _ = socket.recv_fds(conn, 65536, 4)
                while chunk := conn.recv(65536):
                    data += chunk
            self.msg = json.loads(data)
            fd = self.fds[0]
            while True:
                r, _, x = select.select([fd], [], [fd], 30)
                if not r or x:
                    return
                buf = bytearray(80)
                try:
                    fcntl.ioctl(fd, NOTIF_RECV, buf, True)
                except OSError:
                    return  # ENOENT: the target died; or the filter has no users left
                nid, pid, _, nr = struct.unpack_from("=QIIi", buf)
                self.seen.append((nr, pid))
                resp = bytearray(struct.pack("=QqiI", nid, 0, -errno.EXDEV, 0))
                try:
                    fcntl.ioctl(fd, NOTIF_SEND, resp)
                except OSError:
                    pass
        except BaseException as e:  # noqa: BLE001 - reported by the test
            self.error = e

    def close(self) -> None:
        self.sock.close()
        for fd in self.fds:
            try:
                os.close(fd)  # the agent's copy: wakes select() with POLLHUP
            except OSError:
                pass
        self.thread.join(10)


def test_seccomp_notify_agent_gets_fd_and_state(runp, bundle, cid, tmp_path):
    sock = tmp_path / "agent.sock"
    agent = Agent(sock)
    try:
        bundle.config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": str(sock),
            "listenerMetadata": "agent-meta",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
        bundle.config["annotations"] = {"org.example": "yes"}
        bundle.set_args("sh", "-c", "mkdir /tmp/d || echo failed; sleep 100")
        runp("create", "-b", str(bundle.path), cid)
        pid = runp.state(cid)["pid"]
        assert agent.msg, f"agent got nothing: {agent.error}"
        msg = agent.msg
        assert msg["fds"] == ["seccompFd"] and msg["metadata"] == "agent-meta"
        assert msg["pid"] == pid
        st = msg["state"]
        assert st["id"] == cid and st["pid"] == pid and st["status"] == "creating"
        assert st["bundle"] == str(bundle.path) and st["annotations"] == {"org.example": "yes"}
        assert os.readlink(f"/proc/self/fd/{agent.fds[0]}") == "anon_inode:seccomp notify"
        runp("start", cid)
        import time
        deadline = time.monotonic() + 10
        while not agent.seen and time.monotonic() < deadline:
            time.sleep(0.02)
        assert agent.seen and agent.seen[0][0] == SYS_mkdir, agent.error
        assert not (bundle.rootfs / "tmp" / "d").exists()
        runp("delete", "--force", cid)
    finally:
        agent.close()
    assert agent.error is None, agent.error


def test_seccomp_notify_answer_is_seen_by_the_process(runp, bundle, cid, tmp_path):
    sock = tmp_path / "agent.sock"
    agent = Agent(sock)
    try:
        bundle.config["linux"]["seccomp"] = {
            "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": str(sock),
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]}
        code, out, err = run(runp, bundle, cid, "sh", "-c", "mkdir /tmp/d; echo rc=$?", ok=False)
    finally:
        agent.close()
    assert out == "rc=1\n" and "Invalid cross-device link" in err, (out, err, agent.error)
    assert "metadata" not in agent.msg


def test_seccomp_notify_agent_missing_fails_create(runp, bundle, cid, tmp_path):
    bundle.config["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ALLOW", "listenerPath": str(tmp_path / "nobody.sock"),
        "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}]}
    bundle.set_args("true")
    p = runp("create", "-b", str(bundle.path), cid, check=False)
    assert p.returncode != 0 and b"nobody.sock" in p.stderr
    assert cid not in runp.ids()


# --- masked and read-only paths ------------------------------------------------------------------

def test_masked_and_readonly_paths(runp, bundle, cid):
    r = bundle.rootfs
    (r / "masked-dir").mkdir()
    (r / "masked-dir" / "secret").write_text("secret in dir\n")
    (r / "masked-file").write_text("secret file\n")
    (r / "ro-dir").mkdir()
    (r / "ro-dir" / "data").write_text("readable\n")
    lx = bundle.config["linux"]
    lx["maskedPaths"] += ["/masked-dir", "/masked-file", "/does/not/exist"]
    lx["readonlyPaths"] += ["/ro-dir", "/not/there/either"]
    script = """
        echo "dir:$(ls -A /masked-dir | wc -l)"
        touch /masked-dir/new 2>/dev/null && echo dir-writable
        echo "file:$(cat /masked-file)"
        echo "filetype:$(stat -c '%F %t:%T' /masked-file)"
        echo overwritten > /masked-file
        echo "timer_list:$(stat -c '%t:%T' /proc/timer_list)"
        echo "ro:$(cat /ro-dir/data)"
        touch /ro-dir/new 2>/dev/null && echo ro-writable
        echo 1 > /proc/sys/net/ipv4/ip_forward 2>/dev/null && echo procsys-writable
        grep -E ' /(masked-dir|ro-dir) ' /proc/self/mountinfo | cut -d' ' -f5,6,9
    """
    _, out, err = run(runp, bundle, cid, "sh", "-c", script)
    lines = out.splitlines()
    assert lines[:5] == ["dir:0", "file:", "filetype:character special file 1:3",
                         "timer_list:1:3",
                         "ro:readable"], (out, err)
    assert not any(x in out for x in ("dir-writable", "ro-writable", "procsys-writable"))
    mounts = {ln.split()[0]: ln.split()[1:] for ln in lines[5:]}
    assert mounts["/masked-dir"][1] == "tmpfs" and mounts["/masked-dir"][0].startswith("ro")
    assert mounts["/ro-dir"][0].startswith("ro")
    assert (r / "masked-file").read_text() == "secret file\n"
    assert sorted(os.listdir(r / "masked-dir")) == ["secret"]
    assert not (r / "ro-dir" / "new").exists()


# --- LSM labels ------------------------------------------------------------------------------------

def lsm_enabled() -> bool:
    try:
        aa = Path("/sys/module/apparmor/parameters/enabled").read_text().strip() == "Y"
    except OSError:
        aa = False
    return aa or Path("/sys/fs/selinux/enforce").exists()


def test_lsm_state_is_read_on_the_host_before_pivot_root(bundle):
    """Whether AppArmor/SELinux run decides whether a label is applied; after pivot_root /sys
    is the container's (or not mounted at all), so the init must ask before: in the preload it
    does right after fork (the parent no longer asks for it: it forks first)."""
    import subprocess
    import sys
    top = str(Path(__file__).resolve().parent.parent)
    code = ("import sys\n"
            f"sys.path.insert(0, {top!r})\n"
            "from runtime import process, spec\n"
            f"s = spec.load({str(bundle.path)!r})\n"
            "assert process._LSM is None\n"
            "process.preload(s, False)\n"
            "assert process._LSM == process.lsm_enabled() and process._LSM is not None\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr


@pytest.mark.skipif(lsm_enabled(), reason="this host has AppArmor or SELinux")
def test_lsm_labels_ignored_with_a_warning(runp, bundle, cid, tmp_path):
    proc = bundle.config["process"]
    proc["apparmorProfile"] = "runp-test-profile"
    proc["selinuxLabel"] = "system_u:system_r:container_t:s0:c1,c2"
    bundle.config["linux"]["mountLabel"] = "system_u:object_r:container_file_t:s0:c1,c2"
    log = tmp_path / "log.json"
    _, out, _ = run(runp, bundle, cid, "echo", "ran", extra=("--log", str(log),
                                                             "--log-format", "json"))
    assert out == "ran\n"
    msgs = [json.loads(ln) for ln in log.read_text().splitlines()]
    warned = [m["msg"] for m in msgs if m["level"] == "warning"]
    assert warned == [
        'config.json: process.apparmorProfile: "runp-test-profile" ignored: AppArmor is not enabled',
        'config.json: process.selinuxLabel: "system_u:system_r:container_t:s0:c1,c2" ignored: '
        "SELinux is not enabled",
        'config.json: linux.mountLabel: "system_u:object_r:container_file_t:s0:c1,c2" ignored: '
        "SELinux is not enabled"], msgs
    assert not [m for m in msgs if m["level"] == "error"], msgs
