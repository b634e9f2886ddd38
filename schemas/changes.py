"""Segment changes: what subscribers receive on ``segments.changes``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

ChangeKind = Literal["entered", "exited", "detected"]


class DefinitionRef(BaseModel):
    """Which operator-defined segment (and which version of its file) made a change."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    version: int = Field(ge=1)


class SegmentChange(BaseModel):
    """One change of one customer's segments, with its reason and evidence."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    change_id: str = Field(min_length=1, description="Deterministic: same input, same id.")
    customer_id: str | None
    anonymous_id: str | None
    segment: str = Field(min_length=1)
    change: ChangeKind
    occurred_at: AwareDatetime = Field(description="Event time at which the change took effect.")
    reason: str = Field(min_length=1, description="One human sentence.")
    evidence: dict[str, Any]
    trigger_event_id: str | None = Field(description="Null when time passing caused the change.")
    definition: DefinitionRef | None = Field(
        default=None, description="Only on changes of operator-defined segments: their name and version."
    )
    origin: Literal["backfill"] | None = Field(
        default=None,
        description="Only on changes made when a worker judged restored states under new or removed definitions.",
    )
