"""A supplier create that may still be in flight is retried by the task after the time left,
not failed and not retried at once (issue 11)."""

from types import SimpleNamespace

import pytest

from pipeline.vendors import SupplierCreateInFlight
from pipeline.x3.errors import X3Error


class _Retry(Exception):
    pass


class FakeTask:
    request = SimpleNamespace(retries=0)
    ctx = None
    asked: tuple = ()

    def out_of_retries(self) -> bool:
        return False

    def retry_later(self, exc, retry_after=None, **_):
        self.asked = (exc, retry_after)
        raise _Retry


def test_in_flight_is_a_transient_x3_error_with_retry_after():
    exc = SupplierCreateInFlight("may still commit", 42.5)
    assert isinstance(exc, X3Error) and exc.transient and exc.retry_after == 42.5
    assert SupplierCreateInFlight("x", 0).retry_after >= 1  # never "at once"


def test_task_step_retries_it_with_its_countdown(monkeypatch):
    import tasks.invoice as invoice

    with pytest.raises(invoice.RetryLater) as caught, invoice.x3_step(1, "vendor_lookup"):
        raise SupplierCreateInFlight("may still commit", 300.0)
    assert caught.value.retry_after == 300.0 and caught.value.stage == "vendor_lookup"

    def resolve(ctx, invoice_id, client):
        raise SupplierCreateInFlight("may still commit", 300.0)

    monkeypatch.setattr(invoice.vendors, "resolve", resolve)
    monkeypatch.setattr(invoice, "shared_client", lambda: None)
    task = FakeTask()
    with pytest.raises(_Retry):
        invoice._process(task, 1)  # the single task retries itself
    assert isinstance(task.asked[0], SupplierCreateInFlight) and task.asked[1] == 300.0
