"""``svsmlog info``: what anyone holding the image sees without a key.

The host sees this much too, so it is also what the format leaks: geometry, how many
frames each stream holds and where, boot and sequence numbers, and the key ids of the
recipients the envelopes are sealed to. Nothing here is authenticated: a frame counts as
complete when its commit digest matches, which anyone can forge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..codec import DecodeError, RegionEntry, decode_clear_section
from ..crypto import KEM_NAMES
from ..device import SECTOR
from ..format import EnvelopeKind, FrameType
from ..scan import Candidate, ReadSectors, scan_region
from ..volume import KEY_DIRECTORY
from .common import Image, ReadProgress, region_extents
from .tables import ReportConsole, Table, Text


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
    region: RegionEntry
    base_offset: int
    frames: list[FrameInfo] = field(default_factory=list)
    malformed: int = 0

    @property
    def ours(self) -> list[FrameInfo]:
        """Frames of this volume in their place (complete or torn)."""
        return [f for f in self.frames if f.status in ("complete", "torn")]

    @property
    def complete(self) -> list[FrameInfo]:
        return [f for f in self.frames if f.status == "complete"]

    @property
    def head(self) -> FrameInfo | None:
        return max(self.complete, key=lambda f: (f.boot, f.seq), default=None)

    @property
    def boots(self) -> list[int]:
        return sorted({f.boot for f in self.ours})

    def as_json(self) -> dict[str, object]:
        r, head, ours, complete = self.region, self.head, self.ours, self.complete
        return {
            "stream": r.name,
            "id": r.stream,
            "start_lba": r.start,
            "sectors": r.sectors,
            "offset": self.base_offset + r.start * SECTOR,
            "length": r.sectors * SECTOR,
            "frames": len(complete),
            "torn": len(ours) - len(complete),
            "other": len(self.frames) - len(ours),
            "malformed": self.malformed,
            "used_bytes": sum(f.length for f in complete),
            "boots": self.boots,
            "head": {"boot": head.boot, "seq": head.seq} if head else None,
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
                 recipients: dict[tuple[str, int], Recipient]) -> StreamInfo:
    base = image.source.base_offset
    info = StreamInfo(region, base)
    vid = image.volume.volume_id
    for c in scan_region(read, region):
        if not isinstance(c, Candidate):
            info.malformed += 1
            continue
        h = c.header
        status = _status(c, vid, region)
        # Jumping past complete frames only, as the writer's mount does: a torn or foreign
        # header must not hide what lies behind it.
        c.accepted = status == "complete"
        info.frames.append(FrameInfo(base + c.lba * SECTOR, h.sectors * SECTOR, region.name, region.stream,
                                     h.boot, h.seq, _TYPE_NAMES.get(h.type, str(h.type)), status))
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

    @property
    def boots(self) -> list[int]:
        return sorted({b for s in self.streams for b in s.boots})

    def as_json(self) -> dict[str, object]:
        src, sb = self.image.source, self.image.volume.superblock
        frames = [f for s in (self.key_directory, *self.streams) for f in s.frames]
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
            "frames": [f.as_json() for f in frames],
        }


def collect(image: Image) -> VolumeInfo:
    recipients: dict[tuple[str, int], Recipient] = {}
    extents = [(KEY_DIRECTORY.start, KEY_DIRECTORY.sectors), *region_extents(image.volume)]
    with ReadProgress(image.source.read_sectors, extents, "scanning") as progress:
        directory = _scan_stream(progress.read, image, KEY_DIRECTORY, recipients)
        streams = [_scan_stream(progress.read, image, r, recipients) for r in image.volume.superblock.regions]
    reported = recipients.pop(_EVIDENCE, None)
    return VolumeInfo(image, directory, streams, list(recipients.values()),
                      sorted(reported.boots) if reported else [])


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
        console.print(_frames_table([f for s in (info.key_directory, *info.streams) for f in s.frames]))


def _streams_table(streams: list[StreamInfo]) -> Table:
    t = Table(title="Streams (regions), after the key directory", title_justify="left")
    for col in ("stream", "id", "offset", "size", "frames", "torn", "other", "used", "boots", "head"):
        t.add_column(col)
    for s in streams:
        r, head, ours, complete = s.region, s.head, s.ours, s.complete
        directory = r is KEY_DIRECTORY  # one slot per boot: no stream id, no head
        offset, size = s.base_offset + r.start * SECTOR, _fmt_bytes(r.sectors * SECTOR)
        t.add_row(r.name, "-" if directory else str(r.stream), str(offset), size,
                  str(len(complete)), str(len(ours) - len(complete)), str(len(s.frames) - len(ours)),
                  _fmt_bytes(sum(f.length for f in complete)), _span(s.boots),
                  "-" if head is None or directory else f"boot {head.boot} seq {head.seq}")
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


def _frames_table(frames: list[FrameInfo]) -> Table:
    t = Table(title="Frames", title_justify="left")
    for col in ("offset", "length", "stream", "boot", "seq", "type", "status"):
        t.add_column(col)
    for f in frames:
        t.add_row(str(f.offset), str(f.length), f.stream, str(f.boot), str(f.seq), f.type, f.status)
    return t
