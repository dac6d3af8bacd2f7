"""The live engine: minute bars in, decisions, orders and a prediction log out, for several
instruments in one process, on the same decision core as the backtest.

Per closed hourly bar of a traded instrument, in this order (the backtest's order):

1. the order placed at the previous bar's close fills at this bar's open plus slippage (the
   paper broker, which also keeps the books when orders are routed to a webhook);
2. at a session's first bar, a newly promoted model version is picked up if the instrument
   is flat (never during an open position's life);
3. the decision core decides at the bar's close with the buffer's feature row;
4. every new decision goes to the prediction log (fsynced) and the state is written
   atomically; only then does an order leave the process (paper, or the router unless the
   kill switch forces paper).

Start and restart are one path: the feature buffers warm up from history bars (the raw files
or the lake) up to the start of the session to resume in, the minutes from that session
start are replayed through the bar builders, and the decision core, restored from the state
file, decides only bars after the last one it decided. So after ``kill -9`` at any instant
the engine resumes at the next bar: no order twice (client order ids are deterministic and
the state says which were sent), no position lost, and no prediction-log record twice (the
records written after the last state write are remembered and not written again when the
redone bars decide them again).

What the engine meets on the way is logged (logger ``rooney_core.live.engine``) with the
instrument and the bar, and kept as the instrument's ``last_error`` for `rooney live status`:
bad minutes and feed problems; a gap (in-session hours with no bar between two closed hours,
whole sessions included); a pair whose feed went stale (its features are then missing, as in
the backtest); history too short for the features an instrument decides with (no entries
until they are warm). None of these changes a decision: the engine decides on the bars it
has exactly as the backtest does on the same bars.

The heartbeat (``heartbeat.json``, written atomically, at most every ``heartbeat_every``
seconds) advances with every feed item the engine takes, so a healthy engine between hourly
bars does not look stale.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rooney_core.backtest.runner import TRADE_CSV_COLUMNS
from rooney_core.config import RooneyConfig
from rooney_core.errors import RooneyError
from rooney_core.io import write_text_atomic
from rooney_core.live.bars import (
    HOURLY,
    BadBarError,
    ClosedBar,
    SessionBarBuilder,
    drive,
    missing_session_hours,
)
from rooney_core.live.features import FeatureBuffer
from rooney_core.live.feeds import FeedItem, FeedProblem, MinuteBar
from rooney_core.live.paper import PaperBroker
from rooney_core.live.predictions import open_log
from rooney_core.live.router import OrderNotDelivered, OrderRouter, RoutedOrder
from rooney_core.model import ModelStore, VetoBundle
from rooney_core.strategy import rules
from rooney_core.strategy.engine import BUY, DecisionCore, OrderIntent, bar_start_time
from rooney_core.strategy.models import RowVeto

log = logging.getLogger(__name__)

STATE_FILE = "state.json"
TRADES_FILE = "trades.csv"
HEARTBEAT_FILE = "heartbeat.json"


def kill_switch_on(cfg_value: bool = False) -> bool:
    """POLICY_KILLSWITCH=true in the environment (or the config) forces paper trading."""
    return cfg_value or os.environ.get("POLICY_KILLSWITCH", "").strip().lower() in ("1", "true", "yes", "on")


def _ts(v: Any) -> str:
    return str(np.datetime64(v, "s")).replace("T", " ")


@dataclass
class ModelSlot:
    """The veto model an instrument trades with, and where it came from. ``stage`` "paper":
    the manifest's paper stage (the instrument trades it on paper only)."""

    version: str | None
    sha256: str | None
    bundle: VetoBundle | None
    stage: str = "production"

    @property
    def veto(self) -> RowVeto | None:
        b = self.bundle
        return None if b is None else RowVeto(b.estimator, b.feature_names, b.threshold)


@dataclass
class InstrumentState:
    symbol: str
    core: DecisionCore
    broker: PaperBroker
    buffer: FeatureBuffer
    model: ModelSlot
    last_decided: np.datetime64 | None = None
    session: np.datetime64 | None = None  # trading date of the last decided bar
    sent: set[str] = field(default_factory=set)  # client order ids delivered
    last_error: str | None = None
    disabled: str | None = None  # why it takes no new entries
    warming: str | None = None  # features it decides with that lack their declared history
    pair_stale: bool = False  # the pair's last bar is older than pair_max_staleness
    logged: int = 0  # core decisions already written to the prediction log
    trades_written: int = 0
    rows: list[tuple[np.datetime64, np.ndarray]] = field(default_factory=list)  # with record_rows
    health: str | None = None  # why the model-health kill switch holds it on paper (monitoring)


class LiveEngine:
    """Trades (or paper-trades) ``symbols`` from one feed; see the module docstring."""

    def __init__(self, cfg: RooneyConfig, symbols: list[str], store: ModelStore, state_dir: str | os.PathLike[str],
                 *, paper: bool = True, router: OrderRouter | None = None, kill_switch: bool = False,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 models: dict[str, str | VetoBundle | ModelSlot] | None = None, record_rows: bool = False,
                 persist: bool = True, heartbeat_every: float = 5.0, gap_hours: int = 1,
                 portfolio: Any = "production"):
        if len(set(symbols)) != len(symbols) or not symbols:
            raise RooneyError(f"live: give each instrument once (got {symbols})")
        self.cfg, self.symbols, self.store = cfg, list(symbols), store
        self.state_dir = Path(state_dir)
        self.kill_switch = kill_switch_on(kill_switch)
        self.paper = paper or self.kill_switch
        if not self.paper and router is None:
            raise RooneyError("live mode needs an order router (or --paper)")
        self.router = router
        self.clock = clock
        # the state dir's JSON segments, or PostgreSQL when $ROONEY_PREDICTION_LOG_URL is set
        self.log = open_log(self.state_dir / "predictions", writer=f"engine-{socket.gethostname()}-{os.getpid()}")
        self.instruments: dict[str, InstrumentState] = {}
        self.builders: dict[str, SessionBarBuilder] = {}
        # symbol -> a stored version (or, for the parity gate of a version being made, the
        # bundle itself) to use instead of production
        self.models = dict(models or {})
        self.record_rows = record_rows  # keep every decided bar's feature row (the parity gate)
        self.persist = persist  # write the state after every bar (a parity replay needs none)
        self.heartbeat: str | None = None
        self.heartbeat_every = float(heartbeat_every)  # seconds of the clock between heartbeat writes
        self._beat_at: datetime | None = None  # last heartbeat written
        self.feed_items = 0  # feed items taken (bars and problems)
        self.gap_hours = int(gap_hours)  # missing in-session hours that make a gap worth a warning
        self.problems = 0
        self.decide_from = np.datetime64("1970-01-01T00:00:00")
        self._last_hour: dict[str, np.datetime64] = {}  # symbol -> its last closed hourly bar (ns)
        self._quiet_until = self.decide_from  # bars up to here were seen (and reported) before
        self._watch_entries: dict[tuple[str, str], dict | None] = {}  # (symbol, version) -> production entry
        # the portfolio rules: "production" (the store's production portfolio config, if any),
        # a PortfolioConfig, or None (every instrument on its own)
        self._portfolio_arg = portfolio
        self.portfolio = None  # the PortfolioConfig in force
        self.guard = None  # its PortfolioGuard over the instruments it names

    # -- start -----------------------------------------------------------------------------------
    def _load_model(self, symbol: str) -> ModelSlot:
        """The production version (sha256 checked against the manifest), or no model; or the
        version given in ``models`` (checked against versions.log)."""
        if symbol in self.models:
            chosen = self.models[symbol]
            if isinstance(chosen, ModelSlot):
                return chosen
            if isinstance(chosen, VetoBundle):
                return ModelSlot(f"{symbol} (unsaved candidate)", None, chosen)
            return ModelSlot(chosen, self.store.verify(chosen), self.store.load(chosen))
        paper = self.store.paper_entry(symbol)
        if paper is not None and paper.get("status") == "paper":
            # the paper stage: its version, sha256 checked against the manifest's paper entry
            name = paper["version"]
            if self.store.verify(name) != paper["sha256"]:
                raise RooneyError(f"{symbol}: {name} differs from the manifest's paper entry (sha256); refused")
            return ModelSlot(name, paper["sha256"], self.store.load(name), stage="paper")
        found = self.store.load_production(symbol)
        if found is None:
            return ModelSlot(None, None, None)
        name, bundle = found
        return ModelSlot(name, self.store.verify(name), bundle)

    def _watched(self, st: InstrumentState) -> bool:
        """The instrument's production version is in its first ``paper.watch_days`` days."""
        from rooney_core.model.staging import watched

        if st.model.stage != "production" or st.model.version is None:
            return False
        key = (st.symbol, st.model.version)
        if key not in self._watch_entries:  # read the manifest once per model, not per bar
            try:
                entry = self.store.production_entry(st.symbol)
            except RooneyError:
                entry = None
            self._watch_entries[key] = entry if entry and entry.get("version") == st.model.version else None
        entry = self._watch_entries[key]
        return entry is not None and watched(entry, self.cfg.validation.for_symbol(st.symbol).paper.watch_days,
                                             self.clock())

    def _paper_for(self, st: InstrumentState) -> bool:
        """Orders of this instrument stay in the process: paper mode, the kill switch, its
        model in the paper stage, or the model-health kill switch tripped for it."""
        return self.paper or st.model.stage == "paper" or st.health is not None

    def _read_health(self, st: InstrumentState) -> None:
        """The model-health kill switch's state for this instrument (``health.json`` in the
        model store, written by monitoring; back to live only by an audited restore). Read at
        start and at each session boundary."""
        from rooney_core.monitoring.health import HealthState, health_root

        try:
            entry = HealthState(health_root(self.store.root)).read().get("instruments", {}).get(st.symbol)
        except (RooneyError, OSError, ValueError) as err:
            # an unreadable switch is not "live": keep the instrument on paper and say why
            entry = {"mode": "paper", "reasons": [f"health state unreadable: {err}"]}
        held = None
        if entry and entry.get("mode") == "paper":
            held = "; ".join(entry.get("reasons") or ["tripped"])
        if held != st.health:
            if held:
                log.warning("%s: model-health kill switch: paper only (%s)", st.symbol, held)
                st.last_error = f"model-health kill switch: {held}"
            elif st.health is not None:
                self._say(st.symbol, "model-health kill switch restored: orders go out again")
            st.health = held

    def start(self, history: Callable[[str], tuple[pd.DataFrame, pd.DataFrame]], resume_from: Any) -> np.datetime64:
        """Load models and state, warm the buffers up from ``history(symbol) -> (hourly,
        daily)`` bars before the session to resume in, and return the time from which the
        feed's minutes must be replayed (that session's start)."""
        saved = self._read_state()
        resume = np.datetime64(pd.Timestamp(saved.get("decide_from") or resume_from), "s")
        self.decide_from = resume  # bars before it only warm the buffers
        decided = [np.datetime64(s["last_decided"], "s") for s in saved.get("instruments", {}).values()
                   if s.get("last_decided")]
        self._quiet_until = max([resume - np.timedelta64(1, "s"), *decided])
        if decided:
            resume = max(resume, min(decided))
        if self.persist:
            # records logged after the last state write are decided again: write them once
            state_path = self.state_dir / STATE_FILE
            self.log.remember(state_path.stat().st_mtime if saved and state_path.exists() else None)
        cal = {s: self.cfg.instrument(s).calendar for s in self.symbols}
        # replay from the start of the session that holds the resume point, for every instrument
        point = np.array([resume.astype("datetime64[ns]")])
        start = min(np.datetime64(cal[s].session_open(cal[s].trading_date(point))[0], "s") for s in self.symbols)
        needed = sorted({*self.symbols, *(self.cfg.instrument(s).pair for s in self.symbols
                                           if self.cfg.instrument(s).pair)})
        frames = {s: history(s) for s in needed}
        for s in needed:
            self.builders[s] = SessionBarBuilder(s, self.cfg.instrument(s).calendar, self.cfg.pipeline.data.repairs)
        as_of = pd.Timestamp(start)
        for s in needed:  # where each feed's bars go on (a gap across the restart shows)
            before = frames[s][0].index[frames[s][0].index < as_of]
            if len(before):
                self._last_hour[s] = np.datetime64(before[-1].to_datetime64(), "ns")
        for s in self.symbols:
            inst = self.cfg.instrument(s)
            buf = FeatureBuffer.for_instrument(self.cfg, s)
            hourly, daily = frames[s]
            pair_hourly = frames[inst.pair][0] if inst.pair else None
            buf.warm_up(hourly[hourly.index < as_of], daily, pair_hourly[pair_hourly.index < as_of]
                        if pair_hourly is not None else None, as_of=as_of)
            disabled = None
            try:
                slot = self._load_model(s)
            except RooneyError as err:  # a missing or tampered bundle: this instrument takes no entries
                slot, disabled = ModelSlot(None, None, None), f"model refused: {err}"
                log.error("%s: %s; no new entries (open positions are still managed)", s, disabled)
            core = DecisionCore(self.cfg.strategy, inst, buf.names, slot.veto)
            st = InstrumentState(s, core, PaperBroker(inst), buf, slot, disabled=disabled, last_error=disabled)
            mine = saved.get("instruments", {}).get(s)
            if mine:
                self._restore(st, mine)
            self._read_health(st)
            self.instruments[s] = st
            self._say(s, f"model {slot.version or 'none'}"
                         + (f" (sha256 {slot.sha256[:12]})" if slot.sha256 else f" ({self.cfg.strategy.veto.when_no_model})")
                         + (f"; resuming after {_ts(st.last_decided)}" if st.last_decided is not None else ""))
            cold = self._cold(st, buf.warming_up())
            if cold:
                held = buf.held()
                st.warming = f"warming up: {', '.join(cold)}"
                st.last_error = st.last_error or f"history too short: {st.warming}"
                log.warning("%s: history too short for the declared warm-up of the features it decides with "
                            "(holds %d hourly bars and %d sessions before %s; need %s): %s not warm; no new "
                            "entries until they are", s, held["hourly"], held["daily"], _ts(start),
                            _declared(buf, cold), ", ".join(cold))
        self._start_portfolio(frames, as_of, saved.get("portfolio"))
        if self.kill_switch:
            log.warning("POLICY_KILLSWITCH is on: paper trading; no order leaves this process")
        self._write_state()  # `rooney live status` answers from the start (the same state, or the first)
        return start

    def _start_portfolio(self, frames: dict, as_of: pd.Timestamp, saved: dict | None) -> None:
        """The portfolio rules in force (see ``__init__``'s ``portfolio``) over the instruments
        this engine trades that the config names; the correlation window warms up from the
        history bars, the account state comes back from the engine state."""
        from rooney_core.portfolio import deploy
        from rooney_core.portfolio.guard import PortfolioGuard

        config = self._portfolio_arg
        if isinstance(config, str) and config == "production":
            try:
                config = deploy.production(self.store)
            except RooneyError as err:
                raise RooneyError(f"the production portfolio config is refused: {err}") from None
        if config is None:
            return
        guarded = [s for s in self.symbols if s in config.symbols]
        outside = [s for s in self.symbols if s not in config.symbols]
        if not guarded:
            log.warning("portfolio %s names none of %s: every instrument trades on its own", config.version,
                        ", ".join(self.symbols))
            return
        if outside:
            log.warning("portfolio %s does not name %s: those trade outside its rules", config.version,
                        ", ".join(outside))
        for flag in deploy.flags(self.store, config) if config.version else []:
            log.warning("portfolio %s: %s (re-optimise on the production models)", config.version, flag)
        self.portfolio = config
        self.guard = PortfolioGuard(config.rules.rules(), {s: self.cfg.instrument(s) for s in guarded},
                                    {s: self.instruments[s].core for s in guarded}, config.capital)
        self.guard.warm({s: frames[s][0]["close"][frames[s][0].index < as_of] for s in guarded})
        if saved and saved.get("version") == config.version:
            self.guard.restore(saved["account"])
        elif saved:
            log.warning("portfolio %s replaces %s in the engine state: its account state starts afresh",
                        config.version, saved.get("version"))
        self._say(None, f"portfolio {config.version or '(unsaved)'} over {', '.join(guarded)}: "
                        f"{config.rules.model_dump(exclude_defaults=True)}")

    def _restore(self, st: InstrumentState, saved: dict) -> None:
        held = saved["core"].get("position") or saved["core"].get("pending")
        version = saved.get("model_version")
        if held and version != st.model.version:
            # an open position keeps the model it was entered with until it closes
            st.model = ModelSlot(version, self.store.verify(version), self.store.load(version),
                                 stage=saved.get("model_stage", "production")) if version \
                else ModelSlot(None, None, None)
            st.core.model = st.model.veto
        st.core.restore(saved["core"], trades=self._saved_trades(st, saved))
        st.broker.order = st.core.pending if saved.get("pending_unfilled") else None
        st.last_decided = np.datetime64(saved["last_decided"], "s") if saved.get("last_decided") else None
        st.session = np.datetime64(saved["session"], "D") if saved.get("session") else None
        st.sent = set(saved.get("sent", []))
        st.last_error = st.last_error or saved.get("last_error")
        st.trades_written = len(st.core.trades)
        st.logged = 0

    def _saved_trades(self, st: InstrumentState, saved: dict) -> list[dict] | None:
        """The closed trades of ``st`` before the restart: from its trades file (the state
        holds only their count), those that exited by the last bar the state recorded (a
        trade written just before a kill, whose bar the state never saw, is decided again)."""
        core = saved["core"]
        if core.get("trades") or not core.get("trades_count"):
            return None  # an older state with the trades in it, or none yet
        path = self.state_dir / f"{st.symbol}_{TRADES_FILE}"
        try:
            frame = pd.read_csv(path, dtype={"exit_reason": str})
        except FileNotFoundError:
            raise RooneyError(f"{path}: missing, but the engine state records {core['trades_count']} closed "
                              f"{st.symbol} trades; restore the file or start a new --state-dir") from None
        times = [c for c in frame.columns if c.endswith("_time")]
        for c in times:
            frame[c] = pd.to_datetime(frame[c])
        last = pd.Timestamp(saved["last_decided"]) if saved.get("last_decided") else None
        if last is not None:
            frame = frame[frame["exit_time"] <= last]
        rows = frame.to_dict("records")
        for r in rows:
            for c in times:
                r[c] = None if pd.isna(r[c]) else str(np.datetime64(r[c], "s"))
            if "probability" in r and r["probability"] != r["probability"]:
                r["probability"] = None
        if len(rows) < core["trades_count"]:
            raise RooneyError(f"{path}: holds {len(rows)} {st.symbol} trades, the engine state records "
                              f"{core['trades_count']}; the file was edited or lost lines")
        return rows[:core["trades_count"]]

    # -- state -----------------------------------------------------------------------------------
    def _read_state(self) -> dict:
        path = self.state_dir / STATE_FILE
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise RooneyError(f"{path}: the engine state is not valid JSON ({exc}); it is written atomically, "
                              "so this file was edited or damaged: restore it from backup") from None

    def _write_state(self) -> None:
        if not self.persist:
            return
        data = {"written_at": self.clock().isoformat(timespec="seconds"), "paper": self.paper,
                "decide_from": _ts(self.decide_from),
                "kill_switch": self.kill_switch, "heartbeat": self.heartbeat, "instruments": {}}
        for s, st in self.instruments.items():
            data["instruments"][s] = {
                "core": st.core.snapshot(with_trades=False), "pending_unfilled": st.broker.order is not None,
                "disabled": st.disabled,
                "last_decided": _ts(st.last_decided) if st.last_decided is not None else None,
                "session": str(st.session) if st.session is not None else None,
                "model_version": st.model.version, "model_sha256": st.model.sha256, "model_stage": st.model.stage,
                "watched": self._watched(st),
                "sent": sorted(st.sent), "last_error": st.last_error, "warming": st.warming,
                "health": st.health,
            }
        if self.guard is not None:
            data["portfolio"] = {"version": self.portfolio.version, "account": self.guard.snapshot()}
        write_text_atomic(json.dumps(data, indent=1, sort_keys=True, default=str), self.state_dir / STATE_FILE)

    def _write_trades(self, st: InstrumentState) -> None:
        """``<SYM>_trades.csv`` with exactly `rooney backtest`'s columns, and ``trades.csv``:
        the same for a one-instrument engine, every instrument's with a last ``symbol``
        column otherwise."""
        own = pd.DataFrame(st.core.trades, columns=TRADE_CSV_COLUMNS)
        write_text_atomic(own.to_csv(index=False), self.state_dir / f"{st.symbol}_{TRADES_FILE}")
        if len(self.instruments) == 1:
            write_text_atomic(own.to_csv(index=False), self.state_dir / TRADES_FILE)
        else:
            rows = [{**t, "symbol": s.symbol} for s in self.instruments.values() for t in s.core.trades]
            every = pd.DataFrame(rows, columns=[*TRADE_CSV_COLUMNS, "symbol"])
            write_text_atomic(every.to_csv(index=False), self.state_dir / TRADES_FILE)
        st.trades_written = len(st.core.trades)

    def _say(self, symbol: str | None, msg: str) -> None:
        log.info("%s: %s", symbol or "engine", msg)

    # -- running ---------------------------------------------------------------------------------
    def run(self, feed: Iterable[FeedItem], replay_from: np.datetime64, close_at_end: bool = False) -> None:
        """Consume the feed until it ends (minutes before ``replay_from`` are skipped). With
        ``close_at_end`` (a replayed file, which will get no more minutes) the last hour is
        closed when the feed ends, as the batch build closes a file's last hour."""
        self._last_minute = None
        self._beat_at = None  # the first feed item beats
        try:
            for _, closed in drive(self.builders, self._minutes(feed, replay_from), on_reject=self._rejected):
                self.on_closed(closed)
            if close_at_end and self._last_minute is not None:
                end = self._last_minute.astype("datetime64[h]") + np.timedelta64(1, "h")
                closed = [bar for b in self.builders.values() for bar in b.close_until(end)]
                if closed:
                    self.on_closed(closed)
            if self.feed_items:
                self._beat(force=True)  # the feed ended: the heartbeat says where
        finally:
            self.log.close()

    def _minutes(self, feed: Iterable[FeedItem], replay_from: np.datetime64) -> Iterator[tuple]:
        for item in feed:
            self.feed_items += 1
            self._beat()
            if isinstance(item, FeedProblem):
                self.problems += 1
                log.warning("feed problem: %s %s: %s", item.symbol or "?", item.where, item.reason)
                if item.symbol in self.instruments:
                    self.instruments[item.symbol].last_error = f"{item.where}: {item.reason}"
                continue
            bar: MinuteBar = item
            if bar.symbol in self.builders and bar.timestamp >= replay_from:
                self._last_minute = bar.timestamp if self._last_minute is None else max(self._last_minute,
                                                                                         bar.timestamp)
                yield bar

    def _rejected(self, err: BadBarError) -> None:
        self.problems += 1
        log.warning("bad bar, not traded on: %s", err)
        if err.symbol in self.instruments:
            self.instruments[err.symbol].last_error = str(err)

    def _beat(self, force: bool = False) -> None:
        """Write the heartbeat (atomically) if ``heartbeat_every`` seconds have passed."""
        now = self.clock()
        if not force and self._beat_at is not None and (now - self._beat_at).total_seconds() < self.heartbeat_every:
            return
        self._beat_at = now
        self.heartbeat = now.isoformat(timespec="seconds")
        if self.persist:
            last = None if self._last_minute is None else _ts(self._last_minute)
            write_text_atomic(json.dumps({"heartbeat": self.heartbeat, "feed_items": self.feed_items,
                                          "last_minute": last}), self.state_dir / HEARTBEAT_FILE)

    def on_closed(self, closed: list[ClosedBar]) -> None:
        """One clock step's closed bars (every instrument): decide each traded instrument's
        new hourly bars."""
        for bar in closed:
            if bar.kind == HOURLY:
                self._check_gap(bar)
        decided = False
        todo = []
        for s, st in self.instruments.items():
            rows = st.buffer.update(closed)
            own = [b for b in closed if b.symbol == s and b.kind == HOURLY]
            todo += [(np.datetime64(bar.timestamp, "ns"), s, bar, row) for bar, row in zip(own, rows, strict=True)]
        todo.sort(key=lambda item: (item[0], item[1]))  # bar time, then symbol: the portfolio backtest's order
        for k, (t, s, bar, row) in enumerate(todo):
            st = self.instruments[s]
            self._check_pair(st, bar)
            now = self._decide(st, bar, row)
            decided |= now
            if self.guard is not None and now and (k + 1 == len(todo) or todo[k + 1][0] != t):
                self.guard.mark(bar.timestamp)  # every instrument's bar at t is decided
        self.heartbeat = self.clock().isoformat(timespec="seconds")
        if decided:
            # once per clock step: a kill before this write redoes the whole step after a
            # restart (the same decisions; the log's records carry the same prediction ids)
            self._write_state()

    def _report(self, symbol: str, msg: str) -> None:
        """A problem with ``symbol``'s feed: a warning, and the last error of the instrument
        (or of the instruments it is the pair of)."""
        log.warning("%s", msg)
        self.problems += 1
        for st in self.instruments.values():
            if st.symbol == symbol:
                st.last_error = msg
            elif self.cfg.instrument(st.symbol).pair == symbol:
                st.last_error = f"pair {msg}"

    def _check_gap(self, bar: ClosedBar) -> None:
        """Warn when in-session hours have no bar between this closed hour and the previous
        one of the same instrument (the decisions are unchanged: the backtest sees the same
        bars)."""
        sym, ts = bar.symbol, np.datetime64(bar.timestamp, "ns")
        prev = self._last_hour.get(sym)
        self._last_hour[sym] = ts
        if prev is None or ts - prev <= np.timedelta64(1, "h") or ts <= self._quiet_until:
            return
        cal = self.cfg.instrument(sym).calendar
        missing = missing_session_hours(cal, prev, ts)
        if len(missing) < self.gap_hours:
            return
        days = cal.trading_date(np.concatenate([[prev], missing, [ts]])).tolist()
        whole = len(set(days[1:-1]) - {days[0], days[-1]})  # sessions with no bar at all
        self._report(sym, f"{sym} {_ts(ts)}: gap in the feed: no bar for {len(missing)} in-session hour(s) from "
                          f"{_ts(missing[0])} to {_ts(missing[-1])}"
                          + (f" ({whole} whole session(s) missing)" if whole else "")
                          + f" (previous bar {_ts(prev)}); deciding on the bars there are, as the backtest does")

    def _check_pair(self, st: InstrumentState, bar: ClosedBar) -> None:
        """Warn when the pair's feed goes stale for this bar (its features are then missing,
        as in the backtest) and when it is back."""
        buf = st.buffer
        if buf.pair is None or not any(f.needs_pair for f in buf.features):
            return
        ts = np.datetime64(bar.timestamp, "ns")
        last = buf.last_pair_hourly
        stale = last is None or ts - np.datetime64(last.to_datetime64(), "ns") > buf.pair_max_staleness.to_timedelta64()
        if stale == st.pair_stale:
            return
        st.pair_stale = stale
        if ts <= self._quiet_until:
            return
        if stale:
            names = [f.name for f in buf.features if f.needs_pair]
            self._report(buf.pair, f"{buf.pair} feed stale at {st.symbol} {_ts(ts)}: its last bar is "
                                   f"{'none' if last is None else _ts(last.to_datetime64())}, older than "
                                   f"{buf.pair_max_staleness / pd.Timedelta(hours=1):g} h; {st.symbol}'s pair features are missing until it is "
                                   f"back: {', '.join(names)}")
        else:
            log.info("%s: pair %s's feed is back at %s", st.symbol, buf.pair, _ts(ts))

    def _decide(self, st: InstrumentState, bar: ClosedBar, row) -> bool:
        """Decide one closed hourly bar; False if it was warm-up or already decided."""
        ts = np.datetime64(bar.timestamp, "s")
        guard = self.guard if self.guard is not None and st.symbol in self.guard.cores else None
        if ts < self.decide_from or (st.last_decided is not None and ts <= st.last_decided):
            if guard is not None:
                guard.observe(st.symbol, np.datetime64(bar.timestamp, "ns"), bar.close)
            return False  # warm-up, or decided before a restart: only the buffers (and the correlation window)
        inst = self.cfg.instrument(st.symbol)
        session = inst.calendar.trading_date(np.array([bar.timestamp]))[0]
        if st.session is not None and session != st.session:
            self._maybe_switch_model(st)
            self._read_health(st)
        st.session = session
        if guard is not None:
            guard.begin(bar.timestamp)
        fill = st.broker.fill_at_open(bar.timestamp, bar.open)
        if fill is not None:
            n_before = len(st.core.trades)
            st.core.on_fill(bar.timestamp, fill.price, fill.contracts)
            if guard is not None and len(st.core.trades) > n_before:
                guard.trade_closed(st.core.trades[-1]["pnl_net"])
        if guard is not None:
            guard.observe(st.symbol, np.datetime64(bar.timestamp, "ns"), bar.close)
        values = np.array([row.values[n] for n in st.buffer.names], dtype=np.float64)
        if self.record_rows:
            st.rows.append((bar.timestamp, values))
        flat = st.core.position is None and st.core.pending is None
        cold = self._cold(st, row.warming_up)
        warming = f"warming up: {', '.join(cold)}" if cold else None
        if warming != st.warming:
            if warming and not st.warming:
                st.last_error = f"{_ts(ts)}: {warming}"
                log.warning("%s %s: %s; no new entries until they are warm", st.symbol, _ts(ts), warming)
            elif not warming:
                self._say(st.symbol, f"{_ts(ts)}: every feature it decides with is warm; entries allowed")
            st.warming = warming
        if flat and (cold or st.disabled):
            st.core.bars_seen += 1  # the bar counts, but no entry is taken
            ibs = values[st.buffer.names.index("ibs")]
            if rules.entry_signal(ibs, bar_start_time(bar.timestamp), self.cfg.strategy):
                # a base signal not taken, logged with why; other bars are not signals
                st.core.decisions.append({"time": bar.timestamp, "event": "not_trading",
                                          "reason": st.disabled or warming})
            intent = None
        else:
            intent = st.core.on_bar(bar.timestamp, bar.close, values)
            if intent is not None and intent.side == BUY and guard is not None:
                atr = values[st.buffer.names.index("atr14_pct")] if "atr14_pct" in st.buffer.names else float("nan")
                sized, why = guard.entry(st.symbol, np.datetime64(bar.timestamp, "ns"), intent, atr)
                if why is not None:
                    st.core.on_order_failed(bar.timestamp, f"portfolio {why[0]}: {why[1]}")
                    intent = None
                else:
                    st.core.pending = intent = sized
        self._log_decisions(st, values)
        if len(st.core.trades) > st.trades_written:
            self._write_trades(st)
        st.last_decided = ts
        if intent is not None:
            st.broker.place(intent)
            if not self._paper_for(st):
                self._write_state()  # the decision is on disk before the order leaves
                self._route(st, intent)
            elif self.kill_switch or st.model.stage == "paper" or st.health is not None:
                self._route(st, intent)  # says what it would have sent
        return True

    @staticmethod
    def _cold(st: InstrumentState, warming_up: Iterable[str]) -> list[str]:
        """The features this instrument decides with (the entry rule's IBS and the model's
        inputs) that are still warming up."""
        needed = {"ibs", *(st.core.model.feature_names if st.core.model is not None else ())}
        return [f for f in warming_up if f in needed]

    def _maybe_switch_model(self, st: InstrumentState) -> None:
        if st.symbol in self.models:
            return  # a version chosen by hand stays
        try:
            paper = self.store.paper_entry(st.symbol)
            current = (paper["version"] if paper is not None and paper.get("status") == "paper"
                       else self.store.production(st.symbol))
        except RooneyError as err:
            st.last_error = str(err)
            log.error("%s: cannot read the manifest (%s); keeping %s", st.symbol, err, st.model.version)
            return
        stage = "paper" if paper is not None and paper.get("status") == "paper" else "production"
        if current == st.model.version and stage == st.model.stage:
            return
        if st.core.position is not None or st.core.pending is not None:
            self._say(st.symbol, f"{current} promoted; switching after the open position closes")
            return
        try:
            slot = self._load_model(st.symbol)
        except RooneyError as err:  # a tampered or missing bundle: keep trading the verified one
            st.last_error = str(err)
            log.error("%s: refused the new production model: %s; keeping %s", st.symbol, err, st.model.version)
            return
        self._say(st.symbol, f"session boundary: model {st.model.version or 'none'} ({st.model.stage}) -> "
                             f"{slot.version} ({slot.stage})")
        st.model = slot
        st.core.model = slot.veto

    def _log_decisions(self, st: InstrumentState, values: np.ndarray) -> None:
        new = st.core.decisions[st.logged:]
        st.logged = len(st.core.decisions)
        m = st.model
        for j, d in enumerate(new):
            event, t = d["event"], d["time"]
            refused = (event == "entry_order" and j + 1 < len(new) and new[j + 1]["event"] == "order_failed"
                       and str(new[j + 1]["reason"]).startswith("portfolio "))
            if refused:  # the portfolio's rules refused the entry the veto allowed
                self.log.append("signal", prediction_id=f"{st.symbol}-{_ts(t)}", instrument=st.symbol, bar_time=t,
                                model_version=m.version, bundle_sha256=m.sha256,
                                feature_schema_hash=m.bundle.feature_schema_hash if m.bundle else None,
                                feature_names=st.buffer.names, features=values, probability=d.get("probability"),
                                threshold=m.bundle.threshold if m.bundle else None, decision="skip",
                                reason=new[j + 1]["reason"], order_id=None, paper=self._paper_for(st))
            elif event in ("veto", "entry_order", "not_trading"):
                self.log.append("signal", prediction_id=f"{st.symbol}-{_ts(t)}", instrument=st.symbol, bar_time=t,
                                model_version=m.version, bundle_sha256=m.sha256,
                                feature_schema_hash=m.bundle.feature_schema_hash if m.bundle else None,
                                feature_names=st.buffer.names, features=values, probability=d.get("probability"),
                                threshold=m.bundle.threshold if m.bundle else None,
                                decision="enter" if event == "entry_order" else "skip", reason=d["reason"],
                                order_id=_order_id(st.symbol, t, BUY) if event == "entry_order" else None,
                                paper=self._paper_for(st))
            elif event == "entry_fill":
                sig = st.core.entry["signal_time"]
                self.log.append("fill", prediction_id=f"{st.symbol}-{_ts(sig)}", fill_time=t, fill_price=d["price"])
            elif event == "exit_fill":
                tr = st.core.trades[-1]
                self.log.append("outcome", prediction_id=f"{st.symbol}-{_ts(tr['signal_time'])}", exit_time=t,
                                exit_price=tr["exit_price"], exit_reason=tr["exit_reason"], pnl_net=tr["pnl_net"])
            elif event == "exit_order":
                self.log.append("exit_order", prediction_id=f"{st.symbol}-{_ts(st.core.entry['signal_time'])}",
                                time=t, reason=d["reason"], order_id=_order_id(st.symbol, t, "sell"))

    def _route(self, st: InstrumentState, intent: OrderIntent) -> None:
        oid = _order_id(st.symbol, intent.signal_time, intent.side)
        if self._paper_for(st):
            if self.kill_switch:
                self._say(st.symbol, f"kill switch: {intent.side} {intent.contracts} not sent (paper) [{oid}]")
            elif st.model.stage == "paper":
                self._say(st.symbol, f"paper stage ({st.model.version}): {intent.side} {intent.contracts} not sent "
                                     f"[{oid}]")
            elif st.health is not None:
                self._say(st.symbol, f"model-health kill switch: {intent.side} {intent.contracts} not sent [{oid}]")
            return
        if oid in st.sent:
            return
        order = RoutedOrder(oid, self.cfg.instrument(st.symbol).symbol, intent.side, intent.contracts)
        try:
            self.router.send(order)
        except OrderNotDelivered as err:
            st.last_error = str(err)
            log.error("ALERT %s: %s", st.symbol, err)  # never dropped silently: logged and in the state
            self.log.append("order_failed", prediction_id=f"{st.symbol}-{_ts(intent.signal_time)}", order_id=oid,
                            error=str(err))
            # the broker never got it: no position is assumed for an entry, and an exit is
            # decided again at the next bar (the position is still open at the broker)
            st.broker.order = None
            st.core.on_order_failed(intent.signal_time, f"not delivered: {err}")
            st.logged = len(st.core.decisions)
        else:
            st.sent.add(oid)
        self._write_state()

    def resend_unconfirmed(self) -> None:
        """After a restart: an order decided but not confirmed as sent goes out again with the
        same client order id (the receiver's idempotency key makes a duplicate harmless)."""
        for st in self.instruments.values():
            intent = st.core.pending
            if intent is not None and not self.paper and _order_id(st.symbol, intent.signal_time, intent.side) \
                    not in st.sent:
                self._route(st, intent)

    def status(self) -> dict:
        return status_of(self.state_dir)


def _order_id(symbol: str, signal_time: Any, side: str) -> str:
    return f"{symbol}-{str(np.datetime64(signal_time, 's')).replace(':', '')}-{side}"


def status_of(state_dir: str | os.PathLike[str], now: datetime | None = None) -> dict:
    """What `rooney live status` shows: per instrument the last bar, position, model version,
    kill switch, last error and the heartbeat's age."""
    path = Path(state_dir) / STATE_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RooneyError(f"{path}: no engine state (has `rooney live` run with this --state-dir?)") from None
    now = now or datetime.now(UTC)
    beats = [data.get("heartbeat")]
    try:
        beats.append(json.loads((Path(state_dir) / HEARTBEAT_FILE).read_text(encoding="utf-8")).get("heartbeat"))
    except (FileNotFoundError, ValueError, AttributeError):
        pass  # written atomically: missing before the first feed item
    beat = max((b for b in beats if b), key=datetime.fromisoformat, default=None)
    age = (now - datetime.fromisoformat(beat)).total_seconds() if beat else None
    rows = {}
    for s, st in data.get("instruments", {}).items():
        pos = st["core"].get("position")
        rows[s] = {"last_bar": st.get("last_decided"), "model": st.get("model_version"),
                   "stage": st.get("model_stage", "production"), "watched": bool(st.get("watched")),
                   "position": f"long {pos['contracts']} @ {pos['entry_price']}" if pos else "flat",
                   "pending_order": bool(st["core"].get("pending")), "trades": st["core"].get("trades_count", len(st["core"].get("trades", []))),
                   "trading": "no new entries: " + (st.get("disabled") or st["warming"])
                   if st.get("disabled") or st.get("warming") else
                   f"paper only (model-health kill switch: {st['health']})" if st.get("health") else "yes",
                   "health": st.get("health"), "last_error": st.get("last_error")}
    return {"paper": data.get("paper"), "kill_switch": data.get("kill_switch"), "heartbeat": beat,
            "heartbeat_age_s": age, "instruments": rows}


def _declared(buf: FeatureBuffer, names: list[str]) -> str:
    w = {f.name: f.warmup for f in buf.features}
    return "; ".join(f"{n} " + " and ".join(([f"{w[n].hourly} hourly bars"] if w[n].hourly else [])
                                            + ([f"{w[n].daily} sessions"] if w[n].daily else []))
                     for n in names)


def history_from_raw(cfg: RooneyConfig, data_dir: str | os.PathLike[str]) -> Callable[[str], tuple]:
    """History for warm-up from raw files: the batch hourly and daily bars."""
    from rooney_core.data import load_session_bars

    def load(symbol: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        sb = load_session_bars(data_dir, cfg.instrument(symbol), **cfg.pipeline.data.gate())
        return sb.hourly, sb.daily

    return load


def history_from_lake(cfg: RooneyConfig) -> Callable[[str], tuple]:
    """History for warm-up from the pipeline's lake (hourly and daily bars)."""
    from rooney_core.data.lake import Lake

    lake = Lake(cfg.lake_dir)
    return lambda symbol: (lake.read("hourly", symbol), lake.read("daily", symbol))


__all__ = ["LiveEngine", "ModelSlot", "history_from_lake", "history_from_raw", "kill_switch_on", "status_of"]
