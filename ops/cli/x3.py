"""mlc x3: check the stored X3 credentials, and the OAuth2 onboarding of X3 cloud."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from ops.cli.common import read_stdin_secret, require_tls

AUTH_TRIES = 3  # mlc x3 check: a busy X3 gets two more chances (1 s, then 2 s later)


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

    require_tls(args, "url", "token_url", "authorize_url")
    if not args.client_secret_stdin:
        raise SystemExit("mlc: x3 authorize needs --client-secret-stdin")
    if args.code is None and not args.authorize_url:
        raise SystemExit("mlc: x3 authorize needs --authorize-url (or --code from a callback)")
    if args.endpoint and args.code is None:
        raise SystemExit("mlc: --endpoint goes with --code (a callback names its own)")
    client_secret = read_stdin_secret("client secret")
    code = read_stdin_secret("authorisation code") if args.code == "-" else args.code
    onb = oauth.Onboarding(
        url=args.url, folder=args.folder, client_id=args.client_id, token_url=args.token_url,
        redirect_uri=args.redirect_uri, authorize_url=args.authorize_url, scope=args.scope,
        customer=args.customer, ca_bundle=args.ca_bundle, name=args.name)
    db.ping()  # the database answers before a person consents for nothing

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


def register(sub: Any) -> None:
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
