"""Timeline plots of recorded signals, with events and shaded intervals (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from cosim.errors import ConfigurationError

_EVENT_COLOURS = ["tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]


def timeline(data: Mapping[str, np.ndarray], panels: Sequence[Sequence[str]] | Mapping[str, Sequence[str]],
             path: str | Path, events: Sequence[Mapping[str, Any]] = (),
             intervals: Mapping[str, Sequence[Sequence[float]]] | None = None,
             title: str = "", width: float = 11.0, panel_height: float = 1.6) -> Path:
    """Plot signals against ``data["time"]``, one panel per group, and save a PNG.

    Args:
        data: columns by name (a recorder's ``as_dict()``), including ``"time"``.
        panels: groups of column names, one panel each (a mapping gives panel titles).
        events: ``{"t": time, "kind": text}`` drawn as vertical lines, coloured by kind.
        intervals: ``{label: [[start, end], ...]}`` drawn as shaded spans (downtime, attacks).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if "time" not in data:
        raise ConfigurationError("timeline: data has no 'time' column")
    groups = list(panels.items()) if isinstance(panels, Mapping) else [(None, list(p)) for p in panels]
    missing = [name for _, cols in groups for name in cols if name not in data]
    if missing:
        raise ConfigurationError(f"timeline: no recorded column(s) {missing}")
    t = np.asarray(data["time"], dtype=float)
    fig, axes = plt.subplots(len(groups), 1, sharex=True, squeeze=False,
                             figsize=(width, panel_height * len(groups) + 0.8))
    kinds = sorted({str(e["kind"]) for e in events})
    colours = {k: _EVENT_COLOURS[i % len(_EVENT_COLOURS)] for i, k in enumerate(kinds)}
    shades = ["0.85", "#ffe0b3", "#cce5ff", "#d9f2d9"]
    for ax, (label, cols) in zip(axes[:, 0], groups, strict=True):
        for col in cols:
            y = np.asarray(data[col], dtype=float)
            ax.plot(t, y, lw=1.0, label=col, drawstyle="steps-post" if data[col].dtype != np.float64 else "default")
        for i, (name, spans) in enumerate((intervals or {}).items()):
            for j, (a, b) in enumerate(spans):
                first = j == 0 and ax is axes[0, 0]  # the spans are the same in every panel: one legend entry
                ax.axvspan(a, b, color=shades[i % len(shades)], alpha=0.6, lw=0, label=name if first else None)
        for e in events:
            ax.axvline(float(e["t"]), color=colours[str(e["kind"])], lw=0.8, ls="--")
        spans = len(intervals or {}) if ax is axes[0, 0] else 0
        ax.legend(loc="upper right", fontsize=7, ncol=min(4, len(cols) + spans))
        if label:
            ax.set_ylabel(label, fontsize=8)
        ax.grid(alpha=0.3)
    if kinds:
        handles = [plt.Line2D([0], [0], color=colours[k], ls="--") for k in kinds]
        fig.legend(handles, kinds, loc="lower center", ncol=len(kinds), fontsize=8)
    axes[-1, 0].set_xlabel("time [s]")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.04 if kinds else 0, 1, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def confusion_matrix(tp: int, fp: int, tn: int, fn: int, path: str | Path, title: str = "") -> Path:
    """A 2x2 confusion matrix (rows: truth normal/attack, columns: predicted) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = np.array([[tn, fp], [fn, tp]], dtype=float)
    total = m.sum() or 1.0
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(m / total, cmap="Blues", vmin=0.0, vmax=1.0)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, f"{int(v)}\n{v / total:.1%}", ha="center", va="center", fontsize=9,
                color="white" if v / total > 0.5 else "black")
    ax.set_xticks([0, 1], ["normal", "alarm"])
    ax.set_yticks([0, 1], ["normal", "attack"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("ground truth")
    ax.set_title(title or "samples", fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def grouped_bars(values: Mapping[str, Mapping[str, tuple[float | None, float | None]]], path: str | Path,
                 title: str = "", ylabel: str = "", reference: float | None = None,
                 order: Sequence[str] = ()) -> Path:
    """Bars with error bars: ``values[group][series] = (mean, std)``, one cluster per group.

    Args:
        values: e.g. ``{attack: {defence: (mean, std)}}``; ``None`` means no bar.
        reference: a horizontal line (a claimed value), if given.
        order: series drawn first, in this order (the others after, sorted).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(values)
    rank = {name: i for i, name in enumerate(order)}
    series = sorted({s for g in values.values() for s in g}, key=lambda s: (rank.get(s, len(rank)), s))
    width = 0.8 / max(len(series), 1)
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) * max(len(series), 1) * 0.5 + 2), 3.4))
    x = np.arange(len(groups), dtype=float)
    for i, s in enumerate(series):
        means = [values[g].get(s, (None, None))[0] for g in groups]
        stds = [values[g].get(s, (None, None))[1] for g in groups]
        m = np.array([np.nan if v is None else v for v in means], dtype=float)
        e = np.array([0.0 if v is None else v for v in stds], dtype=float)
        ax.bar(x + (i - (len(series) - 1) / 2) * width, m, width, yerr=e, label=s, capsize=2)
    if reference is not None:
        ax.axhline(reference, color="tab:red", ls="--", lw=1, label="paper")
    ax.set_xticks(x, groups, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
