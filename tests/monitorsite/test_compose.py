"""The production shape: docker-compose.yml, the Dockerfile and .env.example.

These are what an operator relies on without reading the code: every process
is there once (beat exactly once), each one says when it is unhealthy, the
workers together consume every queue, the containers run the same commands as
`make run`, and .env.example names exactly the variables Watchpost reads.
"""

from __future__ import annotations

import ast
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings

from monitorsite.celery import QUEUES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
PROCFILE = ROOT / "Procfile"

REQUIRED_SERVICES = {
    "postgres", "redis", "migrate", "web", "worker-dispatch", "worker-core", "beat",
}  # fmt: skip
CORE_QUEUES = {"notify", "default"}
# `- NAME=value` or `# NAME=value` (an optional one) at the start of a line.
ENV_LINE = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")
# ${NAME}, ${NAME:-default}, ${NAME:?error}; `$$` is compose's escaped dollar.
COMPOSE_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
ENV_READERS = {"str", "bool", "int", "float", "url", "list", "choice", "timezone", "raw"}


# --- Reading the files ---------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def services() -> dict[str, dict[str, Any]]:
    return compose()["services"]


def argv(service: dict[str, Any]) -> list[str]:
    command = service.get("command", [])
    return shlex.split(command) if isinstance(command, str) else list(command)


def procfile() -> dict[str, list[str]]:
    entries = {}
    for line in PROCFILE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = shlex.split(command)
    return entries


def celery_subcommand(args: list[str]) -> str | None:
    """`worker` for `celery -A monitorsite worker ...`; None for anything else."""
    if not args or args[0] != "celery":
        return None
    rest = iter(args[1:])
    for token in rest:
        if token in ("-A", "--app"):
            next(rest, None)
        elif not token.startswith("-"):
            return token
    return None


def option(args: list[str], *names: str) -> str | None:
    for index, token in enumerate(args):
        if token in names and index + 1 < len(args):
            return args[index + 1]
        for name in names:
            if token.startswith(f"{name}="):
                return token.split("=", 1)[1]
    return None


def queues(service: dict[str, Any]) -> set[str]:
    value = option(argv(service), "--queues", "-Q") or ""
    return {name.strip() for name in value.split(",") if name.strip()}


def workers() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in services().items()
        if celery_subcommand(argv(service)) == "worker"
    }


def one_shot_services() -> set[str]:
    """Services others wait to *finish* (migrate): they exit, so they need no healthcheck."""
    names = set()
    for service in services().values():
        depends_on = service.get("depends_on", {})
        if isinstance(depends_on, dict):
            names |= {
                name
                for name, rule in depends_on.items()
                if (rule or {}).get("condition") == "service_completed_successfully"
            }
    return names


def watchpost_services() -> dict[str, dict[str, Any]]:
    """The services that run this repository's image (not postgres or redis)."""
    return {name: service for name, service in services().items() if "build" in service}


def env_example() -> list[tuple[str, str, bool]]:
    """(name, value, active) for each `NAME=` and `# NAME=` line of .env.example."""
    entries = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        match = ENV_LINE.match(line.strip())
        if match:
            entries.append((match[2], match[3], match[1] is None))
    return entries


def env_example_active() -> dict[str, str]:
    return {name: value for name, value, active in env_example() if active}


def variables_read_by_settings() -> set[str]:
    """Every NAME in `env.<reader>("NAME", ...)` in monitorsite/settings.py."""
    tree = ast.parse((ROOT / "monitorsite" / "settings.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "env"
        and node.func.attr in ENV_READERS
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def variables_read_by_gunicorn() -> set[str]:
    """Every NAME in `os.environ.get("NAME")`, `os.environ["NAME"]`, `os.getenv("NAME")`."""
    tree = ast.parse((ROOT / "monitorsite" / "gunicorn.conf.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            function = ast.unparse(node.func)
            if function in ("os.environ.get", "os.getenv"):
                names.add(node.args[0].value)
        elif (
            isinstance(node, ast.Subscript)
            and ast.unparse(node.value) == "os.environ"
            and isinstance(node.slice, ast.Constant)
        ):
            names.add(node.slice.value)
    return names


def variables_interpolated_by_compose() -> set[str]:
    return {match[1] for match in COMPOSE_VARIABLE.finditer(COMPOSE_FILE.read_text())}


def interpolate(value: str, variables: dict[str, str]) -> str:
    return COMPOSE_VARIABLE.sub(lambda match: variables[match[1]], value).replace("$$", "$")


# --- Services -----------------------------------------------------------------


def test_it_declares_every_process_of_the_production_shape() -> None:
    names = set(services())

    assert names >= REQUIRED_SERVICES, f"missing: {sorted(REQUIRED_SERVICES - names)}"
    assert any(name.startswith("worker-probes") for name in names)


def test_it_runs_exactly_one_beat() -> None:
    beats = [
        name for name, service in services().items() if celery_subcommand(argv(service)) == "beat"
    ]

    assert beats == ["beat"]
    beat = services()["beat"]
    assert beat.get("deploy", {}).get("replicas", 1) == 1
    assert beat.get("scale", 1) == 1


def test_it_gives_every_long_running_service_a_healthcheck_and_a_restart_policy() -> None:
    one_shot = one_shot_services()
    assert one_shot == {"migrate"}

    for name, service in services().items():
        if name in one_shot:
            assert service.get("restart", "no") == "no", name
            continue
        healthcheck = service.get("healthcheck", {})
        assert healthcheck.get("test"), f"{name} has no healthcheck"
        assert not healthcheck.get("disable"), f"{name} disables its healthcheck"
        assert service.get("restart") == "unless-stopped", name


def test_it_pings_each_worker_by_the_name_it_runs_under() -> None:
    # A ping addressed to another node name never answers: the worker would
    # be reported unhealthy forever while working fine.
    for name, service in workers().items():
        hostname = option(argv(service), "--hostname", "-n")
        assert hostname and hostname.endswith("@%h"), name
        test = service["healthcheck"]["test"]
        command = test if isinstance(test, str) else " ".join(test[1:])
        assert "inspect ping" in command, name
        node = hostname.removesuffix("@%h")
        assert re.search(rf"(-d|--destination)[ =]{re.escape(node)}@\$\$HOSTNAME\b", command), name


def test_it_checks_the_web_server_on_health_live() -> None:
    web = services()["web"]
    test = " ".join(web["healthcheck"]["test"])

    assert "/health/live" in test
    assert "urllib" in test  # python:3.11-slim has no curl
    assert web["environment"]["WATCHPOST_BIND"] == "0.0.0.0:8000"
    assert any(str(port).endswith("8000:8000") for port in web["ports"])


# --- Queues ---------------------------------------------------------------------


def test_it_consumes_every_queue_the_celery_app_routes_to() -> None:
    consumed = set().union(*(queues(service) for service in workers().values()))

    assert consumed >= set(QUEUES), f"nobody consumes {sorted(set(QUEUES) - consumed)}"
    assert any(re.fullmatch(r"probes\.[a-z0-9-]+", queue) for queue in consumed)


def test_it_keeps_probes_apart_from_dispatch_and_paging() -> None:
    # A probe backlog must not delay the system tick or a notification, nor
    # a long task of the core worker the tick.
    assert queues(services()["worker-dispatch"]) == {"dispatch"}
    dispatcher = argv(services()["worker-dispatch"])
    assert dispatcher[dispatcher.index("--concurrency") + 1] == "1"
    assert queues(services()["worker-core"]) >= CORE_QUEUES
    probe_workers = {name: s for name, s in workers().items() if name.startswith("worker-probes")}
    assert probe_workers
    for name, service in probe_workers.items():
        consumed = queues(service)
        assert consumed, name
        assert all(re.fullmatch(r"probes(\.[a-z0-9-]+)?", queue) for queue in consumed), name


# --- Same commands as the Procfile -----------------------------------------------


def command_shape(args: list[str]) -> list[str]:
    """The command without what may differ per worker: queues, concurrency and node name."""
    shape = []
    rest = iter(args)
    for token in rest:
        if token in ("--queues", "-Q", "--concurrency", "-c"):
            next(rest, None)
        elif token in ("--hostname", "-n"):
            shape += [token, "NODE@" + next(rest, "").partition("@")[2]]
        else:
            shape.append(token)
    return shape


def test_it_runs_the_same_commands_as_the_procfile() -> None:
    entries = procfile()
    expected = {
        "web": entries["web"],
        "beat": entries["beat"],
        **{name: entries["worker"] for name in workers()},
    }

    for name, procfile_argv in expected.items():
        compose_argv = argv(services()[name])
        assert command_shape(compose_argv) == command_shape(procfile_argv), name
    assert set(workers()) >= {"worker-dispatch", "worker-core"}


def test_it_migrates_once_before_anything_starts() -> None:
    assert argv(services()["migrate"]) == ["python", "manage.py", "prepare", "--no-demo"]
    for name, service in watchpost_services().items():
        depends_on = service["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy", name
        assert depends_on["redis"]["condition"] == "service_healthy", name
        if name != "migrate":
            assert depends_on["migrate"]["condition"] == "service_completed_successfully", name


# --- Environment -------------------------------------------------------------------


def test_it_points_every_watchpost_service_at_the_compose_postgres_and_redis() -> None:
    variables = env_example_active()
    for name, service in watchpost_services().items():
        environment = {k: interpolate(str(v), variables) for k, v in service["environment"].items()}
        assert ".env" in service["env_file"], name
        assert urlsplit(environment["DATABASE_URL"]).hostname == "postgres", name
        assert urlsplit(environment["CELERY_BROKER_URL"]).hostname == "redis", name
        assert urlsplit(environment["REDIS_URL"]).hostname == "redis", name
        # The cache must not share the broker's database: a cache flush would
        # drop queued tasks.
        assert environment["REDIS_URL"] != environment["CELERY_BROKER_URL"], name


def test_it_lists_exactly_the_variables_watchpost_reads_in_env_example() -> None:
    read = variables_read_by_settings() | variables_read_by_gunicorn()
    for_compose = variables_interpolated_by_compose()
    listed = {name for name, _, _ in env_example()}
    # NAME_FILE is the file variant of a secret NAME (monitorsite.env.Env.raw).
    bases = {name.removesuffix("_FILE") if name.endswith("_FILE") else name for name in listed}

    assert read - bases == set(), "read but not in .env.example"
    assert bases - read - for_compose == set(), "in .env.example but read by nobody"
    assert for_compose <= listed, "docker-compose.yml needs these in .env"
    assert {"SECRET_KEY", "SECRET_KEY_FILE"} <= listed


def test_it_explains_every_variable_in_env_example() -> None:
    lines = ENV_EXAMPLE.read_text().splitlines()
    seen: set[str] = set()
    for index, line in enumerate(lines):
        match = ENV_LINE.match(line.strip())
        if not match or match[2].endswith("_FILE") or match[2] in seen:
            continue
        seen.add(match[2])
        previous = lines[index - 1].strip()
        assert previous.startswith("#") and not ENV_LINE.match(previous), match[2]


def settings_check(tmp_path: Path, overrides: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`manage.py check` with .env.example as a container sees it (env_file + environment)."""
    variables = env_example_active()
    environment = {
        **variables,
        **{
            name: interpolate(str(value), variables)
            for name, value in services()["web"]["environment"].items()
        },
        "WATCHPOST_DATA_DIR": str(tmp_path),
        **overrides,
    }
    return subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), **environment},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_it_refuses_to_start_with_the_placeholder_secret_key(tmp_path: Path) -> None:
    result = settings_check(tmp_path, {})

    assert result.returncode == 2, result.stderr
    assert "SECRET_KEY" in result.stderr


def test_it_starts_with_env_example_once_the_secret_key_is_set(tmp_path: Path) -> None:
    result = settings_check(tmp_path, {"SECRET_KEY": "x" * 50})

    assert result.returncode == 0, result.stderr


# --- Image ---------------------------------------------------------------------------


def test_it_builds_a_slim_non_root_image_without_dev_dependencies() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    code = "\n".join(line for line in lines if line and not line.startswith("#"))
    instructions = [line.split(None, 1) for line in code.splitlines() if line[0].isupper()]

    assert instructions[0] == ["FROM", "python:3.11-slim"]
    users = [parts[1].strip() for parts in instructions if parts[0] == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert "pip install --requirement requirements.txt" in code
    assert "requirements-dev" not in code
    assert "collectstatic" in code


def test_it_copies_every_local_app_into_the_image() -> None:
    # The Dockerfile lists what it copies (so .env and .venv stay out); a new
    # app missing from that list would fail only in production.
    copied = set()
    for line in DOCKERFILE.read_text().splitlines():
        parts = line.split()
        if parts and parts[0] == "COPY":
            sources = [part for part in parts[1:-1] if not part.startswith("--")]
            copied |= {source.rstrip("/") for source in sources}
    local_apps = {
        app.split(".")[0] for app in settings.INSTALLED_APPS if (ROOT / app.split(".")[0]).is_dir()
    }

    assert local_apps <= copied, f"not copied: {sorted(local_apps - copied)}"
    assert "manage.py" in copied


# --- docker compose itself ----------------------------------------------------------


def compose_cli() -> list[str] | None:
    """`docker compose` (the plugin), else the standalone `docker-compose`, else None."""
    if shutil.which("docker"):
        result = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if result.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    return None


@pytest.mark.skipif(compose_cli() is None, reason="neither docker compose nor docker-compose")
def test_it_passes_docker_compose_config(tmp_path: Path) -> None:
    # The operator's first step: .env.example copied to .env. `config` needs
    # no docker engine, only the client.
    for source in (COMPOSE_FILE, DOCKERFILE):
        shutil.copy(source, tmp_path / source.name)
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")

    result = subprocess.run(
        [*(compose_cli() or []), "config", "--quiet"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
