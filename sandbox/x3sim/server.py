"""The simulator's HTTP server: routes each request to api1, GraphQL, OAuth or the /_sim test
controls, answers JSON, and holds the entry points (`make_server`, `main`).
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import sys
import traceback
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import SplitResult, parse_qs, urlsplit

from sandbox.x3sim import graphql as gql
from sandbox.x3sim.api1 import Api1, ApiError, DropConnection, diagnoses, parse_json
from sandbox.x3sim.faults import RequestTicket
from sandbox.x3sim.oauth import REGIONS, OAuthState, consent
from sandbox.x3sim.state import (
    DEFAULT_COA,
    DEFAULT_INVOICE_CLASS,
    SUPPLIER_NUMBERINGS,
    X3State,
    normalise_seed,
)

DEFAULT_FOLDER = "SEED"


class X3Server(ThreadingHTTPServer):
    """The listening server; request handlers reach the state and settings through it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        state: X3State,
        *,
        username: str,
        password: str,
        folder: str,
        verbose: bool = False,
        graphql_invoice_package: str = "x3Accounting",
        graphql_invoice_node: str = "supplierBpInvoice",
    ) -> None:
        self.state = state
        self.folder = folder
        self.verbose = verbose
        self.api1 = Api1(state, username=username, password=password, folder=folder)
        self.graphql_schema = gql.schema(graphql_invoice_package, graphql_invoice_node)
        super().__init__(address, X3Handler)


_Route = Callable[["X3Handler", str, SplitResult, bytes], None]


class X3Handler(BaseHTTPRequestHandler):
    server: X3Server
    protocol_version = "HTTP/1.1"  # keep-alive, as a requests.Session expects
    server_version = "X3Simulator/1.0"
    timeout = 60  # idle keep-alive connections do not hold a thread forever
    # Headers and body go out in two writes: with Nagle on, the body waits for the client's
    # delayed ACK (40 ms on Linux), so every call looked 40 ms slower than the latency asked.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.region: str | None = None
        try:
            body = self._read_body()
            head, _, rest = url.path.lstrip("/").partition("/")
            if head in REGIONS and rest:
                # A regional endpoint: the same API under /{region}; what it serves is routed
                # by the path after the prefix, and the tokens it issues are bound to it.
                self.server.state.count_regional(url.path)
                self.region, url = head, url._replace(path="/" + rest)
                if url.path not in ("/xtrem/api", "/oauth/token"):
                    raise ApiError(404, f"No regional resource at {self.path}")
            self._route(url.path)(self, method, url, body)
        except ApiError as exc:
            self._send_json(exc.status, diagnoses(exc.messages), exc.headers)
        except DropConnection:
            self._hang_up()
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout) while a slow commit went on: nobody to answer.
            self.close_connection = True
        except Exception as exc:  # a simulator bug: say so instead of killing the connection
            traceback.print_exc(file=sys.stderr)
            self._send_json(500, diagnoses([f"simulator error: {exc!r}"]))

    @staticmethod
    def _route(path: str) -> _Route:
        if path.startswith("/api1/"):
            return X3Handler._api1
        if path.startswith("/_sim/"):
            return X3Handler._sim
        if path == "/xtrem/api":
            return X3Handler._graphql
        if path == "/oauth/token":
            return X3Handler._token
        if path == "/oauth/authorize":
            return X3Handler._authorize
        return X3Handler._not_found

    def _not_found(self, method: str, url: SplitResult, body: bytes) -> None:
        raise ApiError(404, f"No resource at {url.path}")

    # --- GraphQL and OAuth

    def _graphql(self, method: str, url: SplitResult, body: bytes) -> None:
        if method != "POST":
            raise ApiError(405, "GraphQL takes POST")
        state = self.server.state
        with state.faults.request() as ticket:
            status, payload, headers = self._graphql_answer(ticket, body)
        # Sent once the request has given its session slot back, as api1 answers (Api1.serve):
        # both transports count calls in flight alike.
        self._send_json(status, payload, headers)

    def _graphql_answer(self, ticket: RequestTicket, body: bytes
                        ) -> tuple[int, Any, dict[str, str] | None]:
        state = self.server.state
        if ticket.fault is not None:
            return self._graphql_fault(ticket)
        refused = state.oauth.check_bearer(self.headers.get("Authorization"), self.region)
        if refused:
            return (401, gql.error_payload(refused, "UNAUTHENTICATED"),
                    {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        endpoint = self.headers.get("x-xtrem-endpoint")
        if endpoint != self.server.folder:
            return 400, gql.error_payload(f"unknown x-xtrem-endpoint {endpoint!r}",
                                          "BAD_REQUEST"), None
        result = gql.execute(state, parse_json(body), self.server.graphql_schema)
        if result.committed and state.faults.should_drop():
            raise DropConnection
        return 200, result.payload, None

    @staticmethod
    def _graphql_fault(ticket: RequestTicket) -> tuple[int, Any, dict[str, str] | None]:
        if ticket.fault == 500:
            return 500, gql.error_payload("Injected fault: internal server error",
                                          "INTERNAL_SERVER_ERROR"), None
        if ticket.fault == 429:
            return (429, gql.error_payload("Injected fault: too many requests",
                                           "TOO_MANY_REQUESTS"),
                    {"Retry-After": str(ticket.retry_after)})
        # The xtrem server answers its own overload inside GraphQL, with HTTP 200.
        return 200, gql.error_payload("Service unavailable: the server is overloaded",
                                      "SERVICE_UNAVAILABLE"), None

    def _token(self, method: str, url: SplitResult, body: bytes) -> None:
        if method != "POST":
            raise ApiError(405, "the token endpoint takes POST")
        status, answer = self.server.state.token_grant(self._token_body(body), self.region)
        self._send_json(status, answer, {"Cache-Control": "no-store"})

    def _token_body(self, body: bytes) -> Any:
        """The token request: JSON (what the contract sends), or a form (RFC 6749's own)."""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type == "application/x-www-form-urlencoded":
            return {k: v[-1] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        return parse_json(body or b"{}")

    def _authorize(self, method: str, url: SplitResult, body: bytes) -> None:
        if method != "GET":
            raise ApiError(405, "the authorisation page takes GET")
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        status, headers, page = consent(self.server.state.oauth, params, self._base_url())
        data = page.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    # --- plumbing

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            raise ApiError(400, f"Invalid Content-Length {length!r}") from None
        return self.rfile.read(size)

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _hang_up(self) -> None:
        # The client must see a dropped connection, not a response: no bytes, then FIN.
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _base_url(self) -> str:
        host = self.headers.get("Host")
        if not host:
            address, port = self.server.server_address[:2]
            host = f"{address}:{port}"
        return f"http://{host}"

    # --- /_sim

    def _sim(self, method: str, url: SplitResult, body: bytes) -> None:
        state = self.server.state
        action = (method, url.path.rstrip("/"))
        if action == ("GET", "/_sim/health"):
            self._send_json(200, {"ok": True})
        elif action == ("GET", "/_sim/state"):
            self._send_json(200, state.snapshot())
        elif action == ("GET", "/_sim/faults"):
            self._send_json(200, state.faults.settings())
        elif action == ("POST", "/_sim/faults"):
            self._send_json(200, _bad_request_on_value_error(state.faults.update, body))
        elif action == ("POST", "/_sim/reset"):
            state.reset()
            self._send_json(200, {"reset": True})
        elif action == ("GET", "/_sim/tokens"):
            self._send_json(200, state.oauth.tokens())
        elif action == ("POST", "/_sim/authorize"):
            self._send_json(200, {"refresh_token": state.oauth.authorize()})
        elif action == ("POST", "/_sim/seed"):
            _bad_request_on_value_error(state.load_seed, body)
            self._send_json(200, state.snapshot())
        else:
            raise ApiError(404, f"No simulator control {method} {url.path}")

    # --- /api1

    def _api1(self, method: str, url: SplitResult, body: bytes) -> None:
        authorization = self.headers.get("Authorization", "")
        reply = self.server.api1.serve(method, url, body, authorization, self._base_url())
        self._send_json(reply.status, reply.payload, reply.headers)


def _bad_request_on_value_error(action: Callable[[dict[str, Any]], Any], body: bytes) -> Any:
    """Run a /_sim action on the posted JSON object; its ValueError is the client's fault."""
    payload = parse_json(body or b"{}")
    if not isinstance(payload, dict):
        raise ApiError(400, "Body must be a JSON object")
    try:
        return action(payload)
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def make_server(
    host: str,
    port: int,
    *,
    username: str = "admin",
    password: str = "admin",  # noqa: S107 (the simulator's well-known demo credentials)
    folder: str = DEFAULT_FOLDER,
    seed: Mapping[str, Any] | None = None,
    coa: str = DEFAULT_COA,
    invoice_class: str = DEFAULT_INVOICE_CLASS,
    verbose: bool = False,
    client_id: str = "demo",
    client_secret: str = "demo-secret",  # noqa: S107 (demo OAuth client)
    refresh_token: str = "initial-rt",  # noqa: S107
    jwt_audience: str | None = None,
    graphql_invoice_package: str = "x3Accounting",
    graphql_invoice_node: str = "supplierBpInvoice",
    supplier_numbering: str = "manual",
) -> X3Server:
    """A bound, not yet serving simulator (port 0 picks a free port: see server_address)."""
    oauth = OAuthState(client_id, client_secret, refresh_token, audience=jwt_audience)
    state = X3State(seed, coa=coa, invoice_class=invoice_class, oauth=oauth,
                    supplier_numbering=supplier_numbering)
    return X3Server(
        (host, port), state, username=username, password=password, folder=folder,
        verbose=verbose, graphql_invoice_package=graphql_invoice_package,
        graphql_invoice_node=graphql_invoice_node,
    )


class _Stop(Exception):
    """Raised by the signal handler to leave serve_forever."""


def _raise_stop(signum: int, frame: object) -> None:
    raise _Stop


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m sandbox.x3sim", description="Sage X3 simulator (api1 + GraphQL)."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8124, help="0 picks a free port")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", default="admin")
    parser.add_argument("--folder", default=DEFAULT_FOLDER, help="X3 endpoint, e.g. SEED")
    parser.add_argument("--seed", metavar="FILE.json", help="master data (default: demo seed)")
    parser.add_argument("--coa", default=DEFAULT_COA, help="chart of accounts invoices use")
    parser.add_argument("--invoice-class", default=DEFAULT_INVOICE_CLASS)
    parser.add_argument("--supplier-numbering", choices=SUPPLIER_NUMBERINGS, default="manual",
                        help="sequence: X3 numbers a supplier created without a code")
    parser.add_argument("--client-id", default="demo", help="OAuth / connected-app client id")
    parser.add_argument("--client-secret", default="demo-secret")
    parser.add_argument("--refresh-token", default="initial-rt", help="initially valid")
    parser.add_argument("--jwt-audience", help="required JWT aud (default: any)")
    parser.add_argument("--graphql-invoice-package", default="x3Accounting")
    parser.add_argument("--graphql-invoice-node", default="supplierBpInvoice")
    parser.add_argument("--verbose", action="store_true", help="log requests to stderr")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    seed = None
    if args.seed:
        try:
            with open(args.seed, encoding="utf-8") as handle:
                seed = json.load(handle)
            normalise_seed(seed)
        except (OSError, ValueError) as exc:
            print(f"x3sim: cannot use seed {args.seed}: {exc}", file=sys.stderr)
            return 2
    server = make_server(
        args.host, args.port, username=args.user, password=args.password, folder=args.folder,
        seed=seed, coa=args.coa, invoice_class=args.invoice_class, verbose=args.verbose,
        supplier_numbering=args.supplier_numbering,
        client_id=args.client_id, client_secret=args.client_secret,
        refresh_token=args.refresh_token, jwt_audience=args.jwt_audience,
        graphql_invoice_package=args.graphql_invoice_package,
        graphql_invoice_node=args.graphql_invoice_node,
    )  # fmt: skip
    host, port = server.server_address[:2]
    print(f"X3 simulator listening on http://{host}:{port}", flush=True)
    # Both stop cleanly; SIGINT is set explicitly because a shell's background job ignores it.
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    try:
        server.serve_forever()
    except (KeyboardInterrupt, _Stop):
        pass
    finally:
        server.server_close()
    return 0


