"""What to install on a GPU machine before training: the torch it has if that torch runs there, reson's training stack
around it without touching it, and the one vLLM built for it, if any.

A platform such as Colab ships a torch built for its own CUDA and driver. `pip install reson-llm[train]` on its own
could swap in a torch the driver cannot run (torch 2.13's PyPI wheels are CUDA 13 builds: driver 580 or newer), and
the platform's torchvision, built for the old torch, then breaks transformers' Trainer import. So the plan is a pure
function of what the machine has (`MachineState`: nvidia-smi and package metadata, read without importing torch):

1. **torch** is kept when it runs here: release >= TORCH_FLOOR, a CUDA build the driver runs (DRIVER_FOR_CUDA), kernels
   for this GPU (ARCHS). Otherwise the newest PyPI release that does runs in its place (PYPI_CUDA, no newer than the
   tested one), with torchvision and torchaudio removed: they were built for the old torch, reson uses neither, and
   transformers imports them whenever they are installed. When no release does, the plan refuses the GPU in one line
   and is the CPU's (the notebook then runs the miniature).
2. **The training extra** is installed with that torch (and a kept torchvision or torchaudio) pinned in a constraints
   file, so pip cannot replace it.
3. **vLLM**, for a recipe that generates with it: the newest in TRL's range whose exact torch pin is that torch and
   whose CUDA build the torch and the driver share (VLLM). Else none, and the recipe generates with transformers
   (the plan's ``overrides``, VLLM_OFF, which `reson.tools.plan.choose_recipe` sizes the recipe with).

The Colab notebook gathers the state, prints the plan and runs it; tests/test_install_plan.py holds recorded states.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import platform
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from reson.core.machine import VisibleGPU, visible_gpu

# The oldest torch reson trains with (pyproject's `train` extra says why): TRL 1.16 accumulates its fused log-probs'
# vocabulary tiles in fp32 only from torch 2.8 (trl/kernels/chunked_logprob.py).
TORCH_FLOOR = (2, 8)
TESTED_TORCH = "2.13.0"  # requirements.txt's torch: the newest the plan installs (a test keeps the two equal)

# CUDA major -> the oldest NVIDIA driver that runs a build for it, by CUDA's minor-version compatibility (NVIDIA, "CUDA
# Compatibility", Table 1: 13.x >= 580, 12.x >= 525, 11.x >= 450). Colab ran torch 2.8.0+cu126 on driver 550.54.15 so.
DRIVER_FOR_CUDA = {11: 450, 12: 525, 13: 580}

# torch release -> the CUDA its PyPI wheel for Linux x86_64 is built for, from the wheels' METADATA (their nvidia-cuda-
# runtime / cuda-toolkit pins); 2.11 moved the default to CUDA 13.0 (googlecolab/colabtools#5925).
PYPI_CUDA = {
    (2, 8): "12.8",
    (2, 9): "12.8",
    (2, 10): "12.8",
    (2, 11): "13.0",
    (2, 12): "13.0",
    (2, 13): "13.0",
    (2, 14): "13.0",
}

# The compute capabilities a CUDA build's kernels cover, from PyTorch's RELEASE.md build matrices (pytorch#172352,
# #175253, #172663, #182849): (CUDA version prefix, first torch release the row holds for, oldest capability, newest
# or None where the build carries PTX for newer GPUs). The first matching row wins; a build with no row is trusted.
ARCHS = (
    ("12.4", (2, 0), (5, 0), (9, 0)),
    ("12.6", (2, 0), (5, 0), (9, 0)),  # no Blackwell
    ("12.8", (2, 11), (7, 5), None),  # 2.11's cu128 build dropped Volta (V100, 7.0)
    ("12.8", (2, 8), (7, 0), None),  # 2.8 dropped Maxwell and Pascal from cu128
    ("12.9", (2, 11), (7, 5), None),  # cu129 taken to match cu128 (the matrices we read do not list it)
    ("12.9", (2, 8), (7, 0), None),
    ("13.", (2, 0), (7, 5), None),  # CUDA 13 itself has no Volta
)

# torch release -> the torchvision release built for it (torchvision's compatibility table: 0.23 for 2.8, ...).
TORCHVISION = {(2, minor): (0, minor + 15) for minor in range(8, 15)}

# The newest vLLM in TRL 1.16's range (0.22.0-0.31.0, trl/import_utils.py) for each torch a vLLM pins exactly (wheel
# METADATA: vllm 0.22.0-0.26.0 pin torch==2.11.0, 0.27.0-0.31.0 pin torch==2.13.0; all accept transformers 5.17.0).
VLLM = {"2.13.0": "0.31.0", "2.11.0": "0.26.0"}
VLLM_CUDA = 13  # vLLM's PyPI wheels are CUDA 13.0 builds from 0.20 on (vllm-project/router#154, vllm#47628): a cu12x
#                 torch cannot load their kernels (vllm#44335), and the driver must run CUDA 13
VLLM_CAPABILITY = (7, 5)  # vLLM's GPU install docs: compute capability 7.5 or higher
VLLM_PYTHON = (3, 15)  # their wheels are for Python >= 3.10, < 3.15

# What turns a vLLM recipe into one that generates with transformers: TRL's generator, and no generation_kwargs, which
# in the recipes hold only vLLM's options (a stop string, refused without vLLM, and include_stop_str_in_output).
VLLM_OFF = ("--use_vllm", "false", "--generation_kwargs", "{}")


@dataclasses.dataclass(frozen=True)
class MachineState:
    """What the plan depends on, as found on the machine (or recorded from one)."""

    gpu: VisibleGPU | None  # None: no NVIDIA GPU, or none visible
    python: str  # "3.12.12"
    torch: str | None = None  # the installed release, "2.11.0+cu130"; None: no torch
    torch_cuda: str | None = None  # the CUDA it was built for, "13.0"; "cpu" for a CPU build; None: not known
    torchvision: str | None = None
    torchaudio: str | None = None


@dataclasses.dataclass(frozen=True)
class InstallPlan:
    """What to do on the machine; `stack`, `vllm_step` and `commands` put it in pip's words."""

    torch: str  # the torch training will use: the one installed ("2.11.0+cu130") or the requirement ("torch==2.10.*")
    install_torch: bool  # False: the machine's torch is kept
    remove: tuple[str, ...]  # packages to uninstall first (built for another torch)
    constraints: tuple[str, ...]  # the constraints file's lines: what pip may not replace
    vllm: str | None  # "vllm==0.26.0": the vLLM built for that torch and this driver; None: none is
    notes: tuple[str, ...]  # why, one line each
    refused: str | None = None  # no torch trains on this GPU here: the line that says so (the plan is the CPU's)
    repo: str = "."  # what `pip install` installs reson from: a clone, or the package's name
    constraints_file: str = "constraints.txt"
    overrides: tuple[str, ...] = ()  # for a recipe that generates with vLLM: VLLM_OFF where no vLLM can run here

    def stack(self) -> list[list[str]]:
        """``pip`` arguments, one list a command, that put torch and the training extra in place: removals, torch,
        then the extra under the constraints file."""
        steps = [["uninstall", "-y", *self.remove]] if self.remove else []
        if self.install_torch:
            steps.append(["install", self.torch])
        return [*steps, ["install", f"{self.repo}[train]", "-c", self.constraints_file]]

    def vllm_step(self, use_vllm: bool) -> list[list[str]]:
        """The vLLM install for a recipe that generates with vLLM (``use_vllm``), where one is built for this torch."""
        return [["install", self.vllm, "-c", self.constraints_file]] if use_vllm and self.vllm else []

    def commands(self, use_vllm: bool) -> list[list[str]]:
        """The whole plan for a recipe that does or does not generate with vLLM."""
        return [*self.stack(), *self.vllm_step(use_vllm)]

    def describe(self) -> str:
        """What the plan decided and why, as the notebook prints it before `carry_out` runs the commands."""
        return "\n".join([*self.notes, f"{self.constraints_file} holds {', '.join(self.constraints)}"])


def release(version: str) -> tuple[int, ...]:
    """The numeric release of a version string: "2.11.0+cu130" -> (2, 11, 0)."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def _cuda_major(cuda: str) -> int:
    return int(cuda.split(".")[0])


def _covers(torch_release: tuple[int, ...], cuda: str, capability: tuple[int, int]) -> bool:
    """Whether torch's CUDA build ``cuda`` has kernels for a GPU of ``capability`` (ARCHS)."""
    for prefix, since, oldest, newest in ARCHS:
        if cuda.startswith(prefix) and torch_release[:2] >= since:
            return capability >= oldest and (newest is None or capability <= newest)
    return True


def _driver_runs(driver: str, cuda: str) -> bool:
    need = DRIVER_FOR_CUDA.get(_cuda_major(cuda))
    return need is not None and int(driver.split(".")[0]) >= need


def torch_problem(state: MachineState) -> str | None:
    """Why the installed torch cannot train on this machine, in words; None when it can."""
    if state.torch is None:
        return "no torch is installed"
    found = release(state.torch)
    if found[:2] < TORCH_FLOOR:
        return f"torch {state.torch} is older than {'.'.join(map(str, TORCH_FLOOR))}, the oldest reson trains with"
    if state.gpu is None:
        return None  # the CPU: any build runs
    cuda = state.torch_cuda or PYPI_CUDA.get(found[:2])  # not known: the PyPI wheel's build
    if cuda is None:
        return None  # a release newer than the tables: trusted
    if cuda == "cpu":
        return f"torch {state.torch} is a CPU build"
    gpu = state.gpu
    if not _driver_runs(gpu.driver, cuda):
        need = DRIVER_FOR_CUDA.get(_cuda_major(cuda), "a newer")
        return f"torch {state.torch}'s CUDA {cuda} build needs NVIDIA driver {need} or newer; this one is {gpu.driver}"
    if not _covers(found, cuda, gpu.capability):
        return f"torch {state.torch}'s CUDA {cuda} build has no kernels for the {gpu.name} ({_cc(gpu.capability)})"
    return None


def _cc(capability: tuple[int, int]) -> str:
    return f"compute capability {capability[0]}.{capability[1]}"


def _torch_to_install(gpu: VisibleGPU | None) -> tuple[str, tuple[int, int], str] | None:
    """(requirement, release, CUDA) of the newest PyPI torch, no newer than the tested one, that runs on ``gpu``."""
    tested = release(TESTED_TORCH)[:2]
    for version in sorted((v for v in PYPI_CUDA if v <= tested), reverse=True):
        cuda = PYPI_CUDA[version]
        if gpu is None or (_driver_runs(gpu.driver, cuda) and _covers(version, cuda, gpu.capability)):
            requirement = f"torch=={TESTED_TORCH}" if version == tested else f"torch=={version[0]}.{version[1]}.*"
            return requirement, version, cuda
    return None


def _vllm_for(torch_version: str, cuda: str, state: MachineState) -> tuple[str | None, str]:
    """(the vLLM requirement for this torch, GPU and Python, or None; why, in words)."""
    gpu = state.gpu
    if gpu is None:
        return None, "no GPU: no vLLM"
    base = ".".join(map(str, release(torch_version)))
    version = VLLM.get(base)
    if version is None:
        pins = ", ".join(f"vLLM {v} pins torch {t}" for t, v in VLLM.items())
        return None, f"no vLLM in TRL's range pins torch {base} ({pins})"
    if not cuda[:1].isdigit() or _cuda_major(cuda) != VLLM_CUDA:
        return None, f"vLLM {version}'s wheels are CUDA {VLLM_CUDA} builds, and torch {torch_version} is CUDA {cuda}"
    if not _driver_runs(gpu.driver, f"{VLLM_CUDA}"):
        return None, f"vLLM {version} needs NVIDIA driver {DRIVER_FOR_CUDA[VLLM_CUDA]} or newer ({gpu.driver} here)"
    if gpu.capability < VLLM_CAPABILITY:
        return None, f"vLLM needs {_cc(VLLM_CAPABILITY)} or newer; the {gpu.name} has {_cc(gpu.capability)}"
    if release(state.python)[:2] >= VLLM_PYTHON:
        return None, f"vLLM {version} has no wheel for Python {state.python}"
    return (
        f"vllm=={version}",
        f"vLLM {version} is built for torch {base} and CUDA {VLLM_CUDA}: installed for a recipe that uses it",
    )


def install_plan(state: MachineState, repo: str = ".", constraints_file: str = "constraints.txt") -> InstallPlan:
    """The plan for a machine in ``state`` (module docstring); ``repo`` is what pip installs reson from."""
    where = {"repo": repo, "constraints_file": str(constraints_file)}
    problem = torch_problem(state)
    gpu = state.gpu
    if problem is None:  # keep it, and whatever was built for it
        cuda = state.torch_cuda or PYPI_CUDA.get(release(state.torch)[:2]) or "unknown"
        torch, notes = state.torch, [f"torch {state.torch} (CUDA {cuda}) runs here: kept"]
        remove, constraints = [], [f"torch=={state.torch}"]
        tv = TORCHVISION.get(release(state.torch)[:2])
        if state.torchvision and tv and release(state.torchvision)[:2] != tv:
            remove.append("torchvision")
            notes.append(f"torchvision {state.torchvision} is not built for torch {state.torch}: removed")
        elif state.torchvision:
            constraints.append(f"torchvision=={state.torchvision}")
        if state.torchaudio:
            constraints.append(f"torchaudio=={state.torchaudio}")
    else:
        chosen = _torch_to_install(gpu)
        if chosen is None:  # the GPU is left out: the plan is the CPU's, under the line that says why
            refused = (
                f"{problem}; no torch from {'.'.join(map(str, TORCH_FLOOR))} on runs on the {gpu.name} "
                f"({_cc(gpu.capability)}) with NVIDIA driver {gpu.driver}: use another GPU or update the driver; "
                "only the CPU is used here"
            )
            cpu = install_plan(dataclasses.replace(state, gpu=None), repo, constraints_file)
            return dataclasses.replace(cpu, refused=refused, notes=(refused, *cpu.notes))
        torch, version, cuda = chosen
        remove = [name for name in ("torchvision", "torchaudio") if getattr(state, name)]
        note = f"{problem}: installs {torch} (CUDA {cuda})"
        if remove:
            note += f", and removes {' and '.join(remove)} (built for the torch it replaces)"
        notes, constraints = [note], [torch]
    vllm, why = _vllm_for(torch, cuda, state)
    if gpu is not None:
        notes.append(
            why if vllm else f"{why}: a recipe that uses vLLM generates with transformers ({' '.join(VLLM_OFF)})"
        )
    return InstallPlan(
        torch=torch,
        install_torch=problem is not None,
        remove=tuple(remove),
        constraints=tuple(constraints),
        vllm=vllm,
        notes=tuple(notes),
        overrides=() if vllm or gpu is None else VLLM_OFF,
        **where,
    )


# ---------------------------------------------------------------------------------------------------------------------
# This machine


def _installed(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def torch_cuda() -> str | None:
    """The CUDA the installed torch was built for ("13.0"; "cpu" for a CPU build), read from torch/version.py as text
    (importing torch would load CUDA), else from a local version label ("+cu128"); None when neither says."""
    version = _installed("torch")
    if version is None:
        return None
    try:
        text = Path(importlib.metadata.distribution("torch").locate_file("torch/version.py")).read_text()
    except OSError:
        text = ""
    found = re.search(r"^cuda\b[^=\n]*=\s*(None|['\"]([\d.]+)['\"])", text, re.MULTILINE)
    if found:
        return found.group(2) or "cpu"
    label = version.partition("+")[2]
    if label == "cpu":
        return "cpu"
    digits = re.fullmatch(r"cu(\d+)(\d)", label)
    return f"{digits.group(1)}.{digits.group(2)}" if digits else None


def machine_state() -> MachineState:
    """This machine's state: nvidia-smi for the GPU and driver, package metadata for torch and its companions."""
    return MachineState(
        gpu=visible_gpu(),
        python=platform.python_version(),
        torch=_installed("torch"),
        torch_cuda=torch_cuda(),
        torchvision=_installed("torchvision"),
        torchaudio=_installed("torchaudio"),
    )


def carry_out(plan: InstallPlan, steps: Sequence[Sequence[str]], dry_run: bool = False) -> None:
    """Run ``steps`` (some of ``plan``'s pip commands) with this Python after writing the constraints file, printing
    each first; with ``dry_run`` only print them."""
    if steps and not dry_run:
        Path(plan.constraints_file).write_text("\n".join(plan.constraints) + "\n")
    for step in steps:
        print(f"$ pip {' '.join(step)}" + ("   (dry run: not run)" if dry_run else ""), flush=True)
        if not dry_run:
            subprocess.run([sys.executable, "-m", "pip", *step], check=True)
    importlib.invalidate_caches()
