"""bpf_perf_event_output (25) from a clang-compiled program (tests/progs/perf_output.bpf.c)
into a PERF_EVENT_ARRAY that libbpf sized to the CPU count, read by ``m.perf_buffer``.

Linux v6.6: the sample goes to the perf event stored at the index (BPF_F_CURRENT_CPU: this
CPU's); an empty slot is -ENOENT, an index past the array -E2BIG, unknown flag bits -EINVAL, and
an event that belongs to another CPU -EOPNOTSUPP.  A PERF_RECORD_SAMPLE carries the raw data
after a u32 size, padded so the record is a multiple of 8 bytes.  When the ring has no room the
helper returns -ENOSPC and the ring counts the sample lost; the next record that fits is a
PERF_RECORD_LOST with that count, which the consumer hands to ``on_lost``.
"""

from __future__ import annotations

import errno
import struct

import pytest

from sim import Machine

from .conftest import obj_path

BPF_F_CURRENT_CPU = 0xFFFFFFFF


def signed(r0: int) -> int:
    return r0 - (1 << 64) if r0 >= 1 << 63 else r0


class Rig:
    def __init__(self, page_cnt: int = 1):
        self.m = Machine(cpus=2)
        self.obj = self.m.load_object(obj_path("perf_output"))
        self.samples: list[tuple[int, bytes]] = []
        self.lost: list[tuple[int, int]] = []
        self.page_cnt = page_cnt

    def open(self):
        self.pb = self.m.perf_buffer(
            self.obj.maps["events"],
            lambda cpu, data: self.samples.append((cpu, data)),
            lambda cpu, count: self.lost.append((cpu, count)),
            page_cnt=self.page_cnt,
        )
        return self

    def emit(self, cpu: int, seq: int, length: int = 64, flags: int = BPF_F_CURRENT_CPU) -> int:
        ctx = struct.pack("<QII", flags, seq, length)
        return signed(self.m.run_program(self.obj.programs["emit"], cpu=cpu, ctx=ctx))


def test_without_a_reader_the_slot_is_empty():
    rig = Rig()
    assert rig.obj.maps["events"].max_entries == 2
    assert rig.emit(0, 1) == -errno.ENOENT


def test_samples_reach_the_ring_of_the_cpu_that_sent_them_padded_to_8_bytes():
    rig = Rig().open()
    assert rig.emit(1, 7, length=13) == 0
    assert rig.emit(0, 8, length=8) == 0
    assert rig.pb.consume() == 2
    by_cpu = dict(rig.samples)
    # 13 bytes + the u32 size = 17, rounded to 24: 20 bytes of raw data, the tail padding.
    assert len(by_cpu[1]) == 20
    assert by_cpu[1][:13] == struct.pack("<II", 7, 1) + b"\xa5" * 5
    assert len(by_cpu[0]) == 12 and by_cpu[0][:8] == struct.pack("<II", 8, 0)


@pytest.mark.parametrize(
    "flags, err",
    [
        (1, -errno.EOPNOTSUPP),  # CPU 1's event, from CPU 0
        (5, -errno.E2BIG),  # past the two slots
        ((1 << 33) | BPF_F_CURRENT_CPU, -errno.EINVAL),  # an unknown flag bit
    ],
    ids=["other_cpu", "out_of_range", "bad_flags"],
)
def test_rejected_indexes_and_flags(flags, err):
    rig = Rig().open()
    assert rig.emit(0, 1, flags=flags) == err
    assert rig.pb.consume() == 0


def test_an_explicit_index_equal_to_this_cpu_works():
    rig = Rig().open()
    assert rig.emit(1, 3, flags=1) == 0
    assert rig.pb.consume() == 1 and rig.samples[0][0] == 1


def test_a_full_ring_loses_samples_then_reports_the_count():
    rig = Rig(page_cnt=1).open()
    # One 4096-byte page; each 64-byte sample is an 80-byte record: 51 fit.
    results = [rig.emit(0, seq) for seq in range(70)]
    assert results == [0] * 51 + [-errno.ENOSPC] * 19
    assert rig.pb.consume() == 51 and rig.lost == []
    assert [struct.unpack_from("<I", d)[0] for _, d in rig.samples] == list(range(51))
    # Space is free again: the LOST record goes in ahead of the next sample.
    assert rig.emit(0, 100) == 0
    assert rig.pb.consume() == 1
    assert rig.lost == [(0, 19)]
    assert struct.unpack_from("<I", rig.samples[-1][1])[0] == 100
