"""`reson report`: the plots and the HTML page of a run, on a constructed run folder and on a real tiny run."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reson.tools import report

REPO = Path(__file__).resolve().parents[1]
PROMPT = "A conversation between User and Assistant. User: Tom has 3 apples and buys 2 more. How many now?. Assistant:"
# Model output is untrusted: the page must show these as text, never as markup.
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="alert(1)"></pre><b>bold</b>'


def log_entry(step: int) -> dict:
    """What GRPOTrainer logs at one step (TRL's keys), with values that differ per key and step."""
    return {
        "step": step,
        "epoch": step / 100,
        "loss": 0.013 * step - 0.05,
        "grad_norm": 1.7 / step,
        "learning_rate": 3e-5,
        "reward": 0.0917 * step,
        "reward_std": 0.31 - 0.01 * step,
        "rewards/accuracy/mean": 0.0523 * step,
        "rewards/format/mean": 0.0811 * step,
        "completions/mean_length": 4.0 + 2.5 * step,
        "completions/clipped_ratio": 0.0125 * step,
        "frac_reward_zero_std": 0.5,
        "num_tokens": 1000.0 * step,
    }


def write_state(folder: Path, steps: range, max_steps: int = 12, text: str | None = None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    state = {"global_step": steps[-1], "max_steps": max_steps, "log_history": [log_entry(s) for s in steps]}
    (folder / "trainer_state.json").write_text(text if text is not None else json.dumps(state))


def write_events(run: Path, steps: range) -> None:
    """TensorBoard events as transformers' TensorBoardCallback writes them: tags `train/<key>`, under runs/."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run / "runs" / "Nov24_10-00-00_host"))
    for step in steps:
        for key, value in log_entry(step).items():
            if key != "step":
                writer.add_scalar(f"train/{key}", value, step)
    writer.close()


def canary(step: int, index: int, think: str | None, answer: str, correct: bool) -> dict:
    """One emergence.jsonl line as the canary callback writes it: a completion sampled at `step`, graded against
    gold 5, with `reson.core.metrics.completion_record`'s keys."""
    from types import SimpleNamespace

    from reson.core.metrics import completion_record

    completion = f"<think>{think}</think> <answer>{answer}</answer>" if think is not None else f" {answer}"
    graded = SimpleNamespace(accuracy=1.0 if correct else 0.0, format=1.0 if think is not None else 0.0)
    return {
        "step": step,
        "canary": index,
        "id": f"synthetic/test/{index}",
        "question": "Tom has 3 apples and buys 2 more. How many now?",
        "gold": "5",
        "completion": completion,
        "completion_tokens": len(completion.split()),
        "extracted": answer,
        **completion_record(completion, PROMPT, graded),
    }


# canaries every 3 steps. Think usage by step: 0/4, 2/4 (50%: not past half), 3/4 (the aha step), 4/4;
# self-correction first at step 3 in a wrong answer (does not count), then at step 9 in a right one.
CANARIES = [
    canary(0, 0, None, HOSTILE, False),
    canary(0, 1, None, "5", True),
    canary(0, 2, None, "7", False),
    canary(0, 3, None, "6", False),
    canary(3, 0, "3+2=6, wait, no", "6", False),
    canary(3, 1, "3+2=5", "5", True),
    canary(3, 2, None, "5", True),
    canary(3, 3, None, HOSTILE, False),
    canary(6, 0, "3+2=5", "5", True),
    canary(6, 1, "3+2=5", "5", True),
    canary(6, 2, f"3+2 {HOSTILE}", "4", False),
    canary(6, 3, None, "5", True),
    canary(9, 0, "3+2=6. Wait, that's not right: 3+2=5", "5", True),
    canary(9, 1, "3+2=5", "5", True),
    canary(9, 2, "3+2=5", "5", True),
    canary(9, 3, "3+2=5", "5", True),
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A run in progress: checkpoints at steps 4 and 8 (no final trainer_state.json yet), TensorBoard events up to
    step 10, and four canary steps in emergence.jsonl, then a half-written line. Tests must not change it."""
    run = tmp_path_factory.mktemp("runs") / "grpo-run"
    write_state(run / "checkpoint-4", range(1, 5))
    write_state(run / "checkpoint-8", range(1, 9))
    write_events(run, range(1, 11))
    lines = [json.dumps(row) for row in CANARIES]
    (run / "emergence.jsonl").write_text("\n".join(lines) + '\n{"step": 12, "completion": "<thi')
    return run


@pytest.fixture(scope="module")
def page_path(run_dir, tmp_path_factory) -> Path:
    """The report of `run_dir`, every canary completion shown."""
    return report.build_report(run_dir, tmp_path_factory.mktemp("report"), samples=4)


class PageParser(HTMLParser):
    """Collects tags, the numbers tables' cells and the text of the page."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.rows: dict[str, dict[str, list]] = {"summary": {}, "steps": {}}
        self._table = self._row = None
        self._cell: dict | None = None
        self.text: list[str] = []
        self.columns: list[str] = []  # the per-step table's metric columns

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "th" and self._table == "steps" and "data-key" in attrs:
            self.columns.append(attrs["data-key"])
        if tag == "table" and attrs.get("id") in self.rows:
            self._table = attrs["id"]
        elif tag == "tr" and self._table:
            self._row = attrs.get("data-key") or attrs.get("data-step")
            if self._row is not None:
                self.rows[self._table][self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = {"value": attrs.get("data-value"), "text": ""}

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self.rows[self._table][self._row].append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data


def parse(page: Path) -> PageParser:
    parser = PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_help():
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--help"])
    assert exit_info.value.code == 0


def test_writes_valid_pngs_embedded_in_one_page(page_path):
    from PIL import Image

    out, page = page_path.parent, page_path
    assert page.name == "report.html"
    pngs = sorted(out.glob("*.png"))
    names = {p.stem for p in pngs}
    # every plot the brief names has its data in this run, so every one is drawn
    assert names == {plot.name for plot in report.PLOTS}
    for png in pngs:
        with Image.open(png) as image:
            image.verify()
        with Image.open(png) as image:
            assert image.format == "PNG"
            width, height = image.size
            assert height == 360 and width in (640, 1280), (png.name, image.size)
    # the page carries the plots themselves (data URIs), not links to files beside it
    images = [attrs for tag, attrs in parse(page).tags if tag == "img"]
    assert len(images) == len(pngs)
    embedded = {base64.b64decode(attrs["src"].removeprefix("data:image/png;base64,")) for attrs in images}
    assert embedded == {p.read_bytes() for p in pngs}


def test_numbers_in_the_page_match_the_logs(run_dir, page_path):
    page = parse(page_path)
    # trainer state (newest checkpoint) for steps 1-8, TensorBoard (float32) for 9 and 10
    expected = {
        key: {s: log_entry(s)[key] for s in range(1, 11)} for key in log_entry(1) if key not in ("step", "epoch")
    }
    summary = page.rows["summary"]
    for key, values in expected.items():
        cells = [cell for cell in summary[key] if cell["value"] is not None]  # first, last, min, max
        first, last, low, high = (cell["value"] for cell in cells)
        assert [cell["text"] for cell in summary[key][:2]] == ["10", "1"]  # points, first step
        assert float(first) == values[1]  # exact: from trainer_state.json
        assert math.isclose(float(last), values[10], rel_tol=1e-6)  # float32 from the event file
        assert math.isclose(float(low), min(values.values()), rel_tol=1e-6)
        assert math.isclose(float(high), max(values.values()), rel_tol=1e-6)
        for cell in cells:  # the shown text is the same number, rounded to 4 significant digits
            assert math.isclose(float(cell["text"]), float(cell["value"]), rel_tol=1e-3, abs_tol=1e-12)
    steps = page.rows["steps"]
    assert sorted(map(int, steps)) == list(range(11))  # logged steps and the canary step 0
    assert float(steps["7"][page.columns.index("reward")]["value"]) == log_entry(7)["reward"]
    # canary metrics computed from emergence.jsonl
    run = report.load_run(run_dir)
    assert run.series["emergence/think_usage_pct"] == {0: 0.0, 3: 50.0, 6: 75.0, 9: 100.0}
    assert run.series["emergence/canary_accuracy"] == {0: 0.25, 3: 0.5, 6: 0.75, 9: 1.0}
    assert run.global_step == 10 and run.max_steps == 12 and run.state_file == "checkpoint-8/trainer_state.json"


def test_aha_steps_on_a_constructed_log(run_dir, page_path):
    run = report.load_run(run_dir)
    # 50% at step 3 does not pass half; the self-correction at step 3 is in a wrong answer
    assert report.aha_steps(run) == {"think": 6, "self_correction": 9}
    page = parse(page_path)
    boxes = {attrs["id"]: attrs["data-step"] for tag, attrs in page.tags if attrs.get("id", "").startswith("aha-")}
    assert boxes == {"aha-think": "6", "aha-self-correction": "9"}


def test_aha_steps_from_logged_metrics_without_emergence_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    history = [
        {"step": 25, "emergence/think_usage_pct": 12.5, "emergence/self_correction_rate_correct": 0.0},
        {"step": 50, "emergence/think_usage_pct": 50.0, "emergence/self_correction_rate_correct": 0.0},
        {"step": 75, "emergence/think_usage_pct": 62.5, "emergence/self_correction_rate_correct": 0.0},
        {"step": 100, "emergence/think_usage_pct": 90.0, "emergence/self_correction_rate_correct": 0.03},
    ]
    (run / "trainer_state.json").write_text(json.dumps({"global_step": 100, "max_steps": 100, "log_history": history}))
    assert report.aha_steps(report.load_run(run)) == {"think": 75, "self_correction": 100}


def test_rows_without_record_keys_are_measured_from_their_text():
    # a file from another tool: only the completion and its grade
    row = {"step": 5, "prompt": PROMPT + " <think>", "completion": "3+2=6, wait: 3+2=5</think> 5", "accuracy": 1.0}
    record = report.canary_record(row)
    assert record["think_used"] and record["self_correction"] and record["think_tokens"] == 3
    row = {"step": 5, "prompt": PROMPT, "completion": "<think></think> 5", "accuracy": 0.0}
    assert not report.canary_record(row)["think_used"]


def test_model_output_is_escaped(page_path):
    source = page_path.read_text(encoding="utf-8")
    page = parse(page_path)
    assert HOSTILE not in source
    assert "<script>document.title" not in source
    # the only script is the page's own image check; the only images are the plots
    assert [tag for tag, _ in page.tags].count("script") == 1
    assert all(attrs["src"].startswith("data:image/png;base64,") for tag, attrs in page.tags if tag == "img")
    assert not any("onerror" in attrs for _, attrs in page.tags)
    text = "".join(page.text)
    assert HOSTILE in text  # shown, as text, in the wrong answers and in a thinking block


def test_thinking_and_answer_shown_apart_and_marked(page_path):
    page = parse(page_path)
    samples = [attrs["class"] for tag, attrs in page.tags if tag == "div" and "sample" in attrs.get("class", "")]
    assert len(samples) == len(CANARIES)
    verdicts = [cls.split()[1] for cls in samples]
    assert verdicts == ["right" if row["accuracy"] == 1.0 else "wrong" for row in CANARIES]
    thinks = [tag for tag, attrs in page.tags if tag == "pre" and attrs.get("class") == "think"]
    assert len(thinks) == sum(row["completion"].startswith("<think>") for row in CANARIES)
    answers = [tag for tag, attrs in page.tags if tag == "pre" and attrs.get("class") == "answer"]
    assert len(answers) == len(CANARIES)


def test_copied_run_folder_and_run_without_checkpoint(run_dir, tmp_path):
    copy = tmp_path / "elsewhere" / "copied-run"
    shutil.copytree(run_dir, copy)
    page = report.build_report(copy).read_text(encoding="utf-8")
    assert str(run_dir.parent) not in page and str(tmp_path) not in page  # no absolute paths
    assert "copied-run" in page
    # before its first checkpoint a run has only its event files: still a report
    for folder in copy.glob("checkpoint-*"):
        shutil.rmtree(folder)
    (copy / "emergence.jsonl").unlink()
    run = report.load_run(copy)
    assert run.state_file is None and run.global_step == 10
    assert math.isclose(run.series["reward"][10], log_entry(10)["reward"], rel_tol=1e-6)


def test_newest_trainer_state_wins_and_half_written_one_is_skipped(tmp_path):
    run = tmp_path / "run"
    write_state(run / "checkpoint-8", range(1, 9))
    write_state(run / "checkpoint-12", range(1, 13), text='{"global_step": 12, "log_hi')  # being written
    write_state(run / "checkpoint-4", range(1, 5))
    assert report.load_run(run).state_file == "checkpoint-8/trainer_state.json"
    write_state(run, range(1, 13))  # the finished run's own state
    loaded = report.load_run(run)
    assert loaded.state_file == "trainer_state.json" and max(loaded.series["loss"]) == 12


def test_compare_table_included(run_dir, tmp_path):
    from reson.evaluation.compare import compare

    folders = []
    for name, accuracy in (("base", 0.17), ("grpo", 0.365)):
        folder = tmp_path / "eval" / name
        folder.mkdir(parents=True)
        results = {
            "model": f"runs/{name}",
            "template": "r1_zero",
            "generation": {"temperature": 0.0, "n": 1, "max_new_tokens": 64},
            "datasets": {"synthetic": {"metrics": {"accuracy": accuracy, "num_problems": 200}}},
        }
        (folder / "results.json").write_text(json.dumps(results))
        folders.append(str(folder))
    table = tmp_path / "compare.md"
    compare(folders, output=table)
    for given in ([str(table)], folders):
        page = parse(report.build_report(run_dir, compare=given))
        text = "".join(page.text)
        assert "Baseline vs After GRPO" in text
        assert "17.0" in text and "36.5" in text and "+19.5" in text
        assert any(tag == "table" and "compare" in attrs.get("class", "") for tag, attrs in page.tags)


def test_clear_errors(tmp_path, capsys):
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "holds no training logs" in capsys.readouterr().err
    assert report.main([str(tmp_path / "empty"), "--compare", str(tmp_path / "nope.md")]) == 2
    assert "--compare" in capsys.readouterr().err


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install chromium`) to render the report"
        )
    command = [CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)


def test_page_renders_in_headless_chromium(page_path, tmp_path):
    from PIL import Image, ImageStat

    page = page_path
    n_plots = len(list(page.parent.glob("*.png")))
    # the page's own script records each image's decoded width once loaded
    dom = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-dom").stdout
    rendered = PageParser()
    rendered.feed(dom)
    widths = [int(attrs["data-natural-width"]) for tag, attrs in rendered.tags if tag == "img"]
    assert len(widths) == n_plots and all(width > 0 for width in widths), widths
    body = next(attrs for tag, attrs in rendered.tags if tag == "body")
    assert body["data-images-loaded"] == f"{n_plots}/{n_plots}"
    assert "pwned" not in dom.split("</title>")[0]  # no model output ran as a script

    shot = tmp_path / "screenshot.png"
    chromium(f"--screenshot={shot}", "--window-size=1200,3000", page.as_uri(), profile=tmp_path / "profile-shot")
    with Image.open(shot) as image:
        assert image.size == (1200, 3000)
        rgb = image.convert("RGB")
        # not blank: many colours (plots, text) and real spread in every channel
        assert len(rgb.getcolors(maxcolors=1 << 20) or []) > 200
        assert all(stddev > 10 for stddev in ImageStat.Stat(rgb).stddev)


@pytest.fixture(scope="module")
def tiny_run(tiny_model_path, shared_data, tmp_path_factory) -> Path:
    """A real `reson train` run of the tiny model: two GRPO steps, canaries at steps 0, 1 and 2."""
    output = tmp_path_factory.mktemp("tiny-run") / "grpo"
    overrides = {
        "model_name_or_path": tiny_model_path,
        "output_dir": output,
        "max_steps": 2,
        "num_train_problems": 8,
        "per_device_train_batch_size": 4,
        "num_generations": 2,
        "max_completion_length": 8,
        "num_canaries": 3,
        "emergence_every": 1,
        "save_steps": 1,
        "logging_steps": 1,
    }
    recipe = REPO / "src" / "reson" / "configs" / "grpo_debug.yaml"
    command = [sys.executable, "-m", "reson", "train", "--config", str(recipe)]
    command += [arg for key, value in overrides.items() for arg in (f"--{key}", str(value))]
    env = {**os.environ, "RESON_DATA_DIR": str(shared_data)}
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return output


@pytest.mark.slow
def test_report_on_a_real_tiny_run(tiny_run, tmp_path):
    from PIL import Image

    assert report.main([str(tiny_run), "--output", str(tmp_path)]) == 0
    page_path = tmp_path / "report.html"
    pngs = {p.stem for p in tmp_path.glob("*.png")}
    # what the trainer and the canary callback log makes every plot
    assert pngs == {plot.name for plot in report.PLOTS}
    for name in pngs:
        with Image.open(tmp_path / f"{name}.png") as image:
            image.verify()
    page = parse(page_path)
    # the numbers: the newest checkpoint's log history, as shown in the page
    state = json.loads((tiny_run / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "reward" in e]
    assert [e["step"] for e in logged] == [1, 2]
    for key in ("reward", "loss", "grad_norm", "rewards/format/mean", "completions/mean_length"):
        first = next(cell for cell in page.rows["summary"][key] if cell["value"] is not None)
        assert float(first["value"]) == logged[0][key], key
        assert float(page.rows["steps"]["2"][page.columns.index(key)]["value"]) == logged[1][key]
    # canaries: every step's completions from emergence.jsonl, with the metrics the callback logged
    rows = [json.loads(line) for line in (tiny_run / "emergence.jsonl").read_text().splitlines()]
    assert sorted({r["step"] for r in rows}) == [0, 1, 2]
    samples = [attrs for tag, attrs in page.tags if tag == "div" and "sample" in attrs.get("class", "")]
    assert len(samples) == len(rows)  # 3 canaries, 3 shown per step
    run = report.load_run(tiny_run)
    logged_usage = {
        e["step"]: e["emergence/think_usage_pct"] for e in state["log_history"] if "emergence/think_usage_pct" in e
    }
    assert logged_usage and all(run.series["emergence/think_usage_pct"][s] == v for s, v in logged_usage.items())
    text = "".join(page.text)
    for row in rows:
        assert row["question"] in text
