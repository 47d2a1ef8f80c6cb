"""mlc connection and mlc secrets: endpoints and their encrypted credentials."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ops.cli.common import read_stdin_secret, require_tls


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
                secret["passphrase"] = read_stdin_secret("key passphrase")
        elif args.password_stdin:
            secret["password"] = read_stdin_secret("password")
        else:
            raise SystemExit("mlc: give --password-stdin or --key-file")
        kind = "stampli_sftp"
    elif args.transport == "graphql":
        require_tls(args, "url", "token_url")
        return cmd_connection_set_x3_graphql(args)
    else:
        require_tls(args, "url")
        if not (args.url and args.username):
            raise SystemExit("mlc: connection x3 needs --url and --username")
        conn_settings = {"url": args.url, "folder": args.folder, "username": args.username}
        if args.ca_bundle:
            conn_settings["ca_bundle"] = args.ca_bundle
        secret = {"password": read_stdin_secret("password")} if args.password_stdin else {}
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
    secret = {"client_secret": read_stdin_secret("client secret")}
    if oauth:
        secret["refresh_token"] = read_stdin_secret("refresh token")
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
    from ops import tables
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


def cmd_secrets_rotate(args: argparse.Namespace) -> int:
    from pipeline import connections, db

    with db.transaction() as cur:
        n = connections.rotate_all(cur)
    print(f"re-encrypted {n} secret(s) with the newest key")
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


def register(sub: Any) -> None:
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

    sec = sub.add_parser("secrets", help="encrypted secrets of the connections").add_subparsers(
        dest="sec_cmd", required=True)
    sec.add_parser("rotate", help="re-encrypt every secret with the newest key").set_defaults(
        func=cmd_secrets_rotate)
