"""Celery app. Configuration is read when Celery first needs it, so importing this module never
fails; starting a worker or beat with a bad environment fails with the one settings message."""

from __future__ import annotations

import logging

from celery import Celery, signals

from pipeline.config import settings
from workers.settings import celery_config

app = Celery("mlc", include=["tasks.fetch", "tasks.parse", "tasks.invoice", "tasks.replay"])


@app.on_configure.connect
def _configure(sender: Celery, **_: object) -> None:
    sender.conf.update(celery_config(settings()))


@signals.setup_logging.connect
def _logging(**_: object) -> None:
    # Our own handler, with the redaction filter; Celery does not take over the root logger.
    from pipeline.logs import configure

    configure(settings().log_level)


log = logging.getLogger(__name__)
