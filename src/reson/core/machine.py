"""This machine: its NVIDIA GPUs as the driver reports them, why torch may not see one, and torch's CPU kernels.

Nothing here imports torch: `reson plan` and the notebook read the GPU from ``nvidia-smi`` alone.
"""

from __future__ import annotations

import os
import subprocess


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
