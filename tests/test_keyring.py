"""The key harvest's sector test (svsmlog.keyring._key_frames): every sector that starts a
BOOT or KEYS header is found, and the magic count is exact, as a plain walk over the
sectors finds them (the reference below, the implementation before the column test)."""

from __future__ import annotations

from collections.abc import Iterator

from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog import keyring
from svsmlog.codec import DecodeError, FrameHeader, RegionEntry, decode_frame_header, encode_frame_header
from svsmlog.device import SECTOR
from svsmlog.format import FRAME_HEADER_LEN, FRAME_MAGIC, FrameType
from svsmlog.scan import WINDOW_SECTORS, ReadSectors, rejection_budget

KEY_TYPES = (bytes([FrameType.BOOT]), bytes([FrameType.KEYS]))


def reference_key_frames(read: ReadSectors, region: RegionEntry,
                         magics: list[int]) -> Iterator[tuple[int, FrameHeader, bytes]]:
    """``find`` from one magic to the next, as the harvest did before."""
    end = region.start + region.sectors
    budget = rejection_budget(region)
    lba = region.start
    while lba < end:
        n = min(WINDOW_SECTORS, end - lba)
        buf = read(lba, n)
        pos = buf.find(FRAME_MAGIC)
        while pos != -1:
            inside = pos % SECTOR
            if inside:
                pos = buf.find(FRAME_MAGIC, pos - inside + SECTOR)
                continue
            magics[0] += 1
            if buf[pos + 5 : pos + 6] in KEY_TYPES:
                try:
                    h: FrameHeader | None = decode_frame_header(buf, pos)
                except DecodeError:
                    h = None
                if h is not None and h.type in (FrameType.BOOT, FrameType.KEYS):
                    start = pos + FRAME_HEADER_LEN
                    clear = buf[start : start + h.clear_len]
                    at = lba + pos // SECTOR
                    need = -(-(FRAME_HEADER_LEN + h.clear_len) // SECTOR)
                    if len(clear) < h.clear_len and at + need <= end and budget >= need * SECTOR:
                        budget -= need * SECTOR
                        clear = read(at, need)[FRAME_HEADER_LEN:][: h.clear_len]
                    if len(clear) == h.clear_len:
                        yield at, h, clear
            pos = buf.find(FRAME_MAGIC, pos + SECTOR)
        lba += n


def header(ftype: int, clear_len: int) -> bytes:
    return encode_frame_header(FrameHeader(ftype, 1, 3, 0, 0, bytes(16), bytes(16), clear_len, 16, bytes(16)))


# What may start a sector: nothing, the magic alone, a header of any type (clear sections
# long enough to run past the window), the magic off the sector start, or a near miss.
sector_starts = st.one_of(
    st.just(b""),
    st.just(FRAME_MAGIC),
    st.builds(header, st.sampled_from([int(t) for t in FrameType] + [0, 9, 255]),
              st.integers(0, 3 * SECTOR)),
    st.builds(lambda k: bytes(k) + FRAME_MAGIC + bytes([FrameType.KEYS]), st.integers(1, 500)),
    st.builds(lambda i, b: FRAME_MAGIC[:i] + bytes([b]) + FRAME_MAGIC[i + 1:] + bytes([FrameType.BOOT]),
              st.integers(0, 3), st.integers(0, 255)),
)


@settings(max_examples=300, deadline=None)
@given(starts=st.lists(st.tuples(st.integers(0, 2 * WINDOW_SECTORS + 40), sector_starts), max_size=40),
       sectors=st.integers(1, 2 * WINDOW_SECTORS + 50), noise=st.binary(max_size=64))
def test_the_column_test_finds_what_a_walk_finds(starts: list[tuple[int, bytes]], sectors: int,
                                                  noise: bytes) -> None:
    image = bytearray((noise or b"\0") * (sectors * SECTOR // max(len(noise), 1) + 1))[: sectors * SECTOR]
    for at, data in starts:
        if at < sectors:
            image[at * SECTOR : at * SECTOR + len(data)] = data[: (sectors - at) * SECTOR]
    disk = bytes(image)

    def read(lba: int, n: int) -> bytes:
        return disk[lba * SECTOR : (lba + n) * SECTOR]

    region = RegionEntry(1, "vtpm", 0, sectors)
    got, want = [0], [0]
    assert list(keyring._key_frames(read, region, got)) == list(reference_key_frames(read, region, want))
    assert got == want


def test_every_sector_of_a_window_is_looked_at() -> None:
    key_sector = FRAME_MAGIC + bytes([3, FrameType.KEYS]) + bytes(SECTOR - 6)  # version 3, type KEYS
    disk = key_sector * WINDOW_SECTORS
    count, keys = keyring._sector_starts(disk, WINDOW_SECTORS)
    assert count == WINDOW_SECTORS and keys == b"\1" * WINDOW_SECTORS
    count, keys = keyring._sector_starts(bytes(WINDOW_SECTORS * SECTOR), WINDOW_SECTORS)
    assert count == 0 and keys == bytes(WINDOW_SECTORS)
