"""``airlock``: start the parts (api, worker, dev) and drive the API (connections test)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_TEST_FAILED, EXIT_ERROR = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="airlock", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="run the API (public API, Execution API, control worker)")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8080)
    api.add_argument("--no-migrate", action="store_true", help="do not apply database migrations at start")

    worker = sub.add_parser("worker", help="run a worker serving one or more task queues")
    worker.add_argument("--queue", action="append", dest="queues", metavar="Q", help="repeat for more queues")
    worker.add_argument("--triggerer", action="store_true", help="run triggers instead of connection tests")
    worker.add_argument("--capacity", type=int, help="with --triggerer: triggers run at once (default 1000)")

    dev = sub.add_parser("dev", help="run the whole local stack described by temporal-dev.yaml")
    dev.add_argument("--config", type=Path, default=Path("temporal-dev.yaml"))

    db = sub.add_parser("db", help="database migrations")
    db.add_argument("action", choices=["upgrade"])

    tokens = sub.add_parser("tokens", help="mint credentials (on the API host)")
    tokens.add_argument("kind", choices=["worker"])
    tokens.add_argument("--name", required=True, help="the worker's name, recorded on its jobs")
    tokens.add_argument("--days", type=int, default=365)

    conns = sub.add_parser("connections", help="connections").add_subparsers(dest="action", required=True)
    test = conns.add_parser("test", help="test a connection on a worker and wait for the result")
    target = test.add_mutually_exclusive_group(required=True)
    target.add_argument("--uri", help="an unsaved connection, e.g. postgres://user:pass@host:5432/db")
    target.add_argument("--conn-id", help="a saved connection's id")
    test.add_argument("--queue", help="the task queue of the workers that should run it")
    test.add_argument("--timeout", type=int, help="seconds")
    test.add_argument("--save-as", help="with --uri: save the connection under this id if the test succeeds")
    test.add_argument("--api-url", default=os.environ.get("AIRLOCK_API_URL", "http://127.0.0.1:8080"))

    trig = sub.add_parser("triggers", help="triggers").add_subparsers(dest="action", required=True)
    trig.add_parser("list", help="list triggers").add_argument("--state")
    for action, text in (
        ("show", "show one trigger"),
        ("logs", "print a trigger's logs"),
        ("cancel", "cancel it"),
    ):
        trig.add_parser(action, help=text).add_argument("trigger_id")
    for command in trig.choices.values():
        command.add_argument("--api-url", default=os.environ.get("AIRLOCK_API_URL", "http://127.0.0.1:8080"))
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    code = _run(args)
    # Temporal's SDK can abort in PyGILState_Release at interpreter exit: flush and leave directly.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _run(args: argparse.Namespace) -> int:
    try:
        if args.command == "api":
            from api.core.config import Settings
            from api.main import serve

            serve(Settings(), args.host, args.port, migrate=not args.no_migrate)
        elif args.command == "worker":
            return _worker(args.queues, args.triggerer, args.capacity)
        elif args.command == "dev":
            from airlock.dev import run_dev

            return run_dev(args.config)
        elif args.command == "db":
            from api.core.config import Settings
            from api.db.migrate import upgrade

            upgrade(Settings().database_url)
        elif args.command == "tokens":
            from api.core.config import Settings
            from api.core.security import mint_worker_token

            print(mint_worker_token(Settings(), args.name, ttl_seconds=args.days * 86400))
        elif args.command == "triggers":
            from airlock.trigger_commands import run_trigger_command

            return run_trigger_command(args)
        elif args.command == "connections":
            from airlock.test_command import run_test_command

            return run_test_command(args)
    except KeyboardInterrupt:
        return EXIT_ERROR
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"airlock: {exc.code}", file=sys.stderr)
            return EXIT_ERROR
        return exc.code or 0
    return EXIT_OK


def _worker(queues: list[str] | None, triggerer: bool, capacity: int | None) -> int:
    import asyncio

    from worker.config import WorkerSettings
    from worker.main import run_worker

    settings = WorkerSettings()
    updates: dict[str, object] = {"queues": queues} if queues else {}
    if triggerer:
        updates["triggerer"] = True
        if "queues" not in updates and "AIRLOCK_QUEUES" not in os.environ:
            updates["queues"] = ["triggers"]
    if capacity:
        updates["capacity"] = capacity
    settings = WorkerSettings.model_validate({**settings.model_dump(), **updates})
    asyncio.run(run_worker(settings))
    return EXIT_OK


if __name__ == "__main__":
    main()
