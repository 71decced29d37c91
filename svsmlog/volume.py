"""The volume: superblock and region geometry (spec §4.2), formatting and mounting."""

from __future__ import annotations

import itertools
import re
from typing import NamedTuple

from . import crypto
from .codec import DecodeError, RegionEntry, Superblock, decode_superblock, encode_superblock
from .device import SECTOR, BlockDevice
from .format import (
    FIRST_REGION_LBA,
    KEY_DIR_LBA,
    KEY_DIR_SLOT_SECTORS,
    KEY_DIR_SLOTS,
    MAX_REGIONS,
    MIN_REGION_SECTORS,
    NO_STREAM,
)

KEY_DIRECTORY = RegionEntry(NO_STREAM, "keydir", KEY_DIR_LBA, KEY_DIR_SLOTS * KEY_DIR_SLOT_SECTORS)


def key_dir_slot(boot: int) -> int:
    """LBA of boot ``boot``'s slot in the key directory."""
    return KEY_DIR_LBA + (boot % KEY_DIR_SLOTS) * KEY_DIR_SLOT_SECTORS


_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,11}$")
ALIGN = 8  # regions start on 4 KiB boundaries: the device does I/O in 4 KiB pages


class GeometryError(DecodeError):
    """A superblock whose regions do not describe a usable volume."""


class StreamSpec(NamedTuple):
    """One stream the launch configuration asks for, and the sectors it may use."""

    stream: int
    name: str
    sectors: int


def check_geometry(sb: Superblock, device_sectors: int) -> None:
    """Every rule of spec §4.2; raises GeometryError naming the first one broken."""
    if sb.total_sectors > device_sectors:
        raise GeometryError(f"superblock claims {sb.total_sectors} sectors, the image has {device_sectors}")
    if not 1 <= len(sb.regions) <= MAX_REGIONS:
        raise GeometryError("region count out of range")
    seen_ids: set[int] = set()
    seen_names: set[str] = set()
    spans = []
    for r in sb.regions:
        if r.stream == NO_STREAM or r.stream in seen_ids:
            raise GeometryError(f"stream id {r.stream} is reserved or repeated")
        if not _NAME.match(r.name) or r.name in seen_names:
            raise GeometryError(f"stream name {r.name!r} is invalid or repeated")
        if r.start < FIRST_REGION_LBA or r.sectors < MIN_REGION_SECTORS:
            raise GeometryError(f"region {r.name!r} starts before sector 8 or is too small")
        if r.start + r.sectors > sb.total_sectors:
            raise GeometryError(f"region {r.name!r} runs past the end of the volume")
        seen_ids.add(r.stream)
        seen_names.add(r.name)
        spans.append((r.start, r.start + r.sectors, r.name))
    spans.sort()
    for (_, end_a, a), (start_b, _, b) in itertools.pairwise(spans):
        if start_b < end_a:
            raise GeometryError(f"regions {a!r} and {b!r} overlap")


def plan_superblock(volume_id: bytes, total_sectors: int, streams: list[StreamSpec]) -> Superblock:
    """Lay regions out one after another from sector 8, each aligned to 4 KiB."""
    regions, lba = [], FIRST_REGION_LBA
    for s in streams:
        regions.append(RegionEntry(s.stream, s.name, lba, s.sectors))
        lba += -(-s.sectors // ALIGN) * ALIGN
    sb = Superblock(volume_id, total_sectors, tuple(regions))
    check_geometry(sb, total_sectors)
    return sb


class Volume(NamedTuple):
    superblock: Superblock
    raw: bytes  # the superblock sector as on disk: its digest is sealed into every boot record

    @property
    def volume_id(self) -> bytes:
        return self.superblock.volume_id

    @property
    def digest(self) -> bytes:
        return crypto.sha256(self.raw)

    def region(self, stream: int) -> RegionEntry:
        for r in self.superblock.regions:
            if r.stream == stream:
                return r
        raise KeyError(stream)


def read_volume(device_read_sector0: bytes, device_sectors: int) -> Volume:
    """Parse and check sector 0; raises DecodeError (or GeometryError) on anything wrong."""
    sb = decode_superblock(device_read_sector0)
    check_geometry(sb, device_sectors)
    return Volume(sb, bytes(device_read_sector0[:SECTOR]))


ZERO_CHUNK_SECTORS = 2048  # 1 MiB per write while formatting


def format_volume(device: BlockDevice, volume_id: bytes, streams: list[StreamSpec]) -> Volume:
    """Zero the key directory and every region, then write the superblock last: a crash
    while formatting leaves no superblock, and the next boot formats again. Zeroing means
    any frame later found under another volume id was put there by someone else (§7.1)."""
    sb = plan_superblock(volume_id, device.sector_count, streams)
    zeros = bytes(ZERO_CHUNK_SECTORS * SECTOR)
    device.write(1, zeros[: (FIRST_REGION_LBA - 1) * SECTOR])  # sectors 1..7 and the key directory
    for r in sb.regions:
        for lba in range(r.start, r.start + r.sectors, ZERO_CHUNK_SECTORS):
            n = min(ZERO_CHUNK_SECTORS, r.start + r.sectors - lba)
            device.write(lba, zeros[: n * SECTOR])
    raw = encode_superblock(sb)
    device.write(0, raw)
    return Volume(sb, raw)
