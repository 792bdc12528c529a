"""Structure of the docker-compose deployment (no Docker engine needed)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tomllib
from importlib.metadata import entry_points
from pathlib import Path

import pytest
import yaml
from support.paths import PROJECT_ROOT

DAGSTER_SERVICES = ("user_code", "dagster_webserver", "dagster_daemon")
APP_SERVICES = (*DAGSTER_SERVICES, "fetch")
# Where the Dockerfile puts the quickstart feature repo (WORKDIR + COPY quickstart ./quickstart).
IMAGE_QUICKSTART = "/opt/feature_assets/quickstart"
EXPECTED_ENV = {
    "FEATURE_ASSETS_KAFKA_BOOTSTRAP": "kafka:9092",
    "FEATURE_ASSETS_WAREHOUSE": "/opt/warehouse",
    "FEATURE_ASSETS_ENV": "production",
    "FEATURE_ASSETS_SPARK_MASTER": "${FEATURE_ASSETS_SPARK_MASTER:-local[*]}",
    "DAGSTER_HOME": "/opt/dagster/home",
}
MONGO_URI = "mongodb://${MONGO_INITDB_ROOT_USERNAME:-admin}:${MONGO_INITDB_ROOT_PASSWORD:?"
# A required variable: `${NAME}` or `${NAME:?message}` / `${NAME?message}`, never a default.
REQUIRED_REFERENCE = re.compile(r"^\$\{[A-Z0-9_]+(:?\?[^}]*)?\}$")
REFERENCE = re.compile(r"\$\{[^}]*\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((PROJECT_ROOT / "docker-compose.yml").read_text())


def environment(service: dict) -> dict[str, str]:
    """A service's environment as a dict, whether written as a mapping or a list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def test_all_services_exist(compose):
    assert set(compose["services"]) >= {"mongodb", "kafka", *APP_SERVICES}
    assert compose["services"]["mongodb"]["image"] == "mongo:7"
    assert compose["services"]["kafka"]["image"] == "apache/kafka:3.7.0"


def uri_credentials(value: str) -> str | None:
    """The ``user:password`` part of a URI, if the value is one with credentials."""
    if "://" not in value or "@" not in value:
        return None
    return value.split("://", 1)[1].rsplit("@", 1)[0]


def test_no_password_literals(compose):
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            if "PASSWORD" in key or "SECRET" in key:
                assert REQUIRED_REFERENCE.match(value), f"{name}.{key} must be a required ${{...}}"
            credentials = uri_credentials(value)
            if credentials is not None:
                # Only references around the ':', and the password one without a default.
                assert REFERENCE.sub("", credentials) == ":", f"{name}.{key} has literals"
                password = REFERENCE.findall(credentials)[-1]
                assert REQUIRED_REFERENCE.match(password), f"{name}.{key} defaults its password"


def test_dagster_services_share_the_settings(compose):
    for name in APP_SERVICES:
        env = environment(compose["services"][name])
        assert {key: env.get(key) for key in EXPECTED_ENV} == EXPECTED_ENV, name
        assert env["FEATURE_ASSETS_MONGO_URI"].startswith(MONGO_URI), name
        assert env["FEATURE_ASSETS_MONGO_URI"].endswith("@mongodb:27017/?authSource=admin"), name
        mounts = [str(volume).split(":")[1] for volume in compose["services"][name]["volumes"]]
        assert "/opt/warehouse" in mounts, name


def test_kafka_runs_in_kraft_mode(compose):
    kafka_env = environment(compose["services"]["kafka"])
    assert "broker" in kafka_env["KAFKA_PROCESS_ROLES"]
    assert "controller" in kafka_env["KAFKA_PROCESS_ROLES"]
    assert kafka_env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == "1@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in kafka_env["KAFKA_ADVERTISED_LISTENERS"]
    assert kafka_env["CLUSTER_ID"]
    assert not any("zookeeper" in name.lower() for name in compose["services"])
    assert not any("ZOOKEEPER" in key for key in kafka_env)


def test_healthchecks_and_startup_order(compose):
    services = compose["services"]
    for name in ("mongodb", "kafka", *APP_SERVICES):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["user_code"]["depends_on"] == {
        "mongodb": {"condition": "service_healthy"},
        "kafka": {"condition": "service_healthy"},
    }
    for name in ("dagster_webserver", "dagster_daemon"):
        assert services[name]["depends_on"] == {"user_code": {"condition": "service_healthy"}}


def test_commands_point_at_the_code_server(compose):
    services = compose["services"]
    user_code = " ".join(services["user_code"]["command"])
    assert "dagster code-server start -h 0.0.0.0 -p 4000 -f repo_defs.py" in user_code
    webserver = " ".join(services["dagster_webserver"]["command"])
    assert "dagster-webserver -h 0.0.0.0 -p 3000 -w workspace.docker.yaml" in webserver
    daemon = " ".join(services["dagster_daemon"]["command"])
    assert "dagster-daemon run -w workspace.docker.yaml" in daemon


def test_dockerfile_builds_the_code_server_image():
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert "openjdk-17-jre-headless" in dockerfile
    assert "pip install ." in dockerfile
    assert "repo_defs.py" in dockerfile and "4000" in dockerfile
    assert "docker/dagster.yaml" in dockerfile


def test_dagster_instance_config_is_valid(tmp_path):
    from dagster import DagsterInstance

    config = (PROJECT_ROOT / "docker" / "dagster.yaml").read_text()
    (tmp_path / "dagster.yaml").write_text(config.replace("/opt/dagster/storage", str(tmp_path)))
    instance = DagsterInstance.from_config(str(tmp_path))
    try:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
    finally:
        instance.dispose()


def test_workspace_loads_the_code_server():
    workspace = yaml.safe_load((PROJECT_ROOT / "workspace.docker.yaml").read_text())
    assert workspace["load_from"] == [
        {"grpc_server": {"host": "user_code", "port": 4000, "location_name": "feature_assets"}}
    ]


def test_each_streaming_group_by_has_its_consumer_service(compose, quickstart_compiled):
    from feature_assets.compiler.compile import compiled_path
    from feature_assets.model import GROUP_BYS

    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert "WORKDIR /opt/feature_assets" in dockerfile and "COPY quickstart ./quickstart" in dockerfile
    streaming = [g for g in quickstart_compiled.online_group_bys().values() if g.topics]
    assert streaming
    services = compose["services"]
    for group_by in streaming:
        command = ["feature-assets", "streaming", "--conf", str(compiled_path(Path(), GROUP_BYS, group_by.name))]
        found = [name for name, service in services.items() if service.get("command") == command]
        assert len(found) == 1, (group_by.name, found)
        service = services[found[0]]
        assert service["working_dir"] == IMAGE_QUICKSTART
        assert service["restart"] == "unless-stopped"
        assert service["depends_on"] == {
            "mongodb": {"condition": "service_healthy"},
            "kafka": {"condition": "service_healthy"},
        }
        env = environment(service)
        assert {key: env.get(key) for key in EXPECTED_ENV} == EXPECTED_ENV
        assert env["FEATURE_ASSETS_MONGO_URI"].startswith(MONGO_URI)


def test_fetch_service_serves_from_mongodb_with_api_keys(compose):
    fetch = compose["services"]["fetch"]
    assert fetch["command"] == ["feature-assets", "serve", "--host", "0.0.0.0", "--port", "8000"]
    assert fetch["depends_on"] == {"mongodb": {"condition": "service_healthy"}}
    assert fetch["restart"] == "unless-stopped"
    # The keys are passed through from the environment and required: no fetch service without them.
    assert REQUIRED_REFERENCE.match(environment(fetch)["FEATURE_ASSETS_API_KEYS"])
    assert "/healthz" in " ".join(fetch["healthcheck"]["test"])
    assert [str(port).rsplit(":", 1)[1] for port in fetch["ports"]] == ["8000"]


def referenced_variables(text: str) -> set[str]:
    return set(re.findall(r"\$\{([A-Z0-9_]+)", text))


def env_example() -> dict[str, str]:
    lines = (PROJECT_ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


def test_env_example_lists_every_setting_and_no_secret():
    variables = referenced_variables((PROJECT_ROOT / "docker-compose.yml").read_text())
    example = env_example()
    assert set(example) == variables
    for name, value in example.items():
        if "PASSWORD" in name or "KEYS" in name or "SECRET" in name:
            assert value == "", f"{name} must be left empty in .env.example"


def test_secrets_stay_out_of_the_image():
    ignored = (PROJECT_ROOT / ".dockerignore").read_text().splitlines()
    assert {".env", ".venv", ".git", "data", ".services", ".dagster_home"} <= set(ignored)
    # Nothing the Dockerfile copies is ignored.
    copied = re.findall(r"^COPY (.+) \S+$", (PROJECT_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    sources = {source for line in copied for source in line.split()}
    assert sources and not sources & set(ignored)


def pyproject() -> dict:
    return tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())


def image_executables() -> set[str]:
    """What the image can run: python (the base image), the project's console scripts and those of its
    direct dependencies (all installed by the Dockerfile's `pip install .`)."""
    dockerfile = (PROJECT_ROOT / "Dockerfile").read_text()
    assert re.search(r"^RUN pip install \.$", dockerfile, re.MULTILINE)
    project = pyproject()["project"]
    dependencies = {canonical(re.split(r"[^A-Za-z0-9._-]", d, maxsplit=1)[0]) for d in project["dependencies"]}
    scripts = {"python", *project["scripts"]}
    for script in entry_points(group="console_scripts"):
        if script.dist is not None and canonical(script.dist.name) in dependencies:
            scripts.add(script.name)
    return scripts


def canonical(distribution: str) -> str:
    return re.sub(r"[-_.]+", "-", distribution).lower()


def image_commands(compose: dict) -> dict[str, list[str]]:
    """Every command the app containers run: services, their health checks and the image's default."""
    commands = {}
    for name, service in compose["services"].items():
        if service.get("image") != "feature-assets:latest":
            continue  # mongo and kafka run their own images
        commands[name] = service["command"]
        test = service.get("healthcheck", {}).get("test", [])
        if test[:1] == ["CMD"]:
            commands[f"{name} healthcheck"] = test[1:]
    [default] = re.findall(r"^CMD (\[.*\])$", (PROJECT_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    commands["Dockerfile CMD"] = json.loads(default)
    return commands


def test_every_command_runs_an_executable_the_image_installs(compose):
    executables = image_executables()
    assert {"feature-assets", "dagster", "dagster-webserver", "dagster-daemon"} <= executables
    for name, command in image_commands(compose).items():
        assert command[0] in executables, f"{name}: {command[0]!r} is not installed in the image"


def test_feature_assets_commands_are_real_subcommands(compose):
    from feature_assets.cli import build_parser

    parser = build_parser()
    [subcommands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    commands = [c for c in image_commands(compose).values() if c[0] == "feature-assets"]
    assert commands
    for command in commands:
        assert command[1] in subcommands.choices, command
        parser.parse_args(command[1:])  # the arguments too: a usage error exits


def test_dagster_commands_accept_their_arguments(compose):
    """Each Dagster command line with --help appended: the CLI checks the subcommands and options first."""
    bin_dir = Path(sys.executable).parent
    commands = [c for c in image_commands(compose).values() if c[0].startswith("dagster")]
    assert len(commands) >= 4
    runs = [
        subprocess.Popen([str(bin_dir / c[0]), *c[1:], "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for c in commands
    ]
    for command, run in zip(commands, runs):
        _, stderr = run.communicate(timeout=120)
        assert run.returncode == 0, (command, stderr.decode()[-2000:])


def test_smoke_script_is_valid_bash_and_uses_real_commands():
    script = PROJECT_ROOT / "scripts" / "compose-smoke.sh"
    text = script.read_text()
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    assert "trap cleanup EXIT" in text and "down -v" in text
    from feature_assets.cli import build_parser

    parser = build_parser()
    [subcommands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    for subcommand in re.findall(r"feature-assets ([a-z-]+)", text):
        assert subcommand in subcommands.choices, subcommand
    service = (PROJECT_ROOT / "feature_assets" / "online" / "fetch" / "service.py").read_text()
    for route in ("/v1/fetch/join/", "/v1/fetch/groupby/", "/healthz"):
        assert route in text and route in service, route
