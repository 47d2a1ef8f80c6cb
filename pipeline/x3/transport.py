"""HTTP plumbing both X3 transports (and the token endpoints) share: one session, timeouts,
retries, the call cap, and bounds on what a server may send back.

Reads are repeated on connection errors, timeouts and transient answers, with exponential backoff
and jitter, or after the Retry-After X3 asked for. A create is sent once: if it may have reached
X3 and no answer came, the outcome is unknown and only a lookup can tell (X3OutcomeUnknown).

Every call (a read with its retries, or a create) has an overall deadline and a byte cap. The
timeouts requests offers are per socket read, so a server that drips a byte a second (headers or
body) never trips them: a watchdog thread shuts the socket down when the deadline passes,
whatever phase the exchange is in. Bodies are streamed and dropped once past the cap. Redirects
are never followed: X3 and its token endpoint answer where they are configured, or not at all.
"""

from __future__ import annotations

import json
import logging
import math
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NewConnectionError

from pipeline.x3 import attempts
from pipeline.x3.errors import X3ConfigError, X3OutcomeUnknown, X3ProtocolError, X3Unavailable
from pipeline.x3.limits import Limiter, NoLimit
from pipeline.x3.watchdog import Overrun, Watchdog, WatchedAdapter

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_DEADLINE = 120.0  # seconds for one call, retries included
DEFAULT_MAX_RESPONSE_MB = 10.0
CHUNK = 64 * 1024
GATEWAY_GAVE_UP = (502, 504)  # to a create: an unknown outcome, not a refusal to do it
# What an answer callback may raise on a body of the wrong shape: turned into a typed error.
SHAPE_ERRORS = (ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError)


# -- what a status and a body are, said without quoting them ------------------------------------
def status_text(code: int) -> str:
    """`401 Unauthorized`: the standard phrase, never the server's (it can hold anything)."""
    try:
        return f"{code} {HTTPStatus(code).phrase}"
    except ValueError:
        return str(code)


def origin(url: str | None) -> str:
    """scheme://host[:port] of a URL a server handed us, without user, path or query."""
    try:
        parts = urlsplit(url or "")
        host, port = parts.hostname, parts.port
    except ValueError:
        return "an unreadable URL"
    if not host or not parts.scheme:
        return "a relative URL" if url else "nowhere"
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port else "")


def plain_url(url: str, what: str = "the X3 URL") -> str:
    """The URL, refused if it holds a user name or password: a URL is stored in the clear,
    shown by `connection show`, logged; credentials belong in the connection's secret."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        raise X3ConfigError(f"{what} cannot be read as a URL") from None
    if "@" in netloc:
        shown = origin(url).replace("://", "://***@", 1)
        raise X3ConfigError(f"{what} must not hold a user name or password ({shown}): give "
                            "them as the connection's user and secret instead")
    return url


class Unreadable(ValueError):
    """A body that is not the JSON object the contract promises; `shown` says what it is."""

    def __init__(self, shown: str) -> None:
        super().__init__(shown)
        self.shown = shown


def parse_json(content: bytes) -> Any:
    """The JSON value of a body, or Unreadable naming what it is instead."""
    text = content.strip()
    if not text:
        raise Unreadable("an empty body")
    try:
        return json.loads(text)
    except RecursionError:
        raise Unreadable("JSON nested too deeply") from None
    except ValueError:
        if text[:1] == b"<":
            raise Unreadable("an HTML page") from None
        raise Unreadable("a body that is not JSON") from None


def json_kind(value: Any) -> str:
    if value is None:
        return "JSON null"
    kinds = ((bool, "a JSON boolean"), (dict, "a JSON object"), (list, "a JSON list"),
             (str, "a JSON string"), (int | float, "a JSON number"))
    return next(name for cls, name in kinds if isinstance(value, cls))


def json_object(resp: requests.Response) -> dict[str, Any]:
    """The body as a JSON object, or Unreadable."""
    value = parse_json(resp.content)
    if not isinstance(value, dict):
        raise Unreadable(json_kind(value))
    return value


def json_or_none(resp: requests.Response) -> Any:
    """The body's JSON value, or None when it has none (error bodies: anything goes)."""
    try:
        return parse_json(resp.content)
    except Unreadable:
        return None


def created_key(record: dict[str, Any], field: str, what: str) -> str:
    """The key X3 gave a created record; without one the outcome is unknown, not "None"."""
    key = record.get(field) or record.get("$key")
    if not isinstance(key, str | int) or isinstance(key, bool) or not str(key).strip():
        raise X3OutcomeUnknown(f"{what} answered without {field}: the record may exist")
    return str(key)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4  # tries of one read, the first included
    base_delay: float = 0.2  # seconds before the first retry, doubled each time
    max_delay: float = 5.0
    # Longer waits are not slept through inside a worker (it holds a task slot): the error goes
    # to the task layer, which retries later with its own countdown.
    max_retry_after: float = 10.0
    max_total_wait: float = 20.0


def retry_after_seconds(value: str | None) -> float | None:
    """Retry-After as seconds: either delta-seconds or an HTTP date (anything else: None)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


def backoff_delay(attempt: int, retry_after: float | None, policy: RetryPolicy) -> float | None:
    """Seconds to wait before try `attempt + 1`, or None when it is not worth waiting here."""
    if retry_after is not None:
        if retry_after > policy.max_retry_after:
            return None
        return retry_after * random.uniform(1.0, 1.2)  # never earlier than asked
    ceiling = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return random.uniform(ceiling / 2, ceiling)


def never_connected(exc: requests.RequestException) -> bool:
    """True when the request cannot have reached the server (nothing was sent): no connection,
    or a certificate refused in the TLS handshake. Any other TLS error (a bad record MAC, an
    alert) may come after the request left, while the answer was read: not "nothing sent"."""
    if isinstance(exc, requests.ConnectTimeout):
        return True
    if isinstance(exc, requests.exceptions.SSLError):
        return _certificate_refused(exc)
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, NewConnectionError)


def _certificate_refused(exc: BaseException) -> bool:
    """An ssl.SSLCertVerificationError anywhere in what requests and urllib3 wrapped."""
    seen: list[BaseException] = []
    todo: list[Any] = [exc]
    while todo and len(seen) < 12:
        e = todo.pop()
        if not isinstance(e, BaseException) or e in seen:
            continue
        if isinstance(e, ssl.SSLCertVerificationError):
            return True
        seen.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "reason", None), *e.args[:1]]
    return False


def _unknown(reason: str, *, advice: bool = True) -> X3OutcomeUnknown:
    return X3OutcomeUnknown(reason + (": the record may exist" if advice else ""), reason)


# -- the transport ------------------------------------------------------------------------------
class Transport:
    """One requests.Session per client; every HTTP attempt holds one slot of the call cap.

    `deadline`: seconds one call may take in all (a read with its retries, a create), whatever
    the server does; `max_response_mb`: the largest answer read."""

    def __init__(self, *, timeout: float = 30.0, connect_timeout: float = 5.0,
                 verify: bool | str = True, limiter: Limiter | None = None,
                 retry: RetryPolicy | None = None, deadline: float | None = None,
                 max_response_mb: float = DEFAULT_MAX_RESPONSE_MB) -> None:
        self.timeout = (connect_timeout, timeout)
        self.deadline = deadline or DEFAULT_DEADLINE
        self.max_response_mb = max_response_mb
        self.max_bytes = int(max_response_mb * 1024 * 1024)
        self.session = requests.Session()
        for prefix in ("https://", "http://"):
            self.session.mount(prefix, WatchedAdapter())
        self.session.verify = verify
        # requests reads the environment (proxies, NO_PROXY, ~/.netrc, CA bundle variables) on
        # every request when trust_env is on: ~4% of a worker's CPU. The proxies are read once
        # per X3 origin instead (_proxies); a netrc login never replaces ours; the CA bundle
        # was already the connection's own (verify is passed per request).
        self.session.trust_env = False
        self._proxies_of: dict[str, dict[str, str]] = {}
        self.session.headers.update({"Accept": "application/json"})
        self.limiter = limiter or NoLimit()
        self.retry = retry or RetryPolicy()

    def close(self) -> None:
        self.session.close()

    def _proxies(self, url: str) -> dict[str, str]:
        """The environment's proxies for this URL's origin (HTTPS_PROXY, NO_PROXY, ...), read
        once per origin and client."""
        key = origin(url)
        found = self._proxies_of.get(key)
        if found is None:
            found = self._proxies_of[key] = requests.utils.get_environ_proxies(url)
        return found

    def read(self, method: str, url: str, answer: Callable[[requests.Response], T],
             **kwargs: Any) -> T:
        """A call safe to repeat: retried on transient failures, then X3Unavailable."""
        until = time.monotonic() + self.deadline
        attempt, waited = 1, 0.0
        while True:
            try:
                resp = self._send(method, url, until=until, **kwargs)
            except requests.RequestException as exc:
                error = X3Unavailable(f"X3 unreachable: {type(exc).__name__}")
            except Overrun as exc:
                # Not tried again here: the deadline is spent, or the next answer is as large.
                raise self._overrun(exc) from None
            else:
                try:
                    return self._answer_read(resp, answer)
                except X3Unavailable as exc:
                    error = exc
            delay = backoff_delay(attempt, error.retry_after, self.retry)
            if (attempt >= self.retry.attempts or delay is None
                    or waited + delay > self.retry.max_total_wait
                    or time.monotonic() + delay >= until):
                raise error
            log.info("X3 read failed (%s), try %d in %.2f s", error, attempt + 1, delay)
            time.sleep(delay)
            attempt, waited = attempt + 1, waited + delay

    def write(self, method: str, url: str, answer: Callable[[requests.Response], T],
              what: str, **kwargs: Any) -> T:
        """A create: never re-sent once it may have reached X3."""
        until = time.monotonic() + self.deadline
        attempt = 1
        while True:
            try:
                resp = self._send(method, url, until=until, write=True, **kwargs)
                break
            except Overrun as exc:
                if not exc.sent:
                    raise self._overrun(exc) from None
                if exc.kind == "deadline":
                    raise _unknown(f"{what} sent, no complete answer within the deadline"
                                   f" ({self.deadline:g} s)") from None
                raise _unknown(f"{what} sent, answer larger than {self.max_response_mb:g} MB"
                               ) from None
            except requests.RequestException as exc:
                if not never_connected(exc):
                    if isinstance(exc, requests.Timeout):
                        raise _unknown(f"{what} sent, no answer within the timeout",
                                       advice=False) from None
                    raise _unknown(f"{what} sent, connection lost before the answer",
                                   advice=False) from None
                # Nothing left this host: trying again cannot create anything twice.
                delay = backoff_delay(attempt, None, self.retry)
                if (attempt >= self.retry.attempts or delay is None
                        or time.monotonic() + delay >= until):
                    raise X3Unavailable(f"X3 unreachable: {type(exc).__name__}") from None
                time.sleep(delay)
                attempt += 1
        code = resp.status_code
        if 300 <= code < 400:
            # requests would follow a 301/302 on a POST as a GET: an "answer" with nothing
            # created; and the request may have been acted on before the redirect.
            raise X3OutcomeUnknown(f"{what} answered with a redirect (HTTP {status_text(code)}"
                                   f" to {origin(resp.headers.get('Location'))}): check the X3 "
                                   "URL; the record may exist")
        if code in GATEWAY_GAVE_UP:
            # A proxy or load balancer in front of X3 gave up waiting, not X3: the create may
            # have been received and done all the same.
            raise _unknown(f"{what} answered HTTP {status_text(code)} (a gateway in front of X3"
                           " gave up)")
        try:
            return answer(resp)
        except Unreadable as exc:
            # A success whose body we cannot read: the record may exist. Look it up, never
            # assume either way.
            raise _unknown(f"{what} answered HTTP {status_text(code)} with {exc.shown}, not a "
                           "JSON object") from None
        except SHAPE_ERRORS as exc:
            raise _unknown(f"{what} answered HTTP {status_text(code)} with a body that cannot "
                           f"be read ({type(exc).__name__})") from None

    def _answer_read(self, resp: requests.Response,
                     answer: Callable[[requests.Response], T]) -> T:
        code = resp.status_code
        if 300 <= code < 400:
            raise X3ProtocolError(f"X3 answered a redirect (HTTP {status_text(code)} to "
                                  f"{origin(resp.headers.get('Location'))}): not followed, "
                                  "check the X3 URL")
        try:
            return answer(resp)
        except Unreadable as exc:
            # A proxy's maintenance page, a truncated answer: may well pass.
            raise X3Unavailable(f"X3 answered HTTP {status_text(code)} with {exc.shown}, not "
                                "a JSON object") from None
        except SHAPE_ERRORS as exc:
            raise X3ProtocolError(f"X3 answered HTTP {status_text(code)} with a body that "
                                  f"cannot be read ({type(exc).__name__})") from None

    def _overrun(self, exc: Overrun) -> X3Unavailable:
        if exc.kind == "deadline":
            return X3Unavailable(f"X3 did not answer within the deadline ({self.deadline:g} s)")
        return X3Unavailable(f"X3 answer larger than {self.max_response_mb:g} MB: not read")

    def _send(self, method: str, url: str, *, until: float, write: bool = False,
              **kwargs: Any) -> requests.Response:
        """One HTTP try, noted in the attempt records of the invoice or vendor at work."""
        attempt = attempts.Try(method)
        try:
            resp = self._exchange(method, url, until=until, **kwargs)
        except Overrun as exc:
            attempt.done("unknown" if write and exc.sent else "error", error=f"over {exc.kind}")
            raise
        except requests.RequestException as exc:
            sent = write and not never_connected(exc)
            attempt.done("unknown" if sent else "error", error=type(exc).__name__)
            raise
        code = resp.status_code
        if code < 300:
            attempt.done("ok", code)
        else:
            gave_up = write and code in GATEWAY_GAVE_UP
            attempt.done("unknown" if gave_up else "error", code, f"HTTP {code}")
        return resp

    def _exchange(self, method: str, url: str, *, until: float,
                  **kwargs: Any) -> requests.Response:
        """One HTTP exchange, its body read whole (bounded by `until` and the byte cap)."""
        kwargs.setdefault("allow_redirects", False)
        # Per request: requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override a session's
        # verify (psf/requests#3829), which would drop the connection's CA bundle.
        kwargs.setdefault("verify", self.session.verify)
        kwargs.setdefault("proxies", self._proxies(url))
        with self.limiter.slot():
            remaining = until - time.monotonic()
            if remaining <= 0:
                raise Overrun("deadline", sent=False)
            timeout = (min(self.timeout[0], remaining), min(self.timeout[1], remaining))
            with Watchdog(remaining) as watchdog:
                try:
                    resp = self.session.request(method, url, timeout=timeout, stream=True,
                                                **kwargs)
                except requests.RequestException:
                    if watchdog.fired:
                        raise Overrun("deadline") from None
                    raise
                try:
                    self._load(resp, until)
                except requests.RequestException:
                    resp.close()
                    if watchdog.fired:
                        raise Overrun("deadline") from None
                    raise
                except Overrun:
                    resp.close()
                    raise
                if watchdog.fired:
                    resp.close()
                    raise Overrun("deadline")
        return resp

    def _load(self, resp: requests.Response, until: float) -> None:
        declared = (resp.headers.get("Content-Length") or "").strip()
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise Overrun("size")
        chunks: list[bytes] = []
        size = 0
        for chunk in resp.iter_content(CHUNK):
            size += len(chunk)
            if size > self.max_bytes:
                raise Overrun("size")
            chunks.append(chunk)
            if time.monotonic() > until:
                raise Overrun("deadline")
        resp._content = b"".join(chunks)
