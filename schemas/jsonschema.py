"""JSON Schema of every contract model, for webshop teams validating in other languages."""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter

from schemas.changes import SegmentChange
from schemas.dead_letter import DeadLetter
from schemas.events import EVENT_TYPES, InputEvent


def export_all() -> dict[str, dict[str, Any]]:
    """Return ``{file name: JSON Schema}`` for the input union, each event type and the outputs."""
    out: dict[str, dict[str, Any]] = {
        "input_event.schema.json": TypeAdapter(InputEvent).json_schema(),
        "segment_change.schema.json": SegmentChange.model_json_schema(),
        "dead_letter.schema.json": DeadLetter.model_json_schema(),
    }
    for name, model in EVENT_TYPES.items():
        out[f"{name}.schema.json"] = model.model_json_schema()
    return out
