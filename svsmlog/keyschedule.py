"""The key schedule of spec §6: boot secret -> stream roots -> per-frame chain.

Every frame of a stream has its own AEAD key and nonce, drawn from a one-way
chain: (next chain key, frame key, nonce) = HKDF-Expand(chain key). The epoch of
forward integrity is therefore one frame: once frame i is sealed the writer holds
only chain key i+1, from which nothing earlier can be computed.
"""

from __future__ import annotations

import struct

from . import crypto
from .format import NO_STREAM, EnvelopeKind

LABEL_STREAM_ROOT = b"svsmlog v3 stream root"
LABEL_FRAME = b"svsmlog v3 frame"
LABEL_ENVELOPE = b"svsmlog v3 envelope"
LABEL_ANCHOR = b"svsmlog v3 anchor"
LABEL_BOOT_REPORT = b"svsmlog v3 boot report"
LABEL_LAUNCH_GRANTS = b"svsmlog v3 launch grants"
KEY_LEN = 32
NONCE_LEN = 12


def stream_root(boot_secret: bytes, volume_id: bytes, boot: int, stream: int) -> bytes:
    """Chain key 0 of a stream in a boot."""
    info = LABEL_STREAM_ROOT + struct.pack("<IH", boot, stream)
    return crypto.hkdf(boot_secret, salt=volume_id, info=info, length=KEY_LEN)


def step(chain_key: bytes) -> tuple[bytes, bytes, bytes]:
    """One ratchet step: (next chain key, AEAD key, nonce) for the frame sealed with ``chain_key``."""
    out = crypto.hkdf_expand(chain_key, LABEL_FRAME, KEY_LEN + KEY_LEN + NONCE_LEN)
    return out[:KEY_LEN], out[KEY_LEN : 2 * KEY_LEN], out[2 * KEY_LEN :]


def next_chain_key(chain_key: bytes) -> bytes:
    """``step(chain_key)[0]`` alone, for a reader stepping past a frame it does not open:
    HKDF-Expand's first block does not depend on the length asked for (RFC 5869 §2.3), so
    the same expansion cut to 32 bytes is one HMAC block instead of three (spec §6.4)."""
    return crypto.hkdf_expand(chain_key, LABEL_FRAME, KEY_LEN)


def envelope_info(kind: int, volume_id: bytes, boot: int, stream: int, seq: int) -> bytes:
    """HPKE ``info`` binding an envelope to the volume, the boot and (for chain keys) the
    stream and frame it unlocks. Boot-secret envelopes use stream 0xFFFF and seq 0."""
    if kind == EnvelopeKind.BOOT_SECRET:
        stream, seq = NO_STREAM, 0
    return LABEL_ENVELOPE + struct.pack("<B16sIHQ", kind, volume_id, boot, stream, seq)


class WriterChain:
    """The writer's side of one stream's chain: holds only the current chain key and
    erases each key as soon as it has been stepped past (spec §6.4)."""

    def __init__(self, root: bytes) -> None:
        self._key = bytearray(root)
        self.seq = 0

    def current_chain_key(self) -> bytes:
        """The chain key of the next frame to be sealed (what a chain-key envelope carries)."""
        return bytes(self._key)

    def next_frame(self) -> tuple[int, bytes, bytes]:
        """Consume one sequence number: returns (seq, AEAD key, nonce) and erases the old key."""
        nxt, key, nonce = step(bytes(self._key))
        crypto.erase(self._key)
        self._key = bytearray(nxt)
        seq, self.seq = self.seq, self.seq + 1
        return seq, key, nonce


class RatchetExhausted(Exception):
    """The reader's ratchet budget is spent: a frame claims a seq further than it will step."""


class RatchetBudget:
    """Ratchet steps the reader may spend on a whole image (spec §8.2). A header may claim any
    seq; without a budget, one claiming 2**56 would cost that many HKDF steps."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    @classmethod
    def for_volume(cls, sectors: int) -> RatchetBudget:
        return cls(16 * sectors + (1 << 20))

    def spend(self) -> None:
        if self.left <= 0:
            raise RatchetExhausted
        self.left -= 1


class ReaderChain:
    """The reader's side: frame keys at any sequence number at or after the point the
    reader was given a chain key for, with checkpoints so that reading a ring out of
    order stays linear."""

    CHECKPOINT_EVERY = 256

    def __init__(
        self, base_seq: int, base_key: bytes, budget: RatchetBudget | None = None, origin: bytes = b""
    ) -> None:
        self.base_seq = base_seq
        # Where the chain comes from (a digest of its boot secret or chain key): frames of one
        # boot must all authenticate under keys of one boot secret (spec §8.2).
        self.origin = origin
        self.budget = budget if budget is not None else RatchetBudget(1 << 62)
        self._checkpoints: dict[int, bytes] = {base_seq: base_key}
        self._cur_seq = base_seq
        self._cur_key = base_key
        self._cur_out: tuple[bytes, bytes, bytes] | None = None

    def keys_at(self, seq: int) -> tuple[bytes, bytes] | None:
        """(AEAD key, nonce) of frame ``seq``; one ratchet step per frame when read in order.
        Raises RatchetExhausted when reaching ``seq`` would overspend the budget."""
        out = self._cur_out
        if seq == self._cur_seq + 1 and out is not None:  # the next frame: the reader's usual case
            budget = self.budget
            if budget.left <= 0:
                raise RatchetExhausted
            budget.left -= 1
            self._cur_key = key = out[0]
            self._cur_seq = seq
            if seq % self.CHECKPOINT_EVERY == 0:
                self._checkpoints[seq] = key
            out = self._cur_out = step(key)
            return out[1], out[2]
        if seq < self.base_seq:
            return None
        if seq < self._cur_seq:
            start = max(s for s in self._checkpoints if s <= seq)
            self._cur_seq, self._cur_key, self._cur_out = start, self._checkpoints[start], None
        if seq - self._cur_seq > self.budget.left:
            raise RatchetExhausted  # refuse up front: one far-off claim must not drain the budget
        while self._cur_seq < seq:
            self.budget.spend()
            out = self._cur_out
            self._cur_key = out[0] if out is not None else next_chain_key(self._cur_key)
            self._cur_seq += 1
            self._cur_out = None
            if self._cur_seq % self.CHECKPOINT_EVERY == 0:
                self._checkpoints[self._cur_seq] = self._cur_key
        _, key, nonce = self._step_out()
        return key, nonce

    def _step_out(self) -> tuple[bytes, bytes, bytes]:
        if self._cur_out is None:
            self._cur_out = step(self._cur_key)
        return self._cur_out

    def checkpoints(self) -> dict[int, bytes]:
        """The chain keys it keeps (every CHECKPOINT_EVERY-th seq it stepped past, and its base)."""
        return dict(self._checkpoints)

    def add_checkpoints(self, checkpoints: dict[int, bytes]) -> None:
        """Take the checkpoints another copy of this chain made (a forked worker's): reading
        from deep in the chain then starts near there, not at its base."""
        for seq, key in checkpoints.items():
            if seq >= self.base_seq:
                self._checkpoints.setdefault(seq, key)

    def chain_key_at(self, seq: int) -> bytes | None:
        """The chain key of frame ``seq`` (to export a stream key from that point)."""
        if self.keys_at(seq) is None:
            return None
        return self._cur_key


def launch_grant_digest(chain_key_section: bytes) -> bytes:
    """Digest of one region's launch grants: the clear section (§4.4 encoding, count
    included) holding just the CHAIN_KEY envelopes of that region's BOOT frame."""
    return crypto.sha256(LABEL_LAUNCH_GRANTS, chain_key_section)


def boot_report_data(volume_id: bytes, boot: int, owner_section: bytes, grant_digests: list[bytes]) -> bytes:
    """REPORT_DATA of a boot's attestation report (spec §6.6): SHA-512 over the volume, the
    boot number, the boot's BOOT_SECRET envelopes (``owner_section``: the clear-section
    encoding of just those) and every region's launch-grant digest in superblock order.
    Only the SVSM that sealed those envelopes asks for it at VMPL0, so a report moved to
    another boot, volume or set of envelopes no longer matches."""
    head = LABEL_BOOT_REPORT + volume_id + struct.pack("<I", boot)
    tail = struct.pack("<H", len(grant_digests)) + b"".join(grant_digests)
    return crypto.sha512(head, crypto.sha256(owner_section), tail)
