"""The "config: hostname" cases: hostname and domainname (config.md Hostname, Domainname)."""
from __future__ import annotations

import os

from harness import T
from registry import case, check, eq


H = "config: hostname"


@case(H, "hostname.set", "hostname is what the container sees",
      "config.md#hostname", "hostname (string, OPTIONAL) specifies the container's hostname as seen by processes running inside the container.")
def _(t: T):
    b = t.bundle("hostname")
    b.config["hostname"] = "conformance-host"
    eq(t.ok_run(b).out.strip(), "conformance-host", "hostname")
    check(os.uname().nodename != "conformance-host", "the host's hostname changed")


@case(H, "domainname.set", "domainname is what the container sees",
      "config.md#domainname", "domainname (string, OPTIONAL) specifies the container's domainname as seen by processes running inside the container.")
def _(t: T):
    b = t.bundle("cat", "/proc/sys/kernel/domainname")
    b.config["domainname"] = "conformance.test"
    eq(t.ok_run(b).out.strip(), "conformance.test", "domainname")
