"""Head commitments (spec §6.5): 32 bytes that fit REPORT_DATA of an SEV-SNP report."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from . import crypto
from .keyschedule import LABEL_ANCHOR


class AnchorError(ValueError):
    """An anchor file that is unreadable or does not match its own commitment."""


@dataclass(frozen=True)
class Head:
    stream: int
    boot: int
    seq: int
    tag: bytes


@dataclass(frozen=True)
class Anchor:
    volume_id: bytes
    boot: int
    heads: tuple[Head, ...]  # in superblock region order

    @property
    def commitment(self) -> bytes:
        parts = [LABEL_ANCHOR, self.volume_id, struct.pack("<IH", self.boot, len(self.heads))]
        for h in self.heads:
            parts.append(struct.pack("<HIQ", h.stream, h.boot, h.seq) + h.tag)
        return crypto.sha256(*parts)

    def to_json(self) -> str:
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
        if len(a.volume_id) != 16 or any(len(h.tag) != 16 for h in heads) or len(heads) > 64:
            raise AnchorError("malformed anchor file: bad field sizes")
        if not crypto.ct_equal(claimed, a.commitment):
            raise AnchorError("anchor file does not match its own report_data commitment")
        return a
