"""docker-compose.yml and the Dockerfile, checked against the code they start.

No Docker engine is needed: the file is read as YAML and every command it runs is resolved
against this checkout (the Celery app it names, the `mlc` subcommands it calls).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path

import celery
import pytest
import yaml
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
README = ROOT / "README.md"
PYPROJECT = ROOT / "pyproject.toml"

CORE_SERVICES = {"postgres", "redis", "migrate", "worker", "beat", "flower"}
SANDBOX_SERVICES = {"x3sim", "sftp"}
CELERY_SUBCOMMANDS = {"worker", "beat", "flower"}
SECRET_NAME_PARTS = ("PASSWORD", "SECRET", "KEYS", "AUTH")

# ${NAME}, ${NAME:-default}, ${NAME:?message}
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:[-?])([^}]*))?\}")
REQUIRED_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?")
URL_PASSWORD = re.compile(r"://[^/@:\s]+:([^@\s]+)@")

COMPOSE = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
SERVICES: dict[str, dict] = COMPOSE["services"]


def _command(service: dict) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _our_services() -> dict[str, dict]:
    """Services built from this repository: a `build:` or the image such a service builds."""
    built = {s["image"] for s in SERVICES.values() if "build" in s and "image" in s}
    return {name: s for name, s in SERVICES.items() if "build" in s or s.get("image") in built}


OUR_SERVICES = _our_services()
CELERY_SERVICES = sorted(n for n, s in OUR_SERVICES.items() if _command(s)[:1] == ["celery"])
MLC_SERVICES = sorted(n for n, s in OUR_SERVICES.items() if _command(s)[:1] == ["mlc"])


def _environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


@pytest.fixture
def container_env(monkeypatch: pytest.MonkeyPatch):
    """Set what compose gives our services (with made-up secrets), unless already set.

    Modules are then imported as inside the container: one that reads its settings at
    import time finds them.
    """
    made_up = {"MLC_SECRET_KEYS": Fernet.generate_key().decode()}

    def resolve(match: re.Match[str]) -> str:
        name, operator, argument = match.groups()
        if name in os.environ:
            return os.environ[name]
        return argument if operator == ":-" else made_up.get(name, "placeholder")

    for service in OUR_SERVICES.values():
        for name, value in _environment(service).items():
            if name not in os.environ:
                monkeypatch.setenv(name, VARIABLE.sub(resolve, value))
    yield
    # Settings cached from made-up values must not leak into later tests.
    config = sys.modules.get("pipeline.config")
    if config is not None and hasattr(config.settings, "cache_clear"):
        config.settings.cache_clear()


def test_core_services_exist():
    missing = CORE_SERVICES - SERVICES.keys()
    assert not missing, f"docker-compose.yml lacks services: {sorted(missing)}"


def test_sandbox_services_run_only_in_the_sandbox_profile():
    for name in SANDBOX_SERVICES:
        assert name in SERVICES, f"sandbox service {name!r} is missing"
        assert SERVICES[name].get("profiles") == ["sandbox"], f"{name} must be sandbox-only"
    for name in CORE_SERVICES:
        assert not SERVICES[name].get("profiles"), f"{name} must start without a profile"


def test_beat_is_a_single_replica_and_the_only_scheduler():
    replicas = (SERVICES["beat"].get("deploy") or {}).get("replicas", 1)
    assert replicas == 1, "two beats enqueue every periodic task twice"
    schedulers = sorted(name for name, s in SERVICES.items() if "beat" in _command(s))
    assert schedulers == ["beat"], f"services running celery beat: {schedulers}"


def test_our_services_run_mlc_or_celery():
    assert OUR_SERVICES, "no service is built from this repository"
    for name, service in OUR_SERVICES.items():
        program = _command(service)[:1]
        assert program in (["mlc"], ["celery"], ["gunicorn"]), (
            f"{name} runs {program or 'nothing'}")


@pytest.mark.parametrize("name", CELERY_SERVICES)
def test_celery_command_names_a_real_app(name, container_env):
    command = _command(SERVICES[name])
    assert command[1] in ("-A", "--app"), f"{name}: expected `celery -A <module> ...`"
    module_name, subcommand = command[2], command[3]

    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        pytest.fail(f"{name}: `celery -A {module_name}` cannot import it: {exc}")
    assert isinstance(getattr(module, "app", None), celery.Celery), (
        f"{name}: {module_name}.app is not a celery.Celery instance"
    )
    assert subcommand in CELERY_SUBCOMMANDS, f"{name}: unexpected `celery {subcommand}`"
    if subcommand == "flower" and importlib.util.find_spec("flower") is None:
        pytest.skip("flower is an optional extra, not installed in this venv")


@pytest.mark.parametrize("name", MLC_SERVICES)
def test_mlc_command_is_accepted_by_the_cli(name, container_env):
    command = _command(SERVICES[name])
    try:
        from ops.cli import build_parser
    except ImportError as exc:
        pytest.fail(f"service {name} runs mlc, but ops.cli.build_parser is missing: {exc}")
    try:
        build_parser().parse_args(command[1:])
    except SystemExit as exc:
        pytest.fail(f"service {name}: `{shlex.join(command)}` is rejected by mlc (exit {exc.code})")


def test_mlc_console_script_points_at_cli_main(container_env):
    scripts = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts.get("mlc") == "ops.cli:main"
    module = importlib.import_module("ops.cli")
    assert callable(getattr(module, "main", None)), "ops.cli has no main()"


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per instruction, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        keyword, _, arguments = (pending + stripped).partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
        pending = ""
    return instructions


def test_dockerfile_defaults_to_a_celery_worker_without_entrypoint():
    instructions = _dockerfile_instructions()
    assert not [a for k, a in instructions if k == "ENTRYPOINT"], (
        "compose commands need no ENTRYPOINT"
    )
    cmds = [a for k, a in instructions if k == "CMD"]
    assert cmds, "Dockerfile has no CMD"
    command = json.loads(cmds[-1])  # exec form: celery gets SIGTERM directly, not via a shell
    assert command[0] == "celery" and "worker" in command, f"default CMD is {command}"


def test_dockerfile_runs_as_a_non_root_user():
    users = [a for k, a in _dockerfile_instructions() if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), f"final USER is {users[-1:]}"


def _strings(node: object):
    """Every string value in the parsed YAML (comments are gone, anchors expanded)."""
    if isinstance(node, dict):
        for value in node.values():
            yield from _strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from _strings(item)
    elif isinstance(node, str):
        yield node


def _entries(node: object, path: str = ""):
    """Yield (path, name, value) for every mapping entry and every NAME=value list item."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", str(key), value
            yield from _entries(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            if isinstance(item, str) and "=" in item:
                name, _, value = item.partition("=")
                yield f"{path}[{index}]", name, value
            yield from _entries(item, f"{path}[{index}]")


def _is_reference(value: str) -> bool:
    return VARIABLE.fullmatch(value.strip()) is not None


def test_required_variables_are_documented_in_readme():
    if not README.exists():
        pytest.skip("no README.md yet")
    readme = README.read_text(encoding="utf-8")
    required = {name for value in _strings(COMPOSE) for name in REQUIRED_VARIABLE.findall(value)}
    assert required, "docker-compose.yml requires no variable: where do secrets come from?"
    undocumented = sorted(v for v in required if v not in readme)
    assert not undocumented, f"README.md does not mention {undocumented}"


def test_secret_settings_come_from_the_environment():
    literal = [
        path
        for path, name, value in _entries(COMPOSE)
        if any(part in name.upper() for part in SECRET_NAME_PARTS)
        and value is not None
        and not isinstance(value, dict | list)
        and not _is_reference(str(value))
    ]
    assert not literal, f"literal secret values in docker-compose.yml: {literal}"


def test_urls_carry_no_literal_password():
    literal = [
        path
        for path, _, value in _entries(COMPOSE)
        if isinstance(value, str)
        for password in URL_PASSWORD.findall(value)
        if not _is_reference(password)
    ]
    assert not literal, f"URLs with a literal password in docker-compose.yml: {literal}"


def _check(name: str) -> list[str]:
    return [str(part) for part in SERVICES[name]["healthcheck"]["test"]]


def _shell_commands(test: list[str]) -> list[list[str]]:
    """The commands of a healthcheck: CMD argv, or CMD-SHELL split on &&."""
    if test[0] == "CMD":
        return [test[1:]]
    assert test[0] == "CMD-SHELL", test
    return [shlex.split(part) for part in test[1].split("&&")]


def test_healthchecks_run_real_commands(container_env):
    from ops.cli import build_parser

    checks = {name: _check(name) for name, s in _our_services().items() if "healthcheck" in s}
    assert {"worker", "beat", "metrics", "flower"} <= set(checks)
    for name, test in checks.items():
        for command in _shell_commands(test):
            if command[0] == "mlc":
                try:
                    build_parser().parse_args(command[1:])
                except SystemExit:
                    pytest.fail(f"healthcheck of {name!r} is not a valid mlc command: {test}")
            elif command[0] == "celery":
                assert command[1:3] == ["-A", "workers"], f"{name}: {test}"
            else:
                assert command[:2] == ["python", "-c"], f"{name}: unexpected {command[0]}"
                compile(command[2], f"{name} healthcheck", "exec")


def test_worker_healthcheck_pings_this_worker():
    commands = _shell_commands(_check("worker"))
    ping = next(c for c in commands if c[:1] == ["celery"])
    assert ping[3:5] == ["inspect", "ping"], ping
    # $$ is compose's escape: the shell expands $HOSTNAME, the worker's default node name.
    assert "-d" in ping and ping[ping.index("-d") + 1] == "celery@$$HOSTNAME", ping
    assert not any("-n" == part or part.startswith("--hostname") for part in
                   _command(SERVICES["worker"])), "a custom node name breaks the ping"


def test_beat_healthcheck_checks_its_schedule_file():
    (command,) = [c for c in _shell_commands(_check("beat")) if c[:1] == ["mlc"]]
    schedule = next(p.split("=", 1)[1] for p in _command(SERVICES["beat"])
                    if p.startswith("--schedule="))
    assert command[command.index("--beat-schedule") + 1] == schedule


def test_beat_schedule_check_reads_the_file_age(tmp_path, monkeypatch):
    import os
    import time

    from ops import health
    from pipeline.config import settings

    monkeypatch.setenv("DATABASE_URL", "postgresql://x@127.0.0.1/x")
    monkeypatch.setenv("MLC_SECRET_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("MLC_POLL_INTERVAL", "900")
    settings.cache_clear()
    try:
        path = tmp_path / "celerybeat-schedule"
        assert not health.beat_schedule(str(path)).ok
        (tmp_path / "celerybeat-schedule.dat").write_bytes(b"x")
        assert health.beat_schedule(str(path)).ok
        old = time.time() - 2 * 900 - 120
        os.utime(tmp_path / "celerybeat-schedule.dat", (old, old))
        stale = health.beat_schedule(str(path))
        assert not stale.ok and "beat is stuck" in stale.detail
    finally:
        settings.cache_clear()


def test_flower_healthcheck_asks_flower_on_its_port():
    command = " ".join(_command(SERVICES["flower"]))
    port = re.search(r"--port=(\d+)", command).group(1)
    assert f"127.0.0.1:{port}/healthcheck" in " ".join(_check("flower"))


def test_flower_holds_no_database_url_nor_fernet_keys():
    env = _environment(SERVICES["flower"])
    assert "DATABASE_URL" not in env and "MLC_SECRET_KEYS" not in env, sorted(env)
    assert "CELERY_BROKER_URL" in env


def test_flower_binds_where_compose_publishes_it():
    command = _command(SERVICES["flower"])
    port = next(p.split("=", 1)[1] for p in command if p.startswith("--port="))
    assert "--address=0.0.0.0" in command, "inside its container Flower must listen on all"
    published = [str(p).rsplit(":", 1)[1] for p in SERVICES["flower"]["ports"]]
    assert published == [port]
    assert all(str(p).startswith("127.0.0.1:") for p in SERVICES["flower"]["ports"])


def test_sandbox_sftp_keeps_its_host_key_on_a_volume():
    command = _command(SERVICES["sftp"])
    state = command[command.index("--state-dir") + 1]
    mounts = [v.split(":", 1)[1] for v in SERVICES["sftp"]["volumes"]]
    assert any(state == m or state.startswith(m.rstrip("/") + "/") for m in mounts), mounts


def test_flower_keeps_its_state_on_a_volume():
    flower = SERVICES["flower"]
    command = " ".join(_command(flower))
    assert "--persistent=True" in command and "--db=/var/lib/flower/" in command
    assert any(v.endswith(":/var/lib/flower") for v in flower.get("volumes", []))


def test_console_runs_gunicorn_on_the_console_app(container_env):
    """The console service: gunicorn's own parser accepts the command, and the module:callable
    it names is the console's Flask app."""
    from flask import Flask
    from gunicorn.config import Config

    console = SERVICES["console"]
    command = _command(console)
    assert command[0] == "gunicorn"
    parsed = Config().parser().parse_args(command[1:])
    assert parsed.args == ["console.wsgi:app"], parsed.args
    module_name, _, attribute = parsed.args[0].partition(":")
    module = importlib.import_module(module_name)
    assert isinstance(getattr(module, attribute), Flask)
    assert all(b.startswith("0.0.0.0:") for b in parsed.bind)
    assert console.get("ports") == ["127.0.0.1:8000:8000"], "the console publishes on loopback"


def test_console_healthcheck_pings_it_and_its_secrets_are_references(container_env):
    from ops.cli import build_parser

    console = SERVICES["console"]
    test = console["healthcheck"]["test"]
    args = build_parser().parse_args(test[2:])
    assert args.func.__name__ == "cmd_ping" and args.url.endswith(":8000")
    env = _environment(console)
    assert _is_reference(env["MLC_CONSOLE_SECRET"])
    assert env["DATABASE_URL"] == _environment(SERVICES["worker"])["DATABASE_URL"]


def test_workers_send_the_task_events_flower_shows(container_env):
    """Flower's task view lives on worker events: compose must not turn them off (the bench
    measures what they cost with MLC_TASK_EVENTS=false, a choice for deployments without
    Flower)."""
    from pipeline.config import settings
    from workers.settings import celery_config

    for name in CELERY_SERVICES:
        env = _environment(SERVICES[name])
        assert env.get("MLC_TASK_EVENTS", "true").lower() not in ("false", "0", "no", "off")
    settings.cache_clear()
    config = celery_config(settings())
    assert config["worker_send_task_events"] and config["task_send_sent_event"]
