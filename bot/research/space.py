"""The search space of ``guardbot tune``: any config key as an integer or float range (with a
step or on a log scale) or a set of choices, from the command line or a TOML file.

Command line, ``--param KEY=SPEC``::

    guards.position_cap.max_leverage=int:1..20            integers 1 to 20
    guards.liquidation.close_at_pct=float:0.5..3:step=0.5  0.5, 1.0, ... 3.0
    guards.stop_loss.max_risk_pct=float:0.1..5:log         log scale
    guards.stop_loss.missing=choice:reject,attach          one of these (TOML values)
    strategy.params.fast=int:5..50:step=5

TOML file (``--space F.toml``), one table per key::

    [params."guards.position_cap.max_leverage"]
    type = "int"      # int | float | choice
    low = 1
    high = 20
    step = 1          # optional
    log = false       # optional
    [params."guards.stop_loss.missing"]
    choices = ["reject", "attach"]

A key that names a strategy parameter (``strategy.params.NAME``) is merged into the strategy's
parameters; every other key is a settings key, validated with the rest of the configuration
before a trial runs (an invalid combination is skipped and listed with its reason).
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from bot.settings import ConfigError


@dataclass(frozen=True)
class Param:
    """One dimension of the search space."""

    key: str
    kind: Literal["int", "float", "choice"]
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[Any, ...] = ()

    def describe(self) -> str:
        if self.kind == "choice":
            return f"{self.key} ∈ {{{', '.join(map(str, self.choices))}}}"
        extra = f" step {self.step:g}" if self.step else ""
        return f"{self.key} ∈ [{self.low:g}, {self.high:g}] ({self.kind}{extra}" + (
            ", log)" if self.log else ")"
        )

    def suggest(self, trial: Any) -> Any:
        """The value Optuna's ``trial`` suggests for this dimension."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.kind == "int":
            step = int(self.step) if self.step else 1
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=step, log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)


def _check(p: Param) -> Param:
    if p.kind == "choice":
        if not p.choices:
            raise ConfigError(f"{p.key}: choice needs at least one value")
        return p
    if not (math.isfinite(p.low) and math.isfinite(p.high)) or p.low > p.high:
        raise ConfigError(f"{p.key}: the range {p.low:g}..{p.high:g} is empty")
    if p.kind == "int" and (p.low != int(p.low) or p.high != int(p.high)):
        raise ConfigError(f"{p.key}: an int range needs whole numbers, got {p.low}..{p.high}")
    if p.step is not None and p.step <= 0:
        raise ConfigError(f"{p.key}: step must be positive")
    if p.log and (p.low <= 0 or p.step is not None):
        raise ConfigError(f"{p.key}: a log scale needs a positive range and no step")
    return p


def parse_param(text: str, parse_value: Callable[[str], Any]) -> Param:
    """``KEY=int:1..20[:step=2][:log]`` / ``KEY=float:…`` / ``KEY=choice:a,b`` → ``Param``."""
    key, sep, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    if not sep or not key or ":" not in spec:
        raise ConfigError(
            f"--param needs KEY=int:LOW..HIGH, KEY=float:LOW..HIGH[:step=S][:log] or "
            f"KEY=choice:A,B, got {text!r}"
        )
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "choice":
        values = tuple(parse_value(v.strip()) for v in rest.split(",") if v.strip())
        return _check(Param(key, "choice", choices=values))
    if kind not in ("int", "float"):
        raise ConfigError(f"--param {key}: the type must be int, float or choice, not {kind!r}")
    parts = rest.split(":")
    low_s, dots, high_s = parts[0].partition("..")
    try:
        low, high = float(low_s), float(high_s)
    except ValueError:
        raise ConfigError(f"--param {key}: the range must be LOW..HIGH, got {parts[0]!r}") from None
    if not dots:
        raise ConfigError(f"--param {key}: the range must be LOW..HIGH, got {parts[0]!r}")
    step: float | None = None
    log = False
    for opt in parts[1:]:
        name, _, value = opt.partition("=")
        if name == "log" and not value:
            log = True
        elif name == "step":
            try:
                step = float(value)
            except ValueError:
                raise ConfigError(f"--param {key}: step={value!r} is not a number") from None
        else:
            raise ConfigError(f"--param {key}: unknown option {opt!r} (step=S or log)")
    return _check(Param(key, kind, low, high, step, log))  # type: ignore[arg-type]


def from_toml(path: Path) -> tuple[list[Param], dict[str, Any]]:
    """The ``[params."KEY"]`` tables of a space file, and its optional ``[tune]`` table."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read the search space {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"search space {path} is not valid TOML: {exc}") from None
    raw = data.get("params")
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f'search space {path} has no [params."KEY"] tables')
    out: list[Param] = []
    for key, spec in raw.items():
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: params.{key} must be a table")
        unknown = set(spec) - {"type", "low", "high", "step", "log", "choices"}
        if unknown:
            raise ConfigError(f"{path}: params.{key} has unknown keys {sorted(unknown)}")
        if "choices" in spec:
            out.append(_check(Param(key, "choice", choices=tuple(spec["choices"]))))
            continue
        kind = spec.get("type", "float")
        if kind not in ("int", "float"):
            raise ConfigError(f"{path}: params.{key}.type must be int, float (or give choices)")
        try:
            low, high = float(spec["low"]), float(spec["high"])
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"{path}: params.{key} needs numeric low and high") from None
        step = spec.get("step")
        out.append(
            _check(
                Param(key, kind, low, high, None if step is None else float(step),
                      bool(spec.get("log", False)))
            )
        )  # fmt: skip
    tune = data.get("tune", {})
    return out, dict(tune) if isinstance(tune, dict) else {}


def merge_space(*spaces: Sequence[Param]) -> list[Param]:
    """One space; a key given twice is an error."""
    seen: dict[str, Param] = {}
    for space in spaces:
        for p in space:
            if p.key in seen:
                raise ConfigError(f"search parameter {p.key} given twice")
            seen[p.key] = p
    if not seen:
        raise ConfigError("nothing to tune: give --param KEY=SPEC or --space FILE")
    return list(seen.values())


def to_tree(values: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b.c": v}`` → ``{"a": {"b": {"c": v}}}``."""
    from bot.settings import set_dotted

    tree: dict[str, Any] = {}
    for key, value in values.items():
        set_dotted(tree, key, value)
    return tree


def deep_merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``, tables merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def config_reason(exc: Exception) -> str:
    """A ``ConfigError``'s message on one line, without its "invalid configuration:" head."""
    text = " ".join(str(exc).split())
    for head in ("invalid configuration: ",):
        text = text.removeprefix(head)
    return text


def short(key: str) -> str:
    """A column title for a dotted key: its last two parts (``position_cap.max_leverage``)."""
    return ".".join(key.split(".")[-2:])
