"""The deployment guide and the README name only what exists: every ``AIRLOCK_*`` variable is a setting
some process reads, and every ``airlock`` command line of docs/deploy.md is a real command with real
options. Fast: nothing is started, nothing is reached."""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import shlex
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic_settings import BaseSettings

import airlock.cli

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "docs" / "deploy.md"
DOCUMENTS = [DEPLOY, REPO / "README.md", REPO / "docs" / "security.md"]
# The modules whose pydantic settings classes are Airlock's configuration: the shared layer's (logging,
# Temporal, the API link), the API's and the worker's.
SETTINGS_MODULES = ("airlock.settings", "api.core.config", "worker.config")
# The CLI reads a few variables itself, outside any settings class.
CLI_MODULE = REPO / "airlock" / "cli" / "common.py"
# The test harness's own overrides (the README's Tests section names them).
TEST_SERVICES = REPO / "tests" / "services.py"

VARIABLE = re.compile(r"AIRLOCK_[A-Z0-9_]*[A-Z0-9](?P<wildcard>_\*)?")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.DOTALL | re.MULTILINE)
PROGRAM = re.compile(r"^(?:\S*/)?airlock$")  # `airlock`, `.venv/bin/airlock`


def settings_classes() -> Iterator[type[BaseSettings]]:
    for name in SETTINGS_MODULES:
        module = importlib.import_module(name)
        for _, member in inspect.getmembers(module, inspect.isclass):
            if issubclass(member, BaseSettings) and member is not BaseSettings:
                yield member


def env_names(cls: type[BaseSettings]) -> set[str]:
    prefix = cls.model_config.get("env_prefix") or ""
    return {f"{prefix}{field.alias or name}".upper() for name, field in cls.model_fields.items()}


def environment_reads(path: Path) -> set[str]:
    """The ``AIRLOCK_*`` names a module reads itself: ``os.environ.get(...)``, ``os.environ[...]``,
    ``os.getenv(...)``, and Typer's ``envvar=...``."""
    names: set[str] = set()

    def literal(node: ast.AST | None) -> None:
        if (
            isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and node.value.startswith("AIRLOCK_")
        ):
            names.add(node.value)

    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call):
            func = ast.unparse(node.func)
            if func in {"os.environ.get", "os.getenv", "os.environ.setdefault"} and node.args:
                literal(node.args[0])
            for keyword in node.keywords:
                if keyword.arg == "envvar":
                    literal(keyword.value)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            literal(node.slice)
    return names


@cache
def known_settings() -> frozenset[str]:
    names: set[str] = set()
    for cls in settings_classes():
        names |= env_names(cls)
    return frozenset(names | environment_reads(CLI_MODULE))


@cache
def harness_variables() -> frozenset[str]:
    text = TEST_SERVICES.read_text()
    return frozenset(re.findall(r'"(AIRLOCK_TEST_[A-Z0-9_]+)"', text))


def test_the_settings_are_found() -> None:
    known = known_settings()
    # One of each origin, so that a refactoring that hides them from this test fails here, loudly.
    assert {
        "AIRLOCK_DATABASE_URL",
        "AIRLOCK_TLS_CLIENT_CA_FILE",
        "AIRLOCK_WORKER_CLIENT_CA_KEY_FILE",
    } <= known
    assert {"AIRLOCK_WORKER_TOKEN", "AIRLOCK_EGRESS_ALLOW", "AIRLOCK_TEMPORAL_API_KEY"} <= known
    assert {"AIRLOCK_API_CA", "AIRLOCK_ALLOW_PLAINTEXT", "AIRLOCK_LOG_FORMAT"} <= known
    assert {"AIRLOCK_API_TOKEN", "AIRLOCK_STATE_DIR"} <= known
    assert harness_variables(), "tests/services.py names no AIRLOCK_TEST_* variable"


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_variable_named_is_a_setting(document: Path) -> None:
    known = known_settings()
    unknown = []
    for match in VARIABLE.finditer(document.read_text()):
        name = match.group(0)
        if match["wildcard"]:
            # `AIRLOCK_DRIVER_*`, `AIRLOCK_TEMPORAL_TLS_*`: a family, which must have members.
            if not any(setting.startswith(name[:-1]) for setting in known):
                unknown.append(name)
        elif name.startswith("AIRLOCK_TEST_"):
            if name not in harness_variables():
                unknown.append(name)
        elif name not in known:
            unknown.append(name)
    assert not unknown, f"{document.name} names variables no process reads: {sorted(set(unknown))}"


def command_lines(document: Path) -> list[list[str]]:
    """The ``airlock ...`` command lines of the document's fenced blocks, as argv without the program:
    comments dropped, continuation lines joined, ``NAME=value`` prefixes skipped."""
    commands = []
    for block in FENCE.findall(document.read_text()):
        for line in block.replace("\\\n", " ").splitlines():
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue  # not shell (a diagram, say)
            while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
                words = words[1:]
            if words and words[0] == "$":
                words = words[1:]
            if words and PROGRAM.match(words[0]):
                commands.append(words[1:])
    return commands


def resolve(argv: list[str]) -> tuple[Any, list[str], list[str]]:
    """The command ``argv`` names (descending through groups), its path and the arguments left."""
    root = typer.main.get_command(airlock.cli.app)
    context = root.make_context("airlock", [], resilient_parsing=True)
    command: Any = root
    path: list[str] = []
    rest = list(argv)
    while hasattr(command, "get_command") and rest and not rest[0].startswith("-"):
        sub = command.get_command(context, rest[0])
        assert sub is not None, f"`airlock {' '.join(argv)}`: no command `{' '.join([*path, rest[0]])}`"
        command, path, rest = sub, [*path, rest[0]], rest[1:]
        context = type(context)(command, info_name=path[-1], parent=context)
    return command, path, rest


def check_arguments(command: Any, where: str, args: list[str]) -> None:
    """Every option ``args`` use exists on ``command``, options that take a value have one, required
    parameters are given, and there are no more positional words than the command takes."""
    options = {
        opt: param
        for param in command.params
        if param.param_type_name == "option"
        for opt in (*param.opts, *param.secondary_opts)
    }
    given: set[str] = set()
    positional: list[str] = []
    words = iter(args)
    for word in words:
        if word == "--help":
            return
        if not word.startswith("-"):
            positional.append(word)
            continue
        flag, has_value, _ = word.partition("=")
        param = options.get(flag)
        assert param is not None, f"`{where}`: no option {flag} (it has {sorted(options)})"
        given.add(param.name)
        if not getattr(param, "is_flag", False) and not getattr(param, "count", False) and not has_value:
            assert next(words, None) is not None, f"`{where}`: {flag} needs a value"
    arguments = [param for param in command.params if param.param_type_name == "argument"]
    if all(param.nargs >= 0 for param in arguments):
        assert len(positional) <= sum(param.nargs for param in arguments), (
            f"`{where}`: unexpected arguments {positional[sum(p.nargs for p in arguments) :]}"
        )
    for param in arguments:
        if param.required and positional:
            given.add(param.name)
            positional = positional[max(param.nargs, 1) :]
    missing = [param.opts[0] for param in command.params if param.required and param.name not in given]
    assert not missing, f"`{where}`: required {missing} not given"


def test_the_deploy_guide_shows_commands() -> None:
    shown = {" ".join(resolve(argv)[1]) for argv in command_lines(DEPLOY)}
    assert {"db upgrade", "api", "workers add", "worker"} <= shown, shown


@pytest.mark.parametrize("argv", command_lines(DEPLOY), ids=" ".join)
def test_every_command_of_the_deploy_guide_is_real(argv: list[str]) -> None:
    where = f"airlock {' '.join(argv)}"
    command, path, rest = resolve(argv)
    assert path, f"`{where}` names no command"
    assert not hasattr(command, "list_commands"), f"`{where}` names a group, not a command"
    check_arguments(command, where, rest)


def test_the_command_check_catches_what_does_not_exist() -> None:
    with pytest.raises(AssertionError, match="no command"):
        resolve(["workers", "rotate", "edge-a"])
    command, _, rest = resolve(["api", "--host", "0.0.0.0", "--no-such-flag"])
    with pytest.raises(AssertionError, match="no option --no-such-flag"):
        check_arguments(command, "airlock api", rest)
    command, _, rest = resolve(["workers", "add", "edge-a", "--env-file", "x.env"])
    with pytest.raises(AssertionError, match="required"):
        check_arguments(command, "airlock workers add", rest)  # --queue is required
    command, _, rest = resolve(["workers", "revoke", "edge-a", "edge-b"])
    with pytest.raises(AssertionError, match="unexpected arguments"):
        check_arguments(command, "airlock workers revoke", rest)
