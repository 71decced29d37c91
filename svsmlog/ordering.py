"""The log order of one region (spec §8.3, §8.4): duplicates, links, boot claims, torn
frames and rotation, judged over the index of frames the scan found."""

from __future__ import annotations

from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import accumulate, islice, pairwise
from typing import TYPE_CHECKING, Any, overload

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


_DATA = FrameType.DATA


class Run:
    """Frames an honest log is made of, kept in about 20 bytes each instead of an Entry:
    authenticated DATA frames of one boot, back to back in the region, each the next seq of
    the one before, chaining to it (``prev_tag``) under the same chain, with nothing else
    to say (no body to keep, not malformed). The first is kept as its Entry (``head``); of
    the others, each one's sector offset from it and tag, and their records, panic and
    times only as totals (what ``Verifier._summarise`` adds up).

    Every check judges a run as it would judge its frames one by one (the links inside it
    hold and raise nothing); ``frame(i)`` makes an Entry of frame i for the few that look
    at one, with no record figures (``records`` 0, no times). A region whose runs share a
    key with any other frame (a duplicate) is verified again with an Entry per frame
    (``FrameIndex.overlaps``): only then does the first copy of a key decide which frame
    is judged."""

    __slots__ = ("_offs", "_tags", "count", "end", "first_t", "head", "last_sectors", "last_t", "last_tag",
                 "next_seq", "panic", "records")

    status = "ok"
    type = _DATA

    def __init__(self, head: Entry) -> None:
        self.head = head
        self.count = 1
        self._offs = array("I")  # sector offset from head.lba of frames 1.. (their lba)
        self._tags = bytearray()  # tags of frames 1..
        self.last_sectors = head.sectors
        self.end = head.lba + head.sectors  # the sector after its last frame
        self.last_tag = head.tag
        self.next_seq = head.seq + 1
        self.records, self.panic = 0, False  # of frames 1..
        self.first_t: int | None = None  # of frames 1..: the smallest first_t, the largest last_t
        self.last_t: int | None = None

    @property
    def boot(self) -> int:
        return self.head.boot

    @property
    def first_seq(self) -> int:
        return self.head.seq

    @property
    def last_seq(self) -> int:
        return self.head.seq + self.count - 1

    @property
    def lba(self) -> int:
        return self.head.lba

    @property
    def chain(self) -> ReaderChain | None:
        return self.head.chain

    def follows(self, e: Entry) -> bool:
        """Whether ``e`` continues this run (``boring(e)`` already holds)."""
        return (
            e.seq == self.next_seq
            and e.lba == self.end
            and e.boot == self.head.boot
            and e.chain is self.head.chain
            and e.prev_tag == self.last_tag
        )

    def take(self, e: Entry) -> None:
        self.take_frame(e.lba, e.sectors, e.tag, e.records, e.panic, e.first_t, e.last_t)

    def take_frame(self, lba: int, sectors: int, tag: bytes, records: int, panic: bool,
                   first_t: int | None, last_t: int | None) -> None:
        """``take`` of a frame given by its fields: the verifier's fast lane makes no Entry."""
        self._offs.append(lba - self.head.lba)
        self._tags += tag
        self.last_tag = tag
        self.last_sectors = sectors
        self.end = lba + sectors
        self.next_seq += 1
        self.count += 1
        self.records += records
        self.panic |= panic
        if first_t is not None:
            self.first_t = first_t if self.first_t is None else min(self.first_t, first_t)
            self.last_t = last_t if self.last_t is None else max(self.last_t, last_t or 0)

    def take_frames(self, lbas: list[int], tags: bytes, last_sectors: int, records: int, panic: bool,
                    first_t: int | None, last_t: int | None) -> None:
        """``take_frame`` of frames back to back at ``lbas`` (the last of ``last_sectors``),
        given their tags end to end and their records, panic and times as totals."""
        base = self.head.lba
        self._offs.extend([lba - base for lba in lbas])
        self._tags += tags
        self.last_tag = tags[-TAG:]
        self.last_sectors = last_sectors
        self.end = lbas[-1] + last_sectors
        self.next_seq += len(lbas)
        self.count += len(lbas)
        self.records += records
        self.panic |= panic
        if first_t is not None:
            self.first_t = first_t if self.first_t is None else min(self.first_t, first_t)
            self.last_t = last_t if self.last_t is None else max(self.last_t, last_t or 0)

    def extend(self, other: Run) -> None:
        """Take the frames of ``other``, which continues this run (``follows(other.head)``)."""
        self.take(other.head)
        base = other.head.lba - self.head.lba
        self._offs.extend(base + o for o in other._offs)
        self._tags += other._tags
        self.count += other.count - 1
        self.last_sectors, self.end = other.last_sectors, other.end
        self.last_tag, self.next_seq = other.last_tag, other.next_seq
        self.records += other.records
        self.panic |= other.panic
        if other.first_t is not None:
            self.first_t = other.first_t if self.first_t is None else min(self.first_t, other.first_t)
            self.last_t = other.last_t if self.last_t is None else max(self.last_t, other.last_t or 0)

    def pack(self) -> tuple[Any, ...]:
        """Its fields, its head's as a tuple and no chain: what a worker hands back (parallel)."""
        head = tuple(None if f == "chain" else getattr(self.head, f) for f in Entry.__slots__)
        return (head, self._offs.tobytes(), bytes(self._tags), self.count, self.last_sectors, self.end,
                self.last_tag, self.next_seq, self.records, self.panic, self.first_t, self.last_t)

    @classmethod
    def unpack(cls, packed: tuple[Any, ...], chain: ReaderChain | None) -> Run:
        head, offs, tags, *rest = packed
        e = Entry(*head)
        e.chain = chain
        run = cls(e)
        run._offs.frombytes(offs)
        run._tags += tags
        (run.count, run.last_sectors, run.end, run.last_tag, run.next_seq, run.records, run.panic,
         run.first_t, run.last_t) = rest
        return run

    @property
    def largest(self) -> int:
        """The most sectors any of its frames takes."""
        offs = self._offs
        inner = max((b - a for a, b in pairwise(offs)), default=0)
        return max(self.head.sectors if not offs else offs[0], inner, self.last_sectors)

    def __len__(self) -> int:
        return self.count

    def frame(self, i: int) -> Entry:
        if i < 0:
            i += self.count
        if i == 0:
            return self.head
        if not 0 < i < self.count:
            raise IndexError(i)
        h = self.head
        offs = self._offs
        sectors = offs[i] - offs[i - 1] if i < self.count - 1 else self.last_sectors
        tag = bytes(self._tags[(i - 1) * TAG : i * TAG])
        prev = h.tag if i == 1 else bytes(self._tags[(i - 2) * TAG : (i - 1) * TAG])
        return Entry(h.lba + offs[i - 1], _DATA, h.boot, h.seq + i, sectors, tag, prev, "ok", h.chain)

    @property
    def last(self) -> Entry:
        return self.frame(self.count - 1)

    def frames(self) -> Iterator[Entry]:
        for i in range(self.count):
            yield self.frame(i)

    def spans(self, lo: int = 0, hi: int | None = None) -> Iterator[tuple[int, int, int]]:
        """(lba, sectors, seq) of frames lo..hi-1 (every frame by default), in order: what the
        record pass reads."""
        h = self.head
        offs = self._offs
        last = self.count - 1
        hi = self.count if hi is None else hi
        lba = h.lba if lo == 0 else h.lba + offs[lo - 1]
        for i in range(lo, min(hi, last)):
            nxt = h.lba + offs[i]
            yield lba, nxt - lba, h.seq + i
            lba = nxt
        if hi > last >= lo:
            yield lba, self.last_sectors, h.seq + last


TAG = 16  # bytes of a frame's tag


def boring(e: Entry) -> bool:
    """A frame a Run may hold: authenticated DATA with nothing else to keep."""
    return (
        e.type == _DATA
        and e.status == "ok"
        and not e.malformed
        and e.boot_body is None
        and e.evidence is None
        and e.owner_clear_len is None
        and not e.wrap_from
        and not e.clear_len
        and not e.leftover
        and e.chain is not None
        and len(e.tag) == TAG
    )


Item = Entry | Run


def first_key(item: Item) -> tuple[int, int]:
    return item.head.key if isinstance(item, Run) else item.key


def last_frame(item: Item) -> Entry:
    return item.last if isinstance(item, Run) else item


def head_frame(item: Item) -> Entry:
    return item.head if isinstance(item, Run) else item


def item_end(item: Item) -> int:
    return item.end if isinstance(item, Run) else item.lba + item.sectors


class FrameIndex:
    """A region's frames as the scan found them, in disk order: an Entry each, except that
    consecutive frames an honest writer makes (``boring``) are merged into Runs."""

    def __init__(self, compact: bool = True) -> None:
        self.items: list[Item] = []
        self.compact = compact

    def append(self, e: Entry) -> None:
        items = self.items
        if self.compact and items and boring(e):
            last = items[-1]
            run = last if isinstance(last, Run) else Run(last) if boring(last) else None
            if run is not None and run.follows(e):
                run.take(e)
                if run is not last:
                    items[-1] = run
                return
        items.append(e)

    def append_run(self, run: Run) -> None:
        """Frames a worker kept as a run, appended as ``append`` would each of them."""
        items = self.items
        if items:
            last = items[-1]
            into = last if isinstance(last, Run) else Run(last) if boring(last) else None
            if into is not None and into.follows(run.head):
                into.extend(run)
                if into is not last:
                    items[-1] = into
                return
        items.append(run)

    def __iter__(self) -> Iterator[Item]:
        return iter(self.items)

    def frame_count(self) -> int:
        return sum(len(x) if isinstance(x, Run) else 1 for x in self.items)

    def overlaps(self) -> bool:
        """Whether a Run shares a key with another frame that may be judged (ok or no_key):
        then which copy of a key is judged depends on frames a Run does not keep."""
        ranges = sorted(
            (x.boot, x.first_seq, x.last_seq, True) if isinstance(x, Run) else (x.boot, x.seq, x.seq, False)
            for x in self.items
            if x.status in ("ok", "no_key")
        )
        boot, reach, run_reach = None, -1, -1  # per boot: the largest seq of any range, of any run
        for b, lo, hi, run in ranges:
            if b != boot:
                boot, reach, run_reach = b, -1, -1
            if lo <= run_reach or (run and lo <= reach):
                return True
            reach = max(reach, hi)
            if run:
                run_reach = max(run_reach, hi)
        return False


class Frames(Sequence[Entry]):
    """Items read as the frames they hold, for the checks that count frames by position."""

    def __init__(self, items: list[Item]) -> None:
        self.items = items
        self._starts = list(accumulate((len(x) if isinstance(x, Run) else 1 for x in items), initial=0))

    def __len__(self) -> int:
        return self._starts[-1]

    @overload
    def __getitem__(self, i: int) -> Entry: ...

    @overload
    def __getitem__(self, i: slice) -> list[Entry]: ...

    def __getitem__(self, i: int | slice) -> Entry | list[Entry]:
        if isinstance(i, slice):
            return list(islice(self, *i.indices(len(self))))
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        k = bisect_right(self._starts, i) - 1
        item = self.items[k]
        return item.frame(i - self._starts[k]) if isinstance(item, Run) else item

    def __iter__(self) -> Iterator[Entry]:
        for x in self.items:
            if isinstance(x, Run):
                yield from x.frames()
            else:
                yield x

    def start_of(self, k: int) -> int:
        """The position of item k's first frame."""
        return self._starts[k]


def frames_of(items: Iterable[Item]) -> Iterator[Entry]:
    for x in items:
        if isinstance(x, Run):
            yield from x.frames()
        else:
            yield x


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
        self._runs: list[Run] = []  # the judged index's runs

    def judge(self, index: FrameIndex) -> list[Item]:
        """Order, chain, claims, rotation (spec §8.3). Returns the frames in log order (Runs
        for the frames they hold; none shares a key with another: ``FrameIndex.overlaps``)."""
        present: dict[tuple[int, int], Entry] = {}
        runs: list[Run] = []
        for e in sorted((e for e in index if e.status in ("ok", "no_key")), key=lambda e: e.lba):
            if isinstance(e, Run):
                runs.append(e)
                continue
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
        order: list[Item] = sorted([*present.values(), *runs], key=first_key)
        self._runs = runs
        self._check_torn(index, present, order)
        self._check_after_end(order)
        # Links are judged between frames we can read; an unreadable frame can neither
        # break the chain nor, being unauthenticated, stand in for a missing one (§8.3).
        readable = Frames([e for e in order if e.status == "ok"])
        if readable:
            # Between the frames of a run the link holds (``Run.follows``): only where one
            # item meets the next is there anything to judge.
            cuts = []
            items = readable.items
            for k in range(1, len(items)):
                if not self._link_ok(last_frame(items[k - 1]), head_frame(items[k]), present):
                    cuts.append(readable.start_of(k))
            self._check_rotation(readable, cuts, present, order)
            if self.history == "wrapped" and self.oldest is not None and not self.behind_unreadable:
                for e in order:
                    if e.status == "no_key" and isinstance(e, Entry) and e.key < self.oldest.key:
                        e.leftover = True
        return order

    def _check_after_end(self, order: list[Item]) -> None:
        """After its END frame a boot writes nothing more to the stream (spec §7.3): a frame
        of that boot with a larger seq was written by someone else."""
        ends = {e.boot: e.seq for e in order
                if isinstance(e, Entry) and e.type == FrameType.END and e.status == "ok"}
        if not ends:
            return
        for e in frames_of(x for x in order if x.boot in ends and _last_seq(x) > ends[x.boot]):
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
        self, entries: FrameIndex, present: dict[tuple[int, int], Entry], order: list[Item]
    ) -> None:
        """A torn frame is a crash if it carries the numbers the writer's next write would
        have (its header is unauthenticated: spec §8.4): the next seq of its boot here, or
        seq 0 of a boot at most one newer than any, and nothing of a later boot says otherwise.
        Each torn frame costs O(log n) (bisect over the log order), so a region of
        alternating torn headers stays linear in its size."""
        last_seq: dict[int, int] = {}
        ended: set[int] = set()
        for p in order:
            last_seq[p.boot] = max(last_seq.get(p.boot, -1), _last_seq(p))
            if p.type == FrameType.END and p.status == "ok":
                ended.add(p.boot)  # the writer writes nothing more to this stream in boot b
        keys = [first_key(p) for p in order]
        # seq-0 frames with a boot record, by boot: the first later boot says what it found
        starts = [p for p in order if isinstance(p, Entry) and p.seq == 0 and p.boot_body is not None]
        start_boots = [p.boot for p in starts]
        for e in entries:
            if e.status != "torn" or isinstance(e, Run):
                continue
            next_write = (
                e.seq == last_seq.get(e.boot, -1) + 1
                and e.boot <= self.newest_boot + 1
                and (e.type == FrameType.BOOT) == (e.seq == 0)  # the writer's BOOT frame is seq 0
                and e.boot not in ended
            )
            i = bisect_left(keys, e.key)
            pred = _frame_before(order[i - 1], e.key) if i else None
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
        readable: Frames,
        cuts: list[int],
        present: dict[tuple[int, int], Entry],
        order: list[Item],
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
        heads = [*present.values(), *(r.head for r in self._runs)]  # only a run's first frame can be there
        start_frame = next((e for e in heads if e.lba == self.region.start), None)
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
        older_lap = readable.items[: bisect_right(readable._starts, suffix_start) - 1]
        for e in frames_of(x for x in older_lap if dead_from is not None and last_frame(x).lba >= dead_from):
            if dead_from is not None and e.lba >= dead_from:
                self.add(
                    Kind.STALE_REMNANT,
                    "an earlier lap's frame, left where the writer wrapped",
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
        leftovers = sum(1 for e in order if e.status == "no_key" and first_key(e) < oldest.key)
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

    def _crash_point(self, lap: list[Item], order: list[Item]) -> int | None:
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
        # Of a run's frames (one boot) only the last can count: the others are not of a
        # smaller boot than the frame after them.
        for f in map(last_frame, reversed(lap)):
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
        readable: Frames,
        cuts: list[int],
        order: list[Item],
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
        # first starts an item (a cut, or the first readable frame), so the lap is whole items
        lap = [e for e in order if first_key(e) >= first.key]
        if any(b.lba != item_end(a) for a, b in pairwise(lap)):
            return None  # the newest lap is written back to back (inside a run it is)
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


def _last_seq(item: Item) -> int:
    return item.last_seq if isinstance(item, Run) else item.seq


def _frame_before(item: Item, key: tuple[int, int]) -> Entry:
    """The frame with the largest key below ``key``, given the item holding it (the last
    item whose first key is below ``key``)."""
    if isinstance(item, Run) and (item.boot, item.first_seq) < key <= (item.boot, item.last_seq):
        return item.frame(key[1] - 1 - item.first_seq)
    return last_frame(item)
