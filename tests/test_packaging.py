"""The package as a user installs it: a wheel, not editable, in a fresh virtual environment outside the checkout.
The recipes and the miniature's base model travel inside it, so `reson train --config <name>` and the demo work from
any folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """A venv holding only the built wheel; its dependencies come from this environment's site-packages through a
    .pth file (nothing is downloaded), which does not bring the editable install of the checkout with it."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"  # a copy, so the build writes nothing into the checkout
    source.mkdir()
    shutil.copy(ROOT / "pyproject.toml", source)
    shutil.copy(ROOT / "README.md", source)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", root / "dist", source], check=True)
    (wheel,) = (root / "dist").glob("reson_llm-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", python, "install", "--no-deps", "--ignore-installed", wheel], check=True)
    site = Path(
        subprocess.check_output(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return venv, env


@pytest.mark.slow
def test_the_wheel_is_imported_not_the_checkout(installed, tmp_path):
    venv, env = installed
    where = subprocess.check_output(
        [venv / "bin" / "python", "-c", "import reson; print(reson.__file__)"], cwd=tmp_path, env=env, text=True
    )
    assert where.startswith(str(venv)), where


@pytest.mark.slow
def test_a_recipe_by_name_from_any_folder(installed, tmp_path):
    venv, env = installed
    run = subprocess.run(
        [venv / "bin" / "reson", "train", "--config", "grpo_debug", "--output_dir", "out", "--check"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert "model_name_or_path: Qwen/Qwen2.5-0.5B" in run.stdout and "loss_type: dr_grpo" in run.stdout
    assert not (tmp_path / "out").exists()  # --check writes nothing


@pytest.mark.slow
def test_the_demo_runs_from_any_folder(installed, tmp_path):
    venv, env = installed
    assert subprocess.run([venv / "bin" / "reson", "demo", "--help"], env=env, capture_output=True).returncode == 0
    script = (
        "from reson.miniature.demo import run_demo; "
        "r = run_demo('demo', num_problems=4, max_steps=1, base_settings={'num_texts': 200}); "
        "print(r['paths']['report'])"
    )
    run = subprocess.run(
        [venv / "bin" / "python", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert Path(tmp_path, run.stdout.strip().splitlines()[-1]).exists()


@pytest.mark.slow
def test_the_shipped_base_models_travel_in_the_wheel(installed, tmp_path):
    venv, env = installed
    script = "from reson.miniature.shipped import check; from reson.miniature.tasks import TASKS\n"
    script += "for task in TASKS.values(): print(check(task.shipped_dir))"
    run = subprocess.run(
        [venv / "bin" / "python", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr[-3000:]  # every file there, with its recorded sha256
    lines = run.stdout.split()
    assert len(lines) == 2 and all(line.startswith(str(venv)) for line in lines)
