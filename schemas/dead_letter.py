"""Dead letters: input that could not be processed, with the reason and the original bytes."""

from __future__ import annotations

from pydantic import AwareDatetime, BaseModel, ConfigDict


class DeadLetter(BaseModel):
    """One rejected message on ``shop.dead_letter``; ``original`` is the message as received."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str
    # "decode" (not a contract event), "process" (a rule failed on a valid event) or
    # "encode" (its changes, routed messages or state could not be encoded)
    stage: str
    original: str  # UTF-8 text of the message; invalid UTF-8 is escaped with backslashes
    original_base64: str | None = None  # set when the bytes were not valid UTF-8
    source_topic: str | None = None
    source_partition: int | None = None
    source_offset: int | None = None
    key: str | None = None
    failed_at: AwareDatetime
