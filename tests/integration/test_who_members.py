from __future__ import annotations

import asyncio
import json

import pytest
from conftest import RedisSpace
from store_contract import change

from streams.cli import main
from streams.settings import Settings
from streams.store import RedisStore

pytestmark = pytest.mark.integration


@pytest.fixture
def served(cli_env: Settings, redis_space: RedisSpace) -> Settings:
    assert redis_space.prefix == cli_env.redis_prefix  # cleaned up by redis_space

    async def fill() -> None:
        store = RedisStore.from_url(cli_env.redis_url, prefix=cli_env.redis_prefix)
        try:
            await store.apply_many(
                [
                    change("a", customer_id="c1", at="2024-03-01T10:00:00+00:00"),
                    change("b", customer_id="c2", at="2024-02-01T10:00:00+00:00"),
                    change("c", segment="at_risk", customer_id="c1", reason="No order for 70 days."),
                    change("d", "detected", segment="cart_abandoned", customer_id="c1", reason="Cart left."),
                ]
            )
        finally:
            await store.close()

    asyncio.run(fill())
    return cli_env


def test_who_json(served: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who", "c1", "--json"]) == 0
    found = json.loads(capsys.readouterr().out)
    assert found["customer"] == "c1"
    assert sorted(found["segments"]) == ["at_risk", "loyal_customer"]
    assert found["segments"]["at_risk"]["reason"] == "No order for 70 days."
    assert [m["segment"] for m in found["moments"]] == ["cart_abandoned"]


def test_who_text(served: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who", "c1"]) == 0
    out = capsys.readouterr().out
    assert "loyal_customer" in out
    assert "No order for 70 days." in out
    assert "cart_abandoned" in out


def test_who_unknown_customer(served: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["who", "nobody"]) == 0
    assert "in no segment" in capsys.readouterr().out


def test_members_oldest_first(served: Settings, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["members", "loyal_customer"]) == 0
    assert capsys.readouterr().out.split() == ["c2", "c1"]
    assert main(["members", "loyal_customer", "--count"]) == 0
    assert capsys.readouterr().out.strip() == "2"
    assert main(["members", "loyal_customer", "--json", "--limit", "1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"segment": "loyal_customer", "count": 2, "members": ["c2"]}


@pytest.mark.parametrize("argv", [["who", "c1"], ["members", "loyal_customer", "--count"]])
def test_unreachable_redis_is_one_line_and_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*argv, "--redis-url", "redis://127.0.0.1:1/0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("segmenter: cannot read from Redis at redis://127.0.0.1:1/0")
    assert len(captured.err.strip().splitlines()) == 1
