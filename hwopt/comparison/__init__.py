"""``hwopt bench``: latency and peak memory of models and build folders, compared on one host.

Every path given is a *variant*: an ONNX file, run on the CPU provider with hwopt's default
session options, or a build folder written by ``hwopt optimize``, run exactly as its
``build.json`` says (providers in their order, session options, relative provider paths
resolved inside the folder). The comparison is fair by construction:

* every variant gets the same feeds at each batch size (generated from one seed, or the
  user's file), and the inputs must agree in names, dtypes and fixed dimensions;
* all variants are timed interleaved in one process (``hwopt.timing`` explains why), with
  thread spinning off in every session and, with ``threads``, one intra-op thread count;
* a variant whose first provider is a GPU one is timed with IO binding, its inputs copied to
  the device once, so the number is the model's and not the PCIe bus's;
* a variant whose providers cannot run here is reported as not measured, with the reason,
  and the others still run;
* peak resident memory comes from a fresh process per session (``hwopt.memory.probe``).

The batch dimension is the leading dimension of every input that declares it symbolic; a
model that fixes it is benchmarked at its own size, and the report says which batch sizes
were not run and why.
"""

from hwopt.comparison.options import BenchOptions
from hwopt.comparison.run import benchmark

__all__ = ["BenchOptions", "benchmark"]
