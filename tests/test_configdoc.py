"""config/default.toml and the README's config table stay in sync with the settings models."""

from __future__ import annotations

import tomllib
from pathlib import Path

from bot.configdoc import default_toml, iter_fields, markdown_table
from bot.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def test_default_toml_is_generated_from_the_models() -> None:
    on_disk = (REPO / "config" / "default.toml").read_text(encoding="utf-8")
    assert on_disk == default_toml(), "run: guardbot config doc --toml > config/default.toml"


def test_default_toml_validates_and_equals_model_defaults() -> None:
    data = tomllib.loads((REPO / "config" / "default.toml").read_text(encoding="utf-8"))
    assert Settings.model_validate(data) == Settings.model_validate({})


def test_every_field_has_a_description() -> None:
    missing = [key for key, _, _, desc in iter_fields(Settings) if not desc]
    assert missing == []


def test_readme_table_is_fresh() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("<!-- config-table:start -->") + len("<!-- config-table:start -->")
    end = readme.index("<!-- config-table:end -->")
    assert readme[start:end].strip() == markdown_table().strip(), (
        "regenerate the README table with: guardbot config doc"
    )
