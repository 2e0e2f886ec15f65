"""The "linux: namespaces" cases: new, inherited and joined namespaces (config-linux.md Namespaces)."""
from __future__ import annotations

import os
import time

from harness import T, ns_inode, read
from registry import case, check, eq


N = "linux: namespaces"
NS_PROC = {"pid": "pid", "network": "net", "ipc": "ipc", "uts": "uts", "mount": "mnt",
           "cgroup": "cgroup", "user": "user", "time": "time"}


@case(N, "ns.new", "each listed namespace without path is new",
      "config-linux.md#namespaces", "If path is not specified, the runtime MUST create a new container namespace of type type.")
def _(t: T):
    types = ["pid", "network", "ipc", "uts", "mount", "cgroup"]
    if os.path.exists("/proc/self/ns/time"):
        types.append("time")
    b = t.bundle("sleep", "10").namespaces(*types)
    cid = t.create(b)
    pid = t.pids[cid]
    same = [ty for ty in types if ns_inode(pid, NS_PROC[ty]) == ns_inode("self", NS_PROC[ty])]
    eq(same, [], "namespaces shared with the runtime's")


@case(N, "ns.inherit", "namespaces not listed are the runtime's",
      "config-linux.md#namespaces", "If a namespace type is not specified in the namespaces array, the container MUST inherit the runtime namespace of that type.")
def _(t: T):
    b = t.bundle("sleep", "10").namespaces("mount")
    b.config.pop("hostname")
    b.config["mounts"] = [m for m in b.config["mounts"] if m["destination"] not in ("/sys", "/dev/mqueue")]
    cid = t.create(b)
    pid = t.pids[cid]
    differ = [ty for ty in ("pid", "network", "ipc", "uts", "cgroup", "user")
              if ns_inode(pid, NS_PROC[ty]) != ns_inode("self", NS_PROC[ty])]
    eq(differ, [], "namespaces not inherited")


@case(N, "ns.inherit_all", "without any namespace, even the mount namespace is the runtime's",
      "config-linux.md#namespaces", "If a namespace type is not specified in the namespaces array, the container MUST inherit the runtime namespace of that type.")
def _(t: T):
    b = t.bundle().sh("cat /etc/marker; sleep 10")
    (b.rootfs / "etc" / "marker").write_text("in rootfs\n")
    b.config.pop("hostname")
    b.linux["namespaces"] = []  # the mounts are made in the runtime's namespace, under the rootfs
    cid = t.create(b)
    pid = t.pids[cid]
    differ = [ty for ty in NS_PROC if os.path.exists(f"/proc/self/ns/{NS_PROC[ty]}")
              and ns_inode(pid, NS_PROC[ty]) != ns_inode("self", NS_PROC[ty])]
    eq(differ, [], "namespaces not inherited")
    t.start(cid)
    deadline = time.monotonic() + 5
    while "in rootfs" not in t.output(cid) and time.monotonic() < deadline:
        time.sleep(0.02)
    eq(t.output(cid).strip(), "in rootfs", "what the process read from its root")


@case(N, "ns.join_path", "a namespace given by path is joined",
      "config-linux.md#namespaces", "The runtime MUST place the container process in the namespace associated with that path.")
def _(t: T):
    a = t.create(t.bundle("sleep", "10"))
    apid = t.pids[a]
    b = t.bundle("sleep", "10")
    b.linux["namespaces"] = [{"type": "mount"}, {"type": "pid"}] + [
        {"type": ty, "path": f"/proc/{apid}/ns/{NS_PROC[ty]}"} for ty in ("network", "ipc", "uts")]
    b.config.pop("hostname")
    c = t.create(b)
    cpid = t.pids[c]
    for ty in ("network", "ipc", "uts"):
        eq(ns_inode(cpid, NS_PROC[ty]), ns_inode(apid, NS_PROC[ty]), f"{ty} namespace")


@case(N, "ns.path_wrong_type", "a path to a namespace of another type is an error",
      "config-linux.md#namespaces", "The runtime MUST generate an error if path is not associated with a namespace of type type.")
def _(t: T):
    a = t.create(t.bundle("sleep", "10"))
    b = t.bundle("true")
    b.linux["namespaces"] = [{"type": "mount"}, {"type": "pid"},
                             {"type": "network", "path": f"/proc/{t.pids[a]}/ns/uts"}]
    t.create_fails(b, "the network namespace path is a uts namespace")


@case(N, "ns.path_relative", "a relative namespace path is an error",
      "config-linux.md#namespaces", "This value MUST be an absolute path in the runtime mount namespace.")
def _(t: T):
    b = t.bundle("true")
    b.linux["namespaces"] = [{"type": "mount"}, {"type": "network", "path": "proc/self/ns/net"}]
    t.create_fails(b, "the namespace path is relative")


@case(N, "ns.duplicate", "a namespace type listed twice is an error",
      "config-linux.md#namespaces", "If a namespaces field contains duplicated namespaces with same type, the runtime MUST generate an error.")
def _(t: T):
    b = t.bundle("true")
    b.linux["namespaces"].append({"type": "pid"})
    t.create_fails(b, "pid is listed twice")


@case(N, "ns.pid_isolated", "in a new pid namespace the process is pid 1 and sees only its own",
      "config-linux.md#namespaces", "pid processes inside the container will only be able to see other processes inside the same container", level="SHOULD")
def _(t: T):
    r = t.ok_run(t.bundle().sh("echo $$; cd /proc && echo [0-9]*"))  # builtins only: no children
    lines = r.out.split("\n")
    eq(lines[0], "1", "$$")
    eq(lines[1].split(), ["1"], "the processes in /proc")


@case(N, "ns.time_offsets", "timeOffsets shift the clocks of a new time namespace",
      "config-linux.md#offset-for-time-namespace", "timeOffsets (object, OPTIONAL) sets the offset for Time Namespace.")
def _(t: T):
    if not os.path.exists("/proc/self/ns/time"):
        t.skip("no time namespaces in this kernel")
    b = t.bundle("cat", "/proc/uptime").namespaces("pid", "network", "ipc", "uts", "mount", "time")
    b.linux["timeOffsets"] = {"boottime": {"secs": 864000}, "monotonic": {"secs": 86400}}
    up = float(t.ok_run(b).out.split()[0])
    host = float(read("/proc/uptime").split()[0])
    check(up - host > 863000, f"uptime inside {up}, outside {host}")
