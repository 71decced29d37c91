"""Debug mode in the SVSM model: granted within the launch policy's ceiling, exactly for the
streams named and from the grant on; refused (and logged) above the ceiling."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pytest

from svsmlog import crypto
from svsmlog.device import MemoryDevice
from svsmlog.format import DebugCeiling
from svsmlog.model.config import LaunchConfig
from svsmlog.model.scenarios import BootPlan, run_boot
from svsmlog.model.services import Workload
from svsmlog.model.svsm import SvsmModel
from svsmlog.model.truth import key, read_back, truth_line
from svsmlog.records import Level
from svsmlog.report import Kind


@pytest.fixture(scope="module")
def owner() -> crypto.PrivateKey:
    return crypto.generate_private_key()


@pytest.fixture(scope="module")
def debug() -> crypto.PrivateKey:
    return crypto.generate_private_key()


def one_boot(cfg: LaunchConfig, *, snp_debug: bool, request: tuple[str, ...] | None = None,
             debug_at_s: float | None = 1.0, seed: int = 3) -> tuple[SvsmModel, MemoryDevice, str]:
    dev = MemoryDevice(cfg.volume_sectors())
    svsm = SvsmModel(dev, cfg, snp_debug=snp_debug)
    wl = Workload(random.Random(seed), boot=svsm.boot, nv_state_exists=False)
    ending = run_boot(svsm, wl, BootPlan("clean", steady_s=2.0, debug_at_s=debug_at_s, debug_streams=request))
    return svsm, dev, ending


def config(owner: crypto.PrivateKey, debug: crypto.PrivateKey, layout: str, ceiling: DebugCeiling,
           streams: tuple[str, ...], **kw: Any) -> LaunchConfig:
    return LaunchConfig.default([owner.public], layout, debug_ceiling=ceiling, debug_recipient=debug.public,
                                debug_streams=streams, min_level=kw.pop("min_level", Level.DEBUG), **kw)


GRANTS = [
    ("per-service", ("vtpm",)),
    ("per-service", ("vtpm", "console")),
    ("per-service", ("core", "apic", "uefi")),
    ("per-service", ("boot", "core", "attest", "vtpm", "apic", "uefi", "console")),
    ("aggregated", ("all",)),
]


@pytest.mark.parametrize(("layout", "streams"), GRANTS, ids=["-".join(s) for _, s in GRANTS])
def test_grant_covers_exactly_the_named_streams(owner: crypto.PrivateKey, debug: crypto.PrivateKey,
                                                layout: str, streams: tuple[str, ...]) -> None:
    cfg = config(owner, debug, layout, DebugCeiling.DEBUG_ONLY, streams)
    svsm, dev, ending = one_boot(cfg, snp_debug=True)
    assert ending == "clean"
    assert set(svsm.debug_grants) == set(streams)
    truth = [truth_line(d) for d in svsm.durable]
    rep, got = read_back(dev.read, dev.sector_count, [debug])
    # the debug key reads its streams from the grant on; the rest is present but not its to
    # verify: partial, and only because of frames it has no key for
    assert rep.verdict == "partial", [f.detail for f in rep.findings if f.violation]
    assert {f.kind for f in rep.findings if f.unproven} == {Kind.NO_KEY}
    # Exactly the records of the named streams sealed after their grant frame; nothing else.
    want = [d for d in truth if d["stream"] in streams and d["seq"] > svsm.debug_grants[d["stream"]]]
    assert want, "the scenario logs after the grant"
    assert Counter(map(key, got)) == Counter(map(key, want))
    # The grant was announced (and made durable) before it took effect.
    notes = [d for d in truth if "debug mode enabled" in d["message"]]
    assert len(notes) == 1 and notes[0]["level"] == "warn"
    # The owner still reads everything.
    rep, got = read_back(dev.read, dev.sector_count, [owner])
    assert rep.verdict == "intact" and Counter(map(key, got)) == Counter(map(key, truth))


def test_guest_may_ask_for_fewer_streams(owner: crypto.PrivateKey, debug: crypto.PrivateKey) -> None:
    cfg = config(owner, debug, "per-service", DebugCeiling.DEBUG_ONLY, ("vtpm", "console"))
    svsm, dev, _ = one_boot(cfg, snp_debug=True, request=("console",))
    assert set(svsm.debug_grants) == {"console"}
    _, got = read_back(dev.read, dev.sector_count, [debug])
    assert got and {d["stream"] for d in got} == {"console"}


REFUSALS = [
    ("never", DebugCeiling.NEVER, True, None, "debug ceiling is 'never'"),
    ("debug-only-without-snp-debug", DebugCeiling.DEBUG_ONLY, False, None, "(bit 19 clear)"),
    ("stream-outside-policy", DebugCeiling.DEBUG_ONLY, True, ("vtpm", "core"), "only for streams vtpm"),
]


@pytest.mark.parametrize(("ceiling", "snp", "request_", "why"), [r[1:] for r in REFUSALS],
                         ids=[r[0] for r in REFUSALS])
def test_refused_above_the_ceiling(owner: crypto.PrivateKey, debug: crypto.PrivateKey, ceiling: DebugCeiling,
                                   snp: bool, request_: tuple[str, ...] | None, why: str) -> None:
    cfg = config(owner, debug, "per-service", ceiling, ("vtpm",), min_level=Level.ERROR)
    svsm, dev, ending = one_boot(cfg, snp_debug=snp, request=request_)
    assert ending == "clean" and not svsm.debug_grants and not svsm.debug_streams
    assert "KEYS" not in svsm.tap.stats.frames  # no grant frame was written
    _, got = read_back(dev.read, dev.sector_count, [debug])
    assert got == []
    # Request and refusal are logged, even below min_level, on the console stream.
    truth = [truth_line(d) for d in svsm.durable]
    audit = [d for d in truth if d["stream"] == "console" and "debug mode" in d["message"]]
    assert [d["level"] for d in audit] == ["info", "warn"]
    assert audit[0]["message"].startswith("debug mode requested")
    assert "refused" in audit[1]["message"] and why in audit[1]["message"]


def test_enable_debug_directly(owner: crypto.PrivateKey, debug: crypto.PrivateKey) -> None:
    cfg = config(owner, debug, "per-service", DebugCeiling.DEBUG_ONLY, ("vtpm",))
    assert SvsmModel(MemoryDevice(cfg.volume_sectors()), cfg, snp_debug=False).enable_debug() is False
    m = SvsmModel(MemoryDevice(cfg.volume_sectors()), cfg, snp_debug=True)
    assert m.snp_guest_policy & (1 << 19)
    assert m.enable_debug() is True and m.enable_debug() is True  # the second time: already on
    assert set(m.debug_grants) == {"vtpm"} and m.tap.stats.frames.get("KEYS", 0) >= 1


def test_ceiling_always_grants_at_launch(owner: crypto.PrivateKey, debug: crypto.PrivateKey) -> None:
    cfg = config(owner, debug, "per-service", DebugCeiling.ALWAYS, ("vtpm", "uefi"))
    svsm, dev, _ = one_boot(cfg, snp_debug=False, debug_at_s=None)
    truth = [truth_line(d) for d in svsm.durable]
    rep, got = read_back(dev.read, dev.sector_count, [debug])
    assert rep.verdict == "partial" and {f.kind for f in rep.findings if f.unproven} == {Kind.NO_KEY}
    want = [d for d in truth if d["stream"] in ("vtpm", "uefi")]  # from the boot on: everything
    assert want and Counter(map(key, got)) == Counter(map(key, want))
    rep, _ = read_back(dev.read, dev.sector_count, [owner])
    assert rep.boots[1].debug_enabled is True and rep.boots[1].debug_ceiling == "always"
    assert any("enabled at launch" in d["message"] for d in truth)


def test_debug_key_view_after_a_wrap_is_not_a_violation(owner: crypto.PrivateKey,
                                                        debug: crypto.PrivateKey) -> None:
    from svsmlog.records import Record
    from svsmlog.volume import StreamSpec
    from svsmlog.writer import LogWriter

    dev, spec = MemoryDevice(256), [StreamSpec(1, "all", 32)]
    w = LogWriter(dev, spec, [owner.public])  # boot 1: four frames, then it stops
    for i in range(4):
        w.append(1, Record(i, Level.INFO, "core", "SVSM", f"line {i}"))
        w.flush()
    w = LogWriter(dev, spec, [owner.public])  # boot 2: a debug grant, then write until the ring wraps
    w.grant(1, debug.public)
    last = 0
    while True:
        w.append(1, Record(0, Level.INFO, "core", "SVSM", "line"))
        (s,) = w.flush()
        if s.lba < last:
            break
        last = s.lba
    assert read_back(dev.read, dev.sector_count, [owner])[0].verdict == "intact"
    rep = read_back(dev.read, dev.sector_count, [debug])[0]
    assert rep.verdict == "partial" and {f.kind for f in rep.findings if f.unproven} == {Kind.NO_KEY}
