"""The "linux: idmaps" cases: linux.uidMappings/gidMappings (config-linux.md User namespace
mappings)."""
from __future__ import annotations

import os

from harness import Bundle, T, ns_inode, read
from registry import case, check, eq


I = "linux: idmaps"


def _userns_bundle(t: T, *args: str) -> Bundle:
    b = t.bundle(*args).namespaces("pid", "network", "ipc", "uts", "mount", "user")
    b.linux["uidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    b.linux["gidMappings"] = [{"containerID": 0, "hostID": 100000, "size": 65536}]
    return b


def _need_userns(t: T) -> None:
    if read("/proc/sys/user/max_user_namespaces", "1").strip() == "0":
        t.skip("user namespaces are disabled")


@case(I, "userns.maps", "uidMappings/gidMappings are the user namespace's maps",
      "config-linux.md#user-namespace-mappings", "uidMappings (array of objects, OPTIONAL) describes the user namespace uid mappings from the host to the container.")
def _(t: T):
    _need_userns(t)
    cid = t.create(_userns_bundle(t, "sleep", "10"))
    pid = t.pids[cid]
    eq(read(f"/proc/{pid}/uid_map").split(), ["0", "100000", "65536"], "uid_map")
    eq(read(f"/proc/{pid}/gid_map").split(), ["0", "100000", "65536"], "gid_map")
    check(ns_inode(pid, "user") != ns_inode("self", "user"), "no new user namespace")


@case(I, "userns.ids", "inside, the process is root; on the host, its files belong to the mapped ids",
      "config-linux.md#user-namespace-mappings", "containerID ... is the starting uid/gid in the container. hostID ... is the starting uid/gid on the host to be mapped to containerID.")
def _(t: T):
    _need_userns(t)
    b = _userns_bundle(t).sh("id -u; id -g; touch /out/made")
    eq(t.ok_run(b).out.split(), ["0", "0"], "id -u, id -g")
    st = os.stat(b.out / "made")
    eq((st.st_uid, st.st_gid), (100000, 100000), "owner of the file on the host")


@case(I, "userns.no_chown", "the rootfs keeps its ownership",
      "config-linux.md#user-namespace-mappings", "The runtime SHOULD NOT modify the ownership of referenced filesystems to realize the mapping.", level="SHOULD")
def _(t: T):
    _need_userns(t)
    b = _userns_bundle(t, "true")
    t.ok_run(b)
    owners = {(os.lstat(p).st_uid, os.lstat(p).st_gid) for p in
              (b.rootfs, b.rootfs / "bin", b.rootfs / "bin" / "busybox", b.rootfs / "etc" / "passwd")}
    eq(owners, {(0, 0)}, "owners of rootfs files")
