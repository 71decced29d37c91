"""svsmlog images from the message set: stream layouts, flush policies, what the device saw.

A layout routes records to streams: ``aggregated`` (one stream "all") or ``per-service``
(one stream per service, as ``svsmlog.model.config`` names them). A flush policy decides
when a stream's pending records become one frame:

``default``
    The SVSM model's rule (``svsmlog.model.svsm.SvsmModel.log``) with the default launch
    configuration (``DEFAULT_MAX_BYTES``, ``DEFAULT_MAX_DELAY_MS``), replayed on the
    messages' own timestamps: before a record is logged, every stream whose oldest pending
    record is ``max_delay`` old is flushed (oldest deadline first); an ERROR record flushes
    its stream at once, then every other stream with pending records; any other record
    flushes its stream when ``max_bytes`` of records are pending.
``batch-64``
    A stream is flushed when 64 records are pending.

Under either, the writer itself ends a frame early when the next record does not fit it
(``LogWriter.append`` flushes first): a frame's size limit, or any other limit the record
block format sets (e.g. how much time one block may span). Those frames count as flushes.

Either way the boot ends with ``LogWriter.close`` (an END frame per stream, carrying what
is still pending). Regions are sized by a dry run of the same build on a device that
discards writes, so nothing wraps and little is left empty for the reader to scan;
the real build checks that no frame wrapped.

Disk bytes per message byte: bytes of every device write after formatting (the boot's
key-directory slot, its BOOT frames, every DATA frame and the END frames; all whole
512-byte sectors) divided by the bytes of message text. Formatting (zeroing the regions
once per volume, the superblock) is left out: it is per volume, not per message.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from svsmlog import crypto
from svsmlog.device import SECTOR, BlockDevice, FileDevice
from svsmlog.format import FIRST_REGION_LBA
from svsmlog.model.config import (
    AGGREGATED_STREAMS,
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_DELAY_MS,
    PER_SERVICE_STREAMS,
)
from svsmlog.records import Level, Record
from svsmlog.volume import ALIGN, StreamSpec, format_volume
from svsmlog.writer import LogWriter, Sealed

LAYOUTS = ("aggregated", "per-service")
POLICIES = ("default", "batch-64")
BATCH = 64
SLACK_SECTORS = 16  # past the dry run's last frame: the reader scans empty sectors one by one


class WrapError(RuntimeError):
    """A frame wrapped to its region's start: the region was sized too small."""


class NullDevice:
    """A device that reads zeros and discards writes (the sizing dry run)."""

    def __init__(self, sector_count: int) -> None:
        self._sectors = sector_count

    @property
    def sector_count(self) -> int:
        return self._sectors

    def read(self, lba: int, count: int) -> bytes:
        return bytes(count * SECTOR)

    def write(self, lba: int, data: bytes) -> None:
        pass


class CountingDevice:
    """Passes writes through and counts them and their sectors (svsmlog.device's
    RecordingDevice keeps every write's bytes: a 1M-record build would hold its image twice)."""

    def __init__(self, inner: BlockDevice) -> None:
        self.inner = inner
        self.writes = 0
        self.sectors = 0

    @property
    def sector_count(self) -> int:
        return self.inner.sector_count

    def read(self, lba: int, count: int) -> bytes:
        return self.inner.read(lba, count)

    def write(self, lba: int, data: bytes) -> None:
        self.inner.write(lba, data)
        self.writes += 1
        self.sectors += len(data) // SECTOR


def streams_of(layout: str) -> list[tuple[int, str]]:
    """(stream id, name) of a layout, as the model's launch configuration numbers them."""
    table = AGGREGATED_STREAMS if layout == "aggregated" else PER_SERVICE_STREAMS
    return [(sid, name) for sid, name, _ in table]


def router(layout: str) -> Callable[[Record], int]:
    if layout == "aggregated":
        return lambda rec: 1
    ids = {name: sid for sid, name in streams_of(layout)}
    return lambda rec: ids[rec.service]


# ---------------------------------------------------------------------- flush policies

APPEND, FLUSH = 0, 1
Op = tuple[int, int]  # (APPEND, record index) or (FLUSH, stream id)


class Pending:
    """What each stream's pending frame holds, as a flush policy sees it."""

    def __init__(self, writer: LogWriter) -> None:
        self.writer = writer
        self.records: dict[int, int] = {}

    def bytes(self, stream: int) -> int:
        return self.writer.pending_bytes(stream)

    def count(self, stream: int) -> int:
        return self.records.get(stream, 0)


def _default_policy(records: Sequence[Record], route: Callable[[Record], int], p: Pending) -> Iterator[Op]:
    max_delay = DEFAULT_MAX_DELAY_MS * 1_000_000
    deadline: dict[int, int] = {}  # stream -> time its pending frame is due
    for i, rec in enumerate(records):
        now = rec.t_ns
        while deadline:
            due, sid = min((d, s) for s, d in deadline.items())
            if due > now:
                break
            del deadline[sid]
            yield FLUSH, sid
        sid = route(rec)
        yield APPEND, i
        deadline.setdefault(sid, now + max_delay)
        if rec.level == Level.ERROR:
            for s in [sid, *sorted(deadline.keys() - {sid})]:
                deadline.pop(s, None)
                yield FLUSH, s
        elif p.bytes(sid) >= DEFAULT_MAX_BYTES:
            del deadline[sid]
            yield FLUSH, sid


def _batch_policy(records: Sequence[Record], route: Callable[[Record], int], p: Pending) -> Iterator[Op]:
    for i, rec in enumerate(records):
        sid = route(rec)
        yield APPEND, i
        if p.count(sid) >= BATCH:
            yield FLUSH, sid


POLICY_OPS = {"default": _default_policy, "batch-64": _batch_policy}


# ---------------------------------------------------------------------- building


@dataclass(frozen=True)
class ImageStats:
    layout: str
    policy: str
    records: int
    frames: int  # DATA and END frames (each one flush)
    frame_writes: int  # device writes made by those flushes
    written_bytes: int  # every device write after formatting
    stream_sectors: dict[str, int]  # sectors the boot used, per stream
    image_bytes: int
    seconds: float  # the real build (the dry run excluded)

    @property
    def writes_per_flush(self) -> float:
        return self.frame_writes / self.frames

    @property
    def records_per_frame(self) -> float:
        return self.records / self.frames


def _run(
    device: BlockDevice,
    specs: list[StreamSpec],
    records: Sequence[Record],
    layout: str,
    policy: str,
    owner: crypto.PublicKey,
    on_sealed: Callable[[Sealed], None] | None = None,
) -> tuple[int, int, int, dict[int, int]]:
    """One boot writing ``records``: (frames, their device writes, bytes written after
    formatting, sectors used per stream id)."""
    counter = CountingDevice(device)
    format_volume(counter, crypto.random_bytes(16), specs)
    counter.writes = counter.sectors = 0
    w = LogWriter(counter, specs, [owner])
    used: dict[int, int] = {}
    frames = writes = 0
    pending = Pending(w)

    def take(sealed: list[Sealed]) -> None:
        nonlocal frames
        for s in sealed:
            frames += 1
            pending.records[s.stream] = 0
            if on_sealed is not None:
                on_sealed(s)
            end = s.lba + s.sectors
            if end <= used.get(s.stream, 0):
                raise WrapError(f"stream {s.stream} wrapped: its region is too small")
            used[s.stream] = end

    route = router(layout)
    for op, arg in POLICY_OPS[policy](records, route, pending):
        if op == APPEND:
            rec = records[arg]
            sid = route(rec)
            before = counter.writes
            sealed = w.append(sid, rec)  # flushes first if the record does not fit the frame
            writes += counter.writes - before
            take(sealed)
            pending.records[sid] = pending.count(sid) + 1
        else:
            before = counter.writes
            take(w.flush(arg))
            writes += counter.writes - before
    before = counter.writes
    take(w.close())
    writes += counter.writes - before
    region_start = {r.stream: r.start for r in w.volume.superblock.regions}
    return frames, writes, counter.sectors * SECTOR, {s: e - region_start[s] for s, e in used.items()}


def batches(records: Sequence[Record], layout: str, policy: str) -> list[tuple[str, int]]:
    """How a policy batches ``records``: (stream name, record count) of every frame that
    carries records, in the order they are written (a dry run, nothing is stored)."""
    specs = _layout_specs(layout, {sid: len(records) + 64 for sid, _ in streams_of(layout)})
    names = dict(streams_of(layout))
    out: list[tuple[str, int]] = []

    def note(s: Sealed) -> None:
        if s.records:
            out.append((names[s.stream], len(s.records)))

    owner = crypto.generate_private_key().public
    _run(NullDevice(_volume_sectors(specs)), specs, records, layout, policy, owner, note)
    return out


def _layout_specs(layout: str, sectors: dict[int, int]) -> list[StreamSpec]:
    return [StreamSpec(sid, name, -(-sectors[sid] // ALIGN) * ALIGN) for sid, name in streams_of(layout)]


def _volume_sectors(specs: list[StreamSpec]) -> int:
    return FIRST_REGION_LBA + sum(s.sectors for s in specs)


def build_image(
    path: Path,
    records: Sequence[Record],
    layout: str,
    policy: str,
    owner: crypto.PublicKey,
) -> ImageStats:
    """Write ``records`` as one boot into a new image at ``path``."""
    route = router(layout)
    per_stream: dict[int, int] = {}
    for rec in records:
        sid = route(rec)
        per_stream[sid] = per_stream.get(sid, 0) + 1
    # Dry run: a region of one sector per record (a one-record frame is one sector) plus
    # room for the BOOT and END frames cannot wrap.
    bound = {sid: per_stream.get(sid, 0) + 64 for sid, _ in streams_of(layout)}
    dry_specs = _layout_specs(layout, bound)
    _, _, _, used = _run(NullDevice(_volume_sectors(dry_specs)), dry_specs, records, layout, policy, owner)
    specs = _layout_specs(layout, {sid: used.get(sid, 0) + SLACK_SECTORS for sid, _ in streams_of(layout)})
    if path.exists():
        path.unlink()
    dev = FileDevice(path, create_sectors=_volume_sectors(specs))
    t0 = time.perf_counter()
    try:
        frames, writes, written, used = _run(dev, specs, records, layout, policy, owner)
    finally:
        dev.close()
    seconds = time.perf_counter() - t0
    names = dict(streams_of(layout))
    return ImageStats(
        layout=layout,
        policy=policy,
        records=len(records),
        frames=frames,
        frame_writes=writes,
        written_bytes=written,
        stream_sectors={names[s]: n for s, n in used.items()},
        image_bytes=os.path.getsize(path),
        seconds=seconds,
    )
