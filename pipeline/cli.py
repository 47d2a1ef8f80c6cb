"""`mlc`: the operator's command line. Every command reads the same validated settings."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.config import ConfigError

Handler = Callable[[argparse.Namespace], int]


def _read_stdin_secret(what: str) -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise SystemExit(f"mlc: expected the {what} on standard input")
    return value


# -- handlers -------------------------------------------------------------------------------
def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from pipeline import migrate
    from pipeline.config import settings

    applied = migrate.upgrade(settings().database_url)
    print(f"applied: {', '.join(applied)}" if applied else "database is up to date")
    return 0


def cmd_connection_set(args: argparse.Namespace) -> int:
    from pipeline import connections, db

    if args.name == "stampli":
        conn_settings: dict[str, Any] = {
            "host": args.host, "port": args.port or 22, "username": args.username,
            "remote_dir": args.remote_dir, "host_key": args.host_key,
        }
        missing = [k for k in ("host", "username", "host_key") if not conn_settings[k]]
        if missing:
            raise SystemExit(f"mlc: connection stampli needs --{', --'.join(missing)}"
                             .replace("_", "-"))
        secret: dict[str, Any] = {}
        if args.key_file:
            secret["private_key"] = Path(args.key_file).read_text()
            if args.key_passphrase_stdin:
                secret["passphrase"] = _read_stdin_secret("key passphrase")
        elif args.password_stdin:
            secret["password"] = _read_stdin_secret("password")
        else:
            raise SystemExit("mlc: give --password-stdin or --key-file")
        kind = "stampli_sftp"
    elif args.transport == "graphql":
        return cmd_connection_set_x3_graphql(args)
    else:
        if not (args.url and args.username):
            raise SystemExit("mlc: connection x3 needs --url and --username")
        conn_settings = {"url": args.url, "folder": args.folder, "username": args.username}
        if args.ca_bundle:
            conn_settings["ca_bundle"] = args.ca_bundle
        secret = {"password": _read_stdin_secret("password")} if args.password_stdin else {}
        kind = f"x3_{args.transport}"
    with db.transaction() as cur:
        connections.save(cur, args.name, kind, conn_settings, secret)
    print(f"connection {args.name} saved ({kind}); secret encrypted")
    return 0


def cmd_connection_set_x3_graphql(args: argparse.Namespace) -> int:
    """Secrets come on standard input, one per line, in this order: the client secret, then
    (OAuth only) the refresh token from the onboarding authorisation."""
    from pipeline import connections, db
    from pipeline.x3 import token_store

    oauth = args.auth == "oauth"
    needed = {"url": args.url, "client-id": args.client_id}
    needed.update({"token-url": args.token_url} if oauth else
                  {"x3-user": args.x3_user, "audience": args.audience})
    missing = [f"--{k}" for k, v in needed.items() if not v]
    if not args.client_secret_stdin:
        missing.append("--client-secret-stdin")
    if oauth and not args.refresh_token_stdin:
        missing.append("--refresh-token-stdin")
    if missing:
        raise SystemExit(f"mlc: connection x3 --transport graphql --auth {args.auth} needs "
                         + ", ".join(missing))
    secret = {"client_secret": _read_stdin_secret("client secret")}
    if oauth:
        secret["refresh_token"] = _read_stdin_secret("refresh token")
    conn_settings: dict[str, Any] = {"url": args.url, "folder": args.folder, "auth": args.auth,
                                     "client_id": args.client_id}
    conn_settings.update({"token_url": args.token_url} if oauth else
                         {"x3_user": args.x3_user, "audience": args.audience})
    if args.ca_bundle:
        conn_settings["ca_bundle"] = args.ca_bundle
    with db.transaction() as cur:
        connections.save(cur, args.name, "x3_graphql", conn_settings, secret)
        token_store.forget(cur, args.name)  # an access token of the old grant must not linger
    print(f"connection {args.name} saved (x3_graphql, {args.auth}); secrets encrypted")
    return 0


def cmd_x3_check(args: argparse.Namespace) -> int:
    from pipeline import connections, db
    from pipeline.config import settings
    from pipeline.x3.connect import open_client
    from pipeline.x3.errors import X3Error

    try:
        with db.transaction() as cur:
            client = open_client(cur, args.name)
    except connections.ConnectionMissing as exc:
        raise SystemExit(f"mlc: {exc}") from None
    chart, probe = settings().x3_coa, "MLC-CHECK"  # a probe answers "not found": still a check
    dim_type, _, dim_value = (args.dimension or f"{settings().x3_dimension_type}=").partition("=")

    def authenticate() -> str:
        if not hasattr(client, "authenticate"):
            return "HTTP Basic, sent with every call below"
        client.authenticate()
        return "bearer token obtained"

    def found(what: str, given: str | None, exists: object) -> str:
        if given and not exists:
            raise LookupError(f"{what} {given} not found")
        return f"{what} {given} found" if given else "query answered"

    steps = [
        ("authenticate", authenticate),
        ("supplier", lambda: found("supplier", args.supplier,
                                   client.find_supplier_by_code(args.supplier or probe))),
        ("account", lambda: found(f"account {chart}", args.account,
                                  client.account_exists(chart, args.account or probe))),
        ("dimension", lambda: found(f"dimension {dim_type}", dim_value or None,
                                    client.dimension_exists(dim_type, dim_value or probe))),
    ]
    failed = 0
    for label, step in steps:
        try:
            print(f"ok      {label}: {step()}")
        except (X3Error, LookupError) as exc:
            failed += 1
            print(f"FAILED  {label}: {exc}")
    client.close()
    return 1 if failed else 0


def _add_x3_graphql_args(cset: argparse.ArgumentParser) -> None:
    g = cset.add_argument_group(
        "x3 --transport graphql", "secrets on standard input, one per line, in this order: "
        "client secret, then refresh token (oauth)")
    g.add_argument("--auth", choices=["oauth", "jwt"], default="oauth",
                   help="oauth: cloud refresh-token flow; jwt: on-premise connected application")
    g.add_argument("--client-id")
    g.add_argument("--client-secret-stdin", action="store_true")
    g.add_argument("--refresh-token-stdin", action="store_true")
    g.add_argument("--token-url", help="OAuth2 token endpoint (oauth)")
    g.add_argument("--x3-user", help="X3 user the JWT acts as (jwt)")
    g.add_argument("--audience", help="JWT aud claim (jwt)")


def _add_x3_commands(sub: Any) -> None:
    x3 = sub.add_parser("x3", help="Sage X3").add_subparsers(dest="x3_cmd", required=True)
    chk = x3.add_parser("check", help="authenticate, query a supplier, an account and a "
                        "dimension with the stored credentials; exit 1 if anything fails")
    chk.add_argument("--name", default="x3")
    chk.add_argument("--supplier", help="supplier code that must exist")
    chk.add_argument("--account", help="account (in MLC_X3_COA) that must exist")
    chk.add_argument("--dimension", metavar="TYPE=VALUE", help="dimension that must exist")
    chk.set_defaults(func=cmd_x3_check)


def cmd_connection_show(args: argparse.Namespace) -> int:
    from pipeline import connections, db

    with db.transaction() as cur:
        rows = connections.listing(cur)
    for row in rows:
        print(f"{row['name']}: {row['kind']} {json.dumps(row['settings'])}"
              f" secret={'stored (encrypted)' if row['has_secret'] else 'none'}")
    return 0


def cmd_connection_test(args: argparse.Namespace) -> int:
    from pipeline import audit, connections, db
    from pipeline.config import settings
    from pipeline.stampli import sftp

    with db.transaction() as cur:
        conn = connections.load(cur, args.name)
    if conn.kind != "stampli_sftp":
        raise SystemExit("mlc: `connection test` checks the Stampli SFTP export; "
                         "for X3 use `mlc x3 check`")
    directory = conn.settings.get("remote_dir", ".")
    patterns = settings().vendor_patterns + settings().invoice_patterns
    try:
        with sftp.open_sftp(conn) as client:
            files = sftp.list_files(client, directory, patterns)
            total = len(client.listdir(directory))
    except sftp.SftpError as exc:
        with db.transaction() as cur:
            audit.record(cur, "file_fetch", "error", connection=args.name, error=str(exc),
                         check="connection test")
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"connected to {conn.settings['host']}:{conn.settings.get('port', 22)} as "
          f"{conn.settings['username']}; host key verified")
    print(f"{directory}: {total} entries, {len(files)} matching export files")
    for f in files[:50]:
        print(f"  {f.name}  {f.size} bytes")
    return 0


def cmd_run_once(args: argparse.Namespace) -> int:
    from pipeline import db
    from pipeline.run_once import run_once
    from pipeline.x3.connect import open_client

    with db.transaction() as cur:
        client = open_client(cur)
    report = run_once(client)
    print(f"files fetched: {len(report.files)}")
    for invoice_id, outcome in sorted(report.outcomes.items()):
        print(f"  invoice {invoice_id}: {outcome}")
    return 0


def cmd_secrets_rotate(args: argparse.Namespace) -> int:
    from pipeline import connections, db

    with db.transaction() as cur:
        n = connections.rotate_all(cur)
    print(f"re-encrypted {n} secret(s) with the newest key")
    return 0


def cmd_mapping_import(args: argparse.Namespace) -> int:
    from pipeline import db, mapping

    kind = {"gl": "gl", "cost-centers": "cost_centers"}[args.kind]
    with db.transaction() as cur:
        n = mapping.import_csv(cur, kind, args.file)
    print(f"{args.kind}: {n} code(s) mapped from {args.file}")
    return 0


def cmd_mapping_list(args: argparse.Namespace) -> int:
    from pipeline import db

    with db.transaction() as cur:
        cur.execute("SELECT stampli_code, x3_account FROM gl_account_map ORDER BY 1")
        gl = cur.fetchall()
        cur.execute("SELECT stampli_code, dimension_type, dimension_value FROM cost_center_map"
                    " ORDER BY 1")
        cc = cur.fetchall()
    if args.json:
        print(json.dumps({"gl": gl, "cost_centers": cc}, indent=2))
        return 0
    print("GL accounts (unmapped codes pass through unchanged):")
    for r in gl:
        print(f"  {r['stampli_code']:<20} -> {r['x3_account']}")
    print("cost centers:")
    for r in cc:
        print(f"  {r['stampli_code']:<20} -> {r['dimension_type']}={r['dimension_value']}")
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    from workers import app

    result = app.send_task("mlc.fetch_exports")
    print(f"poll queued: task {result.id}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline import db, status

    with db.transaction() as cur:
        data = status.summary(cur)
    print(json.dumps(data, indent=2) if args.json else status.render(data))
    return 0


def cmd_failed(args: argparse.Namespace) -> int:
    from pipeline import db

    with db.transaction() as cur:
        cur.execute("SELECT id, stampli_vendor_id, invoice_number, status, attempts, last_error,"
                    " review_reason FROM invoices WHERE status IN ('failed', 'needs_review')"
                    " ORDER BY id")
        rows = cur.fetchall()
        cur.execute("SELECT r.source_file_id, f.path, r.line_numbers, r.field, r.reason"
                    " FROM parse_rejections r JOIN source_files f ON f.id = r.source_file_id"
                    " ORDER BY r.id")
        rejections = cur.fetchall()
    for r in rows:
        print(f"invoice {r['id']} {r['stampli_vendor_id']}/{r['invoice_number']} {r['status']}"
              f" attempts={r['attempts']}: {r['last_error'] or r['review_reason']}")
    for r in rejections:
        print(f"file {r['source_file_id']} {r['path']} lines {r['line_numbers']}: {r['reason']}")
    if not rows and not rejections:
        print("nothing failed")
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    from pipeline import audit, db

    with db.transaction() as cur:
        rows = audit.events(cur, invoice_id=args.invoice, file_id=args.file, limit=args.limit)
    for r in rows:
        print(f"{r['at']:%Y-%m-%d %H:%M:%S} {r['stage']:<14} {r['outcome']:<8}"
              f" file={r['source_file_id']} invoice={r['invoice_id']} task={r['task_id']}"
              f" {json.dumps(r['detail'], default=str)}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from workers import app

    kwargs = {"invoice_id": args.invoice, "file_id": args.file, "status": "failed"}
    result = app.send_task("mlc.replay", kwargs=kwargs)
    print(f"replay queued: task {result.id}")
    return 0


def cmd_sandbox_x3(args: argparse.Namespace) -> int:
    from sandbox import x3sim

    argv = ["--host", args.host, "--port", str(args.port)]
    if args.seed:
        argv += ["--seed", args.seed]
    return x3sim.main(argv)


def cmd_sandbox_sftp(args: argparse.Namespace) -> int:
    import signal
    import threading

    from sandbox.sftp import LocalSftp

    server = LocalSftp(args.dir, host=args.host, port=args.port, state_dir=args.state_dir)
    with server:
        print(f"SFTP export {server.export_dir} on {server.host}:{server.port}", flush=True)
        print(f"pinned host key: {server.host_key_line}", flush=True)
        print(f"client key: {server.client_key_path}", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from sandbox import demo

    return demo.main(keep=args.keep)


# -- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mlc", description="Stampli to Sage X3 connector")
    sub = p.add_subparsers(dest="command", required=True)

    dbp = sub.add_parser("db", help="database schema").add_subparsers(dest="db_cmd", required=True)
    dbp.add_parser("upgrade", help="apply pending migrations").set_defaults(func=cmd_db_upgrade)

    conn = sub.add_parser("connection", help="endpoints and their encrypted credentials")
    csub = conn.add_subparsers(dest="conn_cmd", required=True)
    cset = csub.add_parser("set", help="create or replace a connection")
    cset.add_argument("name", choices=["stampli", "x3"])
    cset.add_argument("--host")
    cset.add_argument("--port", type=int)
    cset.add_argument("--username")
    cset.add_argument("--remote-dir", default=".")
    cset.add_argument("--host-key", help="pinned key: 'ssh-ed25519 AAAA...'")
    cset.add_argument("--password-stdin", action="store_true")
    cset.add_argument("--key-file")
    cset.add_argument("--key-passphrase-stdin", action="store_true")
    cset.add_argument("--transport", choices=["rest", "graphql"], default="rest")
    cset.add_argument("--url")
    cset.add_argument("--folder", default="SEED")
    cset.add_argument("--ca-bundle")
    _add_x3_graphql_args(cset)
    cset.set_defaults(func=cmd_connection_set)
    csub.add_parser("show", help="list connections (never secrets)").set_defaults(
        func=cmd_connection_show)
    ctest = csub.add_parser("test", help="connect to the SFTP export and list it")
    ctest.add_argument("name", nargs="?", default="stampli")
    ctest.set_defaults(func=cmd_connection_test)

    _add_x3_commands(sub)

    sec = sub.add_parser("secrets").add_subparsers(dest="sec_cmd", required=True)
    sec.add_parser("rotate", help="re-encrypt every secret with the newest key").set_defaults(
        func=cmd_secrets_rotate)

    mp = sub.add_parser("mapping").add_subparsers(dest="map_cmd", required=True)
    mi = mp.add_parser("import", help="load a mapping CSV (gl: stampli_code,x3_account; "
                       "cost-centers: stampli_code,dimension_type,dimension_value)")
    mi.add_argument("kind", choices=["gl", "cost-centers"])
    mi.add_argument("file")
    mi.set_defaults(func=cmd_mapping_import)
    ml = mp.add_parser("list", help="show the mappings")
    ml.add_argument("--json", action="store_true")
    ml.set_defaults(func=cmd_mapping_list)

    sub.add_parser("poll", help="queue one fetch now").set_defaults(func=cmd_poll)
    sub.add_parser("run-once", help="poll and process in this process, without Celery"
                   ).set_defaults(func=cmd_run_once)
    st = sub.add_parser("status", help="files, invoices, vendors, last poll")
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=cmd_status)
    sub.add_parser("failed", help="failed invoices and parse rejections").set_defaults(
        func=cmd_failed)
    au = sub.add_parser("audit", help="the audit trail")
    au.add_argument("--invoice", type=int)
    au.add_argument("--file", type=int)
    au.add_argument("--limit", type=int, default=200)
    au.set_defaults(func=cmd_audit)
    rp = sub.add_parser("replay", help="re-enqueue failed invoices")
    rp.add_argument("--invoice", type=int)
    rp.add_argument("--file", type=int)
    rp.set_defaults(func=cmd_replay)

    sb = sub.add_parser("sandbox", help="local simulators").add_subparsers(
        dest="sb_cmd", required=True)
    x3 = sb.add_parser("x3", help="run the X3 simulator")
    x3.add_argument("--host", default="127.0.0.1")
    x3.add_argument("--port", type=int, default=8124)
    x3.add_argument("--seed")
    x3.set_defaults(func=cmd_sandbox_x3)
    sf = sb.add_parser("sftp", help="run a local SFTP export (OpenSSH sshd)")
    sf.add_argument("--host", default="127.0.0.1")
    sf.add_argument("--port", type=int, default=2222)
    sf.add_argument("--dir", required=True)
    sf.add_argument("--state-dir")
    sf.set_defaults(func=cmd_sandbox_sftp)

    demo = sub.add_parser("demo", help="run the whole pipeline on the sample export")
    demo.add_argument("--keep", action="store_true", help="keep the demo database")
    demo.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"mlc: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
