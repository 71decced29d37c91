"""Verifier behaviour: crash consistency at every write and tear point, rotation without
false alarms, and located findings for changes spec §10 claims to detect."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svsmlog import crypto
from svsmlog.device import SECTOR, MemoryDevice, RecordingDevice, replay
from svsmlog.records import Level, Record
from svsmlog.report import Kind
from svsmlog.volume import StreamSpec
from svsmlog.writer import LogWriter

from .helpers import image_device, rec, verify

TWO = [StreamSpec(1, "core", 48), StreamSpec(2, "vtpm", 32)]


def run_two_boots(owner: crypto.PrivateKey) -> tuple[bytes, RecordingDevice, list[set[str]]]:
    """Two boots over a fresh volume; returns the empty image, the writes, and after each
    write k (1-based) the set of messages whose frame had been written by then."""
    empty = bytes(192 * SECTOR)
    dev = RecordingDevice(MemoryDevice(192))
    written_by: dict[str, int] = {}

    def note(sealed: list) -> None:  # type: ignore[type-arg]
        for s in sealed:
            # the write that carried this frame: the newest one covering its first sector
            k = max(i for i, w in enumerate(dev.writes) if w.lba <= s.lba < w.lba + w.sectors)
            for r in s.records:
                written_by[r.message] = k

    for boot in range(2):
        w = LogWriter(dev, TWO, [owner.public])
        for i in range(12):
            level = Level.ERROR if i % 5 == 4 else Level.INFO
            note(w.append(1 + i % 2, Record(i, level, "core", "svsm", f"b{boot}-{i} " + "z" * (40 * i))))
            if level == Level.ERROR or i % 4 == 3:
                note(w.flush())
        if boot == 0:
            note(w.close())
    durable = [{m for m, i in written_by.items() if i < k} for k in range(1, len(dev.writes) + 1)]
    return empty, dev, durable


def test_crash_at_every_write_and_tear(owner: crypto.PrivateKey) -> None:
    empty, dev, durable = run_two_boots(owner)
    writes = dev.writes
    formatted = next(i for i, w in enumerate(writes) if w.lba == 0) + 1  # the superblock goes last
    cases = 0
    for k in range(len(writes) + 1):
        tears = range(writes[k].sectors) if k < len(writes) else [0]
        for t in tears:
            for garbage in (None, b"\xa5\x5a"):
                img = replay(empty, writes, k, t, garbage)
                cases += 1
                if k < formatted:  # no superblock yet: nothing to verify
                    continue
                v, report = verify(image_device(img), owner)
                assert report.verdict == "intact", (k, t, [f.as_json() for f in report.findings])
                got = {r.record.message for r in v.records()}
                want = durable[k - 1]
                assert want <= got, (k, t, want - got)
                # The next boot appends over the crashed image and everything still verifies.
                nxt = image_device(img)
                w = LogWriter(nxt, TWO, [owner.public])
                w.append(2, Record(1, Level.INFO, "vtpm", "vtpm", "after the crash"))
                w.close()
                v2, report2 = verify(nxt, owner)
                assert report2.verdict == "intact", (k, t, [f.as_json() for f in report2.findings])
                assert want | {"after the crash"} <= {r.record.message for r in v2.records()}
    assert cases > 100


def test_torn_tail_is_reported_as_crash(owner: crypto.PrivateKey) -> None:
    empty, dev, _ = run_two_boots(owner)
    multi = max((i for i, w in enumerate(dev.writes) if w.sectors > 1))
    img = replay(empty, dev.writes, multi, 1)
    _, report = verify(image_device(img), owner)
    assert report.verdict == "intact"
    assert any(f.kind is Kind.CRASH_TAIL for f in report.findings)
    assert any(b.ending.name == "CRASH" for b in report.boots.values())


def _ring_history(owner: crypto.PrivateKey, plan: list[tuple[int, list[int], bool]]) -> MemoryDevice:
    dev = MemoryDevice(192)
    for _flush_every, sizes, clean in plan:
        w = LogWriter(dev, [StreamSpec(1, "all", 24)], [owner.public])
        for i, size in enumerate(sizes):
            w.append(1, Record(i, Level.INFO, "core", "svsm", "m" * size))
            if i % max(1, _flush_every) == 0:
                w.flush()
        if clean:
            w.close()
        else:
            w.flush()
    return dev


plans = st.lists(
    st.tuples(st.integers(1, 4), st.lists(st.integers(1, 2500), max_size=12), st.booleans()),
    min_size=1,
    max_size=6,
)


@given(plans)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_ring_histories_never_raise_false_alarms(plan: list[tuple[int, list[int], bool]]) -> None:
    from svsmlog.vectors import vector_key

    owner = vector_key("owner")
    dev = _ring_history(owner, plan)
    v, report = verify(dev, owner)
    assert report.verdict == "intact", [f.as_json() for f in report.findings]
    kinds = {f.kind for f in report.findings}
    got = [r.record.message for r in v.records()]
    if not kinds & {Kind.ROTATED_OUT, Kind.NO_KEY, Kind.STALE_REMNANT}:
        assert len(got) == sum(len(s) for _, s, _ in plan)


def _frames(image: bytes) -> list:  # type: ignore[type-arg]
    from svsmlog.vectors import frames_of

    return frames_of(image)


def test_erasing_the_start_of_a_small_region_is_never_intact(owner: crypto.PrivateKey) -> None:
    """Forty sectors left after an END head: the next boot's BOOT frame may not have fitted,
    wrapped, and torn with its sectors garbled (spec §1), so the erased start is not
    provably tampering; but it rests on unauthenticated bytes, so it is not intact either."""
    dev = MemoryDevice(256)
    w = LogWriter(dev, TWO, [owner.public])
    for i in range(6):
        w.append(1, rec(i))
        w.flush()
    w.close()
    img = bytearray(dev.image())
    first = [f for f in _frames(bytes(img)) if f.region.name == "core"][:2]  # BOOT and the first DATA
    for f in first:
        img[f.lba * SECTOR : (f.lba + f.sectors) * SECTOR] = bytes(f.sectors * SECTOR)
    _, report = verify(image_device(bytes(img)), owner)
    assert report.verdict == "partial", [f.as_json() for f in report.findings]
    assert any(f.kind is Kind.UNPROVEN and f.stream == "core" for f in report.findings)



def test_stale_copy_outside_the_dead_zone_is_not_excused(owner: crypto.PrivateKey) -> None:
    """Putting an old frame back (rolling one sector range back) is never rotation."""
    dev = MemoryDevice(192)
    w = LogWriter(dev, [StreamSpec(1, "all", 24)], [owner.public])
    w.append(1, rec(0, "first"))
    w.flush()
    snapshot = dev.image()
    for i in range(1, 30):
        w.append(1, rec(i, "n" * 700))
        w.flush()
    w.close()
    img = bytearray(dev.image())
    old = next(f for f in _frames(snapshot) if f.seq == 1)
    rng = slice(old.lba * SECTOR, (old.lba + old.sectors) * SECTOR)
    img[rng] = snapshot[rng]
    _, report = verify(image_device(bytes(img)), owner)
    assert report.verdict == "violated"


@pytest.mark.parametrize("field_offset,kind", [(20, Kind.FRAME_CORRUPT), (6, Kind.FRAME_CORRUPT)])
def test_header_changes_are_located(owner: crypto.PrivateKey, field_offset: int, kind: Kind) -> None:
    dev = MemoryDevice(256)
    w = LogWriter(dev, TWO, [owner.public])
    for i in range(4):
        w.append(1, rec(i))
        w.flush()
    w.close()
    img = bytearray(dev.image())
    target = [f for f in _frames(bytes(img)) if f.region.name == "core"][2]
    img[target.lba * SECTOR + field_offset] ^= 0x40
    _, report = verify(image_device(bytes(img)), owner)
    assert report.verdict == "violated"
    hits = [f for f in report.findings if f.violation and f.offset == target.lba * SECTOR]
    assert hits, [f.as_json() for f in report.findings]


def test_anchor_proves_tail_truncation(owner: crypto.PrivateKey) -> None:
    dev = MemoryDevice(256)
    w = LogWriter(dev, TWO, [owner.public])
    for i in range(4):
        w.append(2, rec(i))
        w.flush()
    anchor = w.anchor()
    img = bytearray(dev.image())
    last = [f for f in _frames(bytes(img)) if f.region.name == "vtpm"][-1]
    img[last.lba * SECTOR : (last.lba + last.sectors) * SECTOR] = bytes(last.sectors * SECTOR)
    _, without = verify(image_device(bytes(img)), owner)
    assert without.verdict == "intact"
    from svsmlog.verify import Keyring, Verifier

    d = image_device(bytes(img))
    report = Verifier(d.read, d.sector_count, Keyring([owner])).run(anchor)
    assert report.verdict == "violated"
    assert any(f.kind is Kind.ANCHOR_TRUNCATED and f.seq == last.seq for f in report.findings)
    d = image_device(dev.image())
    assert Verifier(d.read, d.sector_count, Keyring([owner])).run(anchor).verdict == "intact"


def test_wrong_key_reads_nothing(owner: crypto.PrivateKey) -> None:
    dev = MemoryDevice(256)
    w = LogWriter(dev, TWO, [owner.public])
    w.append(1, rec(1))
    w.close()
    v, report = verify(dev, crypto.generate_private_key())
    assert list(v.records()) == []
    assert report.verdict == "unverifiable" and {f.kind for f in report.findings} == {Kind.NO_KEY}


@pytest.mark.parametrize("clean_end", [False, True])
def test_crash_garbling_a_wrap_write_is_a_crash(owner: crypto.PrivateKey, clean_end: bool) -> None:
    """Found by the stress run: the write that wraps the ring lands as garbage only, so the
    region start holds no frame at all (regression for spec §8.3's crash-while-wrapping)."""
    spec = [StreamSpec(1, "all", 16)]
    dev = RecordingDevice(MemoryDevice(128))
    w = LogWriter(dev, spec, [owner.public])
    for i in range(3):
        w.append(1, rec(i, "w" * 1500))
        w.flush()
    if clean_end:  # boot until a boot's first frame is the one that wraps
        # (each boot's last write is its key-directory slot, after the BOOT frames)
        while [x for x in dev.writes if x.lba >= 64][-1].lba != 64:
            w.close()
            w = LogWriter(dev, spec, [owner.public])
    else:
        while dev.writes[-1].lba != 64:
            w.append(1, rec(9, "w" * 1500))
            w.flush()
    wrap = max(i for i, x in enumerate(dev.writes) if x.lba == 64)
    img = replay(bytes(128 * SECTOR), dev.writes, wrap, 0, b"\xde\xad")
    _, report = verify(image_device(img), owner)
    # a crash, not a violation; but the hole it left rests on unauthenticated bytes (§8.3)
    assert report.verdict == "partial", [f.as_json() for f in report.findings]
    assert any(f.kind is Kind.CRASH_TAIL and f.offset == 64 * SECTOR for f in report.findings)
    assert {f.kind for f in report.findings if f.unproven} == {Kind.UNPROVEN}


def test_erasing_the_start_of_a_roomy_region_is_still_detected(owner: crypto.PrivateKey) -> None:
    dev = MemoryDevice(4096)
    w = LogWriter(dev, [StreamSpec(1, "all", 3000), StreamSpec(2, "spare", 64)], [owner.public])
    for i in range(5):
        w.append(1, rec(i))
        w.flush()
    img = bytearray(dev.image())
    img[64 * SECTOR : 66 * SECTOR] = b"\xde\xad" * SECTOR  # BOOT and the first DATA frame
    _, report = verify(image_device(bytes(img)), owner)
    assert report.verdict == "violated"
    assert any(f.kind is Kind.FRAME_MISSING and f.boot == 1 and f.seq == 0 for f in report.findings)


def test_hostile_headers_cost_work_proportional_to_the_image(owner: crypto.PrivateKey) -> None:
    """A forged 1 MiB frame header on every sector: the scan's rejection budget keeps the bytes
    read (and so hashed or decrypted) within a constant factor of the image size."""
    from svsmlog.codec import FrameHeader, encode_frame_header
    from svsmlog.verify import Keyring, Verifier

    n = 8000
    dev = MemoryDevice(n + 128)
    w = LogWriter(dev, [StreamSpec(1, "all", n)], [owner.public])
    w.close()
    img = bytearray(dev.image())
    for lba in range(100, 64 + n):
        h = FrameHeader(3, 1, 1, lba, lba, w.volume_id, bytes(16), 0, 1024 * 1024, bytes(16))
        img[lba * SECTOR : lba * SECTOR + 84] = encode_frame_header(h)
    hostile = image_device(bytes(img))
    read_bytes = 0

    def counting_read(lba: int, count: int) -> bytes:
        nonlocal read_bytes
        read_bytes += count * SECTOR
        return hostile.read(lba, count)

    report = Verifier(counting_read, hostile.sector_count, Keyring([owner])).run()
    assert report.verdict == "violated"
    assert read_bytes < 8 * len(img) + 3 * 64 * 1024 * 1024


def test_anchor_attests_its_boot_and_the_boots_it_chains_to(owner: crypto.PrivateKey) -> None:
    from svsmlog.verify import Keyring, Verifier

    dev = MemoryDevice(256)
    for _ in range(2):
        w = LogWriter(dev, TWO, [owner.public])
        w.append(1, rec(1))
        w.flush()
    anchor = w.anchor()
    w.close()
    w3 = LogWriter(dev, TWO, [owner.public])  # a later boot the anchor cannot vouch for
    w3.append(1, rec(2))
    w3.close()
    report = Verifier(dev.read, dev.sector_count, Keyring([owner])).run(anchor)
    assert report.verdict == "intact"
    assert report.anchored_boots == {1, 2}
    assert not report.anchored(3)
    _, unanchored = verify(dev, owner)
    assert unanchored.anchored_boots == set()


def test_a_boot_forged_with_the_public_key_verifies_but_is_not_attested(owner: crypto.PrivateKey) -> None:
    """The limit spec §1 states: HPKE base mode is anonymous, so the host can write a whole
    boot to the owner's public key. Only an anchor tells it from a genuine one."""
    from svsmlog.verify import Keyring, Verifier

    dev = MemoryDevice(256)
    w = LogWriter(dev, TWO, [owner.public])
    w.append(1, rec(1, "genuine"))
    w.flush()
    anchor = w.anchor()
    snapshot = dev.image()
    w.append(1, rec(2, "genuine, later"))
    w.close()
    forged = image_device(snapshot)  # the host rolls back and plays SVSM with the public key
    fw = LogWriter(forged, TWO, [owner.public])
    assert fw.boot == 2
    fw.append(1, rec(3, "forged"))
    fw.close()
    plain = Verifier(forged.read, forged.sector_count, Keyring([owner])).run()
    assert plain.verdict == "intact" and not plain.anchored_boots
    genuine_dev = image_device(snapshot)
    later = LogWriter(genuine_dev, TWO, [owner.public])
    later.append(1, rec(4))
    later_anchor = later.anchor()
    report = Verifier(forged.read, forged.sector_count, Keyring([owner])).run(later_anchor)
    assert report.verdict == "violated"
    assert report.anchored_boots == set()
    assert Verifier(forged.read, forged.sector_count, Keyring([owner])).run(anchor).anchored_boots == {1}
