"""Every bad input ends in one line and exit status 2, never a traceback (the real CLI, as a
process).

Each case names the input, a value and what is expected; the test checks the exit status, that
stderr is exactly one ``guardbot: ...`` line without a traceback, and that the line carries the
fragments that identify the input, the value and the expectation. Data, configuration and
argument errors share the status (2, as typer's own usage errors). The cases run in parallel
processes, each in its own folder with a clean ``GUARDBOT_`` environment.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

CHECK = ["check-order", "--symbol", "BTC/USDT:USDT", "--side", "long", "--at", "2025-04-01T12:00"]
T0 = 1_743_465_600_000  # 2025-04-01 00:00 UTC
M5 = 300_000


def csv(rows: list[str]) -> str:
    return "timestamp_ms,open,high,low,close,volume\n" + "\n".join(rows) + "\n"


def good(i: int) -> str:
    return f"{T0 + i * M5},100,101,99,100,1"


@dataclass
class Case:
    args: list[str]
    #: Fragments the one line must contain (input, value, expectation).
    expect: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    #: Files to create in the case's folder: name → text or bytes.
    files: dict[str, str | bytes] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None


def foreign_db(folder: Path) -> None:
    (folder / "st").mkdir()
    conn = sqlite3.connect(folder / "st" / "guardbot.sqlite")
    conn.execute("CREATE TABLE accounts (id INTEGER)")
    conn.commit()
    conn.close()


def store_file(content: bytes) -> Callable[[Path], None]:
    def make(folder: Path) -> None:
        (folder / "st").mkdir()
        (folder / "st" / "guardbot.sqlite").write_bytes(content)

    return make


REPLAY = ["replay", "--symbol", "BTC/USDT:USDT", "--data", "c.csv"]

CASES: dict[str, Case] = {
    "binary config": Case(
        ["config", "check", "--config", "bin.toml"],
        ("config file bin.toml", "not a text file", "expected a UTF-8 TOML file"),
        files={"bin.toml": b"\x00\xff\xfe\x01 binary"},
    ),
    "binary .env": Case(
        ["config", "check"],
        ("env file .env", "not a text file", "expected KEY=VALUE lines"),
        files={".env": b"GUARDBOT_MODE=\xff\xfe\x00\n"},
    ),
    "symbols not a list": Case(
        ["config", "check"],
        ("exchange.symbols = 'BTC'", "GUARDBOT_EXCHANGE__SYMBOLS", "expected a JSON list"),
        env={"GUARDBOT_EXCHANGE__SYMBOLS": "BTC"},
    ),
    "symbol not a perpetual": Case(
        ["config", "check"],
        ("exchange.symbols", "'BTC' is not a perpetual market", "BASE/QUOTE:SETTLE"),
        env={"GUARDBOT_EXCHANGE__SYMBOLS": '["BTC"]'},
    ),
    "state.dir under a file (replay)": Case(
        ["replay", "--set", 'state.dir="f.txt/state"'],
        ("state.dir = 'f.txt/state'", "Not a directory", "expected a path guardbot can"),
        files={"f.txt": "a file, not a folder"},
    ),
    "state.dir under a file (store)": Case(
        ["halt", "--state-dir", "f.txt/state"],
        ("state.dir f.txt/state", "cannot create the folder", "expected a folder guardbot"),
        files={"f.txt": "a file, not a folder"},
    ),
    "unknown exchange.id": Case(
        ["config", "check"],
        ("exchange.id = 'binanse'", "not a ccxt exchange id", "did you mean binance?"),
        env={"GUARDBOT_EXCHANGE__ID": "binanse"},
    ),
    "malformed exchange.api_url": Case(
        ["config", "check"],
        ("exchange.api_url = 'htp:/x'", "expected a http/https URL"),
        env={"GUARDBOT_EXCHANGE__API_URL": "htp:/x"},
    ),
    "check-order --amount inf": Case(
        [*CHECK, "--amount", "inf", "--price", "60000", "--stop", "59000"],
        ("--amount inf", "expected a positive amount in BTC"),
    ),
    "check-order --amount 1e308": Case(
        [*CHECK, "--amount", "1e308", "--price", "60000", "--stop", "59000"],
        ("--amount 1e+308", "beyond BTC/USDT:USDT's largest leverage tier", "expected at most"),
    ),
    "check-order --price inf": Case(
        [*CHECK, "--amount", "0.1", "--price", "inf", "--stop", "59000"],
        ("--price inf", "expected a positive price in USDT"),
    ),
    "check-order --leverage 1000": Case(
        [*CHECK, "--amount", "0.1", "--price", "60000", "--stop", "59000", "--leverage", "1000"],
        ("--leverage 1000", "allows 1x to 125x", "expected a leverage from 1 to 125"),
    ),
    "check-order --balance nan": Case(
        [*CHECK, "--amount", "0.1", "--price", "60000", "--stop", "59000", "--balance", "nan"],
        ("--balance nan", "expected a finite wallet balance"),
    ),
    "check-order two sizes": Case(
        [*CHECK, "--amount", "0.1", "--notional", "600", "--price", "60000"],
        ("got --amount and --notional", "expected one of --amount"),
    ),
    "all-zero candle prices": Case(
        REPLAY,
        ("c.csv: row 1", "price ≤ 0", "expected positive prices"),
        files={"c.csv": csv([f"{T0 + i * M5},0,0,0,0,1" for i in range(3)])},
    ),
    "negative low": Case(
        REPLAY,
        ("c.csv: row 2", "low=-5.0", "price ≤ 0"),
        files={"c.csv": csv([good(0), f"{T0 + M5},100,101,-5,100,1", good(2)])},
    ),
    "timestamp beyond any date": Case(
        REPLAY,
        ("c.csv: row 2", "timestamp out of range", "99999999999999999999"),
        files={"c.csv": csv([good(0), "99999999999999999999,100,101,99,100,1"])},
    ),
    "timestamp after 2100": Case(
        REPLAY,
        ("timestamp 99999999999999", "out of range", "expected epoch milliseconds"),
        files={"c.csv": csv([good(0), good(1), "99999999999999,100,101,99,100,1"])},
    ),
    "unsorted data": Case(
        REPLAY,
        ("c.csv: row 4", "unsorted timestamp"),
        files={"c.csv": csv([good(0), good(1), good(3), good(2), good(4)])},
    ),
    "infinite price": Case(
        REPLAY,
        ("c.csv: row 2", "infinite price", "open=inf", "expected finite numbers"),
        files={"c.csv": csv([good(0), f"{T0 + M5},inf,101,99,100,1", good(2)])},
    ),
    "gap without --allow-gaps": Case(
        REPLAY,
        ("gap: 1 missing 5m candle", "pass --allow-gaps"),
        files={"c.csv": csv([good(i) for i in (0, 1, 2, 4, 5, 6)])},
    ),
    "long single line": Case(
        REPLAY,
        ("line 1 is longer than 65,536 characters", "expected a candle CSV"),
        files={"c.csv": "1743465600000," + "1.5," * 200_000 + "\n"},
    ),
    "corrupt store (not SQLite)": Case(
        ["history", "--state-dir", "st"],
        ("st/guardbot.sqlite is not a guardbot store", "not an SQLite file", "move it away"),
        setup=store_file(b"definitely not a database " * 40),
    ),
    "corrupt store (damaged SQLite)": Case(
        ["history", "--state-dir", "st"],
        ("st/guardbot.sqlite is not a guardbot store", "SQLite says"),
        setup=store_file(b"SQLite format 3\x00" + b"\xff" * 4000),
    ),
    "zero-length store": Case(
        ["history", "--state-dir", "st"],
        ("st/guardbot.sqlite is empty (0 bytes)", "not a guardbot store", "move it away"),
        setup=store_file(b""),
    ),
    "foreign-schema store": Case(
        ["halt", "--state-dir", "st"],
        ("not a guardbot store", "another program's database: tables accounts"),
        setup=foreign_db,
    ),
    "typo in a GUARDBOT_ section": Case(
        ["config", "check"],
        (
            "GUARDBOT_GAURDS__POSITION_CAP__MAX_LEVERAGE = '2'",
            "names no setting",
            "did you mean GUARDBOT_GUARDS__POSITION_CAP__MAX_LEVERAGE?",
        ),
        env={"GUARDBOT_GAURDS__POSITION_CAP__MAX_LEVERAGE": "2"},
    ),
    "unknown GUARDBOT_ section": Case(
        ["config", "check"],
        ("GUARDBOT_WHATEVER__X = '1'", "names no setting", "GUARDBOT_<SECTION>__<KEY>"),
        env={"GUARDBOT_WHATEVER__X": "1"},
    ),
    "unknown key in .env": Case(
        ["config", "check"],
        ("GUARDBOT_GUARDS__STOP_LOSS__MAX_RISK in env file .env", "did you mean"),
        files={".env": "GUARDBOT_GUARDS__STOP_LOSS__MAX_RISK=2\n"},
    ),
    "API key in a TOML file": Case(
        ["config", "check", "--config", "c.toml"],
        ("exchange.api_key is set in config file c.toml", "never read from a TOML file"),
        files={"c.toml": '[exchange]\napi_key = "abc"\n'},
    ),
    "webhook URL in a TOML file": Case(
        ["config", "check", "--config", "c.toml"],
        ("notify.webhook_url is set in config file c.toml", "GUARDBOT_NOTIFY__WEBHOOK_URL"),
        files={"c.toml": '[notify]\nwebhook_url = "https://hooks.example/T0KEN"\n'},
    ),
    "bad value in a TOML file names the file": Case(
        ["config", "check", "--config", "c.toml"],
        ("guards.position_cap.max_leverage = 500", "(from c.toml)", "less than or equal to 125"),
        files={"c.toml": "[guards.position_cap]\nmax_leverage = 500\n"},
    ),
    "typer usage error": Case(["check-order", "--side"], ("",)),
}


def run_case(name: str, case: Case, root: Path) -> subprocess.CompletedProcess[str]:
    folder = root / name.replace(" ", "_").replace("/", "_")
    folder.mkdir(parents=True)
    for file, content in case.files.items():
        path = folder / file
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    if case.setup is not None:
        case.setup(folder)
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GUARDBOT_")}
    env.update(case.env)
    return subprocess.run(
        [sys.executable, "-c", "from bot.cli import main; main()", *case.args],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def results(
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, subprocess.CompletedProcess[str]]:
    root = tmp_path_factory.mktemp("bad-inputs")
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(run_case, name, case, root) for name, case in CASES.items()}
        return {name: f.result() for name, f in futures.items()}


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_line_and_exit_2(
    name: str, results: dict[str, subprocess.CompletedProcess[str]]
) -> None:
    proc = results[name]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    if name == "typer usage error":  # typer's own box, not ours: the status is what matters
        return
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr[-2000:]
    line = lines[0]
    assert line.startswith("guardbot: ") and len(line) < 1000, line
    for fragment in CASES[name].expect:
        assert fragment in line, (fragment, line)


def test_a_200_mb_single_line_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    """The whole line is never read: the message quotes 60 characters and the process stays
    small (the line alone would take 200 MB as text, and several times that split)."""
    data = tmp_path / "huge.csv"
    with data.open("w", encoding="ascii") as f:
        f.write("1743465600000,")
        chunk = "1.5," * 262_144  # 1 MiB
        for _ in range(200):
            f.write(chunk)
        f.write("\n")
    probe = (
        "import resource, subprocess, sys\n"
        "p = subprocess.run([sys.executable, '-c', 'from bot.cli import main; main()', 'replay',"
        " '--symbol', 'BTC/USDT:USDT', '--data', sys.argv[1]], capture_output=True, text=True)\n"
        "print(p.returncode, len(p.stderr), p.stderr.count(chr(10)),"
        " resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("GUARDBOT_")}
    out = subprocess.run(
        [sys.executable, "-c", probe, str(data)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    code, err_len, err_lines, max_rss_kib = (int(x) for x in out.stdout.split())
    assert code == 2 and err_lines == 1 and err_len < 500
    assert max_rss_kib < 200 * 1024  # well under the 200 MB line itself
