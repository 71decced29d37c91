"""Tamper campaign: every class of change the host can make (spec §1), judged by the spec.

Each case's expected outcome is decided here from formats/svsmlog-v3.md — the §10 table
and the §8 rules — and from the writer-side ground truth of the image (which frames the
writer wrote where, in which order), never from what the reader says:

* ``detect``: verdict violated, and a violation finding whose byte offset or (stream,
  boot, seq) points at the changed frame or structure;
* ``harmless``: the commit digest and padding are not authenticated (§4.3): verdict
  intact, the very same records verified;
* ``limit``: a stated limit (§10 "cannot prove"): a truncated newest tail or a rolled
  back image (an anchor taken at the end must catch those), erasing the start of a small
  region (a crash while wrapping), the ring's oldest history, an erased key-directory
  slot. Counted separately as "not claimed".

Removals are judged by one rule (§8.3, §8.4): within a region's history (its live
frames in write order), losing a frame that has survivors on both sides is always
detected; losing the newest frames is a tail truncation; losing the oldest is rotation
if the region wrapped, a crash while wrapping if the region start is gone and less than
``MAX_WRAP_SECTORS`` are left after the newest frame, and ``frame_missing`` otherwise.
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..anchor import Anchor
from ..codec import DecodeError, decode_frame_header
from ..device import SECTOR, MemoryDevice
from ..format import FRAME_AAD_LEN, FRAME_HEADER_LEN, MAX_WRAP_SECTORS, NO_STREAM, FrameType, Layout
from ..frames import commit_digest
from ..records import Level, Record
from ..report import Kind
from ..volume import KEY_DIRECTORY, key_dir_slot
from ..writer import LogWriter
from .common import FrameRec, Run, Verified, histories, owners_public, prior_of, verify_bytes

KEYDIR = KEY_DIRECTORY.name
KEYDIR_END = KEY_DIRECTORY.start + KEY_DIRECTORY.sectors


@dataclass(frozen=True)
class Expect:
    kind: str  # "detect" | "harmless" | "limit"
    reason: str = ""
    anchor: bool = False  # a limit an anchor taken at the end must catch


DETECT = Expect("detect")
HARMLESS = Expect("harmless", "not authenticated (§4.3)")


def limit(reason: str, anchor: bool = False) -> Expect:
    return Expect("limit", reason, anchor)


TAIL = limit("newest tail: truncation / crash (§8.4, §10)", anchor=True)


def combine(a: Expect, b: Expect) -> Expect:
    """Two effects of one change: detected if either is."""
    if a.kind == "detect" or b.kind == "detect":
        return DETECT
    if a.kind == "limit":
        return a
    return b


@dataclass
class Case:
    cls: str
    what: str
    image: bytes
    expect: Expect
    offsets: set[int] = field(default_factory=set)
    idents: set[tuple[str, int, int]] = field(default_factory=set)
    superblock: bool = False
    at_start: bool = False  # a frame at its region's first sector is among those changed
    tags: frozenset[str] = frozenset()


# --------------------------------------------------------------------------- the base images


class Base:
    """An untampered image with its ground truth."""

    def __init__(self, name: str, run: Run) -> None:
        self.name = name
        self.run = run
        self.image = run.final()
        self.hist = histories(run)
        live = run.live_frames()
        in_hist = {id(f) for h in self.hist.values() for f in h}
        self.remnants = [f for f in live if f.stream in run.regions and id(f) not in in_hist]
        self.slots = [f for f in live if f.stream == NO_STREAM]
        self.volume_id = run.superblock.volume_id
        self.boots = {f.boot for f in run.frames}  # boots whose keys the owner holds
        self.region_boots = {f.boot for f in live if f.stream != NO_STREAM}
        # Every frame that may carry a boot's keys (BOOT and KEYS frames, directory slots):
        # change all of them and the boot's other frames are unreadable, which is no loss
        # of "untouched" records (§10: the host can always destroy keys).
        self.key_frames: dict[int, set[tuple[str, int, int]]] = {}
        for f in live:
            if f.type in (FrameType.BOOT, FrameType.KEYS):
                self.key_frames.setdefault(f.boot, set()).add(self.ident(f))
        self.verified = verify_bytes(self.image, run.owners)
        if self.verified.verdict != "intact":
            raise AssertionError(f"base image {name} does not verify intact")
        self.snapshots = [bytes(run.image_after(k)) for k in run.boot_starts[1:]]  # after boots 1..N-1

    def sname(self, sid: int) -> str:
        return KEYDIR if sid == NO_STREAM else self.run.names[sid]

    def ident(self, f: FrameRec) -> tuple[str, int, int]:
        return (self.sname(f.stream), f.boot, f.seq)

    def region_of(self, f: FrameRec) -> tuple[int, int]:
        if f.stream == NO_STREAM:
            return KEY_DIRECTORY.start, KEYDIR_END
        r = self.run.regions[f.stream]
        return r.start, r.start + r.sectors

    def at_start(self, frames: list[FrameRec]) -> bool:
        return any(f.lba == self.region_of(f)[0] for f in frames)

    def frames(self) -> list[FrameRec]:
        return [f for h in self.hist.values() for f in h]

    def wrapped(self, sid: int) -> bool:
        start = self.run.regions[sid].start
        return sum(1 for f in self.run.frames if f.stream == sid and f.lba == start) > 1

    # ---------------------------------------------------------------- judging removals

    def judge_removal(self, sid: int, removed: set[tuple[int, int, int]]) -> Expect:
        hist = self.hist[sid]
        pos = [i for i, f in enumerate(hist) if f.ident in removed]
        if not pos:
            return limit("only remnants of earlier laps (§8.3 rotation)")
        survivors = [i for i in range(len(hist)) if i not in pos]
        if not survivors:
            return limit("the region's whole history erased: tail truncation (§10)", anchor=True)
        first, last = survivors[0], survivors[-1]
        if any(first < p < last for p in pos):
            return DETECT
        out: Expect | None = None
        if any(p < first for p in pos):
            region = self.run.regions[sid]
            start_gone = any(hist[p].lba == region.start for p in pos if p < first)
            if start_gone:
                room = region.sectors - (hist[last].end - region.start)
                gone = {hist[p].ident for p in pos}
                left = [f for f in hist + self.remnants if f.stream == sid and f.ident not in gone]
                first_rel = min(f.lba for f in left) - region.start
                if room < MAX_WRAP_SECTORS and room < first_rel:
                    out = limit("region start erased, longer than the room left: crash while wrapping (§8.3)")
                else:
                    out = DETECT
            elif self.wrapped(sid):
                out = limit("oldest history of a wrapped region: rotation (§10)")
            else:
                out = DETECT
        if any(p > last for p in pos):
            out = TAIL if out is None else combine(out, TAIL)
        assert out is not None
        return out

    def torn_is_crash(self, sid: int, gone: tuple[int, int, int], boot: int, seq: int) -> bool:
        """§8.4 for a torn candidate claiming (boot, seq), with frame ``gone`` no longer present."""
        present = [
            f for f in self.hist[sid] + [r for r in self.remnants if r.stream == sid] if f.ident != gone
        ]
        if any(f.boot == boot and f.seq > seq for f in present):
            return False
        later = sorted(
            (f for f in present if f.boot > boot and f.seq == 0 and f.type == FrameType.BOOT),
            key=lambda f: f.boot,
        )
        if not later:
            return True
        prior = prior_of(self.run, later[0])
        return prior is None or (prior.boot, prior.seq) < (boot, seq)

    def torn(self, f: FrameRec, boot: int, seq: int) -> Expect:
        """Frame f changed so that its digest is wrong: a torn candidate claiming (boot, seq)."""
        removal = self.judge_removal(f.stream, {f.ident})
        if removal.kind == "detect":
            return DETECT
        if not self.torn_is_crash(f.stream, f.ident, boot, seq):
            return DETECT
        return removal


# --------------------------------------------------------------------------- image edits


def fix_digest(img: bytearray, lba: int) -> bool:
    """The host recomputes the keyless commit digest of the (changed) frame at lba."""
    try:
        h = decode_frame_header(bytes(img[lba * SECTOR : lba * SECTOR + FRAME_HEADER_LEN]))
    except DecodeError:
        return False
    off = lba * SECTOR
    raw = img[off : off + h.body_len]
    if len(raw) < h.body_len:
        return False
    clear = bytes(raw[FRAME_HEADER_LEN : FRAME_HEADER_LEN + h.clear_len])
    ct = bytes(raw[FRAME_HEADER_LEN + h.clear_len : h.body_len])
    img[off + FRAME_AAD_LEN : off + FRAME_HEADER_LEN] = commit_digest(bytes(raw[:FRAME_AAD_LEN]), clear, ct)
    return True


def zero(img: bytearray, lba: int, sectors: int) -> None:
    img[lba * SECTOR : (lba + sectors) * SECTOR] = bytes(sectors * SECTOR)


def copy_sectors(dst: bytearray, src: bytes, src_lba: int, dst_lba: int, sectors: int) -> None:
    dst[dst_lba * SECTOR : (dst_lba + sectors) * SECTOR] = src[
        src_lba * SECTOR : (src_lba + sectors) * SECTOR
    ]


# --------------------------------------------------------------------------- header fields

# (name, first byte, length) of the frame header (§4.3).
HEADER_FIELDS = [
    ("magic", 0, 4),
    ("version", 4, 1),
    ("type", 5, 1),
    ("stream", 6, 2),
    ("boot", 8, 4),
    ("seq", 12, 8),
    ("lba", 20, 8),
    ("volume_id", 28, 16),
    ("prev_tag", 44, 16),
    ("clear_len", 60, 4),
    ("ct_len", 64, 4),
    ("digest", 68, 16),
]
# A claimed seq at least this far out is past the reader's ratchet budget for any image the
# campaign builds (16 x total_sectors + 2**20 steps, spec §8.2): frame_corrupt. Claimed seqs
# between the image's own and this are not tried (whether they fit the budget depends on
# what else the pass ratcheted).
BEYOND_BUDGET = 1 << 24


def _positions(name: str, start: int, length: int, dense: bool) -> list[tuple[int, int]]:
    """(byte offset in the frame, xor mask) to try in a header field."""
    if name == "seq":  # claimed seqs far out: gen_huge_seq (each costs the reader its whole budget)
        if not dense:
            return [(start, 0x01), (start, 0x10), (start + 1, 0x02)]
        out = [(start, 1 << b) for b in range(8)] + [(start + 1, 1), (start + 1, 2)]
        return [*out, (start, 255)]
    if not dense:
        return [(start + length - 1, 1 << ((start + length - 1) % 8)), (start, 0xFF)]
    idx = range(length) if length <= 8 else sorted({0, 1, length // 2, length - 1})
    out = [(start + i, 1 << ((start + i) % 8)) for i in idx]
    out.append((start, 0xFF))
    return out


def _body_positions(img: bytes, f: FrameRec, dense: bool) -> list[tuple[str, int, int]]:
    """(field, byte offset in the frame, mask) for clear section, ciphertext, tag, padding."""
    h = decode_frame_header(img[f.offset : f.offset + FRAME_HEADER_LEN])
    out: list[tuple[str, int, int]] = []
    if h.clear_len:
        c0 = FRAME_HEADER_LEN
        pts = [0, 1, 2, 3, 5, 21, 23, 23 + 40, h.clear_len - 1] if dense else [0, 3, 23 + 40]
        if dense:
            pts += list(range(0, h.clear_len, max(1, h.clear_len // 24)))
        out += [("clear", c0 + p, 1 << (p % 8)) for p in sorted(set(pts)) if p < h.clear_len]
    ct0 = FRAME_HEADER_LEN + h.clear_len
    body = h.ct_len - 16
    pts = ([0, body // 2, body - 1] if dense else [body // 2]) if body > 0 else []
    if dense and body > 0:
        pts += list(range(0, body, max(1, body // 16)))
    out += [("ciphertext", ct0 + p, 1 << (p % 8)) for p in sorted(set(pts))]
    out += [("tag", ct0 + body + p, 1 << (p % 8)) for p in ((0, 7, 15) if dense else (15,))]
    pad = f.sectors * SECTOR - h.body_len
    if pad:
        out += [("padding", h.body_len, 0x01), ("padding", f.sectors * SECTOR - 1, 0xFF)]
    return out


def _expect_header_change(base: Base, f: FrameRec, img: bytes, field_name: str, fixed: bool) -> Expect:
    """The outcome of a header or body change of frame f, from §8.1–§8.4."""
    if field_name in ("digest", "padding"):
        return HARMLESS
    _start, end = base.region_of(f)
    hdr = img[f.offset : f.offset + FRAME_HEADER_LEN]
    if hdr[:4] != b"SVLF":
        if f.stream == NO_STREAM:
            return limit("key-directory slot erased (a slot is optional, §4.7)")
        return base.judge_removal(f.stream, {f.ident})  # no longer a candidate
    try:
        h = decode_frame_header(hdr)
    except DecodeError:
        return DETECT  # magic with a bad header: frame_corrupt (§8.1)
    if f.lba + h.sectors > end:
        return DETECT  # does not fit its region: frame_corrupt (§8.1)
    if f.stream == NO_STREAM:
        if h.lba != key_dir_slot(h.boot) or h.seq != 0 or h.type != FrameType.KEYS:
            return DETECT  # a frame in the wrong slot: frame_moved (§8.2)
        if h.volume_id != base.volume_id or h.stream != NO_STREAM:
            return DETECT  # frame_foreign / frame_misplaced
        if h.boot not in base.region_boots:
            return limit(
                "slot naming a boot with no frame left in any region: a torn slot reads as a "
                "crash at that boot's start, an unopenable one as no key (§8.2)"
            )
        return DETECT  # torn slot of a boot with frames, or tag fails: frame_corrupt (§8.2)
    if h.volume_id != base.volume_id or h.stream != f.stream or h.lba != f.lba:
        return DETECT  # frame_foreign / frame_misplaced / frame_moved (§8.2)
    if h.seq >= BEYOND_BUDGET and h.boot in base.boots:
        return DETECT  # further than the ratchet budget reaches: frame_corrupt (§8.2)
    if fixed:
        if h.boot != f.boot and h.boot not in base.boots:
            # A boot we hold no key for: the frame reads as another recipient's (no_key, §8.2),
            # links to it are unknown (§8.3): what is judged is the frame that went missing.
            return base.judge_removal(f.stream, {f.ident})
        return DETECT  # tag fails, digest right: frame_corrupt (§8.2)
    return base.torn(f, h.boot, h.seq)


def flip_class(f: FrameRec, name: str, fixed: bool) -> str:
    """Table rows: one per structure and part; DATA header fields one by one."""
    if name == "digest":
        return "commit digest (any frame)"
    if name == "padding":
        return "padding (any frame)"
    kind = "key-directory slot" if f.stream == NO_STREAM else f"{FrameType(f.type).name} frame"
    if name in ("clear", "ciphertext", "tag"):
        part = {"clear": "clear section"}.get(name, name)
    elif f.type == FrameType.DATA and f.stream != NO_STREAM:
        part = f"header {name}"
    else:
        part = "header"
    return f"{kind}: {part}" + (", digest recomputed" if fixed else "")


def gen_field_flips(base: Base, targets: list[FrameRec], *, fixed: bool, dense: bool) -> Iterator[Case]:
    for f in targets:
        start, _ = base.region_of(f)
        spots = [(n, off, m) for n, s, ln in HEADER_FIELDS for off, m in _positions(n, s, ln, dense)]
        spots += _body_positions(base.image, f, dense)
        for name, off, mask in spots:
            if fixed and name in ("digest", "padding"):
                continue
            img = bytearray(base.image)
            img[f.offset + off] ^= mask
            if fixed and name != "magic":
                fix_digest(img, f.lba)
            exp = _expect_header_change(base, f, bytes(img), name, fixed)
            boot0 = name == "boot" and struct.unpack_from("<I", img, f.offset + 8)[0] == 0
            yield Case(
                flip_class(f, name, fixed),
                f"{base.name}: {base.ident(f)} byte {off} ^ {mask:#04x}"
                + (", digest recomputed" if fixed else ""),
                bytes(img),
                exp,
                {f.offset},
                {base.ident(f)},
                at_start=f.lba == start,
                tags=frozenset({"boot0"} if boot0 else ()),
            )


def gen_huge_seq(base: Base, targets: list[FrameRec], variants: int) -> Iterator[Case]:
    """A claimed seq past the ratchet budget (+2**56), digest kept or recomputed, in the
    middle frame of the first region: frame_corrupt at that frame, and every other frame
    still read (§8.2). Each case costs the reader its whole budget, so there are few."""
    frames = [f for f in targets if f.stream != NO_STREAM]
    for f in frames[len(frames) // 2 :][:1]:
        for off, mask in ((12 + 7, 0x01),):
            for fixed in (False, True)[:variants]:
                img = bytearray(base.image)
                img[f.offset + off] ^= mask
                if fixed:
                    fix_digest(img, f.lba)
                yield Case(
                    flip_class(f, "seq", fixed),
                    f"{base.name}: {base.ident(f)} byte {off} ^ {mask:#04x} (claimed seq past the budget)"
                    + (", digest recomputed" if fixed else ""),
                    bytes(img),
                    DETECT,
                    {f.offset},
                    {base.ident(f)},
                    at_start=f.lba == base.region_of(f)[0],
                )


def gen_drop(base: Base, targets: list[FrameRec]) -> Iterator[Case]:
    for f in targets:
        img = bytearray(base.image)
        zero(img, f.lba, f.sectors)
        if f.stream == NO_STREAM:
            exp = limit("key-directory slot erased (a slot is optional, §4.7)")
        else:
            exp = base.judge_removal(f.stream, {f.ident})
        yield Case(
            "drop (zero) a frame",
            f"{base.name}: {base.ident(f)}",
            bytes(img),
            exp,
            {f.offset},
            {base.ident(f)},
            at_start=base.at_start([f]),
        )


def _free_space(base: Base, sid: int, img: bytes, need: int) -> int | None:
    """An all-zero run of sectors after the region's newest frame."""
    r = base.run.regions[sid]
    hist = base.hist[sid]
    lo = hist[-1].end if hist else r.start
    hi = r.start + r.sectors
    if hi - lo >= need + 2:
        at = hi - need
        if img[at * SECTOR : hi * SECTOR] == bytes(need * SECTOR):
            return at
    return None


def gen_duplicate(base: Base, targets: list[FrameRec]) -> Iterator[Case]:
    for f in targets:
        if f.stream == NO_STREAM:
            continue
        at = _free_space(base, f.stream, base.image, f.sectors)
        if at is not None:
            img = bytearray(base.image)
            copy_sectors(img, base.image, f.lba, at, f.sectors)
            yield Case(
                "duplicate a frame elsewhere",
                f"{base.name}: {base.ident(f)} copied to {at}",
                bytes(img),
                DETECT,
                {at * SECTOR},
                {base.ident(f)},
            )
            img = bytearray(base.image)
            copy_sectors(img, base.image, f.lba, at, f.sectors)
            struct.pack_into("<Q", img, at * SECTOR + 20, at)  # the host rewrites lba to match
            fix_digest(img, at)
            yield Case(
                "duplicate a frame elsewhere",
                f"{base.name}: {base.ident(f)} copied to {at}, lba and digest rewritten",
                bytes(img),
                DETECT,
                {at * SECTOR},
                {base.ident(f)},
            )
        # over another frame of the same region
        hist = base.hist[f.stream]
        others = [g for g in hist if g.lba != f.lba and g.sectors >= f.sectors]
        if others:
            g = others[len(others) // 2]
            img = bytearray(base.image)
            copy_sectors(img, base.image, f.lba, g.lba, f.sectors)
            yield Case(
                "duplicate a frame elsewhere",
                f"{base.name}: {base.ident(f)} copied over {base.ident(g)}",
                bytes(img),
                DETECT,
                {g.offset, f.offset},
                {base.ident(f), base.ident(g)},
            )


def gen_swap(base: Base, limit_pairs: int) -> Iterator[Case]:
    n = 0
    for _sid, hist in base.hist.items():
        for i in range(len(hist) - 1):
            a = hist[i]
            b = next((g for g in hist[i + 1 :] if g.sectors == a.sectors), None)
            if b is None:
                continue
            yield Case(
                "reorder (swap) two frames",
                f"{base.name}: {base.ident(a)} <-> {base.ident(b)}",
                _swapped(base.image, a, b),
                DETECT,
                {a.offset, b.offset},
                {base.ident(a), base.ident(b)},
            )
            n += 1
            if n >= limit_pairs:
                return


def _swapped(image: bytes, a: FrameRec, b: FrameRec) -> bytes:
    """``image`` with frames a and b (of the same length) in each other's place."""
    img = bytearray(image)
    copy_sectors(img, image, a.lba, b.lba, a.sectors)
    copy_sectors(img, image, b.lba, a.lba, a.sectors)
    return bytes(img)


def gen_misplace(base: Base, targets: list[FrameRec]) -> Iterator[Case]:
    sids = list(base.run.regions)
    for f in targets:
        if f.stream == NO_STREAM:
            continue
        for other in sids:
            if other == f.stream:
                continue
            at = _free_space(base, other, base.image, f.sectors)
            if at is not None:
                img = bytearray(base.image)
                copy_sectors(img, base.image, f.lba, at, f.sectors)
                yield Case(
                    "move a frame to another stream's region",
                    f"{base.name}: {base.ident(f)} into {base.sname(other)} at {at}",
                    bytes(img),
                    DETECT,
                    {at * SECTOR},
                    {base.ident(f)},
                )
            hist = base.hist[other]
            g = next((g for g in hist[1:] if g.sectors == f.sectors), None)
            if g is not None:
                yield Case(
                    "move a frame to another stream's region",
                    f"{base.name}: {base.ident(f)} swapped with {base.ident(g)}",
                    _swapped(base.image, f, g),
                    DETECT,
                    {f.offset, g.offset},
                    {base.ident(f), base.ident(g)},
                )
            break


def gen_foreign(base: Base, other: Base, targets: list[FrameRec]) -> Iterator[Case]:
    """Sectors spliced in from another volume."""
    for f in other.frames()[:: max(1, len(other.frames()) // max(1, len(targets)))][: len(targets)]:
        sid = f.stream if f.stream in base.run.regions else next(iter(base.run.regions))
        at = _free_space(base, sid, base.image, f.sectors)
        if at is not None:
            img = bytearray(base.image)
            copy_sectors(img, other.image, f.lba, at, f.sectors)
            yield Case(
                "splice from another image",
                f"{base.name}: {other.name} {other.ident(f)} at {at}",
                bytes(img),
                DETECT,
                {at * SECTOR},
            )
        # the same sectors, at the same place (where that place is inside one of our regions)
        inside = any(r.start <= f.lba and f.end <= r.start + r.sectors for r in base.run.regions.values())
        if inside:
            img = bytearray(base.image)
            copy_sectors(img, other.image, f.lba, f.lba, f.sectors)
            if bytes(img) != base.image:
                yield Case(
                    "splice from another image",
                    f"{base.name}: {other.name} sectors {f.lba}+{f.sectors} in place",
                    bytes(img),
                    DETECT,
                    {f.offset},
                    {base.ident(g) for g in base.frames() + base.remnants if g.lba < f.end and f.lba < g.end},
                )
    # the other image's key-directory slot
    for s in other.slots[:2]:
        img = bytearray(base.image)
        copy_sectors(img, other.image, s.lba, s.lba, s.sectors)
        yield Case(
            "splice from another image",
            f"{base.name}: {other.name} key-directory slot {s.lba}",
            bytes(img),
            DETECT,
            {s.offset},
            {base.ident(g) for g in base.slots if g.lba < s.end and s.lba < g.end},
        )


def gen_snapshot_splice(base: Base, targets: list[FrameRec]) -> Iterator[Case]:
    """Sectors from an earlier copy of this image (an earlier boot)."""
    if not base.snapshots:
        return
    snap_index = len(base.snapshots) // 2
    snap = base.snapshots[snap_index]
    k = base.run.boot_starts[1:][snap_index]
    old = [f for f in base.run.live_frames(k) if f.stream != NO_STREAM]
    # an earlier frame put back somewhere else
    for f in old[:: max(1, len(old) // max(1, len(targets)))][: len(targets)]:
        hist = base.hist[f.stream]
        at = _free_space(base, f.stream, base.image, f.sectors)
        dests = ([at] if at is not None else []) + [
            g.lba for g in hist if g.lba != f.lba and g.sectors >= f.sectors
        ][:1]
        for d in dests:
            img = bytearray(base.image)
            copy_sectors(img, snap, f.lba, d, f.sectors)
            over = {g.ident for g in hist + base.remnants if g.lba < d + f.sectors and d < g.end}
            yield Case(
                "splice from an earlier boot of this image",
                f"{base.name}: snapshot frame {base.ident(f)} at {d}",
                bytes(img),
                DETECT,
                {d * SECTOR},
                {base.ident(f)} | {(base.sname(f.stream), b, s) for _, b, s in over},
            )
    # an earlier copy of the sectors of a frame written since, in place
    for f in targets:
        if f.stream == NO_STREAM or f.write < k:
            continue
        img = bytearray(base.image)
        copy_sectors(img, snap, f.lba, f.lba, f.sectors)
        hit = [g for g in base.hist[f.stream] if g.lba < f.end and f.lba < g.end]
        exp = base.judge_removal(f.stream, {g.ident for g in hit})
        yield Case(
            "splice from an earlier boot of this image",
            f"{base.name}: sectors of {base.ident(f)} from the snapshot after boot {snap_index + 1}",
            bytes(img),
            exp,
            {f.offset},
            {base.ident(g) for g in hit},
            at_start=base.at_start(hit),
        )


def gen_truncate_earlier_boot(base: Base) -> Iterator[Case]:
    """Cut an earlier boot short after a later boot started (§10: boot_truncated)."""
    for sid, hist in base.hist.items():
        boots = sorted({f.boot for f in hist})
        for b in boots[:-1]:
            mine = [f for f in hist if f.boot == b]
            for j in range(len(mine)):
                what = f"{base.name}: {base.sname(sid)} boot {b} from seq {mine[j].seq}"
                yield _removal(base, sid, mine[j:], "truncate an earlier boot", what, base.at_start(mine[j:]))


def _removal(
    base: Base, sid: int, frames: list[FrameRec], cls: str, what: str, at_start: bool = False
) -> Case:
    """The case of ``frames`` of stream ``sid`` zeroed, as the spec judges their absence."""
    img = bytearray(base.image)
    for f in frames:
        zero(img, f.lba, f.sectors)
    exp = base.judge_removal(sid, {f.ident for f in frames})
    offsets, idents = {f.offset for f in frames}, {base.ident(f) for f in frames}
    return Case(cls, what, bytes(img), exp, offsets, idents, at_start=at_start)


def gen_truncate_tail(base: Base) -> Iterator[Case]:
    """The newest frames of a region gone, at every frame boundary (§10: anchor only)."""
    for sid, hist in base.hist.items():
        for p in range(len(hist)):
            what = f"{base.name}: {base.sname(sid)} from {base.ident(hist[p])}"
            yield _removal(base, sid, hist[p:], "truncate a region's tail", what)


def gen_rollback(base: Base) -> Iterator[Case]:
    for i, snap in enumerate(base.snapshots):
        yield Case(
            "roll the image back",
            f"{base.name}: whole image to after boot {i + 1}",
            snap,
            limit("rollback of the whole image (§10)", anchor=True),
        )
        for sid, r in base.run.regions.items():
            img = bytearray(base.image)
            copy_sectors(img, snap, r.start, r.start, r.sectors)
            if bytes(img) == base.image:
                continue
            yield Case(
                "roll the image back",
                f"{base.name}: region {base.sname(sid)} to after boot {i + 1}",
                bytes(img),
                limit("one region rolled back: its tail truncated (§10)", anchor=True),
            )
        img = bytearray(base.image)
        copy_sectors(img, snap, KEY_DIRECTORY.start, KEY_DIRECTORY.start, KEY_DIRECTORY.sectors)
        if bytes(img) != base.image:
            yield Case(
                "roll the image back",
                f"{base.name}: key directory to after boot {i + 1}",
                bytes(img),
                limit("key-directory slots erased (a slot is optional, §4.7)"),
            )


def _region_edits(i: int, sb: bytes) -> list[tuple[str, Callable[[bytearray], None]]]:
    """Changes to region entry i that keep the superblock valid."""
    e = 64 + 32 * i
    start, sectors = struct.unpack_from("<QQ", sb, e + 16)
    stream = struct.unpack_from("<H", sb, e)[0]

    def shrink(b: bytearray) -> None:
        struct.pack_into("<Q", b, e + 24, sectors - 8)

    def shift(b: bytearray) -> None:
        struct.pack_into("<QQ", b, e + 16, start + 8, sectors - 8)

    def renumber(b: bytearray) -> None:
        struct.pack_into("<H", b, e, stream + 100)

    def rename(b: bytearray) -> None:
        b[e + 4] = ord("z") if b[e + 4] != ord("z") else ord("y")

    return [
        (f"region {i} sectors - 8", shrink),
        (f"region {i} start + 8, sectors - 8", shift),
        (f"region {i} stream id + 100", renumber),
        (f"region {i} renamed", rename),
    ]


def gen_superblock(base: Base, dense: bool) -> Iterator[Case]:
    n = len(base.run.regions)
    table_end = 64 + 32 * n
    step = 1 if dense else 3
    for off in [*list(range(0, table_end, step)), table_end, 300, 511]:
        for mask in (0xFF, 0x01) if dense else (0xFF,):
            img = bytearray(base.image)
            img[off] ^= mask
            yield Case(
                "superblock byte",
                f"{base.name}: superblock byte {off} ^ {mask:#04x}",
                bytes(img),
                DETECT,
                {0},
                superblock=True,
            )
    # still-valid geometry changes
    sb = bytearray(base.image[:SECTOR])
    total = struct.unpack_from("<Q", sb, 32)[0]
    edits: list[tuple[str, Callable[[bytearray], None]]] = [
        ("total_sectors - 1", lambda b: struct.pack_into("<Q", b, 32, total - 1)),
    ]
    for i in range(n):
        edits += _region_edits(i, bytes(sb))
    if n > 1:

        def swap_names(b: bytearray) -> None:
            a, c = bytes(b[64 + 4 : 64 + 16]), bytes(b[96 + 4 : 96 + 16])
            b[64 + 4 : 64 + 16], b[96 + 4 : 96 + 16] = c, a

        edits.append(("first two region names swapped", swap_names))
    for what, edit in edits:
        img = bytearray(base.image)
        s = bytearray(img[:SECTOR])
        edit(s)
        img[:SECTOR] = s
        yield Case("superblock geometry", f"{base.name}: {what}", bytes(img), DETECT, {0}, superblock=True)


def _forge_on(base: Base, image: bytes, message: str) -> tuple[bytes, int]:
    dev = MemoryDevice(len(image) // SECTOR, image)
    w = LogWriter(dev, base.run.streams, owners_public(base.run))
    sid = next(iter(base.run.regions))
    w.append(sid, Record(1_000, Level.ERROR, "attest", "svsm", message))
    w.close()
    return dev.image(), w.boot


def gen_forge(base: Base) -> list[tuple[Case, int]]:
    """The host runs the writer itself with the owner's public key (§10: only an anchor of a
    later boot, or of the forged boot's number, tells)."""
    img, boot = _forge_on(base, base.image, "attestation failed (forged by the host)")
    out = [
        (
            Case(
                "forge a boot (host runs the writer)",
                f"{base.name}: forged newest boot {boot}",
                img,
                limit("a forged newest boot, the anchor being of an earlier boot (§10)"),
            ),
            boot,
        )
    ]
    if base.snapshots:
        snap = base.snapshots[len(base.snapshots) // 2]
        img, boot = _forge_on(base, snap, "forged after a rollback")
        out.append(
            (
                Case(
                    "forge a boot (host runs the writer)",
                    f"{base.name}: rolled back, then forged boot {boot}",
                    img,
                    limit(
                        "a forged boot after a rollback: the anchor of a later boot catches it (§10)", True
                    ),
                ),
                boot,
            )
        )
    return out


# --------------------------------------------------------------------------- running


@dataclass
class TamperRow:
    cls: str
    cases: int = 0
    claimed: int = 0
    detected: int = 0
    located: int = 0
    missed: int = 0
    harmless: int = 0
    harmless_ok: int = 0
    harmless_flagged: int = 0
    limits: int = 0
    limits_flagged: int = 0  # a limit case the reader flagged anyway (fine)
    anchor_cases: int = 0
    anchor_caught: int = 0
    collateral_checked: int = 0
    collateral: int = 0  # cases where records of frames the change did not touch were not output
    known: dict[str, int] = field(default_factory=dict)  # must-be-zero figures by known defect
    examples: list[str] = field(default_factory=list)

    @property
    def mislocated(self) -> int:
        return self.detected - self.located

    @property
    def must_be_zero(self) -> int:
        return (
            self.missed
            + self.mislocated
            + self.harmless_flagged
            + self.collateral
            + (self.anchor_cases - self.anchor_caught)
        )

    @property
    def unexplained(self) -> int:
        """Must-be-zero figures not accounted for by a known defect (tests/campaigns/
        test_found_defects.py): what a new defect would show up as."""
        return self.must_be_zero - sum(self.known.values())

    def note(self, what: str) -> None:
        if len(self.examples) < 6:
            self.examples.append(what)


@dataclass
class TamperFigures:
    rows: dict[str, TamperRow] = field(default_factory=dict)
    bases: list[str] = field(default_factory=list)
    forged_verified_records: int = 0
    seconds: float = 0.0
    collateral: bool = True  # also check that records of untouched frames are still output

    def row(self, cls: str) -> TamperRow:
        return self.rows.setdefault(cls, TamperRow(cls))

    @property
    def must_be_zero(self) -> int:
        return sum(r.must_be_zero for r in self.rows.values())

    @property
    def unexplained(self) -> int:
        return sum(r.unexplained for r in self.rows.values())


# Known defects (reproducers in tests/campaigns/test_found_defects.py). A miss is put down to
# one only when it shows that defect's signature; anything else is unexplained.
# None is open: D12, the last, is fixed (run.py FIXED_DEFECTS). When a campaign finds a defect
# that is not fixed at once, name it here and teach `attribute` its signature, so the figures
# keep it apart from unexplained failures until the fix lands.
KNOWN_DEFECTS: dict[str, str] = {}


def attribute(case: Case, v: Verified, missed: bool) -> str | None:
    """The known defect a miss or a wrong location shows the signature of (none is open)."""
    return None


def located(case: Case, v: Verified, base: Base) -> bool:
    if v.report is None:
        return case.superblock
    for f in v.violations():
        if case.superblock and (f.kind is Kind.SUPERBLOCK_MISMATCH or f.offset == 0):
            return True
        if f.offset is not None and f.offset in case.offsets:
            return True
        if (f.stream, f.boot, f.seq) in case.idents:
            return True
    return False


# Classes whose changes legitimately take other frames with them: an unreadable or re-keyed
# superblock, a rolled-back image, a forged boot that may reclaim frames.
NO_COLLATERAL_CHECK = ("superblock", "roll the image back", "forge")


def judge(case: Case, base: Base, fig: TamperFigures, anchor: Anchor | None) -> None:
    row = fig.row(case.cls)
    row.cases += 1
    check_collateral = fig.collateral and not case.cls.startswith(NO_COLLATERAL_CHECK)
    v = verify_bytes(case.image, base.run.owners, records=case.expect.kind == "harmless" or check_collateral)
    kinds = sorted({f.kind.value for f in v.violations()}) if v.report else ["unreadable"]
    violated = v.verdict in ("violated", "unreadable")
    if check_collateral:
        row.collateral_checked += 1
        names = {(s, b, q) for s, b, q in case.idents}
        keyless = {b for b, frames in base.key_frames.items() if frames <= names}
        want = Counter(
            {
                k: n
                for k, n in base.verified.output.items()
                if (k[1], k[0], k[2]) not in names and k[0] not in keyless
            }
        )
        lost = want - v.output
        if lost:
            row.collateral += 1
            d = attribute(case, v, False)
            if d:
                row.known[d] = row.known.get(d, 0) + 1
            row.note(
                f"COLLATERAL{f' ({d})' if d else ''} {case.what}: {sum(lost.values())} records of untouched "
                f"frames not output, e.g. {next(iter(lost))[:3]}"
            )
    if case.expect.kind == "detect":
        row.claimed += 1
        if not violated:
            row.missed += 1
            d = attribute(case, v, True)
            if d:
                row.known[d] = row.known.get(d, 0) + 1
            row.note(f"MISSED{f' ({d})' if d else ''} {case.what}: {v.verdict}")
        else:
            row.detected += 1
            if located(case, v, base):
                row.located += 1
            else:
                d = attribute(case, v, False)
                if d:
                    row.known[d] = row.known.get(d, 0) + 1
                row.note(
                    f"MISLOCATED{f' ({d})' if d else ''} {case.what}: "
                    f"{[f.as_json() for f in v.violations()][:2]}"
                )
    elif case.expect.kind == "harmless":
        row.harmless += 1
        if v.verdict == "intact" and v.records == base.verified.records:
            row.harmless_ok += 1
        else:
            row.harmless_flagged += 1
            row.note(f"FLAGGED harmless {case.what}: {v.verdict} {kinds}")
    else:
        row.limits += 1
        if violated:
            row.limits_flagged += 1
        if case.expect.anchor and anchor is not None:
            row.anchor_cases += 1
            va = verify_bytes(case.image, base.run.owners, anchor, records=False)
            caught = va.report is None or any(
                f.kind in (Kind.ANCHOR_TRUNCATED, Kind.ANCHOR_MISMATCH) for f in va.violations()
            )
            if caught:
                row.anchor_caught += 1
            else:
                row.note(f"ANCHOR MISSED {case.what}")


def pick_targets(base: Base, dense: bool) -> list[FrameRec]:
    """Every frame (dense), or per region the first, second, middle, last two, every BOOT
    frame of the second boot and every KEYS frame; plus the key-directory slots."""
    out: list[FrameRec] = []
    hists = list(base.hist.values())
    if not dense and len(hists) > 3:
        hists = hists[:: len(hists) // 3][:3]
    for hist in hists:
        if dense:
            out += hist
            continue
        idx = {0, 1, len(hist) // 2, len(hist) - 2, len(hist) - 1}
        pick = [hist[i] for i in sorted(i for i in idx if 0 <= i < len(hist))]
        pick += [f for f in hist if f.type == FrameType.KEYS][:2]
        pick += [f for f in hist if f.type == FrameType.BOOT and f.boot == 2]
        out += list({id(f): f for f in pick}.values())
    out += base.slots if dense else base.slots[:2]
    return out


def tamper_campaign(
    bases: list[Base], other: Base, *, dense: bool, swaps: int = 12, huge_seq: int | None = None
) -> TamperFigures:
    t0 = time.perf_counter()
    fig = TamperFigures(bases=[b.name for b in bases])
    for i, base in enumerate(bases):
        targets = pick_targets(base, dense)
        huge = huge_seq if huge_seq is not None else (2 if dense else int(i == 0))
        anchor = base.run.anchor
        gens: list[Iterator[Case]] = [
            gen_field_flips(base, targets, fixed=False, dense=dense),
            gen_field_flips(base, targets, fixed=True, dense=dense),
            gen_huge_seq(base, targets, huge),
            gen_drop(base, targets),
            gen_duplicate(base, targets),
            gen_swap(base, swaps),
            gen_misplace(base, targets),
            gen_foreign(base, other, targets),
            gen_snapshot_splice(base, targets),
            gen_truncate_earlier_boot(base),
            gen_truncate_tail(base),
            gen_rollback(base),
            gen_superblock(base, dense),
        ]
        for gen in gens:
            for case in gen:
                judge(case, base, fig, anchor)
        for case, boot in gen_forge(base):
            judge(case, base, fig, anchor)
            v = verify_bytes(case.image, base.run.owners)
            if not case.expect.anchor:
                fig.forged_verified_records += sum(n for k, n in v.records.items() if k[0] == boot)
    fig.seconds = time.perf_counter() - t0
    return fig


def tamper_bases(size: str) -> tuple[list[Base], Base]:
    """The scenarios the campaign tampers with, and another volume to splice from."""
    from ..volume import StreamSpec
    from .common import model_run, writer_run

    small = {n: 32 for n in ("boot", "core", "attest", "vtpm", "apic", "uefi", "console")}
    full = size == "full"
    runs = [
        Base(
            "multi-boot/per-service",
            model_run("multi-boot", Layout.PER_SERVICE, boots=4, seed=3, steady_s=3 if full else 1.5),
        ),
        Base(
            "roomy/aggregated",
            writer_run(
                "roomy",
                [StreamSpec(1, "all", 2600)],
                boots=3,
                records_per_boot=24 if full else 12,
                seed=5,
                big_every=1000,
            ),
        ),
        Base(
            "wraparound/aggregated",
            model_run("wraparound", Layout.AGGREGATED, boots=3, seed=4, steady_s=12 if full else 6),
        ),
        Base(
            "debug/per-service",
            model_run("debug", Layout.PER_SERVICE, boots=2, seed=6, sectors=small, steady_s=2 if full else 1),
        ),
    ]
    if full:
        runs += [
            Base(
                "multi-boot/aggregated",
                model_run("multi-boot", Layout.AGGREGATED, boots=5, seed=7, steady_s=3),
            ),
            Base(
                "wraparound/per-service",
                model_run("wraparound", Layout.PER_SERVICE, boots=3, seed=8, steady_s=8),
            ),
        ]
    other = Base("other-volume", model_run("multi-boot", Layout.PER_SERVICE, boots=2, seed=9, steady_s=1))
    return runs, other
