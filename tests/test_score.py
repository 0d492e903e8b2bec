"""`reson score`: end to end on a small JSONL, and its errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from reson.evaluation.score import main

ROWS = [
    # right, R1 shape: accuracy 1.0, format 1.0
    {"completion": "<think>16-3-4=9, 9*2=18</think> <answer>18</answer>", "answer": "18", "id": "a"},
    # wrong number, well-formed: accuracy 0.0, format 1.0
    {"completion": "<think>16-3=13</think> <answer>26</answer>", "answer": "18", "id": "b"},
    # prefilled prompt, gold given as a full GSM8K solution: accuracy 1.0, format 1.0
    {"completion": " 9*2=18 </think> $18", "answer": "9 * 2 = 18\n#### 18", "prompt": "Q? Assistant: <think>"},
    # right only inside an unclosed think block: accuracy 0.0, format 0.25
    {"completion": "<think>it is \\frac{1}{2}", "answer": "0.5"},
    # no tags, right answer through math-verify: accuracy 1.0, format 0.0
    {"completion": "So the answer is \\boxed{\\frac{\\sqrt{2}}{2}}.", "answer": "\\frac{1}{\\sqrt{2}}"},
    # empty gold: accuracy None (skipped), format 1.0
    {"completion": "<think>x</think> 4", "answer": ""},
]
EXPECTED = [(1.0, 1.0), (0.0, 1.0), (1.0, 1.0), (0.0, 0.25), (1.0, 0.0), (None, 1.0)]


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_score_end_to_end(tmp_path, capsys):
    source = _write(tmp_path / "completions.jsonl", ROWS)
    output = tmp_path / "scored.jsonl"
    assert main([str(source), "--output_file", str(output), "--reward_timeout", "3"]) == 0
    printed = capsys.readouterr().out
    assert "completions: 6" in printed
    assert "accuracy: 0.6000 (3/5 correct)" in printed
    assert "skipped (gold answer unparseable): 1" in printed
    assert "format 1.0 :  66.67%  (4)" in printed
    scored = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["accuracy"], r["format"]) for r in scored] == EXPECTED
    for before, after in zip(ROWS, scored, strict=True):  # every input field comes back unchanged
        assert {k: after[k] for k in before} == before


def test_reson_score_command_and_help(tmp_path):
    source = _write(tmp_path / "c.jsonl", ROWS[:2])
    run = subprocess.run(
        [sys.executable, "-m", "reson.cli", "score", str(source)], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "accuracy: 0.5000 (1/2 correct)" in run.stdout
    help_run = subprocess.run([sys.executable, "-m", "reson", "score", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "--output_file" in help_run.stdout and "--reward_timeout" in help_run.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),  # missing file
        ('{"completion": "4", "answer": "4"}\n{not json}\n', "line 2: not a JSON object"),  # named by number
        ('{"completion": "4"}\n', "row 1: each line needs 'completion'"),  # missing column
        ('{"answer": "4"}\n', "row 1: each line needs 'completion'"),
        ('["completion", "answer"]\n', "line 1: not a JSON object (expected a JSON object, got list)"),
        ("\n\n", "no completions"),
    ],
    ids=["missing file", "bad json", "no answer", "no completion", "not an object", "empty"],
)
def test_score_input_errors(tmp_path, capsys, content, message):
    path = tmp_path / "in.jsonl"
    if content is not None:
        path.write_text(content)
    assert main([str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err


def test_bad_timeout_and_output_file(tmp_path, capsys):
    source = _write(tmp_path / "c.jsonl", ROWS[:1])
    assert main([str(source), "--reward_timeout", "0"]) == 2
    assert "--reward_timeout must be a positive number" in capsys.readouterr().err
    assert main([str(source), "--output_file", str(tmp_path / "missing" / "out.jsonl")]) == 2
    assert "no such folder" in capsys.readouterr().err
    existing = _write(tmp_path / "scored.jsonl", ROWS[:1])
    assert main([str(source), "--output_file", str(existing)]) == 2  # an existing file is not replaced silently
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(source), "--output_file", str(existing), "--overwrite"]) == 0


def test_eval_samples_and_canary_records_score_as_they_are(tmp_path, capsys):
    """eval's samples.jsonl and a run's emergence.jsonl name the gold `gold`; score reads them without changes."""
    rows = [{"completion": "<think>a</think> <answer>18</answer>", "gold": "18", "prompt": "Q?", "step": 0}]
    assert main([str(_write(tmp_path / "emergence.jsonl", rows))]) == 0
    assert "accuracy: 1.0000 (1/1 correct)" in capsys.readouterr().out


def test_countdown_rows_score_beside_maths_rows(tmp_path, capsys):
    """A file may hold both tasks: Countdown rows (nums, target) are graded by the Countdown rules, the rest against
    their gold answer."""
    rows = [
        # right: each number once, equal to the target
        {
            "completion": "<think>6/4=1.5, 1.5*8=12</think> <answer>6/4*8+1</answer>",
            "nums": [6, 4, 8, 1],
            "target": 13,
        },
        # uses 8 twice and 1 never: wrong, however close
        {"completion": "<think>try</think> <answer>6+8-1</answer>", "nums": [6, 4, 8, 1], "target": 13},
        # the maths row beside them, right
        {"completion": "<think>9*2=18</think> <answer>18</answer>", "answer": "18"},
    ]
    output = tmp_path / "scored.jsonl"
    assert main([str(_write(tmp_path / "mixed.jsonl", rows)), "--output_file", str(output)]) == 0
    scored = [json.loads(line) for line in output.read_text().splitlines()]
    assert [(r["accuracy"], r["format"], r["extracted"]) for r in scored] == [
        (1.0, 1.0, "6/4*8+1"),
        (0.0, 1.0, "6+8-1"),
        (1.0, 1.0, "18"),
    ]
    assert "accuracy: 0.6667 (2/3 correct)" in capsys.readouterr().out
