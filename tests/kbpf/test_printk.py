"""bpf_trace_printk / bpf_trace_vprintk: what Linux v6.6 accepts and prints
(``bpf_bprintf_prepare`` in kernel/bpf/helpers.c, ``bstr_printf`` in lib/vsprintf.c)."""

import errno
import re

import pytest

from kbpf.helper import init_helper_functions
from kbpf.host import TaskInfo
from kbpf.linux_bpf import BpfFuncId
from tests.kbpf.testhost import TestHost, scratch, u64

U64 = (1 << 64) - 1
EINVAL = -errno.EINVAL & U64


@pytest.fixture
def host():
    h = TestHost(ncpus=2, seed=11)
    h.tasks[0] = TaskInfo(42, 42, "printer")
    return h


@pytest.fixture
def printk(host):
    """``printk(fmt, *args) -> (r0, printed text or None)`` through helper 6 (up to three
    arguments) or helper 177 (more)."""
    table = init_helper_functions(host)

    def printk(fmt, *args, vprintk=False, fmt_size=None):
        raw = fmt if isinstance(fmt, bytes) else fmt.encode()
        if fmt_size is None:
            raw += b"\0"
            fmt_size = len(raw)
        f = scratch(host, raw)
        before = len(host.trace)
        if vprintk or len(args) > 3:
            arr = scratch(host, b"".join(u64(a) for a in args)) if args else 0
            r0 = table[int(BpfFuncId.BPF_FUNC_trace_vprintk)](f, fmt_size, arr, 8 * len(args), 0)
        else:
            regs = [a & U64 for a in args] + [0] * (3 - len(args))
            r0 = table[int(BpfFuncId.BPF_FUNC_trace_printk)](f, fmt_size, *regs)
        out = host.trace[before:]
        assert len(out) <= 1
        return r0, (out[0] if out else None)

    return printk


@pytest.mark.parametrize(
    "fmt, args, text",
    [
        ("plain text\n", (), "plain text\n"),
        ("%d %u %x", (-1, -1, -1), "-1 4294967295 ffffffff"),  # int-sized without l
        ("%ld %lu %lx", (-1, -1, 0xDEADBEEF12), "-1 18446744073709551615 deadbeef12"),
        ("%lld %llu %llX", (-5, 5, 0xABCDEF), "-5 5 ABCDEF"),
        ("%i|%d", (7, 0x1_0000_0003), "7|3"),  # truncated to 32 bits
        ("[%5d][%-5d][%05d]", (42, 42, -42), "[   42][42   ][-0042]"),
        ("[%+d][% d][%+d]", (3, 3, -3), "[+3][ 3][-3]"),
        ("[%-05d][%8x][%08X]", (9, 255, 255), "[9    ][      ff][000000FF]"),
        ("%c%c%3c|%-3c|", (ord("h"), ord("i"), ord("!"), ord("?")), "hi  !|?  |"),
        ("100%% sure %d", (1,), "100% sure 1"),
        ("%u%%", (0,), "0%"),
    ],
)
def test_integer_and_char_formatting(printk, fmt, args, text):
    r0, out = printk(fmt, *args)
    assert out == text
    assert r0 == len(text)


def test_strings_from_kernel_and_user_memory(host, printk):
    kstr = scratch(host, b"kernel\0")
    ustr = host.map_user(b"user\0")
    assert printk("[%s][%s]", kstr, ustr)[1] == "[kernel][user]"
    assert printk("[%8s][%-8s]", kstr, ustr)[1] == "[  kernel][user    ]"
    assert printk("[%pks][%pus]", kstr, ustr)[1] == "[kernel][user]"
    # unreadable strings print as empty; %pks of a user address is refused (ERANGE)
    assert printk("[%s][%s][%pks]", 0, 0xFFFF_8880_3F00_0000, ustr)[1] == "[][][]"


def test_hashed_and_raw_pointers(host, printk):
    ptr = 0xFFFF_8880_0012_3456
    r0, out = printk("%p %pK %px", ptr, ptr, ptr)
    hashed, k, raw = out.split()
    assert re.fullmatch("00000000[0-9a-f]{8}", hashed)  # 64-bit prints the low 32 hash bits
    assert k == hashed  # kptr_restrict = 0: %pK hashes like %p
    assert raw == "ffff888000123456"
    assert printk("%p", ptr)[1] == hashed  # stable
    assert printk("%p", ptr + 8)[1] != hashed
    assert printk("%p|%px", 0, 0)[1] == "0000000000000000|0000000000000000"
    err_ptr = -12 & U64  # ERR_PTR(-ENOMEM) prints raw
    assert printk("%p", err_ptr)[1] == "fffffffffffffff4"


def test_symbol_pointers_print_as_addresses(printk):
    addr = 0xFFFF_FFFF_8100_1000
    assert printk("%ps %pS %pB", addr, addr, addr)[1] == " ".join(["0xffffffff81001000"] * 3)
    assert printk("[%20ps]", addr)[1] == "[  0xffffffff81001000]"


def test_ip_addresses(host, printk):
    v4 = scratch(host, bytes([192, 168, 1, 20]))
    v6 = scratch(host, bytes.fromhex("20010db8000000000000000000000001"))
    assert printk("%pI4 %pi4", v4, v4)[1] == "192.168.1.20 192.168.001.020"
    assert printk("%pI6", v6)[1] == "2001:0db8:0000:0000:0000:0000:0000:0001"
    assert printk("%pi6", v6)[1] == "20010db8000000000000000000000001"
    assert printk("%pI4", host.map_user(b"\x01\x02\x03\x04"))[1] == "0.0.0.0"  # not kernel memory


def test_alphanumerics_after_a_pointer_conversion_are_swallowed(printk):
    # bstr_printf skips every alphanumeric after %p<ext>; %pI6c prints the long form
    assert printk("%pxyz!", 0x10)[1] == "0000000000000010!"


@pytest.mark.parametrize(
    "fmt, why",
    [
        ("%d %d %d %d", "trace_printk has three argument registers"),
        ("%q", "unknown conversion"),
        ("%.3d", "no precision"),
        ("%#x", "no # flag"),
        ("%*d", "no * width"),
        ("%hd", "no h modifier"),
        ("%lld%lll", "no lll"),
        ("%lc", "no long char"),
        ("%sx", "an alphanumeric right after %s"),
        ("%pX", "unknown pointer format"),
        ("%pi5", "only IPv4/IPv6"),
        ("%", "a lone % at the end"),
        ("tab\tok but bell\a", "control characters"),
        ("caf\xe9", "non-ASCII bytes (v6.6 rejects them)"),
    ],
)
def test_bad_formats_are_einval_and_print_nothing(printk, fmt, why):
    r0, out = printk(fmt.encode("latin-1"), 1, 2, 3)
    assert (r0, out) == (EINVAL, None), why


def test_format_must_hold_a_nul_within_fmt_size(printk):
    assert printk(b"abc", fmt_size=3) == (EINVAL, None)
    assert printk(b"ab\0junk\x01", fmt_size=8)[1] == "ab"  # text after the NUL is ignored


def test_output_is_cut_at_1023_bytes_but_the_length_is_not(printk):
    r0, out = printk("x" * 1100)
    assert r0 == 1100 and out == "x" * 1023


def test_strings_share_a_512_byte_argument_buffer(host, printk):
    long = scratch(host, b"L" * 600 + b"\0")
    short = scratch(host, b"s\0")
    r0, out = printk("%s", long)
    assert out == "L" * 511  # cut to what fits with its NUL
    r0, out = printk("%s%s", long, short)
    assert (r0, out) == (-errno.ENOSPC & U64, None)


def test_vprintk_takes_up_to_twelve_arguments(printk):
    args = list(range(12))
    r0, out = printk(" ".join(["%d"] * 12), *args)
    assert out == " ".join(map(str, args))
    assert printk("%d", *range(13))[0] == EINVAL  # data_len above 96


def test_vprintk_argument_checks(host):
    table = init_helper_functions(host)
    vprintk = table[int(BpfFuncId.BPF_FUNC_trace_vprintk)]
    fmt = scratch(host, b"%% only\0")
    assert vprintk(fmt, 8, 0, 0, 0) == 6 and host.trace[-1] == "% only"
    assert vprintk(fmt, 8, scratch(host, bytes(16)), 12, 0) == EINVAL  # not a multiple of 8
    assert vprintk(fmt, 8, 0, 8, 0) == EINVAL  # data without an array
    with_arg = scratch(host, b"%d\0")
    assert vprintk(with_arg, 3, 0, 0, 0) == EINVAL  # a conversion but no arguments
