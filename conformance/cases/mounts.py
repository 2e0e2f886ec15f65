"""The "config: mounts" cases: mounts: order, destinations, bind and flag options, propagation,
idmap (config.md Mounts)."""
from __future__ import annotations

import subprocess
from pathlib import Path

from harness import T, find_mount, inside_mounts, read
from registry import case, check, eq


M = "config: mounts"


@case(M, "mounts.order", "mounts are made in the listed order",
      "config.md#mounts", "The runtime MUST mount entries in the listed order.")
def _(t: T):
    b = t.bundle().sh("stat -c %a /same; cat /proc/self/mountinfo")
    b.mount("/a", "tmpfs", "tmpfs", ["size=1m"]).mount("/a/b", "tmpfs", "tmpfs", ["size=1m"])
    b.mount("/same", "tmpfs", "tmpfs", ["mode=711"]).mount("/same", "tmpfs", "tmpfs", ["mode=750"])
    r = t.ok_run(b)
    first, _, rest = r.out.partition("\n")
    eq(first.strip(), "750", "mode of /same (the last mount on it is on top)")
    mps = [m["mp"] for m in inside_mounts(rest)]
    check("/a" in mps and "/a/b" in mps, f"missing /a or /a/b in {mps}")
    check(mps.index("/a") < mps.index("/a/b"), "/a/b was mounted before /a")


@case(M, "mounts.relative_destination", "a relative destination is taken relative to /",
      "config.md#mounts", "it MAY be a relative path, in which case it MUST be interpreted as relative to \"/\".")
def _(t: T):
    b = t.bundle().sh("cat /proc/self/mountinfo")
    b.mount("relmnt", "tmpfs", "tmpfs", ["size=1m"])
    find_mount(inside_mounts(t.ok_run(b)), "/relmnt")


@case(M, "mounts.bind", "bind mounts a host directory and a host file",
      "config.md#mounts", "bind | MUST | Bind mount")
def _(t: T):
    src = t.dir / "src"
    src.mkdir()
    (src / "hello").write_text("from host\n")
    f = t.dir / "file"
    f.write_text("a file\n")
    b = t.bundle().sh("cat /data/hello /etc/bound; echo from container > /data/back")
    b.mount("/data", "bind", str(src), ["bind"]).mount("/etc/bound", "bind", str(f), ["bind"])
    eq(t.ok_run(b).out.split("\n")[:2], ["from host", "a file"], "what the container read")
    eq(read(src / "back", "").strip(), "from container", "what the host sees")


def _host_submount(t: T) -> Path:
    """A host directory with a tmpfs mounted on src/sub (unmounted at cleanup)."""
    src = t.dir / "src"
    (src / "sub").mkdir(parents=True)
    (src / "top").write_text("top\n")
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(src / "sub")],
                      capture_output=True).returncode != 0:
        t.skip("cannot mount a tmpfs on the host")
    t.defer(lambda: subprocess.run(["umount", "-l", str(src / "sub")], capture_output=True))
    (src / "sub" / "inner").write_text("inner\n")
    return src


@case(M, "mounts.rbind", "rbind is recursive, bind is not",
      "config.md#mounts", "rbind | MUST | Recursive bind mount")
def _(t: T):
    src = _host_submount(t)
    b = t.bundle().sh("cat /r/sub/inner 2>/dev/null || echo none; cat /n/sub/inner 2>/dev/null || echo none")
    b.mount("/r", "bind", str(src), ["rbind"]).mount("/n", "bind", str(src), ["bind"])
    eq(t.ok_run(b).out.split(), ["inner", "none"], "/r/sub/inner and /n/sub/inner")


@case(M, "mounts.flags", "the mount(8) flag options are applied",
      "config.md#mounts", "ro, nosuid, nodev, noexec, noatime, nodiratime ... | MUST | [^1] (mount(8))")
def _(t: T):
    b = t.bundle().sh("cat /proc/self/mountinfo")
    b.mount("/m1", "tmpfs", "tmpfs", ["ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime"])
    b.mount("/m2", "tmpfs", "tmpfs", ["rw", "suid", "dev", "exec", "relatime"])
    b.mount("/m3", "tmpfs", "tmpfs", ["nosuid", "strictatime"])
    ms = inside_mounts(t.ok_run(b))
    m1, m2, m3 = (find_mount(ms, p)["opts"] for p in ("/m1", "/m2", "/m3"))
    for o in ("ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime"):
        check(o in m1, f"/m1 lacks {o}: {sorted(m1)}")
    check("rw" in m2 and not m2 & {"nosuid", "nodev", "noexec"} and "relatime" in m2,
          f"/m2 options {sorted(m2)}")
    check("nosuid" in m3 and not m3 & {"relatime", "noatime"}, f"/m3 options {sorted(m3)} (strictatime)")


@case(M, "mounts.bind_ro", "a read-only bind mount cannot be written",
      "config.md#mounts", "ro | MUST | [^1] (mount(8))")
def _(t: T):
    src = t.dir / "src"
    src.mkdir()
    b = t.bundle().sh("touch /data/x 2>&1; echo rc=$?")
    b.mount("/data", "bind", str(src), ["bind", "ro"])
    r = t.ok_run(b)
    check("Read-only file system" in r.out, f"write did not fail with EROFS: {r.out.strip()}")
    check(not (src / "x").exists(), "the file reached the host")


@case(M, "mounts.fs_options", "unknown options are passed on as filesystem options",
      "config.md#mounts", "Runtimes SHOULD treat unknown options as filesystem-specific ones", level="SHOULD")
def _(t: T):
    b = t.bundle().sh("stat -c %a /m; cat /proc/self/mountinfo")
    b.mount("/m", "tmpfs", "tmpfs", ["size=1m", "mode=0710", "nr_inodes=100"])
    r = t.ok_run(b)
    first, _, rest = r.out.partition("\n")
    eq(first.strip(), "710", "mode of /m")
    sup = find_mount(inside_mounts(rest), "/m")["super"]
    check("size=1024k" in sup and "nr_inodes=100" in sup, f"super options {sorted(sup)}")


@case(M, "mounts.propagation", "propagation options set the mount's propagation type",
      "config.md#mounts", "shared, private, unbindable ... | MUST | Bind mount propagation")
def _(t: T):
    b = t.bundle().sh("cat /proc/self/mountinfo")
    b.mount("/shr", "tmpfs", "tmpfs", ["size=1m", "shared"])
    b.mount("/unb", "tmpfs", "tmpfs", ["size=1m", "unbindable"])
    b.mount("/prv", "tmpfs", "tmpfs", ["size=1m", "private"])
    ms = inside_mounts(t.ok_run(b))
    shr, unb, prv = (find_mount(ms, p)["optional"] for p in ("/shr", "/unb", "/prv"))
    check(any(o.startswith("shared:") for o in shr), f"/shr is not shared: {shr}")
    check("unbindable" in unb, f"/unb is not unbindable: {unb}")
    check(not prv, f"/prv is not private: {prv}")


@case(M, "mounts.rro", "rro makes a recursive bind mount read-only throughout",
      "config.md#mounts", "rro | SHOULD | Recursive ro", level="SHOULD")
def _(t: T):
    src = _host_submount(t)
    b = t.bundle().sh("touch /r/x 2>/dev/null; echo top=$?; touch /r/sub/x 2>/dev/null; echo sub=$?")
    b.mount("/r", "bind", str(src), ["rbind", "rro"])
    eq(t.ok_run(b).out.split(), ["top=1", "sub=1"], "writes on /r and /r/sub")


@case(M, "mounts.nosymfollow", "nosymfollow is applied",
      "config.md#mounts", "nosymfollow | SHOULD | (Introduced in kernel 5.10, util-linux 2.38)", level="SHOULD")
def _(t: T):
    b = t.bundle().sh("cat /proc/self/mountinfo")
    b.mount("/nsf", "tmpfs", "tmpfs", ["size=1m", "nosymfollow"])
    opts = find_mount(inside_mounts(t.ok_run(b)), "/nsf")["opts"]
    check("nosymfollow" in opts, f"/nsf options {sorted(opts)}")


@case(M, "mounts.idmap", "an idmap mount is idmapped (or create fails), never mounted unmapped",
      "config.md#mounts", "idmap ... Indicates that the mount MUST have an idmapping applied.")
def _(t: T):
    src = t.dir / "src"
    src.mkdir()
    (src / "f").write_text("x")
    b = t.bundle().sh("stat -c %u /data/f")
    b.config["mounts"].append({"destination": "/data", "type": "bind", "source": str(src),
                               "options": ["bind", "idmap"],
                               # as runc and crun read a mount's mapping (runc's idmap.bats):
                               # what the filesystem has as containerID shows as hostID
                               "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
                               "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})
    cid = t._prepare(b, None)
    p = t._create(b, cid, (), None, None, None)
    if p.rc != 0:
        t.notes.append("create refused the idmap mount")
        t.assert_gone(cid, "after the refused create")
        return
    t.pids[cid] = t.state(cid)["pid"]
    t.start(cid)
    t.wait_exit(cid)
    eq(t.output(cid).strip(), "1000", "owner of a host-root file under the idmapped mount")
