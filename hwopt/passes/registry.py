"""The pass registry: every pass under its stable name.

Passes register themselves with :func:`register` when their module is imported; the
registry imports the modules listed in :data:`PASS_MODULES` the first time it is asked, so
that commands which run no pass (``--help``, a missing input file) do not pay for importing
onnxscript and onnxsim. ``hwopt passes`` and docs/passes.md list passes in that order.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence

from hwopt.errors import UsageError
from hwopt.passes.base import Pass

_REGISTRY: dict[str, type[Pass]] = {}

PASS_MODULES = (
    "drop_initializer_inputs",
    "upgrade_opset",
    "simplify",
    "fold_constants",
    "eliminate_dead_code",
    "deduplicate_constants",
    "remove_noops",
    "simplify_shape_ops",
    "fold_batchnorm",
    "fold_pad",
    "fold_scale_shift",
    "matmul_add_to_gemm",
    "fuse_activations",
    "fuse_layernorm",
    "eliminate_common_subexpressions",
    "fuse_transformer",
    "localize_initializers",
    "reorder",
)


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
    """Every pass, in the order of PASS_MODULES (whatever order their modules were imported in)."""
    for module in PASS_MODULES:
        importlib.import_module(f"hwopt.passes.{module}")
    rank = {f"hwopt.passes.{module}": i for i, module in enumerate(PASS_MODULES)}
    return sorted(_REGISTRY.values(), key=lambda cls: rank.get(cls.__module__, len(rank)))


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
