"""The "hooks" cases: the hooks: order, state on stdin, namespaces, environment, failures, timeouts
(config.md POSIX-platform Hooks)."""
from __future__ import annotations

import json
import os
import time

from harness import BUSYBOX, MARKER_ENV, STATUSES, Bundle, T, hook, ns_inode, read
from registry import Fail, case, check, eq


W = "hooks"


def _hook_log(b: Bundle, name: str, extra: str = "") -> dict:
    """A runtime-namespace hook (host /bin/sh) that records its order, stdin and namespaces."""
    d = b.out
    return hook(f"cat > {d}/{name}.json; echo {name} >> {d}/order; "
                f"readlink /proc/self/ns/mnt > {d}/{name}.mnt; readlink /proc/self/ns/net > {d}/{name}.net; "
                f"{extra}")


def _chook(b: Bundle, name: str) -> dict:
    """A startContainer hook: a script that exists only in the container's rootfs."""
    script = b.rootfs / "bin" / "chook"
    script.write_text("#!/bin/sh\ncat > /out/$1.json; echo $1 >> /out/order\n")
    script.chmod(0o755)
    return {"path": "/bin/chook", "args": ["chook", name]}


def _all_hooks(b: Bundle) -> None:
    b.config["hooks"] = {
        "prestart": [_hook_log(b, "prestart")],
        "createRuntime": [_hook_log(b, "createRuntime")],
        "createContainer": [_hook_log(b, "createContainer")],
        "startContainer": [_chook(b, "startContainer")],
        "poststart": [_hook_log(b, "poststart")],
        "poststop": [_hook_log(b, "poststop")]}


def _order(b: Bundle) -> list[str]:
    return read(b.out / "order", "").split()


@case(W, "hooks.lifecycle_order", "hooks run at their lifecycle steps, in lifecycle order",
      "runtime.md#lifecycle", "3. prestart ... 4. createRuntime ... 5. createContainer ... 7. startContainer ... 8. run the user-specified program ... 9. poststart ... 13. poststop hooks MUST be invoked by the runtime.")
def _(t: T):
    b = t.bundle().sh("echo process >> /out/order; sleep 0.2")
    _all_hooks(b)
    cid = t.create(b)
    eq(_order(b), ["prestart", "createRuntime", "createContainer"], "hooks run by create")
    t.start(cid)
    got = _order(b)
    check("poststart" in got, f"poststart had not run when start returned: {got}")
    eq(got[:4], ["prestart", "createRuntime", "createContainer", "startContainer"], "order")
    t.wait_exit(cid)
    check("process" in got[4:] or "process" in _order(b)[4:], "the program did not run after startContainer")
    check("poststop" not in _order(b), "poststop ran before delete")
    t.delete(cid)
    check(_order(b)[-1:] == ["poststop"], f"poststop did not run last by delete: {_order(b)}")


@case(W, "hooks.listed_order", "hooks of one kind run in the listed order",
      "config.md#posix-platform-hooks", "Hooks MUST be called in the listed order.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"prestart": [hook(f"echo p{i} >> {b.out}/order") for i in range(1, 4)],
                         "poststop": [hook(f"echo s{i} >> {b.out}/order") for i in range(1, 3)]}
    t.ok_run(b)
    eq(_order(b), ["p1", "p2", "p3", "s1", "s2"], "order")


@case(W, "hooks.state_stdin", "each hook gets the container state on stdin",
      "config.md#posix-platform-hooks", "The state of the container MUST be passed to hooks over stdin so that they may do work appropriate to the current state of the container.")
def _(t: T):
    b = t.bundle("sleep", "0.2")
    _all_hooks(b)
    cid = t.create(b)
    pid = t.pids[cid]
    t.start(cid)
    t.wait_exit(cid)
    t.delete(cid)
    for name in ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"):
        raw = read(b.out / f"{name}.json", "")
        try:
            st = json.loads(raw)
        except ValueError:
            raise Fail(f"{name}: stdin was no JSON state: {raw[:100]!r}") from None
        eq(st.get("id"), cid, f"{name}: id")
        eq(st.get("bundle"), str(b.path), f"{name}: bundle")
        check(st.get("status") in STATUSES, f"{name}: status {st.get('status')!r}")
        check(isinstance(st.get("ociVersion"), str), f"{name}: ociVersion")
        if name in ("prestart", "createRuntime", "poststart"):
            eq(st.get("pid"), pid, f"{name}: pid (as seen by the runtime)")


@case(W, "hooks.state_pid_container", "hooks in the container namespace see the pid as the container sees it",
      "runtime.md#state", "For hooks executed in the container namespace, it is the pid as seen by the container.")
def _(t: T):
    b = t.bundle("true")
    _all_hooks(b)
    t.ok_run(b)
    for name in ("createContainer", "startContainer"):
        eq(json.loads(read(b.out / f"{name}.json", "{}")).get("pid"), 1, f"{name}: pid")


@case(W, "hooks.namespaces", "runtime-namespace hooks run in the runtime's namespaces, createContainer in the container's",
      "config.md#posix-platform-hooks", "The prestart hooks MUST be executed in the runtime namespace. / The createContainer hooks MUST be executed in the container namespace.")
def _(t: T):
    b = t.bundle("sleep", "0.2")
    _all_hooks(b)
    cid = t.create(b)
    pid = t.pids[cid]
    cmnt, cnet = ns_inode(pid, "mnt"), ns_inode(pid, "net")
    t.start(cid)
    t.wait_exit(cid)
    t.delete(cid)
    me = (ns_inode("self", "mnt"), ns_inode("self", "net"))
    for name in ("prestart", "createRuntime", "poststart", "poststop"):
        eq((read(b.out / f"{name}.mnt", "").strip(), read(b.out / f"{name}.net", "").strip()), me,
           f"{name}: mnt and net namespaces")
    eq((read(b.out / "createContainer.mnt", "").strip(), read(b.out / "createContainer.net", "").strip()),
       (cmnt, cnet), "createContainer: mnt and net namespaces")


@case(W, "hooks.before_pivot", "prestart/createRuntime/createContainer run after the mounts, before pivot_root",
      "config.md#prestart", "The prestart hooks MUST be called as part of the create operation after the runtime environment has been created ... but before the pivot_root or any equivalent operation has been executed.")
def _(t: T):
    b = t.bundle("true")
    d = b.out
    probe = ("pid=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' {f}); "
             "readlink /proc/$pid/root > {d}/{n}.root; "
             "grep -c ' {rootfs}/out ' /proc/$pid/mountinfo > {d}/{n}.mounts")
    hooks = {}
    for n in ("prestart", "createRuntime"):
        hooks[n] = [hook(f"cat > {d}/{n}.json; " + probe.format(f=f"{d}/{n}.json", d=d, n=n, rootfs=b.rootfs))]
    hooks["createContainer"] = [hook(f"readlink /proc/self/root > {d}/createContainer.root; "
                                     f"grep -c ' {b.rootfs}/out ' /proc/self/mountinfo > {d}/createContainer.mounts")]
    b.config["hooks"] = hooks
    t.ok_run(b)
    for n in ("prestart", "createRuntime", "createContainer"):
        eq(read(d / f"{n}.root", "").strip(), "/", f"{n}: the container process's root (not pivoted yet)")
        eq(read(d / f"{n}.mounts", "").strip(), "1", f"{n}: the container's /out mount is made")


@case(W, "hooks.start_container_path", "a startContainer hook path resolves in the container",
      "config.md#posix-platform-hooks", "startContainer ... The value of path MUST resolve in the container namespace.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"startContainer": [_chook(b, "startContainer")]}
    check(not os.path.exists("/bin/chook"), "/bin/chook exists on the host")
    t.ok_run(b)
    eq(_order(b), ["startContainer"], "hooks run")


@case(W, "hooks.args_env", "a hook gets exactly its args (argv[0] included) and env",
      "config.md#posix-platform-hooks", "args (array of strings, OPTIONAL) with the same semantics as IEEE Std 1003.1-2008 execv's argv. / env ... same semantics as environ.")
def _(t: T):
    b = t.bundle("true")
    d = b.out
    b.config["hooks"] = {"prestart": [{"path": BUSYBOX, "args": ["sh", "-c", f"echo \"$0\" > {d}/argv0; env > {d}/env", "zeroth"],
                                       "env": ["FOO=bar", "PATH=/bin:/usr/bin"]}]}
    t.ok_run(b)
    eq(read(d / "argv0", "").strip(), "zeroth", "$0")
    env = read(d / "env", "").splitlines()
    check("FOO=bar" in env, f"FOO=bar missing: {env}")
    check(not any(e.startswith(MARKER_ENV) for e in env), "the runtime's environment leaked into the hook")


@case(W, "hooks.timeout", "a hook that outlives its timeout is aborted and fails create",
      "config.md#posix-platform-hooks", "timeout (int, OPTIONAL) is the number of seconds before aborting the hook.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"prestart": [hook("exec sleep 20", timeout=1)]}
    t0 = time.monotonic()
    t.create_fails(b, "the prestart hook timed out")
    check(time.monotonic() - t0 < 10, f"create took {time.monotonic() - t0:.1f}s with a 1s timeout")


@case(W, "hooks.timeout_zero", "a timeout of 0 is an error",
      "config.md#posix-platform-hooks", "If set, timeout MUST be greater than zero.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"prestart": [hook("true", timeout=0)]}
    t.create_fails(b, "a hook has timeout 0")


@case(W, "hooks.path_relative", "a relative hook path is an error",
      "config.md#posix-platform-hooks", "This specification extends the IEEE standard in that path MUST be absolute.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"prestart": [{"path": "bin/true"}]}
    t.create_fails(b, "a hook path is relative")


def _failing(b: Bundle, kind: str) -> None:
    hooks = {"poststop": [hook(f"echo poststop >> {b.out}/order")]}
    if kind == "startContainer":
        script = b.rootfs / "bin" / "failhook"
        script.write_text("#!/bin/sh\nexit 1\n")
        script.chmod(0o755)
        hooks[kind] = [{"path": "/bin/failhook"}]
    else:
        hooks[kind] = [hook("exit 1")]
    b.config["hooks"] = hooks


for _kind in ("prestart", "createRuntime", "createContainer"):
    def _make(kind: str):
        @case(W, f"hooks.{kind}_fails", f"a failing {kind} hook fails create, which leaves nothing",
              "runtime.md#lifecycle", f"If any {kind} hook fails, the runtime MUST generate an error, stop the container, and continue the lifecycle at step 12.")
        def _(t: T):
            b = t.bundle().sh("echo process >> /out/order")
            _failing(b, kind)
            t.create_fails(b, f"the {kind} hook failed")
            check("process" not in _order(b), "the program ran")
    _make(_kind)


@case(W, "hooks.failed_create_poststop", "after a failing prestart hook the poststop hooks still run (step 12, then 13)",
      "runtime.md#lifecycle", "If any prestart hook fails, the runtime MUST ... continue the lifecycle at step 12. / 13. The poststop hooks MUST be invoked by the runtime.")
def _(t: T):
    b = t.bundle("true")
    _failing(b, "prestart")
    t.create_fails(b, "the prestart hook failed")
    eq(_order(b), ["poststop"], "hooks run")


@case(W, "hooks.startContainer_fails", "a failing startContainer hook fails start; the program does not run",
      "runtime.md#lifecycle", "If any startContainer hook fails, the runtime MUST generate an error, stop the container, and continue the lifecycle at step 12.")
def _(t: T):
    b = t.bundle().sh("echo process >> /out/order")
    _failing(b, "startContainer")
    cid = t.create(b)
    p = t.rt("start", cid)
    check(p.rc != 0, "start succeeded although the startContainer hook failed")
    t.wait_exit(cid, 5)
    time.sleep(0.1)
    check("process" not in _order(b), "the program ran")
    eq(t.status(cid), "stopped", "status")


@case(W, "hooks.poststart_fails", "a failing poststart hook fails start and stops the container",
      "runtime.md#lifecycle", "If any poststart hook fails, the runtime MUST generate an error, stop the container, and continue the lifecycle at step 12.",
      conflict="runtime-tools poststart_fail asserts a warning and an unaffected lifecycle (the pre-1.3 text)")
def _(t: T):
    b = t.bundle("sleep", "10")
    b.config["hooks"] = {"poststart": [hook("exit 1")]}
    cid = t.create(b)
    p = t.rt("start", cid)
    check(p.rc != 0, "start succeeded although the poststart hook failed")
    t.wait_exit(cid, 5)


@case(W, "hooks.poststop_fails", "a failing poststop hook is a warning: delete succeeds, later hooks run",
      "runtime.md#lifecycle", "If any poststop hook fails, the runtime MUST log a warning, but the remaining hooks and lifecycle continue as if the hook had succeeded.")
def _(t: T):
    b = t.bundle("true")
    b.config["hooks"] = {"poststop": [hook("exit 1"), hook(f"echo second >> {b.out}/order")]}
    cid = t.create(b)
    t.start(cid)
    t.wait_exit(cid)
    t.delete(cid)
    t.assert_gone(cid, "after delete")
    eq(_order(b), ["second"], "hooks run after the failing one")
