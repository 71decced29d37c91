"""Read-only sources of an svsmlog volume inside an image handed over by the cloud host.

The host is untrusted: the image may be a raw volume, a whole-disk GPT image holding an
svsmlog partition, or either of those wrapped in qcow2 — and any of it may be truncated or
crafted. Everything here streams (images can be many GB) and every length, offset and count
read from the image is checked before use. The only exception a bad image can raise is
``ImageError``, carrying one human-readable line; the CLI maps it to exit code 2.

The writers at the end (``write_gpt_image``, ``write_qcow2_image``) build such images for
tests and samples, so neither needs qemu-img nor sgdisk.
"""

from __future__ import annotations

import os
import stat
import struct
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO, NamedTuple, Protocol

from .device import SECTOR

# Must equal the svsmlog partition type of spec §4.1; format.py is its single definition.
from .format import GPT_PARTITION_TYPE
from .qcow2 import Qcow2Error, Qcow2Reader

QCOW_MAGIC = b"QFI\xfb"
GPT_SIGNATURE = b"EFI PART"
MBR_SIGNATURE = b"\x55\xaa"

_SVSMLOG_TYPE = uuid.UUID(GPT_PARTITION_TYPE)
_GPT_HEADER_MIN = 92  # the UEFI-defined header fields; the rest of the sector is reserved
_GPT_MAX_ENTRY_SIZE = 4096
_GPT_MAX_ENTRIES = 4096  # 4096 * 4096 bytes bounds the entries array we read at 16 MiB
_MAX_NAME_IN_MESSAGE = 36  # GPT names are at most 36 UTF-16 code units

# Other VM disk formats a host might hand over: naming them beats "no superblock found".
_FOREIGN_MAGICS = {
    b"KDMV": "VMDK",
    b"vhdxfile": "VHDX",
    b"conectix": "VHD (dynamic)",
}


class ImageError(Exception):
    """The image cannot be used; the message is one line naming the image."""


# ------------------------------------------------------------------ byte streams


class _Stream(Protocol):
    """The bytes of a whole image: the raw file, or a qcow2 file's guest media."""

    size: int

    def pread(self, offset: int, length: int) -> bytes: ...

    def close(self) -> None: ...


class _FileStream:
    def __init__(self, f: BinaryIO, name: str) -> None:
        self._f = f
        self._name = name
        # lseek also sizes block devices, whose st_size is 0.
        self.size = os.lseek(f.fileno(), 0, os.SEEK_END)

    def pread(self, offset: int, length: int) -> bytes:
        chunks: list[bytes] = []
        got = 0
        while got < length:
            try:
                chunk = os.pread(self._f.fileno(), length - got, offset + got)
            except OSError as e:
                raise ImageError(f"{self._name}: read error at byte {offset + got}: {e.strerror}") from None
            if not chunk:  # end of file: the file shrank since we sized it
                break
            chunks.append(chunk)
            got += len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        self._f.close()


class _QcowStream:
    """The guest-visible media of a qcow2 file, decoded by our own checked reader (qcow2.py
    says why not libqcow: it returned zeros for compressed clusters)."""

    def __init__(self, f: BinaryIO, name: str) -> None:
        self._f = f
        try:
            self._q = Qcow2Reader(f.fileno(), name)
        except Qcow2Error as e:
            raise ImageError(str(e)) from None
        self.size = self._q.size

    def pread(self, offset: int, length: int) -> bytes:
        try:
            return self._q.pread(offset, length)
        except Qcow2Error as e:
            raise ImageError(str(e)) from None

    def close(self) -> None:
        self._f.close()


def _printable(text: str) -> str:
    # Host-controlled text (partition names, backing paths) must not inject terminal
    # escapes or extra lines into our one-line messages.
    return "".join(c if c.isprintable() else "?" for c in text)


# ------------------------------------------------------------------ the volume


class VolumeSource:
    """A read-only window of whole 512-byte sectors onto an image.

    ``base_offset`` is where the volume starts inside the image file's (or qcow2 media's)
    byte space, so messages can give offsets a hex editor on the image understands.
    ``dropped_tail`` counts bytes after the last whole sector of an image without a GPT
    (raw file or qcow2 media); they are not part of the volume. ``gpt_header`` says which
    GPT header located the partition: "primary", or "backup" when the primary was damaged
    (worth telling the operator: someone or something overwrote the disk's first sectors).
    """

    def __init__(
        self,
        stream: _Stream,
        name: str,
        base_offset: int,
        size: int,
        *,
        container: str = "raw",
        partition: int | None = None,
        dropped_tail: int = 0,
        gpt_header: str | None = None,
    ) -> None:
        if size < 0 or size % SECTOR or base_offset < 0 or base_offset + size > stream.size:
            raise ValueError("volume window lies outside its image")
        self._stream: _Stream | None = stream
        self.name = name
        self.base_offset = base_offset
        self.size = size
        self.container = container  # "raw" or "qcow2"
        self.partition = partition  # 1-based GPT entry index, None for a bare volume
        self.dropped_tail = dropped_tail
        self.gpt_header = gpt_header  # None without a GPT

    @property
    def sector_count(self) -> int:
        return self.size // SECTOR

    def read(self, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes at ``offset`` from the volume start."""
        if self._stream is None:
            raise ValueError(f"{self.name}: source is closed")
        if offset < 0 or length < 0 or offset + length > self.size:
            raise ImageError(
                f"{self.name}: read of {length} bytes at volume offset {offset} "
                f"is outside the {self.size}-byte volume"
            )
        data = self._stream.pread(self.base_offset + offset, length)
        if len(data) != length:
            raise ImageError(
                f"{self.name}: short read at image byte {self.base_offset + offset}"
                f" ({len(data)} of {length} bytes); was the file truncated?"
            )
        return data

    def read_sectors(self, lba: int, count: int) -> bytes:
        if lba < 0 or count < 0:
            raise ImageError(f"{self.name}: read of {count} sectors at LBA {lba} is invalid")
        return self.read(lba * SECTOR, count * SECTOR)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None

    def __enter__(self) -> VolumeSource:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = f" partition {self.partition}" if self.partition is not None else ""
        if self.gpt_header == "backup":
            where += " (backup GPT)"
        return f"<VolumeSource {self.name!r} {self.container}{where} at {self.base_offset} size {self.size}>"


def open_image(path: str | os.PathLike[str], *, partition: int | None = None,
               base_offset: int | None = None) -> VolumeSource:
    """Open the svsmlog volume in ``path``: raw, GPT disk, or either inside qcow2.

    ``partition`` (1-based GPT entry index) chooses among several svsmlog partitions.
    ``base_offset`` says where the volume starts, in bytes (any byte, not only a sector
    boundary): for an MBR disk or another layout this module does not parse.
    """
    name = _printable(os.fsdecode(path))
    f = _open_file(path, name)
    stream: _Stream | None = None
    try:
        stream = _open_stream(f, name)
        if base_offset is not None:
            return _volume_at(stream, name, partition, base_offset)
        return _locate_volume(stream, name, partition)
    except BaseException:
        if stream is not None:
            stream.close()
        else:
            f.close()
        raise


def _open_file(path: str | os.PathLike[str], name: str) -> BinaryIO:
    # stat before open: opening a FIFO would block, and a directory gives a poor message.
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError(f"{name}: no such file") from None
    except OSError as e:
        raise ImageError(f"{name}: {e.strerror or e}") from None
    except ValueError as e:  # e.g. an embedded NUL in the path
        raise ImageError(f"{name}: invalid path ({e})") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError(f"{name}: is a directory")
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISBLK(st.st_mode)):
        raise ImageError(f"{name}: not a file")
    try:
        f = open(path, "rb")  # noqa: SIM115 - owned by the returned source
    except OSError as e:
        raise ImageError(f"{name}: {e.strerror or e}") from None
    try:
        size = os.lseek(f.fileno(), 0, os.SEEK_END)
    except OSError as e:
        f.close()
        raise ImageError(f"{name}: {e.strerror or e}") from None
    if size == 0:
        f.close()
        raise ImageError(f"{name}: empty file")
    return f


def _open_stream(f: BinaryIO, name: str) -> _Stream:
    raw = _FileStream(f, name)
    head = raw.pread(0, 40)
    if head[:4] == QCOW_MAGIC:
        return _QcowStream(f, name)
    for magic, fmt in _FOREIGN_MAGICS.items():
        if head.startswith(magic):
            raise ImageError(
                f"{name}: looks like a {fmt} image; convert it to raw or qcow2 with qemu-img convert"
            )
    return raw


def _volume_at(stream: _Stream, name: str, partition: int | None, offset: int) -> VolumeSource:
    if partition is not None:
        raise ImageError(f"{name}: give either a partition or a byte offset, not both")
    room = stream.size - offset
    if offset < 0 or room < SECTOR:
        raise ImageError(f"{name}: offset {offset} leaves less than one {SECTOR}-byte sector of the "
                         f"{stream.size}-byte image")
    container = "qcow2" if isinstance(stream, _QcowStream) else "raw"
    return VolumeSource(stream, name, offset, room - room % SECTOR, container=container,
                        dropped_tail=room % SECTOR)


def _locate_volume(stream: _Stream, name: str, partition: int | None) -> VolumeSource:
    container = "qcow2" if isinstance(stream, _QcowStream) else "raw"
    if stream.size < SECTOR:
        what = "qcow2 disk" if container == "qcow2" else "image"
        raise ImageError(f"{name}: {what} is {stream.size} bytes, smaller than one {SECTOR}-byte sector")
    if _has_gpt(stream):
        part, which = _find_gpt_volume(stream, name, partition)
        return VolumeSource(
            stream,
            name,
            part.first_lba * SECTOR,
            part.sectors * SECTOR,
            container=container,
            partition=part.index,
            gpt_header=which,
        )
    if partition is not None:
        raise ImageError(f"{name}: a partition was chosen but the image has no GPT")
    size = stream.size - stream.size % SECTOR
    return VolumeSource(stream, name, 0, size, container=container, dropped_tail=stream.size % SECTOR)


# ------------------------------------------------------------------ GPT

# UEFI 2.10 §5.3.2 header; all little-endian.
_GPT_HEADER = struct.Struct("<8sIIIIQQQQ16sQIII")
# §5.3.3 entry prefix: type GUID, unique GUID, first LBA, last LBA, attributes, name.
_GPT_ENTRY = struct.Struct("<16s16sQQQ72s")
_MBR_PART_OFF = 446
_MBR_TYPE_PROTECTIVE = 0xEE


@dataclass(frozen=True)
class _GptPartition:
    index: int  # 1-based entry number, as partitioning tools show it
    first_lba: int
    last_lba: int
    label: str

    @property
    def sectors(self) -> int:
        return self.last_lba - self.first_lba + 1


class _GptHeader(NamedTuple):
    entries_lba: int
    entry_count: int
    entry_size: int
    entries_crc: int


class _GptInvalid(Exception):
    """One GPT header (with its entries) is unusable; the text says why, without the name."""


def _has_gpt(stream: _Stream) -> bool:
    """A GPT disk: the primary header's signature, or a protective MBR whose primary header
    is gone (then the backup header at the last LBA may still describe the disk)."""
    if stream.size < 2 * SECTOR:
        return False
    head = stream.pread(0, 2 * SECTOR)
    if len(head) != 2 * SECTOR or head[510:512] != MBR_SIGNATURE:
        return False
    if head[SECTOR : SECTOR + 8] == GPT_SIGNATURE:
        return True
    # A raw svsmlog volume starts with its superblock, never with a 0xEE MBR record.
    return any(head[_MBR_PART_OFF + 16 * i + 4] == _MBR_TYPE_PROTECTIVE for i in range(4))


def _find_gpt_volume(stream: _Stream, name: str, partition: int | None) -> tuple[_GptPartition, str]:
    mine, which = _read_gpt(stream, name)
    if partition is not None:
        chosen = [p for p in mine if p.index == partition]
        if not chosen:
            raise ImageError(f"{name}: GPT entry {partition} is not an svsmlog partition{_listing(mine)}")
        return _check_partition(chosen[0], stream, name), which
    if not mine:
        raise ImageError(f"{name}: GPT disk has no svsmlog partition (type {GPT_PARTITION_TYPE})")
    if len(mine) > 1:
        raise ImageError(
            f"{name}: GPT disk has {len(mine)} svsmlog partitions"
            f"{_listing(mine)}; choose one by its entry number"
        )
    return _check_partition(mine[0], stream, name), which


def _read_gpt(stream: _Stream, name: str) -> tuple[list[_GptPartition], str]:
    """The svsmlog entries and which header gave them. UEFI keeps a backup header and entry
    array at the end of the disk for exactly this: a damaged primary (CRC, signature, fields
    or entries) falls back to it. Both unusable: one line with both reasons."""
    try:
        return _read_gpt_entries(stream, _read_gpt_header(stream, 1)), "primary"
    except _GptInvalid as e:
        primary_reason = str(e)
    last_lba = stream.size // SECTOR - 1
    try:
        return _read_gpt_entries(stream, _read_gpt_header(stream, last_lba)), "backup"
    except _GptInvalid as e:
        raise ImageError(
            f"{name}: GPT {primary_reason}; the backup GPT header at LBA {last_lba} is unusable too: {e}"
        ) from None


def _read_gpt_header(stream: _Stream, lba: int) -> _GptHeader:
    sector = stream.pread(lba * SECTOR, SECTOR)
    if len(sector) != SECTOR:
        raise _GptInvalid("header is truncated")
    if sector[:8] != GPT_SIGNATURE:
        raise _GptInvalid(f"header signature is missing at LBA {lba}")
    (
        _sig,
        _rev,
        hsize,
        hcrc,
        _rsvd,
        my_lba,
        _alt_lba,
        _first_usable,
        _last_usable,
        _guid,
        entries_lba,
        count,
        esize,
        ecrc,
    ) = _GPT_HEADER.unpack_from(sector)
    if not _GPT_HEADER_MIN <= hsize <= SECTOR:
        raise _GptInvalid(f"header size {hsize} is not in {_GPT_HEADER_MIN}..{SECTOR}")
    # The CRC covers header_size bytes with the CRC field itself zeroed.
    check = bytearray(sector[:hsize])
    check[16:20] = bytes(4)
    if zlib.crc32(check) != hcrc:
        raise _GptInvalid("header CRC mismatch (corrupt or tampered)")
    if my_lba != lba:
        raise _GptInvalid(f"header claims to be at LBA {my_lba}, not {lba}")
    if esize < 128 or esize % 8 or esize > _GPT_MAX_ENTRY_SIZE:
        raise _GptInvalid(f"partition entry size {esize} is invalid")
    if count > _GPT_MAX_ENTRIES:
        raise _GptInvalid(f"claims {count} partition entries (at most {_GPT_MAX_ENTRIES} supported)")
    if entries_lba < 2 or (entries_lba * SECTOR + count * esize) > stream.size:
        raise _GptInvalid(f"partition entries at LBA {entries_lba} lie outside the image")
    return _GptHeader(entries_lba, count, esize, ecrc)


def _read_gpt_entries(stream: _Stream, h: _GptHeader) -> list[_GptPartition]:
    """The svsmlog entries (unused and foreign entries are dropped)."""
    length = h.entry_count * h.entry_size  # <= 16 MiB, checked in the header
    table = stream.pread(h.entries_lba * SECTOR, length)
    if len(table) != length:
        raise _GptInvalid("partition entries are truncated")
    if zlib.crc32(table) != h.entries_crc:
        raise _GptInvalid("partition entries CRC mismatch (corrupt or tampered)")
    found = []
    for i in range(h.entry_count):
        type_le, _uniq, first, last, _attrs, raw_name = _GPT_ENTRY.unpack_from(table, i * h.entry_size)
        if uuid.UUID(bytes_le=type_le) == _SVSMLOG_TYPE:
            found.append(_GptPartition(i + 1, first, last, _gpt_label(raw_name)))
    return found


def _gpt_label(raw: bytes) -> str:
    text = raw.decode("utf-16-le", errors="replace").split("\x00", 1)[0]
    return _printable(text)[:_MAX_NAME_IN_MESSAGE]


def _listing(parts: Sequence[_GptPartition]) -> str:
    if not parts:
        return ""
    items = ", ".join(f"{p.index}" + (f" {p.label!r}" if p.label else "") for p in parts)
    return f" (svsmlog entries: {items})"


def _check_partition(p: _GptPartition, stream: _Stream, name: str) -> _GptPartition:
    image_sectors = stream.size // SECTOR
    if p.first_lba < 2 or p.first_lba > p.last_lba or p.last_lba >= image_sectors:
        raise ImageError(
            f"{name}: svsmlog partition (GPT entry {p.index}) spans LBA "
            f"{p.first_lba}..{p.last_lba}, outside the {image_sectors}-sector image"
        )
    return p


# ------------------------------------------------------------------ writers (tests, samples)

_MIB_SECTORS = (1 << 20) // SECTOR
_GPT_WRITE_ENTRIES = 128
_GPT_WRITE_ENTRY_SIZE = 128
_GPT_ENTRY_SECTORS = _GPT_WRITE_ENTRIES * _GPT_WRITE_ENTRY_SIZE // SECTOR
# Fixed namespace so generated disks (and samples built from them) are reproducible.
_WRITER_NS = uuid.UUID("5d1e8c55-0a5e-4f7b-9d0e-3b7a2a1c6f10")


def write_gpt_image(
    path: str | os.PathLike[str],
    volume: bytes,
    *,
    extra_partitions: int = 0,
    partition_type: str = GPT_PARTITION_TYPE,
) -> None:
    """Write a whole-disk GPT image holding ``volume`` in a partition at 1 MiB.

    ``extra_partitions`` adds further svsmlog partitions (entries 2, 3, ...), each a copy of
    ``volume``, every one aligned at 1 MiB. ``partition_type`` sets the first partition's
    type, for images without an svsmlog partition. GUIDs are deterministic.
    """
    if not volume or len(volume) % SECTOR:
        raise ValueError("volume must be a non-empty whole number of sectors")
    if not 0 <= extra_partitions < _GPT_WRITE_ENTRIES:
        raise ValueError(f"extra_partitions must be in 0..{_GPT_WRITE_ENTRIES - 1}")
    vol_sectors = len(volume) // SECTOR
    stride = -(-vol_sectors // _MIB_SECTORS) * _MIB_SECTORS
    starts = [_MIB_SECTORS + i * stride for i in range(1 + extra_partitions)]
    end = starts[-1] + vol_sectors
    # Leave room for the backup entries + header, and end the disk on a MiB boundary.
    total = -(-(end + _GPT_ENTRY_SECTORS + 1) // _MIB_SECTORS) * _MIB_SECTORS
    types = [uuid.UUID(partition_type)] + [_SVSMLOG_TYPE] * extra_partitions

    table = bytearray(_GPT_WRITE_ENTRIES * _GPT_WRITE_ENTRY_SIZE)
    for i, (start, ptype) in enumerate(zip(starts, types, strict=True)):
        label = "svsmlog" if ptype == _SVSMLOG_TYPE else "data"
        _GPT_ENTRY.pack_into(
            table,
            i * _GPT_WRITE_ENTRY_SIZE,
            ptype.bytes_le,
            uuid.uuid5(_WRITER_NS, f"partition-{i}").bytes_le,
            start,
            start + vol_sectors - 1,
            0,
            label.encode("utf-16-le"),
        )
    backup_entries = total - 1 - _GPT_ENTRY_SECTORS
    common = (_GPT_ENTRY_SECTORS + 2, backup_entries - 1, zlib.crc32(table))
    primary = _gpt_header_sector(1, total - 1, 2, *common)
    backup = _gpt_header_sector(total - 1, 1, backup_entries, *common)

    with open(path, "wb") as f:
        f.truncate(total * SECTOR)  # sparse: untouched gaps read as zeros
        f.write(_protective_mbr(total))
        f.write(primary)
        f.write(table)
        for start in starts:
            f.seek(start * SECTOR)
            f.write(volume)
        f.seek(backup_entries * SECTOR)
        f.write(table)
        f.write(backup)


def _gpt_header_sector(
    my_lba: int, alt_lba: int, entries_lba: int, first_usable: int, last_usable: int, entries_crc: int
) -> bytes:
    fields = [
        GPT_SIGNATURE,
        0x00010000,
        _GPT_HEADER_MIN,
        0,
        0,
        my_lba,
        alt_lba,
        first_usable,
        last_usable,
        uuid.uuid5(_WRITER_NS, "disk").bytes_le,
        entries_lba,
        _GPT_WRITE_ENTRIES,
        _GPT_WRITE_ENTRY_SIZE,
        entries_crc,
    ]
    fields[3] = zlib.crc32(_GPT_HEADER.pack(*fields))
    return _GPT_HEADER.pack(*fields).ljust(SECTOR, b"\x00")


def _protective_mbr(total_sectors: int) -> bytes:
    mbr = bytearray(SECTOR)
    # One partition of type 0xEE covering the disk (capped at 2^32-1 sectors), CHS maxed.
    struct.pack_into(
        "<B3sB3sII",
        mbr,
        _MBR_PART_OFF,
        0,
        b"\x00\x02\x00",
        0xEE,
        b"\xff\xff\xff",
        1,
        min(total_sectors - 1, 0xFFFFFFFF),
    )
    mbr[510:512] = MBR_SIGNATURE
    return bytes(mbr)


_QCOW_CLUSTER_BITS = 16  # 64 KiB, qemu-img's default
_QCOW_REFCOUNT_ORDER = 4  # 16-bit refcounts, as qemu-img creates
_QCOW_OFLAG_COPIED = 1 << 63  # refcount is exactly 1: writable in place
_QCOW_HEADER = struct.Struct(">4sIQIIQIIQQIIQQQQII")  # v3 header, 104 bytes


def write_qcow2_image(
    path: str | os.PathLike[str], raw: bytes, *, cluster_bits: int = _QCOW_CLUSTER_BITS
) -> None:
    """Write ``raw`` as a qcow2 v3 image (64 KiB clusters, no compression, no backing file).

    All-zero clusters stay unallocated, so sparse disks stay small. Every cluster in the file
    is referenced exactly once and has refcount 1, which is what ``qemu-img check`` wants.
    ``cluster_bits`` (9..21) exists so tests can reach many-L2-table layouts with small data.
    """
    if len(raw) % SECTOR:
        raise ValueError("qcow2 virtual size must be a whole number of sectors")
    if not 9 <= cluster_bits <= 21:
        raise ValueError("qcow2 cluster_bits must be in 9..21")
    cl = 1 << cluster_bits
    per_l2 = cl // 8
    zero = bytes(cl)
    n_clusters = -(-len(raw) // cl)
    # Comparing against a zero cluster is a memcmp, fast even for GB-sized inputs.
    data = [c for c in range(n_clusters) if raw[c * cl : (c + 1) * cl] != zero[: len(raw) - c * cl]]
    l1_size = -(-n_clusters // per_l2)
    l2_used = sorted({c // per_l2 for c in data})
    l1_clusters = -(-l1_size * 8 // cl)
    fixed = 1 + l1_clusters + len(l2_used) + len(data)  # the header and everything mapped
    rt_clusters, rc_blocks = _qcow_refcount_layout(fixed, cl)
    total = fixed + rt_clusters + rc_blocks

    # Cluster layout: header | refcount table | L1 | refcount blocks | L2 tables | data.
    rt_at = 1
    l1_at = rt_at + rt_clusters
    rb_at = l1_at + l1_clusters
    l2_at = {l1i: rb_at + rc_blocks + k for k, l1i in enumerate(l2_used)}
    data_at = {c: rb_at + rc_blocks + len(l2_used) + k for k, c in enumerate(data)}

    header = _QCOW_HEADER.pack(
        QCOW_MAGIC,
        3,  # version
        0,  # backing file offset: none
        0,  # backing file name length
        cluster_bits,
        len(raw),  # virtual size
        0,  # crypt method: none
        l1_size,
        l1_at * cl if l1_size else 0,  # qemu writes 0 for an empty L1, so do we
        rt_at * cl,
        rt_clusters,
        0,  # snapshots
        0,  # snapshots offset
        0,  # incompatible features
        0,  # compatible features
        0,  # autoclear features
        _QCOW_REFCOUNT_ORDER,
        _QCOW_HEADER.size,  # header length
    )
    header += bytes(8)  # header extensions: just the end marker
    refcount_table = b"".join(struct.pack(">Q", (rb_at + i) * cl) for i in range(rc_blocks))
    l1 = bytearray(l1_size * 8)
    for l1i, at in l2_at.items():
        struct.pack_into(">Q", l1, l1i * 8, at * cl | _QCOW_OFLAG_COPIED)
    l2 = {l1i: bytearray(cl) for l1i in l2_used}
    for c, at in data_at.items():
        struct.pack_into(">Q", l2[c // per_l2], (c % per_l2) * 8, at * cl | _QCOW_OFLAG_COPIED)
    # Blocks are contiguous, so one array of refcounts fills them in order.
    refcounts = struct.pack(">H", 1) * total

    with open(path, "wb") as f:
        f.truncate(total * cl)  # the last data cluster may be partial: pad it
        blobs: list[tuple[int, bytes | bytearray]] = [
            (0, header),
            (rt_at, refcount_table),
            (l1_at, bytes(l1)),
            (rb_at, refcounts),
        ]
        blobs += [(at, l2[l1i]) for l1i, at in l2_at.items()]
        for at, blob in blobs:
            f.seek(at * cl)
            f.write(blob)
        for c, at in data_at.items():
            f.seek(at * cl)
            f.write(raw[c * cl : (c + 1) * cl])


def _qcow_refcount_layout(fixed: int, cl: int) -> tuple[int, int]:
    """(refcount table clusters, refcount blocks) to count ``fixed`` clusters plus
    themselves: they refcount themselves too, so iterate to the fixed point."""
    per_block = cl * 8 >> _QCOW_REFCOUNT_ORDER
    rt_clusters, rc_blocks = 1, 1
    while True:
        total = fixed + rt_clusters + rc_blocks
        blocks = -(-total // per_block)
        tables = -(-blocks * 8 // cl)
        if (tables, blocks) == (rt_clusters, rc_blocks):
            return rt_clusters, rc_blocks
        rt_clusters, rc_blocks = tables, blocks
