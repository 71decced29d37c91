"""Block devices of 512-byte sectors: the only thing the writer writes to.

The writer issues whole-sector writes at sector offsets, nothing else. The
recording device keeps every write so crash tests can replay the first K writes
and tear write K+1 after any number of its sectors.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import NamedTuple, Protocol

SECTOR = 512


class BlockDevice(Protocol):
    @property
    def sector_count(self) -> int: ...

    def read(self, lba: int, count: int) -> bytes: ...

    def write(self, lba: int, data: bytes) -> None: ...


def _check_write(dev: BlockDevice, lba: int, data: bytes) -> None:
    if len(data) == 0 or len(data) % SECTOR:
        raise ValueError(f"write of {len(data)} bytes is not whole sectors")
    if lba < 0 or lba + len(data) // SECTOR > dev.sector_count:
        raise ValueError(f"write at sector {lba} runs past the device end")


class MemoryDevice:
    def __init__(self, sector_count: int, data: bytes | None = None) -> None:
        self._buf = bytearray(data) if data is not None else bytearray(sector_count * SECTOR)
        if len(self._buf) != sector_count * SECTOR:
            raise ValueError("image size does not match the sector count")
        self._sectors = sector_count

    @property
    def sector_count(self) -> int:
        return self._sectors

    def read(self, lba: int, count: int) -> bytes:
        return bytes(self._buf[lba * SECTOR : (lba + count) * SECTOR])

    def write(self, lba: int, data: bytes) -> None:
        _check_write(self, lba, data)
        self._buf[lba * SECTOR : lba * SECTOR + len(data)] = data

    def image(self) -> bytes:
        return bytes(self._buf)


class FileDevice:
    """An image file opened read-write; its size must be a whole number of sectors."""

    def __init__(self, path: str | os.PathLike[str], *, create_sectors: int | None = None) -> None:
        if create_sectors is not None:
            with open(path, "wb") as f:
                f.truncate(create_sectors * SECTOR)
        self._f = open(path, "r+b")  # noqa: SIM115 - closed by close()
        size = os.fstat(self._f.fileno()).st_size
        if size % SECTOR:
            raise ValueError(f"{path}: size {size} is not a multiple of {SECTOR}")
        self._sectors = size // SECTOR

    @property
    def sector_count(self) -> int:
        return self._sectors

    def read(self, lba: int, count: int) -> bytes:
        # Positional: forked verifier workers share this file descriptor (svsmlog.parallel),
        # and a shared seek offset would hand one worker another's sectors.
        return os.pread(self._f.fileno(), count * SECTOR, lba * SECTOR)

    def write(self, lba: int, data: bytes) -> None:
        _check_write(self, lba, data)
        self._f.seek(lba * SECTOR)
        self._f.write(data)
        self._f.flush()

    def close(self) -> None:
        self._f.close()


class Write(NamedTuple):
    lba: int
    data: bytes

    @property
    def sectors(self) -> int:
        return len(self.data) // SECTOR


class Crashed(Exception):
    """The modelled machine stopped: the device took no more writes."""


class RecordingDevice:
    """Wraps a device, keeps every write; can stop (crash) after a given number of writes,
    optionally landing only the first ``tear_sectors`` sectors of the write that crashes."""

    def __init__(
        self,
        inner: BlockDevice,
        *,
        crash_after: int | None = None,
        tear_sectors: int = 0,
        tear_fill: Callable[[int, int], bytes] | None = None,
    ) -> None:
        self.inner = inner
        self.writes: list[Write] = []
        self.crash_after = crash_after
        self.tear_sectors = tear_sectors
        self.tear_fill = tear_fill

    @property
    def sector_count(self) -> int:
        return self.inner.sector_count

    def read(self, lba: int, count: int) -> bytes:
        return self.inner.read(lba, count)

    def write(self, lba: int, data: bytes) -> None:
        _check_write(self, lba, data)
        if self.crash_after is not None and len(self.writes) >= self.crash_after:
            torn = data[: self.tear_sectors * SECTOR]
            if torn:
                self.inner.write(lba, torn)
            if self.tear_fill is not None:
                rest = len(data) // SECTOR - self.tear_sectors
                if rest > 0:
                    self.inner.write(lba + self.tear_sectors, self.tear_fill(lba, rest))
            raise Crashed(f"crashed at device write {len(self.writes) + 1}")
        self.inner.write(lba, data)
        self.writes.append(Write(lba, data))


def replay(
    base: bytes,
    writes: list[Write],
    k: int,
    tear_sectors: int = 0,
    garbage: bytes | None = None,
) -> bytes:
    """The image after the first ``k`` writes landed and write ``k+1`` (if any) landed only
    its first ``tear_sectors`` sectors; its other sectors stay stale, or are overwritten with
    ``garbage`` (repeated) when given."""
    img = bytearray(base)
    for w in writes[:k]:
        img[w.lba * SECTOR : w.lba * SECTOR + len(w.data)] = w.data
    if k < len(writes):
        w = writes[k]
        cut = min(tear_sectors, w.sectors) * SECTOR
        img[w.lba * SECTOR : w.lba * SECTOR + cut] = w.data[:cut]
        if garbage is not None:
            rest = len(w.data) - cut
            fill = (garbage * (rest // len(garbage) + 1))[:rest]
            start = w.lba * SECTOR + cut
            img[start : start + rest] = fill
    return bytes(img)
