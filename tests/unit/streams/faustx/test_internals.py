"""The start-up check of what the adapter relies on of Faust, aiokafka and mode."""

from __future__ import annotations

from importlib import metadata
from pathlib import Path

import pytest
from faust.tables.recovery import Recovery
from faust.transport.drivers.aiokafka import Producer

from streams.app import create_worker
from streams.faustx.internals import INTERNALS, Internal, check_internals
from streams.settings import Settings


def test_the_installed_versions_have_every_internal_the_adapter_relies_on() -> None:
    check_internals()


def test_every_private_name_is_listed_once_with_a_reason() -> None:
    keys = [(i.owner, i.name) for i in INTERNALS]
    assert len(keys) == len(set(keys))
    assert all(i.why for i in INTERNALS)


def test_a_method_gone_is_named_with_the_installed_versions(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(Recovery, "_set_recovery_ended")
    with pytest.raises(RuntimeError) as err:
        check_internals()
    message = str(err.value)
    assert "faust.tables.recovery:Recovery._set_recovery_ended" in message
    assert f"faust-streaming {metadata.version('faust-streaming')}" in message
    assert f"aiokafka {metadata.version('aiokafka')}" in message
    assert "_ensure_producer" not in message  # only what is missing


def test_an_instance_attribute_no_code_of_the_class_sets_is_missing() -> None:
    # attributes set in __init__ are found in the class's code, without starting anything
    ours = Internal("faust.transport.drivers.aiokafka:Consumer", "_committed_offset", "commits")
    check_internals((ours,))
    renamed = Internal("faust.transport.drivers.aiokafka:Consumer", "_committed_offsets", "commits")
    gone_module = Internal("faust.no_such_module:Thing", "x", "nothing")
    with pytest.raises(RuntimeError, match=r"Consumer\._committed_offsets \(commits\); faust\.no_such_module:Thing\.x"):
        check_internals((ours, renamed, gone_module))


def test_building_a_worker_fails_fast_naming_the_missing_internal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delattr(Producer, "_ensure_producer")
    settings = Settings(store="memory", data_dir=tmp_path, web_port=0, partitions=2, app_id="internals-unit")
    with pytest.raises(RuntimeError, match=r"aiokafka:Producer\._ensure_producer"):
        create_worker(settings)
