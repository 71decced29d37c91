"""The commands that need a key: ``verify``, ``extract`` and ``export-key``."""

from __future__ import annotations

# json is imported by the functions that use it: a plain verify never does (json costs a
# few ms of start-up, benchmarks/README.md).
import contextlib
import functools
import heapq
import itertools
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NamedTuple, TextIO, cast

from ..records import Level, LocatedRecord
from ..report import Kind, Report
from ..verify import StreamKey
from .common import (
    CliError,
    Exit,
    OriginArgs,
    format_ns,
    is_tty,
    open_volume,
    pipe_safe,
    report_console,
    resolve_stream,
    say,
    stream_key_json,
    warn,
    write_new_file,
)
from .render import render_report, summary_panel, write_report_json
from .verification import Verification, verify_image

if TYPE_CHECKING:
    from .. import export, fleet, recordpass


def _fleet():  # type: ignore[no-untyped-def]
    """svsmlog.fleet (process pools, Dask) only for the commands that take many images."""
    from .. import fleet

    return fleet


def _severity(level: Level) -> int:
    from ..export import SEVERITY  # svsmlog.export only where records are written or filtered

    return SEVERITY[level]


# File name extensions of ``extract -o DIR``.
EXTENSIONS = {"text": "txt", "jsonl": "jsonl", "journal": "journal", "syslog": "log", "timesketch": "jsonl"}


class KeyArgs(NamedTuple):
    """What every reading command takes to open the log."""

    keys: list[Path]
    stream_keys: list[Path]
    passphrase_file: Path | None
    anchor: Path | None = None  # extract checks it as verify does
    origin: OriginArgs = OriginArgs()  # what each boot's attestation report must show


# --------------------------------------------------------------------------- verify


def verify(image_path: Path, partition: int | None, keys: KeyArgs, anchor: Path | None,
           as_json: bool, jobs: int | None = None, offset: int | None = None) -> Exit:
    with open_volume(image_path, partition, offset) as image:
        v = verify_image(image, keys.keys, keys.stream_keys, keys.passphrase_file, anchor, jobs, keys.origin)
        if as_json:
            write_report_json(v.report, sys.stdout)
        elif not v.nothing_opened():  # a key that opens nothing gets no verdict panel
            render_report(report_console(), image, v.report)
        if v.nothing_opened():
            raise v.no_key_error()
        if v.report.verdict == "partial":
            warn_partial(v)
        return v.exit_code


def _note_origin(v: Verification) -> None:
    """On stderr, in every format: which boots no attestation report proves the origin of (an
    unattested boot must never pass silently, even where the verdict is about integrity)."""
    r = v.report
    read = [b for b in sorted(r.boots) if any(s.frames for s in r.boots[b].streams.values())]
    unproven = [b for b in read if b not in set(r.attested_boots())]
    if unproven:
        say(f"note: {v.image.name}: origin not proven for boot(s) {_listing(unproven)} (no valid SEV-SNP "
            "report binds them; see the origin line of 'svsmlog verify')")


def warn_partial(v: Verification) -> None:
    """On stderr, what the keys given could not prove: a partial verdict must be seen even
    when only records are read (spec §9)."""
    r = v.report
    unread = sorted({(f.boot, f.stream, f.kind.value) for f in r.findings
                     if f.unproven and f.boot is not None})
    listing = ", ".join(f"boot {b} {s} ({k})" for b, s, k in unread[:12]) + (" …" if len(unread) > 12 else "")
    warn(f"{v.image.name}: {r.scope()}; not proven: {listing or 'see svsmlog verify'}")


# --------------------------------------------------------------------------- many images


def many_images(paths: list[Path]) -> list[Path] | None:
    """The images to read when more than one is meant (several, or a directory); None for
    one image file, which keeps the single-image output."""
    if len(paths) == 1 and not paths[0].is_dir():
        return None
    found = _fleet().expand_images(paths)
    if not found:
        raise CliError(f"no images (*.img, *.qcow2, *.raw) in {', '.join(map(str, paths))}")
    return found


def _worst(results: list[fleet.Result]) -> Exit:
    # A violation is exit 1 whatever else is true (spec §8.8); then a read error (2) or a key
    # that opens nothing (3), which mean the run did not look at everything it was given;
    # then partial (4).
    codes = {r.code for r in results}
    for c in (Exit.VIOLATED, Exit.USAGE, Exit.NO_KEY, Exit.PARTIAL):
        if c in codes:
            return c
    return Exit.INTACT


def verify_many(paths: list[Path], partition: int | None, offset: int | None, keys: KeyArgs,
                anchor: Path | None, as_json: bool, jobs: int | None) -> Exit:
    import json
    job_list = [_fleet().Job(p, tuple(keys.keys), tuple(keys.stream_keys), keys.passphrase_file, anchor,
                          partition, offset, with_report=as_json) for p in paths]
    out = _utf8_stdout()
    results = []
    if as_json:
        for r in _fleet().iter_local(job_list, jobs):  # each report written and let go
            d = r.as_json()
            doc = {"image": d["image"], "exit_code": d["exit_code"], **(r.report or {"error": r.error})}
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
            r.report = None
            results.append(r)
    else:
        results = _fleet().run_local(job_list, jobs)
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"{len(results)} image(s)", title_justify="left", box=box.SIMPLE_HEAD)
        for col in ("image", "verdict", "boots", "records", "violations", "unproven", "notices", "panics"):
            table.add_column(col, justify="left" if col in ("image", "verdict") else "right")
        for r in results:
            s = r.summary
            if not r.ok:
                table.add_row(r.image, Text(f"error: {r.error}", style="red"), *["-"] * 6)
                continue
            style = {"intact": "green", "violated": "bold red"}.get(str(s["verdict"]), "yellow")
            table.add_row(r.image, Text(str(s["verdict"]), style=style),
                          *(str(s[c]) for c in ("boots", "records", "violations", "unproven", "notices",
                                                "panics")))
        report_console().print(table)
    for r in results:
        if not r.ok:
            warn(f"{r.image}: {r.error}")
    return _worst(results)


def info_many(paths: list[Path], partition: int | None, offset: int | None, as_json: bool,
              jobs: int | None) -> Exit:
    import json
    fl = _fleet()
    results = fl.run_local([fl.Job(p, partition=partition, offset=offset, mode="info") for p in paths], jobs)
    out = _utf8_stdout()
    if as_json:
        for r in results:
            info = r.summary.get("info") if r.ok else None
            doc = {"image": r.image, **(info if isinstance(info, dict) else {"error": r.error})}
            out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        from rich import box
        from rich.table import Table
        from rich.text import Text

        table = Table(title=f"{len(results)} image(s), unauthenticated", title_justify="left",
                      box=box.SIMPLE_HEAD)
        for col in ("image", "volume", "streams", "boots"):
            table.add_column(col)
        for r in results:
            info = r.summary.get("info") if r.ok else None
            if not isinstance(info, dict):
                table.add_row(r.image, Text(f"error: {r.error}", style="red"), "-", "-")
                continue
            streams = info.get("streams") or []
            names = ", ".join(str(s.get("stream")) for s in streams if isinstance(s, dict))  # type: ignore[union-attr]
            volume = info.get("volume")
            vid = str(volume.get("id")) if isinstance(volume, dict) else "-"
            table.add_row(r.image, vid, names or "-", _listing(info.get("boots") or []))  # type: ignore[arg-type]
        report_console().print(table)
    for r in results:
        if not r.ok:
            warn(f"{r.image}: {r.error}")
    return Exit.USAGE if any(not r.ok for r in results) else Exit.INTACT


def fleet_run(paths: list[Path], out_dir: Path, keys: KeyArgs, anchor: Path | None, fmt: str,
              scheduler: str, workers: int | None, partition: int | None, offset: int | None) -> Exit:
    try:
        import dask.bag  # noqa: F401 - only to tell a missing extra from a failure
        if fmt == "parquet":
            import pyarrow  # noqa: F401
    except ImportError as e:
        raise CliError(f"svsmlog fleet needs the 'fleet' extra (dask, pyarrow): pip install "
                       f"'svsmlog[fleet]' ({e})") from None
    fl = _fleet()
    jobs = [fl.Job(p, tuple(keys.keys), tuple(keys.stream_keys), keys.passphrase_file, anchor, partition,
                   offset, origin=keys.origin) for p in paths]
    try:
        run = _fleet().run_fleet(jobs, out_dir, scheduler=scheduler, workers=workers, fmt=fmt)
    except OSError as e:
        raise CliError(f"{out_dir}: {e.strerror or e}") from None
    verdicts = ", ".join(f"{n} {v}" for v, n in sorted(run.verdicts.items()))
    print(f"{run.images} image(s) ({verdicts}), {run.records} record(s) in {run.seconds:.2f} s: "
          f"{run.images_per_s:.1f} images/s, {run.records_per_s:.0f} records/s")
    ext = "parquet" if fmt == "parquet" else "jsonl"
    print(f"wrote {out_dir / ('images.' + ext)}, {out_dir / ('findings.' + ext)}, {out_dir / 'records'}/")
    if run.verdicts.get("violated"):
        return Exit.VIOLATED  # whatever else is true
    if run.failed:
        warn(f"{run.failed} image(s) could not be read: see the error column of images.{ext}")
        return Exit.USAGE
    return Exit.PARTIAL if run.verdicts.get("partial") or run.verdicts.get("unverifiable") else Exit.INTACT


def _subdir_name(path: Path) -> str:
    """The image's path as one directory name: every image of a fleet gets its own."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(path).lstrip("./")) or "image"


def _extract_one(task: tuple[Path, int | None, KeyArgs, list[str], RecordFilter, Output, int | None]
                 ) -> tuple[str, int, str | None]:
    path, partition, keys, streams, keep, output, offset = task
    try:
        return str(path), int(extract(path, partition, keys, streams, keep, output, 1, offset)), None
    except CliError as e:
        return str(path), int(e.code), str(e)
    except Exception as e:  # one image's failure must not stop the others
        return str(path), int(Exit.USAGE), f"unexpected {type(e).__name__}: {e}"


def extract_many(paths: list[Path], partition: int | None, keys: KeyArgs, streams: list[str],
                 keep: RecordFilter, output: Output, jobs: int | None, offset: int | None) -> Exit:
    """Every image into a subdirectory of -o DIR, --jobs images at a time."""
    assert output.out_dir is not None
    check_output(output)
    names = [_subdir_name(p) for p in paths]
    tasks = [(p, partition, keys, streams, keep, output._replace(out_dir=output.out_dir / n), offset)
             for p, n in zip(paths, names, strict=True)]
    workers = min(jobs or os.cpu_count() or 1, len(tasks))
    sys.stdout.flush()
    if workers <= 1:
        results = [_extract_one(t) for t in tasks]
    else:
        from concurrent.futures import ProcessPoolExecutor
        from multiprocessing import get_context

        with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
            results = list(pool.map(_extract_one, tasks))
    for image, _, error in results:
        if error is not None:
            warn(f"{image}: {error}")
    return _worst([_fleet().Result(image, error is None, code) for image, code, error in results])


# --------------------------------------------------------------------------- extract


@dataclass(frozen=True)
class RecordFilter:
    """Which records ``extract`` writes. Options of one kind are alternatives (OR); the
    kinds combine (AND). Times are nanoseconds since boot, or (``*_wall_us``) host wall-clock
    µs, both ends inclusive. ``boot_offsets`` (0 = the newest boot, -1 the one before, as
    journalctl) become ``boots`` once the report says which boots there are (:meth:`resolved`)."""

    boots: frozenset[int] = frozenset()
    boot_offsets: frozenset[int] = frozenset()
    services: frozenset[str] = frozenset()
    level: Level | None = None  # this level and the more severe ones
    priority: tuple[int, int] | None = None  # syslog severities, most severe first, inclusive
    since_ns: int | None = None
    until_ns: int | None = None
    since_wall_us: int | None = None
    until_wall_us: int | None = None
    grep: re.Pattern[str] | None = None
    wall_bases: Mapping[int, int] | None = field(default=None, compare=False)

    @property
    def selects(self) -> bool:
        """False when every record passes (no filter given)."""
        return self != RecordFilter()

    @property
    def only_services(self) -> frozenset[str] | None:
        """The services, where choosing them is all this filter does (``--service`` alone)."""
        if self.services and replace(self, services=frozenset()) == RecordFilter():
            return self.services
        return None

    @property
    def wall(self) -> bool:
        return self.since_wall_us is not None or self.until_wall_us is not None

    def resolved(self, report_boots: list[int], wall_bases: Mapping[int, int] | None) -> RecordFilter:
        """Negative boot offsets turned into boot numbers (exit 2 when one names no boot)."""
        boots = set(self.boots)
        for off in self.boot_offsets:  # as journalctl: 0 the newest boot, -1 the one before
            if -off >= len(report_boots):
                raise CliError(f"--boot {off}: the image holds {len(report_boots)} boot(s) "
                               f"({_listing(report_boots)})")
            boots.add(report_boots[off - 1])
        missing = sorted(boots - set(report_boots))
        if missing:
            raise CliError(f"no boot {', '.join(map(str, missing))} in this image; its boots: "
                           f"{_listing(report_boots)} (or 0 for the newest, -1 the one before)")
        return replace(self, boots=frozenset(boots), boot_offsets=frozenset(), wall_bases=wall_bases)

    def __call__(self, lr: LocatedRecord) -> bool:
        r = lr.record
        if not (
            (not self.boots or lr.boot in self.boots)
            and (not self.services or r.service in self.services)
            and (self.level is None or r.level <= self.level)
            and (self.priority is None
                 or self.priority[0] <= _severity(r.level) <= self.priority[1])
            and (self.since_ns is None or r.t_ns >= self.since_ns)
            and (self.until_ns is None or r.t_ns <= self.until_ns)
        ):
            return False
        if self.wall:
            base = self.wall_bases.get(lr.boot) if self.wall_bases else None
            if base is None:
                return False  # a boot without a host clock cannot be placed on the wall clock
            wall = base + r.t_ns // 1000
            if (self.since_wall_us is not None and wall < self.since_wall_us) or (
                    self.until_wall_us is not None and wall > self.until_wall_us):
                return False
        if self.grep is not None:
            g = self.grep.search
            return g(r.message) is not None or any(g(v) is not None for _, v in r.fields)
        return True


def _listing(values: Iterable[object]) -> str:
    return ", ".join(map(str, values)) or "none"


def compile_grep(pattern: str | None) -> re.Pattern[str] | None:
    """journalctl's smart case: case-insensitive unless the pattern has an upper-case letter."""
    if pattern is None:
        return None
    flags = 0 if any(c.isupper() for c in pattern) else re.IGNORECASE
    try:
        return re.compile(pattern, flags)
    except re.error as e:
        raise CliError(f"invalid --grep regular expression {pattern!r}: {e}") from None


class Output(NamedTuple):
    fmt: str
    out_dir: Path | None
    realtime: bool  # --host-time: wall-clock times from the host-provided boot time (untrusted)
    lines: int | None = None  # -n: only the last N records
    reverse: bool = False  # -r: newest first
    pager: bool = False  # page text output (stdout is a terminal and no --no-pager)
    output_fields: tuple[str, ...] = ()  # --output-fields (jsonl, timesketch, journal)


def host_time_bases(v: Verification) -> dict[int, int]:
    """Per boot, the host's UNIX time in µs at t_ns == 0 (untrusted: the host supplied it)."""
    return {b: s.host_time_ns // 1000 for b, s in v.report.boots.items() if s.host_time_ns}


def _realtime_bases(v: Verification, output: Output) -> Mapping[int, int] | None:
    # The journal's __REALTIME_TIMESTAMP is host time by default: journalctl --since and
    # --list-boots need one, and the entry says where it came from (SVSM_REALTIME_SOURCE).
    # A Timesketch timeline is wall-clock by nature; timestamp_desc says whose clock.
    if output.realtime or output.fmt in ("journal", "timesketch"):
        return host_time_bases(v)
    return None


def gaps(report: Report) -> list[export.Gap]:
    """Where the report says frames are missing, for the text view's markers."""
    from .. import export

    return [
        export.Gap(f.boot, f.stream, f.seq, f.kind.value)
        for f in report.findings
        if f.kind in (Kind.FRAME_MISSING, Kind.BOOT_TRUNCATED)
        and f.boot is not None and f.stream is not None and f.seq is not None
    ]


def _project(obj: dict[str, object], names: tuple[str, ...]) -> dict[str, object]:
    """--output-fields: the named keys; ``fields.K`` names record field K."""
    out: dict[str, object] = {}
    rec_fields = obj.get("fields")
    for n in names:
        if n in obj:
            out[n] = obj[n]
        elif n.startswith("fields.") and isinstance(rec_fields, dict) and n[7:] in rec_fields:
            out[n] = rec_fields[n[7:]]
    return out


def _write_projected(records: Iterable[LocatedRecord], out: TextIO, output: Output,
                     bases: Mapping[int, int] | None) -> int:
    import json

    from .. import export

    count = 0
    for lr in records:
        if output.fmt == "timesketch":
            obj = export.timesketch_object(lr, _wall(lr, bases))
        else:
            obj = lr.as_json()
            wall = _wall(lr, bases)
            if wall is not None:
                obj["host_time_untrusted"] = export._rfc3339_us(wall)
        out.write(json.dumps(_project(obj, output.output_fields), ensure_ascii=True) + "\n")
        count += 1
    return count


def _wall(lr: LocatedRecord, bases: Mapping[int, int] | None) -> int | None:
    base = bases.get(lr.boot) if bases else None
    return None if base is None else base + lr.record.t_ns // 1000


def _write_lines(fmt: str, records: Iterable[LocatedRecord], out: TextIO, bases: Mapping[int, int] | None,
                 output: Output, report: Report | None = None) -> int:
    """The text-stream formats; ``text`` here is the plain view (files and pipes)."""
    from .. import export

    if output.output_fields and fmt in ("jsonl", "timesketch"):
        return _write_projected(records, out, output, bases)
    if fmt == "jsonl":
        return export.write_jsonl(records, out, realtime_base_us=bases)
    if fmt == "timesketch":
        return export.write_timesketch(records, out, realtime_base_us=bases)
    if fmt == "syslog":
        return export.write_syslog(records, out, realtime_base_us=bases)
    return export.write_text_plain(records, out, realtime_base_us=bases, separators=output.out_dir is None,
                                   gaps=gaps(report) if report is not None else ())


def _merged(v: Verification, stream_ids: list[int]) -> Iterator[LocatedRecord]:
    """The chosen streams' records merged like Verifier.records(): by boot, then time."""
    iters = [v.verifier.stream_records(s) for s in stream_ids]
    if len(iters) == 1:
        return iters[0]
    return heapq.merge(*iters, key=lambda lr: (lr.boot, lr.record.t_ns))


def _line_format(output: Output, bases: Mapping[int, int] | None) -> Callable[
        [Iterable[LocatedRecord]], Iterator[str]] | None:
    """The formats whose every record is one line that depends on that record alone (the
    plain text view's boot separators are put in by the record pass)."""
    from .. import export

    if output.output_fields:
        return None
    if output.fmt == "text":
        return functools.partial(export.text_lines, realtime_base_us=bases)
    if output.fmt == "jsonl":
        return functools.partial(export.jsonl_lines, realtime_base_us=bases)
    if output.fmt == "syslog":
        return functools.partial(export.syslog_lines, realtime_base_us=bases)
    if output.fmt == "timesketch":
        return functools.partial(export.timesketch_lines, realtime_base_us=bases)
    return None


def _block_format(output: Output, bases: Mapping[int, int] | None) -> recordpass.BlockFormat | None:
    """The line formats that can make a frame's lines from its columns."""
    from .. import export

    if output.fmt == "jsonl" and not output.output_fields:
        return functools.partial(export.jsonl_block_lines, realtime_base_us=bases)
    if output.fmt == "text":
        return functools.partial(export.text_block_lines, realtime_base_us=bases)
    if output.fmt == "syslog":
        return functools.partial(export.syslog_block_lines, realtime_base_us=bases)
    return None


def _boot_separator(boot: int) -> bytes:
    from .. import export

    return export.BOOT_SEPARATOR.format(boot=boot).encode()


def _by_pieces(v: Verification, stream_ids: list[int], keep: RecordFilter, output: Output, seen: _Seen,
               jobs: int | None) -> bool:
    """Extract to stdout through the record pass in pieces (svsmlog.recordpass), where the
    output is the same: a one-line-per-record format (the plain text view too, its boot
    separators put in by the merge, where it has no gap markers), no -n or -r. In forked workers when
    there are enough records to pay for them, else in this process. Whether it did."""
    from .. import recordpass
    from ..parallel import default_jobs

    bases = _realtime_bases(v, output)
    fmt = _line_format(output, bases)
    if fmt is None or output.lines is not None or output.reverse:
        return False
    if output.fmt == "text" and (output.pager or _styled() or gaps(v.report)):
        return False  # the terminal's styled view, or gap markers between the lines
    jobs = jobs or default_jobs()
    if jobs > 1 and recordpass.total_records(v.verifier, stream_ids) < recordpass.MIN_RECORDS:
        jobs = 1
    chosen = keep if keep.selects else None
    pieces = recordpass.lines(v.verifier, stream_ids, fmt, chosen, jobs,
                              seen.services if keep.services else None,  # only --service asks
                              _block_format(output, bases),
                              _boot_separator if output.fmt == "text" else None,
                              keep.only_services)
    sys.stdout.flush()
    binary: BinaryIO | None = getattr(sys.stdout, "buffer", None)
    for blob in pieces:  # UTF-8 already (svsmlog.export.utf8_lines)
        if binary is not None:
            binary.write(blob)
        else:
            sys.stdout.write(blob.decode())
    if binary is not None:
        binary.flush()
    return True


def _utf8_stdout() -> TextIO:
    out = sys.stdout
    if (out.encoding or "").lower().replace("-", "") != "utf8" and hasattr(out, "reconfigure"):
        out.reconfigure(encoding="utf-8")
    return out


def _journal_fields(output: Output) -> frozenset[str] | None:
    return frozenset(output.output_fields) if output.output_fields else None


def _styled() -> bool:
    """Whether text on stdout is the styled view (a terminal, or FORCE_COLOR without NO_COLOR)."""
    return is_tty(sys.stdout) or (bool(os.environ.get("FORCE_COLOR")) and not os.environ.get("NO_COLOR"))


def _to_stdout(v: Verification, records: Iterable[LocatedRecord], output: Output) -> int:
    from .. import export

    bases = _realtime_bases(v, output)
    if output.fmt == "text" and (output.pager or _styled()):
        return _to_terminal(v, records, output, bases)
    if output.fmt == "journal":
        sys.stdout.flush()
        binary: BinaryIO = sys.stdout.buffer
        count = export.write_journal(records, binary, realtime_base_us=bases,
                                     only_fields=_journal_fields(output))
        binary.flush()
        return count
    return _write_lines(output.fmt, records, _utf8_stdout(), bases, output, v.report)


def pager_command() -> list[str] | None:
    """$SYSTEMD_PAGER, then $PAGER, else ``less -FRX`` (quits at once on one screen, keeps
    colours, leaves the text on the screen); None when it is set empty or to ``cat``."""
    for var in ("SYSTEMD_PAGER", "PAGER"):
        if var in os.environ:
            cmd = shlex.split(os.environ[var])
            return None if not cmd or cmd == ["cat"] else cmd
    return ["less", "-FRX"] if shutil.which("less") else None


def _to_terminal(v: Verification, records: Iterable[LocatedRecord], output: Output,
                 bases: Mapping[int, int] | None) -> int:
    """Styled text for a person, through the pager when asked."""
    from .. import export

    cmd = pager_command() if output.pager else None
    proc = None
    target: TextIO = sys.stdout
    if cmd is not None:
        env = {**os.environ, "LESSCHARSET": os.environ.get("LESSCHARSET", "utf-8")}
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, env=env, text=True, encoding="utf-8",
                                    errors="backslashreplace")
        except OSError:
            proc = None  # no pager: write to the terminal directly, as journalctl does
        else:
            assert proc.stdin is not None
            target = cast(TextIO, proc.stdin)
    console = pipe_safe(export.make_console(target, force_plain=False, force_terminal=proc is not None))
    try:
        return export.write_text(records, console, realtime_base_us=bases, separators=True,
                                 gaps=gaps(v.report))
    except BrokenPipeError:
        return 0  # the person quit the pager: not an error
    finally:
        if proc is not None:
            with contextlib.suppress(BrokenPipeError):  # the person quit the pager early
                target.close()
            proc.wait()


def _write_file(path: Path, fmt: str, records: Iterable[LocatedRecord], bases: Mapping[int, int] | None,
                output: Output, report: Report) -> int:
    try:
        if fmt == "journal":
            return _write_journal_file(path, records, bases, output)
        with open(path, "w", encoding="utf-8", newline="\n") as f:
            return _write_lines(fmt, records, f, bases, output, report)
    except OSError as e:
        raise CliError(f"{path}: cannot write: {e.strerror or e}") from None


JOURNAL_REMOTE = ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")


def journal_remote() -> str | None:
    for p in JOURNAL_REMOTE:
        if os.access(p, os.X_OK):
            return p
    return shutil.which("systemd-journal-remote")


def _write_journal_file(path: Path, records: Iterable[LocatedRecord], bases: Mapping[int, int] | None,
                        output: Output) -> int:
    """A real journal file (``journalctl --file``), made by systemd-journal-remote from the
    export stream: the export format in a file named *.journal would only look like one."""
    from .. import export

    remote = journal_remote()
    assert remote is not None  # checked before anything was written (extract)
    if path.exists():
        path.unlink()  # journal-remote appends to an existing file; -o DIR rewrites
    # stderr to a file: a pipe nobody reads while we write could fill and stall both sides.
    import tempfile

    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([remote, f"--output={path}", "-"], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=errors)
        assert proc.stdin is not None
        try:
            count = export.write_journal(records, cast(BinaryIO, proc.stdin), realtime_base_us=bases,
                                         only_fields=_journal_fields(output))
            proc.stdin.close()
        except BrokenPipeError:
            count = -1
        proc.wait()
        errors.seek(0)
        err = errors.read()
    if proc.returncode != 0 or count < 0:
        why = err.decode("utf-8", "replace").strip().splitlines()
        raise CliError(f"{path}: systemd-journal-remote failed ({why[-1] if why else proc.returncode})")
    return count


def _to_dir(v: Verification, stream_ids: list[int], keep: RecordFilter, output: Output) -> int:
    """One file per boot and stream, plus report.json. Each stream's records come in boot
    order, so only one file is open at a time however many boots the image holds."""
    import json
    assert output.out_dir is not None
    out_dir = output.out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "report.json").write_text(json.dumps(v.report.as_json(), indent=2) + "\n")
    except OSError as e:
        raise CliError(f"{out_dir}: cannot write there: {e.strerror or e}") from None
    bases = _realtime_bases(v, output)
    total = 0
    for sid in stream_ids:
        name = v.image.volume.region(sid).name
        records: Iterable[LocatedRecord] = v.verifier.stream_records(sid)
        if keep.selects:
            records = filter(keep, records)
        for boot, group in itertools.groupby(records, key=lambda lr: lr.boot):
            path = out_dir / f"boot-{boot:04d}-{name}.{EXTENSIONS[output.fmt]}"
            n = _write_file(path, output.fmt, group, bases, output, v.report)
            print(f"{path}: {n} record(s)")
            total += n
    print(f"{out_dir / 'report.json'}: verdict {v.report.verdict}")
    return total


# journalctl's -o modes; -o is our output directory, so these names would silently become
# directories. Refused with the option that does the same here.
JOURNALCTL_MODES = {
    "json": "-f jsonl", "json-pretty": "-f jsonl | jq .", "json-sse": "-f jsonl", "json-seq": "-f jsonl",
    "export": "-f journal", "verbose": "-f jsonl", "short": "-f text", "short-iso": "-f text --host-time",
    "short-precise": "-f text --host-time", "short-monotonic": "-f text", "short-full": "-f text --host-time",
    "short-unix": "-f text --host-time", "cat": "-f jsonl | jq -r .message", "with-unit": "-f text",
}


def check_output(output: Output) -> None:
    """Refuse combinations that would write something other than what they say."""
    if output.out_dir is not None:
        name = str(output.out_dir)
        if name in JOURNALCTL_MODES:
            raise CliError(f"-o/--output names the directory to write files into; for journalctl's "
                           f"'-o {name}' use '{JOURNALCTL_MODES[name]}' (or '-o ./{name}' for a directory "
                           "of that name)")
        if output.lines is not None or output.reverse:
            raise CliError("-n/--lines and -r/--reverse apply to output on stdout, not to -o DIR")
        if output.fmt == "journal" and journal_remote() is None:
            raise CliError("-f journal -o DIR writes journal files with systemd-journal-remote, which is "
                           "not installed; write the export stream instead: -f journal > svsm.export")
    if output.output_fields and output.fmt in ("text", "syslog"):
        raise CliError("--output-fields applies to -f jsonl, timesketch and journal")


def _tail(records: Iterable[LocatedRecord], output: Output) -> Iterable[LocatedRecord]:
    """-n N keeps the last N (memory: N records); -r reverses (memory: what is shown)."""
    if output.lines is not None:
        records = deque(records, maxlen=output.lines)
    if output.reverse:
        return reversed(list(records))
    return records


class _Seen:
    """The services of every record read, to tell a --service that names none of them."""

    def __init__(self) -> None:
        self.services: set[str] = set()

    def watch(self, records: Iterable[LocatedRecord]) -> Iterator[LocatedRecord]:
        add = self.services.add
        for lr in records:
            add(lr.record.service)
            yield lr


def extract(image_path: Path, partition: int | None, keys: KeyArgs, streams: list[str],
            keep: RecordFilter, output: Output, jobs: int | None = None, offset: int | None = None) -> Exit:
    check_output(output)
    with open_volume(image_path, partition, offset) as image:
        stream_ids = [resolve_stream(image.volume, s) for s in streams] or [
            r.stream for r in image.volume.superblock.regions
        ]
        stream_ids = list(dict.fromkeys(stream_ids))  # once each, in the order given
        v = verify_image(image, keys.keys, keys.stream_keys, keys.passphrase_file, keys.anchor, jobs,
                         keys.origin)
        if v.nothing_opened():
            raise v.no_key_error()
        keep = keep.resolved(sorted(v.report.boots), host_time_bases(v))
        if keep.wall and not host_time_bases(v):
            raise CliError("--since/--until with a date need a host clock, and no boot of this image "
                           "has one; give times since boot instead (250ms, 3s)")
        seen = _Seen()
        if output.out_dir is not None:
            _to_dir(v, stream_ids, keep, output)
        elif not _by_pieces(v, stream_ids, keep, output, seen, jobs):
            merged: Iterable[LocatedRecord] = _merged(v, stream_ids)
            if keep.services:
                merged = seen.watch(merged)
            selected = filter(keep, merged) if keep.selects else merged
            _to_stdout(v, _tail(selected, output), output)
        unknown = sorted(keep.services - seen.services) if output.out_dir is None else []
        if unknown and not seen.services & keep.services:
            raise CliError(f"no records of service {', '.join(map(repr, unknown))} in the streams read; "
                           f"services there: {_listing(sorted(seen.services))}")
        if output.fmt == "text" and output.out_dir is None:
            # On stderr, after the records: stdout carries records only (| wc -l), and a
            # pager has given the terminal back by now.
            report_console(sys.stderr).print(summary_panel(v.image, v.report))
        if output.realtime:
            say("note: --host-time: wall-clock times are the host-supplied boot clock plus the SVSM's "
                "time since boot; the host is untrusted")
        _note_origin(v)
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


# --------------------------------------------------------------------------- list-boots, crashes


def _host_iso(ns: int | None) -> str:
    from .. import export

    return export._rfc3339_us(ns // 1000) if ns else "-"


def list_boots(image_path: Path, partition: int | None, keys: KeyArgs, jobs: int | None,
               offset: int | None) -> Exit:
    """``extract --list-boots``: like journalctl's, with the offsets --boot takes."""
    with open_volume(image_path, partition, offset) as image:
        v = verify_image(image, keys.keys, keys.stream_keys, keys.passphrase_file, None, jobs, keys.origin)
        if v.nothing_opened():
            raise v.no_key_error()
        boots = sorted(v.report.boots)
        rows = [("IDX", "BOOT", "ENDING", "RECORDS", "HOST TIME AT BOOT (UNTRUSTED)")]
        for i, b in enumerate(boots):
            s = v.report.boots[b]
            records = sum(sp.records for sp in s.streams.values())
            rows.append((str(i + 1 - len(boots)), str(b), s.ending.value, str(records),
                         _host_iso(s.host_time_ns)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        out = _utf8_stdout()
        for r in rows:
            out.write("  ".join(c.rjust(w) if i < 2 or i == 3 else c.ljust(w)
                                for i, (c, w) in enumerate(zip(r, widths, strict=True))).rstrip() + "\n")
        return v.exit_code


def crashes(image_path: Path, partition: int | None, keys: KeyArgs, lines: int, as_json: bool,
            jobs: int | None, offset: int | None) -> Exit:
    import json

    from .. import export
    from ..crashes import summarize

    with open_volume(image_path, partition, offset) as image:
        v = verify_image(image, keys.keys, keys.stream_keys, keys.passphrase_file, None, jobs, keys.origin)
        if v.nothing_opened():
            raise v.no_key_error()
        result = summarize(v.verifier.records(), v.report, lines)
        bases = host_time_bases(v)
        out = _utf8_stdout()
        if as_json:
            doc = {"image": str(image_path), "verdict": v.report.verdict,
                   "boots": [{**c.as_json(), "host_time_ns_untrusted": v.report.boots[c.boot].host_time_ns}
                             for c in result]}
            out.write(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
        else:
            for c in result:
                out.write(f"boot {c.boot}: {c.ending}" + (f" ({c.detail})" if c.detail != c.ending else ""))
                host = bases.get(c.boot)
                if host is not None:
                    out.write(f", booted {export.host_time_label(host)} (untrusted)")
                out.write("\n")
                if c.ending == "panic":
                    out.write(f"  service   {export._visible(c.service or '-')} (stream "
                              f"{export._visible(c.stream or '-')}) at {format_ns(c.t_ns)} since boot\n")
                    out.write(f"  location  {export._visible(c.location or '-')}\n")
                    out.write(f"  reason    {export._visible(c.reason or '-')}\n")
                if c.last:
                    out.write(f"  last {len(c.last)} record(s):\n")
                    out.write("".join("    " + export.text_line(lr) for lr in c.last))
                out.write("\n")
            if v.report.verdict != "intact":
                out.write(f"verification: {v.report.scope()} ('svsmlog verify' gives the full report)\n")
        return v.exit_code
