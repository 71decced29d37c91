"""Offline verification of an SEV-SNP attestation report against AMD's certificate chain.

What "valid" means here, check by check (each failure is one ``Reason``):

- ``signature``: ECDSA P-384 over SHA-384 of the report's raw bytes 0x000..0x29F (never a
  re-encoding) verifies under the VCEK or VLEK; SIGNATURE_ALGO is 1; the report is signed at
  all (SIGNING_KEY 7 and MASK_CHIP_KEY mean the firmware left the signature zero).
- ``signer``: the certificate is the kind of key the report names at 0x048 (a VCEK carries a
  hwID extension, a VLEK a csp_id).
- ``chain``: VCEK -> ASK -> ARK, or VLEK -> ASVK -> ARK, every link RSA-PSS SHA-384 salt 48,
  the ARK one of the trust roots (AMD's ARKs pinned in this package unless the caller gives
  others) and self-signed. Intermediates may come from the caller; AMD's ASKs and ASVKs ship
  in the package too, as a convenience: they prove nothing unless they chain to a root.
- ``tcb``: the VCEK/VLEK was issued for REPORTED_TCB (its blSPL, teeSPL, snpSPL, ucodeSPL, and
  fmcSPL on Turin).
- ``chip-id``: a VCEK's hwID is the report's CHIP_ID, unless the host masked CHIP_ID (all zero).
- ``product``: the processor named by CPUID (v3+), by the root and by the certificate agree.
- ``reserved``/``format``: reserved bytes and bits are as the ABI requires (including the
  unsigned 0x330..0x49F, which no signature protects and so must be checked on its own).
- ``vmpl``: only when asked (``require_vmpl0``): the report was requested at VMPL0.

Not checked, on purpose: certificate validity periods (the report carries no trusted time and
evidence is judged long after it was made; an expired certificate is noted) and revocation
(AMD's CRLs are online; nothing here uses the network).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, NamedTuple

from .. import crypto
from ..crypto import Certificate
from . import vcek
from .fields import (
    Policy,
    Product,
    SignerInfo,
    Tcb,
    decode_platform_info,
    product_from_cpuid,
    product_from_name,
    tcb_layout,
)
from .report import SIG_ALGO_ECDSA_P384_SHA384, Report, reserved_findings

ROOT_PRODUCTS = ("milan", "genoa", "turin")


@cache
def _packaged(prefix: str) -> tuple[Certificate, ...]:
    base = resources.files(__package__) / "roots"
    return tuple(crypto.load_certificates((base / f"{prefix}-{p}.pem").read_bytes())[0]
                 for p in ROOT_PRODUCTS)


def pinned_roots() -> tuple[Certificate, ...]:
    """AMD's ARKs for Milan, Genoa and Turin: the default trust roots."""
    return _packaged("ark")


def amd_intermediates() -> tuple[Certificate, ...]:
    """AMD's ASKs and ASVKs (not trusted by themselves: they must chain to a root)."""
    return _packaged("ask") + _packaged("asvk")


class Reason(NamedTuple):
    check: str  # signature, signer, chain, tcb, chip-id, product, reserved, format, vmpl
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}"


@dataclass
class Verification:
    """The verdict and every decoded field. ``valid`` iff no reason was found."""

    report: Report
    policy: Policy
    signer: SignerInfo
    platform_info: dict[str, Any]
    product: Product | None
    product_source: str
    tcb: dict[str, Tcb]  # current, reported, committed, launch
    chain: list[tuple[str, Certificate]] = field(default_factory=list)  # (role, cert), leaf first
    reasons: list[Reason] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def valid(self) -> bool:
        return not self.reasons

    @property
    def signing_key(self) -> str:
        return self.signer.signing_key

    def as_json(self) -> dict[str, Any]:
        r = self.report
        out: dict[str, Any] = {
            "version": r.version,
            "valid": self.valid,
            "reasons": [{"check": x.check, "detail": x.detail} for x in self.reasons],
            "notes": list(self.notes),
            "vmpl": r.vmpl,
            "product": self.product.value if self.product else None,
            "product_source": self.product_source,
            "signing_key": self.signing_key,
            "measurement": r.measurement.hex(),
            "report_data": r.report_data.hex(),
            "host_data": r.host_data.hex(),
            "chip_id": r.chip_id.hex(),
            "guest_svn": r.guest_svn,
            "policy": self.policy.as_json(),
            "platform_info": self.platform_info,
            "signer_info": {"author_key_en": self.signer.author_key_en,
                            "mask_chip_key": self.signer.mask_chip_key},
            "reported_tcb": self.tcb["reported"].as_json(),
            "current_tcb": self.tcb["current"].as_json(),
            "committed_tcb": self.tcb["committed"].as_json(),
            "launch_tcb": self.tcb["launch"].as_json(),
            "family_id": r.family_id.hex(),
            "image_id": r.image_id.hex(),
            "id_key_digest": r.id_key_digest.hex(),
            "author_key_digest": r.author_key_digest.hex(),
            "report_id": r.report_id.hex(),
            "report_id_ma": r.report_id_ma.hex(),
            "signature_algo": r.signature_algo,
            "firmware": {"current": f"{r.current_major}.{r.current_minor}.{r.current_build}",
                         "committed": f"{r.committed_major}.{r.committed_minor}.{r.committed_build}"},
            "chain": [{"role": role, "subject": c.subject, "sha256": c.fingerprint}
                      for role, c in self.chain],
        }
        if r.version >= 3:
            out["cpuid"] = {"family": r.cpuid_fam_id, "model": r.cpuid_mod_id, "stepping": r.cpuid_step}
        if r.version >= 5:
            out["launch_mit_vector"] = f"0x{r.launch_mit_vector:x}"
            out["current_mit_vector"] = f"0x{r.current_mit_vector:x}"
        return out


def _leaf_kind(cert: Certificate) -> str:
    if vcek.OID_HWID in cert.extensions:
        return "vcek"
    if vcek.OID_CSP_ID in cert.extensions:
        return "vlek"
    return "unknown"


def _name(cert: Certificate) -> str:
    return f"'{cert.subject_cn or cert.subject}' (sha256 {cert.fingerprint[:16]}...)"


def _pick_leaf(report: Report, leaves: list[Certificate]) -> tuple[Certificate, bool]:
    """The given EC certificate that verifies the signature, else the first: (leaf, verifies)."""
    r, s = report.signature_rs
    for c in leaves:
        if crypto.ecdsa_p384_sha384_verify(c, report.signed_bytes, r, s):
            return c, True
    return leaves[0], False


def _issuer_of(cert: Certificate, candidates: Sequence[Certificate]) -> Certificate | None:
    return next((c for c in candidates if crypto.rsa_pss_sha384_signed_by(cert, c)), None)


def _chain_up(leaf: Certificate, candidates: Sequence[Certificate],
              trust: Sequence[Certificate]) -> tuple[Certificate | None, Certificate | None]:
    """(intermediate, root): the first candidate that signed ``leaf`` and is signed by a
    trusted root, with that root; else the first that signed ``leaf``, and None. Not just
    the first that signed it: the host supplies the certificates of the SVSM's report
    request, and a decoy ahead of the genuine ASK (the genuine ASK's key under a root of the
    host's making verifies the leaf too) must not hide the chain that does reach a root."""
    first = None
    for c in candidates:
        if crypto.rsa_pss_sha384_signed_by(leaf, c):
            root = _issuer_of(c, trust)
            if root is not None:
                return c, root
            first = first or c
    return first, None


def verify_report(
    report: Report,
    certs: Sequence[Certificate],
    roots: Sequence[Certificate] | None = None,
    *,
    require_vmpl0: bool = False,
    now: dt.datetime | None = None,
) -> Verification:
    """Check ``report`` against ``certs`` (VCEK or VLEK, optionally ASK/ASVK/ARK, any order)
    and ``roots`` (default: the pinned AMD ARKs). Never raises on a bad report or certificate:
    everything wrong is a ``Reason``."""
    trust = tuple(roots) if roots is not None else pinned_roots()
    policy = Policy.decode(report.policy)
    signer = SignerInfo.decode(report.signer_info)
    reasons: list[Reason] = []
    notes: list[str] = []

    reasons += [Reason("reserved", f) for f in reserved_findings(report)]
    reasons += [Reason("format", f) for f in policy.findings() + signer.findings()]
    if report.signature_algo != SIG_ALGO_ECDSA_P384_SHA384:
        reasons.append(Reason("signature", f"SIGNATURE_ALGO is {report.signature_algo}, not 1 "
                                           "(ECDSA P-384 with SHA-384)"))
    if signer.signing_key == "none" or signer.mask_chip_key:
        reasons.append(Reason("signature", "the report is not signed (SIGNING_KEY 7 or "
                                           "MASK_CHIP_KEY set): the firmware left the signature zero"))

    chain: list[tuple[str, Certificate]] = []
    leaves = [c for c in certs if c.key_type.startswith("ec-")]
    leaf: Certificate | None = None
    root: Certificate | None = None
    if not leaves:
        reasons.append(Reason("chain", "no VCEK or VLEK (an ECDSA P-384 certificate) was given"))
    else:
        leaf, verifies = _pick_leaf(report, leaves)
        kind = _leaf_kind(leaf)
        label = kind.upper() if kind != "unknown" else "certificate"
        chain.append((kind, leaf))
        if not verifies:
            reasons.append(Reason("signature", "the signature (ECDSA P-384, SHA-384 over bytes "
                                               f"0x000..0x29F) does not verify under the {label} "
                                               f"{_name(leaf)}"))
        if kind != signer.signing_key and signer.signing_key in ("vcek", "vlek"):
            reasons.append(Reason("signer", f"the report names the {signer.signing_key.upper()} as "
                                            f"its signer, but the certificate is a {label}"))
        root = _check_chain(leaf, kind, label, certs, trust, roots is None, chain, reasons)

    product, source = _product(report, leaf, root, reasons)
    layout = tcb_layout(product)
    tcb = {name: Tcb.decode(getattr(report, f"{name}_tcb"), layout)
           for name in ("current", "reported", "committed", "launch")}
    for name, t in tcb.items():
        if t.reserved_nonzero():
            reasons.append(Reason("reserved", f"{name.upper()}_TCB has nonzero reserved bytes "
                                              f"(0x{t.raw[::-1].hex()}, {layout} layout)"))
    if leaf is not None:
        _check_tcb(leaf, tcb["reported"], reasons)
        _check_chip_id(report, leaf, layout, reasons, notes)

    if require_vmpl0 and report.vmpl != 0:
        reasons.append(Reason("vmpl", f"VMPL is {report.vmpl}: the report was not requested at "
                                      "VMPL0, where the SVSM runs"))
    if policy.debug:
        notes.append("POLICY.DEBUG is set: the host could read (and change) this VM's memory")
    when = now or dt.datetime.now(dt.UTC)
    for role, c in chain:
        if not c.not_before <= when <= c.not_after:
            notes.append(f"the {role.upper()} {_name(c)} is outside its validity period "
                         f"({c.not_before:%Y-%m-%d}..{c.not_after:%Y-%m-%d}); validity periods are "
                         "not enforced")
    return Verification(report=report, policy=policy, signer=signer,
                        platform_info=decode_platform_info(report.platform_info), product=product,
                        product_source=source, tcb=tcb, chain=chain, reasons=reasons, notes=notes)


def _check_chain(leaf: Certificate, kind: str, label: str, certs: Sequence[Certificate],
                 trust: Sequence[Certificate], default_roots: bool,
                 chain: list[tuple[str, Certificate]], reasons: list[Reason]) -> Certificate | None:
    """leaf -> ASK/ASVK -> trusted ARK. Returns the root reached, if any."""
    # The certificates given come first, as they always did; AMD's shipped ASKs and ASVKs are
    # read (six certificates, a few ms of a 1-boot verify) only when those reach no root.
    inter, root = _chain_up(leaf, [c for c in certs if c.key_type.startswith("rsa-") and not c.self_issued],
                            trust)
    if root is None:
        pool = {c.der: c for c in [*certs, *amd_intermediates()] if c.key_type.startswith("rsa-")}
        shipped = _chain_up(leaf, [c for c in pool.values() if not c.self_issued], trust)
        if shipped[1] is not None or inter is None:
            inter, root = shipped
    if inter is None:
        reasons.append(Reason("chain", f"the {label} is not signed (RSA-PSS SHA-384) by any ASK or "
                                       f"ASVK given or shipped; its issuer is '{leaf.issuer}'"))
        return None
    role = "asvk" if "VLEK" in inter.subject_cn.upper() else "ask"
    chain.append((role, inter))
    wanted = {"vcek": "ask", "vlek": "asvk"}.get(kind)
    if wanted is not None and role != wanted:
        reasons.append(Reason("chain", f"a {label} must be signed by the {wanted.upper()}, not by "
                                       f"the {role.upper()} {_name(inter)}"))
    where = "AMD's pinned ARKs (Milan, Genoa, Turin)" if default_roots else "the --trust-root given"
    if root is None:
        reasons.append(Reason("chain", f"the {role.upper()} {_name(inter)} does not chain to a "
                                       f"trusted root: not signed by any of {where}"))
        return None
    chain.append(("ark", root))
    if not crypto.rsa_pss_sha384_signed_by(root, root):
        reasons.append(Reason("chain", f"the root {_name(root)} is not self-signed with RSA-PSS "
                                       "SHA-384"))
    return root


def _product(report: Report, leaf: Certificate | None, root: Certificate | None,
             reasons: list[Reason]) -> tuple[Product | None, str]:
    """CPUID (v3+) says which processor made the report; a v2 report does not, and then the
    product is the one of the AMD root the chain verified to (its CN, "ARK-Milan"), else the
    certificate's productName. Every indication present must agree."""
    seen: list[tuple[Product, str]] = []
    if report.version >= 3:
        cpu = product_from_cpuid(report.cpuid_fam_id, report.cpuid_mod_id)
        if cpu is None:
            reasons.append(Reason("product", f"CPUID family 0x{report.cpuid_fam_id:02x} model "
                                             f"0x{report.cpuid_mod_id:02x} is not a processor this tool "
                                             "knows (Milan, Genoa, Turin): TCB layout unknown"))
        else:
            seen.append((cpu, "cpuid"))
    if root is not None and (p := product_from_name(root.subject_cn)) is not None:
        seen.append((p, f"root {root.subject_cn}"))
    if leaf is not None and vcek.OID_PRODUCT_NAME in leaf.extensions:
        try:
            name = vcek.der_ia5string(leaf.extensions[vcek.OID_PRODUCT_NAME])
        except vcek.ExtensionError as e:
            reasons.append(Reason("format", f"the certificate's productName: {e}"))
        else:
            if (p := product_from_name(name)) is not None:
                seen.append((p, f"certificate productName {name}"))
    if not seen:
        return None, "unknown"
    first, source = seen[0]
    for p, s in seen[1:]:
        if p is not first:
            reasons.append(Reason("product", f"{source} says {first.value}, {s} says {p.value}"))
    return first, source


def _check_tcb(leaf: Certificate, reported: Tcb, reasons: list[Reason]) -> None:
    label = _leaf_kind(leaf).upper()
    have: dict[str, int] = {}
    for comp in reported.components():
        raw = leaf.extensions.get(vcek.TCB_OIDS[comp])
        if raw is None:
            reasons.append(Reason("tcb", f"the certificate has no {comp} SPL extension "
                                         f"({vcek.TCB_OIDS[comp]})"))
            continue
        try:
            have[comp] = vcek.der_integer(raw)
        except vcek.ExtensionError as e:
            reasons.append(Reason("tcb", f"the certificate's {comp} SPL: {e}"))
    differ = [c for c, v in have.items() if v != reported.components()[c]]
    if differ:
        verb = "differs" if len(differ) == 1 else "differ"
        issued = " ".join(f"{c}={have[c]}" for c in have)
        reasons.append(Reason("tcb", f"the {label} was issued for TCB {issued}, but REPORTED_TCB is "
                                     f"{reported}: {', '.join(differ)} {verb}"))


def _check_chip_id(report: Report, leaf: Certificate, layout: str, reasons: list[Reason],
                   notes: list[str]) -> None:
    kind = _leaf_kind(leaf)
    if kind == "vlek":
        notes.append("signed by a VLEK: the key belongs to a cloud provider, not to one chip, so "
                     "CHIP_ID is not compared")
        return
    hwid = leaf.extensions.get(vcek.OID_HWID)
    if hwid is None:
        return  # not a VCEK: the signer check has said so
    if not any(report.chip_id):
        notes.append("CHIP_ID is zero: the host masked it (MASK_CHIP_ID); the report names no chip")
        return
    want = vcek.HWID_LEN[layout]
    if len(hwid) != want:
        reasons.append(Reason("chip-id", f"the VCEK's hwID is {len(hwid)} bytes, not {want}"))
    elif hwid != report.chip_id[:want]:
        reasons.append(Reason("chip-id", f"the VCEK's hwID {hwid[:8].hex()}... is not this report's "
                                         f"CHIP_ID {report.chip_id[:8].hex()}...: the VCEK of another chip"))
