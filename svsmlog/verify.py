"""The verifying reader (spec §8): image -> volume -> frames -> records + report.

Three passes, each streaming over the regions with memory bounded by the number of
frames (an index entry per frame, never the data):

1. key harvest: open every envelope addressed to one of our keys;
2. verification: scan each region, authenticate every frame (one AEAD call), decode
   its records, and check the chain, the boot claims, rotation and the anchor;
3. on demand, ``records()`` reads the verified frames again in log order.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from . import crypto
from .anchor import Anchor
from .codec import (
    BootBody,
    DecodeError,
    RegionEntry,
    decode_boot_body,
    decode_frame_header,
    decode_keys_body,
    decode_record_block,
)
from .device import SECTOR
from .format import (
    FRAME_HEADER_LEN,
    MAX_WRAP_SECTORS,
    DebugCeiling,
    FrameType,
    Layout,
)
from .frames import open_frame
from .keyring import MAX_FAILED_ENVELOPES, Keyring, StreamKey, harvest
from .keyschedule import RatchetBudget, RatchetExhausted, ReaderChain
from .records import LocatedRecord
from .report import Kind, Report
from .scan import Candidate, Malformed, ReadSectors, scan_region
from .volume import KEY_DIRECTORY, Volume, key_dir_slot, read_volume

# The reader's public surface: keys come from keyring.py, the rest is here.
__all__ = ["Keyring", "StreamKey", "Verifier", "VolumeError"]

class VolumeError(Exception):
    """The image does not hold a readable svsmlog volume (bad superblock or geometry)."""


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


class Verifier:
    def __init__(
        self,
        read: ReadSectors,
        sector_count: int,
        keyring: Keyring,
        *,
        base_offset: int = 0,
        progress: Callable[[int], None] | None = None,
    ) -> None:
        self._read = read
        self._base = base_offset
        self._progress = progress
        try:
            self.volume: Volume = read_volume(read(0, 1), sector_count)
        except DecodeError as e:
            raise VolumeError(str(e)) from None
        self.keyring = keyring
        self.report = Report(self.volume.volume_id)
        self._chains: dict[tuple[int, int], list[ReaderChain]] = {}
        self._entries: dict[int, list[Entry]] = {}
        self._violated: set[tuple[int, str]] = set()
        self._done = False
        self._torn_at_start: set[int] = set()
        self._torn_slots: list[Entry] = []
        self._budget = RatchetBudget.for_volume(sector_count)
        self._ours = 0  # frames carrying our volume id
        self._foreign: dict[bytes, int] = {}  # frames carrying another volume id, by id
        self._superblock_reported = False

    # ------------------------------------------------------------------ helpers

    def _off(self, lba: int) -> int:
        return self._base + lba * SECTOR

    def _name(self, stream: int) -> str:
        return self.volume.region(stream).name

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
        entry = Entry(c.lba, h.type, h.boot, h.seq, h.sectors, c.tag, h.prev_tag, "no_key")
        chains = self._chains.get((h.boot, h.stream), [])
        plaintext = None
        for chain in chains:
            try:
                keys = chain.keys_at(h.seq)
            except RatchetExhausted:
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
            if not usable:
                if c.digest_ok():
                    c.accepted = True
                    return entry
                entry.status = "torn"
                return entry
            entry.status = "torn" if not c.digest_ok() else "corrupt"
            if entry.status == "corrupt":
                self._add(
                    Kind.FRAME_CORRUPT,
                    "complete frame whose authentication tag does not verify",
                    region,
                    boot=h.boot,
                    seq=h.seq,
                    lba=c.lba,
                )
            return entry
        c.accepted = True
        entry.status = "ok"
        self._decode_body(region, entry, plaintext)
        return entry

    def _decode_body(self, region: RegionEntry, e: Entry, plaintext: bytes) -> None:
        try:
            if e.type == FrameType.BOOT:
                e.boot_body = decode_boot_body(plaintext)
                e.wrap_from = e.boot_body.wrap_from
                self._check_superblock(region, e, e.boot_body.superblock_digest)
            elif e.type == FrameType.KEYS:
                keys_body = decode_keys_body(plaintext)
                e.wrap_from = keys_body.wrap_from
                self._check_superblock(region, e, keys_body.superblock_digest)
            else:
                recs = decode_record_block(plaintext)
                e.records = len(recs)
                e.panic = any(r.panic for r in recs)
                if recs:
                    e.first_t, e.last_t = recs[0].t_ns, recs[-1].t_ns
        except DecodeError as err:
            e.malformed = True
            self._add(
                Kind.RECORD_MALFORMED,
                f"authenticated frame body does not parse: {err}",
                region,
                boot=e.boot,
                seq=e.seq,
                lba=e.lba,
            )

    def _scan(self, region: RegionEntry) -> list[Entry]:
        entries = []
        for c in scan_region(self._read, region):
            if isinstance(c, Malformed):
                self._add(
                    Kind.FRAME_CORRUPT, f"frame magic without a valid header: {c.reason}", region, lba=c.lba
                )
                continue
            e = self._verify_candidate(region, c)
            if e is not None:
                entries.append(e)
            if self._progress is not None:
                self._progress(c.lba)
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

    def _judge_torn_slots(self, orders: dict[int, list[Entry]]) -> None:
        """A slot is written first in a boot: torn, it is a crash only if the boot wrote
        nothing after it; otherwise it was changed afterwards."""
        booted = {e.boot for order in orders.values() for e in order}
        for e in self._torn_slots:
            if e.boot in booted:
                self._add(
                    Kind.FRAME_CORRUPT,
                    "key-directory slot altered after its boot started",
                    KEY_DIRECTORY,
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
            else:
                self._add(
                    Kind.CRASH_TAIL,
                    "torn key-directory slot: a crash as the boot started",
                    KEY_DIRECTORY,
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )

    # ------------------------------------------------------------------ pass 2: checks

    def _check_region(self, region: RegionEntry, entries: list[Entry]) -> list[Entry]:
        """Order, chain, claims, rotation (spec §8.3). Returns the frames in log order."""
        present: dict[tuple[int, int], Entry] = {}
        for e in sorted((e for e in entries if e.status in ("ok", "no_key")), key=lambda e: e.lba):
            if e.key in present:
                other = present[e.key]
                same = crypto.ct_equal(other.tag, e.tag)
                self._add(
                    Kind.FRAME_DUPLICATED,
                    f"frame also at sector {other.lba}"
                    + (" (identical copy)" if same else " (different contents)"),
                    region,
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
                continue
            present[e.key] = e
        order = [present[k] for k in sorted(present)]
        self._check_torn(region, entries, present)
        # Links are judged between frames we can read; an unreadable frame can neither
        # break the chain nor, being unauthenticated, stand in for a missing one (§8.3).
        readable = [e for e in order if e.status == "ok"]
        if readable:
            cuts = [
                i
                for i in range(1, len(readable))
                if not self._link_ok(region, readable[i - 1], readable[i], present)
            ]
            self._check_rotation(region, readable, cuts, present)
        return order

    def _link_ok(
        self, region: RegionEntry, x: Entry, y: Entry, present: dict[tuple[int, int], Entry]
    ) -> bool:
        """True if readable frame y directly follows readable frame x (or we cannot tell);
        reports what is wrong, except a plain gap, which is judged with rotation."""
        if y.boot == x.boot:
            if y.seq == x.seq + 1:
                if not crypto.ct_equal(y.prev_tag, x.tag):
                    self._add(
                        Kind.CHAIN_BROKEN,
                        f"does not chain to seq {x.seq}",
                        region,
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
            self._add(
                Kind.BOOT_CLAIM_MISMATCH,
                f"boot {y.boot} found no earlier frame, but boot {x.boot} seq {x.seq} precedes it",
                region,
                boot=y.boot,
                seq=0,
                lba=y.lba,
            )
            return True
        if (prior.boot, prior.seq) == (x.boot, x.seq):
            if not crypto.ct_equal(prior.tag, x.tag):
                self._add(
                    Kind.CHAIN_BROKEN,
                    f"boot record names boot {x.boot} seq {x.seq} with another tag",
                    region,
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
                    self._add(
                        Kind.CHAIN_BROKEN,
                        f"boot record names boot {prior.boot} seq {prior.seq} with another tag",
                        region,
                        boot=y.boot,
                        seq=0,
                        lba=y.lba,
                    )
                return True
            return False  # frames the later boot saw are gone: a cut, judged with rotation
        self._add(
            Kind.BOOT_CLAIM_MISMATCH,
            f"boot {y.boot} found boot {prior.boot} seq {prior.seq} "
            f"as the newest frame, but boot {x.boot} seq {x.seq} is newer",
            region,
            boot=x.boot,
            seq=x.seq,
            lba=x.lba,
        )
        return True

    def _check_torn(
        self, region: RegionEntry, entries: list[Entry], present: dict[tuple[int, int], Entry]
    ) -> None:
        """A torn frame is a crash if nothing of its boot was written after it (spec §8.4)."""
        last_seq: dict[int, int] = {}
        for b, s in present:
            last_seq[b] = max(last_seq.get(b, -1), s)
        for e in entries:
            if e.status != "torn":
                continue
            if last_seq.get(e.boot, -1) < e.seq and self._boot_moved_on(present, e):
                self._add(
                    Kind.CRASH_TAIL,
                    "torn frame: the write was cut short by a crash",
                    region,
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
                self.report.span(e.boot, region.name).torn_tail = True
                if e.lba == region.start:
                    self._torn_at_start.add(region.stream)
            else:
                self._add(
                    Kind.FRAME_CORRUPT,
                    "frame fails authentication and its commit digest, and later frames of its boot exist: "
                    "not a torn tail, it was changed",
                    region,
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )

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
        region: RegionEntry,
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
        start_frame = next((e for e in present.values() if e.lba == region.start), None)
        unknown = (
            region.stream in self._torn_at_start
            or (start_frame is not None and start_frame.status == "no_key")
            or (start_frame is None and self._crash_while_wrapping(region, readable, present))
        )
        wrapped = start_frame is not None and start_frame.status == "ok" and start_frame.wrap_from > 0
        if not (wrapped or unknown):
            why = "and the region never wrapped"
            if not _is_genesis(readable[0]):
                self._report_gap(region, None, readable[0], why)
            for i in cuts:
                self._report_gap(region, readable[i - 1], readable[i], why)
            return
        dead_from = region.start + start_frame.wrap_from if wrapped and start_frame else None
        for i in cuts:
            older = readable[i - 1]
            if not unknown and (dead_from is None or older.lba < dead_from):
                self._report_gap(region, older, readable[i], "outside the wrap's dead zone")
        for e in readable[:suffix_start]:
            if unknown or (dead_from is not None and e.lba >= dead_from):
                self._add(
                    Kind.STALE_REMNANT,
                    "an earlier lap's frame, left where the writer wrapped",
                    region,
                    boot=e.boot,
                    seq=e.seq,
                    lba=e.lba,
                )
        self._add(
            Kind.ROTATED_OUT,
            f"history before boot {oldest.boot} seq {oldest.seq} was reclaimed by the ring",
            region,
            boot=oldest.boot,
            seq=oldest.seq,
            lba=oldest.lba,
        )

    def _crash_while_wrapping(
        self, region: RegionEntry, readable: list[Entry], present: dict[tuple[int, int], Entry]
    ) -> bool:
        """No frame at the region start: a crash in the middle of the write that wrapped the
        ring can leave it garbled with no header. That write did not fit in the room after
        the newest frame, and garbled at least its own length: so the room is smaller than
        the largest wrapping write and than the gap before the first surviving frame
        (spec §8.3). Later boots only shrink the room, so the case stays recognisable."""
        head = readable[-1]
        room = region.sectors - (head.lba - region.start + head.sectors)
        first = min(e.lba for e in present.values()) - region.start
        if room >= MAX_WRAP_SECTORS or first <= room:
            return False
        self._add(
            Kind.CRASH_TAIL,
            "no frame at the region start: consistent with a crash while the ring wrapped",
            region,
            boot=head.boot,
            lba=region.start,
        )
        return True

    def _report_gap(self, region: RegionEntry, x: Entry | None, y: Entry, why: str) -> None:
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
        self._add(
            kind,
            f"frames from boot {boot} seq {seq} up to boot {y.boot} seq {y.seq} are missing, {why}",
            region,
            boot=boot,
            seq=seq,
            lba=y.lba,
        )
        self._violated.add((y.boot, region.name))

    # ------------------------------------------------------------------ summary

    def _summarise(self, region: RegionEntry, order: list[Entry]) -> None:
        for e in order:
            span = self.report.span(e.boot, region.name)
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
        unread = sum(1 for e in order if e.status == "no_key")
        if unread:
            self._add(Kind.NO_KEY, f"{unread} frames have no key we hold", region)
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

    def _check_anchor(self, anchor: Anchor, orders: dict[int, list[Entry]]) -> None:
        self.report.anchor_checked = True
        if anchor.volume_id != self.volume.volume_id:
            self._add(Kind.ANCHOR_MISMATCH, "the anchor is for another volume", None)
            return
        for h in anchor.heads:
            try:
                region = self.volume.region(h.stream)
            except KeyError:
                self._add(Kind.ANCHOR_MISMATCH, f"the anchor names stream {h.stream}, absent here", None)
                continue
            order = orders.get(h.stream, [])
            found = next((e for e in order if e.key == (h.boot, h.seq)), None)
            if found is None:
                newest = order[-1].key if order else None
                self._add(
                    Kind.ANCHOR_TRUNCATED,
                    f"the anchored head boot {h.boot} seq {h.seq} is missing (newest here: {newest})",
                    region,
                    boot=h.boot,
                    seq=h.seq,
                )
            elif not crypto.ct_equal(found.tag, h.tag):
                self._add(
                    Kind.ANCHOR_MISMATCH,
                    "the anchored head has another tag",
                    region,
                    boot=h.boot,
                    seq=h.seq,
                    lba=found.lba,
                )

    _CHAIN_KINDS = frozenset(
        {Kind.FRAME_MISSING, Kind.CHAIN_BROKEN, Kind.BOOT_TRUNCATED, Kind.BOOT_CLAIM_MISMATCH}
    )

    def _attest(self, anchor: Anchor) -> None:
        """Which boots the anchor vouches for (spec §8.5): its own boot when it matched, and
        the boots before it when nothing breaks the chain back to them."""
        kinds = {f.kind for f in self.report.findings}
        if kinds & {Kind.ANCHOR_MISMATCH, Kind.ANCHOR_TRUNCATED}:
            return
        if kinds & self._CHAIN_KINDS:
            self.report.attested_boots = {anchor.boot}
        else:
            self.report.attested_boots = {b for b in self.report.boots if b <= anchor.boot}

    # ------------------------------------------------------------------ entry points

    def run(self, anchor: Anchor | None = None) -> Report:
        if self._done:
            return self.report
        self._chains = harvest(self._read, self.volume, self.keyring, self._budget, self._flood)
        self._check_directory()
        orders: dict[int, list[Entry]] = {}
        for region in self.volume.superblock.regions:
            entries = self._scan(region)
            order = self._check_region(region, entries)
            orders[region.stream] = order
            self._entries[region.stream] = [e for e in order if e.status == "ok"]
        self._judge_torn_slots(orders)
        self._check_volume_id()
        for region in self.volume.superblock.regions:
            self._summarise(region, orders[region.stream])
        if anchor is not None:
            self._check_anchor(anchor, orders)
            self._attest(anchor)
        self._done = True
        self._budget = RatchetBudget.for_volume(self.volume.superblock.total_sectors)  # the record pass's own
        for chains in self._chains.values():
            for chain in chains:
                chain.budget = self._budget
        return self.report

    def stream_records(self, stream: int) -> Iterator[LocatedRecord]:
        """Verified records of one stream in log order (boot, seq)."""
        self.run()
        region = self.volume.region(stream)
        for e in self._entries.get(stream, []):
            if e.type not in (FrameType.DATA, FrameType.END) or e.chain is None or e.malformed:
                continue
            raw = self._read(e.lba, e.sectors)
            h = decode_frame_header(raw)
            keys = e.chain.keys_at(e.seq)
            assert keys is not None
            ct = raw[FRAME_HEADER_LEN + h.clear_len : h.body_len]
            pt = open_frame(raw, raw[FRAME_HEADER_LEN : FRAME_HEADER_LEN + h.clear_len], ct, *keys)
            if pt is None:  # the image changed under us between passes
                raise VolumeError(f"frame at sector {e.lba} changed while reading")
            verified = (e.boot, region.name) not in self._violated
            for r in decode_record_block(pt):
                yield LocatedRecord(e.boot, region.name, e.seq, self._off(e.lba), r, verified)

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
