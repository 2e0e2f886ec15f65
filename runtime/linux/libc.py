"""Calling libc on the _ctypes C module alone.

`import ctypes` costs about 2 ms (it builds some thirty types and loads two more modules)
before `create` can fork the container; the syscalls on that path need only a function
pointer, long integers and byte buffers, which _ctypes (0.3 ms) provides as they are. Modules
off the hot path (seccomp, eBPF devices, sched) still use ctypes.

Calls return the C result as an int; errno is kept per call (FUNCFLAG_USE_ERRNO) and read
with get_errno(), exactly as ctypes.CDLL(..., use_errno=True) does.
"""
from __future__ import annotations

import _ctypes

get_errno = _ctypes.get_errno
address = _ctypes.addressof  # of a buffer(): for pointers the kernel finds inside a struct


class Long(_ctypes._SimpleCData):
    """C long: what syscall(2)'s variadic arguments are read as."""
    _type_ = "l"


class _Int(_ctypes._SimpleCData):
    _type_ = "i"


class _Char(_ctypes._SimpleCData):
    _type_ = "c"


class _Function(_ctypes.CFuncPtr):
    """A function returning int (most of libc)."""
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = _Int


class _LongFunction(_ctypes.CFuncPtr):
    _flags_ = _ctypes.FUNCFLAG_CDECL | _ctypes.FUNCFLAG_USE_ERRNO
    _restype_ = Long


class _Library:
    def __init__(self, name: str) -> None:
        self._handle = _ctypes.dlopen(name, 0)  # _ctypes adds RTLD_NOW

    def function(self, name: str, kind: type = _Function) -> _Function:
        return kind((name, self))


LIBC = _Library("libc.so.6")
_syscall = LIBC.function("syscall", _LongFunction)


def function(name: str) -> _Function:
    """A libc function returning int. Pass ints that fit a C int, bytes (a const pointer),
    None (NULL) or a buffer()."""
    return LIBC.function(name)


def syscall(nr: int, *args) -> int:
    """syscall(2); ints are widened to long (the call is variadic), other arguments are
    pointers (bytes, buffer(), None)."""
    return _syscall(Long(nr), *[Long(a) if isinstance(a, int) else a for a in args])


def buffer(data: bytes | int) -> object:
    """Writable memory passed as a pointer: zeroed `data` bytes, or a copy of `data`; read it
    back with .raw."""
    size = data if isinstance(data, int) else len(data)
    buf = (_Char * size)()
    if not isinstance(data, int):
        buf.raw = data
    return buf
