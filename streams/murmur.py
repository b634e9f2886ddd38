"""Kafka's default partitioner hash (murmur2, as the Java client), compiled with the batch path.

aiokafka's is the same arithmetic interpreted: 2.5 µs a 12-byte key against 1.0, paid for every key not seen
lately (the worker's partitioner of keys, the outbox's of produced messages). Equal to it bit for bit
(tests/unit/streams/test_murmur.py).
"""

from __future__ import annotations

from typing import Final

_M: Final = 0x5BD1E995
_MASK: Final = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """MurmurHash2 of ``data`` with Kafka's seed, as ``org.apache.kafka.common.utils.Utils.murmur2``."""
    length = len(data)
    h = 0x9747B28C ^ length
    for i in range(0, length - length % 4, 4):
        k = data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24)
        k = (k * _M) & _MASK
        k ^= k >> 24
        k = (k * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail = length & ~3
    extra = length % 4
    if extra >= 3:
        h ^= data[tail + 2] << 16
    if extra >= 2:
        h ^= data[tail + 1] << 8
    if extra >= 1:
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    h ^= h >> 15
    return h
