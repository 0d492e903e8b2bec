"""The miniature's two tasks: the problems each trains and is evaluated on, its GRPO recipe and its base model.

- **arithmetic** (the default): synthetic arithmetic word problems; the base model has a latent worked-solution skill
  that GRPO brings out under the R1-Zero template (`reson.miniature.corpus`).
- **countdown**: small Countdown, the search task, where a candidate is easy to check and hard to find; the base model
  mostly guesses under the R1-Zero template and searches under another (`reson.miniature.search_corpus`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

PACKAGE_DIR = Path(__file__).parent
# the search task's rows of the before/after table (reson.core.metrics), after the common ones
SEARCH_ROWS = (
    "avg_candidates",
    "rejection_rate_among_thinking",
    "reject_then_right_rate",
    "retry_after_wrong",
    "retry_after_right",
    "accuracy_when_rejecting",
)


@dataclass(frozen=True)
class Task:
    """A miniature task: `dataset` (train split for GRPO, test split held out), `recipe` (shipped in reson/configs),
    `max_completion_length` (the evaluations' and the probe's), `base_settings` (BaseModelConfig fields over the
    defaults), where its base model ships, the table rows it adds, and the tag its folders carry."""

    name: str
    dataset: str
    recipe: str
    max_completion_length: int
    shipped_dir: Path
    base_settings: dict = field(default_factory=dict)
    rows: tuple[str, ...] = ()
    folder: str = ""  # inserted in folder names ("base-countdown-seed0"); the arithmetic task keeps the plain ones

    def held_out_rows(self, n: int) -> list[dict]:
        """The task's `n` held-out problems: the first `n` of its test split's seeded permutation (seed 0)."""
        from reson.core.data import load_problems, sample_rows

        return sample_rows(load_problems(self.dataset, "test"), n, seed=0)


TASKS = {
    "arithmetic": Task("arithmetic", "synthetic", "grpo_cpu_tiny", 64, PACKAGE_DIR / "base_model"),
    "countdown": Task(
        "countdown",
        "tiny_countdown",
        "grpo_cpu_tiny_countdown",
        192,  # room for a search of seven candidates (~24 tokens each) and the answer
        PACKAGE_DIR / "base_model_countdown",
        {"task": "countdown", "num_texts": 144_000, "drill_share": 0.2, "tag_share": 0.3, "search_share": 0.25},
        SEARCH_ROWS,
        "countdown-",
    ),
}
