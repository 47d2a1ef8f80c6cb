"""`mlc`: the operator's command line. Every command reads the same validated settings."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.cli_errors import OneLineParser, iso_date

Handler = Callable[[argparse.Namespace], int]
AUTH_TRIES = 3  # mlc x3 check: a busy X3 gets two more chances (1 s, then 2 s later)


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


def _require_tls(args: argparse.Namespace, *names: str) -> None:
    """X3 credentials never travel in clear: https, or plain http on loopback (the sandbox);
    and never in a URL (a URL is stored in the clear, shown and logged)."""
    from urllib.parse import urlsplit

    from pipeline.secrets import mask
    from pipeline.x3.authorize import _is_loopback
    from pipeline.x3.errors import X3ConfigError
    from pipeline.x3.transport import plain_url

    for name in names:
        url = getattr(args, name, None)
        if not url:
            continue
        option = f"--{name.replace('_', '-')}"
        try:
            plain_url(url, f"the URL of {option}")
        except X3ConfigError as exc:
            raise SystemExit(f"mlc: {exc}") from None
        url = mask(url)
        parts = urlsplit(url)
        if parts.scheme == "https" or (parts.scheme == "http" and
                                       _is_loopback(parts.hostname or "")):
            continue
        if parts.scheme == "http" and getattr(args, "allow_plain_http", False):
            continue
        raise SystemExit(f"mlc: {option} must be an https URL ({url!r}): "
                         "credentials would travel in clear (--allow-plain-http to insist)")


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
        _require_tls(args, "url", "token_url")
        return cmd_connection_set_x3_graphql(args)
    else:
        _require_tls(args, "url")
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
    from pipeline.x3.errors import X3Error, X3Unavailable

    try:
        with db.transaction() as cur:
            client = open_client(cur, args.name)
    except (connections.ConnectionMissing, X3Error) as exc:  # X3ConfigError: a stored URL
        raise SystemExit(f"mlc: {exc}") from None
    chart, probe = settings().x3_coa, "MLC-CHECK"  # a probe answers "not found": still a check
    dim_type, _, dim_value = (args.dimension or f"{settings().x3_dimension_type}=").partition("=")

    def authenticate() -> str:
        """A fresh authentication and one authenticated call, now: never a cached token. X3
        busy (503, or not answering) is retried briefly, as a read is."""
        for attempt in range(1, AUTH_TRIES + 1):
            try:
                how = "HTTP Basic"
                if hasattr(client, "authenticate"):
                    client.authenticate(fresh=True)
                    how = "new bearer token obtained"
                client.find_supplier_by_code(probe)
                return f"{how}; X3 answered an authenticated call"
            except X3Unavailable:
                if attempt == AUTH_TRIES:
                    raise
                time.sleep(attempt)
        raise AssertionError("unreachable")

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


def cmd_x3_authorize(args: argparse.Namespace) -> int:
    """OAuth2 onboarding: secrets on standard input, one per line: the client secret, then the
    code when `--code -`."""
    from pipeline import db
    from pipeline.x3 import authorize as oauth
    from pipeline.x3.errors import X3Error

    _require_tls(args, "url", "token_url", "authorize_url")
    if not args.client_secret_stdin:
        raise SystemExit("mlc: x3 authorize needs --client-secret-stdin")
    if args.code is None and not args.authorize_url:
        raise SystemExit("mlc: x3 authorize needs --authorize-url (or --code from a callback)")
    if args.endpoint and args.code is None:
        raise SystemExit("mlc: --endpoint goes with --code (a callback names its own)")
    client_secret = _read_stdin_secret("client secret")
    code = _read_stdin_secret("authorisation code") if args.code == "-" else args.code
    onb = oauth.Onboarding(
        url=args.url, folder=args.folder, client_id=args.client_id, token_url=args.token_url,
        redirect_uri=args.redirect_uri, authorize_url=args.authorize_url, scope=args.scope,
        customer=args.customer, ca_bundle=args.ca_bundle, name=args.name)
    with db.transaction() as cur:  # the database answers before a person consents for nothing
        cur.execute("SELECT 1")

    def announce(url: str) -> None:
        print("Open this URL as an X3 user allowed to approve third-party applications:")
        print(url, flush=True)
        print(f"waiting up to {args.timeout:g} s for the callback on {args.redirect_uri} ...",
              file=sys.stderr, flush=True)

    try:
        done = oauth.authorize(onb, client_secret, transaction=db.transaction,
                               announce=announce, code=code, endpoint=args.endpoint,
                               timeout=args.timeout)
    except X3Error as exc:
        print(f"mlc: x3 authorize: {exc}", file=sys.stderr)
        return 1
    where = f"regional endpoint {done.base_url}" if done.regional else done.base_url
    print(f"connection {args.name} authorised (x3_graphql, oauth): calls go to {where}; "
          "tokens stored encrypted")
    return 0


def _add_x3_graphql_args(cset: argparse.ArgumentParser) -> None:
    g = cset.add_argument_group(
        "x3 --transport graphql", "secrets on standard input, one per line, in this order: "
        "client secret, then refresh token (oauth)")
    g.add_argument("--auth", choices=["oauth", "jwt"], default="oauth",
                   help="oauth: cloud refresh-token flow; jwt: on-premise connected application")
    g.add_argument("--client-id", help="the application's client id registered in X3")
    g.add_argument("--client-secret-stdin", action="store_true",
                   help="read the client secret from the first line of standard input")
    g.add_argument("--refresh-token-stdin", action="store_true",
                   help="read the refresh token from the next line of standard input (oauth)")
    g.add_argument("--token-url", help="OAuth2 token endpoint (oauth)")
    g.add_argument("--x3-user", help="X3 user the JWT acts as (jwt)")
    g.add_argument("--audience", help="JWT aud claim (jwt)")


def _add_x3_commands(sub: Any) -> None:
    x3 = sub.add_parser("x3", help="Sage X3").add_subparsers(dest="x3_cmd", required=True)
    chk = x3.add_parser("check", help="authenticate afresh (a new token and one call, never a "
                        "cached token), query a supplier, an account and a "
                        "dimension with the stored credentials; exit 1 if anything fails")
    chk.add_argument("--name", default="x3", help="the X3 connection to check (default x3)")
    chk.add_argument("--supplier", help="supplier code that must exist")
    chk.add_argument("--account", help="account (in MLC_X3_COA) that must exist")
    chk.add_argument("--dimension", metavar="TYPE=VALUE", help="dimension that must exist")
    chk.set_defaults(func=cmd_x3_check)
    au = x3.add_parser("authorize", help="OAuth2 onboarding of X3 cloud: print the "
                       "authorisation URL, take the callback on the loopback redirect URI (or "
                       "--code), store the tokens encrypted")
    au.add_argument("--name", default="x3", help="the connection to store (default x3)")
    au.add_argument("--url", required=True, help="X3 URL (GraphQL at URL/xtrem/api)")
    au.add_argument("--folder", default="SEED", help="X3 folder (endpoint), default SEED")
    au.add_argument("--client-id", required=True,
                    help="the application's client id registered with Sage")
    au.add_argument("--client-secret-stdin", action="store_true",
                    help="read the client secret from the first line of standard input "
                         "(required)")
    au.add_argument("--token-url", required=True, help="OAuth2 token endpoint")
    au.add_argument("--authorize-url", help="the authorisation page (not needed with --code)")
    au.add_argument("--redirect-uri", required=True,
                    help="registered redirect URI; listened on: http://127.0.0.1:PORT/PATH")
    au.add_argument("--scope", default="api.graphQL",
                    help="OAuth2 scope to ask for (default api.graphQL)")
    au.add_argument("--customer", help="X3 customer URL in the request (default: --url)")
    au.add_argument("--code", help="the code from a callback received elsewhere (no "
                    "listener); '-' reads it from standard input after the client secret")
    au.add_argument("--endpoint", help="with --code: the regional endpoint the callback named")
    au.add_argument("--timeout", type=float, default=300.0,
                    help="seconds to wait for the callback (default 300)")
    au.add_argument("--ca-bundle", help="CA certificates (PEM) to trust for X3 and the token "
                    "endpoint (a private CA)")
    au.set_defaults(func=cmd_x3_authorize)


def cmd_connection_show(args: argparse.Namespace) -> int:
    from pipeline import connections, db
    from pipeline.secrets import mask

    with db.transaction() as cur:
        rows = connections.listing(cur)
    for row in rows:
        # mask: a URL stored with user:password@ before such URLs were refused.
        print(f"{row['name']}: {row['kind']} {mask(json.dumps(row['settings']))}"
              f" secret={'stored (encrypted)' if row['has_secret'] else 'none'}")
    return 0


def cmd_connection_test(args: argparse.Namespace) -> int:
    from pipeline import audit, connections, db, tables
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
            total = len(sftp.names_in(client, directory))
    except sftp.SftpError as exc:
        with db.transaction() as cur:
            audit.record(cur, "file_fetch", "error", connection=args.name, error=str(exc),
                         check="connection test")
        print(f"FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"connected to {conn.settings['host']}:{conn.settings.get('port', 22)} as "
          f"{conn.settings['username']}; host key verified")
    print(f"{tables.safe(directory)}: {total} entries, {len(files)} matching export files")
    for f in files[:50]:
        print(f"  {tables.safe(f.name)}  {f.size} bytes")
    return 0


def cmd_run_once(args: argparse.Namespace) -> int:
    from pipeline import db
    from pipeline.run_once import run_once
    from pipeline.x3.connect import open_client

    with db.transaction() as cur:
        client = open_client(cur)
    from collections import Counter

    from pipeline.progress import Progress
    from pipeline.status import render_waiting
    from pipeline.tables import safe

    with Progress("run-once") as progress:
        report = run_once(client, progress=progress)
    if report.locked_out:
        print("another poll is running: nothing fetched by this one")
    print(f"files fetched: {len(report.files)}")
    for invoice_id, outcome in sorted(report.outcomes.items()):
        print(f"  invoice {invoice_id}: {outcome}")
    counts = Counter(report.outcomes.values())
    print(f"invoices: {len(report.outcomes)}"
          + "".join(f", {n} {state}" for state, n in sorted(counts.items())))
    for line in render_waiting(report.waiting_files):
        print(safe(line))
    if report.poll_error:  # a refused host key, refused credentials, an unreachable server
        print(f"mlc: run-once: the export could not be polled: {safe(report.poll_error)}",
              file=sys.stderr)
        return 1
    return 0


def cmd_secrets_rotate(args: argparse.Namespace) -> int:
    from pipeline import connections, db

    with db.transaction() as cur:
        n = connections.rotate_all(cur)
    print(f"re-encrypted {n} secret(s) with the newest key")
    return 0


def cmd_mapping_import(args: argparse.Namespace) -> int:
    from pipeline import db, mapping

    kind = {"gl": "gl", "cost-centers": "cost_centers", "dimension": "dimension",
            "route": "route"}[args.kind]
    if kind == "dimension":
        if len(args.args) != 2:
            raise SystemExit("mlc: mapping import dimension needs TYPE FILE.csv")
        dim_type, path = args.args
    elif len(args.args) != 1:
        raise SystemExit(f"mlc: mapping import {args.kind} needs FILE.csv")
    else:
        dim_type, path = None, args.args[0]
    from pipeline.progress import Progress

    with Progress(f"mapping import {args.kind}") as progress, db.transaction() as cur:
        n = mapping.import_csv(cur, kind, path, dimension_type=dim_type,
                               on_row=lambda done, total: progress.count(done, total, "rows"))
    print(f"{args.kind}{' ' + dim_type if dim_type else ''}: {n} row(s) mapped from {path}")
    return 0


def cmd_mapping_list(args: argparse.Namespace) -> int:
    from pipeline import db

    with db.transaction() as cur:
        cur.execute("SELECT stampli_code, x3_account FROM gl_account_map ORDER BY 1")
        gl = cur.fetchall()
        cur.execute("SELECT stampli_code, dimension_type, dimension_value FROM cost_center_map"
                    " ORDER BY 1")
        cc = cur.fetchall()
        cur.execute("SELECT dimension_type, stampli_code, dimension_value FROM dimension_map"
                    " ORDER BY 1, 2")
        dims = cur.fetchall()
        cur.execute("SELECT location, company, site FROM entity_routes ORDER BY 1")
        routes = cur.fetchall()
    if args.json:
        print(json.dumps({"gl": gl, "cost_centers": cc, "dimensions": dims, "routes": routes},
                         indent=2))
        return 0
    from pipeline.tables import safe

    print("GL accounts (unmapped codes pass through unchanged):")
    for r in gl:
        print(safe(f"  {r['stampli_code']:<20} -> {r['x3_account']}"))
    print("cost centers:")
    for r in cc:
        print(safe(f"  {r['stampli_code']:<20} -> {r['dimension_type']}={r['dimension_value']}"))
    print("other dimensions (unmapped values pass through):")
    for r in dims:
        print(safe(f"  {r['dimension_type']} {r['stampli_code']:<17} -> {r['dimension_value']}"))
    print("routes (location -> company/site; no location: the default route):")
    for r in routes:
        print(safe(f"  {r['location']:<20} -> {r['company']}/{r['site']}"))
    return 0


def cmd_poll(args: argparse.Namespace) -> int:
    from workers.send import send

    print(f"poll queued: task {send('mlc.fetch_exports')}")
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from pipeline import db, status, tables
    from pipeline.config import settings

    with db.transaction() as cur:
        data = status.summary(cur, poll_interval=settings().poll_interval,
                              broker_url=settings().broker_url)
    text = status.render(data)  # holds an invoice number and vendor id: escaped per line
    tables.emit(tables.to_json(data) if args.json else
                "\n".join(map(tables.safe, text.split("\n"))))
    return 0


FAILED_COLUMNS = ("vendor_id", "invoice_number", "status", "attempts", "last_try", "reason")
REJECTION_COLUMNS = ("file", "lines", "vendor_id", "invoice_number", "field", "reason")


def cmd_failed(args: argparse.Namespace) -> int:
    from pipeline import db, reports, tables

    with db.transaction() as cur:
        invoices, rejected = reports.failed(cur), reports.rejections(cur)
    if args.json:
        tables.emit(tables.to_json({"invoices": invoices, "rejected_rows": rejected}))
        return 0
    parts = []
    if invoices:
        parts.append("Invoices failed or needing review:\n"
                     + tables.table(invoices, FAILED_COLUMNS))
    if rejected:
        parts.append("Rows rejected at parse:\n" + tables.table(rejected, REJECTION_COLUMNS))
    tables.emit("\n\n".join(parts) if parts else "nothing failed")
    return 0


TRAIL_COLUMNS = ("at", "stage", "outcome", "task_id", "attempt", "summary")
CALL_COLUMNS = ("started_at", "call", "try", "duration_ms", "outcome", "http_status", "error")


def cmd_audit(args: argparse.Namespace) -> int:
    from pipeline import db, reports, tables
    from pipeline.x3 import attempts

    with db.transaction() as cur:
        if args.what == "invoice":
            if len(args.key) != 2:
                raise SystemExit("mlc: audit invoice needs VENDOR_ID INVOICE_NUMBER")
            inv = reports.find_invoice(cur, *args.key)
            if inv is None:
                print(tables.safe(f"no invoice {args.key[1]} of vendor {args.key[0]}"),
                      file=sys.stderr)
                return 1
            events = reports.trail(cur, invoice_id=inv["id"])
            calls = attempts.for_invoice(cur, inv["id"])
            title = (f"invoice {inv['payload']['invoice_number']} of vendor "
                     f"{inv['payload']['vendor_id']}: {inv['status']}"
                     + (f" as {inv['x3_document_number']}" if inv["x3_document_number"] else ""))
        else:
            files = reports.find_files(cur, args.key[0])
            if not files:
                print(tables.safe(f"no file named {args.key[0]}"), file=sys.stderr)
                return 1
            events = reports.trail(cur, file_ids=[f["id"] for f in files])
            calls = []
            title = "; ".join(f"{f['path']}: {f['status']}" for f in files)
    if args.json:
        tables.emit(tables.to_json({"subject": title, "events": events, "x3_calls": calls}))
    else:
        text = tables.safe(title) + "\n" + tables.table(events, TRAIL_COLUMNS)
        if calls:
            text += "\n\nX3 calls\n" + tables.table(calls, CALL_COLUMNS)
        tables.emit(text)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pipeline import db, reports, tables

    since = args.since
    with db.transaction() as cur:
        rows = reports.reconciliation(cur, since)
    if args.format == "json":
        tables.emit(tables.to_json(rows))
    elif args.format == "csv":
        sys.stdout.write(tables.to_csv(rows, reports.REPORT_COLUMNS))
    else:
        from pipeline import report_view

        tables.emit(report_view.render(rows, reports.REPORT_COLUMNS, wide=args.wide,
                                       since=since))
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    from pipeline import replay as replay_mod
    from pipeline.run_once import CLI_CTX
    from pipeline.tables import safe

    vendor, number = args.invoice if args.invoice else (None, None)
    sel = replay_mod.Selection(invoice_id=args.id, vendor_id=vendor, invoice_number=number,
                               failed=args.failed, file=args.file,
                               since=args.since)
    from pipeline.config import settings
    from pipeline.progress import Progress
    from workers.send import broker_ping, send_many

    if not args.dry_run:
        broker_ping(settings().broker_url)  # Redis down: say so before any row is reset
    try:
        chosen = replay_mod.select_for_replay(CLI_CTX, sel, reason=args.reason,
                                              dry_run=args.dry_run)
    except replay_mod.ReplayRefused as exc:
        print(safe(f"mlc: replay refused: {exc}"), file=sys.stderr)
        return 1
    if not args.dry_run and chosen:
        with Progress("replay: enqueued") as progress:
            send_many("mlc.process_invoice", [[row["id"]] for row in chosen],
                      lambda done: progress.count(done, len(chosen), "invoices"))
    verb = "would replay" if args.dry_run else "replaying"
    print(safe(f"{verb} {len(chosen)} invoice(s): {sel.describe()}"))
    for row in chosen:
        print(safe(f"  {row['vendor_id']} {row['invoice_number']} ({row['status']}): "
                   f"{row['last_error'] or ''}"))
    return 0


def cmd_vendor_link(args: argparse.Namespace) -> int:
    import getpass

    from pipeline import vendors
    from pipeline.run_once import CLI_CTX

    released = vendors.link_by_hand(CLI_CTX, args.vendor_id, args.code.strip().upper(),
                                    by=getpass.getuser(), reason=args.reason)
    if released:
        from workers import app

        for invoice_id in released:
            app.send_task("mlc.process_invoice", args=[invoice_id])
    print(f"vendor {args.vendor_id} linked to X3 supplier {args.code.strip().upper()};"
          f" {len(released)} invoice(s) held for review re-queued")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    from pipeline import health, tables
    from pipeline.config import settings

    settings()  # invalid settings are one line and exit 2, not five DOWN checks
    names = health.LOCAL if args.local else tuple(health.CHECKS)
    results = health.run(names)
    if args.beat_schedule:
        results.append(health.beat_schedule(args.beat_schedule))
    if args.json:
        print(tables.to_json([r.__dict__ for r in results]))
    else:
        for r in results:
            print(f"{'ok  ' if r.ok else 'DOWN'} {r.name:<10} {r.detail}")
    down = [r.name for r in results if not r.ok]
    if down:
        print(f"mlc: down: {', '.join(down)}", file=sys.stderr)
        return 1
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    from pipeline import metrics

    if args.serve:
        print(f"metrics on http://{args.host}:{args.port}/metrics", flush=True)
        metrics.serve(args.port, args.host)
        return 0
    sys.stdout.write(metrics.exposition().decode())
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

    return demo.main(keep=args.keep, console=args.console)


# -- parser ---------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="mlc", description="Stampli to Sage X3 connector")
    sub = p.add_subparsers(dest="command", required=True)

    dbp = sub.add_parser("db", help="database schema").add_subparsers(dest="db_cmd", required=True)
    dbp.add_parser("upgrade", help="apply pending migrations").set_defaults(func=cmd_db_upgrade)

    conn = sub.add_parser("connection", help="endpoints and their encrypted credentials")
    csub = conn.add_subparsers(dest="conn_cmd", required=True)
    cset = csub.add_parser("set", help="create or replace a connection")
    cset.add_argument("name", choices=["stampli", "x3"],
                      help="stampli: the SFTP export; x3: the Sage X3 API")
    cset.add_argument("--host", help="stampli: SFTP host name or address")
    cset.add_argument("--port", type=int, help="stampli: SFTP port (default 22)")
    cset.add_argument("--username", help="stampli: SFTP user; x3 (rest): X3 user")
    cset.add_argument("--remote-dir", default=".",
                      help="stampli: the export directory on the server (default: login dir)")
    cset.add_argument("--host-key", help="stampli: the server's pinned public key, "
                      "'ssh-ed25519 AAAA...' (a changed key is refused)")
    cset.add_argument("--password-stdin", action="store_true",
                      help="read the password (SFTP, or X3 rest) from standard input")
    cset.add_argument("--key-file", help="stampli: private key file for SFTP key login "
                      "(stored encrypted; the file is read once)")
    cset.add_argument("--key-passphrase-stdin", action="store_true",
                      help="stampli: read the key's passphrase from standard input")
    cset.add_argument("--transport", choices=["rest", "graphql"], default="rest",
                      help="x3: rest (api1, HTTP Basic) or graphql (OAuth2 or JWT)")
    cset.add_argument("--url", help="x3: the X3 base URL (https)")
    cset.add_argument("--allow-plain-http", action="store_true",
                      help="accept an http:// X3 URL off loopback (credentials in clear)")
    cset.add_argument("--folder", default="SEED", help="x3: X3 folder (endpoint), default SEED")
    cset.add_argument("--ca-bundle", help="x3: CA certificates (PEM) to trust (a private CA)")
    _add_x3_graphql_args(cset)
    cset.set_defaults(func=cmd_connection_set)
    csub.add_parser("show", help="list connections (never secrets)").set_defaults(
        func=cmd_connection_show)
    ctest = csub.add_parser("test", help="connect to the SFTP export and list it")
    ctest.add_argument("name", nargs="?", default="stampli",
                       help="the SFTP connection to test (default stampli)")
    ctest.set_defaults(func=cmd_connection_test)

    _add_x3_commands(sub)

    sec = sub.add_parser("secrets", help="encrypted secrets of the connections").add_subparsers(
        dest="sec_cmd", required=True)
    sec.add_parser("rotate", help="re-encrypt every secret with the newest key").set_defaults(
        func=cmd_secrets_rotate)

    mp = sub.add_parser("mapping", help="Stampli codes to X3 accounts, dimensions and "
                        "company/site routes").add_subparsers(dest="map_cmd", required=True)
    mi = mp.add_parser("import", help="load a mapping CSV (gl: stampli_code,x3_account; "
                       "cost-centers: stampli_code,dimension_type,dimension_value)")
    mi.add_argument("kind", choices=["gl", "cost-centers", "dimension", "route"],
                    help="which mapping the file holds")
    mi.add_argument("args", nargs="+", metavar="[TYPE] FILE",
                    help="dimension: TYPE FILE (stampli_code,dimension_value); "
                         "route: FILE (location,company,site)")
    mi.set_defaults(func=cmd_mapping_import)
    ml = mp.add_parser("list", help="show the mappings")
    ml.add_argument("--json", action="store_true", help="JSON instead of text")
    ml.set_defaults(func=cmd_mapping_list)

    sub.add_parser("poll", help="queue one fetch now").set_defaults(func=cmd_poll)
    sub.add_parser("run-once", help="poll and process in this process, without Celery"
                   ).set_defaults(func=cmd_run_once)
    st = sub.add_parser("status", help="files, invoices, vendors, last poll")
    st.add_argument("--json", action="store_true", help="JSON instead of text")
    st.set_defaults(func=cmd_status)
    fl = sub.add_parser("failed", help="failed / needs-review invoices and rejected rows")
    fl.add_argument("--json", action="store_true", help="JSON instead of tables")
    fl.set_defaults(func=cmd_failed)
    au = sub.add_parser("audit", help="the chronological trail of an invoice or a file")
    au.add_argument("what", choices=["invoice", "file"], help="an invoice or a file")
    au.add_argument("key", nargs="+", help="VENDOR_ID INVOICE_NUMBER, or a file NAME")
    au.add_argument("--json", action="store_true", help="JSON instead of tables")
    au.set_defaults(func=cmd_audit)
    rep = sub.add_parser("report", help="reconciliation per file: received, posted, failed")
    rep.add_argument("--since", required=True, type=iso_date,
                     help="files fetched on or after this day, YYYY-MM-DD")
    rep.add_argument("--format", choices=["table", "csv", "json"], default="table",
                     help="table (default, for people), csv or json (every column)")
    rep.add_argument("--wide", action="store_true",
                     help="table: every column and full file paths (the default fits 100 "
                          "columns)")
    rep.set_defaults(func=cmd_report)
    rp = sub.add_parser("replay", help="re-enqueue failed invoices from what Postgres holds")
    target = rp.add_mutually_exclusive_group(required=True)
    target.add_argument("--invoice", nargs=2, metavar=("VENDOR_ID", "INVOICE_NUMBER"),
                        help="one invoice, by Stampli vendor id and invoice number")
    target.add_argument("--id", type=int, help="the ledger id of one invoice")
    target.add_argument("--failed", action="store_true",
                        help="every failed invoice (not those needing review)")
    target.add_argument("--file", metavar="NAME",
                        help="the unfinished invoices of one export file")
    rp.add_argument("--since", type=iso_date,
                    help="with --failed: failed on or after YYYY-MM-DD")
    rp.add_argument("--reason", help="why, for the audit trail")
    rp.add_argument("--dry-run", action="store_true",
                    help="list what would be replayed; change nothing")
    rp.set_defaults(func=cmd_replay)

    vp = sub.add_parser("vendor", help="Stampli vendors and their X3 suppliers").add_subparsers(
        dest="vendor_cmd", required=True)
    vl = vp.add_parser("link", help="link a vendor to an X3 supplier by hand (e.g. after two"
                       " suppliers matched it) and re-queue its invoices held for review")
    vl.add_argument("vendor_id", help="the Stampli vendor id, as in the export")
    vl.add_argument("code", help="the X3 supplier code")
    vl.add_argument("--reason", help="why, for the audit trail")
    vl.set_defaults(func=cmd_vendor_link)

    hp = sub.add_parser("health", help="check Postgres, Redis, migrations, SFTP and X3")
    hp.add_argument("--local", action="store_true",
                    help="only what this container needs: Postgres, migrations, Redis")
    hp.add_argument("--json", action="store_true", help="JSON instead of text")
    hp.add_argument("--beat-schedule", metavar="PATH",
                    help="also check that beat rewrote its schedule file (celery beat "
                         "--schedule=PATH) within two poll intervals: beat's healthcheck")
    hp.set_defaults(func=cmd_health)

    mt = sub.add_parser("metrics", help="Prometheus metrics of files and invoices")
    mt.add_argument("--serve", action="store_true", help="serve /metrics instead of printing")
    mt.add_argument("--host", default="127.0.0.1",
                    help="with --serve: address to listen on (default 127.0.0.1)")
    mt.add_argument("--port", type=int, default=9808,
                    help="with --serve: port to listen on (default 9808)")
    mt.set_defaults(func=cmd_metrics)

    sb = sub.add_parser("sandbox", help="local simulators").add_subparsers(
        dest="sb_cmd", required=True)
    x3 = sb.add_parser("x3", help="run the X3 simulator")
    x3.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    x3.add_argument("--port", type=int, default=8124, help="port to listen on (8124)")
    x3.add_argument("--seed", metavar="FILE.json",
                    help="master data: suppliers, accounts, dimensions (default: demo seed)")
    x3.set_defaults(func=cmd_sandbox_x3)
    sf = sb.add_parser("sftp", help="run a local SFTP export (OpenSSH sshd)")
    sf.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    sf.add_argument("--port", type=int, default=2222, help="port to listen on (2222)")
    sf.add_argument("--dir", required=True, help="the export directory to serve")
    sf.add_argument("--state-dir", help="where sshd keeps its keys and config; keep it across "
                    "restarts so the pinned host key stays the same (default: a temporary dir)")
    sf.set_defaults(func=cmd_sandbox_sftp)

    demo = sub.add_parser("demo", help="run the whole pipeline on the sample export")
    demo.add_argument("--keep", action="store_true",
                      help="keep the work directory (logs of the simulator, worker and beat, "
                           "the SFTP export, sshd state) instead of removing it; the database "
                           "mlc_demo is always left for inspection (the next demo recreates it)")
    demo.add_argument("--console", action="store_true",
                      help="leave the stack and the web console running until Ctrl-C")
    demo.set_defaults(func=cmd_demo)
    from console.cli import add_commands as add_console_commands  # the `console` group

    add_console_commands(sub)
    return p


def _configure_logging() -> None:
    """The workers' logging, masking included: a command that logs (run-once, replay ...) or
    dies with a traceback never prints a secret. Warnings and up unless MLC_LOG_LEVEL says
    DEBUG; text unless MLC_LOG_FORMAT says json."""
    import os
    import traceback

    from pipeline import logs

    level = "DEBUG" if os.environ.get("MLC_LOG_LEVEL") == "DEBUG" else "WARNING"
    logs.configure(level, os.environ.get("MLC_LOG_FORMAT") or "text", keep_handlers=True)

    def excepthook(kind: type[BaseException], exc: BaseException, tb: Any) -> None:
        sys.stderr.write(logs.mask("".join(traceback.format_exception(kind, exc, tb))))

    sys.excepthook = excepthook


def main(argv: list[str] | None = None) -> int:
    from pipeline import cli_errors

    cli_errors.fail_fast_defaults()
    _configure_logging()
    args = build_parser().parse_args(argv)
    return cli_errors.run(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
