"""``GET /customers/{id}``'s answers: the owner explains, another member names the owner, else 503 / 404."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.events import parse_event_obj
from streams.app import Worker, create_worker
from streams.customers import lookup, parse_at
from streams.faustx.bridge import TP, own_url
from streams.settings import Settings

OTHER = "http://10.0.0.2:6066"


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Worker:
    settings = Settings(store="memory", data_dir=tmp_path, web_port=6066, web_host="10.0.0.1", partitions=2)
    w = create_worker(settings)
    key = "c1"
    mine = w.processor.partitioner(key)
    theirs = 1 - mine
    ticks, changelog = settings.topics.ticks, w.table.changelog_topic_name
    monkeypatch.setattr(w.app.assignor, "assigned_actives", lambda: {TP(ticks, mine), TP(changelog, mine)})
    w.app.assignor.changelog_distribution = {own_url(w.app): {changelog: [mine]}, OTHER: {changelog: [theirs]}}
    monkeypatch.setattr(w, "restored", lambda: True)
    event = {
        "event_id": "e1",
        "type": "order_placed",
        "occurred_at": "2026-01-01T00:00:00Z",
        "customer_id": key,
        "order_id": "o1",
        "lines": [{"product_id": "p1", "quantity": 1, "unit_price": 12.5}],
    }
    state = w.processor.segmenter.on_event(None, parse_event_obj(event)).state
    assert state is not None
    w.commits.unstored[key.encode()] = state.to_bytes()  # computed, not stored yet: read first
    return w


def _key_on(worker: Worker, partition: int) -> str:
    return next(k for k in (f"k{i}" for i in range(100)) if worker.processor.partitioner(k) == partition)


def test_the_owner_explains(worker: Worker) -> None:
    status, body = lookup(worker, "c1", parse_at("2026-01-02T00:00:00Z"))
    assert status == 200
    assert body["worker"] == "http://10.0.0.1:6066" and body["partition"] == worker.processor.partitioner("c1")
    assert body["segments"]["new_customer"]["held"] and body["metrics"]["spend_365d"]["value"] == 12.5


def test_a_customer_of_another_member_is_redirected_to_it(worker: Worker) -> None:
    other = 1 - worker.processor.partitioner("c1")
    status, body = lookup(worker, _key_on(worker, other), 0)
    assert status == 421 and body["owner"] == OTHER and body["partition"] == other


def test_unknown_customer_is_404_and_no_owner_or_a_restore_is_503(
    worker: Worker, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine = worker.processor.partitioner("c1")
    assert lookup(worker, _key_on(worker, mine), 0)[0] == 404
    worker.app.assignor.changelog_distribution = {}
    assert lookup(worker, _key_on(worker, 1 - mine), 0)[0] == 503
    monkeypatch.setattr(worker, "restored", lambda: False)
    status, body = lookup(worker, "c1", 0)
    assert status == 503 and body["retry"] is True


def test_at_is_epoch_ms_or_an_instant_with_an_offset() -> None:
    assert parse_at("1767225600000") == 1767225600000
    assert parse_at("2026-01-01T00:00:00Z") == 1767225600000
    with pytest.raises(ValueError):
        parse_at("2026-01-01T00:00:00")
