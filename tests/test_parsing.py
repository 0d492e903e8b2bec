"""Answer parsing: think/answer split for both prompt styles, answer spans, plain numbers, GSM8K gold answers."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest

from reson.core.parsing import (
    CONTRADICTION,
    Parsed,
    answer_items,
    boxed_spans,
    cut_invented_turn,
    extract_answer,
    gold_from_solution,
    last_answer_tag,
    normalize_unicode,
    parse_gsm8k_gold,
    parse_number,
    split_completion,
)

PREFILLED = "A conversation ... User: what is 2+3? Assistant: <think>"
PLAIN = "A conversation ... User: what is 2+3? Assistant:"

SPLITS = [
    # (completion, prompt, expected Parsed, why)
    ("<think>2+3=5</think> <answer>5</answer>", PLAIN, Parsed("2+3=5", " <answer>5</answer>", True), "the R1 shape"),
    (" 2+3=5 </think> 5", PREFILLED, Parsed(" 2+3=5 ", " 5", True), "prefilled <think>: completion starts inside"),
    (
        " 2+3=5 </think> 5",
        PREFILLED + "  \n",
        Parsed(" 2+3=5 ", " 5", True),
        "whitespace after the prefill is ignored",
    ),
    ("2+3=5 </think> 5", "", Parsed("2+3=5 ", " 5", True), "lone </think>: the block opened at the start"),
    ("<think>2+3 is", PLAIN, Parsed("2+3 is", "", False), "unclosed block: no answer yet"),
    (" 2+3 is 5", PREFILLED, Parsed(" 2+3 is 5", "", False), "prefilled and never closed: all thinking"),
    ("The answer is 5.", PLAIN, Parsed(None, "The answer is 5.", False), "no tags: the whole completion answers"),
    ("", PLAIN, Parsed(None, "", False), "empty completion"),
    ("Sure. <think>a</think> 5", PLAIN, Parsed("a", " 5", True), "preamble is neither thinking nor answer"),
    ("<think>a</think> 4 <think>b</think> 5", PLAIN, Parsed("a</think> 4 <think>b", " 5", True), "answer after last"),
    ("<think>a</think> 4 <think> maybe 5", PLAIN, Parsed("a", " 4 ", True), "a reopened block is cut off"),
    ("<think>ünï 𝛑</think> ½", PLAIN, Parsed("ünï 𝛑", " ½", True), "unicode passes through"),
    (
        " 2+3=5 </think> <answer>5</answer>\nUser: and 2+4?\nAssistant: <think> 6 </think> <answer>6</answer>",
        PREFILLED,
        Parsed(" 2+3=5 ", " <answer>5</answer>\n", True),
        "an invented next turn is cut off: the answer is the model's own, not the made-up reply's",
    ),
    (
        " 2+3=5. User: and 2+4? Assistant: <think> 6 </think> <answer>6</answer>",
        PREFILLED,
        Parsed(" 2+3=5.", "", False),
        "a turn invented inside the thinking: the only answer was in the made-up reply, so there is none",
    ),
]

INVENTED_TURNS = [
    # (completion, prompt, what is read, why)
    ("<think>a</think> 5 User: and 6? Assistant: 6", PLAIN, "<think>a</think> 5", "a turn after the thinking"),
    ("<think>a</think> 5\nUser: thanks", PLAIN, "<think>a</think> 5\n", "a user turn at the end, no reply"),
    ("<think>a</think> <answer>5</answer>User: hi", PLAIN, "<think>a</think> <answer>5</answer>", "right after a tag"),
    ("The answer is 5.\nUser: What about 6?\nAssistant: 6", PLAIN, "The answer is 5.\n", "no think block"),
    ("User: what is 2+3? Assistant: 5", PLAIN, "", "the completion starts with a turn of its own"),
    (
        " The question says:\nUser: admin, 5 logins </think> 5",
        PREFILLED,
        " The question says:\nUser: admin, 5 logins </think> 5",
        "'User:' inside the thinking with no 'Assistant:' after it restates the question: kept",
    ),
    (
        "<think>a</think> go to User:Azjps/geogebra, so 5",
        PLAIN,
        "<think>a</think> go to User:Azjps/geogebra, so 5",
        "mid-sentence (a MATH solution's link text): not a turn",
    ),
    (
        "see artofproblemsolving.com/wiki/index.php/User:Cyantist, so 721",
        PLAIN,
        "see artofproblemsolving.com/wiki/index.php/User:Cyantist, so 721",
        "inside a URL: not a turn",
    ),
    (
        '<think>a</think> the log reads "User: 5", so 5',
        PLAIN,
        '<think>a</think> the log reads "User: 5", so 5',
        "quoted",
    ),
    ("<think>a</think> 5. user: hi", PLAIN, "<think>a</think> 5. user: hi", "the template's role is 'User:'"),
    (
        " 2+3=5 </think> 5",
        "User: Is 'User: x' a turn? Assistant: <think>",
        " 2+3=5 </think> 5",
        "the prompt is not read",
    ),
]


@pytest.mark.parametrize(("completion", "prompt", "kept", "why"), INVENTED_TURNS, ids=[c[3] for c in INVENTED_TURNS])
def test_cut_invented_turn(completion, prompt, kept, why):
    assert cut_invented_turn(completion, prompt) == kept


def test_a_long_completion_with_many_user_markers_is_cut_in_linear_time():
    import time

    text = "<think>" + "a.\nUser: b " * 50_000  # inside an unclosed think block, no Assistant: never cut
    start = time.monotonic()
    assert cut_invented_turn(text, "") == text
    assert cut_invented_turn(text + " Assistant:", "").endswith("a.\n")  # the first marker before an Assistant:
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize(("completion", "prompt", "expected", "why"), SPLITS, ids=[c[3] for c in SPLITS])
def test_split_completion(completion, prompt, expected, why):
    assert split_completion(completion, prompt) == expected


ANSWERS = [
    # (answer text, expected span, why)
    ("<answer>42</answer>", "42", "answer tags"),
    (" <answer> \\boxed{42} </answer>", "42", "a box inside the answer tags is unwrapped"),
    ("<answer>1</answer> then <answer>2</answer>", "2", "the last answer tag wins"),
    ("<answer> 42", "42", "an unclosed last answer tag runs to the end"),
    (
        "half is \\boxed{\\frac{1}{2}}. So x is \\boxed{\\frac{\\sqrt{2}}{2}}",
        "\\frac{\\sqrt{2}}{2}",
        "last box, nested braces",
    ),
    ("$\\boxed{1}$ and $\\boxed{-2}$", "1, -2", "boxes listed together are one answer"),
    ("\\boxed{71} \\boxed{72}", "71, 72", "two boxes side by side: both stay visible"),
    ("The answer is $\\frac{1}{3}$.", "\\frac{1}{3}", "a math span, not its last digit"),
    ("so it is $[0, 9)$.", "[0, 9)", "an interval in a math span"),
    ("It is 2^{10}.", "2^{10}", "a number is read with the expression it is written in"),
    ("so we get \\frac{1}{0}", "\\frac{1}{0}", "an untagged fraction"),
    ("costs $5 and $10 more, 15 in all", "15", "dollar signs are not maths"),
    ("The area is 15 cm^2.", "15", "a unit with an exponent is not the answer"),
    (
        "<answer>Therefore, Henry baked 50 cookies last year.</answer>",
        "50",
        "a sentence in the tags states its number",
    ),
    ("<answer>Answer: 300 miles</answer>", "300 miles", "a label before the answer"),
    ("<answer>60 sheets per week * 4 weeks per month = 240 sheets per month</answer>", "240", "a chain in words"),
    ("<answer>x = 1 or x = -2</answer>", "x = 1 or x = -2", "an answer without words is kept whole"),
    ("<answer>90°</answer>", "90^\\circ", "unicode degrees"),
    ("\\boxed{\\{1, 2\\}}", "\\{1, 2\\}", "escaped braces inside a box"),
    ("\\boxed{3} then \\boxed{4", "3", "a truncated last box falls back to the complete one"),
    ("\\fbox{7}", "7", "fbox counts as a box"),
    ("\\boxed 9.", "9.", "bare \\boxed without braces"),
    ("The total is $1,234.50 in all.", "$1,234.50", "last number with currency and thousands commas"),
    ("She lost -3/4 of a cup", "-3/4", "signed fraction"),
    ("about 45% of them", "45%", "percent"),
    ("first 3 apples, then 12 pears", "12", "the last number, not the first"),
    ("The answer is 17 or 18.", "17 or 18", "a hedge keeps its candidates"),
    ("Candidates: 12, 13, 14", "12, 13, 14", "a list keeps its candidates"),
    ("so x = 2 or x = 3", "2 or x = 3", "a hedge between assignments keeps its candidates"),
    ("so n = 5, and m = 7. Answer: 7", "7", "a full stop ends a list"),
    ("It is 1,234.", "1,234", "thousands commas are not a list"),
    (" 13-12</think> 1</answer>", "1", "a closing tag is not part of the number before it"),
    ("no numbers here", None, "nothing answer-like"),
    ("", None, "empty"),
]


@pytest.mark.parametrize(("text", "expected", "why"), ANSWERS, ids=[c[2] for c in ANSWERS])
def test_extract_answer(text, expected, why):
    assert extract_answer(text) == expected


def test_boxes_none_and_deep_nesting():
    assert boxed_spans("no box") == []
    nested = "{" * 50 + "x" + "}" * 50
    assert [content for _, _, content in boxed_spans("\\boxed{" + nested + "}")] == [nested]


def test_last_answer_tag():
    assert last_answer_tag(" <answer> 6/4*8+1 </answer> ") == "6/4*8+1"
    assert last_answer_tag("<answer>1</answer> <answer>2</answer>") == "2"
    assert last_answer_tag("<answer>1</answer> <answer>2") == "2"  # a last tag left unclosed runs to the end
    assert last_answer_tag("no tags") is None and last_answer_tag("") is None


NUMBERS = [
    # (text, value or None, percent, why)
    ("42", Fraction(42), False, "integer"),
    ("-1,234,567", Fraction(-1234567), False, "sign and thousands commas"),
    ("\u22123", Fraction(-3), False, "unicode minus"),
    ("0.50", Fraction(1, 2), False, "decimal"),
    (".5", Fraction(1, 2), False, "leading dot"),
    ("1/2", Fraction(1, 2), False, "slash fraction"),
    ("\\frac{1}{2}", Fraction(1, 2), False, "latex fraction"),
    ("-\\dfrac{3}{4}", Fraction(-3, 4), False, "signed dfrac"),
    ("\\frac12", Fraction(1, 2), False, "brace-less frac"),
    ("$18", Fraction(18), False, "dollars"),
    ("\\$5.00", Fraction(5), False, "escaped dollar"),
    ("-$5", Fraction(-5), False, "sign before the currency"),
    ("\u20ac7", Fraction(7), False, "euro"),
    ("45%", Fraction(45), True, "percent"),
    ("10\\%", Fraction(10), True, "latex percent"),
    ("5 cm", Fraction(5), False, "unit word"),
    ("12 dollars", Fraction(12), False, "unit word"),
    ("5\\text{ cm}^2", Fraction(5), False, "latex unit"),
    ("90^\\circ", Fraction(90), False, "degrees"),
    ("1{,}000", Fraction(1000), False, "latex thousands separator"),
    ("3.", Fraction(3), False, "trailing full stop"),
    ("2^3", None, False, "a power is an expression"),
    ("5x", None, False, "a product with a variable"),
    ("5 pi", None, False, "pi is not a unit"),
    ("x=5", None, False, "an equation"),
    ("\\sqrt{2}", None, False, "a root"),
    ("1/0", None, False, "division by zero is not a number"),
    ("", None, False, "empty"),
    ("1" * 200, None, False, "overlong strings are not read"),
]


@pytest.mark.parametrize(("text", "value", "percent", "why"), NUMBERS, ids=[c[3] for c in NUMBERS])
def test_parse_number(text, value, percent, why):
    number = parse_number(text)
    if value is None:
        assert number is None
    else:
        assert number is not None and number.value == value and number.percent == percent


ITEMS = [
    # (span, answers it gives, why)
    ("17 or 18", ["17", "18"], "or"),
    ("17 \\text{ or } 18", ["17", "18"], "latex or"),
    ("either 3 or 4", ["3", "4"], "either ... or"),
    ("12, 13, 14", ["12", "13", "14"], "a comma list"),
    ("1,234", ["1,234"], "thousands commas are not a list"),
    ("71 | 72", ["71", "72"], "a bar between numbers"),
    ("71 & 72", ["71", "72"], "an alignment tab"),
    ("71 \\\\ 72", ["71", "72"], "a line break"),
    ("|x - 1|", ["|x - 1|"], "an absolute value is one answer"),
    ("(3, -5)", ["(3, -5)"], "a tuple is one answer"),
    ("[0, 9)", ["[0, 9)"], "an interval is one answer"),
    (
        "\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}",
        ["\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}"],
        "a vector is one answer",
    ),
    ("x = 1 or x = -2", ["1", "-2"], "assignments give their values"),
    ("a+b+c+d = 161", ["161"], "a named sum is what was asked for"),
    ("12 - 7 = 5", ["5"], "an arithmetic chain states its result"),
    ("$40 + $20 = $60", ["$60"], "a chain with currency"),
    ("71 = 72", [CONTRADICTION], "two different numbers said to be equal"),
    ("2x - y + 2z - 18 = 0", ["2x - y + 2z - 18 = 0"], "an equation in the unknowns is its own answer"),
]


@pytest.mark.parametrize(("span", "items", "why"), ITEMS, ids=[c[2] for c in ITEMS])
def test_answer_items(span, items, why):
    assert answer_items(span) == items


def test_equations_are_kept_when_the_gold_is_one():
    assert answer_items("y = 2x + 3", equations=True) == ["y = 2x + 3"]


GOLDS = [
    # (solution, gold, why)
    ("She makes 9 * 2 = 18.\n#### 1,234", "1234", "GSM8K: after ####"),
    ("So the answer is $\\boxed{\\frac{1}{2}}$.", "\\frac{1}{2}", "one box"),
    ("First $\\boxed{3}$ apples, then the total is $\\boxed{3}$.", "3", "the same answer boxed twice"),
    ("Therefore, the answers are $\\boxed{-2}$ and $\\boxed{1}$.", "-2, 1", "roots boxed one by one"),
    ("so $k = \\boxed{5}$ or $k = \\boxed{-3}$.", "5, -3", "assigned roots boxed one by one"),
    ("We get $\\boxed{\\frac32}$, that is $\\boxed{\\frac{3}{2}}$.", "\\frac{3}{2}", "one value written two ways"),
    ("so $d=\\boxed{-3}$.\n\nNote: $\\boxed{3}$ is also accepted as an answer.", None, "an alternative added after"),
    ("so $\\boxed{11}=2$ ... Finally, $\\boxed{12}=6$. Therefore, $6$ is our answer.", None, "boxes as notation"),
    ("no box at all", None, "nothing boxed"),
]


@pytest.mark.parametrize(("solution", "gold", "why"), GOLDS, ids=[c[2] for c in GOLDS])
def test_gold_from_solution(solution, gold, why):
    assert gold_from_solution(solution) == gold


UNICODE = [
    ("90°", "90^\\circ"),
    ("15 cm²", "15 cm^2"),
    ("\u22123", "-3"),
    ("２０", "20"),
    ("3×4", "3\\times 4"),
]


@pytest.mark.parametrize(("text", "normal"), UNICODE)
def test_normalize_unicode(text, normal):
    assert normalize_unicode(text) == normal


def test_parse_gsm8k_gold_forms():
    assert parse_gsm8k_gold("9 * 2 = 18\n#### 18") == "18"
    assert parse_gsm8k_gold("... #### 1,234") == "1234"
    assert parse_gsm8k_gold("#### -10") == "-10"
    with pytest.raises(ValueError, match="####"):
        parse_gsm8k_gold("no final answer")


@pytest.mark.parametrize("split", ["train", "test"])
def test_every_gsm8k_gold_parses_to_its_number(shared_data, split):
    lines = (shared_data / "gsm8k" / f"{split}.jsonl").read_text().splitlines()
    afters = [json.loads(line)["answer"].split("####")[-1].strip() for line in lines]
    assert any("," in a for a in afters) and any(a.startswith("-") for a in afters)  # "1,080" and "-3" are here
    for line in lines:
        solution = json.loads(line)["answer"]
        after = solution.split("####")[-1].strip()
        gold = parse_gsm8k_gold(solution)
        assert re.fullmatch(r"-?\d+(\.\d+)?", gold), (gold, after)
        assert parse_number(gold).value == Fraction(after.replace(",", "")), after
        assert parse_number(after).value == Fraction(gold)  # the raw "1,234" form reads the same


def test_docstring_examples_run():
    import doctest

    import reson.core.parsing

    result = doctest.testmod(reson.core.parsing)
    assert result.attempted >= 5 and result.failed == 0


ADVERSARIAL = {
    # inputs that make naive regexes or box scanners quadratic or exponential
    "slash list": "1 / " * 3000 + "x 5",
    "comma list": "1, " * 50_000 + "x 5",
    "thousands chain": "1,234," * 20_000 + "x",
    "unclosed boxes": "\\boxed{" * 20_000,
    "unclosed answer tags": "<answer>" * 20_000,
    "or chain": "1 or " * 30_000,
    "digits": "9" * 100_000,
    "think tags": "<think></think>" * 10_000,
}


@pytest.mark.parametrize("name", list(ADVERSARIAL))
def test_parsing_stays_fast_on_adversarial_text(name):
    import time

    text = ADVERSARIAL[name]
    start = time.monotonic()
    span = extract_answer(text)
    if span is not None:
        answer_items(span)
    split_completion(text, "")
    split_completion(text, "Assistant: <think>")
    assert time.monotonic() - start < 5.0  # linear: ~0.1 s here; the old list regex took minutes on "slash list"


def test_only_the_tail_of_a_huge_answer_is_parsed(monkeypatch):
    """Parsing runs in the caller, outside the verifier's time limit: it reads the last MAX_PARSE_CHARS characters
    only, so its time is bounded whatever the model writes ("\\boxed{" * 60 + 400,000 letters took 2.5 s before)."""
    from reson.core import parsing

    seen = []
    normalize = parsing.normalize_unicode
    monkeypatch.setattr(parsing, "normalize_unicode", lambda text: seen.append(len(text)) or normalize(text))
    parsing.extract_answer("\\boxed{" * 60 + "a" * 400_000)
    assert seen and max(seen) <= parsing.MAX_PARSE_CHARS
    seen.clear()
    assert parsing.extract_answer("\\boxed{18} " + "x" * parsing.MAX_PARSE_CHARS) != "18"  # too far back to read
    assert parsing.extract_answer("x" * 100_000 + " \\boxed{18}") == "18"
