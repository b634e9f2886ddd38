"""Configuration of the streaming shell: the only place the environment is read.

Every field is ``SEGMENTER_<FIELD>`` (nested sections with ``__``, e.g.
``SEGMENTER_TOPICS__CHANGES``, ``SEGMENTER_RULES__CART_ABANDON_MINUTES``).
Thresholds resolve as: ``SEGMENTER_RULES__*`` over ``rules_file`` over the
defaults of :class:`segmenter.config.Rules`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from segmenter.config import Rules
from segmenter.definitions import Definitions, load_dir


class Topics(BaseModel):
    """Kafka topic names (before ``topic_prefix`` is applied)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    page_views: str = "shop.page_views"
    carts: str = "shop.carts"
    orders: str = "shop.orders"
    changes: str = "segments.changes"
    dead_letter: str = "shop.dead_letter"
    # internal: re-keying by customer and the timer's ticks (FAUST-NOTES: timers produce ticks)
    routing: str = "segmenter.routing"
    ticks: str = "segmenter.ticks"

    def inputs(self) -> tuple[str, str, str]:
        """The three topics webshops write to."""
        return (self.page_views, self.carts, self.orders)

    def prefixed(self, prefix: str) -> Topics:
        """Every name with ``prefix`` in front (idempotent: a name that has it keeps it)."""
        return Topics(
            **{name: value if value.startswith(prefix) else prefix + value for name, value in self.model_dump().items()}
        )

    def for_event_type(self, event_type: str) -> str | None:
        """The input topic an event of ``event_type`` belongs on, or None for an unknown type."""
        if event_type == "page_view":
            return self.page_views
        if event_type in ("cart_add", "cart_remove", "checkout_started"):
            return self.carts
        if event_type.startswith("order_"):
            return self.orders
        return None


class Settings(BaseSettings):
    """Everything the worker and the operational commands need, from ``SEGMENTER_*``."""

    model_config = SettingsConfigDict(
        env_prefix="SEGMENTER_",
        env_nested_delimiter="__",
        # the services script and tests set other SEGMENTER_* variables (ports, REQUIRE_SERVICES)
        extra="ignore",
        frozen=True,
    )

    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    # prepended to every topic name: several deployments (or tests) can share one cluster;
    # `topics` holds the final names
    topic_prefix: str = ""
    topics: Topics = Topics()
    partitions: int = Field(8, ge=1)
    replication_factor: int = Field(1, ge=1)
    app_id: str = Field("segmenter", min_length=1, description="Faust app id and consumer group.")
    store: Literal["memory", "rocksdb"] = "rocksdb"
    data_dir: Path = Path("var/segmenter")
    # prefix of every Redis key the serving layer writes (streams/store.py)
    redis_prefix: str = "seg:"
    # the serving writer (streams/serving.py): Redis follows the changes topic in its own consumer group
    # (default "<app_id>-serving"); it runs inside `segmenter worker` unless switched off (then `segmenter serve`)
    serving_group: str | None = None
    serving_in_worker: bool = True
    web_port: int = Field(6066, ge=0, le=65535)
    # the host other workers and `segmenter explain` reach this worker's web port at (its address in the
    # group's assignment, Faust's web_host); default the machine's host name
    web_host: str | None = None
    tick_interval_seconds: float = Field(5, gt=0)
    # without it, a partition that stops receiving events never fires its deadlines
    idle_wallclock_advance: bool = True
    # a fetch that found a topic-partition read to its end vouches for what was read this long before it:
    # longer than the producers' cross-topic reorder as the merge meets it (segmenter_merge_reorder_seconds:
    # 0 ms for aiokafka producers, up to 50-75 ms for a librdkafka one here; streams/sequencer.py, README)
    merge_grace_seconds: float = Field(0.1, gt=0, le=10)
    # a fetch waits at the broker until this much is there or the wait is over: at low rates fewer, larger
    # batches (the per-batch round trips were most of an idle worker's CPU) for at most the wait in latency
    fetch_min_bytes: int = Field(64 * 1024, ge=1)
    fetch_max_wait_ms: int = Field(10, ge=0, le=1500)
    lag_threshold_seconds: float = Field(120, gt=0)
    # customer states kept decoded between batches (saves a store read and a decode per event of a hot key)
    state_cache_size: int = Field(20_000, ge=0)
    # restored states judged again under new definitions per commit of the backfill pass (a batch's size)
    backfill_chunk: int = Field(2000, ge=1)
    log_format: Literal["auto", "json", "text"] = "auto"
    rules_file: Path | None = None
    # operator-defined segments (YAML files, `segmenter validate DIR`): run beside the catalogue
    segments_dir: Path | None = None
    rules: dict[str, Any] = Field(default_factory=dict)

    @field_validator("rules")
    @classmethod
    def _known_rule_names(cls, value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(Rules.model_fields))
        if unknown:
            raise ValueError(f"unknown threshold(s) {', '.join(unknown)}; see `segmenter segments` for the names")
        return value

    @model_validator(mode="after")
    def _apply_topic_prefix(self) -> Settings:
        if self.topic_prefix:
            # frozen model: bypass __setattr__ once, during validation
            object.__setattr__(self, "topics", self.topics.prefixed(self.topic_prefix))
        return self

    def load_definitions(self) -> Definitions | None:
        """The operator-defined segments of ``segments_dir`` (``None`` without one); a mistake raises
        :class:`~segmenter.definitions.DefinitionError` naming file, line and column: the worker does not
        start on a directory ``segmenter validate`` rejects."""
        if self.segments_dir is None:
            return None
        return Definitions(load_dir(self.segments_dir))

    @property
    def serving_group_id(self) -> str:
        return self.serving_group or f"{self.app_id}-serving"

    def load_rules(self) -> Rules:
        """Thresholds in force: env overrides over ``rules_file`` over the defaults."""
        base: dict[str, Any] = {}
        if self.rules_file is not None:
            base = Rules.from_file(self.rules_file).model_dump(exclude_unset=True)
        return Rules.model_validate({**base, **self.rules})
