"""The "linux: sysctl" cases: linux.sysctl (config-linux.md Sysctl)."""
from __future__ import annotations

from harness import T, read
from registry import case, check, eq


Y = "linux: sysctl"


@case(Y, "sysctl.set", "sysctl values are set in the container's namespaces",
      "config-linux.md#sysctl", "sysctl (object, OPTIONAL) allows kernel parameters to be modified at runtime for the container.")
def _(t: T):
    b = t.bundle("cat", "/proc/sys/net/ipv4/ip_forward", "/proc/sys/kernel/msgmax", "/proc/sys/net/core/somaxconn")
    b.linux["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.msgmax": "4321", "net.core.somaxconn": "77"}
    eq(t.ok_run(b).out.split(), ["1", "4321", "77"], "the sysctls inside")
    check(read("/proc/sys/kernel/msgmax").strip() != "4321", "the host's kernel.msgmax changed")


@case(Y, "sysctl.unknown", "an unknown sysctl is an error",
      "runtime.md#create", "If the runtime cannot apply a property as specified in the configuration, it MUST generate an error and a new container MUST NOT be created.")
def _(t: T):
    b = t.bundle("true")
    b.linux["sysctl"] = {"net.ipv4.no_such_sysctl": "1"}
    t.create_fails(b, "the sysctl does not exist")
