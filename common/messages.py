"""Typed messages between control and the processes it starts: the base every message
is built on.

Every message is a frozen dataclass with an ``ENTITY_VERB`` name, registered by that name
when its class is defined (names are unique across processes: one registry). A request
carries an id and gets exactly one response (a message, or an error); a notification
carries the id of the entity it is about. `common.channel` frames them; this module only
says what a message is and how it turns into a plain JSON-able dict and back. The
messages themselves live with the process that answers them: `sfu.api` (an SFU worker),
`recorder.api` (the recorder).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from dataclasses import dataclass
from typing import Any, ClassVar


class MessageError(ValueError):
    """A message that does not match its schema (unknown name, missing or mistyped field)."""


# --------------------------------------------------------------------------- base

_REGISTRY: dict[str, type[Message]] = {}


@dataclass(frozen=True)
class Message:
    NAME: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.NAME:
            if cls.NAME in _REGISTRY:
                raise TypeError(f"duplicate message name {cls.NAME}")
            _REGISTRY[cls.NAME] = cls

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _dump(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, data: Any) -> Message:
        if not isinstance(data, dict):
            raise MessageError(f"{cls.NAME}: data must be an object")
        hints = _type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise MessageError(f"{cls.NAME}: unknown field(s) {sorted(unknown)}")
        kwargs = {}
        for f in dataclasses.fields(cls):
            if f.name in data:
                kwargs[f.name] = _load(hints[f.name], data[f.name], f"{cls.NAME}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise MessageError(f"{cls.NAME}: missing field {f.name!r}")
        return cls(**kwargs)


def message_class(name: str) -> type[Message]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise MessageError(f"unknown message name {name!r}") from None


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """A dataclass's field types, resolved once per class (resolving compiles each
    annotation: it was most of the time a message took to decode)."""
    return typing.get_type_hints(cls)


def _dump(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {f.name: _dump(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (list, tuple)):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


def _load(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _load(arg, value, where)
            except MessageError as exc:
                errors.append(str(exc))
        raise MessageError(errors[0] if errors else f"{where}: must not be null")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise MessageError(f"{where}: expected a list")
        item = args[0] if args else Any
        loaded = [_load(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(loaded) if origin is tuple else loaded
    if origin is dict:
        if not isinstance(value, dict):
            raise MessageError(f"{where}: expected an object")
        key_hint, val_hint = args or (str, Any)
        return {_load(key_hint, k, where): _load(val_hint, v, f"{where}.{k}") for k, v in value.items()}
    if hint is Any:
        return value
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise MessageError(f"{where}: expected an object")
        sub_hints = _type_hints(hint)
        try:
            return hint(**{k: _load(sub_hints[k], v, f"{where}.{k}") for k, v in value.items()})
        except (KeyError, TypeError) as exc:
            raise MessageError(f"{where}: {exc}") from None
    if hint is float:
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise MessageError(f"{where}: expected a number")
        try:
            return float(value)
        except OverflowError:  # an integer of hundreds of digits
            raise MessageError(f"{where}: number out of range") from None
    if hint is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise MessageError(f"{where}: expected an integer")
    if hint in (str, bool) and not isinstance(value, hint):
        raise MessageError(f"{where}: expected {hint.__name__}")
    # Bare `dict` / `list` (no item types): still an object / a list, never null or a number.
    if hint is dict and not isinstance(value, dict):
        raise MessageError(f"{where}: expected an object")
    if hint is list and not isinstance(value, list):
        raise MessageError(f"{where}: expected a list")
    return value


# ------------------------------------------------------------- shared shapes


@dataclass(frozen=True)
class Empty(Message):
    """The response of requests that return nothing but success."""

    NAME: ClassVar[str] = "EMPTY"
