"""Typed X3 errors: the task layer decides retry or fail from the type alone."""

from __future__ import annotations

from pipeline.secrets import mask

MAX_TEXT = 1000  # an error's text is stored (last_error, audit) and shown: bounded
MAX_MESSAGES = 5  # of X3's own messages ($diagnoses, GraphQL errors), each at most ...
MESSAGE_CHARS = 200


def clean(text: str, limit: int = MAX_TEXT) -> str:
    """Masked, one line, printable, bounded: text that came from X3 or a proxy is hostile.
    Masked before it is cut, so a secret astride the cut leaves no prefix behind."""
    text = mask(str(text))
    text = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    text = mask(text)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def messages_of(values: object) -> list[str]:
    """X3's messages as kept: strings (or numbers) only, a few, each bounded and masked."""
    if not isinstance(values, list):
        return []
    kept = [clean(str(v), MESSAGE_CHARS) for v in values
            if isinstance(v, str | int | float) and not isinstance(v, bool)]
    return [m for m in kept if m][:MAX_MESSAGES]


class X3Error(Exception):
    """Base of every error raised by an X3 client. Its text is masked when it is made, so
    wherever it is stored or shown (invoices.last_error, audit rows, logs, Celery retry events)
    no secret goes with it."""

    transient = False

    def __init__(self, message: str = "", *args: object) -> None:
        super().__init__(clean(message), *args)


class X3ProtocolError(X3Error):
    """X3 (or what answers in its place) broke the contract in a way a retry will not mend: a
    next-page link off the configured API, paging that loops, a redirect, an answer of the
    wrong shape. Permanent: the invoice fails with this reason, for a person to look at."""


class X3ConfigError(X3Error, ValueError):
    """The connection's settings cannot be used as they are (refused before any call)."""


class X3AuthError(X3Error):
    """Credentials refused (401/403, or a refresh token a person must re-authorise)."""


class X3ValidationError(X3Error):
    """X3 refused the request's content. Permanent: retrying sends the same refusal."""

    def __init__(self, message: str, messages: list[str] | None = None) -> None:
        super().__init__(message)
        self.messages = [clean(m, 200) for m in messages] if messages else [str(self)]

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.messages))


class X3Unavailable(X3Error):
    """X3 did not process the request (down, overloaded, 5xx, 429). Safe to retry later."""

    transient = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.retry_after))


class X3OutcomeUnknown(X3Error):
    """The request was sent and no answer came: X3 may or may not have done it.

    Never re-send blindly: look the record up first. `reason` is what happened, without the
    advice (a token refresh reuses it in its own words).
    """

    transient = True

    def __init__(self, message: str = "", reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = clean(reason) if reason else str(self)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.reason))


class X3CreateInFlight(X3Error):
    """An earlier create's outcome is unknown and it may still commit: X3 does not hold the
    record yet, but a second create is allowed only once the in-flight window has passed.
    Transient: look again after `retry_after` seconds."""

    transient = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (str(self), self.retry_after))
