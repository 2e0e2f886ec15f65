"""@record: dataclass-style classes without importing dataclasses.

dataclasses imports inspect (and with it ast and dis): about 10 ms, paid by every CLI call.
A record takes its fields, in order, from the class annotations and their defaults from the
class attributes; `field(default_factory=...)` gives each instance a fresh mutable default.
"""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make) -> None:
        self.make = make


def field(*, default_factory):
    return _Factory(default_factory)


def record(cls):
    names = [n for c in reversed(cls.__mro__) for n in c.__dict__.get("__annotations__", {})]
    names = list(dict.fromkeys(names))
    defaults = {}
    for c in reversed(cls.__mro__):
        for n in c.__dict__.get("__annotations__", {}):
            if n in c.__dict__:
                defaults[n] = c.__dict__[n]

    def __init__(self, *args, **kw):
        if len(args) > len(names):
            raise TypeError(f"{cls.__name__}() takes {len(names)} arguments")
        for n, v in zip(names, args):
            setattr(self, n, v)
        for n in names[len(args):]:
            if n in kw:
                v = kw.pop(n)
            elif n in defaults:
                v = defaults[n]
                if isinstance(v, _Factory):
                    v = v.make()
            else:
                raise TypeError(f"{cls.__name__}() missing argument {n!r}")
            setattr(self, n, v)
        if kw:
            raise TypeError(f"{cls.__name__}() got unexpected arguments {sorted(kw)}")

    def __repr__(self):
        return f"{cls.__name__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in names) + ")"

    def __eq__(self, other):
        if other.__class__ is not self.__class__:
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in names)

    cls.__init__ = __init__
    cls.__repr__ = __repr__
    cls.__eq__ = __eq__
    cls.__hash__ = None
    cls.__record_fields__ = tuple(names)
    for n, v in defaults.items():
        if isinstance(v, _Factory):
            delattr(cls, n) if n in cls.__dict__ else None
    return cls
