"""``segmenter explain CUSTOMER``: a customer's figures, each segment's condition, what happens next.

Asks one worker's ``GET /customers/{id}`` (``--url``, default this machine's ``SEGMENTER_WEB_PORT``); a
worker that does not own the customer's partition answers 421 with the owner's address from the group's
assignment, which is asked next (``streams/customers.py``). Exit 1: the customer is unknown; 2: no
worker could answer.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

TIMEOUT_S = 5.0
RETRIES = 10  # 503 while the group rebalances or the owner restores: asked again, 0.5 s apart


def register(sub: Any) -> None:
    p = sub.add_parser(
        "explain",
        help="why a customer is in their segments and what happens next (from the owning worker)",
        description="The customer's metrics, each segment's condition with the deciding figures against their "
        "thresholds (held or not, and by how much), memberships with since-when and reason, the next "
        "time-driven changes, and the records kept of the events applied; asked of the worker that owns the "
        "customer's partition.",
    )
    p.add_argument("customer", metavar="CUSTOMER", help="customer_id or anonymous_id")
    p.add_argument("--json", action="store_true", help="the worker's JSON answer on stdout")
    p.add_argument("--url", help="any worker's web address (default http://127.0.0.1:$SEGMENTER_WEB_PORT)")
    p.add_argument("--at", help="explain as of this instant (RFC 3339 or epoch ms; default now)")
    p.set_defaults(func=run)


def fetch(base: str, customer: str, at: str | None = None) -> tuple[int, dict[str, Any]]:
    """``GET /customers/{customer}`` of ``base``, following the owner's address once (status, body)."""
    query = f"?{urllib.parse.urlencode({'at': at})}" if at else ""
    path = f"/customers/{urllib.parse.quote(customer, safe='')}{query}"
    url = base.rstrip("/") + path
    status, body = 0, {}
    for attempt in range(RETRIES):
        status, body = _get(url)
        if status == 421 and body.get("owner"):
            url = str(body["owner"]).rstrip("/") + path
            status, body = _get(url)
        if status != 503 or attempt == RETRIES - 1:
            break
        time.sleep(0.5)
    return status, body


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp:
            return int(resp.status), json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read())
        except ValueError:
            return exc.code, {"error": str(exc)}


def run(args: argparse.Namespace) -> int:
    base = args.url
    if base is None:
        from streams.settings import Settings

        base = f"http://127.0.0.1:{Settings().web_port}"
    try:
        status, body = fetch(base, args.customer, args.at)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        print(f"segmenter explain: no answer from {base}: {exc}", file=sys.stderr)
        return 2
    if status == 404:
        print(f"{args.customer}: unknown customer (partition {body.get('partition')})", file=sys.stderr)
        return 1
    if status != 200:
        print(f"segmenter explain: {status} {body.get('error')} ({body})", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(body, indent=2))
        return 0
    render(body)
    return 0


def _fig(x: Any) -> str:
    if isinstance(x, float):
        return f"{x:.4f}".rstrip("0").rstrip(".")
    return str(x)


def render(r: dict[str, Any]) -> None:
    """The report for a terminal."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    who = r["key"] + (f" (linked to {r['linked_to']})" if r.get("linked_to") else "")
    console.print(
        f"[bold]{who}[/bold] as of {r['at']} (last evaluated {r['evaluated_at']}; partition {r['partition']}, "
        f"worker {r['worker']})"
    )
    members = Table(title="memberships")
    for name in ("segment", "since", "reason"):
        members.add_column(name, overflow="fold")
    for m in r["memberships"]:
        members.add_row(m["segment"], m["since"], str(m["reason"] or ""))
    console.print(members)
    conds = Table(title="segments: the conditions that decide them (margin > 0: holds by that much)")
    for name in ("segment", "held", "member", "figure", "value", "op", "threshold", "margin", "note"):
        conds.add_column(name, overflow="fold")
    for seg, info in r["segments"].items():
        rows = info["conditions"] or [{"figure": "", "value": "", "op": "", "threshold": "", "margin": ""}]
        for i, c in enumerate(rows):
            first = i == 0
            conds.add_row(
                seg if first else "",
                ("yes" if info["held"] else "no") if first else "",
                ("yes" if info["member"] else "") if first else "",
                c["figure"],
                _fig(c["value"]),
                c["op"],
                _fig(c["threshold"]),
                _fig(c["margin"]),
                c.get("note", "") + (f" [{info['combine']}]" if first and len(rows) > 1 else ""),
            )
    console.print(conds)
    for name, d in r.get("definitions", {}).items():
        console.print(f"definition {name}: {'held' if d['held'] else 'not held'} — {d['when']} — {d['figures']}")
    metrics = Table(title="metrics")
    for name in ("metric", "value", "unit", "next change by time"):
        metrics.add_column(name)
    for name, m in r["metrics"].items():
        metrics.add_row(name, _fig(m["value"]), m["unit"], str(m["next_change"] or ""))
    console.print(metrics)
    nxt = Table(title=f"next changes if no event comes (next deadline {r['next_due']})")
    for name in ("segment", "change", "at", "reason"):
        nxt.add_column(name, overflow="fold")
    for seg, ch in r["upcoming"]["next_by_segment"].items():
        nxt.add_row(seg, ch["change"], ch["at"], ch["reason"])
    console.print(nxt)
    last = r["last_events"]
    console.print(f"last event at {last['last_event_at']} ({last['note']})")
    for kind in ("orders", "returns", "product_views", "cart_activity"):
        if last[kind]:
            console.print(f"  {kind}: " + "; ".join(json.dumps(x) for x in last[kind]))
