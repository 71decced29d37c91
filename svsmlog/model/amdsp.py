"""A simulated AMD Secure Processor: TEST-ONLY ARK -> ASK -> VCEK, and reports it signs.

The structures are AMD's: RSA-4096 ARK (self-signed) and ASK with RSA-PSS SHA-384 salt-48
signatures, an ECDSA P-384 VCEK carrying AMD's TCB (1.3.6.1.4.1.3704.1.3.x) and hwID (...1.4)
extensions, and version 3 or 5 ATTESTATION_REPORTs signed over bytes 0x000..0x29F. Every
subject name says TEST-ONLY: nothing here chains to AMD, and ``svsmlog attest`` rejects these
reports unless told ``--trust-root`` the TEST-ONLY ARK.

Reproducibility. pyca cannot seed RSA key generation, so the ARK and ASK keys and certificates
were generated once (``regenerate_chain``) and are stored as PEM in ``amdsp_keys/`` (published:
TEST-ONLY). The VCEK key is derived from (seed, product, CHIP_ID, TCB), as AMD derives a VCEK
from the chip's secret and TCB, and report signatures are deterministic ECDSA (RFC 6979): the
same platform gives the same report bytes every run. Only the VCEK *certificate's* signature
bytes differ between runs (RSA-PSS draws a random salt); its key, names and extensions do not.

Refusing a report (the host declines the guest request) is the caller's business: this only
answers requests.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from functools import cache, cached_property
from importlib import resources
from pathlib import Path
from typing import Any

from .. import crypto
from ..attestation import vcek
from ..attestation.fields import TCB_LAYOUTS, Product, tcb_layout
from ..attestation.report import ATTESTATION_REPORT, SIG_COMPONENT_LEN, SIGNED_LEN

KEY_DIR = "amdsp_keys"
NOT_BEFORE = dt.datetime(2025, 1, 1, tzinfo=dt.UTC)
NOT_AFTER = dt.datetime(2050, 1, 1, tzinfo=dt.UTC)
_ORG = {"O": "svsmlog TEST-ONLY (not AMD)", "OU": "TEST-ONLY"}
ARK_SUBJECT = {"CN": "TEST-ONLY ARK (svsmlog model, not AMD)", **_ORG}
ASK_SUBJECT = {"CN": "TEST-ONLY ASK (svsmlog model, not AMD)", **_ORG}
VCEK_SUBJECT = {"CN": "TEST-ONLY VCEK (svsmlog model, not AMD)", **_ORG}

CPUID = {Product.MILAN: (0x19, 0x01, 0x01), Product.GENOA: (0x19, 0x11, 0x01),
         Product.TURIN: (0x1A, 0x02, 0x00)}
DEFAULT_TCB = {"boot_loader": 4, "tee": 0, "snp": 22, "microcode": 213}
POLICY_DEFAULT = 0x30000  # SMT allowed, reserved bit 17 set; debug off
PLATFORM_INFO = 0x25  # SMT_EN, ECC_EN, ALIAS_CHECK_COMPLETE


@dataclass(frozen=True)
class Chain:
    ark_key: crypto.SigningKey
    ark: crypto.Certificate
    ask_key: crypto.SigningKey
    ask: crypto.Certificate


def new_chain() -> Chain:
    """New TEST-ONLY ARK and ASK keys and certificates, with the stored chain's names (RSA-4096
    generation takes a few seconds): ``regenerate_chain``'s, and the host's own in the
    forgery campaign, which only the owner's choice of root tells from the stored one."""
    ark_key, ask_key = crypto.generate_rsa_signing_key(), crypto.generate_rsa_signing_key()
    ark = crypto.issue_certificate(subject=ARK_SUBJECT, subject_key=ark_key, issuer=None,
                                   issuer_key=ark_key, serial=1, not_before=NOT_BEFORE,
                                   not_after=NOT_AFTER, ca=True)
    ask = crypto.issue_certificate(subject=ASK_SUBJECT, subject_key=ask_key, issuer=ark,
                                   issuer_key=ark_key, serial=2, not_before=NOT_BEFORE,
                                   not_after=NOT_AFTER, ca=True)
    return Chain(ark_key, ark, ask_key, ask)


def decoy_ask(genuine: crypto.Certificate, host: Chain) -> crypto.Certificate:
    """The genuine ASK's public key and CN in a certificate the host's ARK signed: it verifies
    the genuine VCEK as the ASK does, and reaches no root but the host's."""
    return crypto.issue_certificate(subject={"CN": genuine.subject_cn}, subject_key=genuine,
                                    issuer=host.ark, issuer_key=host.ark_key, serial=3,
                                    not_before=NOT_BEFORE, not_after=NOT_AFTER, ca=True)


def regenerate_chain(directory: Path) -> Chain:
    """Make new TEST-ONLY ARK and ASK keys and certificates and write them to ``directory``
    (this is how ``amdsp_keys/`` was made)."""
    c = new_chain()
    directory.mkdir(parents=True, exist_ok=True)
    for name, data in (("TEST-ONLY-ark.key.pem", c.ark_key.private_pem()),
                       ("TEST-ONLY-ark.pem", c.ark.pem()),
                       ("TEST-ONLY-ask.key.pem", c.ask_key.private_pem()),
                       ("TEST-ONLY-ask.pem", c.ask.pem())):
        (directory / name).write_bytes(data)
    return c


@cache  # loading (and checking) two RSA-4096 keys costs more than signing with them
def _stored_chain() -> Chain:
    base = resources.files(__package__) / KEY_DIR

    def read(name: str) -> bytes:
        return (base / name).read_bytes()

    return Chain(crypto.load_signing_key(read("TEST-ONLY-ark.key.pem")),
                 crypto.load_certificates(read("TEST-ONLY-ark.pem"))[0],
                 crypto.load_signing_key(read("TEST-ONLY-ask.key.pem")),
                 crypto.load_certificates(read("TEST-ONLY-ask.pem"))[0])


def encode_tcb(components: dict[str, int], product: Product) -> bytes:
    raw = bytearray(8)
    for name, index in TCB_LAYOUTS[tcb_layout(product)].items():
        raw[index] = components.get(name, 0)
    return bytes(raw)


@dataclass
class TestPlatform:
    """One TEST-ONLY chip: its CHIP_ID, its TCB, and the VCEK derived from them."""

    __test__ = False  # not a pytest test class, whatever its name

    product: str = "Milan"
    chip_id: bytes | None = None
    tcb: dict[str, int] | None = None
    seed: int = 0
    version: int = 3
    _chain: Chain = field(default_factory=_stored_chain, repr=False)
    kind: Product = field(init=False)  # ``product``, checked

    def __post_init__(self) -> None:
        self.kind = Product(self.product)
        if self.version not in (3, 5):
            raise ValueError("the model writes version 3 or 5 reports")
        tag = f"{self.seed}/{self.kind.value}".encode()
        if self.chip_id is None:  # Turin's chip id is 8 bytes; the rest of CHIP_ID is zero
            n = vcek.HWID_LEN[tcb_layout(self.kind)]
            self.chip_id = crypto.hkdf(tag, b"", b"svsmlog TEST-ONLY CHIP_ID", n).ljust(64, b"\0")
        if len(self.chip_id) != 64:
            raise ValueError("CHIP_ID is 64 bytes")
        if self.tcb is None:
            self.tcb = {**DEFAULT_TCB, **({"fmc": 1} if self.kind is Product.TURIN else {})}

    @property
    def tcb_bytes(self) -> bytes:
        assert self.tcb is not None
        return encode_tcb(self.tcb, self.kind)

    @cached_property
    def _vcek_key(self) -> crypto.SigningKey:
        assert self.chip_id is not None
        secret = b"|".join([str(self.seed).encode(), self.kind.value.encode(), self.chip_id,
                            self.tcb_bytes])
        return crypto.ec_p384_signing_key_from_secret(secret)

    @cached_property
    def vcek(self) -> crypto.Certificate:
        assert self.chip_id is not None and self.tcb is not None
        layout = tcb_layout(self.kind)
        exts = {vcek.OID_STRUCT_VERSION: vcek.encode_der_integer(0),
                vcek.OID_PRODUCT_NAME: vcek.encode_der_ia5string(f"{self.kind.value}-B0"),
                **vcek.tcb_extensions(self.tcb),
                vcek.OID_HWID: self.chip_id[: vcek.HWID_LEN[layout]]}
        return crypto.issue_certificate(subject=VCEK_SUBJECT, subject_key=self._vcek_key,
                                        issuer=self._chain.ask, issuer_key=self._chain.ask_key,
                                        serial=0x5EC, not_before=NOT_BEFORE, not_after=NOT_AFTER,
                                        ca=False, extensions=exts)

    @property
    def vcek_der(self) -> bytes:
        return self.vcek.der

    @property
    def chain_pems(self) -> bytes:
        """ASK then ARK, as AMD's KDS serves ``cert_chain``."""
        return self._chain.ask.pem() + self._chain.ark.pem()

    @property
    def ask(self) -> crypto.Certificate:
        return self._chain.ask

    @property
    def chain_ders(self) -> tuple[bytes, bytes]:
        """ASK and ARK, DER."""
        return self._chain.ask.der, self._chain.ark.der

    @property
    def ark_pem(self) -> bytes:
        """The TEST-ONLY trust root (give it to ``svsmlog attest --trust-root``)."""
        return self._chain.ark.pem()

    def report(self, report_data: bytes, *, vmpl: int = 0, policy: int = POLICY_DEFAULT,
               measurement: bytes = bytes(48), host_data: bytes = bytes(32), guest_svn: int = 0,
               reported_tcb: dict[str, int] | None = None) -> bytes:
        """A signed ATTESTATION_REPORT, as MSG_REPORT_REQ from ``vmpl`` would get it.
        ``reported_tcb`` lets a test make a report whose TCB its VCEK was not issued for."""
        if len(report_data) != 64 or len(measurement) != 48 or len(host_data) != 32:
            raise ValueError("REPORT_DATA is 64 bytes, MEASUREMENT 48, HOST_DATA 32")
        assert self.chip_id is not None
        tcb = self.tcb_bytes
        fam, mod, step = CPUID[self.kind]
        fields: dict[str, Any] = {
            "version": self.version, "guest_svn": guest_svn, "policy": policy,
            "family_id": bytes(16), "image_id": bytes(16), "vmpl": vmpl, "signature_algo": 1,
            "current_tcb": tcb, "platform_info": PLATFORM_INFO, "signer_info": 0,
            "reserved_04c": bytes(4), "report_data": report_data, "measurement": measurement,
            "host_data": host_data, "id_key_digest": bytes(48), "author_key_digest": bytes(48),
            "report_id": crypto.sha256(self.chip_id, measurement), "report_id_ma": b"\xff" * 32,
            "reported_tcb": encode_tcb(reported_tcb, self.kind) if reported_tcb else tcb,
            "reserved_188": None, "cpuid_fam_id": fam, "cpuid_mod_id": mod, "cpuid_step": step,
            "reserved_18b": bytes(21), "chip_id": self.chip_id, "committed_tcb": tcb,
            "current_build": 0x10, "current_minor": 55, "current_major": 1, "reserved_1eb": b"\0",
            "committed_build": 0x10, "committed_minor": 55, "committed_major": 1,
            "reserved_1ef": b"\0", "launch_tcb": tcb, "reserved_1f8": bytes(168),
            "launch_mit_vector": 1, "current_mit_vector": 1, "reserved_208": bytes(152),
            "signature_r": bytes(SIG_COMPONENT_LEN), "signature_s": bytes(SIG_COMPONENT_LEN),
            "reserved_330": bytes(0x4A0 - 0x330),
        }
        body = ATTESTATION_REPORT.build(fields)[:SIGNED_LEN]
        r, s = crypto.ecdsa_p384_sha384_sign(self._vcek_key, body)
        sig = r.to_bytes(SIG_COMPONENT_LEN, "little") + s.to_bytes(SIG_COMPONENT_LEN, "little")
        return body + sig + bytes(0x4A0 - 0x330)


if __name__ == "__main__":  # pragma: no cover - run once, by hand: python -m svsmlog.model.amdsp DIR
    import sys

    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / KEY_DIR
    regenerate_chain(out)
    print(f"wrote TEST-ONLY ARK/ASK keys and certificates to {out}")
