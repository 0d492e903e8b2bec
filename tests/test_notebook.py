"""The Colab notebook, executed end to end on its CPU path (the offline miniature) with a short step budget."""

from __future__ import annotations

import html
import os
import re
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "train_grpo_colab.ipynb"
MAX_STEPS = 2  # GRPO steps: enough for canaries before and after, a checkpoint and a report


def read_notebook():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    return notebook


def test_notebook_is_committed_clean():
    # outputs and counts belong to a run, not to the repository
    notebook = read_notebook()
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:80]
    code = "\n".join(cell.source for cell in notebook.cells if cell.cell_type == "code")
    assert "RESON_NOTEBOOK_MAX_STEPS" in code
    # a thin driver: training goes through the package, never through a trainer built in the notebook
    assert not re.search(r"(import|from) trl\b|GRPOTrainer|GRPOConfig", code)


@pytest.mark.slow
def test_notebook_runs_end_to_end_on_the_cpu_path(tmp_path, monkeypatch):
    from nbclient import NotebookClient

    work = tmp_path / "work"
    monkeypatch.setenv("RESON_NOTEBOOK_MAX_STEPS", str(MAX_STEPS))
    monkeypatch.setenv("RESON_NOTEBOOK_WORK_DIR", str(work))
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the CPU path even on a machine with a GPU
    notebook = read_notebook()
    client = NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()

    outputs = [out for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    text = "".join(out.get("text", "") for out in outputs if out.output_type == "stream")
    assert "Consider using IPython.display.IFrame" not in text  # the page is shown the way that works on Colab
    assert "no GPU: the offline miniature" in text
    assert f"max steps: {MAX_STEPS}" in text

    # the report, written under the work folder, with the base-vs-trained table and the canary timeline
    page = work / "report" / "report.html"
    assert page.is_file()
    source = page.read_text(encoding="utf-8")
    assert 'id="compare"' in source and "Baseline vs After GRPO" in source
    assert 'class="canary"' in source
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/svg\+xml;base64,', source)) >= 5
    # ... shown inline: the last output is the page itself in an iframe
    shown = outputs[-1]["data"]["text/html"]
    assert f'<iframe srcdoc="{html.escape(source, quote=True)}"' in shown


def fake_machine(tmp_path, monkeypatch, nvidia_smi: str, packages: dict[str, str] | None = None) -> None:
    """A machine whose nvidia-smi prints ``nvidia_smi`` and whose package metadata shows ``packages`` (name ->
    version: dist-info folders first on the path, no code, so the real torch still imports)."""
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho '{nvidia_smi}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("RESON_NOTEBOOK_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("RESON_NOTEBOOK_MAX_STEPS", str(MAX_STEPS))
    if packages:
        site = tmp_path / "site"
        for name, version in packages.items():
            info = site / f"{name}-{version}.dist-info"
            info.mkdir(parents=True)
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])]))


def run_cells_through(marker: str) -> tuple[list, str]:
    """Run the notebook's cells up to the first whose source holds ``marker``; the cells and their printed text."""
    from nbclient import NotebookClient

    notebook = read_notebook()
    last = next(i for i, cell in enumerate(notebook.cells) if marker in cell.source)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    with client.setup_kernel():
        for index in range(last + 1):
            client.execute_cell(notebook.cells[index], index)
    return notebook.cells[: last + 1], "".join(
        out.get("text", "") for cell in notebook.cells[: last + 1] for out in cell.get("outputs", [])
    )


@pytest.mark.parametrize(
    ("nvidia_smi", "expected"),
    [
        ("Tesla T4, 15360, 7.5, 550.54.15", "GPU: Tesla T4 (15 GiB) -> grpo_qwen2.5_3b_lora_16gb"),
        ("NVIDIA L4, 23034, 8.9, 580.82.07", "GPU: NVIDIA L4 (22 GiB) -> grpo_qwen2.5_3b_lora_24gb"),
        (
            "NVIDIA A100-SXM4-40GB, 40960, 8.0, 580.82.07",
            "GPU: NVIDIA A100-SXM4-40GB (40 GiB) -> grpo_qwen2.5_1.5b_40gb",
        ),
        ("NVIDIA GeForce RTX 3050, 8192, 8.6, 580.82.07", "GPU: NVIDIA GeForce RTX 3050 (8 GiB) is too small for the"),
        # Pascal (6.1): no torch from 2.8 on has kernels for it, so it is left out, in one line
        ("NVIDIA GeForce GTX 1080, 8192, 6.1, 580.82.07", "no torch for this GPU: the offline miniature on the CPU"),
    ],
)
def test_the_notebook_picks_the_recipe_for_the_gpu_it_finds(nvidia_smi, expected, tmp_path, monkeypatch):
    """The cells up to the recipe choice, on a machine whose nvidia-smi reports the given GPU: the choice, and the
    planner's breakdown for that GPU's memory saying it fits."""
    fake_machine(tmp_path, monkeypatch, nvidia_smi)
    cells, _ = run_cells_through("choose_recipe(")
    text = "".join(out.get("text", "") for out in cells[-1].outputs if out.output_type == "stream")
    assert expected in text
    if "->" in expected:
        assert "fits" in text and "does NOT fit" not in text


# Recorded machines (tests/test_install_plan.py says where each comes from) and what the install cell prints for them
INSTALL_STATES = [
    pytest.param(
        "Tesla T4, 15360, 7.5, 550.54.15",
        {"torch": "2.8.0+cu126", "torchvision": "0.23.0+cu126"},
        [
            "torch 2.8.0+cu126 (CUDA 12.6) runs here: kept",
            "constraints.txt holds torch==2.8.0+cu126, torchvision==0.23.0+cu126",
            "[train] -c ",
            "-> grpo_qwen2.5_3b_lora_16gb",
        ],
        id="colab-t4-550-torch2.8",
    ),
    pytest.param(
        "NVIDIA A100-SXM4-40GB, 40960, 8.0, 580.82.07",
        {"torch": "2.11.0+cu130", "torchvision": "0.26.0+cu130"},
        [
            "torch 2.11.0+cu130 (CUDA 13.0) runs here: kept",
            "-> grpo_qwen2.5_1.5b_40gb\n",
            "generation by vLLM (colocate)",
            "$ pip install vllm==0.26.0 -c ",
        ],
        id="colab-a100-580-torch2.11-cu130",
    ),
    pytest.param(
        "NVIDIA A100-SXM4-40GB, 40960, 8.0, 580.82.07",
        {"torch": "2.11.0+cu128", "torchvision": "0.26.0+cu128", "torchaudio": "2.11.0+cu128"},
        [
            "vLLM 0.26.0's wheels are CUDA 13 builds, and torch 2.11.0+cu128 is CUDA 12.8",
            "-> grpo_qwen2.5_1.5b_40gb --use_vllm false --generation_kwargs {}",
            "generation by transformers",
        ],
        id="colab-a100-580-torch2.11-cu128",
    ),
]


@pytest.mark.parametrize(("nvidia_smi", "packages", "expected"), INSTALL_STATES)
def test_the_install_plan_cell_on_recorded_machines(nvidia_smi, packages, expected, tmp_path, monkeypatch):
    """The cells through the vLLM install, as a dry run: the plan printed for the machine, the recipe sized for what
    it can install, and nothing installed (no constraints file, no pip run)."""
    fake_machine(tmp_path, monkeypatch, nvidia_smi, packages)
    monkeypatch.setenv("RESON_NOTEBOOK_DRY_RUN", "1")
    _, text = run_cells_through("SETUP.vllm_step(")
    for line in expected:
        assert line in text, line
    assert "(dry run: not run)" in text and "does NOT fit" not in text
    assert not (tmp_path / "work" / "constraints.txt").exists()
    assert ("vllm==" in text) == ("generation by vLLM" in text)  # vLLM only for a recipe that uses it
