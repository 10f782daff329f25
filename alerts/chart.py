"""A logger file's chart (``coldtrace analyze --plot FILE``): each probe's temperature (C)
against time in the file's zone, the profile's range as a band, each breach shaded over its
span (to the last reading while open) and each data gap hatched. PNG or SVG by the file's
suffix, CHART_PX wide and high. matplotlib, drawn on a Figure without pyplot (no GUI
backend, no global state).
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
from matplotlib.figure import Figure

from alerts.analysis import Analysis
from coldtrace.contract import probe_fault

CHART_PX: Final = (1200, 600)  # width, height in pixels
DPI: Final = 100
FORMATS: Final = {".png": "png", ".svg": "svg"}
DAY_MS: Final = 86_400_000


class ChartError(Exception):
    """A chart that cannot be written; the message says what to pass."""


def plot(a: Analysis, path: Path) -> None:
    """Write the chart of ``a`` to ``path`` (.png or .svg)."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ChartError(f"{path}: name a .png or .svg file")
    e, zone = a.evaluation, a.series.zone

    def when(ts: int) -> float:
        """matplotlib's date number: days since its epoch, 1970-01-01 UTC."""
        return ts / DAY_MS

    fig = Figure(figsize=(CHART_PX[0] / DPI, CHART_PX[1] / DPI), dpi=DPI)
    ax = fig.add_subplot()
    profile = e.profile
    low, high = profile.low_c, profile.high_c
    values = [
        v
        for p in a.series.probes
        for v in a.series.values[p]
        if v is not None and not probe_fault(v)
    ]
    bottom = min([*values, *(x for x in (low, high) if x is not None)], default=0.0) - 1.0
    top = max([*values, *(x for x in (low, high) if x is not None)], default=0.0) + 1.0
    ax.axhspan(
        low if low is not None else bottom,
        high if high is not None else top,
        color="tab:green",
        alpha=0.12,
        label=f"{profile.id} range",
    )
    for limit in (low, high):
        if limit is not None:
            ax.axhline(limit, color="tab:green", linewidth=1)
    for probe in a.series.probes:
        pairs = [
            (when(t), v)
            for t, v in zip(a.series.times, a.series.values[probe], strict=True)
            if v is not None and not probe_fault(v)
        ]
        pairs.sort()
        ax.plot([t for t, _ in pairs], [v for _, v in pairs], linewidth=1.2, label=probe)
    for i, b in enumerate(x for x in e.breaches if not x.record.suppressed):
        end = b.record.end if b.record.end is not None else e.end
        ax.axvspan(
            when(b.record.start),
            when(end),
            color="tab:red",
            alpha=0.15,
            label="breach" if i == 0 else None,
        )
    for i, g in enumerate(e.gaps):
        ax.axvspan(
            when(g.start),
            when(g.end),
            facecolor="none",
            hatch="//",
            edgecolor="grey",
            label="data gap" if i == 0 else None,
        )
    ax.set_ylim(bottom, top)
    locator = AutoDateLocator(tz=zone)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    formatter = ConciseDateFormatter(locator, tz=zone)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(formatter)
    ax.set_ylabel("temperature (°C)")
    ax.set_xlabel(f"time ({zone})")
    ax.set_title(f"{profile.name}: {a.verdict}")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    try:
        fig.savefig(path, format=fmt, dpi=DPI)
    except OSError as exc:
        raise ChartError(f"{path}: {exc.strerror or exc}") from None
