"""Operator-defined segments run beside the catalogue: the engine's hook.

:class:`Definitions` is handed to :class:`~segmenter.engine.Segmenter`; at every evaluation of a key
(an event, or its deadline firing) it judges every definition after the catalogue, so ``in_segment``
sees the catalogue's memberships of that instant:

* a trait is entered when ``when`` holds (with ``enter_on``, only at an event of those types: never by
  time passing) and exited when it stops holding; a member with
  ``exit_margin`` stays while the condition holds with each margin metric shifted by up to its margin
  (``spend_365d >= 300`` with a margin of 30 exits only below 270);
* a moment is detected on an event for which ``when`` holds (never by time passing);
* a trait contributes to the key's next deadline the earliest instant its condition can change with no
  event: the next step of a windowed metric it reads, or the crossing instant of a comparison with a
  ``days_since_*`` figure, so a time-based change fires at its own instant (replay) and with the
  catalogue's deadlines (worker).

Memberships live in the state's ``members`` beside the catalogue's, under the definition's name; the
state's ``definitions`` records the version of each trait it was judged by (see
:meth:`~segmenter.engine.Segmenter.backfill`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from schemas.events import InputEvent
from segmenter.changes import DETECTED, ENTERED, EXITED, Change
from segmenter.config import Rules
from segmenter.definitions import expr
from segmenter.definitions.loader import MOMENT, TRAIT, Definition, fill, order
from segmenter.exact import Fraction
from segmenter.metrics.registry import BY_NAME, FALLS, MOVED_BY, WINDOW, reader
from segmenter.rules.context import Ctx
from segmenter.state import CustomerState


def _shown(value: float | int | Fraction | str | None) -> str:
    """A figure in a reason: rounded down to 2 decimals (never across a threshold upwards)."""
    if isinstance(value, Fraction):
        value = float(value)
    if value is None:
        return "none"
    if isinstance(value, str):
        return value
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    down = math.floor(value * 100) / 100
    return f"{down:.2f}".rstrip("0").rstrip(".")


def _evidence(value: float | int | Fraction | str | None) -> float | int | str | None:
    if isinstance(value, Fraction):
        value = float(value)
    if isinstance(value, float) and math.isfinite(value):
        return int(value) if value.is_integer() else math.floor(value * 10_000) / 10_000
    return value


def _stepped(readers: tuple[tuple[str, int, bool], ...], members: dict[str, int]) -> bool:
    """Whether a step of a windowed metric can change one of the traits reading it: a member can stop holding
    unless a fall only makes it more true; a non-member can start unless a fall only makes it less true, or
    it is entered only at events (time passing is no reason to enter)."""
    for name, way, enter_on in readers:
        if name in members:
            if way != -1:
                return True
        elif way != 1 and not enter_on:
            return True
    return False


def _moves(kind: str, metric: str) -> bool:
    moved = MOVED_BY[metric]
    return moved is None or kind in moved


class Definitions:
    """The checked definitions of a directory, ready to run."""

    def __init__(self, definitions: Sequence[Definition], rules: Rules | None = None, incremental: bool = True) -> None:
        self.rules = rules if rules is not None else Rules()
        self.incremental = incremental  # False: every trait judged at every event (the tests' reference)
        self.all = tuple(order(list(definitions)))
        # each condition compiled under the rules in force (its rules.<name> read there); the reference judges
        # clocked comparisons slightly early, as the general way does, and re-judges there
        self._conditions = {d.name: d.compiled(self.rules, exact=incremental) for d in self.all}
        self._shown_rules = {
            d.name: {f"rules.{r}": _shown(expr.rule_value(self.rules, r)) for r in d.rules} for d in self.all
        }
        self.traits = tuple(d for d in self.all if d.kind == TRAIT)
        self.moments = tuple(d for d in self.all if d.kind == MOMENT)
        # what a state records it was judged by (CustomerState.definitions); the backfill compares it
        self.versions: dict[str, int] = {d.name: d.version for d in self.traits}
        # what time alone moves: the traits' windowed metrics (their next steps) and clocked comparisons
        # (one metric per distinct step function: the order metrics of a year step together)
        groups: dict[Any, list[str]] = {}
        for d in self.traits:
            for m in d.metrics:
                step = BY_NAME[m].next_step
                if BY_NAME[m].time == WINDOW and m not in groups.setdefault(step, []):
                    groups[step].append(m)
        self.steps: tuple[tuple[str, tuple[tuple[str, int, bool], ...] | None], ...] = tuple(
            (names[0], self._readers(names) if incremental else None) for names in groups.values()
        )
        self.clocked = tuple(d for d in self.traits if self._conditions[d.name].clocked)
        # per event type, the traits an event of it can move: one reading a metric the type changes, a
        # membership of another segment or the event, or entered only at that type (its condition may hold
        # already); at any other trait the event changes nothing it reads
        types = {t for moved in MOVED_BY.values() if moved is not None for t in moved}
        self._moved_at: dict[str, tuple[Definition, ...]] = {
            kind: tuple(
                d
                for d in self.traits
                if d.segments or d.fields or kind in d.enter_on or any(_moves(kind, m) for m in d.metrics)
            )
            for kind in types
        }
        # the values the last evaluation read, for the deadlines asked right after it of the same state (the
        # engine asks them before anything changes it): taken once, by that state at that instant only
        self._judged: tuple[CustomerState, int, expr.Env] | None = None

    def _readers(self, names: list[str]) -> tuple[tuple[str, int, bool], ...]:
        """The traits whose condition reads a metric of one step function: (name, how its truth goes with
        them, entered only at events). How: 1 a fall of them can only make it less true, -1 only more true,
        0 either (a metric time may raise, or no such simple shape)."""
        out: list[tuple[str, int, bool]] = []
        for d in self.traits:
            found = (expr.monotone(self._conditions[d.name].node, m) for m in names if m in d.metrics)
            ways = {w for w in found if w is not None}
            if not ways:
                continue  # read by its reason only
            way = ways.pop() if len(ways) == 1 and all(m in FALLS for m in names if m in d.metrics) else 0
            out.append((d.name, way, bool(d.enter_on)))
        return tuple(out)

    def bound(self, rules: Rules) -> Definitions:
        """These definitions under ``rules`` (themselves when those are the rules they were built with)."""
        return self if rules == self.rules else Definitions(self.all, rules, self.incremental)

    def condition(self, d: Definition) -> expr.Condition:
        """``d``'s condition as judged under these rules."""
        return self._conditions[d.name]

    def __len__(self) -> int:
        return len(self.all)

    def _env(
        self,
        s: CustomerState,
        t: int,
        c: Ctx,
        event: InputEvent | expr.Occurrence | None,
        derived: dict[str, float | str] | None = None,
    ) -> expr.Env:
        members = s.members
        return expr.Env(reader(s, t, c), members.__contains__, event, derived)

    def evaluate(
        self,
        s: CustomerState,
        t: int,
        c: Ctx,
        trigger: str | None,
        event: InputEvent | None,
        out: list[Change],
        moments: Sequence[tuple[str, dict[str, Any], str]] = (),
        everything: bool = False,
    ) -> None:
        """Judge the definitions at ``t`` (after the catalogue); append the changes to ``out``.

        ``event``: the event just applied (``None``: time passing, moments are not judged); ``moments``: the
        catalogue's moments it caused (an order's ``impulse_buy`` gives ``event.impulse_products``);
        ``everything``: judge every trait (the state's first event, or a visitor's history merged with it).

        At an event, only the traits it can move are judged (:data:`MOVED_BY`), when the state was judged under
        these definitions before and no deadline is due at ``t``: any other trait reads the values of its last
        evaluation (events since changed none of them, and time would have fired a deadline first).
        """
        traits = self.traits
        if s.definitions != self.versions:  # judged under these (the backfill reads it)
            s.definitions = dict(self.versions)
        elif event is not None and not everything and self.incremental and (s.due_ms is None or s.due_ms > t):
            traits = self._moved_at.get(event.type, traits)
        self._judged = None
        if s.first_seen_ms is None or s.linked_to is not None:
            return  # a visitor merged into a customer: its history counts there
        derived: dict[str, float | str] | None = None
        if event is not None and event.type == "order_placed":
            impulse = [ev["impulse_products"] for seg, ev, _ in moments if seg == "impulse_buy"]
            derived = {"impulse_products": len(impulse[0]) if impulse else 0}
        env = self._env(s, t, c, event, derived)
        members = s.members
        for d in traits:
            was = d.name in members
            member = self._conditions[d.name].holds(env, was)
            if member == was:
                continue
            if member:
                if d.enter_on and (event is None or event.type not in d.enter_on):
                    continue  # entered only at those events: time passing or another event is no reason to
                members[d.name] = t
                out.append(self._change(s, d, ENTERED, t, env, trigger, ""))
            else:
                del members[d.name]
                out.append(self._change(s, d, EXITED, t, env, trigger, f"No longer {d.name}: "))
        if event is not None:
            for d in self.moments:
                if self._conditions[d.name].holds(env):
                    out.append(self._change(s, d, DETECTED, t, env, trigger, ""))
        self._judged = (s, t, env)

    def detect(
        self, s: CustomerState, t: int, c: Ctx, moment: tuple[str, dict[str, Any], str], out: list[Change]
    ) -> None:
        """Judge the moments at a catalogue moment that no event carries (a cart's abandonment at ``t``):
        ``event.type`` is its name, ``event.units`` the units it concerns."""
        if not self.moments or s.first_seen_ms is None or s.linked_to is not None:
            return
        segment, ev, _ = moment
        env = self._env(s, t, c, expr.Occurrence(segment, {"units": ev["items"]}))
        for d in self.moments:
            if self._conditions[d.name].holds(env):
                out.append(self._change(s, d, DETECTED, t, env, None, ""))

    def deadlines(self, s: CustomerState, t: int, c: Ctx, times: list[int]) -> None:
        """Append the instants after ``t`` at which a trait's condition can change with no event."""
        judged, self._judged = self._judged, None
        if not self.traits or s.first_seen_ms is None or s.linked_to is not None:
            return
        # after an event at t the engine asks from t - 1, after a deadline at t from t: the values judged
        env = after = None
        t0 = t
        if judged is not None and judged[0] is s:
            env = judged[2] if judged[1] == t else None
            after = judged[2] if judged[1] == t + 1 else None
            if after is not None and self.incremental:
                # the values of the event's own instant, judged with it: what changes after it (those of
                # t - 1 would leave out the event's own records; the reference reads them, slightly early)
                env, t0 = after, t + 1
        env = env or self._env(s, t, c, None)
        after = after or self._env(s, t + 1, c, None)
        for d in self.clocked:
            times.extend(self._conditions[d.name].crossings(env, after, t0, d.name in s.members))
        members = s.members
        for m, readers in self.steps:
            if readers is not None and not _stepped(readers, members):
                continue
            at = BY_NAME[m].next_change(s, t, c)
            if at is not None:
                times.append(at)

    def _change(
        self, s: CustomerState, d: Definition, kind: str, t: int, env: expr.Env, trigger: str | None, lead: str
    ) -> Change:
        figures: dict[str, Any] = {m: env.metric(m) for m in d.metrics}
        figures.update({f"event.{f}": env.field(f) for f in d.fields})
        why = lead + fill(d.reason, {**{k: _shown(v) for k, v in figures.items()}, **self._shown_rules[d.name]})
        evidence = {k: _evidence(v) for k, v in figures.items()}
        return Change(s.key, s.customer_id, s.anonymous_id, d.name, kind, t, why, evidence, trigger, d.ref)
