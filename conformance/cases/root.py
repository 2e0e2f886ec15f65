"""The "config: root" cases: root.path and root.readonly (config.md Root)."""
from __future__ import annotations

from harness import T, find_mount, inside_mounts
from registry import case, check, eq


R = "config: root"


@case(R, "root.relative_and_absolute", "root.path may be relative to the bundle or absolute",
      "config.md#root", "On POSIX platforms, path is either an absolute path or a relative path to the bundle.")
def _(t: T):
    for path in ("rootfs", None):
        b = t.bundle().sh("cat /etc/marker")
        (b.rootfs / "etc" / "marker").write_text("this rootfs\n")
        b.config["root"]["path"] = path or str(b.rootfs)
        eq(t.ok_run(b).out.strip(), "this rootfs", f"root.path {b.config['root']['path']}")


@case(R, "root.missing", "a root.path that is not a directory is an error",
      "config.md#root", "A directory MUST exist at the path declared by the field.")
def _(t: T):
    b = t.bundle("true")
    b.config["root"]["path"] = "no-such-dir"
    t.create_fails(b, "root.path does not exist")
    b2 = t.bundle("true")
    (b2.path / "afile").write_text("")
    b2.config["root"]["path"] = "afile"
    t.create_fails(b2, "root.path is a file")


@case(R, "root.readonly", "root.readonly makes the root filesystem read-only",
      "config.md#root", "If true then the root filesystem MUST be read-only inside the container")
def _(t: T):
    b = t.bundle().sh("touch /newfile 2>&1; echo rc=$?; cat /proc/self/mountinfo")
    b.config["root"]["readonly"] = True
    r = t.ok_run(b)
    check("rc=0" not in r.out, "touch /newfile succeeded")
    check("Read-only file system" in r.out, f"touch did not fail with EROFS: {r.out[:200]}")
    check("ro" in find_mount(inside_mounts(r.out.split("\n", 2)[-1]), "/")["opts"], "/ is not mounted ro")
    check(not (b.rootfs / "newfile").exists(), "the file reached the rootfs")


@case(R, "root.readonly_default", "without readonly the root filesystem is writable",
      "config.md#root", "readonly (bool, OPTIONAL) If true then the root filesystem MUST be read-only inside the container, defaults to false.")
def _(t: T):
    b = t.bundle().sh("touch /newfile && echo ok")
    del b.config["root"]["readonly"]
    eq(t.ok_run(b).out.strip(), "ok", "touch /newfile")
    check((b.rootfs / "newfile").exists(), "the file is not in the rootfs")
