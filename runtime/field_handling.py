"""What runp does with every field of the runtime-spec 1.3 config schema (issue #15: no field
of config.json is ignored without a warning or an error).

Keys are the schema's leaf paths without array indices ("mounts.options",
"linux.resources.memory.limit"); a section for another platform ("windows", ...) is one entry
for everything below it. Each maps to (handling, evidence):

- APPLIED: runp applies the field (where the host lacks what it needs, create fails naming
  the path). The evidence is the test that observes it applied in a real container or cgroup:
  "tests/<file>.py::<test name or prefix>" or "conformance:<case>" (conformance/oci_conformance.py).
- WARNED: runp does not apply it and logs a warning naming the path (with --log-format json a
  warning line, as runc's), then goes on. The evidence says when and why.
- REFUSED: create fails naming the path (nothing of the kind today: every refusal is
  host-dependent and so an APPLIED field's error).

tests/test_field_coverage.py walks schemas/ and fails for a leaf missing here; it checks that
each APPLIED test exists and runs a container for each WARNED entry. Not imported on the hot
path (only tests and tools read it).
"""
from __future__ import annotations

from .spec import HOOK_KINDS

APPLIED, WARNED, REFUSED = "applied", "warned", "refused"

# sections config.md defines for other platforms (spec.OTHER_PLATFORMS warns about them)
_OTHER = "not a Linux section: warned (spec.py)"
# implemented by the netDevices/memoryPolicy/intelRdt/execCPUAffinity work of issue #15
_SPEC13 = "tests/test_spec13_fields.py::"

FIELDS: dict[str, tuple[str, str]] = {
    "ociVersion": (APPLIED, "tests/test_config_errors.py::test_invalid_config"),
    "root.path": (APPLIED, "conformance:root.relative_and_absolute"),
    "root.readonly": (APPLIED, "conformance:root.readonly"),
    "mounts.destination": (APPLIED, "conformance:mounts.order"),
    "mounts.source": (APPLIED, "conformance:mounts.bind"),
    "mounts.type": (APPLIED, "conformance:mounts.flags"),
    "mounts.options": (APPLIED, "tests/test_mount_keywords.py::test_keyword_is_a_flag"),
    **{f"mounts.{m}.{k}": (APPLIED, "conformance:mounts.idmap")
       for m in ("uidMappings", "gidMappings") for k in ("containerID", "hostID", "size")},
    "process.terminal": (APPLIED, "conformance:process.terminal"),
    "process.consoleSize.height": (APPLIED, "tests/test_terminal.py::test_console_socket_create"),
    "process.consoleSize.width": (APPLIED, "tests/test_terminal.py::test_console_socket_create"),
    "process.cwd": (APPLIED, "conformance:process.cwd"),
    "process.env": (APPLIED, "conformance:env.exact"),
    "process.args": (APPLIED, "conformance:process.args_path"),
    "process.commandLine": (WARNED, "Windows only"),
    "process.user.uid": (APPLIED, "conformance:user.uid_gid"),
    "process.user.gid": (APPLIED, "conformance:user.uid_gid"),
    "process.user.umask": (APPLIED, "conformance:user.umask"),
    "process.user.additionalGids": (APPLIED, "conformance:user.additional_gids"),
    "process.user.username": (WARNED, "Windows only"),
    "process.rlimits.type": (APPLIED, "conformance:rlimits.values"),
    "process.rlimits.soft": (APPLIED, "conformance:rlimits.values"),
    "process.rlimits.hard": (APPLIED, "conformance:rlimits.values"),
    "process.capabilities.bounding": (APPLIED, "conformance:caps.sets"),
    "process.capabilities.effective": (APPLIED, "conformance:caps.sets"),
    "process.capabilities.inheritable": (APPLIED, "conformance:caps.sets"),
    "process.capabilities.permitted": (APPLIED, "conformance:caps.sets"),
    "process.capabilities.ambient": (APPLIED, "conformance:caps.ambient"),
    "process.noNewPrivileges": (APPLIED, "conformance:process.no_new_privileges"),
    "process.oomScoreAdj": (APPLIED, "conformance:process.oom_score_adj"),
    # applied where the LSM runs (process.py); warned where it does not
    "process.apparmorProfile": (WARNED, "AppArmor is not enabled on this host"),
    "process.selinuxLabel": (WARNED, "SELinux is not enabled on this host"),
    "linux.mountLabel": (WARNED, "SELinux is not enabled on this host"),
    **{f"process.scheduler.{k}": (APPLIED, "conformance:process.scheduler")
       for k in ("policy", "nice", "priority", "flags", "runtime", "deadline", "period")},
    "process.ioPriority.class": (APPLIED, "conformance:process.io_priority"),
    "process.ioPriority.priority": (APPLIED, "conformance:process.io_priority"),
    "process.execCPUAffinity.initial": (APPLIED, _SPEC13 + "test_exec_cpu_affinity_initial_only"),
    "process.execCPUAffinity.final": (APPLIED, _SPEC13 + "test_exec_cpu_affinity_final"),
    "hostname": (APPLIED, "conformance:hostname.set"),
    "domainname": (APPLIED, "conformance:domainname.set"),
    **{f"hooks.{kind}.{k}": (APPLIED, ev) for kind in HOOK_KINDS for k, ev in (
        ("path", "conformance:hooks.lifecycle_order"), ("args", "conformance:hooks.args_env"),
        ("env", "conformance:hooks.args_env"), ("timeout", "conformance:hooks.timeout"))},
    "annotations": (APPLIED, "conformance:state.annotations"),
    "linux.namespaces.type": (APPLIED, "conformance:ns.new"),
    "linux.namespaces.path": (APPLIED, "conformance:ns.join_path"),
    **{f"linux.{m}.{k}": (APPLIED, "conformance:userns.maps")
       for m in ("uidMappings", "gidMappings") for k in ("containerID", "hostID", "size")},
    "linux.timeOffsets": (APPLIED, "conformance:ns.time_offsets"),
    **{f"linux.devices.{k}": (APPLIED, "tests/test_config_applied.py::test_devices")
       for k in ("path", "type", "major", "minor", "fileMode", "uid", "gid")},
    "linux.cgroupsPath": (APPLIED, "conformance:cgroups.path_absolute"),
    **{f"linux.resources.devices.{k}": (APPLIED, "tests/test_container_cgroups.py::test_devices")
       for k in ("allow", "type", "major", "minor", "access")},
    "linux.resources.memory.limit": (APPLIED, "conformance:cgroups.memory"),
    "linux.resources.memory.reservation": (APPLIED, "conformance:cgroups.memory"),
    "linux.resources.memory.swap": (APPLIED, "conformance:cgroups.memory_swap"),
    "linux.resources.memory.kernel": (WARNED, "the kernel does not limit kernel memory "
                                              "(Linux 5.16+, cgroup v2)"),
    "linux.resources.memory.kernelTCP": (APPLIED, "tests/test_cgroups.py::test_memory_v1_only_fields"),
    "linux.resources.memory.swappiness": (APPLIED, "tests/test_cgroups.py::test_memory_v1_only_fields"),
    "linux.resources.memory.disableOOMKiller": (
        APPLIED, "tests/test_cgroups.py::test_memory_v1_only_fields"),
    "linux.resources.memory.useHierarchy": (
        APPLIED, "tests/test_cgroups.py::test_memory_v1_only_fields"),
    "linux.resources.memory.checkBeforeUpdate": (
        APPLIED, "tests/test_cgroups.py::test_memory_update_below_usage"),
    "linux.resources.cpu.shares": (APPLIED, "conformance:cgroups.cpu"),
    "linux.resources.cpu.quota": (APPLIED, "conformance:cgroups.cpu"),
    "linux.resources.cpu.period": (APPLIED, "conformance:cgroups.cpu"),
    "linux.resources.cpu.burst": (
        APPLIED, "tests/test_spec13_cli.py::test_config_cpu_burst_and_idle_applied"),
    "linux.resources.cpu.idle": (
        APPLIED, "tests/test_spec13_cli.py::test_config_cpu_burst_and_idle_applied"),
    "linux.resources.cpu.realtimeRuntime": (APPLIED, "tests/test_cgroups.py::test_cpu_realtime"),
    "linux.resources.cpu.realtimePeriod": (APPLIED, "tests/test_cgroups.py::test_cpu_realtime"),
    "linux.resources.cpu.cpus": (APPLIED, "conformance:cgroups.cpuset"),
    "linux.resources.cpu.mems": (APPLIED, "conformance:cgroups.cpuset"),
    "linux.resources.pids.limit": (APPLIED, "conformance:cgroups.pids"),
    "linux.resources.blockIO.weight": (APPLIED, "tests/test_container_cgroups.py::test_block_io_weight"),
    "linux.resources.blockIO.leafWeight": (APPLIED, "tests/test_cgroups.py::test_blkio_leaf_weight"),
    **{f"linux.resources.blockIO.weightDevice.{k}": (
        APPLIED, "tests/test_field_coverage.py::test_weight_device_applied_or_refused")
       for k in ("major", "minor", "weight", "leafWeight")},
    **{f"linux.resources.blockIO.{t}.{k}": (
        APPLIED, "tests/test_field_coverage.py::test_every_throttle_applied")
       for t in ("throttleReadBpsDevice", "throttleWriteBpsDevice", "throttleReadIOPSDevice",
                 "throttleWriteIOPSDevice") for k in ("major", "minor", "rate")},
    "linux.resources.hugepageLimits.pageSize": (APPLIED, "conformance:cgroups.hugetlb"),
    "linux.resources.hugepageLimits.limit": (APPLIED, "conformance:cgroups.hugetlb"),
    "linux.resources.network.classID": (APPLIED, "conformance:cgroups.network"),
    "linux.resources.network.priorities.name": (APPLIED, "tests/test_cgroups.py::test_network"),
    "linux.resources.network.priorities.priority": (APPLIED, "tests/test_cgroups.py::test_network"),
    "linux.resources.rdma": (APPLIED, "tests/test_cgroups.py::test_rdma"),
    "linux.resources.unified": (APPLIED, "conformance:cgroups.unified"),
    "linux.intelRdt.closID": (APPLIED, _SPEC13 + "test_intel_rdt_existing_group_with_monitoring"),
    "linux.intelRdt.schemata": (APPLIED, _SPEC13 + "test_intel_rdt_group_made_written_updated_removed"),
    "linux.intelRdt.l3CacheSchema": (APPLIED, _SPEC13 + "test_intel_rdt_group_made_written_updated_removed"),
    "linux.intelRdt.memBwSchema": (APPLIED, _SPEC13 + "test_intel_rdt_group_made_written_updated_removed"),
    "linux.intelRdt.enableMonitoring": (APPLIED, _SPEC13 + "test_intel_rdt_existing_group_with_monitoring"),
    "linux.memoryPolicy.mode": (APPLIED, _SPEC13 + "test_memory_policy_applied_to_init_and_exec"),
    "linux.memoryPolicy.nodes": (APPLIED, _SPEC13 + "test_memory_policy_applied_to_init_and_exec"),
    "linux.memoryPolicy.flags": (APPLIED, _SPEC13 + "test_memory_policy_applied_to_init_and_exec"),
    "linux.netDevices": (APPLIED, _SPEC13 + "test_netdevice_moved_renamed_kept_addresses"),
    "linux.sysctl": (APPLIED, "conformance:sysctl.set"),
    "linux.seccomp.defaultAction": (APPLIED, "conformance:seccomp.errno_default"),
    "linux.seccomp.defaultErrnoRet": (APPLIED, "conformance:seccomp.default_errno"),
    "linux.seccomp.architectures": (APPLIED, "tests/test_features_truth.py::"
                                             "test_every_listed_seccomp_action_loads"),
    "linux.seccomp.flags": (APPLIED, "tests/test_seccomp.py::test_flags_log_and_spec_allow"),
    "linux.seccomp.listenerPath": (APPLIED, "conformance:seccomp.notify"),
    "linux.seccomp.listenerMetadata": (APPLIED, "conformance:seccomp.notify"),
    "linux.seccomp.syscalls.names": (APPLIED, "conformance:seccomp.errno_ret"),
    "linux.seccomp.syscalls.action": (APPLIED, "conformance:seccomp.errno_ret"),
    "linux.seccomp.syscalls.errnoRet": (APPLIED, "conformance:seccomp.errno_ret"),
    **{f"linux.seccomp.syscalls.args.{k}": (APPLIED, "conformance:seccomp.args")
       for k in ("index", "value", "valueTwo", "op")},
    "linux.rootfsPropagation": (APPLIED, "conformance:propagation.shared"),
    "linux.maskedPaths": (APPLIED, "conformance:masked.paths"),
    "linux.readonlyPaths": (APPLIED, "conformance:readonly.paths"),
    "linux.personality.domain": (APPLIED, "conformance:process.personality"),
    "linux.personality.flags": (APPLIED, "conformance:process.personality"),
    **{section: (WARNED, _OTHER) for section in ("windows", "solaris", "vm", "zos", "freebsd")},
}


def handling(path: str) -> tuple[str, str] | None:
    """The entry for a schema leaf path: its own, or its platform section's."""
    return FIELDS.get(path) or FIELDS.get(path.split(".", 1)[0] if "." in path else "")
