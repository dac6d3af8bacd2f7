"""The webhook order router against a real HTTP server on 127.0.0.1: retries with back-off on
5xx and timeouts, no retry on 4xx, one idempotency key across retries, and the URL and
secret never in an error or a log line (R8, R9)."""

from __future__ import annotations

import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rooney_core.live.router import OrderNotDelivered, RoutedOrder, WebhookRouter

TOKEN = "hook-TOKEN-123456"
SECRET = "s3cr3t-value"


class Receiver:
    """A webhook receiver that answers from a script: a status code, or "hang" (no answer in time)."""

    def __init__(self, script: list):
        self.script, self.received = list(script), []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.received.append((self.path, self.headers["Idempotency-Key"], body))
                action = receiver.script.pop(0) if receiver.script else 200
                if action == "hang":
                    time.sleep(1.5)
                    action = 200
                self.send_response(action)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/{TOKEN}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver_factory():
    made = []

    def make(script):
        made.append(Receiver(script))
        return made[-1]

    yield make
    for r in made:
        r.close()


ORDER = RoutedOrder("ES-20240102T1000-entry", "ES", "buy", 1)


def _router(url: str, **kw) -> WebhookRouter:
    return WebhookRouter(url, SECRET, attempts=3, timeout=0.5, backoff=0.01, **kw)


def test_delivered_after_server_errors_with_one_idempotency_key(receiver_factory, caplog):
    rx = receiver_factory([500, 503, 200])
    with caplog.at_level(logging.INFO):
        _router(rx.url).send(ORDER)
    assert len(rx.received) == 3
    assert {key for _, key, _ in rx.received} == {ORDER.client_order_id}
    body = rx.received[-1][2]
    assert body == {"ticker": "ES", "action": "buy", "quantity": 1, "orderType": "market",
                    "clientOrderId": ORDER.client_order_id, "secret": SECRET}
    assert TOKEN not in caplog.text and SECRET not in caplog.text


def test_a_timeout_is_retried(receiver_factory):
    rx = receiver_factory(["hang", 200])
    _router(rx.url).send(ORDER)
    assert len(rx.received) == 2


def test_never_delivered_raises_without_the_secret(receiver_factory, caplog):
    rx = receiver_factory([500, 500, 500])
    sleeps = []
    with caplog.at_level(logging.INFO), pytest.raises(OrderNotDelivered) as err:
        _router(rx.url, sleep=sleeps.append).send(ORDER)
    assert "not delivered after 3 attempts (last: HTTP 500)" in str(err.value)
    assert sleeps == [0.01, 0.02]  # exponential back-off between attempts
    for text in (str(err.value), caplog.text, repr(_router(rx.url))):
        assert TOKEN not in text and SECRET not in text


def test_a_refusal_is_not_retried(receiver_factory):
    rx = receiver_factory([400])
    with pytest.raises(OrderNotDelivered, match="refused order"):
        _router(rx.url).send(ORDER)
    assert len(rx.received) == 1


def test_an_unreachable_receiver_names_no_secret(caplog):
    url = f"http://127.0.0.1:9/hooks/{TOKEN}"  # discard port: nothing listens
    with caplog.at_level(logging.INFO), pytest.raises(OrderNotDelivered) as err:
        _router(url, sleep=lambda s: None).send(ORDER)
    assert TOKEN not in str(err.value) + caplog.text


def test_from_env_needs_the_url(monkeypatch):
    monkeypatch.delenv("ROONEY_WEBHOOK_URL", raising=False)
    with pytest.raises(Exception, match="ROONEY_WEBHOOK_URL"):
        WebhookRouter.from_env()
