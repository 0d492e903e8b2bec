"""What the notebook installs on a GPU machine, decided from recorded machine states: it keeps a torch that runs there,
installs vLLM only where one is built for that torch and driver, and otherwise falls back without breaking anything.

Where each state comes from: Colab's images are googlecolab/backend-info's pip freezes (commit and date given), its
drivers the nvidia-smi output quoted in googlecolab/colabtools issues; the nvidia-smi strings are the
`name, memory.total, compute_cap, driver_version` lines those GPUs print under 5xx drivers.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from reson.core.machine import MIB, VisibleGPU, parse_gpu
from reson.tools import install_plan as ip
from reson.tools.install_plan import VLLM_OFF, MachineState, install_plan

ROOT = Path(__file__).resolve().parents[1]

T4, L4, A100 = "Tesla T4, 15360, 7.5", "NVIDIA L4, 23034, 8.9", "NVIDIA A100-SXM4-40GB, 40960, 8.0"
H100, V100 = "NVIDIA H100 80GB HBM3, 81559, 9.0", "Tesla V100-SXM2-32GB, 32768, 7.0"
G4 = "NVIDIA RTX PRO 6000 Blackwell Server Edition, 97887, 12.0"

# Colab's images by the driver under them: (driver, Python, torch, its CUDA, torchvision, torchaudio, source)
COLAB_550 = [
    # driver 550.54.15 on T4s from colabtools#5081 (2025-02) to #5667 (2025-10) and NVDLI/notebooks#12 (2026-01)
    ("550.54.15", "3.12.12", "2.8.0+cu126", "12.6", "0.23.0+cu126", None, "backend-info 7a0599e, runtime 2025.10"),
    ("550.54.15", "3.12.12", "2.9.0+cu126", "12.6", "0.24.0+cu126", None, "backend-info bd8aaa4, 2026-01-16"),
]
COLAB_570 = [
    # the Feb-Apr 2026 images carry cuda-compat-12-8 570.124.06; the host driver under them is not recorded, so the
    # 570 branch those images were built for stands in for it
    ("570.124.06", "3.12.12", "2.9.0+cu128", "12.8", "0.24.0+cu128", None, "backend-info 66982a1, 2026-02-05"),
    ("570.124.06", "3.12.13", "2.10.0+cu128", "12.8", "0.25.0+cu128", None, "backend-info 77d5dbe, runtime 2026.04"),
]
COLAB_580 = [
    # driver 580.82.07 (nvidia-smi reports CUDA 13.0) from 2026-06-17 to 2026-10-07 on T4, L4 and A100
    ("580.82.07", "3.12.13", "2.11.0+cu128", "12.8", "0.26.0+cu128", "2.11.0+cu128", "backend-info 03a8903, 2026-06"),
    ("580.82.07", "3.13.15", "2.11.0+cu128", "12.8", "0.26.0+cu128", "2.11.0+cu128", "backend-info a724079, 2026-08"),
    ("580.82.07", "3.13.15", "2.11.0+cu130", "13.0", "0.26.0+cu130", None, "release 20261002 (env-002), 2026-10"),
]


def state(line: str, driver: str, python: str, torch=None, cuda=None, vision=None, audio=None) -> MachineState:
    return MachineState(parse_gpu(f"{line}, {driver}".split(",")), python, torch, cuda, vision, audio)


COLAB = [
    pytest.param(state(gpu, *image[:-1]), id=f"{gpu.split(',')[0]}-{image[0]}-{image[2]}")
    for image in COLAB_550 + COLAB_570 + COLAB_580
    for gpu in (T4, L4, A100)
]
OTHERS = [
    # an H100 box with driver 580: torch 2.13 from PyPI (its CUDA read from torch/version.py), or none yet
    pytest.param(state(H100, "580.82.07", "3.12.3", "2.13.0", "13.0"), id="h100-580-torch2.13"),
    pytest.param(state(H100, "580.82.07", "3.12.3"), id="h100-580-no-torch"),
    pytest.param(state(H100, "580.82.07", "3.12.3", "2.13.0+cpu", "cpu"), id="h100-580-cpu-torch"),
    # a T4 on Colab's 550 driver after `pip install .[train]` swapped in torch 2.13 (issue 21's failure)
    pytest.param(state(T4, "550.54.15", "3.12.12", "2.13.0", "13.0", "0.23.0+cu126"), id="t4-550-after-bad-install"),
    # an L4 whose driver 535 cannot run torch 2.13 (SkyPilot GCP image, 2026-08: "found version 12020")
    pytest.param(state(L4, "535.216.01", "3.12.3", "2.13.0+cu130", "13.0"), id="l4-535-torch2.13"),
    # Colab's March 2025 image: torch below the floor
    pytest.param(state(T4, "550.54.15", "3.11.11", "2.6.0+cu124", "12.4", "0.21.0+cu124"), id="t4-550-torch2.6"),
    # a V100 (7.0): torch 2.11+ default builds have no Volta kernels, 2.10's cu128 does
    pytest.param(state(V100, "580.82.07", "3.12.3", "2.13.0+cu130", "13.0"), id="v100-580-torch2.13"),
    # Colab's G4 (Blackwell, 12.0) on its current image; and under a cu126 torch, which has no Blackwell kernels
    pytest.param(state(G4, "580.82.07", "3.13.15", "2.11.0+cu130", "13.0", "0.26.0+cu130"), id="g4-580-torch2.11"),
    pytest.param(state(G4, "580.82.07", "3.12.12", "2.8.0+cu126", "12.6"), id="g4-580-torch2.8-cu126"),
]
REFUSED = [
    # Colab's V100 of 2020-21 on driver 418.67 (colabtools#1813): no torch from 2.8 on runs on it
    pytest.param(state("Tesla V100-SXM2-16GB, 16130, 7.0", "418.67", "3.7.10"), id="v100-418"),
    # a K80 (3.7): no kernels in any build from 2.8 on
    pytest.param(state("Tesla K80, 11441, 3.7", "470.82.01", "3.11.0", "2.13.0", "13.0"), id="k80-470"),
]


# ---------------------------------------------------------------------------------------------------------------------
# Invariants over every recorded state


@pytest.mark.parametrize("machine", COLAB + OTHERS)
def test_a_torch_that_runs_is_never_replaced(machine):
    plan = install_plan(machine)
    if ip.torch_problem(machine) is None:
        assert not plan.install_torch and plan.torch == machine.torch
        assert plan.constraints[0] == f"torch=={machine.torch}"  # pip may not move it
        assert not any(arg.startswith("torch") for step in plan.commands(use_vllm=True) for arg in step[1:])
        assert "torchaudio" not in plan.remove  # built with the platform's torch, as torchvision is
    else:  # the torch it installs runs here, and nothing built for the old one is left behind
        requirement = plan.torch.removeprefix("torch==")
        version = ip.release(requirement)[:2]
        cuda = ip.PYPI_CUDA[version]
        assert ip._driver_runs(machine.gpu.driver, cuda) and ip._covers(version, cuda, machine.gpu.capability)
        assert set(plan.remove) == {n for n in ("torchvision", "torchaudio") if getattr(machine, n)}
        assert plan.stack()[-2:] == [["install", plan.torch], ["install", ".[train]", "-c", "constraints.txt"]]
    # the training extra is always installed under the constraints, after torch is settled
    assert plan.stack()[-1] == ["install", ".[train]", "-c", "constraints.txt"]


@pytest.mark.parametrize("machine", COLAB + OTHERS)
def test_vllm_only_where_one_is_built_for_that_torch_and_driver(machine):
    plan = install_plan(machine)
    if plan.vllm is None:
        assert plan.vllm_step(use_vllm=True) == [] and plan.overrides == VLLM_OFF
        return
    version = plan.vllm.removeprefix("vllm==")
    torch = ip.release(plan.torch.removeprefix("torch=="))
    assert ip.VLLM[".".join(map(str, torch))] == version  # vLLM's exact torch pin is that torch
    cuda = machine.torch_cuda if not plan.install_torch else ip.PYPI_CUDA[torch[:2]]
    assert cuda.startswith("13.") and int(machine.gpu.driver.split(".")[0]) >= 580  # its CUDA 13 build runs
    assert machine.gpu.capability >= (7, 5) and plan.overrides == ()
    assert plan.vllm_step(use_vllm=True) == [["install", plan.vllm, "-c", "constraints.txt"]]
    assert plan.vllm_step(use_vllm=False) == []


@pytest.mark.parametrize("machine", REFUSED)
def test_a_gpu_no_torch_runs_on_is_refused_in_one_line(machine):
    plan = install_plan(machine)
    assert plan.refused and "\n" not in plan.refused and machine.gpu.name in plan.refused
    assert "no torch from 2.8 on runs on" in plan.refused and plan.describe().startswith(plan.refused)
    # what is installed is the CPU's plan: no vLLM, nothing about the GPU
    cpu = install_plan(MachineState(None, machine.python, machine.torch, machine.torch_cuda))
    assert plan.commands(use_vllm=True) == cpu.commands(use_vllm=True) and plan.vllm is None


# ---------------------------------------------------------------------------------------------------------------------
# What each recorded state gets


EXPECTED = {
    # id: (torch installed, or None: the machine's kept; vLLM)
    "h100-580-torch2.13": (None, "vllm==0.31.0"),
    "h100-580-no-torch": ("torch==2.13.0", "vllm==0.31.0"),
    "h100-580-cpu-torch": ("torch==2.13.0", "vllm==0.31.0"),
    "t4-550-after-bad-install": ("torch==2.10.*", None),
    "l4-535-torch2.13": ("torch==2.10.*", None),
    "t4-550-torch2.6": ("torch==2.10.*", None),
    "v100-580-torch2.13": ("torch==2.10.*", None),
    "g4-580-torch2.11": (None, "vllm==0.26.0"),
    "g4-580-torch2.8-cu126": ("torch==2.13.0", "vllm==0.31.0"),
}


@pytest.mark.parametrize("machine", OTHERS)
def test_what_each_other_machine_gets(machine, request):
    torch, vllm = EXPECTED[request.node.callspec.id]
    plan = install_plan(machine)
    assert (plan.torch if plan.install_torch else None) == torch
    assert plan.vllm == vllm


@pytest.mark.parametrize("machine", COLAB)
def test_colab_keeps_its_torch_and_gets_vllm_only_on_its_cu130_image(machine):
    plan = install_plan(machine)
    assert not plan.install_torch and plan.remove == ()
    # vllm 0.26.0 pins torch==2.11.0 and is a CUDA 13 build: Colab's image from Sep 2026; the cu126/cu128 ones get none
    assert plan.vllm == ("vllm==0.26.0" if machine.torch == "2.11.0+cu130" else None)
    assert plan.constraints == tuple(
        f"{name}=={getattr(machine, name)}"
        for name in ("torch", "torchvision", "torchaudio")
        if getattr(machine, name)
    )


def test_a_torchvision_built_for_another_torch_is_removed_even_when_torch_is_kept():
    machine = state(A100, "580.82.07", "3.13.15", "2.11.0+cu130", "13.0", "0.24.0+cu126")
    plan = install_plan(machine)
    assert not plan.install_torch and plan.remove == ("torchvision",)
    assert plan.stack()[0] == ["uninstall", "-y", "torchvision"]
    assert "torchvision 0.24.0+cu126 is not built for torch 2.11.0+cu130" in plan.describe()


def test_without_a_gpu_the_torch_there_is_kept_and_no_vllm():
    plan = install_plan(MachineState(None, "3.11.7", "2.13.0+cpu", "cpu"))
    assert not plan.install_torch and plan.vllm is None and plan.overrides == ()
    assert install_plan(MachineState(None, "3.12.3")).torch == "torch==2.13.0"  # nothing yet: the tested one


def test_the_floor_is_the_train_extras():
    import tomllib

    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["train"]
    assert f"torch>={'.'.join(map(str, ip.TORCH_FLOOR))}" in extra


def test_the_plan_installs_no_torch_newer_than_the_tested_one():
    # requirements.txt is the set CI tests; the plan never goes past its torch
    pins = [line for line in (ROOT / "requirements.txt").read_text().splitlines() if line.startswith("torch==")]
    assert pins == [f"torch=={ip.TESTED_TORCH}"]
    assert max(v for v in ip.PYPI_CUDA if v <= ip.release(ip.TESTED_TORCH)[:2]) == ip.release(ip.TESTED_TORCH)[:2]


# ---------------------------------------------------------------------------------------------------------------------
# The T4: fp16, transformers generation, and the 16 GB LoRA recipe


@pytest.mark.slow
@pytest.mark.parametrize("machine", [p for p in COLAB if p.id.startswith("Tesla T4")])
def test_the_t4_plan_trains_the_3b_lora_recipe_in_fp16_without_vllm(machine):
    from reson.core.config import load_config
    from reson.tools.plan import choose_recipe

    plan = install_plan(machine)
    gpu = machine.gpu
    assert not gpu.native_bf16
    recipe, overrides = choose_recipe(gpu.memory, gpu.native_bf16, plan.overrides)
    config = load_config(recipe, argv=overrides, machine=False)
    assert recipe == "grpo_qwen2.5_3b_lora_16gb" and config.use_peft and config.fp16 and not config.bf16
    assert not config.use_vllm and plan.commands(config.use_vllm) == plan.stack()  # no vLLM download on a T4


@pytest.mark.slow
def test_a_vllm_recipe_falls_back_to_transformers_sized_by_the_planner(capsys):
    """Colab's A100 under its cu128 image: no vLLM is built for its torch, so the 40 GB recipe generates with
    transformers, and still fits by the planner's count."""
    from reson.core.config import load_config
    from reson.tools import plan as planner

    plan = install_plan(state(A100, *COLAB_580[0][:-1]))
    assert plan.vllm is None
    recipe, overrides = planner.choose_recipe(40960 * MIB, True, plan.overrides)
    assert recipe == "grpo_qwen2.5_1.5b_40gb" and overrides == list(VLLM_OFF)
    config = load_config(recipe, argv=overrides, machine=False)  # reson's stop-string check passes
    assert not config.use_vllm and not config.generation_kwargs
    assert planner.main(["--config", recipe, "--gpu", "a100-40gb", *overrides]) == 0
    out = capsys.readouterr().out
    assert "generation by transformers" in out and "generation KV cache" in out and "fits" in out


# ---------------------------------------------------------------------------------------------------------------------
# Reading the machine


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Tesla T4, 15360, 7.5, 550.54.15", VisibleGPU("Tesla T4", 15360 * MIB, (7, 5), "550.54.15")),
        ("NVIDIA L4, 23034, 8.9, 580.82.07", VisibleGPU("NVIDIA L4", 23034 * MIB, (8, 9), "580.82.07")),
        (
            "NVIDIA RTX PRO 6000 Blackwell Server Edition, 97887, 12.0, 580.82.07",
            VisibleGPU("NVIDIA RTX PRO 6000 Blackwell Server Edition", 97887 * MIB, (12, 0), "580.82.07"),
        ),
        # an old driver names the A100 without "NVIDIA " and counts less memory (colabtools#2287)
        ("A100-SXM4-40GB, 40536, 8.0, 460.32.03", VisibleGPU("A100-SXM4-40GB", 40536 * MIB, (8, 0), "460.32.03")),
        ("GRID A100D-40C, [N/A], 8.0, 580.82.07", None),  # some virtual GPUs report no memory
        ("Tesla T4, 15360, [N/A], 550.54.15", None),
    ],
)
def test_nvidia_smi_lines_parse(line, expected):
    assert parse_gpu(line.split(",")) == expected


def _fake_torch(folder: Path, version: str, version_py: str | None) -> None:
    """An installed torch as package metadata sees it: a dist-info folder, and torch/version.py if given (no
    __init__.py, so the real torch still imports)."""
    info = folder / f"torch-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: torch\nVersion: {version}\n")
    if version_py is not None:
        (folder / "torch").mkdir()
        (folder / "torch" / "version.py").write_text(version_py)


@pytest.mark.parametrize(
    ("version", "version_py", "expected"),
    [
        ("2.11.0+cu130", "__version__ = '2.11.0+cu130'\ncuda: Optional[str] = '13.0'\n", "13.0"),
        ("2.13.0", "__version__ = '2.13.0'\ncuda = '13.0'\n", "13.0"),  # PyPI's wheel: no label, version.py says
        ("2.13.0+cpu", "cuda: Optional[str] = None\n", "cpu"),
        ("2.10.0+cu128", None, "12.8"),  # no version.py to read: the label
        ("2.8.0+cu126", None, "12.6"),
        ("2.13.0", None, None),  # neither: not known (the plan then takes the PyPI wheel's CUDA)
    ],
)
def test_the_torch_build_is_read_without_importing_torch(version, version_py, expected, tmp_path, monkeypatch):
    _fake_torch(tmp_path, version, version_py)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert ip.torch_cuda() == expected


def test_machine_state_reads_nvidia_smi_and_the_packages(tmp_path, monkeypatch):
    _fake_torch(tmp_path / "site", "2.11.0+cu130", "cuda = '13.0'\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text("#!/bin/sh\necho 'NVIDIA A100-SXM4-40GB, 40960, 8.0, 580.82.07'\n")
    smi.chmod(0o755)
    monkeypatch.setenv("PATH", f"{smi.parent}:/usr/bin:/bin")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    found = ip.machine_state()
    assert found.gpu == VisibleGPU("NVIDIA A100-SXM4-40GB", 40960 * MIB, (8, 0), "580.82.07")
    assert (found.torch, found.torch_cuda) == ("2.11.0+cu130", "13.0")
    assert install_plan(found).vllm == "vllm==0.26.0"


def test_carry_out_writes_the_constraints_and_runs_pip(tmp_path, monkeypatch):
    ran = []
    monkeypatch.setattr(ip.subprocess, "run", lambda command, check: ran.append(command[3:]))
    machine = state(T4, "550.54.15", "3.12.12", "2.13.0", "13.0", "0.23.0+cu126")
    plan = install_plan(machine, repo="reson-llm", constraints_file=tmp_path / "constraints.txt")
    ip.carry_out(plan, plan.stack(), dry_run=True)
    assert ran == [] and not (tmp_path / "constraints.txt").exists()  # a dry run only prints
    ip.carry_out(plan, plan.stack())
    assert (tmp_path / "constraints.txt").read_text() == "torch==2.10.*\n"
    assert ran == [
        ["uninstall", "-y", "torchvision"],
        ["install", "torch==2.10.*"],
        ["install", "reson-llm[train]", "-c", str(tmp_path / "constraints.txt")],
    ]


def test_the_base_install_the_notebook_makes_first_pulls_no_torch():
    """The notebook installs the base package before it has looked at torch: nothing it depends on, at any depth
    (as the installed packages' metadata says), may bring torch or the training stack."""
    import importlib.metadata
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    base = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    seen, todo = set(), [Requirement(line) for line in base]
    while todo:
        requirement = todo.pop()
        if canonicalize_name(requirement.name) in seen:
            continue
        seen.add(canonicalize_name(requirement.name))
        for line in importlib.metadata.requires(requirement.name) or []:
            needed = Requirement(line)
            extras = requirement.extras or {""}
            if needed.marker is None or any(needed.marker.evaluate({"extra": extra}) for extra in extras):
                todo.append(needed)
    assert {"math-verify", "antlr4-python3-runtime", "sympy"} <= seen
    assert not seen & {"torch", "transformers", "trl", "accelerate", "vllm", "torchvision"}
