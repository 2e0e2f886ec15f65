"""`runp features`: the runtime-spec "features" document (features.md, features-linux.md).

Callers (containerd's CRI plugin, CRI-O, podman) read it to learn what a runtime accepts before
they generate a config. Every list is derived from the tables the code itself uses, so the
document cannot claim more than runp does: the mount options the rootfs builder knows, the
capabilities, namespaces and hook kinds spec.py parses, and the seccomp actions, operators and
architectures that both runp's validator and the installed libseccomp accept. Where the kernel
decides, the document says what this machine does: namespaces with a /proc/self/ns entry,
capabilities up to cap_last_cap, seccomp actions within libseccomp's API level (which counts
the kernel's support too), idmapped mounts, and the seccomp flags, each probed with seccomp(2).
"""
from __future__ import annotations

import ctypes
import errno
import os

from . import __version__
from .spec import (HOOK_KINDS, MEMORY_POLICY_FLAGS, MEMORY_POLICY_MODES, NAMESPACE_TYPES,
                   SPEC_VERSION)

OCI_VERSION_MIN = "1.0.0"

# seccomp(2): SECCOMP_SET_MODE_FILTER and the filter flag bits the config may name
_SET_MODE_FILTER = 1
_FLAG_BITS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 1 << 0,
    "SECCOMP_FILTER_FLAG_LOG": 1 << 1,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 1 << 2,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 1 << 5,
}
_FLAG_NEW_LISTENER = 1 << 3


def features(criu: str | None = None) -> dict:
    """The features document for this build on this host (`criu`: the --criu binary)."""
    from .linux import capabilities, idmapped, mounts
    seccomp = _seccomp_features()
    last = capabilities.last_cap()
    linux: dict = {
        "namespaces": [ns for ns in NAMESPACE_TYPES if _kernel_has_namespace(ns)],
        "capabilities": [n for n in sorted(capabilities.CAPS, key=capabilities.CAPS.__getitem__)
                         if capabilities.CAPS[n] <= last],
        # Implementation status, not the host's cgroup version (features-linux.md): the
        # --systemd-cgroup driver asks systemd for transient scopes over D-Bus; the caller's
        # own (user) instance is claimed where its socket is there to be reached.
        "cgroup": {"v1": True, "v2": True, "systemd": True,
                   "systemdUser": _systemd_user_reachable(), "rdma": True},
        "seccomp": seccomp,
        # process.apparmorProfile and process.selinuxLabel are applied when the host LSM is
        # enabled (process.py), and ignored otherwise, as runc and crun do.
        "apparmor": {"enabled": True},
        "selinux": {"enabled": True},
        # linux.intelRdt (linux/intelrdt.py): closID, the schemata lines and a MON group;
        # as runc, the implementation's status (a host without resctrl fails such a create)
        "intelRdt": {"enabled": True, "schemata": True, "monitoring": True},
        # linux.memoryPolicy (linux/mempolicy.py): every mode and flag spec.py accepts
        "memoryPolicy": {"modes": sorted(MEMORY_POLICY_MODES), "flags": sorted(MEMORY_POLICY_FLAGS)},
        # linux.netDevices (linux/netdevices.py, over netlink with pyroute2)
        "netDevices": {"enabled": True},
        # mounts[].uidMappings/gidMappings and "idmap"/"ridmap": idmapped bind mounts
        # (idmapped.py), where the kernel has mount_setattr(2).
        "mountExtensions": {"idmap": {"enabled": idmapped.kernel_supports()}},
    }
    annotations = {
        "org.opencontainers.runp.version": __version__,
        **criu_annotations(criu),
    }
    lib = libseccomp_version()
    if lib:
        annotations["io.github.seccomp.libseccomp.version"] = lib
    return {
        "ociVersionMin": OCI_VERSION_MIN,
        "ociVersionMax": SPEC_VERSION,
        "hooks": list(HOOK_KINDS),
        "mountOptions": sorted(mount_options(mounts)),
        "linux": linux,
        "annotations": annotations,
    }


# namespace type -> its /proc/PID/ns entry
_NS_FILES = {"network": "net", "mount": "mnt"}


def _kernel_has_namespace(ns: str) -> bool:
    return os.path.exists(f"/proc/self/ns/{_NS_FILES.get(ns, ns)}")


def criu_annotations(criu: str | None) -> dict[str, str]:
    """checkpoint.enabled is "true" only where checkpoint/restore can work: criu is there and
    passes `criu check` (runc says "true" whenever it was built with criu support; Debian's
    criu 3.17 fails on kernel 6.18); org.criu.version whenever criu is there."""
    from . import criu as criu_mod
    path = criu_mod.find(criu)
    out = {"org.opencontainers.runp.checkpoint.enabled":
           "true" if path and criu_mod.problem(path) is None else "false"}
    if path:
        out["org.criu.version"] = criu_mod.version_text(path)
    return out


def _systemd_user_reachable() -> bool:
    from .linux.cgroups.systemd import user_instance_reachable
    return user_instance_reachable()


def mount_options(mounts) -> set[str]:
    """Every option mounts.MountOptions turns into a flag, propagation or mount attribute
    (anything else is passed to the filesystem as data), plus tmpcopyup, idmap and ridmap."""
    return set(mounts._FLAGS) | set(mounts._PROPAGATION) | set(mounts._REC_ATTRS) | {
        "tmpcopyup", "idmap", "ridmap"}


def _seccomp_features() -> dict:
    try:
        import seccomp as scmp
    except ImportError:  # runp refuses every seccomp profile without the binding
        return {"enabled": False}
    from .linux import seccomp
    known = sorted(seccomp.FLAGS)
    archs = sorted(a for a in seccomp.ARCHES if _arch_usable(scmp, a))
    return {
        "enabled": True,
        "actions": sorted(a for a in seccomp.ACTIONS if _action_usable(scmp, a)),
        "operators": sorted(seccomp.OPS),
        "archs": archs,
        "knownFlags": known,
        "supportedFlags": [f for f in known if _kernel_accepts(scmp, f)],
    }


# libseccomp API level an action needs (seccomp_api_get(3)): 3 for the kernel's
# SECCOMP_RET_LOG and KILL_PROCESS (Linux 4.14), 5 for user notification (Linux 5.0)
_ACTION_API = {"SCMP_ACT_LOG": 3, "SCMP_ACT_KILL_PROCESS": 3, "SCMP_ACT_NOTIFY": 5}


def _action_usable(scmp, name: str) -> bool:
    """Can a filter with this action be loaded here? The API level is the lower of what this
    libseccomp and this kernel support."""
    need = _ACTION_API.get(name)
    return need is None or scmp.get_api() >= need


def _arch_usable(scmp, name: str) -> bool:
    """Can a filter for this machine include `name`? The validator knows a few architectures
    this libseccomp does not, and libseccomp refuses to mix byte orders in one filter (EDOM):
    a config naming such an architecture fails, so it is not claimed."""
    arch = getattr(scmp.Arch, name[len("SCMP_ARCH_"):], None)
    if arch is None:
        return False
    try:
        scmp.SyscallFilter(scmp.ALLOW).add_arch(arch)
    except RuntimeError as e:
        return "17" in str(e)  # EEXIST: the native architecture is always there
    return True


def _kernel_accepts(scmp, flag: str) -> bool:
    """seccomp(SET_MODE_FILTER, flag, NULL): EFAULT means the kernel took the flags and only
    then failed to read the (absent) filter; EINVAL means it does not know them. Nothing is
    installed either way. WAIT_KILLABLE_RECV is only valid together with NEW_LISTENER."""
    from .linux import sys as lsys
    bits = _FLAG_BITS[flag]
    if flag == "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV":
        bits |= _FLAG_NEW_LISTENER
    nr = scmp.resolve_syscall(scmp.Arch.NATIVE, "seccomp")
    ret = lsys.libc.syscall(ctypes.c_long(nr), ctypes.c_uint(_SET_MODE_FILTER),
                            ctypes.c_uint(bits), ctypes.c_void_p(None))
    if ret != -1:  # cannot happen with a NULL filter; be safe and claim nothing
        return False
    if ctypes.get_errno() != errno.EFAULT:
        return False
    # runp also sets the matching libseccomp attribute for these two (seccomp.build)
    attr = {"SECCOMP_FILTER_FLAG_LOG": "CTL_LOG",
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW": "CTL_SSB"}.get(flag)
    return attr is None or hasattr(scmp.Attr, attr)


class _Version(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint), ("minor", ctypes.c_uint), ("micro", ctypes.c_uint)]


def libseccomp_version() -> str | None:
    """The loaded libseccomp's version (seccomp_version(3)); None without libseccomp."""
    try:
        lib = ctypes.CDLL("libseccomp.so.2")
    except OSError:
        return None
    lib.seccomp_version.restype = ctypes.POINTER(_Version)
    v = lib.seccomp_version().contents
    return f"{v.major}.{v.minor}.{v.micro}"


def print_features(out, criu: str | None = None) -> None:
    from . import jsonlite
    out.write(jsonlite.dumps_indent(features(criu), "    ") + "\n")
