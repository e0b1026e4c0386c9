"""``built_once``: a cached property that threads asking at the same time build only once.

``functools.cached_property`` lets two threads both build the value (Python 3.12 dropped its
lock); the Functions worker runs invocations on several threads, and two clients built for
one process would mean two token caches and two connection pools.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

Owner = TypeVar("Owner")
Value = TypeVar("Value")

_LOCK = "_built_once_lock"


class BuiltOnce(Generic[Owner, Value]):
    """The descriptor behind ``built_once``; the value is kept in the instance's ``__dict__``."""

    def __init__(self, build: Callable[[Owner], Value]) -> None:
        self._build = build
        self._name = build.__name__
        self.__doc__ = build.__doc__

    def __set_name__(self, owner: type[Owner], name: str) -> None:
        self._name = name

    @overload
    def __get__(self, instance: None, owner: type[Owner]) -> BuiltOnce[Owner, Value]: ...

    @overload
    def __get__(self, instance: Owner, owner: type[Owner]) -> Value: ...

    def __get__(self, instance: Owner | None, owner: type[Owner]) -> Any:
        if instance is None:
            return self
        values = instance.__dict__
        if self._name in values:
            return values[self._name]
        # One re-entrant lock per instance: building one part may build the parts it needs.
        with values.setdefault(_LOCK, threading.RLock()):
            if self._name not in values:
                values[self._name] = self._build(instance)
            return values[self._name]


def built_once(build: Callable[[Owner], Value]) -> BuiltOnce[Owner, Value]:
    """Turn a method into a property built on first use, once per instance even across threads."""
    return BuiltOnce(build)
