"""A TLS error on a create is "nothing sent" only when the handshake refused the certificate;
one that comes while the answer is read (bad record MAC, an alert) may follow a commit: the
create is never sent again, the outcome is unknown (found by the exactly-once review)."""

from __future__ import annotations

import ssl

import pytest
import requests

from pipeline.x3.errors import X3OutcomeUnknown, X3Unavailable
from pipeline.x3.transport import Transport


def _transport(monkeypatch, error: Exception) -> list[str]:
    sent: list[str] = []

    def exchange(self, method, url, **kwargs):
        sent.append(url)
        raise error

    monkeypatch.setattr(Transport, "_exchange", exchange)
    monkeypatch.setattr("pipeline.x3.transport.time.sleep", lambda s: None)
    return sent


def test_a_tls_error_while_the_answer_is_read_is_an_unknown_outcome(monkeypatch):
    sent = _transport(monkeypatch, requests.exceptions.SSLError(
        "[SSL: DECRYPTION_FAILED_OR_BAD_RECORD_MAC] decryption failed or bad record mac"))
    with pytest.raises(X3OutcomeUnknown):
        Transport().write("POST", "https://x3.example/create", lambda r: r, "BPSINVOICE create")
    assert len(sent) == 1  # never sent a second time


def test_a_certificate_refused_in_the_handshake_is_nothing_sent(monkeypatch):
    try:
        raise ssl.SSLCertVerificationError(1, "certificate verify failed")
    except ssl.SSLCertVerificationError as cause:
        error = requests.exceptions.SSLError(cause)
        error.__cause__ = cause
    sent = _transport(monkeypatch, error)
    with pytest.raises(X3Unavailable, match="unreachable: SSLError"):
        Transport().write("POST", "https://x3.example/create", lambda r: r, "BPSINVOICE create")
    assert len(sent) >= 1
