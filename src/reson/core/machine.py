"""This machine: its NVIDIA GPUs as the driver reports them, why torch may not see one, and torch's CPU kernels.

Nothing here imports torch: `reson plan` and the notebook read the GPU from ``nvidia-smi`` alone.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

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


def pin_cpu_kernels() -> None:
    """Pin torch's CPU kernels to one family, so a CPU run's floats do not depend on the processor's extensions.

    ATen picks AVX-512 or AVX2 kernels and MKL its code path from the processor; either changes the weights (two
    1-thread builds of one seed: another hash with each). AVX2 is the family current x86 processors share. Call it
    before torch runs its first operation; a value the user already set wins.
    """
    os.environ.setdefault("ATEN_CPU_CAPABILITY", "avx2")
    os.environ.setdefault("MKL_CBWR", "AVX2")
