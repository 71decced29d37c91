"""The ``svsmlog`` command tree (typer) and the error boundary around it.

Every command runs inside ``guarded``: whatever goes wrong becomes one line on stderr,
``svsmlog: error: ...``, and one of the documented exit codes; ``--debug`` adds the
traceback. ``main`` also turns typer's usage errors into that one line (exit 2).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer

from ..codec import DecodeError
from ..crypto import KEM_NAMES
from ..export import FORMATS
from ..records import Level
from ..source import ImageError
from ..verify import VolumeError
from . import attest as attest_cmd
from . import info as info_cmd
from . import keygen as keygen_cmd
from . import reading
from . import simulate as simulate_cmd
from .common import CliError, Exit, open_volume, parse_since_boot, report_console

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


def command(name: str | None = None) -> Callable[[F], F]:
    """Register a command: guarded, with reflowed help and the exit codes as epilog."""

    def register(func: F) -> F:
        wrapped = guarded(func)
        wrapped.__doc__ = reflow(func.__doc__ or "")
        app.command(name, epilog=EXIT_CODES)(wrapped)
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
) -> None:
    _State.debug = debug


# Shared option declarations: the same names and help on every command that takes them.
ImageArg = Annotated[Path, typer.Argument(metavar="IMAGE", show_default=False,
                                          help="Raw svsmlog volume, whole-disk GPT image, or qcow2 of "
                                          "either.")]
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
JobsOpt = Annotated[int | None, typer.Option("--jobs", "-j", metavar="N", min=1,
                                             help="Worker processes verifying a large volume in "
                                             "pieces (default: one per core; qcow2 images: 1). The "
                                             "result is the same.")]
PassphraseOpt = Annotated[Path | None, typer.Option("--passphrase-file", metavar="F",
                                                    help="File holding the passphrase of encrypted "
                                                    "keys (one trailing newline is ignored).")]


def _key_args(key: list[Path] | None, stream_key: list[Path] | None, passphrase_file: Path | None
              ) -> reading.KeyArgs:
    return reading.KeyArgs(list(key or []), list(stream_key or []), passphrase_file)


class Kem(StrEnum):
    x25519 = "x25519"
    mlkem768_x25519 = "mlkem768-x25519"


assert {k.value for k in Kem} == set(KEM_NAMES.values())


@command()
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
    print(keygen_cmd.keygen(out, kem.value, passphrase_file, force))
    return Exit.INTACT


@command()
def info(
    image: ImageArg,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object, frames included.")] = False,
    frames: Annotated[bool, typer.Option("--frames", help="List every frame (text output).")] = False,
    partition: PartitionOpt = None,
) -> Exit:
    """Show what anyone holding the image sees, without a key.

    Volume id, geometry, streams (regions) and their frames, boot numbers, and the key ids
    of the recipients the log is sealed to: what the host can see too. Nothing here is
    authenticated; use 'verify' for that.

    [bold]Examples[/bold]

      svsmlog info disk.qcow2
      svsmlog info disk.img --frames
      svsmlog info disk.img --json | jq '.frames[] | select(.stream == "vtpm")'
    """
    with open_volume(image, partition) as img:
        result = info_cmd.collect(img)
        if as_json:
            print(json.dumps(result.as_json(), indent=2))
        else:
            info_cmd.render(report_console(), result, list_frames=frames)
    return Exit.INTACT


@command()
def verify(
    image: ImageArg,
    key: KeyOpt = None,
    anchor: Annotated[Path | None, typer.Option("--anchor", metavar="FILE",
                                                help="Anchor (head commitment) from an attestation "
                                                "report: detects a log cut short.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="The report as one JSON object.")] = False,
    passphrase_file: PassphraseOpt = None,
    stream_key: StreamKeyOpt = None,
    partition: PartitionOpt = None,
    jobs: JobsOpt = None,
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
    """
    keys = _key_args(key, stream_key, passphrase_file)
    return reading.verify(image, partition, keys, anchor, as_json, jobs)


class Format(StrEnum):
    text = "text"
    jsonl = "jsonl"
    journal = "journal"
    syslog = "syslog"


assert tuple(f.value for f in Format) == tuple(FORMATS)


class LevelName(StrEnum):
    error = "error"
    warn = "warn"
    info = "info"
    debug = "debug"
    trace = "trace"


@command()
def extract(
    image: ImageArg,
    key: KeyOpt = None,
    fmt: Annotated[Format, typer.Option("--format", "-f", help="text: readable view with a verification "
                                        "summary; jsonl: one JSON object a line; journal: systemd "
                                        "Journal Export Format; syslog: RFC 5424 lines.")] = Format.text,
    output: Annotated[Path | None, typer.Option("--output", "-o", metavar="DIR",
                                                help="Write one file per boot and stream "
                                                "(boot-0001-vtpm.jsonl ...) and report.json into DIR.")
                      ] = None,
    boot: Annotated[list[int] | None, typer.Option("--boot", metavar="N", help="Only boot N. "
                                                   "Repeatable.")] = None,
    stream: Annotated[list[str] | None, typer.Option("--stream", metavar="S", help="Only stream S (name "
                                                     "or id). Repeatable.")] = None,
    service: Annotated[list[str] | None, typer.Option("--service", metavar="S", help="Only records of "
                                                      "service S. Repeatable.")] = None,
    level: Annotated[LevelName | None, typer.Option("--level", metavar="L", help="Only level L and "
                                                    "more severe: error, warn, info, debug, trace.")
                     ] = None,
    since: Annotated[str | None, typer.Option("--since", metavar="T", help="Only records at or after T "
                                              "since boot: seconds (12.5) or with a unit: ns, us, ms, "
                                              "s, m, h (250ms, 3s).")] = None,
    until: Annotated[str | None, typer.Option("--until", metavar="T", help="Only records at or before T "
                                              "since boot (same forms as --since).")] = None,
    grep: Annotated[str | None, typer.Option("--grep", metavar="RE", help="Only records whose message "
                                             "matches the Python regular expression RE.")] = None,
    host_time: Annotated[bool, typer.Option("--host-time", help="journal/syslog: wall-clock times from "
                                            "the host-reported boot time (untrusted).")] = False,
    passphrase_file: PassphraseOpt = None,
    stream_key: StreamKeyOpt = None,
    partition: PartitionOpt = None,
    jobs: JobsOpt = None,
) -> Exit:
    """Write the verified records.

    The log is verified first; records of a boot and stream with an integrity violation
    are still written, marked unverified. Times are since the boot (the SVSM's own
    clock); the host's wall-clock time is untrusted and only used with --host-time.

    [bold]Examples[/bold]

      svsmlog extract disk.qcow2 --key owner.key
      svsmlog extract disk.img --key owner.key --boot 3 --stream vtpm --level warn
      svsmlog extract disk.img --key owner.key --since 2.5 --until 3s --grep 'PCR\\d+'
      svsmlog extract disk.img --key owner.key -f jsonl | jq -r .message
      svsmlog extract disk.img --key owner.key -f journal | systemd-journal-remote -o svsm.journal -
      svsmlog extract disk.img --key owner.key -f jsonl -o out/
    """
    keep = reading.RecordFilter(
        boots=frozenset(boot or ()),
        services=frozenset(service or ()),
        level=Level.parse(level.value) if level else None,
        since_ns=parse_since_boot(since, "--since") if since is not None else None,
        until_ns=parse_since_boot(until, "--until") if until is not None else None,
        grep=reading.compile_grep(grep),
    )
    out = reading.Output(fmt.value, output, host_time)
    return reading.extract(image, partition, _key_args(key, stream_key, passphrase_file), list(stream or []),
                           keep, out, jobs)


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


@command()
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
    debug_key: Annotated[Path | None, typer.Option("--debug-key", metavar="PUB", help="Debug recipient "
                                                   "public key, when the config names none.")] = None,
) -> Exit:
    """Simulate the SVSM writing its log (for tests and demonstrations).

    Runs the model of the SVSM's writer over an image, boot after boot, optionally
    crashing mid-write, and writes what a host would hand over.

    [bold]Examples[/bold]

      svsmlog simulate --recipient owner.pub --image disk.img --boots 3 --seed 1
      svsmlog simulate --recipient owner.pub --image disk.img --truth truth.jsonl --anchor-out anchor.json
      svsmlog simulate --recipient owner.pub --image disk.img --crash-after-writes 40 --tear-sectors 1
    """
    options: dict[str, Any] = {
        "image": image, "recipients": list(recipient or []), "config": config, "scenario": scenario,
        "boots": boots, "streams": streams.value if streams else None, "seed": seed, "truth": truth,
        "anchor_out": anchor_out, "crash_after_writes": crash_after_writes, "tear_sectors": tear_sectors,
        "size": size, "debug_key": debug_key,
    }
    print(simulate_cmd.simulate(options))
    return Exit.INTACT


command("attest")(attest_cmd.attest)


# --------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    """The console script: usage errors too become one line and exit status 2."""
    _State.debug = False
    command = typer.main.get_command(app)
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
