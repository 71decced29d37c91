"""Log records: what a service logs, and what the reader hands back."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Level(IntEnum):
    """Levels of the Rust ``log`` crate, most severe first (the on-disk value)."""

    ERROR = 0
    WARN = 1
    INFO = 2
    DEBUG = 3
    TRACE = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> Level:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            names = ", ".join(lv.label for lv in cls)
            raise ValueError(f"unknown level {text!r} (expected one of {names})") from None


# Record flag bits (spec §5.6).
FLAG_PANIC = 0x01
KNOWN_FLAGS = FLAG_PANIC


@dataclass(slots=True)
class Record:
    """One log line as the SVSM wrote it. Not frozen: a frozen dataclass costs four times
    as much to construct, and the reader builds one per record (the hot path)."""

    t_ns: int  # boot-relative monotonic time, nanoseconds
    level: Level
    service: str
    component: str
    message: str
    target: str | None = None
    fields: tuple[tuple[str, str], ...] = ()
    flags: int = 0

    @property
    def panic(self) -> bool:
        return bool(self.flags & FLAG_PANIC)


@dataclass(slots=True)
class LocatedRecord:
    """A record with where it was found: boot, stream, frame sequence, byte offset."""

    boot: int
    stream: str
    seq: int
    offset: int
    record: Record
    verified: bool = True

    def as_json(self) -> dict[str, object]:
        r = self.record
        out: dict[str, object] = {
            "boot": self.boot,
            "stream": self.stream,
            "seq": self.seq,
            "service": r.service,
            "component": r.component,
            "level": r.level.label,
            "t_ns": r.t_ns,
            "message": r.message,
        }
        if r.target is not None:
            out["target"] = r.target
        if r.fields:
            out["fields"] = dict(r.fields)
        if r.panic:
            out["panic"] = True
        if not self.verified:
            out["verified"] = False
        return out
