"""Sealing and opening one frame (spec §5.1): the only place frame bytes are assembled."""

from __future__ import annotations

from . import crypto
from .codec import FrameHeader, encode_frame_header
from .device import SECTOR
from .format import FRAME_AAD_LEN, TAG_LEN


def commit_digest(aad_header: bytes, clear: bytes, ciphertext: bytes) -> bytes:
    """The keyless completeness check: lets anyone (the next boot's writer included) tell a
    fully written frame from a torn one. Not authenticated; the AEAD tag is."""
    return crypto.sha256(aad_header, clear, ciphertext)[:16]


def seal_frame(
    *,
    ftype: int,
    stream: int,
    boot: int,
    seq: int,
    lba: int,
    volume_id: bytes,
    prev_tag: bytes,
    clear: bytes,
    plaintext: bytes,
    key: bytes,
    nonce: bytes,
) -> tuple[bytes, bytes]:
    """Returns (the frame padded with zeros to whole sectors, its tag)."""
    ct_len = len(plaintext) + TAG_LEN
    provisional = FrameHeader(
        ftype, stream, boot, seq, lba, volume_id, prev_tag, len(clear), ct_len, bytes(16)
    )
    aad_header = encode_frame_header(provisional)[:FRAME_AAD_LEN]
    ciphertext = crypto.aead_seal(key, nonce, plaintext, aad_header + clear)
    digest = commit_digest(aad_header, clear, ciphertext)
    body = aad_header + digest + clear + ciphertext
    pad = -len(body) % SECTOR
    return body + bytes(pad), ciphertext[-TAG_LEN:]


def open_frame(
    header_bytes: bytes, clear: bytes, ciphertext: bytes, key: bytes, nonce: bytes
) -> bytes | None:
    """The plaintext, or None if the tag does not verify over header, clear section and ciphertext."""
    return crypto.aead_open(key, nonce, ciphertext, header_bytes[:FRAME_AAD_LEN] + clear)
