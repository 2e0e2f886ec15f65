"""What user-mode emulation (hack/arm64: qemu-user) cannot do, found out by trying, and a
pytest plugin that reports a test failing on exactly that as skipped, with the reason.

qemu-user runs a thread of its own (RCU) in every emulated process, forked ones too, so the
kernel refuses what it allows only single-threaded processes: joining a mount namespace
(setns, hence `runp exec`) and creating a user namespace. It does not pass seccomp(2) through
(a filter would judge the host syscalls qemu makes), nor, in 10.0, mount_setattr(2) and
fsopen(2). Each is tried in a forked child; where it works, nothing is skipped. Not a test
module: `python tests/emulation.py` prints the limits, `pytest -p emulation` loads the plugin.
"""
from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def in_child(fn) -> str:
    """fn() in a forked child (which may change its namespaces, credentials, scheduling): ""
    when it returned, else what it raised (an OSError as its message alone, as runp words it)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            fn()
            os._exit(0)
        except OSError as e:
            os.write(w, (e.strerror or str(e)).encode())
        except BaseException as e:  # noqa: BLE001 - a child must never return into pytest
            os.write(w, f"{type(e).__name__}: {e}".encode())
        os._exit(1)
    os.close(w)
    with os.fdopen(r, "rb") as f:
        err = f.read().decode()
    os.waitpid(pid, 0)
    return err


def _seccomp() -> None:
    from runtime.linux import seccomp
    from runtime.linux import sys as lsys
    prog = seccomp.build({"defaultAction": "SCMP_ACT_ALLOW",
                          "syscalls": [{"names": ["mkdirat"], "action": "SCMP_ACT_ERRNO"}]})
    lsys.set_no_new_privs()
    seccomp.install(prog)


def _join_mount_namespace() -> None:
    from runtime.linux import sys as lsys
    fd = os.open("/proc/self/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
    lsys.setns(fd, lsys.CLONE_NEWNS)   # our own: allowed to a single-threaded root process


def _new_user_namespace() -> None:
    from runtime.linux import sys as lsys
    lsys.unshare(lsys.CLONE_NEWUSER)


def _mount_setattr() -> None:
    from runtime.linux import sys as lsys
    lsys.unshare(lsys.CLONE_NEWNS)
    fd = os.open("/", os.O_PATH | os.O_CLOEXEC)
    lsys.mount_setattr(fd, 0, 0, recursive=False)   # changes nothing, in a mount ns of its own


def _new_mount() -> None:
    from runtime.linux import sys as lsys
    lsys.unshare(lsys.CLONE_NEWNS)
    os.close(lsys.new_mount("tmpfs", {"source": "tmpfs"}, 0))   # detached: gone when closed


def _open_tree() -> None:
    from runtime.linux import sys as lsys
    lsys.unshare(lsys.CLONE_NEWNS)
    os.close(lsys.clone_tree("/", False))


# what is tried, what it means for runp, the likely cause shown with a failure, and what else
# a test fails with for the same reason: libseccomp refuses newer actions where seccomp(2) cannot
# tell it the kernel's API level; setns(2) fails with EUSERS too when the emulation joins several
_THREADS = "the kernel allows it to single-threaded processes only; an emulated one has {} threads"
_PROBES = (
    (_seccomp, "seccomp filters", "the emulator does not pass seccomp(2) through",
     ("linux.seccomp",)),
    (_join_mount_namespace, "joining a mount namespace (runp exec)", _THREADS, ("setns: ",)),
    (_new_user_namespace, "user namespaces", _THREADS, ()),
    (_mount_setattr, "mount attributes of a tree (recursive read-only, idmapped mounts)",
     "the emulator does not pass mount_setattr(2) through", ()),
    (_open_tree, "detached mount trees (open_tree(2))",
     "the emulator does not pass open_tree(2) through", ()),
    (_new_mount, "new mounts made on fds (fsopen(2): masked paths)",
     "the emulator does not pass fsopen(2) through", ()),
)


def limits() -> dict[str, str]:
    """The error a test fails with when it hits a limit (the syscall's message, as runp
    reports it) -> what cannot be done and why; empty where nothing is limited."""
    threads = len(os.listdir("/proc/self/task"))
    found = {}
    for probe, what, cause, also in _PROBES:
        err = in_child(probe)
        if err:
            for sign in (err, *also):
                found[sign] = f"{what}: {err} ({cause.format(threads)})"
    return found


LIMITS: dict[str, str] = {}
ADAPTED: list[str] = []


# Fields whose mounts runp makes on fds alone (so that nothing in the container's /proc can
# redirect them), and the call each needs; where the emulator lacks it, a bundle can only be
# created without the field.
FIELD_NEEDS = {"readonlyPaths": "mount_setattr", "maskedPaths": "fsopen"}


def fields_left_out(limits: dict[str, str]) -> list[str]:
    """The linux.* fields of FIELD_NEEDS whose call is one of `limits`."""
    return [f for f, call in FIELD_NEEDS.items() if any(s.startswith(f"{call}:") for s in limits)]


def leave_out(cfg: dict, fields: list[str]) -> dict:
    for f in fields:
        cfg.get("linux", {}).pop(f, None)
    return cfg


def pytest_configure(config) -> None:
    LIMITS.update(limits())
    fields = fields_left_out(LIMITS)
    if fields:
        from runtime import spec
        default_spec = spec.default_spec
        spec.default_spec = lambda *a, **kw: leave_out(default_spec(*a, **kw), fields)
        ADAPTED.append(f"the tests' bundles leave out linux.{' and linux.'.join(fields)} "
                       f"(made with calls the emulator lacks); a test of those is skipped")


def pytest_report_header(config) -> list[str]:
    return ([f"emulation limit: {why}" for why in LIMITS.values()]
            + [f"emulation: {what}" for what in ADAPTED]) or ["emulation: no limits found"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if not rep.failed or call.excinfo is None:
        return
    text = rep.longreprtext
    for sign, why in LIMITS.items():
        if sign in text:
            rep.outcome = "skipped"
            rep.longrepr = (str(item.path), item.location[1] or 0, f"emulation: {why}")
            return


if __name__ == "__main__":
    for sign, why in limits().items():
        print(f"{sign}\t{why}")
