"""Replay speed race: guardbot vs freqtrade backtesting on the same year of 1-minute candles.

Both engines replay the 525,600 seeded BTC/USDT:USDT candles of the freqtrade harness in
``../shared/bench/freqtrade`` with the same SMA(20)/SMA(60) cross (fill at the next open, stop
±2/3 %, 3x, 0.05 % fee). guardbot runs ``guardbot replay`` with every guard rule on
(``benchmarks/bench_config.toml``); freqtrade runs the harness's ``ft_offline.py backtesting``
exactly as its README's "one run by hand" does, from the side venv ``make bench-freqtrade``
builds (``.bench/ftvenv``; freqtrade is not a dependency of this project). Each engine is a child
process timed from spawn to exit (wall) with its peak RSS from ``os.wait4``; runs are
interleaved (guardbot, freqtrade, guardbot, ...) and the medians compared, each run preceded by
the harness's CPU calibration loop. candles/s = candles / whole-process wall time.

Data: ``.bench/data/btcusdt_1m.csv`` (+ ``_funding.csv``). When absent it is generated with the
harness's ``make_candles.py``, by the freqtrade venv's python if there is one, else by a small
``.bench/genvenv`` (numpy, pandas, pyarrow only), so the candles are always the same.

Usage (from the repository root)::

    python benchmarks/replay.py [--runs N] [--csv PATH] [--no-freqtrade]

Prints a table, then as its last line one JSON object: candles, guardbot_candles_per_s,
guardbot_peak_rss_mb, guardbot_load_s (reading and checking the CSV), guardbot_trades,
freqtrade_candles_per_s, freqtrade_peak_rss_mb, freqtrade_trades (the freqtrade keys null
without freqtrade), ratio, runs, cpu_calib_s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HARNESS = Path(os.environ.get("FTBENCH_HARNESS", ROOT.parent / "shared" / "bench" / "freqtrade"))
BENCH = ROOT / ".bench"
FT_VENV = BENCH / "ftvenv"
GEN_VENV = BENCH / "genvenv"
FT_DATADIR = BENCH / "user_data" / "data" / "binance"
FT_FEATHER = FT_DATADIR / "futures" / "BTC_USDT_USDT-1m-futures.feather"
DEFAULT_CSV = BENCH / "data" / "btcusdt_1m.csv"
RUNS_DIR = BENCH / "runs"
CONFIG = ROOT / "benchmarks" / "bench_config.toml"
#: sha256 of the harness's CSV (its README and run_freqtrade.sh).
ANCHOR_SHA = "77900d6de67c54b9fc207e5a52dd4b3823265c09f74f3fdc3d47632a667e0017"
TIMERANGE = "20230101-20240101"
#: The harness's fixed pure-Python loop (run_freqtrade.sh), seconds on this machine.
CALIB = """import time
t = time.perf_counter(); s = 0
for i in range(5_000_000): s += i * i
print(round(time.perf_counter() - t, 4))"""


@dataclass
class Run:
    """One child process: wall time, peak RSS and what it reported."""

    wall_s: float
    rss_mib: float
    candles: int
    trades: int
    liquidations: int
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def cps(self) -> float:
        return self.candles / self.wall_s


def say(text: str = "") -> None:
    print(text, flush=True)


# ------------------------------------------------------------------------------- processes


def timed(cmd: list[str], log: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run ``cmd`` with stdout to ``log`` and stderr to ``log.err``: (wall s, peak RSS MiB)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("wb") as out, log.with_suffix(log.suffix + ".err").open("wb") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=ROOT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        tail = log.with_suffix(log.suffix + ".err").read_text(errors="replace")[-2000:]
        raise SystemExit(f"{cmd[0]} exited {proc.returncode}:\n{tail}")
    return wall, usage.ru_maxrss / 1024.0  # Linux: ru_maxrss in KiB


def calibrate(python: str) -> float:
    out = subprocess.run([python, "-c", CALIB], capture_output=True, text=True, check=True)
    return float(out.stdout.strip())


# ------------------------------------------------------------------------------- data


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def generator_pins() -> list[str]:
    """numpy, pandas and pyarrow at the versions of the harness's lock file (same candles)."""
    wanted = ("numpy", "pandas", "pyarrow")
    pins = dict.fromkeys(wanted, "")
    lock = HARNESS / "requirements-freqtrade.lock.txt"
    if lock.exists():
        for line in lock.read_text().splitlines():
            name, sep, version = line.strip().partition("==")
            if sep and name.lower() in pins:
                pins[name.lower()] = f"=={version}"
    return [name + pins[name] for name in wanted]


def generator_python() -> Path:
    """The freqtrade venv's python, else a small venv with the generator's three libraries."""
    ft = FT_VENV / "bin" / "python"
    if ft.exists():
        return ft
    gen = GEN_VENV / "bin" / "python"
    if not gen.exists():
        pins = generator_pins()
        say(f"no freqtrade venv: creating {GEN_VENV} with {' '.join(pins)} only")
        subprocess.run([sys.executable, "-m", "venv", str(GEN_VENV)], check=True)
        subprocess.run([str(gen), "-m", "pip", "install", "-q", *pins], check=True)
    return gen


def ensure_data(csv: Path) -> None:
    """Generate the harness's candles into .bench/ when the default CSV or feather is missing."""
    if csv != DEFAULT_CSV:
        if not csv.exists():
            raise SystemExit(f"no such CSV: {csv}")
        return
    need_feather = (FT_VENV / "bin" / "freqtrade").exists() and not FT_FEATHER.exists()
    if csv.exists() and not need_feather:
        return
    script = HARNESS / "make_candles.py"
    if not script.exists():
        raise SystemExit(f"{csv} is missing and the harness ({HARNESS}) is not there to make it")
    python = generator_python()
    say(f"generating the harness's candles into {csv.parent} with {python} {script.name}")
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # never write into the harness folder
    subprocess.run(
        [str(python), str(script), "--datadir", str(FT_DATADIR), "--csv", str(csv)],
        check=True,
        env=env,
        cwd=ROOT,
    )


def funding_csv(csv: Path) -> Path | None:
    path = csv.with_name(csv.stem + "_funding.csv")
    return path if path.exists() else None


# ------------------------------------------------------------------------------- engines


def guardbot_cmd() -> list[str]:
    script = Path(sys.executable).parent / "guardbot"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from bot.cli import main; main()"]


def run_guardbot(csv: Path, i: int) -> Run:
    cmd = [*guardbot_cmd(), "replay", "--data", str(csv), "--config", str(CONFIG)]
    funding = funding_csv(csv)
    if funding is not None:
        cmd += ["--set", f"feed.funding_path={funding}"]
    cmd += ["--json", "--no-progress"]
    log = RUNS_DIR / f"guardbot_{i}.json"
    wall, rss = timed(cmd, log)
    report = json.loads(log.read_text().strip().splitlines()[-1])
    return Run(wall, rss, report["candles"], report["trades"], report["liquidations"], report)


def run_freqtrade(i: int) -> Run:
    out = RUNS_DIR / f"ftbench_{i}.json"
    cmd = [
        str(FT_VENV / "bin" / "python"),
        str(HARNESS / "ft_offline.py"),
        "backtesting",
        "--config",
        str(HARNESS / "ft_config.json"),
        "--strategy",
        "SmaCross",
        "--strategy-path",
        str(HARNESS),
        "--userdir",
        str(BENCH / "user_data"),
        "--datadir",
        str(FT_DATADIR),
        "--timerange",
        TIMERANGE,
        "--export",
        "none",
        "--cache",
        "none",
    ]
    env = {**os.environ, "FTBENCH_OUT": str(out), "PYTHONDONTWRITEBYTECODE": "1"}
    wall, rss = timed(cmd, RUNS_DIR / f"freqtrade_{i}.log", env)
    data = json.loads(out.read_text())
    res = data["result"]
    candles = sum(res["candles_loaded_incl_startup"].values())
    return Run(wall, rss, candles, res["trades"], res["liquidations"], data)


def freqtrade_ready(disabled: bool) -> str | None:
    """None when freqtrade can run, else why not."""
    if disabled:
        return "--no-freqtrade"
    if not (FT_VENV / "bin" / "freqtrade").exists():
        return f"not installed ({FT_VENV} missing: make bench-freqtrade)"
    if not (HARNESS / "ft_offline.py").exists():
        return f"harness not found at {HARNESS}"
    if not FT_FEATHER.exists():
        return f"freqtrade data missing ({FT_FEATHER})"
    return None


# ------------------------------------------------------------------------------- report


def spread(values: list[float], fmt: str) -> str:
    med = fmt.format(statistics.median(values))
    if len(values) == 1:
        return med
    return f"{med} ({fmt.format(min(values))}-{fmt.format(max(values))})"


def table(rows: dict[str, list[Run]]) -> None:
    head = (
        f"{'engine':<10}{'candles':>10}  {'wall s':<20}{'candles/s':<24}"
        f"{'peak RSS MiB':<18}{'trades':>8}{'liquidations':>14}"
    )
    say(head)
    say("-" * len(head))
    for name, runs in rows.items():
        say(
            f"{name:<10}{runs[0].candles:>10,}  "
            f"{spread([r.wall_s for r in runs], '{:.2f}'):<20}"
            f"{spread([r.cps for r in runs], '{:,.0f}'):<24}"
            f"{spread([r.rss_mib for r in runs], '{:.0f}'):<18}"
            f"{runs[0].trades:>8,}{runs[0].liquidations:>14,}"
        )


def describe_guardbot(runs: list[Run]) -> None:
    d = runs[0].details
    same = all(
        (r.trades, r.details["final_equity"]) == (runs[0].trades, d["final_equity"]) for r in runs
    )
    say(
        f"guardbot: final equity {d['final_equity']:,.2f} from {d['starting_balance']:,.0f}, "
        f"fees {d['fees']:,.2f}, funding {d['funding']:,.2f}, exits {d['exit_reasons']}, "
        f"load + replay {statistics.median(r.details['elapsed_s'] for r in runs):.2f} s "
        f"(in-process; loading {statistics.median(r.details['load_s'] for r in runs):.3f} s "
        f"of it), identical across runs: {'yes' if same else 'NO'}"
    )
    say(
        f"guardbot guards: {len(d['guards_enabled'])} rules on; "
        f"orders checked {d['orders_checked']:,}, refused {d['orders_refused']:,}, "
        f"resized {d['orders_resized']:,}; interventions by rule {d['guard_interventions']}"
    )


def describe_freqtrade(runs: list[Run]) -> None:
    res = runs[0].details["result"]
    phases = [r.details["phases"] for r in runs]
    loop = statistics.median(p.get("loop_only_s", float("nan")) for p in phases)
    same = all(r.details["result"]["final_balance"] == res["final_balance"] for r in runs)
    say(
        f"freqtrade: final balance {res['final_balance']:,.2f} from 1,000,000, "
        f"exits {res['exit_reasons']}, loop only {loop:.2f} s "
        f"({res['candles_in_range'] / loop:,.0f} candles/s), blocked network requests "
        f"{runs[0].details.get('blocked_count')}, identical across runs: "
        f"{'yes' if same else 'NO'}"
    )


def recorded_anchor() -> str | None:
    """The harness's recorded 12-month medians, for reference across machines."""
    path = HARNESS / "results_freqtrade_2026.9.json"
    try:
        runs = json.loads(path.read_text())["12m"]
    except (OSError, KeyError, ValueError):
        return None
    wall = statistics.median(r["wall_s"] for r in runs)
    calib = statistics.median(r["calib_s"] for r in runs)
    rss = statistics.median(r["rss_mib"] for r in runs)
    cps = statistics.median(r["candles"] / r["wall_s"] for r in runs)
    return (
        f"harness's recorded freqtrade 12 months: wall {wall:.2f} s, {cps:,.0f} candles/s, "
        f"peak RSS {rss:.0f} MiB, cpu calib {calib:.3f} s"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=3, help="interleaved runs per engine (median)")
    ap.add_argument("--csv", type=Path, default=DEFAULT_CSV, help="candle CSV for guardbot")
    ap.add_argument("--no-freqtrade", action="store_true", help="time guardbot only")
    args = ap.parse_args(argv)
    runs_n = max(1, args.runs)
    csv = args.csv.resolve()

    ensure_data(csv)
    digest = sha256(csv)
    same = "the harness's candles" if digest == ANCHOR_SHA else "NOT the harness's candles"
    say(f"data: {csv} (sha256 {digest[:12]}…: {same})")
    why_not = freqtrade_ready(args.no_freqtrade)
    if why_not is None and csv != DEFAULT_CSV:
        say(f"note: freqtrade replays {FT_FEATHER}, not {csv.name}")
    say(f"freqtrade: {'interleaved, timerange ' + TIMERANGE if why_not is None else why_not}")

    gb: list[Run] = []
    ft: list[Run] = []
    calib: list[float] = []
    for i in range(1, runs_n + 1):
        calib.append(calibrate(sys.executable))
        # Alternate who goes first, so neither engine always gets the quieter slot.
        order = ("guardbot", "freqtrade") if i % 2 else ("freqtrade", "guardbot")
        for engine in order:
            if engine == "guardbot":
                gb.append(run_guardbot(csv, i))
                r = gb[-1]
            elif why_not is None:
                ft.append(run_freqtrade(i))
                r = ft[-1]
            else:
                continue
            say(
                f"run {i}/{runs_n} {engine:<9} wall {r.wall_s:6.2f} s  {r.cps:>9,.0f} candles/s  "
                f"peak RSS {r.rss_mib:5.0f} MiB  trades {r.trades:,}  (cpu calib {calib[-1]} s)"
            )

    say()
    table({"guardbot": gb, **({"freqtrade": ft} if ft else {})})
    say()
    describe_guardbot(gb)
    if ft:
        describe_freqtrade(ft)
    anchor = recorded_anchor()
    if anchor:
        say(f"{anchor}; this run's cpu calib {statistics.median(calib):.3f} s")

    gb_cps = statistics.median(r.cps for r in gb)
    ft_cps = statistics.median(r.cps for r in ft) if ft else None
    result = {
        "candles": gb[0].candles,
        "guardbot_candles_per_s": round(gb_cps),
        "guardbot_peak_rss_mb": round(statistics.median(r.rss_mib for r in gb), 1),
        "guardbot_wall_s": round(statistics.median(r.wall_s for r in gb), 3),
        "guardbot_load_s": round(statistics.median(r.details["load_s"] for r in gb), 3),
        "guardbot_trades": gb[0].trades,
        "guardbot_liquidations": gb[0].liquidations,
        "freqtrade_candles_per_s": round(ft_cps) if ft_cps is not None else None,
        "freqtrade_peak_rss_mb": round(statistics.median(r.rss_mib for r in ft), 1) if ft else None,
        "freqtrade_wall_s": round(statistics.median(r.wall_s for r in ft), 3) if ft else None,
        "freqtrade_trades": ft[0].trades if ft else None,
        "freqtrade_liquidations": ft[0].liquidations if ft else None,
        "ratio": round(gb_cps / ft_cps, 2) if ft_cps else None,
        "runs": runs_n,
        "cpu_calib_s": round(statistics.median(calib), 4),
    }
    if ft_cps:
        say(f"ratio (guardbot / freqtrade candles per second, medians): {result['ratio']}x")
    say(json.dumps(result))


if __name__ == "__main__":
    main()
