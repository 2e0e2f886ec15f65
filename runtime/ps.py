"""`runp ps`: the processes running in a container.

`--format json` is what containerd's shim calls (`ps --format json ID`): it reads stdout and
stderr through ONE pipe and parses the whole output as a JSON array of host pids, so on success
nothing but that array may be printed. `--format table` (the default) runs the host's `ps`
(`-ef` unless other ps arguments follow the id) and keeps the header and the lines whose PID
column names a process of the container, as runc does.
"""
from __future__ import annotations

from .errors import RuntimeFailure


def container_pids(c) -> list[int]:
    """Host pids of every process in the container's cgroup (the init first if it is there).

    Without a recorded cgroup, only the init can be named. A cgroup removed under us (the
    container stopped and was cleaned up concurrently) means no processes, not an error."""
    if not c.state.cgroup:
        return [c.state.pid] if c.alive() else []
    try:
        return c.cgroup().pids()
    except FileNotFoundError:
        return []


def ps(root: str, container_id: str, fmt: str, ps_args: list[str], out) -> int:
    from .container import Container
    if fmt not in ("table", "json"):
        raise RuntimeFailure(f"invalid format option {fmt!r}")
    c = Container(root, container_id)
    c.status()  # "does not exist" for an unknown id
    pids = container_pids(c)
    if fmt == "json":
        from . import jsonlite
        out.write(jsonlite.dumps(pids, compact=True) + "\n")
        return 0
    out.write(ps_table(pids, ps_args or ["-ef"]))
    return 0


def ps_table(pids: list[int], ps_args: list[str]) -> str:
    """The host's `ps ARGS` output cut down to the header and the given pids."""
    import subprocess
    try:
        p = subprocess.run(["ps", *ps_args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise RuntimeFailure('exec: "ps": executable file not found in $PATH') from None
    if p.returncode != 0:
        err = p.stderr.decode(errors="replace").strip().splitlines()
        raise RuntimeFailure(f"ps {' '.join(ps_args)}: {err[-1] if err else 'exit status %d' % p.returncode}")
    lines = p.stdout.decode(errors="replace").splitlines()
    if not lines:
        raise RuntimeFailure("ps printed nothing")
    header = lines[0].split()
    if "PID" not in header:
        raise RuntimeFailure("couldn't find PID field in ps output")
    col = header.index("PID")
    wanted = {str(p) for p in pids}
    keep = [lines[0]]
    for line in lines[1:]:
        fields = line.split()
        if len(fields) > col and fields[col] in wanted:
            keep.append(line)
    return "".join(line + "\n" for line in keep)
