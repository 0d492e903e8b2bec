"""The Colab notebook, executed end to end on its CPU path (the offline miniature) with a short step budget."""

from __future__ import annotations

import html
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
    assert not re.search(r"\btrl\b|GRPOTrainer|GRPOConfig", code)


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
    assert len(re.findall(r'<img alt="[^"]+" src="data:image/png;base64,', source)) >= 5
    # ... shown inline: the last output is the page itself in an iframe
    shown = outputs[-1]["data"]["text/html"]
    assert f'<iframe srcdoc="{html.escape(source, quote=True)}"' in shown
