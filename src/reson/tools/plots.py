"""The training curves of a run as PNG files, drawn with matplotlib's Agg canvas (no display, no pyplot state).

Each `Plot` names the logged metric keys it draws, so the report, its table and the README's metric list
speak of the same keys. A plot whose keys were never logged is left out rather than drawn empty.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

Series = dict[int, float]  # step -> value


@dataclass(frozen=True)
class Panel:
    ylabel: str
    keys: tuple[str, ...]  # one line per key present in the logs
    band: tuple[str, str] | None = None  # (mean key, std key): a shaded mean ± std band
    percent: bool = False  # the y axis runs 0-100
    emergence: bool = False  # mark the aha steps on this panel


@dataclass(frozen=True)
class Plot:
    name: str  # file stem: <name>.png
    title: str
    panels: tuple[Panel, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(key for panel in self.panels for key in panel.keys))


PLOTS = (
    Plot(
        "reward",
        "Reward: mean and std over each step's completions",
        (Panel("reward", ("reward",), ("reward", "reward_std")),),
    ),
    Plot(
        "rewards",
        "Accuracy and format rewards",
        (Panel("mean reward", ("rewards/accuracy/mean", "rewards/format/mean")),),
    ),
    Plot(
        "completions",
        "Completion length and share cut at max_completion_length",
        (
            Panel("tokens", ("completions/mean_length", "completions/mean_terminated_length")),
            Panel("clipped ratio", ("completions/clipped_ratio",)),
        ),
    ),
    Plot(
        "think_usage",
        "Canary prompts: completions with a closed, non-empty <think> block",
        (Panel("% of canary completions", ("emergence/think_usage_pct",), percent=True, emergence=True),),
    ),
    Plot(
        "canary_accuracy",
        "Canary prompts: accuracy",
        (Panel("accuracy", ("emergence/canary_accuracy",), emergence=True),),
    ),
    Plot(
        "think_tokens",
        "Canary prompts: tokens inside <think>",
        (Panel("tokens", ("emergence/avg_think_tokens",), emergence=True),),
    ),
    Plot(
        "self_correction",
        "Canary prompts: self-correction rate",
        (Panel("rate", ("emergence/self_correction_rate", "emergence/self_correction_rate_correct"), emergence=True),),
    ),
    Plot("grad_norm", "Gradient norm", (Panel("grad norm", ("grad_norm",)),)),
    Plot("loss", "Loss", (Panel("loss", ("loss",)),)),
)

LABELS = {
    "reward": "reward (mean ± std)",
    "rewards/accuracy/mean": "accuracy reward",
    "rewards/format/mean": "format reward",
    "completions/mean_length": "mean length",
    "completions/mean_terminated_length": "mean length, finished ones",
    "completions/clipped_ratio": "clipped ratio",
    "emergence/think_usage_pct": "think usage %",
    "emergence/canary_accuracy": "canary accuracy",
    "emergence/avg_think_tokens": "think tokens (mean over thinking completions)",
    "emergence/self_correction_rate": "self-correction, all",
    "emergence/self_correction_rate_correct": "self-correction and correct",
}


@dataclass
class Marker:
    """A vertical line on the emergence panels, e.g. the aha step."""

    step: int
    label: str
    color: str = "tab:red"
    extra: dict = field(default_factory=dict)


def draw(plot: Plot, series: dict[str, Series], path: Path, markers: list[Marker] = ()) -> int:
    """Draw `plot` from `series` into the PNG `path` and return the number of panels drawn: 0 (and no file) when
    none of its keys was logged."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = [panel for panel in plot.panels if any(series.get(key) for key in panel.keys)]
    if not panels:
        return 0
    fig = Figure(figsize=(6.4 * len(panels), 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)  # the Agg canvas, chosen here rather than through pyplot's global backend
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    fig.suptitle(plot.title)
    for ax, panel in zip(axes, panels, strict=True):
        for key in panel.keys:
            points = sorted(series.get(key, {}).items())
            if not points:
                continue
            steps, values = zip(*points, strict=True)
            (line,) = ax.plot(
                steps, values, marker="o" if len(points) < 30 else None, ms=3, label=LABELS.get(key, key)
            )
            if panel.band and key == panel.band[0] and series.get(panel.band[1]):
                std = series[panel.band[1]]
                band = [(s, v, std[s]) for s, v in points if s in std]
                if band:
                    s, v, d = zip(*band, strict=True)
                    lo = [a - b for a, b in zip(v, d, strict=True)]
                    hi = [a + b for a, b in zip(v, d, strict=True)]
                    ax.fill_between(s, lo, hi, color=line.get_color(), alpha=0.2, linewidth=0)
        if panel.emergence:
            for marker in markers:
                ax.axvline(marker.step, color=marker.color, linestyle="--", linewidth=1, label=marker.label)
        if panel.percent:
            ax.set_ylim(-2, 102)
        ax.set_xlabel("step")
        ax.set_ylabel(panel.ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return len(panels)
