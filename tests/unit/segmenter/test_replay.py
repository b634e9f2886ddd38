"""The embedded replay on the shipped samples, and the ``segmenter replay`` command."""

from __future__ import annotations

import gzip
import json
from collections import Counter
from pathlib import Path

import pytest
from journeys import BASE, DAY, MIN, cart_add, order_placed, page_view

from schemas.changes import SegmentChange
from segmenter.replay import ReplayStats, replay
from streams.cli import main

SAMPLES = sorted((Path(__file__).resolve().parents[3] / "data" / "sample").glob("*.jsonl.gz"))


def _replay(sources: list[tuple[str, list[bytes]]], **kw: object) -> tuple[bytes, ReplayStats, list]:
    out: list[bytes] = []
    invalid: list[tuple[str, int, str]] = []
    stats = ReplayStats()
    engine = replay(
        sources,
        lambda c: out.append(c.to_json() + b"\n"),
        on_invalid=lambda name, n, reason: invalid.append((name, n, reason)),
        stats=stats,
        **kw,  # type: ignore[arg-type]
    )
    stats.engine = engine  # type: ignore[attr-defined]
    return b"".join(out), stats, invalid


def _sample(path: Path) -> list[bytes]:
    with gzip.open(path, "rb") as fh:
        return fh.readlines()


def test_the_samples_are_shipped() -> None:
    assert {p.name for p in SAMPLES} >= {"online_retail_sample.jsonl.gz", "rees46_sample.jsonl.gz"}


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_replay_of_a_sample_is_byte_identical_twice(path: Path) -> None:
    lines = _sample(path)
    first, stats, invalid = _replay([(path.name, lines)])
    second, _, _ = _replay([(path.name, lines)])
    assert first == second
    assert invalid == []
    assert stats.events_read == len([x for x in lines if x.strip()])
    assert sum(stats.changes.values()) == first.count(b"\n") > 0
    for raw in first.splitlines()[:200]:
        SegmentChange.model_validate_json(raw)  # every line is a contract change


@pytest.mark.parametrize("name", ["online_retail_sample.jsonl.gz", "rees46_sample.jsonl.gz", "otto_sample.jsonl.gz"])
def test_the_samples_average_under_one_kilobyte_of_state_per_customer(name: str) -> None:
    # the target, as stored; the OTTO sample's 20 visitors with very long sessions average ~1.8 KB of
    # JSON, which only deflating (states over 512 bytes) brings under it
    path = next(p for p in SAMPLES if p.name == name)
    _, stats, _ = _replay([(path.name, _sample(path))])
    states = stats.engine.states  # type: ignore[attr-defined]
    average = sum(len(s.to_bytes()) for s in states.values()) / len(states)
    assert average <= 1024, (path.name, average)


def test_invalid_lines_are_reported_with_their_line_number_and_the_replay_carries_on() -> None:
    good = [json.dumps(e).encode() for e in (page_view(0, "home"), cart_add(MIN), order_placed(2 * MIN))]
    lines = [
        good[0],
        b"{not json\n",
        good[1],
        b"\n",  # blank lines are skipped, not invalid, but still counted for line numbers
        json.dumps({**json.loads(good[2]), "customer_id": None}).encode(),  # no id at all
        json.dumps({**json.loads(good[2]), "type": "wishlist_add"}).encode(),
        good[2],
    ]
    out, stats, invalid = _replay([("mixed.jsonl", lines)])
    assert [(name, n) for name, n, _ in invalid] == [("mixed.jsonl", 2), ("mixed.jsonl", 5), ("mixed.jsonl", 6)]
    assert "customer_id or anonymous_id" in invalid[1][2]
    assert invalid[2][2].startswith("type")
    assert (stats.events_read, stats.invalid) == (3, 3)
    # the valid events after the bad lines were all applied
    changes = [json.loads(x) for x in out.splitlines()]
    assert ("new_customer", "entered") in {(c["segment"], c["change"]) for c in changes}


def test_replay_fires_deadlines_up_to_the_last_event_or_until() -> None:
    lines = [json.dumps(e).encode() for e in (cart_add(0, cid="a"), page_view(2 * DAY, "home", cid="b"))]
    out, _, _ = _replay([("x", lines)])
    assert b'"cart_abandoned"' in out  # due long before the last event's time, fired by time alone
    # as of 30 minutes in: the later event is skipped, the cart is not abandoned yet
    out, stats, _ = _replay([("x", lines)], until_ms=BASE + 30 * MIN)
    assert stats.after_until == 1
    assert b'"cart_abandoned"' not in out
    out, _, _ = _replay([("x", lines[:1])], until_ms=BASE + 61 * MIN)
    assert b'"cart_abandoned"' in out  # advanced past the last event, up to --until


def test_deadlines_of_several_customers_fire_in_time_order_across_them() -> None:
    # c1's stages run for a year while c2's referral ends in June: one advance over both emits June first
    # (a key firing all its deadlines at once put c1's later changes before c2's; found by hypothesis)
    events = [
        page_view(0, "product", "p1", cid="c1"),
        page_view(45 * DAY, "product", "p1", cid="c1"),
        {**page_view(90 * DAY, "product", "p1", cid="c2"), "referred_by": "r1"},
        cart_add(490 * DAY, cid="c1"),
    ]
    out, _, _ = _replay([("x", [json.dumps(e).encode() for e in events])])
    times = [json.loads(line)["occurred_at"] for line in out.splitlines()]
    assert "referred_customer" in out.decode() and times == sorted(times)


def test_cli_replay_writes_the_same_changes_as_the_library(tmp_path: Path) -> None:
    events = [page_view(0, "home"), cart_add(MIN), order_placed(2 * MIN), page_view(100 * DAY, "home", cid="c2")]
    src = tmp_path / "events.jsonl.gz"
    with gzip.open(src, "wb") as fh:
        fh.write(b"".join(json.dumps(e).encode() + b"\n" for e in events) + b"oops\n")
    out = tmp_path / "changes.jsonl"
    assert main(["replay", str(src), "--out", str(out), "--quiet"]) == 0
    expected, _, _ = _replay([(str(src), [json.dumps(e).encode() for e in events])])
    assert out.read_bytes() == expected
    written = Counter((c["segment"], c["change"]) for c in map(json.loads, out.read_bytes().splitlines()))
    assert written[("at_risk", "entered")] == 1  # time alone, up to the last event's time


def test_cli_replay_with_until(tmp_path: Path) -> None:
    src = tmp_path / "events.jsonl"
    src.write_bytes(json.dumps(order_placed(0)).encode() + b"\n")
    out = tmp_path / "changes.jsonl"
    assert main(["replay", str(src), "--out", str(out), "--until", "2025-06-01T00:00:00+00:00", "--quiet"]) == 0
    segments = [
        (c["segment"], c["change"], c["trigger_event_id"]) for c in map(json.loads, out.read_bytes().splitlines())
    ]
    assert ("lapsed", "entered", None) in segments


def test_cli_replay_now_pins_the_clock_events_may_not_run_ahead_of(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the journey is of 2024-01-01; one device's clock says a year later
    events = [page_view(0, "home"), page_view(366 * DAY, "home", cid="c2", eid="wrong-clock"), cart_add(MIN)]
    src = tmp_path / "events.jsonl"
    src.write_bytes(b"".join(json.dumps(e).encode() + b"\n" for e in events))
    runs = []
    for now in ("2024-01-02T00:00:00+00:00", "2024-01-02T00:00:00+00:00", "2025-01-02T00:00:00+00:00"):
        out = tmp_path / f"changes-{len(runs)}.jsonl"
        capsys.readouterr()
        assert main(["replay", str(src), "--out", str(out), "--now", now]) == 0
        runs.append((out.read_bytes(), capsys.readouterr().err))
    assert runs[0][0] == runs[1][0]  # same input and --now: the same bytes
    assert "events.jsonl:2: invalid event: occurred_at: 8,760.0 hours ahead of the clock" in runs[0][1]
    assert b"wrong-clock" not in runs[0][0]
    # with a clock of a year later the event is in time: c2 appears, and c1 is lapsed by then
    assert b"wrong-clock" in runs[2][0] and b'"lapsed"' in runs[2][0]
    with pytest.raises(SystemExit, match="--now"):
        main(["replay", str(src), "--now", "not a time", "--quiet"])
