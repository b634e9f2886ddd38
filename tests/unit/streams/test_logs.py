"""Structured logs: JSON lines with the event's fields; the configuration Faust's worker is handed."""

from __future__ import annotations

import io
import json
import logging
import logging.config

import pytest

from streams.logs import JsonFormatter, dead_letter_fields, logging_config, wants_json


def test_json_lines_carry_the_extra_fields() -> None:
    record = logging.LogRecord("segmenter.worker", logging.INFO, __file__, 1, "partitions %s", ("assigned",), None)
    record.partitions = [0, 2]
    line = JsonFormatter().format(record)
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["msg"] == "partitions assigned"
    assert obj["level"] == "info" and obj["logger"] == "segmenter.worker"
    assert obj["partitions"] == [0, 2]
    assert obj["ts"].endswith("+00:00")


def test_the_config_formats_json_or_text_and_keeps_existing_loggers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert logging_config("json")["formatters"]["segmenter"] == {"()": JsonFormatter}
    assert "format" in logging_config("text")["formatters"]["segmenter"]
    monkeypatch.setattr("sys.stderr", io.StringIO())  # not a terminal
    assert wants_json("auto") and not wants_json("text")
    config = logging_config("json", "info")
    assert config["disable_existing_loggers"] is False
    assert all(v == {"level": "WARNING"} for v in config["loggers"].values())
    assert logging_config("json", "error")["loggers"]["faust"] == {"level": "ERROR"}

    stream = io.StringIO()
    config["handlers"]["stderr"]["stream"] = stream
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    existing = logging.getLogger("segmenter.worker")
    try:
        logging.config.dictConfig(config)
        existing.info("recovery done", extra={"seconds": 0.5})
        logging.getLogger("faust.app").info("a rebalance step")
        logging.getLogger("faust.app").warning("something odd")
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [(x["logger"], x["msg"]) for x in lines] == [
        ("segmenter.worker", "recovery done"),
        ("faust.app", "something odd"),
    ]
    assert lines[0]["seconds"] == 0.5


def test_dead_letter_fields_name_the_reason_not_the_whole_message() -> None:
    letter = json.dumps(
        {
            "reason": "quantity: must be positive",
            "stage": "decode",
            "original": "x" * 1000,
            "source_topic": "shop.carts",
            "source_partition": 1,
            "source_offset": 42,
            "key": "c1",
        }
    ).encode()
    fields = dead_letter_fields(letter)
    assert fields["reason"] == "quantity: must be positive"
    assert (fields["source_topic"], fields["source_partition"], fields["source_offset"]) == ("shop.carts", 1, 42)
    assert len(fields["original"]) == 200
    assert dead_letter_fields(b"\xff not json") == {"dead_letter": "\\xff not json"}
