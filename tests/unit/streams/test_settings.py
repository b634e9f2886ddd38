from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from segmenter.config import Rules
from streams.settings import Settings, Topics


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # the test runner may export SEGMENTER_KAFKA_BOOTSTRAP etc.; each test sets its own
    for name in list(os.environ):
        if name.startswith("SEGMENTER_"):
            monkeypatch.delenv(name)


def test_defaults() -> None:
    s = Settings()
    assert s.kafka_bootstrap == "127.0.0.1:9092"
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.topics == Topics(
        page_views="shop.page_views",
        carts="shop.carts",
        orders="shop.orders",
        changes="segments.changes",
        dead_letter="shop.dead_letter",
        routing="segmenter.routing",
        ticks="segmenter.ticks",
    )
    assert (s.partitions, s.app_id, s.store, s.web_port) == (8, "segmenter", "rocksdb", 6066)
    assert (s.tick_interval_seconds, s.idle_wallclock_advance, s.log_format) == (5, True, "auto")
    assert s.rules_file is None
    assert s.load_rules() == Rules()


def test_flat_fields_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTER_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    monkeypatch.setenv("SEGMENTER_REDIS_URL", "redis://r:6380/2")
    monkeypatch.setenv("SEGMENTER_PARTITIONS", "3")
    monkeypatch.setenv("SEGMENTER_STORE", "memory")
    monkeypatch.setenv("SEGMENTER_IDLE_WALLCLOCK_ADVANCE", "false")
    monkeypatch.setenv("SEGMENTER_LOG_FORMAT", "json")
    s = Settings()
    assert s.kafka_bootstrap == "k1:9092,k2:9092"
    assert s.redis_url == "redis://r:6380/2"
    assert s.partitions == 3
    assert s.store == "memory"
    assert s.idle_wallclock_advance is False
    assert s.log_format == "json"


def test_nested_topic_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTER_TOPICS__CHANGES", "crm.segments")
    s = Settings()
    assert s.topics.changes == "crm.segments"
    assert s.topics.orders == "shop.orders"


def test_topic_prefix_applies_to_every_topic_once() -> None:
    s = Settings(topic_prefix="t1.")
    assert s.topics.inputs() == ("t1.shop.page_views", "t1.shop.carts", "t1.shop.orders")
    assert s.topics.ticks == "t1.segmenter.ticks"
    again = Settings(topic_prefix="t1.", topics=s.topics)
    assert again.topics == s.topics


@pytest.mark.parametrize(
    ("event_type", "topic"),
    [
        ("page_view", "shop.page_views"),
        ("cart_add", "shop.carts"),
        ("cart_remove", "shop.carts"),
        ("checkout_started", "shop.carts"),
        ("order_placed", "shop.orders"),
        ("order_cancelled", "shop.orders"),
        ("order_returned", "shop.orders"),
        ("refund", None),
    ],
)
def test_topic_for_event_type(event_type: str, topic: str | None) -> None:
    assert Topics().for_event_type(event_type) == topic


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SEGMENTER_STORE", "postgres"),
        ("SEGMENTER_PARTITIONS", "0"),
        ("SEGMENTER_LOG_FORMAT", "xml"),
    ],
)
def test_invalid_values_are_rejected(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_rules_env_overrides_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTER_RULES__CART_ABANDON_MINUTES", "20")
    monkeypatch.setenv("SEGMENTER_RULES__LOYAL_MIN_ORDERS", "4")
    rules = Settings().load_rules()
    assert rules.cart_abandon_minutes == 20
    assert rules.loyal_min_orders == 4
    assert rules.best_min_spend == Rules().best_min_spend


def test_rules_file_then_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "rules.json"
    path.write_text(json.dumps({"cart_abandon_minutes": 90, "loyal_min_orders": 5}))
    monkeypatch.setenv("SEGMENTER_RULES_FILE", str(path))
    monkeypatch.setenv("SEGMENTER_RULES__LOYAL_MIN_ORDERS", "6")
    rules = Settings().load_rules()
    assert rules.cart_abandon_minutes == 90  # from the file
    assert rules.loyal_min_orders == 6  # env wins over the file
    assert rules.lapsed_days == Rules().lapsed_days  # default


def test_rules_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text("[rules]\nresearcher_min_products = 20\n")
    assert Settings(rules_file=path).load_rules().researcher_min_products == 20


def test_unknown_rule_name_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTER_RULES__CART_ABANDON_MINUTE", "20")
    with pytest.raises(ValidationError, match="cart_abandon_minute"):
        Settings()


def test_invalid_rule_value_fails_on_load() -> None:
    with pytest.raises(ValidationError, match="cart_abandon_minutes"):
        Settings(rules={"cart_abandon_minutes": "-1"}).load_rules()


def test_settings_are_frozen() -> None:
    s = Settings()
    with pytest.raises(ValidationError):
        s.partitions = 2  # type: ignore[misc]


def test_currency_rules_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMENTER_RULES__SHOP_CURRENCY", "GBP")
    monkeypatch.setenv("SEGMENTER_RULES__CURRENCY_RATES", '{"EUR": 0.86, "USD": 0.79}')
    rules = Settings().load_rules()
    assert (rules.shop_currency, rules.currency_rates) == ("GBP", {"EUR": 0.86, "USD": 0.79})
    monkeypatch.setenv("SEGMENTER_RULES__CURRENCY_RATES", '{"usd": -1}')
    with pytest.raises(ValueError, match="currency_rates"):
        Settings().load_rules()
