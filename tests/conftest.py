"""Shared test fixtures: where ../shared/data lives, and an isolated environment for settings."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import settings

# CI (``CI=true``) runs the property tests on a fixed seed and without the example database, so a
# red run is the code's doing and replays the same way; locally every run explores new examples.
# Falsifying examples found locally are pinned with ``@example`` next to their test.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No GUARDBOT_* variables from the developer's shell; run in an empty folder (no .env)."""
    for key in list(os.environ):
        if key.upper().startswith("GUARDBOT_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)
    return tmp_path
