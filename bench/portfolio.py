"""P8: a portfolio backtest of 6 instruments x 15 years of hourly bars (target < 30 s), and
the portfolio optimisation: 50 trials on the training period (13 of the 15 years) in under
5 minutes on 2 cores.

Sample data (hourly bars straight from the generator, cached under bench/out/), features and
labelled signals (the lake's candidates, for the skipped entries' counterfactual P&L)
computed once (not timed), then ``run_portfolio`` timed with every rule off and with the
rules on (max positions, correlation filter, daily loss and drawdown stops, sizes), each in
the median of ``--repeat`` runs.

    uv run --frozen python bench/portfolio.py [--years 15] [--repeat 3] [--trials 50] [--n-jobs 2]

The optimisation runs as `rooney portfolio optimise` does (configs/training/portfolio.yml,
``train_entries: base``, no models here: sample data has none), timed end to end: preparing
the inputs, the trials in ``--n-jobs`` processes, and the chosen rules' training and holdout
runs.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import time
from pathlib import Path

SYMBOLS = ["ES", "NQ", "GC", "SI", "CL", "NG"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--years", type=int, default=15)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--trials", type=int, default=50, help="0 skips the optimisation")
    ap.add_argument("--n-jobs", type=int, default=2)
    a = ap.parse_args()

    from rooney_core.config import load_config
    from rooney_core.data import csv_path, load_session_bars
    from rooney_core.features import REGISTRY, instrument_inputs
    from rooney_core.portfolio import PortfolioRules, run_portfolio
    from rooney_core.sample_market import load_sample_market, write_sample_data

    cfg = load_config()
    start, end = f"{2024 - a.years + 1}-01-01", "2024-12-31"
    out = Path(__file__).resolve().parent / "out" / f"portfolio_{start}_{end}_60min"
    if not all(csv_path(out, s).is_file() for s in SYMBOLS):
        print(f"generating {a.years} years of hourly sample bars for {', '.join(SYMBOLS)} ...", flush=True)
        write_sample_data(out, SYMBOLS, start, end, seed=8, edge=1.0, cfg=cfg,
                          market=load_sample_market(cfg.config_dir), interval_minutes=60)
    hourly = {s: load_session_bars(out, cfg.instrument(s)).hourly for s in SYMBOLS}
    feats = {s: REGISTRY.compute(instrument_inputs(cfg, s, hourly[s], hourly[cfg.instrument(s).pair]))
             for s in SYMBOLS}
    from rooney_core.training.candidates import label_signals

    labels = {s: label_signals(hourly[s], feats[s], cfg.instrument(s), cfg.strategy) for s in SYMBOLS}  # the lake's
    bars = sum(len(h) for h in hourly.values())
    print(f"input: {len(SYMBOLS)} instruments, {bars:,} hourly bars ({start} .. {end})", flush=True)
    inst = {s: cfg.instrument(s) for s in SYMBOLS}
    cases = {"rules off": PortfolioRules.off(),
             "rules on": PortfolioRules(max_positions=3, corr_rho=0.6, corr_window=120, daily_loss_stop=1500.0,
                                        max_drawdown_stop=50_000.0, contracts={"ES": 2})}
    for name, rules in cases.items():
        secs, res = [], None
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            res = run_portfolio(hourly, feats, inst, cfg.strategy, rules, labels=labels)
            secs.append(time.perf_counter() - t0)
        print(f"P8 {name}: median {statistics.median(secs):.1f} s of {a.repeat} (min {min(secs):.1f}, max "
              f"{max(secs):.1f}); {len(res.trades):,} trades, {len(res.skipped):,} skipped, net "
              f"{res.net_pnl:,.0f} $; {bars / statistics.median(secs):,.0f} instrument-bars/s", flush=True)
    print(f"target: < 30 s; peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    if a.trials:
        from rooney_core.portfolio.config import load_search
        from rooney_core.portfolio.optimise import PortfolioMarket, optimise

        search = load_search(cfg.config_dir, {"trials": a.trials, "n_jobs": a.n_jobs})
        market = PortfolioMarket(hourly, feats, inst, cfg.strategy, {s: None for s in SYMBOLS},
                                 {s: None for s in SYMBOLS}, labels=labels)
        t0 = time.perf_counter()
        opt = optimise(market, search, progress=lambda m: None)
        secs = time.perf_counter() - t0
        trial_secs = [(t.datetime_complete - t.datetime_start).total_seconds() for t in opt.study.trials]
        print(f"optimisation: {a.trials} trials in {secs:.0f} s with {a.n_jobs} processes (target < 300 s); "
              f"median trial {statistics.median(trial_secs):.1f} s (as Optuna saw it, batches of {a.n_jobs}); "
              f"training period {opt.config.train.start[:10]} .. {opt.config.train.end[:10]}; best Sharpe "
              f"{opt.config.objective['value']:.2f} (trial {opt.config.objective['trial']}), holdout Sharpe "
              f"{opt.summary['sharpe']:.2f}", flush=True)


if __name__ == "__main__":
    main()
