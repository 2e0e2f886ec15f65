"""runtime.linux.seccomp, for real: every filter is loaded in a forked child (it is one-way)."""
from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import select
import signal
import socket
import struct
import time

import pytest

from runtime.errors import ConfigError, RuntimeFailure
from runtime.linux import arch
from runtime.linux.arch import NAME as NATIVE_ARCH
from runtime.linux import seccomp as sc

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")

libc = ctypes.CDLL("libc.so.6", use_errno=True)
PR_SET_NO_NEW_PRIVS = 38
SYS_mkdir_x86_64 = arch.number("mkdir", "x86_64")  # for filters run as x86_64's (run_bpf)
# os.mkdir calls mkdir on x86_64, mkdirat where there is no mkdir (aarch64): deny both.
MKDIR = ["mkdir", "mkdirat"]


def start_child(fn) -> tuple[int, int]:
    """Fork a child running fn(send); return (pid, read end of its report pipe).

    The child always ends in os._exit. The pipe is close-on-exec, so a child that execs just
    stops reporting.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        code = 0
        try:
            os.close(r)

            def send(obj) -> None:
                data = (json.dumps(obj) + "\n").encode()
                while data:
                    data = data[os.write(w, data):]

            try:
                fn(send)
            except BaseException as e:  # report, never propagate into pytest's copy
                code = 1
                send({"error": f"{type(e).__name__}: {e}", "errno": getattr(e, "errno", None)})
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def finish_child(pid: int, r: int, timeout: float = 10.0) -> tuple[int, list]:
    """Collect the reports until EOF and reap the child (SIGKILL if it overstays)."""
    buf = b""
    done = False
    try:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                break
            chunk = os.read(r, 65536)
            if not chunk:
                done = True
                break
            buf += chunk
    finally:
        os.close(r)
        if not done:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    assert done, "child timed out"
    return os.waitstatus_to_exitcode(status), [json.loads(x) for x in buf.splitlines()]


def run_child(fn, timeout: float = 10.0) -> tuple[int, list]:
    """Run fn(send) in a forked child; return (exit code, objects it sent)."""
    return finish_child(*start_child(fn), timeout)


def nnp() -> None:
    assert libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0


def try_errno(fn, *args) -> int:
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def deny(names, action="SCMP_ACT_ERRNO", **extra) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": names, "action": action, **extra}]}


# --- loading ---------------------------------------------------------------------------------

def test_deny_mkdir_eperm(tmp_path) -> None:
    def child(send) -> None:
        nnp()
        assert sc.load(deny(MKDIR)) is None
        send([try_errno(os.mkdir, tmp_path / "a"), try_errno(os.mkdir, tmp_path / "b" / "c")])

    code, out = run_child(child)
    assert code == 0, out
    assert out == [[errno.EPERM, errno.EPERM]]  # filtered before the kernel looks at the path
    assert not (tmp_path / "a").exists()


def test_root_without_nnp_loads_and_does_not_set_nnp(tmp_path) -> None:
    """runc semantics: no_new_privs is the config's business, not libseccomp's."""
    def child(send) -> None:
        sc.load(deny(MKDIR))
        with open("/proc/self/status") as f:
            flag = [line.split()[1] for line in f if line.startswith("NoNewPrivs:")][0]
        send([try_errno(os.mkdir, tmp_path / "a"), flag])

    code, out = run_child(child)
    assert code == 0, out
    assert out == [[errno.EPERM, "0"]]


def test_needs_nnp_or_cap_sys_admin() -> None:
    def child(send) -> None:
        os.setgroups([])
        os.setgid(1000)
        os.setuid(1000)  # no capabilities left, no no_new_privs
        sc.load(deny(MKDIR))

    code, out = run_child(child)
    assert code == 1
    assert out[0]["errno"] == errno.EACCES, out


@pytest.mark.parametrize("ret", [38, 123])
def test_errno_ret(tmp_path, ret: int) -> None:
    def child(send) -> None:
        nnp()
        sc.load(deny(["mkdir", "mkdirat"], errnoRet=ret))
        send(try_errno(os.mkdir, tmp_path / "a"))

    code, out = run_child(child)
    assert code == 0, out
    assert out == [ret]


def test_default_errno_ret(tmp_path) -> None:
    cfg = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": MKDIR, "action": "SCMP_ACT_ERRNO"},                      # EPERM by default
        # 0 is a valid errno; os.rmdir is unlinkat where there is no rmdir (aarch64)
        {"names": ["rmdir", "unlinkat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 0},
    ]}

    def child(send) -> None:
        nnp()
        sc.load(cfg)
        send([try_errno(os.mkdir, tmp_path / "a"), try_errno(os.rmdir, tmp_path / "nope")])

    code, out = run_child(child)
    assert code == 0, out
    assert out == [[errno.EPERM, 0]]  # rmdir "succeeds" without running


def test_arg_condition_socket_af_inet_only() -> None:
    cfg = deny(["socket"], args=[{"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"}])

    def child(send) -> None:
        nnp()
        sc.load(cfg)
        res = {}
        for name, fam in (("inet", socket.AF_INET), ("unix", socket.AF_UNIX),
                          ("inet6", socket.AF_INET6)):
            try:
                socket.socket(fam, socket.SOCK_STREAM).close()
                res[name] = 0
            except OSError as e:
                res[name] = e.errno
        send(res)

    code, out = run_child(child)
    assert code == 0, out
    assert out == [{"inet": errno.EPERM, "unix": 0, "inet6": 0}]


def test_two_conditions_on_one_arg_become_separate_rules() -> None:
    """libseccomp rejects two comparisons of one argument in a rule; runc splits them (OR)."""
    cfg = deny(["socket"], args=[
        {"index": 0, "value": socket.AF_INET, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": socket.AF_INET6, "op": "SCMP_CMP_EQ"},
    ])

    def child(send) -> None:
        nnp()
        sc.load(cfg)
        res = []
        for fam in (socket.AF_INET, socket.AF_INET6, socket.AF_UNIX):
            try:
                socket.socket(fam, socket.SOCK_STREAM).close()
                res.append(0)
            except OSError as e:
                res.append(e.errno)
        send(res)

    code, out = run_child(child)
    assert code == 0, out
    assert out == [[errno.EPERM, errno.EPERM, 0]]


def test_arg_condition_personality_and_masked_eq() -> None:
    cfg = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
         "args": [{"index": 0, "value": 0xFFFFFFFF, "op": "SCMP_CMP_EQ"}]},
        # mask 0xff00, datum 0x0100: personality(0x0123) matches, personality(0) does not
        {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV,
         "args": [{"index": 0, "value": 0xFF00, "valueTwo": 0x0100,
                   "op": "SCMP_CMP_MASKED_EQ"}]},
    ]}

    def child(send) -> None:
        nnp()
        sc.load(cfg)
        res = []
        for arg in (0xFFFFFFFF, 0x0123, 0):
            ctypes.set_errno(0)
            rc = libc.personality(ctypes.c_ulong(arg))
            res.append(ctypes.get_errno() if rc == -1 else 0)
        send(res)

    code, out = run_child(child)
    assert code == 0, out
    assert out == [[errno.EACCES, errno.EXDEV, 0]]


def test_unknown_syscall_names_and_default_action_rules_are_skipped(tmp_path) -> None:
    cfg = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["no_such_syscall", *MKDIR, "uretprobe_from_the_future"],
         "action": "SCMP_ACT_ERRNO"},
        {"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},  # same as default: skipped
        {"names": ["rmdir"], "action": "SCMP_ACT_KILL_THREAD"},  # never called: just loads
    ]}

    def child(send) -> None:
        nnp()
        sc.load(cfg)
        send([try_errno(os.mkdir, tmp_path / "a"), os.getpid() > 0])

    code, out = run_child(child)
    assert code == 0, out
    assert out == [[errno.EPERM, True]]


def test_kill_process(tmp_path) -> None:
    def child(send) -> None:
        import resource
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # SIGSYS would dump core
        nnp()
        sc.load(deny(MKDIR, action="SCMP_ACT_KILL_PROCESS"))
        os.mkdir(tmp_path / "a")
        send("survived")

    code, out = run_child(child)
    assert code == -signal.SIGSYS and out == []


def test_flags_log_and_spec_allow(tmp_path) -> None:
    cfg = {**deny(MKDIR), "flags": ["SECCOMP_FILTER_FLAG_LOG",
                                        "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                        "SECCOMP_FILTER_FLAG_TSYNC"]}

    def child(send) -> None:
        nnp()
        sc.load(cfg)
        send(try_errno(os.mkdir, tmp_path / "a"))

    code, out = run_child(child)
    assert code == 0, out
    assert out == [errno.EPERM]


def test_build_before_fork_install_in_child(tmp_path) -> None:
    """The slow libseccomp work can happen before `start`; install is one syscall."""
    prog = sc.build(deny(MKDIR, errnoRet=errno.EROFS))
    assert prog is not None and len(prog.bpf) % 8 == 0 and not prog.notify

    def child(send) -> None:
        nnp()
        t = time.perf_counter()
        assert sc.install(prog) is None
        took = time.perf_counter() - t
        send([try_errno(os.mkdir, tmp_path / "a"), took])

    code, out = run_child(child)
    assert code == 0, out
    assert out[0][0] == errno.EROFS
    assert out[0][1] < 0.05
    assert sc.build(None) is None and sc.build({}) is None and sc.install(None) is None


def test_flag_bits() -> None:
    log, spec_allow, listener, killable = 2, 4, 8, 32
    assert sc.build(deny(["mkdir"])).flags == spec_allow  # runc's default with no "flags"
    assert sc.build({**deny(["mkdir"]), "flags": []}).flags == 0
    assert sc.build({**deny(["mkdir"]), "flags": ["SECCOMP_FILTER_FLAG_LOG"]}).flags == log
    wk = ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    assert sc.build({**deny(["mkdir"]), "flags": wk}).flags == 0  # no listener: dropped
    notify = {**deny(["mkdir"], action="SCMP_ACT_NOTIFY"), "listenerPath": "/x"}
    prog = sc.build({**notify, "flags": wk})
    assert prog.notify and prog.flags == listener | killable
    # a notify rule whose only name is unknown here adds no listener
    prog = sc.build({**notify, "syscalls": [{"names": ["no_such_syscall"],
                                             "action": "SCMP_ACT_NOTIFY"}]})
    assert not prog.notify and not prog.flags & listener


SYSCALLS_ALLOWED = """
_llseek _newselect accept accept4 access adjtimex alarm arch_prctl bind brk capget capset chdir
chmod chown chown32 clock_adjtime clock_adjtime64 clock_getres clock_getres_time64
clock_gettime clock_gettime64 clock_nanosleep clock_nanosleep_time64 clone clone3 close
close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1 epoll_ctl
epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve
execveat exit exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark
fchdir fchmod fchmodat fchmodat2 fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr
flistxattr flock fork fremovexattr fsconfig fsetxattr fsmount fsopen fspick fstat fstat64
fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64
futex_wait futex_waitv futex_wake futimesat get_robust_list get_thread_area getcpu getcwd
getdents getdents64 getegid getegid32 geteuid geteuid32 getgid getgid32 getgroups getgroups32
getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom getresgid
getresgid32 getresuid getresuid32 getrlimit getrusage getsid getsockname getsockopt gettid
gettimeofday getuid getuid32 getxattr getxattrat inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel io_destroy io_getevents io_setup io_submit io_uring_enter
io_uring_register io_uring_setup ioctl ioprio_get ioprio_set ipc keyctl kill landlock_add_rule
landlock_create_ruleset landlock_restrict_self lchown lchown32 lgetxattr link linkat listen
listmount listxattr listxattrat llistxattr lremovexattr lseek lsetxattr lsm_get_self_attr
lsm_list_modules lsm_set_self_attr lstat lstat64 madvise map_shadow_stack memfd_create
memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2 mlockall mmap mmap2 modify_ldt
mount mount_setattr move_mount mprotect mq_getsetattr mq_notify mq_open mq_timedreceive
mq_timedreceive_time64 mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget
msgrcv msgsnd msync munlock munlockall munmap name_to_handle_at nanosleep newfstatat open
openat openat2 open_tree pause pidfd_getfd pidfd_open pidfd_send_signal pipe pipe2 pivot_root
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2
prlimit64 process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead
readdir readlink readlinkat readv reboot recv recvfrom recvmmsg recvmmsg_time64 recvmsg
remap_file_pages removexattr removexattrat rename renameat renameat2 restart_syscall rmdir
rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn rt_sigsuspend
rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_get_priority_max
sched_get_priority_min sched_getaffinity sched_getattr sched_getparam sched_getscheduler
sched_rr_get_interval sched_rr_get_interval_time64 sched_setaffinity sched_setattr
sched_setparam sched_setscheduler sched_yield seccomp select semctl semget semop semtimedop
semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg sendto set_robust_list
set_thread_area set_tid_address setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32
setgroups setgroups32 setitimer setpgid setpriority setregid setregid32 setresgid setresgid32
setresuid setresuid32 setreuid setreuid32 setrlimit setsid setsockopt setuid setuid32
setxattr setxattrat shmat shmctl shmdt shmget shutdown sigaltstack signalfd signalfd4
sigprocmask sigreturn socketcall socketpair splice stat stat64 statfs statfs64 statmount statx
symlink symlinkat sync sync_file_range syncfs sysinfo syslog tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64
timerfd_create timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill
truncate truncate64 ugetrlimit umask umount umount2 uname unlink unlinkat unshare uretprobe
utime utimensat utimensat_time64 utimes vfork wait4 waitid waitpid write writev
""".split()


def podman_style_profile() -> dict:
    """Shaped like podman's default: ENOSYS by default, a long allow-list (with names this
    libseccomp does not know), errno rules and argument conditions."""
    return {
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": errno.ENOSYS,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [
            {"names": ["bdflush", "kexec_file_load", "kexec_load", "swapoff", "swapon",
                       "sysfs", "uselib", "userfaultfd", "ustat", "vm86", "vm86old",
                       "vmsplice", "open_by_handle_at", "acct", "ptrace"],
             "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EPERM, "args": [], "comment": ""},
            {"names": SYSCALLS_ALLOWED, "action": "SCMP_ACT_ALLOW", "args": []},
            *({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
               "args": [{"index": 0, "value": v, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]}
              for v in (0, 8, 131072, 131080, 4294967295)),
            {"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EINVAL,
             "args": [{"index": 0, "value": 16, "valueTwo": 0, "op": "SCMP_CMP_EQ"},
                      {"index": 2, "value": 9, "valueTwo": 0, "op": "SCMP_CMP_EQ"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 2, "value": 9, "valueTwo": 0, "op": "SCMP_CMP_NE"}]},
            {"names": ["socket"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 16, "valueTwo": 0, "op": "SCMP_CMP_NE"}]},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0,
                       "op": "SCMP_CMP_MASKED_EQ"}]},
        ],
    }


def test_podman_style_profile_loads_and_exec_works() -> None:
    cfg = podman_style_profile()
    sc.validate(cfg)

    def child(send) -> None:
        nnp()
        t = time.perf_counter()
        sc.load(cfg)
        took = time.perf_counter() - t
        ctypes.set_errno(0)
        pers = libc.personality(ctypes.c_ulong(0x1234))  # not allowed: default ENOSYS
        pers_errno = ctypes.get_errno() if pers == -1 else 0
        try:
            socket.socket(16, socket.SOCK_RAW, 9)  # NETLINK_AUDIT: EINVAL rule
            audit = 0
        except OSError as e:
            audit = e.errno
        send({"took": took, "personality": pers_errno, "audit": audit,
              "acct": try_errno(libc_call, "acct"), "unix": socket.socketpair() is not None})
        os.execv("/bin/true", ["true"])

    code, out = run_child(child)
    assert code == 0, out  # /bin/true ran under the filter
    res = out[0]
    assert res["personality"] == errno.ENOSYS
    assert res["audit"] == errno.EINVAL
    assert res["acct"] == errno.EPERM
    assert res["unix"] is True
    assert res["took"] < 1.0


def libc_call(name: str) -> None:
    if getattr(libc, name)(None) == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# --- syscalls newer than the profile: ENOSYS (runc's patchbpf stub) ----------------------------
# The real-container side, with runc, is tests/test_dropin_seccomp_cgroups.py; here the whole
# program is run for architectures this machine cannot make calls in.

X32_BIT = 0x40000000
RET_ALLOW, RET_LOG, RET_TRAP, RET_KILL_THREAD, RET_KILL_PROCESS = (
    0x7FFF0000, 0x7FFC0000, 0x00030000, 0, 0x80000000)


def ret_errno(err: int) -> int:
    return 0x00050000 | err


def audit(arch: str) -> int:
    import seccomp as scmp
    return getattr(scmp.Arch, arch) & 0xFFFFFFFF


def run_bpf(bpf: bytes, arch: str, nr: int) -> int:
    """What a seccomp program returns for a call without arguments: a classic BPF interpreter
    for the instructions libseccomp and the stub use."""
    data = struct.pack("=iI7Q", nr, audit(arch), 0, 0, 0, 0, 0, 0, 0)
    acc = pc = 0
    while True:
        code, jt, jf, k = struct.unpack_from("=HBBI", bpf, pc * 8)
        pc += 1
        if code == 0x20:                   # ld [k]
            acc = struct.unpack_from("=I", data, k)[0]
        elif code == 0x54:                 # and #k
            acc &= k
        elif code == 0x05:                 # ja
            pc += k
        elif code == 0x06:                 # ret #k
            return k
        elif code in (0x15, 0x25, 0x35, 0x45):   # jeq jgt jge jset #k
            hit = {0x15: acc == k, 0x25: acc > k, 0x35: acc >= k, 0x45: acc & k != 0}[code]
            pc += jt if hit else jf
        else:
            raise AssertionError(f"opcode {code:#x} at {pc - 1}")


def rules(default: str, arches: list[str] | None = None, **extra) -> dict:
    """read/getpid/rseq allowed (rseq, 334 on x86_64, is the highest), mkdir EXDEV."""
    cfg = {"defaultAction": default, **extra, "syscalls": [
        {"names": ["read", "getpid", "rseq"], "action": "SCMP_ACT_ALLOW"},
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EXDEV}]}
    if arches is not None:
        cfg["architectures"] = arches
    return cfg


@pytest.mark.parametrize("default,extra,ret,stub", [
    ("SCMP_ACT_ERRNO", {}, ret_errno(errno.EPERM), True),
    ("SCMP_ACT_ERRNO", {"defaultErrnoRet": errno.EACCES}, ret_errno(errno.EACCES), True),
    ("SCMP_ACT_KILL", {}, RET_KILL_THREAD, True),
    ("SCMP_ACT_KILL_PROCESS", {}, RET_KILL_PROCESS, True),
    ("SCMP_ACT_TRAP", {}, RET_TRAP, True),
    # already ENOSYS: nothing to add
    ("SCMP_ACT_ERRNO", {"defaultErrnoRet": errno.ENOSYS}, ret_errno(errno.ENOSYS), False),
    # calls go through (a tracer handles new syscalls itself): no stub, as runc
    ("SCMP_ACT_TRACE", {}, 0x7FF00000 | errno.EPERM, False),
    ("SCMP_ACT_LOG", {}, RET_LOG, False),
    ("SCMP_ACT_ALLOW", {}, RET_ALLOW, False),
], ids=["errno", "errno-eacces", "kill", "kill-process", "trap", "errno-enosys", "trace", "log",
        "allow"])
def test_enosys_stub_by_default_action(default, extra, ret, stub) -> None:
    bpf = sc.build(rules(default, ["SCMP_ARCH_X86_64"], **extra)).bpf
    above = ret_errno(errno.ENOSYS) if stub else ret
    assert run_bpf(bpf, "X86_64", 1000) == above
    assert run_bpf(bpf, "X86_64", 335) == above       # the first number after rseq
    assert run_bpf(bpf, "X86_64", 334) == (ret if default == "SCMP_ACT_ALLOW" else RET_ALLOW)
    assert run_bpf(bpf, "X86_64", 300) == ret          # unnamed, below: the profile decides
    assert run_bpf(bpf, "X86_64", SYS_mkdir_x86_64) == ret_errno(errno.EXDEV)


def test_enosys_stub_per_architecture() -> None:
    """Each architecture's own highest number counts; x32 calls (x86_64 with the x32 bit) are
    told apart; an architecture outside the profile gets libseccomp's bad-arch action (kill),
    not ENOSYS."""
    bpf = sc.build(rules("SCMP_ACT_ERRNO", ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32",
                                            "SCMP_ARCH_AARCH64"])).bpf
    enosys, eperm = ret_errno(errno.ENOSYS), ret_errno(errno.EPERM)
    for arch, top in (("X86_64", 334), ("X86", 386), ("X32", X32_BIT | 334), ("AARCH64", 293)):
        nr_arch = "X86_64" if arch == "X32" else arch   # the kernel reports x32 as x86_64
        assert run_bpf(bpf, nr_arch, top + 1) == enosys, arch
        assert run_bpf(bpf, nr_arch, top + 1000) == enosys, arch
        assert run_bpf(bpf, nr_arch, top) == RET_ALLOW, arch                 # rseq
        assert run_bpf(bpf, nr_arch, (top & X32_BIT) | 200) == eperm, arch   # unnamed
    assert run_bpf(bpf, "X86_64", 0) == RET_ALLOW                           # read
    assert run_bpf(bpf, "PPC64LE", 1000) == RET_KILL_THREAD
    # without X32 in the profile an x32 call is not "new": libseccomp's bad-arch action
    bpf = sc.build(rules("SCMP_ACT_ERRNO", ["SCMP_ARCH_X86_64"])).bpf
    assert run_bpf(bpf, "X86_64", X32_BIT | 1000) == RET_KILL_THREAD
    assert run_bpf(bpf, "X86_64", 1000) == enosys


def test_enosys_stub_s390_setup() -> None:
    """s390(x) kernels multiplex the numbers they do not know through setup(0): ENOSYS too.
    (libseccomp cannot mix big-endian s390x into an x86 filter, so the stub runs alone here,
    in front of a filter that allows everything.)"""
    bpf = sc.enosys_stub({audit("S390X"): (383, 0)}, errno.ENOSYS) + struct.pack(
        "=HBBI", 0x06, 0, 0, RET_ALLOW)
    for nr, want in ((0, ret_errno(errno.ENOSYS)), (1, RET_ALLOW), (383, RET_ALLOW),
                     (384, ret_errno(errno.ENOSYS))):
        assert run_bpf(bpf, "S390X", nr) == want, nr
    assert run_bpf(bpf, "X86_64", 0) == RET_ALLOW      # another architecture: the filter
    assert sc.enosys_stub({}, errno.ENOSYS) == b""


def test_enosys_stub_native_arch_and_unknown_names() -> None:
    """No "architectures": the native one still gets the stub (runc 1.1.15+; 1.1.5 had none).
    An architecture none of whose names it knows gets no stub (as runc): there is no highest
    number to compare with."""
    bpf = sc.build(rules("SCMP_ACT_ERRNO")).bpf
    assert run_bpf(bpf, NATIVE_ARCH.upper(), 1000) == ret_errno(errno.ENOSYS)
    cfg = {"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64",
                                                                 "SCMP_ARCH_AARCH64"],
           "syscalls": [{"names": ["mkdir", "open"], "action": "SCMP_ACT_ALLOW"}]}
    bpf = sc.build(cfg).bpf
    assert run_bpf(bpf, "X86_64", 1000) == ret_errno(errno.ENOSYS)
    assert run_bpf(bpf, "AARCH64", 1000) == ret_errno(errno.EPERM)


def test_enosys_stub_with_every_architecture() -> None:
    """The stub's jumps stay short with every (little-endian) architecture this libseccomp
    knows at once; a number far above every table is ENOSYS on each."""
    import seccomp as scmp
    le = 0x40000000  # __AUDIT_ARCH_LE: libseccomp mixes no endiannesses in one filter
    arches = [a for a in sorted(sc.ARCHES) if getattr(scmp.Arch, a[len("SCMP_ARCH_"):], 0) & le]
    bpf = sc.build(rules("SCMP_ACT_ERRNO", arches)).bpf
    for a in arches:
        name = a[len("SCMP_ARCH_"):]
        nr = 0xFFFF | (X32_BIT if name == "X32" else 0)
        assert run_bpf(bpf, "X86_64" if name == "X32" else name, nr) == \
            ret_errno(errno.ENOSYS), a


# --- notify ----------------------------------------------------------------------------------

# struct seccomp_notif (80 bytes) and seccomp_notif_resp (24 bytes); _IOWR('!', n, size)
NOTIF_RECV = 0xC0502100
NOTIF_SEND = 0xC0182101


@pytest.mark.parametrize("flags", [None, ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]])
def test_notify_fd_reaches_agent(tmp_path, flags) -> None:
    sock_path = str(tmp_path / "agent.sock")
    cfg = {**deny(MKDIR, action="SCMP_ACT_NOTIFY"), "listenerPath": sock_path,
           "listenerMetadata": "hello-agent"}
    if flags:
        cfg["flags"] = flags
    sc.validate(cfg)
    state = {"ociVersion": "1.3.0", "id": "ctr", "status": "creating", "pid": 4242,
             "bundle": "/b", "annotations": {"a": "b"}}
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(1)
    listener.settimeout(10)
    target = str(tmp_path / "made-by-agent")

    def child(send) -> None:
        listener.close()
        nnp()
        fd = sc.load(cfg)
        send({"fd": fd, "link": os.readlink(f"/proc/self/fd/{fd}"),
              "cloexec": not os.get_inheritable(fd)})
        sc.send_notify_fd(sock_path, fd, json.dumps(state).encode(), "hello-agent",
                          pid=os.getpid())
        os.close(fd)
        send({"mkdir": try_errno(os.mkdir, target)})

    result: dict = {}
    pid, rfd = start_child(child)
    try:
        conn, _ = listener.accept()
        with conn:
            msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            assert conn.recv(1) == b""  # one message per connection, then closed
        assert len(fds) == 1
        nfd = fds[0]
        try:
            result["link"] = os.readlink(f"/proc/self/fd/{nfd}")
            assert select.select([nfd], [], [], 10)[0], "no notification"
            buf = bytearray(80)
            fcntl.ioctl(nfd, NOTIF_RECV, buf, True)
            nid, npid, _, nr = struct.unpack_from("=QIIi", buf)
            # answer in place of the kernel: fail the mkdir with EXDEV
            fcntl.ioctl(nfd, NOTIF_SEND, bytearray(struct.pack("=QqiI", nid, 0, -errno.EXDEV, 0)))
        finally:
            os.close(nfd)
    finally:
        listener.close()
        code, out = finish_child(pid, rfd)
    assert code == 0, out
    assert out[0]["link"] == "anon_inode:seccomp notify" and out[0]["cloexec"]
    assert out[1] == {"mkdir": errno.EXDEV}  # the agent's answer
    assert not os.path.exists(target)
    assert result["link"] == "anon_inode:seccomp notify"
    import seccomp as scmp   # os.mkdir's call: mkdir where the architecture has it, else mkdirat
    native = [n for n in (scmp.resolve_syscall(scmp.Arch.NATIVE, c) for c in MKDIR) if n >= 0]
    assert nr == native[0] and npid == pid
    assert json.loads(msg) == {"ociVersion": "1.3.0", "fds": ["seccompFd"], "pid": pid,
                               "metadata": "hello-agent", "state": state}


def test_send_notify_fd_format_and_errors(tmp_path) -> None:
    sock_path = str(tmp_path / "l.sock")
    with pytest.raises(RuntimeFailure, match="cannot send seccomp fd to .*l.sock"):
        sc.send_notify_fd(sock_path, 0, b'{"pid": 1}', "")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    with listener:
        listener.bind(sock_path)
        listener.listen(1)
        r, w = os.pipe()
        try:
            state = {"ociVersion": "1.3.0", "id": "x", "status": "created", "pid": 77,
                     "bundle": "/bundle"}
            sc.send_notify_fd(sock_path, r, json.dumps(state).encode(), "")
            conn, _ = listener.accept()
            with conn:
                msg, fds, _, _ = socket.recv_fds(conn, 65536, 4)
            for fd in fds:
                os.close(fd)
        finally:
            os.close(r)
            os.close(w)
    assert len(fds) == 1
    # no metadata: omitted, as runc does; pid defaults to the state's pid
    assert json.loads(msg) == {"ociVersion": "1.3.0", "fds": ["seccompFd"], "pid": 77,
                               "state": state}


# --- validation --------------------------------------------------------------------------------

def verr(cfg) -> str:
    with pytest.raises(ConfigError) as e:
        sc.validate(cfg)
    return str(e.value)


def test_validate_accepts_and_disables() -> None:
    sc.validate(None)
    sc.validate({})
    assert sc.load({}) is None and sc.load(None) is None
    sc.validate(podman_style_profile())
    sc.validate({"defaultAction": "SCMP_ACT_KILL", "architectures": [],
                 "flags": [], "syscalls": []})


def test_validate_errors() -> None:
    allow = {"names": ["read"], "action": "SCMP_ACT_ALLOW"}
    p = "config.json: linux.seccomp"
    assert verr({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        allow, allow, allow, {"names": ["mkdir"], "action": "SCMP_ACT_FOO"}]}) == (
        f'{p}.syscalls[3].action: unknown action "SCMP_ACT_FOO"')
    assert verr({"defaultAction": "SCMP_ACT_NOPE"}) == (
        f'{p}.defaultAction: unknown action "SCMP_ACT_NOPE"')
    assert verr({"syscalls": [allow]}) == f"{p}.defaultAction: is required"
    assert verr("x") == f"{p}: must be an object, not string"
    assert verr({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}}) == (
        f"{p}.syscalls: must be an array, not object")
    assert verr({"defaultAction": "SCMP_ACT_ALLOW",
                 "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_Z80"]}) == (
        f'{p}.architectures[1]: unknown architecture "SCMP_ARCH_Z80"')
    assert verr({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_FOO"]}) == (
        f'{p}.flags[0]: unknown flag "SECCOMP_FILTER_FLAG_FOO"')
    assert verr({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 38}) == (
        f"{p}.defaultErrnoRet: cannot be used with SCMP_ACT_KILL")
    assert verr({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": -1}) == (
        f"{p}.defaultErrnoRet: must be an integer from 0 to 65535")
    assert verr(deny(["mkdir"], action="SCMP_ACT_ALLOW", errnoRet=1)) == (
        f"{p}.syscalls[0].errnoRet: cannot be used with SCMP_ACT_ALLOW")
    assert verr(deny([])) == f"{p}.syscalls[0].names: must contain at least one entry"
    assert verr(deny("mkdir")) == f"{p}.syscalls[0].names: must be an array, not string"
    assert verr(deny(["mkdir", 3])) == f"{p}.syscalls[0].names[1]: must be a string, not integer"
    assert verr({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["x"]}]}) == (
        f"{p}.syscalls[0].action: is required")
    arg = {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}
    assert verr(deny(["socket"], args=[arg, {**arg, "op": "SCMP_CMP_ABOUT"}])) == (
        f'{p}.syscalls[0].args[1].op: unknown operator "SCMP_CMP_ABOUT"')
    assert verr(deny(["socket"], args=[{**arg, "index": 6}])) == (
        f"{p}.syscalls[0].args[0].index: must be an integer from 0 to 5")
    assert verr(deny(["socket"], args=[{**arg, "value": True}])) == (
        f"{p}.syscalls[0].args[0].value: must be an integer from 0 to {2**64 - 1}")
    assert verr(deny(["socket"], args=[{**arg, "valueTwo": 2**64}])) == (
        f"{p}.syscalls[0].args[0].valueTwo: must be an integer from 0 to {2**64 - 1}")
    assert verr(deny(["socket"], args=[{"index": 0, "value": 1}])) == (
        f"{p}.syscalls[0].args[0].op: is required")
    assert verr(deny(["socket"], args=arg)) == (
        f"{p}.syscalls[0].args: must be an array, not object")


def test_validate_notify_rules() -> None:
    p = "config.json: linux.seccomp"
    assert verr({"defaultAction": "SCMP_ACT_NOTIFY", "listenerPath": "/x"}) == (
        f"{p}.defaultAction: SCMP_ACT_NOTIFY cannot be the default action")
    assert verr(deny(["mkdir"], action="SCMP_ACT_NOTIFY")) == (
        f"{p}.listenerPath: is required when SCMP_ACT_NOTIFY is used")
    assert verr({**deny(["read", "write"], action="SCMP_ACT_NOTIFY"), "listenerPath": "/x"}) == (
        f"{p}.syscalls[0].names[1]: SCMP_ACT_NOTIFY cannot be used for the write syscall")
    assert verr({**deny(["mkdir"]), "listenerMetadata": "m"}) == (
        f"{p}.listenerMetadata: must not be set without listenerPath")
    assert verr({**deny(["mkdir"]), "listenerPath": 5}) == (
        f"{p}.listenerPath: must be a string, not integer")
