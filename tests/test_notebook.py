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


@pytest.mark.parametrize(
    ("nvidia_smi", "expected"),
    [
        ("Tesla T4, 15360, 7.5", "GPU: Tesla T4 (15 GiB) -> grpo_qwen2.5_3b_lora_16gb\n"),
        ("NVIDIA L4, 23034, 8.9", "GPU: NVIDIA L4 (22 GiB) -> grpo_qwen2.5_3b_lora_24gb\n"),
        ("NVIDIA A100-SXM4-40GB, 40960, 8.0", "GPU: NVIDIA A100-SXM4-40GB (40 GiB) -> grpo_qwen2.5_1.5b_40gb"),
        ("NVIDIA GeForce GTX 1080, 8192, 6.1", "GPU: NVIDIA GeForce GTX 1080 (8 GiB) is too small for the smallest"),
    ],
)
def test_the_notebook_picks_the_recipe_for_the_gpu_it_finds(nvidia_smi, expected, tmp_path, monkeypatch):
    """The cells up to the recipe choice, on a machine whose nvidia-smi reports the given GPU: the choice, and the
    planner's breakdown for that GPU's memory saying it fits."""
    from nbclient import NotebookClient

    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text(f"#!/bin/sh\necho '{nvidia_smi}'\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("RESON_NOTEBOOK_WORK_DIR", str(tmp_path / "work"))
    monkeypatch.setenv("RESON_NOTEBOOK_MAX_STEPS", str(MAX_STEPS))
    notebook = read_notebook()
    (choice,) = [i for i, cell in enumerate(notebook.cells) if "choose_recipe(" in cell.source]
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    with client.setup_kernel():
        for index in range(choice + 1):
            client.execute_cell(notebook.cells[index], index)
    text = "".join(out.get("text", "") for out in notebook.cells[choice].outputs if out.output_type == "stream")
    assert expected in text
    if "->" in expected:
        assert "fits" in text and "does NOT fit" not in text
