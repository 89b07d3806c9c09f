"""MS-CHAPv2 cryptography against published vectors.

The MS-CHAPv2 values come from RFC 2759 §9.2 (user "User", password "clientPass") and §9.3
(DES key parity); MD4 from RFC 1320 §A.5; DES from the classic FIPS 46 examples. Each
intermediate value of §9.2 is checked on its own so a failure points at the broken step.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyl2tp.ppp import mschap

# RFC 2759 §9.2
USER = "User"
PASSWORD = "clientPass"
AUTH_CHALLENGE = bytes.fromhex("5B5D7C7D7B3F2F3E3C2C602132262628")
PEER_CHALLENGE = bytes.fromhex("21402324255E262A28295F2B3A337C7E")
CHALLENGE = bytes.fromhex("D02E4386BCE91226")
PASSWORD_HASH = bytes.fromhex("44EBBA8D5312B8D611474411F56989AE")
NT_RESPONSE = bytes.fromhex("82309ECD8D708B5EA08FAA3981CD83544233114A3D85D6DF")
PASSWORD_HASH_HASH = bytes.fromhex("41C00C584BD2D91C4017A2A12FA59F3F")
AUTHENTICATOR_RESPONSE = "S=407A5589115FD0D6209F510FE9C04566932CDA56"


def test_rfc2759_password_is_utf16le() -> None:
    assert PASSWORD.encode("utf-16-le") == bytes.fromhex(
        "63006C0069006500 6E00740050006100 73007300".replace(" ", "")
    )


def test_rfc2759_challenge_hash() -> None:
    assert mschap.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, USER) == CHALLENGE
    assert mschap.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, b"User") == CHALLENGE


def test_rfc2759_nt_password_hash() -> None:
    assert mschap.nt_password_hash(PASSWORD) == PASSWORD_HASH


def test_rfc2759_challenge_response() -> None:
    assert mschap.challenge_response(CHALLENGE, PASSWORD_HASH) == NT_RESPONSE


def test_rfc2759_generate_nt_response() -> None:
    assert mschap.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, USER, PASSWORD) == (
        NT_RESPONSE
    )


def test_rfc2759_hash_nt_password_hash() -> None:
    assert mschap.hash_nt_password_hash(PASSWORD_HASH) == PASSWORD_HASH_HASH


def test_rfc2759_generate_authenticator_response() -> None:
    got = mschap.generate_authenticator_response(
        PASSWORD, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER
    )
    assert got == AUTHENTICATOR_RESPONSE
    assert len(got) == mschap.AUTHENTICATOR_RESPONSE_LEN


def test_rfc2759_check_authenticator_response() -> None:
    args = (PASSWORD, NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER)
    assert mschap.check_authenticator_response(*args, AUTHENTICATOR_RESPONSE)
    assert mschap.check_authenticator_response(*args, AUTHENTICATOR_RESPONSE.encode())
    assert mschap.check_authenticator_response(*args, AUTHENTICATOR_RESPONSE.lower())
    wrong = AUTHENTICATOR_RESPONSE[:-1] + "7"
    assert not mschap.check_authenticator_response(*args, wrong)
    assert not mschap.check_authenticator_response(*args, AUTHENTICATOR_RESPONSE[:-1])
    assert not mschap.check_authenticator_response(*args, "")
    assert not mschap.check_authenticator_response(
        "clientpass", NT_RESPONSE, PEER_CHALLENGE, AUTH_CHALLENGE, USER, AUTHENTICATOR_RESPONSE
    )


def test_rfc2759_des_key_parity() -> None:
    # §9.3: password "MyPw" (hashed as UTF-16LE like every NT password).
    password_hash = mschap.nt_password_hash("MyPw")
    assert password_hash == bytes.fromhex("FC156AF7EDCD6C0EDDE3337D427F4EAC")
    assert mschap.expand_des_key(password_hash[:7]) == bytes.fromhex("FD0B5B5E7F6E34D9")
    assert mschap.expand_des_key(password_hash[7:14]) == bytes.fromhex("0E6E796737EA08FE")


def test_strip_domain() -> None:
    assert mschap.strip_domain("BIGCO\\johndoe") == "johndoe"
    assert mschap.strip_domain("johndoe") == "johndoe"
    assert mschap.strip_domain("a\\b\\c") == "c"
    # The domain does not enter ChallengeHash (RFC 2759 §4, §8.2).
    stripped = mschap.strip_domain("BIGCO\\User")
    assert mschap.challenge_hash(PEER_CHALLENGE, AUTH_CHALLENGE, stripped) == CHALLENGE


# -- MD4 (RFC 1320 §A.5) -----------------------------------------------------------------------

MD4_VECTORS = [
    (b"", "31d6cfe0d16ae931b73c59d7e0c089c0"),
    (b"a", "bde52cb31de33e46245e05fbdbd6fb24"),
    (b"abc", "a448017aaf21d8525fc10ae87aa6729d"),
    (b"message digest", "d9130a8164549fe818874806e1c7014b"),
    (b"abcdefghijklmnopqrstuvwxyz", "d79e1c308aa5bbcdeea8ed63df412da9"),
    (
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        "043f8582f241db351ce627e153e7f0e4",
    ),
    (b"1234567890" * 8, "e33b4ddc9c38f2199c3e7b164fcc0536"),
]


@pytest.mark.parametrize(("data", "digest"), MD4_VECTORS)
def test_md4_rfc1320_vectors(data: bytes, digest: str) -> None:
    assert mschap._md4_pure(data).hex() == digest
    assert mschap.md4(data).hex() == digest


MD4_PADDING_VECTORS = {
    # "x" * size around the 448-bit padding boundary, from `openssl dgst -md4` (legacy provider)
    55: "92f32bb82c95ad10e8f87ae58ab06807",
    56: "374d5f08103b7092c83b4626ebceffab",
    63: "2870452596e98fffd48332289b3472b9",
    64: "b1abf956a5ae6f3221e5fe85e300fbb0",
    65: "afc1a3308fc176a53238a09aeddec2e6",
    119: "b55ae15e41e55643b0c3daad5e05c905",
    120: "d8f9adfc41ec43552619606c70cfd287",
    1000: "4b4cacfefc79bf951c60620df38532dc",
}


@pytest.mark.parametrize(("size", "digest"), sorted(MD4_PADDING_VECTORS.items()))
def test_md4_padding_boundaries(size: int, digest: str) -> None:
    assert mschap._md4_pure(b"x" * size).hex() == digest


@given(st.binary(max_size=300))
def test_md4_matches_hashlib_when_available(data: bytes) -> None:
    try:
        reference = hashlib.new("md4", data).digest()
    except ValueError:
        reference = None
    got = mschap._md4_pure(data)
    if reference is not None:
        assert got == reference
    assert mschap.md4(data) == got


# -- DES --------------------------------------------------------------------------------------

DES_VECTORS = [
    # (key, plaintext, ciphertext): FIPS 46 worked example, "Now is t", all-zero, all-one,
    # and a weak-parity key; cross-checked with `openssl enc -des-ecb` (legacy provider).
    ("133457799BBCDFF1", "0123456789ABCDEF", "85E813540F0AB405"),
    ("0123456789ABCDEF", "4E6F772069732074", "3FA40E8A984D4815"),
    ("0000000000000000", "0000000000000000", "8CA64DE9C1B123A7"),
    ("FFFFFFFFFFFFFFFF", "FFFFFFFFFFFFFFFF", "7359B2163E4EDC58"),
    ("3000000000000000", "1000000000000001", "958E6E627A05557B"),
]


@pytest.mark.parametrize(("key", "clear", "cipher"), DES_VECTORS)
def test_des_vectors(key: str, clear: str, cipher: str) -> None:
    got = mschap.des_encrypt_block(bytes.fromhex(clear), bytes.fromhex(key))
    assert got == bytes.fromhex(cipher)


def test_des_ignores_parity_bits() -> None:
    key = bytes.fromhex("133457799BBCDFF1")
    flipped = bytes(b ^ 1 for b in key)
    block = bytes.fromhex("0123456789ABCDEF")
    assert mschap.des_encrypt_block(block, key) == mschap.des_encrypt_block(block, flipped)


def test_des_tables_are_sound() -> None:
    for box in mschap._SBOXES:
        for row in range(4):
            assert sorted(box[row * 16 : row * 16 + 16]) == list(range(16))
    assert sorted(mschap._IP) == list(range(1, 65))
    assert sorted(mschap._P) == list(range(1, 33))
    assert len(set(mschap._PC1)) == 56 and all(p % 8 for p in mschap._PC1)
    assert len(set(mschap._PC2)) == 48
    assert sum(mschap._SHIFTS) == 28


def test_des_rejects_wrong_sizes() -> None:
    with pytest.raises(ValueError):
        mschap.des_encrypt_block(b"1234567", b"12345678")
    with pytest.raises(ValueError):
        mschap.expand_des_key(b"12345678")
    with pytest.raises(ValueError):
        mschap.challenge_response(b"1234567", PASSWORD_HASH)


@given(st.binary(min_size=7, max_size=7))
def test_expanded_keys_have_odd_parity_and_keep_the_key_bits(key7: bytes) -> None:
    key8 = mschap.expand_des_key(key7)
    assert all(bin(b).count("1") % 2 == 1 for b in key8)
    bits = 0
    for b in key8:
        bits = (bits << 7) | (b >> 1)
    assert bits.to_bytes(7, "big") == key7


def test_non_ascii_password_and_name() -> None:
    # Reproducible (the function is deterministic) and different from the ASCII case.
    a = mschap.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, "Jürgen", "pässwörd€")
    b = mschap.generate_nt_response(AUTH_CHALLENGE, PEER_CHALLENGE, "Jürgen", "pässwörd€")
    assert a == b and len(a) == mschap.NT_RESPONSE_LEN
    # MD4 of the UTF-16LE password, value from `openssl dgst -md4`.
    assert mschap.nt_password_hash("pässwörd€").hex() == "7f20bf6e69d97371914a8807579cab5c"
