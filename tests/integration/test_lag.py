from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka.structs import TopicPartition
from conftest import Services
from kafka_util import commit, create_topic, end_offsets, send

from streams.cli import main
from streams.settings import Settings

pytestmark = pytest.mark.integration

N = 30


def lag_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main(["lag", "--json", *args])
    return code, json.loads(capsys.readouterr().out)


@pytest.fixture
def produced(cli_env: Settings) -> dict[TopicPartition, int]:
    """N page views on the page-views topic (the three input topics exist), no worker."""
    t = cli_env.topics
    for topic in t.inputs():
        asyncio.run(create_topic(cli_env.kafka_bootstrap, topic, cli_env.partitions))
    values = [b'{"type":"page_view","n":%d}' % i for i in range(N)]
    asyncio.run(send(cli_env.kafka_bootstrap, t.page_views, values))
    return asyncio.run(end_offsets(cli_env.kafka_bootstrap, list(t.inputs())))


def test_a_group_that_never_committed_lags_by_everything(
    cli_env: Settings, produced: dict[TopicPartition, int], capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = lag_json(capsys)
    assert code == 0
    assert report["group"] == cli_env.app_id
    assert report["totals"]["lag_messages"] == N
    assert report["topics"][cli_env.topics.page_views]["lag_messages"] == N
    assert len(report["partitions"]) == 3 * cli_env.partitions
    assert all(p["committed"] is None for p in report["partitions"])
    assert report["missing_topics"] == []


def test_committed_at_zero_lags_by_n_and_thresholds_decide_the_exit_code(
    cli_env: Settings, produced: dict[TopicPartition, int], capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(commit(cli_env.kafka_bootstrap, cli_env.app_id, dict.fromkeys(produced, 0)))
    code, report = lag_json(capsys, "--threshold-messages", str(N))
    assert code == 0
    assert report["totals"]["lag_messages"] == N
    assert {p["committed"] for p in report["partitions"]} == {0}
    by_tp = {(p["topic"], p["partition"]): p for p in report["partitions"]}
    for tp, end in produced.items():
        assert by_tp[(tp.topic, tp.partition)]["lag_messages"] == end
        assert by_tp[(tp.topic, tp.partition)]["log_end"] == end

    code, report = lag_json(capsys, "--threshold-messages", str(N - 1))
    assert code == 1
    assert report["over_threshold"] is True


def test_consumed_and_committed_means_no_lag(
    cli_env: Settings, produced: dict[TopicPartition, int], capsys: pytest.CaptureFixture[str]
) -> None:
    asyncio.run(commit(cli_env.kafka_bootstrap, cli_env.app_id, produced))
    code, report = lag_json(capsys, "--threshold-messages", "0", "--threshold-seconds", "0")
    assert code == 0
    assert report["totals"] == {"lag_messages": 0, "max_lag_seconds": 0.0}
    assert report["over_threshold"] is False


def test_lag_in_seconds_is_newest_produced_minus_newest_processed(
    services: Services, kafka_names: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    topic = f"{kafka_names.topic_prefix}timed"
    asyncio.run(create_topic(services.bootstrap, topic, 1))
    t0 = 1_700_000_000_000
    stamps = [t0 + i * 1000 for i in range(10)]
    asyncio.run(send(services.bootstrap, topic, [b"x"] * 10, partition=0, timestamps_ms=stamps))
    # processed records 0..3: the newest processed is at t0+3 s, the newest produced at t0+9 s
    asyncio.run(commit(services.bootstrap, kafka_names.group_id, {TopicPartition(topic, 0): 4}))
    args = ["--bootstrap", services.bootstrap, "--group", kafka_names.group_id, "--topic", topic]

    code, report = lag_json(capsys, *args, "--threshold-seconds", "5.5")
    assert code == 1
    [p] = report["partitions"]
    assert (p["committed"], p["lag_messages"], p["lag_seconds"]) == (4, 6, 6.0)
    assert (p["newest_processed_ms"], p["newest_produced_ms"]) == (stamps[3], stamps[9])

    code, _ = lag_json(capsys, *args, "--threshold-seconds", "6.5")
    assert code == 0


def test_text_output_names_every_partition(
    cli_env: Settings, produced: dict[TopicPartition, int], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["lag"]) == 0
    out = capsys.readouterr().out
    assert cli_env.topics.page_views in out
    assert f"total {N} messages behind" in out


def test_missing_input_topics_are_reported(cli_env: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    capsys.readouterr()
    assert main(["lag", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["missing_topics"] == list(cli_env.topics.inputs())
    assert "topics not found" in err


def test_unreachable_kafka_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["lag", "--bootstrap", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("segmenter: cannot read lag from Kafka at 127.0.0.1:1")
    assert len(err.splitlines()) == 1
