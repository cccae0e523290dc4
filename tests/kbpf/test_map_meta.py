"""BPF_MAP_CREATE attribute parsing: ``map_create``'s generic checks (kernel/bpf/syscall.c) and
the create table (unknown types EINVAL, Linux types kbpf lacks EOPNOTSUPP)."""

import errno

import pytest

from kbpf.errors import BpfError
from kbpf.linux_bpf import (
    BPF_F_NUMA_NODE,
    BPF_F_PATH_FD,
    BPF_F_RDONLY,
    BPF_F_WRONLY,
    BpfMapCreateAttr,
    BpfMapType,
)
from kbpf.map import BpfMapMeta, bpf_map_create, check_obj_name, map_ops_class
from tests.kbpf.testhost import TestHost

ARRAY = BpfMapType.BPF_MAP_TYPE_ARRAY


def attr(**kw) -> bytes:
    base = dict(map_type=int(ARRAY), key_size=4, value_size=8, max_entries=4)
    base.update(kw)
    return BpfMapCreateAttr(**base).pack()


def errno_of(fn, *args):
    with pytest.raises(BpfError) as e:
        fn(*args)
    return e.value.errno


def test_a_well_formed_attribute_parses():
    meta = BpfMapMeta.from_attr(attr(map_name=b"counts.v2_x"))
    assert meta.map_type is ARRAY
    assert (meta.key_size, meta.value_size, meta.max_entries, meta.name) == (4, 8, 4, "counts.v2_x")


def test_the_attribute_may_be_shorter_than_the_union():
    assert BpfMapMeta.from_attr(attr()[:20]).max_entries == 4


def test_a_byte_past_map_extra_is_einval():
    raw = bytearray(attr())
    raw[80] = 1
    assert errno_of(BpfMapMeta.from_attr, bytes(raw)) == errno.EINVAL


@pytest.mark.parametrize(
    "fields, why",
    [
        (dict(map_type=33), "unknown type (ARENA came after v6.6)"),
        (dict(map_type=0), "BPF_MAP_TYPE_UNSPEC"),
        (dict(map_name=b"bad-name"), "'-' is not allowed"),
        (dict(map_name=b"sp ace"), "space is not allowed"),
        (dict(map_name=b"x" * 16), "no NUL within 16 bytes"),
        (dict(map_flags=1 << 15), "a flag no map type knows"),
        (dict(map_flags=BPF_F_PATH_FD), "BPF_F_PATH_FD is for pinning"),
        (dict(map_flags=BPF_F_RDONLY | BPF_F_WRONLY), "read-only and write-only"),
        (dict(map_flags=BPF_F_NUMA_NODE, numa_node=1), "node 1 is not online"),
        (dict(map_extra=1), "map_extra is for bloom filters"),
        (dict(btf_key_type_id=3), "a key type id without a value type id"),
        (dict(btf_vmlinux_value_type_id=5), "vmlinux value type only for STRUCT_OPS"),
        (dict(map_ifindex=2), "no device offloads maps"),
    ],
)
def test_generic_create_checks_are_einval(fields, why):
    assert errno_of(BpfMapMeta.from_attr, attr(**fields)) == errno.EINVAL, why


def test_numa_node_zero_is_online():
    assert BpfMapMeta.from_attr(attr(map_flags=BPF_F_NUMA_NODE, numa_node=0)).numa_node == 0


def test_name_rules_for_python_callers():
    assert check_obj_name("ok_name.1") == b"ok_name.1".ljust(16, b"\0")
    assert errno_of(check_obj_name, "x" * 16) == errno.EINVAL
    assert errno_of(check_obj_name, "é") == errno.EINVAL


def test_meta_round_trips_through_its_attribute():
    meta = BpfMapMeta(ARRAY, 4, 16, 8, 0, "m")
    assert BpfMapMeta.from_attr(meta.to_attr().pack()) == meta


def test_unimplemented_linux_types_are_eopnotsupp_and_unknown_numbers_einval():
    assert errno_of(map_ops_class, BpfMapType.BPF_MAP_TYPE_SOCKMAP) == errno.EOPNOTSUPP
    assert errno_of(map_ops_class, 99) == errno.EINVAL
    host = TestHost()
    meta = BpfMapMeta(BpfMapType.BPF_MAP_TYPE_LPM_TRIE, 8, 8, 4)
    with pytest.raises(BpfError) as e:
        bpf_map_create(meta, host, host)
    assert e.value.errno == errno.EOPNOTSUPP and "LPM_TRIE" in str(e.value)
