"""The status page in a real headless browser (Debian's chromium driven by Selenium).

A short paper session runs in the test: PaperExchange + Executor + Engine + Store in tmp_path,
prices fed by the test, one entry allowed (a position with a stop) and one refused by the guards
(a second entry too soon after the first), plus a decision whose symbol and reason carry markup.
The status app serves that engine on 127.0.0.1 with a token; chromium opens ``/?token=...``
once (cookie), and the test checks the position row, the refused decision, the markup shown as
text and never run, the equity chart, and that the browser console has no errors.

Browser set-up: ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` (Debian packages ``chromium``
and ``chromium-driver``). When missing they are installed with apt-get only when running as root
with ``CI`` or ``GUARDBOT_INSTALL_BROWSER=1`` set; otherwise the test is skipped, saying why.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.exchange.paper import paper_exchange
from bot.ops.status import bound_port, make_app, start_status, stop_status
from bot.settings import load_settings
from bot.state.store import Store
from bot.trading.engine import Engine
from bot.trading.executor import Executor
from guards.engine import GuardEngine
from guards.types import Decision, OrderIntent, Verdict

BTC = "BTC/USDT:USDT"
NOON = 1_743_508_800.0  # 2025-04-01 12:00 UTC, inside the default trading session
CHROMIUM = Path("/usr/bin/chromium")
DRIVER = Path("/usr/bin/chromedriver")
TOKEN = "browser-test-token"
EVIL_SYMBOL = "<img src=x onerror=window.__pwned=1>"
EVIL_REASON = "<script>window.__pwned=2</script>"


def _install_browser() -> str | None:
    """Install chromium + chromedriver if allowed; the reason to skip otherwise."""
    if CHROMIUM.exists() and DRIVER.exists():
        return None
    allowed = os.environ.get("CI") or os.environ.get("GUARDBOT_INSTALL_BROWSER") == "1"
    if not allowed:
        return (
            f"{CHROMIUM} or {DRIVER} missing: install Debian's chromium and chromium-driver, "
            "or run as root with CI=1 or GUARDBOT_INSTALL_BROWSER=1 to let the test install them"
        )
    if os.geteuid() != 0:
        return f"{CHROMIUM} missing and not root: cannot apt-get install chromium"
    if shutil.which("apt-get") is None:
        return f"{CHROMIUM} missing and no apt-get on this machine"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        subprocess.run(["apt-get", "update", "-q"], check=True, env=env, timeout=600)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"],
            check=True,
            env=env,
            timeout=1200,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        return f"apt-get install chromium chromium-driver failed: {exc}"
    if not (CHROMIUM.exists() and DRIVER.exists()):
        return "apt-get finished but chromium/chromedriver are still missing"
    return None


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium (dev extra) missing")
    reason = _install_browser()
    if reason is not None:
        pytest.skip(reason)
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,1400",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=str(DRIVER)))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


class Clock:
    def __init__(self, t: float = NOON) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


async def paper_session(tmp: Path, store: Store) -> tuple[Engine, str]:
    """A seatbelt-mode engine on the paper exchange with one position and one refusal.

    Returns the engine and the code of the refusal (a second entry 40 s after the first).
    """
    s = load_settings(
        None,
        {"state": {"dir": str(tmp / "state")}, "mode": "paper", "strategy": {"path": "none"}},
        env_file=None,
        secrets_dir=None,
    )
    clock = Clock()
    exchange = paper_exchange(s, store)
    executor = Executor(exchange, store=store, run_id="browser", max_leverage=5.0)
    await executor.prepare([BTC], "isolated", 3.0)
    engine = Engine(
        exchange=exchange,
        executor=executor,
        store=store,
        guard=GuardEngine(s.guards),
        markets={BTC: exchange.core.market_rules(BTC)},
        strategy=None,
        symbols=(BTC,),
        timeframe_ms=60_000,
        run_id="browser",
        state_dir=s.state.dir,
        clock=clock,
        on_price_hook=lambda sym, p, ts: exchange.on_price(sym, p, ts),
    )
    await engine.start()
    for price in (60_000.0, 60_050.0):
        clock.t += 20
        await engine.on_price(BTC, price, clock.t)
        await engine.job_equity()
    opened = await engine.handle(OrderIntent(BTC, "long", 0.01, leverage=3.0, stop_price=58_800.0))
    assert opened is not None and opened.allowed
    for price in (60_200.0, 60_400.0):
        clock.t += 20
        await engine.on_price(BTC, price, clock.t)
        await engine.job_equity()
    refused = await engine.handle(OrderIntent(BTC, "long", 0.01, leverage=3.0))
    assert refused is not None and not refused.allowed
    # a decision carrying markup in its symbol and reason (what a hostile exchange or a bug
    # could put there): the page must show it as text
    store.record_decision(
        Decision(
            "reject",
            OrderIntent(EVIL_SYMBOL, "short", 1.0),
            0.0,
            "evil_code",
            EVIL_REASON,
            (Verdict("x", "reject", "evil_code", EVIL_REASON, figures={"<b>k</b>": 1.0}),),
        ),
        clock.t - 10,  # between the entry and the refusal
        "browser",
    )
    return engine, refused.code


def shown(x: float) -> str:
    """How the page prints a price: ``toLocaleString('en-US', {maximumFractionDigits: 2})``."""
    return f"{x:,.2f}".rstrip("0").rstrip(".")


def _load(driver: Any, url: str) -> dict[str, Any]:
    """Open the page, wait for the first refresh, return what the test looks at."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 15).until(
        lambda d: d.execute_script("return document.body.dataset.loaded") == "1"
    )

    def rows(table: str) -> list[list[str]]:
        out = []
        for tr in driver.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr"):
            out.append([td.text for td in tr.find_elements(By.TAG_NAME, "td")])
        return out

    return {
        "url": driver.current_url,
        "positions": rows("positions"),
        "decisions": rows("decisions"),
        "counters": rows("counters"),
        "pwned": driver.execute_script("return window.__pwned === undefined ? null : 1"),
        "chart_points": driver.execute_script(
            "const l = document.getElementById('equity-line');"
            "return l === null ? 0 : l.points.numberOfItems;"
        ),
        "injected_nodes": len(driver.find_elements(By.CSS_SELECTOR, "main img, main script")),
        "error": driver.find_element(By.ID, "error").text,
        "log": driver.get_log("browser"),
    }


async def test_page_shows_a_paper_session_without_console_errors(
    chrome: Any, tmp_path: Path
) -> None:
    with Store.open(tmp_path / "state") as store:
        engine, refused_code = await paper_session(tmp_path, store)
        snap = engine.snapshot()
        pos = snap["positions"][0]
        app = make_app(engine.snapshot, store, token=TOKEN, health=lambda: (True, {}))
        runner = await start_status(app, "127.0.0.1", 0)
        try:
            base = f"http://127.0.0.1:{bound_port(runner)}"
            seen = await asyncio.to_thread(_load, chrome, f"{base}/?token={TOKEN}")
            await asyncio.to_thread(chrome.save_screenshot, str(tmp_path / "status.png"))
        finally:
            await stop_status(runner)

    assert seen["url"] == f"{base}/"  # the token left the address bar (now a cookie)
    assert seen["error"] == ""
    assert seen["log"] == [], seen["log"]  # nothing at all in the console, errors included

    [row] = seen["positions"]
    assert row[0] == BTC and row[1] == "long"
    # stop and liquidation as the engine reports them (en-US grouping, at most 2 decimals)
    assert row[5] == "58,800" == shown(pos["stop"])
    assert row[6] == shown(pos["liquidation"])
    assert row[7].endswith("%")

    codes = [(d[1], d[4], d[5]) for d in seen["decisions"]]
    assert codes[0] == (BTC, "reject", refused_code)
    assert codes[-1] == (BTC, "allow", "ok")  # the entry that opened the position
    evil = next(d for d in seen["decisions"] if d[5] == "evil_code")
    assert evil[1] == EVIL_SYMBOL and evil[6] == EVIL_REASON  # shown verbatim, as text
    assert seen["pwned"] is None and seen["injected_nodes"] == 0

    assert seen["counters"][0][0] == "entries last hour"
    assert seen["counters"][0][1] == "1"
    assert seen["chart_points"] == 4  # four equity snapshots recorded by the session
