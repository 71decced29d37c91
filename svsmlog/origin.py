"""Origin (spec §8.9): which boots an SEV-SNP attestation report proves the genuine SVSM wrote.

A boot's evidence rides in the clear sections of its key frames (BOOT frames, WRAP_REKEY
frames, its key-directory slot), authenticated as AAD under the boot's own keys. It proves
origin when, for the boot's authenticated evidence:

1. the report verifies offline (AMD chain to a trust root, signature, TCB, chip id, VMPL 0);
2. its REPORT_DATA is the boot's commitment: volume, boot number, the exact BOOT_SECRET
   envelopes of the clear section carrying it, and every region's launch-grant digest;
3. the secret the boot's frames authenticate under is the one those committed envelopes
   hold for our key (owner), or our chain key came from a launch grant the report commits
   to (a grantee);
4. its MEASUREMENT is one the owner expects, when the owner says which.

Then the SVSM that asked for the report at VMPL0 chose the boot secret, erased it, and is
the only one that sealed frames with it. Checked once per boot, after the scan: this
module imports the attestation code only when some boot carries evidence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NamedTuple

from . import crypto
from .codec import DecodeError, Envelope, RegionEntry, decode_clear_section, encode_clear_section
from .format import GRANT_DIGEST_LEN, SNP_REPORT_LEN, EnvelopeKind, FrameType
from .keyschedule import boot_report_data, envelope_info, launch_grant_digest
from .report import BootAttestation, BootSummary, Kind, Report

if TYPE_CHECKING:
    from .crypto import Certificate
    from .keyschedule import ReaderChain
    from .ordering import Entry


class OriginPolicy(NamedTuple):
    """What the owner expects of a boot's attestation (``--trust-root``, ``--cert``,
    ``--measurement``, ``--require-attestation``)."""

    roots: tuple[Certificate, ...] | None = None  # None: AMD's ARKs pinned in the package
    certs: tuple[Certificate, ...] = ()  # more certificates: a VCEK the log lacks, an ASK, …
    measurements: frozenset[bytes] = frozenset()  # empty: MEASUREMENT is reported, not judged
    require: bool = False  # a boot without a valid report is a violation


class FrameEvidence(NamedTuple):
    """The attestation items of one authenticated key frame's clear section."""

    report: bytes  # the SNP_REPORT item: report (1184 bytes) || launch-grant digests
    certs: tuple[bytes, ...]
    owner_section: bytes  # the clear-section encoding of its BOOT_SECRET envelopes alone
    grant_section: bytes | None  # BOOT frames: the encoding of its CHAIN_KEY envelopes alone


def frame_evidence(envelopes: list[Envelope], ftype: int) -> FrameEvidence | None:
    report = next((e.sealed for e in envelopes if e.kind == EnvelopeKind.SNP_REPORT), None)
    if report is None:
        return None
    owners = [e for e in envelopes if e.kind == EnvelopeKind.BOOT_SECRET]
    grants = [e for e in envelopes if e.kind == EnvelopeKind.CHAIN_KEY]
    return FrameEvidence(
        report,
        tuple(e.sealed for e in envelopes if e.kind == EnvelopeKind.SNP_CERT),
        encode_clear_section(owners),
        encode_clear_section(grants) if ftype == FrameType.BOOT else None,
    )


# (kind, detail, region, frame): the verifier locates and records the finding
Add = Callable[[Kind, str, RegionEntry, "Entry"], None]


@dataclass
class _Boot:
    # key frames: (region index, region, entry)
    frames: list[tuple[int, RegionEntry, Entry]] = field(default_factory=list)
    located: tuple[int, RegionEntry, Entry] | None = None  # another frame, where a finding can point
    chains: list[ReaderChain] = field(default_factory=list)  # every key its ok frames were read with


class OriginJudge:
    def __init__(
        self,
        report: Report,
        volume_id: bytes,
        regions: Sequence[RegionEntry],
        private_keys: Sequence[crypto.PrivateKey],
        policy: OriginPolicy,
        add: Add,
    ) -> None:
        self.report = report
        self.vid = volume_id
        self.regions = list(regions)
        self.ours = {k.key_id: k for k in private_keys}
        self.policy = policy
        self.add = add

    def judge(
        self,
        frames: list[tuple[int, RegionEntry, Entry]],
        others: dict[int, tuple[int, RegionEntry, Entry]],
        chains: dict[int, list[ReaderChain]] | None = None,
    ) -> None:
        """``frames``: every authenticated key frame (BOOT, KEYS, slot) as (region index,
        region, entry), the key directory with index -1; ``others``: for each boot, one of
        its other authenticated frames (a boot may have no key frame left)."""
        boots: dict[int, _Boot] = {}
        for i, region, e in frames:
            boots.setdefault(e.boot, _Boot()).frames.append((i, region, e))
        for b, located in others.items():
            boots.setdefault(b, _Boot()).located = located
        for b, used in (chains or {}).items():
            boots.setdefault(b, _Boot()).chains = used
        results = {b: self._judge_boot(b, boots[b]) for b in sorted(boots)}
        attested_any = any(a.status in ("attested", "unexpected") for a in results.values())  # passed 1-3
        self.report.origin_policy = {
            "measurements": sorted(m.hex() for m in self.policy.measurements),
            "required": self.policy.require,
            "trust_roots": "given" if self.policy.roots is not None else "AMD (pinned)",
        }
        for b, att in results.items():
            self.report.boots.setdefault(b, BootSummary(b)).attestation = att
            if att.status not in ("unattested", "unknown"):
                continue
            other = boots[b].located
            candidates = boots[b].frames + ([other] if other is not None else [])
            _, region, first = min(candidates, key=lambda f: (f[0] < 0, f[2].seq, f[0]))
            why = att.detail
            if self.policy.require:
                self.add(
                    Kind.ATTESTATION_MISSING, f"{why}, and the owner requires attestation", region, first
                )
            elif attested_any:
                self.add(
                    Kind.UNATTESTED,
                    f"{why}, while other boots of this volume are attested: the host refused the "
                    "request, or wrote this boot itself with the owner's public key",
                    region,
                    first,
                )

    def _judge_boot(self, boot: int, b: _Boot) -> BootAttestation:
        carrying = [(i, r, e) for i, r, e in b.frames if e.evidence is not None]
        if not carrying:
            keyed = bool(b.frames)
            status = "unattested" if keyed else "unknown"
            detail = (
                f"boot {boot} carries no attestation report"
                if keyed
                else f"no authenticated key frame of boot {boot} is left to say whether it was attested"
            )
            return BootAttestation(status, detail=detail)
        _, region, e = carrying[0]
        ev = e.evidence
        assert ev is not None
        for _, r2, e2 in carrying[1:]:
            assert e2.evidence is not None
            if e2.evidence.report != ev.report or e2.evidence.certs != ev.certs:
                self.add(
                    Kind.ATTESTATION_INVALID,
                    f"boot {boot} carries two different attestation reports (here and at sector {e.lba}); "
                    "a boot asks for one",
                    r2,
                    e2,
                )
                return BootAttestation("invalid", detail="two different reports")
        return self._check(boot, region, e, ev, b)

    def _check(
        self, boot: int, region: RegionEntry, e: Entry, ev: FrameEvidence, b: _Boot
    ) -> BootAttestation:
        from .attestation.report import ReportError, parse_report
        from .attestation.verify import verify_report

        def invalid(why: str, att: BootAttestation | None = None) -> BootAttestation:
            self.add(Kind.ATTESTATION_INVALID, f"boot {boot}'s attestation report {why}", region, e)
            return att or BootAttestation("invalid", detail=why)

        raw, tail = ev.report[:SNP_REPORT_LEN], ev.report[SNP_REPORT_LEN:]
        grants = [tail[k : k + GRANT_DIGEST_LEN] for k in range(0, len(tail), GRANT_DIGEST_LEN)]
        try:
            rep = parse_report(raw)
        except ReportError as err:
            return invalid(f"does not parse: {err}")
        certs: list[Certificate] = list(self.policy.certs)
        for der in ev.certs:
            # untrusted bytes from the host; the chain check says what is missing
            with contextlib.suppress(crypto.CertificateError):
                certs += crypto.load_certificates(der)
        v = verify_report(rep, certs, self.policy.roots, require_vmpl0=True)
        att = BootAttestation(
            "attested",
            product=v.product.value if v.product else None,
            signing_key=v.signing_key,
            chip_id=rep.chip_id.hex(),
            tcb=str(v.tcb["reported"]),
            measurement=rep.measurement.hex(),
            debug=v.policy.debug,
            vmpl=rep.vmpl,
        )
        if self.policy.measurements:
            att.measurement_expected = rep.measurement in self.policy.measurements
        if not v.valid:
            att.status, att.detail = "invalid", "; ".join(map(str, v.reasons))
            return invalid(f"is not valid: {att.detail}", att)
        if len(grants) != len(self.regions):
            att.status, att.detail = "invalid", "launch grants for another number of regions"
            have = len(self.regions)
            return invalid(f"lists launch grants for {len(grants)} region(s); the volume has {have}", att)
        expected = boot_report_data(self.vid, boot, ev.owner_section, grants)
        if not crypto.ct_equal(rep.report_data, expected):
            att.status, att.detail = "misplaced", "REPORT_DATA is not this boot's commitment"
            self.add(
                Kind.ATTESTATION_MISPLACED,
                f"boot {boot}'s attestation report is genuine but was made for something else: its "
                "REPORT_DATA is not this boot's commitment (another boot, volume or set of envelopes, "
                "or a report the guest OS asked for)",
                region,
                e,
            )
            return att
        misplaced = self._keys_not_committed(boot, e, ev, grants, b)
        if misplaced == _LATER_GRANT:
            # honest (a debug grant made after launch), but the report does not vouch for it
            att.status = "unattested"
            att.detail = f"boot {boot}'s report does not commit to our key: {misplaced}"
            return att
        if misplaced is not None:
            att.status, att.detail = "misplaced", misplaced
            self.add(Kind.ATTESTATION_MISPLACED, f"boot {boot}: {misplaced}", region, e)
            return att
        if att.measurement_expected is False:
            att.status = "unexpected"
            self.add(
                Kind.MEASUREMENT_UNEXPECTED,
                f"boot {boot} was written by an SVSM whose launch measurement {rep.measurement.hex()} is not "
                "one the owner expects (another build, or another launch configuration)",
                region,
                e,
            )
        if v.policy.debug:
            self.add(
                Kind.DEBUG_POLICY,
                f"boot {boot} ran with POLICY.DEBUG set: the host could read and change the VM's memory, "
                "boot secret included, so nothing in this boot is proven to be the SVSM's",
                region,
                e,
            )
        return att

    def _keys_not_committed(
        self, boot: int, e: Entry, ev: FrameEvidence, grants: list[bytes], b: _Boot
    ) -> str | None:
        """Why the keys this boot's frames authenticate under are not the committed ones, or
        None. Every BOOT frame's launch grants must be the committed digests too."""
        for i, _, f in b.frames:
            section = f.evidence.grant_section if f.evidence is not None else None
            if section is None or i < 0:
                continue
            if not crypto.ct_equal(launch_grant_digest(section), grants[i]):
                return f"the BOOT frame at sector {f.lba} holds launch grants the report does not commit to"
        # Every key the boot's frames were read with must be a committed one: a grantee may
        # hold a launch grant of one stream and a later grant of another.
        chains = list(b.chains) or ([e.chain] if e.chain is not None else [])
        if not chains:
            return "no key of ours authenticated the frame carrying the report"
        later = False
        for chain in chains:
            if chain.origin.startswith(b"S"):
                if not self._secret_committed(boot, chain, ev):
                    return ("the report commits to envelopes that do not hold, for our key, the secret "
                            "this boot's frames are sealed with")
            elif not self._launch_granted(boot, chain, b):
                later = True
        return _LATER_GRANT if later else None

    def _secret_committed(self, boot: int, chain: ReaderChain, ev: FrameEvidence) -> bool:
        for env in _decode(ev.owner_section):
            key = self.ours.get(env.key_id)
            if key is None or key.kem_id != env.kem_id:
                continue
            pt = crypto.hpke_open(key, env.sealed, envelope_info(env.kind, self.vid, boot, 0, 0))
            if pt is not None and chain.origin == b"S" + crypto.sha256(pt)[:8]:
                return True
        return False

    def _launch_granted(self, boot: int, chain: ReaderChain, b: _Boot) -> bool:
        """A grantee's chain comes from a launch grant (seq 0 of a BOOT frame) the report
        commits to; a grant made later is not in the report."""
        for _, region, f in b.frames:
            if f.chain is not chain or f.type != FrameType.BOOT or f.seq != 0 or f.evidence is None:
                continue
            for env in _decode(f.evidence.grant_section or b"\0\0"):
                key = self.ours.get(env.key_id)
                if key is None or key.kem_id != env.kem_id:
                    continue
                info = envelope_info(env.kind, self.vid, boot, region.stream, 0)
                pt = crypto.hpke_open(key, env.sealed, info)
                if pt is not None and chain.origin == b"C" + crypto.sha256(pt)[:8]:
                    return True
        return False


_LATER_GRANT = "our key was granted after launch, and the report commits only to launch grants"


def _decode(section: bytes) -> list[Envelope]:
    try:
        return decode_clear_section(section)
    except DecodeError:  # pragma: no cover - it was encoded from a section that parsed
        return []
