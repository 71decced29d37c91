"""Key handling and the one-crypto-module rule."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

from svsmlog import crypto

PKG = Path(__file__).resolve().parent.parent / "svsmlog"


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
            if any(n == "cryptography" or n.startswith("cryptography.") for n in names):
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
