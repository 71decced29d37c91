"""What every command shares: exit codes, errors, opening images, loading keys, progress."""

from __future__ import annotations

# json is imported by the functions that use it: a plain verify never does (json costs a
# few ms of start-up, benchmarks/README.md).
import getpass
import os
import re
import select
import stat
import struct
import sys
import time
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, TextIO

from .. import crypto
from ..anchor import Anchor, AnchorError, ReportAnchor
from ..anchor import load_anchor as load_anchor_bytes
from ..codec import DecodeError
from ..device import SECTOR
from ..source import ImageError, VolumeSource, open_image
from ..verify import Keyring, StreamKey
from ..volume import Volume, read_volume
from .tables import ReportConsole

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress, TaskID

    from ..origin import OriginPolicy

STREAM_KEY_FORMAT = "svsmlog-stream-key-v1"
MAX_SMALL_FILE = 1 << 20  # key, anchor and passphrase files are tiny; refuse to slurp a disk


class Exit(IntEnum):
    """The exit codes are a contract (man page, EXIT STATUS)."""

    INTACT = 0
    VIOLATED = 1
    USAGE = 2  # bad usage or unreadable input
    NO_KEY = 3  # no given key opens anything, or the passphrase is missing or wrong
    PARTIAL = 4  # no violation, but not everything present could be proven (spec §9)


class CliError(Exception):
    """An error the user can act on: printed as one line, ``svsmlog: error: ...``."""

    def __init__(self, message: str, code: Exit = Exit.USAGE) -> None:
        super().__init__(message)
        self.code = code


def say(message: str) -> None:
    """A one-line note on stderr (stdout may carry records)."""
    print(f"svsmlog: {message}", file=sys.stderr)


def warn(message: str) -> None:
    say(f"warning: {message}")


def is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _raise_broken_pipe() -> None:
    raise BrokenPipeError


def pipe_safe(console: Console) -> Console:
    """rich ends the process with status 1 when stdout's reader goes away; 1 means an
    integrity violation here, so let the command's error boundary handle it instead."""
    console.on_broken_pipe = _raise_broken_pipe  # type: ignore[method-assign]
    return console


def _rich_console(**options: Any) -> Console:
    from rich.console import Console

    return pipe_safe(Console(**options))


def report_console(file: TextIO | None = None) -> ReportConsole:
    """A console for reports and tables. Styled only on a terminal without NO_COLOR; never
    interprets markup, because stream names and details come from the untrusted image.
    Unstyled, it writes ``tables``' panels and tables without rich when it can."""
    target = file if file is not None else sys.stdout
    forced = bool(os.environ.get("FORCE_COLOR"))  # FORCE_COLOR styles into a pipe; NO_COLOR wins
    styled = (is_tty(target) or forced) and not os.environ.get("NO_COLOR")
    common: dict[str, object] = {"file": target, "markup": False, "emoji": False, "highlight": False}
    if styled:
        return ReportConsole(target, styled=True, width=None, make_rich=_rich_console,
                             rich_options={"force_terminal": True if forced else None, **common})
    # Wide enough that tables in a file or a pipe do not wrap: verify's Boots table, with
    # the origin columns of an attested boot, takes about 180 columns.
    width = int(os.environ["COLUMNS"]) if os.environ.get("COLUMNS", "").isdigit() else 200
    return ReportConsole(target, styled=False, width=width, make_rich=_rich_console,
                         rich_options={"color_system": None, "force_terminal": False, "no_color": True,
                                       "width": width, **common})


# --------------------------------------------------------------------------- small input files


def read_small_file(path: Path, what: str) -> bytes:
    """A key, anchor or passphrase file: one line naming the file on any failure."""
    try:
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise CliError(f"{path}: is a directory, not a {what}")
        if st.st_size > MAX_SMALL_FILE:
            raise CliError(f"{path}: too large for a {what} ({st.st_size} bytes)")
        return path.read_bytes()
    except FileNotFoundError:
        raise CliError(f"{path}: no such file (expected a {what})") from None
    except OSError as e:
        raise CliError(f"{path}: cannot read {what}: {e.strerror or e}") from None


def read_passphrase(path: Path | None) -> bytes | None:
    """The passphrase is the file's content without one trailing line break."""
    if path is None:
        return None
    data = read_small_file(path, "passphrase file")
    for end in (b"\r\n", b"\n"):
        if data.endswith(end):
            data = data[: -len(end)]
            break
    if not data:
        raise CliError(f"{path}: the passphrase file is empty")
    return data


def write_new_file(path: Path, data: bytes, *, mode: int, force: bool) -> None:
    """Create ``path`` with ``mode`` from the start, so a secret is never readable by others,
    not even for a moment. An existing file is kept unless ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | (0 if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, mode)
    except FileExistsError:
        raise CliError(f"{path}: already exists (use --force to overwrite)") from None
    except OSError as e:
        raise CliError(f"{path}: cannot create: {e.strerror or e}") from None
    try:
        os.fchmod(fd, mode)  # O_CREAT's mode is masked by the umask, and ignored on overwrite
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except OSError as e:
        raise CliError(f"{path}: cannot write: {e.strerror or e}") from None


# --------------------------------------------------------------------------- keys


def _public_only(data: bytes) -> bool:
    return b"PUBLIC KEY-----" in data and b"PRIVATE KEY-----" not in data


def load_private_key(path: Path, passphrase: bytes | None) -> crypto.PrivateKey:
    data = read_small_file(path, "private key")
    key = _load_private_key(path, data, passphrase)
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        mode = 0
    if mode & 0o077:  # as ssh does, but a warning: the key still opens the log
        warn(f"{path}: the private key is readable by others (mode {mode:04o}); chmod 600 it")
    return key


def _load_private_key(path: Path, data: bytes, passphrase: bytes | None) -> crypto.PrivateKey:
    if _public_only(data):
        raise CliError(f"{path}: is a public key; reading needs the private key (NAME.key)")
    if b"ENCRYPTED" not in data:
        passphrase = None  # one --passphrase-file serves every encrypted key; plain keys ignore it
    try:
        return crypto.load_private_key(data, passphrase)
    except crypto.KeyError_ as e:
        if e.reason == crypto.KeyError_.PASSPHRASE_REQUIRED and passphrase is None:
            prompted = _prompt_passphrase(path)
            if prompted is not None:
                return _load_private_key(path, data, prompted)
        if e.reason == crypto.KeyError_.PASSPHRASE_REQUIRED:
            raise CliError(f"{path}: the private key is encrypted: give its passphrase with "
                           "--passphrase-file", Exit.NO_KEY) from None
        if e.reason == crypto.KeyError_.BAD_PASSPHRASE:
            raise CliError(f"{path}: {e}", Exit.NO_KEY) from None
        raise CliError(f"{path}: {e}") from None


def _prompt_passphrase(path: Path) -> bytes | None:
    """Ask on the terminal, only when a person is there to answer."""
    if not (is_tty(sys.stdin) and is_tty(sys.stderr)):
        return None
    try:
        text = getpass.getpass(f"Passphrase for {path}: ")
    except (EOFError, KeyboardInterrupt):
        return None
    return text.encode() or None


def load_public_key(path: Path) -> crypto.PublicKey:
    data = read_small_file(path, "public key")
    try:
        return crypto.load_public_key(data)
    except crypto.KeyError_ as e:
        code = Exit.NO_KEY if e.reason == crypto.KeyError_.PASSPHRASE_REQUIRED else Exit.USAGE
        raise CliError(f"{path}: {e}", code) from None


def _hex_field(d: dict[str, object], name: str, size: int) -> bytes:
    value = d.get(name)
    if not isinstance(value, str):
        raise ValueError(f"field {name!r} is missing or not a string")
    raw = bytes.fromhex(value)
    if len(raw) != size:
        raise ValueError(f"field {name!r} must be {size} bytes")
    return raw


def _int_field(d: dict[str, object], name: str) -> int:
    value = d.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"field {name!r} is missing or not a non-negative integer")
    return value


def load_stream_key(path: Path, volume: Volume) -> StreamKey:
    """A file written by ``export-key``. ``stream`` may be the stream's id or its name."""
    import json
    data = read_small_file(path, "stream key file")
    try:
        d = json.loads(data)
        if not isinstance(d, dict) or d.get("format") != STREAM_KEY_FORMAT:
            raise ValueError(f"the format field is not {STREAM_KEY_FORMAT!r}")
        stream = d.get("stream")
        if isinstance(stream, str):
            stream = resolve_stream(volume, stream)
        elif not isinstance(stream, int) or isinstance(stream, bool):
            raise ValueError("field 'stream' is missing")
        return StreamKey(
            _hex_field(d, "volume_id", 16), _int_field(d, "boot"), stream, _int_field(d, "seq"),
            _hex_field(d, "chain_key", 32),
        )
    except CliError as e:
        raise CliError(f"{path}: {e}") from None
    except (ValueError, UnicodeDecodeError) as e:
        raise CliError(f"{path}: not a stream key file: {e}") from None


def stream_key_json(key: StreamKey, stream_name: str) -> bytes:
    import json
    doc = {
        "format": STREAM_KEY_FORMAT,
        "volume_id": key.volume_id.hex(),
        "boot": key.boot,
        "stream": key.stream,
        "stream_name": stream_name,
        "seq": key.seq,
        "chain_key": key.chain_key.hex(),
    }
    return (json.dumps(doc, indent=2) + "\n").encode()


def load_keyring(
    keys: list[Path], stream_keys: list[Path], passphrase_file: Path | None, volume: Volume
) -> Keyring:
    if not keys and not stream_keys:
        raise CliError("give a private key with --key, or a stream key with --stream-key")
    passphrase = read_passphrase(passphrase_file)
    ring = Keyring([load_private_key(p, passphrase) for p in keys], [])
    for p in stream_keys:
        sk = load_stream_key(p, volume)
        if sk.volume_id != volume.volume_id:
            warn(f"{p}: is a key for volume {sk.volume_id.hex()}, not this image's "
                 f"{volume.volume_id.hex()}; ignored")
        ring.stream_keys.append(sk)
    return ring


class OriginArgs(NamedTuple):
    """--trust-root, --cert, --measurement, --require-attestation (spec §8.9)."""

    trust_roots: tuple[Path, ...] = ()
    certs: tuple[Path, ...] = ()
    measurements: tuple[str, ...] = ()
    require: bool = False


MEASUREMENT_LEN = 48


def load_certificate_files(paths: tuple[Path, ...] | list[Path], what: str) -> list[crypto.Certificate]:
    """Every certificate in the files (PEM, PEM bundles or DER); exit 2 on an unreadable one."""
    out: list[crypto.Certificate] = []
    for path in paths:
        try:
            out += crypto.load_certificates(read_small_file(path, what))
        except crypto.CertificateError as e:
            raise CliError(f"{path}: {e}") from None
    return out


def load_origin_policy(args: OriginArgs) -> OriginPolicy:
    """The owner's expectations of each boot's attestation report. Certificates in a
    --trust-root file that are not self-issued (an ASK beside its ARK) are taken as
    intermediates: they prove nothing unless they chain to a root."""
    from ..origin import OriginPolicy

    given = load_certificate_files(args.trust_roots, "trust root")
    roots = tuple(c for c in given if c.self_issued)
    if args.trust_roots and not roots:
        raise CliError("--trust-root: no self-signed certificate (an ARK) in "
                       + ", ".join(map(str, args.trust_roots)))
    measurements = set()
    for text in args.measurements:
        digits = text.strip().lower().removeprefix("0x")
        try:
            value = bytes.fromhex(digits)
        except ValueError:
            value = b""
        if len(value) != MEASUREMENT_LEN:
            raise CliError(f"--measurement {text!r}: a launch measurement is {MEASUREMENT_LEN} bytes "
                           f"({2 * MEASUREMENT_LEN} hex digits)")
        measurements.add(value)
    if args.require and not measurements:
        raise CliError("--require-attestation needs --measurement: a valid report proves only that "
                       "some SVSM ran on an AMD chip, and the host can launch an SVSM of its own")
    return OriginPolicy(
        roots=roots or None,
        certs=(*load_certificate_files(args.certs, "certificate"), *(c for c in given if not c.self_issued)),
        measurements=frozenset(measurements),
        require=args.require,
    )


def load_anchor(path: Path | None) -> Anchor | ReportAnchor | None:
    """An anchor file (JSON), or an anchor report: an SEV-SNP report, binary or hex text,
    whose REPORT_DATA carries the anchor (checked against --trust-root, --cert and
    --measurement as a boot's report is)."""
    if path is None:
        return None
    data = read_small_file(path, "anchor file")
    try:
        return load_anchor_bytes(data)
    except AnchorError as e:
        raise CliError(f"{path}: {e}") from None


# --------------------------------------------------------------------------- images


@dataclass
class Image:
    """An opened image and the svsmlog volume in it."""

    path: Path
    source: VolumeSource
    volume: Volume

    @property
    def name(self) -> str:
        return self.source.name

    def describe(self) -> str:
        where = f", GPT partition {self.source.partition}" if self.source.partition is not None else ""
        return f"{self.source.container}{where}, volume at byte {self.source.base_offset}"


@contextmanager
def open_volume(path: Path, partition: int | None, offset: int | None = None) -> Iterator[Image]:
    """Open a raw, GPT or qcow2 image and parse its superblock; always closes the image.
    ``offset``: the volume's first byte, for disks whose partition table we do not read."""
    try:
        source = open_image(path, partition=partition, base_offset=offset)
    except ImageError as e:
        hint = " (--partition N)" if "choose one by its entry number" in str(e) else ""
        raise CliError(f"{e}{hint}") from None
    try:
        try:
            volume = read_volume(source.read_sectors(0, 1), source.sector_count)
        except DecodeError as e:
            where = f" at byte {offset}" if offset is not None else ""
            raise CliError(f"{source.name}: not an svsmlog volume{where}: {e}") from None
        yield Image(path, source, volume)
    finally:
        source.close()


def resolve_stream(volume: Volume, text: str) -> int:
    """A stream given by name (``vtpm``) or by id (``2``)."""
    regions = volume.superblock.regions
    for r in regions:
        if r.name == text:
            return r.stream
    if text.isdigit() and any(r.stream == int(text) for r in regions):
        return int(text)
    names = ", ".join(f"{r.name} ({r.stream})" for r in regions)
    raise CliError(f"no stream {text!r} in this volume; its streams: {names}")


# --------------------------------------------------------------------------- progress


class Coverage:
    """How many sectors of some extents (start, sectors) have been read, each sector
    counted once however often it is read again."""

    def __init__(self, extents: Sequence[tuple[int, int]]) -> None:
        self._extents = sorted((start, start + n) for start, n in extents if n > 0)
        self.total = sum(hi - lo for lo, hi in self._extents)
        self.sectors = 0
        self._lo: list[int] = []  # the covered runs, sorted, neither overlapping nor touching
        self._hi: list[int] = []

    def add(self, lba: int, count: int) -> None:
        for lo, hi in self._extents:
            a, b = max(lo, lba), min(hi, lba + count)
            if a < b:
                self._cover(a, b)

    def _cover(self, a: int, b: int) -> None:
        i = bisect_left(self._hi, a)  # runs i..j-1 overlap or touch [a, b): merge them into it
        j = bisect_right(self._lo, b)
        if i < j:
            self.sectors -= sum(self._hi[k] - self._lo[k] for k in range(i, j))
            a, b = min(a, self._lo[i]), max(b, self._hi[j - 1])
        self._lo[i:j], self._hi[i:j] = [a], [b]
        self.sectors += b - a


_RANGE = struct.Struct("<qq")  # (lba, sectors): one read, from a forked worker to the parent
_REFRESH_SECONDS = 0.1


class ReadProgress:
    """A progress bar per pass over the regions, on stderr, only when stderr is a terminal
    and only in the process the user started (not in a pool's worker, where several bars
    would share one terminal). Passes are named by ``begin``: the verifier calls it with
    "keys" before the key harvest and "verifying" before the frame checks, each of which
    reads every sector of the regions.

    A bar shows how far a pass has read, each sector once: the scan reads a frame that
    crosses its 1 MiB window again from the frame's start, so counting bytes read would
    run past the regions' size. A pass that reads them all ends at exactly 100 %.

    Nothing here runs a thread (rich's refresh thread is off; bars are drawn on reads and
    on ``tick``), so the verifier may fork its workers at any time (svsmlog.parallel). A
    forked worker never touches the terminal: it sends the ranges it reads through a pipe
    made before the fork, non-blocking at both ends, and the parent reads them on ``tick``,
    which ``map_forked`` calls while it waits for the workers."""

    def __init__(self, read: Callable[[int, int], bytes], extents: Sequence[tuple[int, int]],
                 label: str | None = None, console: Console | None = None) -> None:
        self._read = read
        self._extents = list(extents)
        self._pid = os.getpid()
        self._progress: Progress | None = None
        self._bars: dict[str, TaskID] = {}
        self._bar: TaskID | None = None
        self._coverage = Coverage(self._extents)
        self._drawn = 0.0
        self._pipe: tuple[int, int] | None = None
        self._inbox = b""  # the parent's: a part of a range not read whole from the pipe yet
        self._outbox = b""  # a worker's: ranges the full pipe did not take yet
        if console is None and is_tty(sys.stderr):
            import multiprocessing  # only for a bar: 2 ms of imports

            if multiprocessing.parent_process() is None:
                from rich.console import Console

                console = Console(stderr=True)
        if console is not None:
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                TimeRemainingColumn(), console=console, transient=True, auto_refresh=False,
            )
        self._first = label

    def _drawing(self) -> bool:
        """Whether this process draws: a bar is shown, and this is not a forked worker."""
        return self._progress is not None and os.getpid() == self._pid

    @property
    def bars(self) -> list[tuple[str, int, int]]:
        """(label, bytes done, bytes in all) of every pass so far."""
        if self._progress is None:
            return []
        return [(t.description, int(t.completed), int(t.total or 0)) for t in self._progress.tasks]

    def begin(self, label: str) -> None:
        """A new pass over the extents: a bar of its own, or its bar again from 0."""
        if not self._drawing():
            return
        assert self._progress is not None
        self.tick()
        self._coverage = Coverage(self._extents)
        total = max(self._coverage.total * SECTOR, 1)
        if label in self._bars:
            self._bar = self._bars[label]
            self._progress.reset(self._bar, total=total)
        else:
            self._bar = self._bars[label] = self._progress.add_task(label, total=total)
        self._draw(force=True)

    def read(self, lba: int, count: int) -> bytes:
        data = self._read(lba, count)
        if self._drawing():
            self._coverage.add(lba, len(data) // SECTOR)
            self._draw()
        elif self._pipe is not None:
            self._send(lba, len(data) // SECTOR)
        return data

    def tick(self) -> None:
        """In the parent: take in what the workers read, and draw."""
        if not self._drawing() or self._pipe is None:
            return
        try:
            while chunk := os.read(self._pipe[0], 1 << 16):
                self._inbox += chunk
        except BlockingIOError:
            pass  # read all there is
        whole = len(self._inbox) - len(self._inbox) % _RANGE.size
        for lba, count in _RANGE.iter_unpack(self._inbox[:whole]):
            self._coverage.add(lba, count)
        self._inbox = self._inbox[whole:]
        self._draw()

    def _send(self, lba: int, count: int) -> None:
        """In a worker. A write of at most PIPE_BUF bytes is atomic: ranges from several
        workers never interleave. A full pipe (the parent reads it ten times a second) keeps
        the rest for the next read rather than block."""
        assert self._pipe is not None
        self._outbox += _RANGE.pack(lba, count)
        step = select.PIPE_BUF - select.PIPE_BUF % _RANGE.size
        try:
            while self._outbox:
                sent = os.write(self._pipe[1], self._outbox[:step])
                self._outbox = self._outbox[sent:]
        except BlockingIOError:
            pass
        except BrokenPipeError:  # the parent is gone: nobody to tell
            self._pipe, self._outbox = None, b""

    def _draw(self, force: bool = False) -> None:
        assert self._progress is not None
        if self._bar is not None:
            self._progress.update(self._bar, completed=self._coverage.sectors * SECTOR)
        now = time.monotonic()
        if force or now - self._drawn >= _REFRESH_SECONDS:
            self._drawn = now
            self._progress.refresh()

    def __enter__(self) -> ReadProgress:
        if self._progress is not None:
            try:
                self._pipe = os.pipe()
                for fd in self._pipe:
                    os.set_blocking(fd, False)
                self._progress.start()
                if self._first is not None:
                    self.begin(self._first)
            except BaseException:
                self.__exit__()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._drawing():
            assert self._progress is not None
            self.tick()
            self._progress.stop()
        self._progress = None
        if self._pipe is not None:
            for fd in self._pipe:
                os.close(fd)
            self._pipe = None


def region_bytes(volume: Volume) -> int:
    return sum(r.sectors for r in volume.superblock.regions) * SECTOR


def region_extents(volume: Volume) -> list[tuple[int, int]]:
    """(start, sectors) of every region: what each verification pass reads through."""
    return [(r.start, r.sectors) for r in volume.superblock.regions]


# --------------------------------------------------------------------------- durations

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(ns|us|µs|ms|s|m|min|h)?\s*$")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9, "m": 60 * 10**9,
            "min": 60 * 10**9, "h": 3600 * 10**9}


def parse_since_boot(text: str, option: str) -> int:
    """Time since boot in nanoseconds: plain seconds (``12.5``) or with a unit (``250ms``)."""
    m = _DURATION.match(text)
    if m is None:
        raise CliError(f"invalid {option} {text!r}: expected seconds since boot such as 12.5, "
                       "or a number with a unit: ns, us, ms, s, m, h (250ms, 3s, 2m)")
    from decimal import Decimal, InvalidOperation  # only for --since/--until: 1 ms of imports

    try:
        value = Decimal(m.group(1))
    except InvalidOperation:  # pragma: no cover - the pattern admits only decimals
        raise CliError(f"invalid {option} {text!r}") from None
    return int(value * _UNIT_NS[m.group(2) or "s"])


def format_ns(t_ns: int | None) -> str:
    if t_ns is None:
        return "-"
    seconds, rem = divmod(t_ns, 1_000_000_000)
    return f"{seconds}.{rem // 1000:06d}s"
