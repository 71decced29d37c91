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
from typing import TYPE_CHECKING

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, hpke
from cryptography.hazmat.primitives.asymmetric import mlkem, x25519
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand

if TYPE_CHECKING:
    from cryptography.hazmat.primitives import serialization

try:
    # pyca's key loaders are these functions of its Rust binding, which
    # ``cryptography.hazmat.primitives.serialization`` re-exports; importing that package
    # also imports its SSH support and with it every asymmetric algorithm (6 ms, a twentieth
    # of verifying a small image), so it is imported only to write keys and certificates.
    # tests/test_crypto.py holds these the same objects as the package's.
    from cryptography.hazmat.bindings._rust import openssl as _rust_openssl

    _load_pem_private_key = _rust_openssl.keys.load_pem_private_key
    _load_der_private_key = _rust_openssl.keys.load_der_private_key
    _load_pem_public_key = _rust_openssl.keys.load_pem_public_key
except (ImportError, AttributeError):  # pragma: no cover - another layout of pyca's internals
    from cryptography.hazmat.primitives.serialization import load_der_private_key as _load_der_private_key
    from cryptography.hazmat.primitives.serialization import load_pem_private_key as _load_pem_private_key
    from cryptography.hazmat.primitives.serialization import load_pem_public_key as _load_pem_public_key

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


def sha512(*parts: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA512())
    for p in parts:
        h.update(p)
    return h.finalize()


def hkdf(ikm: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 Extract-then-Expand (RFC 5869)."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


_SHA256 = hashes.SHA256()  # an immutable algorithm descriptor: one serves every call


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-SHA256 Expand only (RFC 5869 §2.3); ``prk`` must be a uniformly random 32-byte key.

    The reader calls this once per frame (the ratchet step). pyca's HKDFExpand is the fastest
    binding measured for it: 2.4 µs for the step's 76 bytes, against 4.1 µs for its three
    T(i) blocks through pyca's HMAC and 4.6 µs through the stdlib's ``hmac.digest``
    (benchmarks/README.md)."""
    return HKDFExpand(_SHA256, length, info).derive(prk)


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
        from cryptography.hazmat.primitives import serialization

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
        from cryptography.hazmat.primitives import serialization

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
    -algorithm X25519`` works unchanged) or ML-KEM-768 + X25519 blocks for the hybrid.
    A single DER PKCS#8 X25519 key (``openssl genpkey -outform DER``) is accepted too."""
    if len(data) <= MAX_KEY_FILE and data[:1] == b"\x30" and b"-----BEGIN" not in data:
        try:
            der = _load_der_private_key(data, passphrase)
        except TypeError as e:
            raise KeyError_(
                KeyError_.PASSPHRASE_REQUIRED, "the private key is encrypted: give a passphrase"
            ) from e
        except (ValueError, UnsupportedAlgorithm) as e:
            raise KeyError_(KeyError_.MALFORMED, "not a readable PKCS#8 private key (DER)") from e
        return _private_from_parts([der])
    parts: list[object] = []
    for block in _pem_blocks(data):
        # A passphrase given for a key that is not encrypted is simply not needed.
        secret = passphrase if b"ENCRYPTED" in block else None
        try:
            parts.append(_load_pem_private_key(block, secret))
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
            parts.append(_load_pem_public_key(block))
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


# =========================================================================== SEV-SNP attestation:
# =========================================================================== certificate and signature checks
#
# What svsmlog.attestation and svsmlog.model.amdsp need from pyca, and nothing more: X.509 loading,
# AMD's RSA-PSS chain signatures, the ECDSA P-384 report signature, SHA-384. The attestation code
# decides *what* to check; these functions only answer "does this verify" and never raise on a
# forged or malformed input they were asked to judge (``False`` / ``CertificateError``).

import datetime as _dt  # noqa: E402  (kept with the section it serves)
import warnings  # noqa: E402

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

# pyca's X.509 and RSA/EC modules cost about 15 ms to import, on every command, and only
# attestation uses them: each function below imports what it needs when it is called.

MAX_CERT_FILE = 1 << 20  # a certificate bundle is a few KiB; refuse to parse a disk
AMD_PSS_SALT_LEN = 48  # AMD signs ARK, ASK, ASVK, VCEK and VLEK with RSA-PSS, SHA-384, salt 48


class CertificateError(ValueError):
    """Bytes that are not a readable X.509 certificate (or bundle of them)."""


def sha384(*parts: bytes) -> bytes:
    h = hashes.Hash(hashes.SHA384())
    for p in parts:
        h.update(p)
    return h.finalize()


@dataclass(frozen=True)
class Certificate:
    """An X.509 certificate, reduced to what attestation checks look at.

    ``extensions`` holds the extensions pyca does not interpret, which is where AMD puts the
    VCEK's TCB and hwID: dotted OID -> the bytes inside extnValue (still DER for the TCB values;
    raw bytes for hwID)."""

    der: bytes
    subject: str  # RFC 4514
    issuer: str
    subject_cn: str
    serial: int
    key_type: str  # "rsa-4096", "ec-secp384r1", ...
    extensions: dict[str, bytes]
    not_before: _dt.datetime
    not_after: _dt.datetime
    _cert: x509.Certificate = field(repr=False, compare=False)

    @property
    def self_issued(self) -> bool:
        return self._cert.subject == self._cert.issuer

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the DER, hex: how a root is named in messages."""
        return sha256(self.der).hex()

    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._cert.public_bytes(serialization.Encoding.PEM)


def _key_type(cert: x509.Certificate) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return "unsupported"
    if isinstance(key, rsa.RSAPublicKey):
        return f"rsa-{key.key_size}"
    if isinstance(key, ec.EllipticCurvePublicKey):
        return f"ec-{key.curve.name}"
    return type(key).__name__


def _wrap_certificate(cert: x509.Certificate) -> Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    try:
        exts = {e.oid.dotted_string: e.value.value for e in cert.extensions
                if isinstance(e.value, x509.UnrecognizedExtension)}
        cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        cn = str(cns[0].value) if cns else ""
        return Certificate(
            der=cert.public_bytes(serialization.Encoding.DER),
            subject=cert.subject.rfc4514_string(),
            issuer=cert.issuer.rfc4514_string(),
            subject_cn=cn,
            serial=cert.serial_number,
            key_type=_key_type(cert),
            extensions=exts,
            not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc,
            _cert=cert,
        )
    except (ValueError, TypeError) as e:  # pyca parses extensions and names lazily
        raise CertificateError(f"malformed certificate: {e}") from e


_CERT_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\r?\n.*?-----END CERTIFICATE-----", re.S)


def load_certificates(data: bytes) -> list[Certificate]:
    """One DER certificate, or PEM holding one or more (a KDS ``cert_chain`` bundle works)."""
    from cryptography import x509
    from cryptography.utils import CryptographyDeprecationWarning

    if len(data) > MAX_CERT_FILE:
        raise CertificateError("larger than 1 MiB: not a certificate file")
    blocks = _CERT_PEM.findall(data)
    # AMD issues every VCEK and VLEK with serial number 0, which RFC 5280 disallows and pyca
    # warns about: AMD's choice, not something to warn the user of.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        try:
            if blocks:
                return [_wrap_certificate(x509.load_pem_x509_certificate(b)) for b in blocks]
            if b"-----BEGIN" in data:
                raise CertificateError("PEM file without a CERTIFICATE block")
            return [_wrap_certificate(x509.load_der_x509_certificate(data))]
        except CertificateError:
            raise
        except ValueError as e:
            raise CertificateError(f"not a readable X.509 certificate (PEM or DER): {e}") from e


def rsa_pss_sha384_signed_by(child: Certificate, issuer: Certificate) -> bool:
    """``child``'s signature verifies under ``issuer``'s RSA key as AMD signs: RSA-PSS, SHA-384,
    MGF1-SHA-384, salt 48 (OpenSSL checks the salt length when it is given, so another salt
    fails). ``False`` for any other algorithm or key."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import padding as _padding
    from cryptography.hazmat.primitives.asymmetric import rsa

    try:
        key = issuer._cert.public_key()
    except (ValueError, UnsupportedAlgorithm):  # a key pyca cannot load verifies nothing
        return False
    if not isinstance(key, rsa.RSAPublicKey):
        return False
    if child._cert.signature_algorithm_oid != x509.SignatureAlgorithmOID.RSASSA_PSS:
        return False
    try:
        key.verify(child._cert.signature, child._cert.tbs_certificate_bytes,
                   _padding.PSS(mgf=_padding.MGF1(hashes.SHA384()), salt_length=AMD_PSS_SALT_LEN),
                   hashes.SHA384())
    except (InvalidSignature, ValueError, UnsupportedAlgorithm):
        return False
    return True


def ecdsa_p384_sha384_verify(cert: Certificate, message: bytes, r: int, s: int) -> bool:
    """``(r, s)`` is an ECDSA P-384 signature of SHA-384(``message``) under ``cert``'s key.
    ``message`` is hashed as given: callers pass the raw bytes that were signed."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

    try:
        key = cert._cert.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        return False
    if not (0 < r < 1 << 384 and 0 < s < 1 << 384):  # DER would take them; the curve order won't
        return False
    try:
        key.verify(encode_dss_signature(r, s), message, ec.ECDSA(hashes.SHA384()))
    except (InvalidSignature, ValueError):
        return False
    return True


# ----------------------------------------------------- making TEST-ONLY chains (svsmlog.model.amdsp)


@dataclass(frozen=True)
class SigningKey:
    """A private key of a TEST-ONLY certificate chain: RSA (ARK, ASK) or EC P-384 (VCEK)."""

    _key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey = field(repr=False)

    def private_pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self._key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())


def generate_rsa_signing_key(bits: int = 4096) -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import rsa

    return SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=bits))


def load_signing_key(pem: bytes) -> SigningKey:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    key = _load_pem_private_key(pem, None)
    if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
        raise KeyError_(KeyError_.UNSUPPORTED, "expected an RSA or EC private key")
    return SigningKey(key)


def ec_p384_signing_key_from_secret(secret: bytes) -> SigningKey:
    """A P-384 key derived from ``secret`` (HKDF-SHA256 to 64 bytes, reduced into [1, n-1]),
    so a seeded TEST-ONLY platform always has the same VCEK."""
    from cryptography.hazmat.primitives.asymmetric import ec

    n = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973
    wide = int.from_bytes(hkdf(secret, b"", b"svsmlog TEST-ONLY VCEK", 64), "big")
    return SigningKey(ec.derive_private_key(wide % (n - 1) + 1, ec.SECP384R1()))


def ecdsa_p384_sha384_sign(key: SigningKey, message: bytes) -> tuple[int, int]:
    """Deterministic (RFC 6979) ECDSA P-384 over SHA-384: the same report bytes every run."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    if not isinstance(key._key, ec.EllipticCurvePrivateKey):
        raise KeyError_(KeyError_.UNSUPPORTED, "ECDSA needs an EC key")
    der = key._key.sign(message, ec.ECDSA(hashes.SHA384(), deterministic_signing=True))
    return decode_dss_signature(der)


def _name_oids() -> dict[str, x509.ObjectIdentifier]:
    from cryptography.x509.oid import NameOID

    return {"CN": NameOID.COMMON_NAME, "O": NameOID.ORGANIZATION_NAME,
            "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "C": NameOID.COUNTRY_NAME}


def issue_certificate(
    *,
    subject: dict[str, str],
    subject_key: SigningKey | Certificate,
    issuer: Certificate | None,
    issuer_key: SigningKey,
    serial: int,
    not_before: _dt.datetime,
    not_after: _dt.datetime,
    ca: bool,
    extensions: dict[str, bytes] | None = None,
) -> Certificate:
    """A certificate signed as AMD signs (RSA-PSS, SHA-384, salt 48); ``issuer=None`` makes it
    self-signed. ``extensions`` are raw (dotted OID -> extnValue content), as AMD's VCEK OIDs.
    ``subject_key`` a certificate: its public key, certified again (what a host can do with
    any public key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import padding as _padding
    from cryptography.hazmat.primitives.asymmetric import rsa

    oids = _name_oids()
    name = x509.Name([x509.NameAttribute(oids[k], v) for k, v in subject.items()])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer._cert.subject if issuer is not None else name)
        .public_key(subject_key._cert.public_key() if isinstance(subject_key, Certificate)
                    else subject_key._key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if ca:
        builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    for oid, value in (extensions or {}).items():
        ext = x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value)
        builder = builder.add_extension(ext, critical=False)
    if not isinstance(issuer_key._key, rsa.RSAPrivateKey):
        raise KeyError_(KeyError_.UNSUPPORTED, "AMD-style certificates are signed with RSA-PSS")
    pss = _padding.PSS(mgf=_padding.MGF1(hashes.SHA384()), salt_length=AMD_PSS_SALT_LEN)
    cert = builder.sign(issuer_key._key, hashes.SHA384(), rsa_padding=pss)
    return _wrap_certificate(cert)
