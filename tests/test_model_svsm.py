"""The SVSM model's flush policy, panic path and routing, driven directly."""

from __future__ import annotations

import random

import pytest

from svsmlog import crypto
from svsmlog.codec import EMPTY_BLOCK_LEN, encode_record_block
from svsmlog.device import MemoryDevice
from svsmlog.format import Layout
from svsmlog.model.config import LaunchConfig
from svsmlog.model.scenarios import SCENARIOS, run
from svsmlog.model.services import PanicSite, Workload
from svsmlog.model.svsm import SvsmModel, SvsmStopped
from svsmlog.model.truth import read_back, truth_line
from svsmlog.records import FLAG_PANIC, Level

MS = 1_000_000


@pytest.fixture(scope="module")
def owner() -> crypto.PrivateKey:
    return crypto.generate_private_key()


def model(owner: crypto.PrivateKey, layout: str = "per-service", **kw: object) -> SvsmModel:
    cfg = LaunchConfig.default([owner.public], layout, **kw)
    return SvsmModel(MemoryDevice(cfg.volume_sectors()), cfg)


def messages(m: SvsmModel) -> list[str]:
    return [d.record.message for d in m.durable]


def test_batched_until_max_delay(owner: crypto.PrivateKey) -> None:
    m = model(owner, flush_max_delay_ms=200)
    m.advance_to(1000 * MS)
    m.log("vtpm", Level.INFO, "first")
    m.advance_to(1100 * MS)
    m.log("vtpm", Level.INFO, "second")
    writes = m.tap.writes
    m.advance_to(1199 * MS)
    assert messages(m) == [] and m.tap.writes == writes
    m.advance_to(1200 * MS)  # 200 ms after the oldest pending record: one frame, one write
    assert messages(m) == ["first", "second"] and m.tap.writes == writes + 1
    assert {d.write for d in m.durable} == {writes + 1}
    assert m.now == 1200 * MS


def test_timer_fires_at_its_deadline_not_later(owner: crypto.PrivateKey) -> None:
    m = model(owner, flush_max_delay_ms=50)
    m.log("core", Level.INFO, "a")
    m.advance_to(10_000 * MS)  # a long idle stretch: the batch went out at 50 ms of virtual time
    assert messages(m) == ["a"]
    m.log("core", Level.INFO, "b")
    assert messages(m) == ["a"]


def test_batched_until_max_bytes(owner: crypto.PrivateKey) -> None:
    m = model(owner, flush_max_bytes=512, flush_max_delay_ms=100_000)
    n = 0
    while not m.durable:
        m.log("uefi", Level.INFO, f"GetVariable(Boot{n:04X}) -> 100 bytes")
        n += 1
    recs = [d.record for d in m.durable]
    pending = [len(encode_record_block(recs[:k])) - EMPTY_BLOCK_LEN for k in (n - 1, n)]
    assert len(m.durable) == n and pending[1] >= 512 > pending[0]  # flushed as soon as full


def test_errors_are_durable_before_log_returns(owner: crypto.PrivateKey) -> None:
    m = model(owner, flush_max_delay_ms=10_000)
    m.log("core", Level.INFO, "context in another stream")
    m.log("vtpm", Level.WARN, "context in the same stream")
    before = m.tap.writes
    m.log("vtpm", Level.ERROR, "the error")
    # Durable now: the error's stream first, then everything else that was pending.
    assert messages(m) == ["context in the same stream", "the error", "context in another stream"]
    assert m.tap.writes == before + 2
    assert m.durable[1].write == before + 1


def test_min_level_drops_records(owner: crypto.PrivateKey) -> None:
    m = model(owner, min_level=Level.WARN)
    assert m.log("core", Level.INFO, "dropped") is False
    assert m.log("core", Level.WARN, "kept") is True
    m.flush()
    assert messages(m) == ["kept"]


@pytest.mark.parametrize("layout", ["aggregated", "per-service"])
def test_routing(owner: crypto.PrivateKey, layout: str) -> None:
    m = model(owner, layout)
    for svc in ("boot", "core", "attest", "vtpm", "apic", "uefi", "console"):
        m.log(svc, Level.INFO, f"hello from {svc}")
    m.shutdown()
    streams = {d.record.service: d.stream for d in m.durable}
    if layout == "aggregated":
        assert set(streams.values()) == {"all"}
    else:
        assert all(svc == stream for svc, stream in streams.items())


def test_panic_path(owner: crypto.PrivateKey) -> None:
    m = model(owner, flush_max_delay_ms=10_000)
    m.log("core", Level.INFO, "pending in core")
    m.log("vtpm", Level.DEBUG, "dropped by min_level")
    m.log("vtpm", Level.INFO, "pending in vtpm")
    site = Workload(random.Random(1), boot=1, nv_state_exists=True).panic_site("vtpm", m.now)[1]
    frames = dict(m.tap.stats.frames)
    with pytest.raises(SvsmStopped) as e:
        m.panic(site)
    assert e.value.ending == "panic" and m.stopped == "panic"
    # The panic record and its stream first, then the rest; data frames only, no key frames.
    assert messages(m) == ["pending in vtpm", site.message, "pending in core"]
    assert m.durable[1].record.flags & FLAG_PANIC
    fields = dict(m.durable[1].record.fields)
    assert fields["service"] == "vtpm" and "panicked at kernel/src/vtpm" in fields["info"]
    assert len(fields["backtrace"].split()) == 5
    after = dict(m.tap.stats.frames)
    assert after.pop("DATA") == frames.pop("DATA", 0) + 2 and after == frames
    with pytest.raises(SvsmStopped):  # the boot has stopped
        m.log("core", Level.ERROR, "too late")
    rep, got = read_back(m.tap.read, m.tap.sector_count, [owner])
    assert rep.verdict == "intact" and rep.boots[1].ending.value == "panic"
    assert [g["message"] for g in got if g["stream"] == "vtpm"][-1] == site.message


def test_halt_loses_what_is_batched(owner: crypto.PrivateKey) -> None:
    m = model(owner)
    m.log("core", Level.INFO, "never written")
    writes = m.tap.writes
    with pytest.raises(SvsmStopped):
        m.halt("power-loss")
    assert m.tap.writes == writes and m.durable == []


def test_time_only_moves_forward(owner: crypto.PrivateKey) -> None:
    m = model(owner)
    m.advance_to(5 * MS)
    with pytest.raises(ValueError, match="cannot go back"):
        m.advance_to(4 * MS)


def test_panic_site_fields_are_short() -> None:
    site = PanicSite("vtpm", 2, "kernel/src/x.rs:1:1", "boom", (1, 2, 3))
    assert site.message.startswith("Panic on CPU[2]! COCONUT-SVSM Version: ")
    assert dict(site.fields)["backtrace"] == "0x0000000000000001 0x0000000000000002 0x0000000000000003"


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_seed_same_records_and_writes(owner: crypto.PrivateKey, scenario: str) -> None:
    cfg = LaunchConfig.default([owner.public], Layout.PER_SERVICE, min_level=Level.TRACE)
    if scenario == "debug":
        cfg = cfg.replace(debug_recipient=crypto.generate_private_key().public)
    a = run(scenario, MemoryDevice(cfg.volume_sectors()), cfg, seed=9)
    b = run(scenario, MemoryDevice(cfg.volume_sectors()), cfg, seed=9)
    c = run(scenario, MemoryDevice(cfg.volume_sectors()), cfg, seed=10)
    ta = [(truth_line(d), d.write) for d in a.durable]
    assert ta == [(truth_line(d), d.write) for d in b.durable]
    assert ta != [(truth_line(d), d.write) for d in c.durable]
    assert a.tap.stats == b.tap.stats
    # Records are in time order within every stream and carry the SVSM's 224-byte line limit.
    last: dict[tuple[int, str], int] = {}
    for d in a.durable:
        assert d.record.t_ns >= last.get((d.boot, d.stream), 0)
        last[(d.boot, d.stream)] = d.record.t_ns
        assert len(d.record.message.encode()) <= 224
