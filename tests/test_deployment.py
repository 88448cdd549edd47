"""docker-compose.yml and Dockerfile, checked without a Docker engine: structure, GPU, health, and real CLI commands."""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml

from neuron_atlas.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())

SERVICE_SCHEMA = {
    "type": "object",
    "required": ["image", "command"],
    "properties": {
        "image": {"type": "string"},
        "build": {"type": "object", "required": ["context", "target"]},
        "command": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "profiles": {"type": "array", "items": {"type": "string"}},
        "environment": {"type": "object", "additionalProperties": {"type": ["string", "number"]}},
        "volumes": {"type": "array", "items": {"type": "string", "pattern": r"^[^:]+:/[^:]*(:ro|:rw)?$"}},
        "ports": {"type": "array", "items": {"type": "string",
                                             "pattern": r"^\$\{[A-Z_]+:-[\d.]+\}:(\$\{[A-Z_]+:-\d+\}|\d+):\d+$"}},
        "healthcheck": {
            "type": "object",
            "required": ["test", "interval", "timeout", "retries"],
            "properties": {"test": {"type": "array", "prefixItems": [{"const": "CMD"}], "minItems": 2}},
        },
        "depends_on": {
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "required": ["condition"],
                "properties": {"condition": {"enum": ["service_started", "service_healthy", "service_completed_successfully"]}},
            },
        },
        "deploy": {
            "type": "object",
            "properties": {"resources": {"type": "object", "properties": {"reservations": {"type": "object", "properties": {
                "devices": {"type": "array", "items": {
                    "type": "object", "required": ["driver", "capabilities"],
                    "properties": {"driver": {"type": "string"}, "count": {"type": ["integer", "string"]},
                                   "capabilities": {"type": "array", "items": {"type": "string"}}},
                }},
            }}}}},
        },
        "restart": {"enum": ["no", "always", "on-failure", "unless-stopped"]},
        "networks": {"anyOf": [
            {"type": "array", "items": {"type": "string"}},
            {"type": "object", "additionalProperties": {"type": ["object", "null"], "properties": {
                "ipv4_address": {"type": "string", "format": "ipv4"}}, "additionalProperties": False}},
        ]},
    },
    "additionalProperties": False,
}
COMPOSE_SCHEMA = {
    "type": "object",
    "required": ["services", "volumes"],
    "properties": {
        "name": {"type": "string"},
        "services": {"type": "object", "additionalProperties": SERVICE_SCHEMA},
        "volumes": {"type": "object"},
        "networks": {"type": "object", "additionalProperties": {"type": "object", "properties": {"ipam": {
            "type": "object", "properties": {"config": {"type": "array", "items": {
                "type": "object", "required": ["subnet"], "properties": {"subnet": {"type": "string"}}}}}}}}},
    },
    "additionalProperties": False,
}


def _expand(value: str) -> str:
    """Compose's `${VAR:-default}` with the default (what a fresh deployment gets)."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_backend_trusts_exactly_the_app_service_for_forwarded_addresses():
    """The app forwards each browser's address (rate limits per user); the backend trusts only the app's fixed
    address on the compose network, which lies in that network's subnet."""
    import ipaddress

    from backend.api.settings import Settings

    app_ip = COMPOSE["services"]["app"]["networks"]["atlas"]["ipv4_address"]
    subnet = ipaddress.ip_network(COMPOSE["networks"]["atlas"]["ipam"]["config"][0]["subnet"])
    assert ipaddress.ip_address(app_ip) in subnet
    assert "atlas" in COMPOSE["services"]["backend"]["networks"]
    trusted = Settings(trusted_proxies=COMPOSE["services"]["backend"]["environment"]["NEURON_ATLAS_TRUSTED_PROXIES"],
                       _env_file=None)
    assert trusted.is_trusted_proxy(app_ip) and not trusted.is_trusted_proxy(str(subnet.network_address + 1))


def test_compose_matches_schema_and_declares_its_volumes():
    jsonschema.validate({k: v for k, v in COMPOSE.items() if not k.startswith("x-")}, COMPOSE_SCHEMA)
    assert set(COMPOSE["services"]) == {"precompute", "backend", "app"}
    declared = set(COMPOSE["volumes"])
    for name, svc in COMPOSE["services"].items():
        for vol in svc.get("volumes", []):
            source = vol.split(":")[0]
            assert source.startswith("./") or source in declared, f"{name}: volume {source!r} is not declared"
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: bind mount {source} does not exist in the repo"
    assert {"store", "findings", "model-cache", "corpus-cache"} <= declared


def test_services_have_the_roles_the_architecture_says():
    s = COMPOSE["services"]
    assert s["precompute"]["profiles"] == ["precompute"], "precompute must run on demand only"
    for gpu_service in ("precompute", "backend"):
        devices = s[gpu_service]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert "store:/data:ro" in s["backend"]["volumes"], "the backend opens the store read-only"
    assert "store:/data" in s["precompute"]["volumes"]
    assert any(v.startswith("findings:") and not v.endswith(":ro") for v in s["backend"]["volumes"])
    assert "/readyz" in " ".join(s["backend"]["healthcheck"]["test"])
    assert s["app"]["depends_on"] == {"backend": {"condition": "service_healthy"}}
    assert s["app"]["environment"]["NEURON_ATLAS_BACKEND_URL"] == "http://backend:8000"
    assert "/healthz" in " ".join(s["app"]["healthcheck"]["test"])


def test_browser_reaches_only_the_dashboard_and_tokens_are_opt_in():
    """The backend is published on the host's loopback by default (the browser talks to the dashboard only); an
    unset ATLAS_API_TOKEN gives an empty token (= none), and the dashboard holds a token only when given its own."""
    from backend.api.settings import Settings

    backend_port = _expand(COMPOSE["services"]["backend"]["ports"][0])
    assert backend_port.startswith("127.0.0.1:"), backend_port
    token = _expand(COMPOSE["services"]["backend"]["environment"]["NEURON_ATLAS_API_TOKEN"])
    assert token == "" and Settings(api_token=token, _env_file=None).api_token is None
    assert _expand(COMPOSE["services"]["app"]["environment"]["NEURON_ATLAS_API_TOKEN"]) == ""
    assert "DASHBOARD_API_TOKEN" in COMPOSE["services"]["app"]["environment"]["NEURON_ATLAS_API_TOKEN"]


def test_dashboard_service_runs_the_wsgi_app_under_gunicorn():
    from gunicorn.config import Config

    command = [_expand(part) for part in COMPOSE["services"]["app"]["command"]]
    assert command[0] == "gunicorn" and "app.wsgi:server" in command
    parsed = Config().parser().parse_args(command[1:])
    assert parsed.workers == 2 and parsed.threads == 8 and parsed.worker_class == "gthread"
    assert COMPOSE["services"]["app"]["build"]["target"] == "dashboard"


@pytest.mark.parametrize("service", ["precompute", "backend"])
def test_every_service_command_exists_in_the_cli(service):
    command = [_expand(part) for part in COMPOSE["services"][service]["command"]]
    args = build_parser().parse_args(command)
    assert args.command == command[0]
    if service == "precompute":
        config = ROOT / "configs" / Path(args.config).name
        assert config.is_file(), f"default run config {config.name} is not in configs/"


def test_environment_names_match_backend_settings():
    from backend.api.settings import Settings

    fields = {f"NEURON_ATLAS_{name.upper()}" for name in Settings.model_fields}
    env = COMPOSE["services"]["backend"]["environment"]
    unknown = [k for k in env if k.startswith("NEURON_ATLAS_") and k not in fields and k != "NEURON_ATLAS_CACHE"]
    assert not unknown, f"backend environment sets unknown settings {unknown}"


def _stages(text: str) -> dict[str, str]:
    """The Dockerfile's stages by name, each with its instructions."""
    parts = re.split(r"^FROM \S+ AS (\S+)\s*$", text, flags=re.M)
    return dict(zip(parts[1::2], parts[2::2]))


def test_dockerfile_installs_from_the_lock_before_the_source_and_runs_as_non_root():
    text = (ROOT / "Dockerfile").read_text()
    for src in re.findall(r"^COPY (?!--from)(\S+) ", text, flags=re.M):
        for one in src.split():
            assert (ROOT / one).exists(), f"Dockerfile copies missing {one}"
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, flags=re.M).group(1)
    assert re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+", base), f"base image {base} is not pinned to a release"
    stages = _stages(text)
    assert {"uv", "engine-build", "engine", "dashboard-build", "dashboard"} <= set(stages)
    assert "--require-hashes" in stages["uv"] and "tools/uv-requirements.txt" in stages["uv"]
    for build in ("engine-build", "dashboard-build"):
        body = stages[build]
        deps = body.index("uv.lock")
        source = body.index("COPY . .")
        assert deps < source, f"{build}: the lock's dependencies must be installed before the source is copied"
        assert "--frozen" in body[:source], f"{build}: install exactly the lock"
    assert "--no-install-project" in stages["engine-build"].split("COPY . .")[0]
    assert "--only-group dashboard" in stages["dashboard-build"]
    for final in ("engine", "dashboard"):
        assert re.search(r"^USER atlas$", stages[final], flags=re.M), f"{final} must not run as root"
    assert 'ENTRYPOINT ["neuron-atlas"]' in stages["engine"]
    assert '"app.wsgi:server"' in stages["dashboard"]


def test_dashboard_dependency_group_pins_what_the_app_imports_and_agrees_with_the_runtime_pins():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    runtime = {r.split("==")[0].lower(): r for r in project["project"]["dependencies"]}
    for req in project["dependency-groups"]["dashboard"]:
        assert runtime[req.split("==")[0].lower()] == req, f"{req} differs from the runtime pin"


@pytest.mark.skipif(shutil.which("docker") is None, reason="no docker client")
def test_docker_compose_config_when_the_plugin_exists():
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip("docker compose plugin not installed (structure is checked by the schema tests above)")
    done = subprocess.run(["docker", "compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
