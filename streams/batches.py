"""Count the record batches in a partition, the embedded broker's scarce resource.

Kafka clients never show batch boundaries, yet on the embedded broker reads
collapse once a partition holds some thousands of batches (``bench/broker_wall.py``
measures where). This module asks the broker directly: a plain Fetch request
(protocol version 4, no client library involved; ListOffsets v1 says where a
partition ends) returns whole record batches,
and each batch's header says where it starts and how many offsets it spans, so
counting them needs no decoding of the records themselves.

:class:`BatchCounter` keeps its position per partition and only fetches what was
appended since its last call, so a probe every few seconds costs one small fetch
per partition. It speaks plaintext only: it is meant for the embedded broker,
which the runtime starts without authentication; on a real Kafka cluster batch
counts do not matter and nothing here runs.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

_FETCH = 1
_FETCH_VERSION = 4
_LIST_OFFSETS = 2
_LIST_OFFSETS_VERSION = 1
_CLIENT_ID = b"durable-batches"
_BATCH_HEADER = 61  # bytes of a v2 record batch header before its records


class ProbeFailed(RuntimeError):
    """The broker did not answer the batch probe as the protocol says it should."""


@dataclass
class PartitionBatches:
    """What the counter knows of one partition: batches and records seen up to ``next_offset``."""

    batches: int = 0
    records: int = 0
    next_offset: int = 0


def _string(s: str) -> bytes:
    raw = s.encode()
    return struct.pack(">h", len(raw)) + raw


@dataclass
class BatchCounter:
    """Counts record batches per partition of a broker at ``bootstrap`` (``host:port``), incrementally."""

    bootstrap: str
    timeout_s: float = 5.0
    fetch_bytes: int = 4 * 1024 * 1024
    wait_ms: int = 50  # Tansu answers a fetch with max wait 0 with no topics at all
    lookup_wait_ms: int = 10_000  # long enough for any lookup: the answer comes as soon as the batch is found
    seen: dict[tuple[str, int], PartitionBatches] = field(default_factory=dict)
    _sock: socket.socket | None = field(default=None, init=False, repr=False)
    _correlation: int = field(default=0, init=False, repr=False)

    def count(self, topic: str, partition: int, max_fetches: int = 1000) -> PartitionBatches:
        """Bring the count of ``topic[partition]`` up to date and return it.

        Reads at most ``max_fetches`` fetches of new batches, so a huge backlog is
        counted over several calls rather than in one long stall.
        """
        state = self.seen.setdefault((topic, partition), PartitionBatches())
        # Fetch only while there is something to read: a fetch past the end waits out its max wait.
        high = self.latest(topic, partition)
        for _ in range(max_fetches):
            if state.next_offset >= high:
                break
            _, records = self._fetch(topic, partition, state.next_offset)
            if not _walk(records, state):
                break
        return state

    def estimate(self, topic: str, partition: int, samples: int = 16) -> PartitionBatches:
        """Estimate the batches of ``topic[partition]`` from ``samples`` fetches, without reading it all.

        A fetch at an offset returns the batch holding it; sampling offsets evenly
        weighs each batch by its size, so ``end offset x mean(1 / batch size)``
        estimates the number of batches (exact when batches are all one size).
        Small partitions are counted exactly. The result also becomes the
        starting point of later :meth:`count` calls.
        """
        end = self.latest(topic, partition)
        if end <= samples * 8:
            self.seen.pop((topic, partition), None)
            return self.count(topic, partition)
        inverse: list[float] = []
        for i in range(samples):
            probe = PartitionBatches(next_offset=int((i + 0.5) * end / samples))
            _, records = self._fetch(topic, partition, probe.next_offset, fetch_bytes=1)
            if _walk(records, probe, first_only=True) and probe.records:
                inverse.append(1 / probe.records)
        # The embedded broker's high watermark is its last batch's first offset + 1: read that batch for the true end.
        last = PartitionBatches(next_offset=end - 1)
        _, records = self._fetch(topic, partition, end - 1, fetch_bytes=1)
        _walk(records, last, first_only=True)
        end = max(end, last.next_offset)
        batches = round(end * sum(inverse) / len(inverse)) if inverse else end
        state = PartitionBatches(batches=batches, records=end, next_offset=end)
        self.seen[(topic, partition)] = state
        return state

    def lookup(self, topic: str, partition: int) -> tuple[int, float]:
        """The partition's end offset and the seconds the broker takes to serve its last batch.

        On the embedded broker a fetch costs time in proportion to the batches
        the partition holds; a consumer whose ``fetch.wait.max.ms`` is shorter
        than that gets empty answers for ever (``bench/broker_wall.py``).
        """
        end = self.latest(topic, partition)
        if end <= 0:
            return 0, 0.0
        start = time.monotonic()
        self._fetch(topic, partition, end - 1, wait_ms=self.lookup_wait_ms)
        return end, time.monotonic() - start

    def latest(self, topic: str, partition: int) -> int:
        """The partition's latest offset (ListOffsets; on the embedded broker: its last batch's first offset + 1)."""
        body = (
            struct.pack(">i", -1)  # replica id
            + struct.pack(">i", 1)
            + _string(topic)
            + struct.pack(">i", 1)
            + struct.pack(">iq", partition, -1)  # -1: the latest offset
        )
        response = self._request(_LIST_OFFSETS, _LIST_OFFSETS_VERSION, body, f"{topic}[{partition}]")
        try:
            pos = 4
            (topics,) = struct.unpack_from(">i", response, pos)
            pos += 4
            for _ in range(topics):
                (name_len,) = struct.unpack_from(">h", response, pos)
                pos += 2 + name_len
                (partitions,) = struct.unpack_from(">i", response, pos)
                pos += 4
                for _ in range(partitions):
                    index, error, _timestamp, offset = struct.unpack_from(">ihqq", response, pos)
                    pos += 22
                    if index == partition:
                        if error:
                            raise ProbeFailed(f"latest offset of {topic}[{partition}]: Kafka error code {error}")
                        return int(offset)
        except struct.error as exc:
            raise ProbeFailed(f"malformed offsets answer for {topic}[{partition}]: {exc}") from exc
        return 0

    def close(self) -> None:
        """Close the connection (a later :meth:`count` opens a new one)."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _connection(self) -> socket.socket:
        if self._sock is None:
            host, _, port = self.bootstrap.split(",")[0].rpartition(":")
            self._sock = socket.create_connection((host or "127.0.0.1", int(port)), timeout=self.timeout_s)
        return self._sock

    def _fetch(
        self, topic: str, partition: int, offset: int, fetch_bytes: int | None = None, wait_ms: int | None = None
    ) -> tuple[int, bytes]:
        """One Fetch of ``topic[partition]`` at ``offset``: the high watermark and the records bytes."""
        size = fetch_bytes or self.fetch_bytes
        body = (
            struct.pack(
                ">iiiib", -1, wait_ms or self.wait_ms, 1, size, 0
            )  # replica, max wait, min bytes, max bytes, isolation
            + struct.pack(">i", 1)
            + _string(topic)
            + struct.pack(">i", 1)
            + struct.pack(">iqi", partition, offset, size)
        )
        response = self._request(_FETCH, _FETCH_VERSION, body, f"{topic}[{partition}]")
        return _records_of(response, topic, partition)

    def _request(self, api_key: int, version: int, body: bytes, what: str) -> bytes:
        """Send one request and return its response after the correlation id (checked)."""
        self._correlation += 1
        header = struct.pack(">hhi", api_key, version, self._correlation) + struct.pack(">h", len(_CLIENT_ID))
        request = header + _CLIENT_ID + body
        try:
            sock = self._connection()
            sock.sendall(struct.pack(">i", len(request)) + request)
            size = struct.unpack(">i", _read_exactly(sock, 4))[0]
            response = _read_exactly(sock, size)
        except OSError as exc:
            self.close()
            raise ProbeFailed(f"batch probe of {what} at {self.bootstrap}: {exc}") from exc
        (correlation,) = struct.unpack_from(">i", response, 0)
        if correlation != self._correlation:
            self.close()
            raise ProbeFailed(f"answer to request {correlation}, expected {self._correlation}")
        return response


def _read_exactly(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ConnectionError("broker closed the connection")
        chunks += chunk
    return bytes(chunks)


def _records_of(response: bytes, topic: str, partition: int) -> tuple[int, bytes]:
    """The high watermark and records bytes of the one partition a v4 Fetch response answers for."""
    try:
        pos = 8  # correlation id, throttle time
        (topics,) = struct.unpack_from(">i", response, pos)
        pos += 4
        for _ in range(topics):
            (name_len,) = struct.unpack_from(">h", response, pos)
            pos += 2 + name_len
            (partitions,) = struct.unpack_from(">i", response, pos)
            pos += 4
            for _ in range(partitions):
                index, error, high = struct.unpack_from(">ihq", response, pos)
                pos += 4 + 2 + 8 + 8  # partition, error, high watermark, last stable offset
                (aborted,) = struct.unpack_from(">i", response, pos)
                pos += 4 + max(aborted, 0) * 16
                (size,) = struct.unpack_from(">i", response, pos)
                pos += 4
                records = response[pos : pos + max(size, 0)]
                pos += max(size, 0)
                if index == partition:
                    if error not in (0, 1):  # 1: offset out of range, which for us means "nothing new"
                        raise ProbeFailed(f"fetch of {topic}[{partition}] failed with Kafka error code {error}")
                    return high, records
    except struct.error as exc:
        raise ProbeFailed(f"malformed fetch answer for {topic}[{partition}]: {exc}") from exc
    return 0, b""


def _walk(records: bytes, state: PartitionBatches, first_only: bool = False) -> bool:
    """Count the complete batches in ``records`` that end at or after ``state.next_offset``; True if any."""
    pos = 0
    found = False
    while pos + 12 <= len(records):
        base, length = struct.unpack_from(">qi", records, pos)
        end = pos + 12 + length
        if end > len(records) or length < _BATCH_HEADER - 12:
            break  # the broker cut the last batch at max bytes: fetched again next time
        (last_delta,) = struct.unpack_from(">i", records, pos + 23)
        (count,) = struct.unpack_from(">i", records, pos + 57)
        if base + last_delta >= state.next_offset:
            state.batches += 1
            state.records += count
            state.next_offset = base + last_delta + 1
            found = True
            if first_only:
                break
        pos = end
    return found
