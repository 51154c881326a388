"""reorder: a lower-peak order, bit-exact outputs, the model's order kept when nothing wins."""

from __future__ import annotations

import onnx
from conftest import SAMPLES
from passtest import make_model, run_pass

from hwopt.passes.pipeline import APPLIED, UNCHANGED
from hwopt.passes.reorder import Reorder


def test_inception_sample_peak_drops_by_the_hand_computed_amount() -> None:
    model = onnx.load(str(SAMPLES / "inception_tiny.onnx"))
    record, out = run_pass(Reorder(), model)
    assert record.status == APPLIED  # verified bit-exact at batch 1
    assert record.max_abs == 0.0
    # 896 -> 624 channels of 24 x 24 float32 live at the peak (see test_schedule.py).
    assert record.metrics["peak_live_bytes_before"] == 896 * 24 * 24 * 4
    assert record.metrics["peak_live_bytes_after"] == 624 * 24 * 24 * 4
    assert record.metrics["method"] == "exact"
    assert [n.name for n in out.graph.node] != [n.name for n in model.graph.node]
    assert sorted(n.name for n in out.graph.node) == sorted(n.name for n in model.graph.node)


def test_a_chain_keeps_its_order() -> None:
    model = make_model("""<ir_version: 8, opset_import: ["" : 17]>
        g (float[1, 64] x) => (float[1, 64] y) {
            a = Relu (x)
            b = Neg (a)
            y = Sigmoid (b)
        }""")
    record, out = run_pass(Reorder(), model)
    assert record.status == UNCHANGED
    assert "kept the model's order" in record.notes[0]
