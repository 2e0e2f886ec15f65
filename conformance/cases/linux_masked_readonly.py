"""The "linux: masked/readonly paths" cases: linux.maskedPaths and readonlyPaths (config-linux.md
Masked Paths, Readonly Paths)."""
from __future__ import annotations

from harness import DEFAULT_CAPS, T, read
from registry import case, eq


K = "linux: masked/readonly paths"


@case(K, "masked.paths", "masked files and directories cannot be read",
      "config-linux.md#masked-paths", "maskedPaths (array of strings, OPTIONAL) will mask over the provided paths inside the container so that they cannot be read.")
def _(t: T):
    b = t.bundle().sh("echo \"[$(cat /etc/secret)]\"; echo \"[$(ls /secretdir)]\"; echo \"[$(cat /proc/kcore 2>/dev/null | head -c 1 | wc -c)]\"")
    (b.rootfs / "etc" / "secret").write_text("s3cret\n")
    (b.rootfs / "secretdir").mkdir()
    (b.rootfs / "secretdir" / "file").write_text("x")
    b.linux["maskedPaths"] = ["/etc/secret", "/secretdir", "/proc/kcore", "/no/such/path"]
    b.process["capabilities"] = {k: ["CAP_SYS_RAWIO"] + DEFAULT_CAPS for k in ("bounding", "effective", "permitted")}
    eq(t.ok_run(b).out.split(), ["[]", "[]", "[0]"], "/etc/secret, ls /secretdir, /proc/kcore")


@case(K, "masked.relative", "a relative masked path is an error",
      "config-linux.md#masked-paths", "The values MUST be absolute paths in the container namespace.")
def _(t: T):
    b = t.bundle("true")
    (b.rootfs / "etc" / "secret").write_text("s3cret\n")
    b.linux["maskedPaths"] = ["etc/secret"]
    t.create_fails(b, "a masked path is relative")


@case(K, "readonly.paths", "readonly paths cannot be written",
      "config-linux.md#readonly-paths", "readonlyPaths (array of strings, OPTIONAL) will set the provided paths as readonly inside the container.")
def _(t: T):
    b = t.bundle().sh("exec 2>/dev/null; touch /rodir/x; echo dir=$?; echo y >> /etc/rofile; echo file=$?; "
                      "echo 1 > /proc/sys/kernel/ns_last_pid; echo sys=$?; touch /tmp/ok; echo tmp=$?")
    (b.rootfs / "rodir").mkdir()
    (b.rootfs / "etc" / "rofile").write_text("x\n")
    b.linux["readonlyPaths"] = ["/rodir", "/etc/rofile", "/proc/sys", "/no/such/path"]
    eq(t.ok_run(b).out.split(), ["dir=1", "file=1", "sys=1", "tmp=0"], "writes")
    eq(read(b.rootfs / "etc" / "rofile"), "x\n", "the read-only file")


@case(K, "readonly.relative", "a relative readonly path is an error",
      "config-linux.md#readonly-paths", "The values MUST be absolute paths in the container namespace.")
def _(t: T):
    b = t.bundle("true")
    (b.rootfs / "rodir").mkdir()
    b.linux["readonlyPaths"] = ["rodir"]
    t.create_fails(b, "a readonly path is relative")
