"""The launch configuration: what the guest owner decides before the VM starts.

A TOML file (``tomllib``), measured at launch: its SHA-256 is the ``config_digest`` every
boot record carries (what an attestation report would commit to)::

    [recipients]
    owner = ["owner.pub", "owner-pq.pub"]   # paths relative to this file

    [log]
    min_level = "info"                      # error | warn | info | debug | trace
    layout = "per-service"                  # aggregated | per-service

    [log.streams.vtpm]
    sectors = 512                           # the stream's region (its quota), 512-byte sectors

    [flush]
    max_bytes = 4096                        # batch up to this many record bytes ...
    max_delay_ms = 200                      # ... or this much (virtual) time

    [debug]
    ceiling = "debug-only"                  # never | debug-only | always
    recipient = "debug.pub"
    streams = ["vtpm", "console"]

Everything is checked here; the first problem found is raised as one ``ConfigError`` line.
Without a file, ``LaunchConfig.default`` builds the same structure and the digest is taken
over its canonical serialization (``LaunchConfig.canonical``).
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import crypto
from ..format import FIRST_REGION_LBA, MAX_PLAINTEXT, MIN_REGION_SECTORS, DebugCeiling, Layout
from ..records import Level
from ..volume import ALIGN, StreamSpec

CANONICAL_FORMAT = "svsmlog-launch-config-v1"

LAYOUT_NAMES: dict[str, Layout] = {"aggregated": Layout.AGGREGATED, "per-service": Layout.PER_SERVICE}
CEILING_NAMES: dict[str, DebugCeiling] = {
    "never": DebugCeiling.NEVER,
    "debug-only": DebugCeiling.DEBUG_ONLY,
    "always": DebugCeiling.ALWAYS,
}

# Fixed stream ids and default region sizes (sectors) of each layout.
AGGREGATED_STREAMS: tuple[tuple[int, str, int], ...] = ((1, "all", 1536),)
PER_SERVICE_STREAMS: tuple[tuple[int, str, int], ...] = (
    (1, "boot", 128),  # boot loader (Stage2) and early kernel initialisation
    (2, "core", 256),  # SVSM protocol 0
    (3, "attest", 128),  # protocol 1
    (4, "vtpm", 256),  # protocol 2
    (5, "apic", 128),  # protocol 3
    (6, "uefi", 256),  # protocol 4 (UEFI_MM: the variable store)
    (7, "console", 256),  # the console task
)
DEFAULT_DEBUG_STREAMS: dict[Layout, tuple[str, ...]] = {
    Layout.AGGREGATED: ("all",),
    Layout.PER_SERVICE: ("console",),
}

DEFAULT_MIN_LEVEL = Level.INFO
DEFAULT_MAX_BYTES = 4096
DEFAULT_MAX_DELAY_MS = 200
MAX_OWNERS = 16  # a key frame holds at most 32 envelopes: owners plus grantees
MAX_REGION_SECTORS = 1 << 31
MAX_DELAY_MS_LIMIT = 3_600_000
MIN_MAX_BYTES = 64


class ConfigError(ValueError):
    """A launch configuration that cannot be used; the message is one line naming the problem."""


def layout_streams(layout: Layout) -> tuple[tuple[int, str, int], ...]:
    return AGGREGATED_STREAMS if layout == Layout.AGGREGATED else PER_SERVICE_STREAMS


def layout_name(layout: Layout) -> str:
    return next(k for k, v in LAYOUT_NAMES.items() if v == layout)


def ceiling_name(ceiling: DebugCeiling) -> str:
    return next(k for k, v in CEILING_NAMES.items() if v == ceiling)


def parse_layout(text: str) -> Layout:
    try:
        return LAYOUT_NAMES[text]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown layout {text!r} (expected aggregated or per-service)") from None


def _key_json(k: crypto.PublicKey) -> dict[str, str]:
    return {"kem": k.kem_name, "key": k.raw.hex()}


@dataclass(frozen=True)
class LaunchConfig:
    """The effective launch configuration. Construct with ``load``, ``parse`` or ``default``;
    every instance has been validated (``__post_init__``)."""

    owners: tuple[crypto.PublicKey, ...]
    layout: Layout = Layout.AGGREGATED
    min_level: Level = DEFAULT_MIN_LEVEL
    sectors: tuple[tuple[str, int], ...] = ()  # (stream name, region sectors) for the layout
    flush_max_bytes: int = DEFAULT_MAX_BYTES
    flush_max_delay_ms: int = DEFAULT_MAX_DELAY_MS
    debug_ceiling: DebugCeiling = DebugCeiling.NEVER
    debug_recipient: crypto.PublicKey | None = None
    debug_streams: tuple[str, ...] = ()
    source: Path | None = None  # the TOML file, when there was one
    file_digest: bytes | None = None  # SHA-256 of that file, while this config is exactly it

    def __post_init__(self) -> None:
        names = [n for _, n, _ in layout_streams(self.layout)]
        given = dict(self.sectors)
        if len(given) != len(self.sectors):
            raise ConfigError("a stream's sectors are given twice")
        for n in given:
            if n not in names:
                raise ConfigError(
                    f"stream {n!r} is not a stream of the {layout_name(self.layout)} layout "
                    f"(streams: {', '.join(names)})"
                )
        defaults = {n: s for _, n, s in layout_streams(self.layout)}
        full = tuple((n, given.get(n, defaults[n])) for n in names)
        object.__setattr__(self, "sectors", full)
        for n, s in full:
            if (
                isinstance(s, bool)
                or not isinstance(s, int)
                or not MIN_REGION_SECTORS <= s <= MAX_REGION_SECTORS
            ):
                raise ConfigError(
                    f"stream {n!r}: sectors must be an integer from {MIN_REGION_SECTORS} "
                    f"to {MAX_REGION_SECTORS}, not {s!r}"
                )
        if not self.owners:
            raise ConfigError("no owner recipient: the log must be readable by the guest owner")
        if len(self.owners) > MAX_OWNERS:
            raise ConfigError(f"{len(self.owners)} owner recipients; at most {MAX_OWNERS} are allowed")
        ids = [k.key_id for k in self.owners]
        if len(set(ids)) != len(ids):
            raise ConfigError("an owner recipient key is listed twice")
        if not MIN_MAX_BYTES <= self.flush_max_bytes <= MAX_PLAINTEXT:
            raise ConfigError(f"[flush] max_bytes must be from {MIN_MAX_BYTES} to {MAX_PLAINTEXT}")
        if not 0 <= self.flush_max_delay_ms <= MAX_DELAY_MS_LIMIT:
            raise ConfigError(f"[flush] max_delay_ms must be from 0 to {MAX_DELAY_MS_LIMIT}")
        streams = self.debug_streams or DEFAULT_DEBUG_STREAMS[self.layout]
        object.__setattr__(self, "debug_streams", tuple(streams))
        for n in self.debug_streams:
            if n not in names:
                raise ConfigError(
                    f"[debug] streams: {n!r} is not a stream of the "
                    f"{layout_name(self.layout)} layout (streams: {', '.join(names)})"
                )
        if len(set(self.debug_streams)) != len(self.debug_streams):
            raise ConfigError("[debug] streams: a stream is named twice")
        if self.debug_recipient is not None and self.debug_recipient.key_id in ids:
            raise ConfigError("[debug] recipient is also an owner recipient")

    # ------------------------------------------------------------------ construction

    @classmethod
    def default(
        cls,
        owner_keys: list[crypto.PublicKey] | tuple[crypto.PublicKey, ...],
        layout: Layout | str = Layout.AGGREGATED,
        **options: Any,
    ) -> LaunchConfig:
        """The configuration used when the guest owner gives no file; ``options`` are the
        other fields (``min_level``, ``debug_ceiling``, ``sectors`` as a dict, ...)."""
        if isinstance(layout, str):
            layout = parse_layout(layout)
        if isinstance(options.get("sectors"), dict):
            options["sectors"] = tuple(options["sectors"].items())
        return cls(owners=tuple(owner_keys), layout=Layout(layout), **options)

    @classmethod
    def load(cls, path: Path) -> LaunchConfig:
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            raise ConfigError(f"{path}: cannot read the launch configuration: {e.strerror}") from None
        return cls.parse(data, Path(path))

    @classmethod
    def parse(cls, data: bytes, path: Path) -> LaunchConfig:
        """Parse TOML bytes; ``path`` names the file (key paths are relative to its folder)."""
        try:
            doc = tomllib.loads(data.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: not valid TOML: {e}") from None
        try:
            fields = _parse_doc(doc, path.parent)
            return cls(**fields, source=path, file_digest=crypto.sha256(data))
        except ConfigError as e:
            raise ConfigError(f"{path}: {e}") from None

    def replace(self, **changes: Any) -> LaunchConfig:
        """A changed copy. Changing the layout keeps the sizes of streams both layouts share
        and falls back to defaults for the rest. The copy is no longer the measured file, so
        its digest becomes the canonical serialization's."""
        if "layout" in changes:
            lay = changes["layout"]
            lay = parse_layout(lay) if isinstance(lay, str) else Layout(lay)
            changes["layout"] = lay
            names = {n for _, n, _ in layout_streams(lay)}
            changes.setdefault("sectors", tuple((n, s) for n, s in self.sectors if n in names))
            if not all(n in names for n in self.debug_streams):
                changes.setdefault("debug_streams", ())
        if isinstance(changes.get("sectors"), dict):
            changes["sectors"] = tuple(changes["sectors"].items())
        new = dataclasses.replace(self, **changes, file_digest=None)
        return self if new.canonical() == self.canonical() and self.file_digest else new

    # ------------------------------------------------------------------ what it means

    @property
    def digest(self) -> bytes:
        """BootPolicy.config_digest: the measured file's SHA-256, or the canonical one's."""
        return self.file_digest if self.file_digest is not None else crypto.sha256(self.canonical())

    def canonical(self) -> bytes:
        """A stable serialization of everything that matters (keys by value, not by path)."""
        ids = {n: i for i, n, _ in layout_streams(self.layout)}
        doc = {
            "format": CANONICAL_FORMAT,
            "recipients": {"owner": [_key_json(k) for k in self.owners]},
            "log": {
                "min_level": self.min_level.label,
                "layout": layout_name(self.layout),
                "streams": {n: {"id": ids[n], "sectors": s} for n, s in self.sectors},
            },
            "flush": {"max_bytes": self.flush_max_bytes, "max_delay_ms": self.flush_max_delay_ms},
            "debug": {
                "ceiling": ceiling_name(self.debug_ceiling),
                "recipient": _key_json(self.debug_recipient) if self.debug_recipient else None,
                "streams": list(self.debug_streams),
            },
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def streams(self) -> list[StreamSpec]:
        """The regions the volume must hold, in stream id order."""
        size = dict(self.sectors)
        return [StreamSpec(i, n, size[n]) for i, n, _ in layout_streams(self.layout)]

    def stream_id(self, name: str) -> int:
        for i, n, _ in layout_streams(self.layout):
            if n == name:
                return i
        raise KeyError(name)

    def stream_name(self, stream: int) -> str:
        for i, n, _ in layout_streams(self.layout):
            if i == stream:
                return n
        raise KeyError(stream)

    def stream_for_service(self, service: str) -> str:
        """Where a service's records go: "all", or the service's own stream."""
        if self.layout == Layout.AGGREGATED:
            return "all"
        if service not in dict(self.sectors):
            raise KeyError(f"no stream for service {service!r}")
        return service

    def volume_sectors(self) -> int:
        """Sectors a device needs for this configuration (superblock page plus regions)."""
        return FIRST_REGION_LBA + sum(-(-s // ALIGN) * ALIGN for _, s in self.sectors)


# ---------------------------------------------------------------------- TOML schema


def _table(doc: dict[str, Any], key: str, where: str, allowed: set[str]) -> dict[str, Any]:
    t = doc.get(key, {})
    if not isinstance(t, dict):
        raise ConfigError(f"{where} must be a table")
    for k in t:
        if k not in allowed:
            raise ConfigError(f"unknown key {k!r} in {where} (known: {', '.join(sorted(allowed))})")
    return t


def _string(t: dict[str, Any], key: str, where: str) -> str | None:
    v = t.get(key)
    if v is not None and not isinstance(v, str):
        raise ConfigError(f"{where} {key} must be a string")
    return v


def _int(t: dict[str, Any], key: str, where: str) -> int | None:
    v = t.get(key)
    if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
        raise ConfigError(f"{where} {key} must be an integer")
    return v


def _load_key(base: Path, rel: str, where: str) -> crypto.PublicKey:
    p = base / rel
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{where}: cannot read key file {rel!r}: {e.strerror}") from None
    try:
        return crypto.load_public_key(data)
    except crypto.KeyError_ as e:
        raise ConfigError(f"{where}: key file {rel!r}: {e}") from None


def _parse_doc(doc: dict[str, Any], base: Path) -> dict[str, Any]:
    for k in doc:
        if k not in ("recipients", "log", "flush", "debug"):
            raise ConfigError(f"unknown table [{k}] (known: recipients, log, flush, debug)")
    out: dict[str, Any] = {}

    rec = _table(doc, "recipients", "[recipients]", {"owner"})
    owners = rec.get("owner")
    if owners is None:
        raise ConfigError("[recipients] owner is missing: name at least one owner public key file")
    if not isinstance(owners, list) or not owners or not all(isinstance(o, str) for o in owners):
        raise ConfigError("[recipients] owner must be a non-empty list of key file paths")
    out["owners"] = tuple(_load_key(base, o, "[recipients] owner") for o in owners)

    log = _table(doc, "log", "[log]", {"min_level", "layout", "streams"})
    lvl = _string(log, "min_level", "[log]")
    if lvl is not None:
        try:
            out["min_level"] = Level.parse(lvl)
        except ValueError as e:
            raise ConfigError(f"[log] min_level: {e}") from None
    lay = _string(log, "layout", "[log]")
    out["layout"] = parse_layout(lay) if lay is not None else Layout.AGGREGATED
    names = [n for _, n, _ in layout_streams(out["layout"])]
    streams = log.get("streams", {})
    if not isinstance(streams, dict):
        raise ConfigError("[log.streams] must be a table")
    for name in streams:
        if name not in names:
            raise ConfigError(
                f"[log.streams.{name}]: {name!r} is not a stream of the {layout_name(out['layout'])} "
                f"layout (streams: {', '.join(names)})"
            )
    sectors = []
    for name, spec in streams.items():
        where = f"[log.streams.{name}]"
        if not isinstance(spec, dict):
            raise ConfigError(f"{where} must be a table")
        for k in spec:
            if k != "sectors":
                raise ConfigError(f"unknown key {k!r} in {where} (known: sectors)")
        s = _int(spec, "sectors", where)
        if s is None:
            raise ConfigError(f"{where} sectors is missing")
        sectors.append((name, s))
    out["sectors"] = tuple(sectors)

    fl = _table(doc, "flush", "[flush]", {"max_bytes", "max_delay_ms"})
    mb, md = _int(fl, "max_bytes", "[flush]"), _int(fl, "max_delay_ms", "[flush]")
    if mb is not None:
        out["flush_max_bytes"] = mb
    if md is not None:
        out["flush_max_delay_ms"] = md

    dbg = _table(doc, "debug", "[debug]", {"ceiling", "recipient", "streams"})
    ceil = _string(dbg, "ceiling", "[debug]")
    if ceil is not None:
        if ceil not in CEILING_NAMES:
            raise ConfigError(
                f"[debug] ceiling: unknown value {ceil!r} (expected never, debug-only or always)"
            )
        out["debug_ceiling"] = CEILING_NAMES[ceil]
    rcp = _string(dbg, "recipient", "[debug]")
    if rcp is not None:
        out["debug_recipient"] = _load_key(base, rcp, "[debug] recipient")
    ds = dbg.get("streams")
    if ds is not None:
        if not isinstance(ds, list) or not ds or not all(isinstance(s, str) for s in ds):
            raise ConfigError("[debug] streams must be a non-empty list of stream names")
        out["debug_streams"] = tuple(ds)
    return out
