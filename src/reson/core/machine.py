"""This machine: its NVIDIA GPUs as the driver reports them, why torch may not see one, and torch's CPU kernels.

Nothing here imports torch at import time: `reson plan` and the notebook read the GPU from ``nvidia-smi`` alone.
"""

from __future__ import annotations

import os
import platform
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

MIB = 1024**2
GPU_FIELDS = ("name", "memory.total", "compute_cap", "driver_version")  # what nvidia-smi is asked about a GPU


def nvidia_smi(*fields: str) -> list[list[str]] | None:
    """``nvidia-smi --query-gpu`` for ``fields``: one row of stripped values per GPU; None without a working
    nvidia-smi (no NVIDIA GPU or driver)."""
    try:
        output = subprocess.run(
            ["nvidia-smi", f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    rows = [[value.strip() for value in line.split(",")] for line in output.splitlines() if line.strip()]
    return [row for row in rows if len(row) == len(fields)] or None


@dataclass(frozen=True)
class VisibleGPU:
    name: str
    memory: int  # bytes, as nvidia-smi reports them
    capability: tuple[int, int]  # compute capability: (7, 5) for a T4, (9, 0) for an H100
    driver: str  # the NVIDIA driver's version, "580.82.07"

    @property
    def native_bf16(self) -> bool:
        """Compute capability 8.0 or newer (Ampere on); torch emulates bf16 slowly before that."""
        return self.capability >= (8, 0)


def parse_gpu(row: Sequence[str]) -> VisibleGPU | None:
    """A GPU from one row of ``nvidia-smi --query-gpu=name,memory.total,compute_cap,driver_version`` (the values of
    ``"Tesla T4, 15360, 7.5, 550.54.15"``); None where a value is not a number ("[N/A]" on some virtual GPUs)."""
    name, mib, capability, driver = (value.strip() for value in row)
    major, _, minor = capability.partition(".")
    if not (major.isdigit() and minor.isdigit() and driver.split(".")[0].isdigit()):
        return None
    try:
        memory = int(float(mib)) * MIB
    except ValueError:
        return None
    return VisibleGPU(name, memory, (int(major), int(minor)), driver)


def visible_gpu() -> VisibleGPU | None:
    """The first GPU this process may use, from nvidia-smi (no torch needed, so a notebook can ask before installing
    anything); None without one, or when CUDA_VISIBLE_DEVICES hides them all."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() in ("", "-1"):
        return None
    rows = nvidia_smi(*GPU_FIELDS)
    return parse_gpu(rows[0]) if rows else None


def cuda_problem() -> str:
    """Why torch sees no CUDA GPU, in words: torch 2.13's wheels are CUDA 13 builds that need driver 580 or newer."""
    rows = nvidia_smi("driver_version")
    if rows is None:
        return "this machine has no NVIDIA GPU that torch can use"
    driver = rows[0][0]
    major = int(driver.split(".")[0]) if driver.split(".")[0].isdigit() else 0
    if major < 580:
        return (
            f"NVIDIA driver {driver} is too old for torch 2.13's CUDA 13 build (it needs 580 or newer): update "
            "the driver"
        )
    return f"torch cannot use the GPU (NVIDIA driver {driver}); check that torch was installed with CUDA"


# The environment that fixes which CPU kernels torch runs; set before torch runs its first operation.
CPU_KERNEL_PINS = {
    "ATEN_CPU_CAPABILITY": "avx2",  # ATen's own kernels: one compiled family, the same code on Intel and AMD
    "MKL_CBWR": "COMPATIBLE",  # MKL's matrix products and vector maths: its one branch for Intel and non-Intel alike
}


def pin_cpu_kernels() -> None:
    """Pin torch's CPU kernels to code paths that do not depend on the processor's vendor or extensions.

    ATen picks AVX-512 or AVX2 kernels from the processor: `avx2` fixes one family, which every current x86 processor
    runs. MKL (every matrix product, and exp, log, sqrt through its vector maths) picks its code path too, and
    honours a fixed branch such as `AVX2` on Intel processors only: elsewhere it falls back to its automatic choice
    (oneMKL developer guide, conditional numerical reproducibility). `COMPATIBLE`, a single SSE2 path without
    approximate instructions, is the branch MKL runs the same on Intel and non-Intel processors. oneDNN, which has its
    own ISA dispatch, runs none of the miniature's float32 work (docs/benchmarks.md, "Miniature: CPU kernels by
    vendor"). Call this before torch runs its first operation; a value the user already set wins.
    """
    for name, value in CPU_KERNEL_PINS.items():
        os.environ.setdefault(name, value)


def cpu_kernel_settings() -> dict:
    """The kernel settings in force, for a record of a run: ATen's family as torch reports it and MKL's branch."""
    import torch

    return {
        "aten": torch.backends.cpu.get_cpu_capability(),
        "mkl_cbwr": os.environ.get("MKL_CBWR", "unset"),
    }


def processor_name() -> str:
    """The processor's model name ("Intel(R) Xeon(R) Processor", "AMD EPYC 7B13"), as /proc/cpuinfo gives it."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
