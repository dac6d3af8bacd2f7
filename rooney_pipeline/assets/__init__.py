"""Assets by stage: bars (data gate and session bars), features, validation, trades, models, portfolio, live,
monitoring."""

from rooney_pipeline.assets.bars import raw_bars, session_bars
from rooney_pipeline.assets.features import features
from rooney_pipeline.assets.live import paper_trading
from rooney_pipeline.assets.models import paper_stage, promoted_manifest, veto_model
from rooney_pipeline.assets.monitoring import model_monitoring
from rooney_pipeline.assets.portfolio import portfolio_backtest, portfolio_config
from rooney_pipeline.assets.trades import candidate_trades, instrument_backtest, trade_reconciliation
from rooney_pipeline.assets.validation import feature_validation

ASSETS = [raw_bars, session_bars, features, feature_validation, candidate_trades, instrument_backtest,
          trade_reconciliation, veto_model, promoted_manifest, paper_stage, paper_trading, portfolio_config,
          portfolio_backtest, model_monitoring]
