"""Rewards: accuracy and format tables (each defect found against outside data has a row), TRL's calling contract,
the gold answers, MATH-500 self-check. The verifier pool's time bounds: test_verifier.py."""

from __future__ import annotations

import json
import logging
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import reson.core.rewards as rewards
from reson.core import verifier
from reson.core.parsing import extract_answer
from reson.core.rewards import REWARDS, Accuracy, Format, format_score, get_reward, reward_funcs, score

LIMIT = 1.0  # per-completion limit used in the property tests (seconds)
PREFILLED = "User: what is 2+3? Assistant: <think>"


@pytest.fixture(scope="module", autouse=True)
def pool():
    """One warm verifier pool for the module; stopped afterwards."""
    verifier.warm_up()
    yield verifier.get_pool()
    verifier.shutdown_pool()


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
    # found against outside data (tests/data/grading): a final answer written as a math expression is compared whole
    (think("The answer is $\\frac{1}{3}$."), "3", 0.0, "a fraction's denominator is not the answer"),
    (think("The answer is $\\sqrt{2}$."), "2", 0.0, "a root's argument is not the answer"),
    (think("So the set is $[0, 9)$."), "(0,9)", 0.0, "a half-open interval is not the open one"),
    (think("The answer is $\\frac{14}{3}$."), "\\frac{14}{3}", 1.0, "an untagged fraction, compared whole"),
    (think("so the angle is $\\dfrac{\\pi}{12}$."), "12", 0.0, "a denominator inside a MATH answer"),
    (think("It is 2^{10}."), "10", 0.0, "an exponent is not the answer"),
    (think("It is 2^{10}."), "1024", 1.0, "a power is its value"),
    (think("So it is \\frac{1}{0}"), "0", 0.0, "division by zero is not zero"),
    # malformed LaTeX is normalised as math-verify does by default
    (think("<answer>0.75</answer>"), "\\frac 34", 1.0, "a brace-less fraction in the gold"),
    (think("<answer>\\frac{3}{4}</answer>"), "\\frac 34", 1.0, "the same fraction, written properly"),
    (think("<answer>11\\sqrt{2}</answer>"), "11\\sqrt2", 1.0, "a brace-less root in the gold"),
    # a sentence or an equation chain inside <answer> states one number
    (
        think("<answer>Therefore, Henry baked 50 cookies last year.</answer>"),
        "50",
        1.0,
        "a sentence states its number",
    ),
    (think("<answer>Answer: 300 miles</answer>"), "300", 1.0, "a label and a unit"),
    (think("<answer> 3 times</answer>"), "3", 1.0, "a count word"),
    (think("<answer>The number of candies Dylan bought altogether is 82</answer>"), "82", 1.0, "a long sentence"),
    (
        think("<answer>60 sheets per week * 4 weeks per month = 240 sheets per month</answer>"),
        "240",
        1.0,
        "a chain in words ends in its result",
    ),
    # several answers: a complete list of roots is right, candidates for one answer are a hedge
    (think("$\\boxed{1}$ and $\\boxed{-2}$"), "-2, 1", 1.0, "roots boxed one by one, in any order"),
    (think("<answer>x = 1 or x = -2</answer>"), "-2, 1", 1.0, "both roots is a complete answer"),
    (think("<answer>1, -2</answer>"), "-2, 1, 3", 0.0, "a root missing"),
    (think("<answer>15 min. or 15</answer>"), "15", 1.0, "one value said twice is not a hedge"),
    (think("<answer>71 | 72</answer>"), "72", 0.0, "a bar between candidates"),
    (think("<answer>71 & 72</answer>"), "72", 0.0, "an ampersand between candidates"),
    (think("<answer>71 \\\\ 72</answer>"), "72", 0.0, "candidates on two lines"),
    (think("<answer>71 = 72</answer>"), "72", 0.0, "two different numbers said to be equal"),
    (think("\\boxed{71} \\boxed{72}"), "72", 0.0, "two boxes are two candidates"),
    (think("<answer>71, 72</answer>"), "72", 0.0, "a comma list against one answer"),
    (think("<answer>2x - y + 2z - 18 = 0</answer>"), "0", 0.0, "an equation is not its right-hand side"),
    (think("<answer>a+b+c+d = 161</answer>"), "161", 1.0, "the sum the question asks for"),
    # unicode maths
    (think("<answer>90°</answer>"), "90", 1.0, "a degree sign"),
    (think("<answer>15 cm²</answer>"), "15\\mbox{ cm}^2", 1.0, "a squared unit"),
    ("", "18", 0.0, "empty completion"),
    (think(""), "18", 0.0, "empty final answer"),
    (think("<answer>１８</answer>"), "18", 1.0, "full-width digits are the same number"),
    (think("Voilà: ½ → 18 ✓"), "18", 1.0, "unicode around the number"),
    (think("word " * 20_000 + "<answer>17</answer>"), "18", 0.0, "100,000 characters ending in a wrong answer"),
    (think("x" * 100_000 + " <answer>18</answer>"), "18", 1.0, "100,000 characters before a right answer"),
    # a completion that goes on to write the next turn itself is graded on what it says before that turn
    (
        think("<answer>5</answer>") + "\nUser: and 6? Assistant: <think>x</think> <answer>6</answer>",
        "5",
        1.0,
        "an invented turn after the answer is not graded",
    ),
    (
        think("<answer>5</answer>") + "\nUser: and 6? Assistant: <think>x</think> <answer>6</answer>",
        "6",
        0.0,
        "the made-up turn's answer earns nothing",
    ),
    (
        " 2+3=5. User: what is 7? Assistant: <think>7</think> <answer>7</answer>",
        "7",
        0.0,
        "a turn invented mid-thinking: the block never closed in the model's own turn",
    ),
    (think("Going to User:Azjps, it is 12.") + " <answer>12</answer>", "12", 1.0, "'User:' mid-sentence is text"),
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
    (" 2+3 is 5", PREFILLED, 0.25, "prefilled prompt and a block that never closes: as when it opens <think> itself"),
    ("The answer is 5.", "", 0.0, "no tags"),
    ("", "", 0.0, "empty completion"),
    ("<think>ünï</think> ½", "", 1.0, "unicode"),
    ("<think>" + "x" * 100_000 + "</think> 5", "", 1.0, "a 100,000-character think block"),
    (
        "<think>2+3=5</think> 5\nUser: and 6?\nAssistant: <think>6</think> 6",
        "",
        1.0,
        "an invented turn is not graded (it would repeat the think block)",
    ),
    (" 2+3=5 </think> 5 User: thanks", PREFILLED, 1.0, "a prefilled prompt, a made-up user turn"),
    (
        " 2+3 is. User: help? Assistant: <think>5</think> 5",
        PREFILLED,
        0.25,
        "a turn invented inside the thinking: the model's own block never closed",
    ),
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


def test_unparseable_gold_is_counted_and_warned_once(caplog, monkeypatch):
    monkeypatch.setattr(rewards._UNPARSEABLE, "warned", False)
    before = rewards.unparseable_gold_count()
    with caplog.at_level(logging.WARNING, logger="reson.core.rewards"):
        assert rewards.accuracy([think("5")] * 3, answer=["", "  ", None]) == [None, None, None]
        assert rewards.accuracy([think("5")], answer=[""]) == [None]
    assert rewards.unparseable_gold_count() - before == 4
    assert sum("cannot be parsed" in r.getMessage() for r in caplog.records) == 1


def test_gold_parsed_once_per_example(monkeypatch):
    calls = []
    real = rewards.gold_from_solution
    monkeypatch.setattr(rewards, "gold_from_solution", lambda s: calls.append(s) or real(s))
    gold = "Janet sells 16 - 3 - 4 = 9 eggs; 9 * 2 = 18.\n#### 4,321"
    completions = [think(f"<answer>{n}</answer>") for n in range(4310, 4322)]  # 12 generations of one prompt
    assert rewards.accuracy(completions, answer=[gold] * 12) == [0.0] * 11 + [1.0]
    assert len(calls) == 1


def test_plain_numbers_need_no_sympy():
    """The fast path: a GSM8K-style batch is scored without importing sympy or math-verify or starting the pool."""
    code = (
        "import sys\n"
        "from reson.core.rewards import accuracy\n"
        "from reson.core.verifier import current_pool\n"
        "r = accuracy(['<think>a</think> <answer>$1,234</answer>', '<think>a</think> 17 apples.'], "
        "answer=['1234', '18'])\n"
        "assert r == [1.0, 0.0], r\n"
        "assert current_pool() is None\n"
        "assert not {'sympy', 'math_verify'} & set(sys.modules), 'heavy import'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_registry_names_and_pickling():
    assert set(REWARDS) == {"accuracy", "format", "countdown"}
    funcs = reward_funcs(["accuracy", "format"], timeout=3.5)
    assert [f.__name__ for f in funcs] == ["accuracy", "format"]  # TRL's metric keys rewards/<name>/mean
    assert isinstance(funcs[0], Accuracy) and funcs[0].timeout == 3.5 and isinstance(funcs[1], Format)
    clone = pickle.loads(pickle.dumps(funcs[0]))
    assert clone.__name__ == "accuracy" and clone.timeout == 3.5
    assert clone([think("<answer>5</answer>")], answer=["5"]) == [1.0]
    with pytest.raises(ValueError, match="accuracy, format"):
        get_reward("acc")
    with pytest.raises(ValueError, match="'length'.*dotted import path"):
        reward_funcs(["accuracy", "length"], timeout=1.0)
    with pytest.raises(ValueError, match="positive"):
        Accuracy(timeout=0)


def test_a_reward_by_import_path(tmp_path, monkeypatch):
    """As TRL's grpo script: `module.function`, a module in the current folder included; checked on lookup."""
    (tmp_path / "my_rewards.py").write_text(
        "def brevity(completions, **kwargs):\n    return [1.0 / (1 + len(c)) for c in completions]\n"
        "class Shout:\n    pass\n"
        "LOUD = 3\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "my_rewards", raising=False)
    [brevity] = reward_funcs(["my_rewards.brevity"])
    assert brevity.__name__ == "brevity" and brevity(["abc"]) == [0.25]
    assert str(tmp_path) not in sys.path  # the folder was on the path for the import only
    for path, said in (
        ("my_rewards.nope", "nope in my_rewards is missing"),
        ("my_rewards.LOUD", "is not callable"),
        ("my_rewards.Shout", "is a class"),
        ("no_such_module.f", "cannot import no_such_module"),
    ):
        with pytest.raises(ValueError, match=said):
            get_reward(path)


def test_score_agrees_with_the_rewards():
    completions = [think("<answer>5</answer>"), "5", " x </think> \\boxed{\\frac{1}{2}}"]
    golds, prompts = ["5", "5", "0.5"], ["", "", PREFILLED]
    scores = score(completions, golds, prompts)
    assert [s.accuracy for s in scores] == rewards.accuracy(completions, answer=golds, prompts=prompts)
    assert [s.format for s in scores] == rewards.format_reward(completions, prompts=prompts)
    assert [s.extracted for s in scores] == ["5", "5", "\\frac{1}{2}"]
    with pytest.raises(ValueError, match="one gold answer"):
        score(completions, golds[:2])


HOPELESS = [
    # (answer span, hopeless, why): what can never be an answer scores 0.0 without math-verify; what can, still goes
    ("10^{10^{10}}", True, "a tower: math-verify ran to the 5 s limit on it"),
    ("9^{9^{9}}", True, "a braced tower"),
    ("9^9^9^9^9", True, "an unbraced tower, read right to left"),
    ("2^{2^{2^{2^{2^{2}}}}}", True, "a tower of 2s: 2^65536 has 19,729 digits"),
    ("1^{9^{9^9}}", True, "a harmless base does not hide the tower in its exponent"),
    ("{10}^{10^{10}}", True, "a braced base"),
    ("(-2)^{100000}", True, "a bracketed, signed base; 30,103 digits"),
    ("10^{-10^{10}}", True, "a negative exponent is as large"),
    ("\\int_0^\\infty e^{-x^{9^{9^9}}} dx", True, "a tower inside an integral"),
    ("1" * 50 + "^{" + "9" * 50 + "}", True, "a 50-digit exponent"),
    ("1000000!", True, "a factorial math-verify ran to the limit on"),
    ("(10^{6})!", True, "a factorial of a numeric power"),
    ("99!!!", True, "a factorial of a factorial (math-verify: 4 s)"),
    ("(10^{10^{10}})!", True, "a factorial of a tower"),
    ("(" * 11 + "1" + ")" * 11, True, "parentheses 11 deep (math-verify: ~0.5 s at 10, ~3.5 s at 30)"),
    ("1" * 101, True, "a 101-digit literal"),
    ("x" * 1001, True, "longer than MAX_ANSWER_CHARS"),
    ("96^{38}", False, "the largest power among the real answers"),
    ("2^{10}", False, "a small power"),
    ("2^{3}4^{5}", False, "two powers side by side are not a tower"),
    ("2^{2^{3}}", False, "a small tower: 256"),
    ("x^{x^{x^{x}}}", False, "a symbolic tower is sympy's to compare"),
    ("e^{-x^2}", False, "a symbolic exponent"),
    ("99999!", False, "below MAX_FACTORIAL"),
    ("3!!", False, "a double factorial"),
    ("5!=120", False, "a factorial beside 'not equal'"),
    ("(" * 10 + "1" + ")" * 10, False, "10 deep is still read"),
    ("1" * 100, False, "a 100-digit literal is still read"),
    ("1e999999999", False, "not a power in LaTeX: math-verify answers it at once"),
]


@pytest.mark.parametrize(("pred", "expected", "why"), HOPELESS, ids=[h[2] for h in HOPELESS])
def test_hopeless(pred, expected, why):
    assert rewards.hopeless(pred) is expected


def test_hopeless_answers_never_reach_math_verify(pool):
    """bench_rewards' pathological answers and the fuzzer's towers score 0.0 at once: before the check each burnt
    the whole 5 s limit in a verifier worker."""
    import time

    hostile = [h[0] for h in HOPELESS if h[1]] + ["\\boxed{" + "(" * 1000 + "1" + ")" * 1000 + "}"]
    tasks = pool.tasks
    for pred in hostile:
        start = time.monotonic()
        assert rewards.Accuracy(timeout=5.0)([think(f"\\boxed{{{pred}}}")], answer=["7"]) == [0.0]
        assert time.monotonic() - start < 0.5
    assert pool.tasks == tasks


def test_no_real_answer_is_hopeless(shared_data):
    """Every gold answer the project grades against, and every prediction the grading data calls right, is still
    read: the limits stay far from real answers."""
    golds = []
    for path in sorted(shared_data.glob("**/*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        golds += [row.get("answer") or row.get("solution") for row in rows]  # a MATH solution's boxed answer
    right = []  # predictions the grading data calls right, read as bench_grading.py wraps them
    grading = Path(__file__).parent / "data" / "grading"
    for path in sorted(grading.glob("*.jsonl")):
        for row in map(json.loads, path.read_text().splitlines()):
            golds.append(row.get("gold"))
            if row.get("pred") and row.get("human_verdict", row.get("expected")):
                right.append(extract_answer(f"<answer>{row['pred']}</answer>"))
    spans = [rewards.prepare_gold(g).text for g in golds if isinstance(g, str)] + right
    assert len(spans) > 2_000  # the full sets: bench_grading.py grades every reference solution against its gold
    # (one Math-Verify test has a whole 1,809-character solution for a gold: length alone was a limit before)
    assert [s for s in spans if s and len(s) <= rewards.MAX_ANSWER_CHARS and rewards.hopeless(s)] == []


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


def test_text_parts_that_are_not_text_score_as_empty():
    """A chat completion whose text part holds a number (or None) is no text: scored, never a TypeError."""
    parts = [{"role": "assistant", "content": [{"type": "text", "text": 5}, {"type": "text", "text": None}]}]
    assert rewards.completion_text(parts) == ""
    assert rewards.accuracy([parts], answer=["5"]) == [0.0]
    assert rewards.format_reward([parts]) == [0.0]
    assert [s.accuracy for s in score([parts], ["5"])] == [0.0]


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
    """The suite's 40 MATH-500 rows; bench/bench_grading.py checks all 500, and GSM8K's and MATH's, the same way."""
    rows = [json.loads(line) for line in (shared_data / "math" / "math500_test.jsonl").read_text().splitlines()]
    assert len(rows) == 40
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
