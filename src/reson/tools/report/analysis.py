"""The aha steps of a run, and the canaries the report's timeline follows.

The aha steps:

- *think*: the first canary step where more than half the canary completions have a closed, non-empty think block.
- *self-correction take-off*: the first canary step where the self-correction rate among thinking completions
  (``emergence/self_correction_rate_among_thinking``) is at least twice its first value and at least 10 %. Its first
  value is the rate at the first canary step where a completion thinks; steps where none does have no rate (without
  emergence.jsonl, the steps logged with think usage 0 are passed over likewise). The plain rate is not used: it rises
  with think usage alone.
- *repaired slip*: the first canary step where a right answer's thinking holds a self-correction phrase
  (`reson.core.metrics.has_self_correction`). Oat-Zero's caution applies: a reflection keyword alone proves little,
  so the page shows that completion, the phrase highlighted, to read.

The timeline follows the canaries that show the change rather than the first few: the first canary to think (close
a think block), the first to self-correct (at the first step where any completion's thinking holds a
self-correction phrase: a right one first, then one that closed its block), and, in Countdown runs, the first to
reject a candidate and then succeed (its thinking checked a candidate, found it wrong, went on, and the answer is
right: `reson.core.countdown.search_measures`, counted on expressions, not words), each with why it was picked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from reson.core.metrics import self_correction_phrases
from reson.core.parsing import split_completion
from reson.tools.report.plots import Marker, Series
from reson.tools.report.runs import Run

THINK_AHA_SHARE = 0.5  # think usage must pass this share of the canary completions
TAKEOFF_FACTOR = 2.0  # the self-correction take-off: at least this times the first rate among thinking completions,
TAKEOFF_MIN = 0.10  # and at least this share
AMONG_THINKING = "emergence/self_correction_rate_among_thinking"


@dataclass(frozen=True)
class Pick:
    """A canary the timeline follows, and why."""

    canary: object  # its `canary` index (or `id`) in emergence.jsonl
    step: int  # where it first showed what it was picked for
    tag: str  # a few words, on each of its completions
    why: str


def takeoff_step(rates: Series) -> int | None:
    """The first step whose rate is at least `TAKEOFF_FACTOR` times the first one and at least `TAKEOFF_MIN`.
    `rates`: the self-correction rate among thinking completions at the canary steps where some completion thinks."""
    if not rates:
        return None
    first = rates[min(rates)]
    threshold = max(TAKEOFF_FACTOR * first, TAKEOFF_MIN)
    return next((step for step, rate in sorted(rates.items()) if rate >= threshold), None)


def _first(
    canaries: dict[int, list[dict]], test: Callable[[dict], bool], rank: Callable[[dict], tuple] | None = None
) -> tuple[int, dict] | None:
    """The first step with a row passing `test`, and that row (the first of the best by `rank`)."""
    for step, rows in canaries.items():
        found = [row for row in rows if test(row)]
        if found:
            return step, max(found, key=rank) if rank else found[0]
    return None


def repaired_slip(canaries: dict[int, list[dict]]) -> tuple[int, dict] | None:
    """The first right canary completion whose thinking holds a self-correction phrase, and its step."""
    return _first(canaries, lambda row: bool(row["self_correction"]) and row.get("accuracy") == 1.0)


def aha_steps(run: Run) -> dict[str, int | None]:
    """The run's aha steps (module docstring): `think`, `takeoff` and `repaired_slip`. From emergence.jsonl when
    present, else from the logged emergence metrics."""
    if run.canaries:
        think = next(
            (
                step
                for step, rows in run.canaries.items()
                if sum(bool(row["think_used"]) for row in rows) > THINK_AHA_SHARE * len(rows)
            ),
            None,
        )
        slip = repaired_slip(run.canaries)
        slip_step = slip[0] if slip else None
    else:
        usage = run.series.get("emergence/think_usage", {})
        think = next((step for step, share in usage.items() if share > THINK_AHA_SHARE), None)
        rate = run.series.get("emergence/self_correction_rate_correct", {})
        slip_step = next((step for step, value in rate.items() if value > 0), None)
    rates = run.series.get(AMONG_THINKING, {})  # only where some completion thinks (`drop_without_thinking`)
    return {"think": think, "takeoff": takeoff_step(rates), "repaired_slip": slip_step}


def _phrase(text: str | None) -> str:
    """The first self-correction phrase in `text` ('' when none)."""
    found = self_correction_phrases(text)
    return found[0].group(0) if found else ""


def _verdict(row: dict) -> str:
    return {1.0: "right", 0.0: "wrong"}.get(row.get("accuracy"), "ungraded")


def pick_canaries(canaries: dict[int, list[dict]]) -> list[Pick]:
    """The canaries that show the change (module docstring): the first to think, the first to self-correct and, in
    Countdown runs, the first to reject a candidate and then succeed, each with why; one pick per canary (its tags
    joined), none before any completion shows one of them."""
    picks: list[Pick] = []

    def add(found: tuple[int, dict] | None, tag: str, why) -> None:
        """Pick the canary of `found` (step, row) with `tag` and `why(step, row)`, or join them to its earlier pick."""
        if not found:
            return
        step, row = found
        reason = why(step, row)
        same = next((i for i, pick in enumerate(picks) if pick.canary == row["canary"]), None)
        if same is None:
            picks.append(Pick(row["canary"], step, tag, reason))
        else:
            first = picks[same]
            picks[same] = Pick(first.canary, first.step, f"{first.tag}, then {tag[6:]}", f"{first.why}; {reason}")

    def self_correction(step: int, row: dict) -> str:
        think = split_completion(str(row.get("completion", "")), str(row.get("prompt", ""))).think
        return f"the first to self-correct: “{_phrase(think)}” in its thinking at step {step}, answer {_verdict(row)}"

    add(
        _first(canaries, lambda row: bool(row["think_used"])),
        "first to think",
        lambda step, row: f"the first to close a think block, at step {step}",
    )
    add(
        _first(
            canaries,
            lambda row: bool(row["self_correction"]),
            rank=lambda row: (row.get("accuracy") == 1.0, bool(row["think_used"])),
        ),
        "first to self-correct",
        self_correction,
    )
    add(
        _first(canaries, lambda row: (row.get("rejections") or 0) > 0 and row.get("accuracy") == 1.0),
        "first to reject a candidate and then succeed",
        lambda step, row: (
            f"the first to reject a candidate and then succeed: {row['rejections']} candidate(s) "
            f"checked, found wrong and left before a right answer, at step {step}"
        ),
    )
    return picks


def markers(aha: dict[str, int | None]) -> list[Marker]:
    """The aha steps drawn on the emergence plots."""
    drawn = [
        ("think", f"think usage passes {100 * THINK_AHA_SHARE:g} %", "--"),
        ("takeoff", "self-correction takes off", ":"),
    ]
    return [Marker(aha[key], label, style) for key, label, style in drawn if aha[key] is not None]
