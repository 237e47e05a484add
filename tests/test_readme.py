"""The README's quick start runs as written: every command of its example block, against a stack set
up like ``make dev``'s (a worker on the default queue, a triggerer on the trigger queue, the admin
token in ``.airlock/admin.token``), exits with the status the README states."""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
from pathlib import Path

from airlock.dev import banner
from airlock.devstack import DEFAULT_CONFIG, load_config
from tests import secret_scan
from tests.stack import Stack, unique

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
EXAMPLES_MARKER = "<!-- quick-start examples:"
EXIT_COMMENT = re.compile(r"^(?P<command>.*?)\s+#\s*exit (?P<status>\d)\b")
LAUNCHER = ".venv/bin/airlock"


def quick_start() -> str:
    text = README.read_text()
    return text[text.index("## Quick start") : text.index("\n## ", text.index("## Quick start") + 1)]


def example_commands() -> list[tuple[str, int]]:
    """(command, exit status) for each command line of the block after the marker; comment lines and
    blank lines are not commands, and a command that states no status is an error."""
    section = quick_start()
    block = re.search(r"```sh\n(.*?)```", section[section.index(EXAMPLES_MARKER) :], re.DOTALL)
    assert block, "the quick start's example block is missing"
    commands = []
    for line in block.group(1).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        stated = EXIT_COMMENT.match(line)
        assert stated, f"README command without '# exit N': {line}"
        commands.append((stated["command"], int(stated["status"])))
    return commands


def test_readme_shows_what_airlock_dev_prints() -> None:
    section = quick_start()
    shown = re.search(r"```\n(Airlock is up\..*?)\n```", section, re.DOTALL)
    assert shown, "the quick start no longer shows what `make dev` prints"
    assert shown.group(1) == banner(load_config(REPO / DEFAULT_CONFIG), LAUNCHER)


async def test_quick_start_examples_run_as_written(make_stack, tmp_path: Path) -> None:
    config = load_config(REPO / DEFAULT_CONFIG)
    # Fresh queue names stand in for `default` and `triggers`: the session's Temporal server is shared
    # with other tests. The README names no queue, so it runs on whatever the server's defaults are.
    stack: Stack = await make_stack(default_queue=unique("default"), default_trigger_queue=unique("triggers"))
    await stack.start_worker(stack.settings.default_queue, name="dev")
    await stack.start_worker(stack.settings.default_trigger_queue, name="dev-triggerer", AIRLOCK_TRIGGERER="true")
    await stack.wait_worker(stack.settings.default_queue)
    await stack.wait_worker(stack.settings.default_trigger_queue)

    # Where `make dev` leaves its token, in the directory the commands run from.
    state = tmp_path / config["state_dir"]
    state.mkdir()
    (state / "admin.token").write_text(stack.secrets.admin_token + "\n")
    dev_api = f"{config['api']['host']}:{config['api']['port']}"
    mapping = {
        LAUNCHER: f"{shlex.quote(sys.executable)} -m airlock.cli",
        dev_api: stack.api.url.removeprefix("http://"),
    }
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRLOCK_")}
    env["AIRLOCK_API_URL"] = f"http://{mapping[dev_api]}"

    commands = example_commands()
    assert len(commands) >= 5 and any("--save-as" in c for c, _ in commands)
    assert all(LAUNCHER in c or c.startswith("curl ") for c, _ in commands), commands
    for command, status in commands:
        runnable = command
        for written, here in mapping.items():
            runnable = runnable.replace(written, here)
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            runnable,
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
        assert proc.returncode == status, (
            f"{command}\nexited {proc.returncode}, README says {status}:\n{output.decode()}"
        )
        assert b"Traceback" not in output, output.decode()
        assert not secret_scan.SESSION.check_output(output.decode(), f"README: {command[:40]}"), output

    # What the block says it did, it did: the connection was saved, the trigger fired on the triggerer.
    async with stack.client() as client:
        saved = await client.get("/api/v2/connections/airlock-api")
        assert saved.status_code == 200 and saved.json()["conn_type"] == "http", saved.text
        triggers = (await client.get("/api/v2/triggers")).json()["triggers"]
        assert [t["classpath"] for t in triggers] == ["airlock.triggers.HttpTrigger"], triggers
        for _ in range(300):
            trigger = (await client.get(f"/api/v2/triggers/{triggers[0]['id']}")).json()
            if trigger["state"] == "fired":
                break
            await asyncio.sleep(0.1)
        assert trigger["state"] == "fired" and trigger["triggerer"], trigger
