"""Applying events, routed messages and the passing of time to customer states.

:class:`Segmenter` is the functional core both shells run: it takes the state
of one key and an input (an event, a routed message, or "advance to T") and
returns an :class:`Outcome`: the new state to store, the segment changes to
publish and the messages to route to other keys. It never stores anything.

:class:`Engine` is the embedded shell of ``segmenter replay``: states in a
dict, deadlines in a :class:`~segmenter.clock.DeadlineIndex`, routed messages
through an in-process FIFO.
"""

from __future__ import annotations

import gc
from collections import deque
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import orjson
from mypy_extensions import mypyc_attr

from schemas.events import InputEvent, parse_event_obj
from segmenter.apply import Moment, abandon, abandon_due, fold, merge
from segmenter.catalogue import catalogue
from segmenter.changes import BACKFILL, DETECTED, ENTERED, EXITED, Change
from segmenter.clock import DeadlineIndex
from segmenter.config import Rules
from segmenter.metrics.kept import add_event_id, event_code, has_event_id
from segmenter.routing import APPLY, CREDIT, EVENT, LINK, MERGE, UNCREDIT, Routed
from segmenter.rules import lifecycle, traits
from segmenter.rules.context import Ctx
from segmenter.rules.reasons import reason
from segmenter.state import CustomerState, cap

if TYPE_CHECKING:
    from segmenter.definitions.runtime import Definitions

Verdicts = dict[str, tuple[bool, dict[str, Any]]]
Evidence = dict[str, Any] | Callable[[], dict[str, Any]]
"""A verdict's evidence, or what builds it (only a change shows it)."""

ALL: Final = frozenset(traits.FAMILIES)
STAGES: Final = frozenset(lifecycle.STAGES)
# the rule families an event of each type can change (time passing re-evaluates ALL); a page view
# counts as a product view only with a product: other page views cannot change researcher or
# category_fan (their time windows move only at scheduled deadlines, which fire first)
VIEW_FAMILIES: Final = frozenset({"views", "referral", "fan"})
# a page view that did not bring a referral changes nothing referral decides on (advocate counts credits only;
# referred_customer's end moves only with the referral or the first order): with no change point at its instant
# (that one is judged with the event), the family's verdicts are those of its last evaluation
WITHOUT_REFERRAL: Final = {VIEW_FAMILIES: frozenset({"views", "fan"}), frozenset({"referral"}): frozenset()}
AFFECTS: Final[dict[str, frozenset[str]]] = {
    "product_view": VIEW_FAMILIES,
    "page_view": frozenset({"referral"}),
    "cart_add": frozenset({"carts"}),
    "cart_remove": frozenset({"carts"}),
    "checkout_started": frozenset(),
}

# what time passing alone can change: category_fan depends on the latest views and units only, and researcher,
# when not held, cannot come to hold (the window only loses views)
TIME_FAMILIES: Final = ALL - {"fan"}
TIME_NOT_VIEWS: Final = TIME_FAMILIES - {"views"}


# what a membership of the catalogue is named (category_fan's are ``category_fan:<category>``); any other
# member is an operator-defined segment's
CATALOGUE_NAMES = frozenset(e["name"] for e in catalogue(Rules())) | STAGES | {"category_fan"}


def is_catalogue_segment(segment: str) -> bool:
    """Whether a membership named ``segment`` is the catalogue's (else an operator-defined segment's)."""
    return segment.partition(":")[0] in CATALOGUE_NAMES


# traits entered only at an event of these types, never by time passing alone (SEGMENTS.md "Edges")
ENTERED_ONLY_BY: Final[dict[str, frozenset[str]]] = {"dissatisfied": frozenset({"order_cancelled", "order_returned"})}


_TRAITS_OF: Final[dict[frozenset[str], tuple[tuple[str, traits.StateRule, frozenset[str] | None], ...]]] = {}


def _state_traits(families: frozenset[str]) -> tuple[tuple[str, traits.StateRule, frozenset[str] | None], ...]:
    """The state traits of ``families`` in catalogue order, with the event types they are entered only by."""
    found = _TRAITS_OF.get(families)
    if found is None:
        found = _TRAITS_OF[families] = tuple(
            (name, rule, ENTERED_ONLY_BY.get(name))
            for name, (family, rule) in traits.STATE_TRAITS.items()
            if family in families
        )
    return found


_partial: Final = partial  # a C static for the compiled core, not a globals lookup per evaluation


# schemas' ``event_time_ms`` and ``key`` over again: compiled here, they cost no interpreted frame per event
def _time_ms(event: InputEvent) -> int:
    return event.time_ms  # set by the validator (or _once)


def _key(event: InputEvent) -> str:
    return event.customer_id or event.anonymous_id  # type: ignore[return-value]  # one of them is set


def affected(event: InputEvent) -> frozenset[str]:
    """The rule families ``event`` can change."""
    kind: str = event.type
    if kind == "page_view" and event.page_type == "product" and event.product_id is not None:  # type: ignore[union-attr]
        kind = "product_view"
    return AFFECTS.get(kind, ALL)


class Outcome:
    """What one input did: ``state`` to store under the key (``None``: unchanged), changes, messages."""

    __slots__ = ("changes", "routed", "state")

    state: CustomerState | None
    changes: list[Change]
    routed: list[Routed]

    # written out (not a dataclass): mypyc compiles it, where a dataclass's __init__ stays interpreted
    def __init__(
        self, state: CustomerState | None, changes: list[Change] | None = None, routed: list[Routed] | None = None
    ) -> None:
        self.state = state
        self.changes = [] if changes is None else changes
        self.routed = [] if routed is None else routed

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return (self.state, self.changes, self.routed) == (other.state, other.changes, other.routed)

    def __repr__(self) -> str:
        return f"{self.__class__.__qualname__}(state={self.state!r}, changes={self.changes!r}, routed={self.routed!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, (self.state, self.changes, self.routed))


def _event_body(event: InputEvent) -> dict[str, Any]:
    return event.model_dump(mode="json", exclude_none=True)


# compiled (scripts/build_core.py), still open to subclasses: tests wrap the core in failing or recording ones
@mypyc_attr(allow_interpreted_subclasses=True)
class Segmenter:
    """The segmentation rules applied to one key's state at a time (pure, stateless itself)."""

    def __init__(self, rules: Rules | None = None, definitions: Definitions | None = None) -> None:
        self.rules = rules or Rules()
        self.ctx = Ctx.of(self.rules)
        # operator-defined segments (segmenter/definitions), judged after the catalogue under the same rules
        # (their rules.<name>); None: none loaded
        self.definitions = definitions.bound(self.rules) if definitions else None
        self._versions_json = orjson.dumps(self.definitions.versions if self.definitions is not None else {})
        # read at every event: a rule model's attribute costs an attribute hook each time
        self._dedup_floor = self.rules.dedup_min_ids
        self._dedup_bound = self.rules.max_event_ids_kept

    # ----------------------------------------------------------------- inputs
    def on_event(self, state: CustomerState | None, event: InputEvent) -> Outcome:
        """Apply an input event to the state of ``event.key``."""
        key = _key(event)
        s = state if state is not None else CustomerState(key)
        anon = event.anonymous_id
        if s.linked_to is not None:
            # this visitor was merged into a customer: the history lives there now. The ids it had and
            # forwarded are remembered here: after a second login on the device the events go to another
            # customer, who must not take a repeat of one the first customer had for new
            code = event_code(event.event_id)
            if has_event_id(s.seen_ids, code):
                return Outcome(None)
            self._remember(s, code, _time_ms(event))
            return Outcome(s, routed=[Routed(s.linked_to, APPLY, {"event": _event_body(event)})])
        if s.linking is not None:
            return self._hold(s, event)
        if event.customer_id is not None and anon is not None and anon != key and anon not in s.linked_anons:
            if has_event_id(s.seen_ids, event_code(event.event_id)):
                return Outcome(None)
            # what was due before this event fires now, on the history as it stood (replay has fired it
            # already; a worker may not have, and the merge must not change what it judged)
            t = _time_ms(event)
            changes = self._fire(s, t - 1) if s.due_ms is not None and s.due_ms < t else []
            # fetch the anonymous history first, so this event (and the ones after it) are judged with it
            s.linking, s.linking_ms = anon, t
            return Outcome(s, changes, [Routed(anon, LINK, {"customer_id": key, "event": _event_body(event)})])
        return self._apply(s, event)

    def on_routed(self, state: CustomerState | None, msg: Routed) -> Outcome:
        """Apply a message routed to ``msg.key`` (see :mod:`segmenter.routing`)."""
        body = msg.body
        if msg.kind == LINK:
            return self._link(state, msg.key, body)
        if msg.kind == MERGE:
            return self._merge(state if state is not None else CustomerState(msg.key), body)
        if msg.kind == APPLY:
            s = state if state is not None else CustomerState(msg.key)
            event = parse_event_obj(body["event"])
            return self._hold(s, event) if s.linking is not None else self._apply(s, event)
        if msg.kind == CREDIT:
            return self._credit(state, msg.key, body)
        if msg.kind == UNCREDIT:
            return self._uncredit(state, msg.key, body)
        if msg.kind == EVENT:
            return self.on_event(state, parse_event_obj(body["event"]))
        raise ValueError(f"unknown routed message kind {msg.kind!r}")

    def advance(self, state: CustomerState, until_ms: int) -> Outcome:
        """Fire every deadline of ``state`` due at or before ``until_ms``, each at its own time.

        A customer waiting for its anonymous history fires nothing yet: the
        deadlines fire, at their own times, once the history has arrived.
        """
        if state.linking is not None:
            return Outcome(None)
        return Outcome(state, self._fire(state, until_ms))

    def judged_under_current(self, data: bytes) -> bool:
        """Whether stored state bytes record the definitions in force, read without decoding them.

        Then :meth:`backfill` has nothing to do (a member of a definition no
        longer in force cannot be in a state recording the ones in force: a
        definition's members are entered only while it is). ``False`` when
        unsure (an older format, another order): decode and ask :meth:`backfill`.
        """
        return CustomerState.definitions_json(data) == self._versions_json

    def backfill(self, state: CustomerState) -> Outcome:
        """Judge a restored state under the definitions in force, if it was judged under others.

        A state records the version of each trait definition it was judged by
        (``state.definitions``). When that differs from the definitions in force
        (a new or changed version, a removed definition), every trait definition
        is judged again at the state's own clock (``clock_ms``, the instant its
        memberships were last evaluated at: no event, no time passing), in
        dependency order, so ``in_segment`` sees the new verdicts; members of a
        definition no longer in force exit. The changes carry ``origin:
        "backfill"`` and ids salted with it and the version (deterministic: the
        same state gives the same changes); the state records the versions in
        force, so judging it again gives nothing (``Outcome(None)``, as for a
        state already up to date). The next deadline is computed again: a new
        condition may bring its own. A customer waiting for a visitor's history
        is left for its next evaluation.
        """
        s = state
        versions = self.definitions.versions if self.definitions is not None else {}
        removed = [seg for seg in s.members if seg not in versions and not is_catalogue_segment(seg)]
        if (s.definitions == versions and not removed) or s.linking is not None:
            return Outcome(None)
        t = s.clock_ms
        out: list[Change] = []
        for seg in removed:
            del s.members[seg]
            version = s.definitions.get(seg)
            why = f"No longer {seg}: its definition was removed" + (f" (version {version})." if version else ".")
            ref = {"name": seg, "version": version} if version else None
            out.append(Change(s.key, s.customer_id, s.anonymous_id, seg, EXITED, t, why, {}, None, ref, BACKFILL))
        if self.definitions is not None and s.first_seen_ms is not None and s.linked_to is None:
            judged = len(out)
            self.definitions.evaluate(s, t, self.ctx, None, None, out)
            for change in out[judged:]:
                change.origin = BACKFILL
        s.definitions = dict(versions)
        if s.first_seen_ms is not None or s.due_ms is not None:
            rh = lifecycle.rhythm(s, self.ctx) if s.orders_total else None
            s.due_ms = self._next_due(s, t, rh)
        return Outcome(s, out)

    # -------------------------------------------------------------- internals
    def _apply(self, s: CustomerState, event: InputEvent, families: frozenset[str] | None = None) -> Outcome:
        eid = event.event_id
        code = event_code(eid)
        if has_event_id(s.seen_ids, code):
            return Outcome(None)
        t = _time_ms(event)
        # deadlines before the event fire first; one at the event's own instant is judged with the event
        # (an event is applied before a deadline of the same instant: no entered/exited pair at one instant)
        changes = self._fire(s, t - 1) if s.due_ms is not None and s.due_ms < t else []
        self._remember(s, code, t)
        had_orders = s.orders_total
        # a merged history, or the state's first event, judges every definition (no earlier verdict to keep)
        everything = families is not None or s.first_seen_ms is None
        if families is None:
            families = affected(event)
            viewed = event if families is VIEW_FAMILIES else None
        else:
            viewed = None
        # category_fan is decided on the latest views and units alone (not on time): at a product view only
        # the categories whose count among them changed can change, all of them when their number changed
        fans_before = traits.fan_mark(s) if viewed is not None else None
        referred_by = s.referred_by
        moments = fold(s, event, t, self.ctx)
        now = max(s.clock_ms, t)
        if (
            families in WITHOUT_REFERRAL
            and s.referred_by == referred_by
            and (referred_by is None or traits.referred_end(s, self.ctx) != now)
        ):
            families = WITHOUT_REFERRAL[families]
        self._moments(s, moments, now, eid, changes)
        rh = lifecycle.rhythm(s, self.ctx) if s.orders_total else None
        fans = (
            traits.fan_changes(fans_before, s, self.ctx, event.category)  # type: ignore[union-attr]
            if fans_before is not None
            else None
        )
        self._evaluate(s, now, eid, changes, families, event.type, rh, viewed, fans)
        if self.definitions is not None:  # --- operator-defined segments hook
            self.definitions.evaluate(s, now, self.ctx, eid, event, changes, moments, everything)
        routed = []
        # the referrer counts referred customers with an order not cancelled (if the first order came while
        # the referral held): credited at the first such order, uncredited when cancellations leave none,
        # credited again at a later order
        changed = (had_orders == 0) != (s.orders_total == 0)
        if changed and s.referred_by is not None and traits.referral_converted(s, self.ctx):
            kind = CREDIT if had_orders == 0 else UNCREDIT
            routed.append(Routed(s.referred_by, kind, {"referred": s.key, "at_ms": now, "event_id": eid}))
        # a deadline at the event's own instant that the event did not settle (a cart's abandonment when
        # the event was no order) stays due: it fires right after the event, at that instant
        s.due_ms = self._next_due(s, now - 1, rh)
        return Outcome(s, changes, routed)

    def _remember(self, s: CustomerState, code: str, t: int) -> None:
        add_event_id(s.seen_ids, code, t, self.ctx.dedup_ms, self._dedup_floor, self._dedup_bound)

    def _hold(self, s: CustomerState, event: InputEvent) -> Outcome:
        # the anonymous history is on its way: keep the order of this customer's events
        if has_event_id(s.seen_ids, event_code(event.event_id)) or any(
            b["event_id"] == event.event_id for b in s.pending
        ):
            return Outcome(None)
        if len(s.pending) >= self.rules.max_held_events:
            # the history has not come for too long: stop waiting, keep the state bounded
            held, s.pending, s.linking, s.linking_ms = s.pending, [], None, None
            out = Outcome(s)
            for item in [*held, _event_body(event)]:
                more = self.on_event(s, parse_event_obj(item))
                out.changes.extend(more.changes)
                out.routed.extend(more.routed)
            return out
        s.pending.append(_event_body(event))
        return Outcome(s)

    def _merge(self, s: CustomerState, body: dict[str, Any]) -> Outcome:
        anon = body["anonymous_id"]
        # a visitor hands its history over once (then it is linked and answers without it): a history from
        # a visitor already merged is the same message delivered again (the routing topic is at least
        # once: a crash after the state is stored and before the message is acked), not more history
        if body.get("state") is not None and anon not in s.linked_anons:
            merge(s, CustomerState.from_bytes(orjson.dumps(body["state"])), self.ctx)
        if anon not in s.linked_anons:
            s.linked_anons.append(anon)
            cap(s.linked_anons, 8)
        if s.linking == anon:
            s.linking = s.linking_ms = None
        # a merged history can change any family, whatever the event's type
        out = self._apply(s, parse_event_obj(body["event"]), ALL if body.get("state") is not None else None)
        out.state = s  # the merge changed it even if the event was a duplicate
        held, s.pending = s.pending, []
        for item in held:
            more = self.on_event(s, parse_event_obj(item))
            out.changes.extend(more.changes)
            out.routed.extend(more.routed)
        return out

    def _link(self, state: CustomerState | None, key: str, body: dict[str, Any]) -> Outcome:
        customer = body["customer_id"]
        reply = {"anonymous_id": key, "state": None, "event": body["event"]}
        if state is None or state.linked_to is not None or state.first_seen_ms is None:
            s = state if state is not None else CustomerState(key, anonymous_id=key)
            # its history went to the first customer who linked it; what it does from now on belongs to
            # the customer who linked it most recently (the last login on that device)
            t = _time_ms(parse_event_obj(body["event"]))
            if s.linked_to is None or (s.linked_to != customer and t >= s.clock_ms):
                s.linked_to = customer
                s.clock_ms = max(s.clock_ms, t)
            return Outcome(s, routed=[Routed(customer, MERGE, reply)])
        s = state
        event = parse_event_obj(body["event"])
        t = max(s.clock_ms, _time_ms(event))
        changes = self._fire(s, t - 1) if s.due_ms is not None and s.due_ms < t else []
        reply["state"] = orjson.loads(s.to_json())
        for segment in list(s.members):
            reason = f"Linked to customer {customer}: this visitor's history now counts for them."
            changes.append(self._change(s, segment, EXITED, t, reason, {"linked_to": customer}, event.event_id))
        left = CustomerState(key, anonymous_id=key, linked_to=customer, first_seen_ms=s.first_seen_ms)
        left.last_event_ms = left.clock_ms = t
        left.seen_ids = [list(b) for b in s.seen_ids]
        return Outcome(left, changes, [Routed(customer, MERGE, reply)])

    def _credit(self, state: CustomerState | None, key: str, body: dict[str, Any]) -> Outcome:
        s = state if state is not None else CustomerState(key, customer_id=key)
        referred = body["referred"]
        if referred == key or any(c[0] == referred for c in s.credited):
            return Outcome(None)
        at = int(body["at_ms"])
        changes = self._fire(s, at - 1) if s.due_ms is not None and s.due_ms < at else []
        s.credited.append([referred, at, body.get("event_id")])
        # credits come from other keys in any order: judge by their event times, so the
        # change (time, trigger, id) is the same whatever order they arrive in
        s.credited.sort(key=lambda c: (c[1], c[0]))
        cap(s.credited, 16)
        k = self.rules.advocate_min_referred
        if "advocate" not in s.members and len(s.credited) >= k:
            _, t, trigger = s.credited[k - 1]
            ev = {"referred_customers_who_ordered": k, "referred": [c[0] for c in s.credited[:k]]}
            s.members["advocate"] = t
            changes.append(self._change(s, "advocate", ENTERED, t, reason("advocate", ev, self.rules), ev, trigger))
        return Outcome(s, changes)

    def _uncredit(self, state: CustomerState | None, key: str, body: dict[str, Any]) -> Outcome:
        referred = body["referred"]
        if state is None or not any(c[0] == referred for c in state.credited):
            return Outcome(None)
        s = state
        at = int(body["at_ms"])
        changes = self._fire(s, at - 1) if s.due_ms is not None and s.due_ms < at else []
        s.credited = [c for c in s.credited if c[0] != referred]
        k = self.rules.advocate_min_referred
        if "advocate" in s.members and len(s.credited) < k:
            del s.members["advocate"]
            ev = {"referred_customers_who_ordered": len(s.credited), "referred": [c[0] for c in s.credited]}
            why = reason("advocate", ev, self.rules, exited=True) + f" ({referred}'s orders were cancelled)"
            changes.append(self._change(s, "advocate", EXITED, at, why, ev, body.get("event_id")))
        return Outcome(s, changes)

    def _fire(self, s: CustomerState, until: int) -> list[Change]:
        out: list[Change] = []
        while s.due_ms is not None and s.due_ms <= until:
            t = max(s.due_ms, s.clock_ms)
            due_cart = abandon_due(s, self.ctx)
            if due_cart is not None and due_cart <= t:
                moment = abandon(s, due_cart, self.ctx)
                self._moments(s, [moment], due_cart, None, out)
                if self.definitions is not None:  # --- operator-defined segments hook: moments at the abandonment
                    self.definitions.detect(s, due_cart, self.ctx, moment, out)
            rh = lifecycle.rhythm(s, self.ctx) if s.orders_total else None
            self._evaluate(s, t, None, out, TIME_FAMILIES if "researcher" in s.members else TIME_NOT_VIEWS, rh=rh)
            if self.definitions is not None:  # --- operator-defined segments hook
                self.definitions.evaluate(s, t, self.ctx, None, None, out)
            s.due_ms = self._next_due(s, t, rh)
        return out

    def _next_due(self, s: CustomerState, t: int, rh: lifecycle.Rhythm | None = None) -> int | None:
        times: list[int] = []
        if s.first_seen_ms is not None and s.linked_to is None:
            lifecycle.deadlines(s, self.ctx, times, rh)
        traits.deadlines(s, t, self.ctx, times)
        cart = abandon_due(s, self.ctx)
        if cart is not None:
            times.append(cart)
        if self.definitions is not None:  # --- operator-defined segments hook
            self.definitions.deadlines(s, t, self.ctx, times)
        due = None
        for x in times:
            if x > t and (due is None or x < due):
                due = x
        return due

    def _change(
        self, s: CustomerState, segment: str, kind: str, t: int, reason: str, ev: dict[str, Any], trigger: str | None
    ) -> Change:
        return Change(s.key, s.customer_id, s.anonymous_id, segment, kind, t, reason, ev, trigger)

    def _moments(self, s: CustomerState, moments: list[Moment], t: int, trigger: str | None, out: list[Change]) -> None:
        for segment, ev, why in moments:
            out.append(self._change(s, segment, DETECTED, t, why, ev, trigger))

    def verdicts(
        self, s: CustomerState, t: int, families: frozenset[str] = ALL, event_type: str | None = None
    ) -> Verdicts:
        """Segments decided at ``t`` among ``families``: ``{segment: (member, evidence)}``.

        A segment is listed when it holds or was held: one that is held but not
        listed is not decided by these families and keeps its membership.
        ``event_type``: the type of the event judged (``None``: time passing);
        ``dissatisfied`` is entered only at a return or cancellation.
        """
        rh = lifecycle.rhythm(s, self.ctx) if s.orders_total else None
        return {seg: (m, _shown(ev)) for seg, (m, ev) in self._decide(s, t, families, event_type, rh).items()}

    def _decide(
        self,
        s: CustomerState,
        t: int,
        families: frozenset[str],
        event_type: str | None,
        rh: lifecycle.Rhythm | None,
        viewed: InputEvent | None = None,
        fans: set[str] | None = None,
    ) -> dict[str, tuple[bool, Evidence]]:
        # :meth:`verdicts` with the evidence left to build (a callable) where it is needed only for a change
        c = self.ctx
        members = s.members
        out: dict[str, tuple[bool, Evidence]] = {}
        if s.first_seen_ms is not None and s.linked_to is None:
            stage = lifecycle.stage_name(s, t, c, rh)
            ev: Evidence = _partial(lifecycle.evidence, s, t, c, stage, rh)
            out[stage] = (True, ev)
            for segment in members:
                if segment in STAGES and segment != stage:
                    out[segment] = (False, ev)
        if "orders" in families and s.orders:
            figures = traits.order_figures(s, t, c)  # exact: the thresholds compare these
            shown: Evidence | None = None
            for name, fn in traits.ORDER_TRAITS.items():
                was = name in members
                member = fn(figures, c, was)
                if member or was:
                    shown = shown or _partial(traits.order_evidence, figures)
                    out[name] = (member, shown)
        for name, rule, only_by in _state_traits(families):
            was = name in members
            # a product view: no other category than its own can have come to qualify for researcher (time
            # and the other events only take views out of the window); the full rule when this one may
            if (
                viewed is not None
                and rule is traits.researcher
                and not was
                and not traits.may_research(s, t, c, viewed.category)  # type: ignore[union-attr]
            ):
                continue
            member, ev = rule(s, t, c, was)
            if member and not was and only_by is not None and event_type not in only_by:
                continue  # e.g. an order sliding out of the window raises the share: not a reason to enter
            if member or was:
                out[name] = (member, ev)
        if "fan" in families and (s.fan_views or s.fan_units) and (fans is None or fans):
            out.update(traits.category_fans(s, t, c, members, fans))
        return out

    def _evaluate(
        self,
        s: CustomerState,
        t: int,
        trigger: str | None,
        out: list[Change],
        families: frozenset[str] = ALL,
        event_type: str | None = None,
        rh: lifecycle.Rhythm | None = None,
        viewed: InputEvent | None = None,
        fans: set[str] | None = None,
    ) -> None:
        verdicts = self._decide(s, t, families, event_type, rh, viewed, fans)
        members = s.members
        rules = self.rules
        stage = None
        moved = False  # most evaluations confirm every membership: one pass, no change to build
        for seg, (m, _) in verdicts.items():
            if m:
                if stage is None and seg in STAGES:
                    stage = seg
                if seg not in members:
                    moved = True
            elif seg in members:
                moved = True
        if not moved:
            if t > s.clock_ms:
                s.clock_ms = t
            return
        for segment, (member, ev) in verdicts.items():
            if member or segment not in members:
                continue
            del members[segment]
            if segment in STAGES and stage is not None:
                shown = _shown(verdicts[stage][1])
                why = f"Now {stage}: " + reason(stage, shown, rules)
            else:
                shown = _shown(ev)
                why = reason(segment, shown, rules, exited=True)
            out.append(self._change(s, segment, EXITED, t, why, shown, trigger))
        for segment, (member, ev) in verdicts.items():
            if member and segment not in members:
                members[segment] = t
                shown = _shown(ev)
                out.append(self._change(s, segment, ENTERED, t, reason(segment, shown, rules), shown, trigger))
        if t > s.clock_ms:
            s.clock_ms = t


def _shown(ev: Evidence) -> dict[str, Any]:
    """Evidence built now if it was left to build."""
    return ev if isinstance(ev, dict) else ev()


# The states are long-lived and acyclic (lists, dicts, strings: refcounting frees what an event replaces), yet
# the cyclic collector's full passes walk every record of every state again and again (12 µs of 52 per event at
# 300k events / 30k customers). Every so many events what survived leaves its generations (``gc.freeze``),
# after a collection of the youngest (the same cyclic garbage found on that set as without freezing: 548 objects).
# Every 1,024 events: the middle generation's passes, over each new customer's fields, stay small too.
FREEZE_EVERY: Final = 1024


@mypyc_attr(allow_interpreted_subclasses=True)
class Engine:
    """The embedded shell: every key's state in memory, time advanced by the input itself."""

    def __init__(self, rules: Rules | None = None, definitions: Definitions | None = None) -> None:
        self.segmenter = Segmenter(rules, definitions)
        self.states: dict[str, CustomerState] = {}
        self.index = DeadlineIndex()
        self.watermark: int | None = None
        self._queue: deque[Routed] = deque()
        self._fed = 0

    def feed(self, event: InputEvent) -> list[Change]:
        """Advance time to just before the event, apply it, deliver what it routes; return the changes.

        Deadlines at the event's own instant fire after it (its own key's are judged with it).
        """
        self._fed += 1
        if self._fed % FREEZE_EVERY == 0:
            gc.collect(0)
            gc.freeze()
        t = _time_ms(event)
        due = self.index.next_due()
        # most events find nothing due before them: no list, no drain for that
        out = self.advance_to(t - 1) if due is not None and due < t else []
        if self.watermark is None or t > self.watermark:
            self.watermark = t
        key = _key(event)
        self._absorb(key, self.segmenter.on_event(self.states.get(key), event), out)
        if self._queue:
            self._drain(out)
        return out

    def advance_to(self, t_ms: int) -> list[Change]:
        """Fire every deadline due at or before ``t_ms`` (cost proportional to what is due)."""
        if self.watermark is None or t_ms > self.watermark:
            self.watermark = t_ms
        out: list[Change] = []
        index = self.index
        # in time order across keys: each due key fires up to its own due instant, then is due again
        # (a key firing all its deadlines at once would put its later changes before another key's earlier)
        while (due := index.next_due()) is not None and due <= t_ms:
            for key in index.pop_due(due):
                self._absorb(key, self.segmenter.advance(self.states[key], due), out)
        self._drain(out)
        return out

    def drop_routed(self) -> None:
        """Forget the routed messages not delivered yet (what an input that failed half-way had sent)."""
        self._queue.clear()

    def _absorb(self, key: str, outcome: Outcome, out: list[Change]) -> None:
        if outcome.state is not None:
            self.states[key] = outcome.state
            self.index.schedule(key, outcome.state.due_ms)
        out.extend(outcome.changes)
        self._queue.extend(outcome.routed)

    def _drain(self, out: list[Change]) -> None:
        queue = self._queue
        while queue:
            msg = queue.popleft()
            self._absorb(msg.key, self.segmenter.on_routed(self.states.get(msg.key), msg), out)
