import io
import json
import logging

from pipeline import logs


def capture(fmt):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    formatter = logs.JsonFormatter() if fmt == "json" else logs.TextFormatter("%(message)s")
    handler.setFormatter(formatter)
    handler.addFilter(logs.ContextFilter())
    logger = logging.getLogger(f"test.logs.{fmt}")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, stream


def test_json_lines_carry_the_context_and_mask_secrets():
    logs.register_secret("hunter2-secret")
    logger, stream = capture("json")
    with logs.bind(task_id="t-1", invoice_id=7), logs.bind(invoice_number="INV-1"):
        logger.info("posting with %s", "hunter2-secret")
    logger.info("outside")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["task_id"] == "t-1" and first["invoice_id"] == 7
    assert first["invoice_number"] == "INV-1"
    assert first["message"] == "posting with ***"
    assert "task_id" not in second


def test_text_lines_for_terminals():
    logger, stream = capture("text")
    with logs.bind(file_id=3):
        logger.info("parsed")
    assert stream.getvalue().strip() == "parsed [file_id=3]"


def test_json_lines_stay_json_when_a_masked_value_holds_quotes_and_backslashes():
    logger, stream = capture("json")
    logger.warning('proxy said Authorization: abc"def\\ and ?token=x"y\\')
    line = json.loads(stream.getvalue())
    assert "abc" not in line["message"] and "x\"y" not in line["message"]
    assert line["message"].startswith("proxy said Authorization: ***")
