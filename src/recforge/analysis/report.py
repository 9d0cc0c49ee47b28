"""A run report a person opens in a browser: one self-contained HTML file (``recforge report RUN [RUN ...]``).

Everything is inside the file: the style sheet, the tables (runs and their settings, metrics of every evaluated
part, the paired comparison when one is given) and the figures (metric bars, the comparison, each run's training
curves) as base64 PNG ``<img>`` elements. No script, no web font, no request to anywhere: it opens offline
and can be mailed or attached to a paper's supplement as it is.
"""

from __future__ import annotations

import base64
import html
import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recforge.analysis.plots import plot_comparison, plot_metric_bars, plot_training_curves

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; margin: 2rem auto; max-width: 1200px;
       color: #1b1f24; padding: 0 1rem; line-height: 1.45; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #d0d7de; }
.meta { color: #57606a; font-size: 0.9rem; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; } tr.ref td { background: #f6f8fa; }
.sig { color: #1a7f37; font-weight: 600; } .ns { color: #57606a; }
img { max-width: 100%; border: 1px solid #d0d7de; margin: 0.5rem 0; }
pre { background: #f6f8fa; padding: 0.8rem; overflow-x: auto; font-size: 0.8rem; }
details { margin: 0.5rem 0; } code { font-size: 0.85rem; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "-" if not math.isfinite(value) else f"{value:.4f}"
    return _e(value)


def _table(
    header: Sequence[str], rows: Sequence[Sequence[str]], *, cls: str = "", row_classes: Sequence[str] = ()
) -> str:
    """An HTML table from already escaped cell HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        rc = f' class="{row_classes[i]}"' if i < len(row_classes) and row_classes[i] else ""
        body.append(f"<tr{rc}>" + "".join(row) + "</tr>")
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def _png(draw: Callable[[Path], Path]) -> str:
    """An ``<img>`` with the PNG that ``draw(path)`` writes, embedded as base64."""
    with tempfile.TemporaryDirectory() as tmp:
        path = draw(Path(tmp) / "figure.png")
        data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img alt="figure" src="data:image/png;base64,{data}">'


def _short(run_id: str) -> str:
    parts = run_id.split("-", 2)
    if len(parts) == 3 and len(parts[0]) == 8 and parts[0].isdigit() and len(parts[1]) == 6 and parts[1].isdigit():
        return parts[2]
    return run_id


def _load(run_dir: Path) -> dict[str, Any]:
    config = _read_json(run_dir / "config.json")
    metrics = _read_json(run_dir / "metrics.json")
    if config is None or metrics is None:
        raise FileNotFoundError(f"{run_dir} is not a finished recforge run (no config.json / metrics.json)")
    log = run_dir / "training_log.csv"
    return {
        "id": run_dir.name,
        "short": _short(run_dir.name),
        "path": run_dir,
        "config": config,
        "metrics": metrics,
        "split": _read_json(run_dir / "split.json") or {},
        "log": pd.read_csv(log) if log.is_file() else None,
    }


def _runs_section(runs: list[dict[str, Any]]) -> str:
    rows = []
    for r in runs:
        c = r["config"]
        data = c.get("data", {})
        params = {k: v for k, v in c.get("model", {}).items() if k != "name"}
        split = c.get("split", {})
        split_text = split.get("protocol", "") + "".join(f", {k}={v}" for k, v in split.items() if k != "protocol")
        rows.append(
            [
                f"<td><code>{_e(r['short'])}</code></td>",
                f"<td>{_e(data.get('dataset') or Path(str(data.get('path', ''))).name)}</td>",
                f"<td>{_e(split_text)}</td>",
                f"<td><b>{_e(c.get('model', {}).get('name', '?'))}</b></td>",
                f"<td>{_e(', '.join(f'{k}={json.dumps(v)}' for k, v in params.items()) or '(defaults)')}</td>",
                f"<td class='num'>{_e(c.get('run', {}).get('seed', ''))}</td>",
                f"<td>{_e(c.get('run', {}).get('study') or '')}</td>",
                f"<td class='num'>{r['metrics'].get('fit', {}).get('seconds', math.nan):.2f}</td>",
            ]
        )
    header = ["run", "dataset", "split", "model", "hyper-parameters", "seed", "study", "fit (s)"]
    return "<h2>Runs</h2>" + _table(header, rows, cls="runs")


def _metrics_section(runs: list[dict[str, Any]]) -> str:
    out = ["<h2>Metrics</h2>"]
    for part in ("test", "valid"):
        present = [r for r in runs if part in r["metrics"]]
        if not present:
            continue
        names = list(dict.fromkeys(k for r in present for k in r["metrics"][part]["metrics"]))
        best: dict[str, float] = {}
        for name in names:
            values = [r["metrics"][part]["metrics"].get(name) for r in present]
            finite = [v for v in values if isinstance(v, int | float) and math.isfinite(v)]
            lower_better = name.split("_")[-1] in ("rmse", "mae")
            if len(finite) > 1:
                best[name] = min(finite) if lower_better else max(finite)
        rows = []
        for r in present:
            m = r["metrics"][part]
            cells = [
                f"<td><code>{_e(r['short'])}</code></td>",
                f"<td>{_e(r['config'].get('model', {}).get('name'))}</td>",
            ]
            cells.append(f"<td class='num'>{_e(m.get('n_users', ''))}</td>")
            for name in names:
                v = m["metrics"].get(name)
                cls = "num best" if name in best and v == best[name] else "num"
                cells.append(f"<td class='{cls}'>{_fmt(v) if v is not None else '-'}</td>")
            rows.append(cells)
        out.append(f"<h3>{_e(part)} part</h3>")
        out.append(_table(["run", "model", "users", *map(_e, names)], rows, cls=f"metrics metrics-{part}"))
    tested = {r["short"]: r["metrics"]["test"]["metrics"] for r in runs if "test" in r["metrics"]}
    if tested:
        ranking = {
            run: {k: v for k, v in m.items() if isinstance(v, int | float) and "@" in k} for run, m in tested.items()
        }
        if any(ranking.values()):
            out.append(_png(lambda p: plot_metric_bars(ranking, p)))
    return "".join(out)


def _comparison_section(comparison: Mapping[str, Any]) -> str:
    rows, classes = [], []
    for r in comparison["rows"]:
        if r["reference"]:
            rows.append(
                [
                    f"<td>{_e(r['metric'])}</td>",
                    f"<td><code>{_e(r['short_id'])}</code></td>",
                    f"<td>{_e(r['model'])}</td>",
                    f"<td class='num'>{_fmt(r['value'])}</td>",
                    "<td colspan='5' class='ns'>reference</td>",
                ]
            )
            classes.append("ref")
            continue
        sig = "<span class='sig'>significant</span>" if r["significant"] else "<span class='ns'>n.s.</span>"

        def p(v: Any) -> str:
            return "-" if v is None else ("&lt;1e-4" if v < 1e-4 else f"{v:.4f}")

        rows.append(
            [
                f"<td>{_e(r['metric'])}</td>",
                f"<td><code>{_e(r['short_id'])}</code></td>",
                f"<td>{_e(r['model'])}</td>",
                f"<td class='num'>{_fmt(r['value'])}</td>",
                f"<td class='num'>{r['diff']:+.4f}</td>" if r.get("diff") is not None else "<td>-</td>",
                f"<td class='num'>[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]</td>"
                if r.get("ci_low") is not None
                else "<td>-</td>",
                f"<td class='num'>{p(r.get('p_ttest_holm'))}</td>",
                f"<td class='num'>{p(r.get('p_wilcoxon_holm'))}</td>",
                f"<td>{sig}</td>",
            ]
        )
        classes.append("")
    header = ["metric", "run", "model", "value", "Δ vs reference", "95% CI", "t-test p (Holm)", "Wilcoxon p (Holm)", ""]
    note = (
        f"<p class='meta'>{_e(comparison['part'])} part, paired per user; 95% bootstrap intervals "
        f"({_e(comparison.get('bootstrap_resamples', ''))} resamples); two-sided p-values, Holm-corrected over "
        f"the runs compared with the reference; significant: both corrected p &lt; "
        f"{_e(comparison.get('alpha', 0.05))}. "
        f"Split fingerprint <code>{_e(str(comparison.get('split_fingerprint', ''))[:16])}</code>.</p>"
    )
    figure = _png(lambda path: plot_comparison(comparison["rows"], path))
    return "<h2>Comparison</h2>" + _table(header, rows, cls="comparison", row_classes=classes) + note + figure


def _run_details(r: dict[str, Any]) -> str:
    out = [f"<h3 id='run-{_e(r['id'])}'>{_e(r['short'])}</h3>", f"<p class='meta'>{_e(r['path'])}</p>"]
    sizes = {k: v for k, v in r["split"].items() if isinstance(v, int | float) and not isinstance(v, bool)}
    if sizes:
        out.append(
            _table(
                ["split", "value"],
                [[f"<td>{_e(k)}</td>", f"<td class='num'>{_fmt(v)}</td>"] for k, v in sizes.items()],
                cls="split",
            )
        )
    log = r["log"]
    if log is not None and not log.empty and "epoch" in log:
        out.append(f"<p>training: {len(log)} epoch(s)</p>")
        out.append(_png(lambda p: plot_training_curves(log, p)))
    config = json.dumps(r["config"], indent=2)
    out.append(f"<details><summary>config.json</summary><pre>{_e(config)}</pre></details>")
    return "".join(out)


def write_report(
    run_dirs: Sequence[str | Path],
    path: str | Path,
    *,
    comparison: Mapping[str, Any] | None = None,
    title: str | None = None,
    notes: Sequence[str] = (),
) -> Path:
    """Write the self-contained HTML report of ``run_dirs`` to ``path`` (under a temporary name, then renamed).

    ``comparison`` is a :meth:`recforge.experiments.compare.Comparison.to_json` of the same runs (drawn as a
    table and a figure); ``notes`` are lines shown under the title (e.g. why no comparison was made).
    """
    runs = [_load(Path(p)) for p in run_dirs]
    if not runs:
        raise ValueError("no run to report")
    title = title or ("run report: " + ", ".join(r["short"] for r in runs))
    from recforge import __version__

    parts = [
        "<!DOCTYPE html>",
        "<html lang='en'><head><meta charset='utf-8'>",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        f"<p class='meta'>recforge {_e(__version__)}, {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}, "
        f"{len(runs)} run(s)</p>",
        *(f"<p class='meta'>{_e(n)}</p>" for n in notes),
        _runs_section(runs),
        _metrics_section(runs),
    ]
    if comparison is not None:
        parts.append(_comparison_section(comparison))
    parts.append("<h2>Runs in detail</h2>")
    parts += [_run_details(r) for r in runs]
    parts.append("</body></html>")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(parts), encoding="utf-8")
    os.replace(tmp, path)
    return path
