"""The "config: process" cases: process: args, cwd, terminal, oomScoreAdj, noNewPrivileges,
scheduler, ioPriority, personality (config.md Process)."""
from __future__ import annotations

import os
import re

from harness import ConsoleSocket, T, read
from registry import case, check, eq


P = "config: process"


@case(P, "process.args_path", "args[0] is looked up like execvp's file, args are argv",
      "config.md#process", "at least one entry is REQUIRED (non-Windows), and that entry is used with the same semantics as execvp's file.")
def _(t: T):
    b = t.bundle("echo", "hello", "two words")
    eq(t.ok_run(b).out, "hello two words\n", "echo's output")


@case(P, "process.args_empty", "empty args is an error",
      "config.md#valid-values", "Runtimes MUST generate an error when invalid or unsupported values are encountered. (args: at least one entry is REQUIRED)")
def _(t: T):
    b = t.bundle()
    b.process["args"] = []
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc == 0:
        t.pids[cid] = t.state(cid)["pid"]
        check(t.rt("start", cid).rc != 0, "create and start accepted empty process.args")
    else:
        t.assert_gone(cid, "after the failed create")


@case(P, "process.cwd", "the process starts in cwd",
      "config.md#process", "cwd (string, REQUIRED) is the working directory that will be set for the executable.")
def _(t: T):
    b = t.bundle("pwd")
    (b.rootfs / "work" / "dir").mkdir(parents=True)
    b.process["cwd"] = "/work/dir"
    eq(t.ok_run(b).out.strip(), "/work/dir", "pwd")


@case(P, "process.cwd_relative", "a relative cwd is an error",
      "config.md#process", "cwd ... This value MUST be an absolute path.")
def _(t: T):
    b = t.bundle("pwd")
    b.process["cwd"] = "tmp"
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc == 0:
        t.pids[cid] = t.state(cid)["pid"]
        check(t.rt("start", cid).rc != 0, "a relative cwd was accepted")
    else:
        t.assert_gone(cid, "after the failed create")


@case(P, "process.terminal", "terminal: the process gets a pty (sent over --console-socket) of consoleSize",
      "config.md#process", "terminal (bool, OPTIONAL) specifies whether a terminal is attached to the process; consoleSize ... specifies the console size in characters of the terminal.")
def _(t: T):
    b = t.bundle().sh("tty > /out/tty; stty size > /out/size; test -t 0 && test -t 1 && echo yes > /out/isatty")
    b.process["terminal"] = True
    b.process["consoleSize"] = {"height": 33, "width": 77}
    cs = ConsoleSocket(t)
    cid = t.create(b, extra=("--console-socket", cs.path))
    cs.wait()
    t.start(cid)
    t.wait_exit(cid)
    check(read(b.out / "tty", "").startswith("/dev/pts/") or read(b.out / "tty", "").startswith("/dev/console"),
          f"tty: {read(b.out / 'tty', '')!r}")
    eq(read(b.out / "size", "").strip(), "33 77", "stty size")
    eq(read(b.out / "isatty", "").strip(), "yes", "stdin/stdout are terminals")


@case(P, "process.console_size_ignored", "consoleSize without terminal is ignored",
      "config.md#process", "Runtimes MUST ignore consoleSize if terminal is false or unset.")
def _(t: T):
    b = t.bundle("echo", "fine")
    b.process["consoleSize"] = {"height": 10, "width": 20}
    eq(t.ok_run(b).out.strip(), "fine", "output")


@case(P, "process.oom_score_adj", "oomScoreAdj is set",
      "config.md#posix-process", "If oomScoreAdj is set, the runtime MUST set oom_score_adj to the given value.")
def _(t: T):
    b = t.bundle("cat", "/proc/self/oom_score_adj")
    b.process["oomScoreAdj"] = 345
    eq(t.ok_run(b).out.strip(), "345", "oom_score_adj")


@case(P, "process.oom_score_adj_unset", "without oomScoreAdj the caller's value is kept",
      "config.md#posix-process", "If oomScoreAdj is not set, the runtime MUST NOT change the value of oom_score_adj.")
def _(t: T):
    def preexec() -> None:
        with open("/proc/self/oom_score_adj", "w") as f:
            f.write("123")
    b = t.bundle("cat", "/proc/self/oom_score_adj")
    cid = t.create(b, preexec_fn=preexec)
    t.start(cid)
    t.wait_exit(cid)
    eq(t.output(cid).strip(), "123", "oom_score_adj (the runtime was started with 123)")


@case(P, "process.no_new_privileges", "noNewPrivileges sets no_new_privs",
      "config.md#linux-process", "noNewPrivileges (bool, OPTIONAL) setting noNewPrivileges to true prevents the process from gaining additional privileges.")
def _(t: T):
    b = t.bundle("grep", "NoNewPrivs", "/proc/self/status")
    out = t.ok_run(b).out.split()
    eq(out[-1:], ["1"], "NoNewPrivs with noNewPrivileges true")


@case(P, "process.scheduler", "scheduler is applied (or create fails), never ignored",
      "config.md#valid-values", "scheduler (object, OPTIONAL) is an object describing the scheduler properties for the process. / Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def _(t: T):
    b = t.bundle("cat", "/proc/self/stat")
    b.process["scheduler"] = {"policy": "SCHED_BATCH", "nice": 7}
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc != 0:
        t.notes.append("create refused scheduler")
        t.assert_gone(cid, "after the refused create")
        return
    t.pids[cid] = t.state(cid)["pid"]
    t.start(cid)
    t.wait_exit(cid)
    st = t.output(cid)
    fields = st[st.rfind(")") + 2:].split()
    eq((fields[38], fields[16]), ("3", "7"), "(policy, nice) from /proc/self/stat (SCHED_BATCH=3)")


@case(P, "process.io_priority", "ioPriority is applied (or create fails), never ignored",
      "config.md#valid-values", "ioPriority (object, OPTIONAL) configures the I/O priority settings for the container's processes / Runtimes MUST generate an error when invalid or unsupported values are encountered.")
def _(t: T):
    b = t.bundle("ionice")
    b.process["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 0}
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc != 0:
        t.notes.append("create refused ioPriority")
        t.assert_gone(cid, "after the refused create")
        return
    t.pids[cid] = t.state(cid)["pid"]
    t.start(cid)
    t.wait_exit(cid)
    check(t.output(cid).strip().startswith("idle"), f"ionice: {t.output(cid).strip()!r}")


@case(P, "process.personality", "linux.personality LINUX32 makes uname report a 32-bit machine (or create fails)",
      "config-linux.md#personality", "LINUX32 will set the uname system call to show a 32 bit CPU type, such as i686.")
def _(t: T):
    if os.uname().machine != "x86_64":
        t.skip("the check knows x86_64 only")
    b = t.bundle("uname", "-m")
    b.linux["personality"] = {"domain": "LINUX32"}
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc != 0:
        t.notes.append("create refused personality")
        t.assert_gone(cid, "after the refused create")
        return
    t.pids[cid] = t.state(cid)["pid"]
    t.start(cid)
    t.wait_exit(cid)
    check(re.fullmatch(r"i[3-6]86", t.output(cid).strip()) is not None, f"uname -m: {t.output(cid).strip()!r}")
