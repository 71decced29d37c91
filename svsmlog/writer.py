"""The SVSM-side writer (spec §7): append records, flush them as sealed frames.

One flush of a stream is one frame and one device write of whole sectors at a sector
offset. Sectors holding committed frames are never written again until the ring comes
round and reclaims them. The writer holds no secret but the current chain key of each
stream; the boot secret is erased once the stream roots are derived, and each chain
key is erased as soon as the frame it seals is written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from . import crypto
from .anchor import Anchor
from .anchor import Head as AnchorHead
from .codec import (
    EMPTY_BLOCK_LEN,
    BootBody,
    DecodeError,
    Envelope,
    KeysBody,
    PriorHead,
    RecordBlockBuilder,
    RegionEntry,
    clear_section_len,
    encode_boot_body,
    encode_clear_section,
    encode_keys_body,
)
from .device import SECTOR, BlockDevice
from .format import (
    BOOT_BODY_LEN,
    FRAME_HEADER_LEN,
    KEY_DIR_SLOT_SECTORS,
    KEYS_BODY_LEN,
    MAX_ENVELOPE_LEN,
    MAX_PLAINTEXT,
    MAX_SNP_CERTS,
    NO_STREAM,
    SNP_REPORT_LEN,
    TAG_LEN,
    DebugCeiling,
    EnvelopeKind,
    FrameType,
    KeysReason,
    Layout,
    frame_sectors,
)
from .frames import seal_frame
from .keyschedule import WriterChain, boot_report_data, envelope_info, launch_grant_digest, stream_root
from .records import Level, Record
from .scan import find_head
from .volume import KEY_DIRECTORY, StreamSpec, Volume, format_volume, key_dir_slot, read_volume

Sealer = Callable[[crypto.PublicKey, bytes, bytes], bytes]
MAX_BOOT = 0xFFFFFFFF
_NO_KEY_ID = bytes(16)


@dataclass(frozen=True)
class Evidence:
    """What the AMD-SP answered to the boot's MSG_REPORT_REQ (spec §6.6): the signed report,
    and the certificates the host supplied with it (an extended request; untrusted, and
    verified by the reader anyway), DER, the VCEK or VLEK first."""

    report: bytes
    certs: tuple[bytes, ...] = ()


# REPORT_DATA -> the evidence, or None when the host refused (or failed) the guest request.
Attester = Callable[[bytes], "Evidence | None"]


class WriterError(Exception):
    """The writer cannot log to this device (the SVSM would keep logging to memory only)."""


@dataclass(frozen=True)
class BootPolicy:
    """What the boot record states about this boot (spec §5.3)."""

    config_digest: bytes = bytes(32)
    host_time_ns: int = 0  # from the host: untrusted, recorded as such
    debug_ceiling: DebugCeiling = DebugCeiling.NEVER
    debug_enabled: bool = False
    layout: Layout = Layout.AGGREGATED
    min_level: Level = Level.TRACE


@dataclass(frozen=True)
class Sealed:
    """A frame the device write returned for: its records are durable."""

    stream: int
    seq: int
    ftype: FrameType
    lba: int
    sectors: int
    tag: bytes
    records: tuple[Record, ...] = ()


@dataclass
class _Stream:
    region: RegionEntry
    chain: WriterChain
    pos: int  # next frame's sector, relative to the region start
    tag: bytes  # tag of the last frame written: the next frame's prev_tag
    grantees: list[crypto.PublicKey]  # holders of a chain-key envelope for this stream
    pending: RecordBlockBuilder = field(default_factory=RecordBlockBuilder)
    closed: bool = False
    last_seq: int = -1


def _chain_envelope_len(keys: list[crypto.PublicKey]) -> int:
    return clear_section_len(crypto.hpke_sealed_len(k.kem_id, 32) for k in keys) - 2


class LogWriter:
    """Opens (or formats) the volume, starts a boot and writes its BOOT frame to every region."""

    def __init__(
        self,
        device: BlockDevice,
        streams: list[StreamSpec],
        owners: list[crypto.PublicKey],
        *,
        policy: BootPolicy | None = None,
        stream_grants: dict[int, list[crypto.PublicKey]] | None = None,
        rng: Callable[[int], bytes] = crypto.random_bytes,
        sealer: Sealer = crypto.hpke_seal,
        clock: Callable[[], int] = lambda: 0,
        on_durable: Callable[[Sealed], None] | None = None,
        attester: Attester | None = None,
    ) -> None:
        if not owners:
            raise WriterError("at least one recipient key is required")
        self.device = device
        self.policy = policy or BootPolicy()
        self._sealer = sealer
        self._clock = clock
        # Called as each frame's device write returns, before the next write: the caller
        # learns of durable records one write at a time, even if a later write crashes.
        self._on_durable = on_durable
        self.volume = self._mount(device, streams, rng)
        vid = self.volume.volume_id
        found = {r.stream: find_head(device.read, r, vid) for r in self.volume.superblock.regions}
        heads = {sid: head for sid, (head, _) in found.items()}
        # Boot numbers are never reused (spec §7.2): a boot that crashed in its first write
        # left a torn header that names its number, and the reader holds every boot to one
        # secret. Key-directory slots count too.
        _, slot_claim = find_head(device.read, KEY_DIRECTORY, vid)
        newest = max([claimed for _, claimed in found.values()] + [slot_claim])
        if newest >= MAX_BOOT:
            raise WriterError("boot counter exhausted on this volume")
        self.boot = newest + 1

        boot_secret = bytearray(rng(32))
        info = envelope_info(EnvelopeKind.BOOT_SECRET, vid, self.boot, 0, 0)
        self._owner_envelopes = [
            Envelope(EnvelopeKind.BOOT_SECRET, k.kem_id, k.key_id, sealer(k, bytes(boot_secret), info))
            for k in owners
        ]
        directory_root = stream_root(bytes(boot_secret), vid, self.boot, NO_STREAM)
        self._streams: dict[int, _Stream] = {}
        grants = stream_grants or {}
        for r in self.volume.superblock.regions:
            head = heads[r.stream]
            root = stream_root(bytes(boot_secret), vid, self.boot, r.stream)
            self._streams[r.stream] = _Stream(
                region=r,
                chain=WriterChain(root),
                pos=head.end if head else 0,
                tag=head.tag if head else bytes(TAG_LEN),
                grantees=list(grants.get(r.stream, [])),
            )
        crypto.erase(boot_secret)
        # Launch grants are sealed now, before any write: the attestation report commits to
        # them and to the owner envelopes (spec §6.6), so the report is asked for first.
        self._launch_grants = {
            sid: [self._chain_envelope(st, k, 0, st.chain.current_chain_key()) for k in st.grantees]
            for sid, st in self._streams.items()
        }
        self.report_data = boot_report_data(
            vid,
            self.boot,
            encode_clear_section(self._owner_envelopes),
            [launch_grant_digest(encode_clear_section(g)) for g in self._launch_grants.values()],
        )
        self.evidence = attester(self.report_data) if attester is not None else None
        self._evidence_items = _evidence_items(self.evidence, list(self._launch_grants.values()))
        # BOOT frames first, in superblock order, then the key-directory slot: a slot, or
        # any later frame, proves that every region got its BOOT frame (spec §7.2, §8.7).
        for sid, st in self._streams.items():
            head = heads[sid]
            prior = PriorHead(head.boot, head.seq, head.tag) if head else None
            self._write_boot_frame(st, prior)
        self._write_directory_slot(directory_root)

    # ------------------------------------------------------------------ mounting

    @staticmethod
    def _mount(device: BlockDevice, streams: list[StreamSpec], rng: Callable[[int], bytes]) -> Volume:
        try:
            vol = read_volume(device.read(0, 1), device.sector_count)
        except DecodeError:
            return format_volume(device, rng(16), streams)
        want = sorted((s.stream, s.name) for s in streams)
        have = sorted((r.stream, r.name) for r in vol.superblock.regions)
        if want != have:
            raise WriterError(
                "the volume's streams differ from the launch configuration; refusing to reformat"
            )
        return vol

    # ------------------------------------------------------------------ public API

    @property
    def volume_id(self) -> bytes:
        return self.volume.volume_id

    @property
    def streams(self) -> list[int]:
        return list(self._streams)

    def fits(self, stream: int, record: Record) -> bool:
        """Whether ``record`` fits a frame of ``stream`` on its own (else append refuses it)."""
        return RecordBlockBuilder().add(record, self._max_plaintext(self._streams[stream]))

    def append(self, stream: int, record: Record) -> list[Sealed]:
        """Buffer a record. If it would not fit in the stream's pending frame, the pending
        records are flushed first (returned); a record too large for any frame is refused."""
        st = self._stream(stream)
        limit = self._max_plaintext(st)
        if st.pending.add(record, limit):
            return []
        if not RecordBlockBuilder().add(record, limit):
            raise ValueError(f"record exceeds the largest frame of stream {st.region.name!r}")
        sealed = [self._flush_stream(st, FrameType.DATA)] if len(st.pending) else []
        added = st.pending.add(record, limit)
        assert added  # it fits an empty block: checked above
        return sealed

    def pending_bytes(self, stream: int) -> int:
        """Bytes the pending records take in the record block (its fixed fields excluded)."""
        return self._streams[stream].pending.size - EMPTY_BLOCK_LEN

    def flush(self, stream: int | None = None) -> list[Sealed]:
        """Seal and write what is pending (of one stream, or of all). Durable on return."""
        targets = [self._stream(stream)] if stream is not None else list(self._streams.values())
        return [self._flush_stream(st, FrameType.DATA) for st in targets if len(st.pending) and not st.closed]

    def grant(self, stream: int, recipient: crypto.PublicKey) -> list[Sealed]:
        """Let ``recipient`` read this stream from now on (the debug mode of the model):
        pending records are flushed first, so nothing logged before the grant is readable.
        Returns what was written: that flush, if any, then the KEYS frame."""
        st = self._stream(stream)
        if any(g.key_id == recipient.key_id for g in st.grantees):
            return []  # it already reads this stream from its first grant on (spec §7.4)
        flushed = [self._flush_stream(st, FrameType.DATA)] if len(st.pending) else []
        st.grantees.append(recipient)

        def clear() -> bytes:
            # At the KEYS frame's own seq, known only once _write has decided whether a
            # WRAP_REKEY frame goes first (it takes a seq of its own).
            env = self._chain_envelope(st, recipient, st.chain.seq, st.chain.current_chain_key())
            return encode_clear_section([env])

        body = encode_keys_body(KeysBody(KeysReason.DEBUG_GRANT, self._clock(), 0, self.volume.digest))
        return [*flushed, self._write(st, FrameType.KEYS, clear, lambda _w: body, ())]

    def close(self) -> list[Sealed]:
        """Clean shutdown: every stream's pending records go out in an END frame."""
        out = []
        for st in self._streams.values():
            if not st.closed:
                out.append(self._flush_stream(st, FrameType.END))
                st.closed = True
        return out

    def anchor(self) -> Anchor:
        """The head commitment over every stream's newest frame (spec §6.5)."""
        heads = tuple(AnchorHead(sid, self.boot, st.last_seq, st.tag) for sid, st in self._streams.items())
        return Anchor(self.volume_id, self.boot, heads)

    # ------------------------------------------------------------------ internals

    def _stream(self, stream: int) -> _Stream:
        st = self._streams.get(stream)
        if st is None:
            raise KeyError(f"no stream {stream} on this volume")
        if st.closed:
            raise WriterError(f"stream {st.region.name!r} is closed for this boot")
        return st

    def _keys_frame_sectors(self, st: _Stream) -> int:
        clear = clear_section_len(len(e.sealed) for e in self._owner_envelopes + self._evidence_items)
        clear += _chain_envelope_len(st.grantees)
        return frame_sectors(clear, KEYS_BODY_LEN + TAG_LEN)

    def _max_plaintext(self, st: _Stream) -> int:
        room = (st.region.sectors - self._keys_frame_sectors(st)) * SECTOR - FRAME_HEADER_LEN - TAG_LEN
        return min(MAX_PLAINTEXT, room)

    def _chain_envelope(self, st: _Stream, key: crypto.PublicKey, seq: int, chain_key: bytes) -> Envelope:
        info = envelope_info(EnvelopeKind.CHAIN_KEY, self.volume_id, self.boot, st.region.stream, seq)
        return Envelope(EnvelopeKind.CHAIN_KEY, key.kem_id, key.key_id, self._sealer(key, chain_key, info))

    def _all_envelopes(self, st: _Stream) -> bytes:
        """A WRAP_REKEY frame's clear section: owner envelopes (the boot secret; the same
        bytes in every key frame of the boot), a chain-key envelope at this frame for every
        grantee of the stream, then the boot's attestation evidence (spec §7.3)."""
        seq, ck = st.chain.seq, st.chain.current_chain_key()
        envs = self._owner_envelopes + [self._chain_envelope(st, k, seq, ck) for k in st.grantees]
        return encode_clear_section(envs + self._evidence_items)

    def _write_directory_slot(self, root: bytes) -> None:
        """The boot's owner envelopes, and its attestation evidence if it fits too, in its
        key-directory slot, out of reach of any ring wrap (spec §4.7). Skipped if the
        envelopes do not fit a slot: BOOT frames still carry them."""
        body = encode_keys_body(KeysBody(KeysReason.DIRECTORY, self._clock(), 0, self.volume.digest))
        clear = encode_clear_section(self._owner_envelopes + self._evidence_items)
        if frame_sectors(len(clear), len(body) + TAG_LEN) > KEY_DIR_SLOT_SECTORS:
            clear = encode_clear_section(self._owner_envelopes)
        if frame_sectors(len(clear), len(body) + TAG_LEN) > KEY_DIR_SLOT_SECTORS:
            return
        lba = key_dir_slot(self.boot)
        _, key, nonce = WriterChain(root).next_frame()
        frame, _ = seal_frame(
            ftype=FrameType.KEYS,
            stream=NO_STREAM,
            boot=self.boot,
            seq=0,
            lba=lba,
            volume_id=self.volume_id,
            prev_tag=bytes(TAG_LEN),
            clear=clear,
            plaintext=body,
            key=key,
            nonce=nonce,
        )
        self.device.write(lba, frame)

    def _write_boot_frame(self, st: _Stream, prior: PriorHead | None) -> Sealed:
        p = self.policy

        def body(wrap_from: int) -> bytes:
            return encode_boot_body(
                BootBody(
                    self.volume.digest,
                    p.config_digest,
                    p.host_time_ns,
                    p.debug_ceiling,
                    p.debug_enabled,
                    p.layout,
                    int(p.min_level),
                    prior,
                    wrap_from,
                )
            )

        assert len(body(0)) == BOOT_BODY_LEN
        clear = encode_clear_section(
            self._owner_envelopes + self._launch_grants[st.region.stream] + self._evidence_items
        )
        return self._write(st, FrameType.BOOT, lambda: clear, body, ())

    def _flush_stream(self, st: _Stream, ftype: FrameType) -> Sealed:
        block = st.pending.block()
        records = tuple(st.pending.records)
        st.pending = RecordBlockBuilder()
        return self._write(st, ftype, lambda: b"", lambda _w: block, records)

    def _write(
        self,
        st: _Stream,
        ftype: FrameType,
        clear_for: Callable[[], bytes],
        plaintext_for: Callable[[int], bytes],
        records: tuple[Record, ...],
    ) -> Sealed:
        """Seal one frame at the write position; if it does not fit before the region end,
        wrap to the region start, and unless the frame is itself a BOOT frame put a KEYS
        frame in front of it so the region start always carries envelopes (spec §7.3).
        Either way it is one device write. ``clear_for`` is asked again after a WRAP_REKEY
        frame took a seq, so a chain-key envelope names its own frame's seq."""
        clear = clear_for()
        n = frame_sectors(len(clear), len(plaintext_for(0)) + TAG_LEN)
        out = b""
        wrap_from = 0
        if st.pos + n > st.region.sectors:
            wrap_from, st.pos = st.pos, 0
            if ftype != FrameType.BOOT:
                keys_body = encode_keys_body(
                    KeysBody(KeysReason.WRAP_REKEY, self._clock(), wrap_from, self.volume.digest)
                )
                out, _ = self._seal(st, FrameType.KEYS, self._all_envelopes(st), keys_body)
                wrap_from = 0
                clear = clear_for()
                assert frame_sectors(len(clear), len(plaintext_for(0)) + TAG_LEN) == n
        first_lba = st.region.start + st.pos - len(out) // SECTOR
        frame, seq = self._seal(st, ftype, clear, plaintext_for(wrap_from))
        self.device.write(first_lba, out + frame)
        sealed = Sealed(
            st.region.stream,
            seq,
            ftype,
            first_lba + len(out) // SECTOR,
            len(frame) // SECTOR,
            st.tag,
            records,
        )
        if self._on_durable is not None:
            self._on_durable(sealed)
        return sealed

    def _seal(self, st: _Stream, ftype: FrameType, clear: bytes, plaintext: bytes) -> tuple[bytes, int]:
        seq, key, nonce = st.chain.next_frame()
        frame, tag = seal_frame(
            ftype=ftype,
            stream=st.region.stream,
            boot=self.boot,
            seq=seq,
            lba=st.region.start + st.pos,
            volume_id=self.volume_id,
            prev_tag=st.tag,
            clear=clear,
            plaintext=plaintext,
            key=key,
            nonce=nonce,
        )
        st.pos += len(frame) // SECTOR
        st.tag, st.last_seq = tag, seq
        return frame, seq


def _evidence_items(evidence: Evidence | None, launch_grants: list[list[Envelope]]) -> list[Envelope]:
    """The clear-section items of spec §4.4 carrying a boot's evidence: SNP_REPORT (the
    report, then every region's launch-grant digest, so a grantee can check its own), then
    one SNP_CERT per certificate. None for an unattested boot."""
    if evidence is None:
        return []
    if len(evidence.report) != SNP_REPORT_LEN:
        raise WriterError(f"an attestation report is {SNP_REPORT_LEN} bytes, not {len(evidence.report)}")
    digests = b"".join(launch_grant_digest(encode_clear_section(g)) for g in launch_grants)
    items = [Envelope(EnvelopeKind.SNP_REPORT, 0, _NO_KEY_ID, evidence.report + digests)]
    for der in evidence.certs[:MAX_SNP_CERTS]:
        if 0 < len(der) <= MAX_ENVELOPE_LEN:  # a larger one is left out: --cert can supply it
            items.append(Envelope(EnvelopeKind.SNP_CERT, 0, _NO_KEY_ID, der))
    return items
