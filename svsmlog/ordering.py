"""The log order of one region (spec §8.3, §8.4): duplicates, links, boot claims, torn
frames and rotation, judged over the index of frames the scan found."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from . import crypto
from .codec import BootBody, RegionEntry
from .format import MAX_BOOT_SECTORS, MAX_FRAME_SECTORS, MAX_WRAP_SECTORS, FrameType
from .keyschedule import ReaderChain

if TYPE_CHECKING:
    from .origin import FrameEvidence
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
    owner_clear_len: int | None = None  # BOOT frames: bytes the owner envelopes take (§4.7)
    clear_len: int = 0  # the header's: a DATA or END frame has none (§8.2)
    leftover: bool = False  # unreadable, and older than a rotation the region proves (§8.3)
    evidence: FrameEvidence | None = None  # ok key frames: the boot's attestation items (§8.9)

    @property
    def key(self) -> tuple[int, int]:
        return (self.boot, self.seq)


def _is_genesis(e: Entry) -> bool:
    """The first frame a region ever held: a BOOT frame that found nothing before it."""
    return e.seq == 0 and e.boot_body is not None and e.boot_body.prior is None


class RegionJudge:
    """Judges one region's frames; what it learns beyond findings is kept on the instance."""

    def __init__(
        self, region: RegionEntry, add: Add, *, newest_boot: int = 0, started_before: set[int] | None = None
    ) -> None:
        self.region = region
        self.add = add
        # Boots with an ok BOOT frame in every region before this one (None: this is the
        # first region): after an END head, only such a boot's BOOT frame can have wrapped here.
        self.started_before = started_before
        self.newest_boot = newest_boot  # over every region: a crashed boot is at most one newer
        self.torn_tail_boots: set[int] = set()  # boots whose frames here end in a crash tail
        self.violated_boots: set[int] = set()  # boots a gap leaves incomplete here
        # What the region proves about its history, for the checks across regions (§8.7):
        # the oldest readable frame of the unbroken suffix, how the history before it went
        # ("genesis": nothing missing; "wrapped": a wrap frame proves rotation; "crash": only
        # a crash while wrapping explains it, unproven; "gap": reported missing), and the
        # stretch of log order a crash while wrapping excuses, if any.
        self.oldest: Entry | None = None
        self.history = "genesis"
        self.excused: tuple[tuple[int, int], tuple[int, int]] | None = None
        self.crash_head: Entry | None = None  # the head a crash while wrapping came after
        self.behind_unreadable = False  # the oldest readable frame follows frames we cannot read

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
        self._check_torn(entries, present, order)
        self._check_after_end(order)
        # Links are judged between frames we can read; an unreadable frame can neither
        # break the chain nor, being unauthenticated, stand in for a missing one (§8.3).
        readable = [e for e in order if e.status == "ok"]
        if readable:
            cuts = [
                i for i in range(1, len(readable)) if not self._link_ok(readable[i - 1], readable[i], present)
            ]
            self._check_rotation(readable, cuts, present, order)
            if self.history == "wrapped" and self.oldest is not None and not self.behind_unreadable:
                for e in order:
                    if e.status == "no_key" and e.key < self.oldest.key:
                        e.leftover = True
        return order

    def _check_after_end(self, order: list[Entry]) -> None:
        """After its END frame a boot writes nothing more to the stream (spec §7.3): a frame
        of that boot with a larger seq was written by someone else."""
        ends = {e.boot: e.seq for e in order if e.type == FrameType.END and e.status == "ok"}
        for e in order:
            end = ends.get(e.boot)
            if end is not None and e.seq > end:
                self.add(
                    Kind.FRAME_CORRUPT,
                    f"a frame after boot {e.boot}'s END frame (seq {end}): the writer writes nothing "
                    "to a stream after its END",
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
                self.violated_boots.add(e.boot)

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

    def _check_torn(
        self, entries: list[Entry], present: dict[tuple[int, int], Entry], order: list[Entry]
    ) -> None:
        """A torn frame is a crash if it carries the numbers the writer's next write would
        have (its header is unauthenticated: spec §8.4): the next seq of its boot here, or
        seq 0 of a boot at most one newer than any, and nothing of a later boot says otherwise.
        Each torn frame costs O(log n) (bisect over the log order), so a region of
        alternating torn headers stays linear in its size."""
        last_seq: dict[int, int] = {}
        ended: set[int] = set()
        for p in order:
            last_seq[p.boot] = max(last_seq.get(p.boot, -1), p.seq)
            if p.type == FrameType.END and p.status == "ok":
                ended.add(p.boot)  # the writer writes nothing more to this stream in boot b
        keys = [p.key for p in order]
        # seq-0 frames with a boot record, by boot: the first later boot says what it found
        starts = [p for p in order if p.seq == 0 and p.boot_body is not None]
        start_boots = [p.boot for p in starts]
        for e in entries:
            if e.status != "torn":
                continue
            next_write = (
                e.seq == last_seq.get(e.boot, -1) + 1
                and e.boot <= self.newest_boot + 1
                and (e.type == FrameType.BOOT) == (e.seq == 0)  # the writer's BOOT frame is seq 0
                and e.boot not in ended
            )
            i = bisect_left(keys, e.key)
            pred = order[i - 1] if i else None
            j = bisect_left(start_boots, e.boot + 1)
            later = starts[j] if j < len(starts) else None
            if next_write and self._where_next(e, pred) and self._boot_moved_on(later, e):
                self.add(
                    Kind.CRASH_TAIL,
                    "torn frame: the write was cut short by a crash",
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
                self.torn_tail_boots.add(e.boot)
            else:
                self.add(
                    Kind.FRAME_CORRUPT,
                    "frame fails authentication and its commit digest, and it is not the write the "
                    "writer would have made next: not a torn tail, it was changed",
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )

    def _where_next(self, torn: Entry, pred: Entry | None) -> bool:
        """The torn frame lies where the writer put its next write: right after the frame
        before it, or at the region start when too little room was left after that frame."""
        if pred is None:
            return torn.lba == self.region.start
        end = pred.lba + pred.sectors
        room = self.region.start + self.region.sectors - end
        return torn.lba == end or (torn.lba == self.region.start and room < MAX_WRAP_SECTORS)

    @staticmethod
    def _boot_moved_on(later: Entry | None, torn: Entry) -> bool:
        """Later boots may have left a torn tail of an earlier boot in place: allowed when the
        next boot's record names an earlier frame as the newest it found."""
        if later is None:
            return True
        prior = later.boot_body.prior if later.boot_body else None
        return prior is None or (prior.boot, prior.seq) < (torn.boot, torn.seq)

    def _check_rotation(
        self,
        readable: list[Entry],
        cuts: list[int],
        present: dict[tuple[int, int], Entry],
        order: list[Entry],
    ) -> None:
        """The readable frames after the last cut reach the head unbroken. Missing history is
        rotation only if an authenticated wrap frame opens the newest lap, and then every cut
        must have its older side in the dead zone that frame declares. Without one, only a
        crash while wrapping can explain it, and only in the shape such a crash leaves; that
        explanation rests on a torn or absent write, so it is reported unproven (spec §8.3)."""
        suffix_start = cuts[-1] if cuts else 0
        oldest = readable[suffix_start]
        self.oldest = oldest
        granted_from_here = oldest.chain is not None and oldest.seq == oldest.chain.base_seq > 0
        if suffix_start == 0 and (_is_genesis(oldest) or granted_from_here):
            return  # nothing missing, or nothing before it that we were ever meant to read
        start_frame = next((e for e in present.values() if e.lba == self.region.start), None)
        wrapped = start_frame is not None and start_frame.status == "ok" and start_frame.wrap_from > 0
        if suffix_start == 0 and self._follows_unreadable(oldest, present):
            # The history before it is here, just not ours to verify (reported no_key); an
            # authenticated wrap frame still proves what the ring reclaimed before that (§8.7).
            proven = wrapped and start_frame is not None and start_frame.key >= oldest.key
            self.history = "wrapped" if proven else "genesis"
            self.behind_unreadable = True  # those frames stay no_key: they are not reclaimed history
            return
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
        dead_from: int | None = None
        excused: int | None = None  # the one cut a crash while wrapping explains
        if wrapped and start_frame is not None:
            self.history = "wrapped"
            dead_from = self.region.start + start_frame.wrap_from
        else:
            crash = self._crash_while_wrapping(readable, cuts, order, start_frame)
            if crash is None:
                self.history = "gap"
                why = "and no authenticated wrap frame opens the region's newest lap"
                if not _is_genesis(readable[0]) and not self._follows_unreadable(readable[0], present):
                    self._report_gap(None, readable[0], why)
                for i in cuts:
                    self._report_gap(readable[i - 1], readable[i], why)
                return
            self.history = "crash"
            dead_from, excused = crash
        for i in cuts:
            older = readable[i - 1]
            if i == excused:
                continue
            if dead_from is None or older.lba < dead_from:
                self._report_gap(older, readable[i], "outside the wrap's dead zone")
        for e in readable[:suffix_start]:
            if dead_from is not None and e.lba >= dead_from:
                self.add(
                    Kind.STALE_REMNANT,
                    "an earlier lap's frame, left where the writer wrapped",
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
        leftovers = sum(1 for e in order if e.status == "no_key" and e.key < oldest.key)
        self.add(
            Kind.ROTATED_OUT,
            f"history before boot {oldest.boot} seq {oldest.seq} was reclaimed by the ring"
            + (f" ({leftovers} older frame(s) left that no key of ours opens)" if leftovers else ""),
            boot=oldest.boot,
            seq=oldest.seq,
            lba=oldest.lba,
        )

    @staticmethod
    def _follows_unreadable(e: Entry, present: dict[tuple[int, int], Entry]) -> bool:
        """A boot's BOOT frame whose record names, with the right tag, a frame that is here
        but that we cannot read: the history before it is there, just not ours to verify
        (reported no_key, unproven)."""
        prior = e.boot_body.prior if e.seq == 0 and e.boot_body is not None else None
        if prior is None:
            return False
        seen = present.get((prior.boot, prior.seq))
        return seen is not None and seen.status == "no_key" and crypto.ct_equal(seen.tag, prior.tag)

    def _crash_point(self, lap: list[Entry], order: list[Entry]) -> int | None:
        """The largest write that can have wrapped and torn, or None if no frame of the
        newest lap can have been the head when that crash came. The crash came after some
        frame f of the lap: the write after f did not fit in the room after f, and a crash
        ends a boot, so every later frame of the lap is of a newer boot than f's. After an
        END frame that write was a later boot's BOOT frame (at most MAX_BOOT_SECTORS); in a
        region after the first, that boot then has ok BOOT frames in every region before
        this one and none here. Later boots only shrink the room, so the crash stays
        recognisable (spec §8.3)."""
        end = self.region.start + self.region.sectors
        here = {e.boot for e in order}  # boots with any frame in this region
        newer = 1 << 32  # the smallest boot among the lap's frames after f
        best: int | None = None
        for f in reversed(lap):
            if f.boot < newer:
                w = MAX_BOOT_SECTORS if f.type == FrameType.END else MAX_WRAP_SECTORS
                room = end - (f.lba + f.sectors)
                later_boot = f.type != FrameType.END or self.started_before is None or any(
                    b > f.boot and b not in here for b in self.started_before
                )
                if room < w and later_boot:
                    best = max(best or 0, w)
            newer = min(newer, f.boot)
        return best

    def _crash_while_wrapping(
        self,
        readable: list[Entry],
        cuts: list[int],
        order: list[Entry],
        start_frame: Entry | None,
    ) -> tuple[int | None, int | None] | None:
        """Whether a crash in the write that wrapped the ring explains what is missing, and
        if so (dead zone start, index of the cut it excuses). That write went to the region
        start because it did not fit in the room after the head, so the room is smaller than
        the largest such write (a BOOT frame after an END frame, else a KEYS frame and a
        frame); torn, it garbled at most its own length from the region start, so the first
        survivor starts within that length plus one frame (the one it tore into).
        The frames it destroyed were the oldest of the newest lap: the
        survivors of that lap, from the first after the hole up to the head, lie back to back;
        the older side of the one cut it leaves lies after the head (the previous lap), and
        that lap ended where it wrapped, so older remnants lie after it. Nothing here is
        authenticated but the frames around the hole: reported unproven (spec §8.3)."""
        if start_frame is not None and start_frame.status != "no_key":
            return None  # an authenticated frame at the region start that opens no lap
        if start_frame is not None:
            return None  # a frame we cannot read there: nothing authenticated explains the hole
        head = readable[-1]
        start = self.region.start
        s = cuts[-1] if cuts else 0
        first = readable[s]  # the oldest survivor of the newest lap
        if any(e.lba < first.lba for e in order):
            return None  # the hole must be the region start, nothing before the lap's survivors
        lap = [e for e in order if e.key >= first.key]
        if any(b.lba != a.lba + a.sectors for a, b in pairwise(lap)):
            return None  # the newest lap is written back to back
        w_max = self._crash_point(lap, order)
        # The hole is the torn write's sectors, up to the end of the frame it tore into.
        if w_max is None or not 0 < first.lba - start < w_max + MAX_FRAME_SECTORS:
            return None
        dead_from = None
        if cuts:
            older = readable[s - 1]
            if older.lba < head.lba + head.sectors:
                return None  # the previous lap's survivors lie after the newest lap's head
            dead_from = older.lba + older.sectors
        self.excused = (readable[s - 1].key if cuts else (0, 0), first.key)
        self.crash_head = head
        self.add(
            Kind.CRASH_TAIL,
            "no authenticated frame at the region start: consistent with a crash while the ring wrapped",
            boot=head.boot,
            lba=self.region.start,
        )
        before = f"boot {readable[s - 1].boot} seq {readable[s - 1].seq}" if cuts else "the region start"
        self.add(
            Kind.UNPROVEN,
            f"frames between {before} and boot {first.boot} seq {first.seq} are missing; a crash while "
            "wrapping explains it, but that rests on bytes nobody authenticated (a torn or absent write "
            "at the region start), so this stretch of history is not proven",
            boot=first.boot,
            seq=first.seq,
            lba=first.lba,
        )
        return dead_from, (s if cuts else None)

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
