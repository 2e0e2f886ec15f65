"""The "linux: seccomp" cases: actions, argument filters, flags, the notify listener (config-
linux.md Seccomp)."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import threading

from harness import Bundle, T
from registry import case, check, eq


Z = "linux: seccomp"


def _seccomp(b: Bundle, syscalls: list[dict], default: str = "SCMP_ACT_ALLOW", **extra) -> None:
    b.linux["seccomp"] = {"defaultAction": default, "architectures": ["SCMP_ARCH_X86_64"],
                          "syscalls": syscalls, **extra}


@case(Z, "seccomp.errno_default", "a SCMP_ACT_ERRNO rule without errnoRet fails the syscall with EPERM",
      "config-linux.md#seccomp", "errnoRet (uint, OPTIONAL) - the errno return code to use. ... The default is EPERM.")
def _(t: T):
    b = t.bundle().sh("mkdir /tmp/x 2>&1; echo still alive")
    _seccomp(b, [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}])
    out = t.ok_run(b).out
    check("Operation not permitted" in out and "still alive" in out, f"output: {out.strip()!r}")
    check(not (b.rootfs / "tmp" / "x").exists(), "mkdir succeeded")


@case(Z, "seccomp.errno_ret", "errnoRet is the errno the syscall fails with",
      "config-linux.md#seccomp", "errnoRet (uint, OPTIONAL) - the errno return code to use.")
def _(t: T):
    b = t.bundle().sh("mkdir /tmp/x 2>&1; echo still alive")
    _seccomp(b, [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSPC}])
    out = t.ok_run(b).out
    check("No space left on device" in out, f"output: {out.strip()!r}")


@case(Z, "seccomp.args", "argument conditions select which calls match",
      "config-linux.md#seccomp", "args (array of objects, OPTIONAL) - the specific syscall in seccomp.")
def _(t: T):
    b = t.bundle().sh("trap '' USR1 USR2; kill -USR2 $$ && echo usr2=ok; kill -USR1 $$ 2>/dev/null || echo usr1=blocked")
    _seccomp(b, [{"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                  "args": [{"index": 1, "value": int(signal.SIGUSR1), "op": "SCMP_CMP_EQ"}]}])
    eq(t.ok_run(b).out.split(), ["usr2=ok", "usr1=blocked"], "kill USR2 / kill USR1")


@case(Z, "seccomp.default_errno", "defaultAction with defaultErrnoRet applies to unlisted syscalls",
      "config-linux.md#seccomp", "defaultErrnoRet (uint, OPTIONAL) - the errno return code to use.")
def _(t: T):
    b = t.bundle().sh("mkdir /tmp/x 2>&1; echo still alive")
    allow = ("read write open openat close stat fstat lstat newfstatat statx poll lseek mmap mprotect munmap brk "
             "rt_sigaction rt_sigprocmask rt_sigreturn ioctl pread64 readv writev access pipe pipe2 select "
             "sched_yield dup dup2 dup3 nanosleep clock_nanosleep getpid getppid getuid geteuid getgid getegid "
             "fork vfork clone clone3 execve execveat exit exit_group wait4 waitid kill uname fcntl getcwd "
             "chdir fchdir arch_prctl set_tid_address set_robust_list rseq prlimit64 getrlimit setpgid "
             "getpgrp getpgid setsid getdents64 getdents readlink readlinkat faccessat faccessat2 "
             "futex sigaltstack gettid tgkill getrandom umask capget capset prctl "
             "setresuid setresgid setgroups setuid setgid getgroups close_range fstatfs statfs "
             "sched_getaffinity madvise mremap membarrier rt_sigtimedwait").split()  # what a runtime may
    # still call between loading the filter and execve
    _seccomp(b, [{"names": allow, "action": "SCMP_ACT_ALLOW"}], default="SCMP_ACT_ERRNO",
             defaultErrnoRet=errno.EROFS)
    b.process["noNewPrivileges"] = True
    out = t.ok_run(b).out
    check("Read-only file system" in out and "still alive" in out, f"output: {out.strip()!r}")


@case(Z, "seccomp.errno_on_non_errno_action", "errnoRet on an action without errno is an error",
      "config-linux.md#seccomp", "When the action doesn't support an errno, the runtime MUST print and error and fail.")
def _(t: T):
    b = t.bundle("true")
    _seccomp(b, [{"names": ["mkdir"], "action": "SCMP_ACT_LOG", "errnoRet": 5}])
    t.create_fails(b, "errnoRet was given for SCMP_ACT_LOG")


@case(Z, "seccomp.empty_names", "a rule with no names is an error",
      "config-linux.md#seccomp", "names MUST contain at least one entry.")
def _(t: T):
    b = t.bundle("true")
    _seccomp(b, [{"names": [], "action": "SCMP_ACT_ERRNO"}])
    t.create_fails(b, "a syscall rule has no names")


@case(Z, "seccomp.unknown_action", "an unknown action is an error",
      "config.md#valid-values", "Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def _(t: T):
    b = t.bundle("true")
    _seccomp(b, [{"names": ["mkdir"], "action": "SCMP_ACT_NO_SUCH"}])
    t.create_fails(b, "the action SCMP_ACT_NO_SUCH does not exist")


class _Agent:
    """A seccomp agent at listenerPath: records every connection's message and fds."""

    def __init__(self, t: T) -> None:
        self.path = str(t.dir / "agent.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(self.path)
        self.sock.listen(4)
        self.sock.settimeout(10)
        self.msgs: list[tuple[bytes, int, bool]] = []  # (payload, number of fds, closed after)
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()
        t.defer(self.sock.close)

    def _serve(self) -> None:
        try:
            conn, _ = self.sock.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(10)
            data, fds, _, _ = socket.recv_fds(conn, 65536, 8)
            for fd in fds:
                os.close(fd)
            closed = False
            try:
                while True:
                    more = conn.recv(65536)
                    if not more:
                        closed = True
                        break
                    data += more
            except OSError:
                pass
            self.msgs.append((data, len(fds), closed))


@case(Z, "seccomp.notify", "SCMP_ACT_NOTIFY: one container process state with the seccomp fd goes to listenerPath",
      "config-linux.md#seccomp", "The runtime MUST send exactly one container process state per connection. The connection MUST NOT be reused and it MUST be closed after sending a seccomp state.")
def _(t: T):
    agent = _Agent(t)
    b = t.bundle("sleep", "10")
    _seccomp(b, [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
             listenerPath=agent.path, listenerMetadata="conformance-meta")
    cid = t.create(b)
    t.start(cid)
    agent.thread.join(10)
    check(len(agent.msgs) == 1, f"{len(agent.msgs)} connections reached the agent")
    data, nfds, closed = agent.msgs[0]
    eq(nfds, 1, "fds sent with SCM_RIGHTS")
    check(closed, "the runtime did not close the connection")
    msg = json.loads(data)
    eq(msg.get("fds"), ["seccompFd"], "fds")
    eq(msg.get("metadata"), "conformance-meta", "metadata")
    eq(msg.get("state", {}).get("id"), cid, "state.id")
    check(isinstance(msg.get("pid"), int) and msg["pid"] > 0, f"pid {msg.get('pid')!r}")


@case(Z, "seccomp.listener_unreachable", "a listenerPath nobody listens on is an error",
      "config-linux.md#seccomp", "If sending to this socket fails, the runtime MUST generate an error.")
def _(t: T):
    b = t.bundle("true")
    _seccomp(b, [{"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}],
             listenerPath=str(t.dir / "nobody.sock"))
    t.create_fails(b, "nothing listens on listenerPath")


@case(Z, "seccomp.metadata_without_path", "listenerMetadata without listenerPath is an error",
      "config-linux.md#seccomp", "listenerMetadata ... This field MUST NOT be set if listenerPath is not set.")
def _(t: T):
    b = t.bundle("true")
    _seccomp(b, [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}], listenerMetadata="x")
    t.create_fails(b, "listenerMetadata is set without listenerPath")
