"""How each boot ended, and why: the crash summary of ``svsmlog crashes``.

A pure function over what the verifier already established (its report and the records
it recovered): no I/O, no key handling, so the CLI, the fleet runner and tests share it.

A panic record (flag bit 0) carries the panic handler's output. COCONUT-SVSM prints
``Panic on CPU[n]! ...`` and then ``panicked at FILE:LINE:COL: REASON``; the model puts
the latter in an ``info`` field. Other writers may use ``location``/``file``+``line`` and
``reason``/``message`` fields, or put the ``panicked at`` text in the message itself; all
of these are recognised. Everything here is log *content* (a buggy or compromised service
can write anything): it is reported, never interpreted further.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from .records import LocatedRecord, Record
from .report import Ending, Report

DEFAULT_CONTEXT = 10

# "panicked at kernel/src/x.rs:214:13: reason" (Rust >= 1.73 puts the reason after a colon;
# older ones wrote "panicked at 'reason', file:line:col").
_PANICKED_AT = re.compile(r"panicked at (?P<loc>[^\s:]+(?::\d+){1,2})(?::\s*(?P<reason>.*))?$", re.S)
_PANICKED_OLD = re.compile(r"panicked at '(?P<reason>.*)', (?P<loc>[^\s:]+(?::\d+){1,2})$", re.S)


@dataclass(frozen=True)
class PanicDetail:
    """Where and why, as far as the panic record says."""

    location: str | None
    reason: str | None
    message: str  # one line for journalctl: the record's message with reason and location

    def as_json(self) -> dict[str, object]:
        return {"location": self.location, "reason": self.reason}


def _parse_panicked_at(text: str) -> tuple[str | None, str | None]:
    text = text.strip()
    m = _PANICKED_AT.search(text) or _PANICKED_OLD.search(text)
    if m is None:
        return None, None
    reason = m.group("reason")
    return m.group("loc"), (reason.strip() or None) if reason is not None else None


def panic_detail(record: Record) -> PanicDetail | None:
    """The location and reason of a panic record, or None when it names neither."""
    fields = dict(record.fields)
    location = fields.get("location")
    if location is None and "file" in fields:
        location = fields["file"] + (f":{fields['line']}" if "line" in fields else "")
    reason = fields.get("reason")
    for text in (fields.get("info"), fields.get("message"), record.message):
        if text is None or (location is not None and reason is not None):
            continue
        loc, why = _parse_panicked_at(text)
        location = location or loc
        reason = reason or why
    if reason is None and fields.get("message") is not None:
        reason = fields["message"]
    if location is None and reason is None:
        return None
    # The one-line message adds only what the record's message does not already say.
    message = record.message
    if reason is not None and reason not in message:
        message += f": {reason}"
    if location is not None and location not in message:
        message += f" at {location}"
    return PanicDetail(location, reason, message)


@dataclass
class BootCrash:
    """How one boot ended."""

    boot: int
    ending: str  # "clean", "panic", "crash" or "unknown"
    detail: str  # the report's wording, e.g. "crash (torn tail)"
    service: str | None = None  # the panicking service
    stream: str | None = None
    t_ns: int | None = None  # time of the panic record, or of the last record seen
    location: str | None = None
    reason: str | None = None
    panic_message: str | None = None
    last: list[LocatedRecord] = field(default_factory=list)  # the N records before the end, oldest first
    verified: bool = True  # False when a record shown is unverified

    def as_json(self) -> dict[str, object]:
        return {
            "boot": self.boot,
            "ending": self.ending,
            "detail": self.detail,
            "service": self.service,
            "stream": self.stream,
            "t_ns": self.t_ns,
            "location": self.location,
            "reason": self.reason,
            "panic_message": self.panic_message,
            "verified": self.verified,
            "last_records": [lr.as_json() for lr in self.last],
        }


_ENDING_NAME = {
    Ending.CLEAN: "clean", Ending.PANIC: "panic", Ending.CRASH: "crash", Ending.UNKNOWN: "unknown",
}


def summarize(records: Iterable[LocatedRecord], report: Report, context: int = DEFAULT_CONTEXT
              ) -> list[BootCrash]:
    """Per boot of the report, in boot order: how it ended and the ``context`` records
    before the end (all streams merged by time; the panic record itself is the last one).

    ``records`` are the verifier's (boot, then time order within a stream); they are read
    once, keeping ``context`` records a boot, so a large log costs no more memory."""
    context = max(context, 0)
    tails: dict[int, deque[LocatedRecord]] = {}
    panics: dict[int, LocatedRecord] = {}
    for lr in records:
        if lr.boot in panics:
            continue  # the records before the (first) panic are what matters
        tail = tails.setdefault(lr.boot, deque(maxlen=context + 1))
        tail.append(lr)
        if lr.record.panic:
            panics[lr.boot] = lr
    out = []
    for boot in sorted(report.boots):
        ending = report.boots[boot].ending
        last: list[LocatedRecord] = sorted(tails.get(boot, ()), key=lambda lr: lr.record.t_ns)
        crash = BootCrash(boot, _ENDING_NAME[ending], ending.value)
        panic = panics.get(boot)
        if panic is not None:
            crash.ending = "panic"  # the record says so, even if the report weighs the streams
            crash.service = panic.record.service
            crash.stream = panic.stream
            crash.t_ns = panic.record.t_ns
            d = panic_detail(panic.record)
            crash.panic_message = panic.record.message
            if d is not None:
                crash.location, crash.reason = d.location, d.reason
            last = [lr for lr in last if lr.record.t_ns <= panic.record.t_ns]
        elif last:
            crash.t_ns = last[-1].record.t_ns
        crash.last = last[-context:] if context else []
        crash.verified = all(lr.verified for lr in crash.last)
        out.append(crash)
    return out
