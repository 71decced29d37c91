"""The on-disk structures of svsmlog v3, declared with construct.

This module is the executable twin of formats/svsmlog-v3.md §4–§5: every field,
width and constant below appears there. These declarations are the *definition*;
``svsmlog.codec`` holds the fast decoders used on the hot path, and
tests/test_codec_differential.py proves the two agree. Never ``.compile()`` these:
compiled parsers skip checks, and images come from the untrusted host.
All integers are little-endian.
"""

from __future__ import annotations

from enum import IntEnum
from itertools import accumulate

from .device import SECTOR

VERSION = 3

# ---------------------------------------------------------------- limits (spec §4.6)
SUPERBLOCK_MAGIC = b"SVSMLOG\x00"
FRAME_MAGIC = b"SVLF"
MAX_REGIONS = 14
# The key directory (spec §4.7): one slot per boot, boot b in slot b mod 8, holding the
# owner envelopes where no region wrap can reach them.
KEY_DIR_LBA = 8
KEY_DIR_SLOTS = 8
KEY_DIR_SLOT_SECTORS = 7
FIRST_REGION_LBA = KEY_DIR_LBA + KEY_DIR_SLOTS * KEY_DIR_SLOT_SECTORS  # 64: regions start at 32 KiB
MIN_REGION_SECTORS = 16
MAX_CLEAR_LEN = 64 * 1024
MAX_PLAINTEXT = 1024 * 1024
TAG_LEN = 16
MAX_CT_LEN = MAX_PLAINTEXT + TAG_LEN
MAX_ENVELOPES = 32
MAX_ENVELOPE_LEN = 2048
FRAME_HEADER_LEN = 84
FRAME_AAD_LEN = 68  # the header without its commit digest
MIN_RECORD_LEN = 8  # head u8, name u8, t_delta i32, message_len u16 (spec §4.6)
MAX_RECORDS_PER_FRAME = MAX_PLAINTEXT // MIN_RECORD_LEN
MAX_NAMES = 255  # (service, component, target) triples in one record block
# Record head bits (spec §4.6).
HEAD_LEVEL = 0x07
HEAD_PANIC = 0x08
HEAD_FIELDS = 0x10
HEAD_RESERVED = 0xE0
BLOCK_WIDE = 0x01  # block flags: message lengths are u32 (some message is 64 KiB or more)
VALID_HEADS = bytes(h for h in range(256) if h & HEAD_LEVEL <= 4 and not h & HEAD_RESERVED)
NO_STREAM = 0xFFFF  # the stream of key-directory frames and of boot-secret envelopes' HPKE info

# GPT partition type of an svsmlog volume on a whole-disk image (spec §4.1).
GPT_PARTITION_TYPE = "7997fb1b-5f4d-461a-afeb-0d11d02f1993"


class FrameType(IntEnum):
    BOOT = 1  # first frame of a boot in a region: envelopes + boot record
    KEYS = 2  # envelopes handed out mid-boot: a debug grant, or re-keying after a wrap
    DATA = 3  # records
    END = 4  # records, and the stream's clean end for this boot


class EnvelopeKind(IntEnum):
    """Kinds of clear-section items (spec §4.4). 1 and 2 are HPKE envelopes; 3 and 4 carry
    the boot's attestation evidence in the clear (authenticated as AAD, not secret)."""

    BOOT_SECRET = 1  # opens to the boot secret: every stream of the boot
    CHAIN_KEY = 2  # opens to one stream's chain key at this frame: that stream from here on
    SNP_REPORT = 3  # the boot's SEV-SNP attestation report || the launch-grant digests (§6.6)
    SNP_CERT = 4  # a DER certificate the host supplied with it (the VCEK or VLEK)


SNP_REPORT_LEN = 0x4A0  # 1184: an ATTESTATION_REPORT, versions 2, 3 and 5
GRANT_DIGEST_LEN = 32
MAX_SNP_CERTS = 4


class KeysReason(IntEnum):
    DEBUG_GRANT = 1
    WRAP_REKEY = 2
    DIRECTORY = 3  # the boot's slot in the key directory


class DebugCeiling(IntEnum):
    NEVER = 0
    DEBUG_ONLY = 1
    ALWAYS = 2


class Layout(IntEnum):
    AGGREGATED = 0
    PER_SERVICE = 1


# The sealed bodies' lengths (spec §5), as BootBody and KeysBody below declare them.
BOOT_BODY_LEN = 32 + 32 + 8 + 5 + 4 + 8 + 16 + 8
KEYS_BODY_LEN = 49


# ---------------------------------------------------------------- the declarations
#
# Built on first use (``format.FrameHeader`` and the others below, through ``__getattr__``):
# importing construct and building these costs about 12 ms, and nothing on the reading path
# needs them (svsmlog.codec is the hot path; tests/test_codec_differential.py holds the two
# equal). The text below is the definition, unchanged.

_DECLARED = frozenset(
    {
        "BootBody",
        "ClearSection",
        "Envelope",
        "Field",
        "Fields",
        "FrameHeader",
        "KeysBody",
        "Name",
        "RecordBlock",
        "RegionEntry",
        "Superblock",
        "Utf8",
    }
)


def _declare() -> dict[str, object]:
    from construct import (
        Array,
        Bytes,
        Check,
        Const,
        If,
        IfThenElse,
        Int8ul,
        Int16ul,
        Int32sl,
        Int32ul,
        Int64ul,
        PaddedString,
        StringEncoded,
        Struct,
        Terminated,
        this,
    )

    def Utf8(length: object) -> StringEncoded:
        """Exactly ``length`` bytes of strict UTF-8 (no padding is stripped)."""
        return StringEncoded(Bytes(length), "utf8")

    # ---------------------------------------------------------------- superblock (spec §4.2)

    RegionEntry = Struct(
        "stream" / Int16ul,
        "reserved" / Const(0, Int16ul),
        "name" / PaddedString(12, "ascii"),
        Check(lambda ctx: ctx.name.isprintable() and "\0" not in ctx.name),
        "start" / Int64ul,
        "sectors" / Int64ul,
    )

    Superblock = Struct(
        "magic" / Const(SUPERBLOCK_MAGIC),
        "version" / Const(VERSION, Int16ul),
        "sector_size" / Const(SECTOR, Int16ul),
        "region_count" / Int16ul,
        Check(lambda ctx: 1 <= ctx.region_count <= MAX_REGIONS),
        "flags" / Const(0, Int16ul),
        "volume_id" / Bytes(16),
        "total_sectors" / Int64ul,
        "reserved" / Const(bytes(24)),
        "regions" / Array(this.region_count, RegionEntry),
    )

    # ---------------------------------------------------------------- frames (spec §4.3)

    FrameHeader = Struct(
        "magic" / Const(FRAME_MAGIC),
        "version" / Const(VERSION, Int8ul),
        "type" / Int8ul,
        Check(lambda ctx: ctx.type in FrameType._value2member_map_),
        "stream" / Int16ul,
        "boot" / Int32ul,
        Check(lambda ctx: ctx.boot >= 1),
        "seq" / Int64ul,
        "lba" / Int64ul,
        "volume_id" / Bytes(16),
        "prev_tag" / Bytes(TAG_LEN),
        "clear_len" / Int32ul,
        Check(lambda ctx: ctx.clear_len <= MAX_CLEAR_LEN),
        "ct_len" / Int32ul,
        Check(lambda ctx: TAG_LEN <= ctx.ct_len <= MAX_CT_LEN),
        "digest" / Bytes(16),
    )

    # ---------------------------------------------------------------- envelopes (spec §4.4)

    Envelope = Struct(
        "kind" / Int8ul,
        Check(lambda ctx: ctx.kind in EnvelopeKind._value2member_map_),
        "kem_id" / Int16ul,
        "key_id" / Bytes(16),
        # attestation items are not addressed to anyone
        Check(
            lambda ctx: ctx.kind < EnvelopeKind.SNP_REPORT or (ctx.kem_id == 0 and ctx.key_id == bytes(16))
        ),
        "sealed_len" / Int16ul,
        Check(lambda ctx: 0 < ctx.sealed_len <= MAX_ENVELOPE_LEN),
        Check(
            lambda ctx: ctx.kind != EnvelopeKind.SNP_REPORT
            or (
                ctx.sealed_len > SNP_REPORT_LEN
                and (ctx.sealed_len - SNP_REPORT_LEN) % GRANT_DIGEST_LEN == 0
                and (ctx.sealed_len - SNP_REPORT_LEN) // GRANT_DIGEST_LEN <= MAX_REGIONS
            )
        ),
        "sealed" / Bytes(this.sealed_len),
    )

    def _items_in_order(ctx: object) -> bool:
        # envelopes (kinds 1, 2: any order), then at most one report, then its certificates
        kinds = [max(e.kind, EnvelopeKind.CHAIN_KEY) for e in ctx.envelopes]  # type: ignore[attr-defined]
        return (
            kinds == sorted(kinds)
            and kinds.count(EnvelopeKind.SNP_REPORT) <= 1
            and kinds.count(EnvelopeKind.SNP_CERT) <= MAX_SNP_CERTS
            and (EnvelopeKind.SNP_CERT not in kinds or EnvelopeKind.SNP_REPORT in kinds)
        )

    ClearSection = Struct(
        "count" / Int16ul,
        Check(lambda ctx: ctx.count <= MAX_ENVELOPES),
        "envelopes" / Array(this.count, Envelope),
        Check(_items_in_order),
        Terminated,
    )

    # ---------------------------------------------------------------- sealed bodies (spec §5)

    BootBody = Struct(
        "superblock_digest" / Bytes(32),
        "config_digest" / Bytes(32),
        "host_time_ns" / Int64ul,
        "debug_ceiling" / Int8ul,
        Check(lambda ctx: ctx.debug_ceiling in DebugCeiling._value2member_map_),
        "debug_enabled" / Int8ul,
        Check(lambda ctx: ctx.debug_enabled in (0, 1)),
        "layout" / Int8ul,
        Check(lambda ctx: ctx.layout in Layout._value2member_map_),
        "min_level" / Int8ul,
        Check(lambda ctx: ctx.min_level <= 4),
        "prior_present" / Int8ul,
        Check(lambda ctx: ctx.prior_present in (0, 1)),
        "prior_boot" / Int32ul,
        "prior_seq" / Int64ul,
        "prior_tag" / Bytes(TAG_LEN),
        "wrap_from" / Int64ul,
        Terminated,
    )

    KeysBody = Struct(
        "reason" / Int8ul,
        Check(lambda ctx: ctx.reason in KeysReason._value2member_map_),
        "t_ns" / Int64ul,
        "wrap_from" / Int64ul,
        "superblock_digest" / Bytes(32),
        Terminated,
    )

    Field = Struct(
        "key_len" / Int8ul,
        "value_len" / Int16ul,
        "key" / Utf8(this.key_len),
        "value" / Utf8(this.value_len),
    )

    # (service, component, target) triples are named once per record block; records refer to
    # them. An empty target means none.
    Name = Struct(
        "service_len" / Int8ul,
        "service" / Utf8(this.service_len),
        "component_len" / Int8ul,
        "component" / Utf8(this.component_len),
        "target_len" / Int8ul,
        "target" / Utf8(this.target_len),
    )

    # A record's fields, in the extras area, if its head says so.
    Fields = Struct("count" / Int8ul, Check(lambda ctx: ctx.count > 0), "entries" / Array(this.count, Field))

    # Columns, so that a reader can check a whole block with a few bulk operations (spec §4.6).
    RecordBlock = Struct(
        "name_count" / Int8ul,
        "names" / Array(this.name_count, Name),
        "count" / Int32ul,
        Check(lambda ctx: ctx.count <= MAX_RECORDS_PER_FRAME),
        "flags" / Int8ul,
        Check(lambda ctx: not ctx.flags & ~BLOCK_WIDE),
        "t_base" / Int64ul,
        "heads" / Array(this.count, Int8ul),
        Check(lambda ctx: all(h in VALID_HEADS for h in ctx.heads)),
        "name_ids" / Array(this.count, Int8ul),
        Check(lambda ctx: all(i < ctx.name_count for i in ctx.name_ids)),
        "t_deltas" / Array(this.count, Int32sl),
        Check(lambda ctx: all(0 <= t < 1 << 64 for t in accumulate(ctx.t_deltas, initial=ctx.t_base))),
        "lengths" / Array(this.count, IfThenElse(this.flags & BLOCK_WIDE, Int32ul, Int16ul)),
        "messages" / Array(this.count, Utf8(lambda ctx: ctx.lengths[ctx._index])),
        "extras" / Array(this.count, If(lambda ctx: ctx.heads[ctx._index] & HEAD_FIELDS, Fields)),
        Terminated,
    )

    return {name: value for name, value in locals().items() if name in _DECLARED}


def __getattr__(name: str) -> object:
    if name in _DECLARED:
        globals().update(_declare())
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def frame_sectors(clear_len: int, ct_len: int) -> int:
    return -(-(FRAME_HEADER_LEN + clear_len + ct_len) // SECTOR)


# The largest single wrap write: a KEYS frame with a full clear section, then the largest
# frame (spec §8.3: a region start lost to a crash is only plausible within this reach).
MAX_WRAP_SECTORS = frame_sectors(MAX_CLEAR_LEN, KEYS_BODY_LEN + TAG_LEN) + frame_sectors(0, MAX_CT_LEN)
# The largest BOOT frame: after an END frame the next write to a region is a new boot's
# BOOT frame, which wraps by itself (spec §8.3, crash while wrapping).
MAX_BOOT_SECTORS = frame_sectors(MAX_CLEAR_LEN, BOOT_BODY_LEN + TAG_LEN)
MAX_FRAME_SECTORS = frame_sectors(MAX_CLEAR_LEN, MAX_CT_LEN)
