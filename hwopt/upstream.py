"""The one place hwopt touches private names of the libraries it builds on.

hwopt reuses onnxscript rewrite rules that live in private modules
(``onnxscript.rewriter.rules.common._*``): it subclasses them to put its own checks in front,
and trades a few private attributes with them. It also reads each rule's target pattern, which
``RewriteRule`` keeps in a private attribute, to skip rules whose operators a model lacks.
onnxscript is 0.x and may rename any of these in a minor release, without a deprecation.
Everything private is imported or read here, so an upgrade has one file to check, and
``tests/test_upstream.py`` checks every name listed below, and that no other module uses a
private name of onnx, onnx-ir, onnxruntime, onnxscript or onnxsim.

Checked against onnxscript 0.7.2 (with onnx-ir 1.1.0, onnx 1.23, onnxruntime 1.32): pyproject.toml
bounds onnxscript below the next minor version. What each name is for, and what breaks without it:

* the rule classes and ``fill_pads_with_axes`` below, from ``_basic_rules``, ``_fuse_batchnorm``,
  ``_fuse_pad_into_conv``, ``_fuse_relus_clips`` and ``_matmul_add_to_gemm``: the passes
  remove_noops, simplify_shape_ops, fold_batchnorm, fold_pad, fuse_activations and
  matmul_add_to_gemm subclass or call them. A module or class that moved makes importing this
  module raise :class:`~hwopt.errors.UpstreamAPIChanged`, so no pass loads.
* ``RewriteRule._target_pattern`` (with the pattern's ``output_nodes`` and their ops, which
  commuted copies of a pattern keep as ``_pattern_ir.StringConstantPattern``): the rule filter
  of ``hwopt.passes.rewrite``. Without it every rule would be tried at every node, the
  difference between seconds and minutes on a 10,000-node graph; :func:`rule_output_ops` raises
  ``UpstreamAPIChanged`` instead of letting the filter stop filtering, and the pipeline rolls
  the rewrite passes back with that reason.
* ``FuseConvPad._pads_list`` (written): onnxscript's rewrite reads the Pad's pads from it, and
  fold_pad's check, which also reads opset < 11 Pads, fills it (:func:`set_conv_pad_pads`).
* ``ReshapeReshape._new_shape_name`` (read and written): the name of the new shape initializer,
  which simplify_shape_ops makes free of clashes (:func:`reshape_shape_name`).
* ``TransposeTranspose._apply_transposes``: the permutation the rewrite will write, which
  simplify_shape_ops' check needs first (:func:`composed_permutation`).
* onnxruntime's ``capi._pybind_state.get_available_openvino_device_ids``: the OpenVINO devices
  ``hwopt targets`` lists (no public API names them); without it the list is empty
  (:func:`openvino_device_ids`), which costs nothing but that line.

A write cannot fail: that onnxscript still reads the two attributes hwopt writes is checked by
tests/test_upstream.py only (an opset 10 Pad into a Conv; a Reshape pair whose shape's default
name is taken).

To widen the bound to a new onnxscript version: install it, run ``tests/test_upstream.py`` (the
bounds, every rule's operator filter, each reused rule on a model it must rewrite) and the
tests of the six passes above, compare ``scripts/build_fingerprint.py`` before and after, and
then raise the bound in pyproject.toml and :data:`CHECKED_AGAINST` together.
"""

from __future__ import annotations

from collections.abc import Sequence
from importlib import metadata

from onnxscript.rewriter import RewriteRule

from hwopt.errors import UpstreamAPIChanged

# The versions this module was checked against; pyproject.toml bounds each package around it.
CHECKED_AGAINST = {"onnxscript": "0.7.2"}


def _installed_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "(version unknown)"


def _changed(package: str, what: str) -> UpstreamAPIChanged:
    return UpstreamAPIChanged(
        f"{package} {_installed_version(package)} {what}; hwopt relies on it and was checked against "
        f"{package} {CHECKED_AGAINST[package]}: install a version within pyproject.toml's bounds "
        "(hwopt/upstream.py lists the private names hwopt uses)"
    )


try:
    from onnxscript.rewriter._pattern_ir import StringConstantPattern
    from onnxscript.rewriter.rules.common._basic_rules import (
        CastIdentity,
        ReshapeReshape,
        TransposeIdentity,
        TransposeTranspose,
    )
    from onnxscript.rewriter.rules.common._fuse_batchnorm import (
        FuseBatchNormIntoConv,
        FuseBatchNormIntoConvTranspose,
        FuseBatchNormIntoGemm,
    )
    from onnxscript.rewriter.rules.common._fuse_pad_into_conv import FuseConvPad, fill_pads_with_axes
    from onnxscript.rewriter.rules.common._fuse_relus_clips import FuseSuccessiveRelu
    from onnxscript.rewriter.rules.common._matmul_add_to_gemm import (
        MatMulAddToGemm,
        TransABMatMulAddToGemm,
        TransAMatMulAddToGemm,
        TransBMatMulAddToGemm,
    )
except ImportError as exc:  # a moved module (ModuleNotFoundError) or a renamed class
    raise _changed("onnxscript", f"moved or renamed a name hwopt imports ({exc})") from exc

__all__ = [
    "CHECKED_AGAINST",
    "CastIdentity",
    "FuseBatchNormIntoConv",
    "FuseBatchNormIntoConvTranspose",
    "FuseBatchNormIntoGemm",
    "FuseConvPad",
    "FuseSuccessiveRelu",
    "MatMulAddToGemm",
    "ReshapeReshape",
    "TransABMatMulAddToGemm",
    "TransAMatMulAddToGemm",
    "TransBMatMulAddToGemm",
    "TransposeIdentity",
    "TransposeTranspose",
    "composed_permutation",
    "fill_pads_with_axes",
    "openvino_device_ids",
    "reshape_shape_name",
    "rule_output_ops",
    "set_conv_pad_pads",
    "set_reshape_shape_name",
]


def rule_output_ops(rule: RewriteRule) -> frozenset[tuple[str, str]] | None:
    """The (domain, op_type) of the rule's pattern's output nodes, which every match contains;
    None when one of them is not a fixed operator (any op, or a domain prefix), so that the
    rule can match wherever. Raises UpstreamAPIChanged when the pattern cannot be read."""
    try:
        ops = [_node_op(node) for node in rule._target_pattern.output_nodes]
    except (AttributeError, TypeError, IndexError) as exc:
        raise _changed("onnxscript", f"has no readable RewriteRule._target_pattern ({exc})") from exc
    if not ops:
        raise _changed("onnxscript", f"gives rule {rule.name!r} a target pattern without output nodes")
    if None in ops:
        return None
    if not all(isinstance(part, str) for op in ops for part in op):
        raise _changed("onnxscript", f"identifies pattern nodes by {ops!r}, not by strings")
    return frozenset(ops)


def _node_op(node) -> tuple[str, str] | None:
    identifier = node.op_identifier()  # (domain, op_type, overload) when both are fixed strings
    if identifier is not None:
        return identifier[0], identifier[1]
    # A commuted copy of a pattern (RewriteRule.commute: Add(c, x) for Add(x, c)) keeps its
    # ops as StringConstantPatterns, for which NodePattern records no identifier.
    if isinstance(node.domain, StringConstantPattern) and isinstance(node.op, StringConstantPattern):
        return node.domain.value(), node.op.value()
    return None


def set_conv_pad_pads(rule: FuseConvPad, pads: Sequence[int]) -> None:
    """Hand onnxscript's FuseConvPad rewrite the Pad's pads over all axes, in the layout
    [x1_begin, x2_begin, ..., x1_end, x2_end, ...]; its own check would have set them."""
    rule._pads_list = list(pads)


def reshape_shape_name(rule: ReshapeReshape) -> str:
    """The name onnxscript's ReshapeReshape check chose for the new shape initializer."""
    try:
        return rule._new_shape_name
    except AttributeError as exc:
        raise _changed("onnxscript", f"no longer names ReshapeReshape's shape in _new_shape_name ({exc})") from exc


def set_reshape_shape_name(rule: ReshapeReshape, name: str | None) -> None:
    """Give ReshapeReshape's rewrite another name for the new shape initializer."""
    rule._new_shape_name = name


def composed_permutation(rule: TransposeTranspose, perms: list[Sequence[int]]) -> list[int]:
    """The permutation of ``Transpose(Transpose(x, perms[0]), perms[1])``, as onnxscript's
    TransposeTranspose rewrite computes it (the identity means the pair cancels)."""
    try:
        compose = rule._apply_transposes
    except AttributeError as exc:
        raise _changed("onnxscript", f"has no TransposeTranspose._apply_transposes ({exc})") from exc
    return compose(perms)


def openvino_device_ids() -> list[str]:
    """The OpenVINO devices onnxruntime-openvino can run on; [] where this build cannot say."""
    try:
        from onnxruntime.capi import _pybind_state

        return list(_pybind_state.get_available_openvino_device_ids())
    except (ImportError, AttributeError, RuntimeError):
        return []
