"""structlog set-up: JSON lines with context, and secrets masked wherever they appear."""

from __future__ import annotations

import io
import json

import structlog

from bot.ops.logging import MASK, Redactor, bind, configure_logging


def test_json_lines_carry_timestamp_level_event_and_context() -> None:
    out = io.StringIO()
    configure_logging(fmt="json", stream=out)
    structlog.contextvars.clear_contextvars()
    bind(run_id="r1", mode="paper")
    structlog.get_logger().info("order_sent", symbol="BTC/USDT:USDT", order_id="o-1", rule="x")
    event = json.loads(out.getvalue().strip().splitlines()[-1])
    assert event["event"] == "order_sent"
    assert event["level"] == "info"
    assert event["timestamp"].endswith("Z")
    assert event["run_id"] == "r1" and event["mode"] == "paper"
    assert event["symbol"] == "BTC/USDT:USDT" and event["order_id"] == "o-1"
    structlog.contextvars.clear_contextvars()


def test_secrets_masked_by_key_and_by_value_anywhere() -> None:
    out = io.StringIO()
    secret = "Zk8s-very-secret-api-value"
    configure_logging(fmt="json", stream=out, secrets=[secret])
    log = structlog.get_logger()
    log.info(
        "req", api_secret="plain", headers={"X-MBX-APIKEY": secret}, url=f"https://x?k={secret}"
    )
    try:
        raise RuntimeError(f"auth failed for {secret}")
    except RuntimeError:
        log.exception("boom")
    text = out.getvalue()
    assert secret not in text
    assert "plain" not in text
    assert text.count(MASK) >= 4


def test_redactor_handles_nested_structures() -> None:
    r = Redactor(["abcd1234"])
    event = r(None, "info", {"event": "x", "data": [{"k": "abcd1234"}, ("t", "pre-abcd1234")]})
    assert event == {"event": "x", "data": [{"k": MASK}, ("t", f"pre-{MASK}")]}
