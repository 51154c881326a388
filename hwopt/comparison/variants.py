"""The variants ``hwopt bench`` compares: a model file (CPU provider, hwopt's default session
options) or a build folder (run as its ``build.json`` says), each opened into its timed session
or reported as not runnable here, with the reason."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import onnx
import onnxruntime as ort

from hwopt.comparison.options import BenchOptions
from hwopt.errors import ModelLoadError, UsageError, one_line
from hwopt.feeds.inputs import graph_inputs
from hwopt.feeds.kinds import FeedKind, plan_feed_kinds
from hwopt.model.load import load_model
from hwopt.partition import RECORD_ASSIGNMENT, provider_assignment
from hwopt.report.bench import VariantInfo
from hwopt.runtime import read_build
from hwopt.session import ORT_ERRORS, create_session, default_session_options, make_session_options
from hwopt.targets.base import Availability
from hwopt.targets.providers import provider_availability
from hwopt.timing import bench_session_options

# onnxruntime records which provider got each node only when asked to, and
# get_provider_graph_assignment_info() (hwopt.partition.provider_assignment) refuses
# otherwise. Recording costs nothing per run, so the timed session itself is
# created with it rather than a second session per variant (a TensorRT session can take
# minutes to build).


@dataclasses.dataclass
class Variant:
    """A variant while it is being benchmarked: its report entry plus what running it needs."""

    info: VariantInfo
    source: Path
    model_path: Path
    providers: list[tuple[str, dict[str, Any]]]
    base_dir: Path | None
    inputs: list[onnx.ValueInfoProto]
    warnings: list[str]  # for the report, once the label is final
    feed_kinds: dict[str, FeedKind] = dataclasses.field(default_factory=dict)  # read from its graph
    session: Any = None

    @property
    def label(self) -> str:
        return self.info.label


def open_variant(path: Path, options: BenchOptions) -> Variant:
    warnings = []
    if path.is_dir():
        build = read_build(path)
        try:
            model_path, providers = build.model_path, build.providers
            session_options, target = build.session_options, build.manifest.get("target")
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ModelLoadError(f"{path}: build.json lacks or mangles {exc}: not a build hwopt can run") from exc
        name = path.resolve().name
        label, kind, base_dir = (f"{name} [{target}]" if target else name), "build", path
        built_with = build.manifest.get("versions", {}).get("onnxruntime")
        if built_with and built_with != ort.__version__:
            warnings.append(f"built with onnxruntime {built_with}, this is {ort.__version__}: its recorded "
                            "settings were chosen for the other version")
    else:
        model_path, providers, base_dir = path, [("CPUExecutionProvider", {})], None
        session_options, target, label, kind = default_session_options("all"), None, path.name, "model"
    graph = load_model(model_path).proto.graph
    inputs = [_copy(vi) for vi in graph_inputs(graph)]
    feed_kinds = plan_feed_kinds(graph, [vi.name for vi in inputs])

    notes = []
    recorded = session_options.get("intra_op_num_threads")
    if options.threads is not None:
        if kind == "build" and recorded is not None and int(recorded) != options.threads:
            notes.append(f"--threads {options.threads} overrides the build's intra_op_num_threads={recorded}")
        session_options = {**session_options, "intra_op_num_threads": options.threads}
    session_options = bench_session_options(session_options)
    try:
        make_session_options(session_options)
    except UsageError as exc:
        raise UsageError(f"{path}: {exc}") from exc
    threads = session_options.get("intra_op_num_threads")
    info = VariantInfo(
        label=label,
        path=str(path),
        kind=kind,
        target=target,
        model_path=str(model_path),
        providers=[{"name": name, "options": dict(opts)} for name, opts in providers],
        session_options=session_options,
        threads=int(threads) if threads is not None else None,
        notes=notes,
    )
    return Variant(info, path, model_path, providers, base_dir, inputs, warnings, feed_kinds)


def _copy(value_info: onnx.ValueInfoProto) -> onnx.ValueInfoProto:
    copy = onnx.ValueInfoProto()
    copy.CopyFrom(value_info)
    return copy


def disambiguate(variants: Sequence[Variant]) -> None:
    """Make labels unique: variants that share one are told apart by their parent folder's
    name when that differs between them, else numbered in the order given."""
    groups: dict[str, list[Variant]] = collections.defaultdict(list)
    for v in variants:
        groups[v.label].append(v)
    for label, group in groups.items():
        if len(group) == 1:
            continue
        parents = [v.source.resolve().parent.name for v in group]
        if len(set(parents)) == len(group):
            for v, parent in zip(group, parents):
                v.info.label = f"{parent}/{label}"
        else:
            for number, v in enumerate(group, 1):
                v.info.label = f"{label} #{number}"


def _availability(providers: Sequence[tuple[str, Any]]) -> Availability:
    if not providers:
        return Availability(False, "no execution provider recorded")
    built_in = set(ort.get_available_providers())
    first = provider_availability(providers[0][0])
    if not first.available:
        return first
    missing = [name for name, _ in providers if name not in built_in]
    if missing:
        return Availability(False, f"{', '.join(missing)} not in this onnxruntime build")
    return Availability(True)


def open_session(v: Variant) -> None:
    """Create the variant's timed session, or say in its report entry why it cannot run."""
    availability = _availability(v.providers)
    if not availability.available:
        v.info.available, v.info.availability_reason = False, availability.reason
        return
    entries = {**v.info.session_options.get("config_entries", {}), **RECORD_ASSIGNMENT}
    try:
        session = create_session(v.model_path, {**v.info.session_options, "config_entries": entries},
                                 v.providers, base_dir=v.base_dir)
    except ORT_ERRORS as exc:
        # The provider is here, so the model is what fails: that is bad input, not a host
        # that lacks something.
        raise ModelLoadError(f"{v.label}: onnxruntime cannot create the session: {one_line(exc)}") from exc
    active = session.get_providers()
    v.info.active_providers = list(active)
    if not active or active[0] != v.providers[0][0]:
        v.info.available = False
        v.info.availability_reason = (f"onnxruntime did not register {v.providers[0][0]} for this session "
                                      f"(it would run on {', '.join(active) or 'nothing'})")
        return
    v.session = session
    if not hasattr(session, "get_provider_graph_assignment_info"):
        v.info.assignment_reason = f"onnxruntime {ort.__version__} cannot report which provider runs each node"
        return
    try:
        v.info.assignment = provider_assignment(session)
    except ORT_ERRORS as exc:
        v.info.assignment_reason = f"onnxruntime did not report the node assignment: {one_line(exc)}"
