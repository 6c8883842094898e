"""The ``onedoor`` command: serve, migrate, load the demo hall, simulate, create an admin."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from queue_server.clock import SystemClock
from queue_server.db.engine import create_engine, session_factory
from queue_server.db.migrate import upgrade
from queue_server.service.bus import Bus
from queue_server.settings import Settings, SettingsError, load_settings

T = TypeVar("T")


def _with_bus(settings: Settings, work: Callable[[Bus], Awaitable[T]]) -> T:
    async def main() -> T:
        engine = create_engine(settings.effective_database_url)
        try:
            return await work(Bus(session_factory(engine), SystemClock()))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def cmd_db(settings: Settings, args: argparse.Namespace) -> int:
    upgrade(settings.effective_database_url, args.revision)
    print(f"database at {settings.effective_database_url} is at revision {args.revision}")
    return 0


def _quiet(*_: object, **__: object) -> None:
    """Say nothing (the serving banner is not a log line)."""


def cmd_check(settings: Settings, args: argparse.Namespace) -> int:
    """Check the settings and every connection the server needs; 1 if one fails."""
    from queue_server import ops

    checks = asyncio.run(ops.run_checks(settings))
    width = max(len(c.name) for c in checks)
    for check in checks:
        word = "FAIL" if not check.ok else "warn" if check.warning else "ok  "
        print(f"{word}  {check.name:<{width}}  {check.detail}")
    failed = [c for c in checks if not c.ok]
    print("all checks passed" if not failed else f"{len(failed)} check(s) failed")
    return 1 if failed else 0


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from queue_server import demo

    upgrade(settings.effective_database_url)
    created = _with_bus(settings, lambda bus: demo.load_demo(bus, settings.default_timezone))
    if created is None:
        print("The database already has a hall; the demo hall was not loaded again.")
        path = settings.var_dir / "demo-credentials.txt"
        if path.exists():
            print(f"Demo credentials from the first run: {path}")
    else:
        text = demo.describe(created)
        path = demo.save_credentials(text, settings.var_dir)
        demo.save_printer_token(created.printer_token, settings.var_dir)
        print(text)
        print(f"  ({path})")
    if args.history:
        fill = [created.layout] if created is not None and created.layout else []
        _history(settings, args, fill)
    return 0


def _history(settings: Settings, args: argparse.Namespace, fill: list[Any]) -> None:
    import time as clock

    from tqdm import tqdm

    from queue_server import history

    total = args.history * args.halls
    started = clock.monotonic()
    with tqdm(total=total, unit="hall-day", desc="history", disable=args.quiet) as bar:
        made = _with_bus(
            settings,
            lambda bus: history.generate(
                bus,
                args.history,
                args.halls,
                per_day=args.per_day,
                timezone=settings.default_timezone,
                fill=fill,
                progress=bar.update,
            ),
        )
    took = clock.monotonic() - started
    print(
        f"history: {made.halls} halls × {made.days} days: {made.tickets:,} tickets, "
        f"{made.visits:,} visits, {made.ratings:,} ratings, {made.cases:,} desk cases "
        f"in {took:.0f} s"
    )


def cmd_create_admin(settings: Settings, args: argparse.Namespace) -> int:
    from queue_server.service import accounts

    password = args.password
    generated = False
    if password is None:
        if sys.stdin.isatty():
            password = getpass.getpass("New admin password (empty: generate one): ")
        if not password:
            password, generated = accounts.generate_password(), True
    upgrade(settings.effective_database_url)
    user = _with_bus(
        settings,
        lambda bus: bus.run(
            accounts.create_user, args.username, password, accounts.Role.ADMIN, None, args.name
        ),
    )
    print(f"admin {user.username!r} created (id {user.id})")
    if generated:
        print(f"password (shown once): {password}")
    return 0


def _start_demo_printer(settings: Settings) -> None:
    """The demo's print agent, in this process: tickets go to files under var/tickets/."""
    import threading

    from printer.agent import Agent
    from printer.config import PrinterConfig
    from printer.profile import PrinterProfile
    from printer.transports import FileTransport

    token_file = settings.var_dir / "demo-printer-token"
    if not token_file.exists():
        print("no demo printer token (run 'onedoor demo' on an empty database first)")
        return
    folder = settings.var_dir / "tickets"
    agent = Agent(
        f"http://127.0.0.1:{settings.port}",
        token_file.read_text().strip(),
        PrinterConfig(PrinterProfile(), FileTransport(folder), "file"),
        settings.var_dir / "printer-agent",
        say=lambda line: print(f"[demo printer] {line}", flush=True),
    )
    threading.Thread(
        target=lambda: asyncio.run(agent.run()), daemon=True, name="demo-printer"
    ).start()
    print(f"  demo printer:   tickets are written to {folder}/", flush=True)


def cmd_printer_agent(settings: Settings, args: argparse.Namespace) -> int:
    from printer.agent import Agent
    from printer.config import PrinterConfigError, load_config

    if not args.token:
        return _no_token("printer-agent", "the printer", "ONEDOOR_PRINTER_TOKEN")

    try:
        config = load_config(Path(args.config))
    except PrinterConfigError as exc:
        print(f"onedoor printer-agent: {exc}", file=sys.stderr)
        return 2
    agent = Agent(args.server, args.token, config, Path(args.state_dir),
                  say=lambda line: print(line, flush=True))  # fmt: skip
    print(f"print agent for a {config.kind} printer ({config.profile.paper_mm} mm); "
          f"serving {args.server}", flush=True)  # fmt: skip
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(agent.run())
    return 0


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    from queue_server import serving

    problem = serving.refusal(settings)
    if problem:
        print(f"onedoor serve: {problem}", file=sys.stderr)
        return 2
    if not args.no_migrate:
        upgrade(settings.effective_database_url)
    settings.session_secret()  # made here, once, before any worker process starts
    base = settings.effective_public_base_url
    banner = print if settings.log_format == "text" else _quiet  # JSON logs: nothing else
    banner(
        "\n".join(
            [
                f"OneDoor is serving on http://{settings.host}:{settings.port}",
                f"  kiosk:          {base}/kiosk/<hall id>?token=<kiosk token>",
                f"  counter:        {base}/counter",
                f"  booking:        {base}/book",
                f"  manager pages:  {base}/admin",
                f"  API docs:       {base}/schema/swagger",
                f"  OpenAPI schema: {base}/schema/openapi.json",
                f"  health:         {base}/livez, {base}/readyz, {base}/metrics",
                f"  board page:     {base}/board/<hall id>?token=<board token>",
                f"  database:       {settings.effective_database_url}",
            ]
        ),
        flush=True,
    )
    if args.demo_printer:
        _start_demo_printer(settings)
    return serving.serve(settings, args.log_level)


def _no_token(command: str, whose: str, variable: str) -> int:
    print(f"onedoor {command}: give {whose}'s device token: set {variable}, or pass "
          f"--token=TOKEN (with '=': a token may start with '-')", file=sys.stderr)  # fmt: skip
    return 2


def cmd_board_client(settings: Settings, args: argparse.Namespace) -> int:
    from display import client

    if not args.token:
        return _no_token("board-client", "a board", "ONEDOOR_BOARD_TOKEN")

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(client.run(args.url, args.hall, args.token))
    return 0


def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from queue_server.simulation import command

    return command.main(settings, args, _with_bus)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="onedoor", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="apply migrations and serve the API")
    serve.add_argument("--host", help="listen address (ONEDOOR_HOST)")
    serve.add_argument("--port", type=int, help="listen port (ONEDOOR_PORT)")
    serve.add_argument(
        "--workers",
        type=int,
        help="worker processes, one per core (ONEDOOR_WORKERS); more than one needs "
        "PostgreSQL and Redis, and each gets its own SO_REUSEPORT socket (see README)",
    )
    serve.add_argument("--no-migrate", action="store_true", help="do not apply migrations first")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    serve.add_argument(
        "--demo-printer", action="store_true", help="run the demo hall's print agent in-process"
    )
    serve.set_defaults(run=cmd_serve)

    check = sub.add_parser(
        "check", help="check the settings, folders, database, schema and Redis (exit 1 if not)"
    )
    check.set_defaults(run=cmd_check)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    up = db_sub.add_parser("upgrade", help="apply migrations (creates the database schema)")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(run=cmd_db)

    demo = sub.add_parser("demo", help="load the demo hall into an empty database")
    demo.add_argument(
        "--history", type=int, default=0, metavar="DAYS",
        help="also fill DAYS past days of visits (statistics and reports to look at)",
    )  # fmt: skip
    demo.add_argument(
        "--halls", type=int, default=1, metavar="N",
        help="with --history: that many halls (the demo hall first, when it is new)",
    )  # fmt: skip
    demo.add_argument(
        "--per-day", type=int, default=700, help="with --history: visitors on a usual weekday"
    )
    demo.add_argument("--quiet", action="store_true", help="no progress bar")
    demo.set_defaults(run=cmd_demo)

    board = sub.add_parser(
        "board-client", help="print a hall's calls as they happen (terminal board)"
    )
    board.add_argument("url", help="the server, e.g. http://127.0.0.1:8000")
    board.add_argument("--hall", type=int, required=True, help="hall id")
    board.add_argument(
        "--token", default=os.environ.get("ONEDOOR_BOARD_TOKEN"),
        help="a board device token of that hall (default: $ONEDOOR_BOARD_TOKEN)",
    )  # fmt: skip
    board.set_defaults(run=cmd_board_client)

    agent = sub.add_parser("printer-agent", help="print a kiosk's tickets on a local printer")
    agent.add_argument("--server", required=True, help="the server, e.g. http://10.0.0.5:8000")
    agent.add_argument(
        "--token", default=os.environ.get("ONEDOOR_PRINTER_TOKEN"),
        help="the printer's device token (default: $ONEDOOR_PRINTER_TOKEN, which keeps it "
        "out of the process list)",
    )  # fmt: skip
    agent.add_argument("--config", required=True, help="printer config TOML (see README)")
    agent.add_argument(
        "--state-dir", default="var/printer-agent", help="where printed job ids are kept"
    )
    agent.set_defaults(run=cmd_printer_agent)

    from queue_server.simulation.command import add_parser as add_simulate

    add_simulate(sub, cmd_simulate)

    admin = sub.add_parser("create-admin", help="create an admin account")
    admin.add_argument("--username", default="admin")
    admin.add_argument("--name", default="", help="display name")
    admin.add_argument("--password", help="default: ask, or generate and print one")
    admin.set_defaults(run=cmd_create_admin)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        k: getattr(args, k)
        for k in ("host", "port", "workers")
        if getattr(args, k, None) is not None
    }
    try:
        env = dict(os.environ)
        for key, value in overrides.items():
            # Worker processes read settings from the environment; pass the flags on.
            os.environ[f"ONEDOOR_{key.upper()}"] = str(value)
            env[f"ONEDOOR_{key.upper()}"] = str(value)
        settings = load_settings(env)
    except SettingsError as exc:
        print(f"onedoor: {exc}", file=sys.stderr)
        return 2
    try:
        return int(args.run(settings, args))
    except Exception as exc:  # a clean message for known refusals, a traceback otherwise
        from queue_server.service.errors import Conflict, Invalid, NotFound

        if isinstance(exc, Conflict | Invalid | NotFound):
            print(f"onedoor: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    raise SystemExit(main())
