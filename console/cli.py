"""`mlc console`: serve the console locally, and manage its users.

    mlc console [--host 127.0.0.1] [--port 8000]
    mlc console user add NAME --role viewer|operator|admin [--password-stdin]
    mlc console user passwd NAME [--role ROLE] [--password-stdin]
    mlc console user disable NAME
    mlc console user list
    mlc console ping [--url http://127.0.0.1:8000]
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

ROLES = ("viewer", "operator", "admin")  # console.users.ROLES, without importing it here


def register(sub: Any) -> None:
    """The whole `console` command group (ops.cli.main.GROUPS)."""
    cp = sub.add_parser("console", help="the finance team's web console")
    cp.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    cp.add_argument("--port", type=int, default=8000, help="port to listen on (8000)")
    cp.set_defaults(func=cmd_serve)
    more = cp.add_subparsers(dest="console_cmd")
    ping = more.add_parser("ping", help="exit 0 when a running console answers (healthcheck)")
    ping.add_argument("--url", default="http://127.0.0.1:8000",
                      help="the console's base URL (http://127.0.0.1:8000)")
    ping.set_defaults(func=cmd_ping)
    users = more.add_parser("user", help="console users").add_subparsers(dest="user_cmd",
                                                                          required=True)
    for name, helptext in (("add", "add a user"), ("passwd", "set a user's password"),
                           ("disable", "disable a user (ends their sessions)"),
                           ("list", "list users")):
        p = users.add_parser(name, help=helptext)
        if name != "list":
            p.add_argument("name", help="the user's login name")
        if name in ("add", "passwd"):
            p.add_argument("--role", choices=ROLES, required=name == "add",
                           help="viewer reads; operator also replays and acknowledges; admin "
                                "also edits mappings and users" + ("" if name == "add" else
                                                                   " (default: unchanged)"))
            p.add_argument("--password-stdin", action="store_true",
                           help="read the password from the first line of stdin")
        p.set_defaults(func=cmd_user)


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"password for {args.name}: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("mlc: the passwords differ")
    return first


def cmd_user(args: argparse.Namespace) -> int:
    from console import users
    from console.passwords import WeakPassword
    from ops.tables import safe
    from pipeline import db

    by = f"{getpass.getuser()} (mlc)"
    try:
        with db.transaction() as cur:
            if args.user_cmd == "add":
                users.add(cur, args.name, args.role, _password(args), by=by)
            elif args.user_cmd == "passwd":
                users.set_password(cur, args.name, _password(args), by=by, role=args.role)
            elif args.user_cmd == "disable":
                users.disable(cur, args.name, by=by)
            else:
                for u in users.listing(cur):
                    state = "disabled" if u["disabled_at"] else "active"
                    print(safe(f"{u['name']:<24} {u['role']:<9} {state}"))
                return 0
    except (users.UserError, WeakPassword) as exc:
        print(safe(f"mlc: {exc}"), file=sys.stderr)
        return 1
    print(safe(f"user {args.name}: {args.user_cmd} done"))
    return 0


def cmd_ping(args: argparse.Namespace) -> int:
    import requests

    try:
        answer = requests.get(args.url.rstrip("/") + "/healthz", timeout=5,
                              allow_redirects=False)
    except requests.RequestException as exc:
        print(f"mlc: console unreachable: {type(exc).__name__}", file=sys.stderr)
        return 1
    ok = answer.status_code == 200
    print("console answers" if ok else f"console answered HTTP {answer.status_code}")
    return 0 if ok else 1


def cmd_serve(args: argparse.Namespace) -> int:
    from werkzeug.serving import make_server

    from console import create_app

    server = make_server(args.host, args.port, create_app(), threaded=True)
    print(f"console: http://{args.host}:{server.server_port}/ (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0
