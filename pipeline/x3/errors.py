"""Typed X3 errors: the task layer decides retry or fail from the type alone."""

from __future__ import annotations


class X3Error(Exception):
    """Base of every error raised by an X3 client."""

    transient = False


class X3AuthError(X3Error):
    """Credentials refused (401/403, or a refresh token a person must re-authorise)."""


class X3ValidationError(X3Error):
    """X3 refused the request's content. Permanent: retrying sends the same refusal."""

    def __init__(self, message: str, messages: list[str] | None = None) -> None:
        super().__init__(message)
        self.messages = messages or [message]


class X3Unavailable(X3Error):
    """X3 did not process the request (down, overloaded, 5xx, 429). Safe to retry later."""

    transient = True

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class X3OutcomeUnknown(X3Error):
    """The request was sent and no answer came: X3 may or may not have done it.

    Never re-send blindly: look the record up first.
    """

    transient = True


class X3CreateInFlight(X3Error):
    """An earlier create's outcome is unknown and it may still commit: X3 does not hold the
    record yet, but a second create is allowed only once the in-flight window has passed.
    Transient: look again after `retry_after` seconds."""

    transient = True

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after
