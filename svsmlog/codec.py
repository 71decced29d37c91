"""Fast, checked encoders and decoders for the structures in ``svsmlog.format``.

The construct declarations are the definition; this module is the hot path. Every
decoder checks every length and count against the bytes actually present before it
uses them, and raises ``DecodeError`` (never anything else) on bad input.
tests/test_codec_differential.py shows these agree with the declarations.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .format import (
    BOOT_BODY_LEN,
    FRAME_HEADER_LEN,
    FRAME_MAGIC,
    KEYS_BODY_LEN,
    MAX_CLEAR_LEN,
    MAX_CT_LEN,
    MAX_ENVELOPE_LEN,
    MAX_ENVELOPES,
    MAX_REGIONS,
    RECORD_FIXED_LEN,
    SUPERBLOCK_MAGIC,
    TAG_LEN,
    VERSION,
    DebugCeiling,
    EnvelopeKind,
    FrameType,
    KeysReason,
    Layout,
)
from .records import KNOWN_FLAGS, Level, Record

SECTOR = 512


class DecodeError(ValueError):
    """Bytes that do not form the structure they claim to."""


# ---------------------------------------------------------------- superblock


@dataclass(frozen=True)
class RegionEntry:
    stream: int
    name: str
    start: int
    sectors: int


@dataclass(frozen=True)
class Superblock:
    volume_id: bytes
    total_sectors: int
    regions: tuple[RegionEntry, ...]


_SB_FIXED = struct.Struct("<8sHHHH16sQ24s")
_REGION = struct.Struct("<HH12sQQ")


def encode_superblock(sb: Superblock) -> bytes:
    out = bytearray(
        _SB_FIXED.pack(
            SUPERBLOCK_MAGIC,
            VERSION,
            SECTOR,
            len(sb.regions),
            0,
            sb.volume_id,
            sb.total_sectors,
            bytes(24),
        )
    )
    for r in sb.regions:
        out += _REGION.pack(r.stream, 0, r.name.encode("ascii"), r.start, r.sectors)
    return bytes(out.ljust(SECTOR, b"\0"))


def decode_superblock(buf: bytes) -> Superblock:
    """Parse the superblock sector. Geometry is checked separately (volume.check_geometry)."""
    if len(buf) < _SB_FIXED.size:
        raise DecodeError("superblock is shorter than its fixed part")
    magic, version, ssize, count, flags, vid, total, reserved = _SB_FIXED.unpack_from(buf)
    if magic != SUPERBLOCK_MAGIC:
        raise DecodeError("no svsmlog superblock (bad magic)")
    if version != VERSION:
        raise DecodeError(f"unsupported svsmlog version {version}")
    if ssize != SECTOR or flags != 0 or reserved != bytes(24):
        raise DecodeError("superblock has unknown sector size, flags or reserved bytes")
    if not 1 <= count <= MAX_REGIONS:
        raise DecodeError(f"superblock region count {count} outside 1..{MAX_REGIONS}")
    end = _SB_FIXED.size + count * _REGION.size
    if len(buf) < end:
        raise DecodeError("superblock region table is truncated")
    regions = []
    for i in range(count):
        stream, res, raw_name, start, sectors = _REGION.unpack_from(buf, _SB_FIXED.size + i * _REGION.size)
        if res != 0:
            raise DecodeError("region entry has non-zero reserved bytes")
        name = raw_name.rstrip(b"\0")
        if not name.isascii() or not name.decode("ascii").isprintable() or b"\0" in name:
            raise DecodeError("region name is not printable ASCII")
        regions.append(RegionEntry(stream, name.decode("ascii"), start, sectors))
    return Superblock(vid, total, tuple(regions))


# ---------------------------------------------------------------- frame header

_HDR = struct.Struct("<4sBBHIQQ16s16sII16s")
assert _HDR.size == FRAME_HEADER_LEN
_FRAME_TYPES = frozenset(int(t) for t in FrameType)


@dataclass(frozen=True, slots=True)
class FrameHeader:
    type: int
    stream: int
    boot: int
    seq: int
    lba: int
    volume_id: bytes
    prev_tag: bytes
    clear_len: int
    ct_len: int
    digest: bytes

    @property
    def sectors(self) -> int:
        return -(-(FRAME_HEADER_LEN + self.clear_len + self.ct_len) // SECTOR)

    @property
    def body_len(self) -> int:
        """Bytes covered by the frame, header included (the rest of the last sector is padding)."""
        return FRAME_HEADER_LEN + self.clear_len + self.ct_len


def encode_frame_header(h: FrameHeader) -> bytes:
    return _HDR.pack(
        FRAME_MAGIC,
        VERSION,
        h.type,
        h.stream,
        h.boot,
        h.seq,
        h.lba,
        h.volume_id,
        h.prev_tag,
        h.clear_len,
        h.ct_len,
        h.digest,
    )


def decode_frame_header(buf: bytes, offset: int = 0) -> FrameHeader:
    if len(buf) - offset < FRAME_HEADER_LEN:
        raise DecodeError("frame header is truncated")
    (magic, version, ftype, stream, boot, seq, lba, vid, prev, clear_len, ct_len, digest) = _HDR.unpack_from(
        buf, offset
    )
    if magic != FRAME_MAGIC:
        raise DecodeError("bad frame magic")
    if version != VERSION:
        raise DecodeError(f"unsupported frame version {version}")
    if ftype not in _FRAME_TYPES:
        raise DecodeError(f"unknown frame type {ftype}")
    if boot == 0:
        raise DecodeError("boot 0 does not exist (boots count from 1)")
    if clear_len > MAX_CLEAR_LEN:
        raise DecodeError(f"clear section length {clear_len} exceeds {MAX_CLEAR_LEN}")
    if not TAG_LEN <= ct_len <= MAX_CT_LEN:
        raise DecodeError(f"ciphertext length {ct_len} outside {TAG_LEN}..{MAX_CT_LEN}")
    return FrameHeader(ftype, stream, boot, seq, lba, vid, prev, clear_len, ct_len, digest)


# ---------------------------------------------------------------- envelopes

_ENV = struct.Struct("<BH16sH")
_ENV_KINDS = frozenset(int(k) for k in EnvelopeKind)


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: int
    kem_id: int
    key_id: bytes
    sealed: bytes


def encode_clear_section(envelopes: list[Envelope]) -> bytes:
    out = bytearray(struct.pack("<H", len(envelopes)))
    for e in envelopes:
        out += _ENV.pack(e.kind, e.kem_id, e.key_id, len(e.sealed)) + e.sealed
    return bytes(out)


def decode_clear_section(buf: bytes) -> list[Envelope]:
    if len(buf) < 2:
        raise DecodeError("clear section is truncated")
    (count,) = struct.unpack_from("<H", buf)
    if count > MAX_ENVELOPES:
        raise DecodeError(f"{count} envelopes exceed {MAX_ENVELOPES}")
    pos, out = 2, []
    for _ in range(count):
        if len(buf) - pos < _ENV.size:
            raise DecodeError("envelope header is truncated")
        kind, kem_id, kid, n = _ENV.unpack_from(buf, pos)
        pos += _ENV.size
        if kind not in _ENV_KINDS:
            raise DecodeError(f"unknown envelope kind {kind}")
        if not 0 < n <= MAX_ENVELOPE_LEN or len(buf) - pos < n:
            raise DecodeError("envelope length is out of range or truncated")
        out.append(Envelope(kind, kem_id, kid, bytes(buf[pos : pos + n])))
        pos += n
    if pos != len(buf):
        raise DecodeError("trailing bytes after the envelopes")
    return out


# ---------------------------------------------------------------- sealed bodies


@dataclass(frozen=True, slots=True)
class PriorHead:
    """The newest frame of the stream a boot found on disk when it started."""

    boot: int
    seq: int
    tag: bytes


@dataclass(frozen=True, slots=True)
class BootBody:
    superblock_digest: bytes
    config_digest: bytes
    host_time_ns: int
    debug_ceiling: int
    debug_enabled: bool
    layout: int
    min_level: int
    prior: PriorHead | None
    wrap_from: int = 0  # >0: this frame was placed at the region start by a wrap (spec §7.3)


_BOOT = struct.Struct("<32s32sQBBBBBIQ16sQ")
assert _BOOT.size == BOOT_BODY_LEN
_CEILINGS = frozenset(int(c) for c in DebugCeiling)
_LAYOUTS = frozenset(int(c) for c in Layout)


def encode_boot_body(b: BootBody) -> bytes:
    p = b.prior
    return _BOOT.pack(
        b.superblock_digest,
        b.config_digest,
        b.host_time_ns,
        b.debug_ceiling,
        int(b.debug_enabled),
        b.layout,
        b.min_level,
        int(p is not None),
        p.boot if p else 0,
        p.seq if p else 0,
        p.tag if p else bytes(TAG_LEN),
        b.wrap_from,
    )


def decode_boot_body(buf: bytes) -> BootBody:
    if len(buf) != _BOOT.size:
        raise DecodeError(f"boot record is {len(buf)} bytes, expected {_BOOT.size}")
    sbd, cfg, t, ceiling, dbg, layout, minlvl, present, pboot, pseq, ptag, wrap = _BOOT.unpack(buf)
    if ceiling not in _CEILINGS or dbg > 1 or layout not in _LAYOUTS or minlvl > 4 or present > 1:
        raise DecodeError("boot record has an out-of-range policy field")
    if not present and (pboot or pseq or ptag != bytes(TAG_LEN)):
        raise DecodeError("boot record names a prior head it says is absent")
    prior = PriorHead(pboot, pseq, ptag) if present else None
    return BootBody(sbd, cfg, t, ceiling, bool(dbg), layout, minlvl, prior, wrap)


_KEYS = struct.Struct("<BQQ32s")
assert _KEYS.size == KEYS_BODY_LEN
_REASONS = frozenset(int(r) for r in KeysReason)


@dataclass(frozen=True, slots=True)
class KeysBody:
    reason: int
    t_ns: int
    wrap_from: int
    superblock_digest: bytes  # every key frame seals it: wrap frames and slots outlive BOOT frames


def encode_keys_body(k: KeysBody) -> bytes:
    return _KEYS.pack(k.reason, k.t_ns, k.wrap_from, k.superblock_digest)


def decode_keys_body(buf: bytes) -> KeysBody:
    if len(buf) != _KEYS.size:
        raise DecodeError("keys body has the wrong length")
    reason, t_ns, wrap, sbd = _KEYS.unpack(buf)
    if reason not in _REASONS:
        raise DecodeError(f"unknown keys reason {reason}")
    if (reason == KeysReason.WRAP_REKEY) != (wrap > 0):
        raise DecodeError("keys body: a wrap re-key must name its wrap point, nothing else may")
    return KeysBody(reason, t_ns, wrap, sbd)


# ---------------------------------------------------------------- records

_REC = struct.Struct("<QBBBBBBI")
assert _REC.size == RECORD_FIXED_LEN
_FIELD = struct.Struct("<BH")
_LEVELS = tuple(Level)


def _utf8(s: str, limit: int, what: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > limit:
        raise ValueError(f"{what} is {len(b)} bytes, the limit is {limit}")
    return b


def encode_record(r: Record) -> bytes:
    svc = _utf8(r.service, 255, "service")
    comp = _utf8(r.component, 255, "component")
    tgt = _utf8(r.target or "", 255, "target")
    msg = r.message.encode("utf-8")
    if len(r.fields) > 255:
        raise ValueError("a record has at most 255 fields")
    if r.flags & ~KNOWN_FLAGS:
        raise ValueError("unknown record flags")
    parts = [
        _REC.pack(r.t_ns, int(r.level), r.flags, len(svc), len(comp), len(tgt), len(r.fields), len(msg)),
        svc,
        comp,
        tgt,
        msg,
    ]
    for k, v in r.fields:
        kb, vb = _utf8(k, 255, "field key"), _utf8(v, 65535, "field value")
        parts += [_FIELD.pack(len(kb), len(vb)), kb, vb]
    return b"".join(parts)


def encode_record_block(encoded_records: list[bytes]) -> bytes:
    return struct.pack("<I", len(encoded_records)) + b"".join(encoded_records)


def decode_record_block(buf: bytes) -> list[Record]:
    """Decode a frame's plaintext into records; every length checked before use.
    ``buf`` must be ``bytes`` (slicing it copies, and ``.decode`` is strict UTF-8)."""
    n = len(buf)
    if n < 4:
        raise DecodeError("record block is truncated")
    (count,) = struct.unpack_from("<I", buf)
    if count > (n - 4) // RECORD_FIXED_LEN:
        raise DecodeError(f"record count {count} cannot fit in {n} bytes")
    pos = 4
    out: list[Record] = []
    unpack_rec, unpack_field = _REC.unpack_from, _FIELD.unpack_from
    levels, append = _LEVELS, out.append
    try:
        for _ in range(count):
            if n - pos < RECORD_FIXED_LEN:
                raise DecodeError("record header is truncated")
            t_ns, level, flags, ls, lc, lt, nf, lm = unpack_rec(buf, pos)
            pos += RECORD_FIXED_LEN
            if level > 4 or flags & ~KNOWN_FLAGS:
                raise DecodeError("record level or flags out of range")
            a, b, c = pos + ls, pos + ls + lc, pos + ls + lc + lt
            end = c + lm
            if end > n:
                raise DecodeError("record strings run past the block")
            svc, comp = buf[pos:a].decode(), buf[a:b].decode()
            tgt = buf[b:c].decode() if lt else None
            msg = buf[c:end].decode()
            pos = end
            fields: tuple[tuple[str, str], ...] = ()
            if nf:
                fl = []
                for _ in range(nf):
                    if n - pos < 3:
                        raise DecodeError("record field is truncated")
                    lk, lv = unpack_field(buf, pos)
                    pos += 3
                    if pos + lk + lv > n:
                        raise DecodeError("record field runs past the block")
                    fl.append((buf[pos : pos + lk].decode(), buf[pos + lk : pos + lk + lv].decode()))
                    pos += lk + lv
                fields = tuple(fl)
            append(Record(t_ns, levels[level], svc, comp, msg, tgt, fields, flags))
    except UnicodeDecodeError as e:
        raise DecodeError(f"record text is not UTF-8: {e.reason}") from None
    if pos != n:
        raise DecodeError("trailing bytes after the last record")
    return out
