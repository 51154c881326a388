"""hwopt bench (hwopt.comparison): variants from model files and build folders, timed interleaved on the same
feeds, per batch size; unavailable providers reported, not timed; IO binding for device
providers (checked with a fake session: this host has no GPU)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import SAMPLES, save, tiny_conv_model

from hwopt.comparison import BenchOptions, benchmark
from hwopt.comparison.iobinding import BoundRunner, make_runner
from hwopt.errors import EXIT_BAD_INPUT, InputSpecError, ModelLoadError, UsageError
from hwopt.hostinfo import host_info
from hwopt.output import file_sha256
from hwopt.partition import RECORD_ASSIGNMENT, fallback_nodes, provider_assignment
from hwopt.report.bench import SCHEMA, BatchResult, BenchReport, VariantInfo, VariantRun
from hwopt.report.render import render_markdown
from hwopt.session import create_session, physical_cores
from hwopt.targets.providers import provider_availability
from hwopt.timing import NO_SPIN, LatencyStats

MOBILENET = SAMPLES / "mobilenetv2_tiny.onnx"
RESNEXT = SAMPLES / "resnext_tiny.onnx"

# About 0.1 s of timing per variant per batch size keeps every call well under a second.
FAST = {"seconds": 0.1, "memory": False}


def parse(text: str) -> onnx.ModelProto:
    model = onnx.parser.parse_model(text)
    onnx.checker.check_model(model, full_check=True)
    return model


def relu_model(signature: str) -> onnx.ModelProto:
    """A one-Relu model with the given input declaration (``float[N, 3, 8, 8] x``)."""
    dtype, rest = signature.split("[", 1)
    dims, name = rest.rsplit("]", 1)
    return parse(f"""
        <ir_version: 8, opset_import: ["" : 17]>
        relu ({signature}) => ({dtype}[{dims}] y) {{
            y = Relu ({name.strip()})
        }}
    """)


def write_build(folder: Path, model: onnx.ModelProto, providers: list[dict], session_options: dict,
                target: str) -> Path:
    """A build folder as hwopt optimize writes it, by hand (model, hashes, providers, options)."""
    folder.mkdir(parents=True)
    onnx.save(model, str(folder / "model.onnx"))
    manifest = {
        "schema": "hwopt.build/1",
        "target": target,
        "model": "model.onnx",
        "files": {"model.onnx": file_sha256(folder / "model.onnx")},
        "providers": providers,
        "session_options": session_options,
        "versions": {"onnxruntime": ort.__version__},
    }
    (folder / "build.json").write_text(json.dumps(manifest))
    return folder


CPU_OPTIONS = {"graph_optimization_level": "all", "intra_op_num_threads": 1, "execution_mode": "sequential"}


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return save(tiny_conv_model(), tmp_path / "tiny.onnx")


def test_two_sample_models_are_timed_interleaved_on_the_same_feeds() -> None:
    report = benchmark([MOBILENET, RESNEXT], BenchOptions(**FAST))

    assert [v.label for v in report.variants] == ["mobilenetv2_tiny.onnx", "resnext_tiny.onnx"]
    [batch] = report.batches
    assert batch.batch == 1 and batch.baseline == "mobilenetv2_tiny.onnx"
    first, second = (batch.run_of(v.label) for v in report.variants)
    # Interleaving runs every variant once per round: the same number of timed runs each.
    assert first.stats.runs == second.stats.runs >= 10
    assert first.ratio == 1.0
    assert second.ratio == pytest.approx(second.stats.p50_ms / first.stats.p50_ms, rel=1e-12)
    assert second.stats.throughput == pytest.approx(1000.0 / second.stats.p50_ms, rel=1e-12)
    for v in report.variants:
        assert v.available and v.io_binding is False
        assert v.providers == [{"name": "CPUExecutionProvider", "options": {}}]
        # hwopt's default session options, with spinning off for a shared process.
        assert v.session_options["graph_optimization_level"] == "all"
        assert v.session_options["intra_op_num_threads"] == physical_cores() == v.threads
        assert v.session_options["config_entries"].items() >= NO_SPIN.items()
        assert set(v.assignment) == {"CPUExecutionProvider"} and v.fallback_nodes == []
    assert batch.inputs[0].shape == (1, 3, 96, 96)


def test_batch_sizes_on_a_dynamic_batch_model(tiny: Path) -> None:
    report = benchmark([tiny], BenchOptions(batches=(1, 2), **FAST))

    assert [b.batch for b in report.batches] == [1, 2]
    for batch in report.batches:
        assert batch.batch_source == "--batch"
        assert batch.inputs[0].shape == (batch.batch, 3, 8, 8)
        assert batch.inputs[0].declared == ("N", 3, 8, 8)
        run = batch.run_of("tiny.onnx")
        assert run.stats.batch == batch.batch
        assert run.stats.throughput == pytest.approx(batch.batch * 1000.0 / run.stats.p50_ms, rel=1e-12)
    assert not [w for w in report.warnings if "ignored" in w]


def test_a_fixed_batch_is_benchmarked_at_its_own_size_and_the_batch_option_ignored(tmp_path: Path) -> None:
    fixed = save(relu_model("float[2, 3, 8, 8] x"), tmp_path / "fixed.onnx")
    dynamic = save(relu_model("float[N, 3, 8, 8] x"), tmp_path / "dynamic.onnx")

    report = benchmark([dynamic, fixed], BenchOptions(batches=(1, 8), **FAST))

    [batch] = report.batches
    assert batch.batch == 2 and batch.batch_source == "fixed by the model"
    assert batch.inputs[0].shape == (2, 3, 8, 8)
    assert all(run.stats is not None and run.stats.batch == 2 for run in batch.runs)
    [warning] = [w for w in report.warnings if "ignored" in w]
    assert "--batch 1,8 ignored" in warning and "fixed leading dimension 2 in fixed.onnx" in warning
    assert "fixed by the model" in report.document().tables[0].title


@pytest.mark.parametrize(
    ("other", "expected"),
    [
        ("float[N, 3, 8, 8] image", "take different inputs"),
        ("double[N, 3, 8, 8] x", "input 'x' is float32 in a.onnx but float64 in b.onnx"),
        ("float[N, 3, 16, 16] x", "input 'x' dimension 2 is 8 in a.onnx but 16 in b.onnx"),
        ("float[N, 3, 8] x", "input 'x' has rank 4 in a.onnx but rank 3 in b.onnx"),
    ],
    ids=["names", "dtype", "fixed-dim", "rank"],
)
def test_incompatible_inputs_are_a_usage_error_naming_the_mismatch(tmp_path: Path, other: str, expected: str) -> None:
    a = save(relu_model("float[N, 3, 8, 8] x"), tmp_path / "a.onnx")
    b = save(relu_model(other), tmp_path / "b.onnx")

    with pytest.raises(InputSpecError, match=expected) as info:
        benchmark([a, b], BenchOptions(**FAST))
    assert info.value.exit_code == EXIT_BAD_INPUT


def test_a_build_folder_runs_as_its_manifest_says(tmp_path: Path, tiny: Path) -> None:
    from hwopt.optimize import optimize
    from hwopt.options import OptimizeOptions, PrecisionOptions

    build_dir = tmp_path / "tiny.hwopt"
    optimize(tiny, OptimizeOptions(output_dir=build_dir, measure=False, precision=PrecisionOptions(mode="fp32")))
    manifest = json.loads((build_dir / "build.json").read_text())

    report = benchmark([tiny, build_dir], BenchOptions(**FAST))

    build = report.variant(f"tiny.hwopt [{manifest['target']}]")
    assert build.kind == "build" and build.model_path == str(build_dir / manifest["model"])
    assert build.providers == manifest["providers"]
    # The recorded session options, only spinning turned off.
    assert build.session_options == {**manifest["session_options"], "config_entries": {
        **manifest["session_options"].get("config_entries", {}), **NO_SPIN}}
    assert all(run.stats is not None for run in report.batches[0].runs)


def test_threads_override_a_builds_recorded_count_and_the_report_says_so(tmp_path: Path, tiny: Path) -> None:
    recorded = physical_cores() + 1
    build_dir = write_build(tmp_path / "many-threads", tiny_conv_model(),
                            [{"name": "CPUExecutionProvider", "options": {}}],
                            {**CPU_OPTIONS, "intra_op_num_threads": recorded}, "cpu")

    as_recorded = benchmark([tiny, build_dir], BenchOptions(**FAST))
    assert as_recorded.variant("many-threads [cpu]").threads == recorded
    assert any("different intra-op thread counts" in w for w in as_recorded.warnings)
    assert any("oversubscribed" in w for w in as_recorded.warnings)

    forced = benchmark([tiny, build_dir], BenchOptions(threads=1, **FAST))
    build = forced.variant("many-threads [cpu]")
    assert build.threads == 1 == build.session_options["intra_op_num_threads"]
    assert build.notes == [f"--threads 1 overrides the build's intra_op_num_threads={recorded}"]
    assert forced.variant("tiny.onnx").threads == 1
    assert not any("thread counts" in w or "oversubscribed" in w for w in forced.warnings)
    text = render_markdown(forced.document())
    assert "overrides the build's intra_op_num_threads" in text
    assert "intra-op threads: 1 for every variant (--threads)" in text


@pytest.mark.skipif(provider_availability("CUDAExecutionProvider").available, reason="CUDA runs on this host")
def test_a_cuda_build_is_not_measured_here_and_the_others_still_run(tmp_path: Path, tiny: Path) -> None:
    cuda = write_build(tmp_path / "gpu", tiny_conv_model(),
                       [{"name": "CUDAExecutionProvider", "options": {"device_id": "0"}},
                        {"name": "CPUExecutionProvider", "options": {}}], CPU_OPTIONS, "cuda")

    # Memory on: the CPU variant's session is measured in a fresh process, the CUDA one skipped.
    report = benchmark([tiny, cuda], BenchOptions(seconds=0.1, memory=True))

    variant = report.variant("gpu [cuda]")
    assert not variant.available and "CUDAExecutionProvider" in variant.availability_reason
    assert variant.io_binding is None and variant.assignment is None
    [batch] = report.batches
    assert batch.baseline == "tiny.onnx"
    measured, skipped = batch.run_of("tiny.onnx"), batch.run_of("gpu [cuda]")
    assert measured.stats is not None and measured.memory.session_bytes > 0
    assert skipped.stats is None and skipped.not_measured == variant.availability_reason
    assert skipped.memory is None and skipped.memory_not_measured == variant.availability_reason

    data = report.to_dict()
    result = data["batches"][0]["results"][1]
    assert result["latency"] == {"measured": False, "reason": variant.availability_reason}
    assert result["memory"] == {"measured": False, "reason": variant.availability_reason}
    assert data["batches"][0]["results"][0]["memory"]["session_bytes"] > 0
    table = report.document().tables[0]
    row = next(r for r in table.rows if r[0] == "gpu [cuda]")
    assert row[1] == "not measured here"
    assert f"gpu [cuda]: not measured here: {variant.availability_reason}" in table.notes
    assert f"gpu [cuda]: not measured here: {variant.availability_reason}" in report.warnings


def test_provider_assignment_of_a_cpu_session(tiny: Path) -> None:
    session = create_session(tiny, {"config_entries": RECORD_ASSIGNMENT})

    assignment = provider_assignment(session)

    assert list(assignment) == ["CPUExecutionProvider"]
    assert assignment["CPUExecutionProvider"] and all(assignment["CPUExecutionProvider"])
    assert fallback_nodes(assignment, "CPUExecutionProvider") == []


class _Node:
    def __init__(self, name: str, op_type: str, domain: str = "") -> None:
        self.name, self.op_type, self.domain = name, op_type, domain


class _Subgraph:
    def __init__(self, ep_name: str, nodes: list[_Node]) -> None:
        self.ep_name, self._nodes = ep_name, nodes

    def get_nodes(self) -> list[_Node]:
        return self._nodes


class _AssignedSession:
    def get_provider_graph_assignment_info(self) -> list[_Subgraph]:
        return [
            _Subgraph("CUDAExecutionProvider", [_Node("conv", "Conv"), _Node("relu", "Relu")]),
            _Subgraph("CPUExecutionProvider", [_Node("shape", "Shape"), _Node("", "NonZero")]),
            _Subgraph("CUDAExecutionProvider", [_Node("", "FusedConv", "com.microsoft")]),
        ]


def test_provider_assignment_groups_nodes_by_provider_and_names_fallbacks() -> None:
    assignment = provider_assignment(_AssignedSession())

    # Unnamed nodes are listed by their operator.
    assert assignment == {
        "CUDAExecutionProvider": ["conv", "relu", "FusedConv"],
        "CPUExecutionProvider": ["shape", "NonZero"],
    }
    assert fallback_nodes(assignment, "CUDAExecutionProvider") == ["shape", "NonZero"]


class _Output:
    def __init__(self, name: str) -> None:
        self.name = name


class _FakeBinding:
    def __init__(self) -> None:
        self.inputs: dict[str, object] = {}
        self.outputs: dict[str, object] = {}

    def bind_ortvalue_input(self, name: str, value: object) -> None:
        self.inputs[name] = value

    def bind_output(self, name: str, device: str, device_id: int) -> None:
        self.outputs[name] = ("allocate on", device, device_id)

    def bind_ortvalue_output(self, name: str, value: object) -> None:
        self.outputs[name] = value

    def get_outputs(self) -> list[object]:
        return [f"device buffer of {name}" for name in self.outputs]


class _FakeSession:
    """What make_runner asks of an onnxruntime session, recorded."""

    def __init__(self, providers: list[str], provider_options: dict[str, dict[str, str]]) -> None:
        self.providers, self.provider_options = providers, provider_options
        self.binding = _FakeBinding()
        self.bound_runs = self.plain_runs = 0

    def get_providers(self) -> list[str]:
        return self.providers

    def get_provider_options(self) -> dict[str, dict[str, str]]:
        return self.provider_options

    def get_outputs(self) -> list[_Output]:
        return [_Output("y"), _Output("z")]

    def io_binding(self) -> _FakeBinding:
        return self.binding

    def run_with_iobinding(self, binding: _FakeBinding) -> None:
        assert binding is self.binding
        self.bound_runs += 1

    def run(self, names, feeds):
        self.plain_runs += 1
        return [feeds["x"]]


@pytest.mark.parametrize("provider", ["CUDAExecutionProvider", "TensorrtExecutionProvider"])
def test_device_sessions_are_timed_with_io_binding(provider: str) -> None:
    session = _FakeSession([provider, "CPUExecutionProvider"], {provider: {"device_id": "1"}, "CPUExecutionProvider": {}})
    feeds = {"x": np.ones((2, 3), np.float32), "mask": np.zeros((2,), np.int64)}
    copies = []

    def to_device(array: np.ndarray, device: str, device_id: int) -> str:
        copies.append((array, device, device_id))
        return f"{device}:{device_id} copy of {array.shape}"

    runner, io_binding = make_runner(session, feeds, device_value=to_device)

    assert io_binding and isinstance(runner, BoundRunner)
    # Inputs go to the session's device once, when the runner is made, not on each run.
    assert [(device, device_id) for _, device, device_id in copies] == [("cuda", 1), ("cuda", 1)]
    assert all(np.array_equal(array, feeds[name]) for (array, _, _), name in zip(copies, feeds))
    assert session.binding.inputs == {"x": "cuda:1 copy of (2, 3)", "mask": "cuda:1 copy of (2,)"}
    assert session.binding.outputs == {"y": ("allocate on", "cuda", 1), "z": ("allocate on", "cuda", 1)}

    runner()
    runner()
    assert (session.bound_runs, session.plain_runs, len(copies)) == (2, 0, 2)
    # After the first run the outputs stay in the buffers it allocated (fixed addresses).
    assert session.binding.outputs == {"y": "device buffer of y", "z": "device buffer of z"}


def test_a_device_variant_reports_io_binding_and_its_fallback_nodes() -> None:
    # What benchmark() records for a CUDA build on a GPU host, written out: the report side of
    # the device path, which this host cannot run.
    fallback = [f"node{i}" for i in range(12)]
    gpu = VariantInfo(
        label="gpu [cuda]", path="gpu", kind="build", target="cuda", model_path="gpu/model.onnx",
        providers=[{"name": "CUDAExecutionProvider", "options": {"device_id": "0"}},
                   {"name": "CPUExecutionProvider", "options": {}}],
        session_options={"intra_op_num_threads": 1}, threads=1, io_binding=True,
        active_providers=["CUDAExecutionProvider", "CPUExecutionProvider"],
        assignment={"CUDAExecutionProvider": ["conv", "relu"], "CPUExecutionProvider": fallback},
    )
    stats = LatencyStats.from_samples([0.001, 0.0011, 0.0012, 0.001], batch=1)
    batch = BatchResult(1, "--batch", [], [VariantRun("gpu [cuda]", stats=stats, ratio=1.0)], baseline="gpu [cuda]")
    report = BenchReport([gpu], [batch], BenchOptions(threads=1, memory=False), "generated", host_info(), {})

    assert report.findings() == [
        "gpu [cuda]: 12 node(s) fell back from CUDAExecutionProvider: "
        + ", ".join(fallback[:10]) + " (+2 more)"
    ]
    assignment = report.to_dict()["variants"][0]["assignment"]
    assert assignment["nodes_per_provider"] == {"CUDAExecutionProvider": 2, "CPUExecutionProvider": 12}
    assert assignment["fallback_nodes"] == fallback
    doc = report.document()
    assert "IO binding" in dict(doc.facts)["gpu [cuda]"]
    assert any(note.startswith("IO binding for gpu [cuda]: inputs copied to the device once") for note in doc.tables[0].notes)


def test_host_sessions_run_on_the_numpy_feeds(tiny: Path) -> None:
    fake = _FakeSession(["CPUExecutionProvider"], {"CPUExecutionProvider": {}})
    feeds = {"x": np.ones((1, 3, 8, 8), np.float32)}
    runner, io_binding = make_runner(fake, feeds, device_value=pytest.fail)
    runner()
    assert not io_binding and (fake.plain_runs, fake.bound_runs) == (1, 0)

    # The real CPU path: the runner returns what session.run returns.
    session = create_session(tiny)
    runner, io_binding = make_runner(session, feeds)
    [y] = runner()
    assert not io_binding
    np.testing.assert_array_equal(y, session.run(None, feeds)[0])


def test_report_json_and_tables(tiny: Path) -> None:
    report = benchmark([tiny, tiny], BenchOptions(batches=(1, 2), **FAST))

    data = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert data["schema"] == SCHEMA == "hwopt.bench/1"
    assert data["command"] == "bench"
    assert data["host"]["onnxruntime"] == ort.__version__ and data["versions"]["onnxruntime"] == ort.__version__
    assert data["options"] == {"batches": [1, 2], "input_shapes": {}, "inputs_file": None, "seconds": 0.1,
                               "threads": None, "memory": False, "seed": 0}
    assert data["method"]["interleaved"] is True and data["method"]["thread_spinning"] is False
    labels = [v["label"] for v in data["variants"]]
    assert labels == ["tiny.onnx #1", "tiny.onnx #2"]  # the same path twice: numbered
    for v in data["variants"]:
        assert v["assignment"]["nodes_per_provider"].keys() == {"CPUExecutionProvider"}
        assert v["io_binding"] is False and v["threads"] == physical_cores()
    assert [b["batch"] for b in data["batches"]] == [1, 2]
    for b in data["batches"]:
        assert [r["variant"] for r in b["results"]] == labels
        for r in b["results"]:
            assert r["latency"]["measured"] and r["latency"]["batch"] == b["batch"] and r["memory"] is None
            assert {"p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "runs", "throughput_per_s",
                    "cv", "noisy", "ratio_p50"} <= r["latency"].keys()

    doc = report.document()
    assert [t.title for t in doc.tables] == ["Batch 1: latency (ms)", "Batch 2: latency (ms)", "Time"]
    assert [t["name"] for t in data["timings"]] == ["load", "latency at batch 1", "latency at batch 2"]
    for table in doc.tables[:2]:
        assert [row[0] for row in table.rows] == labels
        assert table.columns == ("variant", "p50", "p90", "p99", "mean", "std", "runs", "items/s", "ratio", "peak RSS")
        notes = " ".join(table.notes)
        assert "interleaved" in notes and "spinning off" in notes and "no IO binding" in notes
        assert f"intra-op threads: {physical_cores()} for every variant" in notes
    assert render_markdown(doc).count("| tiny") == 4


def test_same_file_names_in_different_folders_get_distinct_labels(tmp_path: Path) -> None:
    a = save(relu_model("float[N, 4] x"), (tmp_path / "before").mkdir() or tmp_path / "before" / "m.onnx")
    b = save(relu_model("float[N, 4] x"), (tmp_path / "after").mkdir() or tmp_path / "after" / "m.onnx")

    report = benchmark([a, b], BenchOptions(**FAST))

    assert [v.label for v in report.variants] == ["before/m.onnx", "after/m.onnx"]


def test_feeds_from_a_file_set_the_batch(tmp_path: Path, tiny: Path) -> None:
    feeds = tmp_path / "feeds.npz"
    np.savez(feeds, x=np.random.default_rng(0).standard_normal((3, 3, 8, 8)).astype(np.float32))

    report = benchmark([tiny], BenchOptions(batches=(1, 2), inputs_file=feeds, **FAST))

    [batch] = report.batches
    assert batch.batch == 3 and batch.batch_source == "--inputs file"
    assert report.feeds_source == f"user: {feeds}"
    assert any(w.startswith("--batch 1,2 ignored: the feeds come from") for w in report.warnings)


def test_a_variant_that_cannot_run_at_a_batch_size_is_reported_and_the_others_timed(tmp_path: Path, tiny: Path) -> None:
    # The batch is symbolic in the signature, but a constant Reshape bakes in batch 1.
    baked = save(parse("""
        <ir_version: 8, opset_import: ["" : 17]>
        baked (float[N, 3, 8, 8] x) => (float[1, 192] y) {
            shape = Constant <value = int64[2] {1, 192}> ()
            y = Reshape (x, shape)
        }
    """), tmp_path / "baked.onnx")

    report = benchmark([tiny, baked], BenchOptions(batches=(1, 2), **FAST))

    at_1, at_2 = report.batches
    assert all(run.stats is not None for run in at_1.runs)
    assert at_2.run_of("tiny.onnx").stats is not None
    failed = at_2.run_of("baked.onnx")
    assert failed.stats is None and failed.not_measured.startswith("run failed at batch 2: ")
    assert any(w.startswith("baked.onnx: batch 2: not measured: run failed") for w in report.warnings)


def test_defaulted_symbolic_dimensions_are_warned_about(tmp_path: Path) -> None:
    model = save(relu_model("float[N, S, 4] x"), tmp_path / "seq.onnx")

    report = benchmark([model], BenchOptions(**FAST))
    assert report.batches[0].inputs[0].shape == (1, 1, 4)
    assert any("x[1] (S) defaulted to 1" in w for w in report.warnings)

    # --input-shape fixes S; the batch written there is a placeholder for --batch ...
    report = benchmark([model], BenchOptions(batches=(1, 2), input_shapes={"x": (1, 5, 4)}, **FAST))
    assert [b.inputs[0].shape for b in report.batches] == [(1, 5, 4), (2, 5, 4)]
    assert not any("defaulted" in w or "--input-shape" in w for w in report.warnings)
    # ... and a batch that is not among the batch sizes is said to be replaced.
    report = benchmark([model], BenchOptions(batches=(2,), input_shapes={"x": (8, 5, 4)}, **FAST))
    assert report.batches[0].inputs[0].shape == (2, 5, 4)
    assert any("--input-shape x: the leading (batch) dimension" in w for w in report.warnings)


@pytest.mark.parametrize(
    "options",
    [BenchOptions(batches=()), BenchOptions(batches=(0,)), BenchOptions(seconds=0), BenchOptions(threads=0)],
    ids=["no-batch", "zero-batch", "zero-seconds", "zero-threads"],
)
def test_bad_options_are_usage_errors(tiny: Path, options: BenchOptions) -> None:
    with pytest.raises(UsageError):
        benchmark([tiny], options)


def test_a_folder_without_a_manifest_is_not_a_build(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no build.json"):
        benchmark([tmp_path], BenchOptions(**FAST))
