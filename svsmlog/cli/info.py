"""``svsmlog info``: what anyone holding the image sees without a key.

The host sees this much too, so it is also what the format leaks: geometry, how many
frames each stream holds and where, boot and sequence numbers, and the key ids of the
recipients the envelopes are sealed to. Nothing here is authenticated: a frame counts as
complete when its commit digest matches, which anyone can forge.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TextIO

from ..codec import DecodeError, RegionEntry, decode_clear_section
from ..crypto import KEM_NAMES
from ..device import SECTOR
from ..format import EnvelopeKind, FrameType
from ..scan import Candidate, ReadSectors, scan_region
from ..volume import KEY_DIRECTORY
from .common import Image, ReadProgress, region_extents
from .tables import LongTable, ReportConsole, Table, Text


@dataclass
class FrameInfo:
    offset: int
    length: int
    stream: str
    stream_id: int
    boot: int
    seq: int
    type: str
    status: str  # complete | torn | foreign (another volume) | misplaced (wrong stream or sector)

    def as_json(self) -> dict[str, object]:
        return dict(self.__dict__)


_STATUSES = ("complete", "torn", "foreign", "misplaced")


class FrameList:
    """Every frame found, in scan order, as columns (27 bytes a frame), kept only to list
    them (--frames, --json): with a FrameInfo per frame and a dict each for json.dumps,
    info --json held 582 MiB for the 242,669 frames of a 185 MB image, and a host can put
    a frame on every sector."""

    def __init__(self) -> None:
        self.offsets = array("Q")
        self.lengths = array("I")  # in sectors
        self.regions: list[RegionEntry] = []  # the region of each run of frames, by index
        self.region_of = array("B")  # at most MAX_REGIONS + 1
        self.boots = array("I")
        self.seqs = array("Q")
        self.types = array("B")
        self.statuses = array("B")

    def add(self, region: int, offset: int, sectors: int, boot: int, seq: int, ftype: int,
            status: str) -> None:
        self.region_of.append(region)
        self.offsets.append(offset)
        self.lengths.append(sectors)
        self.boots.append(boot)
        self.seqs.append(seq)
        self.types.append(ftype)
        self.statuses.append(_STATUSES.index(status))

    def __iter__(self) -> Iterator[FrameInfo]:
        regions = self.regions
        for i in range(len(self.offsets)):
            r = regions[self.region_of[i]]
            t = self.types[i]
            yield FrameInfo(self.offsets[i], self.lengths[i] * SECTOR, r.name, r.stream, self.boots[i],
                            self.seqs[i], _TYPE_NAMES.get(t, str(t)), _STATUSES[self.statuses[i]])


@dataclass
class Recipient:
    key_id: str
    kem: str
    kind: str  # boot-secret: every stream of a boot; chain-key: one stream from a frame on
    boots: set[int] = field(default_factory=set)
    streams: set[str] = field(default_factory=set)

    def as_json(self) -> dict[str, object]:
        return {"key_id": self.key_id, "kem": self.kem, "kind": self.kind, "boots": sorted(self.boots),
                "streams": sorted(self.streams) if self.kind == "chain-key" else []}


@dataclass
class StreamInfo:
    """What one region holds, counted as the scan goes (constant memory)."""

    region: RegionEntry
    base_offset: int
    complete: int = 0
    torn: int = 0
    other: int = 0  # frames of another volume, stream or sector
    malformed: int = 0
    used_bytes: int = 0  # of the complete frames
    boot_set: set[int] = field(default_factory=set)  # of the complete and torn frames
    head: tuple[int, int] | None = None  # the greatest (boot, seq) of a complete frame

    @property
    def boots(self) -> list[int]:
        return sorted(self.boot_set)

    def count(self, status: str, boot: int, seq: int, length: int) -> None:
        if status == "complete":
            self.complete += 1
            self.used_bytes += length
            if self.head is None or (boot, seq) > self.head:
                self.head = (boot, seq)
        elif status == "torn":
            self.torn += 1
        else:
            self.other += 1
            return
        self.boot_set.add(boot)

    def as_json(self) -> dict[str, object]:
        r, head = self.region, self.head
        return {
            "stream": r.name,
            "id": r.stream,
            "start_lba": r.start,
            "sectors": r.sectors,
            "offset": self.base_offset + r.start * SECTOR,
            "length": r.sectors * SECTOR,
            "frames": self.complete,
            "torn": self.torn,
            "other": self.other,
            "malformed": self.malformed,
            "used_bytes": self.used_bytes,
            "boots": self.boots,
            "head": {"boot": head[0], "seq": head[1]} if head else None,
        }


_TYPE_NAMES = {int(t): t.name.lower() for t in FrameType}
_KIND_NAMES = {EnvelopeKind.BOOT_SECRET: "boot-secret", EnvelopeKind.CHAIN_KEY: "chain-key"}


_EVIDENCE = ("", int(EnvelopeKind.SNP_REPORT))  # where _note_recipients counts boots carrying a report


def _status(c: Candidate, vid: bytes, region: RegionEntry) -> str:
    h = c.header
    if h.volume_id != vid:
        return "foreign"
    if h.stream != region.stream or h.lba != c.lba:
        return "misplaced"
    return "complete" if c.digest_ok() else "torn"


def _note_recipients(c: Candidate, region: RegionEntry, recipients: dict[tuple[str, int], Recipient]) -> None:
    try:
        envelopes = decode_clear_section(c.clear)
    except DecodeError:
        return
    for env in envelopes:
        if env.kind >= EnvelopeKind.SNP_REPORT:
            if env.kind == EnvelopeKind.SNP_REPORT:  # evidence is not addressed to anyone
                recipients.setdefault(_EVIDENCE, Recipient("-", "-", "snp-report")).boots.add(c.header.boot)
            continue
        kind = _KIND_NAMES.get(EnvelopeKind(env.kind), str(env.kind))
        key = (env.key_id.hex(), env.kind)
        rec = recipients.setdefault(key, Recipient(env.key_id.hex(), KEM_NAMES.get(env.kem_id,
                                                   f"0x{env.kem_id:04x}"), kind))
        rec.boots.add(c.header.boot)
        rec.streams.add(region.name)


def _scan_stream(read: ReadSectors, image: Image, region: RegionEntry,
                 recipients: dict[tuple[str, int], Recipient], frames: FrameList | None) -> StreamInfo:
    base = image.source.base_offset
    info = StreamInfo(region, base)
    vid = image.volume.volume_id
    index = len(frames.regions) if frames is not None else 0
    if frames is not None:
        frames.regions.append(region)
    for c in scan_region(read, region):
        if not isinstance(c, Candidate):
            info.malformed += 1
            continue
        h = c.header
        status = _status(c, vid, region)
        # Jumping past complete frames only, as the writer's mount does: a torn or foreign
        # header must not hide what lies behind it.
        c.accepted = status == "complete"
        info.count(status, h.boot, h.seq, h.sectors * SECTOR)
        if frames is not None:
            frames.add(index, base + c.lba * SECTOR, h.sectors, h.boot, h.seq, h.type, status)
        if status in ("complete", "torn") and h.type in (FrameType.BOOT, FrameType.KEYS):
            _note_recipients(c, region, recipients)
    return info


@dataclass
class VolumeInfo:
    image: Image
    key_directory: StreamInfo  # the per-boot key slots before the regions (spec §4.7)
    streams: list[StreamInfo]
    recipients: list[Recipient]
    report_boots: list[int]  # boots whose key frames carry an SNP attestation report (unverified)
    frames: FrameList | None  # every frame, when collected with list_frames

    @property
    def boots(self) -> list[int]:
        return sorted({b for s in self.streams for b in s.boot_set})

    def as_json(self) -> dict[str, object]:
        """Everything but the frames (write_json adds them, one at a time)."""
        src, sb = self.image.source, self.image.volume.superblock
        return {
            "image": src.name,
            "container": src.container,
            "partition": src.partition,
            "base_offset": src.base_offset,
            "volume": {"id": sb.volume_id.hex(), "total_sectors": sb.total_sectors, "sector_size": SECTOR,
                       "bytes": sb.total_sectors * SECTOR},
            "key_directory": self.key_directory.as_json(),
            "streams": [s.as_json() for s in self.streams],
            "boots": self.boots,
            "recipients": [r.as_json() for r in self.recipients],
            "boots_with_attestation_report_unverified": self.report_boots,
        }

    def write_json(self, out: TextIO) -> None:
        """``info --json``: the object of as_json and, last, "frames", every frame (the
        bytes json.dumps(indent=2) gives, svsmlog.cli.jsonout)."""
        from .jsonout import write_with_list

        if self.frames is None:
            raise ValueError("collected without the frames")
        write_with_list(self.as_json(), "frames", (f.as_json() for f in self.frames), out)


def collect(image: Image, *, list_frames: bool = False) -> VolumeInfo:
    recipients: dict[tuple[str, int], Recipient] = {}
    frames = FrameList() if list_frames else None
    extents = [(KEY_DIRECTORY.start, KEY_DIRECTORY.sectors), *region_extents(image.volume)]
    with ReadProgress(image.source.read_sectors, extents, "scanning") as progress:
        directory = _scan_stream(progress.read, image, KEY_DIRECTORY, recipients, frames)
        streams = [_scan_stream(progress.read, image, r, recipients, frames)
                   for r in image.volume.superblock.regions]
    reported = recipients.pop(_EVIDENCE, None)
    return VolumeInfo(image, directory, streams, list(recipients.values()),
                      sorted(reported.boots) if reported else [], frames)


def _fmt_bytes(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = float(n)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def render(console: ReportConsole, info: VolumeInfo, *, list_frames: bool) -> None:
    sb = info.image.volume.superblock
    console.print(Text(f"image      {info.image.name} ({info.image.describe()})"))
    console.print(Text(f"volume     {sb.volume_id.hex()}, {sb.total_sectors} sectors "
                       f"({_fmt_bytes(sb.total_sectors * SECTOR)})"))
    console.print(Text(f"boots      {_span(info.boots)}  (read without a key: unauthenticated)"))
    console.print()
    console.print(_streams_table([info.key_directory, *info.streams]))
    console.print(_recipients_table(info.recipients))
    listing = ", ".join(map(str, info.report_boots))
    line = (f"boot(s) {listing} carry an SEV-SNP report (not checked here: 'verify' does)" if listing
            else "no boot carries an SEV-SNP report")
    console.print(Text("attested   " + line))
    if list_frames:
        if info.frames is None:
            raise ValueError("collected without the frames")
        console.print(_frames_table(info.frames))


def _streams_table(streams: list[StreamInfo]) -> Table:
    t = Table(title="Streams (regions), after the key directory", title_justify="left")
    for col in ("stream", "id", "offset", "size", "frames", "torn", "other", "used", "boots", "head"):
        t.add_column(col)
    for s in streams:
        r, head = s.region, s.head
        directory = r is KEY_DIRECTORY  # one slot per boot: no stream id, no head
        offset, size = s.base_offset + r.start * SECTOR, _fmt_bytes(r.sectors * SECTOR)
        t.add_row(r.name, "-" if directory else str(r.stream), str(offset), size,
                  str(s.complete), str(s.torn), str(s.other), _fmt_bytes(s.used_bytes), _span(s.boots),
                  "-" if head is None or directory else f"boot {head[0]} seq {head[1]}")
    return t


def _span(boots: list[int]) -> str:
    if not boots:
        return "-"
    return str(boots[0]) if len(boots) == 1 else f"{boots[0]}..{boots[-1]} ({len(boots)})"


def _recipients_table(recipients: list[Recipient]) -> Table:
    t = Table(title="Recipients (key ids the envelopes are sealed to)", title_justify="left")
    for col in ("key id", "kem", "opens", "boots"):
        t.add_column(col)
    for r in recipients:
        opens = "every stream" if r.kind == "boot-secret" else "stream " + ", ".join(sorted(r.streams))
        t.add_row(r.key_id, r.kem, opens, _span(sorted(r.boots)))
    return t


def _frames_table(frames: FrameList) -> LongTable:
    def rows() -> Iterator[tuple[str, ...]]:
        for f in frames:
            yield str(f.offset), str(f.length), f.stream, str(f.boot), str(f.seq), f.type, f.status

    return LongTable("Frames", ["offset", "length", "stream", "boot", "seq", "type", "status"], rows)
