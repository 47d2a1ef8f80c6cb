"""Shared by integration tests: the sample export fetched and parsed, an X3 client, the
simulator's state."""

import pytest
import requests

from pipeline import db, ledger
from pipeline.audit import TaskContext
from pipeline.stampli import poll
from pipeline.x3.connect import open_client
from tests.conftest import drop_samples

CTX = TaskContext(task_id="test", attempt=1)


def sim_state(url):
    return requests.get(f"{url}/_sim/state", timeout=5).json()


def client():
    with db.transaction() as cur:
        return open_client(cur)


@pytest.fixture
def parsed(connected):
    """The sample export fetched and parsed: returns {invoice_number: invoice id}."""
    drop_samples(connected["sftp"].export_dir)
    poll.poll(CTX)
    ids = poll.poll(CTX).new_file_ids
    for file_id in ids:
        ledger.parse_file(CTX, file_id)
    with db.transaction() as cur:
        cur.execute("SELECT id, payload->>'invoice_number' AS invoice_number FROM invoices")
        return {r["invoice_number"]: r["id"] for r in cur.fetchall()}




def post_with_lost_answer(x3_url, invoice_id, x3_client):
    """Post while X3 commits and then drops the answer: the row is left `posting`."""
    import pytest

    from pipeline import posting
    from pipeline.x3.errors import X3OutcomeUnknown

    requests.post(f"{x3_url}/_sim/faults", json={"drop_after_commit_rate": 1.0}, timeout=5)
    try:
        with pytest.raises(X3OutcomeUnknown):
            posting.post(CTX, invoice_id, x3_client)
    finally:
        requests.post(f"{x3_url}/_sim/faults", json={"drop_after_commit_rate": 0.0}, timeout=5)
