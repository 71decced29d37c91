"""Ground truth: every record the writer reported durable, one JSON object per line.

Fields, in this order: boot, stream (name), seq (the frame's sequence number), service,
component, level (lowercase name), t_ns, message. The reader's output maps onto the same
fields (``from_located``), so a test or a person can compare what was written with what
``svsmlog extract`` recovers.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .. import crypto
from ..anchor import Anchor
from ..origin import OriginPolicy
from ..records import LocatedRecord
from ..report import Report
from ..scan import ReadSectors
from ..verify import Keyring, Verifier
from .svsm import DurableRecord

FIELDS = ("boot", "stream", "seq", "service", "component", "level", "t_ns", "message")


def truth_line(d: DurableRecord) -> dict[str, Any]:
    r = d.record
    return {
        "boot": d.boot,
        "stream": d.stream,
        "seq": d.seq,
        "service": r.service,
        "component": r.component,
        "level": r.level.label,
        "t_ns": r.t_ns,
        "message": r.message,
    }


def from_located(lr: LocatedRecord) -> dict[str, Any]:
    """A record as the verifying reader returns it, in truth form."""
    j = lr.as_json()
    return {k: j[k] for k in FIELDS}


def write_truth(path: Path, records: Iterable[DurableRecord]) -> int:
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for d in records:
            f.write(json.dumps(truth_line(d), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_truth(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def key(d: dict[str, Any]) -> tuple[Any, ...]:
    """A hashable form of a truth line (for set and multiset comparisons)."""
    return tuple(d[k] for k in FIELDS)


def read_back(
    read: ReadSectors,
    sector_count: int,
    keys: list[crypto.PrivateKey],
    anchor: Anchor | None = None,
    origin: OriginPolicy | None = None,
) -> tuple[Report, list[dict[str, Any]]]:
    """Verify an image with ``keys`` (and the owner's attestation expectations ``origin``)
    and return the report and every record the reader recovers, in truth form (the check
    the tests and the samples make)."""
    v = Verifier(read, sector_count, Keyring(list(keys)), origin=origin)
    report = v.run(anchor)
    return report, [from_located(r) for r in v.records()]
