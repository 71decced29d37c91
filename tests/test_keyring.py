"""The key harvest's sector test (svsmlog.keyring._sector_starts): every sector that starts
with the frame magic is counted and every one that starts a BOOT or KEYS header is found,
as a walk with ``find`` from one magic to the next finds them (the reference below: the
harvest before the column test)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog import keyring
from svsmlog.codec import FrameHeader, RegionEntry, encode_frame_header
from svsmlog.device import SECTOR
from svsmlog.format import FRAME_HEADER_LEN, FRAME_MAGIC, FrameType
from svsmlog.scan import WINDOW_SECTORS

KEY_TYPES = (bytes([FrameType.BOOT]), bytes([FrameType.KEYS]))


def walk(buf: bytes) -> tuple[int, list[int]]:
    """(sectors starting with the magic, those of them with a BOOT or KEYS type byte)."""
    count, keys = 0, []
    pos = buf.find(FRAME_MAGIC)
    while pos != -1:
        inside = pos % SECTOR
        if inside:
            pos = buf.find(FRAME_MAGIC, pos - inside + SECTOR)
            continue
        count += 1
        if buf[pos + 5 : pos + 6] in KEY_TYPES:
            keys.append(pos // SECTOR)
        pos = buf.find(FRAME_MAGIC, pos + SECTOR)
    return count, keys


def header(ftype: int, clear_len: int) -> bytes:
    return encode_frame_header(FrameHeader(ftype, 1, 3, 0, 0, bytes(16), bytes(16), clear_len, 16, bytes(16)))


# What may start a sector: nothing, the magic alone, a header of any type, the magic off
# the sector start, or a near miss of it.
sector_starts = st.one_of(
    st.just(b""),
    st.just(FRAME_MAGIC),
    st.builds(header, st.sampled_from([int(t) for t in FrameType] + [0, 9, 255]), st.integers(0, 3 * SECTOR)),
    st.builds(lambda k: bytes(k) + FRAME_MAGIC + bytes([3, FrameType.KEYS]), st.integers(1, 500)),
    st.builds(lambda i, b: FRAME_MAGIC[:i] + bytes([b]) + FRAME_MAGIC[i + 1:] + bytes([3, FrameType.BOOT]),
              st.integers(0, 3), st.integers(0, 255)),
)


@settings(max_examples=300, deadline=None)
@given(starts=st.lists(st.tuples(st.integers(0, WINDOW_SECTORS + 20), sector_starts), max_size=40),
       sectors=st.integers(1, WINDOW_SECTORS), noise=st.binary(max_size=64))
def test_the_column_test_finds_what_a_walk_finds(starts: list[tuple[int, bytes]], sectors: int,
                                                  noise: bytes) -> None:
    buf = bytearray((noise or b"\0") * (sectors * SECTOR // max(len(noise), 1) + 1))[: sectors * SECTOR]
    for at, data in starts:
        if at < sectors:
            buf[at * SECTOR : at * SECTOR + len(data)] = data[: (sectors - at) * SECTOR]
    count, keys = keyring._sector_starts(bytes(buf), sectors)
    assert len(keys) == sectors
    assert (count, [i for i, k in enumerate(keys) if k]) == walk(bytes(buf))


def test_every_sector_of_a_window_is_looked_at() -> None:
    key_sector = FRAME_MAGIC + bytes([3, FrameType.KEYS]) + bytes(SECTOR - 6)  # version 3, type KEYS
    count, keys = keyring._sector_starts(key_sector * WINDOW_SECTORS, WINDOW_SECTORS)
    assert count == WINDOW_SECTORS and keys == b"\1" * WINDOW_SECTORS
    count, keys = keyring._sector_starts(bytes(WINDOW_SECTORS * SECTOR), WINDOW_SECTORS)
    assert count == 0 and keys == bytes(WINDOW_SECTORS)


def test_key_frames_yields_each_key_header_with_its_clear_section_across_windows() -> None:
    """A BOOT header in the first window, a KEYS header whose clear section runs into the
    next window (read again), a DATA header and a bare magic (counted, not yielded)."""
    sectors = WINDOW_SECTORS + 8
    disk = bytearray(sectors * SECTOR)
    boot = header(FrameType.BOOT, 40)
    disk[3 * SECTOR : 3 * SECTOR + len(boot) + 40] = boot + b"b" * 40
    keys = header(FrameType.KEYS, 700)  # starts in the last sector of the first window
    at = WINDOW_SECTORS - 1
    disk[at * SECTOR : at * SECTOR + len(keys) + 700] = keys + b"k" * 700
    disk[10 * SECTOR : 10 * SECTOR + FRAME_HEADER_LEN] = header(FrameType.DATA, 0)
    disk[(WINDOW_SECTORS + 4) * SECTOR : (WINDOW_SECTORS + 4) * SECTOR + 4] = FRAME_MAGIC
    image = bytes(disk)

    def read(lba: int, n: int) -> bytes:
        return image[lba * SECTOR : (lba + n) * SECTOR]

    magics = [0]
    found = [(lba, h.type, clear) for lba, h, clear in
             keyring._key_frames(read, RegionEntry(1, "vtpm", 0, sectors), magics)]
    assert found == [(3, FrameType.BOOT, b"b" * 40), (at, FrameType.KEYS, b"k" * 700)]
    assert magics == [4]
