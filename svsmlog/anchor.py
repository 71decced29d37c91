"""Head commitments (spec §6.5): 32 bytes that fit REPORT_DATA of an SEV-SNP report.

An anchor reaches the verifier in one of two forms:

* the anchor file (JSON, ``Anchor``): the heads themselves and their commitment; who vouches
  for it is the caller's business;
* an anchor report (``ReportAnchor``): the SEV-SNP report the SVSM requested at VMPL0 with
  REPORT_DATA = anchor || nonce. It carries only the 32-byte commitment; its preimage (the
  heads) is the ``log anchor issued`` record the SVSM made durable in the log before it
  handed the report out (``preimage_fields``), and the verifier finds it there.
"""

from __future__ import annotations

# json is imported by the functions that use it: a plain verify never does (json costs a
# few ms of start-up, benchmarks/README.md).
import struct
from typing import TYPE_CHECKING, NamedTuple

from . import crypto
from .keyschedule import LABEL_ANCHOR

if TYPE_CHECKING:
    from .attestation.report import Report

_HEAD = struct.Struct("<HIQ")  # stream, boot, seq; then the 16-byte tag
HEAD_LEN = _HEAD.size + 16
MAX_HEADS = 64

# The record the SVSM logs (and flushes) before it hands an anchor report out (spec §6.5).
PREIMAGE_MESSAGE = "log anchor issued"
FIELD_ANCHOR = "anchor"  # hex of the 32-byte anchor: REPORT_DATA[0:32]
FIELD_BOOT = "anchor_boot"  # decimal
FIELD_HEADS = "anchor_heads"  # hex of n x (u16 stream || u32 boot || u64 seq || tag), superblock order
FIELD_NONCE = "nonce"  # hex of REPORT_DATA[32:64]


class AnchorError(ValueError):
    """An anchor file that is unreadable or does not match its own commitment."""


class Head(NamedTuple):
    stream: int
    boot: int
    seq: int
    tag: bytes


class Anchor(NamedTuple):
    volume_id: bytes
    boot: int
    heads: tuple[Head, ...]  # in superblock region order

    @property
    def commitment(self) -> bytes:
        return crypto.sha256(LABEL_ANCHOR, self.volume_id, struct.pack("<IH", self.boot, len(self.heads)),
                             self.heads_bytes())

    def heads_bytes(self) -> bytes:
        """The heads as the commitment hashes them (the ``anchor_heads`` field, unhexed)."""
        return b"".join(_HEAD.pack(h.stream, h.boot, h.seq) + h.tag for h in self.heads)

    def preimage_fields(self, nonce: bytes) -> tuple[tuple[str, str], ...]:
        """The fields of the ``log anchor issued`` record for a report of this anchor."""
        return (
            (FIELD_ANCHOR, self.commitment.hex()),
            (FIELD_BOOT, str(self.boot)),
            (FIELD_HEADS, self.heads_bytes().hex()),
            (FIELD_NONCE, nonce.hex()),
        )

    @classmethod
    def from_preimage_fields(cls, volume_id: bytes, fields: tuple[tuple[str, str], ...]) -> Anchor | None:
        """The anchor a ``log anchor issued`` record states, on ``volume_id``; None when its
        fields are missing or malformed. Whether it is the one a report vouches for is the
        caller's check (its commitment against REPORT_DATA)."""
        d = dict(fields)
        try:
            boot = int(d[FIELD_BOOT], 10)
            raw = bytes.fromhex(d[FIELD_HEADS])
        except (KeyError, ValueError):
            return None
        if not 0 <= boot < 1 << 32 or len(raw) % HEAD_LEN or len(raw) // HEAD_LEN > MAX_HEADS:
            return None
        heads = []
        for off in range(0, len(raw), HEAD_LEN):
            stream, hboot, seq = _HEAD.unpack_from(raw, off)
            heads.append(Head(stream, hboot, seq, raw[off + _HEAD.size : off + HEAD_LEN]))
        return cls(volume_id, boot, tuple(heads))

    def to_json(self) -> str:
        import json
        return json.dumps(
            {
                "format": "svsmlog-anchor-v1",
                "volume_id": self.volume_id.hex(),
                "boot": self.boot,
                "heads": [
                    {"stream": h.stream, "boot": h.boot, "seq": h.seq, "tag": h.tag.hex()} for h in self.heads
                ],
                "report_data": self.commitment.hex(),
            },
            indent=2,
        )

    @classmethod
    def from_json(cls, text: str) -> Anchor:
        import json
        try:
            d = json.loads(text)
            if d.get("format") != "svsmlog-anchor-v1":
                raise AnchorError("not an svsmlog anchor file (format field)")
            heads = tuple(
                Head(int(h["stream"]), int(h["boot"]), int(h["seq"]), bytes.fromhex(h["tag"]))
                for h in d["heads"]
            )
            a = cls(bytes.fromhex(d["volume_id"]), int(d["boot"]), heads)
            claimed = bytes.fromhex(d["report_data"])
        except AnchorError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise AnchorError(f"malformed anchor file: {e}") from None
        if len(a.volume_id) != 16 or any(len(h.tag) != 16 for h in heads) or len(heads) > MAX_HEADS:
            raise AnchorError("malformed anchor file: bad field sizes")
        if not crypto.ct_equal(claimed, a.commitment):
            raise AnchorError("anchor file does not match its own report_data commitment")
        return a


REPORT_DATA = slice(0x50, 0x90)  # REPORT_DATA in an ATTESTATION_REPORT


class ReportAnchor(NamedTuple):
    """An anchor report: an SEV-SNP ATTESTATION_REPORT whose REPORT_DATA is the anchor (32
    bytes) followed by the verifier's nonce (32 bytes, or zero). It is checked as a boot's
    report is (AMD chain, VMPL0, measurement), and its preimage comes from the log."""

    report: Report

    @property
    def raw(self) -> bytes:
        return self.report.raw

    @property
    def commitment(self) -> bytes:
        return self.report.raw[REPORT_DATA][:32]

    @property
    def nonce(self) -> bytes:
        return self.report.raw[REPORT_DATA][32:]

    @classmethod
    def from_bytes(cls, data: bytes) -> ReportAnchor:
        """Binary (1184 bytes) or hex text; AnchorError if it is not a report we can parse."""
        from .attestation.report import ReportError, parse_report

        try:
            return cls(parse_report(data))
        except ReportError as e:
            raise AnchorError(str(e)) from None


def load_anchor(data: bytes) -> Anchor | ReportAnchor:
    """An anchor file (JSON, its first non-blank byte is ``{``) or an anchor report."""
    if data.lstrip()[:1] == b"{":
        try:
            return Anchor.from_json(data.decode("utf-8"))
        except UnicodeDecodeError as e:
            raise AnchorError(f"malformed anchor file: {e}") from None
    try:
        return ReportAnchor.from_bytes(data)
    except AnchorError as e:
        raise AnchorError(
            f"neither an svsmlog anchor file (JSON) nor an SEV-SNP attestation report: {e}"
        ) from None
