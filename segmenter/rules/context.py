"""Thresholds of :class:`~segmenter.config.Rules` converted once for the hot path."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from segmenter.config import Rules


@dataclass(frozen=True, slots=True)
class Ctx:
    """The rules plus every duration in milliseconds."""

    rules: Rules
    session_ms: int
    new_ms: int
    default_gap_ms: int
    lapsed_ms: int
    order_window_ms: int
    researcher_ms: int
    hesitant_ms: int
    dissatisfied_ms: int
    referred_ms: int
    impulse_ms: int
    directed_ms: int
    abandon_ms: int
    dedup_ms: int
    order_keep_ms: int  # the longest window an order counts in (365-day figures, 90-day dissatisfied)
    # the rules as given, untyped, for evidence: 30 days stays 30 (a mypyc-compiled core would make the int value
    # of a float-typed rule 30.0 when read as a float)
    given: dict[str, Any]

    @classmethod
    def of(cls, rules: Rules) -> Ctx:
        """Derive the millisecond durations from ``rules``."""
        return cls(
            rules=rules,
            session_ms=rules.ms("session_timeout_minutes"),
            new_ms=rules.ms("new_customer_days"),
            default_gap_ms=rules.ms("default_order_gap_days"),
            lapsed_ms=rules.ms("lapsed_days"),
            order_window_ms=rules.ms("order_window_days"),
            researcher_ms=rules.ms("researcher_window_days"),
            hesitant_ms=rules.ms("hesitant_window_days"),
            dissatisfied_ms=rules.ms("dissatisfied_window_days"),
            referred_ms=rules.ms("referred_days"),
            impulse_ms=rules.ms("impulse_max_minutes"),
            directed_ms=rules.ms("directed_max_minutes"),
            abandon_ms=rules.ms("cart_abandon_minutes"),
            dedup_ms=rules.ms("dedup_window_days"),
            order_keep_ms=max(rules.ms("order_window_days"), rules.ms("dissatisfied_window_days")),
            given=rules.model_dump(),
        )
