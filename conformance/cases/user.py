"""The "config: user" cases: process.user: uid, gid, additionalGids, umask (config.md User)."""
from __future__ import annotations

from harness import T
from registry import case, eq


U = "config: user"


@case(U, "user.uid_gid", "the process runs as user.uid / user.gid",
      "config.md#posix-platform-user", "uid (int, REQUIRED) specifies the user ID in the container namespace. / gid (int, REQUIRED) specifies the group ID")
def _(t: T):
    b = t.bundle().sh("id -u; id -g; grep -E '^(Uid|Gid):' /proc/self/status")
    b.process["user"] = {"uid": 1000, "gid": 1001}
    out = t.ok_run(b).out.split("\n")
    eq(out[:2], ["1000", "1001"], "id -u, id -g")
    eq(out[2].split()[1:], ["1000"] * 4, "real/effective/saved/fs uid")
    eq(out[3].split()[1:], ["1001"] * 4, "real/effective/saved/fs gid")


@case(U, "user.additional_gids", "additionalGids are the supplementary groups, and only they",
      "config.md#posix-platform-user", "additionalGids (array of ints, OPTIONAL) specifies additional group IDs in the container namespace to be added to the process.")
def _(t: T):
    b = t.bundle("grep", "^Groups:", "/proc/self/status")
    b.process["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 6, 4242]}
    eq(sorted(t.ok_run(b).out.split()[1:], key=int), ["5", "6", "4242"], "Groups")
    b2 = t.bundle("grep", "^Groups:", "/proc/self/status")
    b2.process["user"] = {"uid": 1000, "gid": 1000}
    eq(t.ok_run(b2).out.split()[1:], [], "Groups without additionalGids")


@case(U, "user.umask", "user.umask is the process's umask",
      "config.md#posix-platform-user", "umask (int, OPTIONAL) specifies the umask of the user.")
def _(t: T):
    b = t.bundle().sh("umask; touch /tmp/f; stat -c %a /tmp/f")
    b.process["user"] = {"uid": 0, "gid": 0, "umask": 0o027}
    eq(t.ok_run(b).out.split(), ["0027", "640"], "umask and the mode of a new file")
