"""`reson data`, offline: the hub repos are local folders laid out as on the hub (a README's `configs:` and parquet
files), built from tests/data, and `datasets.load_dataset` reads them as it reads the hub. What the command writes is
read back by name with `--data_dir`, by the loader and by `reson eval`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from reson import cli
from reson.core import data
from reson.core.data import HUB_DATASETS, LOCAL_FILES, load_problems, sample_rows
from reson.tools import download

OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def raw(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def hub_mirror(root: Path, data: Path) -> Path:
    """Every dataset of `reson data` as a hub repo under root/<owner>/<name>: one parquet file per hub split under
    the config's folder, named in the README's `configs:` block (what `load_dataset(repo, config)` looks up)."""
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    for name in download.DATASETS:
        repo, config, hub_splits = HUB_DATASETS[name]
        folder, config_name = root / repo, config or "default"
        lines = ["---", "configs:", f"- config_name: {config_name}", "  data_files:"]
        for hub in dict.fromkeys(hub_splits.values()):  # Countdown: one hub split holds our train and test
            rows = [
                row for ours in hub_splits if hub_splits[ours] == hub for row in raw(data / LOCAL_FILES[name][ours])
            ]
            (folder / config_name).mkdir(parents=True, exist_ok=True)
            pq.write_table(pa.Table.from_pylist(rows), folder / config_name / f"{hub}-00000-of-00001.parquet")
            lines += [f"  - split: {hub}", f"    path: {config_name}/{hub}-*"]
        (folder / "README.md").write_text("\n".join([*lines, "---", ""]))
    return root


@pytest.fixture(scope="module")
def written(tmp_path_factory, shared_data) -> tuple[Path, str]:
    """`python -m reson data` run once into a fresh folder, from the mirror; (folder, what it printed)."""
    pytest.importorskip("datasets")
    root = tmp_path_factory.mktemp("reson_data")
    mirror = hub_mirror(root / "hub", shared_data)
    env = {**os.environ, **OFFLINE, "HF_DATASETS_CACHE": str(root / "cache")}
    command = [sys.executable, "-m", "reson", "data", "--output_dir", str(root / "data"), "--hub_mirror", str(mirror)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "data", done.stdout


def test_writes_the_layout_that_data_dir_reads(written, shared_data):
    """Each split lands where `--data_dir` looks for it and loads by name to the rows its source gives; the command
    says what it wrote, with counts (rows whose gold is ambiguous, 13 in the MATH train subset, are no problems)."""
    out, printed = written
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert files == {relative for name in download.DATASETS for relative in LOCAL_FILES[name].values()}
    for name in download.DATASETS:
        for split, relative in LOCAL_FILES[name].items():
            expected = load_problems(name, split, data_dir=str(shared_data))
            assert load_problems(name, split, data_dir=str(out)) == expected, (name, split)
            rows = len(raw(shared_data / relative))
            assert f"{name} {split}: {rows:,} rows ({len(expected):,} problems) -> {out / relative}" in printed
    assert "math train: 55 rows (42 problems)" in printed and "math test: 59 rows (51 problems)" in printed
    assert f"--data_dir {out}" in printed


@pytest.mark.slow
def test_reson_eval_reads_it_back(written, shared_data, tiny_model_path, tmp_path):
    out, _ = written
    argv = ["eval", "--model_name_or_path", str(tiny_model_path), "--datasets", "gsm8k", "math500"]
    argv += ["--data_dir", str(out), "--output_dir", str(tmp_path / "eval"), "--num_problems", "2"]
    assert cli.main([*argv, "--max_completion_length", "4", "--no_progress"]) == 0
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    for name in ("gsm8k", "math500"):
        rows = load_problems(name, "test", data_dir=str(shared_data))
        assert results["datasets"][name]["ids"] == [row["id"] for row in sample_rows(rows, 2)]


@pytest.fixture
def no_download(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a download started before the input was checked")

    monkeypatch.setattr(data, "load_hub", fail)


def test_bad_input_is_one_line_before_any_download(tmp_path, no_download, capsys):
    (tmp_path / "file").write_text("")
    (tmp_path / "data" / "gsm8k").mkdir(parents=True)
    (tmp_path / "data" / "gsm8k" / "test.jsonl").write_text("{}\n")
    cases = {
        "unknown dataset 'gsm9k': choose from gsm8k, math, math500, aime24, amc23, countdown.": [
            "--datasets",
            "gsm8k",
            "gsm9k",
        ],
        f"--output_dir {tmp_path / 'file'} is a file: give a folder.": ["--output_dir", str(tmp_path / "file")],
        f"{tmp_path / 'data' / 'gsm8k' / 'test.jsonl'} exists: pass --overwrite to replace it": [
            "--datasets",
            "gsm8k",
        ],
        f"--hub_mirror {tmp_path / 'nope'}: no such folder.": ["--hub_mirror", str(tmp_path / "nope"), "--overwrite"],
    }
    for message, argv in cases.items():
        argv = ["--output_dir", str(tmp_path / "data"), *argv]
        assert download.main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith(f"reson data: {message}") and err.count("\n") == 1, err
    assert (tmp_path / "data" / "gsm8k" / "test.jsonl").read_text() == "{}\n"
    # the files of other datasets beside it are no reason to stop
    assert download.targets(["math500"], tmp_path / "data", overwrite=False) == [
        ("math500", "test", tmp_path / "data" / "math" / "math500_test.jsonl")
    ]


def test_a_failed_or_interrupted_download_keeps_the_file_there(tmp_path, shared_data, monkeypatch, capsys):
    """With --overwrite, a good file is replaced only by a complete one: not when loading fails, and not by the part
    written before an error; no temporary file is left behind."""
    out = tmp_path / "data"
    good = out / LOCAL_FILES["math500"]["test"]
    good.parent.mkdir(parents=True)
    good.write_bytes((shared_data / LOCAL_FILES["math500"]["test"]).read_bytes())
    before = good.read_bytes()
    argv = ["--output_dir", str(out), "--datasets", "math500", "--overwrite"]

    def unreachable(repo, config, split):
        raise ValueError("could not load") from ConnectionError("Couldn't reach the Hub\nmore detail")

    monkeypatch.setattr(data, "load_hub", unreachable)
    assert download.main(argv) == 1
    err = capsys.readouterr().err
    assert err == "reson data: could not load math500 (HuggingFaceH4/MATH-500, split 'test'): Couldn't reach the Hub\n"

    records = raw(good)
    monkeypatch.setattr(data, "load_hub", lambda repo, config, split: [*records[:5], {"problem": object()}])
    with pytest.raises(TypeError):  # a record that cannot be written, after five that were
        download.main(argv)
    assert good.read_bytes() == before
    assert sorted(p.name for p in good.parent.iterdir()) == [good.name]


def test_help_names_every_option_and_dataset(capsys):
    assert cli.main(["data", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for option in ("--output_dir", "--datasets", "--overwrite", "--hub_mirror"):
        assert option in out
    assert "any of gsm8k, math, math500, aime24, amc23, countdown (default: all of them)" in out
