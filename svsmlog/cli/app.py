"""The ``svsmlog`` command tree (typer) and the error boundary around it.

Every command runs inside ``guarded``: whatever goes wrong becomes one line on stderr,
``svsmlog: error: ...``, and one of the documented exit codes; ``--debug`` adds the
traceback. ``main`` also turns typer's usage errors into that one line (exit 2).
"""

from __future__ import annotations

# json is imported by the functions that use it: a plain verify never does (json costs a
# few ms of start-up, benchmarks/README.md).
import copy
import functools
import inspect
import os
import re
import sys
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from ..codec import DecodeError
from ..crypto import KEM_NAMES
from ..records import Level
from ..source import ImageError
from ..verify import VolumeError
from . import attest as attest_cmd
from . import reading
from . import simulate as simulate_cmd
from .common import CliError, Exit, OriginArgs, is_tty, open_volume, parse_since_boot, report_console


def _plain_usage_metavar(make_metavar: Callable[..., str]) -> Callable[..., str]:
    """typer writes a required argument as {IMAGE} in usage lines, which reads like a
    placeholder for a set; journalctl and the man page write IMAGE."""

    def plain(self: Any, ctx: Any, **kwargs: Any) -> str:
        var = make_metavar(self, ctx, **kwargs)
        return var[1:-1] if var.startswith("{") and var.endswith("}") else var

    return plain


typer.core.TyperArgument.make_metavar = _plain_usage_metavar(  # type: ignore[method-assign]
    typer.core.TyperArgument.make_metavar
)

try:  # typer >= 0.2x ships its own copy of click
    from typer import _click as click  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - older typer depends on click itself
    import click  # type: ignore[no-redef]

EXIT_CODES = """[bold]Exit status[/bold]

  0  verified intact (crash tails and rotated-out history are not failures)
  1  integrity violation: the image is not what the SVSM wrote
  2  bad usage, or an input that cannot be read (image, key, anchor)
  3  no given key opens the log (and nothing proves tampering), or the key's
     passphrase is missing or wrong
  4  partial: no violation, but not everything present is proven (frames no key
     given opens, or history only unauthenticated bytes explain)"""


def _version() -> str:
    from importlib import metadata  # only for --version: importing it costs more than verifying 1 MB

    try:
        return metadata.version("svsmlog")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


class _State:
    debug = False


F = TypeVar("F", bound=Callable[..., Any])


def _fail(message: str, code: int) -> NoReturn:
    if _State.debug:
        traceback.print_exc()
    print(f"svsmlog: error: {message}", file=sys.stderr)
    raise typer.Exit(code)


def guarded(func: F) -> F:
    """The error boundary of a command: a result code or exactly one error line."""

    @functools.wraps(func)
    def run(*args: Any, **kwargs: Any) -> None:
        try:
            code = func(*args, **kwargs)
        except typer.Exit:
            raise
        except CliError as e:
            _fail(str(e), e.code)
        except (ImageError, VolumeError, DecodeError) as e:
            _fail(str(e), Exit.USAGE)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except OSError as e:
            where = f"{e.filename}: " if e.filename else ""
            _fail(f"{where}{e.strerror or e}", Exit.USAGE)
        except KeyboardInterrupt:
            _fail("interrupted", 130)
        except Exception as e:  # a bug, or an input nobody foresaw: still no traceback by default
            hint = "" if _State.debug else " (run with --debug for a traceback)"
            _fail(f"unexpected {type(e).__name__}: {e}{hint}", Exit.USAGE)
        raise typer.Exit(int(code or 0))

    return run  # type: ignore[return-value]


def reflow(doc: str) -> str:
    """Help text from a docstring: prose paragraphs become one line each (rich wraps them to
    the terminal), indented paragraphs (examples) keep their lines."""
    paragraphs = inspect.cleandoc(doc).split("\n\n")
    out = []
    for p in paragraphs:
        lines = p.split("\n")
        indented = all(line.startswith(" ") for line in lines)
        out.append(p if indented else " ".join(line.strip() for line in lines))
    return "\n\n".join(out)


def command(name: str | None = None, *, exit_codes: bool = True) -> Callable[[F], F]:
    """Register a command: guarded, with reflowed help and, for the commands that verify,
    the exit codes as epilog (keygen, info and simulate verify nothing: 1 and 3 would
    mislead)."""

    def register(func: F) -> F:
        wrapped = guarded(func)
        wrapped.__doc__ = reflow(func.__doc__ or "")
        app.command(name, epilog=EXIT_CODES if exit_codes else None)(wrapped)
        return wrapped

    return register


BROKEN_PIPE = 141  # what a shell reports for a writer killed by SIGPIPE


def _quiet_broken_pipe_code() -> int:
    """The reader went away (``| head``): stop quietly, as a shell pipeline expects. Further
    writes (the interpreter flushes stdout at exit) go to /dev/null."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass
    return BROKEN_PIPE


def _quiet_broken_pipe() -> NoReturn:
    raise typer.Exit(_quiet_broken_pipe_code())


# --------------------------------------------------------------------------- the app

app = typer.Typer(
    name="svsmlog",
    help=reflow("""Read, verify and export the encrypted, integrity-protected logs that COCONUT-SVSM
writes inside an AMD SEV-SNP confidential VM.

IMAGE is what the host hands over: a raw svsmlog volume, a whole-disk GPT image holding
an svsmlog partition, or either of them as qcow2. Only the holder of a recipient private
key (the guest owner) can read or verify the log; 'info' shows what anyone can see.

[bold]Examples[/bold]

  svsmlog keygen --out owner
  svsmlog info disk.qcow2
  svsmlog verify disk.qcow2 --key owner.key --anchor anchor.json
  svsmlog extract disk.qcow2 --key owner.key --level warn --since 10s
  svsmlog extract disk.qcow2 --key owner.key --format journal -o out/"""),
    epilog=EXIT_CODES,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


class ColorWhen(StrEnum):
    auto = "auto"
    always = "always"
    never = "never"


def _show_version(value: bool) -> None:
    if value:
        print(f"svsmlog {_version()}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_show_version,
                                          help="Print the version and exit.")] = False,
    debug: Annotated[bool, typer.Option("--debug", help="On an error, print the Python traceback "
                                        "too.")] = False,
    color: Annotated[ColorWhen, typer.Option("--color", help="Colour reports and text output: on a "
                                             "terminal (auto), always (also into a pipe, e.g. for "
                                             "less -R) or never.")] = ColorWhen.auto,
) -> None:
    _State.debug = debug
    # as FORCE_COLOR and NO_COLOR (https://no-color.org) would, for every console of the run
    if color is ColorWhen.always:
        os.environ.pop("NO_COLOR", None)
        os.environ["FORCE_COLOR"] = "1"
    elif color is ColorWhen.never:
        os.environ.pop("FORCE_COLOR", None)
        os.environ["NO_COLOR"] = "1"


# Shared option declarations: the same names and help on every command that takes them.
ImageArg = Annotated[Path, typer.Argument(metavar="IMAGE", show_default=False,
                                          help="Raw svsmlog volume, whole-disk GPT image, or qcow2 of "
                                          "either.")]
ImagesArg = Annotated[list[Path], typer.Argument(metavar="IMAGE...", show_default=False,
                                                 help="Images (raw, GPT or qcow2), or directories "
                                                 "searched for *.img, *.qcow2, *.raw.")]
PartitionOpt = Annotated[int | None, typer.Option("--partition", metavar="N", min=1,
                                                  help="GPT entry number of the svsmlog partition, when "
                                                  "the disk has several.")]
KeyOpt = Annotated[list[Path] | None, typer.Option("--key", "-k", metavar="KEY",
                                                   help="Recipient private key (PKCS#8 PEM, e.g. from "
                                                   "'svsmlog keygen' or 'openssl genpkey -algorithm "
                                                   "X25519'). Repeatable.")]
StreamKeyOpt = Annotated[list[Path] | None, typer.Option("--stream-key", metavar="FILE",
                                                         help="Stream key from 'svsmlog export-key': "
                                                         "reads one stream of one boot. Repeatable; "
                                                         "with or without --key.")]
OffsetOpt = Annotated[int | None, typer.Option("--offset", metavar="BYTES", min=0,
                                               help="The volume starts at byte BYTES of the image (an "
                                               "MBR disk, or any layout without a GPT).")]
JobsOpt = Annotated[int | None, typer.Option("--jobs", "-j", metavar="N", min=1,
                                             help="Worker processes verifying a large volume in "
                                             "pieces (default: one per core). The "
                                             "result is the same.")]
PassphraseOpt = Annotated[Path | None, typer.Option("--passphrase-file", metavar="F",
                                                    help="File holding the passphrase of encrypted "
                                                    "keys (one trailing newline is ignored).")]


TrustRootOpt = Annotated[list[Path] | None, typer.Option("--trust-root", metavar="FILE",
                                                         help="Trust these roots (ARKs; an ASK or ASVK in "
                                                         "the same file is taken as an intermediate) "
                                                         "instead of AMD's pinned ARKs, for each "
                                                         "boot's attestation report. Repeatable.")]
AttCertOpt = Annotated[list[Path] | None, typer.Option("--cert", metavar="FILE",
                                                       help="More certificates for the boots' reports "
                                                       "(a VCEK or VLEK the log lacks, an ASK): PEM "
                                                       "or DER. Repeatable.")]
MeasurementOpt = Annotated[list[str] | None, typer.Option("--measurement", metavar="HEX",
                                                          help="A launch MEASUREMENT (96 hex digits) the "
                                                          "owner expects; a boot attested with another "
                                                          "is a violation. Repeatable.")]
RequireAttOpt = Annotated[bool, typer.Option("--require-attestation",
                                             help="A boot without a valid attestation report is a "
                                             "violation (needs --measurement).")]


def _key_args(key: list[Path] | None, stream_key: list[Path] | None, passphrase_file: Path | None,
              trust_root: list[Path] | None = None, cert: list[Path] | None = None,
              measurement: list[str] | None = None, require_attestation: bool = False) -> reading.KeyArgs:
    origin = OriginArgs(tuple(trust_root or ()), tuple(cert or ()), tuple(measurement or ()),
                        require_attestation)
    return reading.KeyArgs(list(key or []), list(stream_key or []), passphrase_file, origin=origin)


class Kem(StrEnum):
    x25519 = "x25519"
    mlkem768_x25519 = "mlkem768-x25519"


assert {k.value for k in Kem} == set(KEM_NAMES.values())


@command(exit_codes=False)
def keygen(
    out: Annotated[Path, typer.Option("--out", "-o", metavar="NAME", show_default=False,
                                      help="Writes NAME.key (private, mode 0600) and NAME.pub.")],
    kem: Annotated[Kem, typer.Option("--kem", help="Key type: X25519, or the post-quantum hybrid "
                                     "ML-KEM-768 + X25519.")] = Kem.x25519,
    passphrase_file: Annotated[Path | None, typer.Option("--passphrase-file", metavar="F",
                                                         help="Encrypt the private key with the "
                                                         "passphrase in F.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite existing key files.")] = False,
) -> Exit:
    """Generate a recipient key pair.

    Give NAME.pub to the launch configuration (the SVSM seals each boot's log key to it);
    keep NAME.key to read and verify the log. Keys made with openssl work as well.

    [bold]Examples[/bold]

      svsmlog keygen --out owner
      svsmlog keygen --out owner --kem mlkem768-x25519 --passphrase-file pass.txt
      openssl genpkey -algorithm X25519 -out owner.key
      openssl pkey -in owner.key -pubout -out owner.pub
    """
    from . import keygen as keygen_cmd

    print(keygen_cmd.keygen(out, kem.value, passphrase_file, force))
    return Exit.INTACT


@command(exit_codes=False)
def info(
    image: ImagesArg,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, frames included; with "
                                          "several images one line per image.")] = False,
    frames: Annotated[bool, typer.Option("--frames", help="List every frame (text output).")] = False,
    partition: PartitionOpt = None,
    offset: Annotated[int | None, typer.Option("--offset", metavar="BYTES", min=0,
                                               help="The volume starts at byte BYTES of the image (an "
                                               "MBR disk, or any layout without a GPT).")] = None,
    jobs: Annotated[int | None, typer.Option("--jobs", "-j", metavar="N", min=1, help="With several "
                                             "images: how many are read in parallel (default: one per "
                                             "core).")] = None,
) -> Exit:
    """Show what anyone holding the image sees, without a key.

    Volume id, geometry, streams (regions) and their frames, boot numbers, and the key ids
    of the recipients the log is sealed to: what the host can see too. Nothing here is
    authenticated; use 'verify' for that.

    [bold]Examples[/bold]

      svsmlog info disk.qcow2
      svsmlog info disk.img --frames
      svsmlog info disk.img --json | jq '.frames[] | select(.stream == "vtpm")'
      svsmlog info images/ --json
    """
    from . import info as info_cmd

    many = reading.many_images(image)
    if many is not None:
        return reading.info_many(many, partition, offset, as_json, jobs)
    with open_volume(image[0], partition, offset) as img:
        result = info_cmd.collect(img, list_frames=as_json or frames)
        if as_json:
            result.write_json(sys.stdout)
        else:
            info_cmd.render(report_console(), result, list_frames=frames)
    return Exit.INTACT


@command()
def verify(
    image: ImagesArg,
    key: KeyOpt = None,
    anchor: Annotated[Path | None, typer.Option("--anchor", metavar="FILE",
                                                help="Anchor (head commitment): an anchor file "
                                                "(JSON), or the SEV-SNP anchor report (binary or hex) "
                                                "whose REPORT_DATA carries it, checked like a boot's "
                                                "report. Detects a log cut short.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON object; with several "
                                          "images one line per image, with its path.")] = False,
    passphrase_file: PassphraseOpt = None,
    stream_key: StreamKeyOpt = None,
    partition: PartitionOpt = None,
    offset: OffsetOpt = None,
    jobs: JobsOpt = None,
    measurement: MeasurementOpt = None,
    require_attestation: RequireAttOpt = False,
    trust_root: TrustRootOpt = None,
    cert: AttCertOpt = None,
) -> Exit:
    """Verify the log and report.

    For every boot and stream: the verified range, how the boot ended (clean shutdown,
    panic, crash), history the ring rotated out, and every finding with its kind, boot,
    stream, sequence number and byte offset in the image. With --json:
    {"verdict": "intact"|"partial"|"violated"|"unverifiable", "scope": ..., "boots": [...],
    "findings": [...]}.

    [bold]Examples[/bold]

      svsmlog verify disk.qcow2 --key owner.key
      svsmlog verify disk.img --key owner.key --anchor anchor.json --json | jq .verdict
      svsmlog verify disk.img --stream-key vtpm-boot3.json
      svsmlog verify images/ --key owner.key --jobs 8 --json > reports.jsonl

    With several images (or a directory), each is verified in a worker process of its own
    (--jobs at a time): one summary table, or one JSON line per image; the exit status is
    the worst of them.
    """
    keys = _key_args(key, stream_key, passphrase_file, trust_root, cert, measurement, require_attestation)
    many = reading.many_images(image)
    if many is not None:
        return reading.verify_many(many, partition, offset, keys, anchor, as_json, jobs)
    return reading.verify(image[0], partition, keys, anchor, as_json, jobs, offset)


class Format(StrEnum):
    text = "text"
    jsonl = "jsonl"
    journal = "journal"
    syslog = "syslog"
    timesketch = "timesketch"



@command()
def extract(
    image: ImagesArg,
    key: KeyOpt = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text: readable view; jsonl: one JSON "
                                        "object a line; journal: systemd Journal Export Format; "
                                        "syslog: RFC 5424 lines; timesketch: JSON lines for "
                                        "Timesketch (wall-clock times, untrusted).")] = Format.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="DIR",
                                                help="Write one file per boot and stream "
                                                "(boot-0001-vtpm.jsonl ...) and report.json into DIR; "
                                                "with -f journal, journal files for journalctl --file.")
                      ] = None,
    boot: Annotated[list[int] | None, typer.Option("--boot", "-b", metavar="N", help="Only boot N; as "
                                                   "journalctl, 0 is the newest boot and -1 the one "
                                                   "before. Repeatable.")
                    ] = None,
    list_boots: Annotated[bool, typer.Option("--list-boots", help="List the boots (offset, number, "
                                             "host time, ending) and exit.")] = False,
    stream: Annotated[list[str] | None, typer.Option("--stream", metavar="S", help="Only stream S (name "
                                                     "or id). Repeatable.")] = None,
    service: Annotated[list[str] | None, typer.Option("--service", metavar="S", help="Only records of "
                                                      "service S. Repeatable.")] = None,
    level: Annotated[str | None, typer.Option("--level", metavar="L", help="Only level L and more "
                                              "severe: error (err), warn (warning), info, debug, trace.")
                     ] = None,
    priority: Annotated[str | None, typer.Option("--priority", "-p", metavar="P", help="Only syslog "
                                                 "priority P and more severe (emerg, alert, crit, err, "
                                                 "warning, notice, info, debug, or 0-7), or a range "
                                                 "FROM..TO such as err..warning.")] = None,
    since: Annotated[str | None, typer.Option("--since", "-S", metavar="T", help="Only records at or "
                                              "after T since boot: seconds (12.5) or with a unit: ns, "
                                              "us, ms, s, m, h (250ms, 3s); with --host-time also a "
                                              "date, '2024-05-01 12:00:00' (UTC) or @UNIX-SECONDS.")
                     ] = None,
    until: Annotated[str | None, typer.Option("--until", "-U", metavar="T", help="Only records at or "
                                              "before T (same forms as --since).")] = None,
    grep: Annotated[str | None, typer.Option("--grep", "-g", metavar="RE", help="Only records whose "
                                             "message or a field value matches the Python regular "
                                             "expression RE; case-insensitive unless RE has an "
                                             "upper-case letter.")] = None,
    lines: Annotated[int | None, typer.Option("--lines", "-n", metavar="N", min=0, help="Only the last "
                                              "N records (after the other filters).")] = None,
    reverse: Annotated[bool, typer.Option("--reverse", "-r", help="Newest records first.")] = False,
    no_pager: Annotated[bool, typer.Option("--no-pager", help="Do not page text output on a terminal "
                                           "($SYSTEMD_PAGER, $PAGER or less -FRX).")] = False,
    output_fields: Annotated[str | None, typer.Option("--output-fields", metavar="F,...", help="jsonl, "
                                                      "timesketch, journal: only these fields "
                                                      "(fields.KEY for a record field).")] = None,
    host_time: Annotated[bool, typer.Option("--host-time", help="Wall-clock times, in every format: "
                                            "the host-reported boot time plus time since boot "
                                            "(untrusted, and marked so).")] = False,
    anchor: Annotated[Path | None, typer.Option("--anchor", metavar="FILE",
                                                help="Anchor to check, as verify does (anchor file "
                                                "or SEV-SNP anchor report): a log cut short is a "
                                                "violation.")] = None,
    passphrase_file: PassphraseOpt = None,
    stream_key: StreamKeyOpt = None,
    partition: PartitionOpt = None,
    offset: OffsetOpt = None,
    jobs: JobsOpt = None,
    measurement: MeasurementOpt = None,
    require_attestation: RequireAttOpt = False,
    trust_root: TrustRootOpt = None,
    cert: AttCertOpt = None,
) -> Exit:
    """Write the verified records.

    The log is verified first; records of a boot and stream with an integrity violation
    are still written, marked unverified. Times are since the boot (the SVSM's own
    clock); the host's wall-clock time is untrusted and shown only with --host-time (the
    journal format uses it for __REALTIME_TIMESTAMP, marked SVSM_REALTIME_SOURCE). Text
    on a terminal goes through a pager; the verification summary goes to stderr.

    [bold]Examples[/bold]

      svsmlog extract disk.qcow2 --key owner.key
      svsmlog extract disk.img --key owner.key -b -1 --stream vtpm -p warning
      svsmlog extract disk.img --key owner.key --since 2.5 --until 3s --grep 'PCR\\d+'
      svsmlog extract disk.img --key owner.key --host-time --since '2024-05-01 12:00'
      svsmlog extract disk.img --key owner.key -f jsonl | jq -r .message
      svsmlog extract disk.img --key owner.key -f journal -o out/
      svsmlog extract disk.img --key owner.key -f timesketch > svsm.timesketch.jsonl
    """
    keys = _key_args(key, stream_key, passphrase_file, trust_root, cert, measurement,
                     require_attestation)._replace(anchor=anchor)
    many = reading.many_images(image)
    if many is not None and (output is None or list_boots):
        raise CliError("with several images, extract writes into -o DIR (one subdirectory per image)")
    if list_boots:
        return reading.list_boots(image[0], partition, keys, jobs, offset)
    keep = reading.RecordFilter(
        boots=frozenset(b for b in boot or () if b > 0),
        boot_offsets=frozenset(b for b in boot or () if b <= 0),
        services=frozenset(service or ()),
        level=_level(level) if level is not None else None,
        priority=parse_priority(priority) if priority is not None else None,
        grep=reading.compile_grep(grep),
        **_times(since, until, host_time),  # type: ignore[arg-type]
    )
    fields = tuple(f.strip() for f in (output_fields or "").split(",") if f.strip())
    pager = not no_pager and fmt is Format.text and output is None and is_tty(sys.stdout)
    out = reading.Output(fmt.value, output, host_time, lines, reverse, pager, fields)
    if many is not None:
        return reading.extract_many(many, partition, keys, list(stream or []), keep, out, jobs, offset)
    return reading.extract(image[0], partition, keys, list(stream or []), keep, out, jobs, offset)


_LEVEL_ALIASES = {"err": "error", "warning": "warn"}


def _level(text: str) -> Level:
    name = _LEVEL_ALIASES.get(text.strip().lower(), text.strip().lower())
    try:
        return Level.parse(name)
    except ValueError:
        raise CliError(f"invalid --level {text!r}: expected error (err), warn (warning), info, debug "
                       "or trace") from None


# syslog severities (RFC 5424), as journalctl -p names them.
PRIORITIES = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warning": 4, "notice": 5, "info": 6, "debug": 7}
_PRIORITY_ALIASES = {"panic": 0, "error": 3, "warn": 4}


def _one_priority(text: str) -> int:
    t = text.strip().lower()
    if t.isdigit() and int(t) <= 7:
        return int(t)
    value = PRIORITIES.get(t, _PRIORITY_ALIASES.get(t))
    if value is None:
        raise CliError(f"invalid --priority {text!r}: expected {', '.join(PRIORITIES)}, 0-7, or a range "
                       "such as err..warning")
    return value


def parse_priority(text: str) -> tuple[int, int]:
    """journalctl -p: one priority means it and the more severe ones; FROM..TO a range."""
    if ".." in text:
        lo, _, hi = text.partition("..")
        a, b = _one_priority(lo), _one_priority(hi)
        return (min(a, b), max(a, b))
    return (0, _one_priority(text))


def _times(since: str | None, until: str | None, host_time: bool) -> dict[str, int | None]:
    """--since/--until: time since boot, or with --host-time a wall-clock date (UTC)."""
    out: dict[str, int | None] = {}
    for name, text, key in (("--since", since, "since"), ("--until", until, "until")):
        if text is None:
            continue
        wall = parse_wall_clock(text) if host_time else None
        if wall is not None:
            out[f"{key}_wall_us"] = wall
        else:
            out[f"{key}_ns"] = parse_since_boot(text, name)
    return out


def parse_wall_clock(text: str) -> int | None:
    """A date as journalctl takes one (ISO 8601, or @UNIX-SECONDS), in UNIX µs; None when
    ``text`` is not a date (then it is a time since boot). A date without a zone is UTC:
    every time svsmlog prints is UTC."""
    t = text.strip()
    if t.startswith("@"):
        from decimal import Decimal, InvalidOperation  # only for --since/--until: 1 ms of imports

        try:
            return int(Decimal(t[1:]) * 1_000_000)
        except InvalidOperation:
            raise CliError(f"invalid date {text!r}: expected @UNIX-SECONDS") from None
    if not re.match(r"^\d{4}-\d{2}-\d{2}", t):
        return None
    try:
        d = datetime.fromisoformat(t.replace(" UTC", "").replace(" ", "T", 1))
    except ValueError:
        raise CliError(f"invalid date {text!r}: expected YYYY-MM-DD[ HH:MM[:SS[.ffffff]]][Z|+HH:MM]"
                       ) from None
    if d.tzinfo is None:
        d = d.replace(tzinfo=UTC)
    delta = d - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@command()
def crashes(
    image: ImageArg,
    key: KeyOpt = None,
    lines: Annotated[int, typer.Option("--lines", "-n", metavar="N", min=0, help="Records shown before "
                                       "each boot's end.")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: the verdict and a list of "
                                          "boots.")] = False,
    passphrase_file: PassphraseOpt = None,
    stream_key: StreamKeyOpt = None,
    partition: PartitionOpt = None,
    offset: OffsetOpt = None,
    jobs: JobsOpt = None,
) -> Exit:
    """Show how each boot ended, and why.

    Per boot: clean, panic, crash (a torn tail) or unknown (no shutdown record); for a
    panic its service, location (file:line) and reason; and the last N records before
    the end, all streams merged by time. The log is verified first, as by 'verify'.

    [bold]Examples[/bold]

      svsmlog crashes disk.img --key owner.key
      svsmlog crashes disk.img --key owner.key -n 3 --json | jq '.boots[] | select(.ending == "panic")'
    """
    return reading.crashes(image, partition, _key_args(key, stream_key, passphrase_file), lines, as_json,
                           jobs, offset)


class TableFormat(StrEnum):
    parquet = "parquet"
    jsonl = "jsonl"


@command()
def fleet(
    image: ImagesArg,
    out: Annotated[Path, typer.Option("--out", metavar="DIR", show_default=False,
                                      help="Writes images.parquet, findings.parquet and records/ "
                                      "(one file per image) into DIR.")],
    key: KeyOpt = None,
    anchor: Annotated[Path | None, typer.Option("--anchor", metavar="FILE", help="Anchor checked "
                                                "against every image.")] = None,
    fmt: Annotated[TableFormat, typer.Option("--format", "-f", help="parquet (pyarrow), or jsonl: "
                                             "both load into DuckDB, Spark and pandas as they are.")
                   ] = TableFormat.parquet,
    scheduler: Annotated[str, typer.Option("--scheduler", metavar="S", help="Dask scheduler: "
                                           "processes, threads, sync, or the address of a "
                                           "dask.distributed scheduler (tcp://host:8786).")
                         ] = "processes",
    workers: Annotated[int | None, typer.Option("--workers", "-j", metavar="N", min=1, help="Local "
                                                "workers (default: one per core).")] = None,
    passphrase_file: PassphraseOpt = None,
    stream_key: StreamKeyOpt = None,
    partition: PartitionOpt = None,
    offset: OffsetOpt = None,
    measurement: MeasurementOpt = None,
    require_attestation: RequireAttOpt = False,
    trust_root: TrustRootOpt = None,
    cert: AttCertOpt = None,
) -> Exit:
    """Verify a fleet's images with Dask and write tables for analysis.

    One row per image (verdict, counts, error), one per finding, one per record (with the
    image's path; host time marked untrusted). Needs the optional 'fleet' extra (dask,
    pyarrow): pip install 'svsmlog[fleet]'. Exit status: the worst of the images.

    [bold]Examples[/bold]

      svsmlog fleet images/ --key owner.key --out fleet/
      duckdb -c "SELECT verdict, count(*) FROM 'fleet/images.parquet' GROUP BY verdict"
      duckdb -c "SELECT image, message FROM 'fleet/records/*.parquet' WHERE panic"
    """
    keys = _key_args(key, stream_key, passphrase_file, trust_root, cert, measurement, require_attestation)
    if not keys.keys and not keys.stream_keys:
        raise CliError("give a private key with --key, or a stream key with --stream-key")
    return reading.fleet_run(reading.many_images(image) or image, out, keys, anchor, fmt.value, scheduler,
                             workers, partition, offset)


@command("export-key")
def export_key(
    image: ImageArg,
    boot: Annotated[int, typer.Option("--boot", metavar="N", show_default=False, help="The boot.")],
    stream: Annotated[str, typer.Option("--stream", metavar="S", show_default=False,
                                        help="The stream (name or id).")],
    out: Annotated[Path, typer.Option("--out", metavar="FILE", show_default=False,
                                      help="Where to write the stream key (mode 0600).")],
    key: KeyOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite FILE if it exists.")] = False,
    passphrase_file: PassphraseOpt = None,
    stream_key: StreamKeyOpt = None,
    partition: PartitionOpt = None,
) -> Exit:
    """Export the key of one stream of one boot.

    FILE lets its holder read and verify that stream of that boot, and nothing else: give
    it to 'extract' or 'verify' with --stream-key. It is a secret: anyone holding it and
    the image reads those records.

    [bold]Examples[/bold]

      svsmlog export-key disk.img --key owner.key --boot 3 --stream vtpm --out vtpm-boot3.json
      svsmlog extract disk.img --stream-key vtpm-boot3.json --stream vtpm
    """
    return reading.export_key(image, partition, _key_args(key, stream_key, passphrase_file), boot, stream,
                              out, force)


class StreamLayout(StrEnum):
    aggregated = "aggregated"
    per_service = "per-service"


@command(exit_codes=False)
def simulate(
    image: Annotated[Path, typer.Option("--image", metavar="IMG", show_default=False,
                                        help="Image to write: created (sparse, --size) if absent, "
                                        "else the boots are appended as reboots of the same VM.")],
    recipient: Annotated[list[Path] | None, typer.Option("--recipient", metavar="PUB",
                                                         help="Owner public key the log is sealed "
                                                         "to. Repeatable; needed unless --config "
                                                         "names owners.")] = None,
    config: Annotated[Path | None, typer.Option("--config", metavar="FILE", help="Launch configuration "
                                                "(launch.toml).")] = None,
    scenario: Annotated[str | None, typer.Option("--scenario", metavar="NAME", help="What the guest "
                                                 f"does: {simulate_cmd.SCENARIO_HELP}. "
                                                 "(default: normal)")] = None,
    boots: Annotated[int | None, typer.Option("--boots", metavar="N", min=1, help="Boots to run. "
                                              "(default: 1)")] = None,
    streams: Annotated[StreamLayout | None, typer.Option("--streams", help="One stream for all "
                                                         "services, or one per service (overrides "
                                                         "the config).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", metavar="S", help="Seed: the same seed gives "
                                             "the same records. (default: 0)")] = None,
    truth: Annotated[Path | None, typer.Option("--truth", metavar="FILE", help="Write every durable "
                                               "record (JSON lines), to compare with 'extract'.")] = None,
    anchor_out: Annotated[Path | None, typer.Option("--anchor-out", metavar="FILE", help="Write the "
                                                    "anchor taken after the last completed write.")
                          ] = None,
    crash_after_writes: Annotated[int | None, typer.Option("--crash-after-writes", metavar="K", min=0,
                                                           help="The device stops after K writes "
                                                           "(formatting included).")] = None,
    tear_sectors: Annotated[int | None, typer.Option("--tear-sectors", metavar="T", min=0,
                                                     help="With --crash-after-writes: write K+1 lands "
                                                     "only its first T sectors.")] = None,
    size: Annotated[str | None, typer.Option("--size", metavar="SIZE", help="Size of a new image: bytes "
                                             "or K, M, G, T (powers of 1024). (default: 64M)")] = None,
    records: Annotated[int | None, typer.Option("--records", metavar="N", min=1, help="Steady-state "
                                                "records per boot, instead of the scenario's "
                                                "duration (boot, attestation and shutdown lines come "
                                                "on top).")] = None,
    debug_key: Annotated[Path | None, typer.Option("--debug-key", metavar="PUB", help="Debug recipient "
                                                   "public key, when the config names none.")] = None,
    attest: Annotated[bool, typer.Option("--attest", help="Every boot asks the model's TEST-ONLY AMD-SP "
                                         "for an SEV-SNP report binding it, and stores it with the "
                                         "VCEK.")] = False,
    attest_out: Annotated[Path | None, typer.Option("--attest-out", metavar="DIR", help="With --attest: "
                                                    "write the TEST-ONLY ASK+ARK (for --trust-root) "
                                                    "and the expected measurement into DIR.")] = None,
    snp_build: Annotated[str | None, typer.Option("--snp-build", metavar="NAME", help="With --attest: "
                                                  "launch another SVSM build (another MEASUREMENT) "
                                                  "than the expected one.")] = None,
    refuse_report: Annotated[bool, typer.Option("--refuse-report", help="With --attest: the host "
                                                "refuses every boot's report request (the boots are "
                                                "written unattested).")] = False,
    anchor_report_out: Annotated[Path | None, typer.Option("--anchor-report-out", metavar="FILE",
                                                           help="Just before it ends, the last boot issues "
                                                           "an anchor report (SEV-SNP, REPORT_DATA = "
                                                           "anchor || zero nonce): write it, binary, for "
                                                           "verify --anchor. Implies --attest.")] = None,
) -> Exit:
    """Simulate the SVSM writing its log (for tests and demonstrations).

    Runs the model of the SVSM's writer over an image, boot after boot, optionally
    crashing mid-write, and writes what a host would hand over.

    [bold]Examples[/bold]

      svsmlog simulate --recipient owner.pub --image disk.img --boots 3 --seed 1
      svsmlog simulate --recipient owner.pub --image disk.img --truth truth.jsonl --anchor-out anchor.json
      svsmlog simulate --recipient owner.pub --image disk.img --crash-after-writes 40 --tear-sectors 1
      svsmlog simulate --recipient owner.pub --image disk.img --attest --attest-out amd/
      svsmlog simulate --recipient owner.pub --image disk.img --attest-out amd/ --anchor-report-out anchor.bin
    """
    options: dict[str, Any] = {
        "image": image, "recipients": list(recipient or []), "config": config, "scenario": scenario,
        "boots": boots, "streams": streams.value if streams else None, "seed": seed, "truth": truth,
        "anchor_out": anchor_out, "crash_after_writes": crash_after_writes, "tear_sectors": tear_sectors,
        "size": size, "debug_key": debug_key, "records": records, "attest": attest,
        "attest_out": attest_out, "snp_build": snp_build, "refuse_report": refuse_report,
        "anchor_report_out": anchor_report_out,
    }
    print(simulate_cmd.simulate(options))
    return Exit.INTACT


command("attest")(attest_cmd.attest)


# --------------------------------------------------------------------------- entry point


COMPLETION_SHELLS = ("bash", "zsh", "fish", "powershell", "pwsh")


def _show_completion(argv: list[str]) -> int | None:
    """``--show-completion [SHELL]``, answered here: typer detects the parent shell and
    fails under sh or dash with exit 1 and no error prefix, whatever shell is named."""
    if not argv or argv[0] != "--show-completion":
        return None
    shell = argv[1] if len(argv) > 1 else os.path.basename(os.environ.get("SHELL", ""))
    if shell not in COMPLETION_SHELLS:
        print(f"svsmlog: error: no shell completion for {shell or 'this shell'!r}; name one of "
              f"{', '.join(COMPLETION_SHELLS)} (svsmlog --show-completion bash)", file=sys.stderr)
        return Exit.USAGE
    from typer._completion_shared import get_completion_script

    print(get_completion_script(prog_name="svsmlog", complete_var="_SVSMLOG_COMPLETE", shell=shell))
    return Exit.INTACT


# Root options that may come before the command, and whether each takes a value.
_ROOT_OPTIONS = {"--debug": False, "--color": True}


def _app_for(argv: list[str]) -> typer.Typer:
    """The app to build for this command line: ``app`` with only the command it names.

    typer turns every registered command's signature into click parameters before it
    parses anything (about 30 ms for the eleven commands, more than verifying a small
    image); the one command run needs only its own. The group, its callback (``--debug``,
    ``--color``) and the command are the same objects, so its help, usage lines and errors
    are the same. Anything else (no command, ``--help`` before it, an unknown name, shell
    completion) gets the whole app."""
    if any(k.startswith("_SVSMLOG_COMPLETE") for k in os.environ):
        return app
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, _ = arg.partition("=")
        if name not in _ROOT_OPTIONS or (eq and not _ROOT_OPTIONS[name]):
            break
        i += 1 if eq or not _ROOT_OPTIONS[name] else 2
    if i >= len(argv):
        return app
    chosen = [c for c in app.registered_commands if _command_name(c) == argv[i]]
    if len(chosen) != 1:
        return app
    single = copy.copy(app)
    single.registered_commands = chosen
    return single


def _command_name(info: Any) -> str:
    if info.name:
        return str(info.name)
    return typer.main.get_command_name(info.callback.__name__)


def main(argv: list[str] | None = None) -> int:
    """The console script: usage errors too become one line and exit status 2."""
    _State.debug = False
    shown = _show_completion(sys.argv[1:] if argv is None else argv)
    if shown is not None:
        return shown
    command = typer.main.get_command(_app_for(sys.argv[1:] if argv is None else argv))
    try:
        code = command.main(args=argv, prog_name="svsmlog", standalone_mode=False)
    except click.exceptions.NoArgsIsHelpError as e:
        help_text = e.format_message()  # empty when typer's rich help has already printed it
        if help_text.strip():
            print(help_text, file=sys.stderr)
        return Exit.USAGE
    except click.exceptions.UsageError as e:
        return _usage_error(e)
    except click.exceptions.ClickException as e:
        print(f"svsmlog: error: {e.format_message()}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:
        return _quiet_broken_pipe_code()
    except (typer.Abort, KeyboardInterrupt):
        print("svsmlog: error: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


def _usage_error(e: Any) -> int:
    message = e.format_message().rstrip(".")
    message = message[:1].lower() + message[1:]
    hint = f" (see '{e.ctx.command_path} --help')" if e.ctx is not None else ""
    print(f"svsmlog: error: {message}{hint}", file=sys.stderr)
    return Exit.USAGE
