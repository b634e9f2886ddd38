from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from kafka_util import end_offsets, read_all

from streams.cli import main
from streams.settings import Settings

pytestmark = pytest.mark.integration

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "sample" / "otto_sample.jsonl.gz"


def expected_per_topic(path: Path, settings: Settings) -> Counter[str]:
    with gzip.open(path, "rb") as fh:
        types = [orjson.loads(line)["type"] for line in fh if line.strip()]
    return Counter(settings.topics.for_event_type(t) for t in types)


def counts(settings: Settings) -> Counter[str]:
    ends = asyncio.run(end_offsets(settings.kafka_bootstrap, list(settings.topics.inputs())))
    total: Counter[str] = Counter()
    for tp, end in ends.items():
        total[tp.topic] += end
    return total


def test_the_sample_lands_on_the_topic_of_each_type(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    expected = expected_per_topic(SAMPLE, cli_env)
    assert len(expected) == 3  # the sample has page views, cart events and orders

    assert main(["produce", str(SAMPLE)]) == 0

    assert counts(cli_env) == expected
    err = capsys.readouterr().err
    assert f"{sum(expected.values())} events sent" in err
    assert "0 invalid lines" in err
    ends = asyncio.run(end_offsets(cli_env.kafka_bootstrap, [cli_env.topics.page_views]))
    assert len(ends) == cli_env.partitions  # created with the configured partition count


def test_events_are_keyed_by_customer_then_anonymous_id(tmp_path: Path, cli_env: Settings) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b'{"event_id":"1","type":"page_view","customer_id":"c1","anonymous_id":"a1"}\n'
        b'{"event_id":"2","type":"page_view","customer_id":null,"anonymous_id":"a2"}\n'
    )
    assert main(["produce", str(path)]) == 0
    records = asyncio.run(read_all(cli_env.kafka_bootstrap, cli_env.topics.page_views, 2))
    assert sorted(r.key for r in records) == [b"a2", b"c1"]


def test_invalid_lines_go_to_the_orders_topic_as_they_are(
    tmp_path: Path, cli_env: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.jsonl"
    lines = [
        b'{"event_id":"1","type":"cart_add","customer_id":"c1"}',
        b"not json at all",
        b'{"event_id":"2","type":"refund","customer_id":"c1"}',
        b"[1, 2]",
    ]
    path.write_bytes(b"\n".join(lines[:2]) + b"\n\n" + b"\n".join(lines[2:]) + b"\n")

    assert main(["produce", str(path)]) == 0

    assert counts(cli_env) == Counter({cli_env.topics.carts: 1, cli_env.topics.orders: 3})
    orders = asyncio.run(read_all(cli_env.kafka_bootstrap, cli_env.topics.orders, 3))
    assert sorted(r.value for r in orders) == sorted(lines[1:])
    err = capsys.readouterr().err
    assert "4 events sent" in err
    assert "3 invalid lines" in err
    assert "1 blank lines skipped" in err


def test_stdin_and_rate(cli_env: Settings) -> None:
    events = b"".join(b'{"event_id":"%d","type":"order_placed","customer_id":"c%d"}\n' % (i, i) for i in range(5))
    proc = subprocess.run(
        [sys.executable, "-m", "streams.cli", "produce", "-", "--rate", "50"],
        input=gzip.compress(events),
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    assert counts(cli_env)[cli_env.topics.orders] == 5


def test_missing_file_is_a_clear_error(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["produce", "/nonexistent/events.jsonl"]) == 2
    assert capsys.readouterr().err.strip() == "segmenter: no such file: /nonexistent/events.jsonl"


def test_unreachable_kafka_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["produce", str(SAMPLE), "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segmenter: cannot produce to Kafka at 127.0.0.1:1")
    assert len(err.splitlines()) == 1
