"""Shared fixtures: real Kafka and Redis for integration tests, unique names per test.

A test that needs the services fails loudly when they cannot be started: a
skipped Kafka test is a test nobody runs.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import NamedTuple

import pytest
from services import ensure_services, services_started_by_us, stop_services

from streams.settings import Settings


class Services(NamedTuple):
    bootstrap: str
    redis_url: str


class KafkaNames(NamedTuple):
    topic_prefix: str
    group_id: str


class RedisSpace(NamedTuple):
    url: str
    prefix: str


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    """``(bootstrap, redis_url)`` of a real Kafka broker and redis-server."""
    try:
        bootstrap, redis_url = ensure_services()
    except RuntimeError as exc:
        required = os.environ.get("SEGMENTER_REQUIRE_SERVICES") == "1"
        pytest.fail(
            "integration tests need Kafka and Redis"
            + (" (SEGMENTER_REQUIRE_SERVICES=1)" if required else "")
            + f"; scripts/services.sh could not provide them:\n{exc}",
            pytrace=False,
        )
    yield Services(bootstrap, redis_url)
    from tests.integration.harness import delete_test_redis_keys, delete_test_topics

    delete_test_redis_keys()
    try:
        delete_test_topics(bootstrap)
    except Exception as exc:  # noqa: BLE001 - the tests ran; a leftover topic is not their failure
        warnings.warn(f"could not delete this session's test topics: {exc!r}", stacklevel=1)
    if services_started_by_us():
        stop_services()


@pytest.fixture
def unique_id() -> str:
    from tests.integration.harness import TOPIC_TOKENS

    uid = uuid.uuid4().hex[:12]
    TOPIC_TOKENS.append(uid)  # topics named with it are deleted after the session
    return uid


@pytest.fixture
def kafka_names(unique_id: str) -> KafkaNames:
    """A topic prefix and consumer group nobody else uses."""
    return KafkaNames(topic_prefix=f"t{unique_id}.", group_id=f"g{unique_id}")


@pytest.fixture
def settings(services: Services, kafka_names: KafkaNames, unique_id: str) -> Settings:
    """Settings pointing at the real services, with this test's own topics, group and keys."""
    return Settings(
        kafka_bootstrap=services.bootstrap,
        redis_url=services.redis_url,
        topic_prefix=kafka_names.topic_prefix,
        app_id=kafka_names.group_id,
        redis_prefix=f"test:{unique_id}:",
        partitions=3,
    )


@pytest.fixture
async def redis_space(services: Services, unique_id: str) -> AsyncIterator[RedisSpace]:
    """A key prefix of this test's own in the real Redis; its keys are deleted afterwards."""
    from tests.integration.harness import delete_redis_keys

    space = RedisSpace(url=services.redis_url, prefix=f"test:{unique_id}:")
    yield space
    delete_redis_keys(space.url, space.prefix)


@pytest.fixture
def cli_env(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The environment that makes ``segmenter ...`` commands use ``settings``."""
    for name in list(os.environ):
        if name.startswith("SEGMENTER_") and name != "SEGMENTER_REQUIRE_SERVICES":
            monkeypatch.delenv(name)
    monkeypatch.setenv("SEGMENTER_KAFKA_BOOTSTRAP", settings.kafka_bootstrap)
    monkeypatch.setenv("SEGMENTER_REDIS_URL", settings.redis_url)
    monkeypatch.setenv("SEGMENTER_TOPIC_PREFIX", settings.topic_prefix)
    monkeypatch.setenv("SEGMENTER_APP_ID", settings.app_id)
    monkeypatch.setenv("SEGMENTER_REDIS_PREFIX", settings.redis_prefix)
    monkeypatch.setenv("SEGMENTER_PARTITIONS", str(settings.partitions))
    return settings
