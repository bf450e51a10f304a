"""docker-compose.yml keeps the deployment promises of docs/deploy.md.

Parsed with PyYAML (a dev dependency): the bot service, a named volume for /data, the API keys as
secrets, metrics and status ports published on 127.0.0.1 only (and the servers told to listen
inside the container), restart unless-stopped, json-file log rotation, read-only root with a
tmpfs /tmp, no-new-privileges, all capabilities dropped and the image's HEALTHCHECK inherited;
the live confirmation from the env file (not ``--live`` on the command), the image pinned to the
package version, memory and pids limits.
The secret names must be ones the settings loader maps to fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings

yaml = pytest.importorskip("yaml", reason="PyYAML (dev extra) missing")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def bot(compose: dict[str, Any]) -> dict[str, Any]:
    service = compose["services"]["guardbot"]
    assert isinstance(service, dict)
    return service


def test_state_lives_on_a_named_volume(compose: dict[str, Any], bot: dict[str, Any]) -> None:
    mounts = {v.split(":")[1]: v.split(":")[0] for v in bot["volumes"]}
    assert mounts["/data"] in compose["volumes"]  # named, not a bind mount
    assert "/config" in mounts and bot["volumes"][1].endswith(":ro")


def test_api_keys_come_from_secrets_the_settings_understand(
    compose: dict[str, Any], bot: dict[str, Any]
) -> None:
    names = set(bot["secrets"])
    assert {"guardbot_exchange__api_key", "guardbot_exchange__api_secret"} <= names
    assert names == set(compose["secrets"])
    for name in names:
        section, field = name.removeprefix("guardbot_").split("__")
        model = Settings.model_fields[section].annotation
        assert model is not None and field in model.model_fields, name
        assert compose["secrets"][name]["file"].startswith("./secrets/")
    env = bot.get("environment", {})
    assert not any("API_KEY" in k.upper() or "API_SECRET" in k.upper() for k in env)


def test_ports_are_published_on_loopback_only(bot: dict[str, Any]) -> None:
    published = {}
    for spec in bot["ports"]:
        host_ip, host_port, container_port = str(spec).split(":")
        assert host_ip == "127.0.0.1", spec
        published[int(container_port)] = int(host_port)
    env = bot["environment"]
    metrics, status = int(env["GUARDBOT_METRICS__PORT"]), int(env["GUARDBOT_STATUS__PORT"])
    assert metrics == 9108 and {metrics, status} <= set(published)
    # inside the container the servers must listen beyond its own loopback to be published
    assert env["GUARDBOT_METRICS__HOST"] == env["GUARDBOT_STATUS__HOST"] == "0.0.0.0"
    assert str(env["GUARDBOT_METRICS__ENABLED"]) == str(env["GUARDBOT_STATUS__ENABLED"]) == "true"


def test_hardening_and_operations(bot: dict[str, Any]) -> None:
    assert bot["restart"] == "unless-stopped"
    assert bot["read_only"] is True
    assert any(t.split(":")[0] == "/tmp" for t in bot["tmpfs"])
    assert "no-new-privileges:true" in bot["security_opt"]
    assert bot["cap_drop"] == ["ALL"]
    assert bot["stop_signal"] == "SIGTERM"
    grace = bot["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > 10  # more than the bot's own 10 s budget
    logging = bot["logging"]
    assert logging["driver"] == "json-file"
    assert logging["options"]["max-size"] and int(logging["options"]["max-file"]) >= 2
    assert "healthcheck" not in bot  # the image's HEALTHCHECK (guardbot health) applies


def test_the_live_confirmation_comes_from_the_env_file_not_the_command(
    bot: dict[str, Any],
) -> None:
    command = bot["command"]
    assert command[0] == "run" and "--live" not in command
    assert command[command.index("--config") + 1].startswith("/config/")
    # interpolated from .env (or the shell); absent, it is "no" and the bot refuses live mode
    assert bot["environment"]["GUARDBOT_LIVE_CONFIRM"] == "${GUARDBOT_LIVE_CONFIRM:-no}"
    from bot.settings_env import NON_SETTINGS

    assert "GUARDBOT_LIVE_CONFIRM" in NON_SETTINGS  # the settings loader lets it through


def test_the_image_is_pinned_to_the_package_version(bot: dict[str, Any]) -> None:
    import tomllib

    version = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "version"
    ]
    name, _, tag = str(bot["image"]).partition(":")
    assert name == "guardbot" and tag == version and tag != "latest"


def test_memory_and_pids_are_limited(bot: dict[str, Any]) -> None:
    mem = str(bot["mem_limit"])
    assert mem.endswith("m") and 256 <= int(mem[:-1]) <= 2048
    assert bot["memswap_limit"] == bot["mem_limit"]  # no swap beyond the limit
    assert 32 <= int(bot["pids_limit"]) <= 1024


def test_dockerfile_has_the_healthcheck_compose_relies_on() -> None:
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    assert "HEALTHCHECK" in text and '"guardbot", "health"' in text
    assert "VOLUME" in text and "/data" in text
