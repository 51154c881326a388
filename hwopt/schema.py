"""One options schema: dataclass fields that say where a config file (or a flag) sets them.

hwopt's options are plain dataclasses (``hwopt.options.OptimizeOptions`` and the ones nested in
it). A field that a TOML config or a command-line flag may set is declared with :func:`setting`,
which records its dotted key (``"pipeline.skip"`` is ``skip`` in ``[pipeline]``). :func:`apply`
then takes any mapping in that shape, a parsed TOML file or the flags a user actually gave,
and returns new options with those keys set, after checking every key against the schema and
every value against the field's annotation. Nothing copies options field by field, so a new
option is one declaration, and :func:`fingerprint` sees every field there is.

    @dataclasses.dataclass
    class OptimizeOptions:
        skip_passes: Sequence[str] = setting((), key="pipeline.skip")
        measure: bool = setting(True, key="bench.enabled")
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from hwopt.errors import ConfigError

T = TypeVar("T")

_MISSING: Any = dataclasses.MISSING


def setting(
    default: Any = _MISSING,
    *,
    key: str,
    default_factory: Callable[[], Any] | None = None,
    parse: Callable[[Any, str], Any] | None = None,
    choices: Sequence[str] = (),
    merge: bool = False,
    config: bool = True,
    output: bool = False,
) -> Any:
    """A dataclass field that ``key`` sets.

    parse:   turns the raw value into the field's value (it raises ConfigError or UsageError
             with the key's location, which it gets as its second argument); without it the
             value is checked against the field's annotation.
    choices: the values a string may take.
    merge:   a table given later updates the earlier one key by key (``-s x=...`` over a
             config's ``[input_shapes]``) instead of replacing it.
    config:  False for what only a flag or the API sets (a config file naming it is an error).
    output:  where the results go, not what they are: left out of :func:`fingerprint`.
    """
    metadata = {"key": key, "parse": parse, "choices": tuple(choices), "merge": merge, "config": config,
                "output": output}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class _Leaf:
    path: tuple[str, ...]  # field names from the root dataclass
    key: str
    annotation: Any
    meta: Mapping[str, Any]


def leaves(cls: type, path: tuple[str, ...] = ()) -> list[_Leaf]:
    """Every field of ``cls`` that a key sets, nested dataclasses included."""
    hints = typing.get_type_hints(cls)
    out = []
    for field in dataclasses.fields(cls):
        if "key" in field.metadata:
            out.append(_Leaf((*path, field.name), field.metadata["key"], hints[field.name], field.metadata))
        elif _dataclass_type(hints[field.name]) is not None:
            out.extend(leaves(_dataclass_type(hints[field.name]), (*path, field.name)))
    return out


def apply(options: T, table: Mapping[str, Any], *, where: str = "config", base: Path | None = None,
          from_config: bool = True, labels: Mapping[str, str] | None = None) -> T:
    """``options`` with what ``table`` sets (nested tables or dotted keys), checked.

    ``base`` resolves relative paths (a config file's folder); ``from_config`` False admits the
    keys only flags set. Unknown keys and values of the wrong type raise ConfigError naming
    ``where`` and the key, or the key's entry in ``labels`` (the flag that gave it).
    """
    by_key = {leaf.key: leaf for leaf in leaves(type(options)) if from_config is False or leaf.meta["config"]}
    for key, value in _flatten(table, by_key, where):
        leaf = by_key[key]
        value = _value(leaf, value, (labels or {}).get(key) or f"{where}: {key}", base)
        if leaf.meta["merge"]:
            value = _merged(_get(options, leaf.path), value)
        options = _replace(options, leaf.path, value)
    return options


def fingerprint(options: Any, extra: Mapping[str, Any] | None = None) -> str:
    """A hash of every field of ``options`` (nested ones too) but the output-only ones: two
    option sets with the same fingerprint decide the same build."""
    document = {"options": _plain(options), **(extra or {})}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if not f.metadata.get("output")}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _flatten(table: Mapping[str, Any], by_key: Mapping[str, _Leaf], where: str,
             prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) for each key ``table`` sets; a table goes down until a known key."""
    unknown = sorted(str(k) for k in table if f"{prefix}{k}" not in by_key
                     and not any(known.startswith(f"{prefix}{k}.") for known in by_key))
    if unknown:
        known = sorted({k[len(prefix):].split(".")[0] for k in by_key if k.startswith(prefix)})
        place = f"{where}: [{prefix[:-1]}]" if prefix else where
        raise ConfigError(f"{place}: unknown key(s) {', '.join(unknown)}; known: {', '.join(known)}")
    out = []
    for name, value in table.items():
        key = f"{prefix}{name}"
        if key in by_key:
            out.append((key, value))
        elif not isinstance(value, Mapping):
            raise ConfigError(f"{where}: {key} must be a table, not {type(value).__name__}")
        else:
            out.extend(_flatten(value, by_key, where, f"{key}."))
    return out


def _value(leaf: _Leaf, value: Any, where: str, base: Path | None) -> Any:
    if leaf.meta["parse"] is not None:
        return leaf.meta["parse"](value, where)
    value = checked(value, leaf.annotation, where, base)
    if leaf.meta["choices"] and value not in leaf.meta["choices"]:
        raise ConfigError(f"{where} must be one of {', '.join(leaf.meta['choices'])}, not '{value}'")
    return value


def checked(value: Any, annotation: Any, where: str, base: Path | None = None) -> Any:
    """``value`` as ``annotation`` wants it (a float from an int, a Path from a string, a list
    from a tuple), or ConfigError."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        if value is None and len(kinds) < len(args):
            return None
        if len(kinds) == 1:
            return checked(value, kinds[0], where, base)
        annotation, origin, args = kinds[0], typing.get_origin(kinds[0]), typing.get_args(kinds[0])
    if annotation is Any or annotation is object:
        return value
    if annotation is Path:
        if not isinstance(value, (str, Path)):
            raise ConfigError(f"{where} must be a path, not {type(value).__name__}")
        return base / value if base is not None else Path(value)
    if annotation in (bool, int, float, str):
        return _scalar(value, annotation, where)
    if origin in (list, tuple, Sequence, typing.Sequence) or annotation in (list, tuple):
        item = args[0] if args else Any
        if not isinstance(value, (list, tuple)) or isinstance(value, str):
            raise ConfigError(f"{where} must be a list of {_name(item)}s, not {type(value).__name__}")
        return [checked(v, item, where, base) for v in value]
    if origin in (dict, Mapping, typing.Mapping) or annotation is dict:
        item = args[1] if len(args) == 2 else Any
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a table, not {type(value).__name__}")
        return {str(k): checked(v, item, f"{where}.{k}", base) for k, v in value.items()}
    raise TypeError(f"hwopt.schema: no check for {annotation!r} ({where}); give the setting a parse function")


def _scalar(value: Any, kind: type, where: str) -> Any:
    # bool is an int in Python; a number where a bool is wanted (or the reverse) is a mistake.
    wanted = (int, float) if kind is float else kind
    if not isinstance(value, wanted) or (kind is not bool and isinstance(value, bool)):
        names = "int or float" if kind is float else kind.__name__
        raise ConfigError(f"{where} must be a {names}, not {type(value).__name__}")
    return float(value) if kind is float else value


def _name(kind: Any) -> str:
    return {str: "string", int: "integer", float: "number", bool: "bool"}.get(kind, getattr(kind, "__name__", "value"))


def _dataclass_type(annotation: Any) -> type | None:
    if isinstance(annotation, type) and dataclasses.is_dataclass(annotation):
        return annotation
    return None


def _get(options: Any, path: tuple[str, ...]) -> Any:
    for name in path:
        options = getattr(options, name)
    return options


def _replace(options: T, path: tuple[str, ...], value: Any) -> T:
    if len(path) == 1:
        return dataclasses.replace(options, **{path[0]: value})  # type: ignore[type-var]
    inner = _replace(getattr(options, path[0]), path[1:], value)
    return dataclasses.replace(options, **{path[0]: inner})  # type: ignore[type-var]


def _merged(old: Any, new: Any) -> Any:
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    out = dict(old)
    for key, value in new.items():
        out[key] = _merged(out.get(key), value) if isinstance(value, Mapping) else value
    return out
