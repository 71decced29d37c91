"""Verdicts that never lie (format v3, spec §8.2, §8.3, §8.7, §9).

Each test is a case where the v2 reader said INTACT about an image that lost records, or
raised a false alarm on an honest one. Changes are made the way the host would make
them: zeroing sectors, copying sectors, sealing its own keys to the owner's public key.
"""

from __future__ import annotations

import struct

import pytest

from svsmlog import crypto
from svsmlog.codec import Envelope, KeysBody, encode_clear_section, encode_keys_body
from svsmlog.device import SECTOR, MemoryDevice, RecordingDevice
from svsmlog.format import EnvelopeKind, FrameType, KeysReason
from svsmlog.frames import commit_digest, seal_frame
from svsmlog.keyschedule import WriterChain, envelope_info, stream_root
from svsmlog.records import Level
from svsmlog.report import Kind
from svsmlog.volume import KEY_DIR_SLOT_SECTORS, StreamSpec, key_dir_slot
from svsmlog.writer import LogWriter, Sealed

from .helpers import image_device, rec, verify

THREE = [StreamSpec(1, "core", 64), StreamSpec(2, "vtpm", 64), StreamSpec(3, "uefi", 64)]


def boots(owner: crypto.PrivateKey, n: int, specs: list[StreamSpec] = THREE, sectors: int = 512,
          *, lines: int = 3, close: bool = True) -> tuple[MemoryDevice, list[Sealed]]:
    """n boots writing ``lines`` records to every stream, each closed cleanly (or not)."""
    dev = MemoryDevice(sectors)
    sealed: list[Sealed] = []
    for b in range(n):
        w = LogWriter(dev, specs, [owner.public], on_durable=sealed.append)
        for i in range(lines):
            for s in specs:
                w.append(s.stream, rec(10 * b + i, f"boot {w.boot} {s.name} {i}"))
            w.flush()
        if close or b < n - 1:
            w.close()
    return dev, sealed


def zero(img: bytearray, frames: list[Sealed]) -> None:
    for f in frames:
        img[f.lba * SECTOR : (f.lba + f.sectors) * SECTOR] = bytes(f.sectors * SECTOR)


def kinds(report) -> set[Kind]:  # type: ignore[no-untyped-def]
    return {f.kind for f in report.findings}


def check(image: bytes, owner: crypto.PrivateKey, verdict: str):  # type: ignore[no-untyped-def]
    _, report = verify(image_device(image), owner)
    assert report.verdict == verdict, [f.as_json() for f in report.findings]
    return report


# --------------------------------------------------------------------------- 1. erased streams


@pytest.mark.parametrize("stream", [1, 2, 3])
def test_an_erased_stream_is_a_removal_not_an_absence(owner: crypto.PrivateKey, stream: int) -> None:
    dev, sealed = boots(owner, 2)
    img = bytearray(dev.image())
    zero(img, [f for f in sealed if f.stream == stream])
    report = check(bytes(img), owner, "violated")
    name = THREE[stream - 1].name
    missing = {f.boot for f in report.findings if f.kind is Kind.FRAME_MISSING and f.stream == name}
    assert missing == {1, 2}
    assert all("None" not in f.detail for f in report.findings)


def test_the_newest_boots_frames_of_one_stream_erased(owner: crypto.PrivateKey) -> None:
    dev, sealed = boots(owner, 3)
    img = bytearray(dev.image())
    zero(img, [f for f in sealed if f.stream == 2 and f.lba and f.seq >= 0 and _boot_of(sealed, f) == 3])
    report = check(bytes(img), owner, "violated")
    assert any(f.kind is Kind.FRAME_MISSING and (f.stream, f.boot, f.seq) == ("vtpm", 3, 0)
               for f in report.findings)


def test_an_erased_aggregated_region_is_reported_through_the_key_directory(owner: crypto.PrivateKey) -> None:
    spec = [StreamSpec(1, "all", 128)]
    dev, sealed = boots(owner, 2, spec)
    img = bytearray(dev.image())
    zero(img, [f for f in sealed if f.stream == 1])
    report = check(bytes(img), owner, "violated")
    assert {f.boot for f in report.findings if f.kind is Kind.FRAME_MISSING and f.stream == "all"} == {1, 2}


def _boot_of(sealed: list[Sealed], f: Sealed) -> int:
    # Sealed does not carry the boot: count the BOOT frames of its stream up to it
    boot = 0
    for s in sealed:
        if s.stream == f.stream and s.ftype == FrameType.BOOT:
            boot += 1
        if s is f:
            return boot
    raise AssertionError


# --------------------------------------------------------------------------- 3. the key directory


def test_an_erased_key_directory_slot_is_reported(owner: crypto.PrivateKey) -> None:
    dev, _ = boots(owner, 2)
    img = bytearray(dev.image())
    lba = key_dir_slot(1)
    img[lba * SECTOR : (lba + KEY_DIR_SLOT_SECTORS) * SECTOR] = bytes(KEY_DIR_SLOT_SECTORS * SECTOR)
    report = check(bytes(img), owner, "violated")
    hit = [f for f in report.findings if f.kind is Kind.FRAME_MISSING]
    assert [(f.stream, f.boot, f.offset) for f in hit] == [("keydir", 1, lba * SECTOR)]


# --------------------------------------------------------------------------- 2. the wrap hole


def _wrapped_closed(owner: crypto.PrivateKey, specs: list[StreamSpec], sid: int) -> tuple[bytes, int, Sealed]:
    """One boot that wraps stream ``sid`` and then closes cleanly: its END is the head.
    Returns the image, the region start and the END frame."""
    dev = MemoryDevice(512)
    sealed: list[Sealed] = []
    w = LogWriter(dev, specs, [owner.public], on_durable=sealed.append)
    start = next(r.start for r in w.volume.superblock.regions if r.stream == sid)
    mine = lambda: [s for s in sealed if s.stream == sid]  # noqa: E731
    i = 0
    while len(mine()) < 2 or mine()[-1].lba > mine()[-2].lba:  # until a write wrapped
        w.append(sid, rec(i, "x" * 600))
        w.flush(sid)
        i += 1
    for _ in range(2):
        w.append(sid, rec(i, "after the wrap"))
        w.flush(sid)
        i += 1
    (end,) = [s for s in w.close() if s.stream == sid]
    return dev.image(), start, end


@pytest.mark.parametrize("index", [0, 1])
def test_zeroing_the_newest_lap_up_to_the_end_frame_is_never_intact(owner: crypto.PrivateKey,
                                                                  index: int) -> None:
    specs = [StreamSpec(1, "core", 32), StreamSpec(2, "vtpm", 32)]
    image, start, end = _wrapped_closed(owner, specs, specs[index].stream)
    img = bytearray(image)
    img[start * SECTOR : end.lba * SECTOR] = bytes((end.lba - start) * SECTOR)  # wrap KEYS .. END
    # Only a later boot's BOOT frame could follow an END; in the first region it could have
    # wrapped and torn there (unproven); in a later one that boot's BOOT frames would be in
    # the regions before it, and they are not (violated).
    _, report = verify(image_device(bytes(img)), owner)
    assert report.verdict == ("partial" if index == 0 else "violated"), [f.as_json() for f in report.findings]
    if index == 0:
        assert Kind.UNPROVEN in kinds(report)


# --------------------------------------------------------------------------- 4. keys


def test_a_partial_key_says_what_it_did_not_read(owner: crypto.PrivateKey) -> None:
    other = crypto.generate_private_key()
    dev = MemoryDevice(512)
    for key in (owner, other):  # boot 2 (it panics) is sealed to another owner's key
        w = LogWriter(dev, THREE, [key.public])
        w.append(1, rec(1, "boot line", level=Level.ERROR))
        w.flush()
    report = check(dev.image(), owner, "partial")
    assert report.proven_boots() == [1] and report.unproven_boots() == {2}
    assert report.scope().startswith("intact for what the keys open: 1 of 2 boot(s)")


def test_a_key_that_opens_nothing_is_unverifiable(owner: crypto.PrivateKey) -> None:
    dev, _ = boots(owner, 1)
    report = check(dev.image(), crypto.generate_private_key(), "unverifiable")
    assert report.as_json()["verdict"] == "unverifiable"


def _flip_our_envelopes(img: bytearray, key_id: bytes) -> int:
    """Flip one bit of every envelope sealed to ``key_id`` and recompute the digests."""
    n, pos = 0, img.find(key_id)
    while pos != -1:
        img[pos + 16 + 2 + 5] ^= 1  # inside the sealed bytes, after sealed_len
        start = (pos // SECTOR) * SECTOR
        while img[start : start + 4] != b"SVLF":
            start -= SECTOR
        clear_len, ct_len = struct.unpack_from("<II", img, start + 60)
        body = bytes(img[start + 84 : start + 84 + clear_len + ct_len])
        img[start + 68 : start + 84] = commit_digest(bytes(img[start : start + 68]), body[:clear_len],
                                                     body[clear_len:])
        n += 1
        pos = img.find(key_id, pos + 1)
    return n


def test_tampering_that_also_removes_our_keys_is_a_violation_not_no_key(owner: crypto.PrivateKey) -> None:
    dev, _ = boots(owner, 1)
    img = bytearray(dev.image())
    assert _flip_our_envelopes(img, owner.public.key_id) >= 4
    report = check(bytes(img), owner, "violated")
    assert Kind.FRAME_CORRUPT in kinds(report)


# --------------------------------------------------------------------------- 6. honest images


def test_a_grant_that_must_wrap_names_its_own_seq(owner: crypto.PrivateKey,
                                                   debug_key: crypto.PrivateKey) -> None:
    dev = MemoryDevice(256)
    spec = [StreamSpec(1, "core", 24)]
    w = LogWriter(dev, spec, [owner.public])
    sealed: list[Sealed] = []
    while True:  # fill until a grant's KEYS frame can no longer fit before the region end
        room = 24 - (sealed[-1].lba + sealed[-1].sectors - 64) if sealed else 24
        if room < 2:
            break
        w.append(1, rec(len(sealed), "x" * 400))
        sealed += w.flush()
    sealed += w.grant(1, debug_key.public)
    assert sealed[-1].ftype == FrameType.KEYS and sealed[-1].lba > 64  # behind a WRAP_REKEY frame
    for i in range(30):  # a later wrap reclaims the region start
        w.append(1, rec(100 + i, "after the grant " + "y" * 400))
        w.flush()
    check(dev.image(), owner, "intact")
    _, report = verify(dev, debug_key)
    # the ring has reclaimed everything before the grant: the grantee reads all the region
    # holds; only the owner's key-directory slot is not its to read (partial, no violation)
    assert report.verdict == "partial", [f.as_json() for f in report.findings]
    assert {(f.kind, f.stream) for f in report.findings if f.unproven} == {(Kind.NO_KEY, "keydir")}


def test_repeated_grants_are_one_grant(owner: crypto.PrivateKey, debug_key: crypto.PrivateKey) -> None:
    dev = MemoryDevice(512)
    w = LogWriter(dev, THREE, [owner.public])
    written = [w.grant(1, debug_key.public) for _ in range(20)]
    assert len(written[0]) == 1 and all(x == [] for x in written[1:])
    w.append(1, rec(1))
    w.close()
    _, report = verify(dev, debug_key)
    assert Kind.ENVELOPE_FLOOD not in kinds(report) and report.verdict == "partial"


def test_a_boot_number_is_never_reused_after_a_torn_first_write(owner: crypto.PrivateKey) -> None:
    dev, _ = boots(owner, 1)
    base = dev.image()
    attempt = RecordingDevice(MemoryDevice(dev.sector_count, base))
    LogWriter(attempt, THREE, [owner.public])  # boot 2 starts: its first write is core's BOOT frame
    first = attempt.writes[0]
    torn = bytearray(base)
    data = bytearray(first.data)
    data[-1] ^= 0xFF  # the write tore before its last byte: header in place, digest wrong
    torn[first.lba * SECTOR : first.lba * SECTOR + len(data)] = data
    dev2 = MemoryDevice(dev.sector_count, bytes(torn))
    # the owner adds a recipient before the next boot (its envelopes may no longer fit a slot)
    w2 = LogWriter(dev2, THREE, [owner.public, crypto.generate_private_key().public])
    assert w2.boot == 3  # not 2 again: the torn header claimed it
    w2.append(1, rec(1))
    w2.close()
    check(dev2.image(), owner, "intact")


# --------------------------------------------------------------------------- 9. forgeries


def test_a_genuine_boot_extended_by_the_host_is_a_key_conflict(owner: crypto.PrivateKey) -> None:
    """The host seals a boot secret of its own for the newest boot (HPKE base mode is
    anonymous) and appends KEYS + DATA after the boot's END, chained by the public tag."""
    dev, sealed = boots(owner, 1, [StreamSpec(1, "all", 128)])
    end = [s for s in sealed if s.stream == 1][-1]
    assert end.ftype == FrameType.END
    img = bytearray(dev.image())
    volume_id = bytes(img[16:32])
    secret = b"\x42" * 32
    info = envelope_info(EnvelopeKind.BOOT_SECRET, volume_id, 1, 0, 0)
    env = Envelope(EnvelopeKind.BOOT_SECRET, owner.public.kem_id, owner.public.key_id,
                   crypto.hpke_seal(owner.public, secret, info))
    chain = WriterChain(stream_root(secret, volume_id, 1, 1))
    for _ in range(end.seq + 1):
        chain.next_frame()
    seq, key, nonce = chain.next_frame()
    body = encode_keys_body(KeysBody(KeysReason.DEBUG_GRANT, 0, 0, crypto.sha256(bytes(img[:SECTOR]))))
    lba = end.lba + end.sectors
    frame, _tag = seal_frame(ftype=FrameType.KEYS, stream=1, boot=1, seq=seq, lba=lba, volume_id=volume_id,
                             prev_tag=end.tag, clear=encode_clear_section([env]), plaintext=body, key=key,
                             nonce=nonce)
    img[lba * SECTOR : lba * SECTOR + len(frame)] = frame
    report = check(bytes(img), owner, "violated")
    assert kinds(report) & {Kind.KEY_CONFLICT, Kind.FRAME_CORRUPT}


def test_a_keyless_middle_boot_does_not_vanish(owner: crypto.PrivateKey) -> None:
    """Zero boot 2's key-directory slot and its BOOT frames: its frames become unreadable,
    and boot 3's prior is met by one of them. Not intact: boot 2 is not proven."""
    dev, sealed = boots(owner, 3, [StreamSpec(1, "all", 256)])
    img = bytearray(dev.image())
    lba = key_dir_slot(2)
    img[lba * SECTOR : (lba + KEY_DIR_SLOT_SECTORS) * SECTOR] = bytes(KEY_DIR_SLOT_SECTORS * SECTOR)
    boot_frames = [s for s in sealed if s.ftype == FrameType.BOOT]
    zero(img, [boot_frames[1]])
    _, report = verify(image_device(bytes(img)), owner)
    assert report.verdict in ("partial", "violated"), [f.as_json() for f in report.findings]
    assert 2 not in report.proven_boots()


def test_a_forged_torn_header_over_the_region_start_excuses_nothing(owner: crypto.PrivateKey) -> None:
    dev, sealed = boots(owner, 3, [StreamSpec(1, "all", 256)], lines=4)
    img = bytearray(dev.image())
    start = 64
    header = bytearray(img[start * SECTOR : start * SECTOR + 84])
    struct.pack_into("<I", header, 8, 4)  # boot newest + 1
    header[68:84] = bytes(16)  # digest wrong: looks torn
    img[start * SECTOR : start * SECTOR + 84] = header
    mid = [s for s in sealed if s.ftype == FrameType.DATA][4]
    zero(img, [mid])  # and a cut in the middle it is meant to excuse
    report = check(bytes(img), owner, "violated")
    assert Kind.FRAME_MISSING in kinds(report) or Kind.FRAME_CORRUPT in kinds(report)


def test_an_anchor_is_not_met_by_a_frame_nobody_can_read(owner: crypto.PrivateKey) -> None:
    dev = MemoryDevice(512)
    spec = [StreamSpec(1, "all", 256)]
    w = LogWriter(dev, spec, [owner.public])
    w.append(1, rec(1))
    w.close()
    anchor = w.anchor()
    img = bytearray(dev.image())
    lba = key_dir_slot(1)  # the host erases every copy of boot 1's keys
    img[lba * SECTOR : (lba + KEY_DIR_SLOT_SECTORS) * SECTOR] = bytes(KEY_DIR_SLOT_SECTORS * SECTOR)
    img[64 * SECTOR : 65 * SECTOR] = bytes(SECTOR)
    from svsmlog.verify import Keyring, Verifier

    d = image_device(bytes(img))
    report = Verifier(d.read, d.sector_count, Keyring([owner])).run(anchor)
    assert report.verdict != "intact" and not report.anchored_boots


def test_a_foreign_key_id_on_the_genesis_boot_is_no_evidence_of_a_wrap(owner: crypto.PrivateKey) -> None:
    """Boot 1's slot erased and its BOOT frame's envelope given a foreign key id (digest
    recomputed): the frame at the region start becomes one we cannot read. In v2 that
    counted as "the ring wrapped" and excused a frame dropped later; not any more."""
    dev, sealed = boots(owner, 3, [StreamSpec(1, "all", 256)], lines=4)
    img = bytearray(dev.image())
    lba = key_dir_slot(1)
    img[lba * SECTOR : (lba + KEY_DIR_SLOT_SECTORS) * SECTOR] = bytes(KEY_DIR_SLOT_SECTORS * SECTOR)
    at = img.find(owner.public.key_id, 64 * SECTOR, 65 * SECTOR)
    assert at > 0
    img[at : at + 16] = bytes(16)  # a key id that is nobody's
    clear_len, ct_len = struct.unpack_from("<II", img, 64 * SECTOR + 60)
    body = bytes(img[64 * SECTOR + 84 : 64 * SECTOR + 84 + clear_len + ct_len])
    img[64 * SECTOR + 68 : 64 * SECTOR + 84] = commit_digest(bytes(img[64 * SECTOR : 64 * SECTOR + 68]),
                                                             body[:clear_len], body[clear_len:])
    mid = [s for s in sealed if s.ftype == FrameType.DATA][6]
    zero(img, [mid])
    report = check(bytes(img), owner, "violated")
    assert Kind.FRAME_MISSING in kinds(report)
