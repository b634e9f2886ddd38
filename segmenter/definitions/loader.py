"""Definition files (YAML, one segment per file) to checked :class:`Definition` objects.

Every mistake is a :class:`DefinitionError` naming the file, line and column (from the YAML node marks,
and for ``when`` and ``reason`` the offset inside the value), so ``segmenter validate`` can print it as
``path:line:col: message``.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import yaml

from segmenter.catalogue import catalogue
from segmenter.config import Rules
from segmenter.definitions import expr
from segmenter.exact import Fraction
from segmenter.metrics.registry import BY_NAME

NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
TRAIT, MOMENT = "trait", "moment"
REQUIRED = ("name", "kind", "version", "description", "when", "reason")
OPTIONAL = ("exit_margin", "enter_on", "tests")
TEST_KEYS = ("events", "until", "expect", "expect_not", "name")
EXPECT_KEYS = ("customer_id", "anonymous_id", "change", "at", "segment")
FAN = "category_fan:"

_CATALOGUE = {e["name"]: e["kind"] for e in catalogue(Rules())}


class DefinitionError(ValueError):
    """A mistake in a definition file, at a line and column (1-based)."""

    def __init__(self, path: Path | str, line: int, column: int, message: str) -> None:
        super().__init__(f"{path}:{line}:{column}: {message}")
        self.path = str(path)
        self.line = line
        self.column = column
        self.message = message


@dataclass(frozen=True)
class Expect:
    """One expected (or not expected) change of a definition test."""

    customer_id: str | None
    anonymous_id: str | None
    change: str
    at_ms: int | None
    segment: str
    line: int


@dataclass(frozen=True)
class Case:
    """One test of a definition: events replayed up to ``until``, changes expected and not."""

    index: int
    name: str
    events: Path
    until_ms: int | None
    expect: tuple[Expect, ...]
    expect_not: tuple[Expect, ...]
    line: int


@dataclass(frozen=True)
class Definition:
    """An operator-defined segment, checked."""

    name: str
    kind: str  # TRAIT or MOMENT
    version: int
    description: str
    when_text: str
    when: expr.Node
    reason: str
    exit_margin: dict[str, Fraction]  # exact, as written (0.1 is 1/10)
    tests: tuple[Case, ...]
    path: Path
    metrics: tuple[str, ...]  # read by when and reason, in first-use order: the evidence
    fields: tuple[str, ...]  # event fields read by when and reason (moments)
    segments: frozenset[str] = field(default_factory=frozenset)  # in_segment names
    enter_on: frozenset[str] = frozenset()  # event types a trait may be entered at (empty: any, and time)
    margin_rules: dict[str, str] = field(default_factory=dict)  # metric -> threshold giving its exit margin
    rules: tuple[str, ...] = ()  # the thresholds the reason shows ({rules.<name>})

    def compiled(self, rules: Rules, exact: bool = True) -> expr.Condition:
        """``when`` compiled for evaluation under ``rules`` (its ``rules.<name>`` read there), with the exit
        margins (``exact``: see :class:`~segmenter.definitions.expr.Condition`)."""
        margins = dict(self.exit_margin)
        margins.update({m: Fraction(expr.rule_value(rules, name)) for m, name in self.margin_rules.items()})
        return expr.Condition(expr.bind(self.when, rules), margins, exact)

    @property
    def ref(self) -> dict[str, Any]:
        """The ``definition`` field of its changes."""
        return {"name": self.name, "version": self.version}


def placeholders(template: str) -> list[tuple[str, int]]:
    """``{name}`` placeholders of a reason with the offset of the name; ``{{`` and ``}}`` are braces.

    A malformed template raises :class:`~segmenter.definitions.expr.ExprError` at its offset.
    """
    out: list[tuple[str, int]] = []
    i, n = 0, len(template)
    while i < n:
        c = template[i]
        if c == "{":
            if template.startswith("{{", i):
                i += 2
                continue
            j = template.find("}", i)
            if j < 0:
                raise expr.ExprError("'{' is never closed (write {{ for a brace)", i)
            hole = template[i + 1 : j]
            if not hole.strip():
                raise expr.ExprError("empty placeholder {}", i)
            if any(x in hole for x in ":!{"):
                raise expr.ExprError(f"placeholder {{{hole}}} takes no format or conversion: write {{name}}", i)
            out.append((hole, i + 1))
            i = j + 1
        elif c == "}":
            if not template.startswith("}}", i):
                raise expr.ExprError("single '}' (write }} for a brace)", i)
            i += 2
        else:
            i += 1
    return out


@functools.lru_cache(maxsize=1024)
def _pieces(template: str) -> tuple[tuple[str, bool], ...]:
    """A checked template as its literal texts and placeholder names (``True``), in order."""
    pieces: list[tuple[str, bool]] = []
    text: list[str] = []
    i, n = 0, len(template)
    while i < n:
        if template.startswith("{{", i) or template.startswith("}}", i):
            text.append(template[i])
            i += 2
        elif template[i] == "{":
            j = template.index("}", i)
            pieces.append(("".join(text), False))
            pieces.append((template[i + 1 : j], True))
            text = []
            i = j + 1
        else:
            text.append(template[i])
            i += 1
    pieces.append(("".join(text), False))
    return tuple(pieces)


def fill(template: str, values: dict[str, str]) -> str:
    """The template with each checked placeholder replaced by ``values[name]``."""
    return "".join(values[x] if hole else x for x, hole in _pieces(template))


class _File:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.text = text

    def error(self, mark: Any, message: str) -> DefinitionError:
        return DefinitionError(self.path, mark.line + 1, mark.column + 1, message)

    def at_offset(self, node: yaml.Node, offset: int, message: str) -> DefinitionError:
        """An error ``offset`` characters into a scalar's value, mapped back to the file."""
        value = str(node.value)
        i = node.start_mark.index
        text = self.text
        pos = i
        # walk the source alongside the value: between value characters the source holds only quotes,
        # block indicators, indentation and line breaks
        for ch in value[: offset + 1]:
            if ch.isspace():
                continue
            found = text.find(ch, i, node.end_mark.index + 1)
            if found < 0:
                pos = node.start_mark.index
                break
            pos, i = found, found + 1
        line = text.count("\n", 0, pos)
        column = pos - (text.rfind("\n", 0, pos) + 1)
        return DefinitionError(self.path, line + 1, column + 1, message)


def _mapping(f: _File, node: yaml.Node, what: str) -> dict[str, tuple[yaml.Node, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise f.error(node.start_mark, f"{what} must be a mapping (key: value lines)")
    out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
    for k, v in node.value:
        key = str(k.value)
        if key in out:
            raise f.error(k.start_mark, f"{key!r} is given twice")
        out[key] = (k, v)
    return out


def _unknown(f: _File, keys: dict[str, tuple[yaml.Node, yaml.Node]], allowed: tuple[str, ...], what: str) -> None:
    for key, (k, _) in keys.items():
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f"; {what} takes {', '.join(allowed)}"
            raise f.error(k.start_mark, f"unknown field {key!r}{hint}")


def _scalar(node: yaml.Node) -> Any:
    return yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None


def _text(f: _File, node: yaml.Node, what: str) -> str:
    if not isinstance(node, yaml.ScalarNode) or not isinstance(_scalar(node), str) or not str(node.value).strip():
        raise f.error(node.start_mark, f"{what} must be non-empty text")
    return str(node.value)


def _instant(f: _File, node: yaml.Node, what: str) -> int:
    value = _scalar(node)
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise f.error(node.start_mark, f"{what} must be an RFC 3339 time, e.g. 2026-03-01T00:00:00Z") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        raise f.error(node.start_mark, f"{what} needs a time and an offset, e.g. {value}T00:00:00Z")
    if not isinstance(value, datetime):
        raise f.error(node.start_mark, f"{what} must be an RFC 3339 time, e.g. 2026-03-01T00:00:00Z")
    if value.tzinfo is None:
        # PyYAML reads a time with Z or an offset as UTC without tzinfo; a text without one stays text above
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def _segment_check(known: dict[str, str]) -> Any:
    def check(name: str) -> str | None:
        kind = known.get(name) or (known.get("category_fan:<category>") if name.startswith(FAN) else None)
        if kind is None:
            close = difflib.get_close_matches(name, list(known), n=1)
            return f"unknown segment {name!r}" + (f" (did you mean {close[0]}?)" if close else "")
        if kind == MOMENT:
            return f"{name!r} is a moment (detected, never held): in_segment needs a lifecycle stage or a trait"
        return None

    return check


def parse_file(path: Path, segments: dict[str, str] | None = None) -> Definition:
    """Read and check one definition file. ``segments``: name -> kind of every segment in_segment may
    name (default: the catalogue's)."""
    known = dict(_CATALOGUE if segments is None else segments)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(path, 1, 1, f"cannot read: {exc}") from None
    f = _File(path, text)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise DefinitionError(path, *where, f"not valid YAML: {exc.problem or exc}") from None
    except yaml.YAMLError as exc:
        raise DefinitionError(path, 1, 1, f"not valid YAML: {exc}") from None
    if root is None:
        raise DefinitionError(path, 1, 1, "empty file: a definition needs " + ", ".join(REQUIRED))
    top = _mapping(f, root, "a definition")
    _unknown(f, top, REQUIRED + OPTIONAL, "a definition")
    for key in REQUIRED:
        if key not in top:
            raise f.error(root.start_mark, f"missing required field {key!r}")

    name_node = top["name"][1]
    name = _text(f, name_node, "name")
    if not NAME_RE.fullmatch(name):
        raise f.error(name_node.start_mark, f"name {name!r} must match [a-z][a-z0-9_]*")
    if name in _CATALOGUE or name == "category_fan":
        raise f.error(name_node.start_mark, f"name {name!r} is a catalogue segment; choose another name")

    kind_node = top["kind"][1]
    kind = _scalar(kind_node)
    if kind not in (TRAIT, MOMENT):
        raise f.error(kind_node.start_mark, f"kind must be trait (entered/exited) or moment (detected), not {kind!r}")

    version_node = top["version"][1]
    version = _scalar(version_node)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise f.error(version_node.start_mark, f"version must be a whole number >= 1, not {version!r}")

    description = _text(f, top["description"][1], "description")

    margins: dict[str, Fraction] = {}
    margin_rules: dict[str, str] = {}  # metric -> rules.<name> giving its margin
    if "exit_margin" in top:
        k, m_node = top["exit_margin"]
        if kind == MOMENT:
            raise f.error(k.start_mark, "exit_margin is for traits: a moment is never exited")
        for metric, (mk, mv) in _mapping(f, m_node, "exit_margin").items():
            if metric not in BY_NAME:
                close = difflib.get_close_matches(metric, list(BY_NAME), n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise f.error(mk.start_mark, f"exit_margin: unknown metric {metric!r}{hint}")
            value = _scalar(mv)
            if isinstance(value, str) and value.startswith("rules."):
                why = expr.rule_problem(value.removeprefix("rules."))
                if why is not None:
                    raise f.error(mv.start_mark, f"exit_margin of {metric}: {why}")
                margin_rules[metric] = value.removeprefix("rules.")
                continue
            if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value < float("inf"):
                raise f.error(mv.start_mark, f"exit_margin of {metric} must be a number >= 0, not {value!r}")
            # the decimal as written, like a number in when: a margin keeps an exact figure exact
            margins[metric] = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)

    enter_on: frozenset[str] = frozenset()
    if "enter_on" in top:
        k, e_node = top["enter_on"]
        if kind == MOMENT:
            raise f.error(k.start_mark, "enter_on is for traits: a moment is detected on its own event")
        if not isinstance(e_node, yaml.SequenceNode) or not e_node.value:
            raise f.error(e_node.start_mark, "enter_on must be a list of event types, e.g. [order_returned]")
        for item in e_node.value:
            value = _scalar(item)
            if value not in expr.EVENT_TYPES:
                close = difflib.get_close_matches(str(value), expr.EVENT_TYPES, n=1)
                hint = f" (did you mean {close[0]}?)" if close else f"; one of {', '.join(expr.EVENT_TYPES)}"
                raise f.error(item.start_mark, f"enter_on: {value!r} is not an event type{hint}")
        enter_on = frozenset(str(_scalar(item)) for item in e_node.value)

    when_node = top["when"][1]
    when_text = _text(f, when_node, "when")
    scope = expr.Scope(
        moment=kind == MOMENT, segments=_segment_check(known), margins=frozenset([*margins, *margin_rules])
    )
    try:
        when = expr.parse(when_text, scope)
    except expr.ExprError as exc:
        raise f.at_offset(when_node, exc.offset, f"when: {exc.message}") from None
    if kind == MOMENT and not scope.used_fields:
        raise f.error(
            when_node.start_mark,
            "when: a moment is detected on an event: test the event, e.g. event.type == 'order_placed'",
        )
    for metric in [*margins, *margin_rules]:
        if metric not in scope.used_metrics:
            k = _mapping(f, top["exit_margin"][1], "exit_margin")[metric][0]
            raise f.error(k.start_mark, f"exit_margin: {metric} is not read by when, a margin on it changes nothing")

    reason_node = top["reason"][1]
    reason = _text(f, reason_node, "reason")
    metrics = list(dict.fromkeys(m for m in _in_order(when) if m in BY_NAME))
    fields = sorted(scope.used_fields)
    shown_rules: list[str] = []
    try:
        holes = placeholders(reason)
    except expr.ExprError as exc:
        raise f.at_offset(reason_node, exc.offset, f"reason: {exc.message}") from None
    for hole, offset in holes:
        if hole.startswith("event."):
            fld = hole[len("event.") :]
            if kind != MOMENT:
                raise f.at_offset(reason_node, offset, f"reason: {{{hole}}}: event fields are for moments only")
            if fld not in expr.EVENT_FIELDS:
                close = difflib.get_close_matches(fld, list(expr.EVENT_FIELDS), n=1)
                hint = f" (did you mean event.{close[0]}?)" if close else ""
                raise f.at_offset(reason_node, offset, f"reason: unknown event field {{{hole}}}{hint}")
            if fld not in fields:
                fields.append(fld)
        elif hole.startswith("rules."):
            why = expr.rule_problem(hole.removeprefix("rules."))
            if why is not None:
                raise f.at_offset(reason_node, offset, f"reason: {{{hole}}}: {why}")
            if hole.removeprefix("rules.") not in shown_rules:
                shown_rules.append(hole.removeprefix("rules."))
        elif hole in BY_NAME:
            if hole not in metrics:
                metrics.append(hole)
        else:
            close = difflib.get_close_matches(hole, list(BY_NAME), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise f.at_offset(
                reason_node, offset, f"reason: placeholder {{{hole}}} is not a metric{hint}; `segmenter metrics`"
            )

    tests = _tests(f, top["tests"][1], name, kind) if "tests" in top else ()
    return Definition(
        name=name,
        kind=kind,
        version=version,
        description=description,
        when_text=when_text,
        when=when,
        reason=reason,
        exit_margin=margins,
        margin_rules=margin_rules,
        tests=tests,
        path=path,
        metrics=tuple(metrics),
        fields=tuple(fields),
        segments=frozenset(scope.used_segments),
        enter_on=enter_on,
        rules=tuple(shown_rules),
    )


def _in_order(node: expr.Node) -> list[str]:
    if isinstance(node, expr.MetricRef):
        return [node.name]
    out: list[str] = []
    for child in expr.parts(node).values():
        if isinstance(child, expr.Node):
            out += _in_order(child)
        elif isinstance(child, tuple):
            for x in child:
                if isinstance(x, expr.Node):
                    out += _in_order(x)
    return out


def _tests(f: _File, node: yaml.Node, name: str, kind: str) -> tuple[Case, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise f.error(node.start_mark, "tests must be a list of {events, until, expect, expect_not}")
    cases = []
    for i, item in enumerate(node.value, start=1):
        keys = _mapping(f, item, "a test")
        _unknown(f, keys, TEST_KEYS, "a test")
        if "events" not in keys:
            raise f.error(item.start_mark, "a test needs events: a JSONL file of events, relative to this file")
        events_node = keys["events"][1]
        events = f.path.parent / _text(f, events_node, "events")
        if not events.is_file():
            raise f.error(events_node.start_mark, f"events file {events} not found")
        until = _instant(f, keys["until"][1], "until") if "until" in keys else None
        label = str(_scalar(keys["name"][1])) if "name" in keys else f"test{i}"
        expect = _expects(f, keys["expect"][1], name, kind) if "expect" in keys else ()
        expect_not = _expects(f, keys["expect_not"][1], name, kind) if "expect_not" in keys else ()
        if not expect and not expect_not:
            raise f.error(item.start_mark, "a test needs expect or expect_not")
        cases.append(Case(i, label, events, until, expect, expect_not, item.start_mark.line + 1))
    return tuple(cases)


def _expects(f: _File, node: yaml.Node, name: str, kind: str) -> tuple[Expect, ...]:
    if not isinstance(node, yaml.SequenceNode):
        raise f.error(node.start_mark, "expect / expect_not must be a list of {customer_id, change, at}")
    allowed = ("detected",) if kind == MOMENT else ("entered", "exited")
    out = []
    for item in node.value:
        keys = _mapping(f, item, "an expected change")
        _unknown(f, keys, EXPECT_KEYS, "an expected change")
        ids = {k: str(_scalar(keys[k][1])) for k in ("customer_id", "anonymous_id") if k in keys}
        if not ids:
            raise f.error(item.start_mark, "an expected change needs customer_id (or anonymous_id)")
        if "change" not in keys:
            raise f.error(item.start_mark, f"an expected change needs change: {' or '.join(allowed)}")
        change = _scalar(keys["change"][1])
        segment = str(_scalar(keys["segment"][1])) if "segment" in keys else name
        if segment == name and change not in allowed:
            raise f.error(keys["change"][1].start_mark, f"a {kind} changes by {' or '.join(allowed)}, not {change!r}")
        at = _instant(f, keys["at"][1], "at") if "at" in keys else None
        out.append(
            Expect(ids.get("customer_id"), ids.get("anonymous_id"), str(change), at, segment, item.start_mark.line + 1)
        )
    return tuple(out)


def load_dir(directory: Path | str) -> list[Definition]:
    """Every ``*.yaml`` / ``*.yml`` file of ``directory``, checked together (names, in_segment references).

    Raises the first :class:`DefinitionError` (``segmenter validate`` collects them with
    :func:`check_dir`)."""
    defs, errors = check_dir(directory)
    if errors:
        raise errors[0]
    return defs


def definition_files(directory: Path | str) -> list[Path]:
    """The definition files of ``directory``, sorted by name."""
    d = Path(directory)
    if not d.is_dir():
        raise DefinitionError(d, 1, 1, "not a directory of definition files")
    return sorted(p for p in d.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def _name_and_kind(path: Path) -> tuple[str, str, int, int] | None:
    """A file's name and kind as written (for the in_segment references of the others), or None."""
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return None
    if not isinstance(root, yaml.MappingNode):
        return None
    found = {str(k.value): v for k, v in root.value}
    name, kind = found.get("name"), found.get("kind")
    if not isinstance(name, yaml.ScalarNode) or not isinstance(kind, yaml.ScalarNode):
        return None
    return str(name.value), str(kind.value), name.start_mark.line + 1, name.start_mark.column + 1


def check_dir(directory: Path | str) -> tuple[list[Definition], list[DefinitionError]]:
    """Check every file of ``directory``: the definitions that are fine and every error (one per file)."""
    files = definition_files(directory)
    errors: list[DefinitionError] = []
    known = dict(_CATALOGUE)
    first: dict[str, Path] = {}
    for path in files:
        nk = _name_and_kind(path)
        if nk is None or not NAME_RE.fullmatch(nk[0]) or nk[0] in _CATALOGUE:
            continue
        name, kind, line, column = nk
        if name in first:
            errors.append(DefinitionError(path, line, column, f"name {name!r} is already defined in {first[name]}"))
            continue
        first[name] = path
        known[name] = kind
    defs: list[Definition] = []
    clashed = {e.path for e in errors}
    for path in files:
        if str(path) in clashed:
            continue
        try:
            defs.append(parse_file(path, known))
        except DefinitionError as exc:
            errors.append(exc)
    if not errors:
        try:
            order(defs)
        except DefinitionError as exc:
            errors.append(exc)
    errors.sort(key=lambda e: (e.path, e.line, e.column))
    return defs, errors


def order(defs: list[Definition]) -> list[Definition]:
    """Traits in an order where every in_segment of another definition is decided first; a cycle is an
    error (two segments each defined by the other have no streaming answer)."""
    by_name = {d.name: d for d in defs}
    done: list[Definition] = []
    state: dict[str, int] = {}

    def visit(d: Definition, chain: list[str]) -> None:
        if state.get(d.name) == 2:
            return
        if state.get(d.name) == 1:
            cycle = " -> ".join([*chain[chain.index(d.name) :], d.name])
            raise DefinitionError(d.path, 1, 1, f"in_segment references go round in a cycle: {cycle}")
        state[d.name] = 1
        for other in sorted(d.segments):
            if other in by_name:
                visit(by_name[other], [*chain, d.name])
        state[d.name] = 2
        done.append(d)

    for d in sorted(defs, key=lambda d: d.name):
        visit(d, [])
    return done
