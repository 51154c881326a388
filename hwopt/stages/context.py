"""What every target of one ``hwopt optimize`` run shares: the model, its check feeds, the
original's outputs on them and its rounding noise, and the graph pipelines already run."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx

from hwopt.errors import ModelLoadError, one_line
from hwopt.feeds.inputs import InputSpec, second_batch
from hwopt.feeds.sources import check_inputs
from hwopt.graph_choice import applies
from hwopt.model.load import LoadedModel
from hwopt.model.shapes import with_concrete_inputs
from hwopt.options import OptimizeOptions
from hwopt.passes.base import PassContext
from hwopt.passes.pipeline import Pipeline, PipelineResult
from hwopt.passes.registry import resolve
from hwopt.session import ORT_ERRORS, create_session, default_session_options, run_session
from hwopt.targets import Target
from hwopt.verify import ModelRunner, VerificationFailed, rounding_noise


@dataclasses.dataclass
class RunContext:
    """What every target of one run shares: the model, its feeds and reference outputs."""

    loaded: LoadedModel
    specs: list[InputSpec]
    feeds: list[dict[str, np.ndarray]]  # check feeds: batch 1, and batch 2 when dynamic
    references: list[dict[str, np.ndarray]]
    noise: dict[str, float]
    options: OptimizeOptions
    pipelines: dict[tuple, PipelineResult] = dataclasses.field(default_factory=dict)
    # What the passes start from: the loaded model, or (--static-shapes) a copy with its input
    # shapes baked in.
    source: onnx.ModelProto | None = None

    @property
    def start(self) -> onnx.ModelProto:
        return self.source if self.source is not None else self.loaded.proto

    def pipeline_result(self, target: Target) -> PipelineResult:
        """The graph pipeline's result for ``target``; targets running the same passes with the
        same options share one run."""
        names = choose_passes(target, self.options)
        return self._run(target, names, self.start, self.references)

    def graph_variants(self, target: Target) -> dict[str, PipelineResult]:
        """The target's measured variants: each its passes, then (where the first of them
        changed the model) the target's pipeline, run verified on the loaded model; none when
        the user chose the passes or skipped a variant's."""
        if self.options.passes is not None:
            return {}
        skipped = set(self.options.skip_passes)
        names = choose_passes(target, self.options)
        variants = {}
        for label, passes in target.measured_variants.items():
            if skipped & set(passes):
                continue
            head = self._run(target, passes, self.start, self.references)
            if applies(head):  # a CNN pays for one pass that matches nothing, not a second pipeline
                tail = self._run(target, names, head.model, head.outputs, start=label)
                head = PipelineResult(tail.model, [*head.records, *tail.records], tail.outputs)
            variants[label] = head
        return variants

    def _run(self, target: Target, names: Sequence[str], model: onnx.ModelProto,
             references: Sequence[Mapping[str, np.ndarray]], start: str = "") -> PipelineResult:
        """``names`` run on ``model`` (the loaded model, or the variant ``start`` names)."""
        pass_options = {
            name: {**target.pass_options.get(name, {}), **self.options.pass_options.get(name, {})}
            for name in {*target.pass_options, *self.options.pass_options}
        }
        key = (tuple(names), start, repr(sorted((k, sorted(v.items())) for k, v in pass_options.items())))
        if key not in self.pipelines:
            pipeline = Pipeline(resolve(names), pass_options)
            ctx = PassContext(input_specs=self.specs)
            self.pipelines[key] = pipeline.run(model, ctx, self.feeds, references, self.noise)
        return self.pipelines[key]


def prepare_run(loaded: LoadedModel, options: OptimizeOptions) -> tuple[RunContext, str, str | None]:
    """Feeds for the checks (batch 1, and 2 where the batch is dynamic) and the original's
    outputs on them; also the feeds' source and a note when batch 2 could not run."""
    specs, feeds, feeds_source = check_inputs(loaded.proto.graph, options)
    try:
        original = ModelRunner(loaded.proto)
        reference = original(feeds)
    except VerificationFailed as exc:
        raise ModelLoadError(f"{loaded.path}: the model does not run: {exc}") from exc
    check_feeds, references, batch_note = [feeds], [reference], None
    # A build with baked shapes runs at exactly those: no second batch size to check.
    batch2 = None if options.static_shapes else second_batch(specs, feeds)
    if batch2 is not None:
        try:
            references.append(original(batch2))
            check_feeds.append(batch2)
        except VerificationFailed as exc:
            batch_note = f"passes were checked at one batch size only: the original does not run at batch 2 ({exc})"
    source = None
    if options.static_shapes:
        source = with_concrete_inputs(loaded.proto, specs)
        try:  # with onnxruntime's graph optimizations on, as a build is deployed
            run_session(create_session(source, default_session_options(level="all")), feeds)
        except ORT_ERRORS as exc:
            # silero VAD: onnxruntime infers the types of an If branch the fixed sample rate never
            # takes, and its LSTM there refuses the baked input rank.
            source = None
            batch_note = (f"--static-shapes not applied: onnxruntime refuses the model with these shapes baked in "
                          f"({one_line(exc)}); the build keeps the model's own input shapes")
    run = RunContext(loaded, specs, check_feeds, references, rounding_noise(loaded.proto, check_feeds, references), options,
                 source=source)
    return run, feeds_source, batch_note


def choose_passes(target: Target, options: OptimizeOptions) -> list[str]:
    names = list(options.passes) if options.passes is not None else list(target.default_passes)
    return [name for name in names if name not in set(options.skip_passes)]


def session_options_for(target: Target, options: OptimizeOptions) -> dict[str, Any]:
    return {**target.session_options(), **options.session_overrides}

