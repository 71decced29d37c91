"""The log order of one region (spec §8.3, §8.4): duplicates, links, boot claims, torn
frames and rotation, judged over the index of frames the scan found."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import crypto
from .codec import BootBody, RegionEntry
from .format import MAX_WRAP_SECTORS, FrameType
from .keyschedule import ReaderChain
from .report import Kind

# add(kind, detail, boot=..., seq=..., lba=...): a finding in this region
Add = Callable[..., Any]


@dataclass(slots=True)
class Entry:
    """One frame found in a region: the index the checks and the record pass work from."""

    lba: int
    type: int
    boot: int
    seq: int
    sectors: int
    tag: bytes
    prev_tag: bytes
    status: str  # "ok" | "no_key" | "torn" | "corrupt"
    chain: ReaderChain | None = None
    boot_body: BootBody | None = None
    wrap_from: int = 0
    records: int = 0
    panic: bool = False
    malformed: bool = False  # authenticated, but the body does not parse (reported record_malformed)
    first_t: int | None = None
    last_t: int | None = None

    @property
    def key(self) -> tuple[int, int]:
        return (self.boot, self.seq)


def _is_genesis(e: Entry) -> bool:
    """The first frame a region ever held: a BOOT frame that found nothing before it."""
    return e.seq == 0 and e.boot_body is not None and e.boot_body.prior is None


class RegionJudge:
    """Judges one region's frames; what it learns beyond findings is kept on the instance."""

    def __init__(self, region: RegionEntry, add: Add, *, newest_boot: int = 0) -> None:
        self.region = region
        self.add = add
        self.newest_boot = newest_boot  # over every region: a crashed boot is at most one newer
        self.torn_at_start = False
        self.torn_tail_boots: set[int] = set()  # boots whose frames here end in a crash tail
        self.violated_boots: set[int] = set()  # boots a gap leaves incomplete here

    def judge(self, entries: list[Entry]) -> list[Entry]:
        """Order, chain, claims, rotation (spec §8.3). Returns the frames in log order."""
        present: dict[tuple[int, int], Entry] = {}
        for e in sorted((e for e in entries if e.status in ("ok", "no_key")), key=lambda e: e.lba):
            if e.key in present:
                other = present[e.key]
                same = crypto.ct_equal(other.tag, e.tag)
                self.add(
                    Kind.FRAME_DUPLICATED,
                    f"frame also at sector {other.lba}"
                    + (" (identical copy)" if same else " (different contents)"),
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
                continue
            present[e.key] = e
        order = [present[k] for k in sorted(present)]
        self._check_torn(entries, present)
        # Links are judged between frames we can read; an unreadable frame can neither
        # break the chain nor, being unauthenticated, stand in for a missing one (§8.3).
        readable = [e for e in order if e.status == "ok"]
        if readable:
            cuts = [
                i for i in range(1, len(readable)) if not self._link_ok(readable[i - 1], readable[i], present)
            ]
            self._check_rotation(readable, cuts, present)
        return order

    def _link_ok(self, x: Entry, y: Entry, present: dict[tuple[int, int], Entry]) -> bool:
        """True if readable frame y directly follows readable frame x (or we cannot tell);
        reports what is wrong, except a plain gap, which is judged with rotation."""
        if y.boot == x.boot:
            if y.seq == x.seq + 1:
                if not crypto.ct_equal(y.prev_tag, x.tag):
                    self.add(
                        Kind.CHAIN_BROKEN,
                        f"does not chain to seq {x.seq}",
                        boot=y.boot,
                        seq=y.seq,
                        lba=y.lba,
                    )
                return True
            return False
        # y starts a later boot: its boot record says what it found.
        if y.seq != 0 or y.boot_body is None:
            # Holding y's stream only from a grant on, we cannot see where its boot began.
            return y.chain is not None and y.chain.base_seq > 0
        prior = y.boot_body.prior
        if prior is None:
            self.add(
                Kind.BOOT_CLAIM_MISMATCH,
                f"boot {y.boot} found no earlier frame, but boot {x.boot} seq {x.seq} precedes it",
                boot=y.boot,
                seq=0,
                lba=y.lba,
            )
            return True
        if (prior.boot, prior.seq) == (x.boot, x.seq):
            if not crypto.ct_equal(prior.tag, x.tag):
                self.add(
                    Kind.CHAIN_BROKEN,
                    f"boot record names boot {x.boot} seq {x.seq} with another tag",
                    boot=y.boot,
                    seq=0,
                    lba=y.lba,
                )
            return True
        if (prior.boot, prior.seq) > (x.boot, x.seq):
            seen = present.get((prior.boot, prior.seq))
            if seen is not None and seen.status == "no_key":
                # The frame the later boot saw is here, but we cannot read it: its tag must be
                # the one the (authenticated) boot record names.
                if not crypto.ct_equal(prior.tag, seen.tag):
                    self.add(
                        Kind.CHAIN_BROKEN,
                        f"boot record names boot {prior.boot} seq {prior.seq} with another tag",
                        boot=y.boot,
                        seq=0,
                        lba=y.lba,
                    )
                return True
            return False  # frames the later boot saw are gone: a cut, judged with rotation
        self.add(
            Kind.BOOT_CLAIM_MISMATCH,
            f"boot {y.boot} found boot {prior.boot} seq {prior.seq} "
            f"as the newest frame, but boot {x.boot} seq {x.seq} is newer",
            boot=x.boot,
            seq=x.seq,
            lba=x.lba,
        )
        return True

    def _check_torn(self, entries: list[Entry], present: dict[tuple[int, int], Entry]) -> None:
        """A torn frame is a crash if it carries the numbers the writer's next write would
        have (its header is unauthenticated: spec §8.4): the next seq of its boot here, or
        seq 0 of a boot at most one newer than any, and nothing of a later boot says otherwise."""
        last_seq: dict[int, int] = {}
        ended: set[int] = set()
        for (b, s), p in present.items():
            last_seq[b] = max(last_seq.get(b, -1), s)
            if p.type == FrameType.END and p.status == "ok":
                ended.add(b)  # the writer writes nothing more to this stream in boot b
        for e in entries:
            if e.status != "torn":
                continue
            next_write = (
                e.seq == last_seq.get(e.boot, -1) + 1
                and e.boot <= self.newest_boot + 1
                and (e.type == FrameType.BOOT) == (e.seq == 0)  # the writer's BOOT frame is seq 0
                and e.boot not in ended
            )
            if next_write and self._where_next(e, present) and self._boot_moved_on(present, e):
                self.add(
                    Kind.CRASH_TAIL,
                    "torn frame: the write was cut short by a crash",
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
                self.torn_tail_boots.add(e.boot)
                if e.lba == self.region.start:
                    self.torn_at_start = True
            else:
                self.add(
                    Kind.FRAME_CORRUPT,
                    "frame fails authentication and its commit digest, and later frames of its boot exist: "
                    "not a torn tail, it was changed",
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )

    def _where_next(self, torn: Entry, present: dict[tuple[int, int], Entry]) -> bool:
        """The torn frame lies where the writer put its next write: right after the frame
        before it, or at the region start when too little room was left after that frame."""
        before = [e for k, e in present.items() if k < torn.key]
        if not before:
            return torn.lba == self.region.start
        pred = max(before, key=lambda e: e.key)
        end = pred.lba + pred.sectors
        room = self.region.start + self.region.sectors - end
        return torn.lba == end or (torn.lba == self.region.start and room < MAX_WRAP_SECTORS)

    @staticmethod
    def _boot_moved_on(present: dict[tuple[int, int], Entry], torn: Entry) -> bool:
        """Later boots may have left a torn tail of an earlier boot in place: allowed when the
        next boot's record names an earlier frame as the newest it found."""
        later = [e for (b, s), e in present.items() if b > torn.boot and s == 0 and e.boot_body]
        if not later:
            return True
        first = min(later, key=lambda e: e.boot)
        prior = first.boot_body.prior if first.boot_body else None
        return prior is None or (prior.boot, prior.seq) < (torn.boot, torn.seq)

    def _check_rotation(
        self,
        readable: list[Entry],
        cuts: list[int],
        present: dict[tuple[int, int], Entry],
    ) -> None:
        """The readable frames after the last cut reach the head unbroken. Missing history is
        rotation only if the region wrapped, and then every cut must have its older side in
        the dead zone the newest wrap declared (spec §8.3)."""
        suffix_start = cuts[-1] if cuts else 0
        oldest = readable[suffix_start]
        granted_from_here = oldest.chain is not None and oldest.seq == oldest.chain.base_seq > 0
        if suffix_start == 0 and (_is_genesis(oldest) or granted_from_here):
            return  # nothing missing, or nothing before it that we were ever meant to read
        start_frame = next((e for e in present.values() if e.lba == self.region.start), None)
        head = readable[-1]
        unknown = (
            self.torn_at_start
            # a frame we cannot read opened the newest lap: it cannot be newer than the head
            or (start_frame is not None and start_frame.status == "no_key" and start_frame.boot <= head.boot)
            or (start_frame is None and self._crash_while_wrapping(readable, present))
        )
        wrapped = start_frame is not None and start_frame.status == "ok" and start_frame.wrap_from > 0
        if wrapped and start_frame is not None and start_frame.key < oldest.key:
            # A wrap frame at the region start opens the newest lap, so it belongs to the
            # unbroken suffix; an older one there is an old copy restored over newer frames.
            self.add(
                Kind.FRAME_MISSING,
                f"the region start holds boot {start_frame.boot} seq {start_frame.seq}, older than the "
                f"newest lap (from boot {oldest.boot} seq {oldest.seq}): an old copy over newer frames",
                boot=start_frame.boot,
                seq=start_frame.seq,
                lba=start_frame.lba,
            )
            self.violated_boots.add(oldest.boot)
        if not (wrapped or unknown):
            why = "and the region never wrapped"
            if not _is_genesis(readable[0]):
                self._report_gap(None, readable[0], why)
            for i in cuts:
                self._report_gap(readable[i - 1], readable[i], why)
            return
        dead_from = self.region.start + start_frame.wrap_from if wrapped and start_frame else None
        for i in cuts:
            older = readable[i - 1]
            if not unknown and (dead_from is None or older.lba < dead_from):
                self._report_gap(older, readable[i], "outside the wrap's dead zone")
        for e in readable[:suffix_start]:
            if unknown or (dead_from is not None and e.lba >= dead_from):
                self.add(
                    Kind.STALE_REMNANT,
                    "an earlier lap's frame, left where the writer wrapped",
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
        self.add(
            Kind.ROTATED_OUT,
            f"history before boot {oldest.boot} seq {oldest.seq} was reclaimed by the ring",
            boot=oldest.boot,
            seq=oldest.seq,
            lba=oldest.lba,
        )

    def _crash_while_wrapping(self, readable: list[Entry], present: dict[tuple[int, int], Entry]) -> bool:
        """No frame at the region start: a crash in the middle of the write that wrapped the
        ring can leave it garbled with no header. That write did not fit in the room after
        the newest frame, and garbled at least its own length: so the room is smaller than
        the largest wrapping write and than the gap before the first surviving frame
        (spec §8.3). Later boots only shrink the room, so the case stays recognisable."""
        head = readable[-1]
        room = self.region.sectors - (head.lba - self.region.start + head.sectors)
        first = min(e.lba for e in present.values()) - self.region.start
        if room >= MAX_WRAP_SECTORS or first <= room:
            return False
        self.add(
            Kind.CRASH_TAIL,
            "no frame at the region start: consistent with a crash while the ring wrapped",
            boot=head.boot,
            lba=self.region.start,
        )
        return True

    def _report_gap(self, x: Entry | None, y: Entry, why: str) -> None:
        """Frames between x and y (or before y) are gone: name the first missing one. When y's
        boot record saw frames after x, the earlier boot was truncated after y started."""
        prior = y.boot_body.prior if y.seq == 0 and y.boot_body is not None else None
        kind = Kind.FRAME_MISSING
        if x is not None and prior is not None and (prior.boot, prior.seq) > x.key:
            kind = Kind.BOOT_TRUNCATED
            boot, seq = (x.boot, x.seq + 1) if prior.boot == x.boot else (prior.boot, prior.seq)
        elif x is not None and x.boot == y.boot:
            boot, seq = y.boot, x.seq + 1
        elif y.seq > 0:
            boot, seq = y.boot, 0
        elif x is not None:
            boot, seq = x.boot, x.seq + 1
        else:
            boot, seq = (prior.boot, prior.seq) if prior else (y.boot, y.seq)
        self.add(
            kind,
            f"frames from boot {boot} seq {seq} up to boot {y.boot} seq {y.seq} are missing, {why}",
            boot=boot,
            seq=seq,
            lba=y.lba,
        )
        self.violated_boots.add(y.boot)
