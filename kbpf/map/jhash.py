"""Bob Jenkins' lookup3 hash as the kernel carries it (``include/linux/jhash.h``, Linux v6.6).

The hash maps place a key in bucket ``hash & (n_buckets - 1)``, so which bucket an element lands
in — and therefore the order ``get_next_key`` and ``for_each_map_elem`` visit elements, and which
keys collide — is a function of these exact bits.  kbpf-sim must reproduce them for a map created
with ``BPF_F_ZERO_SEED`` to iterate in the same order as on Linux.

* :func:`jhash` hashes bytes: 12-byte blocks read as three little-endian u32 (the kernel's
  ``__get_unaligned_cpu32`` on a little-endian CPU), then the 0..12-byte tail added byte by
  byte, then the final mix (skipped for an empty tail).
* :func:`jhash2` hashes an array of u32 words (three per round, the last 0..3 words added
  before the final mix).
* :func:`htab_map_hash` is ``htab_map_hash()`` of kernel/bpf/hashtab.c: ``jhash2`` over
  ``key_len / 4`` native-endian words when the key length is a multiple of 4, else ``jhash``.

All arithmetic is modulo 2**32.  Hashing sits on every map operation's path, so
:func:`htab_map_hash` keeps a bounded cache of recent (key, seed) results: keys repeat a lot in
the workloads kbpf-sim runs, and the cache changes nothing but wall time.
"""

from __future__ import annotations

import struct
from functools import lru_cache

#: ``JHASH_INITVAL``: the arbitrary initial parameter.
JHASH_INITVAL = 0xDEADBEEF
_M = 0xFFFFFFFF


def _rol32(x: int, r: int) -> int:
    return ((x << r) | (x >> (32 - r))) & _M


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    """``__jhash_mix``: mix three 32-bit values reversibly."""
    a = (a - c) & _M
    a ^= _rol32(c, 4)
    c = (c + b) & _M
    b = (b - a) & _M
    b ^= _rol32(a, 6)
    a = (a + c) & _M
    c = (c - b) & _M
    c ^= _rol32(b, 8)
    b = (b + a) & _M
    a = (a - c) & _M
    a ^= _rol32(c, 16)
    c = (c + b) & _M
    b = (b - a) & _M
    b ^= _rol32(a, 19)
    a = (a + c) & _M
    c = (c - b) & _M
    c ^= _rol32(b, 4)
    b = (b + a) & _M
    return a, b, c


def _final(a: int, b: int, c: int) -> int:
    """``__jhash_final``: final mixing of (a, b, c) into c; returns c."""
    c ^= b
    c = (c - _rol32(b, 14)) & _M
    a ^= c
    a = (a - _rol32(c, 11)) & _M
    b ^= a
    b = (b - _rol32(a, 25)) & _M
    c ^= b
    c = (c - _rol32(b, 16)) & _M
    a ^= c
    a = (a - _rol32(c, 4)) & _M
    b ^= a
    b = (b - _rol32(a, 14)) & _M
    c ^= b
    c = (c - _rol32(b, 24)) & _M
    return c


def jhash(key: bytes, initval: int = 0) -> int:
    """``jhash(key, len(key), initval)``: the generic byte-string hash."""
    length = len(key)
    a = b = c = (JHASH_INITVAL + length + initval) & _M
    k = 0
    while length > 12:
        a = (a + int.from_bytes(key[k : k + 4], "little")) & _M
        b = (b + int.from_bytes(key[k + 4 : k + 8], "little")) & _M
        c = (c + int.from_bytes(key[k + 8 : k + 12], "little")) & _M
        a, b, c = _mix(a, b, c)
        length -= 12
        k += 12
    if length == 0:
        # The kernel returns c without the final mix when no tail byte is left.
        return c
    # The tail: bytes 0-3 go to a, 4-7 to b, 8-11 to c, each at its little-endian position;
    # the kernel's switch adds them one by one, and the sums are the same.
    tail = key[k : k + length]
    a = (a + int.from_bytes(tail[0:4], "little")) & _M
    if length > 4:
        b = (b + int.from_bytes(tail[4:8], "little")) & _M
    if length > 8:
        c = (c + int.from_bytes(tail[8:12], "little")) & _M
    return _final(a, b, c)


def jhash2(words: list[int] | tuple[int, ...], initval: int = 0) -> int:
    """``jhash2(words, len(words), initval)``: the hash of an array of u32 words."""
    length = len(words)
    a = b = c = (JHASH_INITVAL + (length << 2) + initval) & _M
    k = 0
    while length > 3:
        a = (a + words[k]) & _M
        b = (b + words[k + 1]) & _M
        c = (c + words[k + 2]) & _M
        a, b, c = _mix(a, b, c)
        length -= 3
        k += 3
    if length == 0:
        return c
    if length == 3:
        c = (c + words[k + 2]) & _M
    if length >= 2:
        b = (b + words[k + 1]) & _M
    a = (a + words[k]) & _M
    return _final(a, b, c)


def _nwords(a: int, b: int, c: int, initval: int) -> int:
    """``__jhash_nwords``: hash exactly three, two or one word(s)."""
    return _final((a + initval) & _M, (b + initval) & _M, (c + initval) & _M)


def jhash_3words(a: int, b: int, c: int, initval: int = 0) -> int:
    return _nwords(a, b, c, (initval + JHASH_INITVAL + (3 << 2)) & _M)


def jhash_2words(a: int, b: int, initval: int = 0) -> int:
    return _nwords(a, b, 0, (initval + JHASH_INITVAL + (2 << 2)) & _M)


def jhash_1word(a: int, initval: int = 0) -> int:
    return _nwords(a, 0, 0, (initval + JHASH_INITVAL + (1 << 2)) & _M)


@lru_cache(maxsize=1 << 16)
def htab_map_hash(key: bytes, hashrnd: int) -> int:
    """``htab_map_hash(key, key_len, hashrnd)``: ``jhash2`` over the key's little-endian u32
    words when its length is a multiple of 4 (the common case the kernel marks ``likely``),
    else ``jhash`` over its bytes."""
    n = len(key)
    if n % 4 == 0:
        return jhash2(struct.unpack(f"<{n >> 2}I", key), hashrnd)
    return jhash(key, hashrnd)
