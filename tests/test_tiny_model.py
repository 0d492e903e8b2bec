"""The miniature's tokenizer, pretraining corpus, base model build (and its cache) and probe."""

from __future__ import annotations

import json
import re

import pytest

from reson.core.data import format_prompt
from reson.core.synthetic import problems
from reson.miniature.corpus import QA_TEMPLATE, pretraining_texts, reasoning_trace, worked_solution
from reson.miniature.pretrain import BUILD_RECORD, BaseModelConfig, build_base_model, build_record
from reson.miniature.probe import probe
from reson.miniature.tiny_model import TAG_TOKENS, build_model, save_tiny_model, train_tokenizer

# A build that takes seconds: enough steps for the loss to fall, far too few to learn arithmetic.
TINY = {
    "num_texts": 480,
    "vocab_size": 320,
    "hidden_size": 32,
    "num_layers": 1,
    "num_heads": 2,
    "batch_size": 16,
    "warmup_steps": 3,
}


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Models this small gain nothing from threads, and extra threads crawl on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return pretraining_texts(BaseModelConfig(seed=0, num_texts=4_000))


@pytest.fixture(scope="module")
def tokenizer(corpus):
    return train_tokenizer(corpus[:1_000], vocab_size=400)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """One tiny base model build, shared by the tests that only read it."""
    return build_base_model(tmp_path_factory.mktemp("base") / "model", seed=0, **TINY)


# --- tokenizer -------------------------------------------------------------------------------------------------


def test_tokenizer_round_trips_and_keeps_tags_single(tokenizer, corpus):
    for text in corpus[:200] + ["Ünïcode 😀 and\ttabs\n", "  12-7=5, 5+19=24 "]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    for tag in TAG_TOKENS:
        assert len(tokenizer(tag, add_special_tokens=False)["input_ids"]) == 1, tag
        assert tag not in tokenizer.all_special_tokens  # special tokens would be stripped from completions
    # the first token after "Assistant:" is a lone space, then the tag or the first digit (digits split singly)
    ids = tokenizer(" <think>12</think>", add_special_tokens=False)["input_ids"]
    assert tokenizer.convert_ids_to_tokens(ids) == ["Ġ", "<think>", "1", "2", "</think>"]


def test_lead_builders_still_save_a_loadable_model(tmp_path, corpus):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = save_tiny_model(tmp_path / "random", corpus[:300], seed=0, hidden_size=32, num_layers=1, num_heads=2)
    model = AutoModelForCausalLM.from_pretrained(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert model.config.model_type == "qwen2"
    assert model.config.vocab_size == len(tokenizer)
    assert build_model(tokenizer, hidden_size=32, num_layers=1, num_heads=2).num_parameters() > 0


# --- corpus ----------------------------------------------------------------------------------------------------


def test_corpus_shape_matches_the_config(corpus):
    config = BaseModelConfig(seed=0, num_texts=4_000)
    prefix = format_prompt("", "r1_zero").split("User:")[0]
    r1 = [t for t in corpus if t.startswith(prefix)]
    qa = [t for t in corpus if t.startswith("Q: ")]
    drills = [t for t in corpus if re.fullmatch(r"\d+[+-]\d+=\d+(, \d+[+-]\d+=\d+)*", t)]
    assert len(r1) + len(qa) + len(drills) == len(corpus) == 4_000
    assert len(drills) == round(4_000 * config.drill_share)
    assert abs(len(qa) / (len(r1) + len(qa)) - config.reasoning_share) < 0.03
    tagged = [t for t in r1 if "Assistant: <think>" in t]
    assert abs(len(tagged) / len(r1) - config.tag_share) < 0.03  # 3 sd of 1,400 draws: the tags stay rare
    assert all(t.count("<think>") == 2 for t in r1 if t not in tagged)  # only the template's own mention
    assert all("<think>" in t and "<answer>" in t for t in qa)


def test_drills_hold_right_facts_in_the_traces_range(corpus):
    facts = [f for t in corpus if t[0].isdigit() for f in t.split(", ")]
    assert len(facts) > 1_000
    for fact in facts:
        a, op, b, c = re.fullmatch(r"(\d+)([+-])(\d+)=(\d+)", fact).groups()
        a, b, c = int(a), int(b), int(c)
        assert c == (a + b if op == "+" else a - b) and 1 <= b <= 20 and 0 <= c <= 80, fact
    # sums and differences both occur, and the small totals where most traces live are covered densely
    assert {"+", "-"} <= {f[len(f.split("+")[0])] if "+" in f else "-" for f in facts}
    assert len({f for f in facts if int(re.split(r"[+-]", f)[0]) <= 20}) > 300


def test_texts_are_exactly_prompt_plus_completion():
    config = BaseModelConfig(seed=0, num_texts=300, drill_share=0.0)
    rows = problems("train", 300, seed=0)
    texts = pretraining_texts(config)
    for row, text in zip(rows, texts, strict=True):
        gold = row["answer"].split("####")[1].strip()
        prompt = (
            QA_TEMPLATE.format(question=row["question"])
            if text.startswith("Q: ")
            else format_prompt(row["question"], "r1_zero")
        )
        assert text.startswith(prompt)
        completion = text[len(prompt) :]
        worked = f" <think>{reasoning_trace(row['expression'])}</think> <answer>{gold}</answer>"
        assert completion in (f" {gold}", worked)


def test_reasoning_trace_steps_left_to_right():
    assert reasoning_trace("12 - 7 + 19") == "12-7=5, 5+19=24"
    assert reasoning_trace("3 + 4") == "3+4=7"
    for row in problems("test", 100, seed=1):
        last = reasoning_trace(row["expression"]).split("=")[-1]
        assert re.fullmatch(r"\d+", last) and last == row["answer"].split("####")[1].strip()


def test_pretraining_corpus_is_deterministic_per_seed():
    small = {"num_texts": 200}
    assert pretraining_texts(BaseModelConfig(seed=1, **small)) == pretraining_texts(BaseModelConfig(seed=1, **small))
    assert pretraining_texts(BaseModelConfig(seed=1, **small)) != pretraining_texts(BaseModelConfig(seed=2, **small))


# --- build and cache -------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_short_pretraining_lowers_loss_and_saves_a_loadable_model(built):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    stats = build_record(built)["stats"]
    # batches hold either R1-template texts (sharing the preamble) or others: at most one partial batch of each
    # kind is dropped
    assert TINY["num_texts"] // TINY["batch_size"] - 2 <= stats["steps"] <= TINY["num_texts"] // TINY["batch_size"]
    assert stats["texts_sharing_the_preamble"] > 0
    assert stats["torch_threads"] == 1
    assert stats["final_loss"] < stats["first_loss"] - 1.0
    model = AutoModelForCausalLM.from_pretrained(built)
    tokenizer = AutoTokenizer.from_pretrained(built)
    assert model.config.model_type == "qwen2"
    assert stats["parameters"] == model.num_parameters()
    assert all(len(tokenizer(tag, add_special_tokens=False)["input_ids"]) == 1 for tag in TAG_TOKENS)
    # the saved weights are the trained ones: the loss on corpus text is far below a random model's
    text = pretraining_texts(BaseModelConfig(seed=0, num_texts=TINY["num_texts"]))[0]
    ids = tokenizer(text + tokenizer.eos_token, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss.item()
    assert loss < stats["first_loss"] - 1.0


def test_a_shared_preamble_gives_the_same_loss_and_gradients_as_whole_texts(corpus, tokenizer):
    """Running the R1 template's preamble once per batch is exact: attention is causal."""
    import torch

    from reson.miniature.pretrain import batch_loss

    model = build_model(tokenizer, hidden_size=32, num_layers=2, num_heads=2, seed=0)
    preamble = tokenizer(format_prompt("", "r1_zero").split("User:")[0] + "User:", add_special_tokens=False)[
        "input_ids"
    ]
    texts = [t for t in corpus if t.startswith("A conversation")][:6]
    eos = tokenizer.eos_token_id
    rows = [ids + [eos] for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    assert all(r[: len(preamble)] == preamble for r in rows)

    def loss_and_grad(loss):
        loss.backward()
        grad = torch.cat([p.grad.flatten() for p in model.parameters()])
        model.zero_grad()
        return loss.item(), grad

    # whole texts, with the preamble's own tokens masked out of the loss
    width = max(map(len, rows))
    input_ids = torch.tensor([r + [eos] * (width - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
    labels = input_ids.masked_fill(mask == 0, -100)
    labels[:, : len(preamble)] = -100
    whole = loss_and_grad(model(input_ids=input_ids, attention_mask=mask, labels=labels).loss)
    keep = len(preamble) - 1
    shared_loss, tokens = batch_loss(model, [r[keep:] for r in rows], eos, torch.tensor([preamble[:keep]]))
    shared = loss_and_grad(shared_loss)
    assert tokens == sum(len(r) - keep for r in rows) + keep
    assert shared[0] == pytest.approx(whole[0], rel=1e-5)
    assert torch.allclose(shared[1], whole[1], atol=1e-6, rtol=1e-4)
    assert whole[1].abs().max() > 1e-4  # the gradients compared are not all zero


@pytest.mark.slow
def test_a_complete_build_is_reused(built, monkeypatch):
    import reson.miniature.pretrain

    record = (built / BUILD_RECORD).read_text()
    weights = (built / "model.safetensors").stat().st_mtime_ns

    def no_training(*args, **kwargs):
        raise AssertionError("pretrain ran although a complete build was there")

    monkeypatch.setattr(reson.miniature.pretrain, "pretrain", no_training)
    assert build_base_model(built, seed=0, **TINY) == built
    assert (built / BUILD_RECORD).read_text() == record
    assert (built / "model.safetensors").stat().st_mtime_ns == weights


@pytest.mark.slow
def test_an_interrupted_or_different_build_is_rebuilt(built, tmp_path, monkeypatch):
    import shutil

    import reson.miniature.pretrain

    calls = []
    real = reson.miniature.pretrain.pretrain

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(reson.miniature.pretrain, "pretrain", counting)
    # an interrupted build: a leftover temporary folder beside the target, and the target holding every file
    # except the build record (which a build writes last)
    target = tmp_path / "model"
    shutil.copytree(built, tmp_path / ".model.tmp-deadbeef")
    shutil.copytree(built, target)
    (target / BUILD_RECORD).unlink()
    assert build_base_model(target, seed=0, **TINY) == target
    assert len(calls) == 1
    assert json.loads((target / BUILD_RECORD).read_text())["config"]["seed"] == 0
    # a complete build with other settings is replaced, not reused
    build_base_model(target, seed=1, **{**TINY, "num_texts": 64})
    assert len(calls) == 2
    assert build_record(target)["config"]["seed"] == 1
    assert not list(tmp_path.glob(".model.stale-*")) and len(list(tmp_path.glob(".model.tmp-*"))) == 1


def test_bad_settings_are_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="unknown base model setting"):
        build_base_model(tmp_path / "m", seed=0, hiden_size=64)
    with pytest.raises(ValueError, match="tag_share=5: these are fractions"):
        build_base_model(tmp_path / "m", seed=0, tag_share=5)
    with pytest.raises(ValueError, match="check_style 'twice'"):
        build_base_model(tmp_path / "m", seed=0, check_style="twice")
    with pytest.raises(ValueError, match="threads"):
        build_base_model(tmp_path / "m", seed=0, threads=0)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_the_build_repeats_bit_for_bit_whatever_threads_the_caller_set(tmp_path):
    """The thread count changes float sums, so the build fixes its own (issue 16: 1 or 2 threads gave 58% or 89%)."""
    import hashlib

    import torch

    settings = {**TINY, "num_texts": 160}
    weights = []
    for caller_threads in (1, 2):
        torch.set_num_threads(caller_threads)
        path = build_base_model(tmp_path / f"caller{caller_threads}", seed=0, **settings)
        assert torch.get_num_threads() == caller_threads  # the caller's count is restored
        assert build_record(path)["stats"]["torch_threads"] == 1
        weights.append(hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest())
    torch.set_num_threads(1)
    assert weights[0] == weights[1]


# --- probe -----------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_probe_reports_rates_on_held_out_rows(built):
    rows = problems("test", 12, seed=0)
    result = probe(built, rows, max_new_tokens=16, batch_size=8)
    assert result["count"] == 12
    for key in ("base_accuracy", "probe_accuracy", "tag_prior", "base_format", "base_think_usage"):
        assert 0.0 <= result[key] <= 1.0, key
    assert set(result["base_accuracy_by_level"]) <= {"1", "2", "3"}
    with pytest.raises(ValueError, match="at least one row"):
        probe(built, [])


# --- slips, repairs and checks (the self-correction experiments) --------------------------------------------------


def _gold(row: dict) -> str:
    return row["answer"].split("####")[1].strip()


def _wrong_facts(trace: str) -> list[tuple[str, ...]]:
    facts = re.findall(r"(\d+)([+-])(\d+)=(\d+)", trace)
    return [f for f in facts if int(f[3]) != (int(f[0]) + int(f[2]) if f[1] == "+" else int(f[0]) - int(f[2]))]


def test_worked_solution_without_slips_is_the_plain_trace():
    import random

    rng = random.Random(0)
    for row in problems("train", 50, seed=3):
        trace, total = worked_solution(row["expression"], rng, BaseModelConfig())
        assert trace == reasoning_trace(row["expression"]) and str(total) == _gold(row)
    assert rng.random() == random.Random(0).random()  # no random numbers were drawn


@pytest.mark.parametrize("style", ["inverse", "recompute"])
def test_checks_catch_every_slip_and_land_on_the_right_answer(style):
    import random

    config = BaseModelConfig(check_rate=0.5, check_style=style)
    rng = random.Random(1)
    failed = passed = 0
    for row in problems("train", 300, seed=4):
        trace, total = worked_solution(row["expression"], rng, config)
        assert str(total) == _gold(row)
        failed += trace.count("wait")
        passed += trace.count("check") - trace.count("wait")
        # the only wrong facts are the slips the checks catch
        assert len(_wrong_facts(trace)) == trace.count("wait")
    assert 0.35 < failed / (failed + passed) < 0.65  # about half the checks fail: copying the step does not pay


def test_repaired_slips_are_right_and_unrepaired_ones_carry_the_error_on():
    import random

    rows = problems("train", 100, seed=5)
    repaired = [
        worked_solution(r["expression"], random.Random(i), BaseModelConfig(slip_rate=1.0, repair_rate=1.0))
        for i, r in enumerate(rows)
    ]
    assert all(str(total) == _gold(r) and "wait" in trace for (trace, total), r in zip(repaired, rows, strict=True))
    carried = [
        worked_solution(r["expression"], random.Random(i), BaseModelConfig(slip_rate=1.0)) for i, r in enumerate(rows)
    ]
    assert all("wait" not in trace and total >= 0 for trace, total in carried)
    assert sum(str(total) != _gold(r) for (_, total), r in zip(carried, rows, strict=True)) > 80


def test_the_corpus_carries_slips_only_when_asked():
    clean = pretraining_texts(BaseModelConfig(seed=0, num_texts=2_000))
    slipping = pretraining_texts(BaseModelConfig(seed=0, num_texts=2_000, slip_rate=0.2, repair_rate=1.0))
    assert not any("wait" in text for text in clean)
    worked = [t for t in slipping if "<think>" in t]
    assert 0.2 < sum("wait" in t for t in worked) / len(worked) < 0.8


# --- command line ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_the_command_line_builds_probes_and_pins_the_kernels(tmp_path, monkeypatch, capsys):
    import os

    from reson.core.machine import CPU_KERNEL_PINS
    from reson.miniature.pretrain import main

    for name in CPU_KERNEL_PINS:  # unset now, restored after (torch has long chosen its kernels)
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)
    out = tmp_path / "base"
    assert main(["--output_dir", str(out), "--num_texts", "64", "--num_problems", "3", "--json"]) == 0
    assert {name: os.environ[name] for name in CPU_KERNEL_PINS} == {
        "ATEN_CPU_CAPABILITY": "avx2",
        "MKL_CBWR": "COMPATIBLE",
    }
    result = json.loads(capsys.readouterr().out)
    assert result["count"] == 3 and 0.0 <= result["probe_accuracy"] <= 1.0 and result["model_path"] == str(out)
    record = build_record(out)
    assert record["config"]["num_texts"] == 64 and record["stats"]["torch_threads"] == 1
    # what else fixed the bits: the kernels as the build found them, the torch version and the processor
    stats = record["stats"]
    assert stats["cpu_kernels"]["mkl_cbwr"] == "COMPATIBLE" and stats["cpu_kernels"]["aten"]
    assert stats["torch"] and stats["processor"]
