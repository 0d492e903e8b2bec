"""`reson report`: the plots and the HTML page of one or more runs, on constructed run folders and a real tiny run."""

from __future__ import annotations

import base64
import json
import math
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from reson.tools import report
from reson.tools.report import analysis, plots, runs

REPO = Path(__file__).resolve().parents[1]
PROMPT = "A conversation between User and Assistant. User: Tom has 3 apples and buys 2 more. How many now?. Assistant:"
# Model output is untrusted: the page must show these as text, never as markup.
HOSTILE = '<script>document.title="pwned"</script><img src=x onerror="alert(1)"></pre><b>bold</b>'
# TRL's keys below whose values are shares (fractions): the page shows them in percent. Reward means are rewards.
SHARES = {"completions/clipped_ratio", "frac_reward_zero_std"}


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
        "sampling/importance_sampling_ratio/mean": 1.0 - 0.002 * step,
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
# self-correction first at step 3 in a wrong answer (not a repaired slip), then at step 9 in a right one.
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


def make_run(run: Path) -> Path:
    """A run in progress: checkpoints at steps 4 and 8 (no final trainer_state.json yet), TensorBoard events up to
    step 10, and four canary steps in emergence.jsonl, then a half-written line."""
    write_state(run / "checkpoint-4", range(1, 5))
    write_state(run / "checkpoint-8", range(1, 9))
    write_events(run, range(1, 11))
    lines = [json.dumps(row) for row in CANARIES]
    (run / "emergence.jsonl").write_text("\n".join(lines) + '\n{"step": 12, "completion": "<thi')
    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """`make_run`'s run folder. Tests must not change it."""
    return make_run(tmp_path_factory.mktemp("runs") / "grpo-run")


@pytest.fixture(scope="module")
def page_path(run_dir, tmp_path_factory) -> Path:
    """The report of `run_dir`, every canary completion shown."""
    return report.build_report(run_dir, tmp_path_factory.mktemp("report"), samples=4)


@pytest.fixture(scope="module")
def run_curves(run_dir) -> plots.Curves:
    run = runs.load_run(run_dir)
    return plots.Curves(run.label, run.series, run.counts, analysis.markers(analysis.aha_steps(run)), run.reward_range)


def plot_named(name: str) -> plots.Plot:
    return next(plot for plot in plots.PLOTS if plot.name == name)


class PageParser(HTMLParser):
    """Collects tags, the numbers tables' cells, the canary samples and the text of the page."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.summary: dict[str, list[dict]] = {}  # metric -> its cells, every run's
        self.steps: dict[str, dict[str, list[dict]]] = {}  # run index -> step -> cells
        self.columns: dict[str, list[str]] = {}  # run index -> the per-step table's metric columns
        self.samples: list[dict] = []  # each canary sample: step (None outside a step), canary, verdict
        self._table = self._row = self._section = None
        self._cell: dict | None = None
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        classes = attrs.get("class", "").split()
        if tag == "table" and attrs.get("id") == "summary":
            self._table = self.summary
        elif tag == "table" and "steps" in classes:
            self._table = self.steps.setdefault(attrs["data-run"], {})
            self._run = attrs["data-run"]
        elif tag == "th" and self._table is not None and self._table is not self.summary and "data-key" in attrs:
            self.columns.setdefault(self._run, []).append(attrs["data-key"])
        elif tag == "tr" and self._table is not None:
            self._row = attrs.get("data-key") or attrs.get("data-step")
            if self._row is not None:
                self._table[self._row] = []
        elif tag == "td" and self._row is not None:
            self._cell = {"run": attrs.get("data-run"), "value": attrs.get("data-value"), "text": ""}
        elif tag == "section" and "canary" in classes:
            self._section = int(attrs["data-step"])
        elif tag == "div" and "sample" in classes:
            self.samples.append({"step": self._section, "canary": int(attrs["data-canary"]), "verdict": classes[1]})

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._table[self._row].append(self._cell)
            self._cell = None
        elif tag == "tr":
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "section":
            self._section = None

    def handle_data(self, data):
        self.text.append(data)
        if self._cell is not None:
            self._cell["text"] += data


def parse(page: Path) -> PageParser:
    parser = PageParser()
    parser.feed(page.read_text(encoding="utf-8"))
    parser.close()
    return parser


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        report.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "RUN [RUN ...]" in text and "--output_dir" in text and "--compare" in text
    assert "(default: 3)" in text  # the project's HelpFormatter shows defaults


def test_writes_2x_pngs_and_svgs_embedded_in_one_page(page_path):
    from PIL import Image

    out, page = page_path.parent, page_path
    assert page.name == "report.html"
    # every plot has its data in this run but Countdown's search (a maths run), so each is drawn, as PNG and SVG
    names = {plot.name for plot in plots.PLOTS} - {"search"}
    assert {p.stem for p in out.glob("*.png")} == names and {p.stem for p in out.glob("*.svg")} == names
    for name in names:
        panels = len(plot_named(name).panels)
        with Image.open(out / f"{name}.png") as image:
            image.verify()
        with Image.open(out / f"{name}.png") as image:
            # twice the pixels of the figure's 640 x 440 CSS pixels per panel
            assert image.format == "PNG" and image.size == (2 * 640 * panels, 2 * 440), (name, image.size)
        svg = ET.parse(out / f"{name}.svg").getroot()
        assert svg.tag == "{http://www.w3.org/2000/svg}svg" and svg.get("width") == f"{460.8 * panels:g}pt"
    # the page carries the plots themselves (SVG data URIs), not links to files beside it
    images = [attrs for tag, attrs in parse(page).tags if tag == "img"]
    embedded = {base64.b64decode(attrs["src"].removeprefix("data:image/svg+xml;base64,")) for attrs in images}
    assert len(images) == len(names) and embedded == {(out / f"{name}.svg").read_bytes() for name in names}


def test_numbers_in_the_page_match_the_logs(run_dir, page_path):
    page = parse(page_path)
    # trainer state (newest checkpoint) for steps 1-8, TensorBoard (float32) for 9 and 10
    expected = {
        key: {s: log_entry(s)[key] for s in range(1, 11)} for key in log_entry(1) if key not in ("step", "epoch")
    }
    for key, values in expected.items():
        cells = page.summary[key]
        assert [cell["text"] for cell in cells[:2]] == ["10", "1–10"]  # points, steps
        share = key in SHARES
        scale = 100.0 if share else 1.0  # shares in percent, in the value and the text
        first, last, low, high = (float(cell["value"]) for cell in cells[2:])
        assert first == scale * values[1]  # exact: from trainer_state.json
        assert math.isclose(last, scale * values[10], rel_tol=1e-6)  # float32 from the event file
        assert math.isclose(low, scale * min(values.values()), rel_tol=1e-6)
        assert math.isclose(high, scale * max(values.values()), rel_tol=1e-6)
        for cell in cells[2:]:  # the shown text is the same number, rounded to 4 significant digits
            number, _, unit = cell["text"].partition(" ")
            assert unit == ("%" if share else "")
            assert math.isclose(float(number), float(cell["value"]), rel_tol=1e-3, abs_tol=1e-12)
    assert page.summary["completions/clipped_ratio"][2]["text"] == "1.25 %"
    assert [cell["text"] for cell in page.summary["emergence/canary_accuracy"][2:]] == [
        "25 %",
        "100 %",
        "25 %",
        "100 %",
    ]
    steps = page.steps["0"]
    assert sorted(map(int, steps)) == list(range(11))  # logged steps and the canary step 0
    assert float(steps["7"][page.columns["0"].index("reward")]["value"]) == log_entry(7)["reward"]
    # canary metrics computed from emergence.jsonl
    run = runs.load_run(run_dir)
    assert run.series["emergence/think_usage"] == {0: 0.0, 3: 0.5, 6: 0.75, 9: 1.0}
    assert run.series["emergence/canary_accuracy"] == {0: 0.25, 3: 0.5, 6: 0.75, 9: 1.0}
    assert run.global_step == 10 and run.max_steps == 12 and run.state_file == "checkpoint-8/trainer_state.json"


def test_shares_read_in_percent_in_the_timeline(page_path):
    text = " ".join(parse(page_path).text)
    # step 6: 3 of 4 think, 3 of 4 right, none of the 3 thinking ones self-corrects
    assert "think usage 75 % · accuracy 75 % · self-correcting among thinking 0 % (of 3 thinking)" in text
    assert "accuracy 0.75" not in text


def test_aha_steps_on_a_constructed_log(run_dir, page_path):
    run = runs.load_run(run_dir)
    # 50% at step 3 does not pass half; the self-correction at step 3 is in a wrong answer, so the first repaired slip
    # is at step 9. Take-off: step 0 has no thinking completion, so the first rate is step 3's 1 of 2 (50 %); twice
    # that is never reached. (Counting step 0 as a rate of 0 would make step 3 the take-off.)
    assert analysis.aha_steps(run) == {"think": 6, "takeoff": None, "repaired_slip": 9}
    page = parse(page_path)
    boxes = {attrs["data-aha"]: attrs["data-step"] for tag, attrs in page.tags if "data-aha" in attrs}
    assert boxes == {"think": "6", "takeoff": "", "repaired_slip": "9"}


@pytest.mark.parametrize(
    ("rates", "takeoff", "why"),
    [
        ({10: 0.05, 20: 0.08, 30: 0.12}, 30, "the first step at twice 5 % and at 10 % or more"),
        ({10: 0.0, 20: 0.05, 30: 0.10}, 30, "from 0, twice the first is 0: the 10 % floor decides"),
        ({10: 0.2, 20: 0.3, 30: 0.39, 40: 0.4}, 40, "from 20 %, 40 % is needed"),
        ({10: 0.3, 20: 0.5}, None, "never twice the first"),
        ({10: 0.02, 20: 0.04, 30: 0.09}, None, "twice the first, but under 10 %"),
        ({}, None, "no thinking completion yet"),
    ],
)
def test_takeoff_rule(rates, takeoff, why):
    assert analysis.takeoff_step(rates) == takeoff, why


def test_aha_steps_from_logged_metrics_without_emergence_file(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    among, usage, right = (
        f"emergence/{key}"
        for key in ("self_correction_rate_among_thinking", "think_usage", "self_correction_rate_correct")
    )
    history = [
        {"step": 0, usage: 0.0, among: 0.0, right: 0.0},  # no thinking: no rate, whatever is logged
        {"step": 25, usage: 0.125, among: 0.08, right: 0.0},  # the first rate
        {"step": 50, usage: 0.5, among: 0.12, right: 0.0},  # over 10 % but under twice 8 %
        {"step": 75, usage: 0.625, among: 0.2, right: 0.0},  # the take-off
        {"step": 100, usage: 0.9, among: 0.25, right: 0.03},
    ]
    (run / "trainer_state.json").write_text(json.dumps({"global_step": 100, "max_steps": 100, "log_history": history}))
    assert analysis.aha_steps(runs.load_run(run)) == {"think": 75, "takeoff": 75, "repaired_slip": 100}


def test_canaries_picked_for_the_change(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    rows = [
        # step 0: nobody thinks; step 10: canary 2 is the first to close a think block (canary 1's stays open)
        *(canary(0, i, None, "7", False) for i in range(4)),
        canary(10, 0, None, "7", False),
        {**canary(10, 1, None, "7", False), "completion": "<think>3+2 is", "think_used": False},
        canary(10, 2, "3+2=5", "5", True),
        canary(10, 3, None, "5", True),
        # step 20: canaries 0 and 3 self-correct; 0 stays wrong, 3 repairs its slip: 3 is picked
        canary(20, 0, "3+2=6, wait, 3+2=6", "6", False),
        canary(20, 1, "3+2=5", "5", True),
        canary(20, 2, "3+2=5", "5", True),
        canary(20, 3, "3+2=6. Actually no: 3+2=5", "5", True),
    ]
    (run / "emergence.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    loaded = runs.load_run(run)
    picks = analysis.pick_canaries(loaded.canaries)
    assert [(pick.canary, pick.step) for pick in picks] == [(2, 10), (3, 20)]
    assert "close a think block, at step 10" in picks[0].why
    assert "“Actually” in its thinking at step 20, answer right" in picks[1].why
    page = parse(report.build_report(run, samples=2))
    # each step shows the two picked canaries, in pick order
    assert [(s["step"], s["canary"]) for s in page.samples if s["step"] is not None] == [
        (step, canary_id) for step in (0, 10, 20) for canary_id in (2, 3)
    ]
    # the repaired slip, its phrase marked
    slip = next(attrs for tag, attrs in page.tags if attrs.get("class") == "slip")
    assert slip["data-step"] == "20"
    assert [s for s in page.samples if s["step"] is None] == [{"step": None, "canary": 3, "verdict": "right"}]
    assert "Actually" in "".join(page.text) and ("mark", {}) in page.tags
    text = " ".join(page.text)
    assert "canary 2: the first to close a think block, at step 10" in text


def test_same_canary_first_to_think_and_to_correct_is_one_pick():
    rows = [canary(0, 0, None, "7", False), canary(0, 1, "3+2=6 wait 5", "5", True)]
    records = {0: [runs.canary_record(row) for row in rows]}
    [pick] = analysis.pick_canaries(records)
    assert pick.canary == 1 and pick.tag == "first to think, then to self-correct"


def test_countdown_canary_that_rejects_a_candidate_and_then_succeeds_is_picked():
    from types import SimpleNamespace

    from reson.core.countdown import search_measures
    from reson.core.metrics import completion_record

    def row(step: int, index: int, think: str, answer: str, right: bool) -> dict:
        completion = f"<think>{think}</think> <answer>{answer}</answer>"
        search = search_measures(completion, [13, 1, 20], 34)
        graded = SimpleNamespace(accuracy=float(right), format=1.0, search=search)
        record = completion_record(completion, PROMPT, graded)
        return {"step": step, "canary": index, "prompt": PROMPT, "completion": completion, **record}

    rows = [
        # step 0: canary 0 thinks and guesses right at once; canary 1 rejects a candidate but ends wrong
        row(0, 0, "13+1=14, 14+20=34", "13+1+20", True),
        row(0, 1, "13+20=33, 33*1=33, 33!=34 no; 20-13=7, 7+1=8", "20-13+1", False),
        # step 5: canary 1 rejects one and then succeeds: picked
        row(5, 1, "13+20=33, 33*1=33, 33!=34 no; 13+1=14, 14+20=34, 34=34 yes", "13+1+20", True),
    ]
    picks = analysis.pick_canaries({0: rows[:2], 5: rows[2:]})
    assert [(pick.canary, pick.step, pick.tag) for pick in picks] == [
        (0, 0, "first to think"),
        (1, 5, "first to reject a candidate and then succeed"),
    ]
    assert "1 candidate(s) checked, found wrong and left before a right answer, at step 5" in picks[1].why
    # one canary, both: one pick
    [pick] = analysis.pick_canaries({5: rows[2:]})
    assert pick.tag == "first to think, then to reject a candidate and then succeed"


def test_rows_without_record_keys_are_measured_from_their_text():
    # a file from another tool: only the completion and its grade
    row = {"step": 5, "prompt": PROMPT + " <think>", "completion": "3+2=6, wait: 3+2=5</think> 5", "accuracy": 1.0}
    record = runs.canary_record(row)
    assert record["think_used"] and record["self_correction"] and record["think_tokens"] == 3
    row = {"step": 5, "prompt": PROMPT, "completion": "<think></think> 5", "accuracy": 0.0}
    assert not runs.canary_record(row)["think_used"]


def test_rate_and_accuracy_axes_run_from_0_to_100(run_curves):
    for plot in plots.PLOTS:
        figure = plots.draw(plot, [run_curves])
        if figure is None:  # nothing of it logged (Countdown's search, in a maths run)
            continue
        for ax, panel in zip(figure.axes, plot.panels, strict=True):
            if any(plots.is_percent(key) for key in panel.keys):
                assert ax.get_ylim() == (0.0, 100.0), (plot.name, panel.ylabel)
            elif plot.name != "loss":  # counts, lengths, norms, rewards: from 0
                assert ax.get_ylim()[0] == 0.0, (plot.name, panel.ylabel)
    # the clipped ratio peaks at 12.5 %: drawn in percent on the fixed axis, not stretched to fill it
    clipped = plots.draw(plot_named("completions"), [run_curves]).axes[1]
    assert max(clipped.lines[0].get_ydata()) == pytest.approx(12.5) and clipped.get_ylim() == (0.0, 100.0)
    accuracy = plots.draw(plot_named("canary_accuracy"), [run_curves]).axes[0]
    assert list(accuracy.lines[0].get_ydata()) == [25.0, 50.0, 75.0, 100.0]
    rewards = plots.draw(plot_named("rewards"), [run_curves]).axes[0]
    assert rewards.get_ylim() == plots.REWARD_RANGE


def test_every_line_of_a_panel_stays_visible():
    # three rates that coincide everywhere, as the self-correction rates do before anything thinks
    same = {0: 0.0, 10: 0.0, 20: 0.0}
    keys = plot_named("self_correction").keys
    curves = plots.Curves("run", dict.fromkeys(keys, same))
    lines = plots.draw(plot_named("self_correction"), [curves]).axes[0].lines
    assert len(lines) == 3
    assert len({(line.get_linestyle(), line.get_marker()) for line in lines}) == 3  # each its own style
    # later ones drawn over earlier ones with smaller markers, so the one below shows around them
    assert [line.get_zorder() for line in lines] == sorted(line.get_zorder() for line in lines)
    assert lines[0].get_markersize() > lines[1].get_markersize() > lines[2].get_markersize()


def test_reward_band_clipped_to_the_reward_range(tmp_path):
    # mean 0.1 ± 0.3 would reach -0.2; mean 1.1 ± 0.3 would reach 1.4 with rewards weighed 1.0 and 0.2
    series = {"reward": {1: 0.1, 2: 1.1}, "reward_std": {1: 0.3, 2: 0.3}}
    run = tmp_path / "run"
    run.mkdir()
    (run / "train_config.yaml").write_text("rewards: [accuracy, format]\nreward_weights: [1.0, 0.2]\n")
    assert runs.reward_range(run) == (0.0, 1.2)
    assert runs.reward_range(tmp_path) == (0.0, None)  # no config: rewards score 0 or more
    ax = plots.draw(plot_named("reward"), [plots.Curves("run", series, band_range=(0.0, 1.2))]).axes[0]
    [band] = ax.collections
    heights = band.get_paths()[0].vertices[:, 1]
    assert min(heights) == 0.0 and max(heights) == pytest.approx(1.2)
    assert ax.get_ylim()[0] == 0.0


def test_thinking_points_show_their_count(run_curves):
    ax = plots.draw(plot_named("think_tokens"), [run_curves]).axes[0]
    # step 0: no completion thinks, so no mean: left out; then 2, 3 and 4 thinking completions
    assert list(ax.lines[0].get_xdata()) == [3, 6, 9]
    assert [text.get_text() for text in ax.texts] == ["n=2", "n=3", "n=4"]
    assert ax.get_legend().get_title().get_text() == plots.THINKING_COUNT
    # the rate among thinking completions carries the same counts; the plain rates (of all) do not
    ax = plots.draw(plot_named("self_correction"), [run_curves]).axes[0]
    assert [text.get_text() for text in ax.texts] == ["n=2", "n=3", "n=4"]


def test_two_runs_overlaid_one_colour_each(run_curves):
    other = plots.Curves(
        "seed2", {key: {s: 0.5 * v for s, v in values.items()} for key, values in run_curves.series.items()}
    )
    figure = plots.draw(plot_named("reward"), [run_curves, other])
    ax = figure.axes[0]
    assert len(ax.lines) == 2 and ax.lines[0].get_color() != ax.lines[1].get_color()
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[:2] == [run_curves.label, "seed2"]
    # a panel of several metrics: colours name the runs, styles the metrics
    ax = plots.draw(plot_named("self_correction"), [run_curves, other]).axes[0]
    assert len({line.get_color() for line in ax.lines}) == 2
    legend = [text.get_text() for text in ax.get_legend().get_texts()]
    assert legend[:2] == [run_curves.label, "seed2"]
    assert plots.LABELS["emergence/self_correction_rate_among_thinking"] in legend


def test_cli_with_two_runs(run_dir, tmp_path, capsys):
    runs = [tmp_path / "seed1" / "grpo", tmp_path / "seed2" / "grpo"]
    for run in runs:
        shutil.copytree(run_dir, run)
    out = tmp_path / "both"
    assert report.main([*map(str, runs), "--output_dir", str(out), "--samples", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(out / "report.html")
    page = parse(out / "report.html")
    # the two folders share a name: their parents tell them apart, in the table and the legends
    groups = [attrs for tag, attrs in page.tags if tag == "th" and "colspan" in attrs]
    assert [(g["data-run"], g["colspan"]) for g in groups] == [("0", "6"), ("1", "6")]
    assert "seed1/grpo" in page.text and "seed2/grpo" in page.text
    assert {cell["run"] for cell in page.summary["reward"]} == {"0", "1"} and len(page.summary["reward"]) == 12
    assert set(page.steps) == {"0", "1"}
    assert len([s for s in page.samples if s["step"] is not None]) == 2 * 4  # one per step, per run
    svg = (out / "reward.svg").read_text()
    assert "seed1/grpo" in svg and "seed2/grpo" in svg
    # several runs need a folder for their report
    assert report.main(list(map(str, runs))) == 2
    assert "--output_dir" in capsys.readouterr().err


def test_model_output_is_escaped(page_path):
    source = page_path.read_text(encoding="utf-8")
    page = parse(page_path)
    assert HOSTILE not in source
    assert "<script>document.title" not in source
    # the only script is the page's own image check; the only images are the plots
    assert [tag for tag, _ in page.tags].count("script") == 1
    assert all(attrs["src"].startswith("data:image/svg+xml;base64,") for tag, attrs in page.tags if tag == "img")
    assert not any("onerror" in attrs for _, attrs in page.tags)
    text = "".join(page.text)
    assert HOSTILE in text  # shown, as text, in the wrong answers and in a thinking block


def test_thinking_and_answer_shown_apart_and_marked(page_path):
    page = parse(page_path)
    verdicts = {(row["step"], row["canary"]): "right" if row["accuracy"] == 1.0 else "wrong" for row in CANARIES}
    in_steps = [s for s in page.samples if s["step"] is not None]
    assert {(s["step"], s["canary"]): s["verdict"] for s in in_steps} == verdicts and len(in_steps) == len(CANARIES)
    # plus the repaired slip: canary 0 at step 9
    assert [s for s in page.samples if s["step"] is None] == [{"step": None, "canary": 0, "verdict": "right"}]
    thinks = [tag for tag, attrs in page.tags if tag == "pre" and attrs.get("class") == "think"]
    assert len(thinks) == sum(row["completion"].startswith("<think>") for row in CANARIES) + 1
    answers = [tag for tag, attrs in page.tags if tag == "pre" and attrs.get("class") == "answer"]
    assert len(answers) == len(CANARIES) + 1


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
    run = runs.load_run(copy)
    assert run.state_file is None and run.global_step == 10
    assert math.isclose(run.series["reward"][10], log_entry(10)["reward"], rel_tol=1e-6)


def test_newest_trainer_state_wins_and_half_written_one_is_skipped(tmp_path):
    run = tmp_path / "run"
    write_state(run / "checkpoint-8", range(1, 9))
    write_state(run / "checkpoint-12", range(1, 13), text='{"global_step": 12, "log_hi')  # being written
    write_state(run / "checkpoint-4", range(1, 5))
    assert runs.load_run(run).state_file == "checkpoint-8/trainer_state.json"
    write_state(run, range(1, 13))  # the finished run's own state
    loaded = runs.load_run(run)
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
        page = parse(report.build_report(run_dir, tmp_path / "report", compare=given))
        text = "".join(page.text)
        assert "Baseline vs After GRPO" in text
        assert "17.0" in text and "36.5" in text and "+19.5" in text
        assert any(tag == "table" and "compare" in attrs.get("class", "") for tag, attrs in page.tags)


def test_clear_errors(run_dir, tmp_path, capsys):
    assert report.main([str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert report.main([str(tmp_path / "empty")]) == 2
    assert "holds no training logs" in capsys.readouterr().err
    assert report.main([str(tmp_path / "empty"), "--compare", str(tmp_path / "nope.md")]) == 2
    assert "--compare" in capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    assert report.main([str(run_dir), "--output_dir", str(tmp_path / "a-file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert report.main([str(run_dir), str(run_dir), "--output_dir", str(tmp_path / "out")]) == 2
    assert "given twice" in capsys.readouterr().err


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
    n_plots = len(list(page.parent.glob("*.svg")))
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

    assert report.main([str(tiny_run), "--output_dir", str(tmp_path)]) == 0
    page_path = tmp_path / "report.html"
    pngs = {p.stem for p in tmp_path.glob("*.png")}
    rows = [json.loads(line) for line in (tiny_run / "emergence.jsonl").read_text().splitlines()]
    # what the trainer and the canary callback log makes every plot but vLLM's, and think lengths only once a
    # canary completion thinks (the random tiny model may never)
    unlogged = {"importance_sampling", "search"} | (set() if any(r["think_used"] for r in rows) else {"think_tokens"})
    assert pngs == {plot.name for plot in plots.PLOTS} - unlogged
    assert {p.stem for p in tmp_path.glob("*.svg")} == pngs
    for name in pngs:
        with Image.open(tmp_path / f"{name}.png") as image:
            image.verify()
    page = parse(page_path)
    # the numbers: the newest checkpoint's log history, as shown in the page
    state = json.loads((tiny_run / "checkpoint-2" / "trainer_state.json").read_text())
    logged = [e for e in state["log_history"] if "reward" in e]
    assert [e["step"] for e in logged] == [1, 2]
    for key in ("reward", "loss", "grad_norm", "rewards/format/mean", "completions/mean_length"):
        first = page.summary[key][2]  # after points and steps
        assert float(first["value"]) == logged[0][key], key
        assert float(page.steps["0"]["2"][page.columns["0"].index(key)]["value"]) == logged[1][key]
    # canaries: every step's completions from emergence.jsonl, with the metrics the callback logged
    assert sorted({r["step"] for r in rows}) == [0, 1, 2]
    samples = [sample for sample in page.samples if sample["step"] is not None]
    assert len(samples) == len(rows)  # 3 canaries, 3 shown per step
    run = runs.load_run(tiny_run)
    logged_usage = {
        e["step"]: e["emergence/think_usage"] for e in state["log_history"] if "emergence/think_usage" in e
    }
    assert logged_usage and all(run.series["emergence/think_usage"][s] == v for s, v in logged_usage.items())
    text = "".join(page.text)
    for row in rows:
        assert row["question"] in text


def test_a_full_disk_leaves_the_earlier_report_whole(run_dir, tmp_path, monkeypatch, capsys):
    """Each plot and the page are written beside their place and moved in whole: a write cut short by a full disk
    leaves the earlier report's files as they were, no temporary file behind, and one line."""
    import errno

    from matplotlib.figure import Figure

    out = tmp_path / "report"
    assert report.main([str(run_dir), "--output_dir", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def full_disk(self, fname, *args, **kwargs):
        Path(fname).write_bytes(b"<svg half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Figure, "savefig", full_disk)
    assert report.main([str(run_dir), "--output_dir", str(out)]) == 1
    said = capsys.readouterr().err.strip()
    assert said.count("\n") == 0 and "is full (No space left on device" in said
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
