"""inspect: MAC counts checked against hand computation, and the hardware-fit notes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from conftest import SAMPLES, save
from onnx import numpy_helper

from hwopt.inspection import inspect_model

# x[1,3,8,8] -Conv(4x3x3x3, pad 1)-> c[1,4,8,8] -depthwise Conv(4x1x3x3, group 4, pad 1)->
# d[1,4,8,8] -ConvTranspose(4x2x2x2, stride 2)-> t[1,2,16,16] -Flatten-> f[1,512]
# -Gemm(512x10)-> g[1,10] -MatMul(10x5)-> y[1,5]
MAC_MODEL = """
<ir_version: 8, opset_import: ["" : 17]>
macs (float[N, 3, 8, 8] x) => (float[N, 5] y) <float[4, 3, 3, 3] w1, float[4, 1, 3, 3] w2,
    float[4, 2, 2, 2] w3, float[512, 10] w4, float[10, 5] w5> {
    c = Conv <pads = [1, 1, 1, 1]> (x, w1)
    d = Conv <pads = [1, 1, 1, 1], group = 4> (c, w2)
    t = ConvTranspose <strides = [2, 2]> (d, w3)
    f = Flatten (t)
    g = Gemm (f, w4)
    y = MatMul (g, w5)
}
"""
# Conv:          N*M*H*W*(C/g)*k*k = 1*4*8*8*3*9  = 6912
# depthwise:     1*4*8*8*1*9                      = 2304
# ConvTranspose: N*C*Hin*Win*(M/g)*k*k = 1*4*64*2*4 = 2048
# Gemm:          M*N*K = 1*10*512                 = 5120
# MatMul:        1*5*10                           = 50
HAND_MACS = {"Conv": 6912 + 2304, "ConvTranspose": 2048, "Gemm": 5120, "MatMul": 50}


def _mac_model() -> onnx.ModelProto:
    model = onnx.parser.parse_model(MAC_MODEL)
    rng = np.random.default_rng(0)
    shapes = {"w1": (4, 3, 3, 3), "w2": (4, 1, 3, 3), "w3": (4, 2, 2, 2), "w4": (512, 10), "w5": (10, 5)}
    del model.graph.initializer[:]
    model.graph.initializer.extend(
        numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n) for n, s in shapes.items()
    )
    return model


def test_macs_match_hand_computation(tmp_path: Path) -> None:
    report = inspect_model(save(_mac_model(), tmp_path / "macs.onnx"))
    assert report.macs_by_op() == HAND_MACS
    assert report.total_macs == sum(HAND_MACS.values())
    assert report.to_dict()["flops"] == 2 * sum(HAND_MACS.values())


def test_macs_scale_with_batch(tmp_path: Path) -> None:
    report = inspect_model(save(_mac_model(), tmp_path / "macs.onnx"), {"x": (3, 3, 8, 8)})
    assert report.total_macs == 3 * sum(HAND_MACS.values())


def test_signature_and_stats(tmp_path: Path) -> None:
    data = inspect_model(save(_mac_model(), tmp_path / "macs.onnx")).to_dict()
    assert data["opsets"] == {"ai.onnx": 17}
    assert data["inputs"][0]["declared_shape"] == ["N", 3, 8, 8]
    assert data["outputs"] == [{"name": "y", "dtype": "float32", "declared_shape": ["N", 5]}]
    assert data["parameters"] == 4 * 27 + 4 * 9 + 4 * 8 + 5120 + 50
    assert data["op_histogram"]["Conv"] == 2


def test_hardware_fit_notes(tmp_path: Path) -> None:
    notes = {n["kind"]: n for n in inspect_model(save(_mac_model(), tmp_path / "m.onnx")).to_dict()["notes"]}
    assert notes["depthwise convolutions"]["nodes"] == ["d"]
    assert "channel counts" in notes  # 4 output channels is not a multiple of 8
    assert notes["dynamic dimensions"]["nodes"] == ["x[0]=N"]


def test_sample_notes_find_their_features() -> None:
    kinds = {
        name: {n.kind for n in inspect_model(SAMPLES / f"{name}.onnx").notes}
        for name in ("mobilenetv2_tiny", "resnext_tiny", "shufflenet_tiny")
    }
    assert "depthwise convolutions" in kinds["mobilenetv2_tiny"]
    assert "grouped convolutions" in kinds["resnext_tiny"]
    assert "channel shuffle" in kinds["shufflenet_tiny"]
    assert all("unfolded BatchNorm" in k for k in kinds.values())


def test_shapes_resolve_through_exporter_shape_chains() -> None:
    # The ShuffleNet sample builds reshape targets from Shape->Gather->Concat at opset 11,
    # which onnx's own inference leaves unknown.
    report = inspect_model(SAMPLES / "shufflenet_tiny.onnx")
    assert report.unknown_cost_nodes == []
