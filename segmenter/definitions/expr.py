"""The ``when`` language: a safe expression over the metric library, parsed, checked, never ``eval``'d.

The text is parsed with :func:`ast.parse` (``mode="eval"``) and only a whitelist of nodes is accepted:
``and``/``or``/``not``, comparisons, ``+ - * /``, unary minus, numbers, quoted strings, metric names,
``in_segment('<segment>')`` and, in moments, ``event.<field>``. Anything else is an :class:`ExprError`
at its offset in the text. The accepted tree is compiled to the small node classes below, and those once
to closures (:class:`Condition`).

Time: a metric whose time behaviour is ``clock`` (``days_since_*``) grows by one day per day; every
numeric sub-expression is affine in time (``value + slope * (t - t0)``), so a comparison that time alone
moves has one crossing instant, computed exactly (:meth:`Expr.next_change`). A product or quotient of two
time-moving figures would not be affine: that expression cannot run as a stream and is refused.
Comparisons with a figure that is not defined (``None``: no order yet) are false.

Numbers: figures in days and counts are exact (a ``Fraction`` of milliseconds, an ``int``), and so is a
decimal as written (``0.7`` is 7/10). Money and the shares the rules compute in floating point are ``float``:
a comparison with one is made in floating point, as the rules make it (``full_price_share_365d >= 0.7`` holds
at 7 units of 10, where the float 0.7 compared exactly with 7/10 would fall 4e-17 short).
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import itertools
import math
import operator
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from segmenter.config import Rules
from segmenter.exact import Fraction
from segmenter.metrics.registry import BY_NAME, CLOCK, DAY, Value

NUM, STR, BOOL = "number", "text", "condition"

# event.<field> readable by moments, with their type; `total` is the order's value (the lines' sum when
# absent) in the order's currency, `refund_total` the return's value, `lines` / `units` counts of the order
EVENT_FIELDS: dict[str, str] = {
    **dict.fromkeys(
        [
            "type",
            "event_id",
            "customer_id",
            "anonymous_id",
            "session_id",
            "page_type",
            "product_id",
            "category",
            "search_query",
            "url",
            "referrer",
            "utm_source",
            "utm_medium",
            "utm_campaign",
            "referred_by",
            "order_id",
            "currency",
            "coupon_code",
        ],
        STR,
    ),
    **dict.fromkeys(
        [
            "price",
            "quantity",
            "unit_price",
            "list_price",
            "cart_value",
            "total",
            "refund_total",
            "lines",
            "units",
            "impulse_products",
        ],
        NUM,
    ),
}
EVENT_TYPES = (
    "page_view",
    "cart_add",
    "cart_remove",
    "checkout_started",
    "order_placed",
    "order_cancelled",
    "order_returned",
)
PAGE_TYPES = ("home", "category", "product", "search", "cart", "checkout", "other")
# string fields whose values are a closed set: comparing them with anything else is a mistake
# what the core itself detects, judged by moments as an event of this type (:class:`Occurrence`)
OCCURRENCE_TYPES = ("cart_abandoned",)
CLOSED_VALUES: dict[str, tuple[str, ...]] = {"type": EVENT_TYPES + OCCURRENCE_TYPES, "page_type": PAGE_TYPES}

CLOCK_SLOPE = 1 / DAY  # a clock metric (in days) grows by 1/DAY per millisecond
EXACT_SLOPE = Fraction(1, DAY)  # the same, exact

# rules.<name>: the thresholds that are numbers (counts, days, minutes, shares, money), as a definition reads them
RULE_NUMBERS = tuple(name for name, f in Rules.model_fields.items() if f.annotation in (int, float))


def rule_problem(name: str) -> str | None:
    """Why ``rules.<name>`` cannot be read (``None``: it can)."""
    if name in RULE_NUMBERS:
        return None
    if name in Rules.model_fields:
        return f"rules.{name} is not a number"
    return f"unknown threshold rules.{name}{_suggest(name, RULE_NUMBERS)}; `segmenter segments` lists them"


def rule_value(rules: Rules, name: str) -> int | Fraction:
    """A threshold as the language reads a number: exact, the decimal as written (0.7 is 7/10)."""
    value = getattr(rules, name)
    return Fraction(repr(value)) if isinstance(value, float) else int(value)


def parts(node: Node) -> dict[str, Any]:
    """A node's fields by name (``vars`` does not see a compiled dataclass's)."""
    return {f.name: getattr(node, f.name) for f in dataclasses.fields(node)}


def bind(node: Node, rules: Rules) -> Node:
    """``node`` with every ``rules.<name>`` replaced by its value in ``rules``."""
    if isinstance(node, RuleRef):
        return Const(NUM, node.offset, rule_value(rules, node.name))
    changes: dict[str, Any] = {}
    for key, child in parts(node).items():
        if isinstance(child, Node):
            changes[key] = bind(child, rules)
        elif isinstance(child, tuple) and child and isinstance(child[0], Node):
            changes[key] = tuple(bind(x, rules) for x in child)
    return dataclasses.replace(node, **changes) if changes else node


class ExprError(ValueError):
    """A mistake in an expression, at ``offset`` (characters into the text)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(message)
        self.message = message
        self.offset = offset


# ------------------------------------------------------------------------------------------- nodes


@dataclass(frozen=True)
class Node:
    """A checked node: its type (NUM, STR, BOOL), whether time alone moves it, its offset in the text."""

    type: str
    offset: int


@dataclass(frozen=True)
class Const(Node):
    value: int | Fraction | str


@dataclass(frozen=True)
class MetricRef(Node):
    name: str
    timed: bool


@dataclass(frozen=True)
class EventField(Node):
    name: str


@dataclass(frozen=True)
class InSegment(Node):
    segment: str


@dataclass(frozen=True)
class RuleRef(Node):
    """``rules.<name>``: a threshold of the rules in force, a number (see :func:`bind`)."""

    name: str


@dataclass(frozen=True)
class Arith(Node):
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class Neg(Node):
    operand: Node


@dataclass(frozen=True)
class Cmp(Node):
    op: str
    left: Node
    right: Node
    margins: tuple[str, ...] = ()  # metrics with an exit margin read by this comparison


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Not(Node):
    operand: Node


# ---------------------------------------------------------------------------------------- parsing

_ARITH = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_CMP = {ast.Eq: "==", ast.NotEq: "!=", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_WHAT = {
    ast.Call: "a function call",
    ast.Attribute: "an attribute",
    ast.Subscript: "indexing",
    ast.Lambda: "a lambda",
    ast.IfExp: "an if-expression",
    ast.ListComp: "a comprehension",
    ast.GeneratorExp: "a comprehension",
    ast.Dict: "a dict",
    ast.List: "a list",
    ast.Tuple: "a tuple",
    ast.Set: "a set",
    ast.NamedExpr: "an assignment",
    ast.JoinedStr: "an f-string",
}


def _offsets(text: str) -> Callable[[ast.AST], int]:
    """(lineno, col_offset in UTF-8 bytes) of a node -> character offset in ``text``."""
    lines = text.split("\n")
    starts = list(itertools.accumulate((len(x) + 1 for x in lines), initial=0))

    def offset(node: ast.AST) -> int:
        line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        return starts[line - 1] + len(lines[line - 1].encode()[:col].decode(errors="ignore"))

    return offset


def _suggest(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(choices), n=1)
    return f" (did you mean {close[0]}?)" if close else ""


@dataclass
class Scope:
    """What an expression may read."""

    moment: bool  # event.<field> allowed
    segments: Callable[[str], str | None]  # in_segment name -> None if fine, else why not
    margins: frozenset[str] = frozenset()
    used_metrics: set[str] = field(default_factory=set)
    used_fields: set[str] = field(default_factory=set)
    used_segments: set[str] = field(default_factory=set)


def parse(text: str, scope: Scope) -> Node:
    """Parse and check ``text``; raise :class:`ExprError` at the first mistake."""
    # a block scalar's line breaks are spaces here: offsets stay those of the YAML value
    src = text.replace("\n", " ")
    try:
        tree = ast.parse(src.strip() and src, mode="eval")
    except SyntaxError as exc:
        where = (exc.offset or 1) - 1
        msg = exc.msg
        if "=" in src and "==" not in src and "invalid syntax" in msg:
            msg += " (comparison is ==)"
        raise ExprError(f"syntax error: {msg}", max(0, min(where, len(src)))) from None
    node = _Checker(src, scope).node(tree.body)
    if node.type != BOOL:
        raise ExprError(f"a condition is needed here, not a {node.type} (compare it: >=, <, ==, ...)", node.offset)
    return node


def timed(node: Node) -> bool:
    """Whether time alone moves ``node``'s value (it reads a clock metric)."""
    if isinstance(node, MetricRef):
        return node.timed
    if isinstance(node, Arith | Cmp):
        return timed(node.left) or timed(node.right)
    if isinstance(node, Neg | Not):
        return timed(node.operand)
    if isinstance(node, BoolOp):
        return any(timed(x) for x in node.items)
    return False


def _metrics_in(node: Node) -> set[str]:
    if isinstance(node, MetricRef):
        return {node.name}
    if isinstance(node, Arith):
        return _metrics_in(node.left) | _metrics_in(node.right)
    if isinstance(node, Neg):
        return _metrics_in(node.operand)
    return set()


class _Checker:
    def __init__(self, text: str, scope: Scope) -> None:
        self.text = text
        self.scope = scope
        self.at = _offsets(text)

    def node(self, n: ast.expr) -> Node:
        at = self.at(n)
        if isinstance(n, ast.BoolOp):
            items = tuple(self._bool(x, "and" if isinstance(n.op, ast.And) else "or") for x in n.values)
            return BoolOp(BOOL, at, "and" if isinstance(n.op, ast.And) else "or", items)
        if isinstance(n, ast.UnaryOp):
            if isinstance(n.op, ast.Not):
                return Not(BOOL, at, self._bool(n.operand, "not"))
            if isinstance(n.op, ast.USub | ast.UAdd):
                operand = self._num(n.operand, "-")
                return operand if isinstance(n.op, ast.UAdd) else Neg(NUM, at, operand)
            raise ExprError("'~' is not part of the language (use not)", at)
        if isinstance(n, ast.BinOp):
            op = _ARITH.get(type(n.op))
            if op is None:
                raise ExprError("only + - * / are allowed in arithmetic", self._op_offset(n))
            left, right = self._num(n.left, op), self._num(n.right, op)
            if op == "*" and timed(left) and timed(right):
                raise ExprError(
                    "cannot be evaluated in streaming: a product of two figures that grow with time has no "
                    "single instant at which a comparison changes",
                    at,
                )
            if op == "/" and timed(right):
                raise ExprError(
                    "cannot be evaluated in streaming: dividing by a figure that grows with time (days_since_*) "
                    "has no exact deadline; multiply the other side instead",
                    self.at(n.right),
                )
            return Arith(NUM, at, op, left, right)
        if isinstance(n, ast.Compare):
            parts: list[Node] = []
            left_ast = n.left
            left = self.node(left_ast)
            for op_ast, right_ast in zip(n.ops, n.comparators, strict=True):
                right = self.node(right_ast)
                parts.append(self._compare(op_ast, left, right, at))
                left = right
            return parts[0] if len(parts) == 1 else BoolOp(BOOL, at, "and", tuple(parts))
        if isinstance(n, ast.Constant):
            if isinstance(n.value, bool) or n.value is None:
                raise ExprError(f"{n.value!r} is not part of the language (numbers and 'text' only)", at)
            if isinstance(n.value, int | float):
                if not math.isfinite(n.value):
                    raise ExprError("numbers must be finite", at)
                # a decimal as written (1.5 is 3/2), so a comparison with a figure in days is exact
                return Const(NUM, at, Fraction(repr(n.value)) if isinstance(n.value, float) else n.value)
            if isinstance(n.value, str):
                return Const(STR, at, n.value)
            raise ExprError(f"{type(n.value).__name__} literals are not part of the language", at)
        if isinstance(n, ast.Name):
            name = n.id
            if name in ("true", "false", "True", "False", "None", "null"):
                raise ExprError(f"{name} is not part of the language: write a comparison", at)
            if name == "event":
                raise ExprError("event is read field by field: event.type, event.total, ...", at)
            metric = BY_NAME.get(name)
            if metric is None:
                raise ExprError(f"unknown metric {name!r}{_suggest(name, BY_NAME)}; `segmenter metrics` lists them", at)
            self.scope.used_metrics.add(name)
            return MetricRef(NUM, at, name, metric.time == CLOCK)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "rules":
            why = rule_problem(n.attr)
            if why is not None:
                raise ExprError(why, at)
            return RuleRef(NUM, at, n.attr)
        if isinstance(n, ast.Attribute):
            if not (isinstance(n.value, ast.Name) and n.value.id == "event"):
                raise ExprError("only event.<field> and rules.<threshold> may be read with a dot", at)
            if not self.scope.moment:
                raise ExprError(
                    "event fields are readable in moments only (kind: moment): a trait holds between events", at
                )
            kind = EVENT_FIELDS.get(n.attr)
            if kind is None:
                raise ExprError(f"unknown event field {n.attr!r}{_suggest(n.attr, EVENT_FIELDS)}", at)
            self.scope.used_fields.add(n.attr)
            return EventField(kind, at, n.attr)
        if isinstance(n, ast.Call):
            if not (isinstance(n.func, ast.Name) and n.func.id == "in_segment"):
                raise ExprError("the only function is in_segment('<segment>')", at)
            if (
                n.keywords
                or len(n.args) != 1
                or not (isinstance(n.args[0], ast.Constant) and isinstance(n.args[0].value, str))
            ):
                raise ExprError("in_segment takes one quoted segment name: in_segment('loyal_customer')", at)
            segment = n.args[0].value
            why = self.scope.segments(segment)
            if why is not None:
                raise ExprError(why, self.at(n.args[0]))
            self.scope.used_segments.add(segment)
            return InSegment(BOOL, at, segment)
        what = _WHAT.get(type(n), type(n).__name__)
        raise ExprError(f"{what} is not part of the language", at)

    def _op_offset(self, n: ast.BinOp) -> int:
        # the operator itself: first non-space after the left operand
        end = self.at(n.left) + len(ast.get_source_segment(self.text, n.left) or "")
        while end < len(self.text) and self.text[end] in " )":
            end += 1
        return end

    def _bool(self, n: ast.expr, op: str) -> Node:
        node = self.node(n)
        if node.type != BOOL:
            raise ExprError(f"type error: {op!r} needs conditions, this is a {node.type}", node.offset)
        return node

    def _num(self, n: ast.expr, op: str) -> Node:
        node = self.node(n)
        if node.type != NUM:
            raise ExprError(f"type error: {op!r} needs numbers, this is a {node.type}", node.offset)
        return node

    def _compare(self, op_ast: ast.cmpop, left: Node, right: Node, at: int) -> Node:
        op = _CMP.get(type(op_ast))
        if op is None:
            raise ExprError("comparisons are == != < <= > >=", at)
        if left.type == BOOL or right.type == BOOL:
            bad = left if left.type == BOOL else right
            raise ExprError(f"type error: cannot compare a condition with {op!r}", bad.offset)
        if left.type != right.type:
            raise ExprError(f"type error: comparing a {left.type} with a {right.type}", right.offset)
        if left.type == STR:
            if op not in ("==", "!="):
                raise ExprError(f"type error: text compares with == or != only, not {op!r}", at)
            for a, b in ((left, right), (right, left)):
                if isinstance(a, EventField) and a.name in CLOSED_VALUES and isinstance(b, Const):
                    values = CLOSED_VALUES[a.name]
                    if b.value not in values:
                        raise ExprError(
                            f"event.{a.name} is never {b.value!r}{_suggest(str(b.value), values)}", b.offset
                        )
        elif op in ("==", "!=") and (timed(left) or timed(right)):
            raise ExprError(
                f"cannot be evaluated in streaming: {op!r} on a figure that grows with time holds for one "
                "millisecond at most; use >= or <=",
                at,
            )
        margins = tuple(sorted((_metrics_in(left) | _metrics_in(right)) & self.scope.margins))
        return Cmp(BOOL, at, op, left, right, margins)


# -------------------------------------------------------------------------------------- evaluation

Number = int | float | Fraction
Affine = tuple[Number, Number]  # value at t0 and slope per millisecond (exact where the parts are)


class _Values(dict[str, Value]):
    def __init__(self, read: Callable[[str], Value]) -> None:
        super().__init__()
        self.read = read

    def __missing__(self, name: str) -> Value:
        v = self[name] = self.read(name)
        return v


class Env:
    """What an evaluation reads: metric values at ``t`` (computed once each), the event, the memberships."""

    def __init__(
        self,
        metric: Callable[[str], Value],
        members: Callable[[str], bool],
        event: Any = None,
        derived: dict[str, float | str] | None = None,
    ) -> None:
        # a value by name, computed once: a hit is a dict lookup in C
        self.metric: Callable[[str], Value] = _Values(metric).__getitem__
        self.members = members
        self.event = event
        self.derived = derived  # event fields the core computed for this event (impulse_products)
        self.shift: dict[str, Fraction] = {}

    def field(self, name: str) -> float | str | None:
        if self.derived is not None and name in self.derived:
            return self.derived[name]
        return event_field(self.event, name)


@dataclass(frozen=True)
class Occurrence:
    """What the core detects with no event of its own (a cart's abandonment), as moments read it."""

    type: str
    fields: dict[str, float | str]


def event_field(event: Any, name: str) -> float | str | None:
    """``event.<name>`` as the language sees it (``None`` where the event has no such field)."""
    if event is None:
        return None
    if isinstance(event, Occurrence):
        return event.type if name == "type" else event.fields.get(name)
    if name == "total":
        return getattr(event, "order_value", None)
    if name == "refund_total":
        return getattr(event, "refund_value", None)
    if name in ("lines", "units"):
        lines = getattr(event, "lines", None)
        if lines is None:
            return None
        return len(lines) if name == "lines" else sum(x.quantity for x in lines)
    value = getattr(event, name, None)
    return value if isinstance(value, int | float | str) and not isinstance(value, bool) else None


# A checked tree is compiled once into closures (no dispatch on node types per evaluation): a number
# node gives its value (``None``: undefined), a clocked one also its slope, a condition its truth.
NumFn = Callable[[Env], Number | None]
AffineFn = Callable[[Env], Affine | None]
TextFn = Callable[[Env], str | None]
HoldsFn = Callable[[Env, bool, bool], bool]  # (env, member, positive)
CrossFn = Callable[[Env, Env, bool, bool, int, list[int]], None]  # (env, after, member, positive, t0, out)


def _number(node: Node) -> NumFn:
    """A number's value at the evaluation instant (``None``: not defined)."""
    if isinstance(node, Const):
        const = node.value if isinstance(node.value, int | Fraction) else None
        return lambda env: const
    if isinstance(node, MetricRef):
        name = node.name

        def metric(env: Env) -> Number | None:
            v = env.metric(name)
            if v is None or not env.shift:
                return v
            shift = env.shift.get(name)  # a margin is exact: an exact figure stays exact, a float one a float
            return v if shift is None else v + shift

        return metric
    if isinstance(node, EventField):
        fname = node.name

        def event_number(env: Env) -> Number | None:
            f = env.field(fname)
            return f if isinstance(f, int | float) else None

        return event_number
    if isinstance(node, Neg):
        operand = _number(node.operand)

        def neg(env: Env) -> Number | None:
            v = operand(env)
            return None if v is None else -v

        return neg
    if isinstance(node, Arith):
        left, right, op = _number(node.left), _number(node.right), _ARITH_OPS[node.op]

        def arith(env: Env) -> Number | None:
            a = left(env)
            if a is None:
                return None
            b = right(env)
            if b is None or (op is operator.truediv and b == 0):
                return None  # undefined: every comparison with it is false
            return op(a, b)  # type: ignore[no-any-return]

        return arith
    raise TypeError(f"not a number node: {node!r}")


def _affine(node: Node, exact: bool = False) -> AffineFn:
    """A number's value at the evaluation instant and its slope in time (``None``: not defined)."""
    if isinstance(node, Arith):
        left, right, opname = _affine(node.left, exact), _affine(node.right, exact), node.op

        def arith(env: Env) -> Affine | None:
            a, b = left(env), right(env)
            if a is None or b is None:
                return None
            if opname == "+":
                return (a[0] + b[0], a[1] + b[1])
            if opname == "-":
                return (a[0] - b[0], a[1] - b[1])
            if opname == "*":  # at most one side moves with time (checked)
                return (a[0] * b[0], a[1] * b[0] + b[1] * a[0])
            if b[0] == 0:
                return None
            return (a[0] / b[0], a[1] / b[0] if a[1] else a[1])  # a still slope stays 0: exact

        return arith
    if isinstance(node, Neg):
        operand = _affine(node.operand, exact)

        def neg(env: Env) -> Affine | None:
            a = operand(env)
            return None if a is None else (-a[0], -a[1])

        return neg
    moves = isinstance(node, MetricRef) and node.timed
    value = _number(node)
    slope: Number = (EXACT_SLOPE if exact else CLOCK_SLOPE) if moves else (0 if exact else 0.0)

    def leaf(env: Env) -> Affine | None:
        v = value(env)
        return None if v is None else (v, slope)

    return leaf


def _text(node: Node) -> TextFn:
    if isinstance(node, Const):
        const = node.value if isinstance(node.value, str) else None
        return lambda env: const
    if isinstance(node, EventField):
        fname = node.name

        def event_text(env: Env) -> str | None:
            f = env.field(fname)
            return f if isinstance(f, str) else None

        return event_text
    raise TypeError(f"not a text node: {node!r}")


_ARITH_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": operator.truediv,
}
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def _compare(node: Cmp) -> Callable[[Env], bool]:
    op = _OPS[node.op]
    if node.left.type == STR:
        ltext, rtext = _text(node.left), _text(node.right)

        def texts(env: Env) -> bool:
            a, b = ltext(env), rtext(env)
            return a is not None and b is not None and op(a, b)

        return texts
    sides = _sides(node)

    def numbers(env: Env) -> bool:
        both = sides(env)
        if both is None:
            return False
        u, v = both
        if isinstance(u, float) or isinstance(v, float):
            # a float figure (money, a share) is compared in floating point, as the rules compare it
            return op(float(u), float(v))
        return op(u, v)

    return numbers


def _sides(node: Cmp) -> Callable[[Env], tuple[Number, Number] | None]:
    """A comparison's two values, left and right (``None``: one is not defined). A metric itself is read
    before a computed figure, so a customer with no order has no expected gap computed for nothing."""
    left, right = _number(node.left), _number(node.right)
    swap = isinstance(node.right, MetricRef) and not isinstance(node.left, MetricRef)
    first, second = (right, left) if swap else (left, right)

    def sides(env: Env) -> tuple[Number, Number] | None:
        x = first(env)
        if x is None:
            return None
        y = second(env)
        if y is None:
            return None
        return (y, x) if swap else (x, y)

    return sides


def _vertices(node: Cmp, margins: dict[str, Fraction]) -> list[dict[str, Fraction]]:
    """The shifts of a member's comparison: each margin metric at ±its margin (the corners of a box)."""
    return [
        {m: s * margins[m] for m, s in zip(node.margins, signs, strict=True)}
        for signs in itertools.product((1, -1), repeat=len(node.margins))
    ]


def _clocked(node: Node) -> bool:
    """Whether time alone moves the condition: it has a comparison with a clock metric."""
    if isinstance(node, BoolOp):
        return any(_clocked(x) for x in node.items)
    if isinstance(node, Not):
        return _clocked(node.operand)
    return isinstance(node, Cmp) and node.left.type == NUM and (timed(node.left) or timed(node.right))


def _within(node: Cmp, margins: dict[str, Fraction]) -> HoldsFn:
    """A comparison reading a margin metric: for a member, whether it holds anywhere within the margins."""
    plain = _compare(node)
    shifts = _vertices(node, margins)

    def within(env: Env, member: bool, positive: bool) -> bool:
        if not member:
            return plain(env)
        results = []
        for shift in shifts:
            env.shift = shift
            results.append(plain(env))
        env.shift = {}
        # a linear comparison over a box of values: holds somewhere iff at a vertex
        return any(results) if positive else all(results)

    return within


def _generated(node: Node, margins: dict[str, Fraction]) -> HoldsFn:
    """A condition as one generated function ``(env, member, positive) -> bool``: the ``and``/``or``/``not``
    tree, memberships and the common metric-against-number comparisons written out in one body (one call per
    condition, not one per node); a comparison with margins calls :func:`_within`, any other :func:`_compare`.

    The source holds only operators of the checked tree and names of this module's making; every value
    (metric names, numbers, segment names, the other comparisons' closures) is passed in its namespace.
    """
    space: dict[str, Any] = {}

    def name(value: Any) -> str:
        key = f"_k{len(space)}"
        space[key] = value
        return key

    def source(n: Node, positive: str) -> str:
        if isinstance(n, BoolOp) and n.op in ("and", "or"):
            return "(" + f" {n.op} ".join(source(x, positive) for x in n.items) + ")"
        if isinstance(n, Not):
            return f"(not {source(n.operand, 'not positive' if positive == 'positive' else 'positive')})"
        if isinstance(n, InSegment):
            return f"env.members({name(n.segment)})"
        if isinstance(n, Cmp) and n.margins:
            return f"{name(_within(n, margins))}(env, member, {positive})"
        if isinstance(n, Cmp) and isinstance(n.left, MetricRef) and isinstance(n.right, Const):
            # a metric against a number, read once; a float figure compared in floating point (as numbers does)
            op, metric, const = n.op, name(n.left.name), n.right.value
            if op not in _OPS:  # the only operator text in the source: from the checked set
                raise TypeError(f"not a comparison: {op!r}")
            exact, approx = name(const), name(float(const))
            return (
                f"((_u := env.metric({metric})) is not None and "
                f"(_u {op} {approx} if isinstance(_u, float) else _u {op} {exact}))"
            )
        if isinstance(n, Cmp):
            return f"{name(_compare(n))}(env)"
        raise TypeError(f"not a condition node: {n!r}")

    body = source(node, "positive")
    exec(compile(f"def holds(env, member, positive):\n    return {body}\n", "<when>", "exec"), space)
    return space["holds"]  # type: ignore[no-any-return]


def _crossings(node: Node, margins: dict[str, Fraction], exact: bool = True) -> CrossFn:
    """Appends the instants after ``t0`` at which a comparison time alone moves can change the condition.

    A part no clock moves keeps its value just after ``t0`` (judged on ``after``, the values at ``t0 + 1``:
    an event at ``t0 + 1`` asks from ``t0``) until the next event or window step, both of which judge the
    key again; so an ``and`` with such a part false (an ``or`` with one true) cannot change before then,
    and its clocked comparisons are not looked at.
    """
    if isinstance(node, BoolOp):
        fixed = tuple(_generated(x, margins) for x in node.items if not _clocked(x))
        moving = tuple(_crossings(x, margins, exact) for x in node.items if _clocked(x))
        pinned = node.op == "or"  # the value of a fixed part that pins the whole

        def either(env: Env, after: Env, member: bool, positive: bool, t0: int, out: list[int]) -> None:
            for f in fixed:
                if f(after, member, positive) == pinned:
                    return
            for g in moving:
                g(env, after, member, positive, t0, out)

        return either
    if isinstance(node, Not):
        operand = _crossings(node.operand, margins, exact)
        return lambda env, after, member, positive, t0, out: operand(env, after, member, not positive, t0, out)
    assert isinstance(node, Cmp)
    if not node.margins and all(isinstance(x, MetricRef) or not timed(x) for x in (node.left, node.right)):
        return _crossing_of_values(node, exact)
    return _crossing_of_affine(node, margins, exact)


def _crossing_of_affine(node: Cmp, margins: dict[str, Fraction], exact: bool = True) -> CrossFn:
    """A comparison time moves, any shape: both sides as value and slope, at each corner of a member's margins;
    with exact figures at the instant it changes (see :func:`_crossing_of_values`)."""
    left, right = _affine(node.left, exact), _affine(node.right, exact)
    shifts = _vertices(node, margins) if node.margins else [{}]
    op = node.op

    def crossing(env: Env, after: Env, member: bool, positive: bool, t0: int, out: list[int]) -> None:
        for shift in shifts if member else ({},):
            env.shift = shift
            a, b = left(env), right(env)
            env.shift = {}
            if a is None or b is None:
                continue
            d0, k = a[0] - b[0], a[1] - b[1]
            if k == 0:
                continue
            if exact and not isinstance(d0, float) and not isinstance(k, float):
                at = flip(op, k > 0, t0 - Fraction(d0) / Fraction(k))
                if at > t0:
                    out.append(at)
                continue
            zero = t0 - d0 / k  # where the difference is 0
            if math.isfinite(zero) and zero > t0 - 1:
                out.append(max(t0 + 1, math.floor(zero) - 1))

    return crossing


def flip(op: str, rising: bool, zero: int | Fraction) -> int:
    """The first millisecond at which ``d op 0`` takes its other value, where ``d`` is exact, linear in time,
    rising (or falling) and 0 at instant ``zero``: ``zero`` itself where equality gives the new value already
    (``>=`` rising, ``>`` falling, ...), else the millisecond after it."""
    at_zero = (op in (">=", "<")) == rising
    return math.ceil(zero) if at_zero else math.floor(zero) + 1


def _crossing_of_values(node: Cmp, exact: bool = True) -> CrossFn:
    """The common shape of a comparison time moves: each side a clock metric itself or a figure time does not
    move. Its slope is known here (one side moves, a day per day); only the values are read.

    With exact figures (days, counts, decimals as written) the instant the comparison changes is computed
    exactly, so a deadline there finds the change; a float figure (money) keeps the general way's slightly
    early instant (``exact=False``: always, the reference the tests compare with).
    """
    k = (CLOCK_SLOPE if timed(node.left) else 0.0) - (CLOCK_SLOPE if timed(node.right) else 0.0)
    if k == 0:  # both sides move alike: time alone never changes it
        return lambda env, after, member, positive, t0, out: None
    sides, op, rising = _sides(node), node.op, k > 0
    day = DAY if rising else -DAY  # the difference moves by 1/day per millisecond

    def crossing(env: Env, after: Env, member: bool, positive: bool, t0: int, out: list[int]) -> None:
        both = sides(env)
        if both is None:
            return
        a, b = both
        if exact and not isinstance(a, float) and not isinstance(b, float):
            at = flip(op, rising, t0 - (a - b) * day)
            if at > t0:
                out.append(at)
            return
        zero = t0 - (a - b) / k  # where the difference is 0
        if math.isfinite(zero) and zero > t0 - 1:
            out.append(max(t0 + 1, math.floor(zero) - 1))

    return crossing


def monotone(node: Node, metric: str) -> int | None:
    """How the condition's truth goes with ``metric`` alone (everything else held): ``1`` never less true
    as it grows, ``-1`` never more true, ``0`` either (or unknown: inside arithmetic), ``None`` not read."""
    if isinstance(node, BoolOp):
        seen = {m for m in (monotone(x, metric) for x in node.items) if m is not None}
        return None if not seen else seen.pop() if len(seen) == 1 else 0
    if isinstance(node, Not):
        m = monotone(node.operand, metric)
        return None if m is None else -m
    if not isinstance(node, Cmp) or metric not in _metrics_in(node.left) | _metrics_in(node.right):
        return None
    sign = {">=": 1, ">": 1, "<=": -1, "<": -1}.get(node.op, 0)
    if _bare(node.left, metric) and metric not in _metrics_in(node.right):
        return sign
    if _bare(node.right, metric) and metric not in _metrics_in(node.left):
        return -sign
    return 0  # inside arithmetic, on both sides, or == / !=


def _bare(node: Node, metric: str) -> bool:
    return isinstance(node, MetricRef) and node.name == metric


class Condition:
    """A checked condition compiled for evaluation, with a member's exit margins: its truth, and when
    time alone can change it (``exact``: at the instant a comparison of exact figures with a clock metric
    changes; else slightly early, re-judged there, as the tests' reference does)."""

    def __init__(self, node: Node, margins: dict[str, Fraction] | None = None, exact: bool = True) -> None:
        self.node = node
        self._holds = _generated(node, margins or {})
        self._crossings = _crossings(node, margins or {}, exact) if _clocked(node) else None

    @property
    def clocked(self) -> bool:
        """Whether time alone can change it (it compares a clock metric)."""
        return self._crossings is not None

    def holds(self, env: Env, member: bool = False) -> bool:
        """Whether the condition holds; for a ``member`` (hysteresis) the comparisons reading a margin
        metric hold if they hold anywhere within ±margin of its value, in the direction that keeps the
        whole condition true (not under an odd number of ``not``)."""
        return self._holds(env, member, True)

    def crossings(self, env: Env, after: Env, t0: int, member: bool = False) -> list[int]:
        """Instants after ``t0`` at which time alone can change the condition (``env``: the values at
        ``t0``, ``after``: at ``t0 + 1``).

        Slightly early rather than late (a float crossing may round either way): re-evaluated there, the
        condition is judged with exact values and the next crossing is asked for again.
        """
        out: list[int] = []
        if self._crossings is not None:
            self._crossings(env, after, member, True, t0, out)
        return out
