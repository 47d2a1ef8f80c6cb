"""What several command groups share: secrets read from standard input, and the rule that X3
credentials never travel in clear."""

from __future__ import annotations

import argparse
import sys


def read_stdin_secret(what: str) -> str:
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise SystemExit(f"mlc: expected the {what} on standard input")
    return value


def require_tls(args: argparse.Namespace, *names: str) -> None:
    """X3 credentials never travel in clear: https, or plain http on loopback (the sandbox);
    and never in a URL (a URL is stored in the clear, shown and logged)."""
    from urllib.parse import urlsplit

    from pipeline.secrets import mask
    from pipeline.x3.authorize import is_loopback
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
                                       is_loopback(parts.hostname or "")):
            continue
        if parts.scheme == "http" and getattr(args, "allow_plain_http", False):
            continue
        raise SystemExit(f"mlc: {option} must be an https URL ({url!r}): "
                         "credentials would travel in clear (--allow-plain-http to insist)")
