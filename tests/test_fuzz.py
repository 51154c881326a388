"""Fuzzing: mutated sample models through every command, with the corpus's promises.

Hypothesis draws a sample model, one to three mutations and a command. Mutations are both
byte-level (flipped bytes, truncation, spliced garbage) and structural, made on the parsed
model so that the result still parses and reaches the deeper code: an op type or domain
swapped, a node deleted, an input rewired (dangling names, cycles), attributes set to absurd
values, initializer dims that disagree with their data, input dims of 0, -1 or 2**40, element
types, opset and IR versions out of range. Each mutated model runs through tests/harness.py's
guarded worker, as on the command line, and must end with exit 0, 2 or 3: never a
traceback, a hang, a crash, an internal error, a write outside the output folder or a change
to the input.

``make test`` runs a short, derandomized fuzz (HWOPT_FUZZ_EXAMPLES, 12 by default); ``make
fuzz`` runs thousands and writes the counts to HWOPT_FUZZ_REPORT.
"""

from __future__ import annotations

import collections
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import onnx
import pytest
from harness import COMMANDS, SHORT_LIMITS, GuardedWorker, snapshot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
SEEDS = sorted((ROOT / "sample_models").glob("*.onnx"))
EXAMPLES = int(os.environ.get("HWOPT_FUZZ_EXAMPLES", "12"))
REPORT = os.environ.get("HWOPT_FUZZ_REPORT")
# The default run is part of make test: the same examples every time.
DERANDOMIZE = os.environ.get("HWOPT_FUZZ_RANDOM") != "1"

# Quantize and tune are the slowest; inspect the fastest and the one that reads the most odd fields.
COMMAND_WEIGHTS = ["inspect"] * 3 + ["optimize"] * 4 + ["bench"] * 2 + ["quantize", "tune"]

OP_TYPES = ["Conv", "Relu", "Add", "Reshape", "Transpose", "MatMul", "Gemm", "Softmax", "Concat", "Loop", "If",
            "BatchNormalization", "Resize", "NoSuchOp", ""]
DOMAINS = ["", "ai.onnx", "com.microsoft", "ai.onnx.ml", "org.evil.custom"]
ODD_INTS = [-(2**62), -7, -1, 0, 1, 2, 3, 255, 2**31, 2**40, 2**62]
ODD_FLOATS = [float("nan"), float("inf"), -float("inf"), -1.0, 0.0, 1e-30, 3.4e38]
ODD_DIMS = [0, -1, 1, 3, 7, 2**31, 2**40]

counts: collections.Counter[str] = collections.Counter()
STARTED = time.time()


@pytest.fixture(scope="module")
def worker():
    guarded = GuardedWorker(time_limits=SHORT_LIMITS)
    yield guarded
    guarded.close()
    if REPORT:
        Path(REPORT).parent.mkdir(parents=True, exist_ok=True)
        summary = {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(STARTED)),
            "seconds": round(time.time() - STARTED, 1),
            "seeds": [seed.name for seed in SEEDS],
            "counts": dict(sorted(counts.items())),
        }
        Path(REPORT).write_text(json.dumps(summary, indent=2) + "\n")


# --- mutations ---------------------------------------------------------------------------


def _tensor_names(graph: onnx.GraphProto) -> list[str]:
    names = [v.name for v in graph.input] + [i.name for i in graph.initializer]
    return names + [o for n in graph.node for o in n.output]


def _mutate_op(graph, data) -> str:
    node = data.draw(st.sampled_from(list(graph.node)))
    node.op_type = data.draw(st.sampled_from(OP_TYPES))
    return "op_type"


def _mutate_domain(graph, data) -> str:
    node = data.draw(st.sampled_from(list(graph.node)))
    node.domain = data.draw(st.sampled_from(DOMAINS))
    return "domain"


def _delete_node(graph, data) -> str:
    index = data.draw(st.integers(0, len(graph.node) - 1))
    del graph.node[index]
    return "delete_node"


def _rewire(graph, data) -> str:
    index = data.draw(st.integers(0, len(graph.node) - 1))
    node = graph.node[index]
    if not node.input:
        return "rewire_none"
    slot = data.draw(st.integers(0, len(node.input) - 1))
    later = [o for n in graph.node[index:] for o in n.output]  # a later output makes a cycle
    node.input[slot] = data.draw(st.sampled_from(_tensor_names(graph) + later + ["", "dangling"]))
    return "rewire"


def _attribute(graph, data) -> str:
    nodes = [n for n in graph.node if n.attribute]
    if not nodes:
        return "attribute_none"
    attr = data.draw(st.sampled_from([a for a in data.draw(st.sampled_from(nodes)).attribute]))
    if attr.type == onnx.AttributeProto.INT:
        attr.i = data.draw(st.sampled_from(ODD_INTS))
    elif attr.type == onnx.AttributeProto.INTS:
        del attr.ints[:]
        attr.ints.extend(data.draw(st.lists(st.sampled_from(ODD_INTS), max_size=6)))
    elif attr.type == onnx.AttributeProto.FLOAT:
        attr.f = data.draw(st.sampled_from(ODD_FLOATS))
    elif attr.type == onnx.AttributeProto.TENSOR:
        del attr.t.dims[:]
        attr.t.dims.extend(data.draw(st.lists(st.sampled_from(ODD_DIMS), max_size=3)))
    else:
        attr.type = data.draw(st.sampled_from([onnx.AttributeProto.INT, onnx.AttributeProto.STRING]))
    return "attribute"


def _initializer(graph, data) -> str:
    if not graph.initializer:
        return "initializer_none"
    init = data.draw(st.sampled_from(list(graph.initializer)))
    if data.draw(st.booleans()):
        del init.dims[:]
        init.dims.extend(data.draw(st.lists(st.sampled_from(ODD_DIMS), max_size=4)))
        return "initializer_dims"
    init.raw_data = init.raw_data[: data.draw(st.integers(0, max(len(init.raw_data) - 1, 0)))]
    return "initializer_data"


def _input_shape(graph, data) -> str:
    value = data.draw(st.sampled_from(list(graph.input)))
    dims = value.type.tensor_type.shape.dim
    if not dims:
        return "input_shape_none"
    dim = dims[data.draw(st.integers(0, len(dims) - 1))]
    if data.draw(st.booleans()):
        dim.dim_value = data.draw(st.sampled_from(ODD_DIMS))
    else:
        dim.dim_param = data.draw(st.sampled_from(["N", "", "x y", "\u00e9"]))
    return "input_shape"


def _elem_type(graph, data) -> str:
    value = data.draw(st.sampled_from(list(graph.input) + list(graph.output)))
    value.type.tensor_type.elem_type = data.draw(st.integers(0, 25))
    return "elem_type"


def _outputs(graph, data) -> str:
    if data.draw(st.booleans()) and len(graph.output) > 0:
        graph.output[0].name = data.draw(st.sampled_from(_tensor_names(graph) + ["missing"]))
    else:
        graph.output.add().CopyFrom(onnx.helper.make_tensor_value_info("extra", onnx.TensorProto.FLOAT, None))
    return "outputs"


STRUCTURAL = [_mutate_op, _mutate_domain, _delete_node, _rewire, _attribute, _initializer, _input_shape, _elem_type,
              _outputs]


def _versions(model: onnx.ModelProto, data) -> str:
    if data.draw(st.booleans()):
        model.opset_import[0].version = data.draw(st.integers(0, 40))
        return "opset"
    model.ir_version = data.draw(st.integers(0, 15))
    return "ir_version"


def _bytes(blob: bytes, data) -> tuple[bytes, str]:
    kind = data.draw(st.sampled_from(["flip", "truncate", "splice"]))
    array = bytearray(blob)
    if kind == "flip":
        for _ in range(data.draw(st.integers(1, 64))):
            array[data.draw(st.integers(0, len(array) - 1))] = data.draw(st.integers(0, 255))
    elif kind == "truncate":
        array = array[: data.draw(st.integers(0, len(array) - 1))]
    else:
        at = data.draw(st.integers(0, len(array)))
        array[at:at] = data.draw(st.binary(min_size=1, max_size=64))
    return bytes(array), f"bytes_{kind}"


def mutate(seed: Path, data) -> tuple[bytes, list[str]]:
    model = onnx.load(str(seed))
    applied = []
    for _ in range(data.draw(st.integers(1, 3))):
        choice = data.draw(st.integers(0, len(STRUCTURAL) + 1))
        if choice < len(STRUCTURAL) and len(model.graph.node) > 0:
            applied.append(STRUCTURAL[choice](model.graph, data))
        elif choice == len(STRUCTURAL):
            applied.append(_versions(model, data))
    blob = model.SerializeToString()
    if not applied or data.draw(st.integers(0, 3)) == 0:
        blob, kind = _bytes(blob, data)
        applied.append(kind)
    return blob, applied


# --- the property ------------------------------------------------------------------------


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=DERANDOMIZE,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)
@given(data=st.data())
def test_mutated_models_keep_the_promises(worker, data) -> None:
    seed = data.draw(st.sampled_from(SEEDS), label="seed")
    blob, applied = mutate(seed, data)
    command = data.draw(st.sampled_from(COMMAND_WEIGHTS), label="command")
    with tempfile.TemporaryDirectory(prefix="hwopt-fuzz-") as tmp:
        case = Path(tmp) / "case"
        case.mkdir()
        model = case / "model.onnx"
        model.write_bytes(blob)
        before = snapshot(case)
        cwd = Path(tmp) / "cwd"
        cwd.mkdir()
        out = cwd / "out"
        outcome = worker.run(COMMANDS[command](model, out), cwd)

        counts["models"] += 1
        counts[f"command_{command}"] += 1
        counts[f"exit_{outcome.code}"] += 1
        for kind in applied:
            counts[f"mutation_{kind}"] += 1
        problems = outcome.problems()
        counts["problems"] += bool(problems)
        context = (seed.name, applied, command, outcome.code, outcome.stderr[-1500:])
        assert not problems, (problems, context)
        assert outcome.code in (0, 2, 3), context
        if outcome.code == 0:
            json.loads(outcome.stdout)
        assert snapshot(case) == before, ("the input changed", context)
        assert {p.name for p in cwd.iterdir()} <= {"out"}, ("wrote outside the output folder", context)
        shutil.rmtree(cwd, ignore_errors=True)

