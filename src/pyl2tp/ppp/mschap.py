"""MS-CHAPv2 cryptography (RFC 2759 §8), with the MD4 and DES it needs in pure Python.

MS-CHAPv2 hashes the password with MD4 and builds the NT-Response from three single-block
DES encryptions. OpenSSL 3 moved both to its "legacy" provider, which is usually not
loaded, so ``hashlib.new("md4")`` fails on most current systems and the standard library has
no DES at all. This module therefore carries small implementations of both, written from
RFC 1320 (MD4) and FIPS 46-3 (DES). They are used for a handful of blocks per
authentication, so clarity wins over speed; neither is meant for anything else (both are
broken as general-purpose primitives, which is MS-CHAPv2's problem, not ours to fix).

Function names follow the RFC's pseudocode (``GenerateNTResponse`` →
:func:`generate_nt_response`, and so on) so each can be checked against §8 directly, and the
§9.2 hash example is the test vector.

User names are hashed as UTF-8 (the RFC says ASCII); a name that came off the wire as
undecodable bytes round-trips through ``surrogateescape``, so the hash covers exactly the
octets the peer sent. Passwords are hashed as UTF-16LE ("Unicode" in the RFC).
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections.abc import Sequence

__all__ = [
    "AUTHENTICATOR_RESPONSE_LEN",
    "CHALLENGE_LEN",
    "NT_RESPONSE_LEN",
    "challenge_hash",
    "challenge_response",
    "check_authenticator_response",
    "des_encrypt",
    "des_encrypt_block",
    "expand_des_key",
    "generate_authenticator_response",
    "generate_nt_response",
    "hash_nt_password_hash",
    "md4",
    "nt_password_hash",
    "strip_domain",
]

CHALLENGE_LEN = 16
"""Authenticator and peer challenges are both 16 octets (RFC 2759 §3, §4)."""
NT_RESPONSE_LEN = 24
AUTHENTICATOR_RESPONSE_LEN = 42
"""``"S="`` and 40 hex digits (RFC 2759 §5)."""


def _text(value: str | bytes) -> bytes:
    if isinstance(value, bytes):
        return value
    return value.encode("utf-8", "surrogateescape")


# ---------------------------------------------------------------------------------------------
# MD4 (RFC 1320)

_MASK32 = 0xFFFFFFFF


def _rotl(x: int, n: int) -> int:
    return ((x << n) | (x >> (32 - n))) & _MASK32


def _md4_pure(data: bytes) -> bytes:
    """MD4 written out from RFC 1320 §3: three rounds of sixteen steps over 512-bit blocks."""
    bit_len = (len(data) * 8) & 0xFFFFFFFFFFFFFFFF
    # §3.1-3.2: a 1 bit, zeros to 448 mod 512, then the length as 64 bits, low word first.
    padded = data + b"\x80" + b"\x00" * ((55 - len(data)) % 64) + struct.pack("<Q", bit_len)
    a0, b0, c0, d0 = 0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476
    for offset in range(0, len(padded), 64):
        x = struct.unpack_from("<16I", padded, offset)
        a, b, c, d = a0, b0, c0, d0
        # Round 1: F(X,Y,Z) = XY v not(X) Z; words in order; shifts 3, 7, 11, 19.
        for i in range(16):
            f = (b & c) | (~b & d)
            a, b, c, d = d, _rotl((a + f + x[i]) & _MASK32, (3, 7, 11, 19)[i % 4]), b, c
        # Round 2: G(X,Y,Z) = XY v XZ v YZ; words by column; constant sqrt(2); 3, 5, 9, 13.
        for i in range(16):
            g = (b & c) | (b & d) | (c & d)
            k = (i % 4) * 4 + i // 4
            step = (a + g + x[k] + 0x5A827999) & _MASK32
            a, b, c, d = d, _rotl(step, (3, 5, 9, 13)[i % 4]), b, c
        # Round 3: H(X,Y,Z) = X xor Y xor Z; words in bit-reversed order; sqrt(3); 3, 9, 11, 15.
        for i, k in enumerate((0, 8, 4, 12, 2, 10, 6, 14, 1, 9, 5, 13, 3, 11, 7, 15)):
            h = b ^ c ^ d
            step = (a + h + x[k] + 0x6ED9EBA1) & _MASK32
            a, b, c, d = d, _rotl(step, (3, 9, 11, 15)[i % 4]), b, c
        a0 = (a0 + a) & _MASK32
        b0 = (b0 + b) & _MASK32
        c0 = (c0 + c) & _MASK32
        d0 = (d0 + d) & _MASK32
    return struct.pack("<4I", a0, b0, c0, d0)


def _md4_hashlib(data: bytes) -> bytes | None:
    try:
        return hashlib.new("md4", data).digest()
    except (ValueError, TypeError):
        return None


_HASHLIB_MD4 = _md4_hashlib(b"") is not None


def md4(data: bytes) -> bytes:
    """The 16-octet MD4 digest: hashlib's when OpenSSL still offers it, else our own."""
    if _HASHLIB_MD4:
        digest = _md4_hashlib(data)
        if digest is not None:
            return digest
    return _md4_pure(data)


# ---------------------------------------------------------------------------------------------
# DES (FIPS 46-3), encryption of one block only: that is all MS-CHAP uses.
#
# Tables list 1-based bit positions counted from the most significant bit, as in the standard.

# fmt: off
_IP = (
    58, 50, 42, 34, 26, 18, 10, 2,  60, 52, 44, 36, 28, 20, 12, 4,
    62, 54, 46, 38, 30, 22, 14, 6,  64, 56, 48, 40, 32, 24, 16, 8,
    57, 49, 41, 33, 25, 17,  9, 1,  59, 51, 43, 35, 27, 19, 11, 3,
    61, 53, 45, 37, 29, 21, 13, 5,  63, 55, 47, 39, 31, 23, 15, 7,
)
_E = (
    32,  1,  2,  3,  4,  5,   4,  5,  6,  7,  8,  9,
     8,  9, 10, 11, 12, 13,  12, 13, 14, 15, 16, 17,
    16, 17, 18, 19, 20, 21,  20, 21, 22, 23, 24, 25,
    24, 25, 26, 27, 28, 29,  28, 29, 30, 31, 32,  1,
)
_P = (
    16,  7, 20, 21, 29, 12, 28, 17,   1, 15, 23, 26,  5, 18, 31, 10,
     2,  8, 24, 14, 32, 27,  3,  9,  19, 13, 30,  6, 22, 11,  4, 25,
)
_PC1 = (
    57, 49, 41, 33, 25, 17,  9,   1, 58, 50, 42, 34, 26, 18,
    10,  2, 59, 51, 43, 35, 27,  19, 11,  3, 60, 52, 44, 36,
    63, 55, 47, 39, 31, 23, 15,   7, 62, 54, 46, 38, 30, 22,
    14,  6, 61, 53, 45, 37, 29,  21, 13,  5, 28, 20, 12,  4,
)
_PC2 = (
    14, 17, 11, 24,  1,  5,   3, 28, 15,  6, 21, 10,
    23, 19, 12,  4, 26,  8,  16,  7, 27, 20, 13,  2,
    41, 52, 31, 37, 47, 55,  30, 40, 51, 45, 33, 48,
    44, 49, 39, 56, 34, 53,  46, 42, 50, 36, 29, 32,
)
_SHIFTS = (1, 1, 2, 2, 2, 2, 2, 2, 1, 2, 2, 2, 2, 2, 2, 1)
_SBOXES = (
    (14,  4, 13,  1,  2, 15, 11,  8,  3, 10,  6, 12,  5,  9,  0,  7,
      0, 15,  7,  4, 14,  2, 13,  1, 10,  6, 12, 11,  9,  5,  3,  8,
      4,  1, 14,  8, 13,  6,  2, 11, 15, 12,  9,  7,  3, 10,  5,  0,
     15, 12,  8,  2,  4,  9,  1,  7,  5, 11,  3, 14, 10,  0,  6, 13),
    (15,  1,  8, 14,  6, 11,  3,  4,  9,  7,  2, 13, 12,  0,  5, 10,
      3, 13,  4,  7, 15,  2,  8, 14, 12,  0,  1, 10,  6,  9, 11,  5,
      0, 14,  7, 11, 10,  4, 13,  1,  5,  8, 12,  6,  9,  3,  2, 15,
     13,  8, 10,  1,  3, 15,  4,  2, 11,  6,  7, 12,  0,  5, 14,  9),
    (10,  0,  9, 14,  6,  3, 15,  5,  1, 13, 12,  7, 11,  4,  2,  8,
     13,  7,  0,  9,  3,  4,  6, 10,  2,  8,  5, 14, 12, 11, 15,  1,
     13,  6,  4,  9,  8, 15,  3,  0, 11,  1,  2, 12,  5, 10, 14,  7,
      1, 10, 13,  0,  6,  9,  8,  7,  4, 15, 14,  3, 11,  5,  2, 12),
    ( 7, 13, 14,  3,  0,  6,  9, 10,  1,  2,  8,  5, 11, 12,  4, 15,
     13,  8, 11,  5,  6, 15,  0,  3,  4,  7,  2, 12,  1, 10, 14,  9,
     10,  6,  9,  0, 12, 11,  7, 13, 15,  1,  3, 14,  5,  2,  8,  4,
      3, 15,  0,  6, 10,  1, 13,  8,  9,  4,  5, 11, 12,  7,  2, 14),
    ( 2, 12,  4,  1,  7, 10, 11,  6,  8,  5,  3, 15, 13,  0, 14,  9,
     14, 11,  2, 12,  4,  7, 13,  1,  5,  0, 15, 10,  3,  9,  8,  6,
      4,  2,  1, 11, 10, 13,  7,  8, 15,  9, 12,  5,  6,  3,  0, 14,
     11,  8, 12,  7,  1, 14,  2, 13,  6, 15,  0,  9, 10,  4,  5,  3),
    (12,  1, 10, 15,  9,  2,  6,  8,  0, 13,  3,  4, 14,  7,  5, 11,
     10, 15,  4,  2,  7, 12,  9,  5,  6,  1, 13, 14,  0, 11,  3,  8,
      9, 14, 15,  5,  2,  8, 12,  3,  7,  0,  4, 10,  1, 13, 11,  6,
      4,  3,  2, 12,  9,  5, 15, 10, 11, 14,  1,  7,  6,  0,  8, 13),
    ( 4, 11,  2, 14, 15,  0,  8, 13,  3, 12,  9,  7,  5, 10,  6,  1,
     13,  0, 11,  7,  4,  9,  1, 10, 14,  3,  5, 12,  2, 15,  8,  6,
      1,  4, 11, 13, 12,  3,  7, 14, 10, 15,  6,  8,  0,  5,  9,  2,
      6, 11, 13,  8,  1,  4, 10,  7,  9,  5,  0, 15, 14,  2,  3, 12),
    (13,  2,  8,  4,  6, 15, 11,  1, 10,  9,  3, 14,  5,  0, 12,  7,
      1, 15, 13,  8, 10,  3,  7,  4, 12,  5,  6, 11,  0, 14,  9,  2,
      7, 11,  4,  1,  9, 12, 14,  2,  0,  6, 10, 13, 15,  3,  5,  8,
      2,  1, 14,  7,  4, 10,  8, 13, 15, 12,  9,  0,  3,  5,  6, 11),
)
# fmt: on

# The final permutation is the inverse of the initial one (FIPS 46-3, "IP^-1"); deriving it
# leaves one table fewer to transcribe.
_FP = tuple(_IP.index(pos) + 1 for pos in range(1, 65))


def _permute(value: int, table: Sequence[int], in_bits: int) -> int:
    out = 0
    for pos in table:
        out = (out << 1) | ((value >> (in_bits - pos)) & 1)
    return out


def _des_subkeys(key: int) -> list[int]:
    """The sixteen 48-bit round keys of a 64-bit key (parity bits are dropped by PC-1)."""
    cd = _permute(key, _PC1, 64)
    c, d = cd >> 28, cd & 0x0FFFFFFF
    subkeys = []
    for shift in _SHIFTS:
        c = ((c << shift) | (c >> (28 - shift))) & 0x0FFFFFFF
        d = ((d << shift) | (d >> (28 - shift))) & 0x0FFFFFFF
        subkeys.append(_permute((c << 28) | d, _PC2, 56))
    return subkeys


def _feistel(right: int, subkey: int) -> int:
    x = _permute(right, _E, 32) ^ subkey
    out = 0
    for i, box in enumerate(_SBOXES):
        six = (x >> (42 - 6 * i)) & 0x3F
        row = ((six >> 4) & 0b10) | (six & 1)
        col = (six >> 1) & 0xF
        out = (out << 4) | box[row * 16 + col]
    return _permute(out, _P, 32)


def des_encrypt_block(block: bytes, key: bytes) -> bytes:
    """DES-encrypt one 8-octet ``block`` with an 8-octet ``key`` (parity bits ignored)."""
    if len(block) != 8 or len(key) != 8:
        raise ValueError("DES takes an 8-octet block and an 8-octet key")
    subkeys = _des_subkeys(int.from_bytes(key, "big"))
    data = _permute(int.from_bytes(block, "big"), _IP, 64)
    left, right = data >> 32, data & _MASK32
    for subkey in subkeys:
        left, right = right, left ^ _feistel(right, subkey)
    # The halves are swapped once more after round 16 (the "preoutput" is R16 L16).
    return _permute((right << 32) | left, _FP, 64).to_bytes(8, "big")


def expand_des_key(key7: bytes) -> bytes:
    """Spread a 56-bit key over 8 octets, 7 key bits each, low bit set for odd parity.

    RFC 2759 §8.6: DES takes 64 bits of which every eighth is parity; MS-CHAP keys are 7
    octets of raw key material (RFC 2759 §9.3 gives an example).
    """
    if len(key7) != 7:
        raise ValueError("a raw DES key is 7 octets")
    bits = int.from_bytes(key7, "big")
    out = bytearray()
    for i in range(8):
        seven = (bits >> (49 - 7 * i)) & 0x7F
        byte = seven << 1
        out.append(byte | (1 - bin(byte).count("1") % 2))
    return bytes(out)


def des_encrypt(clear: bytes, key7: bytes) -> bytes:
    """DesEncrypt() of RFC 2759 §8.6: one ECB block under a 7-octet key."""
    return des_encrypt_block(clear, expand_des_key(key7))


# ---------------------------------------------------------------------------------------------
# RFC 2759 §8


def strip_domain(user_name: str) -> str:
    """The account name without a ``DOMAIN\\`` prefix, which is what ChallengeHash() hashes
    (RFC 2759 §4, §8.2), whatever the peer put in the Response's Name field."""
    return user_name.rsplit("\\", 1)[-1]


def challenge_hash(
    peer_challenge: bytes, authenticator_challenge: bytes, user_name: str | bytes
) -> bytes:
    """ChallengeHash(): the first 8 octets of SHA-1(PeerChallenge ‖ AuthChallenge ‖ UserName).

    ``user_name`` must already be stripped of any domain (see :func:`strip_domain`).
    """
    digest = hashlib.sha1(peer_challenge + authenticator_challenge + _text(user_name)).digest()
    return digest[:8]


def nt_password_hash(password: str) -> bytes:
    """NtPasswordHash(): MD4 of the password in UTF-16LE, no terminator."""
    return md4(password.encode("utf-16-le", "surrogatepass"))


def hash_nt_password_hash(password_hash: bytes) -> bytes:
    """HashNtPasswordHash(): MD4 of the 16-octet password hash."""
    return md4(password_hash)


def challenge_response(challenge: bytes, password_hash: bytes) -> bytes:
    """ChallengeResponse(): the 8-octet challenge DES-encrypted under each 7-octet third of
    the password hash zero-padded to 21 octets, concatenated (24 octets)."""
    if len(challenge) != 8:
        raise ValueError("the challenge is 8 octets")
    z = password_hash.ljust(21, b"\x00")[:21]
    return b"".join(des_encrypt(challenge, z[i : i + 7]) for i in (0, 7, 14))


def generate_nt_response(
    authenticator_challenge: bytes, peer_challenge: bytes, user_name: str | bytes, password: str
) -> bytes:
    """GenerateNTResponse(): the 24-octet NT-Response of a Response packet (RFC 2759 §8.1)."""
    challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name)
    return challenge_response(challenge, nt_password_hash(password))


_MAGIC1 = b"Magic server to client signing constant"
_MAGIC2 = b"Pad to make it do more than one iteration"


def generate_authenticator_response(
    password: str,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    user_name: str | bytes,
) -> str:
    """GenerateAuthenticatorResponse(): ``"S="`` and 40 uppercase hex digits (§8.7).

    Proves to the peer that the authenticator knows the password too; the Success message
    carries it and the peer MUST check it (§5).
    """
    password_hash_hash = hash_nt_password_hash(nt_password_hash(password))
    digest = hashlib.sha1(password_hash_hash + nt_response + _MAGIC1).digest()
    challenge = challenge_hash(peer_challenge, authenticator_challenge, user_name)
    digest = hashlib.sha1(digest + challenge + _MAGIC2).digest()
    return "S=" + digest.hex().upper()


def check_authenticator_response(
    password: str,
    nt_response: bytes,
    peer_challenge: bytes,
    authenticator_challenge: bytes,
    user_name: str | bytes,
    received: str | bytes,
) -> bool:
    """CheckAuthenticatorResponse() (§8.8): whether ``received`` (the 42-octet ``"S=..."``
    string, as found at the start of a Success message) is the one we expect.

    Hex case is not significant to the comparison; the comparison is constant-time.
    """
    raw = received.encode("ascii", "replace") if isinstance(received, str) else bytes(received)
    expected = generate_authenticator_response(
        password, nt_response, peer_challenge, authenticator_challenge, user_name
    ).encode("ascii")
    return hmac.compare_digest(raw.upper(), expected)
