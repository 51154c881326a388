"""The pass registry: every pass under its stable name, in the order pipelines run them.

Passes register themselves with :func:`register` when their module is imported; importing
``hwopt.passes`` imports them all. ``hwopt passes`` and docs/passes.md are generated from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from hwopt.errors import UsageError
from hwopt.passes.base import Pass

_REGISTRY: dict[str, type[Pass]] = {}


def register(cls: type[Pass]) -> type[Pass]:
    """Class decorator: add a pass to the registry under ``cls.name``."""
    name = cls.name
    if not name.isidentifier() or name != name.lower():
        raise ValueError(f"pass name {name!r} is not snake_case")
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"two passes are named {name!r}")
    _REGISTRY[name] = cls
    return cls


def all_passes() -> list[type[Pass]]:
    """Every registered pass, in registration order (the canonical pipeline order)."""
    import hwopt.passes  # noqa: F401  (importing the package registers every pass)

    return list(_REGISTRY.values())


def known_names() -> list[str]:
    return [cls.name for cls in all_passes()]


def resolve(names: Iterable[str]) -> list[Pass]:
    """Instances of the named passes, in the given order; unknown names are a usage error."""
    names = list(names)
    known = {cls.name: cls for cls in all_passes()}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"unknown pass(es) {', '.join(unknown)}; known passes: {', '.join(known)}"
        )
    return [known[name]() for name in names]


def check_names(names: Sequence[str], option: str) -> None:
    """Raise the usage error :func:`resolve` would, for an option that only names passes."""
    known = set(known_names())
    unknown = [name for name in names if name not in known]
    if unknown:
        raise UsageError(
            f"{option}: unknown pass(es) {', '.join(unknown)}; "
            f"known passes: {', '.join(known_names())}"
        )
