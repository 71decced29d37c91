"""Finding frames in a region (spec §8.1), shared by the writer's mount and the reader.

The scan walks a region sector by sector. A sector that starts with the frame magic
and decodes as a frame header that fits in the region is a *candidate*. The consumer
decides whether it is a frame (AEAD for the reader, the commit digest for the keyless
writer) and sets ``accepted``; the scan then jumps past it, otherwise it moves on by
one sector, so a forged or torn header can never hide the frames behind it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import NamedTuple

from .codec import DecodeError, FrameHeader, RegionEntry, decode_frame_header
from .device import SECTOR
from .format import FRAME_HEADER_LEN, FRAME_MAGIC, TAG_LEN
from .frames import commit_digest

ReadSectors = Callable[[int, int], bytes]
# The consumer's fast lane (Verifier): (window, byte offset of sector lba in it, lba, stop,
# the window's end sector, rejection budget left) -> the sector after the frames it took
# straight from the window, lba where it took none. It may take only frames the scan would
# have yielded as candidates there, and that the consumer would then have accepted.
Lane = Callable[[bytes, int, int, int, int, int], int]
WINDOW_SECTORS = 2048  # read the region 1 MiB at a time


@dataclass(slots=True)
class Candidate:
    lba: int
    header: FrameHeader
    raw: bytes  # header, clear section and ciphertext (padding excluded)
    accepted: bool = False

    @property
    def clear(self) -> bytes:
        return self.raw[FRAME_HEADER_LEN : FRAME_HEADER_LEN + self.header.clear_len]

    @property
    def ciphertext(self) -> bytes:
        return self.raw[FRAME_HEADER_LEN + self.header.clear_len :]

    @property
    def tag(self) -> bytes:
        return self.raw[-TAG_LEN:]

    def digest_ok(self) -> bool:
        h = self.header
        aad = self.raw[: FRAME_HEADER_LEN - 16]
        return commit_digest(aad, self.clear, self.ciphertext) == h.digest


class Malformed(NamedTuple):
    """A sector that starts with the frame magic but is not a usable frame header."""

    lba: int
    reason: str
    final: bool = False  # the rejection budget is spent: the scan stops here


def _fill(read: ReadSectors, lba: int, count: int, end: int) -> bytes:
    """The window from ``lba``: at least ``count`` sectors, 1 MiB where the region has it."""
    n = max(count, min(WINDOW_SECTORS, end - lba))
    buf = read(lba, n)
    if len(buf) != n * SECTOR:
        raise DecodeError(f"short read at sector {lba}")
    return buf


def rejection_budget(region: RegionEntry) -> int:
    """Bytes that rejected candidates may cost in a region (spec §8.1). A rejected candidate
    moves the scan on by one sector only, so a hostile region with a long forged header on
    every sector would otherwise cost a frame's length per sector. Honest regions reject
    a handful of torn frames at most."""
    return region.sectors * SECTOR + 64 * 1024 * 1024


def scan_region(
    read: ReadSectors, region: RegionEntry, lo: int | None = None, hi: int | None = None,
    lane: Lane | None = None,
) -> Iterator[Candidate | Malformed]:
    """Candidates of the region; with ``lo``/``hi``, only those starting in [lo, hi), as a
    scan from ``lo`` finds them (svsmlog.parallel stitches such pieces together). Where a
    sector starts with the magic, ``lane`` may first take the frames from there on that lie
    whole in the window (and again once the window is moved to a frame that ran past it);
    the scan goes on after them, and they are not yielded."""
    end = region.start + region.sectors
    lba = region.start if lo is None else lo
    stop = end if hi is None else min(hi, end)
    budget = rejection_budget(region)
    # The region is read through a window of 1 MiB: sectors [w_lo, w_hi) are buf.
    buf, w_lo, w_hi = b"", lba, lba
    while lba < stop:
        if not w_lo <= lba < w_hi:
            buf = _fill(read, lba, 1, end)
            w_lo, w_hi = lba, lba + len(buf) // SECTOR
        off = (lba - w_lo) * SECTOR
        if buf[off : off + 4] != FRAME_MAGIC:
            # On to the next sector of the window that starts with the magic. A match
            # inside a sector moves past that sector: one search per sector at worst.
            j = buf.find(FRAME_MAGIC, off + SECTOR)
            lba = w_hi if j < 0 else w_lo + j // SECTOR + (1 if j % SECTOR else 0)
            continue
        if lane is not None:
            taken = lane(buf, off, lba, stop, w_hi, budget)
            if taken != lba:
                lba = taken
                continue
        try:
            header = decode_frame_header(buf, off)
        except DecodeError as e:
            yield Malformed(lba, str(e))
            lba += 1
            continue
        body = FRAME_HEADER_LEN + header.clear_len + header.ct_len  # header.body_len, header.sectors:
        n = -(-body // SECTOR)  # two property calls a frame less
        if lba + n > end:
            yield Malformed(lba, f"frame of {n} sectors runs past the end of region {region.name!r}")
            lba += 1
            continue
        if budget < n * SECTOR:
            yield Malformed(
                lba, "too many overlapping invalid frames: the rest of the region is not examined", final=True
            )
            return
        if lba + n > w_hi:
            buf = _fill(read, lba, n, end)
            w_lo, w_hi, off = lba, lba + len(buf) // SECTOR, 0
            if lane is not None:  # the frame that ran past the old window lies in this one
                taken = lane(buf, off, lba, stop, w_hi, budget)
                if taken != lba:
                    lba = taken
                    continue
        cand = Candidate(lba, header, buf[off : off + body])
        yield cand
        if cand.accepted:
            lba += n
        else:
            budget -= n * SECTOR
            lba += 1


class Head(NamedTuple):
    """The newest complete frame of a region, as the keyless writer sees it."""

    boot: int
    seq: int
    tag: bytes
    end: int  # sector after the frame, relative to the region start


def find_head(read: ReadSectors, region: RegionEntry, volume_id: bytes) -> tuple[Head | None, int]:
    """The writer's mount rule (spec §7.2): the complete frame with the largest (boot, seq),
    and the largest boot number any header of this volume claims here, complete or torn
    (a boot number is never used twice, even by a boot that crashed at its first write)."""
    best: Head | None = None
    claimed = 0
    for c in scan_region(read, region):
        if not isinstance(c, Candidate):
            continue
        h = c.header
        if h.volume_id != volume_id or h.lba != c.lba or h.stream != region.stream:
            continue
        claimed = max(claimed, h.boot)
        if not c.digest_ok():
            continue
        c.accepted = True
        if best is None or (h.boot, h.seq) > (best.boot, best.seq):
            best = Head(h.boot, h.seq, c.tag, c.lba - region.start + h.sectors)
    return best, claimed
