"""Linux v6.6 BPF and perf UAPI: the numbers and byte layouts kbpf speaks.

Everything here is the kernel's ABI as ``include/uapi/linux/bpf.h`` and ``perf_event.h`` define
it at the 6.6 tag, for x86-64 (little-endian, 8-byte ``long``).  Enum members keep their kernel
names, so a message or a test can say ``BPF_MAP_TYPE_PERCPU_ARRAY`` exactly as the kernel
documentation does.

The byte layouts are small dataclasses with ``pack() -> bytes`` and ``unpack(data)``.  Offsets are
the kernel's (checked against the compiled v6.6 header in ``tests/kbpf/test_linux_bpf.py``).  Each
``bpf_attr`` view knows ``END``, the offset just past the last field its command reads: Linux
rejects a call whose attribute has a non-zero byte beyond it (``CHECK_ATTR`` -> EINVAL), which
:func:`check_attr_tail` implements.  ``unpack`` accepts shorter input and zero-extends it, as the
kernel copies ``min(size, sizeof(union bpf_attr))`` bytes into a zeroed union.
"""

from __future__ import annotations

import errno
import struct
from dataclasses import dataclass, fields
from enum import IntEnum
from typing import ClassVar

from kbpf.errors import BpfError

# ---------------------------------------------------------------------------------------------
# Sizes and small constants
# ---------------------------------------------------------------------------------------------

#: ``sizeof(union bpf_attr)`` in v6.6: the largest member is the BPF_PROG_LOAD struct, whose
#: last field ``log_true_size`` ends at byte 144.
BPF_ATTR_SIZE = 144
BPF_OBJ_NAME_LEN = 16
BPF_TAG_SIZE = 8
PAGE_SIZE = 4096
#: x86-64 ``TASK_SIZE_MAX``: user addresses lie below it, kernel addresses far above.
TASK_SIZE_MAX = 0x00007FFFFFFFF000

# ---------------------------------------------------------------------------------------------
# Enums
# ---------------------------------------------------------------------------------------------


class BpfCmd(IntEnum):
    """``enum bpf_cmd``: the first argument of ``bpf(2)``."""

    BPF_MAP_CREATE = 0
    BPF_MAP_LOOKUP_ELEM = 1
    BPF_MAP_UPDATE_ELEM = 2
    BPF_MAP_DELETE_ELEM = 3
    BPF_MAP_GET_NEXT_KEY = 4
    BPF_PROG_LOAD = 5
    BPF_OBJ_PIN = 6
    BPF_OBJ_GET = 7
    BPF_PROG_ATTACH = 8
    BPF_PROG_DETACH = 9
    BPF_PROG_TEST_RUN = 10
    BPF_PROG_RUN = 10
    BPF_PROG_GET_NEXT_ID = 11
    BPF_MAP_GET_NEXT_ID = 12
    BPF_PROG_GET_FD_BY_ID = 13
    BPF_MAP_GET_FD_BY_ID = 14
    BPF_OBJ_GET_INFO_BY_FD = 15
    BPF_PROG_QUERY = 16
    BPF_RAW_TRACEPOINT_OPEN = 17
    BPF_BTF_LOAD = 18
    BPF_BTF_GET_FD_BY_ID = 19
    BPF_TASK_FD_QUERY = 20
    BPF_MAP_LOOKUP_AND_DELETE_ELEM = 21
    BPF_MAP_FREEZE = 22
    BPF_BTF_GET_NEXT_ID = 23
    BPF_MAP_LOOKUP_BATCH = 24
    BPF_MAP_LOOKUP_AND_DELETE_BATCH = 25
    BPF_MAP_UPDATE_BATCH = 26
    BPF_MAP_DELETE_BATCH = 27
    BPF_LINK_CREATE = 28
    BPF_LINK_UPDATE = 29
    BPF_LINK_GET_FD_BY_ID = 30
    BPF_LINK_GET_NEXT_ID = 31
    BPF_ENABLE_STATS = 32
    BPF_ITER_CREATE = 33
    BPF_LINK_DETACH = 34
    BPF_PROG_BIND_MAP = 35


class BpfMapType(IntEnum):
    """``enum bpf_map_type`` (v6.6 ends at CGRP_STORAGE = 32)."""

    BPF_MAP_TYPE_UNSPEC = 0
    BPF_MAP_TYPE_HASH = 1
    BPF_MAP_TYPE_ARRAY = 2
    BPF_MAP_TYPE_PROG_ARRAY = 3
    BPF_MAP_TYPE_PERF_EVENT_ARRAY = 4
    BPF_MAP_TYPE_PERCPU_HASH = 5
    BPF_MAP_TYPE_PERCPU_ARRAY = 6
    BPF_MAP_TYPE_STACK_TRACE = 7
    BPF_MAP_TYPE_CGROUP_ARRAY = 8
    BPF_MAP_TYPE_LRU_HASH = 9
    BPF_MAP_TYPE_LRU_PERCPU_HASH = 10
    BPF_MAP_TYPE_LPM_TRIE = 11
    BPF_MAP_TYPE_ARRAY_OF_MAPS = 12
    BPF_MAP_TYPE_HASH_OF_MAPS = 13
    BPF_MAP_TYPE_DEVMAP = 14
    BPF_MAP_TYPE_SOCKMAP = 15
    BPF_MAP_TYPE_CPUMAP = 16
    BPF_MAP_TYPE_XSKMAP = 17
    BPF_MAP_TYPE_SOCKHASH = 18
    BPF_MAP_TYPE_CGROUP_STORAGE = 19
    BPF_MAP_TYPE_CGROUP_STORAGE_DEPRECATED = 19
    BPF_MAP_TYPE_REUSEPORT_SOCKARRAY = 20
    BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE = 21
    BPF_MAP_TYPE_QUEUE = 22
    BPF_MAP_TYPE_STACK = 23
    BPF_MAP_TYPE_SK_STORAGE = 24
    BPF_MAP_TYPE_DEVMAP_HASH = 25
    BPF_MAP_TYPE_STRUCT_OPS = 26
    BPF_MAP_TYPE_RINGBUF = 27
    BPF_MAP_TYPE_INODE_STORAGE = 28
    BPF_MAP_TYPE_TASK_STORAGE = 29
    BPF_MAP_TYPE_BLOOM_FILTER = 30
    BPF_MAP_TYPE_USER_RINGBUF = 31
    BPF_MAP_TYPE_CGRP_STORAGE = 32

    @classmethod
    def parse(cls, value: BpfMapType | int | str) -> BpfMapType:
        """A map type from itself, its number, its kernel name, or its lower-case short name
        (``"percpu_array"``, case-insensitive).  Unknown: ``BpfError(EINVAL)``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                raise BpfError(errno.EINVAL, f"unknown map type {value}") from None
        name = str(value).strip().upper()
        if not name.startswith("BPF_MAP_TYPE_"):
            name = "BPF_MAP_TYPE_" + name
        try:
            return cls[name]
        except KeyError:
            raise BpfError(errno.EINVAL, f"unknown map type {value!r}") from None

    @property
    def short_name(self) -> str:
        """``"percpu_array"`` for ``BPF_MAP_TYPE_PERCPU_ARRAY``."""
        return self.name[len("BPF_MAP_TYPE_") :].lower()


class BpfProgType(IntEnum):
    """``enum bpf_prog_type`` (v6.6 ends at NETFILTER = 32)."""

    BPF_PROG_TYPE_UNSPEC = 0
    BPF_PROG_TYPE_SOCKET_FILTER = 1
    BPF_PROG_TYPE_KPROBE = 2
    BPF_PROG_TYPE_SCHED_CLS = 3
    BPF_PROG_TYPE_SCHED_ACT = 4
    BPF_PROG_TYPE_TRACEPOINT = 5
    BPF_PROG_TYPE_XDP = 6
    BPF_PROG_TYPE_PERF_EVENT = 7
    BPF_PROG_TYPE_CGROUP_SKB = 8
    BPF_PROG_TYPE_CGROUP_SOCK = 9
    BPF_PROG_TYPE_LWT_IN = 10
    BPF_PROG_TYPE_LWT_OUT = 11
    BPF_PROG_TYPE_LWT_XMIT = 12
    BPF_PROG_TYPE_SOCK_OPS = 13
    BPF_PROG_TYPE_SK_SKB = 14
    BPF_PROG_TYPE_CGROUP_DEVICE = 15
    BPF_PROG_TYPE_SK_MSG = 16
    BPF_PROG_TYPE_RAW_TRACEPOINT = 17
    BPF_PROG_TYPE_CGROUP_SOCK_ADDR = 18
    BPF_PROG_TYPE_LWT_SEG6LOCAL = 19
    BPF_PROG_TYPE_LIRC_MODE2 = 20
    BPF_PROG_TYPE_SK_REUSEPORT = 21
    BPF_PROG_TYPE_FLOW_DISSECTOR = 22
    BPF_PROG_TYPE_CGROUP_SYSCTL = 23
    BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE = 24
    BPF_PROG_TYPE_CGROUP_SOCKOPT = 25
    BPF_PROG_TYPE_TRACING = 26
    BPF_PROG_TYPE_STRUCT_OPS = 27
    BPF_PROG_TYPE_EXT = 28
    BPF_PROG_TYPE_LSM = 29
    BPF_PROG_TYPE_SK_LOOKUP = 30
    BPF_PROG_TYPE_SYSCALL = 31
    BPF_PROG_TYPE_NETFILTER = 32

    @classmethod
    def parse(cls, value: BpfProgType | int | str) -> BpfProgType:
        """Like :meth:`BpfMapType.parse`: ``"tracepoint"`` -> ``BPF_PROG_TYPE_TRACEPOINT``."""
        if isinstance(value, cls):
            return value
        if isinstance(value, int):
            try:
                return cls(value)
            except ValueError:
                raise BpfError(errno.EINVAL, f"unknown program type {value}") from None
        name = str(value).strip().upper()
        if not name.startswith("BPF_PROG_TYPE_"):
            name = "BPF_PROG_TYPE_" + name
        try:
            return cls[name]
        except KeyError:
            raise BpfError(errno.EINVAL, f"unknown program type {value!r}") from None


class BpfAttachType(IntEnum):
    """``enum bpf_attach_type`` (v6.6 ends at TRACE_UPROBE_MULTI = 48)."""

    BPF_CGROUP_INET_INGRESS = 0
    BPF_CGROUP_INET_EGRESS = 1
    BPF_CGROUP_INET_SOCK_CREATE = 2
    BPF_CGROUP_SOCK_OPS = 3
    BPF_SK_SKB_STREAM_PARSER = 4
    BPF_SK_SKB_STREAM_VERDICT = 5
    BPF_CGROUP_DEVICE = 6
    BPF_SK_MSG_VERDICT = 7
    BPF_CGROUP_INET4_BIND = 8
    BPF_CGROUP_INET6_BIND = 9
    BPF_CGROUP_INET4_CONNECT = 10
    BPF_CGROUP_INET6_CONNECT = 11
    BPF_CGROUP_INET4_POST_BIND = 12
    BPF_CGROUP_INET6_POST_BIND = 13
    BPF_CGROUP_UDP4_SENDMSG = 14
    BPF_CGROUP_UDP6_SENDMSG = 15
    BPF_LIRC_MODE2 = 16
    BPF_FLOW_DISSECTOR = 17
    BPF_CGROUP_SYSCTL = 18
    BPF_CGROUP_UDP4_RECVMSG = 19
    BPF_CGROUP_UDP6_RECVMSG = 20
    BPF_CGROUP_GETSOCKOPT = 21
    BPF_CGROUP_SETSOCKOPT = 22
    BPF_TRACE_RAW_TP = 23
    BPF_TRACE_FENTRY = 24
    BPF_TRACE_FEXIT = 25
    BPF_MODIFY_RETURN = 26
    BPF_LSM_MAC = 27
    BPF_TRACE_ITER = 28
    BPF_CGROUP_INET4_GETPEERNAME = 29
    BPF_CGROUP_INET6_GETPEERNAME = 30
    BPF_CGROUP_INET4_GETSOCKNAME = 31
    BPF_CGROUP_INET6_GETSOCKNAME = 32
    BPF_XDP_DEVMAP = 33
    BPF_CGROUP_INET_SOCK_RELEASE = 34
    BPF_XDP_CPUMAP = 35
    BPF_SK_LOOKUP = 36
    BPF_XDP = 37
    BPF_SK_SKB_VERDICT = 38
    BPF_SK_REUSEPORT_SELECT = 39
    BPF_SK_REUSEPORT_SELECT_OR_MIGRATE = 40
    BPF_PERF_EVENT = 41
    BPF_TRACE_KPROBE_MULTI = 42
    BPF_LSM_CGROUP = 43
    BPF_STRUCT_OPS = 44
    BPF_NETFILTER = 45
    BPF_TCX_INGRESS = 46
    BPF_TCX_EGRESS = 47
    BPF_TRACE_UPROBE_MULTI = 48


class BpfLinkType(IntEnum):
    """``enum bpf_link_type`` (v6.6)."""

    BPF_LINK_TYPE_UNSPEC = 0
    BPF_LINK_TYPE_RAW_TRACEPOINT = 1
    BPF_LINK_TYPE_TRACING = 2
    BPF_LINK_TYPE_CGROUP = 3
    BPF_LINK_TYPE_ITER = 4
    BPF_LINK_TYPE_NETNS = 5
    BPF_LINK_TYPE_XDP = 6
    BPF_LINK_TYPE_PERF_EVENT = 7
    BPF_LINK_TYPE_KPROBE_MULTI = 8
    BPF_LINK_TYPE_STRUCT_OPS = 9
    BPF_LINK_TYPE_NETFILTER = 10
    BPF_LINK_TYPE_TCX = 11
    BPF_LINK_TYPE_UPROBE_MULTI = 12


#: Helper names in id order, as ``__BPF_FUNC_MAPPER`` lists them (ids 0..211; v6.6 added none
#: after ``cgrp_storage_delete``).
_HELPER_NAMES = (
    "unspec",
    "map_lookup_elem",
    "map_update_elem",
    "map_delete_elem",
    "probe_read",
    "ktime_get_ns",
    "trace_printk",
    "get_prandom_u32",
    "get_smp_processor_id",
    "skb_store_bytes",
    "l3_csum_replace",
    "l4_csum_replace",
    "tail_call",
    "clone_redirect",
    "get_current_pid_tgid",
    "get_current_uid_gid",
    "get_current_comm",
    "get_cgroup_classid",
    "skb_vlan_push",
    "skb_vlan_pop",
    "skb_get_tunnel_key",
    "skb_set_tunnel_key",
    "perf_event_read",
    "redirect",
    "get_route_realm",
    "perf_event_output",
    "skb_load_bytes",
    "get_stackid",
    "csum_diff",
    "skb_get_tunnel_opt",
    "skb_set_tunnel_opt",
    "skb_change_proto",
    "skb_change_type",
    "skb_under_cgroup",
    "get_hash_recalc",
    "get_current_task",
    "probe_write_user",
    "current_task_under_cgroup",
    "skb_change_tail",
    "skb_pull_data",
    "csum_update",
    "set_hash_invalid",
    "get_numa_node_id",
    "skb_change_head",
    "xdp_adjust_head",
    "probe_read_str",
    "get_socket_cookie",
    "get_socket_uid",
    "set_hash",
    "setsockopt",
    "skb_adjust_room",
    "redirect_map",
    "sk_redirect_map",
    "sock_map_update",
    "xdp_adjust_meta",
    "perf_event_read_value",
    "perf_prog_read_value",
    "getsockopt",
    "override_return",
    "sock_ops_cb_flags_set",
    "msg_redirect_map",
    "msg_apply_bytes",
    "msg_cork_bytes",
    "msg_pull_data",
    "bind",
    "xdp_adjust_tail",
    "skb_get_xfrm_state",
    "get_stack",
    "skb_load_bytes_relative",
    "fib_lookup",
    "sock_hash_update",
    "msg_redirect_hash",
    "sk_redirect_hash",
    "lwt_push_encap",
    "lwt_seg6_store_bytes",
    "lwt_seg6_adjust_srh",
    "lwt_seg6_action",
    "rc_repeat",
    "rc_keydown",
    "skb_cgroup_id",
    "get_current_cgroup_id",
    "get_local_storage",
    "sk_select_reuseport",
    "skb_ancestor_cgroup_id",
    "sk_lookup_tcp",
    "sk_lookup_udp",
    "sk_release",
    "map_push_elem",
    "map_pop_elem",
    "map_peek_elem",
    "msg_push_data",
    "msg_pop_data",
    "rc_pointer_rel",
    "spin_lock",
    "spin_unlock",
    "sk_fullsock",
    "tcp_sock",
    "skb_ecn_set_ce",
    "get_listener_sock",
    "skc_lookup_tcp",
    "tcp_check_syncookie",
    "sysctl_get_name",
    "sysctl_get_current_value",
    "sysctl_get_new_value",
    "sysctl_set_new_value",
    "strtol",
    "strtoul",
    "sk_storage_get",
    "sk_storage_delete",
    "send_signal",
    "tcp_gen_syncookie",
    "skb_output",
    "probe_read_user",
    "probe_read_kernel",
    "probe_read_user_str",
    "probe_read_kernel_str",
    "tcp_send_ack",
    "send_signal_thread",
    "jiffies64",
    "read_branch_records",
    "get_ns_current_pid_tgid",
    "xdp_output",
    "get_netns_cookie",
    "get_current_ancestor_cgroup_id",
    "sk_assign",
    "ktime_get_boot_ns",
    "seq_printf",
    "seq_write",
    "sk_cgroup_id",
    "sk_ancestor_cgroup_id",
    "ringbuf_output",
    "ringbuf_reserve",
    "ringbuf_submit",
    "ringbuf_discard",
    "ringbuf_query",
    "csum_level",
    "skc_to_tcp6_sock",
    "skc_to_tcp_sock",
    "skc_to_tcp_timewait_sock",
    "skc_to_tcp_request_sock",
    "skc_to_udp6_sock",
    "get_task_stack",
    "load_hdr_opt",
    "store_hdr_opt",
    "reserve_hdr_opt",
    "inode_storage_get",
    "inode_storage_delete",
    "d_path",
    "copy_from_user",
    "snprintf_btf",
    "seq_printf_btf",
    "skb_cgroup_classid",
    "redirect_neigh",
    "per_cpu_ptr",
    "this_cpu_ptr",
    "redirect_peer",
    "task_storage_get",
    "task_storage_delete",
    "get_current_task_btf",
    "bprm_opts_set",
    "ktime_get_coarse_ns",
    "ima_inode_hash",
    "sock_from_file",
    "check_mtu",
    "for_each_map_elem",
    "snprintf",
    "sys_bpf",
    "btf_find_by_name_kind",
    "sys_close",
    "timer_init",
    "timer_set_callback",
    "timer_start",
    "timer_cancel",
    "get_func_ip",
    "get_attach_cookie",
    "task_pt_regs",
    "get_branch_snapshot",
    "trace_vprintk",
    "skc_to_unix_sock",
    "kallsyms_lookup_name",
    "find_vma",
    "loop",
    "strncmp",
    "get_func_arg",
    "get_func_ret",
    "get_func_arg_cnt",
    "get_retval",
    "set_retval",
    "xdp_get_buff_len",
    "xdp_load_bytes",
    "xdp_store_bytes",
    "copy_from_user_task",
    "skb_set_tstamp",
    "ima_file_hash",
    "kptr_xchg",
    "map_lookup_percpu_elem",
    "skc_to_mptcp_sock",
    "dynptr_from_mem",
    "ringbuf_reserve_dynptr",
    "ringbuf_submit_dynptr",
    "ringbuf_discard_dynptr",
    "dynptr_read",
    "dynptr_write",
    "dynptr_data",
    "tcp_raw_gen_syncookie_ipv4",
    "tcp_raw_gen_syncookie_ipv6",
    "tcp_raw_check_syncookie_ipv4",
    "tcp_raw_check_syncookie_ipv6",
    "ktime_get_tai_ns",
    "user_ringbuf_drain",
    "cgrp_storage_get",
    "cgrp_storage_delete",
)

#: ``enum bpf_func_id``: ``BpfFuncId.BPF_FUNC_map_lookup_elem == 1`` … ``BPF_FUNC_cgrp_storage_delete
#: == 211``.  Built from the ordered name list because the ids are exactly the positions.
BpfFuncId = IntEnum(
    "BpfFuncId",
    [(f"BPF_FUNC_{name}", index) for index, name in enumerate(_HELPER_NAMES)],
    module=__name__,
)
BpfFuncId.__doc__ = "``enum bpf_func_id``: helper ids with their kernel names."
#: ``__BPF_FUNC_MAX_ID``.
BPF_FUNC_MAX_ID = len(_HELPER_NAMES)

# ---------------------------------------------------------------------------------------------
# Flags
# ---------------------------------------------------------------------------------------------

# BPF_MAP_UPDATE_ELEM / BPF_MAP_LOOKUP_ELEM flags
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2
BPF_F_LOCK = 4

# BPF_MAP_CREATE flags
BPF_F_NO_PREALLOC = 1 << 0
BPF_F_NO_COMMON_LRU = 1 << 1
BPF_F_NUMA_NODE = 1 << 2
BPF_F_RDONLY = 1 << 3
BPF_F_WRONLY = 1 << 4
BPF_F_STACK_BUILD_ID = 1 << 5
BPF_F_ZERO_SEED = 1 << 6
BPF_F_RDONLY_PROG = 1 << 7
BPF_F_WRONLY_PROG = 1 << 8
BPF_F_CLONE = 1 << 9
BPF_F_MMAPABLE = 1 << 10
BPF_F_PRESERVE_ELEMS = 1 << 11
BPF_F_INNER_MAP = 1 << 12
BPF_F_LINK = 1 << 13
BPF_F_PATH_FD = 1 << 14  # BPF_OBJ_PIN/GET only: no map type accepts it at create
#: ``BPF_F_ACCESS_MASK`` (include/linux/bpf.h).
BPF_F_ACCESS_MASK = BPF_F_RDONLY | BPF_F_RDONLY_PROG | BPF_F_WRONLY | BPF_F_WRONLY_PROG
#: Every flag some map type accepts at BPF_MAP_CREATE in v6.6 (BPF_F_NO_PREALLOC …
#: BPF_F_LINK); a bit outside it is EINVAL whatever the type.
BPF_MAP_CREATE_FLAGS = (1 << 14) - 1

# BPF_PROG_LOAD prog_flags
BPF_F_STRICT_ALIGNMENT = 1 << 0
BPF_F_ANY_ALIGNMENT = 1 << 1
BPF_F_TEST_RND_HI32 = 1 << 2
BPF_F_TEST_STATE_FREQ = 1 << 3
BPF_F_SLEEPABLE = 1 << 4
BPF_F_XDP_HAS_FRAGS = 1 << 5
BPF_F_XDP_DEV_BOUND_ONLY = 1 << 6
#: The prog_flags ``bpf_prog_load`` accepts in v6.6.
BPF_PROG_LOAD_FLAGS = (1 << 7) - 1

# Verifier log levels (log_level)
BPF_LOG_LEVEL1 = 1
BPF_LOG_LEVEL2 = 2
BPF_LOG_STATS = 4
BPF_LOG_FIXED = 8
BPF_LOG_MASK = BPF_LOG_LEVEL1 | BPF_LOG_LEVEL2 | BPF_LOG_STATS | BPF_LOG_FIXED

# perf_event_output / perf_event_read flags
BPF_F_INDEX_MASK = 0xFFFFFFFF
BPF_F_CURRENT_CPU = BPF_F_INDEX_MASK
BPF_F_CTXLEN_MASK = 0xFFFFF << 32

# Ring buffer
BPF_RB_NO_WAKEUP = 1 << 0
BPF_RB_FORCE_WAKEUP = 1 << 1
BPF_RB_AVAIL_DATA = 0
BPF_RB_RING_SIZE = 1
BPF_RB_CONS_POS = 2
BPF_RB_PROD_POS = 3
BPF_RINGBUF_BUSY_BIT = 1 << 31
BPF_RINGBUF_DISCARD_BIT = 1 << 30
BPF_RINGBUF_HDR_SZ = 8

# LD_DW_IMM pseudo sources (also in kbpf.insn)
BPF_PSEUDO_MAP_FD = 1
BPF_PSEUDO_MAP_VALUE = 2
BPF_PSEUDO_BTF_ID = 3
BPF_PSEUDO_FUNC = 4
BPF_PSEUDO_MAP_IDX = 5
BPF_PSEUDO_MAP_IDX_VALUE = 6
BPF_PSEUDO_CALL = 1
BPF_PSEUDO_KFUNC_CALL = 2

#: Largest immediate offset an ``LD_DW_IMM`` map-value reference may carry (BPF_MAX_VAR_OFF).
BPF_MAX_VAR_OFF = 1 << 29
#: Instruction limits of ``bpf_prog_load``: privileged / unprivileged.
BPF_COMPLEXITY_LIMIT_INSNS = 1_000_000
BPF_MAXINSNS = 4096

# ---------------------------------------------------------------------------------------------
# perf
# ---------------------------------------------------------------------------------------------

PERF_TYPE_HARDWARE = 0
PERF_TYPE_SOFTWARE = 1
PERF_TYPE_TRACEPOINT = 2
PERF_TYPE_HW_CACHE = 3
PERF_TYPE_RAW = 4
PERF_TYPE_BREAKPOINT = 5


class PerfSwIds(IntEnum):
    """``enum perf_sw_ids``: the ``config`` of a ``PERF_TYPE_SOFTWARE`` event."""

    PERF_COUNT_SW_CPU_CLOCK = 0
    PERF_COUNT_SW_TASK_CLOCK = 1
    PERF_COUNT_SW_PAGE_FAULTS = 2
    PERF_COUNT_SW_CONTEXT_SWITCHES = 3
    PERF_COUNT_SW_CPU_MIGRATIONS = 4
    PERF_COUNT_SW_PAGE_FAULTS_MIN = 5
    PERF_COUNT_SW_PAGE_FAULTS_MAJ = 6
    PERF_COUNT_SW_ALIGNMENT_FAULTS = 7
    PERF_COUNT_SW_EMULATION_FAULTS = 8
    PERF_COUNT_SW_DUMMY = 9
    PERF_COUNT_SW_BPF_OUTPUT = 10
    PERF_COUNT_SW_CGROUP_SWITCHES = 11


# The same ids as plain constants, as the UAPI header spells them (values from the enum).
PERF_COUNT_SW_CPU_CLOCK = PerfSwIds.PERF_COUNT_SW_CPU_CLOCK.value
PERF_COUNT_SW_TASK_CLOCK = PerfSwIds.PERF_COUNT_SW_TASK_CLOCK.value
PERF_COUNT_SW_PAGE_FAULTS = PerfSwIds.PERF_COUNT_SW_PAGE_FAULTS.value
PERF_COUNT_SW_CONTEXT_SWITCHES = PerfSwIds.PERF_COUNT_SW_CONTEXT_SWITCHES.value
PERF_COUNT_SW_CPU_MIGRATIONS = PerfSwIds.PERF_COUNT_SW_CPU_MIGRATIONS.value
PERF_COUNT_SW_PAGE_FAULTS_MIN = PerfSwIds.PERF_COUNT_SW_PAGE_FAULTS_MIN.value
PERF_COUNT_SW_PAGE_FAULTS_MAJ = PerfSwIds.PERF_COUNT_SW_PAGE_FAULTS_MAJ.value
PERF_COUNT_SW_ALIGNMENT_FAULTS = PerfSwIds.PERF_COUNT_SW_ALIGNMENT_FAULTS.value
PERF_COUNT_SW_EMULATION_FAULTS = PerfSwIds.PERF_COUNT_SW_EMULATION_FAULTS.value
PERF_COUNT_SW_DUMMY = PerfSwIds.PERF_COUNT_SW_DUMMY.value
PERF_COUNT_SW_BPF_OUTPUT = PerfSwIds.PERF_COUNT_SW_BPF_OUTPUT.value
PERF_COUNT_SW_CGROUP_SWITCHES = PerfSwIds.PERF_COUNT_SW_CGROUP_SWITCHES.value

PERF_SAMPLE_IP = 1 << 0
PERF_SAMPLE_TID = 1 << 1
PERF_SAMPLE_TIME = 1 << 2
PERF_SAMPLE_ADDR = 1 << 3
PERF_SAMPLE_READ = 1 << 4
PERF_SAMPLE_CALLCHAIN = 1 << 5
PERF_SAMPLE_ID = 1 << 6
PERF_SAMPLE_CPU = 1 << 7
PERF_SAMPLE_PERIOD = 1 << 8
PERF_SAMPLE_STREAM_ID = 1 << 9
PERF_SAMPLE_RAW = 1 << 10

PERF_RECORD_LOST = 2
PERF_RECORD_SAMPLE = 9
PERF_RECORD_LOST_SAMPLES = 13

PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_DISABLE = 0x2401
PERF_EVENT_IOC_SET_BPF = 0x40042408

PERF_ATTR_SIZE_VER0 = 64
PERF_ATTR_SIZE_VER8 = 136

# struct perf_event_mmap_page field offsets (the first page of a perf mmap)
PERF_MMAP_PAGE_VERSION = 0
PERF_MMAP_PAGE_COMPAT_VERSION = 4
PERF_MMAP_PAGE_DATA_HEAD = 1024
PERF_MMAP_PAGE_DATA_TAIL = 1032
PERF_MMAP_PAGE_DATA_OFFSET = 1040
PERF_MMAP_PAGE_DATA_SIZE = 1048
PERF_MMAP_PAGE_AUX_HEAD = 1056
PERF_MMAP_PAGE_SIZE = 1088  # sizeof(struct perf_event_mmap_page)

# ---------------------------------------------------------------------------------------------
# Layouts
# ---------------------------------------------------------------------------------------------


def check_attr_tail(data: bytes | bytearray | memoryview, end: int, what: str) -> None:
    """``CHECK_ATTR``: every byte of ``data`` past ``end`` must be zero, or EINVAL."""
    tail = bytes(data[end:])
    if tail.strip(b"\0"):
        first = end + next(i for i, b in enumerate(tail) if b)
        raise BpfError(
            errno.EINVAL, f"{what}: non-zero byte at offset {first}, past its last field ({end})"
        )


def bpf_attr_from_user(raw: bytes | bytearray) -> bytes:
    """What ``__sys_bpf`` keeps of a user attribute of ``len(raw)`` bytes: larger than
    ``sizeof(union bpf_attr)`` is accepted only when the excess is zero (E2BIG otherwise), and
    the result is the union, zero-extended to :data:`BPF_ATTR_SIZE`."""
    if len(raw) > PAGE_SIZE:
        raise BpfError(errno.E2BIG, f"attribute of {len(raw)} bytes exceeds a page")
    if len(raw) > BPF_ATTR_SIZE and bytes(raw[BPF_ATTR_SIZE:]).strip(b"\0"):
        raise BpfError(
            errno.E2BIG,
            f"attribute has non-zero bytes past sizeof(union bpf_attr) = {BPF_ATTR_SIZE}",
        )
    return bytes(raw[:BPF_ATTR_SIZE]).ljust(BPF_ATTR_SIZE, b"\0")


class _Layout:
    """Base of the byte-layout dataclasses: ``_FIELDS`` maps field name -> (struct format,
    offset); ``SIZE`` is the packed size; ``END`` the end of the last field."""

    _FIELDS: ClassVar[dict[str, tuple[str, int]]] = {}
    SIZE: ClassVar[int] = 0
    END: ClassVar[int] = 0

    def pack(self) -> bytes:
        buf = bytearray(self.SIZE)
        for name, (fmt, off) in self._FIELDS.items():
            struct.pack_into("<" + fmt, buf, off, getattr(self, name))
        return bytes(buf)

    @classmethod
    def unpack(cls, data: bytes | bytearray | memoryview):
        buf = bytes(data[: cls.SIZE]).ljust(cls.SIZE, b"\0")
        values = {
            name: struct.unpack_from("<" + fmt, buf, off)[0]
            for name, (fmt, off) in cls._FIELDS.items()
        }
        return cls(**values)

    @classmethod
    def offset_of(cls, name: str) -> int:
        return cls._FIELDS[name][1]


def _layout(_size: int, _end: int | None = None, /, **spec: tuple[str, int]):
    """Class decorator: attach the field table and sizes, checking that every dataclass field
    has a place and that no field runs past ``_size``."""

    def wrap(cls):
        names = [f.name for f in fields(cls)]
        assert names == list(spec), (cls.__name__, names, list(spec))
        last = max(off + struct.calcsize("<" + fmt) for fmt, off in spec.values())
        assert last <= _size, (cls.__name__, last, _size)
        cls._FIELDS = dict(spec)
        cls.SIZE = _size
        cls.END = last if _end is None else _end
        return cls

    return wrap


@_layout(
    BPF_ATTR_SIZE,
    map_type=("I", 0),
    key_size=("I", 4),
    value_size=("I", 8),
    max_entries=("I", 12),
    map_flags=("I", 16),
    inner_map_fd=("I", 20),
    numa_node=("I", 24),
    map_name=("16s", 28),
    map_ifindex=("I", 44),
    btf_fd=("I", 48),
    btf_key_type_id=("I", 52),
    btf_value_type_id=("I", 56),
    btf_vmlinux_value_type_id=("I", 60),
    map_extra=("Q", 64),
)
@dataclass
class BpfMapCreateAttr(_Layout):
    """``bpf_attr`` for BPF_MAP_CREATE (``BPF_MAP_CREATE_LAST_FIELD map_extra``: END 72)."""

    map_type: int = 0
    key_size: int = 0
    value_size: int = 0
    max_entries: int = 0
    map_flags: int = 0
    inner_map_fd: int = 0
    numa_node: int = 0
    map_name: bytes = b""
    map_ifindex: int = 0
    btf_fd: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    btf_vmlinux_value_type_id: int = 0
    map_extra: int = 0


@_layout(
    BPF_ATTR_SIZE,
    32,
    map_fd=("I", 0),
    key=("Q", 8),
    value=("Q", 16),
    flags=("Q", 24),
)
@dataclass
class BpfMapElemAttr(_Layout):
    """``bpf_attr`` for the element commands: ``map_fd``, ``key``, ``value`` (a union with
    ``next_key``), ``flags``.  Each command reads up to a different field: see :meth:`end_for`."""

    map_fd: int = 0
    key: int = 0
    value: int = 0
    flags: int = 0

    #: ``<CMD>_LAST_FIELD`` of syscall.c, as the end offset of that field.
    _ENDS: ClassVar[dict[int, int]] = {}

    @property
    def next_key(self) -> int:
        return self.value

    @classmethod
    def end_for(cls, cmd: BpfCmd | int) -> int:
        """Where BPF_MAP_LOOKUP_ELEM/UPDATE/DELETE/GET_NEXT_KEY/LOOKUP_AND_DELETE/FREEZE stop
        reading (delete reads up to ``key``, get_next_key up to ``next_key``, freeze only
        ``map_fd``)."""
        try:
            return cls._ENDS[int(cmd)]
        except KeyError:
            raise ValueError(f"{cmd!r} is not an element command") from None


BpfMapElemAttr._ENDS = {
    BpfCmd.BPF_MAP_LOOKUP_ELEM: 32,
    BpfCmd.BPF_MAP_UPDATE_ELEM: 32,
    BpfCmd.BPF_MAP_DELETE_ELEM: 16,
    BpfCmd.BPF_MAP_GET_NEXT_KEY: 24,
    BpfCmd.BPF_MAP_LOOKUP_AND_DELETE_ELEM: 32,
    BpfCmd.BPF_MAP_FREEZE: 4,
}


@_layout(
    BPF_ATTR_SIZE,
    prog_type=("I", 0),
    insn_cnt=("I", 4),
    insns=("Q", 8),
    license=("Q", 16),
    log_level=("I", 24),
    log_size=("I", 28),
    log_buf=("Q", 32),
    kern_version=("I", 40),
    prog_flags=("I", 44),
    prog_name=("16s", 48),
    prog_ifindex=("I", 64),
    expected_attach_type=("I", 68),
    prog_btf_fd=("I", 72),
    func_info_rec_size=("I", 76),
    func_info=("Q", 80),
    func_info_cnt=("I", 88),
    line_info_rec_size=("I", 92),
    line_info=("Q", 96),
    line_info_cnt=("I", 104),
    attach_btf_id=("I", 108),
    attach_prog_fd=("I", 112),
    core_relo_cnt=("I", 116),
    fd_array=("Q", 120),
    core_relos=("Q", 128),
    core_relo_rec_size=("I", 136),
    log_true_size=("I", 140),
)
@dataclass
class BpfProgLoadAttr(_Layout):
    """``bpf_attr`` for BPF_PROG_LOAD (``BPF_PROG_LOAD_LAST_FIELD log_true_size``: END 144).
    Pointers (``insns``, ``license``, ``log_buf``…) are user addresses."""

    prog_type: int = 0
    insn_cnt: int = 0
    insns: int = 0
    license: int = 0
    log_level: int = 0
    log_size: int = 0
    log_buf: int = 0
    kern_version: int = 0
    prog_flags: int = 0
    prog_name: bytes = b""
    prog_ifindex: int = 0
    expected_attach_type: int = 0
    prog_btf_fd: int = 0
    func_info_rec_size: int = 0
    func_info: int = 0
    func_info_cnt: int = 0
    line_info_rec_size: int = 0
    line_info: int = 0
    line_info_cnt: int = 0
    attach_btf_id: int = 0
    attach_prog_fd: int = 0
    core_relo_cnt: int = 0
    fd_array: int = 0
    core_relos: int = 0
    core_relo_rec_size: int = 0
    log_true_size: int = 0


@_layout(BPF_ATTR_SIZE, name=("Q", 0), prog_fd=("I", 8))
@dataclass
class BpfRawTracepointOpenAttr(_Layout):
    """``bpf_attr.raw_tracepoint`` for BPF_RAW_TRACEPOINT_OPEN (END 12): ``name`` is a user
    pointer to the tracepoint name."""

    name: int = 0
    prog_fd: int = 0


@_layout(BPF_ATTR_SIZE, bpf_fd=("I", 0), info_len=("I", 4), info=("Q", 8))
@dataclass
class BpfObjGetInfoByFdAttr(_Layout):
    """``bpf_attr.info`` for BPF_OBJ_GET_INFO_BY_FD (END 16)."""

    bpf_fd: int = 0
    info_len: int = 0
    info: int = 0


@_layout(
    BPF_ATTR_SIZE,
    60,
    prog_fd=("I", 0),
    target_fd=("I", 4),
    attach_type=("I", 8),
    flags=("I", 12),
    target_data=("44s", 16),
)
@dataclass
class BpfLinkCreateAttr(_Layout):
    """``bpf_attr.link_create`` for BPF_LINK_CREATE (``link_create.uprobe_multi.pid``: END 60).
    ``target_fd`` doubles as ``target_ifindex``; the per-link-type union after ``flags`` is kept
    raw in ``target_data`` with accessors for the fields tracing links use."""

    prog_fd: int = 0
    target_fd: int = 0
    attach_type: int = 0
    flags: int = 0
    target_data: bytes = b""

    @property
    def target_btf_id(self) -> int:
        return int.from_bytes(self.target_data[0:4].ljust(4, b"\0"), "little")

    @property
    def bpf_cookie(self) -> int:
        """``link_create.perf_event.bpf_cookie``."""
        return int.from_bytes(self.target_data[0:8].ljust(8, b"\0"), "little")


@_layout(
    88,
    type=("I", 0),
    id=("I", 4),
    key_size=("I", 8),
    value_size=("I", 12),
    max_entries=("I", 16),
    map_flags=("I", 20),
    name=("16s", 24),
    ifindex=("I", 40),
    btf_vmlinux_value_type_id=("I", 44),
    netns_dev=("Q", 48),
    netns_ino=("Q", 56),
    btf_id=("I", 64),
    btf_key_type_id=("I", 68),
    btf_value_type_id=("I", 72),
    map_extra=("Q", 80),
)
@dataclass
class BpfMapInfo(_Layout):
    """``struct bpf_map_info`` (88 bytes in v6.6)."""

    type: int = 0
    id: int = 0
    key_size: int = 0
    value_size: int = 0
    max_entries: int = 0
    map_flags: int = 0
    name: bytes = b""
    ifindex: int = 0
    btf_vmlinux_value_type_id: int = 0
    netns_dev: int = 0
    netns_ino: int = 0
    btf_id: int = 0
    btf_key_type_id: int = 0
    btf_value_type_id: int = 0
    map_extra: int = 0


@_layout(
    232,
    type=("I", 0),
    id=("I", 4),
    tag=("8s", 8),
    jited_prog_len=("I", 16),
    xlated_prog_len=("I", 20),
    jited_prog_insns=("Q", 24),
    xlated_prog_insns=("Q", 32),
    load_time=("Q", 40),
    created_by_uid=("I", 48),
    nr_map_ids=("I", 52),
    map_ids=("Q", 56),
    name=("16s", 64),
    ifindex=("I", 80),
    gpl_compatible=("I", 84),
    netns_dev=("Q", 88),
    run_time_ns=("Q", 192),
    run_cnt=("Q", 200),
    recursion_misses=("Q", 208),
    verified_insns=("I", 216),
)
@dataclass
class BpfProgInfo(_Layout):
    """``struct bpf_prog_info`` (232 bytes in v6.6), the fields kbpf-sim fills; the JIT, BTF
    and func/line-info fields between ``netns_dev`` and ``run_time_ns`` stay zero.
    ``gpl_compatible`` is bit 0 of the word at offset 84."""

    type: int = 0
    id: int = 0
    tag: bytes = b""
    jited_prog_len: int = 0
    xlated_prog_len: int = 0
    jited_prog_insns: int = 0
    xlated_prog_insns: int = 0
    load_time: int = 0
    created_by_uid: int = 0
    nr_map_ids: int = 0
    map_ids: int = 0
    name: bytes = b""
    ifindex: int = 0
    gpl_compatible: int = 0
    netns_dev: int = 0
    run_time_ns: int = 0
    run_cnt: int = 0
    recursion_misses: int = 0
    verified_insns: int = 0


@_layout(
    PERF_ATTR_SIZE_VER8,
    type=("I", 0),
    size=("I", 4),
    config=("Q", 8),
    sample_period=("Q", 16),
    sample_type=("Q", 24),
    read_format=("Q", 32),
    flags=("Q", 40),
    wakeup_events=("I", 48),
    bp_type=("I", 52),
    bp_addr=("Q", 56),
    bp_len=("Q", 64),
    branch_sample_type=("Q", 72),
    sample_regs_user=("Q", 80),
    sample_stack_user=("I", 88),
    clockid=("i", 92),
    sample_regs_intr=("Q", 96),
    aux_watermark=("I", 104),
    sample_max_stack=("H", 108),
    aux_sample_size=("I", 112),
    sig_data=("Q", 120),
    config3=("Q", 128),
)
@dataclass
class PerfEventAttr(_Layout):
    """``struct perf_event_attr`` (136 bytes, PERF_ATTR_SIZE_VER8, in v6.6).

    ``sample_period`` is a union with ``sample_freq``, ``wakeup_events`` with
    ``wakeup_watermark``, ``bp_addr``/``bp_len`` with ``config1``/``config2``; the single-bit
    fields (``disabled``, ``freq``, ``watermark``…) live in ``flags`` and have accessors.
    """

    type: int = 0
    size: int = 0
    config: int = 0
    sample_period: int = 0
    sample_type: int = 0
    read_format: int = 0
    flags: int = 0
    wakeup_events: int = 0
    bp_type: int = 0
    bp_addr: int = 0
    bp_len: int = 0
    branch_sample_type: int = 0
    sample_regs_user: int = 0
    sample_stack_user: int = 0
    clockid: int = 0
    sample_regs_intr: int = 0
    aux_watermark: int = 0
    sample_max_stack: int = 0
    aux_sample_size: int = 0
    sig_data: int = 0
    config3: int = 0

    # bit positions in ``flags``
    BIT_DISABLED: ClassVar[int] = 0
    BIT_INHERIT: ClassVar[int] = 1
    BIT_PINNED: ClassVar[int] = 2
    BIT_EXCLUSIVE: ClassVar[int] = 3
    BIT_EXCLUDE_USER: ClassVar[int] = 4
    BIT_EXCLUDE_KERNEL: ClassVar[int] = 5
    BIT_FREQ: ClassVar[int] = 10
    BIT_WATERMARK: ClassVar[int] = 14

    def _bit(self, bit: int) -> bool:
        return bool(self.flags >> bit & 1)

    @property
    def disabled(self) -> bool:
        return self._bit(self.BIT_DISABLED)

    @property
    def freq(self) -> bool:
        return self._bit(self.BIT_FREQ)

    @property
    def watermark(self) -> bool:
        return self._bit(self.BIT_WATERMARK)

    @property
    def sample_freq(self) -> int:
        return self.sample_period

    @property
    def wakeup_watermark(self) -> int:
        return self.wakeup_events

    @property
    def config1(self) -> int:
        return self.bp_addr

    @property
    def config2(self) -> int:
        return self.bp_len


@_layout(8, type=("I", 0), misc=("H", 4), size=("H", 6))
@dataclass
class PerfEventHeader(_Layout):
    """``struct perf_event_header``: the 8 bytes before every record in a perf ring."""

    type: int = 0
    misc: int = 0
    size: int = 0
