"""Facts about the host that decide what is fastest on it, recorded in every build and report.

The right INT8 format, thread count and even fusion choice differ between a laptop with AVX2,
a server with AVX-512 VNNI and one with AMX, so the CPU's instruction sets are read (from
/proc/cpuinfo on Linux, ``sysctl`` on macOS) and kept beside every measurement.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort

from hwopt.session import physical_cores

# Instruction sets that matter for ONNX Runtime's CPU kernels, by /proc/cpuinfo flag name.
ISA_FLAGS = {
    "sse4_1": "SSE4.1",
    "avx": "AVX",
    "avx2": "AVX2",
    "fma": "FMA",
    "f16c": "F16C",
    "avx_vnni": "AVX-VNNI",
    "avx512f": "AVX-512F",
    "avx512bw": "AVX-512BW",
    "avx512_vnni": "AVX-512 VNNI",
    "avx512_bf16": "AVX-512 BF16",
    "avx512_fp16": "AVX-512 FP16",
    "amx_tile": "AMX",
    "amx_int8": "AMX-INT8",
    "amx_bf16": "AMX-BF16",
    "asimd": "NEON",
    "asimddp": "NEON dot-product",
    "i8mm": "I8MM",
    "sve": "SVE",
}


@dataclasses.dataclass(frozen=True)
class HostInfo:
    cpu: str
    machine: str
    cores: int
    isa: tuple[str, ...]
    memory_bytes: int | None
    os: str
    python: str
    onnxruntime: str
    providers: tuple[str, ...]

    @property
    def has_vnni(self) -> bool:
        return any(flag in self.isa for flag in ("AVX-512 VNNI", "AVX-VNNI", "NEON dot-product"))

    def to_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["has_vnni"] = self.has_vnni
        return data


@functools.cache
def host_info() -> HostInfo:
    cpu, flags = _cpu_model_and_flags()
    return HostInfo(
        cpu=cpu,
        machine=platform.machine(),
        cores=physical_cores(),
        isa=tuple(label for flag, label in ISA_FLAGS.items() if flag in flags),
        memory_bytes=_memory_bytes(),
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        onnxruntime=ort.__version__,
        providers=tuple(ort.get_available_providers()),
    )


def _cpu_model_and_flags() -> tuple[str, set[str]]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        model, flags = platform.processor() or platform.machine(), set()
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key in ("model name", "Model", "cpu model") and model in ("", platform.machine()):
                model = value.strip()
            elif key in ("flags", "Features") and not flags:
                flags = set(value.split())
        return model, flags
    if sys.platform == "darwin":
        return _sysctl("machdep.cpu.brand_string"), set(
            _sysctl("machdep.cpu.features").lower().split()
            + _sysctl("machdep.cpu.leaf7_features").lower().split()
        )
    return platform.processor() or platform.machine(), set()


def _sysctl(key: str) -> str:
    try:
        return subprocess.run(
            ["sysctl", "-n", key], capture_output=True, text=True, timeout=5, check=False
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _memory_bytes() -> int | None:
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return None
