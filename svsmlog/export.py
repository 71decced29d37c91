"""Output formats for recovered records: text (rich), JSON lines, journal export, syslog.

Every writer takes an iterable of :class:`LocatedRecord` and writes record by record,
so a multi-gigabyte extraction never has to be held in memory.

Everything in a record came out of a confidential VM but is *content*, not code:
a compromised or buggy service can log any bytes.  The writers therefore treat
message, service, component, stream and field text as hostile: nothing in it can
start a new record, forge a field, inject terminal escapes or rich markup.

Time: ``t_ns`` is the SVSM's boot-relative monotonic clock.  Wall-clock time is only
known through ``realtime_base_us`` (per boot: the UNIX time in µs at ``t_ns == 0``),
which comes from the host or the guest owner's own notes.  The host is untrusted in
this threat model, so a wall-clock timestamp is a convenience for correlation with
other logs, never evidence; the boot-relative time is what the SVSM itself recorded.
"""

from __future__ import annotations

import functools
import itertools
import json
import os
import re
import struct
import sys
import uuid
from array import array
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import accumulate, islice
from typing import TYPE_CHECKING, BinaryIO, TextIO
from urllib.parse import quote

from . import crypto
from .codec import RecordColumns, records_of
from .crashes import panic_detail
from .format import HEAD_LEVEL
from .records import FLAG_PANIC, Level, LocatedRecord, Record

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

FORMATS = ("text", "jsonl", "journal", "syslog", "timesketch")

# How every wall-clock time we write is labelled: the boot record's host_time_ns is what the
# untrusted host told the SVSM at boot, so a record's wall-clock time (host_time_ns + t_ns)
# is as trustworthy as the host, while t_ns is the SVSM's own clock.
HOST_TIME_DESC = "SVSM record time (host-supplied boot clock, untrusted)"
NO_HOST_TIME_DESC = "SVSM time since boot (no host clock: counted from the UNIX epoch)"
HOST_TIME_SOURCE = "host-untrusted"

# syslog severities (RFC 5424 §6.2.1); the journal's PRIORITY uses the same numbers.
# `log` has no level between info and debug, so trace shares debug's severity;
# SVSM_LEVEL / the level SD-PARAM keep the distinction.
SEVERITY: Mapping[Level, int] = {
    Level.ERROR: 3,
    Level.WARN: 4,
    Level.INFO: 6,
    Level.DEBUG: 7,
    Level.TRACE: 7,
}


# --------------------------------------------------------------------------- helpers


def _utf8_bytes(text: str) -> bytes:
    """Encode ``text`` to bytes without ever failing.

    Lone surrogates cannot be UTF-8.  Those in U+DC80..U+DCFF are how Python carries
    undecodable bytes (``surrogateescape``), so they become those bytes again; any
    other surrogate is spelled out as ``\\udXXX`` rather than silently dropped.
    """
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        pass
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace")


def _valid_str(text: str) -> str:
    """``text`` as a string any UTF-8 stream can write (lone surrogates spelled out)."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


# C0 controls, DEL, C1 controls, and the bidi embedding/override/isolate characters
# ("Trojan Source"), which can make a terminal show text in a different order.
_UNSAFE_FOR_TERMINAL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _escape_char(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def _visible(text: str, *, keep_newlines: bool = False) -> str:
    """Spell out control characters so log content cannot drive the terminal."""
    text = _valid_str(text)
    if keep_newlines:
        return "\n".join(_UNSAFE_FOR_TERMINAL.sub(_escape_char, p) for p in text.split("\n"))
    return _UNSAFE_FOR_TERMINAL.sub(_escape_char, text)


# C0 controls but TAB, DEL, and what other tools take as line ends (NEL, LS, PS).
_LINE_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
_LINE_ESCAPES = {"\n": "\\n", "\r": "\\r"}


def _one_line(text: str) -> str:
    """Escape line breaks and other controls (tab kept) for line-oriented formats."""
    text = _valid_str(text)
    return _LINE_CONTROLS.sub(_line_escape, text)


def _line_escape(match: re.Match[str]) -> str:
    ch = match.group()
    return _LINE_ESCAPES.get(ch) or _escape_char(match)


def _wallclock_us(located: LocatedRecord, realtime_base_us: Mapping[int, int] | None) -> int | None:
    """UNIX time in µs of the record, if the boot's wall-clock base is known."""
    if realtime_base_us is None:
        return None
    base = realtime_base_us.get(located.boot)
    if base is None:
        return None
    return base + located.record.t_ns // 1000


# --------------------------------------------------------------------------- JSON lines


def write_jsonl(records: Iterable[LocatedRecord], out: TextIO, *,
                realtime_base_us: Mapping[int, int] | None = None) -> int:
    """Write one compact JSON object per record, exactly ``json.dumps(located.as_json(),
    ensure_ascii=False, separators=(",", ":"))`` (tests/test_export.py holds them equal);
    return the count. With ``realtime_base_us`` a record of a boot with a known base also
    gets ``"host_time_untrusted": "<RFC 3339 UTC>"`` (the name says what it is worth).
    Written in batches of 1024 lines: bounded lag and memory."""
    count = 0
    for batch in batched(jsonl_lines(records, realtime_base_us=realtime_base_us), 1024):
        _write_jsonl_batch(batch, out)
        count += len(batch)
    return count


def jsonl_lines(records: Iterable[LocatedRecord], *,
                realtime_base_us: Mapping[int, int] | None = None) -> Iterator[str]:
    """The lines of ``write_jsonl``, one per record, each ending in a newline.

    Built by hand, from pieces that repeat (a frame's boot, stream and seq; a record's
    service, component and level): json.dumps of a dict per record was most of the time
    extract spent (benchmarks/README.md)."""
    frame: tuple[int, str, int] | None = None
    prefix = ""
    middles: dict[tuple[str, str, int], str] = {}
    for located in records:
        r = located.record
        where = (located.boot, located.stream, located.seq)
        if where != frame:
            frame = where
            prefix = f'{{"boot":{located.boot},"stream":{_json_str(located.stream)},"seq":{located.seq},'
        middle = middles.get((r.service, r.component, r.level))
        if middle is None:
            middle = (
                f'"service":{_json_str(r.service)},"component":{_json_str(r.component)},'
                f'"level":"{r.level.label}",'
            )
            middles[(r.service, r.component, r.level)] = middle
        line = f'{prefix}{middle}"t_ns":{r.t_ns},"message":{_json_str(r.message)}'
        if r.target is not None or r.fields or r.flags or not located.verified:
            line += _jsonl_tail(located)
        if realtime_base_us is not None:
            wall = _wallclock_us(located, realtime_base_us)
            if wall is not None:
                line += f',"host_time_untrusted":"{_rfc3339_us(wall)}"'
        yield line + "}\n"


def jsonl_block_lines(block: RecordColumns, boot: int, stream: str, seq: int, verified: bool = True, *,
                      realtime_base_us: Mapping[int, int] | None = None) -> list[str]:
    """The lines ``jsonl_lines`` gives for the records of one frame (``boot``, ``stream``,
    ``seq``), made from its columns: no Record or LocatedRecord per line. Records that need
    more than a target after the message (fields, panic, an unverified stream, host time)
    take ``jsonl_lines`` itself. tests/test_export.py holds the two equal."""
    if (not verified or (realtime_base_us is not None and boot in realtime_base_us)
            or not block.plain()):
        located = (LocatedRecord(boot, stream, seq, 0, r, verified) for r in records_of(block))
        return list(jsonl_lines(located, realtime_base_us=realtime_base_us))
    prefix = f'{{"boot":{boot},"stream":{_json_str(stream)},"seq":{seq},'
    names = block.names
    around = [_AROUND.get(key) or _around(key)
              for key in zip(map(names.__getitem__, block.ids), block.heads.translate(_LEVEL_OF_HEAD),
                             strict=True)]
    messages = block.messages
    text = "".join(messages)
    if len(_json_str(text)) == len(text) + 2:
        # Nothing in the frame's messages needs escaping (JSON escapes a character at a
        # time, so none of them does): quote them as they are, not one call each.
        return [f'{prefix}{before}"t_ns":{t},"message":"{message}"{after}'
                for (before, after), t, message in zip(around, block.times, messages, strict=True)]
    return [f'{prefix}{before}"t_ns":{t},"message":{_json_str(message)}{after}'
            for (before, after), t, message in zip(around, block.times, messages, strict=True)]


def _around(key: tuple[tuple[str, str, str | None], int]) -> tuple[str, str]:
    """What comes between a line's frame prefix and "t_ns", and after its message, for a
    (service, component, target) and a level: a few per image, so kept (up to a bound)."""
    (service, component, target), level = key
    if len(_AROUND) >= 4096:  # an image may name anything: bounded memory
        _AROUND.clear()
    value = _AROUND[key] = (
        f'"service":{_json_str(service)},"component":{_json_str(component)},"level":"{Level(level).label}",',
        "}\n" if target is None else f',"target":{_json_str(target)}}}\n',
    )
    return value


_AROUND: dict[tuple[tuple[str, str, str | None], int], tuple[str, str]] = {}
_LEVEL_OF_HEAD = bytes(h & HEAD_LEVEL for h in range(256))


def batched(lines: Iterable[str], n: int) -> Iterator[list[str]]:
    """Lists of up to ``n`` lines (itertools.batched is Python 3.12's)."""
    it = iter(lines)
    while batch := list(islice(it, n)):
        yield batch


def _write_jsonl_batch(lines: list[str], out: TextIO) -> None:
    try:
        out.write("".join(lines))
    except UnicodeEncodeError:
        # A lone surrogate cannot be written to a UTF-8 stream; JSON's \\udXXX escape can
        # carry it. TextIOWrapper encodes before writing, so nothing of the batch has been
        # written: write it line by line, escaping the lines that need it.
        for line in lines:
            try:
                out.write(line)
            except UnicodeEncodeError:
                out.write(_ascii_jsonl(line))


def _ascii_jsonl(line: str) -> str:
    """A JSON line again with every non-ASCII character escaped (``\\udXXX`` carries a lone
    surrogate, which no UTF-8 stream can)."""
    return json.dumps(json.loads(line), ensure_ascii=True, separators=(",", ":")) + "\n"


def utf8_lines(lines: list[str], *, with_ends: bool = False) -> tuple[bytes, array[int] | None]:
    """The lines as UTF-8 (a line that cannot be, a lone surrogate in it, escaped as
    ``_write_jsonl_batch`` does), and with ``with_ends`` where each line ends in them."""
    text = "".join(lines)
    if text.isascii():  # each line's bytes are its characters
        return text.encode("ascii"), array("Q", accumulate(map(len, lines))) if with_ends else None
    parts = [_utf8_line(line) for line in lines]
    return b"".join(parts), array("Q", accumulate(map(len, parts))) if with_ends else None


def _utf8_line(line: str) -> bytes:
    try:
        return line.encode()
    except UnicodeEncodeError:
        return _ascii_jsonl(line).encode()


_json_str = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) quotes strings with


@functools.lru_cache(maxsize=4096)
def _target_json(target: str) -> str:
    return f',"target":{_json_str(target)}'


def _jsonl_tail(located: LocatedRecord) -> str:
    r = located.record
    tail = ""
    if r.target is not None:
        tail += _target_json(r.target)
    if r.fields:
        tail += ',"fields":' + json.dumps(dict(r.fields), ensure_ascii=False, separators=(",", ":"))
    if r.flags & FLAG_PANIC:
        tail += ',"panic":true'
    if not located.verified:
        tail += ',"verified":false'
    return tail


# --------------------------------------------------------------------------- journal

JOURNAL_FIELD_PREFIX = "SVSM_FIELD_"
JOURNAL_FIELD_NAME_MAX = 64
# systemd-journal-remote drops entries with more than ~1024 fields; leave room for ours.
JOURNAL_MAX_RECORD_FIELDS = 512
# journald rejects a realtime timestamp of 0 or >= 2^55 and, worse, closes the whole
# import stream on one such value; clamp into the valid range.
_JOURNAL_TS_MAX = (1 << 55) - 1
_SVSMLOG_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/coconut-svsm/svsm#svsmlog")
_NOT_FIELD_CHAR = re.compile("[^A-Z0-9_]")
# Characters the export format's text form cannot carry: controls except TAB.
_JOURNAL_BINARY_CHARS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def journal_field_name(key: str) -> str:
    """Journal field name for a record field key: ``SVSM_FIELD_<KEY>``.

    Journal names allow only ``A-Z 0-9 _``, must not start with ``_`` or a digit and
    are at most 64 characters.  Other characters become ``_``; the fixed prefix makes
    the first-character rule hold.  Distinct keys can collide (``a-b`` and ``a.b``);
    the journal keeps both values, as a field may repeat.  A key too long to fit is
    cut and given a hash suffix so that different long keys stay distinguishable.
    """
    upper = "".join(c.upper() if "a" <= c <= "z" else c for c in key)
    name = _NOT_FIELD_CHAR.sub("_", upper) or "_"
    room = JOURNAL_FIELD_NAME_MAX - len(JOURNAL_FIELD_PREFIX)
    if len(name) > room:
        digest = crypto.sha256(_utf8_bytes(key)).hex()[:8].upper()
        name = f"{name[: room - 9]}_{digest}"
    return JOURNAL_FIELD_PREFIX + name


def derive_boot_id(boot: int, machine_id: str | None = None) -> str:
    """A stable 128-bit journal boot ID (32 lowercase hex) for an SVSM boot number.

    The SVSM has no boot UUID; a name-based UUID keeps the mapping reproducible across
    exports, and mixing in ``machine_id`` keeps boot 1 of two guests apart.
    """
    return uuid.uuid5(_SVSMLOG_NAMESPACE, f"{machine_id or ''}/boot/{boot}").hex


def _journal_boot_id(boot: int, boot_ids: Mapping[int, bytes] | None, machine_id: str | None) -> str:
    given = boot_ids.get(boot) if boot_ids is not None else None
    if given is None:
        return derive_boot_id(boot, machine_id)
    if len(given) != 16:
        raise ValueError(f"boot id for boot {boot} must be 16 bytes, got {len(given)}")
    return given.hex()


def _journal_field(name: str, value: str | bytes) -> bytes:
    """Serialize one field: ``NAME=value\\n`` or the binary-safe length-prefixed form."""
    raw = value if isinstance(value, bytes) else _utf8_bytes(value)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        text = None
    if text is not None and not _JOURNAL_BINARY_CHARS.search(text):
        return b"%s=%s\n" % (name.encode("ascii"), raw)
    return b"%s\n%s%s\n" % (name.encode("ascii"), struct.pack("<Q", len(raw)), raw)


def _cursor(located: LocatedRecord, source: str, index: int) -> str:
    # Components are percent-encoded so a stream name cannot forge ';' or '=' parts.
    # seq.index names the record within its frame; o= is the byte offset, unique per
    # stream, so the cursor stays unique even if a frame's records arrive split up.
    return (
        f"s={quote(source, safe='')};b={located.boot};st={quote(located.stream, safe='')};"
        f"i={located.seq}.{index};o={located.offset}"
    )


def _clamp_ts(us: int, *, minimum: int) -> int:
    return min(max(us, minimum), _JOURNAL_TS_MAX)


def _journal_fields(
    located: LocatedRecord,
    *,
    cursor: str,
    boot_id: str,
    realtime_us: int | None,
) -> Iterator[tuple[str, str]]:
    rec: Record = located.record
    monotonic = rec.t_ns // 1000
    realtime = monotonic if realtime_us is None else realtime_us
    yield "__CURSOR", cursor
    yield "__REALTIME_TIMESTAMP", str(_clamp_ts(realtime, minimum=1))
    yield "__MONOTONIC_TIMESTAMP", str(_clamp_ts(monotonic, minimum=0))
    yield "_BOOT_ID", boot_id
    detail = panic_detail(rec) if rec.panic else None
    # A panic's reason is in its fields; journalctl shows and --grep searches MESSAGE only.
    yield "MESSAGE", detail.message if detail is not None else rec.message
    yield "PRIORITY", str(SEVERITY[rec.level])
    yield "SYSLOG_IDENTIFIER", f"svsm-{rec.service}"
    yield "SVSM_SERVICE", rec.service
    yield "SVSM_COMPONENT", rec.component
    if rec.target is not None:
        yield "SVSM_TARGET", rec.target
    yield "SVSM_LEVEL", rec.level.label
    yield "SVSM_STREAM", located.stream
    yield "SVSM_BOOT", str(located.boot)
    yield "SVSM_SEQ", str(located.seq)
    yield "SVSM_OFFSET", str(located.offset)
    yield "SVSM_T_NS", str(rec.t_ns)
    if rec.panic:
        yield "SVSM_PANIC", "1"
    if detail is not None:
        yield "SVSM_MESSAGE", rec.message
        if detail.location is not None:
            yield "SVSM_PANIC_LOCATION", detail.location
        if detail.reason is not None:
            yield "SVSM_PANIC_REASON", detail.reason
    if realtime_us is not None:
        yield "SVSM_REALTIME_SOURCE", HOST_TIME_SOURCE
    if not located.verified:
        yield "SVSM_VERIFIED", "0"
    for key, value in rec.fields[:JOURNAL_MAX_RECORD_FIELDS]:
        yield journal_field_name(key), value
    dropped = len(rec.fields) - JOURNAL_MAX_RECORD_FIELDS
    if dropped > 0:
        yield "SVSM_FIELDS_DROPPED", str(dropped)


def write_journal(
    records: Iterable[LocatedRecord],
    out: BinaryIO,
    *,
    boot_ids: Mapping[int, bytes] | None = None,
    realtime_base_us: Mapping[int, int] | None = None,
    machine_id: str | None = None,
    only_fields: frozenset[str] | None = None,
) -> int:
    """Write the systemd Journal Export Format (importable by systemd-journal-remote).

    ``__REALTIME_TIMESTAMP`` is ``realtime_base_us[boot] + t_ns // 1000`` when the boot's
    base is known, else just ``t_ns // 1000`` (a time in early 1970 that is obviously
    not wall-clock).  The base comes from the untrusted host: see the module docstring.
    ``__MONOTONIC_TIMESTAMP`` is always ``t_ns // 1000``, which the SVSM recorded.

    ``_BOOT_ID`` is ``boot_ids[boot]`` (16 bytes) or derived from the boot number and
    ``machine_id`` (:func:`derive_boot_id`).  ``machine_id`` also names the log source
    in ``__CURSOR``; it is not emitted as ``_MACHINE_ID``, a field journald fills in
    for entries it receives itself.
    """
    source = machine_id or "svsmlog"
    last_frame: tuple[int, str, int] | None = None
    index = 0
    count = 0
    for located in records:
        frame = (located.boot, located.stream, located.seq)
        index = index + 1 if frame == last_frame else 0
        last_frame = frame
        fields = _journal_fields(
            located,
            cursor=_cursor(located, source, index),
            boot_id=_journal_boot_id(located.boot, boot_ids, machine_id),
            realtime_us=_wallclock_us(located, realtime_base_us),
        )
        if only_fields is not None:  # --output-fields: the address fields (__*, _BOOT_ID) stay
            fields = ((n, v) for n, v in fields if n in only_fields or n.startswith("_"))
        # One write per entry: streaming, but not one syscall per field.
        out.write(b"".join(_journal_field(n, v) for n, v in fields) + b"\n")
        count += 1
    return count


# --------------------------------------------------------------------------- syslog

SYSLOG_FACILITY_LOCAL0 = 16
# 32473 is the private enterprise number reserved for documentation (RFC 5612).
SD_ID = "svsm@32473"
SD_ID_FIELDS = "fields@32473"
_BOM = "\ufeff"
_NOT_PRINTUSASCII = re.compile("[^\x21-\x7e]")
_NOT_SD_NAME = re.compile('[^\x21-\x7e]|[="\\]]')


def sd_escape(value: str) -> str:
    """Escape an SD-PARAM value (RFC 5424 §6.3.3): ``"``, ``\\`` and ``]`` get a backslash."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def _printusascii(text: str, max_len: int) -> str:
    """Header field: printable US-ASCII only, bounded, NILVALUE when empty."""
    return _NOT_PRINTUSASCII.sub("_", text)[:max_len] or "-"


def _sd_name(name: str) -> str:
    return _NOT_SD_NAME.sub("_", name)[:32] or "_"


def _sd_element(sd_id: str, params: Iterable[tuple[str, str]]) -> str:
    body = "".join(f' {_sd_name(k)}="{sd_escape(_one_line(v))}"' for k, v in params)
    return f"[{sd_id}{body}]"


def _rfc3339_us(unix_us: int) -> str:
    """RFC 3339 UTC timestamp with microseconds, or NILVALUE if out of range."""
    try:
        t = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=unix_us)
    except OverflowError:
        return "-"
    # Explicit formatting: strftime("%Y") does not zero-pad years below 1000 on glibc.
    return (
        f"{t.year:04d}-{t.month:02d}-{t.day:02d}T"
        f"{t.hour:02d}:{t.minute:02d}:{t.second:02d}.{t.microsecond:06d}Z"
    )


def _syslog_line(located: LocatedRecord, hostname: str, realtime_base_us: Mapping[int, int] | None) -> str:
    rec = located.record
    pri = SYSLOG_FACILITY_LOCAL0 * 8 + SEVERITY[rec.level]
    wall = _wallclock_us(located, realtime_base_us)
    timestamp = "-" if wall is None else _rfc3339_us(wall)
    app = _printusascii(f"svsm-{rec.service}", 48)
    msgid = _printusascii(rec.component, 32)
    meta: list[tuple[str, str]] = [
        ("boot", str(located.boot)),
        ("stream", located.stream),
        ("seq", str(located.seq)),
        ("t_ns", str(rec.t_ns)),
        ("level", rec.level.label),
    ]
    if rec.target is not None:
        meta.append(("target", rec.target))
    if rec.panic:
        meta.append(("panic", "1"))
    if not located.verified:
        meta.append(("verified", "0"))
    if wall is not None:
        meta.append(("time_source", HOST_TIME_SOURCE))
    sd = _sd_element(SD_ID, meta)
    if rec.fields:
        # A separate element, so a record field named "boot" cannot pass for ours.
        sd += _sd_element(SD_ID_FIELDS, rec.fields)
    return f"<{pri}>1 {timestamp} {hostname} {app} - {msgid} {sd} {_BOM}{_one_line(rec.message)}\n"


def syslog_block_lines(block: RecordColumns, boot: int, stream: str, seq: int, verified: bool = True, *,
                       hostname: str = "svsm",
                       realtime_base_us: Mapping[int, int] | None = None) -> list[str]:
    """The lines ``syslog_lines`` gives for the records of one frame, made from its columns
    (as ``jsonl_block_lines``). A frame whose lines need more than its columns (fields,
    panic, an unverified stream, host time) or whose messages hold a line break or another
    control ``_one_line`` spells out takes ``syslog_lines`` itself. tests/test_export.py
    holds the two equal."""
    messages = block.messages
    if (not verified or (realtime_base_us is not None and boot in realtime_base_us)
            or not block.plain() or _LINE_CONTROLS.search("".join(messages))):
        located = (LocatedRecord(boot, stream, seq, 0, r, verified) for r in records_of(block))
        return list(syslog_lines(located, hostname=hostname, realtime_base_us=realtime_base_us))
    # Decoded strictly from UTF-8, the messages hold no lone surrogate: _one_line keeps them.
    host = _printusascii(hostname, 255)
    frame = f' boot="{boot}" stream="{sd_escape(_one_line(stream))}" seq="{seq}" t_ns="'
    names = block.names
    around = [_SYSLOG_AROUND.get(key) or _syslog_around(key)
              for key in zip(itertools.repeat(host), map(names.__getitem__, block.ids),
                             block.heads.translate(_LEVEL_OF_HEAD))]
    return [f"{head}{frame}{t}{tail}{message}\n"
            for (head, tail), t, message in zip(around, block.times, messages, strict=True)]


def _syslog_around(key: tuple[str, tuple[str, str, str | None], int]) -> tuple[str, str]:
    """A syslog line's parts before its frame's SD-PARAMs and after its t_ns, for a host,
    a (service, component, target) and a level: a few per image, so kept (up to a bound)."""
    host, (service, component, target), level = key
    if len(_SYSLOG_AROUND) >= 4096:  # an image may name anything: bounded memory
        _SYSLOG_AROUND.clear()
    lvl = Level(level)
    pri = SYSLOG_FACILITY_LOCAL0 * 8 + SEVERITY[lvl]
    app, msgid = _printusascii(f"svsm-{service}", 48), _printusascii(component, 32)
    head = f"<{pri}>1 - {host} {app} - {msgid} [{SD_ID}"
    tail = f'" level="{lvl.label}"'
    if target is not None:
        tail += f' target="{sd_escape(_one_line(target))}"'
    value = _SYSLOG_AROUND[key] = (head, f"{tail}] {_BOM}")
    return value


_SYSLOG_AROUND: dict[tuple[str, tuple[str, str, str | None], int], tuple[str, str]] = {}


def write_syslog(
    records: Iterable[LocatedRecord],
    out: TextIO,
    *,
    hostname: str = "svsm",
    realtime_base_us: Mapping[int, int] | None = None,
) -> int:
    """Write RFC 5424 lines, one per record, facility local0; ``out`` must be UTF-8.

    TIMESTAMP is the wall-clock time if the boot's (untrusted, host-provided) base is
    known, else NILVALUE; the boot-relative time is always in the ``t_ns`` SD-PARAM.
    MSG is a BOM plus UTF-8 text.  So that one record stays one line, line breaks and
    other controls in MSG and in SD-PARAM values are written as ``\\n``, ``\\r``,
    ``\\xNN``; backslashes are not doubled, so this is for pipelines, not for exact
    recovery: use ``jsonl`` or ``journal`` for that.  Record fields go into a second
    SD-ELEMENT ``fields@32473`` with names cut to SD-NAME rules.
    """
    count = 0
    for line in syslog_lines(records, hostname=hostname, realtime_base_us=realtime_base_us):
        out.write(line)
        count += 1
    return count


def syslog_lines(records: Iterable[LocatedRecord], *, hostname: str = "svsm",
                 realtime_base_us: Mapping[int, int] | None = None) -> Iterator[str]:
    """The lines of ``write_syslog``, one per record."""
    host = _printusascii(hostname, 255)
    for located in records:
        yield _syslog_line(located, host, realtime_base_us)


# --------------------------------------------------------------------------- text

LEVEL_STYLE: Mapping[Level, str] = {
    Level.ERROR: "bold red",
    Level.WARN: "yellow",
    Level.INFO: "",
    Level.DEBUG: "dim",
    Level.TRACE: "dim italic",
}
UNVERIFIED_TAG = "UNVERIFIED"
PANIC_TAG = "PANIC"


def _no_color_requested() -> bool:
    # https://no-color.org: set and non-empty means no colour.
    return bool(os.environ.get("NO_COLOR"))


def _color_forced() -> bool:
    # FORCE_COLOR (set and non-empty): style even into a pipe, e.g. for `less -R`; NO_COLOR wins.
    return bool(os.environ.get("FORCE_COLOR")) and not _no_color_requested()


def _is_tty(file: object) -> bool:
    isatty = getattr(file, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # closed file
        return False


def make_console(file: TextIO | None = None, *, force_plain: bool = False,
                 force_terminal: bool = False) -> Console:
    """A console for :func:`write_text`: styled on a terminal, plain text otherwise.

    Plain (no escape sequence at all, not even bold) when ``force_plain``, when
    ``NO_COLOR`` is set, or when ``file`` is not a TTY.  Markup, emoji codes and
    highlighting are off and lines are never wrapped: the output is log data.
    """
    target = sys.stdout if file is None else file
    # force_terminal: a pager's pipe, which passes colour on to the terminal (less -R).
    force_terminal = force_terminal or _color_forced()
    plain = force_plain or _no_color_requested() or not (force_terminal or _is_tty(target))
    # color_system=None makes rich emit text only; force_terminal=False stops
    # FORCE_COLOR / TTY_COMPATIBLE from turning styling back on.
    from rich.console import Console

    return Console(
        file=target,
        color_system=None if plain else "auto",
        force_terminal=False if plain else (True if force_terminal else None),
        no_color=plain,
        markup=False,
        emoji=False,
        highlight=False,
        soft_wrap=True,
    )


def _uptime(t_ns: int) -> str:
    seconds, rem = divmod(t_ns, 1_000_000_000)
    return f"[{seconds:5d}.{rem // 1000:06d}]"


def _text_line(located: LocatedRecord, *, show_stream: bool, wall_us: int | None = None) -> Text:
    from rich.text import Text

    rec = located.record
    style = "bold red" if rec.panic else LEVEL_STYLE[rec.level]
    line = Text()
    if not located.verified:
        line.append(UNVERIFIED_TAG, style="reverse bold")
        line.append(" ")
    if wall_us is not None:
        line.append(host_time_label(wall_us) + " ", style="magenta")
    line.append(_uptime(rec.t_ns) + " ", style="green")
    where = f"b{located.boot}"
    if show_stream:
        where += f" {_visible(located.stream)}"
    line.append(where + " ", style="blue")
    line.append(f"{rec.level.label.upper():<5} ", style=style)
    if rec.panic:
        line.append(PANIC_TAG, style="bold reverse red")
        line.append(" ")
    line.append(f"{_visible(rec.service)}/{_visible(rec.component)}", style="cyan")
    line.append(": ")
    # Continuation lines of a multi-line message are indented under its first line so
    # they cannot be mistaken for records of their own.
    indent = "\n" + " " * line.cell_len
    line.append(indent.join(_visible(rec.message, keep_newlines=True).split("\n")), style=style)
    for key, value in rec.fields:
        line.append(f" {_visible(key)}={_visible(value)}", style="dim")
    return line


def write_text(
    records: Iterable[LocatedRecord],
    console: Console,
    *,
    show_stream: bool = True,
    realtime_base_us: Mapping[int, int] | None = None,
    separators: bool = False,
    gaps: Iterable[Gap] = (),
) -> int:
    """Human-readable view: ``[uptime] boot stream LEVEL service/component: message``.

    Unverified records carry an ``UNVERIFIED`` tag at the start of the line, panics a
    ``PANIC`` tag.  Log content is never interpreted as markup, and control characters
    in it are shown escaped (``\\x1b``), so a message cannot restyle the terminal.
    This is the styled view for a terminal (a rich print per record); files and pipes get
    :func:`write_text_plain`, the same text much faster. Boot separators and gap markers
    as there.
    """
    from rich.text import Text

    count = 0
    for item in _annotated(records, separators=separators, gaps=gaps):
        if isinstance(item, str):
            console.print(Text(item.rstrip("\n"), style="bold"), soft_wrap=True)
            continue
        wall = _wallclock_us(item, realtime_base_us)
        console.print(_text_line(item, show_stream=show_stream, wall_us=wall), soft_wrap=True)
        count += 1
    return count


def host_time_label(unix_us: int) -> str:
    """How text output shows a wall-clock time: marked as the host's, never bare."""
    return f"host:{_rfc3339_us(unix_us)}"


def text_line(located: LocatedRecord, *, show_stream: bool = True, wall_us: int | None = None) -> str:
    """The plain text of :func:`_text_line` (same layout, no styling), one ``\\n``-ended
    string: what files and pipes get. Built with str operations only: a rich ``print``
    per record was most of the time a plain ``extract`` spent."""
    rec = located.record
    head = f"{UNVERIFIED_TAG} " if not located.verified else ""
    if wall_us is not None:
        head += host_time_label(wall_us) + " "
    head += _uptime(rec.t_ns) + f" b{located.boot} "
    if show_stream:
        head = head[:-1] + f" {_visible(located.stream)} "
    head += f"{rec.level.label.upper():<5} "
    if rec.panic:
        head += f"{PANIC_TAG} "
    head += f"{_visible(rec.service)}/{_visible(rec.component)}: "
    message = _visible(rec.message, keep_newlines=True)
    if "\n" in message:
        from rich.cells import cell_len

        indent = "\n" + " " * cell_len(head)
        message = indent.join(message.split("\n"))
    line = head + message
    if rec.fields:
        line += "".join(f" {_visible(k)}={_visible(v)}" for k, v in rec.fields)
    return line + "\n"


def text_lines(records: Iterable[LocatedRecord], *,
               realtime_base_us: Mapping[int, int] | None = None) -> Iterator[str]:
    """The record lines of ``write_text_plain`` (no boot separators, no gap markers), one
    per record: the text view as a line format (svsmlog.recordpass)."""
    for located in records:
        wall = _wallclock_us(located, realtime_base_us) if realtime_base_us is not None else None
        yield text_line(located, wall_us=wall)


def text_block_lines(block: RecordColumns, boot: int, stream: str, seq: int, verified: bool = True, *,
                     realtime_base_us: Mapping[int, int] | None = None) -> list[str]:
    """The lines ``text_lines`` gives for the records of one frame, made from its columns
    (as ``jsonl_block_lines``). A frame whose lines need more than its columns (fields,
    panic, an unverified stream, host time) or whose messages hold a character
    ``_visible`` spells out takes ``text_lines`` itself. tests/test_export.py holds the
    two equal."""
    messages = block.messages
    if (not verified or (realtime_base_us is not None and boot in realtime_base_us)
            or not block.plain() or _UNSAFE_FOR_TERMINAL.search("".join(messages))):
        located = (LocatedRecord(boot, stream, seq, 0, r, verified) for r in records_of(block))
        return list(text_lines(located, realtime_base_us=realtime_base_us))
    # Decoded strictly from UTF-8, the messages hold no lone surrogate: _valid_str keeps them.
    where = f" b{boot} {_visible(stream)} "
    names = block.names
    middles = [_TEXT_MIDDLE.get(key) or _text_middle(key)
               for key in zip(map(names.__getitem__, block.ids), block.heads.translate(_LEVEL_OF_HEAD),
                              strict=True)]
    return [f"[{t // 1_000_000_000:5d}.{t % 1_000_000_000 // 1000:06d}]{where}{middle}{message}\n"
            for middle, t, message in zip(middles, block.times, messages, strict=True)]


def _text_middle(key: tuple[tuple[str, str, str | None], int]) -> str:
    """What comes between a text line's stream and its message, for a (service, component,
    target) and a level: a few per image, so kept (up to a bound)."""
    (service, component, _), level = key
    if len(_TEXT_MIDDLE) >= 4096:  # an image may name anything: bounded memory
        _TEXT_MIDDLE.clear()
    value = _TEXT_MIDDLE[key] = f"{Level(level).label.upper():<5} {_visible(service)}/{_visible(component)}: "
    return value


_TEXT_MIDDLE: dict[tuple[tuple[str, str, str | None], int], str] = {}


BOOT_SEPARATOR = "-- boot {boot} --\n"
GAP_MARKER = "-- frames missing here (boot {boot}, stream {stream}, from seq {seq}: {kind}) --\n"


@dataclass(frozen=True)
class Gap:
    """A place the report says frames are missing (``frame_missing``, ``boot_truncated``)."""

    boot: int
    stream: str
    seq: int
    kind: str


def _annotated(records: Iterable[LocatedRecord], *, separators: bool, gaps: Iterable[Gap]
               ) -> Iterator[LocatedRecord | str]:
    """Records with the marker lines between them: ``-- boot N --`` before each boot's
    first record (``separators``), and for each gap ``-- frames missing here ... --``
    before the first record of its boot and stream at or after its seq, or after that
    stream's last record of the boot when the history is cut off at its end."""
    pending: dict[tuple[int, str], list[Gap]] = {}
    for g in sorted(gaps, key=lambda g: g.seq):
        pending.setdefault((g.boot, g.stream), []).append(g)

    def marker(g: Gap) -> str:
        return GAP_MARKER.format(boot=g.boot, stream=_visible(g.stream), seq=g.seq, kind=g.kind)

    boot: int | None = None
    for located in records:
        if located.boot != boot:
            for key in [k for k in pending if k[0] == boot]:
                yield from map(marker, pending.pop(key))
            boot = located.boot
            if separators:
                yield BOOT_SEPARATOR.format(boot=boot)
        waiting = pending.get((located.boot, located.stream)) if pending else None
        while waiting and waiting[0].seq <= located.seq:
            yield marker(waiting.pop(0))
        yield located
    for key in [k for k in pending if k[0] == boot]:
        yield from map(marker, pending.pop(key))


def write_text_plain(
    records: Iterable[LocatedRecord],
    out: TextIO,
    *,
    show_stream: bool = True,
    realtime_base_us: Mapping[int, int] | None = None,
    separators: bool = False,
    gaps: Iterable[Gap] = (),
) -> int:
    """The text view for files and pipes: the lines of :func:`write_text` without styling,
    preformatted and written in batches (a rich print per record costs 10× more)."""
    batch: list[str] = []
    count = 0
    for item in _annotated(records, separators=separators, gaps=gaps):
        if isinstance(item, str):
            batch.append(item)
            continue
        wall = _wallclock_us(item, realtime_base_us) if realtime_base_us is not None else None
        batch.append(text_line(item, show_stream=show_stream, wall_us=wall))
        count += 1
        if len(batch) >= 1024:
            _write_text_batch(batch, out)
            batch = []
    _write_text_batch(batch, out)
    return count


def _write_text_batch(lines: list[str], out: TextIO) -> None:
    # _visible() already made every piece valid UTF-8, so one write per batch cannot fail
    # half-way through on an encoding error.
    if lines:
        out.write("".join(lines))


# --------------------------------------------------------------------------- Timesketch


def timesketch_object(located: LocatedRecord, wall_us: int | None) -> dict[str, object]:
    """One Timesketch event (its JSONL importer needs ``message``, ``datetime``,
    ``timestamp`` in µs and ``timestamp_desc``), with our fields beside them; record
    fields are flattened to ``field_<key>`` because Timesketch filters on flat attributes."""
    rec = located.record
    d = located.as_json()
    fields = d.pop("fields", {})
    host = wall_us is not None
    us = wall_us if wall_us is not None else rec.t_ns // 1000
    detail = panic_detail(rec) if rec.panic else None
    out: dict[str, object] = {
        "datetime": _rfc3339_us(us),
        "timestamp": us,
        "timestamp_desc": HOST_TIME_DESC if host else NO_HOST_TIME_DESC,
        "message": detail.message if detail is not None else rec.message,
        "host_time_untrusted": host,
        **d,
    }
    out["svsm_message"] = rec.message
    if detail is not None:
        out["panic_location"] = detail.location
        out["panic_reason"] = detail.reason
    assert isinstance(fields, dict)
    for k, v in fields.items():
        out[f"field_{k}"] = v
    return out


def write_timesketch(records: Iterable[LocatedRecord], out: TextIO, *,
                     realtime_base_us: Mapping[int, int] | None = None) -> int:
    """Timesketch-ready JSON lines (``timesketch_importer`` or the web upload take them)."""
    count = 0
    for line in timesketch_lines(records, realtime_base_us=realtime_base_us):
        out.write(line)
        count += 1
    return count


def timesketch_lines(records: Iterable[LocatedRecord], *,
                     realtime_base_us: Mapping[int, int] | None = None) -> Iterator[str]:
    """The lines of ``write_timesketch``, one per record."""
    for located in records:
        obj = timesketch_object(located, _wallclock_us(located, realtime_base_us))
        # ASCII escapes: a lone surrogate in a message must not stop the export half-way.
        yield json.dumps(obj, ensure_ascii=True, separators=(",", ":")) + "\n"
