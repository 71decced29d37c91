"""Output formats: JSON lines, journal export format, RFC 5424 syslog, rich text."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import struct
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog.export import (
    FORMATS,
    derive_boot_id,
    journal_field_name,
    make_console,
    sd_escape,
    write_journal,
    write_jsonl,
    write_syslog,
    write_text,
)
from svsmlog.records import FLAG_PANIC, Level, LocatedRecord, Record

ANSI = re.compile(r"\x1b[\[\]]")


def rec(
    message: str = "hello",
    *,
    boot: int = 1,
    stream: str = "core",
    seq: int = 7,
    offset: int = 0,
    t_ns: int = 12_345_678_901,
    level: Level = Level.INFO,
    service: str = "svsm",
    component: str = "mm",
    target: str | None = None,
    fields: tuple[tuple[str, str], ...] = (),
    panic: bool = False,
    verified: bool = True,
) -> LocatedRecord:
    record = Record(
        t_ns=t_ns,
        level=level,
        service=service,
        component=component,
        message=message,
        target=target,
        fields=fields,
        flags=FLAG_PANIC if panic else 0,
    )
    return LocatedRecord(boot, stream, seq, offset, record, verified)


# --------------------------------------------------------------------------- export parser


def parse_export(data: bytes) -> list[list[tuple[str, bytes]]]:
    """A strict reader of the Journal Export Format, written from the spec."""
    entries: list[list[tuple[str, bytes]]] = []
    current: list[tuple[str, bytes]] = []
    pos = 0
    while pos < len(data):
        end = data.index(b"\n", pos)
        line = data[pos:end]
        if not line:  # empty line: end of entry
            assert current, "empty entry"
            entries.append(current)
            current = []
            pos = end + 1
        elif b"=" in line:  # text form: NAME=value
            name, value = line.split(b"=", 1)
            current.append((name.decode("ascii"), value))
            pos = end + 1
        else:  # binary form: NAME \n le64 size, data, \n
            (size,) = struct.unpack_from("<Q", data, end + 1)
            start = end + 1 + 8
            value = data[start : start + size]
            assert len(value) == size
            assert data[start + size : start + size + 1] == b"\n"
            current.append((line.decode("ascii"), value))
            pos = start + size + 1
    assert not current, "stream does not end with an empty line"
    return entries


def values(entry: list[tuple[str, bytes]], name: str) -> list[bytes]:
    return [v for n, v in entry if n == name]


def one(entry: list[tuple[str, bytes]], name: str) -> str:
    (value,) = values(entry, name)
    return value.decode("utf-8")


def journal_bytes(records: list[LocatedRecord], **kwargs: object) -> bytes:
    out = io.BytesIO()
    assert write_journal(records, out, **kwargs) == len(records)  # type: ignore[arg-type]
    return out.getvalue()


# --------------------------------------------------------------------------- jsonl


def test_formats() -> None:
    assert FORMATS == ("text", "jsonl", "journal", "syslog", "timesketch")


def test_jsonl_round_trips_with_required_keys() -> None:
    records = [
        rec("first\nsecond", target="svsm::mm", fields=(("addr", "0x1000"),)),
        rec("ünïcödé ✓", level=Level.ERROR, panic=True, verified=False, seq=8),
    ]
    out = io.StringIO()
    assert write_jsonl(records, out) == 2
    lines = out.getvalue().splitlines()
    assert len(lines) == 2  # an embedded newline does not split a record
    assert "ünïcödé ✓" in lines[1]  # ensure_ascii=False
    assert ", " not in lines[0] and '": ' not in lines[0]  # compact separators
    for line, located in zip(lines, records, strict=True):
        obj = json.loads(line)
        for key in ("boot", "stream", "seq", "service", "component", "level", "t_ns", "message"):
            assert key in obj
        assert obj == located.as_json()
    assert json.loads(lines[1])["verified"] is False
    assert json.loads(lines[1])["panic"] is True


def test_jsonl_lone_surrogate_still_writes_valid_json() -> None:
    raw = io.BytesIO()
    out = io.TextIOWrapper(raw, encoding="utf-8", newline="\n")
    write_jsonl([rec("bad \ud800 char")], out)
    out.flush()
    text = raw.getvalue().decode("utf-8")  # strictly valid UTF-8
    assert json.loads(text)["message"] == "bad \ud800 char"


def test_writers_stream_record_by_record() -> None:
    records = [rec(f"m{i}", seq=i) for i in range(5)]
    out = io.BytesIO()

    def produce() -> Iterator[LocatedRecord]:
        for i, located in enumerate(records):
            # Every earlier record is already out before the next one is pulled.
            assert out.getvalue().count(b"\n\n") == i
            yield located

    assert write_journal(produce(), out) == 5

    # JSON lines go out in batches of at most 1024: the lag, and the memory, stay bounded.
    many = [rec(f"m{i}", seq=i) for i in range(2100)]
    text = io.StringIO()

    def produce_text() -> Iterator[LocatedRecord]:
        for i, located in enumerate(many):
            assert i - 1024 < text.getvalue().count("\n") <= i
            yield located

    assert write_jsonl(produce_text(), text) == 2100
    assert text.getvalue().count("\n") == 2100


# --------------------------------------------------------------------------- journal


def test_journal_multiline_message_uses_binary_form_exactly() -> None:
    data = journal_bytes([rec("line one\nline two")])
    message = b"line one\nline two"
    assert b"MESSAGE\n" + struct.pack("<Q", 17) + message + b"\n" in data
    assert struct.pack("<Q", 17) == b"\x11\x00\x00\x00\x00\x00\x00\x00"
    assert b"MESSAGE=" not in data
    assert data.endswith(b"\n\n")


def test_journal_text_and_binary_choice() -> None:
    entry = parse_export(journal_bytes([rec("tab\tok")]))[0]
    assert one(entry, "MESSAGE") == "tab\tok"
    assert journal_bytes([rec("tab\tok")]).count(b"MESSAGE=tab\tok\n") == 1

    for message in ("esc \x1b[31m", "nul \x00", "del \x7f", "c1 \x85", "cr \r"):
        data = journal_bytes([rec(message)])
        assert b"MESSAGE=" not in data, repr(message)
        assert one(parse_export(data)[0], "MESSAGE") == message

    # Undecodable bytes carried as surrogateescape come back out as those bytes.
    data = journal_bytes([rec("raw \udcff byte")])
    assert values(parse_export(data)[0], "MESSAGE") == [b"raw \xff byte"]


def test_journal_entry_fields() -> None:
    records = [
        rec("boom", level=Level.ERROR, panic=True, target="svsm::vtpm", seq=3, offset=64),
        rec("maybe", level=Level.TRACE, verified=False, stream="vtpm", seq=3, offset=128),
        rec("fine", level=Level.WARN, fields=(("tpm.cmd", "0x144"), ("Rc", "0"))),
    ]
    entries = parse_export(journal_bytes(records))
    assert len(entries) == 3
    panic, unverified, fine = entries

    assert one(panic, "PRIORITY") == "3"
    assert one(panic, "SYSLOG_IDENTIFIER") == "svsm-svsm"
    assert one(panic, "SVSM_SERVICE") == "svsm"
    assert one(panic, "SVSM_COMPONENT") == "mm"
    assert one(panic, "SVSM_TARGET") == "svsm::vtpm"
    assert one(panic, "SVSM_STREAM") == "core"
    assert one(panic, "SVSM_BOOT") == "1"
    assert one(panic, "SVSM_SEQ") == "3"
    assert one(panic, "SVSM_PANIC") == "1"
    assert values(panic, "SVSM_VERIFIED") == []
    assert one(panic, "__CURSOR").startswith("s=svsmlog;b=1;st=core;i=3.0")

    assert one(unverified, "PRIORITY") == "7"
    assert one(unverified, "SVSM_VERIFIED") == "0"
    assert values(unverified, "SVSM_PANIC") == []
    assert values(unverified, "SVSM_TARGET") == []

    assert one(fine, "PRIORITY") == "4"
    assert one(fine, "SVSM_FIELD_TPM_CMD") == "0x144"
    assert one(fine, "SVSM_FIELD_RC") == "0"
    names = [n for n, _ in fine]
    assert names[:4] == ["__CURSOR", "__REALTIME_TIMESTAMP", "__MONOTONIC_TIMESTAMP", "_BOOT_ID"]
    # Only these four may start with an underscore; the rest are ordinary fields.
    assert all(not n.startswith("_") for n in names[4:])


def test_journal_priorities() -> None:
    expected = {Level.ERROR: 3, Level.WARN: 4, Level.INFO: 6, Level.DEBUG: 7, Level.TRACE: 7}
    entries = parse_export(journal_bytes([rec(level=lv) for lv in expected]))
    assert [int(one(e, "PRIORITY")) for e in entries] == list(expected.values())


def test_journal_timestamps() -> None:
    records = [rec(t_ns=5_000_123_456, boot=1), rec(t_ns=7_000_000, boot=2), rec(t_ns=999, boot=2)]
    base = {1: 1_700_000_000_000_000}
    with_base, without_base, tiny = parse_export(journal_bytes(records, realtime_base_us=base))
    assert one(with_base, "__MONOTONIC_TIMESTAMP") == "5000123"
    assert one(with_base, "__REALTIME_TIMESTAMP") == str(1_700_000_000_000_000 + 5_000_123)
    assert one(without_base, "__REALTIME_TIMESTAMP") == "7000"
    assert one(without_base, "__MONOTONIC_TIMESTAMP") == "7000"
    # journald rejects realtime 0, so it is clamped to 1 µs; monotonic 0 is fine.
    assert one(tiny, "__REALTIME_TIMESTAMP") == "1"
    assert one(tiny, "__MONOTONIC_TIMESTAMP") == "0"


def test_journal_boot_ids() -> None:
    records = [rec(boot=1), rec(boot=2), rec(boot=1)]
    a, b, c = (one(e, "_BOOT_ID") for e in parse_export(journal_bytes(records)))
    assert re.fullmatch(r"[0-9a-f]{32}", a)
    assert a == c != b
    assert a == derive_boot_id(1)
    assert derive_boot_id(1, "guest-a") != derive_boot_id(1, "guest-b")
    mid = one(parse_export(journal_bytes(records[:1], machine_id="guest-a"))[0], "_BOOT_ID")
    assert mid == derive_boot_id(1, "guest-a")

    given_id = bytes(range(16))
    entry = parse_export(journal_bytes(records[:1], boot_ids={1: given_id}))[0]
    assert one(entry, "_BOOT_ID") == "000102030405060708090a0b0c0d0e0f"
    with pytest.raises(ValueError, match="16 bytes"):
        journal_bytes(records[:1], boot_ids={1: b"short"})


def test_journal_cursor_escapes_stream_name() -> None:
    entry = parse_export(journal_bytes([rec(stream="a;b=c", offset=512)]))[0]
    cursor = one(entry, "__CURSOR")
    assert "st=a%3Bb%3Dc" in cursor
    assert cursor.endswith(";o=512")


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("foo", "SVSM_FIELD_FOO"),
        ("tpm.cmd-code", "SVSM_FIELD_TPM_CMD_CODE"),
        ("ünï", "SVSM_FIELD__N_"),
        ("9lives", "SVSM_FIELD_9LIVES"),
        ("_x", "SVSM_FIELD__X"),
        ("", "SVSM_FIELD__"),
        ("MiXeD Case", "SVSM_FIELD_MIXED_CASE"),
    ],
)
def test_journal_field_name_sanitizes(key: str, name: str) -> None:
    assert journal_field_name(key) == name


def test_journal_field_name_long_keys_stay_distinct() -> None:
    a, b = journal_field_name("k" * 100 + "a"), journal_field_name("k" * 100 + "b")
    assert len(a) == len(b) == 64
    assert a != b
    assert journal_field_name("\ud800" * 60).startswith("SVSM_FIELD____")  # no encode error


@given(st.text(max_size=200))
def test_journal_field_name_always_valid(key: str) -> None:
    name = journal_field_name(key)
    assert re.fullmatch(r"[A-Z][A-Z0-9_]{0,63}", name)


def test_journal_drops_excess_fields_visibly() -> None:
    fields = tuple((f"k{i}", str(i)) for i in range(600))
    entry = parse_export(journal_bytes([rec(fields=fields)]))[0]
    assert len([n for n, _ in entry if n.startswith("SVSM_FIELD_")]) == 512
    assert one(entry, "SVSM_FIELDS_DROPPED") == "88"


# Arbitrary Unicode, except lone surrogates (not Unicode scalar values; tested above).
texts = st.text(st.characters(exclude_categories=["Cs"]), max_size=80)


@settings(max_examples=200)
@given(
    messages=st.lists(texts, min_size=1, max_size=5),
    fields=st.lists(st.tuples(texts, texts), max_size=4),
    service=texts,
    stream=texts,
)
def test_journal_round_trips_arbitrary_text(
    messages: list[str], fields: list[tuple[str, str]], service: str, stream: str
) -> None:
    records = [
        rec(m, seq=i, service=service, stream=stream, fields=tuple(fields))
        for i, m in enumerate(messages)
    ]
    entries = parse_export(journal_bytes(records))
    assert len(entries) == len(records)
    for entry, message in zip(entries, messages, strict=True):
        assert one(entry, "MESSAGE") == message
        assert one(entry, "SVSM_SERVICE") == service
        assert one(entry, "SVSM_STREAM") == stream
        got = Counter((n, v.decode()) for n, v in entry if n.startswith("SVSM_FIELD_"))
        assert got == Counter((journal_field_name(k), v) for k, v in fields)
        for name, _ in entry:
            assert re.fullmatch(r"_{0,2}[A-Z][A-Z0-9_]{0,63}", name)


# --------------------------------------------------------------------------- syslog

_SD_NAME = r'[^\s="\]]{1,32}'
_SD_ELEMENT = rf'\[{_SD_NAME}(?: {_SD_NAME}="(?:[^"\\\]]|\\.)*")*\]'
RFC5424 = re.compile(
    r"<(?P<pri>\d{1,3})>1 "
    r"(?P<ts>-|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z) "
    r"(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) "
    r"(?P<msgid>[!-~]{1,32}) "
    rf"(?P<sd>-|(?:{_SD_ELEMENT})+)"
    r"(?: \ufeff(?P<msg>[^\n]*))?\n",
)


def sd_params(sd: str) -> dict[str, list[tuple[str, str]]]:
    """Structured data as {SD-ID: [(name, unescaped value)]}."""
    out: dict[str, list[tuple[str, str]]] = {}
    for element in re.finditer(_SD_ELEMENT, sd):
        text = element.group()
        sd_id = re.match(rf"\[({_SD_NAME})", text)
        assert sd_id
        params = re.findall(rf' ({_SD_NAME})="((?:[^"\\\]]|\\.)*)"', text)
        out[sd_id.group(1)] = [(n, re.sub(r"\\(.)", r"\1", v)) for n, v in params]
    return out


def syslog_lines(records: list[LocatedRecord], **kwargs: object) -> list[re.Match[str]]:
    out = io.StringIO()
    assert write_syslog(records, out, **kwargs) == len(records)  # type: ignore[arg-type]
    text = out.getvalue()
    matches = list(RFC5424.finditer(text))
    assert "".join(m.group() for m in matches) == text  # every line is RFC 5424
    return matches


def test_sd_escape() -> None:
    assert sd_escape('a"b\\c]d') == 'a\\"b\\\\c\\]d'
    assert sd_escape("plain [ok") == "plain [ok"


def test_syslog_line_structure() -> None:
    base = {1: 1_700_000_000_000_000}
    line = syslog_lines(
        [rec("hi there", level=Level.ERROR, target="svsm::mm", t_ns=1_500_000)],
        realtime_base_us=base,
        hostname="guest-1",
    )[0]
    assert line["pri"] == str(16 * 8 + 3)
    assert line["ts"] == "2023-11-14T22:13:20.001500Z"
    assert line["host"] == "guest-1"
    assert line["app"] == "svsm-svsm"
    assert line["procid"] == "-"
    assert line["msgid"] == "mm"
    assert line["msg"] == "hi there"
    meta = dict(sd_params(line["sd"])["svsm@32473"])
    assert meta["boot"] == "1" and meta["stream"] == "core" and meta["seq"] == "7"
    assert meta["t_ns"] == "1500000" and meta["target"] == "svsm::mm"
    assert "panic" not in meta and "verified" not in meta


def test_syslog_without_wallclock_uses_nilvalue() -> None:
    line = syslog_lines([rec(level=Level.DEBUG)], realtime_base_us={9: 1})[0]
    assert line["ts"] == "-"
    assert line["pri"] == str(16 * 8 + 7)


def test_syslog_escapes_params_and_keeps_one_line() -> None:
    tricky = 'quote " backslash \\ bracket ] end'
    records = [
        rec(
            "first\nsecond\r\x1b",
            stream=tricky,
            fields=((tricky, tricky), ("multi", "a\nb"), ("boot", "forged")),
            panic=True,
            verified=False,
        )
    ]
    line = syslog_lines(records)[0]
    assert line["msg"] == "first\\nsecond\\r\\x1b"
    params = sd_params(line["sd"])
    meta = dict(params["svsm@32473"])
    assert meta["stream"] == tricky
    assert meta["boot"] == "1"  # the record's own "boot" field cannot override this
    assert meta["panic"] == "1" and meta["verified"] == "0"
    fields = params["fields@32473"]
    assert fields[0] == ("quote___backslash_\\_bracket___en", tricky)  # SD-NAME, 32 chars
    assert fields[1] == ("multi", "a\\nb")
    assert fields[2] == ("boot", "forged")


def test_syslog_header_fields_sanitized_and_bounded() -> None:
    line = syslog_lines(
        [rec(service="s p a c e" * 10, component="comp onent" * 10)], hostname="my host"
    )[0]
    assert line["host"] == "my_host"
    assert line["app"].startswith("svsm-s_p_a_c_e") and len(line["app"]) == 48
    assert line["msgid"].startswith("comp_onent") and len(line["msgid"]) == 32
    assert syslog_lines([rec(component="")])[0]["msgid"] == "-"


# --------------------------------------------------------------------------- text


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture
def colour_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for var in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "COLUMNS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    return monkeypatch


SAMPLE = [
    rec("[red]not red[/red] [bold]x", t_ns=12_345_678_901, level=Level.ERROR),
    rec("maybe forged", level=Level.WARN, verified=False, stream="vtpm"),
    rec("kernel panic", level=Level.ERROR, panic=True),
    rec("esc \x1b[2J clear\nsecond line", level=Level.DEBUG, fields=(("k", "v"),)),
]


def render(console_file: io.StringIO, **kwargs: object) -> str:
    console = make_console(console_file, **kwargs)  # type: ignore[arg-type]
    assert write_text(SAMPLE, console) == len(SAMPLE)
    return console_file.getvalue()


def test_text_plain_when_not_a_tty(colour_env: pytest.MonkeyPatch) -> None:
    text = render(io.StringIO())
    assert not ANSI.search(text)
    assert "\x1b" not in text
    lines = text.splitlines()
    assert lines[0] == "[   12.345678] b1 core ERROR svsm/mm: [red]not red[/red] [bold]x"
    assert lines[1].startswith("UNVERIFIED [")
    assert "b1 vtpm WARN  svsm/mm: maybe forged" in lines[1]
    assert not lines[0].startswith("UNVERIFIED") and "UNVERIFIED" not in lines[2]
    assert "PANIC svsm/mm: kernel panic" in lines[2]


def test_text_plain_with_no_color_on_a_tty(colour_env: pytest.MonkeyPatch) -> None:
    assert ANSI.search(render(FakeTTY()))  # sanity: a TTY does get styling
    colour_env.setenv("NO_COLOR", "1")
    text = render(FakeTTY())
    assert "\x1b" not in text
    assert "UNVERIFIED" in text


def test_text_force_plain(colour_env: pytest.MonkeyPatch) -> None:
    assert "\x1b" not in render(FakeTTY(), force_plain=True)


def test_text_escapes_control_characters_even_on_a_tty(colour_env: pytest.MonkeyPatch) -> None:
    text = render(FakeTTY())
    assert "\x1b[2J" not in text
    assert "esc \\x1b[2J clear" in text
    assert "[red]not red[/red] [bold]x" in text


def test_text_multiline_message_is_indented(colour_env: pytest.MonkeyPatch) -> None:
    lines = render(io.StringIO()).splitlines()
    first = next(i for i, line in enumerate(lines) if "esc \\x1b" in line)
    prefix = lines[first].index("esc")
    assert lines[first + 1] == " " * prefix + "second line k=v"


def test_text_hide_stream(colour_env: pytest.MonkeyPatch) -> None:
    out = io.StringIO()
    write_text([rec(stream="vtpm")], make_console(out), show_stream=False)
    assert "vtpm" not in out.getvalue()
    assert "b1 INFO" in out.getvalue()


# --------------------------------------------------------------------------- systemd


def _journal_remote() -> str | None:
    for path in (
        "/lib/systemd/systemd-journal-remote",
        "/usr/lib/systemd/systemd-journal-remote",
    ):
        if os.access(path, os.X_OK):
            return path
    return shutil.which("systemd-journal-remote")


def _json_value(value: object) -> str:
    """journalctl -o json gives text as a string, other data as a list of byte values."""
    if isinstance(value, str):
        return value
    assert isinstance(value, list) and all(isinstance(b, int) for b in value), value
    return bytes(value).decode("utf-8")


ROUND_TRIP = [
    rec("plain", t_ns=1_234_567_891, boot=1, stream="core", seq=1, offset=0),
    rec("multi\nline\nmessage", t_ns=2_469_135_782, boot=1, seq=1, offset=64, level=Level.WARN),
    rec("ünïcödé ✓ 日本語", t_ns=3_703_703_673, boot=1, stream="vtpm", seq=1, target="svsm::vtpm"),
    rec("esc \x1b[31m and tab\t", t_ns=4_938_271_564, boot=1, stream="vtpm", seq=2, offset=128),
    rec("", t_ns=999, boot=2, stream="core", seq=1, offset=0, level=Level.DEBUG),
    rec("x" * 100_000, t_ns=7_407_407_346, boot=2, seq=2, offset=256, level=Level.TRACE),
    rec("panicked at mm.rs:1", t_ns=8_641_975_237, boot=2, seq=3, offset=512, panic=True),
    rec(
        "unverified",
        t_ns=9_876_543_128,
        boot=2,
        stream="vtpm",
        seq=9,
        offset=0,
        verified=False,
        fields=(("tpm.cmd", "0x144"), ("line", "a\nb"), ("Key With Spaces", "✓")),
    ),
]


@pytest.mark.skipif(
    _journal_remote() is None or shutil.which("journalctl") is None,
    reason="systemd-journal-remote/journalctl not installed "
    "(run scripts/ensure-journal-remote.sh as root on Debian/Ubuntu)",
)
def test_journal_imports_into_systemd_journal(tmp_path: Path) -> None:
    remote = _journal_remote()
    assert remote is not None
    base = {1: 1_700_000_000_000_000}  # boot 2 has no wall-clock base
    export = journal_bytes(ROUND_TRIP, realtime_base_us=base, machine_id="test-guest")
    out_dir = tmp_path / "journal"
    out_dir.mkdir()
    imported = subprocess.run(
        [remote, f"--output={out_dir / 'svsm.journal'}", "-"],
        input=export,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert imported.returncode == 0, imported.stderr.decode(errors="replace")

    # --directory: journal-remote may rotate to further files in that directory.
    shown = subprocess.run(
        ["journalctl", f"--directory={out_dir}", "-o", "json", "--all", "--no-pager"],
        capture_output=True,
        timeout=60,
        check=False,
        env={**os.environ, "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""},
    )
    assert shown.returncode == 0, shown.stderr.decode(errors="replace")
    entries = [json.loads(line) for line in shown.stdout.splitlines()]
    assert len(entries) == len(ROUND_TRIP)

    def key(e: dict[str, object]) -> tuple[int, str, int, int]:
        return (
            int(str(e["SVSM_BOOT"])),
            str(e["SVSM_STREAM"]),
            int(str(e["SVSM_SEQ"])),
            int(str(e["SVSM_OFFSET"])),
        )

    by_key = {key(e): e for e in entries}
    assert len(by_key) == len(ROUND_TRIP)
    for located in ROUND_TRIP:
        r = located.record
        e = by_key[(located.boot, located.stream, located.seq, located.offset)]
        assert _json_value(e["MESSAGE"]) == r.message
        assert e["PRIORITY"] == str({0: 3, 1: 4, 2: 6, 3: 7, 4: 7}[r.level])
        assert e["SYSLOG_IDENTIFIER"] == "svsm-svsm"
        assert e["SVSM_SERVICE"] == r.service and e["SVSM_COMPONENT"] == r.component
        assert e.get("SVSM_TARGET") == r.target
        assert e.get("SVSM_PANIC") == ("1" if r.panic else None)
        assert e.get("SVSM_VERIFIED") == (None if located.verified else "0")
        assert e["_BOOT_ID"] == derive_boot_id(located.boot, "test-guest")
        assert e["__MONOTONIC_TIMESTAMP"] == str(r.t_ns // 1000)
        wall = base.get(located.boot, 0) + r.t_ns // 1000
        assert e["__REALTIME_TIMESTAMP"] == str(max(wall, 1))  # journald needs > 0
        for k, v in r.fields:
            assert _json_value(e[journal_field_name(k)]) == v


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=30)


@given(
    st.lists(
        st.builds(
            LocatedRecord,
            boot=st.integers(1, 2**32 - 1),
            stream=_text,
            seq=st.integers(0, 2**64 - 1),
            offset=st.integers(0, 2**40),
            record=st.builds(
                Record,
                t_ns=st.integers(0, 2**64 - 1),
                level=st.sampled_from(list(Level)),
                service=_text,
                component=_text,
                message=_text,
                target=st.one_of(st.none(), _text),
                fields=st.lists(st.tuples(_text, _text), max_size=3).map(tuple),
                flags=st.sampled_from([0, FLAG_PANIC]),
            ),
            verified=st.booleans(),
        ),
        max_size=5,
    )
)
def test_jsonl_lines_are_exactly_json_dumps_of_as_json(records: list[LocatedRecord]) -> None:
    """The hand-built lines (the fast path) equal the reference json.dumps byte for byte."""
    out = io.StringIO()
    write_jsonl(records, out)
    expected = "".join(
        json.dumps(r.as_json(), ensure_ascii=False, separators=(",", ":")) + "\n" for r in records
    )
    assert out.getvalue() == expected


_name = st.text(max_size=12).filter(lambda s: len(s.encode()) <= 255)
_block_records = st.lists(
    st.builds(
        Record,
        t_ns=st.integers(2**40, 2**40 + 2**30),  # one block: each within 2**31 ns of the one before
        level=st.sampled_from(list(Level)),
        service=st.sampled_from(["vtpm", "core", "ünï"]) | _name,
        component=st.sampled_from(["TPM2", ""]) | _name,
        message=st.text(max_size=40) | st.sampled_from(["plain ascii", "tab\there", "line\u2028sep\x85"]),
        target=st.none() | _name.filter(bool),
        fields=st.lists(st.tuples(_name, _name), max_size=2).map(tuple),
        flags=st.sampled_from([0, FLAG_PANIC]),
    ),
    max_size=6,
)


def _block_formats() -> dict[str, tuple[object, object]]:
    from svsmlog.export import (
        jsonl_block_lines,
        jsonl_lines,
        syslog_block_lines,
        syslog_lines,
        text_block_lines,
        text_lines,
    )

    return {"jsonl": (jsonl_block_lines, jsonl_lines), "text": (text_block_lines, text_lines),
            "syslog": (syslog_block_lines, syslog_lines)}


@pytest.mark.parametrize("fmt", ["jsonl", "text", "syslog"])
@settings(max_examples=300)
@given(_block_records, st.booleans(), st.booleans(), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
       st.sampled_from(["vtpm", "v\x1b[31mtpm", "v\"t]p\\m"]))
def test_block_lines_are_the_lines_of_its_records(
        fmt: str, records: list[Record], verified: bool, with_clock: bool, boot: int, seq: int,
        stream: str) -> None:
    """A frame's lines made from its columns (extract's record pass) are byte for byte the
    lines of its decoded records, plain or not (fields, panic, unverified, host time)."""
    from svsmlog import codec

    block_lines, lines = _block_formats()[fmt]
    block = codec.decode_record_columns(codec.encode_record_block(records))
    bases = {boot: 1_700_000_000_000_000} if with_clock else None
    decoded = [LocatedRecord(boot, stream, seq, 0, r, verified) for r in codec.decode_record_block(
        codec.encode_record_block(records))]
    expected = list(lines(decoded, realtime_base_us=bases))  # type: ignore[operator]
    assert block_lines(block, boot, stream, seq, verified, realtime_base_us=bases) == expected  # type: ignore[operator]
    assert len(expected) == len(records)


_plain_block_records = st.lists(
    st.builds(
        Record,
        t_ns=st.integers(2**40, 2**40 + 2**30),
        level=st.sampled_from(list(Level)),
        service=st.sampled_from(["vtpm", "core"]),
        component=st.sampled_from(["TPM2", ""]),
        # mostly nothing to escape, sometimes a quote, a backslash or a control character
        message=st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)
        | st.sampled_from(["plain ascii", 'say "hi"', "back\\slash", "tab\there", "caf\u00e9", ""]),
        target=st.none() | st.just("svsm::vtpm"),
    ),
    min_size=1,
    max_size=8,
)


@pytest.mark.parametrize("fmt", ["jsonl", "text", "syslog"])
@settings(max_examples=300)
@given(_plain_block_records, st.sampled_from(["vtpm", "v\x1b[31mtpm", "v\"t]p\\m"]))
def test_plain_block_lines_are_each_records_line(fmt: str, records: list[Record], stream: str) -> None:
    """A plain frame (no fields, no panic: the fast path) gives each record's line, whether
    no message, some or all need escaping (JSON's quoting; the text view's spelled-out
    controls and indented line breaks)."""
    from svsmlog import codec

    block_lines, lines = _block_formats()[fmt]
    block = codec.decode_record_columns(codec.encode_record_block(records))
    assert block.plain()
    decoded = [LocatedRecord(1, stream, 3, 0, r, True) for r in codec.records_of(block)]
    got = block_lines(block, 1, stream, 3)  # type: ignore[operator]
    assert got == list(lines(decoded))  # type: ignore[operator]
    if fmt == "jsonl":
        for line, r in zip(got, records, strict=True):
            assert json.loads(line)["message"] == r.message


def test_utf8_lines_escape_what_utf8_cannot_carry_and_say_where_lines_end() -> None:
    """The record pass hands lines back as UTF-8 with their ends: a lone surrogate (which a
    UTF-8 stream cannot write) is escaped in its line as write_jsonl does, and the ends
    follow the bytes, not the characters."""
    from svsmlog.export import utf8_lines

    lines = ['{"message":"caf\u00e9"}\n', '{"message":"\ud800"}\n', '{"message":"plain"}\n']
    blob, ends = utf8_lines(lines, with_ends=True)
    assert ends is not None
    parts = [blob[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    assert [json.loads(p)["message"] for p in parts] == ["caf\u00e9", "\ud800", "plain"]
    assert parts[1] == b'{"message":"\\ud800"}\n' and parts[0] == lines[0].encode()
    assert utf8_lines(lines[:1]) == (lines[0].encode(), None)
    assert list(utf8_lines(["ab\n", "c\n"], with_ends=True)[1] or []) == [3, 5]
