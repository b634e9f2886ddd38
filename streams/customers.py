"""``GET /customers/{id}``: one customer's explanation from the worker that owns it (an interactive query).

The owner answers from its own state (the processor's decoded cache, the batch not yet stored, or the
table's store) with :func:`segmenter.explain.explain` at the wall clock (``?at=`` an RFC 3339 instant or
epoch ms instead; never before the state's own clock). Any other worker answers ``421`` with the owner's
address from the group's assignment, so a client asks one worker and follows at most one redirect.

| situation                                           | status | body                                      |
|-----------------------------------------------------|--------|-------------------------------------------|
| owned here, restored, known                         | 200    | the explanation, ``partition``, ``worker`` |
| owned here, no state (or only routed bookkeeping)   | 404    | ``{"error": "unknown customer", ...}``    |
| another member owns the partition                   | 421    | ``{"error": "not the owner", "owner": URL}`` |
| no owner known, or owned here and still restoring   | 503    | ``{"error": ..., "retry": true}``         |
| ``at`` not an instant                               | 400    | ``{"error": ...}``                        |
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from segmenter.explain import explain
from segmenter.state import CustomerState
from streams.faustx.bridge import own_url, partition_db, partition_owners

if TYPE_CHECKING:
    from streams.app import Worker

PATH = "/customers/{customer_id}"


def parse_at(text: str | None) -> int:
    """``?at=``: epoch ms or an RFC 3339 instant with an offset; absent: the wall clock now."""
    if not text:
        return int(time.time() * 1000)
    if text.lstrip("-").isdigit():
        return int(text)
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError("an instant needs an offset (e.g. Z)")
    return int(t.timestamp() * 1000)


def _owned(worker: Worker) -> set[int]:
    ticks = worker.settings.topics.ticks
    return {tp.partition for tp in worker.app.assignor.assigned_actives() if tp.topic == ticks}


def _loader(worker: Worker, partition: int) -> Callable[[str], bytes | None]:
    """Reads as the batch loop's: a state computed and not stored yet first, then the partition's store."""
    unstored = worker.commits.unstored
    db_for = partition_db(worker.table)
    read = db_for(partition).get if db_for is not None else worker.table.data.get

    def load(key: str) -> bytes | None:
        k = key.encode()
        value: bytes | None = unstored.get(k)
        return value if value is not None else read(k)

    return load


def lookup(worker: Worker, customer_id: str, at_ms: int) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of ``GET /customers/{customer_id}`` (see the module's table)."""
    proc = worker.processor
    partition = proc.partitioner(customer_id)
    here = own_url(worker.app)
    where = {"customer": customer_id, "partition": partition, "worker": here}
    if partition not in _owned(worker):
        owner = partition_owners(worker.app, worker.table).get(partition)
        if owner is None or owner == here:
            return 503, {"error": "no owner known (rebalancing?)", "retry": True, **where}
        return 421, {"error": "not the owner", "owner": owner, **where}
    if not worker.restored():
        return 503, {"error": "the partition is being restored", "retry": True, **where}
    # read between batches (a batch is computed without yielding): the latest state the worker computed
    state: CustomerState | None = proc.peek(customer_id, _loader(worker, partition))
    if state is None or (state.first_seen_ms is None and not state.members):
        return 404, {"error": "unknown customer", **where}
    return 200, {**explain(state, at_ms, proc.segmenter), "partition": partition, "worker": here}


def install(worker: Worker) -> None:
    """The ``/customers/{id}`` page on the worker's web server."""
    app: Any = worker.app

    @app.page(PATH)
    async def customer_page(view: Any, request: Any, customer_id: str) -> Any:
        try:
            at_ms = parse_at(request.query.get("at"))
        except ValueError as exc:
            return view.json({"error": f"at: {exc}"}, status=400)
        status, body = lookup(worker, customer_id, at_ms)
        return view.json(body, status=status)
