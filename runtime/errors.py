"""The errors runp reports: each becomes one line on stderr (and in --log) and exit status 1."""
from __future__ import annotations


class RuntimeFailure(Exception):
    """An error to report to the caller as one line. `exit_code` is the process exit status."""

    exit_code = 1


class ConfigError(RuntimeFailure):
    """config.json is invalid: names the JSON path of the offending value."""

    def __init__(self, path: str, problem: str, file: str = "config.json") -> None:
        self.path = path
        self.problem = problem
        self.file = file
        where = f"{file}: {path}: " if path else f"{file}: "
        super().__init__(where + problem)


class ContainerNotFound(RuntimeFailure):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container {container_id} does not exist")


class ContainerExists(RuntimeFailure):
    def __init__(self, container_id: str) -> None:
        super().__init__(f"container with id {container_id} already exists")


class NotRunning(RuntimeFailure):
    def __init__(self, container_id: str = "") -> None:
        super().__init__("container not running")
