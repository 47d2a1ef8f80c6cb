"""A hostile HTTP server for tests: a real http.server on loopback, in a thread, whose answer each
test scripts (drip bytes, huge bodies, echo the Authorization header, odd next links ...)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body or b"null")


Script = Callable[["Handler", Seen], None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    script: Script
    seen: list[Seen]
    stop: threading.Event


class Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._run()

    def do_POST(self) -> None:
        self._run()

    def _run(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, dict(self.headers.items()), body)
        self.server.seen.append(seen)
        try:
            self.server.script(self, seen)
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass  # the client hung up: what a deadline is for
        self.close_connection = True

    # -- answers a script composes ------------------------------------------------------------
    def reply(self, status: int, body: bytes | str | Any = b"", *,
              content_type: str = "application/json", headers: dict[str, str] | None = None,
              reason: str | None = None) -> None:
        if not isinstance(body, bytes | str):
            body = json.dumps(body)
        data = body.encode() if isinstance(body, str) else body
        self.send_response(status, reason)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def drip(self, data: bytes, every: float, *, headers_first: bool = True) -> None:
        """One byte every `every` seconds, until the client hangs up or the test ends."""
        if headers_first:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.flush()
        for i in range(len(data)):
            if self.server.stop.is_set():
                return
            self.wfile.write(data[i:i + 1])
            self.wfile.flush()
            time.sleep(every)

    def drip_headers(self, every: float) -> None:
        """The status line, then a header that never ends."""
        self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
        self.wfile.flush()
        while not self.server.stop.is_set():
            self.wfile.write(b"a")
            self.wfile.flush()
            time.sleep(every)

    def flood(self, megabytes: int, *, chunked: bool = False) -> None:
        """A JSON-ish body of `megabytes`, with or without a Content-Length."""
        block = b" " * (1024 * 1024)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(megabytes * len(block)))
        self.end_headers()
        for _ in range(megabytes):
            if self.server.stop.is_set():
                return
            if chunked:
                self.wfile.write(f"{len(block):x}\r\n".encode() + block + b"\r\n")
            else:
                self.wfile.write(block)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")

    def forward(self, upstream: str, seen: Seen) -> None:
        """Pass the request on to `upstream` (the simulator) and its answer back: a proxy."""
        import requests

        headers = {k: v for k, v in seen.headers.items()
                   if k.lower() in ("authorization", "content-type", "accept",
                                    "x-xtrem-endpoint")}
        r = requests.request(seen.method, upstream + seen.path, data=seen.body or None,
                             headers=headers, timeout=10, allow_redirects=False)
        self.reply(r.status_code, r.content,
                   content_type=r.headers.get("Content-Type", "application/json"),
                   headers={k: v for k, v in r.headers.items()
                            if k.lower() in ("location", "retry-after")})

    def log_message(self, format: str, *args: Any) -> None:
        pass


@dataclass
class Hostile:
    server: _Server
    seen: list[Seen] = field(default_factory=list)

    tls: bool = False

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host}:{port}"

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def answer(self, script: Script) -> None:
        self.server.script = script

    def always(self, status: int, body: Any = b"", **kw: Any) -> None:
        self.answer(lambda h, seen: h.reply(status, body, **kw))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A CA-less self-signed certificate for 127.0.0.1: (certificate, key) PEM files. The
    certificate is its own CA bundle."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hostile-x3")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "hostile.crt", directory / "hostile.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


@contextmanager
def hostile_server(tls: tuple[Path, Path] | None = None) -> Iterator[Hostile]:
    server = _Server(("127.0.0.1", 0), Handler)
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    server.seen, server.stop = [], threading.Event()
    server.script = lambda h, seen: h.reply(200, {})
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield Hostile(server, server.seen, tls=bool(tls))
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
