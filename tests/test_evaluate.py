"""`reson eval` and `reson compare`: metric maths against brute force, hand-made completions with known scores,
end-to-end runs on the tiny model with the suite's data files (tests/data), kill-and-resume, and bad input."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import pytest

from reson import cli
from reson.core.metrics import default_ks, group_answers, maj_at_k, pass_at_k
from reson.evaluation import evaluate
from reson.evaluation.compare import compare, compare_table
from reson.evaluation.evaluate import (
    EvalError,
    dataset_metrics,
)
from reson.evaluation.store import read_samples

# ---------------------------------------------------------------------------------------------------------
# pass@k and maj@k against enumeration of every k-subset
# ---------------------------------------------------------------------------------------------------------


def _brute_pass(correct: list[bool], k: int) -> Fraction:
    subsets = list(itertools.combinations(range(len(correct)), k))
    return Fraction(sum(any(correct[i] for i in s) for s in subsets), len(subsets))


def _brute_maj(groups: list[int | None], right: dict[int, bool], k: int) -> Fraction:
    """Majority vote of each k-subset: the most frequent group wins; a tie scores the share of tied groups that
    are right; a subset without any answer scores 0."""
    subsets = list(itertools.combinations(range(len(groups)), k))
    total = Fraction(0)
    for s in subsets:
        votes: dict[int, int] = {}
        for i in s:
            if groups[i] is not None:
                votes[groups[i]] = votes.get(groups[i], 0) + 1
        if not votes:
            continue
        top = max(votes.values())
        tied = [g for g, v in votes.items() if v == top]
        total += Fraction(sum(right[g] for g in tied), len(tied))
    return total / len(subsets)


def test_pass_at_k_matches_enumeration():
    for n in range(1, 8):
        for c in range(n + 1):
            correct = [True] * c + [False] * (n - c)
            for k in range(1, n + 1):
                assert pass_at_k(n, c, k) == pytest.approx(float(_brute_pass(correct, k)), abs=1e-12), (n, c, k)


def test_maj_at_k_matches_enumeration():
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 8)
        num_groups = rng.randint(1, 4)
        groups = [rng.choice([None, *range(num_groups)]) for _ in range(n)]
        right = {g: rng.random() < 0.4 for g in range(num_groups)}
        used = sorted({g for g in groups if g is not None})
        counts = [groups.count(g) for g in used]
        for k in range(1, n + 1):
            expected = float(_brute_maj(groups, right, k))
            got = maj_at_k(counts, [right[g] for g in used], n, k)
            assert got == pytest.approx(expected, abs=1e-12), (groups, right, k)


def test_maj_at_k_hand_computed():
    # answers a, a, b with b right: one draw picks b a third of the time; pairs {a,a} lose, {a,b} tie (half
    # credit, twice): 1/3; all three: a wins.
    assert maj_at_k([2, 1], [False, True], 3, 1) == pytest.approx(1 / 3)
    assert maj_at_k([2, 1], [False, True], 3, 2) == pytest.approx(1 / 3)
    assert maj_at_k([2, 1], [False, True], 3, 3) == 0.0
    # the right answer twice out of four, the other two samples gave no answer: it always wins when drawn
    assert maj_at_k([2], [True], 4, 2) == pytest.approx(1 - 1 / 6)


def test_default_ks():
    assert default_ks(1) == [1]
    assert default_ks(4) == [1, 2, 4]
    assert default_ks(6) == [1, 2, 4, 6]


def test_answers_grouped_by_the_scoring_equivalence():
    # 1/2, 0.5 and \frac{1}{2} are one answer to the scorer; 3 is another; no answer is no group
    groups = group_answers(["1/2", "0.5", "3", None, "\\frac{1}{2}", " 3 "], evaluate._score_equivalent(None))
    assert groups == [0, 0, 1, None, 0, 1]


# ---------------------------------------------------------------------------------------------------------
# metrics on hand-made completions, scored by the training code
# ---------------------------------------------------------------------------------------------------------


class _Out:
    def __init__(self, text: str, num_tokens: int, truncated: bool = False):
        self.text, self.num_tokens, self.truncated = text, num_tokens, truncated


class _WordTokenizer:
    """Counts whitespace words as tokens, so think-token counts below are easy to check by eye."""

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}


PROMPT = "User: q. Assistant:"


def _records(cases, n: int = 1):
    """cases: (id, gold, completion, num_tokens, truncated, extra row fields)"""
    batch, outputs = [], []
    for i, (pid, gold, text, tokens, truncated, extra) in enumerate(cases):
        batch.append(("set", {"id": pid, "prompt": PROMPT, "answer": gold, **extra}, i % n))
        outputs.append(_Out(text, tokens, truncated))
    return evaluate._score_batch(batch, outputs, _WordTokenizer(), None)


def test_metrics_on_hand_made_completions():
    records = _records(
        [
            # right, well formed: think 3 words
            ("a", "4", "<think> 2+2 = 4 </think> <answer>4</answer>", 12, False, {"level": 1, "subject": "Algebra"}),
            # right after a self-correction: think 6 words
            (
                "b",
                "6",
                "<think> 3+3 = 5, wait: 6 </think> <answer>6</answer>",
                14,
                False,
                {"level": 2, "subject": "Algebra"},
            ),
            # wrong, no tags at all
            ("c", "8", "The answer is 7", 4, False, {"level": 2, "subject": "Geometry"}),
            # cut off inside the think block: no answer, truncated
            ("d", "25", "<think> 5*5 = 2", 30, True, {"level": 2, "subject": "Geometry"}),
        ]
    )
    assert [r["accuracy"] for r in records] == [1.0, 1.0, 0.0, 0.0]
    assert [r["extracted"] for r in records] == ["4", "6", "7", None]
    assert [r["think_tokens"] for r in records] == [3, 5, 0, 3]
    m = dataset_metrics(records)
    assert m["accuracy"] == 0.5
    assert m["format_compliance"] == 0.5  # only the two tagged completions are graded 1.0
    assert m["think_usage"] == 0.5  # closed, non-empty think blocks: a and b
    assert m["avg_think_tokens"] == 4.0  # (3 + 5) / 2, over completions that used the block
    assert m["self_correction_rate"] == 0.25  # "wait" in b
    assert m["self_correction_rate_among_correct"] == 0.5  # b of the correct a, b
    assert m["truncation_rate"] == 0.25
    assert m["avg_completion_tokens"] == 15.0  # (12 + 14 + 4 + 30) / 4
    assert m["count"] == 4 and m["num_problems"] == 4
    assert not any(k.startswith(("pass@", "maj@")) for k in m)
    assert evaluate.breakdown(records, "level") == {
        "1": {"accuracy": 1.0, "count": 1},
        "2": {"accuracy": 1 / 3, "count": 3},
    }
    assert evaluate.breakdown(records, "subject") == {
        "Algebra": {"accuracy": 1.0, "count": 2},
        "Geometry": {"accuracy": 0.0, "count": 2},
    }


def test_pass_and_maj_at_k_on_hand_made_samples():
    # problem p: 4 samples, one right (12), two agreeing on a wrong 13 (one written 13.0), one without answer.
    # problem q: 4 samples, all right in different forms.
    records = _records(
        [
            ("p", "12", "<answer>12</answer>", 3, False, {}),
            ("p", "12", "<answer>13</answer>", 3, False, {}),
            ("p", "12", "<answer>13.0</answer>", 3, False, {}),
            ("p", "12", "no idea", 2, False, {}),
            ("q", "1/2", "<answer>0.5</answer>", 3, False, {}),
            ("q", "1/2", "<answer>\\frac{1}{2}</answer>", 3, False, {}),
            ("q", "1/2", "<answer>1/2</answer>", 3, False, {}),
            ("q", "1/2", "<answer>0.50</answer>", 3, False, {}),
        ],
        n=4,
    )
    m = dataset_metrics(records, n=4)
    assert m["accuracy"] == 5 / 8
    assert m["pass@1"] == pytest.approx(5 / 8)
    assert m["pass@2"] == pytest.approx((0.5 + 1) / 2)  # p: 1 - C(3,2)/C(4,2)
    assert m["pass@4"] == 1.0
    # p: maj@4 picks 13 (two votes); maj@1 is right a quarter of the time; q is always right
    assert m["maj@4"] == 0.5
    assert m["maj@1"] == pytest.approx((0.25 + 1) / 2)
    assert m["maj@2"] == pytest.approx((float(_brute_maj([0, 1, 1, None], {0: True, 1: False}, 2)) + 1) / 2)


def test_read_samples_skips_a_torn_last_line_and_a_damaged_one(tmp_path, caplog):
    path = tmp_path / "samples.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": 3, "comp')
    assert read_samples(path) == [{"a": 1}, {"a": 2}]
    assert path.read_text() == '{"a": 1}\n{"a": 2}\n'  # the file is clean again for appending
    path.write_text('{"a": 1}\n{"a": 2, "brok\n{"a": 3}\n{"a": 4}\n')  # one damaged line in the middle
    assert read_samples(path) == [{"a": 1}, {"a": 3}, {"a": 4}]  # the records after it are kept
    assert "skipped 1 damaged line(s) (lines 2)" in caplog.text


# ---------------------------------------------------------------------------------------------------------
# compare
# ---------------------------------------------------------------------------------------------------------


def _results(accuracy, format_compliance, level_acc, template="r1_zero"):
    return {
        "model": "m",
        "template": template,
        "split": "test",
        "num_problems": 2,
        "seed": 0,
        "backend": "hf",
        "generation": {"temperature": 0.0, "top_p": 1.0, "num_generations": 1, "max_completion_length": 64},
        "datasets": {
            "math500": {
                "ids": ["x", "y"],
                "metrics": {"accuracy": accuracy, "format_compliance": format_compliance, "avg_think_tokens": 10.0},
                "by_level": {"3": {"accuracy": level_acc, "count": 2}},
                "by_subject": {},
            }
        },
    }


def test_compare_table_two_runs(tmp_path):
    for name, res in (("base", _results(0.25, 0.0, 0.5)), ("grpo", _results(0.5, 1.0, 1.0, template="plain"))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(res))
    out = tmp_path / "table.md"
    table = compare([tmp_path / "base", tmp_path / "grpo"], output=out)
    assert out.read_text() == table
    lines = table.splitlines()
    assert lines[0] == "## Baseline vs After GRPO"
    assert "| Dataset | Metric | Baseline | After GRPO | Δ |" in lines
    assert "| math500 | accuracy (%) | 25.0 | 50.0 | +25.0 |" in lines
    assert "| math500 | format compliance (%) | 0.0 | 100.0 | +100.0 |" in lines
    assert "| math500 | mean think tokens | 10.0 | 10.0 | +0.0 |" in lines
    assert "| math500 | accuracy, level 3 (%) | 50.0 | 100.0 | +50.0 |" in lines
    assert "Note: the runs differ in template (Baseline: r1_zero, After GRPO: plain)." in lines


def test_compare_three_runs_have_no_delta_column():
    runs = [_results(0.1, 0.1, 0.1), _results(0.2, 0.2, 0.2), _results(0.3, 0.3, 0.3)]
    table = compare_table(runs, ["a", "b", "c"])
    assert "| Dataset | Metric | a | b | c |" in table
    assert "| math500 | accuracy (%) | 10.0 | 20.0 | 30.0 |" in table
    assert "Δ" not in table


def test_compare_cli_writes_the_file(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "results.json").write_text(json.dumps(_results(0.5, 0.5, 0.5)))
    out = tmp_path / "c.md"
    assert cli.main(["compare", str(tmp_path / "r"), "--output_file", str(out)]) == 0
    assert "| math500 | accuracy (%) | 50.0 |" in capsys.readouterr().out
    assert out.is_file()
    assert cli.main(["compare", str(tmp_path / "r"), "--output_file", str(out)]) == 2  # not replaced silently
    assert "--overwrite" in capsys.readouterr().err
    assert cli.main(["compare", str(tmp_path / "r"), "--output_file", str(out), "--overwrite"]) == 0
    assert cli.main(["compare", str(tmp_path / "missing")]) == 2
    assert "no results.json" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["eval", "compare"])
def test_help(command, capsys):
    assert cli.main([command, "--help"]) == 0
    text = capsys.readouterr().out
    assert f"reson {command}" in text
    if command == "eval":
        for option in (
            "--model_name_or_path",
            "--datasets",
            "--num_problems",
            "--backend",
            "--num_generations",
            "--template",
            "--output_dir",
            "--max_completion_length",
            "--reward_timeout",
        ):
            assert option in text
        assert "(default: 1.0)" in text  # every option says its default


# ---------------------------------------------------------------------------------------------------------
# generation: stop at </answer>, token counts, truncation
# ---------------------------------------------------------------------------------------------------------


def test_stop_string_looks_at_the_completion_only(tiny_model_path):
    import torch
    from transformers import AutoModelForCausalLM

    from reson.core.generation import STOP, HFEngine, Sampling, _ending_tokens, _StopStrings
    from reson.core.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_path))
    prompt = tok("The tags are <answer> </answer>. Assistant:", add_special_tokens=False)["input_ids"]
    stop = _StopStrings(tok, len(prompt), STOP, _ending_tokens(tok, STOP))
    done_row = prompt + tok(" <think> 2+3=5 </think> <answer>5</answer>", add_special_tokens=False)["input_ids"]
    open_row = prompt + tok(" <think> 2+3=5 </think> <answer>5", add_special_tokens=False)["input_ids"]
    open_row = open_row + [open_row[-1]] * (len(done_row) - len(open_row))  # same length, never closed
    assert len(done_row) == len(open_row)
    assert stop(torch.tensor([done_row, open_row])).tolist() == [True, False]
    # the prompt quotes </answer>, but nothing was generated yet: no stop
    assert stop(torch.tensor([prompt])).tolist() == [False]

    engine = HFEngine(AutoModelForCausalLM.from_pretrained(tiny_model_path), tok)
    eos = tok.eos_token_id
    answer = tok(" <answer>5</answer> more text", add_special_tokens=False)["input_ids"]
    g = engine._finish(answer, Sampling(max_new_tokens=len(answer)))
    assert g.text == " <answer>5</answer>" and g.finish_reason == "stop" and not g.truncated
    ended = tok(" 5", add_special_tokens=False)["input_ids"]
    g = engine._finish(ended + [eos, eos], Sampling(max_new_tokens=len(ended) + 2))
    assert (g.text, g.num_tokens, g.truncated) == (" 5", len(ended), False)
    g = engine._finish(ended, Sampling(max_new_tokens=len(ended)))
    assert g.truncated and g.num_tokens == len(ended)


# ---------------------------------------------------------------------------------------------------------
# bad input: a clear error before any model loads
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture
def no_model_loading(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("a model was loaded before the input was checked")

    monkeypatch.setattr(evaluate.generation, "load_engine", fail)


def test_bad_input_fails_before_any_model_loads(tmp_path, tiny_model_path, shared_data, no_model_loading):
    gsm8k = str(shared_data / "gsm8k" / "test.jsonl")
    with pytest.raises(EvalError, match="gsm9k: unknown dataset"):
        evaluate.evaluate(str(tiny_model_path), ["gsm9k"], tmp_path / "a")
    with pytest.raises(EvalError, match="no such folder"):
        evaluate.evaluate(str(tmp_path / "no_model"), [gsm8k], tmp_path / "a")
    with pytest.raises(EvalError, match="has no config.json"):
        evaluate.evaluate(str(tmp_path), [gsm8k], tmp_path / "a")
    with pytest.raises(EvalError, match="aime24 .test. has only 6 problems"):
        evaluate.evaluate(
            str(tiny_model_path),
            [str(shared_data / "competition" / "aime24_test.jsonl")],
            tmp_path / "a",
            num_problems=7,
        )
    with pytest.raises(EvalError, match="no such file"):
        evaluate.evaluate(str(tiny_model_path), [str(tmp_path / "nope.jsonl")], tmp_path / "a")
    with pytest.raises(EvalError, match="identical answers"):
        evaluate.evaluate(str(tiny_model_path), [gsm8k], tmp_path / "a", num_generations=4)
    # a folder holding another model's evaluation
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "run.json").write_text(json.dumps({"model": "Qwen/Qwen2.5-3B", "datasets": {}}))
    (taken / "samples.jsonl").write_text('{"dataset": "gsm8k", "id": "gsm8k/test/0", "sample_index": 0}\n')
    with pytest.raises(EvalError, match="holds an evaluation with other settings.*model"):
        evaluate.evaluate(str(tiny_model_path), [gsm8k], taken, num_problems=2)
    argv = ["eval", "--model_name_or_path", str(tiny_model_path), "--datasets", "gsm9k", "--output_dir", str(tmp_path)]
    assert cli.main(argv) == 2


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="checks the error where vLLM is absent")
def test_vllm_asked_but_absent(tmp_path, tiny_model_path, shared_data, no_model_loading):
    with pytest.raises(EvalError, match="backend 'vllm' needs vLLM"):
        evaluate.evaluate(str(tiny_model_path), [str(shared_data / "gsm8k" / "test.jsonl")], tmp_path, backend="vllm")


# ---------------------------------------------------------------------------------------------------------
# end to end on the tiny model
# ---------------------------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread: a tiny model gains nothing from more, and on a busy 2-core machine two threads wait
    on each other (4x slower here)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_end_to_end_on_shared_files(tmp_path, tiny_model_path, shared_data):
    from reson.core.data import load_problems, sample_rows

    gsm8k = shared_data / "gsm8k" / "test.jsonl"
    math500 = shared_data / "math" / "math500_test.jsonl"
    out = tmp_path / "run"
    results = evaluate.evaluate(
        str(tiny_model_path),
        [str(gsm8k), str(math500)],
        out,
        num_problems=5,
        max_completion_length=12,
        batch_size=3,
        progress=False,
    )
    assert set(results["datasets"]) == {"gsm8k", "math500"}
    assert results["datasets"]["gsm8k"]["ids"] == [r["id"] for r in sample_rows(load_problems(str(gsm8k)), 5)]
    assert results["generation"]["max_completion_length"] == 12 and results["template"] == "r1_zero"
    assert results["versions"]["transformers"]
    stored = json.loads((out / "results.json").read_text())
    assert stored["datasets"] == results["datasets"]
    samples = _lines(out / "samples.jsonl")
    assert len(samples) == 10
    for s in samples:
        assert {"prompt", "completion", "extracted", "gold", "accuracy", "format", "id", "sample_index"} <= set(s)
        assert s["num_tokens"] <= 12
        assert s["prompt"].endswith("Assistant:")
    # MATH rows carry level and subject, and get a breakdown whose counts add up
    by_level = results["datasets"]["math500"]["by_level"]
    assert sum(v["count"] for v in by_level.values()) == 5
    assert sum(v["count"] for v in results["datasets"]["math500"]["by_subject"].values()) == 5
    assert results["datasets"]["gsm8k"]["by_level"] == {}
    m = results["datasets"]["gsm8k"]["metrics"]
    assert m["truncation_rate"] == sum(s["truncated"] for s in samples if s["dataset"] == "gsm8k") / 5

    # a finished folder is not evaluated again...
    before = (out / "samples.jsonl").stat().st_mtime_ns
    again = evaluate.evaluate(
        str(tiny_model_path), [str(gsm8k), str(math500)], out, num_problems=5, max_completion_length=12
    )
    assert again == results and (out / "samples.jsonl").stat().st_mtime_ns == before
    # ...unless asked to
    redone = evaluate.evaluate(
        str(tiny_model_path),
        [str(gsm8k), str(math500)],
        out,
        num_problems=5,
        max_completion_length=12,
        overwrite=True,
        progress=False,
    )
    assert redone["throughput"]["samples_generated"] == 10
    assert redone["datasets"] == results["datasets"]  # greedy: the same answers with another batch size


def test_a_trained_model_is_evaluated_with_its_runs_limits(tmp_path, tiny_model_path, shared_data):
    """A model `reson train` wrote carries train_config.yaml: its completion limit and scoring timeout are the
    defaults, so the evaluation sees the model as it was trained; a flag still wins."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_model_path, run)
    (run / "train_config.yaml").write_text("max_completion_length: 7\nreward_timeout: 2.5\n")
    data = [str(shared_data / "gsm8k" / "test.jsonl")]
    results = evaluate.evaluate(str(run), data, tmp_path / "eval", num_problems=2, progress=False)
    assert results["generation"]["max_completion_length"] == 7 and results["reward_timeout"] == 2.5
    assert all(s["num_tokens"] <= 7 for s in _lines(tmp_path / "eval" / "samples.jsonl"))
    flagged = evaluate.evaluate(
        str(run), data, tmp_path / "flag", num_problems=2, max_completion_length=5, progress=False
    )
    assert flagged["generation"]["max_completion_length"] == 5


def test_a_training_folder_is_not_an_evaluation_folder(tmp_path, tiny_model_path, shared_data, no_model_loading):
    run = tmp_path / "run"
    run.mkdir()
    (run / "trainer_state.json").write_text("{}")
    with pytest.raises(EvalError, match="holds a training run: write an evaluation into another folder"):
        evaluate.evaluate(str(tiny_model_path), [str(shared_data / "gsm8k" / "test.jsonl")], run, num_problems=2)
    assert sorted(p.name for p in run.iterdir()) == [".reson.lock", "trainer_state.json"]


def test_a_second_evaluation_into_a_busy_folder_stops_naming_the_first(
    tmp_path, tiny_model_path, shared_data, no_model_loading
):
    out = tmp_path / "eval"
    holder = subprocess.Popen(  # another process evaluating into the folder: it holds the lock
        [
            sys.executable,
            "-c",
            f"from reson.core import folders; held = folders.claim({str(out)!r}, folders.EVALUATION, '--output_dir', "
            "resume=True); "
            "print('held', flush=True); import time; time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(EvalError, match=f"is in use by pid {holder.pid} "):
            evaluate.evaluate(str(tiny_model_path), [str(shared_data / "gsm8k" / "test.jsonl")], out, num_problems=2)
    finally:
        holder.kill()
        holder.wait()
    assert not (out / "run.json").exists()


def test_hf_engine_batch_is_generate_greedy_token_for_token():
    """A greedy batch through the hf engine (rows leave the batch as they end) gives what `model.generate` gives each
    prompt alone: prompts of different lengths, completions ended by EOS at different steps, by `</answer>`, and
    cut at the limit (the shipped search base model guesses, or searches with `<think>` prefilled)."""
    import torch

    from reson.core.data import R1_ZERO_TEMPLATE, R1_ZERO_THINK_TEMPLATE, load_problems
    from reson.core.generation import HFEngine, Request, Sampling
    from reson.miniature.tasks import TASKS

    engine = HFEngine.from_pretrained(str(TASKS["countdown"].shipped_dir), device="cpu")
    questions = [row["question"] for row in load_problems("tiny_countdown", "test")[:5]]
    prompts = [t.format(question=q) for q in questions for t in (R1_ZERO_TEMPLATE, R1_ZERO_THINK_TEMPLATE)]
    sampling = Sampling(max_new_tokens=27)
    batch = engine.generate([Request(p) for p in prompts], sampling)

    eos = sorted(engine.eos_token_ids)
    for prompt, generation in zip(prompts, batch, strict=True):
        ids = engine.tokenizer(prompt, add_special_tokens=False, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            out = engine.model.generate(ids, do_sample=False, max_new_tokens=27, eos_token_id=eos, pad_token_id=eos[0])
        [alone] = [engine._finish(out[0, ids.shape[1] :].tolist(), sampling)]
        expected = (
            alone.text[: alone.text.find("</answer>") + len("</answer>")] if "</answer>" in alone.text else alone.text
        )
        assert generation.text == expected, prompt
    assert {g.finish_reason for g in batch} == {"stop", "length"} and len({g.num_tokens for g in batch}) > 3
    assert any(g.text.endswith("</answer>") for g in batch)  # a row ended by the stop string, not EOS


@pytest.mark.slow
def test_sampling_does_not_depend_on_batching(tmp_path, tiny_model_path, shared_data):
    data = [str(shared_data / "gsm8k" / "test.jsonl")]
    settings = dict(num_problems=3, max_completion_length=10, temperature=1.0, num_generations=3, progress=False)
    one = evaluate.evaluate(str(tiny_model_path), data, tmp_path / "one", batch_size=1, **settings)
    many = evaluate.evaluate(str(tiny_model_path), data, tmp_path / "many", batch_size=5, **settings)
    key = lambda s: (s["id"], s["sample_index"])  # noqa: E731
    samples_one = sorted(_lines(tmp_path / "one" / "samples.jsonl"), key=key)
    samples_many = sorted(_lines(tmp_path / "many" / "samples.jsonl"), key=key)
    assert [s["completion"] for s in samples_one] == [s["completion"] for s in samples_many]
    # the samples of one problem differ from each other (the seeds do differ)
    assert len({s["completion"] for s in samples_one if s["id"] == samples_one[0]["id"]}) > 1
    metrics = one["datasets"]["gsm8k"]["metrics"]
    assert {"pass@1", "pass@2", "pass@3", "maj@1", "maj@2", "maj@3"} <= set(metrics)
    assert metrics == many["datasets"]["gsm8k"]["metrics"]


@pytest.mark.slow
def test_the_batch_size_reaches_the_model(tmp_path, tiny_model_path, shared_data, monkeypatch):
    """--batch_size 40 decodes 40 rows at once, past the hf engine's default of 32 (it used to stop there)."""
    from reson.core import generation

    rows_per_call = []
    original = generation.HFEngine._generate_ids

    def counting(self, requests, sampling, **kwargs):
        rows_per_call.append(len(requests))
        return original(self, requests, sampling, **kwargs)

    monkeypatch.setattr(generation.HFEngine, "_generate_ids", counting)
    data = [str(shared_data / "gsm8k" / "test.jsonl")]
    evaluate.evaluate(
        str(tiny_model_path), data, tmp_path, num_problems=45, batch_size=40, max_completion_length=2, progress=False
    )
    assert rows_per_call == [40, 5]


@pytest.mark.slow
def test_sigterm_stops_an_evaluation_in_one_line_and_the_same_command_finishes_it(
    tmp_path, tiny_model_path, shared_data
):
    data = str(shared_data / "gsm8k" / "test.jsonl")
    out = tmp_path / "eval"
    cmd = [
        sys.executable, "-m", "reson", "eval", "--model_name_or_path", str(tiny_model_path), "--datasets", data,
        "--num_problems", "30", "--max_completion_length", "24", "--batch_size", "2", "--output_dir", str(out),
        "--no_progress",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (out / "samples.jsonl").exists() and (out / "samples.jsonl").read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-2000:]
    said = err.strip().splitlines()[-1]
    assert said.startswith("reson eval: stopped by SIGTERM;") and "run the same command to resume" in said
    rerun = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0 and (out / "samples.jsonl").read_text().count("\n") == 30


@pytest.mark.slow
def test_killed_eval_resumes_to_the_same_results(tmp_path, tiny_model_path, shared_data):
    data = str(shared_data / "gsm8k" / "test.jsonl")
    settings = ["--num_problems", "30", "--max_completion_length", "24", "--temperature", "1.0", "--batch_size", "2"]
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "reson", "eval", "--model_name_or_path", str(tiny_model_path), "--datasets", data]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [*cmd, *settings, "--output_dir", str(killed), "--no_progress"], stderr=subprocess.DEVNULL, env=env
    )
    samples = killed / "samples.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if samples.exists() and samples.read_text().count("\n") >= 4:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the eval finished before it could be killed: give it more work"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    written = samples.read_text()
    finished_lines = written[: written.rfind("\n") + 1]
    assert 4 <= finished_lines.count("\n") < 30
    assert not (killed / "results.json").exists()
    with open(samples, "a") as f:  # as if killed halfway through writing a line
        f.write('{"dataset": "gsm8k", "id": "gsm8k/te')

    kwargs = dict(num_problems=30, max_completion_length=24, temperature=1.0, batch_size=2, progress=False)
    resumed = evaluate.evaluate(str(tiny_model_path), [data], killed, **kwargs)
    straight = evaluate.evaluate(str(tiny_model_path), [data], tmp_path / "straight", **kwargs)

    final = samples.read_text()
    assert final.startswith(finished_lines)  # finished samples were kept, not recomputed
    assert resumed["throughput"]["samples_generated"] == 30 - finished_lines.count("\n")
    assert final == (tmp_path / "straight" / "samples.jsonl").read_text()
    assert resumed["datasets"] == straight["datasets"]


@pytest.mark.parametrize(("native_bf16", "dtype"), [(True, "bfloat16"), (False, "float16")])
def test_transformers_backend_picks_fp16_where_the_gpu_has_no_native_bf16(native_bf16, dtype, monkeypatch):
    """A T4 or V100 (bf16 only emulated, slowly) gets fp16; an Ampere or newer GPU bf16."""
    import torch
    import transformers

    from reson.core import generation, models

    loaded = {}

    class Model:
        def to(self, device):
            loaded["device"] = device
            return self

        def eval(self):
            return self

    def from_pretrained(model, dtype):
        loaded["dtype"] = dtype
        return Model()

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    # torch counts emulation as support unless told not to: a T4 says yes to the plain question
    monkeypatch.setattr(
        torch.cuda, "is_bf16_supported", lambda including_emulation=True: including_emulation or native_bf16
    )
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", from_pretrained)
    monkeypatch.setattr(models, "load_tokenizer", lambda model: None)
    monkeypatch.setattr(generation.HFEngine, "__init__", lambda self, model, tokenizer, batch_size=32: None)
    generation.HFEngine.from_pretrained("some/model")
    assert loaded == {"dtype": getattr(torch, dtype), "device": "cuda"}


@pytest.mark.slow
def test_countdown_evaluates_offline_with_its_search_measures(tmp_path, tiny_model_path, capsys):
    """`reson eval --datasets synthetic_countdown`: Countdown's own measures beside the common ones, and samples that
    `reson score` grades again as they are."""
    out = tmp_path / "eval"
    argv = ["eval", "--model_name_or_path", str(tiny_model_path), "--datasets", "synthetic_countdown"]
    assert cli.main([*argv, "--num_problems", "4", "--max_completion_length", "8", "--output_dir", str(out)]) == 0
    metrics = json.loads((out / "results.json").read_text())["datasets"]["synthetic_countdown"]["metrics"]
    assert {"accuracy", "format_compliance", "avg_candidates", "rejection_rate", "verified_rate"} <= set(metrics)
    samples = _lines(out / "samples.jsonl")
    assert all({"nums", "target", "candidates", "rejections", "verified"} <= set(s) for s in samples)
    capsys.readouterr()
    assert cli.main(["score", str(out / "samples.jsonl")]) == 0
    assert "completions: 4" in capsys.readouterr().out
