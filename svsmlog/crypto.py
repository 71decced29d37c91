"""The only module of svsmlog that imports ``cryptography``.

Everything cryptographic the format needs is here, behind a thin API:
HPKE single-shot sealing of boot secrets (RFC 9180), HKDF-SHA256, AES-256-GCM,
SHA-256, constant-time comparison, recipient key handling (PEM in, PEM out).
Nothing here invents a primitive; the labels and byte layouts that *use*
these primitives are specified in formats/svsmlog-v3.md.
"""

from __future__ import annotations

import hmac
import os
import re
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke, serialization
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

# HPKE KEM identifiers (RFC 9180 §7.1, draft-ietf-hpke-pq for the hybrid).
KEM_X25519 = 0x0020
KEM_MLKEM768_X25519 = 0x647A
KEM_NAMES = {KEM_X25519: "x25519", KEM_MLKEM768_X25519: "mlkem768-x25519"}
KEM_BY_NAME = {v: k for k, v in KEM_NAMES.items()}

_HPKE_KEM = {KEM_X25519: hpke.KEM.X25519, KEM_MLKEM768_X25519: hpke.KEM.MLKEM768_X25519}
# The suite is fixed by the spec: HKDF-SHA256 and AES-256-GCM, whatever the KEM.
_SUITES = {
    kem_id: hpke.Suite(kem, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM) for kem_id, kem in _HPKE_KEM.items()
}

KEY_ID_LABEL = b"svsmlog v3 key id"
KEY_ID_LEN = 16
AEAD_TAG_LEN = 16


class KeyError_(Exception):
    """A key file could not be used. ``reason`` is one of the values below."""

    PASSPHRASE_REQUIRED = "passphrase-required"
    BAD_PASSPHRASE = "bad-passphrase"
    UNSUPPORTED = "unsupported-key-type"
    MALFORMED = "malformed"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


# --------------------------------------------------------------------------- hashing, KDF, AEAD


def sha256(*parts: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA256())
    for p in parts:
        h.update(p)
    return h.finalize()


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 Extract-then-Expand (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 Expand only (RFC 5869 §2.3); ``prk`` must be a uniformly random 32-byte key."""
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


def aead_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    """AES-256-GCM; returns ciphertext || 16-byte tag."""
    return AESGCM(key).encrypt(nonce, plaintext, aad)


def aead_open(key: bytes, nonce: bytes, ciphertext: bytes, aad: bytes) -> bytes | None:
    """AES-256-GCM open; ``None`` when the tag does not verify."""
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, aad)
    except InvalidTag:
        return None


def ct_equal(a: bytes, b: bytes) -> bool:
    """Constant-time comparison for tags and secrets."""
    return hmac.compare_digest(a, b)


def random_bytes(n: int) -> bytes:
    return os.urandom(n)


def erase(buf: bytearray) -> None:
    """Overwrite an evolving key in place. Python cannot promise the bytes had no
    other copy; the rule is normative for the SVSM's Rust writer (spec §6.4)."""
    for i in range(len(buf)):
        buf[i] = 0


# --------------------------------------------------------------------------- recipient keys


def key_id(kem_id: int, public_raw: bytes) -> bytes:
    return sha256(KEY_ID_LABEL, kem_id.to_bytes(2, "little"), public_raw)[:KEY_ID_LEN]


@dataclass(frozen=True)
class PublicKey:
    """A recipient public key: the KEM it belongs to and its raw encoding."""

    kem_id: int
    raw: bytes
    _key: object = field(repr=False, compare=False)

    @property
    def key_id(self) -> bytes:
        return key_id(self.kem_id, self.raw)

    @property
    def kem_name(self) -> str:
        return KEM_NAMES[self.kem_id]

    def to_pem(self) -> bytes:
        spki = serialization.PublicFormat.SubjectPublicKeyInfo
        enc = serialization.Encoding.PEM
        if isinstance(self._key, hpke.MLKEM768X25519PublicKey):
            parts: tuple[object, object] = self._parts  # type: ignore[attr-defined]
            return b"".join(p.public_bytes(enc, spki) for p in parts)  # type: ignore[attr-defined]
        return self._key.public_bytes(enc, spki)  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PrivateKey:
    kem_id: int
    public: PublicKey
    _key: object = field(repr=False, compare=False)
    _pem_parts: tuple[object, ...] = field(repr=False, compare=False)

    @property
    def key_id(self) -> bytes:
        return self.public.key_id

    def to_pem(self, passphrase: bytes | None = None) -> bytes:
        alg: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
        )
        return b"".join(
            p.private_bytes(  # type: ignore[attr-defined]
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, alg
            )
            for p in self._pem_parts
        )


def _x25519_public(k: x25519.X25519PublicKey) -> PublicKey:
    return PublicKey(KEM_X25519, k.public_bytes_raw(), k)


def _hybrid_public(m: mlkem.MLKEM768PublicKey, x: x25519.X25519PublicKey) -> PublicKey:
    raw = m.public_bytes_raw() + x.public_bytes_raw()
    pk = PublicKey(KEM_MLKEM768_X25519, raw, hpke.MLKEM768X25519PublicKey(m, x))
    object.__setattr__(pk, "_parts", (m, x))
    return pk


def _private_from_parts(parts: list[object]) -> PrivateKey:
    xs = [p for p in parts if isinstance(p, x25519.X25519PrivateKey)]
    ms = [p for p in parts if isinstance(p, mlkem.MLKEM768PrivateKey)]
    if len(parts) == 1 and len(xs) == 1:
        x = xs[0]
        return PrivateKey(KEM_X25519, _x25519_public(x.public_key()), x, (x,))
    if len(parts) == 2 and len(xs) == 1 and len(ms) == 1:
        m, x = ms[0], xs[0]
        pub = _hybrid_public(m.public_key(), x.public_key())
        return PrivateKey(KEM_MLKEM768_X25519, pub, hpke.MLKEM768X25519PrivateKey(m, x), (m, x))
    raise KeyError_(
        KeyError_.UNSUPPORTED,
        "unsupported private key: expected an X25519 key, or an ML-KEM-768 key plus an X25519 key",
    )


def generate_private_key(kem_id: int = KEM_X25519) -> PrivateKey:
    if kem_id == KEM_X25519:
        return _private_from_parts([x25519.X25519PrivateKey.generate()])
    if kem_id == KEM_MLKEM768_X25519:
        return _private_from_parts([mlkem.MLKEM768PrivateKey.generate(), x25519.X25519PrivateKey.generate()])
    raise KeyError_(KeyError_.UNSUPPORTED, f"unknown KEM id 0x{kem_id:04x}")


def private_key_from_seed(kem_id: int, seed: bytes) -> PrivateKey:
    """A key from fixed bytes, for test vectors and test-only sample keys: X25519 takes its
    32-byte private scalar; the hybrid takes a 64-byte ML-KEM-768 seed || 32-byte X25519 key."""
    if kem_id == KEM_X25519 and len(seed) == 32:
        return _private_from_parts([x25519.X25519PrivateKey.from_private_bytes(seed)])
    if kem_id == KEM_MLKEM768_X25519 and len(seed) == 96:
        return _private_from_parts(
            [
                mlkem.MLKEM768PrivateKey.from_seed_bytes(seed[:64]),
                x25519.X25519PrivateKey.from_private_bytes(seed[64:]),
            ]
        )
    raise KeyError_(KeyError_.UNSUPPORTED, f"bad seed for KEM 0x{kem_id:04x}")


_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----\r?\n.*?-----END \1-----\r?\n?", re.S)
MAX_KEY_FILE = 64 * 1024


def _pem_blocks(data: bytes) -> list[bytes]:
    if len(data) > MAX_KEY_FILE:
        raise KeyError_(KeyError_.MALFORMED, "key file is larger than 64 KiB")
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(data)]
    if not blocks:
        raise KeyError_(KeyError_.MALFORMED, "no PEM block found in key file")
    if len(blocks) > 2:
        raise KeyError_(KeyError_.MALFORMED, "key file holds more than two PEM blocks")
    return blocks


def load_private_key(data: bytes, passphrase: bytes | None = None) -> PrivateKey:
    """Load PKCS#8 PEM (optionally encrypted): one X25519 block (``openssl genpkey
    -algorithm X25519`` works unchanged) or ML-KEM-768 + X25519 blocks for the hybrid."""
    parts: list[object] = []
    for block in _pem_blocks(data):
        # A passphrase given for a key that is not encrypted is simply not needed.
        secret = passphrase if b"ENCRYPTED" in block else None
        try:
            parts.append(serialization.load_pem_private_key(block, secret))
        except TypeError as e:
            if passphrase is None:
                raise KeyError_(
                    KeyError_.PASSPHRASE_REQUIRED, "the private key is encrypted: give a passphrase"
                ) from e
            raise KeyError_(KeyError_.MALFORMED, f"private key: {e}") from e
        except ValueError as e:
            if passphrase is not None and b"ENCRYPTED" in block:
                raise KeyError_(KeyError_.BAD_PASSPHRASE, "wrong passphrase for the private key") from e
            raise KeyError_(KeyError_.MALFORMED, "not a readable PKCS#8 private key") from e
        except UnsupportedAlgorithm as e:
            raise KeyError_(KeyError_.UNSUPPORTED, f"unsupported private key: {e}") from e
    return _private_from_parts(parts)


def load_public_key(data: bytes) -> PublicKey:
    """Load SubjectPublicKeyInfo PEM (``openssl pkey -pubout`` works unchanged).
    A private key file is accepted too: its public half is used."""
    blocks = _pem_blocks(data)
    if any(b"PRIVATE KEY" in b for b in blocks):
        return load_private_key(data).public
    parts: list[object] = []
    for block in blocks:
        try:
            parts.append(serialization.load_pem_public_key(block))
        except (ValueError, UnsupportedAlgorithm) as e:
            raise KeyError_(KeyError_.MALFORMED, "not a readable public key") from e
    xs = [p for p in parts if isinstance(p, x25519.X25519PublicKey)]
    ms = [p for p in parts if isinstance(p, mlkem.MLKEM768PublicKey)]
    if len(parts) == 1 and len(xs) == 1:
        return _x25519_public(xs[0])
    if len(parts) == 2 and len(xs) == 1 and len(ms) == 1:
        return _hybrid_public(ms[0], xs[0])
    raise KeyError_(
        KeyError_.UNSUPPORTED,
        "unsupported public key: expected X25519, or ML-KEM-768 plus X25519",
    )


# --------------------------------------------------------------------------- HPKE


def hpke_seal(recipient: PublicKey, plaintext: bytes, info: bytes) -> bytes:
    """Single-shot HPKE base mode: returns enc || ciphertext."""
    return _SUITES[recipient.kem_id].encrypt(plaintext, recipient._key, info)  # type: ignore[arg-type]


def hpke_open(key: PrivateKey, sealed: bytes, info: bytes) -> bytes | None:
    """``None`` when the envelope does not open with this key (wrong key or altered bytes)."""
    try:
        return _SUITES[key.kem_id].decrypt(sealed, key._key, info)  # type: ignore[arg-type]
    except (InvalidTag, ValueError):
        return None


def hpke_sealed_len(kem_id: int, plaintext_len: int) -> int:
    enc = {KEM_X25519: 32, KEM_MLKEM768_X25519: 1120}[kem_id]
    return enc + plaintext_len + AEAD_TAG_LEN
