"""The flush policy's durability promise, checked at every device write.

A short normal scenario runs once over a RecordingDevice, which captures every write; the
model reports, for each durable record, the write after which it became durable. Then for
every K the image is rebuilt from the first K writes with write K+1 torn after every
possible number of sectors, the rest of it stale or overwritten with garbage. In every one
of those images the reader must recover exactly the records durable after write K, and
must not call the log violated.
"""

from __future__ import annotations

import random
from collections import Counter

import pytest

from svsmlog import crypto
from svsmlog.device import SECTOR, MemoryDevice, RecordingDevice, replay
from svsmlog.model.config import LaunchConfig
from svsmlog.model.scenarios import run
from svsmlog.model.truth import key, read_back, truth_line
from svsmlog.records import Level
from svsmlog.verify import VolumeError

LAYOUTS = ("aggregated", "per-service")
GARBAGE = random.Random(0).randbytes(4096)


@pytest.fixture(scope="module")
def owner() -> crypto.PrivateKey:
    return crypto.generate_private_key()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_durable_records_survive_a_crash_at_every_write(owner: crypto.PrivateKey, layout: str) -> None:
    cfg = LaunchConfig.default([owner.public], layout, min_level=Level.DEBUG)
    n = cfg.volume_sectors()
    rec = RecordingDevice(MemoryDevice(n))
    log = run("normal", rec, cfg, seed=7, steady_s=1.0)
    writes = rec.writes
    assert log.tap.writes == len(writes) and not log.crashed
    assert all(1 <= d.write <= len(writes) for d in log.durable)
    base = bytes(n * SECTOR)
    images = 0
    for k in range(len(writes) + 1):
        want = Counter(key(truth_line(d)) for d in log.durable if d.write <= k)
        tears = range(writes[k].sectors) if k < len(writes) else range(1)
        for tear in tears:
            for garbage in (None, GARBAGE):
                dev = MemoryDevice(n, replay(base, writes, k, tear, garbage))
                try:
                    rep, got = read_back(dev.read, n, [owner])
                except VolumeError:  # still formatting: no superblock yet, so nothing was durable
                    assert not want, k
                    continue
                images += 1
                where = (k, tear, garbage is not None)
                assert rep.verdict == "intact", (where, [f.detail for f in rep.findings if f.violation])
                assert Counter(map(key, got)) == want, where
    assert images > len(writes)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_reboot_after_a_crash_at_every_write(owner: crypto.PrivateKey, layout: str) -> None:
    """The next boot mounts the crashed image, writes after the last complete frame, and
    the whole log — both boots — still verifies with every durable record present."""
    cfg = LaunchConfig.default([owner.public], layout, min_level=Level.DEBUG)
    n = cfg.volume_sectors()
    rec = RecordingDevice(MemoryDevice(n))
    run("normal", rec, cfg, seed=7, steady_s=1.0)
    for k in range(len(rec.writes)):
        for tear in sorted({0, 1, rec.writes[k].sectors - 1} & set(range(rec.writes[k].sectors))):
            mem = MemoryDevice(n)
            crashed = run("normal", RecordingDevice(mem, crash_after=k, tear_sectors=tear), cfg, seed=7,
                          steady_s=1.0)
            assert crashed.crashed
            after = run("normal", mem, cfg, seed=8, steady_s=0.5)
            assert not after.crashed
            rep, got = read_back(mem.read, n, [owner])
            assert rep.verdict == "intact", (k, tear, [f.detail for f in rep.findings if f.violation])
            want = Counter(key(truth_line(d)) for d in crashed.durable + after.durable)
            assert want <= Counter(map(key, got)), (k, tear)
            assert Counter(map(key, got)) - want == Counter(), (k, tear)  # nothing that was not durable
