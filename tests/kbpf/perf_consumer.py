"""A small perf ring consumer for the tests, reading the way libbpf's perf_buffer does
(``perf_event_read_simple``): load ``data_head``, walk records from ``data_tail`` by their
header's ``size``, copy a record that runs past the end of the data area in two parts, then
store the new ``data_tail``.

It reads the frames the event's mmap returned through the test host's direct map: the same
physical pages user space would map, not the kernel's vmap of them.
"""

from __future__ import annotations

import struct

from kbpf.linux_bpf import PAGE_SIZE, PERF_RECORD_LOST, PERF_RECORD_SAMPLE
from tests.kbpf.testhost import DIRECT_BASE, TestHost


class PerfConsumer:
    def __init__(self, host: TestHost, pages: list[tuple[int, bool]]):
        self.host = host
        self.meta = DIRECT_BASE + pages[0][0]
        self.pages = [DIRECT_BASE + phys for phys, _ in pages[1:]]
        self.size = len(self.pages) * PAGE_SIZE
        self.wrapped = 0  # records that ran past the end of the data area

    def _u64(self, off: int) -> int:
        return int.from_bytes(self.host.read(self.meta + off, 8), "little")

    @property
    def head(self) -> int:
        return self._u64(1024)

    @property
    def tail(self) -> int:
        return self._u64(1032)

    def set_tail(self, tail: int) -> None:
        self.host.write(self.meta + 1032, tail.to_bytes(8, "little"))

    def copy(self, pos: int, n: int) -> bytes:
        """``n`` bytes of the data area from free-running position ``pos``, wrapping."""
        out = bytearray()
        while n > 0:
            off = pos & (self.size - 1)
            page, in_page = divmod(off, PAGE_SIZE)
            take = min(n, PAGE_SIZE - in_page)
            out += self.host.read(self.pages[page] + in_page, take)
            pos += take
            n -= take
        return bytes(out)

    def raw_records(self) -> list[bytes]:
        """Every record between tail and head, whole; the tail is advanced past them."""
        head, tail = self.head, self.tail
        out = []
        while tail != head:
            size = struct.unpack("<H", self.copy(tail + 6, 2))[0]
            if (tail & (self.size - 1)) + size > self.size:
                self.wrapped += 1
            out.append(self.copy(tail, size))
            tail += size
        self.set_tail(tail)
        return out

    def consume(self) -> list[tuple[str, object]]:
        """``("sample", raw bytes as padded)`` and ``("lost", count)`` in ring order, as
        perf_buffer hands them to ``sample_cb`` / ``lost_cb``."""
        out: list[tuple[str, object]] = []
        for rec in self.raw_records():
            kind = struct.unpack_from("<I", rec)[0]
            if kind == PERF_RECORD_SAMPLE:
                (raw,) = struct.unpack_from("<I", rec, 8)
                out.append(("sample", rec[12 : 12 + raw]))
            elif kind == PERF_RECORD_LOST:
                out.append(("lost", struct.unpack_from("<Q", rec, 16)[0]))
            else:
                raise AssertionError(f"unexpected record type {kind}")
        return out
