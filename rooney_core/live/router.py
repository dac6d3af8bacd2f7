"""Order routers: where the live engine's orders go when it is not paper trading.

One router so far, a TradersPost-style webhook: a JSON POST per order with ticker, action,
quantity, order type and a client order id the receiver uses as an idempotency key (a retry
after a lost answer can never become a second order). Its URL and secret come from the
environment; neither ever appears in a log line, an error or a status (R9): errors name the
router and the order, and the URL only in redacted form.

Delivery: retried with exponential back-off on a connection error, a timeout or a 5xx
answer; a 4xx answer is the receiver refusing the order and is not retried. An order that
cannot be delivered raises ``OrderNotDelivered`` after the last attempt: the engine logs it,
raises an alert and keeps the order on record; it is never dropped silently.
"""

from __future__ import annotations

import json
import logging
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from rooney_core.errors import RooneyError
from rooney_core.redact import redact_text

log = logging.getLogger(__name__)

URL_ENV = "ROONEY_WEBHOOK_URL"
SECRET_ENV = "ROONEY_WEBHOOK_SECRET"


class OrderNotDelivered(RooneyError):
    """An order could not be delivered to the router after every attempt."""


@dataclass(frozen=True)
class RoutedOrder:
    """What a router is asked to send."""

    client_order_id: str  # stable across retries and restarts: the idempotency key
    ticker: str
    action: str  # "buy" or "sell"
    quantity: int
    order_type: str = "market"


class OrderRouter(Protocol):
    name: str

    def send(self, order: RoutedOrder) -> None: ...


class WebhookRouter:
    """POSTs each order as JSON to a webhook (TradersPost style)."""

    name = "webhook"

    def __init__(self, url: str, secret: str | None = None, attempts: int = 4, timeout: float = 5.0,
                 backoff: float = 0.5, sleep: Callable[[float], None] = time.sleep):
        if not url.startswith(("https://", "http://")):
            raise RooneyError(f"{URL_ENV}: the webhook URL must start with https:// or http://")
        self._url, self._secret = url, secret
        self.attempts, self.timeout, self.backoff, self._sleep = attempts, timeout, backoff, sleep

    @classmethod
    def from_env(cls, **kw) -> WebhookRouter:
        url = os.environ.get(URL_ENV)
        if not url:
            raise RooneyError(f"live trading needs the webhook URL in ${URL_ENV} (and ${SECRET_ENV} if the "
                              "receiver wants one); or run with --paper")
        return cls(url, os.environ.get(SECRET_ENV), **kw)

    def __repr__(self) -> str:  # never the URL or the secret
        return "WebhookRouter(<url from environment>)"

    def _clean(self, text: str) -> str:
        return redact_text(text, [self._url, self._secret])

    def payload(self, order: RoutedOrder) -> dict:
        body = {"ticker": order.ticker, "action": order.action, "quantity": order.quantity,
                "orderType": order.order_type, "clientOrderId": order.client_order_id}
        if self._secret:
            body["secret"] = self._secret
        return body

    def send(self, order: RoutedOrder) -> None:
        """Deliver ``order`` or raise OrderNotDelivered after the last attempt."""
        data = json.dumps(self.payload(order)).encode()
        last = "no attempt made"
        for attempt in range(1, self.attempts + 1):
            req = urllib.request.Request(self._url, data=data, method="POST",
                                         headers={"Content-Type": "application/json",
                                                  "Idempotency-Key": order.client_order_id})
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - http(s) only
                    status = resp.status
                if 200 <= status < 300:
                    log.info("order %s delivered to %s (attempt %d)", order.client_order_id, self.name, attempt)
                    return
                last = f"HTTP {status}"
            except urllib.error.HTTPError as exc:
                last = f"HTTP {exc.code}"
                if 400 <= exc.code < 500:
                    raise OrderNotDelivered(f"{self.name} refused order {order.client_order_id} "
                                            f"({order.action} {order.quantity} {order.ticker}): {last}") from None
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                last = self._clean(f"{type(exc).__name__}: {reason}")
            log.warning("order %s to %s: attempt %d of %d failed (%s)", order.client_order_id, self.name,
                        attempt, self.attempts, last)
            if attempt < self.attempts:
                self._sleep(self.backoff * 2 ** (attempt - 1))
        raise OrderNotDelivered(f"{self.name}: order {order.client_order_id} ({order.action} {order.quantity} "
                                f"{order.ticker}) not delivered after {self.attempts} attempts (last: {last})")
