"""The Dockerfile's promises: non-root, healthcheck, no baked secrets, installs this project,
and its ENTRYPOINT/CMD/HEALTHCHECK commands exist in the installed CLI."""

from __future__ import annotations

import json
import re
from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app

REPO = Path(__file__).resolve().parents[1]
TEXT = (REPO / "Dockerfile").read_text(encoding="utf-8")
FINAL = TEXT[TEXT.rindex("\nFROM ") :]


def instr(name: str, text: str = FINAL) -> list[str]:
    joined = text.replace("\\\n", " ")
    return [m.group(1).strip() for m in re.finditer(rf"^{name}\s+(.*)$", joined, re.M)]


def test_multi_stage_with_slim_base() -> None:
    froms = instr("FROM", TEXT)
    assert len(froms) >= 2
    assert all("slim" in f for f in froms)
    assert "gcc" not in FINAL and "build-essential" not in FINAL


def test_runs_as_non_root() -> None:
    users = instr("USER")
    assert users, "final stage has no USER"
    assert users[-1].split(":")[0] not in {"root", "0"}


def test_no_secrets_baked_in() -> None:
    for line in instr("ENV") + instr("ARG", TEXT):
        assert not re.search(r"(KEY|SECRET|PASSWORD|TOKEN)\s*=", line, re.I), line
    ignored = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".env", "secrets", "state", ".git"):
        assert entry in ignored


def test_installs_from_the_projects_own_pyproject_with_the_lock() -> None:
    assert re.search(r"COPY .*pyproject\.toml", TEXT)
    assert re.search(r"pip wheel .*-c requirements\.lock \.", TEXT)
    assert "--no-index" in FINAL


def test_wheels_come_from_a_bind_mount_so_no_wheels_layer_remains() -> None:
    runs = instr("RUN")
    install = [r for r in runs if "pip install" in r]
    assert len(install) == 1
    assert re.match(r"--mount=type=bind,from=build,source=/wheels,target=/wheels\s", install[0])
    # nothing copies the wheels into the final image (a later rm could not shrink that layer)
    assert not any("/wheels" in c for c in instr("COPY"))


def test_the_image_installs_no_pyarrow() -> None:
    """pyarrow (~170 MB) is the optional extra guardbot[feather]; the image builds the wheel of
    ``.`` without extras, so the default dependencies must not name it."""
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert not any(d.lower().startswith("pyarrow") for d in project["dependencies"])
    assert any(d.startswith("pyarrow") for d in project["optional-dependencies"]["feather"])
    assert any(d.startswith("pyarrow") for d in project["optional-dependencies"]["dev"])
    assert re.search(r"pip wheel [^\n]* \.$", TEXT, re.M)  # ".", not ".[feather]"
    assert "pyarrow" not in FINAL.replace("No pyarrow", "")


def test_licence_files_are_in_the_build_context() -> None:
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT AND GPL-3.0-only"  # SPDX (PEP 639), not a table
    for path in project["license-files"]:
        assert (REPO / path).is_file(), path
    assert re.search(r"COPY [^\n]*LICENSE", TEXT)
    assert "MIT License" in (REPO / "LICENSE").read_text(encoding="utf-8")


def test_volume_stopsignal_and_commands_exist_in_the_cli() -> None:
    assert instr("VOLUME") == ['["/data"]']
    assert instr("STOPSIGNAL") == ["SIGTERM"]
    entry = json.loads(instr("ENTRYPOINT")[0])
    cmd = json.loads(instr("CMD")[-1])
    health = instr("HEALTHCHECK")[0]
    health_cmd = json.loads(health[health.index("CMD") + 3 :].strip())
    assert entry == ["guardbot"]
    runner = CliRunner()
    for argv in (cmd, health_cmd[1:]):
        result = runner.invoke(app, [*argv, "--help"])
        assert result.exit_code == 0, (argv, result.output)
    assert health_cmd[0] == "guardbot"
