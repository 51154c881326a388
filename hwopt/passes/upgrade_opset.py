"""Raise a model's default-domain opset with ``onnx.version_converter``.

Why: newer opsets have single ops for what older exporters had to spell out in several
nodes (HardSwish since opset 14, LayerNormalization since 17, Gelu since 20), and an
execution provider runs one op as one kernel. Fusion passes that emit those ops need the
model to import an opset that has them; this pass gives it that opset, and nothing else.

The target comes from the ``target_opset`` option (default 17). The pass only ever raises
the opset: a model already at or above the target is left as it is, with a note. Only the
default ("" / ai.onnx) domain is converted; the other domains a model imports
(com.microsoft, ai.onnx.ml, custom ones) keep their versions, and their nodes are left
untouched by the converter. If/Loop/Scan bodies are converted with the main graph. The IR
version is raised to the lowest one that allows the new opset (``onnx.helper``'s table).

What can go wrong:

* the converter has no adapter for some ops or attribute values (BatchNormalization-7 with
  ``spatial=0``, anything that is a downgrade in disguise) and raises; the pass then returns
  the model unchanged and records the converter's reason in the notes;
* the converter drops model-local functions, so a model that has any is left unchanged,
  with a note, rather than handed on broken;
* a valid target opset is not necessarily one the runtime runs: onnxruntime registers each
  kernel for a range of opsets, and 1.32 loads a Relu stamped opset 26 but finds no kernel for
  a Swish (opset 24) in a model stamped 25. Hwopt's passes declare opset ranges up to 23 by
  default, and the build records the runtime version a model was checked with.

The pipeline checks the converted model like any other pass's output (checker with strict
shape inference, the same signature, and ONNX Runtime outputs within tolerance), so a
conversion that changes the numbers is rolled back.
"""

from __future__ import annotations

import onnx
import onnx.version_converter
import onnx_ir as ir

from hwopt.errors import UsageError, one_line
from hwopt.passes.base import Pass, PassContext, PassResult, default_opset
from hwopt.passes.registry import register

# HardSwish needs 14 and LayerNormalization 17; Gelu (20) is opt-in through the option,
# because a higher opset narrows the runtimes a build can be deployed on.
DEFAULT_TARGET_OPSET = 17

# What onnx.version_converter raises: its C++ adapters fail with assertions that pybind11
# turns into RuntimeError; the checks it runs on its input raise the onnx error types.
_CONVERTER_ERRORS = (
    RuntimeError,
    onnx.checker.ValidationError,
    onnx.shape_inference.InferenceError,
)


def _target_opset(ctx: PassContext) -> int:
    target = ctx.options.get("target_opset", DEFAULT_TARGET_OPSET)
    if isinstance(target, bool) or not isinstance(target, int):
        raise UsageError(f"upgrade_opset: target_opset must be an integer, got {target!r}")
    latest = onnx.defs.onnx_opset_version()
    if not 1 <= target <= latest:
        raise UsageError(
            f"upgrade_opset: target_opset {target} is not an opset this onnx ({onnx.__version__}) "
            f"knows; it knows 1 to {latest}"
        )
    return target


@register
class UpgradeOpset(Pass):
    name = "upgrade_opset"
    description = (
        "raise the default-domain opset (onnx.version_converter) so that newer single-kernel "
        "ops can be used"
    )
    option_defaults = {"target_opset": DEFAULT_TARGET_OPSET}

    def run(self, model: ir.Model, ctx: PassContext) -> PassResult:
        target = _target_opset(ctx)
        result = PassResult(model)
        current = default_opset(model.opset_imports)
        if current >= target:
            result.notes.append(
                f"the model is at opset {current}, at or above the target {target}: left as it is"
            )
            return result
        if model.functions:
            result.notes.append(
                f"the model has {len(model.functions)} local function(s), which "
                f"onnx.version_converter drops: left at opset {current}"
            )
            return result

        proto = ir.serde.serialize_model(model)
        try:
            converted_proto = onnx.version_converter.convert_version(proto, target)
        except _CONVERTER_ERRORS as exc:
            result.notes.append(
                f"onnx.version_converter cannot take the model from opset {current} to {target}, "
                f"so it is left at opset {current}: {one_line(exc)}"
            )
            return result
        min_ir_version = onnx.helper.find_min_ir_version_for(
            list(converted_proto.opset_import), ignore_unknown=True
        )
        converted_proto.ir_version = max(converted_proto.ir_version, min_ir_version)

        converted = ir.serde.deserialize_model(converted_proto)
        # The converter leaves other domains alone today; keeping their versions here makes
        # that a property of this pass rather than of one onnx release.
        for domain, version in model.opset_imports.items():
            if domain not in ("", "ai.onnx"):
                converted.opset_imports[domain] = version
        result.model = converted
        result.rewrites[f"opset_{current}_to_{target}"] = 1
        return result
