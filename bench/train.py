"""P4: the veto-model search, lever by lever, on the same candidates, trials budget and seed,
in the same run, against the unpruned full-forest search.

    uv run --frozen python bench/train.py [--trials 50] [--symbol ES] [--quick]

Each variant runs ``--trials`` trials of the walk-forward objective of configs/training
(defaults + the instrument's file) in a fresh in-memory study, then picks the model as
training does (``select_params``: the best trial whose value is its full forest's, scored
again). Its objective is that full-forest value: the objective of the model it would ship.
"reference" is the unpruned, full-forest search (each forest on all cores: the same trees as
on one core).

Levers measured:
- pruning across folds (Optuna's MedianPruner, or successive halving);
- fewer trees while a trial may be pruned (``search_trees``: the first trees of its full
  forest), the survivors that could still be the best grown to their full forests
  (``grow_startup``, ``grow_sigmas``: the production settings), or every survivor grown;
- max_samples: the cost of one forest at the search space's low and high end;
- instruments in parallel processes (not with ``--no-parallel``): the production settings on
  two instruments at once, one core each, against one instrument on two cores.
Reused fold matrices are not a lever here: everything outside scikit-learn's fit and predict
(slicing the folds, choosing thresholds, daily P&L) is under 1% of a trial (cProfile).
An earlier design, small forests throughout and the best 3 trials re-scored with full forests,
was measured on 2026-11-30 (bench/README.md): 2.7-2.9% below the reference, so not kept.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import peak_rss_mb, sample_bars_and_features  # noqa: E402

RANGE = "2010-01-01:2024-12-31"


def prepare(symbol: str, date_range: str, trials: int):
    from rooney_core.features import REGISTRY
    from rooney_core.training.candidates import extract_candidates
    from rooney_core.training.config import load_training_config, training_features
    from rooney_core.training.splits import split_holdout, walk_forward_folds
    from rooney_core.training.train import usable_rows
    from rooney_core.training.tuning import TradeSet

    cfg, inst, hourly, _, feats = sample_bars_and_features(symbol, date_range)
    cands = extract_candidates(hourly, feats, inst, cfg.strategy)
    base = load_training_config(cfg.config_dir, symbol).model_copy(update={"trials": trials})
    names = training_features(base, REGISTRY.names())
    rows = usable_rows(cands, names)
    train, _, _ = split_holdout(rows, base.holdout_years, base.embargo_days, inst.calendar)
    folds = walk_forward_folds(train, base.folds, base.embargo_days)
    return base, TradeSet.from_frame(train, names, inst.calendar), folds, names


def search(base, data, folds, label: str, **overrides) -> dict:
    """One variant: the search, then the full-forest re-score of its best trials."""
    import optuna

    from rooney_core.training.tuning import create_study, make_objective, run_trials, select_params

    pruning = overrides.pop("pruning", True)
    tcfg = base.model_copy(update=overrides)
    study = create_study(tcfg, optuna.storages.InMemoryStorage(), f"bench-{label}", pruning=pruning)
    t0 = time.perf_counter()
    run_trials(study, make_objective(data, folds, tcfg), tcfg.trials,
               progress=lambda m: print(f"  {label}: {m}", flush=True)
               if m.split()[1].split("/")[0] in {"1", "25", str(tcfg.trials)} else None)
    t_search = time.perf_counter() - t0
    chosen = select_params(study, data, folds, tcfg)  # training's choice (and its cross-validation)
    objective, trial = chosen.objective, chosen.trial
    assert abs(objective - study.trials[trial].value) < 1e-9, "a full-forest value that is not the full forest's"
    total = time.perf_counter() - t0
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    grown = sum(bool(t.user_attrs.get("full_forest")) for t in study.trials
                if t.state == optuna.trial.TrialState.COMPLETE)
    row = {"variant": label, "search_s": t_search, "total_s": total, "search_best": study.best_value,
           "objective": objective, "trial": trial + 1, "pruned": pruned, "full_forest_trials": grown,
           "params": {k: study.trials[trial].params[k] for k in study.trials[trial].params}}
    print(f"{label}: search {t_search:.0f} s + the choice's cross-validation {total - t_search:.0f} s; objective "
          f"{objective:.3f} (trial {trial + 1}), {pruned} pruned, {grown} completed with full forests", flush=True)
    return row


def one_instrument(symbol: str, trials: int, cores: int) -> None:
    """(child) The production settings on one instrument with ``cores`` cores; JSON out."""
    base, data, folds, _ = prepare(symbol, RANGE, trials)
    row = search(base, data, folds, f"{symbol} ({cores} core)", n_jobs=cores)
    print(json.dumps({**row, "peak_rss_mb": peak_rss_mb()}))


def forest_seconds(data, folds, base, max_samples: float, trees: int) -> float:
    from rooney_core.training.tuning import fit_forest

    train = data.take(folds[-1].train)
    params = {"n_estimators": trees, "max_depth": None, "min_samples_leaf": 50, "max_features": 0.3,
              "max_samples": max_samples, "class_weight": None}
    t0 = time.perf_counter()
    fit_forest(params, base.seed, base.n_jobs, train.x, train.win)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=50)
    ap.add_argument("--symbol", default="ES")
    ap.add_argument("--pair-symbol", default="NQ", help="the second instrument of --parallel")
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="the reference and the production settings only")
    ap.add_argument("--no-parallel", action="store_true")
    ap.add_argument("--try", dest="try_", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                    help="an extra variant: training settings over the production ones, e.g. grow_sigmas=0.5")
    ap.add_argument("--one", nargs=2, metavar=("SYMBOL", "CORES"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.one:
        one_instrument(a.one[0], a.trials, int(a.one[1]))
        return

    base, data, folds, names = prepare(a.symbol, RANGE, a.trials)
    base = base.model_copy(update={"n_jobs": a.cores})
    print(f"input: {a.symbol}, {len(data.win):,} training candidates (before the holdout) x {len(names)} "
          f"features; {len(folds)} folds; {a.trials} trials; seed {base.seed}; production settings: pruner "
          f"{base.pruner.kind}, search_trees {base.search_trees}, grow_startup {base.grow_startup}, grow_sigmas "
          f"{base.grow_sigmas}", flush=True)

    ms = base.search_space.max_samples
    costs = {f"700 trees, max_samples {m}": forest_seconds(data, folds, base, m, 700) for m in (ms.low, ms.high)}
    costs[f"175 trees, max_samples {ms.high}"] = forest_seconds(data, folds, base, ms.high, 175)
    for k, v in costs.items():
        print(f"one forest on the last fold's {len(folds[-1].train):,} rows, {a.cores} cores: {k}: {v:.2f} s",
              flush=True)

    rows = [search(base, data, folds, "reference: no pruning, full forests", pruning=False, search_trees=1.0)]
    if not a.quick:
        rows.append(search(base, data, folds, "median pruning, full forests", search_trees=1.0))
        rows.append(search(base, data, folds, "successive halving, full forests", pruner=base.pruner.model_copy(
            update={"kind": "successive_halving"}), search_trees=1.0))
        rows.append(search(base, data, folds, "median, 1/4 trees to prune, all grown", search_trees=0.25,
                           grow_startup=a.trials))
    rows.append(search(base, data, folds, "production settings (defaults.yml)"))
    for spec in a.try_:
        over = {k: json.loads(v) for k, v in (kv.split("=", 1) for kv in spec.split(","))}
        rows.append(search(base, data, folds, spec, **over))

    parallel = None
    if not a.no_parallel:
        script = str(Path(__file__).resolve())
        t0 = time.perf_counter()
        procs = [subprocess.Popen([sys.executable, script, "--trials", str(a.trials), "--one", s, "1"],
                                  stdout=subprocess.PIPE, text=True) for s in (a.symbol, a.pair_symbol)]
        outs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        wall = time.perf_counter() - t0
        prod = next(r for r in rows if r["variant"].startswith("production"))["total_s"]
        parallel = {"wall_s": wall, "per_instrument_s": wall / 2, "children": outs, "sequential_one_s": prod}
        print(f"parallel: {a.symbol} and {a.pair_symbol} at once, 1 core each: {wall:.0f} s wall, "
              f"{wall / 2:.0f} s per instrument (vs {prod:.0f} s for {a.symbol} alone on {a.cores} cores)")

    ref = rows[0]["objective"]
    print(f"\nP4 tuning: {a.symbol}, {len(data.win):,} training candidates x {len(names)} features, {a.trials} "
          f"trials x {len(folds)} folds, {a.cores} cores; peak RSS {peak_rss_mb():.0f} MB")
    print("target: < 150 s per instrument, objective within 1% of the unpruned full-forest search (same run)")
    print(f"{'variant':<42}{'search s':>9}{'total s':>9}{'pruned':>8}{'full':>6}"
          f"{'objective':>11}{'vs ref':>8}{'speed-up':>10}")
    for r in rows:
        print(f"{r['variant']:<42}{r['search_s']:>9.0f}{r['total_s']:>9.0f}{r['pruned']:>8}{r['full_forest_trials']:>6}"
              f"{r['objective']:>11.3f}{(r['objective'] / ref - 1) * 100:>+7.1f}%"
              f"{rows[0]['search_s'] / r['search_s']:>9.2f}x")
    print("speed-up: of the search (50 trials); total adds the chosen trial's cross-validation, which training "
          "needs anyway (the deflated Sharpe's daily P&L)")
    if parallel:
        print(f"{'production, 2 instruments in 2 processes':<42}{'':>9}{parallel['per_instrument_s']:>9.0f}"
              f"{'':>8}{'':>16}" + "".join(f"  {c['variant']} {c['objective']:.3f}" for c in parallel["children"]))


if __name__ == "__main__":
    main()
