"""ONNX Runtime sessions built from plain, JSON-serializable option dictionaries.

The same dictionaries are written to ``build.json``; this module is the one place that turns
them into ``onnxruntime.SessionOptions``, so a benchmark, a verification run and
``hwopt.runtime.load`` configure a session identically.

Session option keys:

* ``graph_optimization_level``: ``disable_all`` | ``basic`` | ``extended`` | ``layout`` | ``all``
* ``intra_op_num_threads``, ``inter_op_num_threads``: integers (0 lets ORT choose)
* ``execution_mode``: ``sequential`` | ``parallel``
* ``execution_order``: ``default`` | ``priority_based``. ``default`` is onnxruntime's
  reverse depth-first order, which runs the branch written *last* first at every join
  (and is reshuffled by the nodes its own fusions create); ``priority_based`` runs nodes in
  the model's order wherever the dependencies allow, which is what makes a memory-aware
  node order (the ``reorder`` pass) the order that actually runs. See
  onnxruntime/core/graph/graph_viewer.cc.
* ``enable_mem_pattern``, ``enable_cpu_mem_arena``: booleans
* ``config_entries``: ``{"session.key": "value"}`` passed to ``add_session_config_entry``

Two keys are not ``SessionOptions`` but belong to how a session runs, so they travel in the
same dictionary (and ``build.json``), and :func:`create_session` applies them:

* ``env_allocator``: an environment allocator (``OrtArenaCfg`` keys such as
  ``arena_extend_strategy`` and ``initial_chunk_size_bytes``): a CPU arena registered with the
  process and shared by the sessions whose ``session.use_env_allocators`` entry is ``1``. It is
  the only way to choose the arena's growth (``arena_extend_strategy`` 1, kSameAsRequested)
  from Python. Process-wide: registering replaces the arena that sessions made afterwards
  get, and sessions made before keep theirs, so each session is made right after its own
  configuration is registered;
* ``run_options``: ``{"memory.key": "value"}`` passed to ``add_run_config_entry``, which
  :func:`create_session` makes the session's default for ``run`` and ``run_with_iobinding``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

from hwopt.errors import UsageError
from hwopt.guard import phase

_OPT_LEVELS = {
    "disable_all": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
if hasattr(ort.GraphOptimizationLevel, "ORT_ENABLE_LAYOUT"):
    _OPT_LEVELS["layout"] = ort.GraphOptimizationLevel.ORT_ENABLE_LAYOUT

_EXECUTION_ORDERS = {
    "default": ort.ExecutionOrder.DEFAULT,
    "priority_based": ort.ExecutionOrder.PRIORITY_BASED,
}

_EXECUTION_MODES = {
    "sequential": ort.ExecutionMode.ORT_SEQUENTIAL,
    "parallel": ort.ExecutionMode.ORT_PARALLEL,
}

SESSION_OPTION_KEYS = (
    "graph_optimization_level",
    "intra_op_num_threads",
    "inter_op_num_threads",
    "execution_mode",
    "execution_order",
    "enable_mem_pattern",
    "enable_cpu_mem_arena",
    "enable_profiling",
    "profile_file_prefix",
    "log_severity_level",
    "config_entries",
    "env_allocator",
    "run_options",
)

# Every exception type onnxruntime's Python binding raises; none derives from RuntimeError.
ORT_ERRORS: tuple[type[Exception], ...] = tuple(
    getattr(ort.capi.onnxruntime_pybind11_state, name)
    for name in (
        "Fail", "InvalidArgument", "NoSuchFile", "NoModel", "EngineError", "RuntimeException",
        "InvalidProtobuf", "ModelLoaded", "NotImplemented", "InvalidGraph", "EPFail",
    )
    if hasattr(ort.capi.onnxruntime_pybind11_state, name)
)

Providers = Sequence[tuple[str, Mapping[str, Any]]]

# Provider options that name files or folders; build.json records them relative to the
# build folder, and sessions resolve them against it.
PATH_PROVIDER_OPTIONS = frozenset({"trt_engine_cache_path", "trt_timing_cache_path"})


def resolve_provider_paths(providers: Providers, base_dir: Path | None) -> list[tuple[str, dict[str, Any]]]:
    resolved = []
    for name, options in providers:
        options = dict(options)
        if base_dir is not None:
            for key in PATH_PROVIDER_OPTIONS & set(options):
                if not Path(str(options[key])).is_absolute():
                    options[key] = str(Path(base_dir) / str(options[key]))
        resolved.append((name, options))
    return resolved


def physical_cores() -> int:
    """Cores to run on: the CPUs this process may use (cgroup/affinity aware where possible)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def default_session_options(level: str = "all") -> dict[str, Any]:
    """Fixed, recorded settings: the thread count is pinned so timings are comparable."""
    return {
        "graph_optimization_level": level,
        "intra_op_num_threads": physical_cores(),
        "inter_op_num_threads": 1,
        "execution_mode": "sequential",
        "enable_mem_pattern": True,
        "enable_cpu_mem_arena": True,
    }


def make_session_options(options: Mapping[str, Any]) -> ort.SessionOptions:
    """``onnxruntime.SessionOptions`` from a dictionary of the keys listed in the module doc."""
    unknown = sorted(set(options) - set(SESSION_OPTION_KEYS))
    if unknown:
        raise UsageError(
            f"unknown session option(s) {', '.join(unknown)}; known: {', '.join(SESSION_OPTION_KEYS)}"
        )
    for key in ("env_allocator", "run_options"):  # create_session's; checked here
        if key in options and not isinstance(options[key], Mapping):
            raise UsageError(f"session option {key} must be a table of settings, not {options[key]!r}")
    so = ort.SessionOptions()
    so.log_severity_level = int(options.get("log_severity_level", 3))
    if "graph_optimization_level" in options:
        level = options["graph_optimization_level"]
        if level not in _OPT_LEVELS:
            raise UsageError(
                f"graph_optimization_level '{level}' is not one of {', '.join(_OPT_LEVELS)}"
            )
        so.graph_optimization_level = _OPT_LEVELS[level]
    if "execution_mode" in options:
        mode = options["execution_mode"]
        if mode not in _EXECUTION_MODES:
            raise UsageError(f"execution_mode '{mode}' is not one of {', '.join(_EXECUTION_MODES)}")
        so.execution_mode = _EXECUTION_MODES[mode]
    if "execution_order" in options:
        order = options["execution_order"]
        if order not in _EXECUTION_ORDERS:
            raise UsageError(f"execution_order '{order}' is not one of {', '.join(_EXECUTION_ORDERS)}")
        so.execution_order = _EXECUTION_ORDERS[order]
    for key in ("intra_op_num_threads", "inter_op_num_threads"):
        if key in options:
            setattr(so, key, int(options[key]))
    for key in ("enable_mem_pattern", "enable_cpu_mem_arena", "enable_profiling"):
        if key in options:
            setattr(so, key, bool(options[key]))
    if "profile_file_prefix" in options:
        so.profile_file_prefix = str(options["profile_file_prefix"])
    for key, value in dict(options.get("config_entries", {})).items():
        so.add_session_config_entry(str(key), str(value))
    return so


# The environment allocator this process registered (its OrtArenaCfg keys), if any.
_ENV_ALLOCATOR: dict[str, int] | None = None


def register_env_allocator(config: Mapping[str, int]) -> None:
    """Make ``config`` (``OrtArenaCfg`` keys) the process's shared CPU arena for the sessions
    made from now on (a no-op when it already is). Measured with onnxruntime 1.32: a second
    registration replaces the first for later sessions (an initial chunk of 512 MiB, then 1
    MiB: the session's address space grew 78 MiB; the other way round, 606)."""
    global _ENV_ALLOCATOR
    wanted = {str(k): int(v) for k, v in config.items()}
    if _ENV_ALLOCATOR == wanted:
        return
    info = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    ort.create_and_register_allocator(info, ort.OrtArenaCfg(wanted))
    _ENV_ALLOCATOR = wanted


def make_run_options(entries: Mapping[str, Any]) -> ort.RunOptions:
    run_options = ort.RunOptions()
    for key, value in entries.items():
        run_options.add_run_config_entry(str(key), str(value))
    return run_options


class ConfiguredSession(ort.InferenceSession):
    """An InferenceSession whose runs default to recorded run options."""

    def __init__(self, *args: Any, run_options: ort.RunOptions, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.default_run_options = run_options

    def run(self, output_names, input_feed, run_options=None):  # type: ignore[no-untyped-def]
        return super().run(output_names, input_feed, run_options or self.default_run_options)

    def run_with_iobinding(self, iobinding, run_options=None):  # type: ignore[no-untyped-def]
        return super().run_with_iobinding(iobinding, run_options or self.default_run_options)


def create_session(
    model: onnx.ModelProto | bytes | str | Path,
    session_options: Mapping[str, Any] | None = None,
    providers: Providers = (("CPUExecutionProvider", {}),),
    base_dir: Path | None = None,
) -> ort.InferenceSession:
    """An InferenceSession for a model given as a proto, serialized bytes, or a file path;
    relative paths in provider options resolve against ``base_dir`` (a build folder). An
    ``env_allocator`` among the options is registered first, and ``run_options`` become the
    session's default for its runs (see the module doc)."""
    if isinstance(model, onnx.ModelProto):
        model = model.SerializeToString()
    elif isinstance(model, Path):
        model = str(model)
    providers = resolve_provider_paths(providers, base_dir)
    options = session_options or {}
    so = make_session_options(options)
    env_allocator, run_options = options.get("env_allocator"), options.get("run_options")
    if env_allocator:
        register_env_allocator(env_allocator)
    kwargs: dict[str, Any] = {"sess_options": so, "providers": [name for name, _ in providers],
                              "provider_options": [dict(opts) for _, opts in providers]}
    with phase("onnxruntime session creation", "session"):
        if run_options:
            return ConfiguredSession(model, run_options=make_run_options(run_options), **kwargs)
        return ort.InferenceSession(model, **kwargs)


def run_session(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """All outputs of one run, by name."""
    names = [out.name for out in session.get_outputs()]
    with phase("onnxruntime run", "run"):
        values = session.run(names, dict(feeds))
    return dict(zip(names, values))
