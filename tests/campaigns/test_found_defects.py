"""Defects the campaigns found, each as a minimal reproducer.

Open defects are strict xfails: they fail today; whoever fixes the code removes the marker.
The campaigns put a miss down to an open defect only when it shows that defect's signature
(svsmlog/campaign/tamper.py KNOWN_DEFECTS). Defects fixed since are plain regression tests
(svsmlog/campaign/run.py FIXED_DEFECTS). Open: D13."""

from __future__ import annotations

import struct
import subprocess
import sys
import textwrap

import pytest

from svsmlog.campaign.common import campaign_key
from svsmlog.codec import RecordBlockBuilder
from svsmlog.device import SECTOR, MemoryDevice, RecordingDevice
from svsmlog.frames import commit_digest
from svsmlog.records import Level, Record
from svsmlog.report import Kind, Report
from svsmlog.verify import Keyring, Verifier
from svsmlog.volume import StreamSpec
from svsmlog.writer import LogWriter

OWNER = campaign_key("owner")


def _verify(image: bytes) -> tuple[Verifier, Report]:
    dev = MemoryDevice(len(image) // SECTOR, image)
    v = Verifier(dev.read, dev.sector_count, Keyring([OWNER]))
    return v, v.run()


def _line(i: int, pad: int = 0) -> Record:
    return Record(i * 1000, Level.INFO, "core", "svsm", f"line {i}" + " " + "x" * pad)


def _wrapped_run(lines: int) -> tuple[RecordingDevice, list]:  # type: ignore[type-arg]
    """One boot on a 24-sector region, two-sector frames: the ring wraps within the boot."""
    dev = RecordingDevice(MemoryDevice(128))
    w = LogWriter(dev, [StreamSpec(1, "all", 24)], [OWNER.public])
    sealed = []
    for i in range(lines):
        w.append(1, _line(i, 700))
        sealed += w.flush()
    return dev, sealed


def _run_python(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


# Was D1 (fixed since; the text describes the defect): verify.py ReaderChain.keys_at ratchets one
# HKDF step per claimed seq: a header claiming seq 2**40 for a boot we hold keys for makes
# Verifier.run() take days (and checkpoints grow memory)
def test_d1_a_huge_claimed_seq_is_judged_in_bounded_time() -> None:
    """A one-bit change of a DATA frame's seq (byte 19, bit 0: seq + 2**56) must be reported
    promptly (torn frame / frame_missing), not ratcheted to."""
    code = """
        import struct
        from svsmlog.campaign.common import campaign_key
        from svsmlog.device import SECTOR, MemoryDevice
        from svsmlog.records import Level, Record
        from svsmlog.verify import Keyring, Verifier
        from svsmlog.volume import StreamSpec
        from svsmlog.writer import LogWriter
        owner = campaign_key("owner")
        dev = MemoryDevice(192)
        w = LogWriter(dev, [StreamSpec(1, "all", 64)], [owner.public])
        w.append(1, Record(1, Level.INFO, "core", "svsm", "a"))
        data = w.flush()[0]
        w.close()
        img = bytearray(dev.image())
        img[data.lba * SECTOR + 19] ^= 0x01
        d = MemoryDevice(192, bytes(img))
        print(Verifier(d.read, 192, Keyring([owner])).run().verdict)
    """
    try:
        out = _run_python(code, timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("Verifier.run() did not finish within 20 s on a 96 KiB image")
    assert out.stdout.strip() == "violated", out.stderr


# Was D2a (fixed since; the text describes the defect): spec §8.3 / verify.py _check_rotation
# excused a region start with no frame as a crash while wrapping whenever room < MAX_WRAP_SECTORS,
# even when the cut it excused lay between two frames of the same boot (a crash ends its boot):
# erasing the wrap write (KEYS + DATA at the region start) dropped a DATA frame in the middle with
# verdict intact. The torn / unreadable start is D2b.
def test_d2a_erasing_a_wrap_write_in_the_middle_of_a_boot_is_detected() -> None:
    dev, sealed = _wrapped_run(15)
    wrap = next(i for i, w in enumerate(dev.writes) if i > 1 and w.lba == 64)  # KEYS + DATA, one write
    w = dev.writes[wrap]
    img = bytearray(dev.inner.image())
    img[w.lba * SECTOR : w.lba * SECTOR + len(w.data)] = bytes(len(w.data))
    lost = next(s for s in sealed if s.lba == 65)  # the DATA frame behind the wrap's KEYS frame
    assert any(s.seq > lost.seq for s in sealed)  # the same boot went on writing after it
    _, report = _verify(bytes(img))
    # v3: the head is not an END frame, so the boot's next write may have wrapped and torn
    # with nothing landed and its sectors garbled (spec §1): the hole is not proven either
    # way, and the verdict says so instead of "intact" (spec §8.3, crash while wrapping).
    assert report.verdict == "partial", [f.as_json() for f in report.findings]
    assert any(f.kind is Kind.UNPROVEN and f.seq is not None and f.seq > lost.seq for f in report.findings)


# Was D3 (fixed since; the text describes the defect): verify.py _verify_candidate reports
# frame_foreign only when the commit digest is right and otherwise drops the candidate silently
# (spec §8.2: volume_id not ours -> frame_foreign): one flipped volume_id bit in a boot's END frame
# reads as a boot that never shut down, verdict intact
def test_d3_a_changed_volume_id_is_frame_foreign() -> None:
    dev = MemoryDevice(192)
    w = LogWriter(dev, [StreamSpec(1, "all", 64)], [OWNER.public])
    w.append(1, _line(1))
    w.flush()
    w.append(1, Record(9000, Level.ERROR, "attest", "svsm", "the last line: attestation failed"))
    end = w.close()[0]
    img = bytearray(dev.image())
    img[end.lba * SECTOR + 28] ^= 0x01  # volume_id, first byte
    _, report = _verify(bytes(img))
    assert report.verdict == "violated", [f.as_json() for f in report.findings]
    assert any(f.kind is Kind.FRAME_FOREIGN and f.offset == end.lba * SECTOR for f in report.findings)


# Was D4 (fixed since; the text describes the defect): verify.py _check_rotation, wrapped region: a
# dropped frame of the newest lap is reported as 'frames from boot 1 seq 12 up to boot 1 seq 12 are
# missing' at the region start (a frame that is present), not at the missing seq (spec §8.3: located
# at the first missing (boot, seq))
def test_d4_a_gap_in_a_wrapped_region_is_located_at_the_missing_frame() -> None:
    dev, sealed = _wrapped_run(20)
    target = sealed[-3]
    img = bytearray(dev.inner.image())
    img[target.lba * SECTOR : (target.lba + target.sectors) * SECTOR] = bytes(target.sectors * SECTOR)
    _, report = _verify(bytes(img))
    assert report.verdict == "violated"
    hits = [f for f in report.findings if f.violation]
    assert any(f.seq == target.seq or f.offset == target.lba * SECTOR for f in hits), [
        f.as_json() for f in hits
    ]


# Was D5 (fixed since; the text describes the defect): the superblock is only checked against
# verified boot records (verify.py _summarise_boot, spec §8.6); once the ring reclaimed every BOOT
# frame a renamed region goes unnoticed (spec §10: 'change the superblock -> superblock_mismatch, or
# unreadable'); the key-directory slots, which no wrap reaches, carry no superblock digest
def test_d5_a_superblock_change_is_detected_after_the_boot_frames_rotated_out() -> None:
    dev, _ = _wrapped_run(20)
    img = bytearray(dev.inner.image())
    assert img[64 + 4 : 64 + 7] == b"all"
    img[64 + 6] = ord("m")  # region name "all" -> "alm": still a valid superblock
    _, report = _verify(bytes(img))
    assert report.verdict == "violated"


# Was D5 (fixed since; the text describes the defect): with the superblock's volume_id changed no
# boot record verifies, so every frame is reported frame_foreign and the superblock is never named
# (spec §10: superblock_mismatch)
def test_d5_a_changed_volume_id_in_the_superblock_is_named() -> None:
    dev = MemoryDevice(192)
    w = LogWriter(dev, [StreamSpec(1, "all", 64)], [OWNER.public])
    w.append(1, _line(1))
    w.close()
    img = bytearray(dev.image())
    img[16] ^= 0x01
    _, report = _verify(bytes(img))
    assert any(f.kind is Kind.SUPERBLOCK_MISMATCH or f.offset == 0 for f in report.findings if f.violation)


def _malformed_block_image() -> bytes:
    """A frame that authenticates but whose record block does not parse (a writer bug, or a
    host that sealed a boot secret of its own to the owner's public key), after a good one."""
    dev = MemoryDevice(192)
    w = LogWriter(dev, [StreamSpec(1, "all", 64)], [OWNER.public])
    w.append(1, _line(1))
    w.flush()
    st = w._streams[1]  # the bytes the host would seal: no names, one record, then three bytes

    class Raw(RecordBlockBuilder):
        def block(self) -> bytes:
            return b"\x00" + struct.pack("<IBQ", 1, 0, 0) + b"\x00\x00\x00"

    st.pending = Raw()
    st.pending.add(_line(2), 1 << 20)
    w.flush(1)
    return dev.image()


# Was D6 (fixed since; the text describes the defect): verify.py stream_records decodes every ok
# frame's record block and lets DecodeError out for a frame already reported record_malformed, so
# Verifier.records() raises and 'svsmlog extract' exits 2 ('unreadable input') writing none of the
# verified records, instead of exit 1
def test_d6_records_skip_a_malformed_block_and_extract_exits_1(tmp_path) -> None:  # type: ignore[no-untyped-def]
    img = _malformed_block_image()
    v, report = _verify(img)
    assert any(f.kind is Kind.RECORD_MALFORMED for f in report.findings)
    from svsmlog.campaign.hostile import run_in_process

    path = tmp_path / "img"
    path.write_bytes(img)
    key = tmp_path / "owner.key"
    key.write_bytes(OWNER.to_pem())
    run = run_in_process(["extract", str(path), "--key", str(key), "-f", "jsonl"])
    assert run.code == 1 and "line 1" in run.stdout, (run.code, run.stderr)
    assert [lr.record.message for lr in v.records()] == ["line 1 "]


# Was D7 (fixed since; the text describes the defect): verify.py _harvest_keys bounds failed HPKE
# openings (1,024) but not successful ones: host-chosen boot secrets sealed to the owner's public
# key each add a chain that _verify_candidate tries on every candidate of the boot, so the work is
# quadratic (1,500 one-envelope KEYS frames, under 1 MiB, take well over 10 s)
def test_d7_envelopes_that_open_cost_linear_time() -> None:
    code = """
        import time
        from svsmlog import crypto
        from svsmlog.campaign.common import campaign_key
        from svsmlog.campaign.hostile import _header, _sb
        from svsmlog.codec import Envelope, encode_clear_section
        from svsmlog.device import SECTOR, MemoryDevice
        from svsmlog.format import EnvelopeKind, FrameType
        from svsmlog.keyschedule import envelope_info
        from svsmlog.verify import Keyring, Verifier
        owner = campaign_key("owner")
        vid, frames = bytes(range(16)), 1500
        n = 64 + frames
        img = bytearray(n * SECTOR)
        img[:SECTOR] = _sb(vid, n, [(1, "all", 64, frames)])
        info = envelope_info(EnvelopeKind.BOOT_SECRET, vid, 1, 0, 0)
        for i in range(frames):
            env = Envelope(EnvelopeKind.BOOT_SECRET, owner.kem_id, owner.key_id,
                           crypto.hpke_seal(owner.public, crypto.random_bytes(32), info))
            clear = encode_clear_section([env])
            lba = 64 + i
            frame = _header(FrameType.KEYS, 1, 1, 0, lba, vid, len(clear), 32) + clear + bytes(32)
            img[lba * SECTOR : lba * SECTOR + len(frame)] = frame
        d = MemoryDevice(n, bytes(img))
        t = time.perf_counter()
        Verifier(d.read, n, Keyring([owner])).run()
        print(time.perf_counter() - t)
    """
    try:
        out = _run_python(code, timeout=25)
    except subprocess.TimeoutExpired:
        pytest.fail("Verifier.run() took more than ~20 s on an image of under 1 MiB")
    assert float(out.stdout.strip()) < 5.0, out.stderr


def test_the_reproducers_use_unchanged_writer_output() -> None:
    """Guard for the reproducers above: the untouched images verify intact."""
    dev, _ = _wrapped_run(20)
    assert _verify(dev.inner.image())[1].verdict == "intact"
    dev2 = MemoryDevice(192)
    w = LogWriter(dev2, [StreamSpec(1, "all", 64)], [OWNER.public])
    w.append(1, _line(1))
    w.close()
    assert _verify(dev2.image())[1].verdict == "intact"
    # and a recomputed digest is what the campaign's "digest recomputed" variants do
    raw = dev2.image()[64 * SECTOR : 65 * SECTOR]
    clear_len, ct_len = struct.unpack_from("<II", raw, 60)
    assert (
        commit_digest(raw[:68], raw[84 : 84 + clear_len], raw[84 + clear_len : 84 + clear_len + ct_len])
        == raw[68:84]
    )


def _roomy_image() -> MemoryDevice:
    dev = MemoryDevice(4096)
    w = LogWriter(dev, [StreamSpec(1, "all", 3000)], [OWNER.public])
    for i in range(5):
        w.append(1, _line(i))
        w.flush()
    w.close()
    return dev


# Was D2b, in part (fixed since; the text describes the defect): spec §8.3 / verify.py excused missing
# history as rotation when the frame at the region start was torn or unreadable, without the room
# conditions a missing start needs: one header bit of the genesis BOOT frame of a roomy region that
# never wrapped gave verdict intact. The boot-0 variant is still open: D10 below.
@pytest.mark.parametrize(
    "offset,mask,fix_digest",
    [(12, 0x10, False), (11, 0x08, False), (8, 0x02, True)],
    ids=["seq-plus-16", "boot-plus-2**27", "boot-1-to-3-digest-recomputed"],
)
def test_d2b_a_changed_genesis_frame_in_a_roomy_region_is_detected(
    offset: int, mask: int, fix_digest: bool
) -> None:
    img = bytearray(_roomy_image().image())
    start = 64 * SECTOR
    img[start + offset] ^= mask
    if fix_digest:
        clear_len, ct_len = struct.unpack_from("<II", img, start + 60)
        body = bytes(img[start : start + 84 + clear_len + ct_len])
        img[start + 68 : start + 84] = commit_digest(
            body[:68], body[84 : 84 + clear_len], body[84 + clear_len :]
        )
    _, report = _verify(bytes(img))
    assert report.verdict == "violated", [f.as_json() for f in report.findings]


# Was D9 (fixed since; the text describes the defect): a claimed seq past the ratchet budget was
# ratcheted towards until the image's whole budget was spent (~4 s), after which every frame read
# later in the pass was reported frame_corrupt and its records were not output.
def test_d9_a_claimed_seq_past_the_budget_costs_only_its_own_frame() -> None:
    dev = _roomy_image()
    img = bytearray(dev.image())
    img[65 * SECTOR + 19] ^= 0x01  # DATA seq 1 now claims seq 1 + 2**56
    v, report = _verify(bytes(img))
    corrupt = [f for f in report.findings if f.kind is Kind.FRAME_CORRUPT]
    assert [f.offset for f in corrupt] == [65 * SECTOR], [f.as_json() for f in corrupt]
    assert {lr.record.message for lr in v.records()} >= {"line 2 ", "line 3 ", "line 4 "}


# Was D10 (fixed since; the text describes the defect): codec.py decode_frame_header accepts boot 0,
# which spec §4.3 rules out (boot >= 1), so a header with boot 0 is a candidate instead of a magic
# with a bad header (frame_corrupt, §8.1); with its digest recomputed it reads as a frame we hold no
# key for (no_key), and at the region start of a roomy region that never wrapped it is 'unreadable
# and no newer than the head', which §8.3 excuses as rotation: the genesis BOOT frame renumbered to
# boot 0 hides the region's first boot with verdict intact",
def test_d10_a_frame_claiming_boot_0_is_not_a_frame() -> None:
    img = bytearray(_roomy_image().image())
    start = 64 * SECTOR
    img[start + 8] ^= 0x01  # boot 1 -> 0
    clear_len, ct_len = struct.unpack_from("<II", img, start + 60)
    body = bytes(img[start : start + 84 + clear_len + ct_len])
    img[start + 68 : start + 84] = commit_digest(body[:68], body[84 : 84 + clear_len], body[84 + clear_len :])
    _, report = _verify(bytes(img))
    assert report.verdict == "violated", [f.as_json() for f in report.findings]
    assert any(f.kind is Kind.FRAME_CORRUPT and f.offset == start for f in report.findings)


# Was D11 (fixed since; the text describes the defect): spec §8.3 / ordering: in a wrapped region
# the dead zone comes from the frame at the region start, which the host can replace with an earlier
# lap's wrap frame (a splice from an older copy of the same sectors). The old wrap_from then makes
# the reader report a gap the ring made legitimately (the newest boot's first, reclaimed, frames)
# and call the frames before the real gap stale remnants: detected, but not located at the replaced
# frame (§8.3: at the first missing (boot, seq))",
def test_d11_an_old_wrap_frame_spliced_over_the_newest_is_located() -> None:
    """The SVSM model's wraparound scenario (per service, 32-sector regions, three boots): put
    the region start of 'core' back as it was after boot 2."""
    from svsmlog.campaign.common import model_run
    from svsmlog.format import Layout

    run = model_run("wraparound", Layout.PER_SERVICE, boots=3, seed=8, steady_s=8)
    core = next(r for r in run.regions.values() if r.name == "core")
    snapshot = bytes(run.image_after(run.boot_starts[2]))  # after boot 2
    img = bytearray(run.final())
    at = core.start * SECTOR
    newest = struct.unpack_from("<IQ", img, at + 8)  # (boot, seq) of the frame at the region start
    assert snapshot[at : at + SECTOR] != img[at : at + SECTOR] and snapshot[at : at + 4] == b"SVLF"
    img[at : at + SECTOR] = snapshot[at : at + SECTOR]
    _, report = _verify(bytes(img))
    assert report.verdict == "violated"
    hits = [f for f in report.findings if f.violation]
    assert any(f.offset == at or (f.stream, f.boot, f.seq) == ("core", *newest) for f in hits), [
        f.as_json() for f in hits
    ]


# Was D2b, the rest (fixed since; the text describes the defect): verify.py / spec §8.3-§8.4 take a
# torn frame at the region start that claims exactly the next (boot, seq) of the boot before it for
# a crash while wrapping, without checking that a wrap was possible (2,900 sectors of room left
# here) or that the boot had not already ended (its END frame is present, and no later write of it
# can exist): the genesis BOOT frame with its seq changed 0 -> 6 (one byte) hides the region's first
# frame as rotated_out, verdict intact (§10: erase history of a region that never wrapped ->
# frame_missing)",
def test_d2b_a_torn_start_claiming_the_next_seq_in_a_roomy_region_is_detected() -> None:
    img = bytearray(_roomy_image().image())
    start = 64 * SECTOR
    assert struct.unpack_from("<IQ", img, start + 8) == (1, 0)
    img[start + 12] = 6  # boot 1 wrote seq 0..5 (BOOT, four DATA, END): 6 is its next number
    _, report = _verify(bytes(img))
    assert report.verdict == "violated", [f.as_json() for f in report.findings]


# Was D12 (fixed since; the text describes the defect): ordering.py / spec §8.3-§8.4: in a wrapped
# region, a torn frame at the region start that claims the next seq after the head (here the boot's
# END frame) is taken for a crash while wrapping, although the head ended its boot and the room after
# it (21 sectors) held a write of the claimed length (1 sector): the wrap's KEYS frame with one seq
# byte changed reads as crash_tail, the lap before it as stale remnants, verdict intact (§10: change
# a sealed byte -> frame_corrupt). Fix: no torn frame continues a boot whose END frame is present.
def test_d12_a_torn_wrap_frame_claiming_the_next_seq_after_an_end_is_detected() -> None:
    dev = RecordingDevice(MemoryDevice(128))
    w = LogWriter(dev, [StreamSpec(1, "all", 24)], [OWNER.public])
    i = 0
    while i < 4 or dev.writes[-1].lba != 64:  # one-sector frames until the ring wraps
        w.append(1, _line(i))
        w.flush()
        i += 1
    end = w.close()[0]  # END right after the wrap write: the head
    img = bytearray(dev.inner.image())
    assert img[64 * SECTOR + 5] == 2  # a KEYS frame (WRAP_REKEY) at the region start
    img[64 * SECTOR + 12 : 64 * SECTOR + 20] = struct.pack("<Q", end.seq + 1)
    _, report = _verify(bytes(img))
    assert report.verdict == "violated", [
        f.as_json() for f in report.findings if f.kind is not Kind.STALE_REMNANT
    ]


# Was D13 (fixed since; the text describes the defect): verify.py
# RegionJudge._check_rotation returned at once when the region's oldest
# readable frame is a BOOT frame linked, through a frame we hold no key for, to the frame before
# it, so the region's history stays "genesis" although an authenticated wrap frame of the suffix
# opens the region start: O1 then finds no excuse for boots the ring rotated out.
def test_d13_a_rotated_out_boot_behind_another_owners_boot_is_not_missing() -> None:
    """Honest writer output on a 24-sector region: boot 1 (sealed to us), boot 2 (sealed to
    another owner only), boot 3 (sealed to us) whose ring wrap (an authenticated KEYS frame at
    the region start) overwrote exactly boot 1's frames. Boot 1's key-directory slot remains,
    so O1 asks for a frame of boot 1 in the region; the ring reclaimed them, proven by boot 3's
    wrap frame. Expected: partial (boot 2 no_key), no violation. Got: frame_missing of boot 1."""
    other = campaign_key("stranger")
    dev = MemoryDevice(64 + 24)
    for key, lines in ((OWNER, 2), (other, 3), (OWNER, 6)):
        w = LogWriter(dev, [StreamSpec(1, "all", 24)], [key.public])
        for i in range(lines):
            w.append(1, _line(i, 700))
            w.flush()
        w.close()
    _, report = _verify(dev.image())
    assert [f.kind for f in report.findings if f.violation] == []
    assert report.verdict == "partial"
