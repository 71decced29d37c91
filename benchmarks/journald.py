"""A sealed journald journal from the message set, for the comparison.

The records are written in the Journal Export Format and piped to
``systemd-journal-remote --seal=yes -o FILE.journal -``. Sealing (Forward Secure Sealing)
needs a key pair from ``journalctl --setup-keys``. Both tools (systemd 252) insist on one
place for the sealing key, ``/var/log/journal/<machine-id>/fss``: ``--setup-keys`` ignores
``--root`` and ``--directory``, and journal-remote loads the key from there whenever it
seals. So both run in a private mount namespace (``unshare --mount``) in which a
directory of ours is bound over ``/var/log/journal``: the machine's own journal directory
is never touched. Without the right to unshare (not root), the harness uses the real path
only if no key is there yet, and removes the key it made afterwards.

Each entry carries what an svsmlog record carries: the two timestamps and the boot id,
``PRIORITY`` (the syslog severity of the level, as ``svsmlog.export.SEVERITY``),
``SYSLOG_IDENTIFIER`` (the service), ``SVSM_COMPONENT``, ``SVSM_TARGET`` (when the
record has one) and ``MESSAGE``. Wall-clock time is the key's first sealing epoch plus
the record's boot-relative time, so the entries span the same sealing epochs (15 minutes
each, journald's default) on every run.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from svsmlog.export import SEVERITY
from svsmlog.records import Record

JOURNAL_REMOTE_PATHS = ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
SEAL_INTERVAL = "15min"
BOOT_ID = "5a1f0c0b4d2e4f6a8b9c0d1e2f3a4b5c"  # one boot, as in the svsmlog images
CHUNK = 1 << 20


class JournaldError(RuntimeError):
    """journald's tools are missing or failed."""


def journal_remote() -> str:
    for p in JOURNAL_REMOTE_PATHS:
        if os.access(p, os.X_OK):
            return p
    raise JournaldError("systemd-journal-remote not found: run 'sh scripts/ensure-journal-remote.sh'")


def machine_id() -> str:
    return Path("/etc/machine-id").read_text().strip()


# ---------------------------------------------------------------------- export format


def export_entries(records: Iterable[Record], realtime_base_us: int) -> Iterator[bytes]:
    """The Journal Export Format, in chunks of about a megabyte. Messages are single-line
    text, so every field takes the ``NAME=value`` form."""
    buf: list[bytes] = []
    size = 0
    for rec in records:
        mono = rec.t_ns // 1000
        entry = (
            f"__REALTIME_TIMESTAMP={realtime_base_us + mono}\n"
            f"__MONOTONIC_TIMESTAMP={mono}\n"
            f"_BOOT_ID={BOOT_ID}\n"
            f"PRIORITY={SEVERITY[rec.level]}\n"
            f"SYSLOG_IDENTIFIER={rec.service}\n"
            f"SVSM_COMPONENT={rec.component}\n"
            + (f"SVSM_TARGET={rec.target}\n" if rec.target is not None else "")
            + f"MESSAGE={rec.message}\n\n"
        ).encode()
        buf.append(entry)
        size += len(entry)
        if size >= CHUNK:
            yield b"".join(buf)
            buf, size = [], 0
    if buf:
        yield b"".join(buf)


# ---------------------------------------------------------------------- sealing key


@dataclass(frozen=True)
class SealKey:
    verify_key: str  # what journalctl --verify-key takes: SEED/START-INTERVAL (hex)
    start_us: int  # wall-clock time of the first sealing epoch
    interval_us: int


def parse_verify_key(text: str) -> SealKey:
    seed, _, rest = text.strip().partition("/")
    start, _, interval = rest.partition("-")
    if not seed or not start or not interval:
        raise JournaldError(f"unexpected verification key {text.strip()!r}")
    n, iv = int(start, 16), int(interval, 16)
    return SealKey(text.strip(), n * iv, iv)


def _can_unshare() -> bool:
    if shutil.which("unshare") is None:
        return False
    r = subprocess.run(["unshare", "--mount", "true"], capture_output=True)
    return r.returncode == 0


class KeyPlace:
    """Where ``/var/log/journal/<machine-id>/fss`` is, for the commands that need it."""

    def __init__(self, workdir: Path) -> None:
        self.private = _can_unshare()
        self.dir = (workdir / "var-log-journal") if self.private else Path("/var/log/journal")
        self.made: list[Path] = []

    def wrap(self, argv: list[str]) -> list[str]:
        """``argv`` run where the key place is ``/var/log/journal``."""
        if not self.private:
            return argv
        script = 'mount --bind "$0" /var/log/journal && exec "$@"'
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, str(self.dir), *argv]

    def setup(self) -> SealKey:
        keydir = self.dir / machine_id()
        fss = keydir / "fss"
        if self.private:
            shutil.rmtree(self.dir, ignore_errors=True)
        elif fss.exists():
            raise JournaldError(
                f"{fss} exists and this process cannot use a private mount namespace (unshare): "
                "refusing to replace the machine's sealing key"
            )
        for d in (self.dir, keydir):
            if not d.exists():
                d.mkdir(parents=True)
                self.made.append(d)
        r = subprocess.run(
            self.wrap(["journalctl", "--setup-keys", "--force", f"--interval={SEAL_INTERVAL}"]),
            capture_output=True,
            text=True,
        )
        if r.returncode != 0 or not fss.exists():
            raise JournaldError(f"journalctl --setup-keys failed: {r.stderr.strip()}")
        self.made.append(fss)
        return parse_verify_key(r.stdout)

    def cleanup(self) -> None:
        """Remove the key, then the directories made for it (innermost first)."""
        for p in reversed(self.made):
            if p.is_dir():
                if not any(p.iterdir()):
                    p.rmdir()
            else:
                p.unlink(missing_ok=True)
        self.made.clear()


@contextmanager
def seal_key(workdir: Path) -> Iterator[tuple[KeyPlace, SealKey]]:
    place = KeyPlace(workdir)
    try:
        yield place, place.setup()
    finally:
        place.cleanup()


# ---------------------------------------------------------------------- the journal


@dataclass(frozen=True)
class JournalStats:
    files: tuple[Path, ...]  # journal-remote rotates to a new file at about 64 MiB
    verify_key: str
    file_bytes: int  # the files' sizes (journald grows files in 8 MiB steps)
    used_bytes: int  # up to the end of each file's last object: entries, data, hash tables, seals
    export_bytes: int
    tags: int  # seals (TAG objects) in the files


def _used_bytes(path: Path) -> int:
    """Bytes up to the end of the file's last object (``tail_object_offset`` in the header,
    plus that object's size, 8-byte aligned): the file without the room allocated ahead."""
    with path.open("rb") as f:
        head = f.read(144)
        if head[:8] != b"LPKSHHRH":
            raise JournaldError(f"{path}: not a journal file")
        tail = int.from_bytes(head[136:144], "little")
        f.seek(tail)
        obj = f.read(16)
    size = int.from_bytes(obj[8:16], "little")
    return tail + -(-size // 8) * 8


def _count_tags(files: tuple[Path, ...]) -> int:
    argv = ["journalctl", "--header"] + [f"--file={p}" for p in files]
    r = subprocess.run(argv, capture_output=True, text=True)
    return sum(
        int(line.split(":", 1)[1])
        for line in r.stdout.splitlines()
        if line.strip().startswith("Tag objects:")
    )


def build_journal(records: Iterable[Record], directory: Path) -> JournalStats:
    """Seal ``records`` into a new journal in ``directory`` (emptied first): ``svsm.journal``
    and the files journal-remote rotated out (``svsm@….journal``)."""
    remote = journal_remote()
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    path = directory / "svsm.journal"
    with tempfile.TemporaryDirectory(dir=directory.parent) as tmp, seal_key(Path(tmp)) as (place, key):
        proc = subprocess.Popen(
            place.wrap([remote, "--seal=yes", "--split-mode=none", f"--output={path}", "-"]),
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stderr is not None
        exported = 0
        try:
            for chunk in export_entries(records, key.start_us):
                proc.stdin.write(chunk)
                exported += len(chunk)
        finally:
            proc.stdin.close()
        err = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0 or not path.exists():
            raise JournaldError(f"systemd-journal-remote failed: {err.strip()}")
    files = tuple(sorted(directory.glob("*.journal")))
    return JournalStats(
        files=files,
        verify_key=key.verify_key,
        file_bytes=sum(p.stat().st_size for p in files),
        used_bytes=sum(_used_bytes(p) for p in files),
        export_bytes=exported,
        tags=_count_tags(files),
    )
