"""Issue 9: do |P&L| sample weights beat unweighted training? ES, demo profile, two seeds, on the
planted-edge and the null market (rooney sample-data --edge 1 / --edge 0 into /tmp/s9/edge and
/tmp/s9/null). Prints the holdout veto-on backtest, PSR, DSR, AUC and the CV objective."""
import time
from pathlib import Path

from rooney_core.config import load_config
from rooney_core.training.candidates import extract_candidates
from rooney_core.training.config import load_training_config
from rooney_core.training.train import Market, train_veto_model
from rooney_pipeline.cli import _bars_and_features

cfg = load_config()
for market in ("edge", "null"):
    data = Path(f"/tmp/s9/{market}")
    hourly, feats = _bars_and_features(cfg, data, "ES")
    cands = extract_candidates(hourly, feats, cfg.instrument("ES"), cfg.strategy)
    for seed in (42, 7):
        for w in ("none", "abs_pnl"):
            tcfg = load_training_config(cfg.config_dir, "ES", "demo").model_copy(update={"sample_weight": w, "seed": seed})
            t0 = time.time()
            r = train_veto_model(cands, "ES", tcfg, Market(hourly, feats, cfg.instrument("ES"), cfg.strategy),
                                 Path(f"/tmp/s9/sw/{market}-{w}-{seed}.journal"))
            m = r.metrics
            print(f"{market} seed {seed} weight {w:8}: holdout veto-on Sharpe {m['selected']['sharpe']:.2f} "
                  f"({m['selected']['trades']} trades, net {m['selected']['net_pnl']:,.0f}) veto-off {m['all']['sharpe']:.2f} "
                  f"PSR {m['psr_vs_zero']:.3f} DSR {m['deflated_sharpe']:.3f} AUC {m['auc']:.3f} cv {m['cv_objective']:.2f} "
                  f"[{time.time()-t0:.0f} s]", flush=True)
