"""The picture of what happened: one chart (PNG) with three panels sharing the time axis: traffic weight per
version, error rate per version, drift p-value per window, every decision marked; and an HTML page around it
with the timeline of decisions and their evidence."""

from __future__ import annotations

import html
import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no display here
import matplotlib.pyplot as plt

from .timeline import Mark, Timeline

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]
MARK_COLOURS = {"Rollback": "#d62728", "Abort": "#d62728", "Promote": "#2ca02c", "Retrain": "#9467bd",
                "InputsShift": "#ff7f0e"}  # fmt: skip
LABELS = {"Deploy": "deploy", "CanaryStarted": "canary", "Rollback": "rollback", "Abort": "abort",
          "Retrain": "retrain", "Promote": "promote", "Advance": "step", "InputsShift": "inputs shift"}  # fmt: skip


def label(m: Mark) -> str:
    """A short name for a decision line: the version where the decision names one first (canary, promotion)."""
    version = re.search(r"\b[a-z0-9-]+-v\d+\b", m.message)
    named = m.action in ("CanaryStarted", "Promote", "Deploy") and version
    return f"{LABELS[m.action]} {version.group(0)}" if named and version else LABELS[m.action]


def chart(tl: Timeline, path: Path) -> None:
    fig, (weight, errors, drift) = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True)
    t0 = tl.started
    colour = {v: COLOURS[i % len(COLOURS)] for i, v in enumerate(tl.versions())}
    for version, c in colour.items():
        xs = [t - t0 for t, shares in tl.weights]
        ys = [shares.get(version, 0) for _, shares in tl.weights]
        weight.step(xs, ys, where="post", color=c, label=version, linewidth=2)
        rates = tl.error_rates.get(version) or []
        if rates:
            errors.plot([t - t0 for t, _ in rates], [100 * r for _, r in rates], color=c, label=version, linewidth=2)
    weight.set_ylabel("traffic (%)")
    weight.set_ylim(-5, 105)
    weight.legend(loc="center left", fontsize=8)
    weight.set_title("slipway demo: who served the traffic, how it went, and what the inputs looked like", pad=46)
    errors.set_ylabel("error rate (%)")
    errors.legend(loc="upper left", fontsize=8)
    if tl.p_values:
        drift.semilogy([t - t0 for t, _, _ in tl.p_values], [max(p, 1e-12) for _, p, _ in tl.p_values], "o-",
                       color="#444444", label="p-value per window (corrected; shown down to 1e-12)")  # fmt: skip
    drift.axhline(tl.drift_level, color="#d62728", linestyle="--", linewidth=1, label=f"drift below {tl.drift_level}")
    drift.set_ylabel("drift p-value")
    drift.set_xlabel("seconds since the demo started")
    drift.legend(loc="lower left", fontsize=8)
    labelled = [m for m in tl.marks if m.action in LABELS]
    for m in tl.marks:
        c = MARK_COLOURS.get(m.action, "#999999")
        for ax in (weight, errors, drift):
            ax.axvline(m.t - t0, color=c, linestyle=":", linewidth=1.2)
    for i, m in enumerate(labelled):  # staggered above the top panel so neighbours do not overlap
        tint = MARK_COLOURS.get(m.action, "#555555")
        where = {"xycoords": ("data", "axes fraction"), "xytext": (0, 4 + 11 * (i % 3)), "textcoords": "offset points"}
        weight.annotate(label(m), (m.t - t0, 1.0), fontsize=7, ha="center", color=tint, **where)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def page(tl: Timeline, png: Path, summary: str, path: Path) -> None:
    rows = "\n".join(
        f"<tr><td>{m.t - tl.started:6.1f}s</td><td>{html.escape(m.source)}</td>"
        f"<td><b>{html.escape(m.action)}</b></td><td>{html.escape(m.message)}</td></tr>"
        for m in tl.marks
    )
    path.write_text(f"""<!doctype html>
<html><head><meta charset="utf-8"><title>slipway demo report</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}td{{padding:2px 8px;vertical-align:top}}
tr:nth-child(even){{background:#f4f4f4}}pre{{background:#f8f8f8;padding:1em;overflow-x:auto}}</style></head>
<body><h1>slipway: the whole loop on one machine</h1>
<p>Train v1, serve it; a regressed v2 is canaried and rolled back on its error rate; the inputs drift, the
DriftMonitor retrains, and the retrained version is canaried and promoted. Top: share of traffic per version.
Middle: error rate per version (Prometheus). Bottom: the drift detector's corrected p-value per window (below the
dashed line = drift). Dotted lines: decisions (red rollback, green promotion, purple retraining; orange: the inputs
start to shift).</p>
<img src="{html.escape(png.name)}" width="100%" alt="traffic, error rate and drift over time">
<h2>Decisions and their evidence</h2><table>{rows}</table>
<h2>At the end</h2><pre>{html.escape(summary)}</pre></body></html>
""")


def write(tl: Timeline, directory: Path, summary: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    png, index = directory / "report.png", directory / "report.html"
    chart(tl, png)
    page(tl, png, summary, index)
    tl.save(directory / "timeline.json")
    return index, png
