"""What every campaign shares: fixed test keys, recorded writer runs and their ground truth.

The ground truth of a run comes from the writer side only: every device write it issued
(``RecordingDevice``), the frames each write carried (read from the clear headers of the
bytes the writer wrote, never from the image under test), and which records each write
made durable. The reader is what the campaigns judge, so nothing here asks it anything.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from .. import crypto
from ..anchor import Anchor
from ..codec import DecodeError, RegionEntry, decode_frame_header
from ..device import SECTOR, MemoryDevice, RecordingDevice, Write
from ..format import FRAME_MAGIC, NO_STREAM, TAG_LEN, FrameType, Layout
from ..model.amdsp import TestPlatform
from ..origin import OriginPolicy
from ..records import FLAG_PANIC, Level, LocatedRecord, Record
from ..report import Report
from ..verify import Keyring, Verifier, VolumeError
from ..volume import KEY_DIRECTORY, StreamSpec, read_volume
from ..writer import BootPolicy, LogWriter, Sealed

# Fixed TEST-ONLY keys: anything sealed to them is readable by everyone.
_SEEDS = {
    "owner": (crypto.KEM_X25519, bytes(range(1, 33))),
    "owner-pq": (crypto.KEM_MLKEM768_X25519, bytes(range(100, 196))),
    "debug": (crypto.KEM_X25519, bytes(range(200, 232))),
    "stranger": (crypto.KEM_X25519, bytes(range(50, 82))),
}


@cache
def campaign_key(name: str) -> crypto.PrivateKey:
    kem, seed = _SEEDS[name]
    return crypto.private_key_from_seed(kem, seed)


# --------------------------------------------------------------------------- frames as written


@dataclass(frozen=True)
class FrameRec:
    """One frame the writer wrote: where, what, and by which device write (0-based)."""

    lba: int
    sectors: int
    stream: int  # stream id; NO_STREAM for a key-directory slot
    boot: int
    seq: int
    type: int
    write: int
    tag: bytes

    @property
    def offset(self) -> int:
        return self.lba * SECTOR

    @property
    def end(self) -> int:
        return self.lba + self.sectors

    @property
    def ident(self) -> tuple[int, int, int]:
        return (self.stream, self.boot, self.seq)


def frames_in_write(w: Write, index: int) -> list[FrameRec]:
    """The frames a write carries, back to back from its first sector (formatting writes
    and the superblock carry none)."""
    out, pos = [], 0
    data = w.data
    while pos + SECTOR <= len(data) and data[pos : pos + 4] == FRAME_MAGIC:
        try:
            h = decode_frame_header(data, pos)
        except DecodeError:
            break
        tag = data[pos + h.body_len - TAG_LEN : pos + h.body_len]
        out.append(FrameRec(w.lba + pos // SECTOR, h.sectors, h.stream, h.boot, h.seq, h.type, index, tag))
        pos += h.sectors * SECTOR
    return out


RecordKey = tuple[int, str, int, int, str]  # boot, stream name, seq, t_ns, message


def record_key(boot: int, stream: str, seq: int, r: Record) -> RecordKey:
    return (boot, stream, seq, r.t_ns, r.message)


def located_key(lr: LocatedRecord) -> RecordKey:
    return record_key(lr.boot, lr.stream, lr.seq, lr.record)


@dataclass
class Run:
    """A recorded multi-boot writer run over one fresh device."""

    name: str
    layout: Layout
    streams: list[StreamSpec]
    owners: list[crypto.PrivateKey]
    sector_count: int
    writes: list[Write]
    durable: list[tuple[RecordKey, int]]  # each durable record and the write (0-based) that carried it
    anchor: Anchor | None = None  # taken by the writer after its last write
    wrapped: bool = False
    attest: AttestTruth | None = None  # attested boots: what the owner verifies them with


    # derived ---------------------------------------------------------------------
    def __post_init__(self) -> None:
        self.frames: list[FrameRec] = [f for i, w in enumerate(self.writes) for f in frames_in_write(w, i)]
        self.names = {s.stream: s.name for s in self.streams}
        sb = next(w for w in self.writes if w.lba == 0)  # the superblock, as the writer wrote it
        self.superblock = read_volume(sb.data[:SECTOR], self.sector_count).superblock
        self.regions: dict[int, RegionEntry] = {r.stream: r for r in self.superblock.regions}
        first: dict[int, int] = {}
        for f in self.frames:
            first.setdefault(f.boot, f.write)
        self.boot_starts = [first[b] for b in sorted(first)]  # each boot's first write

    @property
    def empty(self) -> bytes:
        return bytes(self.sector_count * SECTOR)

    def image_after(self, k: int) -> bytearray:
        img = bytearray(self.sector_count * SECTOR)
        for w in self.writes[:k]:
            img[w.lba * SECTOR : w.lba * SECTOR + len(w.data)] = w.data
        return img

    def final(self) -> bytes:
        return bytes(self.image_after(len(self.writes)))

    def durable_after(self, k: int) -> Counter[RecordKey]:
        return Counter(key for key, w in self.durable if w < k)

    def formatted_at(self) -> int:
        """Writes needed before the superblock exists (it is written last when formatting)."""
        return next(i for i, w in enumerate(self.writes) if w.lba == 0) + 1

    def region(self, stream: int) -> StreamSpec:
        return next(s for s in self.streams if s.stream == stream)

    def live_frames(self, k: int | None = None) -> list[FrameRec]:
        """Frames of the first k writes that no later write overwrote, in write order."""
        k = len(self.writes) if k is None else k
        owner: dict[int, int] = {}  # sector -> index into self.frames of the frame written there
        by_write: dict[int, list[int]] = {}
        for i, f in enumerate(self.frames):
            by_write.setdefault(f.write, []).append(i)
        for j, w in enumerate(self.writes[:k]):
            for s in range(w.lba, w.lba + w.sectors):
                owner.pop(s, None)
            for i in by_write.get(j, []):
                f = self.frames[i]
                for s in range(f.lba, f.end):
                    owner[s] = i
        alive = set(owner.values())
        return [
            f
            for i, f in enumerate(self.frames)
            if i in alive and all(owner.get(s) == i for s in range(f.lba, f.end))
        ]


@dataclass(frozen=True)
class AttestTruth:
    """How the owner verifies an attested run (``--trust-root`` the TEST-ONLY ARK, ``--cert``
    its ASK, ``--measurement`` the genuine build's), and the platform's side of the truth:
    every report a chip the owner's root trusts signed, with that chip's VCEK (the chips' own
    record, not the log's)."""

    policy: OriginPolicy  # require off; ``policy_for`` turns it on
    issued: dict[bytes, bytes]  # report -> DER of the VCEK that signed it

    def policy_for(self, require: bool) -> OriginPolicy:
        return OriginPolicy(self.policy.roots, self.policy.certs, self.policy.measurements, require)


@dataclass
class IssuingPlatform(TestPlatform):
    """The TEST-ONLY chip, keeping its own record of every report it signed: the platform's
    side of the ground truth (which reports a chip the owner's root trusts made)."""

    __test__ = False
    issued: dict[bytes, bytes] = field(default_factory=dict, repr=False)

    def report(self, report_data: bytes, **kw: Any) -> bytes:
        r = super().report(report_data, **kw)
        self.issued[r] = self.vcek_der
        return r


@cache
def issuing_chip() -> IssuingPlatform:
    """The TEST-ONLY chip every attested campaign run uses (one per process: its VCEK
    certificate costs an RSA-4096 signature)."""
    return IssuingPlatform()


def attest_truth(chip: IssuingPlatform, measurement: bytes) -> AttestTruth:
    """The owner verifies with the TEST-ONLY ARK as root, its ASK, the genuine measurement."""
    roots = tuple(crypto.load_certificates(chip.ark_pem))
    ask = tuple(crypto.load_certificates(chip.chain_pems)[:1])
    return AttestTruth(OriginPolicy(roots, ask, frozenset({measurement})), chip.issued)


def owners_public(run: Run) -> list[crypto.PublicKey]:
    return [k.public for k in run.owners]


# --------------------------------------------------------------------------- verifying


@dataclass
class Verified:
    report: Report | None  # None: the image holds no readable volume
    records: Counter[RecordKey]  # verified records
    unverified: int
    error: str | None = None
    output: Counter[RecordKey] = field(default_factory=Counter)  # every record output, verified or not

    @property
    def verdict(self) -> str:
        return "unreadable" if self.report is None else self.report.verdict

    def violations(self) -> list:  # type: ignore[type-arg]
        return [f for f in self.report.findings if f.violation] if self.report else []


def verify_bytes(
    image: bytes,
    keys: Iterable[crypto.PrivateKey],
    anchor: Anchor | None = None,
    *,
    records: bool = True,
    origin: OriginPolicy | None = None,
) -> Verified:
    dev = MemoryDevice(len(image) // SECTOR, image)
    try:
        v = Verifier(dev.read, dev.sector_count, Keyring(list(keys)), origin=origin)
    except VolumeError as e:
        return Verified(None, Counter(), 0, str(e))
    report = v.run(anchor)
    got: Counter[RecordKey] = Counter()
    output: Counter[RecordKey] = Counter()
    unverified = 0
    if records:
        for lr in v.records():
            output[located_key(lr)] += 1
            if lr.verified:
                got[located_key(lr)] += 1
            else:
                unverified += 1
    return Verified(report, got, unverified, None, output)


# --------------------------------------------------------------------------- running writers


def _sealed_writes(dev: RecordingDevice, sealed: list[Sealed]) -> Iterator[tuple[Sealed, int]]:
    for s in sealed:
        # the write that carried it: the newest one covering its first sector (spec §7.5)
        k = max(i for i, w in enumerate(dev.writes) if w.lba <= s.lba < w.lba + w.sectors)
        yield s, k


SERVICES = ("core", "attest", "vtpm", "uefi", "console")


def writer_run(
    name: str,
    streams: list[StreamSpec],
    *,
    boots: int,
    records_per_boot: int,
    seed: int,
    owners: tuple[str, ...] = ("owner",),
    layout: Layout = Layout.AGGREGATED,
    big_every: int = 7,
    max_big: int = 6000,
    grant_at: int | None = None,
    added_owner: tuple[int, str] | None = None,
) -> Run:
    """Drive the core writer directly with SVSM-like traffic: short lines, now and then a
    large dump (multi-sector frames, ring wraps), errors flushed at once, periodic batch
    flushes; boots end cleanly, with a panic, or just stop (power loss)."""
    rng = random.Random(f"svsmlog-campaign/{name}/{seed}")
    sectors = 64 + sum(-(-s.sectors // 8) * 8 for s in streams)
    dev = RecordingDevice(MemoryDevice(sectors))
    keys = [campaign_key(n) for n in owners]
    durable: list[tuple[RecordKey, int]] = []
    names = {s.stream: s.name for s in streams}
    anchor = None

    def note(sealed: list[Sealed], boot: int) -> None:
        for s, k in _sealed_writes(dev, sealed):
            for r in s.records:
                durable.append((record_key(boot, names[s.stream], s.seq, r), k))

    for b in range(boots):
        # Recipient changes between boots: from boot ``added_owner[0]`` on, another owner too
        # (its envelopes may then no longer fit a key-directory slot, spec §4.7).
        sealed_to = list(keys)
        if added_owner is not None and b >= added_owner[0]:
            sealed_to.append(campaign_key(added_owner[1]))
        w = LogWriter(dev, streams, [k.public for k in sealed_to], policy=BootPolicy(layout=layout))
        ending = ("clean", "panic", "power-loss")[b % 3] if b < boots - 1 else "clean"
        t = 0
        sids = [s.stream for s in streams]
        for i in range(records_per_boot):
            t += rng.randint(1_000, 5_000_000)
            sid = sids[i % len(sids)] if layout == Layout.PER_SERVICE else rng.choice(sids)
            service = names[sid] if layout == Layout.PER_SERVICE else rng.choice(SERVICES)
            level = Level.ERROR if rng.random() < 0.08 else rng.choice([Level.INFO, Level.DEBUG, Level.WARN])
            size = rng.randint(1500, max_big) if i % big_every == big_every - 1 else rng.randint(8, 200)
            msg = f"b{w.boot} #{i} " + "".join(rng.choice("abcdefgh ") for _ in range(size))
            rec = Record(t, level, service, "svsm", msg, "svsm::campaign", (("i", str(i)),))
            note(w.append(sid, rec), w.boot)
            if grant_at is not None and i % records_per_boot in (grant_at, grant_at + 3):
                # a debug grant (the second to the same recipient writes nothing, spec §7.4)
                note(w.grant(sids[0], campaign_key("debug").public), w.boot)
            if level == Level.ERROR or rng.random() < 0.25:
                note(w.flush(), w.boot)
        if ending == "panic":
            sid = sids[0]
            panic = Record(t + 1, Level.ERROR, "core", "svsm", "panic: campaign", None, (), FLAG_PANIC)
            note(w.append(sid, panic), w.boot)
            note(w.flush(), w.boot)
        elif ending == "clean":
            note(w.close(), w.boot)
        anchor = w.anchor()
    run = Run(name, layout, streams, keys, sectors, list(dev.writes), durable, anchor)
    run.wrapped = _wrapped(run)
    return run


def model_run(
    scenario: str,
    layout: Layout,
    *,
    boots: int,
    seed: int,
    sectors: dict[str, int] | None = None,
    owners: tuple[str, ...] = ("owner",),
    steady_s: float | None = None,
    attest: bool = False,
) -> Run:
    """A run of the SVSM model (svsmlog.model): realistic services, flush policy, panics,
    debug grants. Durability comes from the model's own ``DurableRecord.write``. With
    ``attest``, every boot is attested by the TEST-ONLY chip (``issuing_chip``)."""
    from ..model.scenarios import get_scenario, run
    from ..model.svsm import SnpPlatform, launch_measurement

    sc, _ = get_scenario(scenario)
    cfg = sc.default_config([campaign_key(n).public for n in owners], layout, campaign_key("debug").public)
    if sectors:
        cfg = cfg.replace(sectors=sectors)
    n = cfg.volume_sectors()
    dev = RecordingDevice(MemoryDevice(n))
    chip = issuing_chip() if attest else None
    snp = SnpPlatform(chip) if chip is not None else None
    log = run(scenario, dev, cfg, boots=boots, seed=seed, steady_s=steady_s, snp=snp)
    durable = [(record_key(d.boot, d.stream, d.seq, d.record), d.write - 1) for d in log.durable]
    r = Run(
        f"model:{scenario}:{layout.name.lower()}",
        layout,
        cfg.streams(),
        [campaign_key(n) for n in owners],
        n,
        list(dev.writes),
        durable,
        log.anchor,
        attest=attest_truth(chip, launch_measurement(cfg)) if chip is not None else None,
    )
    _check_durable_mapping(r)
    r.wrapped = _wrapped(r)
    return r


def _check_durable_mapping(run: Run) -> None:
    """Each durable record's write must carry the frame the record is in: the ground truth
    must not rest on the model alone."""
    by_write: dict[int, set[tuple[str, int, int]]] = {}
    for f in run.frames:
        if f.stream != NO_STREAM:
            by_write.setdefault(f.write, set()).add((run.names[f.stream], f.boot, f.seq))
    for (boot, stream, seq, _, _), k in run.durable:
        if (stream, boot, seq) not in by_write.get(k, set()):
            raise AssertionError(f"durable record of {stream} boot {boot} seq {seq} not in write {k}")


def _wrapped(run: Run) -> bool:
    """Did any region's ring come round (a second frame written at its start)?"""
    firsts = [f for f in run.frames if f.stream in run.regions and f.lba == run.regions[f.stream].start]
    return len(firsts) > len({f.stream for f in firsts})


def keydir_name() -> str:
    return KEY_DIRECTORY.name


def frame_kind(t: int) -> str:
    return FrameType(t).name if t in FrameType._value2member_map_ else f"type{t}"


def fmt_int(n: int) -> str:
    return f"{n:,}"


__all__ = [
    "FrameRec",
    "Run",
    "Verified",
    "campaign_key",
    "fmt_int",
    "frames_in_write",
    "model_run",
    "verify_bytes",
    "writer_run",
]


# --------------------------------------------------------------------------- region histories


def histories(run: Run, k: int | None = None) -> dict[int, list[FrameRec]]:
    """Per region, the live frames since the newest gap in write order: the history the
    reader must find unbroken (older survivors are remnants of earlier laps)."""
    live = {id(f) for f in run.live_frames(k)}
    k = len(run.writes) if k is None else k
    out: dict[int, list[FrameRec]] = {}
    for sid in run.regions:
        order = [f for f in run.frames if f.stream == sid and f.write < k]
        hist: list[FrameRec] = []
        for f in reversed(order):
            if id(f) not in live:
                break
            hist.append(f)
        out[sid] = hist[::-1]
    return out


def prior_of(run: Run, boot_frame: FrameRec) -> FrameRec | None:
    """The head the writer found in a region when it wrote this BOOT frame (spec §7.2)."""
    before = [f for f in run.frames if f.stream == boot_frame.stream and f.write < boot_frame.write]
    return max(before, key=lambda f: (f.boot, f.seq)) if before else None
