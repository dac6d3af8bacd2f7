"""Alerts: one Discord message per event, delivered or kept, never dropped silently.

An ``Alert`` says what happened (its kind), to which instrument, what crossed which threshold
(value, threshold) and where to look (a link to the Dagster run). ``AlertSink.send`` logs it,
posts it to a Discord webhook and records the outcome in ``alerts.jsonl`` (every alert, for
the dashboard); an alert that could not be delivered is also appended to ``outbox.jsonl``,
from which ``AlertSink.resend_outbox`` delivers it later.

Delivery (``DiscordWebhook``):

- a client-side token bucket per webhook (default 5 messages per 2 s, Discord's per-webhook
  limit), shared by every client of the same URL in the process, so a burst of alerts is
  spread out rather than refused; Discord's ``X-RateLimit-Remaining: 0`` pauses it too;
- retries with exponential back-off and jitter on 5xx, time-outs and connection errors;
  HTTP 429 waits what Discord asks (``retry_after`` in the JSON body, else ``Retry-After``);
  other 4xx (a deleted webhook, a payload Discord refuses) are not retried;
- a deadline per message, so a sensor evaluation is never held for long.

The webhook URL is the secret (whoever has it can post to the desk's channel): it is never
logged, never put in an exception's text and never shown by ``repr``; logs name the host only.
"""

from __future__ import annotations

import fcntl
import hashlib
import http.client
import json
import logging
import math
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from urllib import error as urlerror
from urllib import request as urlrequest
from urllib.parse import urlsplit

from rooney_core.errors import RooneyError
from rooney_core.io import append_jsonl, read_jsonl, write_text_atomic
from rooney_core.redact import REDACTED, redact_text

log = logging.getLogger(__name__)

JOURNAL_FILE = "alerts.jsonl"  # every alert and what became of it
OUTBOX_FILE = "outbox.jsonl"  # the alerts not delivered yet

# Discord's limits (https://discord.com/developers/docs/resources/message#embed-object-embed-limits)
CONTENT_MAX = 2000
USERNAME_MAX = 80
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELDS_MAX = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
FOOTER_MAX = 2048
EMBED_TOTAL_MAX = 6000


class AlertKind(StrEnum):
    ACCURACY_DROP = "accuracy_drop"
    DRIFT = "drift"
    DISTRIBUTION_SHIFT = "distribution_shift"
    REGIME_CHANGE = "regime_change"
    KILL_SWITCH = "kill_switch"
    RUN_FAILED = "run_failed"
    PROMOTION = "promotion"
    ROLLBACK = "rollback"
    STALE_HEARTBEAT = "stale_heartbeat"
    RETRAIN = "retrain"


_LABEL = {AlertKind.ACCURACY_DROP: "Accuracy drop", AlertKind.DRIFT: "Feature drift",
          AlertKind.DISTRIBUTION_SHIFT: "Prediction distribution shift",
          AlertKind.REGIME_CHANGE: "Regime change", AlertKind.KILL_SWITCH: "Kill switch",
          AlertKind.RUN_FAILED: "Run failed", AlertKind.PROMOTION: "Promotion", AlertKind.ROLLBACK: "Rollback",
          AlertKind.STALE_HEARTBEAT: "Live engine heartbeat stale", AlertKind.RETRAIN: "Retrain"}
_RED, _ORANGE, _YELLOW, _BLUE, _GREEN = 0xD93F0B, 0xE99695, 0xFBCA04, 0x1D76DB, 0x0E8A16
_COLOUR = {AlertKind.ACCURACY_DROP: _ORANGE, AlertKind.DRIFT: _YELLOW, AlertKind.DISTRIBUTION_SHIFT: _YELLOW,
           AlertKind.REGIME_CHANGE: _YELLOW, AlertKind.KILL_SWITCH: _RED, AlertKind.RUN_FAILED: _RED,
           AlertKind.PROMOTION: _BLUE,
           AlertKind.ROLLBACK: _ORANGE, AlertKind.STALE_HEARTBEAT: _RED, AlertKind.RETRAIN: _BLUE}
_INFO_KINDS = {AlertKind.PROMOTION, AlertKind.RETRAIN}  # logged at INFO; the others at WARNING


class AlertError(RooneyError):
    """An alert or the alert channel is misconfigured (an unknown kind, a URL that is not http(s))."""


class AlertDeliveryError(RooneyError):
    """A message did not reach Discord. Its text names the host, status and attempts, never the URL."""

    def __init__(self, message: str, *, attempts: int, status: int | None = None, permanent: bool = False):
        super().__init__(message)
        self.attempts = attempts
        self.status = status
        self.permanent = permanent


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _number(name: str, v: Any) -> float | None:
    if v is None:
        return None
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise AlertError(f"alert {name} must be a number or None, got {v!r}") from None
    return f if math.isfinite(f) else None


@dataclass(frozen=True)
class Alert:
    """One event worth a message.

    ``summary`` is one sentence a trader can act on; ``metric`` names what was measured
    (e.g. "rolling accuracy, 60 trades"), ``value`` what it was and ``threshold`` the limit it
    crossed. ``run_url`` links to the Dagster run (or asset page). ``details`` are further
    name/value pairs shown as fields (job, partition, step, version ...). ``resolved``: the
    condition is over (e.g. the heartbeat is back).
    """

    kind: AlertKind | str
    summary: str
    instrument: str | None = None
    metric: str | None = None
    value: float | None = None
    threshold: float | None = None
    run_url: str | None = None
    at: datetime = field(default_factory=_utc_now)
    details: Mapping[str, Any] = field(default_factory=dict)
    resolved: bool = False

    def __post_init__(self) -> None:
        try:
            kind = AlertKind(self.kind)
        except ValueError:
            raise AlertError(f"unknown alert kind {self.kind!r}; known: {', '.join(k.value for k in AlertKind)}") \
                from None
        if not isinstance(self.summary, str) or not self.summary.strip():
            raise AlertError(f"a {kind.value} alert needs a summary (what happened, in one sentence)")
        at = self.at
        if isinstance(at, str):
            at = datetime.fromisoformat(at)
        if not isinstance(at, datetime):
            raise AlertError(f"alert time must be a datetime, got {at!r}")
        at = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "at", at)
        object.__setattr__(self, "value", _number("value", self.value))
        object.__setattr__(self, "threshold", _number("threshold", self.threshold))
        object.__setattr__(self, "details", {str(k): v for k, v in dict(self.details or {}).items()})
        object.__setattr__(self, "resolved", bool(self.resolved))

    @property
    def title(self) -> str:
        label = _LABEL[AlertKind(self.kind)] + (" (resolved)" if self.resolved else "")
        return f"{label}: {self.instrument}" if self.instrument else label

    def to_dict(self) -> dict[str, Any]:
        return {"kind": AlertKind(self.kind).value, "summary": self.summary, "instrument": self.instrument,
                "metric": self.metric, "value": self.value, "threshold": self.threshold, "run_url": self.run_url,
                "at": self.at.isoformat(timespec="seconds"), "details": _plain(self.details),
                "resolved": self.resolved}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        known = {"kind", "summary", "instrument", "metric", "value", "threshold", "run_url", "at", "details",
                 "resolved"}
        return cls(**{k: v for k, v in data.items() if k in known})


def _plain(obj: Any) -> Any:
    """JSON-ready: containers kept, anything else as str unless already a JSON scalar."""
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    try:
        f = float(obj)  # numpy scalars
        return f if math.isfinite(f) else None
    except (TypeError, ValueError):
        return str(obj)


# ---- the Discord message ---------------------------------------------------------------------


def _cut(text: Any, limit: int) -> str:
    s = str(text)
    return s if len(s) <= limit else s[: limit - 1] + "…"


def _fmt(v: float | None) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4g}" if abs(v) < 1e6 else f"{v:,.0f}"


def _is_link(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def discord_payload(alert: Alert, username: str = "Rooney") -> dict[str, Any]:
    """The webhook's JSON for ``alert``: a one-line ``content`` (what a phone notification
    shows) and one embed with the fields, all within Discord's limits. Mentions are disabled
    (an error message quoting "@everyone" must not page the whole server)."""
    kind = AlertKind(alert.kind)
    line = f"**{alert.title}**: {alert.summary}"
    if alert.metric or alert.value is not None:
        line += f" ({alert.metric or 'value'} {_fmt(alert.value)}"
        line += f", threshold {_fmt(alert.threshold)})" if alert.threshold is not None else ")"
    if _is_link(alert.run_url):
        line += f"\n{alert.run_url}"
    fields: list[dict[str, Any]] = []

    def add(name: str, value: Any, inline: bool = True) -> None:
        if value is None or value == "" or len(fields) >= EMBED_FIELDS_MAX:
            return
        fields.append({"name": _cut(name, FIELD_NAME_MAX), "value": _cut(value, FIELD_VALUE_MAX), "inline": inline})

    add("Instrument", alert.instrument)
    add("Metric", alert.metric)
    if alert.value is not None:
        add("Value", _fmt(alert.value))
    if alert.threshold is not None:
        add("Threshold", _fmt(alert.threshold))
    if _is_link(alert.run_url):
        add("Run", f"[open in Dagster]({alert.run_url})", inline=False)
    for k, v in alert.details.items():
        if v is not None and v != "":
            add(k[:1].upper() + k[1:], v if isinstance(v, str) else json.dumps(_plain(v)), inline=len(str(v)) <= 40)
    embed: dict[str, Any] = {"title": _cut(alert.title, EMBED_TITLE_MAX),
                             "description": _cut(alert.summary, EMBED_DESCRIPTION_MAX),
                             "color": _GREEN if alert.resolved else _COLOUR[kind],
                             "timestamp": alert.at.isoformat(timespec="seconds"),
                             "footer": {"text": f"rooney-pipeline · {kind.value}"}, "fields": fields}
    if _is_link(alert.run_url):
        embed["url"] = alert.run_url
    # the embed's text together stays within 6000: shorten the description, then drop fields
    while _embed_size(embed) > EMBED_TOTAL_MAX:
        over = _embed_size(embed) - EMBED_TOTAL_MAX
        desc = embed["description"]
        if len(desc) > 200:
            embed["description"] = _cut(desc, max(200, len(desc) - over))
        elif embed["fields"]:
            embed["fields"].pop()
        else:  # pragma: no cover - title and footer alone are far below the limit
            break
    return {"username": _cut(username or "Rooney", USERNAME_MAX), "content": _cut(line, CONTENT_MAX),
            "embeds": [embed], "allowed_mentions": {"parse": []}}


def _embed_size(embed: Mapping[str, Any]) -> int:
    return (len(embed.get("title", "")) + len(embed.get("description", "")) + len(embed["footer"]["text"])
            + sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", [])))


# ---- rate limit ------------------------------------------------------------------------------


class TokenBucket:
    """At most ``capacity`` messages per ``per_seconds``, refilled continuously. ``reserve``
    takes a token now and says how long to wait before using it, so concurrent senders queue
    up in order instead of spinning. Thread-safe."""

    def __init__(self, capacity: int, per_seconds: float, clock: Callable[[], float] = time.monotonic):
        if capacity < 1 or per_seconds <= 0:
            raise AlertError(f"rate limit must be >= 1 message per > 0 s, got {capacity} per {per_seconds}")
        self.capacity = int(capacity)
        self.rate = capacity / per_seconds
        self._clock = clock
        self._tokens = float(capacity)
        self._updated = clock()
        self._blocked_until = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._updated) * self.rate)
            self._updated = now
            self._tokens -= 1.0
            wait = 0.0 if self._tokens >= 0 else -self._tokens / self.rate
            return max(wait, self._blocked_until - now)

    def block_for(self, seconds: float) -> None:
        """Send nothing for ``seconds`` (Discord said the bucket is empty)."""
        with self._lock:
            self._blocked_until = max(self._blocked_until, self._clock() + max(0.0, seconds))


_BUCKETS: dict[tuple[str, int, float], TokenBucket] = {}
_BUCKETS_LOCK = threading.Lock()


def _bucket_for(url: str, capacity: int, per_seconds: float) -> TokenBucket:
    """One bucket per webhook in the process (resources are rebuilt per sensor tick)."""
    key = (hashlib.sha256(url.encode()).hexdigest(), int(capacity), float(per_seconds))
    with _BUCKETS_LOCK:
        bucket = _BUCKETS.get(key)
        if bucket is None:
            bucket = _BUCKETS[key] = TokenBucket(capacity, per_seconds)
        return bucket


# ---- the webhook client ----------------------------------------------------------------------


def _seconds(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) and f >= 0 else None


class DiscordWebhook:
    """Posts JSON payloads to one Discord webhook with rate limiting and retries (see the module
    docstring). ``post`` returns the number of attempts it took, or raises AlertDeliveryError."""

    def __init__(self, url: str, *, timeout_s: float = 10.0, max_attempts: int = 4, backoff_s: float = 0.5,
                 max_backoff_s: float = 8.0, max_wait_s: float = 60.0, deadline_s: float = 45.0,
                 rate: tuple[int, float] = (5, 2.0), sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            # the value itself is the secret: say what is wrong, never what it is
            raise AlertError("the Discord webhook URL is not an http(s) URL (value not shown); "
                             "set ROONEY_DISCORD_WEBHOOK_URL to the webhook's URL from Discord")
        if max_attempts < 1:
            raise AlertError(f"max_attempts must be >= 1, got {max_attempts}")
        self._url = url
        self.host = parts.hostname + (f":{parts.port}" if parts.port else "")
        self.timeout_s = float(timeout_s)
        self.max_attempts = int(max_attempts)
        self.backoff_s = float(backoff_s)
        self.max_backoff_s = float(max_backoff_s)
        self.max_wait_s = float(max_wait_s)
        self.deadline_s = float(deadline_s)
        self.bucket = _bucket_for(url, *rate)
        self._sleep = sleep
        self._clock = clock
        # no redirects: a 3xx would be followed with a GET and lose the message
        self._opener = urlrequest.build_opener(_NoRedirect)

    def __repr__(self) -> str:
        return f"DiscordWebhook(host={self.host!r}, url={REDACTED!r})"

    __str__ = __repr__

    def _clean(self, text: Any) -> str:
        path = urlsplit(self._url).path  # /api/webhooks/<id>/<token>: the token is the secret
        return redact_text(str(text), [self._url, path if len(path) >= 8 else None])

    def _backoff(self, attempt: int) -> float:
        base = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 1))
        return base * (0.5 + random.random() / 2)  # jitter: several senders do not retry in step

    def post(self, payload: Mapping[str, Any]) -> int:
        body = self._clean(json.dumps(payload, ensure_ascii=False)).encode("utf-8")
        started = self._clock()
        last = "not attempted"
        status: int | None = None
        for attempt in range(1, self.max_attempts + 1):
            wait = self.bucket.reserve()
            if wait > 0:
                self._sleep(wait)
            req = urlrequest.Request(self._url, data=body, method="POST",
                                     headers={"Content-Type": "application/json",
                                              "User-Agent": "rooney-pipeline-alerts/0.1 (+Discord webhook)"})
            retry_in: float | None = None
            try:
                with self._opener.open(req, timeout=self.timeout_s) as resp:
                    self._note_bucket(resp.headers)
                    return attempt
            except urlerror.HTTPError as exc:
                status = exc.code
                text = _read_body(exc)
                self._note_bucket(exc.headers)
                if exc.code == 429:
                    retry_in = _retry_after(text, exc.headers)
                    last = f"HTTP 429 rate limited (retry after {retry_in if retry_in is not None else '?'} s)"
                    if retry_in is not None and retry_in > self.max_wait_s:
                        raise AlertDeliveryError(f"Discord webhook at {self.host}: {last}, longer than the "
                                                 f"{self.max_wait_s:g} s this sender waits; attempts {attempt}",
                                                 attempts=attempt, status=429) from None
                    if retry_in is not None:
                        self.bucket.block_for(retry_in)
                elif 500 <= exc.code < 600:
                    last = f"HTTP {exc.code} {self._clean(exc.reason)}"
                else:
                    msg = _discord_message(text)
                    raise AlertDeliveryError(
                        f"Discord webhook at {self.host} refused the message: HTTP {exc.code} {self._clean(exc.reason)}"
                        + (f" ({self._clean(msg)})" if msg else "")
                        + ("; the webhook was deleted or the URL is wrong: check ROONEY_DISCORD_WEBHOOK_URL"
                           if exc.code in (401, 403, 404) else ""),
                        attempts=attempt, status=exc.code, permanent=True) from None
            except (urlerror.URLError, OSError, http.client.HTTPException, ValueError) as exc:
                # refused, reset, DNS, time-out, a garbled reply
                status = None
                reason = getattr(exc, "reason", None) or exc
                last = f"{type(exc).__name__}: {self._clean(reason) or 'connection failed'}"
            if attempt == self.max_attempts:
                break
            delay = retry_in if retry_in is not None else self._backoff(attempt)
            if self._clock() - started + delay > self.deadline_s:
                last += f"; gave up: the next try would pass the {self.deadline_s:g} s deadline"
                break
            log.info("alert to Discord at %s: attempt %d failed (%s); retrying in %.2f s", self.host, attempt, last,
                     delay)
            self._sleep(delay)
        raise AlertDeliveryError(f"Discord webhook at {self.host}: not delivered after {attempt} attempt(s) in "
                                 f"{self._clock() - started:.1f} s; last: {last}", attempts=attempt, status=status)

    def _note_bucket(self, headers: Any) -> None:
        if headers is None:
            return
        if str(headers.get("X-RateLimit-Remaining", "")).strip() == "0":
            reset = _seconds(headers.get("X-RateLimit-Reset-After"))
            if reset is not None:
                self.bucket.block_for(min(reset, self.max_wait_s))


class _NoRedirect(urlrequest.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: D401 - urllib's hook
        return None


def _read_body(exc: urlerror.HTTPError) -> str:
    try:
        return exc.read(4096).decode("utf-8", errors="replace")
    except Exception:  # noqa: BLE001 - a body we cannot read is just no body
        return ""
    finally:
        exc.close()


def _retry_after(text: str, headers: Any) -> float | None:
    """Seconds Discord asks to wait: the body's ``retry_after`` (seconds, float), else the
    ``Retry-After`` header (seconds), else ``X-RateLimit-Reset-After``."""
    try:
        data = json.loads(text) if text else {}
    except ValueError:
        data = {}
    value = _seconds(data.get("retry_after")) if isinstance(data, dict) else None
    if value is None and headers is not None:
        value = _seconds(headers.get("Retry-After"))
        if value is None:
            value = _seconds(headers.get("X-RateLimit-Reset-After"))
    return value


def _discord_message(text: str) -> str:
    try:
        data = json.loads(text)
    except ValueError:
        return text[:200]
    return str(data.get("message", ""))[:200] if isinstance(data, dict) else ""


# ---- the sink: log, deliver, journal, outbox ---------------------------------------------------

_SAID_UNCONFIGURED: set[str] = set()


def _open_locked(path: Path) -> int:
    """A descriptor of ``path`` (created if missing) holding its exclusive lock. If the file was
    replaced while we waited (``resend_outbox`` rewrites the outbox), the new one is locked."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)


def _append_jsonl(path: Path, record: Mapping[str, Any]) -> None:
    """Append one JSON line atomically and durably: one write under an exclusive lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_locked(path)
    try:
        append_jsonl(path, dict(record), fd=fd, ensure_ascii=False)
    finally:
        os.close(fd)  # releases the lock


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [rec for rec in read_jsonl(path) if isinstance(rec.get("alert"), dict)]


class AlertSink:
    """Where alerts go: the log always, Discord when a webhook is given, ``alerts.jsonl`` (every
    alert with its outcome) and ``outbox.jsonl`` (those not delivered) in ``alerts_dir``."""

    def __init__(self, alerts_dir: str | os.PathLike[str], webhook: DiscordWebhook | None = None,
                 username: str = "Rooney"):
        self.alerts_dir = Path(alerts_dir)
        self.webhook = webhook
        self.username = username
        self.journal_path = self.alerts_dir / JOURNAL_FILE
        self.outbox_path = self.alerts_dir / OUTBOX_FILE

    def __repr__(self) -> str:
        return f"AlertSink({str(self.alerts_dir)!r}, webhook={self.webhook!r})"

    def send(self, alert: Alert) -> bool:
        """Log ``alert``, post it, record the outcome. True if Discord took it; False if it is
        in the outbox instead (no webhook configured, or not delivered after the retries).
        Never raises for a delivery or disk problem: the log then holds the whole alert."""
        kind = AlertKind(alert.kind)
        log.log(logging.INFO if kind in _INFO_KINDS or alert.resolved else logging.WARNING, "ALERT %s%s: %s%s",
                kind.value, f" {alert.instrument}" if alert.instrument else "", alert.summary,
                f" ({alert.metric or 'value'} {_fmt(alert.value)}, threshold {_fmt(alert.threshold)})"
                if alert.value is not None or alert.threshold is not None else "")
        attempts, error = 0, None
        if self.webhook is None:
            status = "not_configured"
            key = str(self.alerts_dir)
            if key not in _SAID_UNCONFIGURED:
                _SAID_UNCONFIGURED.add(key)
                log.warning("no Discord webhook configured (ROONEY_DISCORD_WEBHOOK_URL is not set): alerts go to the "
                            "log and %s only", self.outbox_path)
        else:
            try:
                attempts = self.webhook.post(discord_payload(alert, self.username))
                status = "delivered"
            except AlertDeliveryError as exc:
                status, attempts, error = "undelivered", exc.attempts, str(exc)
            except Exception as exc:  # noqa: BLE001 - whatever broke, the alert is kept, not lost
                status, attempts = "undelivered", 1
                error = f"{type(exc).__name__}: {self.webhook._clean(exc)}"
            if status == "undelivered":
                log.error("alert %s%s not delivered (%s); kept in %s", kind.value,
                          f" {alert.instrument}" if alert.instrument else "", error, self.outbox_path)
        record = {"id": uuid.uuid4().hex, "alert": alert.to_dict(), "status": status, "attempts": attempts,
                  "error": error, "recorded_at": _utc_now().isoformat(timespec="seconds")}
        self._record(record, outbox=status != "delivered")
        return status == "delivered"

    def _record(self, record: dict[str, Any], outbox: bool) -> None:
        try:
            _append_jsonl(self.journal_path, record)
            if outbox:
                _append_jsonl(self.outbox_path, record)
        except OSError as exc:
            log.error("alert could not be recorded in %s (%s); the alert: %s", self.alerts_dir, exc.strerror,
                      json.dumps(record, sort_keys=True))

    def resend_outbox(self) -> tuple[int, int]:
        """Try to deliver every alert in the outbox, oldest first; keep those that still fail
        (the outbox is rewritten atomically under its lock). Returns (delivered, left)."""
        if self.webhook is None or not self.outbox_path.exists():
            return 0, len(_read_jsonl(self.outbox_path))
        fd = _open_locked(self.outbox_path)  # appends wait, then go to the rewritten file
        try:
            pending = _read_jsonl(self.outbox_path)
            left, sent = [], 0
            for rec in pending:
                try:
                    alert = Alert.from_dict(rec["alert"])
                    self.webhook.post(discord_payload(alert, self.username))
                except (AlertError, TypeError, ValueError):
                    left.append(rec)  # an alert this version cannot read stays for a person
                    continue
                except AlertDeliveryError as exc:
                    left.append({**rec, "error": str(exc), "attempts": rec.get("attempts", 0) + exc.attempts})
                    continue
                sent += 1
                _append_jsonl(self.journal_path, {**rec, "status": "delivered", "error": None,
                                                  "recorded_at": _utc_now().isoformat(timespec="seconds"),
                                                  "resent": True})
            write_text_atomic("".join(json.dumps(r, sort_keys=True, ensure_ascii=False) + "\n" for r in left),
                              self.outbox_path)
        finally:
            os.close(fd)
        return sent, len(left)


def recent_alerts(outbox_or_log: str | os.PathLike[str], limit: int | None = 50,
                  kinds: Iterable[str] | None = None) -> list[dict[str, Any]]:
    """The latest alerts, newest first, for a dashboard: each the alert's fields plus
    ``status`` (delivered, undelivered, not_configured), ``error`` and ``recorded_at``.
    ``outbox_or_log`` is the alerts directory (its journal is read), a journal or an outbox;
    a missing file means no alerts. Lines torn by a kill are skipped; an alert delivered later
    from the outbox is shown once, with its latest status."""
    path = Path(outbox_or_log)
    if path.is_dir():
        path = path / JOURNAL_FILE
    wanted = {AlertKind(k).value for k in kinds} if kinds is not None else None
    out: list[dict[str, Any]] = []
    seen: set[str] = set()
    for rec in reversed(_read_jsonl(path)):
        if rec.get("id") is not None:
            if rec["id"] in seen:
                continue
            seen.add(rec["id"])
        row = {**rec["alert"], "status": rec.get("status"), "error": rec.get("error"),
               "recorded_at": rec.get("recorded_at")}
        if wanted is None or row.get("kind") in wanted:
            out.append(row)
        if limit is not None and len(out) >= limit:
            break
    return out
