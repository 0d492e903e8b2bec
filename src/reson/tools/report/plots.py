"""The training curves of one or more runs, drawn with matplotlib's Agg canvas (no display, no pyplot state) and saved
as a 2x-resolution PNG and an SVG.

Each `Plot` names the logged metric keys it draws, so the report, its table and the README's metric list speak of the
same keys. A plot whose keys were never logged is left out rather than drawn empty. How the axes read:

- Shares (`SHARE_KEYS`, logged as fractions) are drawn and tabled in percent, on a fixed 0-100 % axis: a 3 % rate or
  one clipped completion looks as small as it is.
- Counts, lengths, norms and rewards start at 0; a reward axis ends at what the reward can reach (`REWARD_RANGE`),
  and the reward's mean ± std band is clipped to the range the run's rewards can take.
- Every line of a panel has its own line style and marker (markers staggered, later lines drawn over earlier ones with
  smaller markers), so lines that coincide stay visible. Several runs are overlaid with one colour per run.
- A canary point averaged over some of the completions (the thinking ones) carries its count, ``n=``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from reson.core import folders

Series = dict[int, float]  # step -> value

# Keys logged as fractions in [0, 1] that are shares of completions or tokens: shown as percent everywhere.
SHARE_KEYS = frozenset(
    {
        "completions/clipped_ratio",
        "completions/truncated_ratio",
        "frac_reward_zero_std",
        "clip_ratio/low_mean",
        "clip_ratio/low_min",
        "clip_ratio/high_mean",
        "clip_ratio/high_max",
        "clip_ratio/region_mean",
        "cispo_clip_ratio",
        "emergence/canary_accuracy",
        "emergence/think_usage",
        "emergence/format_compliance",
        "emergence/self_correction_rate",
        "emergence/self_correction_rate_among_thinking",
        "emergence/self_correction_rate_correct",
        "emergence/rejection_rate",
        "emergence/verified_rate",
        "emergence/rejection_rate_among_thinking",
        "emergence/reject_then_right_rate",
    }
)
REWARD_RANGE = (0.0, 1.0)  # what one reward of reson.core.rewards.REWARDS can score

PERCENT_AXIS = (0.0, 100.0)
FROM_ZERO = (0.0, None)
FREE = (None, None)

BASE_DPI = 100  # the figure's size in inches times this is its size on the page, in CSS pixels
PNG_SCALE = 2  # the PNG holds this many pixels per CSS pixel
PANEL_SIZE = (6.4, 4.4)  # inches per panel: the plot, and its legend below it
# (line style, marker) of the first, second, ... line of a panel
STYLES = (("-", "o"), ("--", "s"), (":", "^"), ("-.", "D"))
THINKING_COUNT = "n = thinking completions behind the point"
MARKERS_PER_LINE = 12  # markers drawn along a long line (all of them on a short one)


def is_percent(key: str) -> bool:
    """Whether metric `key` is shown in percent."""
    return key in SHARE_KEYS


def shown(key: str, value: float) -> float:
    """`value` of metric `key` in the unit the report shows it in: shares as percent."""
    return 100.0 * value if key in SHARE_KEYS else value


@dataclass(frozen=True)
class Panel:
    ylabel: str
    keys: tuple[str, ...]  # one line per key present in the logs
    ylim: tuple[float | None, float | None] = FROM_ZERO  # fixed bottom and top of the y axis (None: fit the data)
    band: tuple[str, str] | None = None  # (mean key, std key): a shaded mean ± std band
    emergence: bool = False  # mark the aha steps on this panel
    count_note: str | None = None  # what the ``n=`` on its counted points counts (legend title)


@dataclass(frozen=True)
class Plot:
    name: str  # file stem: <name>.png and <name>.svg
    title: str
    panels: tuple[Panel, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(key for panel in self.panels for key in panel.keys))


PLOTS = (
    Plot(
        "reward",
        "Reward: mean and std over each step's completions",
        (Panel("reward", ("reward",), band=("reward", "reward_std")),),
    ),
    Plot(
        "rewards",
        "Accuracy and format rewards",
        (Panel("mean reward", ("rewards/accuracy/mean", "rewards/format/mean"), ylim=REWARD_RANGE),),
    ),
    Plot(
        "completions",
        "Completion length, and the share cut at max_completion_length",
        (
            Panel("tokens", ("completions/mean_length", "completions/mean_terminated_length")),
            Panel("% of completions", ("completions/truncated_ratio", "completions/clipped_ratio"), ylim=PERCENT_AXIS),
        ),
    ),
    Plot(
        "think_usage",
        "Canary prompts: completions with a closed, non-empty <think> block",
        (Panel("% of canary completions", ("emergence/think_usage",), ylim=PERCENT_AXIS, emergence=True),),
    ),
    Plot(
        "canary_accuracy",
        "Canary prompts: accuracy and format",
        (
            Panel(
                "% of canary completions",
                ("emergence/canary_accuracy", "emergence/format_compliance"),
                ylim=PERCENT_AXIS,
                emergence=True,
            ),
        ),
    ),
    Plot(
        "think_tokens",
        "Canary prompts: tokens inside <think>",
        (Panel("tokens", ("emergence/avg_think_tokens",), emergence=True, count_note=THINKING_COUNT),),
    ),
    Plot(
        "self_correction",
        "Canary prompts: self-correction",
        (
            Panel(
                "% of completions",
                (
                    "emergence/self_correction_rate_among_thinking",
                    "emergence/self_correction_rate",
                    "emergence/self_correction_rate_correct",
                ),
                ylim=PERCENT_AXIS,
                emergence=True,
                count_note=THINKING_COUNT,
            ),
        ),
    ),
    Plot(
        "search",
        "Countdown canaries: search and checking, counted on the expressions the thinking writes",
        (
            Panel("candidates", ("emergence/avg_candidates",), emergence=True),
            Panel(
                "% of canary completions",
                (
                    "emergence/rejection_rate_among_thinking",
                    "emergence/rejection_rate",
                    "emergence/reject_then_right_rate",
                    "emergence/verified_rate",
                ),
                ylim=PERCENT_AXIS,
                emergence=True,
                count_note=THINKING_COUNT,
            ),
        ),
    ),
    Plot("grad_norm", "Gradient norm", (Panel("grad norm", ("grad_norm",)),)),
    Plot("loss", "Loss", (Panel("loss", ("loss",), ylim=FREE),)),
    Plot(
        "importance_sampling",
        "vLLM sampling: importance sampling ratio (1: on-policy)",
        (Panel("ratio", ("sampling/importance_sampling_ratio/mean",)),),
    ),
)

LABELS = {
    "reward": "reward (mean ± std)",
    "rewards/accuracy/mean": "accuracy reward",
    "rewards/format/mean": "format reward",
    "completions/mean_length": "mean length",
    "completions/mean_terminated_length": "mean length, of those that ended with EOS",
    "completions/truncated_ratio": "truncated: cut at max_completion_length",
    "completions/clipped_ratio": "no EOS: truncated, or stopped at </answer> (TRL's clipped_ratio)",
    "emergence/think_usage": "think usage",
    "emergence/canary_accuracy": "accuracy",
    "emergence/format_compliance": "format reward 1.0",
    "emergence/avg_think_tokens": "think tokens (mean over thinking completions)",
    "emergence/self_correction_rate_among_thinking": "self-correcting, of the thinking ones (the habit)",
    "emergence/self_correction_rate": "self-correcting, of all (rises with think usage alone)",
    "emergence/self_correction_rate_correct": "self-correcting and right, of all",
    "sampling/importance_sampling_ratio/mean": "mean ratio",
    "emergence/avg_candidates": "candidate expressions tried (mean)",
    "emergence/rejection_rate": "rejected a candidate, its value checked, and went on",
    "emergence/verified_rate": "final answer verified in the thinking",
    "emergence/rejection_rate_among_thinking": "rejected a candidate and went on, of the thinking ones (the habit)",
    "emergence/reject_then_right_rate": "rejected a candidate, then right",
}


@dataclass(frozen=True)
class Marker:
    """A vertical line on the emergence panels at an aha step."""

    step: int
    label: str
    linestyle: str = "--"


@dataclass
class Curves:
    """One run as the plots see it."""

    label: str  # the run's name in legends
    series: dict[str, Series]
    counts: dict[str, Series] = field(default_factory=dict)  # metric key -> {step: completions behind the point}
    markers: list[Marker] = field(default_factory=list)
    band_range: tuple[float | None, float | None] = FREE  # the band of `Panel.band` is clipped to this range


def colour(index: int) -> str:
    """The colour of the `index`-th run of an overlay, or of a single run's `index`-th line (matplotlib's cycle)."""
    from matplotlib.colors import to_hex

    return to_hex(f"C{index % 10}")


def _clip(value: float, low: float | None, high: float | None) -> float:
    if low is not None:
        value = max(value, low)
    return value if high is None else min(value, high)


def draw(plot: Plot, runs: Sequence[Curves]):
    """The figure of `plot` for `runs` (a matplotlib Figure, one panel per `Panel` whose keys were logged by any run),
    or None when none of its keys was logged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    panels = [panel for panel in plot.panels if any(run.series.get(key) for run in runs for key in panel.keys)]
    if not panels:
        return None
    overlay = len(runs) > 1
    fig = Figure(figsize=(PANEL_SIZE[0] * len(panels), PANEL_SIZE[1]), dpi=BASE_DPI, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, chosen here rather than through pyplot's global backend
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    fig.suptitle(plot.title)
    for ax, panel in zip(axes, panels, strict=True):
        keys = [key for key in panel.keys if any(run.series.get(key) for run in runs)]
        handles, counted = [], False
        for r, run in enumerate(runs):
            for k, key in enumerate(keys):
                points = [(step, shown(key, value)) for step, value in sorted(run.series.get(key, {}).items())]
                if not points:
                    continue
                steps, values = zip(*points, strict=True)
                linestyle, marker = STYLES[k % len(STYLES)]
                layer = r * len(keys) + k  # later lines over earlier ones, with smaller, shifted markers
                every = max(1, len(points) // MARKERS_PER_LINE)
                (line,) = ax.plot(
                    steps,
                    values,
                    color=colour(r if overlay else k),
                    linestyle=linestyle,
                    marker=marker,
                    markevery=(layer * every // (len(runs) * len(keys)), every),
                    ms=max(3.0, 6.5 - 1.5 * layer),
                    linewidth=1.6,
                    zorder=3 + layer,
                    clip_on=False,
                )
                if not overlay:
                    handles.append(line)
                    line.set_label(LABELS.get(key, key))
                if panel.band and key == panel.band[0] and run.series.get(panel.band[1]):
                    std = run.series[panel.band[1]]
                    band = [(s, v, std[s]) for s, v in points if s in std]
                    if band:
                        s, v, d = zip(*band, strict=True)
                        lo = [_clip(a - b, *run.band_range) for a, b in zip(v, d, strict=True)]
                        hi = [_clip(a + b, *run.band_range) for a, b in zip(v, d, strict=True)]
                        ax.fill_between(s, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0, zorder=1)
                for step, value in points if key in run.counts else ():
                    counted = True
                    ax.annotate(
                        f"n={run.counts[key].get(step, '?')}",
                        (step, value),
                        textcoords="offset points",
                        xytext=(0, 6 + 9 * r),
                        ha="center",
                        fontsize=6,
                        color=line.get_color(),
                        zorder=10,
                        annotation_clip=False,
                    )
            if panel.emergence:
                for marker in run.markers:
                    ax.axvline(
                        marker.step,
                        color=colour(r) if overlay else "black",
                        linestyle=marker.linestyle,
                        linewidth=1,
                        zorder=2,
                    )
        if overlay:  # colours name the runs, styles the metrics
            handles += [Line2D([], [], color=colour(r), linewidth=2, label=run.label) for r, run in enumerate(runs)]
            if len(keys) > 1:
                handles += [
                    Line2D(
                        [], [], color="grey", linestyle=STYLES[k][0], marker=STYLES[k][1], label=LABELS.get(key, key)
                    )
                    for k, key in enumerate(keys)
                ]
        if panel.emergence:
            kinds = {marker.label: marker.linestyle for run in runs for marker in run.markers}
            handles += [
                Line2D([], [], color="grey" if overlay else "black", linestyle=style, label=label)
                for label, style in kinds.items()
            ]
        bottom, top = panel.ylim
        ax.set_ylim(bottom=bottom, top=top)
        ax.set_xlabel("step")
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        if handles:  # below the panel, where it hides no line
            ax.legend(
                handles=handles,
                fontsize="small",
                loc="upper center",
                bbox_to_anchor=(0.5, -0.16),
                ncols=1,
                frameon=False,
                title=panel.count_note if counted else None,
                title_fontsize="small",
            )
    return fig


def save(fig, stem: Path) -> list[Path]:
    """Write `fig` as `stem`.png (`PNG_SCALE` times the figure's pixel size) and `stem`.svg; return both paths."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_suffix(".png"), stem.with_suffix(".svg")
    with folders.replacing(png) as tmp:  # a full disk leaves the last report's plot, not half of this one
        fig.savefig(tmp, format="png", dpi=BASE_DPI * PNG_SCALE)
    with folders.replacing(svg) as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None})
    return [png, svg]
