"""Config files: every key checked, precedence CLI > config > defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SAMPLES, invoke_cli

from hwopt.config import load_config, parse_config
from hwopt.errors import ConfigError

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_full_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("""
targets = "cpu"
inputs = "feeds.npz"
[input_shapes]
x = [1, 3, 64, 64]
[pipeline]
skip = ["fold_batchnorm"]
strict = true
[bench]
seconds = 0.5
""")
    options = load_config(path)
    assert options.targets == ["cpu"]
    assert options.inputs_file == tmp_path / "feeds.npz"
    assert options.input_shapes == {"x": (1, 3, 64, 64)}
    assert options.skip_passes == ["fold_batchnorm"] and options.strict is True
    assert options.bench.target_seconds == 0.5


@pytest.mark.parametrize(
    "data, message",
    [
        ({"target": "cpu"}, "unknown key.*target;.*known: bench, calibration, fast, gates, input_shapes"),
        ({"pipeline": {"pases": []}}, r"unknown key\(s\) pases"),
        ({"pipeline": {"strict": 1}}, "must be a bool"),
        ({"input_shapes": {"x": [1, 0]}}, "positive integers"),
        ({"bench": {"seconds": True}}, "must be a int or float"),
    ],
)
def test_bad_configs(data, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_config(data)


def test_unknown_pass_option_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[passes.simplify]\nwarp = 9\n')
    proc = invoke_cli("optimize", SAMPLES / "resnext_tiny.onnx", "-c", path, "-o", tmp_path / "b", "--no-bench",
                      "--precision", "fp32")
    assert proc.returncode == 2
    assert "pass 'simplify': unknown option(s) warp" in proc.stderr


def test_cli_flag_beats_config(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[pipeline]\npasses = ["fold_batchnorm"]\n[bench]\nenabled = false\n')
    proc = invoke_cli("optimize", "--no-memory-search", SAMPLES / "resnext_tiny.onnx", "-c", path, "--passes", "simplify",
                      "--precision", "fp32",
                   "-o", tmp_path / "b", "--json")
    assert proc.returncode == 0, proc.stderr
    build = json.loads(proc.stdout)["builds"][0]
    assert [p["name"] for p in build["passes"]] == ["simplify"]
    assert build["latency"]["measured"] is False  # from the config: the CLI did not say


@pytest.mark.parametrize("preset", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.stem)
def test_presets_parse(preset: Path) -> None:
    load_config(preset)


def test_optimize_for_from_a_config_and_the_flag() -> None:
    assert (parse_config({"optimize_for": "memory"})).optimize_for == "memory"
    assert (parse_config({})).optimize_for == "balanced"
    with pytest.raises(ConfigError, match="optimize_for must be one of balanced, latency, memory"):
        parse_config({"optimize_for": "smallest"})
    proc = invoke_cli("optimize", SAMPLES / "resnext_tiny.onnx", "--optimize-for", "smallest")
    assert proc.returncode == 2 and "--optimize-for must be one of" in proc.stderr


def test_fast_from_a_config() -> None:
    assert (parse_config({"fast": True})).fast is True
    assert (parse_config({})).fast is False
    with pytest.raises(ConfigError, match="fast"):
        parse_config({"fast": "yes"})
