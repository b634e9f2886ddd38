"""Messages from one key to another: identity linking and referral credit.

A customer's state lives under one key (``customer_id``, else ``anonymous_id``);
in the streaming worker keys live on different partitions, so state never
crosses keys through shared memory. Instead the core returns :class:`Routed`
messages, the shell delivers them to the target key (a Kafka topic keyed like
the table; in replay an in-process FIFO) and the target applies them with
``Segmenter.on_routed``.

Kinds:

* ``link``: an event carrying both ids reached the customer's key before the
  anonymous history did; it travels to the anonymous key, which answers with
* ``merge``: the anonymous state (``state``) and the linking event, to the
  customer key, which absorbs the history and then applies the event.
* ``apply``: an event of an anonymous id already merged, forwarded to its customer.
* ``credit``: a referred customer placed their first order; the referrer's key
  counts them (``advocate``).
* ``uncredit``: cancellations left that customer without an order; the
  referrer no longer counts them (a later order credits them again).
* ``event``: an input event that reached a partition other than its key's
  (a producer keyed it differently); it is handled as if it had arrived there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import orjson

LINK: Final = "link"
MERGE: Final = "merge"
APPLY: Final = "apply"
CREDIT: Final = "credit"
UNCREDIT: Final = "uncredit"
EVENT: Final = "event"
KINDS = (LINK, MERGE, APPLY, CREDIT, UNCREDIT, EVENT)


@dataclass(slots=True, frozen=True)
class Routed:
    """A message for the state under ``key``; ``body`` is JSON-ready."""

    key: str
    kind: str
    body: dict[str, Any]

    def to_json(self) -> bytes:
        """The wire form (the routing topic's value)."""
        return orjson.dumps({"key": self.key, "kind": self.kind, "body": self.body})

    @classmethod
    def from_json(cls, data: bytes | str) -> Routed:
        """Inverse of :meth:`to_json`; ``ValueError`` on anything else."""
        obj = orjson.loads(data)
        if not isinstance(obj, dict) or obj.get("kind") not in KINDS:
            raise ValueError("not a routed message: unknown or missing kind")
        key, body = obj.get("key"), obj.get("body")
        if not isinstance(key, str) or not key or not isinstance(body, dict):
            raise ValueError("not a routed message: key must be a string and body an object")
        return cls(key, obj["kind"], body)
