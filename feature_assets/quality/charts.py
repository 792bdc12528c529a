"""A PNG per join (or log) and day: percentile bands over the days before it, and each column's drift.

Top: for the numeric columns that drift most on the day (at most `BAND_COLUMNS`), the 5-95% and 25-75%
bands and the median of each day in the window. Bottom: the day's Jensen-Shannon divergence per column
against its reference, with the warn and fail levels. Rendered on matplotlib's Agg canvas (no display).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from feature_assets.quality.drift_report import DayReport, DaySummaries
from feature_assets.statistics import DriftThresholds

BAND_COLUMNS = 4
MAX_DRIFT_COLUMNS = 30


def _bands(days: DaySummaries, column: str, window: list[str]) -> tuple[list[str], dict[str, list[float]]]:
    shown: list[str] = []
    series: dict[str, list[float]] = {p: [] for p in ("0.05", "0.25", "0.5", "0.75", "0.95")}
    for ds in window:
        summary = days.get(ds, {}).get(column)
        if summary is None or summary.kind != "numeric":
            continue
        percentiles = summary.percentiles()
        if any(percentiles.get(p) is None for p in series):
            continue
        shown.append(ds)
        for point in series:
            series[point].append(float(percentiles[point]))  # type: ignore[arg-type]
    return shown, series


def render_day_chart(
    path: Path, title: str, report: DayReport, days: DaySummaries, window: list[str], thresholds: DriftThresholds
) -> Path:
    """Write the day's chart to `path` (folders created) and return it."""
    numeric = [c.column for c in report.worst_columns(len(report.columns)) if c.kind == "numeric"][:BAND_COLUMNS]
    rows = max(len(numeric), 1) + 1
    # A Figure on the Agg canvas directly (no pyplot state), laid out by hand: tight_layout would measure
    # every label and double the rendering time.
    figure = Figure(figsize=(11, 2.6 * rows))
    FigureCanvasAgg(figure)
    axes = figure.subplots(rows, 1, squeeze=False)
    figure.suptitle(f"{title} {report.ds}: against {report.reference}", fontsize=11)
    panels: list[str | None] = list(numeric) or [None]
    for axis, column in zip(axes[:-1, 0], panels):
        if column is None:
            axis.text(0.5, 0.5, "no numeric column", ha="center", va="center")
            axis.set_axis_off()
            continue
        shown, series = _bands(days, column, window)
        positions = list(range(len(shown)))
        axis.fill_between(positions, series["0.05"], series["0.95"], alpha=0.2, color="tab:blue", label="5-95%")
        axis.fill_between(positions, series["0.25"], series["0.75"], alpha=0.35, color="tab:blue", label="25-75%")
        axis.plot(positions, series["0.5"], color="tab:blue", linewidth=1.5, label="median")
        if report.ds in shown:
            axis.axvline(shown.index(report.ds), color="tab:red", linewidth=1, linestyle="--")
        axis.set_xticks(positions, [ds[5:] for ds in shown], fontsize=7)
        axis.set_title(column, fontsize=9, loc="left")
        axis.legend(fontsize=7, loc="upper left")
    drift_axis = axes[-1, 0]
    columns = sorted(report.columns, key=lambda c: c.column)[:MAX_DRIFT_COLUMNS]
    values = [c.metrics.get("jensen_shannon") or 0.0 for c in columns]
    colors = {"PASS": "tab:green", "WARN": "tab:orange", "ERROR": "tab:red"}
    drift_axis.bar(range(len(columns)), values, color=[colors[c.severity] for c in columns])
    warn, fail = thresholds.levels("jensen_shannon")
    drift_axis.axhline(warn, color="tab:orange", linestyle=":", linewidth=1, label=f"warn {warn:g}")
    drift_axis.axhline(fail, color="tab:red", linestyle=":", linewidth=1, label=f"fail {fail:g}")
    drift_axis.set_xticks(range(len(columns)), [c.column for c in columns], rotation=75, ha="right", fontsize=6)
    drift_axis.set_ylabel("JS divergence", fontsize=8)
    drift_axis.set_title("drift per column (bar colour: severity over every metric)", fontsize=9, loc="left")
    drift_axis.legend(fontsize=7, loc="upper right")
    height = 2.6 * rows + 1.2  # the rotated column names need about 2 inches below the last panel
    figure.set_size_inches(11, height)
    figure.subplots_adjust(left=0.07, right=0.98, top=1 - 0.7 / height, bottom=2.4 / height, hspace=0.5)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=72)
    return path
