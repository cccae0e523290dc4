"""kbpf.linux_bpf against the v6.6 UAPI headers.

The expected numbers below were read from ``offsetof``/``sizeof`` of the v6.6 headers compiled
for x86-64 (include/uapi/linux/bpf.h and perf_event.h of 6.6.47); they are pinned here so a
layout slip cannot pass silently.
"""

import errno

import pytest

from kbpf.errors import BpfError
from kbpf.linux_bpf import (
    BPF_ATTR_SIZE,
    BPF_F_CURRENT_CPU,
    BPF_F_INNER_MAP,
    BPF_F_MMAPABLE,
    BPF_FUNC_MAX_ID,
    BPF_RINGBUF_BUSY_BIT,
    BPF_RINGBUF_DISCARD_BIT,
    BPF_RINGBUF_HDR_SZ,
    PERF_MMAP_PAGE_DATA_HEAD,
    PERF_MMAP_PAGE_DATA_OFFSET,
    PERF_MMAP_PAGE_DATA_SIZE,
    PERF_MMAP_PAGE_DATA_TAIL,
    PERF_RECORD_LOST,
    PERF_RECORD_SAMPLE,
    BpfAttachType,
    BpfCmd,
    BpfFuncId,
    BpfLinkCreateAttr,
    BpfMapCreateAttr,
    BpfMapElemAttr,
    BpfMapInfo,
    BpfMapType,
    BpfObjGetInfoByFdAttr,
    BpfProgInfo,
    BpfProgLoadAttr,
    BpfProgType,
    BpfRawTracepointOpenAttr,
    PerfEventAttr,
    PerfEventHeader,
    bpf_attr_from_user,
    check_attr_tail,
)


def test_union_bpf_attr_is_144_bytes_in_v6_6():
    assert BPF_ATTR_SIZE == 144
    for layout in (BpfMapCreateAttr, BpfMapElemAttr, BpfProgLoadAttr, BpfLinkCreateAttr):
        assert layout.SIZE == 144
        assert len(layout().pack()) == 144


@pytest.mark.parametrize(
    "layout, field, offset",
    [
        (BpfMapCreateAttr, "map_flags", 16),
        (BpfMapCreateAttr, "map_name", 28),
        (BpfMapCreateAttr, "map_ifindex", 44),
        (BpfMapCreateAttr, "btf_vmlinux_value_type_id", 60),
        (BpfMapCreateAttr, "map_extra", 64),
        (BpfMapElemAttr, "key", 8),
        (BpfMapElemAttr, "value", 16),
        (BpfMapElemAttr, "flags", 24),
        (BpfProgLoadAttr, "license", 16),
        (BpfProgLoadAttr, "log_buf", 32),
        (BpfProgLoadAttr, "prog_name", 48),
        (BpfProgLoadAttr, "expected_attach_type", 68),
        (BpfProgLoadAttr, "fd_array", 120),
        (BpfProgLoadAttr, "log_true_size", 140),
        (BpfRawTracepointOpenAttr, "prog_fd", 8),
        (BpfObjGetInfoByFdAttr, "info", 8),
        (BpfLinkCreateAttr, "flags", 12),
        (BpfMapInfo, "name", 24),
        (BpfMapInfo, "map_extra", 80),
        (BpfProgInfo, "name", 64),
        (BpfProgInfo, "run_time_ns", 192),
        (BpfProgInfo, "verified_insns", 216),
        (PerfEventAttr, "sample_type", 24),
        (PerfEventAttr, "wakeup_events", 48),
        (PerfEventAttr, "bp_addr", 56),
        (PerfEventAttr, "clockid", 92),
        (PerfEventAttr, "sig_data", 120),
        (PerfEventAttr, "config3", 128),
    ],
)
def test_field_offsets_match_the_kernel_header(layout, field, offset):
    assert layout.offset_of(field) == offset


def test_sizes_and_last_field_ends():
    # "<CMD>_LAST_FIELD" of syscall.c, as an end offset
    assert BpfMapCreateAttr.END == 72  # map_extra
    assert BpfProgLoadAttr.END == 144  # log_true_size
    assert BpfRawTracepointOpenAttr.END == 12
    assert BpfObjGetInfoByFdAttr.END == 16
    assert BpfLinkCreateAttr.END == 60  # link_create.uprobe_multi.pid
    assert BpfMapElemAttr.end_for(BpfCmd.BPF_MAP_LOOKUP_ELEM) == 32
    assert BpfMapElemAttr.end_for(BpfCmd.BPF_MAP_DELETE_ELEM) == 16
    assert BpfMapElemAttr.end_for(BpfCmd.BPF_MAP_GET_NEXT_KEY) == 24
    assert BpfMapElemAttr.end_for(BpfCmd.BPF_MAP_FREEZE) == 4
    assert BpfMapInfo.SIZE == 88
    assert BpfProgInfo.SIZE == 232
    assert PerfEventAttr.SIZE == 136
    assert PerfEventHeader.SIZE == 8


def test_perf_mmap_page_and_ring_constants():
    assert (PERF_MMAP_PAGE_DATA_HEAD, PERF_MMAP_PAGE_DATA_TAIL) == (1024, 1032)
    assert (PERF_MMAP_PAGE_DATA_OFFSET, PERF_MMAP_PAGE_DATA_SIZE) == (1040, 1048)
    assert (PERF_RECORD_LOST, PERF_RECORD_SAMPLE) == (2, 9)
    assert BPF_RINGBUF_BUSY_BIT == 1 << 31 and BPF_RINGBUF_DISCARD_BIT == 1 << 30
    assert BPF_RINGBUF_HDR_SZ == 8
    assert BPF_F_CURRENT_CPU == 0xFFFFFFFF


def test_enum_values_follow_the_header():
    assert BpfMapType.BPF_MAP_TYPE_PERCPU_ARRAY == 6
    assert BpfMapType.BPF_MAP_TYPE_RINGBUF == 27
    assert BpfMapType.BPF_MAP_TYPE_CGRP_STORAGE == 32
    assert max(BpfMapType) == 32  # ARENA (33) came after v6.6
    assert BpfMapType(19) is BpfMapType.BPF_MAP_TYPE_CGROUP_STORAGE
    assert BpfCmd.BPF_MAP_FREEZE == 22 and max(BpfCmd) == BpfCmd.BPF_PROG_BIND_MAP == 35
    assert BpfProgType.BPF_PROG_TYPE_TRACEPOINT == 5 and max(BpfProgType) == 32
    assert max(BpfAttachType) == BpfAttachType.BPF_TRACE_UPROBE_MULTI == 48
    assert (BPF_F_MMAPABLE, BPF_F_INNER_MAP) == (1 << 10, 1 << 12)


@pytest.mark.parametrize(
    "name, number",
    [
        ("map_lookup_elem", 1),
        ("trace_printk", 6),
        ("get_current_comm", 16),
        ("perf_event_output", 25),
        ("probe_read_user", 112),
        ("probe_read_kernel_str", 115),
        ("ringbuf_output", 130),
        ("for_each_map_elem", 164),
        ("trace_vprintk", 177),
        ("loop", 181),
        ("map_lookup_percpu_elem", 195),
        ("user_ringbuf_drain", 209),
        ("cgrp_storage_delete", 211),
    ],
)
def test_helper_ids_have_kernel_names(name, number):
    assert BpfFuncId[f"BPF_FUNC_{name}"] == number
    assert BpfFuncId(number).name == f"BPF_FUNC_{name}"


def test_helper_ids_are_dense_through_211():
    assert BPF_FUNC_MAX_ID == 212
    assert [f.value for f in BpfFuncId] == list(range(212))


def test_map_type_parse_accepts_short_names_and_numbers():
    assert BpfMapType.parse("percpu_array") is BpfMapType.BPF_MAP_TYPE_PERCPU_ARRAY
    assert BpfMapType.parse("LRU_PERCPU_HASH") is BpfMapType.BPF_MAP_TYPE_LRU_PERCPU_HASH
    assert BpfMapType.parse(2) is BpfMapType.BPF_MAP_TYPE_ARRAY
    assert BpfMapType.BPF_MAP_TYPE_RINGBUF.short_name == "ringbuf"
    with pytest.raises(BpfError) as e:
        BpfMapType.parse("hashmap")
    assert e.value.errno == errno.EINVAL


def test_pack_unpack_round_trip_and_short_input_is_zero_extended():
    attr = BpfProgLoadAttr(prog_type=5, insn_cnt=3, insns=0x1000, license=0x2000, log_true_size=9)
    assert BpfProgLoadAttr.unpack(attr.pack()) == BpfProgLoadAttr(
        prog_type=5, insn_cnt=3, insns=0x1000, license=0x2000, prog_name=bytes(16), log_true_size=9
    )
    short = BpfMapElemAttr(map_fd=7, key=0x10).pack()[:16]
    assert BpfMapElemAttr.unpack(short) == BpfMapElemAttr(map_fd=7, key=0x10)
    raw = BpfMapCreateAttr(map_type=2, map_name=b"abc").pack()
    assert raw[28:31] == b"abc" and raw[31:44] == bytes(13)


def test_perf_event_attr_bits():
    attr = PerfEventAttr(type=1, size=136, config=10, flags=1 << 10 | 1 << 14, sample_period=7)
    back = PerfEventAttr.unpack(attr.pack())
    assert back.freq and back.watermark and not back.disabled
    assert back.sample_freq == 7


def test_check_attr_tail_rejects_bytes_past_the_last_field():
    data = bytearray(144)
    check_attr_tail(data, 16, "BPF_MAP_DELETE_ELEM")
    data[20] = 1
    with pytest.raises(BpfError) as e:
        check_attr_tail(data, 16, "BPF_MAP_DELETE_ELEM")
    assert e.value.errno == errno.EINVAL and "offset 20" in str(e.value)


def test_attr_from_user_accepts_zero_excess_and_rejects_non_zero_excess():
    assert bpf_attr_from_user(b"\x01" * 8) == b"\x01" * 8 + bytes(136)
    assert len(bpf_attr_from_user(bytes(200))) == 144
    with pytest.raises(BpfError) as e:
        bpf_attr_from_user(bytes(150) + b"\x01")
    assert e.value.errno == errno.E2BIG
    with pytest.raises(BpfError) as e:
        bpf_attr_from_user(bytes(4097))
    assert e.value.errno == errno.E2BIG
