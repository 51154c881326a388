#!/usr/bin/env python3
"""Export two small random-weight transformer encoders to ONNX for the transformer benchmark.

* ``encoder.onnx``: ``nn.Embedding(8000, 256)`` followed by ``torch.nn.TransformerEncoder``
  (4 post-LN layers, d_model 256, 4 heads, feed-forward 1024, ReLU, batch_first, dropout 0,
  each layer with its own weights)
  and a final ``nn.LayerNorm(256)``. Input ``input_ids`` int64 [batch, seq], output ``hidden``
  float [batch, seq, 256]. No positional encoding (the brief's architecture).
* ``bert.onnx``: ``transformers.BertModel`` built from a ``BertConfig`` (vocabulary 30522 as
  bert-base-uncased, hidden 256, 4 layers, 4 heads, intermediate 1024, GELU, eager attention so
  the graph has the MatMul/Softmax pattern onnxruntime's transformer optimizer matches).
  Inputs ``input_ids``, ``attention_mask``, ``token_type_ids`` int64 [batch, seq]; outputs
  ``last_hidden_state`` [batch, seq, 256] and ``pooler_output`` [batch, 256].

Nothing is downloaded: both are built from configs with weights from ``torch.manual_seed``,
in eval mode, and exported with ``torch.onnx.export``, opset 17, batch and sequence axes
dynamic: BERT with the TorchScript exporter (``dynamo=False``), the encoder with the dynamo one
(see TRANSFORMER_MODELS); each falls back to the other exporter if its export fails the checks.
torch and transformers are bench-only dependencies (not hwopt's).

The files are not committed. This script writes them to a folder (default benchmarks/models/,
git-ignored, or $HWOPT_BENCH_MODELS as benchmarks/common.py), skipping a model that already exists
unless --force, and checks each (onnx.checker, one onnxruntime run at batch 1, sequence 128,
finite outputs of the expected shape, equal to PyTorch's within 1e-4, and again at batch 3,
sequence 77 with 25% padding, which catches a shape the exporter baked in).

    python benchmarks/transformer_models.py [FOLDER] [--force]

Other bench scripts call ``ensure_transformer_models(folder)`` to get the paths.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import onnx

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = Path(os.environ.get("HWOPT_BENCH_MODELS", ROOT / "benchmarks" / "models"))
OPSET = 17
SEED = 0
HIDDEN = 256
LAYERS = 4
HEADS = 4
FFN = 1024
ENCODER_VOCAB = 8000
BERT_VOCAB = 30522
CHECK_SHAPE = (1, 128)


def encoder_module():
    import torch
    from torch import nn

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(ENCODER_VOCAB, HIDDEN)
            layer = nn.TransformerEncoderLayer(HIDDEN, HEADS, dim_feedforward=FFN, dropout=0.0, batch_first=True)
            self.encoder = nn.TransformerEncoder(layer, LAYERS, norm=nn.LayerNorm(HIDDEN), enable_nested_tensor=False)

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            return self.encoder(self.embed(input_ids))

    torch.manual_seed(SEED)
    module = Encoder()
    # nn.TransformerEncoder deep-copies one layer, so every layer would carry the same weights
    # (and the exporter would share them): give each layer its own.
    for layer in module.encoder.layers:
        layer.self_attn._reset_parameters()
        for linear in (layer.self_attn.out_proj, layer.linear1, layer.linear2):
            linear.reset_parameters()
    return module.eval()


def bert_module():
    import torch
    from transformers import BertConfig, BertModel

    config = BertConfig(vocab_size=BERT_VOCAB, hidden_size=HIDDEN, num_hidden_layers=LAYERS,
                        num_attention_heads=HEADS, intermediate_size=FFN, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)
    config._attn_implementation = "eager"
    torch.manual_seed(SEED)

    class Bert(torch.nn.Module):
        """Keyword arguments and a tuple result: BertModel.forward's positional order has changed
        between transformers versions, and the TorchScript exporter passes arguments by position."""

        def __init__(self) -> None:
            super().__init__()
            self.bert = BertModel(config)

        def forward(self, input_ids, attention_mask, token_type_ids):
            out = self.bert(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                            return_dict=True)
            return out.last_hidden_state, out.pooler_output

    return Bert().eval()


def check_feeds(names: list[str], vocab: int, shape: tuple[int, int] = CHECK_SHAPE,
                padding: float = 0.0) -> dict[str, np.ndarray]:
    """Token ids over the whole vocabulary, mask ones (the last ``padding`` fraction of positions
    0), token types 0 for the first half of the sequence and 1 for the second."""
    rng = np.random.default_rng(SEED)
    batch, seq = shape
    feeds = {"input_ids": rng.integers(0, vocab, size=shape, dtype=np.int64)}
    if "attention_mask" in names:
        feeds["attention_mask"] = np.ones(shape, dtype=np.int64)
        feeds["attention_mask"][:, seq - int(round(seq * padding)):] = 0
    if "token_type_ids" in names:
        feeds["token_type_ids"] = np.repeat((np.arange(seq) >= seq // 2)[None].astype(np.int64), batch, axis=0)
    return feeds


class Spec(NamedTuple):
    build: Callable
    inputs: list[str]
    outputs: list[str]
    vocab: int
    exporters: tuple[str, ...]  # tried in order until one passes check_model


# The TorchScript exporter bakes the example's sequence length into a Reshape inside
# nn.MultiheadAttention (torch 2.13: the export fails at any other length), so the encoder goes
# through the dynamo exporter. BERT stays on TorchScript: onnxruntime's transformer optimizer
# knows the patterns of that exporter's BERT graphs.
TRANSFORMER_MODELS = {
    "encoder": Spec(encoder_module, ["input_ids"], ["hidden"], ENCODER_VOCAB, ("dynamo", "torchscript")),
    "bert": Spec(bert_module, ["input_ids", "attention_mask", "token_type_ids"],
                 ["last_hidden_state", "pooler_output"], BERT_VOCAB, ("torchscript", "dynamo")),
}
# Batch 2 for the example: torch.export specializes a dimension that is 1 in the example.
EXPORT_SHAPE = (2, 128)
# Checked against PyTorch: the benchmark's shape, and another batch and length with padding.
CHECK_CASES = ((CHECK_SHAPE, 0.0), ((3, 77), 0.25))


def torch_outputs(module, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import torch

    with torch.no_grad():
        out = module(**{k: torch.from_numpy(v) for k, v in feeds.items()})
    return [out.numpy()] if isinstance(out, torch.Tensor) else [o.numpy() for o in out]


def run_exporter(exporter: str, module, spec: Spec, path: Path) -> None:
    import torch

    feeds = check_feeds(spec.inputs, spec.vocab, EXPORT_SHAPE)
    args = tuple(torch.from_numpy(feeds[k]) for k in spec.inputs)
    common = {"input_names": spec.inputs, "output_names": spec.outputs, "opset_version": OPSET}
    if exporter == "torchscript":
        axes = {k: {0: "batch", 1: "seq"} for k in [*spec.inputs, spec.outputs[0]]}
        axes.update({k: {0: "batch"} for k in spec.outputs[1:]})
        # grad enabled: keeps nn.TransformerEncoderLayer off its fused inference fast path
        torch.onnx.export(module, args, str(path), dynamic_axes=axes, dynamo=False, **common)
    else:
        batch, seq = torch.export.Dim("batch", max=64), torch.export.Dim("seq", min=2, max=512)
        shapes = {k: {0: batch, 1: seq} for k in spec.inputs}
        # opset 17 is below the dynamo exporter's own (18): it converts down with onnx's converter
        torch.onnx.export(module, args, str(path), dynamic_shapes=shapes, dynamo=True, external_data=False,
                          verbose=False, **common)


def export(name: str, path: Path) -> str:
    """Export one model to ``path`` and check it; returns which exporter wrote it."""
    import logging

    spec = TRANSFORMER_MODELS[name]
    module = spec.build()
    errors = []
    for exporter in spec.exporters:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            logging.getLogger("torch").setLevel(logging.ERROR)
            try:
                run_exporter(exporter, module, spec, path)
                check_model(path, name, module)
                return exporter
            except Exception as exc:  # noqa: BLE001 - try the next exporter, report all if none works
                errors.append(f"{exporter}: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}")
    raise RuntimeError(f"{name}: no exporter produced a working model: " + "; ".join(errors))


def check_model(path: Path, name: str, module=None) -> float:
    """onnx.checker and onnxruntime runs at batch 1 x 128 and 3 x 77 (25% padding): output shapes,
    finite values, dynamic axes, and (given the PyTorch ``module``) agreement with it within 1e-4.
    Returns the main output's std at batch 1 x 128."""
    import onnxruntime as ort

    spec = TRANSFORMER_MODELS[name]
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if opset != OPSET:
        raise AssertionError(f"{path.name}: opset {opset}, not {OPSET}")
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    got_inputs = [i.name for i in session.get_inputs()]
    if sorted(got_inputs) != sorted(spec.inputs):
        raise AssertionError(f"{path.name}: inputs {got_inputs}, expected {spec.inputs}")
    std = 0.0
    for shape, padding in CHECK_CASES:
        feeds = check_feeds(spec.inputs, spec.vocab, shape, padding)
        outputs = session.run(spec.outputs, feeds)
        if outputs[0].shape != (*shape, HIDDEN):
            raise AssertionError(f"{path.name}: {spec.outputs[0]} shape {outputs[0].shape} at input {shape}")
        if not all(np.isfinite(o).all() for o in outputs):
            raise AssertionError(f"{path.name}: non-finite outputs at input {shape}")
        if module is not None:
            for out_name, got, want in zip(spec.outputs, outputs, torch_outputs(module, feeds)):
                diff = float(np.abs(got - want).max())
                if diff > 1e-4:
                    raise AssertionError(f"{path.name}: {out_name} differs from PyTorch by {diff:.2e} at {shape}")
        std = std or float(outputs[0].std())
    return std


def model_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.onnx"


def export_atomic(name: str, path: Path) -> str:
    """Export to a temporary name, check it there, then rename into place."""
    tmp = path.with_name(path.stem + ".tmp.onnx")
    try:
        exporter = export(name, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        tmp.with_name(tmp.name + ".data").unlink(missing_ok=True)
    return exporter


def ensure_transformer_models(folder: Path | str = DEFAULT_DIR, force: bool = False) -> dict[str, Path]:
    """Export the models missing from ``folder`` (all of them if ``force``); return name -> path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in TRANSFORMER_MODELS:
        path = model_path(folder, name)
        if force or not path.is_file():
            export_atomic(name, path)
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", nargs="?", type=Path, default=DEFAULT_DIR,
                        help=f"where to write the models (default {DEFAULT_DIR})")
    parser.add_argument("--force", action="store_true", help="re-export models that already exist")
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    for name in TRANSFORMER_MODELS:
        path = model_path(args.folder, name)
        if path.is_file() and not args.force:
            status = "existing"
        else:
            began = time.perf_counter()
            exporter = export_atomic(name, path)
            status = f"exported ({exporter}) in {time.perf_counter() - began:.1f} s"
        std = check_model(path, name)
        model = onnx.load(str(path))
        params = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
        ops: dict[str, int] = {}
        for node in model.graph.node:
            ops[node.op_type] = ops.get(node.op_type, 0) + 1
        top = ", ".join(f"{k} {v}" for k, v in sorted(ops.items(), key=lambda kv: -kv[1])[:8])
        print(f"{path}: {status}; onnxruntime batch 1 x 128 ok (std {std:.3f}); {len(model.graph.node)} nodes "
              f"({top}); {params:,} parameters; {path.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    sys.exit(main())
