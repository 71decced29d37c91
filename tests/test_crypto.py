"""Key handling and the one-crypto-module rule."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from svsmlog import crypto

PKG = Path(__file__).resolve().parent.parent / "svsmlog"


# The stdlib's own cryptography counts too: a digest computed elsewhere is a primitive
# outside the one module (even one that only names a file).
CRYPTO_MODULES = ("cryptography", "hashlib", "hmac", "secrets", "ssl", "_hashlib")


def test_only_crypto_module_imports_cryptography() -> None:
    offenders = []
    for path in PKG.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] in CRYPTO_MODULES for n in names):
                offenders.append(path.relative_to(PKG).as_posix())
    assert sorted(set(offenders)) == ["crypto.py"]


def openssl(*args: str, input: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], input=input, check=True, capture_output=True).stdout


@pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True).returncode, reason="no openssl")
def test_openssl_x25519_keys_work_unchanged() -> None:
    pem = openssl("genpkey", "-algorithm", "X25519")
    pub = openssl("pkey", "-pubout", input=pem)
    key = crypto.load_private_key(pem)
    assert crypto.load_public_key(pub).key_id == key.key_id
    sealed = crypto.hpke_seal(crypto.load_public_key(pub), b"s" * 32, b"info")
    assert crypto.hpke_open(key, sealed, b"info") == b"s" * 32
    assert crypto.hpke_open(key, sealed, b"other info") is None


@pytest.mark.parametrize("kem", [crypto.KEM_X25519, crypto.KEM_MLKEM768_X25519])
def test_pem_round_trip_and_passphrase(kem: int) -> None:
    key = crypto.generate_private_key(kem)
    assert crypto.load_private_key(key.to_pem()).key_id == key.key_id
    assert crypto.load_public_key(key.public.to_pem()).key_id == key.key_id
    enc = key.to_pem(b"correct horse")
    assert crypto.load_private_key(enc, b"correct horse").key_id == key.key_id
    with pytest.raises(crypto.KeyError_) as e:
        crypto.load_private_key(enc)
    assert e.value.reason == crypto.KeyError_.PASSPHRASE_REQUIRED
    with pytest.raises(crypto.KeyError_) as e:
        crypto.load_private_key(enc, b"wrong")
    assert e.value.reason == crypto.KeyError_.BAD_PASSPHRASE


def test_key_ids_differ_by_kem_and_key() -> None:
    a, b = crypto.generate_private_key(), crypto.generate_private_key()
    pq = crypto.generate_private_key(crypto.KEM_MLKEM768_X25519)
    assert len({a.key_id, b.key_id, pq.key_id}) == 3
    assert pq.key_id == crypto.key_id(crypto.KEM_MLKEM768_X25519, pq.public.raw)
    assert len(pq.public.raw) == 1184 + 32


def test_wrong_key_does_not_open() -> None:
    a, b = crypto.generate_private_key(), crypto.generate_private_key()
    sealed = crypto.hpke_seal(a.public, b"k" * 32, b"i")
    assert crypto.hpke_open(b, sealed, b"i") is None
    assert crypto.hpke_open(a, sealed[:-1] + bytes([sealed[-1] ^ 1]), b"i") is None
    assert crypto.hpke_open(a, b"short", b"i") is None


@pytest.mark.parametrize(
    "data,reason",
    [
        (b"", crypto.KeyError_.MALFORMED),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", crypto.KeyError_.MALFORMED),
        (b"x" * 70000, crypto.KeyError_.MALFORMED),
    ],
)
def test_bad_key_files(data: bytes, reason: str) -> None:
    with pytest.raises(crypto.KeyError_) as e:
        crypto.load_private_key(data)
    assert e.value.reason == reason


@pytest.mark.skipif(subprocess.run(["which", "openssl"], capture_output=True).returncode, reason="no openssl")
def test_keys_of_the_wrong_type_are_refused() -> None:
    ed = openssl("genpkey", "-algorithm", "ED25519")
    with pytest.raises(crypto.KeyError_) as e:
        crypto.load_private_key(ed)
    assert e.value.reason == crypto.KeyError_.UNSUPPORTED
    with pytest.raises(crypto.KeyError_):
        crypto.load_public_key(openssl("pkey", "-pubout", input=ed))


def test_truncated_pem() -> None:
    pem = crypto.generate_private_key().to_pem()
    with pytest.raises(crypto.KeyError_):
        crypto.load_private_key(pem[: len(pem) // 2])


def test_erase_zeroes_in_place() -> None:
    buf = bytearray(b"secret-key")
    crypto.erase(buf)
    assert buf == bytearray(len(b"secret-key"))


# --------------------------------------------------------------------------- the ratchet step
# The reader's per-frame HKDF-Expand (keyschedule.step) has a fast path; these hold it to
# RFC 5869's definition, computed here independently with the stdlib's HMAC-SHA256.

import hashlib  # noqa: E402
import hmac  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from svsmlog import keyschedule  # noqa: E402


def rfc5869_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """T(0) = empty, T(i) = HMAC-Hash(PRK, T(i-1) | info | i), OKM = first L bytes of T(1)|T(2)|..."""
    out, t, i = b"", b"", 1
    while len(out) < length:
        t = hmac.new(prk, t + info + bytes([i]), hashlib.sha256).digest()
        out += t
        i += 1
    return out[:length]


def test_hkdf_expand_rfc5869_case_1() -> None:
    prk = bytes.fromhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    okm = bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    info = bytes(range(0xF0, 0xFA))
    assert crypto.hkdf_expand(prk, info, 42) == okm == rfc5869_expand(prk, info, 42)


@settings(max_examples=300)
@given(st.binary(min_size=32, max_size=32))
def test_ratchet_step_is_t1_t2_t3_of_rfc5869(chain_key: bytes) -> None:
    okm = rfc5869_expand(chain_key, keyschedule.LABEL_FRAME, 76)
    assert keyschedule.step(chain_key) == (okm[:32], okm[32:64], okm[64:76])
    assert keyschedule.next_chain_key(chain_key) == okm[:32]  # T(1) alone: stepping past a frame


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=32, max_size=32), st.lists(st.integers(0, 600), min_size=1, max_size=12))
def test_reader_chain_in_any_order_matches_the_chain(root: bytes, seqs: list[int]) -> None:
    """The in-order fast path and the general path (jumps, going back to a checkpoint) give
    the keys of one chain stepped from its root."""
    chain, key = [], root
    for _ in range(max(seqs) + 1):
        nxt, aead, nonce = keyschedule.step(key)
        chain.append((aead, nonce, key))
        key = nxt
    reader = keyschedule.ReaderChain(0, root)
    for s in [*seqs, *(x + 1 for x in seqs if x < max(seqs))]:
        assert reader.keys_at(s) == chain[s][:2]
        assert reader.chain_key_at(s) == chain[s][2]


def test_reader_chain_budget_holds_on_the_fast_path() -> None:
    reader = keyschedule.ReaderChain(0, bytes(32), keyschedule.RatchetBudget(2))
    assert reader.keys_at(0) and reader.keys_at(1) and reader.keys_at(2)
    with pytest.raises(keyschedule.RatchetExhausted):
        reader.keys_at(3)
