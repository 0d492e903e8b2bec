"""The search task's corpus (`reson.miniature.search_corpus`): deterministic, every fact and check right, every trace
read by `search_measures` as exactly the candidates it writes, and the texts the training template expects."""

from __future__ import annotations

import random
import re

import pytest

from reson.core import countdown
from reson.core.data import TINY_COUNTDOWN_QUESTION, format_prompt
from reson.miniature.corpus import QA_TEMPLATE
from reson.miniature.pretrain import BaseModelConfig
from reson.miniature.search_corpus import arithmetic_drill, candidates, pretraining_texts, search, systematic

FACT = re.compile(r"(\d+)([-+*])(\d+)=(\d+)")
CHECK = re.compile(r"(\d+) vs (\d+) (no|yes)")
CONFIG = BaseModelConfig(task="countdown", num_texts=600, tag_share=0.5, search_share=0.5)


def _right(fact: re.Match) -> bool:
    a, op, b, c = int(fact[1]), fact[2], int(fact[3]), int(fact[4])
    return c == (a + b if op == "+" else a - b if op == "-" else a * b)


def test_the_corpus_is_deterministic_in_its_seed():
    assert pretraining_texts(CONFIG) == pretraining_texts(CONFIG)
    other = BaseModelConfig(task="countdown", num_texts=600, tag_share=0.5, search_share=0.5, seed=1)
    assert pretraining_texts(CONFIG) != pretraining_texts(other)


def test_every_fact_and_every_check_is_right():
    texts = pretraining_texts(CONFIG)
    facts = [f for text in texts for f in FACT.finditer(text.split("Assistant:")[-1].split("\nA:")[-1])]
    assert len(facts) > 1000 and all(_right(f) for f in facts)
    assert all(1 <= int(f[4]) <= 100 for f in facts)  # every value a step computes stays in 1-100
    for text in texts:
        target = re.search(r"equals (\d+)", text)
        for check in CHECK.finditer(text):
            assert int(check[2]) == int(target[1])  # a check compares with the target the question gives
            assert (check[1] == check[2]) == (check[3] == "yes")
    assert all(_right(f) for f in FACT.finditer(arithmetic_drill(random.Random(0), 200)))


def test_the_texts_are_the_templates_the_trainer_and_the_probe_use():
    texts = pretraining_texts(CONFIG)
    kinds = {"qa": 0, "r1 direct": 0, "r1 guess": 0, "r1 search": 0, "drill": 0}
    for text in texts:
        if text.startswith("Q: "):
            question, completion = text[3:].split("\nA:")
            assert text == QA_TEMPLATE.format(question=question) + completion
            assert completion.startswith(" <think>") and "yes" in completion or "no</think>" in completion
            kinds["qa"] += 1
        elif text.startswith(format_prompt("", "r1_zero").split("User:")[0]):
            prompt, completion = text.split(" Assistant:")
            numbers, target = re.fullmatch(r".*User: Using the numbers (\[.*\]), .* equals (\d+)\.", prompt).groups()
            question = TINY_COUNTDOWN_QUESTION.format(nums=numbers, target=target)
            assert prompt + " Assistant:" == format_prompt(question, "r1_zero")
            assert completion.startswith(" ")  # the tokens after "Assistant:" are the ones the trainer generates
            checked = " no" in completion or " yes" in completion
            kinds["r1 direct" if "<think>" not in completion else "r1 search" if checked else "r1 guess"] += 1
        else:
            assert FACT.fullmatch(text.split(", ")[0])
            kinds["drill"] += 1
    assert all(kinds.values()), kinds  # each kind of text occurs
    assert kinds["qa"] > kinds["r1 direct"] > kinds["r1 search"]


def test_each_search_trace_is_read_as_the_candidates_it_writes():
    """`search_measures` finds exactly the candidates a trace tries, a rejection for each one left, and the checks the
    trace wrote: every candidate but the last shown wrong and retried, the last shown right when the search found one.
    Problems whose numbers are all 1s are left out: "1*1=1, 1*1=1" is ambiguous to any reader."""
    rows = countdown.problems("train", 400, seed=3, **countdown.TINY)
    found = 0
    for row in rows:
        nums, target = row["nums"], row["target"]
        if nums.count(1) > 1:
            continue
        ordered = systematic(nums, target)
        thinking, answer = search(target, ordered, 9)
        completion = f"<think>{thinking}</think> <answer>{answer}</answer>"
        tried = len({countdown.expression_key(c.expression()) for c in ordered[: thinking.count(";") + 1]})
        solved = thinking.endswith("yes")
        found += solved
        measures = countdown.search_measures(completion, nums, target)
        assert measures["candidates"] == tried and measures["rejections"] == tried - 1, completion
        assert measures["verified"] == solved
        expected = [[False, False, True]] * (tried - 1) + [[solved, solved, False]]
        assert measures["checks"] == expected, completion
        assert countdown.grade(completion, nums, target).reward == float(solved)
    assert found == len(rows) - sum(r["nums"].count(1) > 1 for r in rows)  # the search is complete


def test_the_guesser_names_each_candidate_once_and_the_search_finds_every_solution():
    for row in countdown.problems("train", 300, seed=4, **countdown.TINY):
        nums, target = row["nums"], row["target"]
        found = candidates(nums, target)
        keys = [countdown.expression_key(c.expression()) for c in found]
        assert len(set(keys)) == len(keys)
        assert all(countdown.evaluate(c.expression()) == c.value for c in found)
        distance = [(abs(c.r - target), abs(c.value - target)) for c in found]
        assert distance == sorted(distance)  # the guesser's order: first step, then last step nearest the target
        order = systematic(nums, target)
        assert any(c.value == target for c in order)  # every problem is solved in the search's order
        assert len(order) <= 9  # one candidate per first step: 3 pairs of places x 3 operators


def test_the_countdown_settings_are_checked():
    with pytest.raises(ValueError, match="task 'chess'"):
        BaseModelConfig(task="chess")
    with pytest.raises(ValueError, match="max_candidates"):
        BaseModelConfig(task="countdown", max_candidates=0)
    with pytest.raises(ValueError, match="search_share"):
        BaseModelConfig(task="countdown", search_share=1.5)


def test_the_recipe_samples_as_long_as_the_demo_evaluates():
    from reson.core.config import load_config
    from reson.miniature.tasks import TASKS

    task = TASKS["countdown"]
    config = load_config(task.recipe, overrides={"model_name_or_path": "Qwen/Qwen2.5-0.5B"})
    assert config.max_completion_length == task.max_completion_length
    assert config.datasets == [{"name": task.dataset, "split": "train", "weight": 1.0}]
