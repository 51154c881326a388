"""The ``hwopt`` command line: a thin layer that parses options, calls the library, renders
the report and maps errors to exit codes.

Exit codes: 0 success; 1 internal error (a bug; the message says where the traceback is);
2 bad input or usage; 3 a check failed (a CI gate, or a rolled-back pass under --strict);
4 target not available when --require-target asks for it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from hwopt import guard
from hwopt.errors import EXIT_INTERNAL, HwoptError, one_line

EXIT_CODES_HELP = (
    "Exit codes: 0 success; 1 internal error; 2 bad input or usage; "
    "3 a check failed (CI gate or --strict); 4 target not available (--require-target)."
)

app = typer.Typer(
    name="hwopt",
    help="Make ONNX models fit the hardware they run on.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)

# Options shared by several commands, defined once.
InputShapeOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--input-shape",
        "-s",
        metavar="NAME=DxDx...",
        help="Concrete shape for an input with symbolic dims (repeatable). Open dims default to 1.",
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the report as JSON on stdout, and nothing else.")
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing but errors.")]
FastOpt = Annotated[
    bool | None, typer.Option("--fast", help="A bounded search for CI: shorter races, fewer INT8 variants and memory "
                              "settings; the report says what was left out.")
]
CalibOpt = Annotated[
    Path | None,
    typer.Option(
        "--calib",
        help="Calibration data: a folder of .npy/.npz (one sample each) or images, or one stacked .npz. "
        "Static INT8 competes only with it; 'generated' accepts generated data instead (not recommended).",
    ),
]
CalibSamplesOpt = Annotated[
    int | None,
    typer.Option("--calib-samples", min=1, help="Calibration samples to use (default: all, or 16 generated from the graph)."),
]
CalibMethodOpt = Annotated[
    str | None,
    typer.Option("--calib-method", help="minmax | entropy | percentile (default: minmax, others tried on failure)."),
]
TargetOptionOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--target-option", metavar="TARGET.KEY=VALUE", help="A target option, e.g. cuda.cuda_graph=true (repeatable)."
    ),
]
RequireTargetOpt = Annotated[
    bool, typer.Option("--require-target", help="Exit 4 when a target's provider cannot run on this host.")
]
NoFallbackOpt = Annotated[
    bool,
    typer.Option("--no-fallback", help="Fail (exit 3) when nodes would run on a provider other than the target's."),
]
MaxLatencyOpt = Annotated[float | None, typer.Option("--max-latency-ms", help="Gate: build p50 latency at most this.")]
MinSpeedupOpt = Annotated[
    float | None, typer.Option("--min-speedup", help="Gate: original p50 / build p50 at least this.")
]
MaxSizeOpt = Annotated[float | None, typer.Option("--max-size-mb", help="Gate: build model size at most this.")]
MaxMemoryOpt = Annotated[
    float | None, typer.Option("--max-memory-mb", help="Gate: measured session peak RSS at most this.")
]
AccuracyOpt = Annotated[
    str | None,
    typer.Option(
        "--max-accuracy-drop",
        help="INT8 budget: a number d (cosine and top-1 >= 1-d) or cosine=..,top1=..,abs=.. "
        "(default cosine=0.99,top1=0.99).",
    ),
]


def _fail_internal(exc: BaseException) -> None:
    fd, log_path = tempfile.mkstemp(prefix="hwopt-crash-", suffix=".log")
    with os.fdopen(fd, "w") as handle:
        traceback.print_exception(exc, file=handle)
    print(
        f"hwopt: internal error: {type(exc).__name__}: {one_line(exc)} (traceback in {log_path})",
        file=sys.stderr,
    )


def handle_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn hwopt's errors into one-line messages and exit codes; never show a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except HwoptError as exc:
            print(f"hwopt: error: {one_line(exc, limit=2000)}", file=sys.stderr)
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            print("hwopt: interrupted", file=sys.stderr)
            raise typer.Exit(guard.EXIT_SIGINT) from None
        except guard.Terminated:
            print("hwopt: terminated", file=sys.stderr)
            raise typer.Exit(guard.EXIT_SIGTERM) from None
        except Exception as exc:  # noqa: BLE001 - a bug: reported with its traceback in a log
            _fail_internal(exc)
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


@contextlib.contextmanager
def stdout_reserved_for_json(enabled: bool) -> Iterator[Callable[[Any], None]]:
    """While active, anything written to stdout (by us, a library's print, or native code
    writing to file descriptor 1) goes to stderr; the yielded function prints JSON to the real
    stdout. onnxruntime's calibrators, for one, print progress."""
    if not enabled:
        yield lambda data: print(json.dumps(data, indent=2))
        return
    real_stdout = sys.stdout
    if not _stdout_is_fd1():
        with contextlib.redirect_stdout(sys.stderr):
            yield lambda data: real_stdout.write(json.dumps(data, indent=2) + "\n")
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)

        def emit(data: Any) -> None:
            os.write(saved, (json.dumps(data, indent=2) + "\n").encode())

        with contextlib.redirect_stdout(sys.stderr):
            yield emit
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _stdout_is_fd1() -> bool:
    """False when sys.stdout is not the process's fd 1 (captured by a test runner, say)."""
    try:
        return sys.stdout.fileno() == 1
    except (AttributeError, OSError, ValueError):
        return False


def _console(quiet: bool = False) -> Console:
    # rich drops colour and styling by itself when stdout is not a terminal; there it would
    # also wrap at 80 columns, so give piped output room for whole table rows.
    console = Console(quiet=quiet, highlight=False)
    if not console.is_terminal:
        console = Console(quiet=quiet, highlight=False, width=160)
    return console


def _shapes(items: list[str] | None) -> dict[str, tuple[int, ...]]:
    from hwopt.feeds.inputs import parse_shape_options

    return parse_shape_options(items or [])


def _split_csv(value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [item.strip() for item in value.split(",") if item.strip()]


@app.command()
@handle_errors
def optimize(
    model: Annotated[Path, typer.Argument(help="The ONNX model to optimize (never modified).")],
    target: Annotated[
        str | None, typer.Option("--target", "-t", help="Target(s), comma-separated (default cpu).")
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Build folder (default: ./<model>.hwopt)."),
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML config (see configs/); flags given here win."),
    ] = None,
    input_shape: InputShapeOpt = None,
    inputs: Annotated[
        Path | None,
        typer.Option("--inputs", help="Feeds for checks and benchmarks: .npz (one array per input) or .npy."),
    ] = None,
    passes: Annotated[
        str | None, typer.Option("--passes", help="Run exactly these passes, comma-separated.")
    ] = None,
    skip_pass: Annotated[
        list[str] | None, typer.Option("--skip-pass", help="Leave this pass out (repeatable).")
    ] = None,
    strict: Annotated[
        bool | None, typer.Option("--strict", help="Exit 3 when any pass fails verification.")
    ] = None,
    static_shapes: Annotated[
        bool | None,
        typer.Option("--static-shapes", help="Bake the input shapes (-s, or the defaults) into the build and fold "
                     "what becomes constant; the build then runs at exactly those shapes."),
    ] = None,
    optimize_for: Annotated[
        str | None,
        typer.Option("--optimize-for", help="balanced (default: the lowest measured peak memory within 3% of the "
                     "fastest setting's latency) | latency | memory: how the build's memory settings are chosen."),
    ] = None,
    fast: FastOpt = None,
    memory_search: Annotated[
        bool, typer.Option("--memory-search/--no-memory-search",
                           help="Choose the build's memory settings by measuring each candidate (a fresh process "
                           "each, about a second apiece); off: onnxruntime's defaults ship.")
    ] = True,
    bench: Annotated[
        bool | None, typer.Option("--bench/--no-bench", help="Measure latency of original and build.")
    ] = None,
    bench_seconds: Annotated[
        float | None, typer.Option("--bench-seconds", min=0.0, help="Timed seconds per variant (default 2).")
    ] = None,
    precision: Annotated[
        str | None, typer.Option("--precision", help="auto (CPU: fastest within the accuracy budget; GPU: fp16) | fp32 | fp16 | int8.")
    ] = None,
    force_precision: Annotated[
        bool, typer.Option("--force-precision", help="Ship INT8 even when it is slower or over budget.")
    ] = False,
    calib: CalibOpt = None,
    calib_samples: CalibSamplesOpt = None,
    calib_method: CalibMethodOpt = None,
    max_accuracy_drop: AccuracyOpt = None,
    target_option: TargetOptionOpt = None,
    require_target: RequireTargetOpt = False,
    no_fallback: NoFallbackOpt = False,
    max_latency_ms: MaxLatencyOpt = None,
    min_speedup: MinSpeedupOpt = None,
    max_size_mb: MaxSizeOpt = None,
    max_memory_mb: MaxMemoryOpt = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show why each declined match was not rewritten.")
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Optimize MODEL for a target: verified passes, a build folder, and a report.

    [bold]Examples[/bold]

      hwopt optimize model.onnx --target cpu -o build/

      hwopt optimize model.onnx -s input=1x3x224x224 --json > report.json

      hwopt optimize model.onnx --config configs/cpu-portable.toml --explain

      hwopt optimize detector.onnx -s images=1x3x320x320 --static-shapes --target tensorrt
    """
    options = _options(config, {
        "targets": _split_csv(target), "output": output, "input_shapes": _shapes(input_shape), "inputs": inputs,
        "pipeline.passes": _split_csv(passes), "pipeline.skip": skip_pass, "pipeline.strict": strict,
        "static_shapes": static_shapes, "optimize_for": optimize_for, "memory_search": memory_search,
        "fast": fast, "bench.enabled": bench, "bench.seconds": bench_seconds,
        **_precision_flags(precision, force_precision, calib, calib_samples, calib_method, max_accuracy_drop),
        **_target_flags(target_option, require_target, no_fallback),
        "gates.max_latency_ms": max_latency_ms, "gates.min_speedup": min_speedup, "gates.max_size_mb": max_size_mb,
        "gates.max_memory_mb": max_memory_mb, "gates.accuracy": max_accuracy_drop,
    })
    _run_and_report(model, options, json_out, quiet, explain)


def _run_and_report(model: Path, options, json_out: bool, quiet: bool, explain: bool) -> None:
    """Optimize, print the report (JSON or tables), then fail with the run's check, if any."""
    from hwopt.optimize import check_outcome, optimize
    from hwopt.report.live import terminal_progress
    from hwopt.report.render import render_console

    with stdout_reserved_for_json(json_out) as emit:
        with terminal_progress(quiet or json_out) as view:
            report = optimize(model, options, listener=view)
        if json_out:
            emit(report.to_dict())
    if not json_out:
        render_console(report.document(explain=explain), _console(quiet))
    check_outcome(report, options)


def _target_flags(target_option: list[str] | None, require_target: bool, no_fallback: bool) -> dict[str, Any]:
    """--target-option (over the config's target options), --require-target, --no-fallback."""
    from hwopt.errors import UsageError

    target_options: dict[str, dict[str, Any]] = {}
    for item in target_option or []:
        key, sep, value = item.partition("=")
        name, dot, option = key.partition(".")
        if not sep or not dot or not option:
            raise UsageError(f"--target-option '{item}': expected TARGET.KEY=VALUE, e.g. cuda.cuda_graph=true")
        target_options.setdefault(name, {})[option] = _option_value(value)
    # A flag given is True; an absent one leaves the config's (or the default) alone.
    return {"target_options": target_options or None, "require_target": require_target or None,
            "no_fallback": no_fallback or None}


def _option_value(text: str):
    """true/false, integers and floats as such; anything else stays a string."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _precision_flags(precision: str | None, force: bool, calib: Path | None, calib_samples: int | None,
                    calib_method: str | None, max_accuracy_drop: str | None) -> dict[str, Any]:
    return {"precision": precision, "force_precision": force or None, "calibration.path": calib,
            "calibration.samples": calib_samples, "calibration.method": calib_method,
            "max_accuracy_drop": max_accuracy_drop}


# The flag that sets each option key, for messages about a flag's value.
_FLAG_NAMES = {"optimize_for": "--optimize-for"}


def _options(config: Path | None, flags: dict[str, Any]):
    """OptimizeOptions from a config file (if any), then the flags given on the command line
    (None: not given), both through the one options schema (hwopt.options)."""
    from hwopt import schema
    from hwopt.config import load_config
    from hwopt.options import OptimizeOptions

    options = load_config(config) if config else OptimizeOptions()
    given = {key: value for key, value in flags.items() if value is not None}
    return schema.apply(options, given, where="flags", from_config=False, labels=_FLAG_NAMES)


@app.command()
@handle_errors
def quantize(
    model: Annotated[Path, typer.Argument(help="The ONNX model to quantize (never modified).")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Build folder (default: ./<model>.hwopt).")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config; flags win.")] = None,
    input_shape: InputShapeOpt = None,
    calib: CalibOpt = None,
    calib_samples: CalibSamplesOpt = None,
    calib_method: CalibMethodOpt = None,
    max_accuracy_drop: AccuracyOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Ship INT8 even when slower or over budget.")] = False,
    bench_seconds: Annotated[
        float | None, typer.Option("--bench-seconds", min=0.0, help="Timed seconds per variant (default 2).")
    ] = None,
    fast: FastOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Quantize MODEL to INT8 for the CPU: calibrated, the format chosen by measurement on this
    host, sensitive layers kept in float until the accuracy budget holds.

    Exits 3 (and writes the FP32 build) when no INT8 variant is faster than FP32 within the
    budget, unless --force.

    [bold]Examples[/bold]

      hwopt quantize model.onnx --calib calib/ -o build/

      hwopt quantize model.onnx --calib samples.npz --max-accuracy-drop cosine=0.995
    """
    options = _options(config, {
        "targets": ["cpu"], "output": output, "input_shapes": _shapes(input_shape), "fast": fast,
        "bench.seconds": bench_seconds,
        **_precision_flags("int8", force, calib, calib_samples, calib_method, max_accuracy_drop),
    })
    _run_and_report(model, options, json_out, quiet, explain=False)


@app.command()
@handle_errors
def tune(
    model: Annotated[Path, typer.Argument(help="The ONNX model to tune (never modified).")],
    target: Annotated[str, typer.Option("--target", "-t", help="One target: cpu, cuda, tensorrt, openvino or gpu.")] = "cpu",
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output folder: the best build and the reports "
                                  "(default: ./<model>.tune).")
    ] = None,
    budget_minutes: Annotated[
        float, typer.Option("--budget-minutes", min=0.05, help="Time for the whole search (default 5).")
    ] = 5.0,
    max_accuracy_drop: AccuracyOpt = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue an interrupted search from the output folder's results.")
    ] = False,
    recipes: Annotated[
        str | None, typer.Option("--recipes", help="Only these model recipes, comma-separated (see tune.json).")
    ] = None,
    variants: Annotated[
        str | None, typer.Option("--variants", help="Only these session variants, comma-separated.")
    ] = None,
    memory: Annotated[
        bool, typer.Option("--memory/--no-memory", help="Measure peak RSS of the finalists (fresh processes).")
    ] = True,
    workers: Annotated[
        str | None, typer.Option("--workers", help="Run builds and races as Ray tasks: local:N, ray://HOST:PORT "
                                 "or auto (needs hwopt[ray]).")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML config; flags win.")] = None,
    input_shape: InputShapeOpt = None,
    inputs: Annotated[
        Path | None, typer.Option("--inputs", help="Feeds for checks and timing: .npz (one array per input).")
    ] = None,
    calib: CalibOpt = None,
    calib_samples: CalibSamplesOpt = None,
    target_option: TargetOptionOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Search pass pipelines, precisions and session options for one target within a time and
    an accuracy budget; write the best build, every candidate's numbers and the Pareto fronts.

    Ctrl-C stops the search and keeps the best build measured so far; --resume continues.

    [bold]Examples[/bold]

      hwopt tune model.onnx --target cpu --budget-minutes 5 -o tuned/

      hwopt tune model.onnx --calib calib/ --max-accuracy-drop 0.01 --json > tune.json
    """
    from hwopt.report.render import render_console
    from hwopt.tune import TuneOptions
    from hwopt.tune import tune as run_tune

    base = _options(config, {
        "targets": _split_csv(target), "output": output, "input_shapes": _shapes(input_shape), "inputs": inputs,
        "bench.enabled": False,
        **_precision_flags(None, False, calib, calib_samples, None, max_accuracy_drop),
        **_target_flags(target_option, False, False),
    })
    options = TuneOptions(target=target, output_dir=output, budget_seconds=budget_minutes * 60, base=base,
                          resume=resume, recipes=_split_csv(recipes), variants=_split_csv(variants), memory=memory,
                          workers=workers)
    with stdout_reserved_for_json(json_out) as emit, _tune_progress(quiet or json_out) as progress:
        report = run_tune(model, options, progress)
        if json_out:
            emit(report.to_dict())
    if not json_out:
        render_console(report.document(), _console(quiet))
    if report.interrupted.startswith("interrupted"):
        raise KeyboardInterrupt
    if report.interrupted:
        raise guard.Terminated


@contextlib.contextmanager
def _tune_progress(hidden: bool) -> Iterator[Callable[[Any], None] | None]:
    """A progress bar on stderr (a terminal only): candidates done, best so far, time left."""
    if hidden or not sys.stderr.isatty():
        yield None
        return
    from rich.progress import BarColumn, Progress, TextColumn

    with Progress(TextColumn("[bold]tune"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TextColumn("{task.description}"), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("starting", total=1)

        def update(p) -> None:
            best = f"best {p.best} {p.best_ratio:.2f}x" if p.best and p.best_ratio else "no result yet"
            bar.update(task, completed=p.done, total=p.total,
                       description=f"{best} | {p.seconds_left:.0f} s left | {p.step}")

        yield update


@app.command()
@handle_errors
def bench(
    models: Annotated[list[Path], typer.Argument(help="Model files and/or build folders, benchmarked together.")],
    batch: Annotated[
        str | None, typer.Option("--batch", help="Batch sizes, comma-separated (where the batch is dynamic).")
    ] = None,
    input_shape: InputShapeOpt = None,
    inputs: Annotated[
        Path | None, typer.Option("--inputs", help="Feeds to use as given: .npz (one array per input) or .npy.")
    ] = None,
    seconds: Annotated[float, typer.Option("--seconds", min=0.0, help="Timed seconds per variant per batch.")] = 2.0,
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Intra-op threads for every variant (default: cores).")
    ] = None,
    memory: Annotated[
        bool, typer.Option("--memory/--no-memory", help="Peak RSS of each session, each in a fresh process.")
    ] = True,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Benchmark models and builds interleaved in one process: p50/p90/p99, mean, std,
    throughput per batch size, peak memory per session, providers per node.

    [bold]Examples[/bold]

      hwopt bench model.onnx build/ --batch 1,8,32

      hwopt bench build/cpu build/cuda --threads 4 --json
    """
    from hwopt.comparison import BenchOptions, benchmark
    from hwopt.errors import UsageError
    from hwopt.report.live import terminal_progress
    from hwopt.report.render import render_console

    try:
        batches = [int(b) for b in _split_csv(batch)] if batch else [1]
    except ValueError:
        raise UsageError(f"--batch '{batch}': expected positive integers, e.g. 1,8,32") from None
    if any(b < 1 for b in batches):
        raise UsageError(f"--batch '{batch}': batch sizes must be at least 1")
    options = BenchOptions(batches=batches, input_shapes=_shapes(input_shape), inputs_file=inputs,
                           seconds=seconds, threads=threads, memory=memory)
    with stdout_reserved_for_json(json_out) as emit:
        with terminal_progress(quiet or json_out) as view:
            report = benchmark(models, options, listener=view)
        if json_out:
            emit(report.to_dict())
    if not json_out:
        render_console(report.document(), _console(quiet))


@app.command()
@handle_errors
def inspect(
    model: Annotated[Path, typer.Argument(help="The ONNX model to inspect.")],
    input_shape: InputShapeOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Describe MODEL: signature, operators, parameters, MACs/FLOPs and hardware-fit notes.

    [bold]Examples[/bold]

      hwopt inspect model.onnx

      hwopt inspect model.onnx -s tokens=1x128x768 --json
    """
    from hwopt.inspection import inspect_model
    from hwopt.report.render import render_console

    with stdout_reserved_for_json(json_out) as emit:
        report = inspect_model(model, _shapes(input_shape))
        if json_out:
            emit(report.to_dict())
    if not json_out:
        render_console(report.document(), _console())


@app.command("passes")
@handle_errors
def list_passes(
    json_out: JsonOpt = False,
    markdown: Annotated[bool, typer.Option("--markdown", help="Print the full catalog as Markdown.")] = False,
) -> None:
    """List the passes: name, description, targets, opset range, tolerance, options.

    [bold]Examples[/bold]

      hwopt passes --json

      hwopt passes --markdown > docs/passes.md
    """
    from hwopt.report.passes import catalog_markdown, pass_rows
    from hwopt.report.render import Document, Table, render_console

    if markdown:
        sys.stdout.write(catalog_markdown())
        return
    rows = pass_rows()
    if json_out:
        print(json.dumps({"schema": "hwopt.passes/1", "passes": rows}, indent=2))
        return
    table = Table(
        title="Passes",
        columns=("name", "description", "targets", "opsets", "tolerance"),
        rows=[
            (r["name"], r["description"], ",".join(r["targets"]), f"{r['opsets'][0]}-{r['opsets'][1]}",
             "bit-exact" if r["tolerance"]["rtol"] == 0 and r["tolerance"]["atol"] == 0
             else f"rtol {r['tolerance']['rtol']:g}")
            for r in rows
        ],
    )
    render_console(Document(heading="hwopt passes", tables=[table]), _console())


@app.command("targets")
@handle_errors
def list_targets(json_out: JsonOpt = False) -> None:
    """List the targets and whether each can run on this host (and why not).

    [bold]Example[/bold]

      hwopt targets
    """
    from hwopt.report.render import Document, Table, render_console
    from hwopt.targets import get_target, target_names

    described = []
    for name in target_names():
        info = get_target(name).describe()
        info["requested_as"] = name
        described.append(info)
    if json_out:
        print(json.dumps({"schema": "hwopt.targets/1", "targets": described}, indent=2))
        return
    table = Table(
        title="Targets",
        columns=("target", "available", "providers", "precisions", "why not"),
        rows=[
            (d["name"] if d["requested_as"] == d["name"] else f"{d['requested_as']} -> {d['name']}",
             "yes" if d["availability"]["available"] else "no",
             ", ".join(p["name"] for p in d["providers"]), ", ".join(d["precisions"]),
             "; ".join(x for x in (d["alias_note"], d["availability"]["reason"]) if x) or "-")
            for d in described
        ],
    )
    render_console(Document(heading="hwopt targets", tables=[table]), _console())


def main() -> None:
    """The console script: the command runs in a child process under hwopt.guard's limits
    (time per phase, memory, crashes, signals), or in this one when it is that child."""
    if guard.attach() or not guard.wanted():
        try:
            app(prog_name="hwopt")
        except guard.Terminated:  # SIGTERM outside a command (while importing, say)
            print("hwopt: terminated", file=sys.stderr)
            sys.exit(guard.EXIT_SIGTERM)
        return
    sys.exit(guard.supervise(sys.argv[1:]))
