"""The "linux: devices" cases: linux.devices and the default devices (config-linux.md Devices,
Default Devices)."""
from __future__ import annotations

import os

from harness import ConsoleSocket, T, read
from registry import case, check, eq


D = "linux: devices"


@case(D, "devices.char", "a configured character device exists with its numbers, mode and owner",
      "config-linux.md#devices", "devices (array of objects, OPTIONAL) lists devices that MUST be available in the container.")
def _(t: T):
    b = t.bundle("stat", "-c", "%F|%t|%T|%a|%u|%g", "/dev/conf-null")
    b.linux["devices"] = [{"path": "/dev/conf-null", "type": "c", "major": 1, "minor": 3,
                           "fileMode": 0o640, "uid": 1, "gid": 2}]
    eq(t.ok_run(b).out.strip(), "character special file|1|3|640|1|2", "stat of /dev/conf-null")


@case(D, "devices.types", "block, fifo and unbuffered char devices, also outside /dev",
      "config-linux.md#devices", "type (string, REQUIRED) - type of device: c, b, u or p. / The path MAY be anywhere in the container filesystem, notably outside of /dev.")
def _(t: T):
    b = t.bundle().sh("for f in /dev/conf-blk /dev/conf-fifo /dev/conf-u /mydevs/zero; do "
                      "stat -c '%F|%t|%T' $f; done")
    b.linux["devices"] = [
        {"path": "/dev/conf-blk", "type": "b", "major": 7, "minor": 200},
        {"path": "/dev/conf-fifo", "type": "p"},
        {"path": "/dev/conf-u", "type": "u", "major": 1, "minor": 5},
        {"path": "/mydevs/zero", "type": "c", "major": 1, "minor": 5}]
    eq(t.ok_run(b).out.split("\n")[:4],
       ["block special file|7|c8", "fifo|0|0", "character special file|1|5",
        "character special file|1|5"], "stat of the devices")


@case(D, "devices.conflict", "a file at a device's path that does not match is an error",
      "config-linux.md#devices", "If a file already exists at path that does not match the requested device, the runtime MUST generate an error.")
def _(t: T):
    b = t.bundle("true")
    (b.rootfs / "mydevs").mkdir()
    (b.rootfs / "mydevs" / "null").write_text("a regular file\n")
    b.linux["devices"] = [{"path": "/mydevs/null", "type": "c", "major": 1, "minor": 3}]
    t.create_fails(b, "a regular file is at the device's path")
    eq(read(b.rootfs / "mydevs" / "null"), "a regular file\n", "the file in the rootfs")


@case(D, "devices.default", "the default devices are supplied",
      "config-linux.md#default-devices", "In addition to any devices configured with this setting, the runtime MUST also supply: /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty, /dev/ptmx")
def _(t: T):
    names = ["null", "zero", "full", "random", "urandom", "tty"]
    b = t.bundle().sh("for f in " + " ".join(f"/dev/{n}" for n in names) +
                      "; do stat -L -c '%n|%F|%t|%T' $f; done; readlink /dev/ptmx; stat -L -c '%F|%t|%T' /dev/ptmx")
    lines = t.ok_run(b).out.splitlines()
    want = {"null": "1|3", "zero": "1|5", "full": "1|7", "random": "1|8", "urandom": "1|9", "tty": "5|0"}
    for n, line in zip(names, lines):
        eq(line, f"/dev/{n}|character special file|{want[n]}", f"/dev/{n}")
    rest = lines[len(names):]
    ptmx = rest[-1] if rest else ""
    eq(ptmx, "character special file|5|2", "/dev/ptmx (followed)")
    if len(rest) == 2:
        check(rest[0] in ("pts/ptmx", "/dev/pts/ptmx"), f"/dev/ptmx links to {rest[0]!r}")


@case(D, "devices.default_usable", "the default devices work under a deny-all device cgroup rule",
      "config-linux.md#default-devices", "In addition to any devices configured with this setting, the runtime MUST also supply: ...")
def _(t: T):
    b = t.bundle().sh("echo x > /dev/null && head -c 4 /dev/zero | wc -c && head -c 4 /dev/urandom | wc -c "
                      "&& echo ok")
    b.linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}]}
    eq(t.ok_run(b).out.split(), ["4", "4", "ok"], "using /dev/null, /dev/zero, /dev/urandom")


@case(D, "devices.console", "with terminal, /dev/console is the pty",
      "config-linux.md#default-devices", "/dev/console is set up if terminal is enabled in the config by bind mounting the pseudoterminal pty to /dev/console.")
def _(t: T):
    b = t.bundle().sh("stat -c '%F|%t' /dev/console > /out/console; tty > /out/tty")
    b.process["terminal"] = True
    cs = ConsoleSocket(t)
    cid = t.create(b, extra=("--console-socket", cs.path))
    cs.wait()
    t.start(cid)
    t.wait_exit(cid)
    eq(read(b.out / "console", "").strip(), "character special file|88", "/dev/console (pts major 136=0x88)")


@case(D, "devices.symlinks", "/dev/fd, /dev/stdin, /dev/stdout, /dev/stderr are the standard symlinks",
      "runtime-linux.md#dev-symbolic-links", "runtimes MUST create the following symlinks if the source file exists after processing mounts")
def _(t: T):
    b = t.bundle().sh("for f in fd stdin stdout stderr; do readlink /dev/$f; done")
    eq(t.ok_run(b).out.split(), ["/proc/self/fd", "/proc/self/fd/0", "/proc/self/fd/1", "/proc/self/fd/2"],
       "symlink targets")


@case(D, "devices.cgroup_order", "device cgroup rules apply in the listed order",
      "config-linux.md#allowed-device-list", "The runtime MUST apply entries in the listed order.")
def _(t: T):
    if not os.path.exists("/dev/fuse"):
        t.skip("no /dev/fuse (10:229) on this machine to probe with")
    fuse = {"type": "c", "major": 10, "minor": 229, "access": "rwm"}
    results = []
    for rules in ([{"allow": True, **fuse}, {"allow": False, **fuse}],
                  [{"allow": False, **fuse}, {"allow": True, **fuse}]):
        b = t.bundle().sh("(: < /dev/conf-fuse) 2>&1 && echo opened; true")  # a subshell: the redirection may fail
        b.linux["devices"] = [{"path": "/dev/conf-fuse", "type": "c", "major": 10, "minor": 229}]
        b.linux["resources"] = {"devices": [{"allow": False, "access": "rwm"}, *rules]}
        results.append(t.ok_run(b).out.strip())
    check("Operation not permitted" in results[0], f"allow then deny: {results[0]!r}")
    eq(results[1], "opened", "deny then allow")
