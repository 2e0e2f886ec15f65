"""The signals a foreground runp passes on to the container's process (`run`, `exec`,
`restore` without --detach), as runc's signal handler does.

Handlers go in before the process exists: a signal that comes while it is being made is held
and sent once its pid is known (runc queues them the same way), instead of killing runp and
leaving the process without its waiter. Handlers rather than a blocked mask: a signal for the
process may be delivered to any thread, and linux/cgroup_prime.py's thread may still run.
"""
from __future__ import annotations

import os

import _signal  # the signal module costs milliseconds (enum)

# every catchable signal but SIGCHLD (ours) and SIGWINCH (the terminal proxy's); 32 and 33 are
# glibc's own
FORWARDED = [s for s in range(1, _signal.NSIG) if s not in (
    _signal.SIGKILL, _signal.SIGSTOP, _signal.SIGCHLD, _signal.SIGWINCH, 32, 33)]


class Forwarder:
    """Catches FORWARDED from now on; sends each to the process once `to(pid)` named it."""

    def __init__(self) -> None:
        self.pid = 0
        self.held: list[int] = []
        self.stopped = False  # the process has exited: nothing more to send
        for s in FORWARDED:
            try:
                _signal.signal(s, self._caught)
            except (OSError, ValueError):
                pass

    def _caught(self, signum: int, _frame) -> None:
        if self.stopped:
            return
        if not self.pid:
            self.held.append(signum)
        else:
            self._send(signum)

    def _send(self, signum: int) -> None:
        try:
            os.kill(self.pid, signum)
        except ProcessLookupError:
            pass

    def to(self, pid: int) -> None:
        """The process exists: send it what was held, and what comes from now on."""
        self.pid = pid
        held, self.held = self.held, []
        for s in held:
            self._send(s)
