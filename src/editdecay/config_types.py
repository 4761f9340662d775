"""Settings checked against their dataclass field types: the one helper every config class uses.

A config dataclass calls :func:`check_fields` in ``__post_init__``. Every field is checked against
its annotation (``int``, ``float``, ``bool``, ``str``, ``Path``, ``Literal[...]``, ``tuple[...]``,
``list[...]``, ``X | None``, ``dict``, a nested config dataclass) and against the range written in
its metadata (``ge``, ``gt``, ``le``, ``lt``; for a tuple, every element). Lists become tuples and
tables (dicts) become the nested dataclass, so a config read from TOML or JSON equals the one
written in Python. Nothing else is converted: an int given for a float stays an int, because
configs are hashed into the store's content addresses and an unchanged setting must keep its key.

Text from the command line goes through :func:`parse_text`, which converts by the field's type
(``--set targets.steps=40`` gives 40). Every error is a :class:`ConfigError` (a ``ValueError``)
whose message starts with the field's dotted name: ``targets.steps: expected an integer, got 'abc'``.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import numbers
import operator
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

_NONE = type(None)
_RANGE = {
    "ge": (operator.ge, ">="),
    "gt": (operator.gt, ">"),
    "le": (operator.le, "<="),
    "lt": (operator.lt, "<"),
}
_TRUE, _FALSE = ("true", "yes", "on", "1"), ("false", "no", "off", "0")


class ConfigError(ValueError):
    """A setting that does not fit its field. `where` says where it was written (a study block)."""

    def __init__(self, field: str, problem: str, where: str = ""):
        super().__init__(field, problem, where)  # the args rebuild the error when it is pickled
        self.field, self.problem, self.where = field, problem, where

    def __str__(self) -> str:
        text = f"{self.field}: {self.problem}" if self.field else self.problem
        return f"{text} (in {self.where})" if self.where else text

    def within(self, prefix: str) -> ConfigError:
        """The same error, its field named from an enclosing config (``targets`` → ``targets.steps``)."""
        return ConfigError(dotted(prefix, self.field), self.problem, self.where)

    def located(self, where: str) -> ConfigError:
        return ConfigError(self.field, self.problem, where)


def dotted(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix and name else prefix or name


def expected(field: str, what: str, got: object) -> ConfigError:
    return ConfigError(field, f"expected {what}, got {got!r}")


def unknown_field(
    field: str, known: typing.Iterable[str], noun: str = "config field"
) -> ConfigError:
    return ConfigError(field, f"unknown {noun}; known here: {', '.join(known)}")


# --------------------------------------------------------------------------- the fields of a class


@functools.cache
def type_hints(cls: type) -> dict[str, Any]:
    """The evaluated annotations of a dataclass (its module imports the names they use)."""
    return typing.get_type_hints(cls)


def field_default(cls: type, name: str) -> Any:
    """The default a dataclass field declares (a fresh one for a `default_factory`)."""
    f = _field(cls, name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise KeyError(f"{cls.__name__}.{name} has no default")


def drop_defaults(obj: object, d: dict, names: tuple[str, ...]) -> dict:
    """`d` (the `asdict` of `obj`) without the fields `names` that are at their defaults: fields added
    after results were stored stay out of hashed dicts until set, so existing keys do not change."""
    for name in names:
        if getattr(obj, name) == field_default(type(obj), name):
            d.pop(name, None)
    return d


def field_defaults(cls: type) -> dict[str, Any]:
    return {f.name: field_default(cls, f.name) for f in dataclasses.fields(cls)}


def field_help(cls: type, name: str) -> str:
    return _field(cls, name).metadata.get("help", "")


def field_type(cls: type, name: str) -> Any:
    """The annotation of a field, by dotted name through nested config dataclasses."""
    head, _, rest = name.partition(".")
    known = [f.name for f in dataclasses.fields(cls)]
    if head not in known:
        raise unknown_field(name, known)
    tp = type_hints(cls)[head]
    if not rest:
        return tp
    nested = _dataclass_in(tp)
    if nested is None:
        raise unknown_field(name, [])
    try:
        return field_type(nested, rest)
    except ConfigError as err:
        raise err.within(head) from None


def _field(cls: type, name: str) -> dataclasses.Field:
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f
    raise KeyError(f"{cls.__name__} has no field {name!r}")


def _dataclass_in(tp: Any) -> type | None:
    candidates = typing.get_args(tp) if _is_union(tp) else (tp,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


# --------------------------------------------------------------------------- checking


def check_fields(obj: object) -> None:
    """Check every field of a dataclass instance (for `__post_init__`); stores the normalised values."""
    hints = type_hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        checked = check_value(value, hints[f.name], f.name, label=f.metadata.get("label"))
        check_range(checked, f.metadata, f.name, hints[f.name])
        if checked is not value:
            object.__setattr__(obj, f.name, checked)  # frozen dataclasses too


def build(cls: type, data: Mapping, name: str = "") -> Any:
    """`cls(**data)` with every key checked first; unknown keys are refused, naming the known ones.
    `name` is the dotted name of the table inside its enclosing config, for the messages."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            noun = getattr(cls, "field_noun", "config field")  # what the messages call a field
            raise unknown_field(dotted(name, str(key)), fields, noun)
        meta = fields[key].metadata
        kwargs[key] = check_value(value, hints[key], dotted(name, key), label=meta.get("label"))
        check_range(kwargs[key], meta, dotted(name, key), hints[key])
    try:
        return cls(**kwargs)
    except ConfigError as err:  # a check across fields, named inside `cls`
        raise err.within(name) from None


def check_value(value: Any, tp: Any, name: str, *, label: str | None = None) -> Any:
    """`value` if it fits the annotation `tp` (lists as tuples, tables as dataclasses), else ConfigError."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if _is_union(tp):
        if value is None and _NONE in args:
            return None
        for arg in args:
            if arg is not _NONE:
                try:
                    return check_value(value, arg, name, label=label)
                except ConfigError:
                    continue
        if _not_finite(value) and float in args:
            raise expected(name, "a finite number", value)
        raise expected(name, describe(tp), value)
    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
        noun = label or _label(name)
        raise ConfigError(name, f"unknown {noun} {value!r}; expected one of {_choices(args)}")
    if origin in (tuple, list):
        return _check_sequence(value, tp, name, label)
    if origin is dict or tp is dict:
        if isinstance(value, Mapping):
            return value
    elif dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if isinstance(value, Mapping):
            return build(tp, value, name)
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            if _not_finite(value):  # TOML and JSON readers accept nan and inf
                raise expected(name, "a finite number", value)
            return value
    elif tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike):
            return os.fspath(value)
    elif tp is Path:
        if isinstance(value, Path):
            return value
        if isinstance(value, (str, os.PathLike)):
            return Path(value)
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise expected(name, describe(tp), value)


def _check_sequence(value: Any, tp: Any, name: str, label: str | None) -> tuple | list:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (list, tuple)):
        raise expected(name, describe(tp), value)
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise expected(name, describe(tp), value)
        item_types = args
    else:
        item_types = (args[0] if args else Any,) * len(value)
    items = [
        check_value(v, t, f"{name}[{i}]", label=label)
        for i, (v, t) in enumerate(zip(value, item_types))
    ]
    return tuple(items) if origin is tuple else items


def _not_finite(value: Any) -> bool:
    """nan or ±inf (integers are always finite, however large)."""
    return isinstance(value, float) and not math.isfinite(value)


def check_range(value: Any, metadata: Mapping, name: str, tp: Any = float) -> None:
    """The field's `ge` / `gt` / `le` / `lt` bounds, on a number or on every number of a tuple."""
    bounds = {k: metadata[k] for k in _RANGE if k in metadata}
    if not bounds or value is None:
        return
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            check_range(item, metadata, f"{name}[{i}]", tp)
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return  # a choice of a union (ft_layers = "all"): not a number, no range
    if not all(_RANGE[k][0](value, bound) for k, bound in bounds.items()):
        kind = "an integer" if _wants_int(tp) else "a number"
        raise expected(name, f"{kind} {_range_text(bounds)}", value)


def require(value: Any, name: str, tp: Any = float, **bounds: float) -> None:
    """A range check written out in a `__post_init__` (for fields of classes that cannot carry it)."""
    check_range(value, bounds, name, tp)


def _range_text(bounds: Mapping) -> str:
    low = next(((k, bounds[k]) for k in ("ge", "gt") if k in bounds), None)
    high = next(((k, bounds[k]) for k in ("le", "lt") if k in bounds), None)
    if low and high:
        left, right = "[" if low[0] == "ge" else "(", "]" if high[0] == "le" else ")"
        return f"in {left}{low[1]}, {high[1]}{right}"
    key, bound = low or high
    return f"{_RANGE[key][1]} {bound}"


def _wants_int(tp: Any) -> bool:
    if tp is int:
        return True
    return any(_wants_int(a) for a in typing.get_args(tp) if a is not Ellipsis)


# --------------------------------------------------------------------------- command-line text


def parse_text(cls: type, name: str, text: str) -> Any:
    """A command-line value for the field `name` (dotted) of `cls`, converted by the field's type."""
    return from_text(text, field_type(cls, name), name)


def from_text(text: str, tp: Any, name: str) -> Any:
    """`text` as a value of the annotation `tp`: "40" for an int is 40, "4,5" for a tuple is (4, 5),
    "none" for `X | None` is None; JSON for lists and tables. ConfigError when it does not fit."""
    t = text.strip()
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        if _NONE in args and t.lower() in ("none", "null"):
            return None
        for arg in args:
            if arg is not _NONE:
                try:
                    return from_text(t, arg, name)
                except ConfigError:
                    continue
        raise expected(name, describe(tp), text)
    if origin is Literal:
        for choice in args:
            if str(choice) == t:
                return choice
        return check_value(t, tp, name)  # the "unknown …; expected one of" message
    if tp is bool:
        if t.lower() in _TRUE + _FALSE:
            return t.lower() in _TRUE
    elif tp is int:
        try:
            return int(t)
        except ValueError:
            pass
    elif tp is float:
        try:
            return float(t)
        except ValueError:
            pass
    elif tp is str:
        return t
    elif tp is Path:
        return Path(t)
    elif origin in (tuple, list):
        return _sequence_from_text(t, tp, name)
    else:  # tables: JSON
        try:
            return check_value(json.loads(t), tp, name)
        except json.JSONDecodeError:
            pass
    raise expected(name, describe(tp), text)


def _sequence_from_text(t: str, tp: Any, name: str) -> tuple | list:
    if t.startswith("["):
        try:
            return check_value(json.loads(t), tp, name)
        except json.JSONDecodeError:
            raise expected(name, describe(tp), t) from None
    parts = [p.strip() for p in t.split(",") if p.strip()]
    args = typing.get_args(tp)
    if args and args[-1] is not Ellipsis:
        if len(parts) != len(args):
            raise expected(name, describe(tp), t)
        item_types = args
    else:
        item_types = (args[0] if args else str,) * len(parts)
    items = [from_text(p, a, f"{name}[{i}]") for i, (p, a) in enumerate(zip(parts, item_types))]
    return tuple(items) if typing.get_origin(tp) is tuple else items


# --------------------------------------------------------------------------- describing a type


def describe(tp: Any, plural: bool = False) -> str:
    """What a value of annotation `tp` looks like, for messages: "an integer", "a list of strings"."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if _is_union(tp):
        text = " or ".join(describe(a, plural) for a in args if a is not _NONE)
        return f"{text} or none" if _NONE in args else text
    if origin is Literal:
        return ("values from " if plural else "one of ") + _choices(args)
    if origin in (tuple, list):
        if origin is tuple and args and args[-1] is not Ellipsis:
            return f"a list of {len(args)} values ({', '.join(describe(a) for a in args)})"
        return f"a list of {describe(args[0], plural=True) if args else 'values'}"
    if dataclasses.is_dataclass(tp):
        return (
            f"tables of {tp.__name__} settings" if plural else f"a table of {tp.__name__} settings"
        )
    names = {
        bool: ("true or false", "true/false values"),
        int: ("an integer", "integers"),
        float: ("a number", "numbers"),
        str: ("a string", "strings"),
        Path: ("a path", "paths"),
        dict: ("a table", "tables"),
    }
    key = dict if origin is dict else tp
    if key in names:
        return names[key][plural]
    return getattr(tp, "__name__", str(tp))


def _choices(args: tuple) -> str:
    return ", ".join(repr(a) for a in args)


def _label(name: str) -> str:
    return name.rpartition(".")[2].partition("[")[0]


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)
