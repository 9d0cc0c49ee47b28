"""Is run B really better than run A? Paired per-user significance tests on the values runs already store.

Every run keeps its per-user metric values (``per_user_test.csv``, ``per_user_valid.csv``). Two runs on the same
split (same ``split.json`` fingerprint) evaluated the same users, so their values pair up user by user. For each
metric and each run after the first, with d_u = value_u(run) - value_u(first run) over the users both evaluated:

* the mean difference mean(d) and its 95% bootstrap confidence interval (percentiles of the mean of d over
  ``n_boot`` resamples of the users, with replacement; seeded);
* the paired t-test (``scipy.stats.ttest_rel``) and the Wilcoxon signed-rank test (``scipy.stats.wilcoxon``,
  zero differences dropped) p-values, two-sided;
* both Holm-corrected across the runs compared with the first (per metric and test): with m comparisons and
  p-values sorted p_(1) <= ... <= p_(m), p^Holm_(i) = max_{j <= i} min(1, (m - j + 1) p_(j)).

A difference is called significant when both corrected p-values are below ``alpha`` (0.05).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from recforge.experiments.runs import short_id


class SplitMismatch(ValueError):
    """The runs were not evaluated on the same split: their per-user values do not pair up."""


@dataclass(frozen=True)
class RunValues:
    """What a comparison reads from one run folder."""

    path: Path
    id: str
    model: str
    fingerprint: str | None
    metrics: dict[str, float]
    per_user: pd.DataFrame  # user + one column per metric


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{path.parent} is not a finished recforge run (no {path.name})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc})") from None


def load_values(run_dir: str | Path, part: str = "test") -> RunValues:
    """The mean and per-user values of one evaluated part of a run (ranking metrics, and ``rating_*`` /
    ``sampled_*`` ones where the run has them, named as in ``metrics.json``)."""
    run_dir = Path(run_dir)
    config = _read_json(run_dir / "config.json")
    metrics = _read_json(run_dir / "metrics.json")
    split = _read_json(run_dir / "split.json") if (run_dir / "split.json").is_file() else {}
    if part not in metrics:
        evaluated = [p for p in ("valid", "test") if p in metrics]
        raise ValueError(
            f"run {run_dir.name} has no {part} evaluation (it has {', '.join(evaluated) or 'none'}; "
            f"a tuning trial is evaluated on valid only: use --part valid)"
        )
    frame: pd.DataFrame | None = None
    for kind in ("", "_rating", "_sampled"):
        path = run_dir / f"per_user_{part}{kind}.csv"
        if not path.is_file():
            if not kind:
                raise FileNotFoundError(f"run {run_dir.name} has no {path.name}")
            continue
        values = pd.read_csv(path, dtype={"user": str})
        if "user" not in values.columns:
            raise ValueError(f"{path} has no user column")
        values = values.rename(columns={c: f"{kind[1:]}_{c}" for c in values.columns if c != "user" and kind})
        frame = values if frame is None else frame.merge(values, on="user", how="outer")
    assert frame is not None
    return RunValues(
        path=run_dir,
        id=run_dir.name,
        model=str(config.get("model", {}).get("name", "?")),
        fingerprint=split.get("fingerprint"),
        metrics={k: v for k, v in metrics[part]["metrics"].items() if isinstance(v, int | float)},
        per_user=frame,
    )


def check_same_split(runs: list[RunValues]) -> str:
    """The runs' common split fingerprint; :class:`SplitMismatch` (one line) when they differ or one is missing."""
    for r in runs:
        if r.fingerprint is None:
            raise SplitMismatch(
                f"run {short_id(r.id)} has no split fingerprint (made by an older recforge): cannot check that the "
                "runs share their split; run it again to compare it"
            )
    first = runs[0]
    for r in runs[1:]:
        if r.fingerprint != first.fingerprint:
            raise SplitMismatch(
                f"runs {short_id(first.id)} and {short_id(r.id)} were evaluated on different splits (fingerprints "
                f"{first.fingerprint[:12]} and {r.fingerprint[:12]}): compare runs of the same data and split"
            )
    return str(first.fingerprint)


def holm(pvalues: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order (NaN stays NaN and does not count)."""
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    m = len(ok)
    order = ok[np.argsort(p[ok], kind="stable")]
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        out[index] = running
    return out.tolist()


def bootstrap_ci(d: np.ndarray, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of mean(d), resampling the users with replacement (seeded)."""
    if len(d) == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    block = max(1, 2_000_000 // len(d))  # resamples per block: bounded memory
    for start in range(0, n_boot, block):
        stop = min(n_boot, start + block)
        means[start:stop] = d[rng.integers(0, len(d), size=(stop - start, len(d)))].mean(axis=1)
    tail = (1.0 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def paired_tests(d: np.ndarray) -> tuple[float, float]:
    """Two-sided p-values of the paired t-test and the Wilcoxon signed-rank test of ``d`` (differences)."""
    if len(d) < 2 or np.all(d == d[0]):
        # no spread: equal runs (p = 1), or one constant shift seen on every user (p = 0)
        same = len(d) == 0 or d[0] == 0
        return (1.0, 1.0) if same else (0.0, 0.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        p_t = float(stats.ttest_1samp(d, 0.0).pvalue)
        nonzero = d[d != 0]
        p_w = float(stats.wilcoxon(nonzero).pvalue) if len(nonzero) else 1.0
    return p_t, p_w


@dataclass
class Comparison:
    """The table of ``recforge compare``: one row per (metric, run); the first run is the reference."""

    part: str
    fingerprint: str
    runs: list[dict[str, Any]]
    metrics: list[str]
    rows: list[dict[str, Any]] = field(default_factory=list)
    alpha: float = 0.05
    n_boot: int = 2000

    def to_json(self) -> dict[str, Any]:
        def clean(v: Any) -> Any:
            return None if isinstance(v, float) and not math.isfinite(v) else v

        return {
            "part": self.part,
            "split_fingerprint": self.fingerprint,
            "alpha": self.alpha,
            "bootstrap_resamples": self.n_boot,
            "reference": self.runs[0]["id"],
            "runs": self.runs,
            "rows": [{k: clean(v) for k, v in r.items()} for r in self.rows],
        }

    def table(self) -> tuple[list[str], list[list[str]]]:
        """Header and text rows (what the terminal, Markdown and the HTML report show)."""
        header = ["metric", "run", "model", "value", "Δ vs first", "95% CI", "t-test p (Holm)", "Wilcoxon p (Holm)", ""]
        out = []
        for r in self.rows:
            if r["reference"]:
                out.append([r["metric"], r["short_id"], r["model"], f"{r['value']:.4f}", "(reference)", "", "", "", ""])
                continue
            out.append(
                [
                    r["metric"],
                    r["short_id"],
                    r["model"],
                    f"{r['value']:.4f}",
                    f"{r['diff']:+.4f}",
                    f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]",
                    _p(r["p_ttest_holm"]),
                    _p(r["p_wilcoxon_holm"]),
                    "significant" if r["significant"] else "n.s.",
                ]
            )
        return header, out

    def to_markdown(self) -> str:
        header, rows = self.table()
        header[-1] = f"α = {self.alpha}"
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(header),
            *("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows),
        ]
        users = ", ".join(sorted({str(r["n_users"]) for r in self.rows if not r["reference"]}))
        lines.append("")
        lines.append(
            f"{self.part} part, {users} paired users; 95% bootstrap intervals ({self.n_boot} resamples); "
            f"p-values two-sided, Holm-corrected over the {len(self.runs) - 1} comparison(s) with "
            f"{self.runs[0]['short_id']}; significant: both corrected p < {self.alpha}."
        )
        return "\n".join(lines) + "\n"


def _p(value: float) -> str:
    if value is None or not math.isfinite(value):
        return "-"
    return "<1e-4" if value < 1e-4 else f"{value:.4f}"


def compare_runs(
    run_dirs: list[str | Path],
    *,
    part: str = "test",
    metrics: list[str] | None = None,
    alpha: float = 0.05,
    n_boot: int = 2000,
    seed: int = 0,
) -> Comparison:
    """Compare runs on one part of their (shared) split; the first run is the reference. See the module doc."""
    if len(run_dirs) < 2:
        raise ValueError("compare needs at least two runs")
    if part not in ("valid", "test"):
        raise ValueError(f"--part must be valid or test, got {part!r}")
    if not 0 < alpha < 1:
        raise ValueError(f"--alpha must be in (0, 1), got {alpha}")
    runs = [load_values(p, part) for p in run_dirs]
    ids = [r.id for r in runs]
    if len(set(map(str, (r.path.resolve() for r in runs)))) < len(runs):
        raise ValueError(f"a run is given twice: {', '.join(ids)}")
    fingerprint = check_same_split(runs)
    common = [m for m in runs[0].per_user.columns if m != "user" and all(m in r.per_user.columns for r in runs[1:])]
    if metrics:
        unknown = [m for m in metrics if m not in common]
        if unknown:
            raise ValueError(f"--metric {', '.join(unknown)}: not stored by every run; common metrics: {common}")
        common = list(metrics)
    if not common:
        raise ValueError("the runs share no per-user metric")
    comparison = Comparison(
        part=part,
        fingerprint=fingerprint,
        runs=[
            {"id": r.id, "short_id": short_id(r.id), "model": r.model, "path": str(r.path), "n_users": len(r.per_user)}
            for r in runs
        ],
        metrics=common,
        alpha=alpha,
        n_boot=n_boot,
    )
    base = runs[0].per_user.set_index("user")
    for metric in common:
        rows = [
            {
                "metric": metric,
                "run": runs[0].id,
                "short_id": short_id(runs[0].id),
                "model": runs[0].model,
                "reference": True,
                "value": float(np.nanmean(base[metric].to_numpy(dtype=np.float64))),
                "n_users": int(base[metric].notna().sum()),
            }
        ]
        for other in runs[1:]:
            paired = (
                runs[0]
                .per_user[["user", metric]]
                .merge(other.per_user[["user", metric]], on="user", how="inner", suffixes=("", "_other"))
            )
            paired = paired.dropna()
            a = paired[metric].to_numpy(dtype=np.float64)
            b = paired[f"{metric}_other"].to_numpy(dtype=np.float64)
            d = b - a
            low, high = bootstrap_ci(d, n_boot=n_boot, seed=seed)
            p_t, p_w = paired_tests(d)
            values = other.per_user[metric].to_numpy(dtype=np.float64)
            rows.append(
                {
                    "metric": metric,
                    "run": other.id,
                    "short_id": short_id(other.id),
                    "model": other.model,
                    "reference": False,
                    "value": float(np.nanmean(values)),
                    "n_users": len(d),
                    "diff": float(d.mean()) if len(d) else math.nan,
                    "ci_low": low,
                    "ci_high": high,
                    "p_ttest": p_t,
                    "p_wilcoxon": p_w,
                }
            )
        for test in ("p_ttest", "p_wilcoxon"):
            for row, adjusted in zip(rows[1:], holm([r[test] for r in rows[1:]]), strict=True):
                row[f"{test}_holm"] = adjusted
        for row in rows[1:]:
            row["significant"] = bool(max(row["p_ttest_holm"], row["p_wilcoxon_holm"]) < alpha)
        comparison.rows.extend(rows)
    return comparison
