"""What verification concludes: findings (a closed set of kinds, spec §9) and per-boot facts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple


class Severity(Enum):
    VIOLATION = "violation"  # the host (or someone) changed what the writer wrote
    # Not proven either way: frames our keys do not open, or an absence explained only by
    # bytes nobody authenticated (spec §8.8). The verdict is then never "intact".
    UNPROVEN = "unproven"
    NOTICE = "notice"  # a fact about the log that is not tampering


class Kind(Enum):
    """Every finding kind the verifier can report; spec §9 defines each."""

    SUPERBLOCK_MISMATCH = "superblock_mismatch"
    FRAME_CORRUPT = "frame_corrupt"
    FRAME_FOREIGN = "frame_foreign"
    FRAME_MOVED = "frame_moved"
    FRAME_MISPLACED = "frame_misplaced"
    FRAME_DUPLICATED = "frame_duplicated"
    FRAME_MISSING = "frame_missing"
    CHAIN_BROKEN = "chain_broken"
    BOOT_TRUNCATED = "boot_truncated"
    BOOT_CLAIM_MISMATCH = "boot_claim_mismatch"
    RECORD_MALFORMED = "record_malformed"
    ANCHOR_MISMATCH = "anchor_mismatch"
    ANCHOR_TRUNCATED = "anchor_truncated"
    ENVELOPE_FLOOD = "envelope_flood"
    KEY_CONFLICT = "key_conflict"
    UNPROVEN = "unproven"
    CRASH_TAIL = "crash_tail"
    ROTATED_OUT = "rotated_out"
    STALE_REMNANT = "stale_remnant"
    NO_SHUTDOWN = "no_shutdown"
    NO_KEY = "no_key"
    ATTESTATION_INVALID = "attestation_invalid"
    ATTESTATION_MISPLACED = "attestation_misplaced"
    MEASUREMENT_UNEXPECTED = "measurement_unexpected"
    ATTESTATION_MISSING = "attestation_missing"
    DEBUG_POLICY = "debug_policy"
    UNATTESTED = "unattested"

    @property
    def severity(self) -> Severity:
        if self in _NOTICES:
            return Severity.NOTICE
        return Severity.UNPROVEN if self in _UNPROVEN else Severity.VIOLATION


_NOTICES = frozenset({Kind.CRASH_TAIL, Kind.ROTATED_OUT, Kind.STALE_REMNANT, Kind.NO_SHUTDOWN})
_UNPROVEN = frozenset({Kind.NO_KEY, Kind.UNPROVEN, Kind.DEBUG_POLICY, Kind.UNATTESTED})


class Verdict(Enum):
    """What a report concludes (spec §9), most severe first."""

    VIOLATED = "violated"  # at least one violation
    UNVERIFIABLE = "unverifiable"  # no violation, frames present, and not one of them ours to open
    PARTIAL = "partial"  # no violation, but some frames or history are not proven
    INTACT = "intact"  # every frame present authenticated, every obligation proven


class Finding(NamedTuple):
    kind: Kind
    stream: str | None
    boot: int | None
    seq: int | None
    offset: int | None  # bytes from the start of the image
    detail: str

    @property
    def violation(self) -> bool:
        return self.kind.severity is Severity.VIOLATION

    @property
    def unproven(self) -> bool:
        return self.kind.severity is Severity.UNPROVEN

    def as_json(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "severity": self.kind.severity.value,
            "boot": self.boot,
            "stream": self.stream,
            "seq": self.seq,
            "offset": self.offset,
            "detail": self.detail,
        }


class Ending(Enum):
    CLEAN = "clean shutdown"
    PANIC = "panic"
    CRASH = "crash (torn tail)"
    UNKNOWN = "unknown (no shutdown record)"


@dataclass
class StreamSpan:
    """What was verified of one stream in one boot."""

    stream: str
    first_seq: int | None = None
    last_seq: int | None = None
    frames: int = 0
    records: int = 0
    first_t_ns: int | None = None
    last_t_ns: int | None = None
    ended_clean: bool = False
    torn_tail: bool = False
    panic: bool = False
    violated: bool = False
    unreadable_frames: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "stream": self.stream,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "frames": self.frames,
            "records": self.records,
            "first_t_ns": self.first_t_ns,
            "last_t_ns": self.last_t_ns,
            "ended_clean": self.ended_clean,
            "torn_tail": self.torn_tail,
            "panic": self.panic,
            "violated": self.violated,
            "unreadable_frames": self.unreadable_frames,
        }


@dataclass
class BootAttestation:
    """What the boot's SEV-SNP evidence proves (spec §8.9). ``status``: attested (valid and
    committed to this boot), unexpected (attested, by an SVSM of a measurement the owner did
    not list), invalid, misplaced (genuine, made for something else), unattested (no report,
    or none that covers our key), unknown (no authenticated key frame left to tell)."""

    status: str
    detail: str | None = None
    product: str | None = None
    signing_key: str | None = None
    chip_id: str | None = None
    tcb: str | None = None
    measurement: str | None = None
    measurement_expected: bool | None = None  # None: the owner named no measurement
    debug: bool | None = None
    vmpl: int | None = None

    @property
    def proven(self) -> bool:
        return self.status == "attested" and not self.debug

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


@dataclass
class BootSummary:
    boot: int
    streams: dict[str, StreamSpan] = field(default_factory=dict)
    host_time_ns: int | None = None  # untrusted: as the host told the SVSM
    config_digest: bytes | None = None
    debug_ceiling: str | None = None
    debug_enabled: bool | None = None
    layout: str | None = None
    attestation: BootAttestation | None = None

    @property
    def ending(self) -> Ending:
        spans = list(self.streams.values())
        if any(s.panic for s in spans):
            return Ending.PANIC
        read = [s for s in spans if s.frames]
        if read and all(s.ended_clean for s in read):
            return Ending.CLEAN
        if any(s.torn_tail for s in spans):
            return Ending.CRASH
        return Ending.UNKNOWN

    def as_json(self) -> dict[str, object]:
        return {
            "boot": self.boot,
            "ending": self.ending.value,
            "host_time_ns_untrusted": self.host_time_ns,
            "config_digest": self.config_digest.hex() if self.config_digest else None,
            "debug_ceiling": self.debug_ceiling,
            "debug_enabled": self.debug_enabled,
            "layout": self.layout,
            "attestation": self.attestation.as_json() if self.attestation else {"status": "unattested"},
            "streams": [s.as_json() for s in self.streams.values()],
        }


@dataclass
class Report:
    volume_id: bytes
    findings: list[Finding] = field(default_factory=list)
    boots: dict[int, BootSummary] = field(default_factory=dict)
    anchor_checked: bool = False
    anchored_boots: set[int] = field(default_factory=set)  # boots an anchor vouches for (§8.5)
    # The anchor's form, "json" or "snp-report", and for a report what it says (§6.5)
    anchor_source: dict[str, object] = field(default_factory=dict)
    verified_frames: int = 0  # frames (key-directory slots included) that authenticated
    origin_policy: dict[str, object] = field(default_factory=dict)  # what attestation was judged against

    def origin(self) -> str:
        """One line on what the SEV-SNP reports prove about who wrote the boots (spec §8.9)."""
        boots = [b for b in sorted(self.boots) if any(s.frames for s in self.boots[b].streams.values())]
        if not boots:
            return "no boot to attest"
        proven = [b for b in boots if (a := self.boots[b].attestation) and a.proven]
        checked = bool(self.origin_policy.get("measurements"))
        if not proven:
            return (f"not proven: none of {len(boots)} boot(s) is attested, so the host could have "
                    "written any of them with the owner's public key")
        line = f"{len(proven)} of {len(boots)} boot(s) attested by an SEV-SNP report"
        rest = [b for b in boots if b not in proven]
        if rest:
            line += "; not proven for boot(s) " + ", ".join(map(str, rest))
        line += "; measurement " + ("as expected" if checked else "not checked (give --measurement)")
        return line

    def attested_boots(self) -> list[int]:
        return [b for b in sorted(self.boots) if (a := self.boots[b].attestation) and a.proven]

    def anchored(self, boot: int) -> bool:
        return boot in self.anchored_boots

    @property
    def outcome(self) -> Verdict:
        if any(f.violation for f in self.findings):
            return Verdict.VIOLATED
        if not self.verified_frames and any(f.kind is Kind.NO_KEY for f in self.findings):
            return Verdict.UNVERIFIABLE  # frames are here, and not one is ours to open
        if any(f.unproven for f in self.findings):
            return Verdict.PARTIAL
        return Verdict.INTACT

    @property
    def verdict(self) -> str:
        return self.outcome.value

    def unproven_boots(self) -> set[int]:
        """Boots with a frame or a stretch of history that is not proven (spec §8.8)."""
        return {f.boot for f in self.findings if f.unproven and f.boot is not None}

    def proven_boots(self) -> list[int]:
        """Boots every present frame of which authenticated, with nothing unproven or violated."""
        bad = self.unproven_boots() | {f.boot for f in self.findings if f.violation}
        return [
            b
            for b in sorted(self.boots)
            if b not in bad and any(s.frames for s in self.boots[b].streams.values())
        ]

    def scope(self) -> str:
        """One line on what the verdict covers, e.g. "intact for what the keys open: 1 of 2 boots"."""
        total = len(self.boots)
        if self.outcome is Verdict.PARTIAL:
            spans = [s for b in self.boots.values() for s in b.streams.values()]
            read = sum(1 for s in spans if s.frames)
            return (
                f"intact for what the keys open: {len(self.proven_boots())} of {total} boot(s) wholly "
                f"proven, {read} of {len(spans)} (boot, stream) span(s) verified"
            )
        return self.outcome.value

    def add(
        self,
        kind: Kind,
        detail: str,
        *,
        stream: str | None = None,
        boot: int | None = None,
        seq: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.findings.append(Finding(kind, stream, boot, seq, offset, detail))

    def span(self, boot: int, stream: str) -> StreamSpan:
        b = self.boots.setdefault(boot, BootSummary(boot))
        return b.streams.setdefault(stream, StreamSpan(stream))

    def as_json(self, *, findings: bool = True) -> dict[str, object]:
        """The report as JSON values; "findings" is the last key, and ``findings=False``
        leaves it out (svsmlog.cli.render.write_report_json encodes them one at a time)."""
        head: dict[str, object] = {
            "verdict": self.verdict,
            "scope": self.scope(),
            "volume_id": self.volume_id.hex(),
            "proven_boots": self.proven_boots(),
            "unproven_boots": sorted(self.unproven_boots()),
            "anchor_checked": self.anchor_checked,
            "anchored_boots": sorted(self.anchored_boots),
            **({"anchor": self.anchor_source} if self.anchor_source else {}),
            "origin": {
                "summary": self.origin(),
                "attested_boots": self.attested_boots(),
                **self.origin_policy,
            },
            "boots": [{**self.boots[b].as_json(), "anchored": self.anchored(b)} for b in sorted(self.boots)],
        }
        if findings:
            head["findings"] = [f.as_json() for f in self.findings]
        return head
