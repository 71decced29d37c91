"""The commands that need a key: ``verify``, ``extract`` and ``export-key``."""

from __future__ import annotations

import heapq
import itertools
import json
import re
import sys
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, TextIO

from .. import export
from ..records import Level, LocatedRecord
from ..verify import StreamKey
from .common import (
    CliError,
    Exit,
    format_ns,
    open_volume,
    pipe_safe,
    report_console,
    resolve_stream,
    stream_key_json,
    warn,
    write_new_file,
)
from .render import render_report, summary_panel
from .verification import Verification, verify_image

# File name extensions of ``extract -o DIR``.
EXTENSIONS = {"text": "txt", "jsonl": "jsonl", "journal": "journal", "syslog": "log"}


@dataclass(frozen=True)
class KeyArgs:
    """What every reading command takes to open the log."""

    keys: list[Path]
    stream_keys: list[Path]
    passphrase_file: Path | None


# --------------------------------------------------------------------------- verify


def verify(image_path: Path, partition: int | None, keys: KeyArgs, anchor: Path | None,
           as_json: bool, jobs: int | None = None) -> Exit:
    with open_volume(image_path, partition) as image:
        v = verify_image(image, keys.keys, keys.stream_keys, keys.passphrase_file, anchor, jobs)
        if as_json:
            print(json.dumps(v.report.as_json(), indent=2))
        elif not v.nothing_opened():  # a key that opens nothing gets no verdict panel
            render_report(report_console(), image, v.report)
        if v.nothing_opened():
            raise v.no_key_error()
        if v.report.verdict == "partial":
            warn_partial(v)
        return v.exit_code


def warn_partial(v: Verification) -> None:
    """On stderr, what the keys given could not prove: a partial verdict must be seen even
    when only records are read (spec §9)."""
    r = v.report
    unread = sorted({(f.boot, f.stream) for f in r.findings if f.unproven and f.boot is not None})
    listing = ", ".join(f"boot {b} {s}" for b, s in unread[:12]) + (" …" if len(unread) > 12 else "")
    warn(f"{v.image.name}: {r.scope()}; not proven: {listing or 'see svsmlog verify'} "
         "(frames no key given opens, or history only unauthenticated bytes explain)")


# --------------------------------------------------------------------------- extract


@dataclass(frozen=True)
class RecordFilter:
    """Which records ``extract`` writes. Options of one kind are alternatives (OR); the
    kinds combine (AND). Times are nanoseconds since boot, both ends inclusive."""

    boots: frozenset[int] = frozenset()
    services: frozenset[str] = frozenset()
    level: Level | None = None  # this level and the more severe ones
    since_ns: int | None = None
    until_ns: int | None = None
    grep: re.Pattern[str] | None = None

    @property
    def selects(self) -> bool:
        """False when every record passes (no filter given)."""
        return self != RecordFilter()

    def __call__(self, lr: LocatedRecord) -> bool:
        r = lr.record
        return (
            (not self.boots or lr.boot in self.boots)
            and (not self.services or r.service in self.services)
            and (self.level is None or r.level <= self.level)
            and (self.since_ns is None or r.t_ns >= self.since_ns)
            and (self.until_ns is None or r.t_ns <= self.until_ns)
            and (self.grep is None or self.grep.search(r.message) is not None)
        )


def compile_grep(pattern: str | None) -> re.Pattern[str] | None:
    if pattern is None:
        return None
    try:
        return re.compile(pattern)
    except re.error as e:
        raise CliError(f"invalid --grep regular expression {pattern!r}: {e}") from None


@dataclass(frozen=True)
class Output:
    fmt: str
    out_dir: Path | None
    realtime: bool  # wall-clock times from the host-provided boot time (untrusted)


def _realtime_bases(v: Verification, realtime: bool) -> Mapping[int, int] | None:
    if not realtime:
        return None
    return {b: s.host_time_ns // 1000 for b, s in v.report.boots.items() if s.host_time_ns}


def _write_lines(fmt: str, records: Iterable[LocatedRecord], out: TextIO,
                 bases: Mapping[int, int] | None) -> int:
    """The text-stream formats; ``text`` here is the plain view (files and pipes)."""
    if fmt == "jsonl":
        return export.write_jsonl(records, out)
    if fmt == "syslog":
        return export.write_syslog(records, out, realtime_base_us=bases)
    return export.write_text(records, export.make_console(out, force_plain=True))


def _write_file(path: Path, fmt: str, records: Iterable[LocatedRecord],
                bases: Mapping[int, int] | None) -> int:
    try:
        if fmt == "journal":
            with open(path, "wb") as f:
                return export.write_journal(records, f, realtime_base_us=bases)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            return _write_lines(fmt, records, f, bases)
    except OSError as e:
        raise CliError(f"{path}: cannot write: {e.strerror or e}") from None


def _merged(v: Verification, stream_ids: list[int]) -> Iterator[LocatedRecord]:
    """The chosen streams' records merged like Verifier.records(): by boot, then time."""
    iters = [v.verifier.stream_records(s) for s in stream_ids]
    if len(iters) == 1:
        return iters[0]
    return heapq.merge(*iters, key=lambda lr: (lr.boot, lr.record.t_ns))


def _utf8_stdout() -> TextIO:
    out = sys.stdout
    if (out.encoding or "").lower().replace("-", "") != "utf8" and hasattr(out, "reconfigure"):
        out.reconfigure(encoding="utf-8")
    return out


def _to_stdout(v: Verification, records: Iterator[LocatedRecord], output: Output) -> int:
    if output.fmt == "text":
        console = pipe_safe(export.make_console(sys.stdout))
        console.print(summary_panel(v.image, v.report))
        return export.write_text(records, console)
    bases = _realtime_bases(v, output.realtime)
    if output.fmt == "journal":
        sys.stdout.flush()
        binary: BinaryIO = sys.stdout.buffer
        count = export.write_journal(records, binary, realtime_base_us=bases)
        binary.flush()
        return count
    return _write_lines(output.fmt, records, _utf8_stdout(), bases)


def _to_dir(v: Verification, stream_ids: list[int], keep: RecordFilter, output: Output) -> int:
    """One file per boot and stream, plus report.json. Each stream's records come in boot
    order, so only one file is open at a time however many boots the image holds."""
    assert output.out_dir is not None
    out_dir = output.out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(v.report.as_json(), indent=2) + "\n")
    except OSError as e:
        raise CliError(f"{out_dir}: cannot write there: {e.strerror or e}") from None
    bases = _realtime_bases(v, output.realtime)
    total = 0
    for sid in stream_ids:
        name = v.image.volume.region(sid).name
        records = filter(keep, v.verifier.stream_records(sid))
        for boot, group in itertools.groupby(records, key=lambda lr: lr.boot):
            path = out_dir / f"boot-{boot:04d}-{name}.{EXTENSIONS[output.fmt]}"
            n = _write_file(path, output.fmt, group, bases)
            print(f"{path}: {n} record(s)")
            total += n
    print(f"{out_dir / 'report.json'}: verdict {v.report.verdict}")
    return total


def extract(image_path: Path, partition: int | None, keys: KeyArgs, streams: list[str],
            keep: RecordFilter, output: Output, jobs: int | None = None) -> Exit:
    with open_volume(image_path, partition) as image:
        stream_ids = [resolve_stream(image.volume, s) for s in streams] or [
            r.stream for r in image.volume.superblock.regions
        ]
        stream_ids = list(dict.fromkeys(stream_ids))  # once each, in the order given
        v = verify_image(image, keys.keys, keys.stream_keys, keys.passphrase_file, None, jobs)
        if v.nothing_opened():
            raise v.no_key_error()
        if output.out_dir is not None:
            _to_dir(v, stream_ids, keep, output)
        else:
            merged = _merged(v, stream_ids)
            _to_stdout(v, filter(keep, merged) if keep.selects else merged, output)
        if v.report.verdict == "violated":
            warn(f"{image.name}: integrity violation; records of the affected boots and streams are "
                 "marked unverified ('svsmlog verify' gives the full report)")
        elif v.report.verdict == "partial":
            warn_partial(v)
        return v.exit_code


# --------------------------------------------------------------------------- export-key


def export_key(image_path: Path, partition: int | None, keys: KeyArgs, boot: int, stream: str,
               out: Path, force: bool) -> Exit:
    with open_volume(image_path, partition) as image:
        sid = resolve_stream(image.volume, stream)
        name = image.volume.region(sid).name
        v = verify_image(image, keys.keys, keys.stream_keys, keys.passphrase_file)
        chain_key = v.verifier.chain_key(boot, sid, 0)
        if chain_key is None:
            raise _why_no_chain_key(v, boot, name)
        key = StreamKey(image.volume.volume_id, boot, sid, 0, chain_key)
        write_new_file(out, stream_key_json(key, name), mode=0o600, force=force)
        span = v.report.boots.get(boot)
        records = span.streams[name].records if span and name in span.streams else 0
        print(f"wrote {out} (mode 0600): reads and verifies boot {boot}, stream {name} "
              f"({records} record(s), up to {format_ns(_last_t(v, boot, name))}) and nothing else")
        if v.report.verdict == "violated":
            warn(f"{image.name}: integrity violation ('svsmlog verify' gives the full report)")
            return Exit.VIOLATED
        return Exit.INTACT  # the key was written; what the rest of the image proves is verify's


def _last_t(v: Verification, boot: int, name: str) -> int | None:
    b = v.report.boots.get(boot)
    return b.streams[name].last_t_ns if b and name in b.streams else None


def _why_no_chain_key(v: Verification, boot: int, name: str) -> CliError:
    if v.nothing_opened():
        return v.no_key_error()
    present = boot in v.report.boots and name in v.report.boots[boot].streams
    if not present:
        seen = sorted(b for b, s in v.report.boots.items() if name in s.streams)
        listing = ", ".join(map(str, seen)) or "none"
        return CliError(f"{v.image.name}: boot {boot} has no frames in stream {name} "
                        f"(boots there: {listing})")
    return CliError(f"{v.image.name}: the given keys do not open boot {boot} of stream {name} from its "
                    "start (seq 0)", Exit.NO_KEY)
