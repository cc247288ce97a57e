import io
import json
import logging

from shipper.logs import setup_logging


def test_json_lines_have_ecs_names_and_context():
    stream = io.StringIO()
    setup_logging("info", "json", stream=stream)
    logging.getLogger("shipper.test").info("batch sent", extra={"docs": 500})
    logging.getLogger("shipper.test").debug("not shown")
    record = json.loads(stream.getvalue().strip())
    assert record["message"] == "batch sent"
    assert record["log.level"] == "INFO"
    assert record["log.logger"] == "shipper.test"
    assert record["docs"] == 500
    assert record["@timestamp"].startswith("20")


def test_text_format_is_one_readable_line():
    stream = io.StringIO()
    setup_logging("debug", "text", stream=stream)
    logging.getLogger("shipper.test").warning("spool full", extra={"bytes": 10})
    line = stream.getvalue()
    assert line.count("\n") == 1
    assert "WARNING shipper.test: spool full  bytes=10" in line
