"""The verifying reader (spec §8): image -> volume -> frames -> records + report.

Three passes, each streaming over the regions with memory bounded by the number of
frames (an index entry per frame, never the data; about 20 bytes a frame of an honest
log, whose consecutive frames the index keeps as runs: ordering.Run):

1. key harvest: open every envelope addressed to one of our keys;
2. verification: scan each region, authenticate every frame (one AEAD call), decode
   its records, and check the chain, the boot claims, rotation and the anchor;
3. on demand, ``records()`` reads the verified frames again in log order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Iterator
from contextlib import suppress
from itertools import groupby

from . import crypto
from .anchor import FIELD_ANCHOR, Anchor, AnchorError, ReportAnchor
from .codec import (
    DecodeError,
    Envelope,
    RecordColumns,
    RegionEntry,
    clear_section_len,
    decode_boot_body,
    decode_clear_section,
    decode_frame_header,
    decode_keys_body,
    decode_record_block,
    decode_record_columns,
    records_of,
    summarize_record_block,
    unpack_frame_header,
)
from .device import SECTOR
from .format import (
    FRAME_HEADER_LEN,
    FRAME_MAGIC,
    KEY_DIR_SLOT_SECTORS,
    KEYS_BODY_LEN,
    MAX_CT_LEN,
    TAG_LEN,
    VERSION,
    DebugCeiling,
    EnvelopeKind,
    FrameType,
    Layout,
    frame_sectors,
)
from .frames import open_frame
from .keyring import MAX_FAILED_ENVELOPES, KeyConflict, Keyring, StreamKey, harvest
from .keyschedule import RatchetBudget, RatchetExhausted, ReaderChain
from .ordering import (
    Entry,
    FrameIndex,
    Frames,
    Item,
    RegionJudge,
    Run,
    boring,
    frames_of,
    head_frame,
    last_frame,
)
from .origin import OriginJudge, OriginPolicy, frame_evidence
from .parallel import (
    ChunkScan,
    ScanEvent,
    entry_fields,
    frames_large_enough,
    map_forked,
    may_run_in_parallel,
    plan_chunks,
    stitch,
)
from .records import LocatedRecord
from .report import Kind, Report, StreamSpan
from .scan import Candidate, Malformed, ReadSectors, scan_region
from .volume import KEY_DIR_SLOTS, KEY_DIRECTORY, Volume, key_dir_slot, read_volume

# The reader's public surface: keys come from keyring.py, the rest is here.
__all__ = ["Keyring", "StreamKey", "Verifier", "VolumeError"]


# The record pass reads a run's frames this many sectors at a time (one window per stream
# is alive while records() merges the streams).
RECORD_WINDOW_SECTORS = 128

# Frame types as plain ints for the per-frame tests (an enum member is a class attribute
# lookup each time).
_KEY_FRAME_TYPES = frozenset({int(FrameType.BOOT), int(FrameType.KEYS)})
_DATA_OR_END = (int(FrameType.DATA), int(FrameType.END))


class VolumeError(Exception):
    """The image does not hold a readable svsmlog volume (bad superblock or geometry)."""


class Verifier:
    def __init__(
        self,
        read: ReadSectors,
        sector_count: int,
        keyring: Keyring,
        *,
        base_offset: int = 0,
        progress: Callable[[int], None] | None = None,
        origin: OriginPolicy | None = None,
        on_pass: Callable[[str], None] | None = None,
        on_wait: Callable[[], None] | None = None,
    ) -> None:
        self._read = read
        self._origin = origin or OriginPolicy()
        self._base = base_offset
        self._progress = progress
        # For a progress display (svsmlog.cli.common.ReadProgress): on_pass("keys") before the
        # key harvest reads the regions, on_pass("verifying") before the frame checks do (again
        # if the workers' scans are redone); on_wait while forked workers scan (map_forked).
        self._on_pass = on_pass or (lambda name: None)
        self._on_wait = on_wait
        try:
            self.volume: Volume = read_volume(read(0, 1), sector_count)
        except DecodeError as e:
            raise VolumeError(str(e)) from None
        self.keyring = keyring
        self._sector_count = sector_count
        # The index keeps consecutive frames of an honest log as Runs (ordering.Run), so that
        # memory does not grow with frames; a region where that would change what is judged
        # (a run shares a key with another frame) makes run() start again without them.
        self._compact = True
        # Runs grow a scan window at a time (_take_frames); off, every frame takes the
        # general path (the tests compare the two).
        self._lane = True
        self._start()

    def _start(self) -> None:
        """The state run() builds up, as before anything was read but the superblock."""
        self.report = Report(self.volume.volume_id)
        self._chains: dict[tuple[int, int], list[ReaderChain]] = {}
        self._unopened: set[int] = set()  # key frames whose envelope for our key fails (§8.2)
        self._entries: dict[int, Frames] = {}  # verified frames of each stream, in log order
        self._violated: set[tuple[int, str]] = set()
        self._done = False
        self._torn_slots: list[Entry] = []
        self._slots: dict[int, Entry] = {}  # accepted key-directory slots, by boot
        self._slot_headers: set[int] = set()  # boots with any slot header in place (corrupt ones too)
        self._conflicts: list[KeyConflict] = []
        self._budget = RatchetBudget.for_volume(self._sector_count)
        self._ours = 0  # frames carrying our volume id
        self._foreign: dict[bytes, int] = {}  # frames carrying another volume id, by id
        self._superblock_reported = False
        self._exhausted = False  # the ratchet budget ran out (parallel scans must then be redone)
        self.scanned_in_parallel = False  # run(jobs > 1) used the workers' scans (not redone)

    # ------------------------------------------------------------------ helpers

    def _off(self, lba: int) -> int:
        return self._base + lba * SECTOR

    def _add(
        self,
        kind: Kind,
        detail: str,
        region: RegionEntry | None,
        *,
        boot: int | None = None,
        seq: int | None = None,
        lba: int | None = None,
    ) -> None:
        name = region.name if region else None
        self.report.add(
            kind, detail, stream=name, boot=boot, seq=seq, offset=self._off(lba) if lba is not None else None
        )
        if kind.severity.value == "violation" and boot is not None and name is not None:
            self._violated.add((boot, name))

    def _add_at(self, kind: Kind, detail: str, region: RegionEntry | None, e: Entry) -> None:
        """A finding located at frame ``e``."""
        self._add(kind, detail, region, boot=e.boot, seq=e.seq, lba=e.lba)

    def _adder(self, region: RegionEntry) -> Callable[..., None]:
        """_add bound to one region, for the region judge."""
        return lambda kind, detail, **where: self._add(kind, detail, region, **where)

    # ------------------------------------------------------------------ pass 1: keys

    def _flood(self, region: RegionEntry, boot: int | None) -> None:
        if boot is None:
            self._add(
                Kind.ENVELOPE_FLOOD,
                f"more than {MAX_FAILED_ENVELOPES} envelopes addressed to our key do not open; "
                "stopped trying",
                region,
            )
        elif not any(f.kind is Kind.ENVELOPE_FLOOD and f.boot == boot for f in self.report.findings):
            self._add(
                Kind.ENVELOPE_FLOOD,
                f"more keys for boot {boot} open than any writer seals; only the first are used",
                region,
                boot=boot,
            )

    # ------------------------------------------------------------------ pass 2: frames

    def _verify_candidate(self, region: RegionEntry, c: Candidate) -> Entry | None:
        h, vid = c.header, self.volume.volume_id
        if h.volume_id != vid:
            # Regions are zeroed at format, so no frame of another volume is there honestly,
            # torn or not (spec §7.1).
            self._foreign[h.volume_id] = self._foreign.get(h.volume_id, 0) + 1
            self._add(
                Kind.FRAME_FOREIGN,
                f"a frame of volume {h.volume_id.hex()} (boot {h.boot}, stream {h.stream}, seq {h.seq})",
                region,
                lba=c.lba,
            )
            return None
        if h.stream != region.stream:
            self._add(
                Kind.FRAME_MISPLACED,
                f"a frame of stream {h.stream} in region {region.name!r}",
                region,
                boot=h.boot,
                seq=h.seq,
                lba=c.lba,
            )
            return None
        if h.lba != c.lba:
            self._add(
                Kind.FRAME_MOVED,
                f"a frame written at sector {h.lba} found at sector {c.lba}",
                region,
                boot=h.boot,
                seq=h.seq,
                lba=c.lba,
            )
            return None
        self._ours += 1
        entry = Entry(
            c.lba, h.type, h.boot, h.seq, h.sectors, c.tag, h.prev_tag, "no_key", clear_len=h.clear_len
        )
        chains = self._chains.get((h.boot, h.stream), [])
        plaintext = None
        for chain in chains:
            try:
                keys = chain.keys_at(h.seq)
            except RatchetExhausted:
                self._exhausted = True
                entry.status = "corrupt"
                self._add(
                    Kind.FRAME_CORRUPT,
                    f"claims seq {h.seq}, further than the reader's ratchet budget reaches (spec §8.2)",
                    region,
                    boot=h.boot,
                    seq=h.seq,
                    lba=c.lba,
                )
                return entry
            if keys is None:
                continue
            plaintext = open_frame(c.raw, c.clear, c.ciphertext, *keys)
            if plaintext is not None:
                entry.chain = chain
                break
        if plaintext is None:
            usable = any(ch.base_seq <= h.seq for ch in chains)
            if not c.digest_ok():
                entry.status = "torn"
                return entry
            if not usable and c.lba not in self._unopened:
                c.accepted = True  # complete, and no key of ours: no_key
                return entry
            entry.status = "corrupt"
            why = "authentication tag does not verify" if usable else "envelope for our key does not open"
            self._add(
                Kind.FRAME_CORRUPT, f"complete frame whose {why}", region, boot=h.boot, seq=h.seq, lba=c.lba
            )
            return entry
        c.accepted = True
        entry.status = "ok"
        if h.type in _KEY_FRAME_TYPES:
            try:
                envelopes = decode_clear_section(c.clear)
            except DecodeError:
                envelopes = []  # harvest reported it (frame_corrupt) where it is complete
            entry.evidence = frame_evidence(envelopes, h.type)
            if region is not KEY_DIRECTORY:
                # BOOT and WRAP_REKEY frames carry the boot's BOOT_SECRET envelopes (a grant's
                # KEYS frame none): their size says whether the boot's slot could be written
                entry.owner_clear_len = _owner_clear_len(envelopes)
        self._decode_body(region, entry, plaintext)
        return entry

    def _take_frames(self, region: RegionEntry, run: Run, buf: bytes, off: int, lba: int, stop: int,
                     w_end: int, budget: int) -> int:
        """The fast lane of an honest log, a scan window at a time (a ``scan.Lane``): from
        ``lba`` on, each frame that starts before ``stop``, lies whole in the window (sector
        ``lba`` at byte ``off`` of ``buf``, which ends at sector ``w_end``) and is the next
        frame of ``run`` (the next DATA frame of its boot, right after it, chaining to it,
        under its chain, which is the only one the boot's stream has), authenticated and
        well formed, is taken into the run: exactly what the scan, ``_verify_candidate`` and
        ``FrameIndex.append`` would do with it, without a Candidate or an Entry. Returns the
        sector after the last frame taken, ``lba`` if none. The scan then decodes the first
        frame not taken as it always did, so whatever this refuses, for any reason, is
        judged by the general path (tests/test_index.py holds the two equal)."""
        head = run.head
        chain = head.chain
        stream = region.stream
        chains = self._chains.get((head.boot, stream))
        if chain is None or chains is None or len(chains) != 1 or chains[0] is not chain:
            return lba
        if lba != run.end:
            return lba
        boot, vid, data = head.boot, self.volume.volume_id, _DATA_OR_END[0]
        size, unpack, first_lba = len(buf), unpack_frame_header, lba
        next_seq, last_tag = run.next_seq, run.last_tag
        # What the frames taken add to the run, handed to it at the end in one call.
        offs: list[int] = []
        tags: list[bytes] = []
        firsts: list[int] = []
        lasts: list[int] = []
        records, panic, sectors = 0, False, 0
        while lba < stop and size - off >= FRAME_HEADER_LEN:
            # The header as decode_frame_header checks it (magic, version, a known type, a
            # boot, both lengths in range: implied here, or tested), and as a run's next frame.
            magic, version, ftype, h_stream, h_boot, seq, h_lba, h_vid, prev, clear_len, ct_len, _ = (
                unpack(buf, off))
            if not (
                seq == next_seq
                and h_lba == lba
                and ftype == data
                and not clear_len
                and h_boot == boot
                and h_stream == stream
                and prev == last_tag
                and h_vid == vid
                and magic == FRAME_MAGIC
                and version == VERSION
                and TAG_LEN <= ct_len <= MAX_CT_LEN
            ):
                break
            body = FRAME_HEADER_LEN + ct_len
            n = -(-body // SECTOR)
            if lba + n > w_end or budget < n * SECTOR:
                break  # the scan refills its window first, or stops (spec §8.1)
            try:
                keys = chain.keys_at(seq)  # raising, it raises again on the slow path, spending nothing
            except RatchetExhausted:
                break
            if keys is None:
                break
            raw = buf[off : off + body]
            plaintext = open_frame(raw, b"", raw[FRAME_HEADER_LEN:], *keys)
            if plaintext is None:
                break
            try:
                count, has_panic, first_t, last_t = summarize_record_block(plaintext)
            except DecodeError:
                break
            offs.append(lba)
            last_tag = raw[-TAG_LEN:]
            tags.append(last_tag)
            records += count
            if has_panic:
                panic = True
            if first_t is not None:
                firsts.append(first_t)
                lasts.append(last_t)  # type: ignore[arg-type]  # both or neither
            next_seq += 1
            sectors = n
            lba += n
            off += n * SECTOR
        if lba != first_lba:
            run.take_frames(offs, b"".join(tags), sectors, records, panic,
                            min(firsts) if firsts else None, max(lasts) if lasts else None)
        return lba

    def _decode_body(self, region: RegionEntry, e: Entry, plaintext: bytes) -> None:
        try:
            if e.type == _DATA_OR_END[0] or e.type == _DATA_OR_END[1]:  # most frames
                if e.clear_len:
                    raise DecodeError("a DATA or END frame carries a clear section")
                summary = summarize_record_block(plaintext)
                e.records, e.panic = summary.count, summary.panic
                e.first_t, e.last_t = summary.first_t, summary.last_t
            elif e.type == FrameType.BOOT:
                e.boot_body = decode_boot_body(plaintext)
                e.wrap_from = e.boot_body.wrap_from
                self._check_superblock(region, e, e.boot_body.superblock_digest)
            elif e.type == FrameType.KEYS:
                keys_body = decode_keys_body(plaintext)
                e.wrap_from = keys_body.wrap_from
                self._check_superblock(region, e, keys_body.superblock_digest)
        except DecodeError as err:
            e.malformed = True
            self._add_at(
                Kind.RECORD_MALFORMED,
                f"authenticated frame body does not parse: {err}",
                region,
                e,
            )

    def _scan(self, region: RegionEntry) -> FrameIndex:
        entries = FrameIndex(self._compact)
        items = entries.items

        def lane(buf: bytes, off: int, lba: int, stop: int, w_end: int, budget: int) -> int:
            last = items[-1] if items else None
            if type(last) is not Run:
                return lba
            count = last.count
            end = self._take_frames(region, last, buf, off, lba, stop, w_end, budget)
            self._ours += last.count - count
            return end

        for c in scan_region(self._read, region, lane=lane if self._lane and not self._progress else None):
            e = self._visit(region, c)
            if e is not None:
                entries.append(e)
            if self._progress is not None:
                self._progress(c.lba)
        return entries

    def _visit(self, region: RegionEntry, c: Candidate | Malformed) -> Entry | None:
        if isinstance(c, Malformed):
            self._add(
                Kind.FRAME_CORRUPT, f"frame magic without a valid header: {c.reason}", region, lba=c.lba
            )
            return None
        return self._verify_candidate(region, c)

    def _scan_regions(self, jobs: int) -> dict[int, FrameIndex]:
        regions = self.volume.superblock.regions
        big = may_run_in_parallel(self.volume, jobs) and frames_large_enough(self.volume, self._frame_sectors)
        if big and self._progress is None:
            groups = plan_chunks(regions, jobs, self._frame_sectors)
            self._on_pass("verifying")
            done: list[list[ChunkScan]] = map_forked(
                lambda g: [self._scan_chunk(regions[i], lo, hi) for i, lo, hi in groups[g]],
                len(groups), jobs, self._on_wait,
            )
            pieces = [
                (i, scan)
                for g, scans in zip(groups, done, strict=True)
                for (i, _, _), scan in zip(g, scans, strict=True)
            ]
            scans = [scan for _, scan in pieces]
            steps = sum(s.steps for s in scans)
            stitched = [stitch(r, [scan for i, scan in pieces if i == n]) for n, r in enumerate(regions)]
            for scan in scans:
                scan.events = []  # the stitched lists hold what is needed: _replay lets go of each
            if not any(s.exhausted for s in scans) and steps <= self._budget.left and None not in stitched:
                self._budget.left -= steps
                self.scanned_in_parallel = True
                for (i, _), scan in zip(pieces, scans, strict=True):
                    for (boot, k), points in scan.checkpoints.items():
                        self._chains[(boot, regions[i].stream)][k].add_checkpoints(points)
                return {
                    r.stream: self._replay(r, ev)
                    for r, ev in zip(regions, stitched, strict=True)
                    if ev is not None
                }
        self._on_pass("verifying")
        return {r.stream: self._scan(r) for r in regions}

    def _scan_chunk(self, region: RegionEntry, lo: int, hi: int) -> ChunkScan:
        """In a worker: scan the candidates starting in [lo, hi) as the sequential pass
        would, recording what each did to the verifier's state (svsmlog.parallel)."""
        out = ChunkScan(lo, hi, end=hi)
        left = self._budget.left
        reported = self._superblock_reported
        pending: Run | None = None  # boring frames, kept as the index would (ordering.Run)
        pending_chain = -1

        def flush() -> None:
            if pending is None:
                return
            if pending.count == 1:
                head = pending.head
                out.events.append(ScanEvent(head.lba, head.sectors, True, entry_fields(head), pending_chain,
                                            None, b"", None))
            else:
                out.events.append(ScanEvent(pending.lba, pending.end - pending.lba, True, None, pending_chain,
                                            None, b"", None, pending.pack(), pending.largest))

        def lane(buf: bytes, off: int, lba: int, stop: int, w_end: int, budget: int) -> int:
            if pending is None:
                return lba
            end = self._take_frames(region, pending, buf, off, lba, stop, w_end, budget)
            if end != lba:
                out.end = max(hi, end)
            return end

        for c in scan_region(self._read, region, lo, hi, lane if self._lane else None):
            self.report.findings, self._ours, self._foreign = [], 0, {}
            self._superblock_reported = reported  # each candidate may raise it: the stitch keeps the first
            e = self._visit(region, c)
            sectors = c.header.sectors if isinstance(c, Candidate) else 0
            accepted = isinstance(c, Candidate) and c.accepted
            index = -1
            if e is not None:  # the parent has its own copy of every chain: name it by index
                chains = self._chains.get((e.boot, region.stream), [])
                index = next((i for i, ch in enumerate(chains) if ch is e.chain), -1)
            counted = b"" if self._ours else next(iter(self._foreign), None)
            at = None
            if self._superblock_reported and not reported:
                at = next(i for i, f in enumerate(self.report.findings) if f.kind is Kind.SUPERBLOCK_MISMATCH)
            findings = self.report.findings or None
            out.end = max(hi, c.lba + sectors if accepted else c.lba + 1)
            out.stopped |= isinstance(c, Malformed) and c.final
            if (self._compact and e is not None and boring(e) and accepted and index >= 0 and findings is None
                    and counted == b"" and at is None):
                if pending is not None and index == pending_chain and pending.follows(e):
                    pending.take(e)
                else:
                    flush()
                    pending, pending_chain = Run(e), index
                continue
            flush()
            pending = None
            fields = entry_fields(e) if e is not None else None
            out.events.append(ScanEvent(c.lba, sectors, accepted, fields, index, findings, counted, at))
        flush()
        out.steps, out.exhausted = left - self._budget.left, self._exhausted
        out.checkpoints = {
            (boot, i): chain.checkpoints()
            for (boot, stream), chains in self._chains.items()
            if stream == region.stream
            for i, chain in enumerate(chains)
        }
        return out

    def _replay(self, region: RegionEntry, events: list[ScanEvent]) -> FrameIndex:
        """Put a region's stitched events back as if this process had scanned it. Empties
        ``events`` as it goes: a worker's packed runs are copied into the index, and keeping
        them until the end held the index twice (1M records -j2: about 1 MiB of peak RSS,
        measured with multiprocessing's pool)."""
        entries = FrameIndex(self._compact)
        events.reverse()
        while events:
            ev = events.pop()
            for k, f in enumerate(ev.findings or ()):
                if k == ev.superblock_at:
                    if self._superblock_reported:
                        continue  # raised earlier: the sequential pass says it once
                    self._superblock_reported = True
                self.report.findings.append(f)
                if f.violation and f.boot is not None and f.stream is not None:
                    self._violated.add((f.boot, f.stream))
            if ev.run is not None:
                chain = self._chains[(ev.run[0][2], region.stream)][ev.chain_index]
                run = Run.unpack(ev.run, chain)
                self._ours += run.count
                entries.append_run(run)
                continue
            if ev.counted == b"":
                self._ours += 1
            elif ev.counted is not None:
                self._foreign[ev.counted] = self._foreign.get(ev.counted, 0) + 1
            if ev.entry is not None:
                e = Entry(*ev.entry)
                e.chain = (
                    self._chains[(e.boot, region.stream)][ev.chain_index] if ev.chain_index >= 0 else None
                )
                entries.append(e)
        return entries

    def _check_directory(self) -> None:
        """Key-directory slots are single sealed frames: each must authenticate where we
        hold its boot's key; one torn by a crash at boot start is a crash (spec §8.2)."""
        d = KEY_DIRECTORY
        for c in scan_region(self._read, d):
            if isinstance(c, Malformed):
                self._add(Kind.FRAME_CORRUPT, f"frame magic without a valid header: {c.reason}", d, lba=c.lba)
                continue
            h = c.header
            if h.lba != key_dir_slot(h.boot) or h.seq != 0 or h.type != FrameType.KEYS:
                self._add(
                    Kind.FRAME_MOVED,
                    "a frame that does not belong in this key-directory slot",
                    d,
                    boot=h.boot,
                    seq=h.seq,
                    lba=c.lba,
                )
                continue
            e = self._verify_candidate(d, c)
            if e is not None and e.status == "torn":
                self._torn_slots.append(e)
            elif e is not None and e.status in ("ok", "no_key"):
                self._slots[e.boot] = e
            if e is not None:
                self._slot_headers.add(e.boot)

    def _judge_torn_slots(self, orders: dict[int, list[Item]]) -> None:
        """A slot is written once a boot's BOOT frames are (spec §7.2): torn, it is a crash
        only if the boot wrote nothing after it (no DATA, KEYS or END frame anywhere);
        otherwise it was changed afterwards."""
        wrote_on = {
            e.boot
            for order in orders.values()
            for e in order
            if e.status == "ok" and e.type != FrameType.BOOT
        }
        for e in self._torn_slots:
            if e.boot in wrote_on:
                self._add_at(
                    Kind.FRAME_CORRUPT,
                    "key-directory slot altered after its boot started",
                    KEY_DIRECTORY,
                    e,
                )
            else:
                self._add_at(
                    Kind.CRASH_TAIL,
                    "torn key-directory slot: a crash as the boot started",
                    KEY_DIRECTORY,
                    e,
                )

    # ------------------------------------------------------------------ pass 2: across regions

    def _check_keys(self, orders: dict[int, list[Item]]) -> None:
        """One boot, one boot secret (spec §8.2): every frame of a boot authenticates under the
        chains of a single boot secret, or, holding only chain keys, of a single chain per
        stream. Boot numbers are never reused, so a second key that authenticates frames of
        a boot was sealed by someone else, as is a chain key off the boot secret's chain."""
        for k in self._conflicts:
            self._add(
                Kind.KEY_CONFLICT,
                f"a chain key for boot {k.boot} that is not on the chain of the boot's own secret: "
                "someone other than the writer sealed it",
                k.region,
                boot=k.boot,
                seq=k.seq,
                lba=k.lba,
            )
        regions = (KEY_DIRECTORY, *self.volume.superblock.regions)
        origins: dict[tuple[int, int | None], set[bytes]] = {}
        for r in regions:
            for item in self._ok(r, orders):
                if item.chain is not None:
                    origin = item.chain.origin
                    scope = (item.boot, None) if origin.startswith(b"S") else (item.boot, r.stream)
                    origins.setdefault(scope, set()).add(origin)
        if all(len(o) == 1 for o in origins.values()):
            return  # every frame of a scope under one key: nothing below can differ
        frames = [(r, e) for r in regions for e in frames_of(self._ok(r, orders))]
        first: dict[tuple[int, int | None], tuple[bytes, Entry]] = {}
        for region, e in sorted(frames, key=lambda re: re[1].key):
            if e.chain is None:
                continue
            # boot secrets cover every stream of a boot; chain keys only their own stream
            scope = (e.boot, None) if e.chain.origin.startswith(b"S") else (e.boot, region.stream)
            seen = first.setdefault(scope, (e.chain.origin, e))
            if seen[0] != e.chain.origin:
                self._add_at(
                    Kind.KEY_CONFLICT,
                    f"authenticates under another key than boot {e.boot} seq {seen[1].seq} does: one boot "
                    "has one secret, so one of them was sealed by someone other than the writer",
                    region,
                    e,
                )
                first[scope] = (e.chain.origin, e)  # report each switch of key once

    def _ok(self, region: RegionEntry, orders: dict[int, list[Item]]) -> list[Item]:
        if region is KEY_DIRECTORY:
            return [e for e in self._slots.values() if e.status == "ok"]
        return [e for e in orders.get(region.stream, []) if e.status == "ok"]

    def _check_obligations(self, orders: dict[int, list[Item]], judges: dict[int, RegionJudge]) -> None:
        """What an honest writer must have written (spec §8.7). A boot writes its BOOT frame
        to every region in superblock order, then its key-directory slot, and only then
        anything else; so an authenticated frame of a boot proves that some of those writes
        returned, and each such write must still be here unless the ring has provably
        reclaimed it. Absences that only unauthenticated bytes would explain are not excused."""
        regions = self.volume.superblock.regions
        # how far each boot's start provably got: index of the last region whose BOOT frame
        # returned (len(regions) - 1 when the slot or any later frame is authenticated)
        reached: dict[int, int] = {}
        past_boot: set[int] = set()  # boots with an authenticated frame after their BOOT frames
        for i, r in enumerate(regions):
            for e in self._ok(r, orders):
                if e.type == FrameType.BOOT:
                    reached[e.boot] = max(reached.get(e.boot, -1), i - 1)
                else:
                    past_boot.add(e.boot)
        for e in self._ok(KEY_DIRECTORY, orders):
            past_boot.add(e.boot)
        # A later boot's sealed record that saw a frame of b past its BOOT frame proves b wrote
        # its slot too (§8.7.2); for the streams, the cut it leaves is reported where it is.
        seen_past: set[int] = set()
        for r in regions:
            for e in self._ok(r, orders):
                prior = e.boot_body.prior if isinstance(e, Entry) and e.boot_body is not None else None
                if prior is not None and prior.seq > 0:
                    seen_past.add(prior.boot)
        for b in past_boot:
            reached[b] = len(regions) - 1
        for i, r in enumerate(regions):
            judge = judges[r.stream]
            here = {e.boot for e in orders.get(r.stream, [])}  # present: ok or no_key
            readable = [e for e in orders.get(r.stream, []) if e.status == "ok"]
            head = last_frame(readable[-1]) if readable else None
            for b in sorted(x for x, last in reached.items() if last >= i and x not in here):
                why = self._absence_excused(judge, b, head)
                if why is None:
                    newest = f"its newest frame is boot {head.boot} seq {head.seq}" if head else "it is empty"
                    self._add(
                        Kind.FRAME_MISSING,
                        f"boot {b} wrote its BOOT frame to every stream up to this one before going on "
                        f"(its authenticated frames elsewhere show it), but no frame of boot {b} is in "
                        f"stream {r.name!r}: {newest}",
                        r,
                        boot=b,
                        seq=0,
                        lba=(head.lba + head.sectors) if head else r.start,
                    )
        self._check_slots(orders, past_boot | seen_past)

    def _check_origin(self, orders: dict[int, list[Item]]) -> None:
        """Which boots their SEV-SNP evidence proves the genuine SVSM wrote (spec §8.9). Only
        key frames carry evidence; other frames only say which boots there are (one each,
        so nothing here grows per frame)."""
        regions = self.volume.superblock.regions
        keyed: list[tuple[int, RegionEntry, Entry]] = []
        first: dict[int, tuple[int, RegionEntry, Entry]] = {}
        used: dict[int, dict[int, ReaderChain]] = {}  # boot -> every chain its frames were read with
        for i, r in [(-1, KEY_DIRECTORY), *enumerate(regions)]:
            for e in self._ok(r, orders):
                if e.chain is not None:
                    chains = used.get(e.boot)
                    if chains is None:
                        chains = used[e.boot] = {}
                    chains.setdefault(id(e.chain), e.chain)
                if isinstance(e, Entry) and e.type in (FrameType.BOOT, FrameType.KEYS):
                    keyed.append((i, r, e))
                elif e.boot not in first:
                    first[e.boot] = (i, r, head_frame(e))
        judge = OriginJudge(
            self.report,
            self.volume.volume_id,
            regions,
            self.keyring.private_keys,
            self._origin,
            lambda kind, detail, region, e: self._add_at(kind, detail, region, e),
        )
        judge.judge(keyed, first, {b: list(c.values()) for b, c in used.items()})

    @staticmethod
    def _absence_excused(judge: RegionJudge, boot: int, head: Entry | None) -> str | None:
        """Why a region may lack every frame of ``boot``: the ring reclaimed them (proven by a
        wrap frame, or unproven after a crash while wrapping, reported as such), or they lay
        in the hole such a crash left."""
        oldest = judge.oldest
        if head is None or oldest is None:
            return None
        if boot < oldest.boot and judge.history in ("wrapped", "crash"):
            return "rotated"
        if judge.excused is not None and judge.excused[0] < (boot, 0) and (boot, 1 << 64) < judge.excused[1]:
            return "in the hole of a crash while wrapping"
        return None

    def _check_slots(self, orders: dict[int, list[Item]], past_boot: set[int]) -> None:
        """A boot that went past its start wrote its key-directory slot, unless its owner
        envelopes did not fit one, or a boot eight (or a multiple) later has taken the slot."""
        booted: set[int] = {e.boot for order in orders.values() for e in order if e.status == "ok"}
        booted |= set(self._slots)
        fits: dict[int, bool] = {}
        for order in orders.values():
            for e in order:
                if isinstance(e, Entry) and e.owner_clear_len is not None:
                    need = frame_sectors(e.owner_clear_len, KEYS_BODY_LEN + TAG_LEN)
                    fits[e.boot] = need <= KEY_DIR_SLOT_SECTORS
        for e in self._slots.values():
            if e.status == "no_key":  # present, and not ours to verify (another owner's boot?)
                self._add_at(
                    Kind.NO_KEY,
                    f"boot {e.boot}'s key-directory slot is present but no key we hold opens it: not "
                    "verified",
                    KEY_DIRECTORY,
                    e,
                )
        for b in sorted(past_boot):
            if b in self._slot_headers or not fits.get(b, True):
                continue  # present (a changed one is reported where it is), or never written
            if any(x > b and (x - b) % KEY_DIR_SLOTS == 0 for x in booted):
                continue  # a later boot wrote this slot
            torn = [t for t in self._torn_slots if t.lba == key_dir_slot(b) and t.boot > b]
            if torn:
                self._add(
                    Kind.UNPROVEN,
                    f"boot {b}'s key-directory slot holds a torn header of boot {torn[0].boot}, a boot "
                    "no authenticated frame shows: nothing authenticated explains the slot's loss",
                    KEY_DIRECTORY,
                    boot=b,
                    seq=0,
                    lba=key_dir_slot(b),
                )
                continue
            if b not in fits:
                # No BOOT frame of b authenticates for us: whether its envelopes fitted a slot
                # (so whether it wrote one) is not ours to tell.
                self._add(
                    Kind.UNPROVEN,
                    f"boot {b} wrote frames after its start, but its key-directory slot is gone and no "
                    "BOOT frame of it that we can read says whether its envelopes fitted one",
                    KEY_DIRECTORY,
                    boot=b,
                    seq=0,
                    lba=key_dir_slot(b),
                )
                continue
            self._add(
                Kind.FRAME_MISSING,
                f"boot {b} wrote frames after its start, so it wrote its key-directory slot, which is gone",
                KEY_DIRECTORY,
                boot=b,
                seq=0,
                lba=key_dir_slot(b),
            )

    # ------------------------------------------------------------------ pass 2: checks

    # ------------------------------------------------------------------ summary

    def _summarise(self, region: RegionEntry, order: list[Item]) -> None:
        for item in order:
            span = self.report.span(item.boot, region.name)
            e = head_frame(item)
            if e.status == "no_key":
                span.unreadable_frames += 1
                continue
            span.frames += 1
            span.first_seq = e.seq if span.first_seq is None else min(span.first_seq, e.seq)
            span.last_seq = e.seq if span.last_seq is None else max(span.last_seq, e.seq)
            span.records += e.records
            span.panic |= e.panic
            span.ended_clean |= e.type == FrameType.END
            if e.first_t is not None:
                span.first_t_ns = e.first_t if span.first_t_ns is None else min(span.first_t_ns, e.first_t)
                span.last_t_ns = (
                    e.last_t if span.last_t_ns is None else max(span.last_t_ns or 0, e.last_t or 0)
                )
            if e.boot_body is not None:
                self._summarise_boot(region, e)
            if isinstance(item, Run):  # its first frame above; the others' totals at once
                self._summarise_run(span, item)
        unread: dict[int, list[Entry]] = {}
        for x in order:
            if isinstance(x, Entry) and x.status == "no_key" and not x.leftover:
                unread.setdefault(x.boot, []).append(x)
        for b, frames in sorted(unread.items()):
            self._add(
                Kind.NO_KEY,
                f"{len(frames)} frame(s) of boot {b} are present but no key we hold opens them "
                f"(seq {frames[0].seq}–{frames[-1].seq}): not verified",
                region,
                boot=b,
                seq=frames[0].seq,
                lba=frames[0].lba,
            )
        boots = sorted({e.boot for e in order if e.status == "ok"})
        for b in boots:
            span = self.report.span(b, region.name)
            if not span.ended_clean and not span.torn_tail:
                detail = (
                    (
                        "the newest boot's end is not sealed: it may still be running, or it "
                        "stopped after its last flush"
                    )
                    if b == boots[-1]
                    else ("the boot left no shutdown record in this stream")
                )
                self._add(Kind.NO_SHUTDOWN, detail, region, boot=b)
        for b, name in self._violated:
            if name == region.name:
                self.report.span(b, name).violated = True

    @staticmethod
    def _summarise_run(span: StreamSpan, run: Run) -> None:
        """What _summarise adds for each frame of ``run`` after its first (all DATA), at once."""
        first_seq = run.first_seq + 1
        span.frames += run.count - 1
        span.first_seq = first_seq if span.first_seq is None else min(span.first_seq, first_seq)
        span.last_seq = run.last_seq if span.last_seq is None else max(span.last_seq, run.last_seq)
        span.records += run.records
        span.panic |= run.panic
        if run.first_t is not None:
            span.first_t_ns = run.first_t if span.first_t_ns is None else min(span.first_t_ns, run.first_t)
            span.last_t_ns = (
                run.last_t if span.last_t_ns is None else max(span.last_t_ns or 0, run.last_t or 0)
            )

    def _check_volume_id(self) -> None:
        """Frames of one other volume and none of ours: the superblock's volume id was changed
        (a superblock that still parses, so nothing else would name it; spec §8.6)."""
        if self._ours or not self._foreign or self._superblock_reported:
            return
        vid, n = max(self._foreign.items(), key=lambda kv: kv[1])
        self._superblock_reported = True
        self._add(
            Kind.SUPERBLOCK_MISMATCH,
            f"no frame carries the superblock's volume id; {n} frames carry {vid.hex()}",
            None,
            lba=0,
        )

    def _check_superblock(self, region: RegionEntry, e: Entry, sealed_digest: bytes) -> None:
        """Every BOOT and KEYS frame seals the superblock's digest (spec §8.6); reported once."""
        if self._superblock_reported or crypto.ct_equal(sealed_digest, self.volume.digest):
            return
        self._superblock_reported = True
        self._add(
            Kind.SUPERBLOCK_MISMATCH,
            f"the superblock differs from the one boot {e.boot} sealed (frame at sector {e.lba})",
            region,
            boot=e.boot,
            seq=e.seq,
            lba=0,
        )

    def _summarise_boot(self, region: RegionEntry, e: Entry) -> None:
        body = e.boot_body
        assert body is not None
        s = self.report.boots[e.boot]
        s.host_time_ns = body.host_time_ns
        s.config_digest = body.config_digest
        s.debug_ceiling = DebugCeiling(body.debug_ceiling).name.lower().replace("_", "-")
        s.debug_enabled = body.debug_enabled
        s.layout = Layout(body.layout).name.lower().replace("_", "-")

    # ------------------------------------------------------------------ anchor

    def _check_anchor(self, anchor: Anchor | ReportAnchor, orders: dict[int, list[Item]]) -> None:
        """Spec §8.5. An anchor report is judged first (§6.5): only a valid one whose preimage
        the log holds goes on to the heads."""
        self.report.anchor_checked = True
        if isinstance(anchor, ReportAnchor):
            found = self._anchor_from_report(anchor, orders)
            if found is None:
                return  # the report's findings say why no boot is anchored
            anchor = found
        else:
            self.report.anchor_source = {"form": "json"}
        self._check_heads(anchor, orders)
        self._attest(anchor)

    def _check_heads(self, anchor: Anchor, orders: dict[int, list[Item]]) -> None:
        if anchor.volume_id != self.volume.volume_id:
            self._add(Kind.ANCHOR_MISMATCH, "the anchor is for another volume", None)
            return
        for h in anchor.heads:
            try:
                region = self.volume.region(h.stream)
            except KeyError:
                self._add(
                    Kind.ANCHOR_MISMATCH,
                    f"the anchor names stream {h.stream} (boot {h.boot} seq {h.seq}), not on this volume",
                    None,
                )
                continue
            order = orders.get(h.stream, [])
            found = _find(order, (h.boot, h.seq))
            readable = [last_frame(e) for e in order if e.status == "ok"][-1:]
            newest = (
                f"the newest frame here is boot {readable[-1].boot} seq {readable[-1].seq}"
                if readable
                else "no frame of ours is here"
            )
            if found is None:
                self._add(
                    Kind.ANCHOR_TRUNCATED,
                    f"the anchored head of stream {region.name!r}, boot {h.boot} seq {h.seq}, is missing; "
                    f"{newest}",
                    region,
                    boot=h.boot,
                    seq=h.seq,
                    lba=(readable[-1].lba + readable[-1].sectors) if readable else region.start,
                )
            elif found.status != "ok":
                # Only an authenticated frame can meet an anchor: the tag of a frame we cannot
                # open is a copy anyone can make (spec §8.5).
                self._add(
                    Kind.UNPROVEN,
                    f"the anchored head of stream {region.name!r}, boot {h.boot} seq {h.seq}, is present "
                    "but no key we hold opens it: the anchor is not met",
                    region,
                    boot=h.boot,
                    seq=h.seq,
                    lba=found.lba,
                )
            elif not crypto.ct_equal(found.tag, h.tag):
                self._add(
                    Kind.ANCHOR_MISMATCH,
                    f"the anchored head of stream {region.name!r}, boot {h.boot} seq {h.seq}, has another "
                    "tag",
                    region,
                    boot=h.boot,
                    seq=h.seq,
                    lba=found.lba,
                )
        named = {h.stream for h in anchor.heads}
        for region in self.volume.superblock.regions:
            if region.stream not in named:
                self._add(
                    Kind.ANCHOR_MISMATCH,
                    f"the anchor names no head for stream {region.name!r}: an anchor covers every stream",
                    region,
                )

    def _anchor_from_report(self, ra: ReportAnchor, orders: dict[int, list[Item]]) -> Anchor | None:
        """Check an anchor report as a boot's report is checked (the AMD chain, VMPL0, the
        measurements the owner expects), then find its preimage: the ``log anchor issued``
        record whose heads hash to REPORT_DATA[0:32]. The SVSM makes that record durable
        before it hands the report out, so a log without it was cut or rolled back after the
        anchor. Returns the anchor when the report may vouch for its heads, else None with
        the reason in a finding. Raises AnchorError when the report cannot be judged at all."""
        from .attestation.verify import verify_report

        rep = ra.report
        src: dict[str, object] = {
            "form": "snp-report",
            "valid": False,
            "vmpl": rep.vmpl,
            "measurement": rep.measurement.hex(),
            "chip_id": rep.chip_id.hex(),
            "anchor": ra.commitment.hex(),
            "nonce": ra.nonce.hex(),
            "preimage": None,
        }
        self.report.anchor_source = src
        regions = (KEY_DIRECTORY, *self.volume.superblock.regions)
        carried = [e.evidence for r in regions for e in self._ok(r, orders)
                   if isinstance(e, Entry) and e.evidence is not None]
        for ev in carried:
            if crypto.ct_equal(ev.report[0x50:0x90], rep.report_data):
                raise AnchorError(
                    "this is a boot's own attestation report (its REPORT_DATA commits to the boot's "
                    "keys), not an anchor report: give the report the SVSM issued for an anchor"
                )
        certs = list(self._origin.certs)
        seen = {c.der for c in certs}
        for der in sorted({d for ev in carried for d in ev.certs} - seen):  # untrusted; the chain decides
            with suppress(crypto.CertificateError):
                certs += crypto.load_certificates(der)
        if not any(c.key_type.startswith("ec-") for c in certs):
            raise AnchorError(
                "the anchor report cannot be checked: no VCEK or VLEK was given (--cert FILE) and "
                "no boot of this log carries one"
            )
        v = verify_report(rep, certs, self._origin.roots, require_vmpl0=True)
        if not v.valid:
            self._add(
                Kind.ATTESTATION_INVALID,
                "the anchor report is not valid: " + "; ".join(map(str, v.reasons))
                + ": it vouches for no boot",
                None,
            )
            return None
        src["valid"] = True
        if self._origin.measurements:
            src["measurement_expected"] = rep.measurement in self._origin.measurements
            if not src["measurement_expected"]:
                self._add(
                    Kind.MEASUREMENT_UNEXPECTED,
                    f"the anchor report was made by an SVSM whose launch measurement "
                    f"{rep.measurement.hex()} is not one the owner expects: it vouches for no boot",
                    None,
                )
                return None
        if v.policy.debug:
            self._add(
                Kind.DEBUG_POLICY,
                "the anchor report was made with POLICY.DEBUG set: the host could read the SVSM's "
                "keys and have any REPORT_DATA signed at VMPL0, so it vouches for no boot",
                None,
            )
            return None
        found = self._anchor_preimage(ra.commitment)
        if found is None:
            unread = sum(
                1
                for region in self.volume.superblock.regions
                for e in orders.get(region.stream, [])
                if isinstance(e, Entry) and e.status == "no_key" and not e.leftover
                and e.type in (FrameType.DATA, FrameType.END)
            )
            if unread:
                self._add(
                    Kind.UNPROVEN,
                    "the anchor report's preimage (the 'log anchor issued' record) is in no frame our "
                    f"keys open, and {unread} frame(s) no key given opens may hold it: the anchor is "
                    "not met",
                    None,
                )
            else:
                self._add(
                    Kind.ANCHOR_TRUNCATED,
                    "no record of this log is the anchor report's preimage (a 'log anchor issued' "
                    f"record whose heads hash to its REPORT_DATA {ra.commitment.hex()}); the SVSM makes "
                    "it durable before it hands the report out, so the log was cut or rolled back after "
                    "the anchor, unless the report is of another volume (a report does not say which)",
                    None,
                )
            return None
        anchor, (region, lr_seq, lr_off) = found
        src["preimage"] = {"boot": anchor.boot, "stream": region.name, "seq": lr_seq, "offset": lr_off}
        boot = self.report.boots.get(anchor.boot)
        a = boot.attestation if boot is not None else None
        if a is not None and a.status in ("attested", "unexpected") and a.measurement != src["measurement"]:
            self._add(
                Kind.MEASUREMENT_UNEXPECTED,
                f"the anchor report's launch measurement {rep.measurement.hex()} is not that of boot "
                f"{anchor.boot}'s own report ({a.measurement}): another SVSM signed the anchor of boot "
                f"{anchor.boot}, so it vouches for no boot",
                None,
                boot=anchor.boot,
            )
            return None
        return anchor

    def _anchor_preimage(self, commitment: bytes) -> tuple[Anchor, tuple[RegionEntry, int, int]] | None:
        """The anchor a ``log anchor issued`` record of an authenticated frame states, whose
        commitment is ``commitment``, and where it is (region, seq, byte offset). The record
        need not be in a verified span: its heads are bound by the hash alone. Newest boots
        first (an anchor is usually recent); one frame in memory at a time; a frame whose
        plaintext does not hold the commitment's hex is not decoded."""
        want = commitment.hex()
        needle = want.encode()
        budget = RatchetBudget.for_volume(self.volume.superblock.total_sectors)
        for chains in self._chains.values():
            for chain in chains:
                chain.budget = budget
        runs: list[tuple[int, int, RegionEntry, list[Entry]]] = []
        for i, region in enumerate(self.volume.superblock.regions):
            frames = frames_of(self._entries.get(region.stream, []))  # a run's frames one by one
            for boot, group in groupby(frames, key=lambda e: e.boot):
                runs.append((boot, i, region, list(group)))
        runs.sort(key=lambda r: (-r[0], r[1]))
        try:
            for _, _, region, entries in runs:
                for e in entries:
                    if e.type not in (FrameType.DATA, FrameType.END) or e.malformed or e.chain is None:
                        continue
                    raw = self._read(e.lba, e.sectors)
                    try:
                        h = decode_frame_header(raw)
                        keys = e.chain.keys_at(e.seq)
                        if keys is None:
                            continue
                        clear = raw[FRAME_HEADER_LEN : FRAME_HEADER_LEN + h.clear_len]
                        pt = open_frame(raw, clear, raw[FRAME_HEADER_LEN + h.clear_len : h.body_len], *keys)
                        if pt is None or needle not in pt:
                            continue
                        records = decode_record_block(pt)
                    except DecodeError:
                        continue
                    for r in records:
                        if (FIELD_ANCHOR, want) not in r.fields:
                            continue
                        anchor = Anchor.from_preimage_fields(self.volume.volume_id, r.fields)
                        if anchor is not None and crypto.ct_equal(anchor.commitment, commitment):
                            return anchor, (region, e.seq, self._off(e.lba))
        except RatchetExhausted:
            return None
        return None

    _CHAIN_KINDS = frozenset(
        {Kind.FRAME_MISSING, Kind.CHAIN_BROKEN, Kind.BOOT_TRUNCATED, Kind.BOOT_CLAIM_MISMATCH}
    )

    def _attest(self, anchor: Anchor) -> None:
        """Which boots the anchor vouches for (spec §8.5): its own boot when it matched, and
        the boots before it when nothing breaks the chain back to them."""
        kinds = {f.kind for f in self.report.findings}
        if kinds & {Kind.ANCHOR_MISMATCH, Kind.ANCHOR_TRUNCATED} or any(
            f.kind is Kind.UNPROVEN and "anchored head" in f.detail for f in self.report.findings
        ):
            return
        if kinds & self._CHAIN_KINDS:
            self.report.anchored_boots = {anchor.boot}
        else:
            self.report.anchored_boots = {b for b in self.report.boots if b <= anchor.boot}

    # ------------------------------------------------------------------ entry points

    def run(self, anchor: Anchor | ReportAnchor | None = None, *, jobs: int = 1) -> Report:
        """Every check of spec §8. ``jobs`` > 1 scans large volumes' regions in forked
        workers (svsmlog.parallel): the report is the same, only faster. Raises AnchorError
        for an anchor report that cannot be judged at all (no VCEK, a boot's own report)."""
        if self._done:
            return self.report
        self._frame_sectors: list[int] = []
        self._on_pass("keys")
        self._chains = harvest(
            self._read,
            self.volume,
            self.keyring,
            self._budget,
            self._flood,
            unopened=self._unopened,
            frame_sectors=self._frame_sectors,
            conflicts=self._conflicts,
        )
        self._check_directory()
        orders: dict[int, list[Item]] = {}
        scanned = self._scan_regions(jobs)
        if self._compact and any(index.overlaps() for index in scanned.values()):
            self._compact = False  # a frame shares a key with one a run holds: an Entry each
            self._start()
            return self.run(anchor, jobs=jobs)
        # The newest boot any complete frame names: a torn frame can only be the next write.
        newest_boot = max(
            (e.boot for entries in scanned.values() for e in entries if e.status in ("ok", "no_key")),
            default=0,
        )
        judges: dict[int, RegionJudge] = {}
        started: set[int] | None = None  # boots with an ok BOOT frame in every region so far
        for region in self.volume.superblock.regions:
            judge = RegionJudge(region, self._adder(region), newest_boot=newest_boot, started_before=started)
            booted = {e.boot for e in scanned[region.stream] if e.status == "ok" and e.type == FrameType.BOOT}
            started = booted if started is None else started & booted
            order = judge.judge(scanned[region.stream])
            for boot in judge.torn_tail_boots:
                self.report.span(boot, region.name).torn_tail = True
            self._violated |= {(boot, region.name) for boot in judge.violated_boots}
            orders[region.stream] = order
            judges[region.stream] = judge
            self._entries[region.stream] = Frames([e for e in order if e.status == "ok"])
        self._judge_torn_slots(orders)
        self._check_keys(orders)
        self._check_obligations(orders, judges)
        self._check_origin(orders)
        self._check_volume_id()
        self.report.verified_frames = sum(len(v) for v in self._entries.values()) + len(
            self._ok(KEY_DIRECTORY, orders)
        )
        for region in self.volume.superblock.regions:
            self._summarise(region, orders[region.stream])
        if anchor is not None:
            self._check_anchor(anchor, orders)
        self._done = True
        self._budget = RatchetBudget.for_volume(self.volume.superblock.total_sectors)  # the record pass's own
        for chains in self._chains.values():
            for chain in chains:
                chain.budget = self._budget
        return self.report

    def stream_records(self, stream: int) -> Iterator[LocatedRecord]:
        """Verified records of one stream in log order (boot, seq)."""
        for item in self.record_items(stream):
            yield from self.item_records(stream, item)

    def record_items(self, stream: int) -> list[Item]:
        """The items (frames and runs) of a stream that ``item_records`` reads, in log order."""
        self.run()
        frames = self._entries.get(stream)
        return [
            e for e in (frames.items if frames is not None else ())
            if e.chain is not None
            and (isinstance(e, Run) or (e.type in (FrameType.DATA, FrameType.END) and not e.malformed))
        ]

    def item_records(
        self, stream: int, e: Item, lo: int = 0, hi: int | None = None
    ) -> Iterator[LocatedRecord]:
        """The records of frames lo..hi-1 of one item of ``record_items`` (all by default)."""
        name = self.volume.region(stream).name
        verified = self.is_verified(e.boot, name)
        boot = e.boot
        for seq, off, block in self.item_columns(e, lo, hi):
            for r in records_of(block):
                yield LocatedRecord(boot, name, seq, off, r, verified)

    def is_verified(self, boot: int, stream_name: str) -> bool:
        """Whether the records of this boot's stream are marked verified (no violation)."""
        return (boot, stream_name) not in self._violated

    def item_columns(
        self, e: Item, lo: int = 0, hi: int | None = None
    ) -> Iterator[tuple[int, int, RecordColumns]]:
        """(seq, byte offset, record columns) of frames lo..hi-1 of an item of ``record_items``."""
        for seq, off, plaintext in self.item_blocks(e, lo, hi):
            yield seq, off, decode_record_columns(plaintext)

    def item_blocks(self, e: Item, lo: int = 0, hi: int | None = None) -> Iterator[tuple[int, int, bytes]]:
        """(seq, byte offset, record block) of frames lo..hi-1 of an item of ``record_items``:
        each frame read again and opened (the pass-2 result is not kept: memory)."""
        spans: Iterable[tuple[int, int, int]] = (
            e.spans(lo, hi) if isinstance(e, Run) else ((e.lba, e.sectors, e.seq),)[lo:hi]
        )
        chain = e.chain
        assert chain is not None
        # A run's frames lie back to back: read them a window at a time, not one by one.
        end = e.end if isinstance(e, Run) else e.lba + e.sectors
        buf, w_lo, w_hi = b"", 0, 0
        for lba, sectors, seq in spans:
            if not (w_lo <= lba and lba + sectors <= w_hi):
                w_lo, w_hi = lba, max(lba + sectors, min(end, lba + RECORD_WINDOW_SECTORS))
                buf = self._read(w_lo, w_hi - w_lo)
            raw = buf[(lba - w_lo) * SECTOR : (lba - w_lo + sectors) * SECTOR]
            h = decode_frame_header(raw)
            keys = chain.keys_at(seq)
            assert keys is not None
            ct = raw[FRAME_HEADER_LEN + h.clear_len : h.body_len]
            pt = open_frame(raw, raw[FRAME_HEADER_LEN : FRAME_HEADER_LEN + h.clear_len], ct, *keys)
            if pt is None:  # the image changed under us between passes
                raise VolumeError(f"frame at sector {lba} changed while reading")
            yield seq, self._off(lba), pt

    def stream_verified(self, stream: int, boot: int) -> bool:
        """Whether the records of ``boot`` in ``stream`` are verified (no violation there)."""
        return (boot, self.volume.region(stream).name) not in self._violated

    def records(self) -> Iterator[LocatedRecord]:
        """Verified records of every stream, merged by (boot, time since boot)."""
        iters = [self.stream_records(r.stream) for r in self.volume.superblock.regions]
        yield from heapq.merge(*iters, key=lambda lr: (lr.boot, lr.record.t_ns))

    def chain_key(self, boot: int, stream: int, seq: int = 0) -> bytes | None:
        """For export-key: the chain key of (boot, stream) at ``seq``, if we hold it."""
        for chain in self._chains.get((boot, stream), []):
            ck = chain.chain_key_at(seq)
            if ck is not None:
                return ck
        return None


def _find(order: list[Item], key: tuple[int, int]) -> Entry | None:
    """The frame of ``key`` in a region's log order, if there."""
    for item in order:
        if isinstance(item, Run):
            if (item.boot, item.first_seq) <= key <= (item.boot, item.last_seq):
                return item.frame(key[1] - item.first_seq)
        elif item.key == key:
            return item
    return None


def _owner_clear_len(envelopes: list[Envelope]) -> int | None:
    """Bytes a key-directory slot's clear section takes: the BOOT_SECRET envelopes of a BOOT
    frame's (authenticated) clear section, as the writer puts them in the slot (spec §4.7)."""
    owners = [len(e.sealed) for e in envelopes if e.kind == EnvelopeKind.BOOT_SECRET]
    return clear_section_len(owners) if owners else None
