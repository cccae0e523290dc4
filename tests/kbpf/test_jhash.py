"""Bob Jenkins' hash as include/linux/jhash.h (v6.6) computes it, and htab_map_hash's choice
between jhash and jhash2.

The expected values were computed once by compiling the kernel header's jhash, jhash2 and
jhash_{1,2,3}words with gcc on x86-64 (little-endian) and are pinned here.
"""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kbpf.map.jhash import (
    JHASH_INITVAL,
    htab_map_hash,
    jhash,
    jhash2,
    jhash_1word,
    jhash_2words,
    jhash_3words,
)

#: The reference input: byte i is (7 * i + 1) mod 256.
BUF = bytes((7 * i + 1) & 0xFF for i in range(64))

#: jhash(BUF[:n], n, seed) for seeds 0 and 0x12345678.
JHASH_PREFIXES = {
    # n: (seed 0, seed 0x12345678)
    0: (0xDEADBEEF, 0xF0E21567),
    1: (0x04EC883B, 0x40158784),
    2: (0x022BC7FB, 0x36A5AB8F),
    3: (0x96C2FD10, 0xD8F0E5DF),
    4: (0x46F8EEC9, 0xF7E6AC94),
    5: (0xB21735C1, 0x236BF5CD),
    7: (0x098FBE6F, 0xACD73B78),
    8: (0x9AFDB1B3, 0xDC12B871),
    11: (0x75299B1B, 0x832A600E),
    12: (0x38919C27, 0xE8F4C145),
    13: (0xE1F0CBAE, 0xA2FBE119),
    16: (0xEDFEC516, 0xC75586B5),
    24: (0xFF0CB32C, 0x56FA96DF),
    25: (0x0ABB8113, 0xE5FC355E),
    36: (0x6508C67B, 0xEDCC0C42),
    37: (0x119D4E58, 0x14AF5695),
    64: (0x88EA27E0, 0xF325CD04),
}

#: jhash2(W[:n], n, 0) with W[i] = 0x01020304 * (i + 1) (mod 2^32).
WORDS = [(0x01020304 * (i + 1)) & 0xFFFFFFFF for i in range(16)]
JHASH2_PREFIXES = {
    0: 0xDEADBEEF,
    1: 0xEC5B1971,
    2: 0x7D9F9502,
    3: 0x6C07EEA8,
    4: 0x4AA647C0,
    5: 0x8653D3B5,
    6: 0x281A9248,
    7: 0x6B104285,
}

#: htab_map_hash(&k, 4, 0) for u32 keys 0..15: the hashes a BPF_F_ZERO_SEED map uses.
ZERO_SEED_U32 = [
    0x049396B8, 0x72A82A9B, 0xEE626CCA, 0x9917754F, 0x15DE40B1, 0xF5A8A9B6, 0x421EAC7E,
    0xA9D55C9A, 0x317FD40C, 0x04FAF80D, 0x3D6BE971, 0x52933CFD, 0x27F64B7D, 0xC6F5C11B,
    0xD5757E3A, 0x6C388745,
]  # fmt: skip


@pytest.mark.parametrize("n", sorted(JHASH_PREFIXES))
def test_jhash_matches_the_kernel_for_every_tail_length(n):
    seed0, seed1 = JHASH_PREFIXES[n]
    assert jhash(BUF[:n], 0) == seed0
    assert jhash(BUF[:n], 0x12345678) == seed1


def test_jhash_of_an_empty_key_is_the_initial_state_without_the_final_mix():
    assert jhash(b"", 0) == JHASH_INITVAL
    assert jhash(b"", 5) == JHASH_INITVAL + 5


def test_jhash_of_text():
    assert jhash(b"The quick brown fox jumps over the lazy dog", 0) == 0x64A2CD46


@pytest.mark.parametrize("n", sorted(JHASH2_PREFIXES))
def test_jhash2_matches_the_kernel(n):
    assert jhash2(WORDS[:n], 0) == JHASH2_PREFIXES[n]


def test_jhash2_seed():
    assert jhash2(WORDS[:7], 0xDEADBEEF) == 0x221FC513


def test_jhash_nwords():
    assert jhash_3words(1, 2, 3, 0) == 0xA46158F5
    assert jhash_2words(1, 2, 7) == 0x79F0851F
    assert jhash_1word(42, 0) == 0x7B5EDD46


def test_htab_map_hash_uses_jhash2_for_u32_keys():
    for k, expected in enumerate(ZERO_SEED_U32):
        assert htab_map_hash(struct.pack("<I", k), 0) == expected


def test_htab_map_hash_of_u64_and_odd_length_keys():
    assert htab_map_hash(struct.pack("<Q", 0x1122334455667788), 0) == 0x5A379ED9
    assert htab_map_hash(bytes([1, 2, 3]), 0) == 0x3E2A886B  # jhash: 3 is no multiple of 4


@given(st.binary(max_size=40).filter(lambda b: len(b) % 4 == 0), st.integers(0, 2**32 - 1))
def test_on_little_endian_jhash2_of_the_words_equals_jhash_of_the_bytes(data, seed):
    """Why htab_map_hash may pick jhash2 for speed: on a little-endian CPU both give the same
    bits for a key whose length is a multiple of 4."""
    words = struct.unpack(f"<{len(data) // 4}I", data)
    assert jhash2(words, seed) == jhash(data, seed) == htab_map_hash(data, seed)


@given(st.binary(max_size=30), st.integers(0, 2**32 - 1))
def test_hash_is_a_u32(data, seed):
    assert 0 <= jhash(data, seed) < 2**32
