"""Running passes in order, verifying each one and rolling back the ones that break the model.

For every pass the pipeline:

1. skips it, with the reason, when the model's opset is outside the pass's range;
2. hands it a private ``onnx_ir`` copy of the current model and times ``run``;
3. when the pass changed something, verifies the result: ``onnx.checker`` with strict shape
   inference, an unchanged input/output signature, and ONNX Runtime runs on the same feed
   sets compared with the *previous* model's outputs within the pass's tolerance (a second
   feed set at another batch size catches a rewrite that only holds for the first one);
4. keeps the result, or rolls back to the previous model and records why.

The pipeline never raises for a failing pass: the record says what failed, and the caller
decides (``--strict`` makes any rollback a failed check).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Mapping, Sequence

import numpy as np
import onnx
import onnx_ir as ir

from hwopt import progress
from hwopt.errors import ConfigError, one_line
from hwopt.guard import phase
from hwopt.model.stats import node_and_parameter_counts
from hwopt.output import quiet_logger
from hwopt.passes.base import Pass, PassContext, PassRecord, default_opset
from hwopt.verify import (
    ModelRunner,
    VerificationFailed,
    check_same_signature,
    check_valid,
    compare_outputs,
)

log = logging.getLogger(__name__)

Feeds = Mapping[str, np.ndarray]
Outputs = dict[str, np.ndarray]

APPLIED, UNCHANGED, ROLLED_BACK, SKIPPED = "applied", "unchanged", "rolled_back", "skipped"
# A verified pass of a measured graph variant that the build did not ship (hwopt.graph_choice).
NOT_KEPT = "not_kept"


@dataclasses.dataclass
class PipelineResult:
    model: onnx.ModelProto
    records: list[PassRecord]
    # The final model's outputs on each feed set, in the order the feed sets were given.
    outputs: list[Outputs]

    @property
    def rolled_back(self) -> list[PassRecord]:
        return [r for r in self.records if r.status == ROLLED_BACK]


class Pipeline:
    """An ordered list of passes, with the options each one is given."""

    def __init__(self, passes: Sequence[Pass], pass_options: Mapping[str, Mapping] | None = None):
        self.passes = list(passes)
        self.pass_options = dict(pass_options or {})
        for pass_ in self.passes:
            given = self.pass_options.get(pass_.name, {})
            unknown = sorted(set(given) - set(pass_.option_defaults))
            if unknown:
                known = ", ".join(pass_.option_defaults) or "none"
                raise ConfigError(
                    f"pass '{pass_.name}': unknown option(s) {', '.join(unknown)}; known: {known}"
                )

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.passes]

    def run(
        self,
        model: onnx.ModelProto,
        ctx: PassContext,
        feeds: Sequence[Feeds],
        reference: Sequence[Outputs],
        noise: Mapping[str, float] | None = None,
    ) -> PipelineResult:
        """Run every pass on ``model``; ``reference[i]`` is ``model``'s outputs on ``feeds[i]``;
        ``noise`` is the model's rounding noise per output (see Tolerance)."""
        noise = dict(noise or {})
        if len(feeds) != len(reference) or not feeds:
            raise ValueError("one reference output set per feed set, and at least one")
        current, outputs = model, list(reference)
        records = []
        for index, pass_ in enumerate(self.passes):
            progress.step(f"pass {pass_.name}", index + 1, len(self.passes))
            options = {**pass_.option_defaults, **self.pass_options.get(pass_.name, {})}
            pass_ctx = dataclasses.replace(ctx, options=options)
            # onnx_ir logs its own failures (with tracebacks) on stderr; the record says why.
            with phase(f"pass {pass_.name}", "pass"), quiet_logger("onnx_ir"):
                record, current, outputs = self._run_one(pass_, current, outputs, pass_ctx, feeds, noise)
            records.append(record)
            log.info("pass %s: %s %s", record.name, record.status, record.reason or "")
        return PipelineResult(current, records, outputs)

    def _run_one(
        self,
        pass_: Pass,
        model: onnx.ModelProto,
        outputs: list[Outputs],
        ctx: PassContext,
        feeds: Sequence[Feeds],
        noise: Mapping[str, float],
    ) -> tuple[PassRecord, onnx.ModelProto, list[Outputs]]:
        nodes, parameters = node_and_parameter_counts(model)
        record = PassRecord(
            name=pass_.name,
            status=UNCHANGED,
            seconds=0.0,
            nodes_before=nodes,
            nodes_after=nodes,
            params_before=parameters,
            params_after=parameters,
        )
        opset = default_opset({o.domain: o.version for o in model.opset_import})
        if not pass_.min_opset <= opset <= pass_.max_opset:
            record.status = SKIPPED
            record.reason = f"opset {opset} is outside the pass's range {pass_.min_opset}-{pass_.max_opset}"
            return record, model, outputs

        candidate = self._apply(pass_, model, ctx, record)
        if candidate is None:
            return record, model, outputs
        new_outputs = self._verify(pass_, model, candidate, outputs, feeds, noise, record)
        if new_outputs is None:
            return record, model, outputs
        record.status = APPLIED
        record.nodes_after, record.params_after = node_and_parameter_counts(candidate)
        return record, candidate, new_outputs

    @staticmethod
    def _apply(pass_: Pass, model: onnx.ModelProto, ctx: PassContext, record: PassRecord) -> onnx.ModelProto | None:
        """The pass's model, what it did written into ``record``; None when it raised (rolled
        back, with the reason) or changed nothing."""
        start = time.perf_counter()
        try:
            # From a copy: onnx-ir's model wraps the proto's tensors, and serializing one under
            # a new name renames the proto it came from, which rollback must find untouched.
            private = onnx.ModelProto()
            private.CopyFrom(model)
            result = pass_.run(ir.serde.deserialize_model(private), ctx)
            # An unchanged model is not serialized back (a second a pass on ResNeXt50's 100 MB).
            candidate = ir.serde.serialize_model(result.model) if result.changed else model
        except Exception as exc:  # noqa: BLE001 - reported as a rollback, never swallowed
            record.seconds = time.perf_counter() - start
            log.debug("pass %s raised", pass_.name, exc_info=True)
            record.status = ROLLED_BACK
            record.reason = f"the pass raised {type(exc).__name__}: {one_line(exc)}"
            return None
        record.seconds = time.perf_counter() - start
        record.rewrites = dict(result.rewrites)
        record.declined = list(result.declined)
        record.notes = list(result.notes)
        record.metrics = dict(result.metrics)
        return candidate if result.changed else None

    @staticmethod
    def _verify(pass_: Pass, model: onnx.ModelProto, candidate: onnx.ModelProto, outputs: list[Outputs],
                feeds: Sequence[Feeds], noise: Mapping[str, float], record: PassRecord) -> list[Outputs] | None:
        """The candidate's outputs on every feed set when it is valid, keeps the signature and
        stays within the pass's tolerance; else None, and ``record`` says why it is rolled back."""
        try:
            check_valid(candidate)
            check_same_signature(model, candidate)
            runner = ModelRunner(candidate)  # one session for every check feed
            new_outputs = [runner(f) for f in feeds]
            diffs = [d for old, new in zip(outputs, new_outputs) for d in compare_outputs(old, new)]
        except VerificationFailed as exc:
            record.status = ROLLED_BACK
            record.reason = str(exc)
            return None
        record.max_abs = max((d.max_abs for d in diffs), default=0.0)
        record.max_rel = max((d.max_rel for d in diffs), default=0.0)
        tol = pass_.tolerance
        worst = [d for d in diffs if not tol.allows(d.max_abs, d.ref_scale, noise.get(d.name, 0.0))]
        if worst:
            d = worst[0]
            record.status = ROLLED_BACK
            record.reason = (
                f"output '{d.name}' moved by {d.max_abs:.3g} (relative {d.max_rel:.3g}), over the "
                f"pass's limit {tol.limit(d.ref_scale, noise.get(d.name, 0.0)):.3g} "
                f"(rtol={tol.rtol:g}, atol={tol.atol:g}, {tol.noise_factor:g}x rounding noise)"
            )
            return None
        return new_outputs
