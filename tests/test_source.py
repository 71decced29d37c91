"""Image sources: raw, GPT and qcow2 inputs from an untrusted host, and the image writers."""

from __future__ import annotations

import os
import re
import struct
import uuid
import zlib
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svsmlog.format import GPT_PARTITION_TYPE
from svsmlog.source import (
    ImageError,
    VolumeSource,
    open_image,
    write_gpt_image,
    write_qcow2_image,
)

SECTOR = 512
MIB = 1 << 20
CLUSTER = 64 * 1024
LINUX_FS_TYPE = "0fc63daf-8483-4772-8e79-3d47de8e7de4"


def volume_bytes(sectors: int = 16, seed: int = 1) -> bytes:
    # Distinct per-sector content, so an off-by-a-sector window cannot go unnoticed.
    return b"".join(struct.pack("<II", seed, i) * (SECTOR // 8) for i in range(sectors))


def read_all(src: VolumeSource) -> bytes:
    return src.read(0, src.size)


# ------------------------------------------------------------------ raw


def test_raw_file_is_the_volume(tmp_path: Path) -> None:
    vol = volume_bytes(32)
    p = tmp_path / "vol.img"
    p.write_bytes(vol)
    with open_image(p) as src:
        assert (src.name, src.size, src.base_offset) == (str(p), len(vol), 0)
        assert (src.container, src.partition, src.dropped_tail) == ("raw", None, 0)
        assert src.sector_count == 32
        assert read_all(src) == vol
        assert src.read(700, 100) == vol[700:800]
        assert src.read_sectors(5, 3) == vol[5 * SECTOR : 8 * SECTOR]
        assert src.read(len(vol), 0) == b""


def test_raw_size_rounds_down_to_whole_sectors(tmp_path: Path) -> None:
    vol = volume_bytes(4)
    p = tmp_path / "odd.img"
    p.write_bytes(vol + b"tail!")
    with open_image(p) as src:
        assert src.size == len(vol)
        assert src.dropped_tail == 5
        with pytest.raises(ImageError):
            src.read(len(vol), 1)


def test_raw_smaller_than_a_sector(tmp_path: Path) -> None:
    p = tmp_path / "tiny.img"
    p.write_bytes(b"x" * 100)
    with pytest.raises(ImageError, match="smaller than one 512-byte sector"):
        open_image(p)


def test_partition_on_raw_image_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "vol.img"
    p.write_bytes(volume_bytes(4))
    with pytest.raises(ImageError, match="no GPT"):
        open_image(p, partition=1)


@pytest.mark.parametrize(
    ("offset", "length"),
    [(-1, 1), (0, -1), (0, 4 * SECTOR + 1), (4 * SECTOR, 1), (2**62, 1)],
)
def test_reads_outside_the_volume(tmp_path: Path, offset: int, length: int) -> None:
    p = tmp_path / "vol.img"
    p.write_bytes(volume_bytes(4))
    with open_image(p) as src, pytest.raises(ImageError, match="outside"):
        src.read(offset, length)


def test_read_sectors_outside_the_volume(tmp_path: Path) -> None:
    p = tmp_path / "vol.img"
    p.write_bytes(volume_bytes(4))
    with open_image(p) as src:
        with pytest.raises(ImageError):
            src.read_sectors(3, 2)
        with pytest.raises(ImageError):
            src.read_sectors(-1, 1)


def test_file_truncated_after_open(tmp_path: Path) -> None:
    vol = volume_bytes(8)
    p = tmp_path / "vol.img"
    p.write_bytes(vol)
    with open_image(p) as src:
        os.truncate(p, 3 * SECTOR)
        assert src.read_sectors(0, 3) == vol[: 3 * SECTOR]
        with pytest.raises(ImageError, match="short read"):
            src.read_sectors(2, 2)


def test_closed_source_refuses_reads(tmp_path: Path) -> None:
    p = tmp_path / "vol.img"
    p.write_bytes(volume_bytes(2))
    src = open_image(p)
    src.close()
    src.close()  # idempotent
    with pytest.raises(ValueError):
        src.read(0, 1)


# ------------------------------------------------------------------ paths that are not images


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"nope\.img: no such file$"):
        open_image(tmp_path / "nope.img")


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"is a directory$"):
        open_image(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    p = tmp_path / "empty.img"
    p.write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty file$"):
        open_image(p)


def test_fifo_is_not_opened(tmp_path: Path) -> None:
    # Opening a FIFO for reading would block forever; it must be refused up front.
    p = tmp_path / "pipe"
    os.mkfifo(p)
    with pytest.raises(ImageError, match=r"not a file$"):
        open_image(p)


def test_other_vm_formats_are_named(tmp_path: Path) -> None:
    p = tmp_path / "disk.vmdk"
    p.write_bytes(b"KDMV" + bytes(4096))
    with pytest.raises(ImageError, match="VMDK"):
        open_image(p)


# ------------------------------------------------------------------ GPT


def test_gpt_partition_is_the_volume(tmp_path: Path) -> None:
    vol = volume_bytes(40)
    p = tmp_path / "disk.img"
    write_gpt_image(p, vol)
    image = p.read_bytes()
    assert len(image) % MIB == 0
    with open_image(p) as src:
        assert src.base_offset == MIB  # 1 MiB aligned
        assert src.size == len(vol)
        assert src.partition == 1
        assert read_all(src) == vol
        # base_offset maps volume offsets to image offsets
        assert image[src.base_offset + 1000 : src.base_offset + 1010] == src.read(1000, 10)
        with pytest.raises(ImageError):
            src.read(len(vol), SECTOR)  # the bytes after the partition are not ours


def test_gpt_writer_layout(tmp_path: Path) -> None:
    p = tmp_path / "disk.img"
    write_gpt_image(p, volume_bytes(8))
    img = p.read_bytes()
    total = len(img) // SECTOR
    assert img[510:512] == b"\x55\xaa" and img[446 + 4] == 0xEE
    primary, backup = img[SECTOR : 2 * SECTOR], img[-SECTOR:]
    for hdr, my_lba, alt_lba in ((primary, 1, total - 1), (backup, total - 1, 1)):
        assert hdr[:8] == b"EFI PART"
        check = bytearray(hdr[:92])
        check[16:20] = bytes(4)
        assert zlib.crc32(check) == struct.unpack_from("<I", hdr, 16)[0]
        assert struct.unpack_from("<QQ", hdr, 24) == (my_lba, alt_lba)
    backup_entries = struct.unpack_from("<Q", backup, 72)[0]
    assert img[2 * SECTOR : 34 * SECTOR] == img[backup_entries * SECTOR : (total - 1) * SECTOR]
    entry_type = uuid.UUID(bytes_le=img[2 * SECTOR : 2 * SECTOR + 16])
    assert str(entry_type) == GPT_PARTITION_TYPE


def test_gpt_with_two_svsmlog_partitions_needs_a_choice(tmp_path: Path) -> None:
    vol = volume_bytes(8)
    p = tmp_path / "disk.img"
    write_gpt_image(p, vol, extra_partitions=1)
    with pytest.raises(ImageError, match=r"2 svsmlog partitions.*1 'svsmlog', 2 'svsmlog'"):
        open_image(p)
    with open_image(p, partition=1) as one, open_image(p, partition=2) as two:
        assert (one.partition, two.partition) == (1, 2)
        assert one.base_offset == MIB and two.base_offset == 2 * MIB
        assert read_all(one) == read_all(two) == vol
    for bad in (0, 3, 129):
        with pytest.raises(ImageError, match=f"entry {bad} is not an svsmlog partition"):
            open_image(p, partition=bad)


def test_gpt_without_svsmlog_partition(tmp_path: Path) -> None:
    p = tmp_path / "disk.img"
    write_gpt_image(p, volume_bytes(8), partition_type=LINUX_FS_TYPE)
    with pytest.raises(ImageError, match=f"no svsmlog partition \\(type {GPT_PARTITION_TYPE}\\)"):
        open_image(p)


def _patch(path: Path, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def _kill_backup_header(path: Path) -> None:
    with open(path, "r+b") as f:
        f.seek(-SECTOR, os.SEEK_END)
        f.write(bytes(SECTOR))


@pytest.mark.parametrize(
    ("offset", "data", "reason"),
    [
        (SECTOR + 56, b"\xff", "GPT header CRC mismatch (corrupt or tampered)"),  # inside the disk GUID
        (SECTOR, bytes(SECTOR), "GPT header signature is missing at LBA 1"),  # header wiped
        (
            2 * SECTOR + 40,
            struct.pack("<Q", 10**9),
            "entries CRC mismatch (corrupt or tampered)",
        ),  # moved end
    ],
)
def test_damaged_primary_gpt_is_read_via_the_backup(
    tmp_path: Path, offset: int, data: bytes, reason: str
) -> None:
    vol = volume_bytes(8)
    p = tmp_path / "disk.img"
    write_gpt_image(p, vol)
    with open_image(p) as src:
        assert src.gpt_header == "primary"
    _patch(p, offset, data)
    with open_image(p) as src:
        assert (src.gpt_header, src.partition, src.base_offset) == ("backup", 1, MIB)
        assert read_all(src) == vol
        assert "(backup GPT)" in repr(src)
    # Without the backup, the primary's reason comes first, then the backup's.
    _kill_backup_header(p)
    with pytest.raises(
        ImageError, match=re.escape(f"{reason}; the backup GPT header at LBA 4095 is unusable too: ")
    ):
        open_image(p)


def test_backup_gpt_header_is_checked_like_the_primary(tmp_path: Path) -> None:
    p = tmp_path / "disk.img"
    write_gpt_image(p, volume_bytes(8))
    _patch(p, SECTOR, bytes(SECTOR))
    img = bytearray(p.read_bytes())
    last = len(img) - SECTOR
    struct.pack_into("<Q", img, last + 24, 7)  # my_lba, behind a fixed CRC
    img[last + 16 : last + 20] = bytes(4)
    struct.pack_into("<I", img, last + 16, zlib.crc32(img[last : last + 92]))
    p.write_bytes(img)
    with pytest.raises(ImageError, match=r"unusable too: header claims to be at LBA 7, not 4095$"):
        open_image(p)


def test_raw_volume_is_not_taken_for_a_gpt_disk(tmp_path: Path) -> None:
    # Only a protective MBR (type 0xEE) with no primary header sends us to the backup.
    vol = bytearray(volume_bytes(8))
    vol[510:512] = b"\x55\xaa"
    p = tmp_path / "vol.img"
    p.write_bytes(vol)
    with open_image(p) as src:
        assert (src.gpt_header, src.partition, read_all(src)) == (None, None, vol)


def test_gpt_partition_past_the_image_end(tmp_path: Path) -> None:
    # A truncated disk image: the GPT is intact but the partition runs off the end.
    p = tmp_path / "disk.img"
    write_gpt_image(p, volume_bytes(8))
    os.truncate(p, MIB + 4 * SECTOR)
    with pytest.raises(ImageError, match="outside the 2052-sector image"):
        open_image(p)


def _fix_gpt_crcs(img: bytearray) -> None:
    """Recompute both primary-GPT CRCs from the (possibly mutated) header fields, so that
    mutations reach the checks behind the CRCs."""
    hsize, _, _ = struct.unpack_from("<III", img, SECTOR + 12)
    entries_lba, count, esize = struct.unpack_from("<QII", img, SECTOR + 72)
    start, length = entries_lba * SECTOR, count * esize
    if start + length <= len(img):
        struct.pack_into("<I", img, SECTOR + 88, zlib.crc32(img[start : start + length]))
    if 0 < hsize <= SECTOR:
        img[SECTOR + 16 : SECTOR + 20] = bytes(4)
        struct.pack_into("<I", img, SECTOR + 16, zlib.crc32(img[SECTOR : SECTOR + hsize]))


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "message"),
    [
        (SECTOR + 12, "<I", 91, "header size 91"),
        (SECTOR + 12, "<I", 513, "header size 513"),
        (SECTOR + 24, "<Q", 7, "claims to be at LBA 7"),
        (SECTOR + 84, "<I", 120, "entry size 120"),
        (SECTOR + 84, "<I", 132, "entry size 132"),
        (SECTOR + 84, "<I", 8192, "entry size 8192"),
        (SECTOR + 80, "<I", 5000, "5000 partition entries"),
        (SECTOR + 72, "<Q", 2**63, "lie outside the image"),
        (SECTOR + 72, "<Q", 1, "lie outside the image"),
        (2 * SECTOR + 32, "<Q", 1, "LBA 1..2055"),
        (2 * SECTOR + 40, "<Q", 2**64 - 1, "outside the"),
        (2 * SECTOR + 32, "<Q", 3000, "LBA 3000..2055"),
    ],
)
def test_gpt_fields_are_checked_behind_valid_crcs(
    tmp_path: Path, offset: int, fmt: str, value: int, message: str
) -> None:
    vol = volume_bytes(8)
    p = tmp_path / "disk.img"
    write_gpt_image(p, vol)
    img = bytearray(p.read_bytes())
    struct.pack_into(fmt, img, offset, value)
    _fix_gpt_crcs(img)
    p.write_bytes(img)
    if offset < 2 * SECTOR:
        # A bad primary header falls back to the intact backup...
        with open_image(p) as src:
            assert (src.gpt_header, read_all(src)) == ("backup", vol)
        _kill_backup_header(p)  # ...so check the primary's reason without one.
    # Entries that pass their CRC are the disk's word: bad bounds are not a reason to
    # prefer the backup's entries (UEFI validity is signature, CRCs and MyLBA).
    with pytest.raises(ImageError, match=message):
        open_image(p)


def test_gpt_partition_name_cannot_inject_control_characters(tmp_path: Path) -> None:
    p = tmp_path / "disk.img"
    write_gpt_image(p, volume_bytes(8), extra_partitions=1)
    img = bytearray(p.read_bytes())
    img[2 * SECTOR + 56 : 2 * SECTOR + 128] = "\x1b[2J\nevil".encode("utf-16-le").ljust(72, b"\0")
    _fix_gpt_crcs(img)
    p.write_bytes(img)
    with pytest.raises(ImageError) as e:
        open_image(p)
    assert "\n" not in str(e.value) and "\x1b" not in str(e.value)
    assert "?[2J?evil" in str(e.value)


# ------------------------------------------------------------------ qcow2


def sparse_raw() -> bytes:
    # Two data clusters, three zero clusters (left unallocated), a partial last cluster.
    return volume_bytes(256, seed=7) + bytes(3 * CLUSTER) + volume_bytes(20, seed=8)


def test_qcow2_round_trip_with_sparse_clusters(tmp_path: Path) -> None:
    raw = sparse_raw()
    p = tmp_path / "vol.qcow2"
    write_qcow2_image(p, raw)
    data_clusters = -(-len(raw) // CLUSTER) - 3
    # header, refcount table, L1, refcount block, one L2, then only the non-zero clusters
    assert p.stat().st_size == (5 + data_clusters) * CLUSTER
    assert p.read_bytes()[:4] == b"QFI\xfb"
    with open_image(p) as src:
        assert (src.container, src.base_offset, src.size) == ("qcow2", 0, len(raw))
        assert read_all(src) == raw
        zero_at = 256 * SECTOR + 1000
        assert src.read(zero_at, CLUSTER) == bytes(CLUSTER)


@pytest.mark.parametrize("megabytes", [1, 9])
def test_qcow2_with_many_l2_tables_and_refcount_blocks(tmp_path: Path, megabytes: int) -> None:
    # 512-byte clusters: an L2 table maps 32 KiB and a refcount block 256 clusters, and at
    # 9 MiB the refcount table itself needs two clusters, so small data reaches every
    # multi-table path of the 64 KiB layout (one L2 table maps 512 MiB there).
    raw = bytearray(os.urandom(megabytes * MIB))
    for hole in range(0, len(raw), 40 * 1024):
        raw[hole : hole + 8 * 1024] = bytes(8 * 1024)
    p = tmp_path / "small-clusters.qcow2"
    write_qcow2_image(p, bytes(raw), cluster_bits=9)
    assert p.stat().st_size < len(raw)
    with open_image(p) as src:
        assert read_all(src) == raw


def test_qcow2_containing_a_gpt_disk(tmp_path: Path) -> None:
    vol = volume_bytes(24, seed=3)
    disk = tmp_path / "disk.img"
    write_gpt_image(disk, vol, extra_partitions=1)
    q = tmp_path / "disk.qcow2"
    write_qcow2_image(q, disk.read_bytes())
    with pytest.raises(ImageError, match="2 svsmlog partitions"):
        open_image(q)
    with open_image(q, partition=2) as src:
        assert (src.container, src.partition) == ("qcow2", 2)
        assert (src.base_offset, src.size) == (2 * MIB, len(vol))
        assert read_all(src) == vol


def test_qcow2_truncated_file(tmp_path: Path) -> None:
    p = tmp_path / "vol.qcow2"
    write_qcow2_image(p, sparse_raw())
    os.truncate(p, 6 * CLUSTER)  # keeps the metadata, loses most data clusters
    with open_image(p) as src, pytest.raises(ImageError, match="qcow2 read error"):
        read_all(src)


def test_qcow2_truncated_header(tmp_path: Path) -> None:
    p = tmp_path / "vol.qcow2"
    p.write_bytes(b"QFI\xfb\x00\x00\x00\x03")
    with pytest.raises(ImageError, match="damaged qcow2 image: header is truncated"):
        open_image(p)


def test_qcow2_with_backing_file_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "overlay.qcow2"
    write_qcow2_image(p, volume_bytes(8))
    name = b"base.qcow2"
    _patch(p, 8, struct.pack(">QI", 512, len(name)))
    _patch(p, 512, name)
    with pytest.raises(ImageError, match=r"backing file \(base\.qcow2\)"):
        open_image(p)


def test_encrypted_qcow2_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "enc.qcow2"
    write_qcow2_image(p, volume_bytes(8))
    _patch(p, 32, struct.pack(">I", 2))
    with pytest.raises(ImageError, match="encrypted"):
        open_image(p)


def test_writers_reject_partial_sectors(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_qcow2_image(tmp_path / "x.qcow2", b"abc")
    with pytest.raises(ValueError):
        write_gpt_image(tmp_path / "x.img", b"abc")


# ------------------------------------------------------------------ hostile input


def _probe(path: Path) -> None:
    """Open and read around; anything but ImageError escaping is a bug."""
    try:
        with open_image(path) as src:
            n = src.sector_count
            for lba in {0, n // 2, max(0, n - 1)}:
                if lba < n:
                    assert len(src.read_sectors(lba, 1)) == SECTOR
            src.read(0, min(src.size, 64 * 1024))
    except ImageError as e:
        assert "\n" not in str(e)


_FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)


@_FUZZ
@given(
    prefix=st.sampled_from([b"", b"QFI\xfb", b"QFI\xfb\x00\x00\x00\x02", b"QFI\xfb\x00\x00\x00\x03"]),
    body=st.binary(min_size=0, max_size=3000),
)
def test_random_bytes_only_raise_image_error(tmp_path: Path, prefix: bytes, body: bytes) -> None:
    p = tmp_path / "fuzz.img"
    p.write_bytes(prefix + body)
    _probe(p)


@pytest.fixture(scope="module")
def gpt_base(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    p = tmp_path_factory.mktemp("gpt") / "disk.img"
    write_gpt_image(p, volume_bytes(8), extra_partitions=1)
    return p.read_bytes()


@pytest.fixture(scope="module")
def qcow_base(tmp_path_factory: pytest.TempPathFactory, gpt_base: bytes) -> bytes:
    p = tmp_path_factory.mktemp("qcow") / "disk.qcow2"
    write_qcow2_image(p, gpt_base)
    return p.read_bytes()


_mutations = st.lists(st.tuples(st.integers(0, 34 * SECTOR - 1), st.integers(0, 255)), min_size=1, max_size=8)


@_FUZZ
@given(
    mutations=_mutations,
    fix_crcs=st.booleans(),
    partition=st.sampled_from([None, 1, 2]),
)
def test_mutated_gpt_only_raises_image_error(
    tmp_path: Path,
    gpt_base: bytes,
    mutations: list[tuple[int, int]],
    fix_crcs: bool,
    partition: int | None,
) -> None:
    img = bytearray(gpt_base)
    for at, value in mutations:
        img[at] = value
    if fix_crcs:
        _fix_gpt_crcs(img)
    p = tmp_path / "fuzz.img"
    p.write_bytes(img)
    try:
        with open_image(p, partition=partition) as src:
            src.read(0, src.size)
    except ImageError as e:
        assert "\n" not in str(e)


@_FUZZ
@given(
    field=st.sampled_from(
        [
            (SECTOR + 12, "<I"),
            (SECTOR + 24, "<Q"),
            (SECTOR + 72, "<Q"),
            (SECTOR + 80, "<I"),
            (SECTOR + 84, "<I"),
            (2 * SECTOR + 32, "<Q"),
            (2 * SECTOR + 40, "<Q"),
            (2 * SECTOR + 160, "<Q"),
            (2 * SECTOR + 168, "<Q"),
        ]
    ),
    value=st.one_of(st.integers(0, 4200), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1)),
)
def test_gpt_field_values_only_raise_image_error(
    tmp_path: Path, gpt_base: bytes, field: tuple[int, str], value: int
) -> None:
    offset, fmt = field
    if fmt == "<I":
        value &= 0xFFFFFFFF
    img = bytearray(gpt_base)
    struct.pack_into(fmt, img, offset, value)
    _fix_gpt_crcs(img)
    p = tmp_path / "fuzz.img"
    p.write_bytes(img)
    for partition in (None, 2):
        try:
            with open_image(p, partition=partition) as src:
                src.read(0, src.size)
        except ImageError as e:
            assert "\n" not in str(e)


# The metadata a qcow2 reader trusts: the header, the L1 table and the L2 table
# (clusters 0, 2 and 4 of write_qcow2_image's layout).
_qcow_spots = st.one_of(
    st.integers(0, 111),
    st.integers(2 * CLUSTER, 2 * CLUSTER + 7),
    st.integers(4 * CLUSTER, 4 * CLUSTER + 8 * 80 - 1),
)


@_FUZZ
@given(mutations=st.lists(st.tuples(_qcow_spots, st.integers(0, 255)), min_size=1, max_size=6))
def test_mutated_qcow2_only_raises_image_error(
    tmp_path: Path, qcow_base: bytes, mutations: list[tuple[int, int]]
) -> None:
    img = bytearray(qcow_base)
    for at, value in mutations:
        img[at] = value
    p = tmp_path / "fuzz.qcow2"
    p.write_bytes(img)
    _probe(p)
