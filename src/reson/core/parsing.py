r"""Answer parsing shared by the rewards, the emergence metrics and evaluation.

One module decides what the thinking is, what the final answer is and what number a string stands for, so training
and evaluation can never disagree about it. Everything here is plain string work: no sympy, no math-verify, no eval.

Two prompt styles are handled:

- the prompt ends with ``<think>`` (Dr. GRPO / Open-Reasoner-Zero prefill the tag): the completion starts *inside* the
  think block and carries only the closing ``</think>``;
- any other prompt: the completion opens the block itself (``<think> ... </think> answer``).

A completion that goes on to write the next turn itself ("\nUser: ... Assistant:", as base models under the R1-Zero
template do) is read only up to that turn (``cut_invented_turn``), for every reader of ``split_completion``.

The final answer, in the text after the think block (``extract_answer``): the last ``<answer>`` span, else the final
group of ``\boxed{}`` answers, else what the last sentence states: its last math span (``$\frac{1}{3}$``) or its
last number read together with the expression around it (``2^{10}``, ``12-7=5``). A sentence inside ``<answer>``
("Henry baked 50 cookies.") is read the same way. Candidates listed before that element stay in the span ("17 or
18", "x = 1 or x = -2"), and ``answer_items`` splits a span into the answers it gives, so a hedge can be told from a
complete list of roots.

>>> split_completion(" 2+3=5 </think> <answer>5</answer>", prompt="... Assistant: <think>")
Parsed(think=' 2+3=5 ', answer=' <answer>5</answer>', closed=True)
>>> print(extract_answer(r"so the total is \boxed{\frac{1}{2}}."))
\frac{1}{2}
>>> print(extract_answer(r"The roots are $\boxed{1}$ and $\boxed{-2}$."))
1, -2
>>> print(extract_answer("<answer>Therefore, Henry baked 50 cookies last year.</answer>"))
50
>>> answer_items("x = 1 or x = -2")
['1', '-2']
>>> parse_gsm8k_gold("She makes 9 * 2 = $18 a day.\n#### 1,234")
'1234'
>>> parse_number("$1,234.50").value
Fraction(2469, 2)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
# Only this many characters at the end of a final-answer part are read: it bounds the time any string can take, and
# a real final answer sits at the end (a 1,536-token completion is ~6,000 characters).
MAX_PARSE_CHARS = 10_000


@dataclass(frozen=True)
class Parsed:
    """A completion split at its think block.

    ``think``: the text inside the think block (None when there is no think block; an unclosed block runs to the end).
    ``answer``: the text after the last ``</think>`` (the whole completion when there is no think block; "" while the
    block is still open). ``closed``: a ``</think>`` closed the block.
    """

    think: str | None
    answer: str
    closed: bool


def completion_text(completion) -> str:
    """The text of a completion given as a string or as a message list (the last message's content); a part or a
    content that is not text counts as no text."""
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        completion = [completion]
    if isinstance(completion, Sequence) and completion:
        content = completion[-1].get("content", "") if isinstance(completion[-1], dict) else completion[-1]
        if isinstance(content, list):  # multimodal parts: [{"type": "text", "text": ...}]
            return "".join(
                part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
            )
        return content if isinstance(content, str) else ""
    return ""


def prompt_opens_think(prompt: str | None) -> bool:
    """True when the prompt ends with ``<think>`` (whitespace aside): the completion then starts inside the block."""
    return bool(prompt) and prompt.rstrip().endswith(THINK_OPEN)


# A turn the model goes on to write itself, as base models under the R1-Zero template do ("... </answer>\nUser: next
# question. Assistant: <think> ..."): "User:" at the start of the completion or after white space or the end of a
# sentence or a tag. Glued to a word it is text ("wiki/index.php/User:Cyantist", 'the log reads "User: 5"').
_TURN_RE = re.compile(r"(?<![^\s.!?>])User:")
_ASSISTANT = "Assistant:"


def _after_a_break(text: str, start: int) -> bool:
    """True when ``text[start:]`` begins a line, or follows the end of a sentence or a tag (spaces aside)."""
    before = text[max(0, start - 64) : start].rstrip(" \t")
    return not before or before[-1] in "\n\r.!?>"


def cut_invented_turn(completion: str, prompt: str = "") -> str:
    """``completion`` up to the first turn the model invented itself (the whole text when there is none).

    A turn starts at "User:" (``_TURN_RE``) when an "Assistant:" follows it, or, outside the model's thinking, when
    it begins a line or follows the end of a sentence or a tag ("5.\nUser: thanks", "</answer> User: next"). Inside
    the thinking (which a prompt ending with ``<think>`` opens), and mid-sentence anywhere ("go to User:Azjps"), a
    "User:" without an "Assistant:" after it may be the question's own words, and is kept. Only the completion is
    read: the prompt's "User:" and "Assistant:" (and a question that contains them) are never looked at, except
    for the ``<think>`` at its end.

    >>> cut_invented_turn("2+3=5 </think> <answer>5</answer>\\nUser: and 2+4? Assistant: <think>", "... <think>")
    '2+3=5 </think> <answer>5</answer>\\n'
    """
    if not completion or "User:" not in completion:
        return completion or ""
    think_start, think_end = 0, 0  # the thinking: [think_start, think_end)
    first_close = completion.find(THINK_CLOSE)
    if prompt_opens_think(prompt):
        think_end = first_close if first_close != -1 else len(completion)
    else:
        opened = completion.find(THINK_OPEN)
        if opened != -1 and (first_close == -1 or opened < first_close):
            think_start, think_end = opened, first_close if first_close != -1 else len(completion)
        elif first_close != -1:
            think_end = first_close  # a lone </think>: the block opened at the start
    last_assistant = completion.rfind(_ASSISTANT)
    for match in _TURN_RE.finditer(completion):
        start = match.start()
        replied = last_assistant > start  # an "Assistant:" follows: a whole exchange made up
        if replied or (not think_start <= start < think_end and _after_a_break(completion, start)):
            return completion[:start].rstrip(" \t")
    return completion


def split_completion(completion: str, prompt: str = "") -> Parsed:
    """Split ``completion`` into its think part and its final-answer part.

    The completion is first cut at a turn the model invented itself (``cut_invented_turn``): what it says as a made-up
    user, or in its made-up reply, is neither thinking nor answer.

    - Prompt ending with ``<think>``: the completion starts inside the block, which ends at the last ``</think>``.
    - Otherwise, with a ``<think>`` in the completion: the block starts after the first ``<think>`` (text before it is
      neither thinking nor answer) and ends at the last ``</think>``.
    - Otherwise, with only a ``</think>``: the block is taken to have opened at the start (a prefilled prompt that the
      caller did not pass), so a number mentioned while thinking is still never read as the answer.
    - No tag at all: no think block; the whole completion is the answer.

    The answer is the text after the *last* ``</think>``, cut at any ``<think>`` reopened after it, so nothing said
    inside any think block can count as the final answer.
    """
    completion = cut_invented_turn(completion or "", prompt)
    if prompt_opens_think(prompt):
        start = 0
    else:
        opened = completion.find(THINK_OPEN)
        first_close = completion.find(THINK_CLOSE)
        if opened != -1 and (first_close == -1 or opened < first_close):
            start = opened + len(THINK_OPEN)
        elif first_close != -1:
            start = 0
        else:
            return Parsed(think=None, answer=completion, closed=False)
    close = completion.rfind(THINK_CLOSE)
    if close < start:
        return Parsed(think=completion[start:], answer="", closed=False)
    answer = completion[close + len(THINK_CLOSE) :]
    reopened = answer.find(THINK_OPEN)
    if reopened != -1:
        answer = answer[:reopened]
    return Parsed(think=completion[start:close], answer=answer, closed=True)


# ---------------------------------------------------------------------------------------------------------------------
# Unicode maths, as models write it


_UNICODE = str.maketrans(
    {
        "\u2212": "-",  # minus sign
        "\u2013": "-",  # en dash
        "\u00b0": "^\\circ",  # degree sign
        "\u00b2": "^2",
        "\u00b3": "^3",
        "\u00d7": "\\times ",
        "\u22c5": "\\cdot ",
        "\u00f7": "\\div ",
        "\u221a": "\\sqrt",
        "\u03c0": "\\pi ",
        "\u221e": "\\infty ",
        "\u2264": "\\le ",
        "\u2265": "\\ge ",
        "\u2260": "\\ne ",
        "\u00bd": "1/2",
        "\u00bc": "1/4",
        "\u00be": "3/4",
        "\u2009": "",  # thin space inside numbers
        "\u00a0": " ",
    }
)


_ASCII_RELATIONS_RE = re.compile(r"<=|>=|(?<![\d)!])!=")
# "\\left(\\frac{4}{5}" written with its backslashes escaped: a command, not a line break
_ESCAPED_COMMAND_RE = re.compile(
    r"\\\\(?=(?:left|right|[dt]?frac|sqrt|le|ge|leq|geq|ne|neq|cdot|times|pi|infty|text)\b)"
)


def normalize_unicode(text: str) -> str:
    """Unicode and ASCII maths as LaTeX: ``90°`` -> ``90^\\circ``, ``cm²`` -> ``cm^2``, ``−3`` -> ``-3``, ``π``,
    ``√``, ``×``, ``<=`` -> ``\\le``, ``x != 5`` -> ``x \\ne 5`` (not ``5!=120``); full-width digits -> ASCII."""
    text = _ESCAPED_COMMAND_RE.sub(r"\\", text.translate(_UNICODE))
    if "=" in text:
        text = _ASCII_RELATIONS_RE.sub(lambda m: {"<=": "\\le ", ">=": "\\ge "}.get(m.group(), "\\ne "), text)
    if any("\uff10" <= c <= "\uff19" for c in text):
        text = "".join(chr(ord(c) - 0xFEE0) if "\uff10" <= c <= "\uff19" else c for c in text)
    return text


# ---------------------------------------------------------------------------------------------------------------------
# Boxes


_BOXED_RE = re.compile(r"\\(?:boxed|fbox)\s*\{")
_BOXED_BARE_RE = re.compile(r"\\boxed +([^\s$\\{}]+)")
_BRACE_RE = re.compile(r"\\[{}]|[{}]")
# What may stand between two boxes of one final answer: "$\boxed{1}$ and $\boxed{-2}$", "k = \boxed{5} or k =
# \boxed{-3}", "\boxed{71} \boxed{72}".
_BOX_GAP_RE = re.compile(
    r"(?:[\s$,.;:]|\\[()\[\]])*"
    r"(?:(?:and|or|\\text\{\s*(?:and|or)\s*\}|\\quad|\\qquad|&|\\\\)(?:[\s$,.;:]|\\[()\[\]])*)*"
    r"(?:(?:\\[a-zA-Z]+|[a-zA-Z])(?:_\{?\w+\}?)?\s*=\s*)?(?:[\s$]|\\[(\[])*"
)


def boxed_spans(text: str) -> list[tuple[int, int, str]]:
    r"""Every complete ``\boxed{...}`` / ``\fbox{...}`` (and bare ``\boxed 5``) in ``text``: (start, end, content).

    Braces are matched in one pass (escaped ``\{`` and ``\}`` do not count), so the work is linear in the text; a box
    left unclosed (truncated) is skipped.
    """
    if not text or ("\\boxed" not in text and "\\fbox" not in text):
        return []
    closing: dict[int, int] = {}  # position of each "{" -> position of its "}"
    stack: list[int] = []
    for match in _BRACE_RE.finditer(text):
        if match.group() == "{":
            stack.append(match.start())
        elif match.group() == "}" and stack:
            closing[stack.pop()] = match.start()
    spans = []
    for match in _BOXED_RE.finditer(text):
        end = closing.get(match.end() - 1)
        if end is not None:
            spans.append((match.start(), end + 1, text[match.end() : end]))
    spans += [(m.start(), m.end(), m.group(1)) for m in _BOXED_BARE_RE.finditer(text)]
    return sorted(spans)


def final_boxed_group(text: str) -> list[tuple[int, int, str]]:
    r"""The boxes of the final answer: the last box and the boxes just before it that list more answers with it
    ("$\boxed{1}$ and $\boxed{-2}$"); an earlier box separated by other text is an intermediate result."""
    spans = boxed_spans(text)
    if not spans:
        return []
    group = [spans[-1]]
    for span in reversed(spans[:-1]):
        if not _BOX_GAP_RE.fullmatch(text, span[1], group[0][0]):
            break
        group.insert(0, span)
    return group


def answer_key(text: str) -> str:
    """A light normal form for telling two written answers apart without sympy: the exact number when the text is a
    plain number, else the text without spaces and with LaTeX spelling variants merged (``\\dfrac``, ``\\frac32``)."""
    number = parse_number(text)
    if number is not None:
        return f"{number.value}{'%' if number.percent else ''}"
    return _squash(text)


def _squash(text: str) -> str:
    text = "".join(text.split()).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    text = re.sub(r"\\(frac|sqrt)(\d)(\d)?", lambda m: f"\\{m[1]}{{{m[2]}}}" + (f"{{{m[3]}}}" if m[3] else ""), text)
    return re.sub(r"\\[,;:! ]|\\left|\\right", "", text)


def _join_distinct(contents: list[str]) -> str:
    distinct = list({answer_key(c): c.strip() for c in contents if c.strip()}.values())
    return ", ".join(distinct)


def gold_from_solution(solution: str, strict: bool = True) -> str | None:
    r"""The gold final answer of a worked solution: the number after ``####`` (GSM8K), else its final group of boxed
    answers (several roots boxed one by one, "$\boxed{-2}$ and $\boxed{1}$", give "-2, 1"); None without either.

    ``strict``: also None when an earlier box holds an answer that is neither one of the final ones nor the same
    value (a box used as notation, an alternative answer added after the main one): in a dataset such golds are wrong
    as often as right, so the loader leaves them out.
    """
    if "####" in solution:
        return parse_gsm8k_gold(solution)
    group = final_boxed_group(solution)
    if not group:
        return None
    final = {answer_key(content) for _, _, content in group}
    earlier = {answer_key(content) for _, _, content in boxed_spans(solution)[: -len(group)]}
    if strict and earlier - final:
        return None
    return _join_distinct([content for _, _, content in group]) or None


# ---------------------------------------------------------------------------------------------------------------------
# Finding the final answer in text


# A number as people and models write it: sign, currency, thousands commas, decimals, a fraction, a percent sign.
_NUMBER = r"""
    (?<![\w.^_])(?<!(?<!\#)\#)                    # not the tail of a word, a number, an exponent, a subscript or #12
    [-+]?\s?                                     # sign
    (?:\\?[$\u20ac\u00a3\u00a5]\s?)?             # currency ($, \$, euro, pound, yen)
    -?
    (?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?         # 1,234,567 or 1234 with decimals
    (?:\s?/\s?\d+(?:\.\d+)?)?                    # a fraction 3/4
    (?:\s?\\?%)?                                 # percent
    |
    (?<![\w.^_])[-+]?\.\d+(?:\s?\\?%)?           # .5
"""
_NUMBER_RE = re.compile(_NUMBER, re.VERBOSE)
_DELIMITED_MATH_RE = re.compile(r"\$\$(.+?)\$\$|\\\((.+?)\\\)|\\\[(.+?)\\\]", re.DOTALL)
_DOLLAR_RE = re.compile(r"(?<!\\)\$")
_LATEX_INSIDE_RE = re.compile(r"\\[a-zA-Z]|[\^_{}]")


def _math_spans(text: str) -> list[tuple[int, int, str]]:
    """Math spans: ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``, and ``$...$`` when pandoc's rule says maths (no space
    inside either dollar, no digit after the closing one) or LaTeX is inside, so "costs $5 and $10" holds none."""
    spans = [(m.start(), m.end(), next(g for g in m.groups() if g)) for m in _DELIMITED_MATH_RE.finditer(text)]
    taken = [(s, e) for s, e, _ in spans]
    dollars = [m.start() for m in _DOLLAR_RE.finditer(text) if not any(s <= m.start() < e for s, e in taken)]
    i = 0
    while i + 1 < len(dollars):
        start, end = dollars[i], dollars[i + 1]
        inner = text[start + 1 : end]
        pandoc = inner and not inner[0].isspace() and not inner[-1].isspace() and not text[end + 1 : end + 2].isdigit()
        if inner.strip() and (pandoc or _LATEX_INSIDE_RE.search(inner)):
            spans.append((start, end + 1, inner.strip()))
            i += 2
        else:
            i += 1
    return sorted(spans)


# What separates candidates listed together: "17 or 18", "12, 13, 14", "x = 2 or x = 3", "$x=1$ and $x=-2$".
_CANDIDATE_SEP_RE = re.compile(
    r"[\s$]*(?:,[\s$]*(?:(?:or|and)\s+)?|\s(?:or|and)\s|;|\||&|\\\\|\\text\{\s*(?:or|and)\s*\}|\\(?:lor|vee)\b)"
    r"[\s$]*(?:(?:\\[a-zA-Z]+|[a-zA-Z])(?:_\{?\w+\}?)?\s*=\s*)?[\s$]*"
)
_ANSWER_TAG_RE = re.compile(r"<answer>(.*?)(?:</answer>|$)", re.DOTALL)
# "Answer:", "The final answer is", "Final answer:" before the answer itself
_LABEL_RE = re.compile(r"^\s*(?:(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\s*[:=]?|so\b|thus\b|therefore\b)\s*", re.I)
_WORD_RE = re.compile(r"(?<![\\a-zA-Z])[a-zA-Z]{2,}")
_LATEX_TEXT_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm|operatorname|begin|end)\s*\{[^{}]*\}")
_CONNECTIVES = {"or", "and", "either"}
# A unit with an exponent after a number ("15 cm^2"): not the answer itself
_UNIT_POWER_RE = re.compile(r"^[a-zA-Z]{1,3}\^\{?\d\}?$")
_EXPRESSION_CHARS = set("^_{}\\*/!=()[]")
_MAX_TOKEN = 200


def _token_around(text: str, match: re.Match) -> tuple[int, int, str]:
    """The token holding a number (up to white space or a tag's ``<``/``>``), without the punctuation that ends a
    sentence around it."""
    start, end = match.start() + len(match.group()) - len(match.group().lstrip()), match.end()
    while (
        start > 0
        and not text[start - 1].isspace()
        and text[start - 1] not in "<>"
        and match.end() - start < _MAX_TOKEN
    ):
        start -= 1
    while end < len(text) and not text[end].isspace() and text[end] not in "<>" and end - match.start() < _MAX_TOKEN:
        end += 1
    token = text[start:end]
    stripped = token.rstrip(".,;:!?")
    while stripped.endswith(")") and stripped.count(")") > stripped.count("("):
        stripped = stripped[:-1]
    lead = len(stripped) - len(stripped.lstrip("(["))
    if lead and stripped.count("(") + stripped.count("[") > stripped.count(")") + stripped.count("]"):
        stripped = stripped[lead:]
        start += lead
    return start, start + len(stripped), stripped


def _elements(text: str) -> list[tuple[int, int, str]]:
    """The answer-like elements of a text, in order: math spans (their content) and numbers outside them, each number
    read with the expression it is written in (``2^{10}``, ``\\frac{1}{0}``, ``12-7=5``)."""
    spans = _math_spans(text)
    elements = list(spans)
    inside = iter(spans)
    current = next(inside, None)
    seen_tokens: set[tuple[int, int]] = set()
    for match in _NUMBER_RE.finditer(text):
        while current is not None and current[1] <= match.start():
            current = next(inside, None)
        if current is not None and current[0] <= match.start() < current[1]:
            continue  # part of a math span
        start, end, token = _token_around(text, match)
        number = match.group().strip()
        if token.startswith("(") and token.endswith(")") and parse_number(token[1:-1]) is not None:
            token, start, end = token[1:-1], start + 1, end - 1  # "(18)"
        if any(c in _EXPRESSION_CHARS for c in token):
            if (start, end) in seen_tokens:
                continue
            seen_tokens.add((start, end))
            elements.append((start, end, token))
        elif parse_number(token) is not None:
            elements.append((start, end, token))
        else:
            elements.append((match.start(), match.end(), number))
    return sorted(elements)


def final_statement(text: str) -> str | None:
    """What a sentence or an equation chain states as its answer: its last element (a math span, or a number with
    the expression around it), together with candidates listed just before it ("17 or 18"); None without one."""
    elements = _elements(text)
    while elements and _UNIT_POWER_RE.match(elements[-1][2]) and len(elements) > 1:
        elements.pop()
    if not elements:
        return None
    first = len(elements) - 1
    while first > 0 and _CANDIDATE_SEP_RE.fullmatch(text, elements[first - 1][1], elements[first][0]):
        first -= 1
    if first == len(elements) - 1:
        return elements[-1][2].strip()
    return _strip_dollars(text[elements[first][0] : elements[-1][1]])


def _strip_dollars(text: str) -> str:
    return re.sub(r"(?<!\\)\$(?=\S)|(?<=\S)(?<!\\)\$", "", text).strip()


def _is_prose(span: str) -> bool:
    """A span with words in it (beyond single-letter variables, "or"/"and" and LaTeX commands): a sentence."""
    for start, end, _ in reversed(_math_spans(span)):
        span = span[:start] + " " + span[end:]
    bare = _LATEX_TEXT_RE.sub(" ", span)
    return any(word.lower() not in _CONNECTIVES for word in _WORD_RE.findall(bare))


def last_answer_tag(answer_text: str) -> str | None:
    """The content of the last ``<answer>`` span of ``answer_text`` (a last tag left unclosed runs to the end),
    stripped; None without one. Only the last ``MAX_PARSE_CHARS`` characters are read."""
    if not answer_text or ANSWER_OPEN not in answer_text:
        return None
    tagged = _ANSWER_TAG_RE.findall(answer_text[-MAX_PARSE_CHARS:])
    return tagged[-1].strip() if tagged else None


def extract_answer(answer_text: str) -> str | None:
    r"""The final-answer span of the text after the think block (see the module docstring); None when there is
    nothing answer-like. Only the last ``MAX_PARSE_CHARS`` characters are read."""
    if not answer_text:
        return None
    text = normalize_unicode(answer_text[-MAX_PARSE_CHARS:])
    tagged = _ANSWER_TAG_RE.findall(text)
    if tagged:
        span = tagged[-1].strip()
        group = final_boxed_group(span)
        if group:
            return _join_distinct([content for _, _, content in group]) or None
        if not span or parse_number(span) is not None or not _is_prose(span):
            return span or None
        labelled = _LABEL_RE.sub("", span)
        if parse_number(labelled) is not None or not _is_prose(labelled):
            return labelled.strip() or None
        return final_statement(labelled)
    group = final_boxed_group(text)
    if group:
        return _join_distinct([content for _, _, content in group]) or None
    return final_statement(text)


# ---------------------------------------------------------------------------------------------------------------------
# The answers a span gives


_SPLIT = (  # where one answer ends and the next begins (a comma that is not a thousands separator)
    r"\s+or\s+|\s+and\s+|\\text\{\s*(?:or|and)\s*\}|\\(?:lor|vee)\b|;|&|\\\\|(?<=\d)\s*\|\s*(?=[-\d])|"
    r",(?!\s*(?:\\[!,;: ]\s*)*\d{3}(?!\d))(?!(?:\s*\\[!,;: ])+\s*\d{3}(?!\d))"
)
_SYMBOL = r"(?:\\[a-zA-Z]+|[a-zA-Z])(?:_\{?\w+\}?)?'*"
_ASSIGNED_RE = re.compile(  # what an answer is assigned to: "x", "\theta", "a_1", "f(3)", "a+b+c", "(x, y)"
    rf"{_SYMBOL}(?:\([^()=]*\))?(?:\s*(?:[+*-]|\\cdot)\s*{_SYMBOL}(?:\([^()=]*\))?)*"
    rf"|\(\s*{_SYMBOL}(?:\s*,\s*{_SYMBOL})+\s*\)"
)
_SPACING_RE = re.compile(r"^(?:\s|\\(?:quad|qquad|[,;:! ]))+|(?:\s|\\(?:quad|qquad|[,;:! ]))+$")
_ARITHMETIC_RE = re.compile(r"(?:[\d\s.,+\-*/()^{}$%]|\\(?:frac|dfrac|tfrac|cdot|times|div|sqrt|left|right|pi|\$))+")
CONTRADICTION = "\x00"  # answer_items marks an equation between two different numbers ("71 = 72") with this item


def _top_level_parts(text: str, separator: str) -> list[str]:
    """``text`` split at the matches of the ``separator`` regex that stand outside every bracket and
    ``\\begin...\\end`` block; one pass, so linear in the text."""
    tokens = re.compile(rf"(\\begin\b|\\\{{|[(\[{{])|(\\end\b|\\\}}|[)\]}}])|{separator}")
    depth, start, parts = 0, 0, []
    for match in tokens.finditer(text):
        if match.group(1):
            depth += 1
        elif match.group(2):
            depth = max(depth - 1, 0)
        elif depth == 0:
            parts.append(text[start : match.start()])
            start = match.end()
    parts.append(text[start:])
    return parts


def answer_items(span: str, equations: bool = False) -> list[str]:
    """The answers a span gives, each stripped of what it is assigned to.

    Split at top-level "or", "and", commas (not thousands separators), ";", "&", ``\\\\`` and "|" between numbers:
    ``"x = 1 or x = -2"`` -> ``["1", "-2"]``, ``"(3, -5)"`` -> ``["(3, -5)"]``. Unless ``equations`` (the gold
    answer is itself an equation), an equation's value is its right side when the left side names what is asked for
    (``x = 5``, ``a+b+c = 161``) or is arithmetic (``12 - 7 = 5``); an equation in the unknowns (``2x - y = 0``) is
    kept whole, and one between two different plain numbers (``71 = 72``) becomes ``CONTRADICTION``.
    """
    span = re.sub(r"^\s*either\s+", "", span, flags=re.I)
    items = []
    for part in _top_level_parts(span, _SPLIT):
        item = _SPACING_RE.sub("", part).strip().strip("$").strip()
        if not item:
            continue
        if "=" in item and not equations:
            item = _equation_value(item)
        items.append(item)
    return items


def _equation_value(item: str) -> str:
    sides = [side.strip() for side in _top_level_parts(item, r"(?<![<>!\\])=(?!=)")]
    value = sides[-1]
    if len(sides) < 2 or not value:
        return item
    number = parse_number(value)
    for side in sides[:-1]:
        left = parse_number(side)
        if left is not None and number is not None and left.value != number.value:
            return CONTRADICTION
        if not (_ASSIGNED_RE.fullmatch(side) or _ARITHMETIC_RE.fullmatch(side)):
            return item  # an equation in the unknowns is its own answer
    return value


def parse_gsm8k_gold(solution: str) -> str:
    """The final answer of a GSM8K solution: the text after the last ``####``, thousands commas removed.

    Raises ValueError when there is no ``####``.
    """
    head, sep, tail = solution.rpartition("####")
    if not sep:
        raise ValueError(f"GSM8K solution has no '####' final answer: {solution[-80:]!r}")
    return tail.strip().replace(",", "")


# ---------------------------------------------------------------------------------------------------------------------
# Plain numbers: the fast path that needs no sympy. GSM8K and the miniature answer almost only with these.

_LATEX_NOISE_RE = re.compile(r"\\[,!;: ]|\\(?:left|right)\b|\\displaystyle|~")
_TEXT_WRAP_RE = re.compile(r"\\(?:text|textbf|mathrm|mbox|textrm)\s*\{([^{}]*)\}")
_FRAC_RE = re.compile(  # \frac{3}{4}, \frac 34, and mixed numbers as math-verify reads them: 15\frac{39}{40}
    r"^([-+]?)(\d+)?\s*\\[dt]?frac\s*(?:\{\s*([-+]?\d+)\s*\}\s*\{\s*(\d+)\s*\}|(\d)\s*(\d))$"
)
# Up to three trailing unit words after a space ("5 cm", "12 dollars", "3 sq ft"), never a maths word ("5 pi").
_UNITS_RE = re.compile(
    r"(?:\s+(?!(?:pi|sqrt|infty|inf|ln|log|sin|cos|tan|exp|and|or|to|plus|minus)\b)"
    r"[a-zA-Z\u00b0][a-zA-Z\u00b0.]+(?:\^\{?\d\}?)?){1,3}$"
)
_PLAIN_RE = re.compile(
    r"^([-+]?)(?:\\?[$\u20ac\u00a3\u00a5])?([-+]?)((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?|\.\d+)"
    r"(?:/((?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?))?(\\?%)?$"
)


@dataclass(frozen=True)
class Number:
    """An exact number read from text; ``percent`` when it was written with a percent sign."""

    value: Fraction
    percent: bool = False


def _clean(text: str) -> str:
    text = normalize_unicode(text).strip().strip("$").strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right):
            text = text[2:-2].strip()
    text = _TEXT_WRAP_RE.sub(r" \1", text)
    text = re.sub(r",\s*(?:\\[!,;: ]\s*)+(?=\d{3})", ",", text)  # LaTeX thousands: 11,\! 111, \! 100
    text = _LATEX_NOISE_RE.sub("", text).replace("{,}", ",")
    text = re.sub(r"\^\s*\{?\s*\\circ\s*\}?", "", text)  # degrees
    return text.strip().rstrip(".\\").strip()


# 6.5e-2, 6.5 \times 10^{-2}, 1\cdot 10^5: scientific notation, exact
_SCIENTIFIC_RE = re.compile(
    r"^([-+]?\d+(?:\.\d+)?)\s*(?:[eE]|(?:\\times|\\cdot|\*|x)\s*10\s*\^)\s*\{?\s*([-+]?\d{1,3})\s*\}?$"
)


def parse_number(text: str | None) -> Number | None:
    r"""Read ``text`` as one plain number, exactly; None when it is anything else.

    Accepts signs, currency symbols, thousands commas, decimals, ``a/b`` and ``\frac{a}{b}`` (``\frac 34``), a
    percent sign, a few trailing unit words (``"5 cm"``, ``"12 dollars"``, ``"15 cm²"``) and light LaTeX (``\$``,
    ``\%``, ``\text{}``, ``{,}``, ``\!``, degrees). Expressions (``2+3``, ``\sqrt{2}``, ``x=4``) are not plain numbers.

    >>> parse_number("-1,234.5")
    Number(value=Fraction(-2469, 2), percent=False)
    >>> parse_number(r"\frac{3}{4}").value
    Fraction(3, 4)
    >>> parse_number("2+3") is None
    True
    """
    if not text or len(text) > 100:
        return None
    text = _clean(text)
    frac = _FRAC_RE.match(text)
    if frac:
        sign, whole, num, den = frac.group(1), frac.group(2), frac.group(3) or frac.group(5), frac.group(4, 6)
        den = den[0] or den[1]
        if int(den) == 0:
            return None
        value = int(whole or 0) + Fraction(int(num), int(den))
        return Number(-value if sign == "-" else value)
    match = _PLAIN_RE.match(text) or _PLAIN_RE.match(_UNITS_RE.sub("", text).strip())
    if not match:
        scientific = _SCIENTIFIC_RE.match(text)
        if scientific is None:
            return None
        return Number(Fraction(scientific.group(1)) * Fraction(10) ** int(scientific.group(2)))
    sign1, sign2, whole, denominator, percent = match.groups()
    if whole.endswith("."):
        whole = whole[:-1]
    value = Fraction(whole.replace(",", ""))
    if denominator is not None:
        den = Fraction(denominator.replace(",", ""))
        if den == 0:
            return None
        value /= den
    if (sign1 == "-") != (sign2 == "-"):
        value = -value
    return Number(value, percent=percent is not None)


def numbers_equal(gold: Number, pred: Number) -> bool:
    """Exact comparison; a percent on one side only also matches its hundredth (``45%`` vs ``0.45``) or the bare
    value (``45%`` vs ``45``), as math-verify does."""
    if gold.value == pred.value:
        return True
    if gold.percent != pred.percent:
        scaled = pred.value / 100 if pred.percent else gold.value / 100
        other = gold.value if pred.percent else pred.value
        return scaled == other
    return False
