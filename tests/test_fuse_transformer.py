"""The transformer fusions (onnxruntime's fusion code as a library), the measured choice of the
fused graph, and the default build of text encoders judged on token ids across the vocabulary."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import ROOT, fp32_options, invoke_cli

from hwopt.feeds.inputs import generate_feeds, resolve_input_specs
from hwopt.graph_choice import SPEED_MARGIN, choose_graph
from hwopt.optimize import optimize
from hwopt.passes.base import PassContext
from hwopt.passes.fuse_transformer import detect_attention_shape
from hwopt.passes.pipeline import Pipeline, PipelineResult
from hwopt.passes.registry import resolve
from hwopt.verify import cosine_similarity, run_model

EXPORTED = ROOT / "tests" / "fixtures" / "exported"
BERT = EXPORTED / "bert_tiny_op17.onnx"  # vocabulary 2,000, hidden 64, 4 heads, 2 layers
ENCODER = EXPORTED / "token_encoder_op17.onnx"  # nn.Embedding(2000, 64) + nn.TransformerEncoder
SHAPES = {"input_ids": (1, 16), "attention_mask": (1, 16), "token_type_ids": (1, 16)}


def realistic_ids(model: onnx.ModelProto, count: int, seed: int) -> list[dict[str, np.ndarray]]:
    """Token ids uniform over the whole 2,000-row vocabulary, masks ones, one segment:
    what a user feeds, drawn independently of hwopt's own generator."""
    rng = np.random.default_rng(seed)
    names = [i.name for i in model.graph.input]
    samples = []
    for _ in range(count):
        sample = {"input_ids": rng.integers(0, 2000, (1, 16), dtype=np.int64)}
        if "attention_mask" in names:
            sample["attention_mask"] = np.ones((1, 16), np.int64)
            sample["token_type_ids"] = np.zeros((1, 16), np.int64)
        samples.append(sample)
    return samples


def test_attention_shape_is_read_from_the_graph() -> None:
    # onnxruntime's own detection fails on this export (its Reshape shapes are built at run time).
    assert detect_attention_shape(onnx.load(str(BERT)).graph) == (4, 64)


def test_bert_blocks_fuse_into_contrib_operators_within_tolerance() -> None:
    model = onnx.load(str(BERT))
    onnx.checker.check_model(model, full_check=True)
    specs = resolve_input_specs(model.graph, SHAPES)
    feeds = [generate_feeds(specs, seed=1)]
    reference = [run_model(model, f) for f in feeds]
    result = Pipeline(resolve(["fuse_transformer"])).run(model, PassContext(input_specs=specs),
                                                         feeds, reference)
    record = result.records[0]
    assert record.status == "applied", record.reason
    assert record.rewrites == {"Attention": 2, "SkipLayerNormalization": 4, "EmbedLayerNormalization": 1,
                               "BiasGelu": 2}
    ops = collections.Counter(n.op_type for n in result.model.graph.node)
    assert ops["Attention"] == 2 and ops["Softmax"] == 0
    assert any(o.domain == "com.microsoft" for o in result.model.opset_import)
    # The fused graph computes the same thing on ids across the vocabulary (not only hwopt's).
    for sample in realistic_ids(model, 3, seed=5):
        want, got = run_model(model, sample), run_model(result.model, sample)
        assert cosine_similarity(want["hidden"].astype(np.float64), got["hidden"].astype(np.float64)) > 0.99999
        assert np.abs(want["hidden"] - got["hidden"]).max() < 1e-3


def test_a_graph_without_transformer_blocks_is_unchanged(tmp_path: Path) -> None:
    model = onnx.load(str(ROOT / "sample_models" / "mobilenetv2_tiny.onnx"))
    specs = resolve_input_specs(model.graph)
    feeds = [generate_feeds(specs)]
    result = Pipeline(resolve(["fuse_transformer"])).run(model, PassContext(input_specs=specs),
                                                         feeds, [run_model(model, feeds[0])])
    assert result.records[0].status == "unchanged"
    # A CNN has no op any fusion starts from: onnxruntime's optimizer is not even run.
    assert "no transformer pattern can match" in result.records[0].notes[0]


def test_a_graph_with_an_anchor_op_but_no_block_runs_the_fusions_and_is_unchanged() -> None:
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["m"]), helper.make_node("Softmax", ["m"], ["y"], axis=-1)], "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])],
        [onnx.numpy_helper.from_array(np.eye(8, dtype=np.float32), "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    specs = resolve_input_specs(model.graph)
    feeds = [generate_feeds(specs)]
    result = Pipeline(resolve(["fuse_transformer"])).run(model, PassContext(input_specs=specs),
                                                         feeds, [run_model(model, feeds[0])])
    assert result.records[0].status == "unchanged"
    assert "no transformer pattern matched" in result.records[0].notes[0]


def test_the_fused_graph_is_kept_only_when_most_races_find_it_faster(monkeypatch) -> None:
    import hwopt.graph_choice as graph_choice
    from hwopt.passes.base import PassRecord

    applied = PipelineResult(onnx.ModelProto(), [PassRecord("fuse_transformer", "applied", 0, 1, 1, 0, 0)], [])
    unchanged = PipelineResult(onnx.ModelProto(), [PassRecord("fuse_transformer", "unchanged", 0, 1, 1, 0, 0)], [])

    def decide(races: list[float]):
        monkeypatch.setattr(graph_choice, "_races", lambda *a, **k: races)
        return choose_graph(onnx.ModelProto(), {"fused": applied}, {}, {}, (), 0.1).variants[0]

    assert decide([0.62, 0.64, 0.63]).kept
    # One outlier race does not decide; a majority of up to five does.
    assert decide([0.90, 1.08, 0.91, 0.92]).kept
    # Within the noise margin in most races: the pipeline's graph ships (the stable choice).
    assert not decide([0.90, SPEED_MARGIN + 0.001, 1.0, 0.99]).kept
    assert not decide([1.10, 1.05, 1.2]).kept
    assert "not faster" in decide([1.10, 1.05, 1.2]).reason
    monkeypatch.setattr(graph_choice, "_races", lambda *a, **k: pytest.fail("an unchanged variant is never raced"))
    choice = choose_graph(onnx.ModelProto(), {"fused": unchanged}, {}, {}, (), 0.1)
    assert not choice.variants[0].kept and choice.chosen is None


@pytest.mark.parametrize("model_path", [BERT, ENCODER], ids=["bert", "torch_encoder"])
def test_text_encoder_builds_hold_on_ids_across_the_vocabulary(model_path: Path, tmp_path: Path) -> None:
    """The default build, and INT8 forced, both judged on ids the search never saw, spread over
    the whole embedding table. Without --calib the forced INT8 is dynamic: no calibration on
    invented ids decides its scales."""
    model = onnx.load(str(model_path))
    samples = realistic_ids(model, 6, seed=99)
    shapes = [a for name in ([i.name for i in model.graph.input]) for a in ("-s", f"{name}=1x16")]
    for extra in ([], ["--precision", "int8", "--force-precision"]):
        out = tmp_path / ("forced" if extra else "default")
        proc = invoke_cli("optimize", model_path, "-o", out, *shapes, "--bench-seconds", "0.1", "--no-bench",
                          "--json", *extra)
        assert proc.returncode in (0, 3), proc.stderr
        report = json.loads(proc.stdout)
        generated = report["feeds"]["generated_as"]
        assert generated["input_ids"].startswith("ids uniform over 0..1999")
        precision = report["builds"][0]["precision"]
        if precision["chosen"] == "int8":
            chosen = next(v for v in precision["variants"] if v["status"].startswith("chosen"))
            assert chosen["config"]["fmt"] == "dynamic"
        if extra:
            assert precision["chosen"] == "int8"
        session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
        for sample in samples:
            want = run_model(model, sample)["hidden"].astype(np.float64)
            got = session.run(["hidden"], sample)[0].astype(np.float64)
            assert cosine_similarity(want, got) >= 0.99, (extra, precision["chosen_label"])


def test_a_cnn_builds_no_fused_variant(tmp_path: Path) -> None:
    report = optimize(ROOT / "sample_models" / "mobilenetv2_tiny.onnx",
                      fp32_options(output_dir=tmp_path / "b", measure=False))
    (build,) = report.builds
    assert build.graph_choice is None
    assert "fuse_transformer" not in [r.name for r in build.passes]
