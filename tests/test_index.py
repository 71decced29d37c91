"""The verifier's compact frame index (ordering.Run): the same report and records as an
Entry per frame, on every kind of image, and the fall-back where it could differ."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from svsmlog import crypto
from svsmlog.anchor import Anchor
from svsmlog.device import SECTOR, MemoryDevice, replay
from svsmlog.format import FRAME_HEADER_LEN, FrameType
from svsmlog.frames import open_frame, seal_frame
from svsmlog.ordering import Entry, FrameIndex, Frames, Run, frames_of
from svsmlog.records import Level, Record
from svsmlog.report import Kind
from svsmlog.verify import Keyring, Verifier
from svsmlog.volume import StreamSpec
from svsmlog.writer import LogWriter

from .helpers import rec

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


def _both(image: bytes, keys: list[crypto.PrivateKey], anchor=None, jobs: int = 1):  # type: ignore[no-untyped-def]
    """(compact verifier, report, records), (per-frame verifier, report, records)."""
    out = []
    for compact in (True, False):
        dev = MemoryDevice(len(image) // SECTOR, image)
        v = Verifier(dev.read, dev.sector_count, Keyring(list(keys)))
        v._compact = compact
        report = v.run(anchor, jobs=jobs)
        records = [(lr.boot, lr.stream, lr.seq, lr.offset, lr.record, lr.verified) for lr in v.records()]
        out.append((v, report, records))
    return out


def assert_same(image: bytes, keys: list[crypto.PrivateKey], anchor=None, jobs: int = 1) -> Verifier:  # type: ignore[no-untyped-def]
    (v, a, ra), (_, b, rb) = _both(image, keys, anchor, jobs)
    assert a.as_json() == b.as_json()
    assert a.findings == b.findings
    assert a.verified_frames == b.verified_frames
    assert ra == rb
    return v


@pytest.mark.parametrize("name", sorted(p.stem for p in SAMPLES.glob("*.img")))
def test_samples_judge_the_same(name: str, owner: crypto.PrivateKey) -> None:
    image = (SAMPLES / f"{name}.img").read_bytes()
    key = crypto.load_private_key((SAMPLES / "TEST-ONLY-owner.key").read_bytes())
    assert_same(image, [key])
    anchor_file = SAMPLES / f"{name}.anchor.json"
    if anchor_file.exists():
        assert_same(image, [key], Anchor.from_json(anchor_file.read_text()))


def _ring(owner: crypto.PrivateKey, boots: int, records: int, sectors: int = 64,
          close: bool = True) -> MemoryDevice:
    dev = MemoryDevice(512)
    for b in range(boots):
        w = LogWriter(dev, [StreamSpec(1, "core", sectors), StreamSpec(2, "vtpm", 48)], [owner.public])
        for i in range(records):
            w.append(1 + i % 3 // 2, Record(i * 1000, Level.ERROR if i % 97 == 96 else Level.INFO, "core",
                                            "svsm", f"b{b} r{i} " + "x" * (i * 7 % 300)))
            if i % 3 == 2:
                w.flush()
        if close or b < boots - 1:
            w.close()
    return dev


@pytest.mark.parametrize("boots,records,close",
                         [(1, 40, True), (3, 200, True), (4, 300, False), (2, 1000, True)])
def test_rings_judge_the_same(owner: crypto.PrivateKey, boots: int, records: int, close: bool) -> None:
    """Wrapped regions: stale remnants, rotated history, heads inside runs."""
    image = _ring(owner, boots, records, close=close).image()
    v = assert_same(image, [owner])
    assert any(isinstance(x, Run) and x.count > 2 for f in v._entries.values() for x in f.items)


def test_crashes_and_cuts_judge_the_same(owner: crypto.PrivateKey) -> None:
    """Every write of a wrapping run cut short, torn and garbled; and sector ranges of the
    finished image zeroed: torn frames inside runs' key ranges, gaps, crash while wrapping."""
    from svsmlog.device import RecordingDevice

    empty = bytes(512 * SECTOR)
    dev = RecordingDevice(MemoryDevice(512))
    for b in range(2):
        w = LogWriter(dev, [StreamSpec(1, "core", 40), StreamSpec(2, "vtpm", 40)], [owner.public])
        for i in range(60):
            w.append(1 + i % 2, rec(i, f"b{b} " + "y" * (i * 13 % 200)))
            if i % 2:
                w.flush()
        if b == 0:
            w.close()
    writes = dev.writes
    formatted = next(i for i, w in enumerate(writes) if w.lba == 0) + 1  # the superblock goes last
    for k in range(formatted, len(writes) + 1, 3):
        for t, garbage in ((0, None), (1, b"\xa5\x5a")):
            if k < len(writes) and t >= writes[k].sectors:
                continue
            assert_same(replay(empty, writes, k, t, garbage), [owner])
    final = bytearray(replay(empty, writes, len(writes), 0, None))
    for start in range(40, 120, 7):
        img = bytearray(final)
        img[start * SECTOR : (start + 5) * SECTOR] = bytes(5 * SECTOR)
        assert_same(bytes(img), [owner])


def test_a_key_another_frame_shares_with_a_run_is_judged_frame_by_frame(owner: crypto.PrivateKey) -> None:
    """A writer holding the keys seals a second frame of a seq that a run holds: which copy
    is judged is up to the frames, so the verifier starts again with an Entry each."""
    dev = MemoryDevice(256)
    w = LogWriter(dev, [StreamSpec(1, "all", 160)], [owner.public])
    for i in range(12):
        w.append(1, rec(i, "m" * 100))
        w.flush()
    image = bytearray(dev.image())
    probe = Verifier(MemoryDevice(256, bytes(image)).read, 256, Keyring([owner]))
    probe._compact = False
    probe.run()
    frames = list(probe._entries[1])
    victim = next(e for e in frames if e.type == FrameType.DATA and e.seq == 5)
    end = max(e.lba + e.sectors for e in frames)
    raw = bytes(image[victim.lba * SECTOR : (victim.lba + victim.sectors) * SECTOR])
    assert victim.chain is not None
    keys = victim.chain.keys_at(victim.seq)
    assert keys is not None
    from svsmlog.codec import decode_frame_header

    h = decode_frame_header(raw)
    pt = open_frame(raw, b"", raw[FRAME_HEADER_LEN : h.body_len], *keys)
    assert pt is not None
    copy, _ = seal_frame(ftype=h.type, stream=h.stream, boot=h.boot, seq=h.seq, lba=end + 3,
                         volume_id=h.volume_id, prev_tag=h.prev_tag, clear=b"", plaintext=pt, key=keys[0],
                         nonce=keys[1])
    image[(end + 3) * SECTOR : (end + 3) * SECTOR + len(copy)] = copy
    v = assert_same(bytes(image), [owner])
    assert not v._compact
    assert any(f.kind is Kind.FRAME_DUPLICATED and f.seq == 5 for f in v.report.findings)


def test_runs_hold_the_frames_an_entry_each_would(owner: crypto.PrivateKey) -> None:
    image = _ring(owner, 2, 300).image()
    scans = []
    for compact in (True, False):
        dev = MemoryDevice(len(image) // SECTOR, image)
        v = Verifier(dev.read, dev.sector_count, Keyring([owner]))
        v._compact = compact
        v.run()
        scans.append(v)
    compact, plain = scans
    for stream, frames in plain._entries.items():
        got = list(compact._entries[stream])
        assert len(compact._entries[stream]) == len(frames) == len(got)
        for a, b in zip(got, frames, strict=True):
            assert (a.lba, a.type, a.boot, a.seq, a.sectors, a.tag, a.prev_tag, a.status) == (
                b.lba, b.type, b.boot, b.seq, b.sectors, b.tag, b.prev_tag, b.status)
            assert a.chain is not None and b.chain is not None and a.chain.origin == b.chain.origin
        seq = compact._entries[stream]
        for i in (0, 1, len(seq) // 2, len(seq) - 1, -1):
            x = seq[i]
            y = frames[i]
            assert (x.lba, x.seq, x.tag) == (y.lba, y.seq, y.tag)
        runs = [x for x in seq.items if isinstance(x, Run)]
        assert runs
        for r in runs:
            spans = list(r.spans())
            assert [(f.lba, f.sectors, f.seq) for f in r.frames()] == spans


def test_a_frame_index_merges_only_what_continues_a_run() -> None:
    chain = object()

    def data(lba: int, seq: int, sectors: int = 2, prev: bytes = b"p" * 16, **kw: object) -> Entry:
        e = Entry(lba, FrameType.DATA, 1, seq, sectors, bytes([seq]) * 16, prev, "ok", chain=chain, **kw)  # type: ignore[arg-type]
        return e

    ix = FrameIndex()
    ix.append(data(10, 1))
    ix.append(data(12, 2, prev=bytes([1]) * 16))
    ix.append(data(14, 3, prev=bytes([2]) * 16, sectors=3))
    ix.append(data(17, 4, prev=b"x" * 16))  # does not chain
    ix.append(data(19, 5, prev=bytes([4]) * 16, malformed=True))
    ix.append(data(30, 6, prev=bytes([5]) * 16))  # not back to back
    ix.append(Entry(32, FrameType.END, 1, 7, 2, b"e" * 16, bytes([6]) * 16, "ok", chain=chain))  # type: ignore[arg-type]
    items = ix.items
    assert isinstance(items[0], Run) and items[0].count == 3 and items[0].end == 17
    assert [type(x) for x in items[1:]] == [Entry] * 4
    assert ix.frame_count() == 7
    assert [e.seq for e in Frames(items)] == [1, 2, 3, 4, 5, 6, 7]
    assert [e.seq for e in frames_of(items)] == [1, 2, 3, 4, 5, 6, 7]
    assert not ix.overlaps()
    ix.append(data(40, 2))  # a second frame of seq 2: a run holds the first
    assert ix.overlaps()


def test_the_cli_report_is_the_same_from_a_large_ring(tmp_path: Path) -> None:
    """A model image of many boots and wraps, through the command line."""
    img, pub = tmp_path / "ring.img", SAMPLES / "TEST-ONLY-owner.pub"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "svsmlog.cli", "simulate", "--recipient", str(pub), "--image",
                        str(img), "--size", "2M", "--boots", "3", "--records", "3000", "--seed", "7"],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    key = crypto.load_private_key((SAMPLES / "TEST-ONLY-owner.key").read_bytes())
    v = assert_same(img.read_bytes(), [key])
    assert any(f.kind is Kind.ROTATED_OUT for f in v.report.findings)


def _judged(image: bytes, keys: list[crypto.PrivateKey], lane: bool, jobs: int = 1):  # type: ignore[no-untyped-def]
    dev = MemoryDevice(len(image) // SECTOR, image)
    v = Verifier(dev.read, dev.sector_count, Keyring(list(keys)))
    v._lane = lane
    report = v.run(jobs=jobs)
    records = [(lr.boot, lr.stream, lr.seq, lr.offset, lr.record, lr.verified) for lr in v.records()]
    return report.as_json(), report.findings, report.verified_frames, records


def _lane_agrees(image: bytes, owner: crypto.PrivateKey) -> bool:
    return bool(_judged(image, [owner], True) == _judged(image, [owner], False))


def _small_frames(owner: crypto.PrivateKey) -> tuple[bytes, list[Entry]]:
    """One stream of frames of one to three sectors, two boots; and its frames."""
    dev = MemoryDevice(256)
    for b in range(2):
        w = LogWriter(dev, [StreamSpec(1, "all", 120)], [owner.public])
        for i in range(14):
            w.append(1, rec(i, f"b{b} " + "m" * (i * 151 % 900)))
            w.flush()
        w.close()
    image = dev.image()
    probe = Verifier(MemoryDevice(256, image).read, 256, Keyring([owner]))
    probe._compact = False
    probe.run()
    return image, list(probe._entries[1])


def test_the_window_lane_takes_what_the_general_path_would(owner: crypto.PrivateKey,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every byte of the header of frames a run would take through the lane, a bit
    flipped; a ciphertext byte and the tag; the frame zeroed: the lane and the general
    path (every frame a Candidate, judged and indexed) give the same report and records,
    with windows of a few sectors so that frames lie across their ends."""
    from svsmlog import scan
    from svsmlog.codec import decode_frame_header

    image, frames = _small_frames(owner)
    data = [e for e in frames if e.type == FrameType.DATA and e.status == "ok"]
    # the second frame of a run (the first the lane may take), the middle of a run, the
    # last DATA frame of the first boot, the first DATA frame of the second boot after its run
    first_boot = [e for e in data if e.boot == data[0].boot]
    victims = [first_boot[1], first_boot[len(first_boot) // 2], first_boot[-1],
               [e for e in data if e.boot != data[0].boot][2]]
    monkeypatch.setattr(scan, "WINDOW_SECTORS", 2048)  # the region in one window
    assert _lane_agrees(image, owner)
    monkeypatch.setattr(scan, "WINDOW_SECTORS", 5)
    assert _lane_agrees(image, owner)
    for e in victims:
        at = e.lba * SECTOR
        body_len = decode_frame_header(image[at : at + FRAME_HEADER_LEN]).body_len
        flips = [*range(FRAME_HEADER_LEN), FRAME_HEADER_LEN + 3, body_len - 1, e.sectors * SECTOR - 1]
        for i in flips:  # each header byte, a ciphertext byte, the tag's last byte, the padding
            img = bytearray(image)
            img[at + i] ^= 0x01
            assert _lane_agrees(bytes(img), owner), (e.seq, i)
        img = bytearray(image)
        img[at : at + e.sectors * SECTOR] = bytes(e.sectors * SECTOR)
        assert _lane_agrees(bytes(img), owner)


def _resealed(raw: bytes, keys: tuple[bytes, bytes], plaintext: bytes, **fields: object) -> bytes:
    """The frame ``raw`` sealed again with its own keys, with header fields replaced: what
    a writer holding the keys could have written (the AEAD cannot tell)."""
    import struct

    from svsmlog.format import FRAME_AAD_LEN, FRAME_MAGIC, VERSION
    from svsmlog.frames import commit_digest

    hdr = struct.Struct("<4sBBHIQQ16s16sII16s")
    names = ("magic", "version", "type", "stream", "boot", "seq", "lba", "volume_id", "prev_tag", "clear_len",
             "ct_len", "digest")
    f = dict(zip(names, hdr.unpack_from(raw), strict=True))
    assert f["magic"] == FRAME_MAGIC and f["version"] == VERSION
    clear = fields.pop("clear", b"")
    assert isinstance(clear, bytes)
    f.update(fields, clear_len=len(clear), ct_len=len(plaintext) + 16)
    aad = hdr.pack(*(f[n] for n in names))[:FRAME_AAD_LEN]
    ct = crypto.aead_seal(keys[0], keys[1], plaintext, aad + clear)
    digest = fields.get("digest", commit_digest(aad, clear, ct))
    assert isinstance(digest, bytes)
    return aad + digest + clear + ct


def test_the_window_lane_refuses_what_a_key_holder_could_seal(owner: crypto.PrivateKey,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames inside a run sealed again with their own keys and one header field (or the
    body) changed, each of which the AEAD accepts: the lane and the general path judge them
    alike."""
    from svsmlog import scan
    from svsmlog.codec import decode_frame_header
    from svsmlog.format import VERSION

    image, frames = _small_frames(owner)
    data = [e for e in frames if e.type == FrameType.DATA and e.status == "ok"]
    first_boot = [e for e in data if e.boot == data[0].boot]
    for e in (first_boot[1], first_boot[len(first_boot) // 2]):
        at = e.lba * SECTOR
        raw = image[at : at + e.sectors * SECTOR]
        h = decode_frame_header(raw)
        assert e.chain is not None
        keys = e.chain.keys_at(e.seq)
        assert keys is not None
        pt = open_frame(raw, b"", raw[FRAME_HEADER_LEN : h.body_len], *keys)
        assert pt is not None
        flip = bytes(16 * [0x5A])
        later, earlier = e.chain.keys_at(h.seq + 1), e.chain.keys_at(h.seq - 1)
        assert later is not None and earlier is not None
        cases: list[tuple[bytes, dict[str, object], tuple[bytes, bytes]]] = [
            (pt, {}, keys),  # the frame as it was: the lane takes it
            (pt, {"version": VERSION + 1}, keys), (pt, {"version": VERSION - 1}, keys),
            (pt, {"type": int(FrameType.END)}, keys), (pt, {"type": int(FrameType.BOOT)}, keys),
            (pt, {"type": int(FrameType.KEYS)}, keys), (pt, {"type": 0x7F}, keys),
            (pt, {"stream": h.stream + 1}, keys), (pt, {"boot": h.boot + 1}, keys), (pt, {"boot": 0}, keys),
            (pt, {"seq": h.seq + 1}, keys), (pt, {"seq": h.seq - 1}, keys),
            (pt, {"seq": h.seq + 1}, later), (pt, {"seq": h.seq - 1}, earlier),  # sealed as the seq it claims
            (pt, {"lba": h.lba + 1}, keys), (pt, {"volume_id": flip}, keys), (pt, {"prev_tag": flip}, keys),
            (pt, {"digest": flip}, keys), (pt, {"clear": b"\x00\x00\x00\x00"}, keys),
            (b"", {}, keys), (b"\x00", {}, keys), (pt + b"\x00", {}, keys), (pt[:-1], {}, keys),
        ]
        for plaintext, fields, sealing in cases:
            frame = _resealed(raw, sealing, plaintext, **fields)
            if len(frame) > e.sectors * SECTOR:
                continue  # it would overwrite the next frame: another case
            img = bytearray(image)
            img[at : at + e.sectors * SECTOR] = frame + bytes(e.sectors * SECTOR - len(frame))
            for window in (5, 2048):
                monkeypatch.setattr(scan, "WINDOW_SECTORS", window)
                assert _lane_agrees(bytes(img), owner), (e.seq, fields)


def test_the_window_lane_takes_the_runs(owner: crypto.PrivateKey) -> None:
    """It is what grows the runs of an honest log (not only the frame-by-frame lane)."""
    image, _ = _small_frames(owner)
    dev = MemoryDevice(len(image) // SECTOR, image)
    v = Verifier(dev.read, dev.sector_count, Keyring([owner]))
    taken: list[int] = []
    original = v._take_frames

    def spy(*args):  # type: ignore[no-untyped-def]
        end = original(*args)
        taken.append(end - args[4])
        return end

    v._take_frames = spy  # type: ignore[method-assign]
    v.run()
    assert sum(1 for t in taken if t) >= 2 and max(taken) > 10


def test_the_window_lane_keeps_to_its_chunk(owner: crypto.PrivateKey) -> None:
    """A worker's chunk ends where it was cut (the next worker's scan starts there): the
    lane does not carry a run on past it."""
    image, frames = _small_frames(owner)
    dev = MemoryDevice(len(image) // SECTOR, image)
    v = Verifier(dev.read, dev.sector_count, Keyring([owner]))
    v.run()
    region = v.volume.superblock.regions[0]
    data = [e for e in frames if e.type == FrameType.DATA and e.status == "ok" and e.boot == frames[0].boot]
    hi = data[len(data) // 2].lba  # inside a run: where a frame starts and the one before it ends
    chunk = v._scan_chunk(region, region.start, hi)
    assert chunk.end == hi
    assert max(ev.lba + ev.sectors for ev in chunk.events) == hi
    assert any(ev.run is not None for ev in chunk.events)
