"""Our keys and what they open (spec §8.2): harvesting envelopes into reader chains.

Every sector of the key directory and of every region that starts a BOOT or KEYS header
is visited (no jumping, so nothing can hide a key frame); envelopes addressed to one of
our key ids are opened. Both the failed and the successful openings are bounded, since
anyone holding our public key can seal to it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NamedTuple

from . import crypto
from .codec import DecodeError, FrameHeader, RegionEntry, decode_clear_section, decode_frame_header
from .device import SECTOR
from .format import FRAME_HEADER_LEN, FRAME_MAGIC, NO_STREAM, EnvelopeKind, FrameType
from .keyschedule import RatchetBudget, RatchetExhausted, ReaderChain, envelope_info, stream_root
from .scan import WINDOW_SECTORS, ReadSectors, rejection_budget
from .volume import KEY_DIRECTORY, Volume

_TYPE_AT = 5  # the type byte of a frame header: magic (4 bytes), version, type (spec §4.3)
MAX_FAILED_ENVELOPES = 1024  # HPKE opens that may fail before we stop trying (DoS bound)
# Anyone can seal to our public key, so envelopes that *open* need bounds too. An honest
# boot has one boot secret (its envelopes are the same bytes everywhere, and boot numbers
# are never reused), and each grantee one chain per stream: the chain keys later wraps seal
# to it are the same chain further on. Up to these many are tried; that more than one
# authenticates frames of a boot is a finding of its own (key_conflict, spec §8.2).
MAX_SECRETS_PER_BOOT = 4
MAX_CHAIN_KEYS_PER_STREAM = 16


class KeyConflict(NamedTuple):
    """A chain key that opened for us but is not the chain of the boot secret we hold (or of
    the chain key we already hold for that stream): someone else sealed it."""

    region: RegionEntry
    boot: int
    seq: int
    lba: int


class StreamKey(NamedTuple):
    """A chain key for one stream of one boot from a given frame on (``export-key``)."""

    volume_id: bytes
    boot: int
    stream: int
    seq: int
    chain_key: bytes


@dataclass
class Keyring:
    private_keys: list[crypto.PrivateKey] = field(default_factory=list)
    stream_keys: list[StreamKey] = field(default_factory=list)


Chains = dict[tuple[int, int], list[ReaderChain]]
# (region, boot or None): called when openings exceed a bound; the caller reports it.
OnFlood = Callable[[RegionEntry, "int | None"], None]


def harvest(
    read: ReadSectors,
    volume: Volume,
    keyring: Keyring,
    budget: RatchetBudget,
    on_flood: OnFlood,
    unopened: set[int] | None = None,
    frame_sectors: list[int] | None = None,
    conflicts: list[KeyConflict] | None = None,
) -> Chains:
    """Reader chains for every (boot, stream) our keys open, stream keys included.
    ``unopened`` collects the LBAs of key frames of this volume whose clear section does
    not parse or holds an envelope for one of our key ids that does not open: an honest
    writer writes neither, so where such a frame is complete it was changed (spec §8.2).
    ``frame_sectors`` gets, per region, how many sectors start with the frame magic (the
    verifier judges from it whether frames are large enough to verify in parallel).
    ``conflicts`` gets the chain keys that are not on the chain of a boot secret we hold
    (spec §8.2)."""
    broken = unopened if unopened is not None else set()
    found: list[KeyConflict] = conflicts if conflicts is not None else []
    failed: set[tuple[int, int, int, int, bytes]] = set()
    vid = volume.volume_id
    ours = {k.key_id: k for k in keyring.private_keys}
    secrets: dict[int, set[bytes]] = {}
    chain_keys: dict[tuple[int, int], dict[tuple[int, bytes], tuple[RegionEntry, int] | None]] = {}
    for sk in keyring.stream_keys:
        if sk.volume_id == vid:
            chain_keys.setdefault((sk.boot, sk.stream), {})[(sk.seq, sk.chain_key)] = None
    failures = 0
    tried: set[tuple[int, int, int, int, bytes]] = set()
    for region in (KEY_DIRECTORY, *volume.superblock.regions):
        magics = [0]
        for lba, header, clear in _key_frames(read, region, magics):
            if header.volume_id != vid or header.lba != lba or header.stream != region.stream:
                continue
            try:
                envelopes = decode_clear_section(clear)
            except DecodeError:
                broken.add(lba)
                continue
            for env in envelopes:
                key = ours.get(env.key_id)
                if key is None:
                    continue
                # what the opening depends on (the HPKE info): boot, and stream and seq for chain keys
                chain = env.kind == EnvelopeKind.CHAIN_KEY
                attempt = (
                    env.kind,
                    header.boot,
                    header.stream if chain else 0,
                    header.seq if chain else 0,
                    env.sealed,
                )
                if key.kem_id != env.kem_id or attempt in failed:
                    broken.add(lba)
                    continue
                if attempt in tried:
                    continue
                tried.add(attempt)
                if failures >= MAX_FAILED_ENVELOPES:
                    on_flood(region, None)
                    return _build_chains(volume, secrets, chain_keys, budget, found)
                info = envelope_info(env.kind, vid, header.boot, header.stream, header.seq)
                pt = crypto.hpke_open(key, env.sealed, info)
                if pt is None or len(pt) != 32:
                    failures += 1
                    failed.add(attempt)
                    broken.add(lba)
                elif env.kind == EnvelopeKind.BOOT_SECRET:
                    boot_secrets = secrets.setdefault(header.boot, set())
                    if len(boot_secrets) >= MAX_SECRETS_PER_BOOT:
                        on_flood(region, header.boot)
                    else:
                        boot_secrets.add(pt)
                else:
                    keys = chain_keys.setdefault((header.boot, header.stream), {})
                    if len(keys) >= 4 * MAX_CHAIN_KEYS_PER_STREAM:
                        on_flood(region, header.boot)
                    else:
                        keys.setdefault((header.seq, pt), (region, lba))
        if frame_sectors is not None and region is not KEY_DIRECTORY:
            frame_sectors.append(magics[0])
    return _build_chains(volume, secrets, chain_keys, budget, found, on_flood)


def _build_chains(
    volume: Volume,
    secrets: dict[int, set[bytes]],
    chain_keys: dict[tuple[int, int], dict[tuple[int, bytes], tuple[RegionEntry, int] | None]],
    budget: RatchetBudget,
    conflicts: list[KeyConflict],
    on_flood: OnFlood | None = None,
) -> Chains:
    """One reader chain per boot secret and stream, and one per chain key that is not on a
    chain already held: a chain key that a wrap re-sealed, or a boot secret we hold, already
    reaches is the same chain (checked by stepping to it, within the budget); one that is
    not reached is someone else's key (a KeyConflict) when we hold the boot secret."""
    chains: Chains = {}
    vid = volume.volume_id
    for boot, boot_secrets in secrets.items():
        for secret in sorted(boot_secrets):
            origin = b"S" + crypto.sha256(secret)[:8]
            for stream in (NO_STREAM, *(r.stream for r in volume.superblock.regions)):
                root = stream_root(secret, vid, boot, stream)
                chains.setdefault((boot, stream), []).append(ReaderChain(0, root, budget, origin))
    for (boot, stream), keys in chain_keys.items():
        held = chains.setdefault((boot, stream), [])
        from_secret = bool(held)
        for (seq, ck), where in sorted(keys.items(), key=lambda kv: kv[0]):
            if any(_reaches(ch, seq, ck) for ch in held):
                continue
            if from_secret or len(held) >= MAX_CHAIN_KEYS_PER_STREAM:
                if where is not None and from_secret:
                    conflicts.append(KeyConflict(where[0], boot, seq, where[1]))
                elif where is not None and on_flood is not None:
                    on_flood(where[0], boot)
                continue
            held.append(ReaderChain(seq, ck, budget, b"C" + crypto.sha256(ck)[:8]))
        if not held:
            del chains[(boot, stream)]
    return chains


def _reaches(chain: ReaderChain, seq: int, chain_key: bytes) -> bool:
    """Whether ``chain`` has ``chain_key`` at ``seq`` (False where the budget does not reach)."""
    try:
        have = chain.chain_key_at(seq)
    except RatchetExhausted:
        return False
    return have is not None and crypto.ct_equal(have, chain_key)


def _key_frames(
    read: ReadSectors, region: RegionEntry, magics: list[int]
) -> Iterator[tuple[int, FrameHeader, bytes]]:
    """Every sector of the region that starts a BOOT or KEYS frame header, with its clear
    section. Looks at every sector (no jumping) so nothing can hide a key frame; the
    bytes read beyond the scan window are bounded like the scan's (rejection_budget).
    Counts the sectors that start with the magic in ``magics[0]``."""
    end = region.start + region.sectors
    budget = rejection_budget(region)
    lba = region.start
    while lba < end:
        n = min(WINDOW_SECTORS, end - lba)
        buf = read(lba, n)
        count, key_sectors = _sector_starts(buf, n)
        magics[0] += count
        at = key_sectors.find(1)
        while at != -1:
            pos = at * SECTOR
            try:
                h: FrameHeader | None = decode_frame_header(buf, pos)
            except DecodeError:
                h = None
            if h is not None and h.type in (FrameType.BOOT, FrameType.KEYS):
                start = pos + FRAME_HEADER_LEN
                clear = buf[start : start + h.clear_len]
                need = -(-(FRAME_HEADER_LEN + h.clear_len) // SECTOR)
                if len(clear) < h.clear_len and lba + at + need <= end and budget >= need * SECTOR:
                    budget -= need * SECTOR
                    clear = read(lba + at, need)[FRAME_HEADER_LEN:][: h.clear_len]
                if len(clear) == h.clear_len:
                    yield lba + at, h, clear
            at = key_sectors.find(1, at + 1)
        lba += n


# Byte -> 1 where it is the byte wanted, else 0: a column of sector bytes, translated, is a
# bitmap (as an int) of the sectors that have it.
_IS = {b: bytes(int(x == b) for x in range(256)) for b in set(FRAME_MAGIC)}
_IS_KEY_TYPE = bytes(int(x in (FrameType.BOOT, FrameType.KEYS)) for x in range(256))


def _sector_starts(buf: bytes, n: int) -> tuple[int, bytes]:
    """Of the ``n`` sectors of ``buf``: how many start with the frame magic, and a byte per
    sector, 1 where the sector starts with the magic and a BOOT or KEYS type byte. The
    columns (byte i of every sector: ``buf[i::SECTOR]``) are compared in C: ``find``
    through the ciphertext from one header to the next took 3-11 % of verifying a
    1M-record image (benchmarks/README.md)."""
    hit = -1
    for i, b in enumerate(FRAME_MAGIC):
        hit &= int.from_bytes(buf[i::SECTOR].translate(_IS[b]), "big")
    keys = hit & int.from_bytes(buf[_TYPE_AT::SECTOR].translate(_IS_KEY_TYPE), "big")
    return hit.bit_count(), keys.to_bytes(n, "big")
