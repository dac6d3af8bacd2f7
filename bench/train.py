"""P4: the veto-model search, with and without pruning and parallelism, on the same
candidates, the same trials budget and seed, in the same run.

    uv run --frozen python bench/train.py [--trials 50] [--symbol ES]

"with": MedianPruner across folds + each forest on all cores (n_jobs=2 here);
"without": no pruning, one core. Both run the full walk-forward objective of
configs/training (defaults + the instrument's file), fresh in-memory studies.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import sample_bars_and_features  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--symbol", default="ES")
    ap.add_argument("--range", default="2010-01-01:2024-12-31")
    ap.add_argument("--cores", type=int, default=2)
    a = ap.parse_args()

    import optuna

    from rooney_core.features import REGISTRY
    from rooney_core.training.candidates import extract_candidates
    from rooney_core.training.config import load_training_config, training_features
    from rooney_core.training.splits import split_holdout, walk_forward_folds
    from rooney_core.training.train import usable_rows
    from rooney_core.training.tuning import TradeSet, create_study, make_objective, run_trials

    cfg, inst, hourly, _, feats = sample_bars_and_features(a.symbol, a.range)
    cands = extract_candidates(hourly, feats, inst, cfg.strategy)
    base = load_training_config(cfg.config_dir, a.symbol).model_copy(update={"trials": a.trials})
    names = training_features(base, REGISTRY.names())
    rows = usable_rows(cands, names)
    train, _, _ = split_holdout(rows, base.holdout_years, base.embargo_days, inst.calendar)
    folds = walk_forward_folds(train, base.folds, base.embargo_days)
    data = TradeSet.from_frame(train, names, inst.calendar)
    print(f"input: {len(cands):,} candidates ({len(train):,} before the holdout) x {len(names)} features; "
          f"{base.folds} folds; {a.trials} trials; seed {base.seed}", flush=True)

    results = {}
    for label, pruning, cores in (("with pruning + parallel forests", True, a.cores),
                                  ("without (no pruning, 1 core)", False, 1)):
        tcfg = base.model_copy(update={"n_jobs": cores})
        study = create_study(tcfg, optuna.storages.InMemoryStorage(), f"bench-{label}", pruning=pruning)
        t0 = time.perf_counter()
        run_trials(study, make_objective(data, folds, tcfg), a.trials,
                   progress=lambda m: print("  " + m, flush=True) if m.startswith("trial") and
                   m.split()[1].split("/")[0] in {"1", "10", "25", "50"} else None)
        secs = time.perf_counter() - t0
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
        results[label] = (secs, study.best_value, pruned)
        print(f"{label}: {secs:.0f} s, best objective {study.best_value:.3f}, {pruned} pruned", flush=True)

    print(f"\nP4 tuning: {a.symbol}, {len(train):,} training candidates x {len(names)} features, {a.trials} trials x "
          f"{base.folds} folds; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    print("target: < 3 min per instrument; pruning + parallelism >= 3x faster at an equal or better objective")
    (w_s, w_v, w_p), (o_s, o_v, _) = results.values()
    for label, (s, v, p) in results.items():
        print(f"{label:<36}{s:>8.0f} s   best {v:.3f}   pruned {p}")
    print(f"speed-up {o_s / w_s:.2f}x; objective with {w_v:.3f} vs without {o_v:.3f}")


if __name__ == "__main__":
    main()
