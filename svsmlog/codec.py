"""Fast, checked encoders and decoders for the structures in ``svsmlog.format``.

The construct declarations are the definition; this module is the hot path. Every
decoder checks every length and count against the bytes actually present before it
uses them, and raises ``DecodeError`` (never anything else) on bad input.
tests/test_codec_differential.py shows these agree with the declarations.
"""

from __future__ import annotations

import struct
import sys
from array import array
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from itertools import accumulate, chain
from typing import Any, NamedTuple, NoReturn

from .format import (
    BLOCK_WIDE,
    BOOT_BODY_LEN,
    FRAME_HEADER_LEN,
    FRAME_MAGIC,
    GRANT_DIGEST_LEN,
    HEAD_FIELDS,
    HEAD_LEVEL,
    HEAD_PANIC,
    KEYS_BODY_LEN,
    MAX_CLEAR_LEN,
    MAX_CT_LEN,
    MAX_ENVELOPE_LEN,
    MAX_ENVELOPES,
    MAX_NAMES,
    MAX_PLAINTEXT,
    MAX_REGIONS,
    MAX_SNP_CERTS,
    MIN_RECORD_LEN,
    SNP_REPORT_LEN,
    SUPERBLOCK_MAGIC,
    TAG_LEN,
    VALID_HEADS,
    VERSION,
    DebugCeiling,
    EnvelopeKind,
    FrameType,
    KeysReason,
    Layout,
)
from .records import FLAG_PANIC, KNOWN_FLAGS, Level, Record

SECTOR = 512


class DecodeError(ValueError):
    """Bytes that do not form the structure they claim to."""


# ---------------------------------------------------------------- superblock


class RegionEntry(NamedTuple):
    stream: int
    name: str
    start: int
    sectors: int


class Superblock(NamedTuple):
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


class FrameHeader(NamedTuple):
    """A decoded frame header. A named tuple, not a dataclass: the reader makes one per
    frame, and a frozen dataclass of ten fields costs 1 µs to build against 0.2 µs."""

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


_unpack_header = _HDR.unpack_from
# A header's fields as they lie, unchecked (the verifier's fast lane checks what it needs).
unpack_frame_header = _unpack_header
_new_header = tuple.__new__


def decode_frame_header(buf: bytes, offset: int = 0) -> FrameHeader:
    if len(buf) - offset < FRAME_HEADER_LEN:
        raise DecodeError("frame header is truncated")
    f = _unpack_header(buf, offset)
    # One test for the honest case; _header_error names what is wrong otherwise.
    if (
        f[0] != FRAME_MAGIC
        or f[1] != VERSION
        or f[2] not in _FRAME_TYPES
        or not f[4]
        or f[9] > MAX_CLEAR_LEN
        or not TAG_LEN <= f[10] <= MAX_CT_LEN
    ):
        _header_error(f)
    return _new_header(FrameHeader, f[2:])


def _header_error(f: tuple[Any, ...]) -> NoReturn:
    magic, version, ftype, _stream, boot, _seq, _lba, _vid, _prev, clear_len, ct_len, _digest = f
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
    raise DecodeError(f"ciphertext length {ct_len} outside {TAG_LEN}..{MAX_CT_LEN}")


# ---------------------------------------------------------------- envelopes

_ENV = struct.Struct("<BH16sH")
_ENV_KINDS = frozenset(int(k) for k in EnvelopeKind)
_NO_KEY_ID = bytes(16)


class Envelope(NamedTuple):
    kind: int
    kem_id: int
    key_id: bytes
    sealed: bytes


ITEM_HEADER_LEN = _ENV.size  # kind, kem_id, key_id, sealed_len: 21 bytes (spec §4.4)


def clear_section_len(sealed_lens: Iterable[int]) -> int:
    """Bytes of a clear section holding items of these sealed lengths (without building it)."""
    return 2 + sum(ITEM_HEADER_LEN + n for n in sealed_lens)


def encode_clear_section(envelopes: list[Envelope]) -> bytes:
    out = bytearray(struct.pack("<H", len(envelopes)))
    for e in envelopes:
        out += _ENV.pack(e.kind, e.kem_id, e.key_id, len(e.sealed)) + e.sealed
    return bytes(out)


def decode_clear_section(buf: bytes) -> list[Envelope]:
    """Spec §4.4: envelopes, then at most one SNP_REPORT, then its certificates, in kind order."""
    if len(buf) < 2:
        raise DecodeError("clear section is truncated")
    (count,) = struct.unpack_from("<H", buf)
    if count > MAX_ENVELOPES:
        raise DecodeError(f"{count} envelopes exceed {MAX_ENVELOPES}")
    pos, out = 2, []
    last = 0
    certs = 0
    for _ in range(count):
        if len(buf) - pos < _ENV.size:
            raise DecodeError("envelope header is truncated")
        kind, kem_id, kid, n = _ENV.unpack_from(buf, pos)
        pos += _ENV.size
        if kind not in _ENV_KINDS:
            raise DecodeError(f"unknown envelope kind {kind}")
        if kind >= EnvelopeKind.SNP_REPORT and (kem_id or kid != _NO_KEY_ID):
            raise DecodeError("an attestation item names a recipient")
        if not 0 < n <= MAX_ENVELOPE_LEN or len(buf) - pos < n:
            raise DecodeError("envelope length is out of range or truncated")
        if kind == EnvelopeKind.SNP_REPORT and not _report_item_len_ok(n):
            raise DecodeError(f"an SNP_REPORT item of {n} bytes")
        if (kind < last and last >= EnvelopeKind.SNP_REPORT) or kind == last == EnvelopeKind.SNP_REPORT:
            raise DecodeError("clear-section items out of order (or two reports)")
        if kind == EnvelopeKind.SNP_CERT:
            certs += 1
            if last < EnvelopeKind.SNP_REPORT or certs > MAX_SNP_CERTS:
                raise DecodeError("a certificate without a report, or too many certificates")
        last = kind
        out.append(Envelope(kind, kem_id, kid, bytes(buf[pos : pos + n])))
        pos += n
    if pos != len(buf):
        raise DecodeError("trailing bytes after the envelopes")
    return out


def _report_item_len_ok(n: int) -> bool:
    grants, rest = divmod(n - SNP_REPORT_LEN, GRANT_DIGEST_LEN)
    return n > SNP_REPORT_LEN and not rest and grants <= MAX_REGIONS


# ---------------------------------------------------------------- sealed bodies


class PriorHead(NamedTuple):
    """The newest frame of the stream a boot found on disk when it started."""

    boot: int
    seq: int
    tag: bytes


class BootBody(NamedTuple):
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


class KeysBody(NamedTuple):
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

_FIELD = struct.Struct("<BH")
_BLOCK_FIXED = struct.Struct("<IBQ")  # count, flags, t_base (after the names)
_LEVELS = tuple(Level)
EMPTY_BLOCK_LEN = 1 + _BLOCK_FIXED.size  # no names, no records
_PLAIN_HEADS = bytes(h for h in VALID_HEADS if not h & HEAD_FIELDS)
_CALM_HEADS = bytes(h for h in VALID_HEADS if not h & HEAD_PANIC)
_PLAIN_CALM_HEADS = bytes(h for h in range(256) if not h & (HEAD_FIELDS | HEAD_PANIC))
_NOT_CONTINUATION = bytes(b for b in range(256) if not 0x80 <= b < 0xC0)  # bytes a character may start with
_MAX_U64 = (1 << 64) - 1
_I32 = 1 << 31
assert array("i").itemsize == 4 and array("H").itemsize == 2 and array("I").itemsize == 4


def _utf8(s: str, limit: int, what: str) -> bytes:
    b = s.encode("utf-8")
    if len(b) > limit:
        raise ValueError(f"{what} is {len(b)} bytes, the limit is {limit}")
    return b


def _le(a: array) -> bytes:  # type: ignore[type-arg]
    if sys.byteorder == "big":
        a = array(a.typecode, a)
        a.byteswap()
    return a.tobytes()


def _column(buf: bytes, typecode: str, count: int, pos: int) -> array:  # type: ignore[type-arg]
    a = array(typecode)
    a.frombytes(buf[pos : pos + count * a.itemsize])
    if sys.byteorder == "big":
        a.byteswap()
    return a


def _fields(r: Record) -> bytes:
    """A record's fields as the extras area holds them (empty: none)."""
    if not r.fields:
        return b""
    if len(r.fields) > 255:
        raise ValueError("a record has at most 255 fields")
    parts = [bytes([len(r.fields)])]
    for k, v in r.fields:
        kb, vb = _utf8(k, 255, "field key"), _utf8(v, 65535, "field value")
        parts += [_FIELD.pack(len(kb), len(vb)), kb, vb]
    return b"".join(parts)


class RecordBlockBuilder:
    """One frame's record block, built record by record (spec §4.5, §4.6): the writer
    builds exactly the block it will seal and knows its size before adding a record."""

    __slots__ = (
        "_deltas",
        "_extras",
        "_heads",
        "_ids",
        "_lens",
        "_messages",
        "_name_parts",
        "_names",
        "_t_base",
        "_t_last",
        "_text",
        "records",
    )

    def __init__(self) -> None:
        self._names: dict[tuple[str, str, str], int] = {}
        self._name_parts: list[bytes] = []
        self._heads = bytearray()
        self._ids = bytearray()
        self._deltas = array("i")
        self._lens = array("I")
        self._messages: list[bytes] = []
        self._extras: list[bytes] = []
        self._t_base = 0
        self._t_last = 0
        self._text = 0  # bytes of names, messages and extras
        self.records: list[Record] = []

    @property
    def size(self) -> int:
        """The block's length in bytes as ``block()`` would encode it now."""
        return self._size(len(self.records), self._wide(0))

    def _wide(self, new_len: int) -> bool:
        return max(new_len, max(self._lens, default=0)) > 0xFFFF

    def _size(self, count: int, wide: bool) -> int:
        return EMPTY_BLOCK_LEN + self._text + count * (MIN_RECORD_LEN + (2 if wide else 0))

    def add(self, r: Record, limit: int) -> bool:
        """Append ``r`` if the block stays within ``limit`` bytes, ``MAX_NAMES`` names and
        ±2**31 ns of the block's previous record; otherwise change nothing and return False.
        A malformed record raises ValueError."""
        if r.flags & ~KNOWN_FLAGS:
            raise ValueError("unknown record flags")
        if not 0 <= r.t_ns <= _MAX_U64:
            raise ValueError(f"record time {r.t_ns} is not a u64")
        key = (r.service, r.component, r.target or "")
        name = self._names.get(key)
        entry = b""
        if name is None:
            parts = [
                _utf8(x, 255, what) for x, what in zip(key, ("service", "component", "target"), strict=True)
            ]
            entry = b"".join(bytes([len(x)]) + x for x in parts)
            name = len(self._name_parts)
        msg = r.message.encode("utf-8")
        extra = _fields(r)
        t_base = self._t_base if self.records else r.t_ns
        delta = r.t_ns - (self._t_last if self.records else t_base)
        grown = self._text + len(entry) + len(msg) + len(extra)
        size = EMPTY_BLOCK_LEN + grown + (len(self.records) + 1) * (MIN_RECORD_LEN + 2 * self._wide(len(msg)))
        if size > limit or name >= MAX_NAMES or not -_I32 <= delta < _I32:
            return False
        if entry:
            self._names[key] = name
            self._name_parts.append(entry)
        self._t_base, self._t_last = t_base, r.t_ns
        self._heads.append(
            int(r.level) | (HEAD_FIELDS if extra else 0) | (HEAD_PANIC if r.flags & FLAG_PANIC else 0)
        )
        self._ids.append(name)
        self._deltas.append(delta)
        self._lens.append(len(msg))
        self._messages.append(msg)
        if extra:
            self._extras.append(extra)
        self._text = grown
        self.records.append(r)
        return True

    def __len__(self) -> int:
        return len(self.records)

    def block(self) -> bytes:
        wide = self._wide(0)
        lens = self._lens if wide else array("H", self._lens)
        return b"".join(
            [
                bytes([len(self._name_parts)]),
                *self._name_parts,
                _BLOCK_FIXED.pack(len(self.records), BLOCK_WIDE if wide else 0, self._t_base),
                bytes(self._heads),
                bytes(self._ids),
                _le(self._deltas),
                _le(lens),
                *self._messages,
                *self._extras,
            ]
        )


def encode_record_block(records: list[Record]) -> bytes:
    b = RecordBlockBuilder()
    for r in records:
        if not b.add(r, MAX_PLAINTEXT):
            raise ValueError("records do not fit one record block")
    return b.block()


class BlockSummary(NamedTuple):
    """What verification needs of a record block (a named tuple: one per frame)."""

    count: int  # type: ignore[assignment]  # shadows tuple.count, as the dataclass's field was named
    panic: bool
    first_t: int | None
    last_t: int | None


class RecordColumns(NamedTuple):
    """A record block's columns, every length and value checked (spec §4.5, §4.6): record i
    is ``heads[i]`` (level and head bits), ``names[ids[i]]`` (service, component, target or
    None), ``times[i]``, ``messages[i]`` and ``fields.get(i, ())``. What a line format needs
    of a frame without building a Record per line (svsmlog.export.jsonl_block_lines)."""

    names: Sequence[tuple[str, str, str | None]]
    heads: bytes
    ids: bytes
    times: list[int]
    messages: list[str]
    fields: dict[int, tuple[tuple[str, str], ...]]

    def plain(self) -> bool:
        """No record has fields or a panic flag: most blocks."""
        return not self.heads.translate(None, _PLAIN_CALM_HEADS)


def decode_record_columns(buf: bytes) -> RecordColumns:
    """Decode a frame's plaintext into its columns; every length checked before use.
    ``buf`` must be ``bytes`` (slicing it copies, and ``.decode`` is strict UTF-8)."""
    try:
        return _columns(buf)
    except UnicodeDecodeError as e:  # a name, a message or a field
        raise DecodeError(f"record text is not UTF-8: {e.reason}") from None


def _columns(buf: bytes) -> RecordColumns:
    n = len(buf)
    if n < EMPTY_BLOCK_LEN:
        raise DecodeError("record block is truncated")
    pos, names = _names_of(buf, n)
    if n - pos < _BLOCK_FIXED.size:
        raise DecodeError("record block is truncated")
    count, flags, t_base = _unpack_block(buf, pos)
    pos += _BLOCK_FIXED.size
    if flags & ~BLOCK_WIDE:
        raise DecodeError("record block flags out of range")
    width = 4 if flags & BLOCK_WIDE else 2
    if count > (n - pos) // (MIN_RECORD_LEN + width - 2):
        raise DecodeError(f"record count {count} cannot fit in {n} bytes")
    heads = buf[pos : pos + count]
    ids = buf[pos + count : pos + 2 * count]
    pos += 2 * count
    if heads.translate(None, VALID_HEADS):
        raise DecodeError("record level or head bits out of range")
    if count and max(ids) >= buf[0]:
        raise DecodeError("record names a name the block does not have")
    # t_ns of record i: t_base plus deltas 0..i; every one within a u64
    deltas = _I32S[count](buf, pos) if count < _SMALL else _column(buf, "i", count, pos)
    times = list(accumulate(deltas, initial=t_base))
    del times[0]
    pos += 4 * count
    if count and not (min(times) >= 0 and max(times) <= _MAX_U64):
        raise DecodeError("record time out of range")
    if width == 2 and count < _SMALL:
        lens: Sequence[int] = _U16S[count](buf, pos)
    else:
        lens = _column(buf, "I" if width == 4 else "H", count, pos)
    pos += width * count
    ends = list(accumulate(lens))
    total = ends[-1] if count else 0
    if total > n - pos:
        raise DecodeError("record messages run past the block")
    msgs = buf[pos : pos + total]
    spans = map(slice, chain((0,), ends), ends)
    # ASCII text (as SVSM messages are) is decoded once: its byte offsets are its character
    # offsets. Otherwise each message is decoded by itself (strict UTF-8 each).
    if msgs.isascii():
        messages = list(map(msgs.decode("ascii").__getitem__, spans))
    else:
        messages = [m.decode() for m in map(msgs.__getitem__, spans)]
    fields = _walk_fields(buf, heads, pos + total)
    return _new_columns(RecordColumns, (names, heads, ids, times, messages, fields))


def _check_messages(msgs: bytes, lens: Sequence[int]) -> None:
    """Every message is UTF-8: the concatenation is, and no message starts inside a
    character (the bulk equivalent of decoding each one). Raises UnicodeDecodeError or
    DecodeError."""
    msgs.decode()
    starts = list(accumulate(lens[:-1], initial=0))
    starts = starts[: bisect_left(starts, len(msgs))]
    if bytes(map(msgs.__getitem__, starts)).translate(None, _NOT_CONTINUATION):
        raise DecodeError("record message is not UTF-8: starts inside a character")


def _walk_fields(buf: bytes, heads: bytes, pos: int) -> dict[int, tuple[tuple[str, str], ...]]:
    """The extras area from ``pos``: the fields of the records whose head says so, by record
    index; the area must end exactly at the end of the block."""
    n = len(buf)
    out: dict[int, tuple[tuple[str, str], ...]] = {}
    if heads.translate(None, _PLAIN_HEADS):
        for i, head in enumerate(heads):
            if not head & HEAD_FIELDS:
                continue
            if pos >= n or not buf[pos]:
                raise DecodeError("record fields are truncated or empty")
            nf = buf[pos]
            pos += 1
            fl = []
            for _ in range(nf):
                if n - pos < 3:
                    raise DecodeError("record field is truncated")
                lk, lv = _FIELD.unpack_from(buf, pos)
                pos += 3
                if pos + lk + lv > n:
                    raise DecodeError("record field runs past the block")
                fl.append((buf[pos : pos + lk].decode(), buf[pos + lk : pos + lk + lv].decode()))
                pos += lk + lv
            out[i] = tuple(fl)
    if pos != n:
        raise DecodeError("trailing bytes after the last record")
    return out


def decode_record_block(buf: bytes) -> list[Record]:
    """Decode a frame's plaintext into records; every length checked before use.
    ``buf`` must be ``bytes`` (slicing it copies, and ``.decode`` is strict UTF-8)."""
    return records_of(decode_record_columns(buf))


def records_of(c: RecordColumns) -> list[Record]:
    """The records a block's columns hold, in order."""
    names, levels, fields = c.names, _LEVELS, c.fields
    if c.plain():
        return [Record(t, levels[head & HEAD_LEVEL], n[0], n[1], msg, n[2])  # type: ignore[arg-type]
                for head, n, t, msg in zip(c.heads, map(names.__getitem__, c.ids), c.times, c.messages,
                                           strict=True)]
    out = []
    for i, (head, name, t, msg) in enumerate(zip(c.heads, c.ids, c.times, c.messages, strict=True)):
        svc, comp, tgt = names[name]
        rec = Record(t, levels[head & HEAD_LEVEL], svc, comp, msg, tgt)  # type: ignore[arg-type]
        if head & (HEAD_FIELDS | HEAD_PANIC):
            rec.fields = fields.get(i, ())
            rec.flags = FLAG_PANIC if head & HEAD_PANIC else 0
        out.append(rec)
    return out


_unpack_block = _BLOCK_FIXED.unpack_from
# The delta and length columns of blocks of fewer than _SMALL records, by record count:
# one unpack_from each, no array to build.
_SMALL = 129
_I32S = [struct.Struct(f"<{k}i").unpack_from for k in range(_SMALL)]
_U16S = [struct.Struct(f"<{k}H").unpack_from for k in range(_SMALL)]
_EMPTY_SUMMARY = BlockSummary(0, False, None, None)
_new_summary = tuple.__new__  # a summary per frame: NamedTuple's own __new__ is a Python call more
_new_columns = tuple.__new__


def summarize_record_block(buf: bytes) -> BlockSummary:
    """Check a record block exactly as ``decode_record_block`` does, without building the
    records: what verification needs (count, panic, first and last time).

    The same checks as ``decode_record_columns``, in one flat function: most frames
    hold a few records, so what counts is the Python operations per block, not per record.
    tests/test_codec_differential.py holds it to accepting exactly the blocks that
    ``decode_record_block`` (and the construct declaration) accepts."""
    try:
        return _summarize(buf)
    except UnicodeDecodeError as e:
        raise DecodeError(f"record text is not UTF-8: {e.reason}") from None


def _summarize(buf: bytes) -> BlockSummary:
    n = len(buf)
    if n < EMPTY_BLOCK_LEN:
        raise DecodeError("record block is truncated")
    name_count = buf[0]
    pos = 1
    try:
        for _ in range(name_count):  # each length byte is read only where it lies inside buf
            pos += 1 + buf[pos]
            pos += 1 + buf[pos]
            pos += 1 + buf[pos]
    except IndexError:
        raise DecodeError("record block names are truncated") from None
    if pos > n:
        raise DecodeError("record block names are truncated")
    if not buf[1:pos].isascii():
        _names(buf, n)  # check each name's UTF-8
    if n - pos < _BLOCK_FIXED.size:
        raise DecodeError("record block is truncated")
    count, flags, t_base = _unpack_block(buf, pos)
    pos += _BLOCK_FIXED.size
    if flags & ~BLOCK_WIDE:
        raise DecodeError("record block flags out of range")
    width = 4 if flags else 2
    if count > (n - pos) // (MIN_RECORD_LEN + width - 2):
        raise DecodeError(f"record count {count} cannot fit in {n} bytes")
    if not count:
        if pos != n:
            raise DecodeError("trailing bytes after the last record")
        return _EMPTY_SUMMARY
    heads = buf[pos : pos + count]
    if heads.translate(None, VALID_HEADS):
        raise DecodeError("record level or head bits out of range")
    if max(buf[pos + count : pos + 2 * count]) >= name_count:
        raise DecodeError("record names a name the block does not have")
    pos += 2 * count
    deltas = _I32S[count](buf, pos) if count < _SMALL else _column(buf, "i", count, pos)
    pos += 4 * count
    if min(deltas) >= 0:  # times never go back (every honest block): first and last bound them
        first, last = t_base + deltas[0], t_base + sum(deltas)
        if last > _MAX_U64:
            raise DecodeError("record time out of range")
    else:
        times = list(accumulate(deltas, initial=t_base))[1:]
        if not (min(times) >= 0 and max(times) <= _MAX_U64):
            raise DecodeError("record time out of range")
        first, last = times[0], times[-1]
    if width == 2 and count < _SMALL:
        lens = _U16S[count](buf, pos)
    else:
        lens = _column(buf, "I" if width == 4 else "H", count, pos)
    pos += width * count
    total = sum(lens)
    if total > n - pos:
        raise DecodeError("record messages run past the block")
    msgs = buf[pos : pos + total]
    pos += total
    if not msgs.isascii():
        _check_messages(msgs, lens)
    if heads.translate(None, _PLAIN_HEADS):
        _walk_fields(buf, heads, pos)
    elif pos != n:
        raise DecodeError("trailing bytes after the last record")
    return _new_summary(BlockSummary, (count, bool(heads.translate(None, _CALM_HEADS)), first, last))


def _names_of(buf: bytes, n: int) -> tuple[int, Sequence[tuple[str, str, str | None]]]:
    """``_names``, without decoding again a short table one of the last few blocks had: a
    per-service stream's blocks name the same one to three components, block after block
    (100k per-service/default: 29 tables in 24,371 blocks), where an aggregated stream's
    name many in the order they came (4,829 tables in 4,855 blocks), not worth keeping. A
    name table is prefix-free (a count, then length-prefixed strings), so a block that
    starts with the bytes of a table decoded before has that table: the same end, the same
    names."""
    short = buf[0] <= _RECENT_TABLE_NAMES
    if short:
        for table, names in _RECENT_TABLES:
            if buf.startswith(table):
                return len(table), names
    pos, decoded = _names(buf, n)
    if short:
        _RECENT_TABLES.insert(0, (buf[:pos], tuple(decoded)))  # a tuple: blocks share it
        del _RECENT_TABLES[_RECENT_TABLE_COUNT:]
    return pos, decoded


# The short name tables of the last blocks decoded, newest first: a few, of a few names.
_RECENT_TABLE_COUNT = 4
_RECENT_TABLE_NAMES = 4
_RECENT_TABLES: list[tuple[bytes, tuple[tuple[str, str, str | None], ...]]] = []


def _names(buf: bytes, n: int, decode: bool = True) -> tuple[int, list[tuple[str, str, str | None]]]:
    """Where the names end, and the (service, component, target) triples (an empty target
    is None). Without ``decode`` only their UTF-8 is checked (all ASCII, as SVSM names are:
    one pass) and no triple is returned."""
    pos = 1
    spans = []
    try:
        for _ in range(buf[0]):
            a = pos + 1 + buf[pos]  # each length byte is read only where it lies inside buf
            b = a + 1 + buf[a]
            c = b + 1 + buf[b]
            if c > n:
                raise DecodeError("record block names are truncated")
            spans.append((pos, a, b, c))
            pos = c
    except IndexError:
        raise DecodeError("record block names are truncated") from None
    if not decode and buf[1:pos].isascii():
        return pos, []
    names = [
        (buf[p + 1 : a].decode(), buf[a + 1 : b].decode(), buf[b + 1 : c].decode() or None)
        for p, a, b, c in spans
    ]
    return pos, names if decode else []
