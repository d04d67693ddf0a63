"""How the label-free flow warp loss (FWL) ranks flow networks compared with the labelled AEE.

    python experiments/analysis/fwl_vs_aee.py outputs/flow/runs/<stamp> [outputs/flow/runs/<stamp2> ...]

Reads each run's CSV log (``logger=csv``: ``<run>/csv/metrics.csv``) and prints, per validation epoch, ``val/aee``
``val/fwl`` and ``val/loss`` (every epoch's weights are one network to rank), then the Spearman rank correlations of
``val/aee`` with ``val/fwl`` and with ``val/loss`` over the epochs of each run and of all runs given, and each run's
test AEE ratio and test FWL. A correlation near -1 for FWL (near +1 for the loss) means it picks the same networks
as a lower AEE; ``--from-epoch`` leaves out the first epochs (ranking trained networks only).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
from pathlib import Path


def validation_rows(run_dir: Path) -> list[dict[str, float]]:
    """The epochs of ``run_dir/csv/metrics.csv`` that logged both ``val/aee`` and ``val/fwl``, in order: dicts with
    ``epoch``, ``aee``, ``fwl``, ``loss``."""
    path = run_dir / "csv" / "metrics.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: no CSV log (train the run with logger=csv)")
    rows = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if row.get("val/aee") and row.get("val/fwl"):
                rows.append({"epoch": int(float(row["epoch"])), "aee": float(row["val/aee"]),
                             "fwl": float(row["val/fwl"]), "loss": float(row.get("val/loss") or "nan")})
    return rows


def ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    """Spearman's rank correlation of two equally long sequences (NaN for fewer than 2 values)."""
    if len(a) < 2:
        return math.nan
    ra, rb = ranks(a), ranks(b)
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories trained with logger=csv")
    parser.add_argument("--from-epoch", type=int, default=0, help="first epoch ranked (default: all)")
    args = parser.parse_args()
    all_aee, all_fwl, all_loss = [], [], []
    for run in args.runs:
        rows = [r for r in validation_rows(run) if r["epoch"] >= args.from_epoch]
        print(f"== {run}")
        print(f"{'epoch':>5} {'val/aee':>8} {'val/fwl':>8} {'val/loss':>9}")
        for row in rows:
            print(f"{row['epoch']:>5} {row['aee']:>8.4f} {row['fwl']:>8.4f} {row['loss']:>9.4f}")
        aee, fwl, loss = [r["aee"] for r in rows], [r["fwl"] for r in rows], [r["loss"] for r in rows]
        print(f"Spearman over {len(rows)} epochs: (val/aee, val/fwl) {spearman(aee, fwl):+.3f}, "
              f"(val/aee, val/loss) {spearman(aee, loss):+.3f}")
        metrics_path = run / "metrics.json"
        if metrics_path.is_file():
            metrics = json.loads(metrics_path.read_text())
            ratio = metrics.get("test/aee", math.nan) / metrics.get("test/aee_zero", math.nan)
            print(f"test: AEE ratio {ratio:.4f}, FWL {metrics.get('test/fwl', math.nan):.4f}")
        all_aee += aee
        all_fwl += fwl
        all_loss += loss
    if len(args.runs) > 1:
        print(f"Spearman over all {len(all_aee)} epochs: (val/aee, val/fwl) {spearman(all_aee, all_fwl):+.3f}, "
              f"(val/aee, val/loss) {spearman(all_aee, all_loss):+.3f}")


if __name__ == "__main__":
    main()
