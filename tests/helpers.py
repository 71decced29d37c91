"""Small builders shared by the core tests."""

from __future__ import annotations

from svsmlog.device import SECTOR, MemoryDevice
from svsmlog.records import Level, Record
from svsmlog.verify import Keyring, Verifier


def rec(i: int, msg: str = "", *, level: Level = Level.INFO, service: str = "core") -> Record:
    return Record(i * 1000, level, service, "svsm", msg or f"message {i}")


def verify(dev: MemoryDevice, *keys, stream_keys=()):  # type: ignore[no-untyped-def]
    v = Verifier(dev.read, dev.sector_count, Keyring(list(keys), list(stream_keys)))
    return v, v.run()


def image_device(image: bytes) -> MemoryDevice:
    return MemoryDevice(len(image) // SECTOR, image)


def child_pids() -> set[int]:
    """The processes this one has forked and not yet reaped (Linux's /proc)."""
    import os
    from pathlib import Path

    out: set[int] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            out.update(int(p) for p in (task / "children").read_text().split())
        except OSError:  # a thread that ended meanwhile
            continue
    return out
