"""The cases, one module per area of the runtime-spec. Importing this package registers them
(registry.CASES): the order below is the order they run in and are numbered, section by section
as registry.SECTIONS lists them."""
from . import (lifecycle, operations, root, mounts, process, user, hostname, env, rlimits,
               capabilities, extensibility, linux_namespaces, linux_idmaps, linux_devices,
               linux_sysctl, linux_masked_readonly, linux_rootfs_propagation, seccomp,
               linux_cgroups, hooks)  # noqa: F401
