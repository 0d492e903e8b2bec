"""Rewards: accuracy and format tables, TRL's calling contract, bounded time from anywhere, MATH-500 self-check."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import pickle
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reson.core.rewards as rewards
from reson.core.rewards import REWARDS, Accuracy, Format, format_score, get_reward, reward_funcs, score

LIMIT = 1.0  # per-completion limit used in the timing tests (seconds)
SLACK = 4.0  # noisy shared machines: generous, but far below what an unbounded power tower takes (minutes)
PREFILLED = "User: what is 2+3? Assistant: <think>"


@pytest.fixture(scope="module", autouse=True)
def pool():
    """One warm verifier pool for the module; stopped afterwards so no process outlives the tests."""
    rewards.warm_up()
    yield rewards.get_pool()
    pids = [w.proc.pid for w in rewards.get_pool().workers]
    rewards.shutdown_pool()
    for pid in pids:
        assert not _alive(pid), f"verifier process {pid} survived shutdown"


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def think(answer: str, thinking: str = "Let me work it out.") -> str:
    return f"<think>{thinking}</think> {answer}"


ACCURACY = [
    # (completion, gold, expected, why)
    (think("<answer>0.5</answer>"), "\\frac{1}{2}", 1.0, "0.5 = \\frac{1}{2} (fast path)"),
    (think("<answer>1/2</answer>"), "0.5", 1.0, "1/2 = 0.5"),
    (think("<answer>0.50</answer>"), "1/2", 1.0, "trailing zero"),
    (think("\\boxed{\\frac{1}{\\sqrt{2}}}"), "\\sqrt{2}/2", 1.0, "\\sqrt{2}/2 = 1/\\sqrt{2} through math-verify"),
    (think("\\boxed{\\dfrac{\\sqrt{2}}{2}}"), "\\frac{1}{\\sqrt{2}}", 1.0, "dfrac, through math-verify"),
    (think("<answer>$1,234</answer>"), "1234", 1.0, "currency and thousands commas"),
    (think("The answer is 1234."), "1,234", 1.0, "commas in the gold"),
    (think("<answer>45%</answer>"), "45", 1.0, "a percent sign on the answer only"),
    (think("<answer>18 dollars</answer>"), "18", 1.0, "a unit word"),
    (think("<answer>-3</answer>"), "-3", 1.0, "negative"),
    (think("<answer>x = 5</answer>"), "5", 1.0, "an assignment to the answer (math-verify)"),
    (think("\\boxed{\\left( 3, \\frac{\\pi}{2} \\right)}"), "(3, \\frac{\\pi}{2})", 1.0, "a tuple, \\left/\\right"),
    (think("\\boxed{\\text{(C)}}"), "C", 1.0, "a multiple-choice letter"),
    (think("<answer>18</answer>"), "#### 18", 1.0, "a full GSM8K solution as gold reads its #### number"),
    (" 2+3=5 </think> <answer>5</answer>", "5", 1.0, "prefilled <think> prompt (no opening tag)"),
    (think("<answer>17</answer>"), "18", 0.0, "wrong number"),
    (think("<answer>0.33</answer>"), "1/3", 0.0, "a rounded decimal is not the fraction"),
    (think("\\boxed{\\sqrt{3}}"), "\\sqrt{2}", 0.0, "wrong expression"),
    (think("I am not sure.", thinking="the answer is 18"), "18", 0.0, "the right number only inside the think block"),
    ("<think>the answer is 18", "18", 0.0, "unclosed think block: no final answer"),
    (think("The answer is 17 or 18."), "18", 0.0, "a hedge between two values"),
    (think("\\boxed{17 \\text{ or } 18}"), "18", 0.0, "a boxed hedge"),
    (think("So x = 17 or x = 18"), "18", 0.0, "a hedge between assignments"),
    (think("<answer>16, 17, 18</answer>"), "18", 0.0, "a list of candidates"),
    (think("\\boxed{\\{17, 18\\}}"), "18", 0.0, "a set of candidates (math-verify)"),
    ("", "18", 0.0, "empty completion"),
    (think(""), "18", 0.0, "empty final answer"),
    (think("<answer>１８</answer>"), "18", 1.0, "full-width digits are the same number"),
    (think("Voilà: ½ → 18 ✓"), "18", 1.0, "unicode around the number"),
    (think("word " * 20_000 + "<answer>17</answer>"), "18", 0.0, "100,000 characters ending in a wrong answer"),
    (think("x" * 100_000 + " <answer>18</answer>"), "18", 1.0, "100,000 characters before a right answer"),
    (think("<answer>18</answer>"), "", None, "empty gold: not applicable"),
    (think("<answer>18</answer>"), None, None, "missing gold: not applicable"),
]


@pytest.mark.parametrize(("completion", "gold", "expected", "why"), ACCURACY, ids=[c[3] for c in ACCURACY])
def test_accuracy_table(completion, gold, expected, why):
    assert rewards.accuracy([completion], answer=[gold]) == [expected]


FORMAT = [
    # (completion, prompt, grade, why)
    ("<think>2+3=5</think> <answer>5</answer>", "", 1.0, "the R1 shape"),
    ("\n<think>2+3=5</think>\n5", "", 1.0, "answer tags are optional; leading whitespace is fine"),
    (" 2+3=5 </think> <answer>5</answer>", PREFILLED, 1.0, "prefilled <think>: the closing tag completes it"),
    ("<think> </think> <answer>5</answer>", "", 0.5, "empty think block"),
    ("2+3=5 </think> 5", "", 0.5, "missing <think> with a prompt that did not prefill it"),
    ("Sure! <think>2+3=5</think> 5", "", 0.5, "text before <think>"),
    ("<think>2+3=5</think> <answer></answer> 5", "", 0.5, "empty answer tags"),
    ("<think>2+3=5</think> <answer>5</answer><answer>6</answer>", "", 0.5, "two answer blocks"),
    ("<think>2+3=5</think> <answer>5", "", 0.5, "unclosed answer tag"),
    ("<think>a</think> 4 <think>b</think> 5", "", 0.25, "repeated think blocks"),
    ("<think><think><think>x</think></think></think> 5", "", 0.25, "tag spam"),
    ("<think> 2+3=5 </think> 5", PREFILLED, 0.25, "a second <think> after the prefilled one"),
    ("<think>2+3 is", "", 0.25, "a block that never closes"),
    ("<think>2+3=5</think>   ", "", 0.25, "nothing after </think>"),
    (" 2+3 is 5", PREFILLED, 0.0, "prefilled prompt, but the completion never closes the block: no tags of its own"),
    ("The answer is 5.", "", 0.0, "no tags"),
    ("", "", 0.0, "empty completion"),
    ("<think>ünï</think> ½", "", 1.0, "unicode"),
    ("<think>" + "x" * 100_000 + "</think> 5", "", 1.0, "a 100,000-character think block"),
]


@pytest.mark.parametrize(("completion", "prompt", "grade", "why"), FORMAT, ids=[c[3] for c in FORMAT])
def test_format_table(completion, prompt, grade, why):
    assert format_score(completion, prompt) == grade
    assert rewards.format_reward([completion], prompts=[prompt]) == [grade]


def test_trl_calling_contract():
    """GRPOTrainer passes prompts, completions (strings or message lists), completion_ids, trainer_state, log_metric,
    log_extra and every dataset column; the reward takes them all and returns one value per completion."""
    logged = {}
    kwargs = {
        "prompts": [[{"role": "user", "content": "2+3?"}]] * 2,
        "completions": [
            [{"role": "assistant", "content": "<think>2+3=5</think> <answer>5</answer>"}],
            [{"role": "assistant", "content": "<think>2+3=6</think> <answer>6</answer>"}],
        ],
        "completion_ids": [[1, 2], [3, 4]],
        "answer": ["5", "5"],
        "question": ["2+3?", "2+3?"],
        "source": ["synthetic", "synthetic"],
        "trainer_state": object(),
        "log_metric": lambda name, value: logged.setdefault(name, value),
        "log_extra": lambda column, values: logged.setdefault(column, values),
    }
    assert rewards.accuracy(**kwargs) == [1.0, 0.0]
    assert logged == {"rewards/accuracy/timeouts": 0.0, "extracted_answer": ["5", "6"]}
    assert rewards.format_reward(**kwargs) == [1.0, 1.0]
    # TRL's own rewards call the gold column "solution"; it is accepted too
    solution_kwargs = dict(kwargs, solution=kwargs.pop("answer"))
    assert rewards.accuracy(**solution_kwargs) == [1.0, 0.0]


def test_missing_gold_column_is_a_clear_error():
    with pytest.raises(ValueError, match="'answer' column"):
        rewards.accuracy(["<think>a</think> 5"], prompts=[""])


def test_unparseable_gold_is_counted_and_warned_once(caplog):
    rewards._WARNED["gold"] = False
    before = rewards.unparseable_gold_count()
    with caplog.at_level(logging.WARNING, logger="reson.core.rewards"):
        assert rewards.accuracy([think("5")] * 3, answer=["", "  ", None]) == [None, None, None]
        assert rewards.accuracy([think("5")], answer=[""]) == [None]
    assert rewards.unparseable_gold_count() - before == 4
    assert sum("cannot be parsed" in r.getMessage() for r in caplog.records) == 1


def test_gold_parsed_once_per_example(monkeypatch):
    calls = []
    real = rewards.parse_gsm8k_gold
    monkeypatch.setattr(rewards, "parse_gsm8k_gold", lambda s: calls.append(s) or real(s))
    gold = "Janet sells 16 - 3 - 4 = 9 eggs; 9 * 2 = 18.\n#### 4,321"
    completions = [think(f"<answer>{n}</answer>") for n in range(4310, 4322)]  # 12 generations of one prompt
    assert rewards.accuracy(completions, answer=[gold] * 12) == [0.0] * 11 + [1.0]
    assert len(calls) == 1


def test_plain_numbers_need_no_sympy():
    """The fast path: a GSM8K-style batch is scored without importing sympy or math-verify or starting the pool."""
    code = (
        "import sys\n"
        "from reson.core.rewards import accuracy, _POOL\n"
        "r = accuracy(['<think>a</think> <answer>$1,234</answer>', '<think>a</think> 17 apples.'], "
        "answer=['1234', '18'])\n"
        "assert r == [1.0, 0.0], r\n"
        "import reson.core.rewards as m\n"
        "assert m._POOL is None\n"
        "assert not {'sympy', 'math_verify'} & set(sys.modules), 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_registry_names_and_pickling():
    assert set(REWARDS) == {"accuracy", "format"}
    funcs = reward_funcs(["accuracy", "format"], timeout=3.5)
    assert [f.__name__ for f in funcs] == ["accuracy", "format"]  # TRL's metric keys rewards/<name>/mean
    assert isinstance(funcs[0], Accuracy) and funcs[0].timeout == 3.5 and isinstance(funcs[1], Format)
    clone = pickle.loads(pickle.dumps(funcs[0]))
    assert clone.__name__ == "accuracy" and clone.timeout == 3.5
    assert clone([think("<answer>5</answer>")], answer=["5"]) == [1.0]
    with pytest.raises(ValueError, match="accuracy, format"):
        get_reward("acc")
    with pytest.raises(ValueError, match="'length'"):
        reward_funcs(["accuracy", "length"], timeout=1.0)
    with pytest.raises(ValueError, match="positive"):
        Accuracy(timeout=0)


def test_pool_spans_the_cores(monkeypatch):
    import os

    assert rewards.VerifierPool().size == max(1, min(len(os.sched_getaffinity(0)), 8))
    monkeypatch.setenv("RESON_VERIFY_WORKERS", "3")
    assert rewards.VerifierPool().size == 3  # nothing starts until the pool is used


def test_score_agrees_with_the_rewards():
    completions = [think("<answer>5</answer>"), "5", " x </think> \\boxed{\\frac{1}{2}}"]
    golds, prompts = ["5", "5", "0.5"], ["", "", PREFILLED]
    scores = score(completions, golds, prompts)
    assert [s.accuracy for s in scores] == rewards.accuracy(completions, answer=golds, prompts=prompts)
    assert [s.format for s in scores] == rewards.format_reward(completions, prompts=prompts)
    assert [s.extracted for s in scores] == ["5", "5", "\\frac{1}{2}"]
    with pytest.raises(ValueError, match="one gold answer"):
        score(completions, golds[:2])


# ------------------------------------------------------------------------------------------------- properties

_latexish = st.text(alphabet=list("0123456789+-*/^()[]{}\\,.=xyz abcfrqst%$"), max_size=60)
_completion = st.one_of(
    st.text(max_size=300),
    st.builds(lambda t, a: f"<think>{t}</think> \\boxed{{{a}}}", st.text(max_size=50), _latexish),
    st.builds(lambda t, a: f"{t}</think><answer>{a}</answer>", st.text(max_size=50), _latexish),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    completion=_completion,
    gold=st.one_of(st.none(), _latexish, st.text(max_size=20)),
    prompt=st.sampled_from(["", PREFILLED]),
)
def test_rewards_never_raise_and_stay_in_range(completion, gold, prompt):
    [acc] = rewards.Accuracy(timeout=LIMIT)([completion], answer=[gold], prompts=[prompt])
    assert acc in (0.0, 1.0, None)
    [fmt] = rewards.format_reward([completion], prompts=[prompt])
    assert fmt in (0.0, 0.25, 0.5, 1.0)


@settings(max_examples=50, deadline=None)
@given(completion=st.lists(st.text(max_size=40), max_size=4))
def test_message_lists_of_any_shape(completion):
    messages = [{"role": "assistant", "content": c} for c in completion]
    assert rewards.accuracy([messages], answer=["1"])[0] in (0.0, 1.0)


# ------------------------------------------------------------------------------------------------- MATH-500

# Solutions whose answer is counted equal to another problem's (the pairing is solution i with answer i+1):
# test/algebra/1837.json answers 5, the next problem's gold is "x=5": math-verify reads an assignment to a
# variable as its value, as it does for model answers ("x = 5" scores against "5"), so the pair is equal.
CROSS_EQUAL_BY_VALUE = {"test/algebra/1837.json"}


def test_math500_reference_solutions(shared_data):
    rows = [json.loads(line) for line in (shared_data / "math" / "math500_test.jsonl").read_text().splitlines()]
    assert len(rows) == 500
    completions = [think(row["solution"]) for row in rows]
    accuracy = Accuracy(timeout=5.0)
    own = accuracy(completions, answer=[row["answer"] for row in rows])
    misses = [row["unique_id"] for row, a in zip(rows, own, strict=True) if a != 1.0]
    assert misses == []  # every reference solution earns 1.0 against its own answer
    others = [rows[(i + 1) % len(rows)]["answer"] for i in range(len(rows))]
    crossed = accuracy(completions, answer=others)
    for row, other, a in zip(rows, others, crossed, strict=True):
        same = row["answer"].replace(" ", "") == other.replace(" ", "") or row["unique_id"] in CROSS_EQUAL_BY_VALUE
        assert a == (1.0 if same else 0.0), (row["unique_id"], row["answer"], other)
    assert sum(a == 1.0 for a in crossed) >= 2  # the data has equal neighbours (two '7's, two '3's): they must match


# ------------------------------------------------------------------------------------------------- bounded time

PATHOLOGICAL = {
    "power tower": "\\boxed{9^9^9^9^9}",
    "1000 nested parentheses": "\\boxed{" + "(" * 1000 + "1" + ")" * 1000 + "}",
    "nested exponent": "\\boxed{10^{10^{10}}}",
}


def _batch(tag: str, bad: str | None) -> tuple[list[str], list[str]]:
    """192 completions (16 prompts x 12), MATH-style so each goes through math-verify; ``tag`` keeps caches cold."""
    completions, golds = [], []
    for p in range(16):
        gold = f"\\frac{{{p + 1}}}{{{tag}}}"
        for g in range(12):
            completions.append(think(f"\\boxed{{\\frac{{{p + 1 + g % 2}}}{{{tag}}}}}"))
            golds.append(gold)
    if bad is not None:
        completions[100] = think(bad)
    return completions, golds


def _timed(tag, bad, in_thread=False):
    completions, golds = _batch(tag, bad)
    reward = Accuracy(timeout=LIMIT)
    box = {}

    def run():
        start = time.monotonic()
        box["result"] = reward(completions, answer=golds)
        box["elapsed"] = time.monotonic() - start

    if in_thread:
        worker = threading.Thread(target=run)
        worker.start()
        worker.join(timeout=120)
        assert not worker.is_alive(), "scoring from a thread did not finish"
    else:
        run()
    expected = [1.0 if i % 2 == 0 else 0.0 for i in range(192)]
    if bad is not None:
        expected[100] = 0.0
    assert box["result"] == expected
    return box["elapsed"]


@pytest.mark.parametrize("in_thread", [False, True], ids=["main thread", "other thread"])
@pytest.mark.parametrize("name", list(PATHOLOGICAL))
def test_pathological_completion_delays_a_batch_by_at_most_the_limit(name, in_thread):
    rewards.warm_up()
    tag = 1000 + 10 * list(PATHOLOGICAL).index(name) + in_thread
    baseline = _timed(tag, None, in_thread)
    with_bad = _timed(tag + 5000, PATHOLOGICAL[name], in_thread)
    assert with_bad <= baseline + LIMIT + SLACK, (name, baseline, with_bad)


def _score_in_child(queue):
    """Runs in a daemon process, from a non-main thread: a pool must still start and bound the time."""
    os.environ["RESON_VERIFY_WORKERS"] = "1"  # one verifier process is enough here and starts faster
    out = {}

    def run():
        start = time.monotonic()
        out["result"] = Accuracy(timeout=LIMIT)(
            [think(PATHOLOGICAL["nested exponent"]), think("\\boxed{\\frac{1}{\\sqrt{2}}}")],
            answer=["7", "\\sqrt{2}/2"],
        )
        out["elapsed"] = time.monotonic() - start
        rewards.shutdown_pool()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    queue.put(out)


def test_bounded_from_a_daemon_worker_process():
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    child = ctx.Process(target=_score_in_child, args=(queue,), daemon=True)
    child.start()
    out = queue.get(timeout=120)
    child.join(timeout=30)
    assert out["result"] == [0.0, 1.0]
    startup = 30.0  # the child starts its own verifier processes first (about 2 s; generous on a loaded machine)
    assert out["elapsed"] <= startup + LIMIT + SLACK


def test_a_killed_worker_is_replaced(pool):
    before = pool.restarts
    assert Accuracy(timeout=LIMIT)([think(PATHOLOGICAL["nested exponent"])], answer=["9"]) == [0.0]
    assert pool.restarts >= before  # an overrun restarts its worker; a soft-deadline stop does not need to
    assert Accuracy(timeout=LIMIT)([think("\\boxed{\\sqrt{4}}")], answer=["2"]) == [1.0]  # the pool still works
    assert len(pool.workers) == pool.size


@pytest.mark.slow
def test_rewards_inside_grpo_trainer(tiny_model_path, tmp_path):
    """The real trainer calls both rewards with its own keyword arguments and logs them under their names."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer
    from trl.trainer.utils import get_callable_name

    funcs = reward_funcs(["accuracy", "format"], timeout=LIMIT)
    assert [get_callable_name(f) for f in funcs] == ["accuracy", "format"]
    rows = [{"prompt": f"User: what is {n} + 1? Assistant: <think>", "answer": str(n + 1)} for n in range(4)]
    args = GRPOConfig(
        output_dir=str(tmp_path),
        max_steps=1,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=8,
        bf16=False,
        use_cpu=True,
        report_to="none",
        logging_steps=1,
        save_strategy="no",
    )
    trainer = GRPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(tiny_model_path),
        processing_class=AutoTokenizer.from_pretrained(tiny_model_path),
        reward_funcs=funcs,
        args=args,
        train_dataset=Dataset.from_list(rows),
    )
    trainer.train()
    logged = {key for entry in trainer.state.log_history for key in entry}
    assert {"rewards/accuracy/mean", "rewards/format/mean", "rewards/accuracy/timeouts"} <= logged


@pytest.mark.parametrize("executable", ["/nonexistent/python", "/bin/false"], ids=["cannot spawn", "dies at start"])
def test_a_pool_that_cannot_start_scores_zero_without_raising(monkeypatch, executable):
    rewards.shutdown_pool()
    rewards.clear_caches()
    monkeypatch.setattr(sys, "executable", executable)
    try:
        start = time.monotonic()
        completions = [think("\\boxed{\\frac{1}{\\sqrt{2}}}"), think("<answer>18</answer>")]
        assert rewards.accuracy(completions, answer=["\\sqrt{2}/2", "18"]) == [0.0, 1.0]  # numbers need no pool
        assert time.monotonic() - start < 30
    finally:
        rewards.shutdown_pool()
        rewards.clear_caches()
