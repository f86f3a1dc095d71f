"""docs/SCALING.md's docker-compose.yml, Caddyfile and the Dockerfile they build, checked
against the code (there is no Docker engine in CI): every service, env key and command is one
the bridge really has, the proxy is the one DEPLOY.md hardens, the image runs the CLI as a
non-root user that can read the 0600 settings file the docs tell the admin to chown.
"""

from __future__ import annotations

import re
import tomllib
from ipaddress import ip_network
from pathlib import Path

import pytest
import yaml

from bridge.cli import build_parser
from bridge.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
SCALING = ROOT / "docs" / "scaling"
COMPOSE = yaml.safe_load((SCALING / "docker-compose.yml").read_text())
CADDY = (SCALING / "Caddyfile").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
BRIDGES = ("migrate", "bridge-a", "bridge-b")
REPLICAS = ("bridge-a", "bridge-b")


def expand(value: str, env: dict[str, str]) -> str:
    """Compose's ``${NAME}`` / ``${NAME:?message}`` interpolation."""
    return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", lambda m: env[m.group(1)], value)


def test_services_are_postgres_migrate_two_replicas_and_a_tls_proxy() -> None:
    services = COMPOSE["services"]
    assert set(services) == {"postgres", "migrate", "bridge-a", "bridge-b", "proxy"}
    assert services["postgres"]["image"].startswith("postgres:")
    # Caddy before 2.11 answers a POST retried after a refused connection 502 (its body gone):
    # seen with 2.6.2 after a kill -9 of one replica. onlinePBX never sends it again.
    version = services["proxy"]["image"].removeprefix("caddy:").split("-")[0]
    assert tuple(int(x) for x in version.split(".")[:2]) >= (2, 11), version
    for name in BRIDGES:
        assert (SCALING / services[name]["build"]).resolve() == ROOT
        assert (ROOT / "Dockerfile").exists()
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in REPLICAS:
        assert services[name]["depends_on"]["migrate"]["condition"] == (
            "service_completed_successfully"
        )
        assert services[name]["restart"] == "unless-stopped"


@pytest.mark.parametrize("name", BRIDGES)
def test_each_bridge_service_runs_a_real_command_on_valid_settings(name, tmp_path, monkeypatch):
    service = COMPOSE["services"][name]
    command = service["command"]
    assert command[0] == "pbx-bridge"
    build_parser().parse_args(command[1:])  # SystemExit on a command the CLI does not have
    env = {
        k: expand(str(v), {"POSTGRES_PASSWORD": "pw"}) for k, v in service["environment"].items()
    }
    (mount,) = service["volumes"]
    source, target, mode = mount.split(":")
    assert (source, mode) == ("./settings.toml", "ro") and env["PBX_BRIDGE_CONFIG"] == target
    config = tmp_path / "settings.toml"  # what the admin puts there, as SCALING.md says
    config.write_text(
        '[server]\npublic_url = "https://bridge.example.com"\n'
        'webhook_token = "t0ken-abcdef-0123456789"\n'
    )
    env["PBX_BRIDGE_CONFIG"] = str(config)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = load_settings()  # a PBX_BRIDGE_* key that names no setting is an error
    pg = COMPOSE["services"]["postgres"]["environment"]
    url = settings.storage.url.get_secret_value()
    assert url == f"postgresql://{pg['POSTGRES_USER']}:pw@postgres:5432/{pg['POSTGRES_DB']}"
    assert settings.log.format == "json"
    (subnet,) = [c["subnet"] for c in COMPOSE["networks"]["default"]["ipam"]["config"]]
    assert settings.server.trusted_proxies == [ip_network(subnet)]
    if name in REPLICAS:
        check = " ".join(service["healthcheck"]["test"])
        assert f"http://127.0.0.1:{settings.server.port}/readyz" in check
        assert settings.server.host == "0.0.0.0"


def test_the_caddyfile_balances_the_two_replicas_and_keeps_operator_pages_private() -> None:
    upstreams = re.search(r"reverse_proxy ([^{]+)\{", CADDY).group(1).split()
    assert upstreams == [f"{name}:8080" for name in REPLICAS]
    wanted = ("health_uri /readyz", "lb_try_duration", "request_buffers", "@operator path /metrics")
    for line in wanted:
        assert line in CADDY
    assert "respond @operator 404" in CADDY and "read_header 10s" in CADDY
    assert (
        "{$BRIDGE_HOST}" in CADDY and "BRIDGE_HOST" in COMPOSE["services"]["proxy"]["environment"]
    )
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in COMPOSE["services"]["proxy"]["volumes"]


def test_the_dockerfile_installs_the_cli_and_runs_it_as_a_non_root_user() -> None:
    for source in re.findall(r"^COPY (.+) \S+$", DOCKERFILE, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which is not in the repo"
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["pbx-bridge"] == "bridge.cli:main"
    cmd = re.search(r'^CMD \["pbx-bridge", (.+)\]$', DOCKERFILE, re.M).group(1)
    build_parser().parse_args([part.strip().strip('"') for part in cmd.split(",")])
    user = re.search(r"^USER (\S+)$", DOCKERFILE, re.M).group(1)
    uid = re.search(rf"--uid (\d+) [^\n]*\b{user}\b", DOCKERFILE).group(1)
    assert user != "root" and uid != "0"
    # The settings file stays 0600 (init writes it so): the docs give it to that uid.
    compose_text = (SCALING / "docker-compose.yml").read_text()
    scaling = (ROOT / "docs" / "SCALING.md").read_text()
    assert f"chown {uid} settings.toml" in compose_text and f"chown {uid} settings.toml" in scaling
