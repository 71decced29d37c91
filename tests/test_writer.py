"""Writer properties of spec §6–§7, each asserted on real device writes."""

from __future__ import annotations

import gc
import itertools

import pytest

from svsmlog import crypto
from svsmlog.device import SECTOR, MemoryDevice, RecordingDevice
from svsmlog.format import FRAME_HEADER_LEN, FrameType
from svsmlog.keyschedule import WriterChain
from svsmlog.records import Level, Record
from svsmlog.report import Kind
from svsmlog.verify import StreamKey
from svsmlog.volume import StreamSpec
from svsmlog.writer import LogWriter, WriterError

from .helpers import image_device, rec, verify

TWO = [StreamSpec(1, "core", 64), StreamSpec(2, "vtpm", 40)]


def test_flush_is_one_write_of_whole_sectors(owner: crypto.PrivateKey) -> None:
    dev = RecordingDevice(MemoryDevice(256))
    w = LogWriter(dev, TWO, [owner.public])
    for n in (1, 5, 64):
        for i in range(n):
            w.append(1, rec(i, "x" * 100))
        before = len(dev.writes)
        (sealed,) = w.flush()
        assert len(dev.writes) == before + 1
        write = dev.writes[-1]
        # spec §4.5-§4.6: one name ("core", "svsm", no target), count, flags, t_base, then
        # per record head, name, t_offset, message_len and the message
        block = 1 + (1 + 4 + 1 + 4 + 1) + (4 + 1 + 8) + n * (1 + 1 + 4 + 2 + 100)
        frame_len = FRAME_HEADER_LEN + block + 16
        assert write.sectors == sealed.sectors == -(-frame_len // SECTOR)
        assert write.lba == sealed.lba and len(write.data) % SECTOR == 0


def _frame_writes(dev: RecordingDevice, first_frame_write: int) -> list[tuple[int, int]]:
    return [(w.lba, w.sectors) for w in dev.writes[first_frame_write:]]


def test_committed_sectors_are_only_rewritten_by_the_ring(owner: crypto.PrivateKey) -> None:
    """Per region, every frame write starts where the previous one ended, or at the region start
    when the next frame did not fit (the ring reclaiming its oldest frames): never elsewhere."""
    base = MemoryDevice(256)
    dev = RecordingDevice(base)
    LogWriter(dev, TWO, [owner.public]).close()
    formatting = len(dev.writes) - 3  # the directory slot and two BOOT frames follow formatting
    for boot in range(6):
        w = LogWriter(dev, TWO, [owner.public])
        for i in range(40):
            w.append(1 + i % 2, rec(i, "y" * (50 + 37 * i % 700)))
            if i % 3 == 0:
                w.flush()
        if boot % 2:
            w.close()
        else:
            w.flush()
    for spec in TWO:
        start, end = {1: (64, 128), 2: (128, 168)}[spec.stream]
        writes = [(lba, n) for lba, n in _frame_writes(dev, formatting) if start <= lba < end]
        wraps = 0
        for (a, na), (b, nb) in itertools.pairwise(writes):
            assert b + nb <= end
            if b != a + na:
                assert b == start and a + na + nb > end, (a, na, b, nb)
                wraps += 1
        assert wraps >= 2


def test_no_key_nonce_pair_repeats_even_after_rollback(owner: crypto.PrivateKey, monkeypatch) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = crypto.aead_seal

    def spy(key: bytes, nonce: bytes, pt: bytes, aad: bytes) -> bytes:
        seen.append((key, nonce))
        return real(key, nonce, pt, aad)

    monkeypatch.setattr(crypto, "aead_seal", spy)
    dev = MemoryDevice(256)
    w = LogWriter(dev, TWO, [owner.public])
    w.append(1, rec(1))
    w.close()
    snapshot = dev.image()
    for _ in range(3):  # the host rolls the image back each time: boot 2 again and again
        dev = image_device(snapshot)
        w = LogWriter(dev, TWO, [owner.public])
        assert w.boot == 2
        for i in range(5):
            w.append(1 + i % 2, rec(i))
            w.flush()
        w.close()
    assert len(seen) > 30
    assert len(set(seen)) == len(seen)
    assert len({k for k, _ in seen}) == len(seen)


def test_chain_erases_each_key_it_steps_past() -> None:
    chain = WriterChain(bytes(range(32)))
    held = chain._key
    seq, _, _ = chain.next_frame()
    assert seq == 0 and held == bytearray(32)
    assert chain.current_chain_key() != bytes(range(32))


def test_writer_keeps_no_boot_secret(owner: crypto.PrivateKey) -> None:
    secret = bytes(range(7, 39))
    randoms = [bytes(16), secret]
    w = LogWriter(MemoryDevice(256), TWO, [owner.public], rng=lambda n: randoms.pop(0)[:n])
    w.append(1, rec(1))
    w.flush()
    found = []

    def walk(obj: object, depth: int = 0) -> None:
        if depth > 4:
            return
        if isinstance(obj, (bytes, bytearray)):
            if secret in bytes(obj):
                found.append(obj)
            return
        if isinstance(obj, dict):
            for v in obj.values():
                walk(v, depth + 1)
        elif isinstance(obj, (list, tuple)):
            for v in obj:
                walk(v, depth + 1)
        elif hasattr(obj, "__dict__"):
            walk(vars(obj), depth + 1)

    walk(w)
    assert not found
    gc.collect()


def test_a_stream_key_opens_only_its_stream(owner: crypto.PrivateKey) -> None:
    dev = MemoryDevice(256)
    w = LogWriter(dev, TWO, [owner.public])
    for i in range(6):
        w.append(1 + i % 2, rec(i, f"stream {1 + i % 2}"))
    w.close()
    v, _ = verify(dev, owner)
    ck = v.chain_key(w.boot, 2, 0)
    assert ck is not None
    sk = StreamKey(w.volume_id, w.boot, 2, 0, ck)
    v2, report = verify(dev, stream_keys=[sk])
    assert {r.record.message for r in v2.records()} == {"stream 2"}
    assert report.verdict == "partial"  # stream 1 is present, but not ours to verify
    unread = {(f.kind, f.stream) for f in report.findings if f.unproven}
    assert unread == {(Kind.NO_KEY, "core"), (Kind.NO_KEY, "keydir")}
    assert any(f.kind.value == "no_key" and f.stream == "core" for f in report.findings)


def test_long_messages_and_refused_oversize(owner: crypto.PrivateKey) -> None:
    dev = MemoryDevice(4096)
    w = LogWriter(dev, [StreamSpec(1, "all", 3000)], [owner.public])
    long = "L" * (64 * 1024 + 7)
    w.append(1, Record(1, Level.ERROR, "vtpm", "vtpm", long))
    with pytest.raises(ValueError):
        w.append(1, Record(2, Level.INFO, "vtpm", "vtpm", "x" * (1024 * 1024)))
    w.close()
    v, report = verify(dev, owner)
    assert report.verdict == "intact"
    assert [r.record.message for r in v.records()] == [long]


def test_appending_past_a_frame_flushes_first(owner: crypto.PrivateKey) -> None:
    w = LogWriter(MemoryDevice(256), [StreamSpec(1, "all", 40)], [owner.public])
    big = max(k for k in range(0, 40 * 512, 8) if w.fits(1, rec(1, "a" * k)))
    assert w.append(1, rec(1, "a" * (big - 40))) == []
    sealed = w.append(1, rec(2, "b" * 100))
    assert [s.ftype for s in sealed] == [FrameType.DATA] and len(sealed[0].records) == 1


def test_refuses_a_volume_with_other_streams(owner: crypto.PrivateKey) -> None:
    dev = MemoryDevice(256)
    LogWriter(dev, TWO, [owner.public]).close()
    with pytest.raises(WriterError):
        LogWriter(dev, [StreamSpec(1, "all", 64)], [owner.public])


def test_boot_numbers_grow_and_heads_chain(owner: crypto.PrivateKey) -> None:
    dev = MemoryDevice(256)
    boots = []
    for _ in range(3):
        w = LogWriter(dev, TWO, [owner.public])
        boots.append(w.boot)
        w.append(1, rec(1))
        w.flush()
    assert boots == [1, 2, 3]
    _, report = verify(dev, owner)
    assert report.verdict == "intact" and sorted(report.boots) == [1, 2, 3]


def test_grant_reports_the_records_it_flushed(owner: crypto.PrivateKey, debug_key: crypto.PrivateKey) -> None:
    w = LogWriter(MemoryDevice(256), TWO, [owner.public])
    w.append(2, rec(1, "before the grant"))
    sealed = w.grant(2, debug_key.public)
    assert [s.ftype for s in sealed] == [FrameType.DATA, FrameType.KEYS]
    assert [r.message for r in sealed[0].records] == ["before the grant"]


def test_durability_is_reported_write_by_write(owner: crypto.PrivateKey) -> None:
    """A crash in the middle of close() must not hide the END frames already written."""
    from svsmlog.device import Crashed

    seen: list[int] = []
    dev = RecordingDevice(MemoryDevice(256))
    w = LogWriter(dev, TWO, [owner.public], on_durable=lambda s: seen.append(s.stream))
    w.append(1, rec(1))
    w.append(2, rec(2))
    dev.crash_after = len(dev.writes) + 1  # the second END frame's write never lands
    with pytest.raises(Crashed):
        w.close()
    assert seen == [1, 2, 1]  # two BOOT frames, then core's END frame
