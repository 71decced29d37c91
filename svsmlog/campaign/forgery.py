"""Forgery campaign: what a host can do against attested boots (issue 12), at every boot position.

Each volume is a run of the SVSM model on a TEST-ONLY SEV-SNP platform (``SnpPlatform`` with
``amdsp.TestPlatform``): every boot asks for a report committing to itself. A *program*
replaces the boot at one position (first, middle, newest, or every one at full size) by one
act of the host (``svsmlog.model.host``), the genuine boots after it carrying on from the
image it left:

* honest controls: no act at all (attested boots, untouched), the genuine boot whose
  report request the host refused (unattested, honestly), and the genuine boot whose
  evidence the host salted with a decoy ASK ahead of the VCEK (the genuine ASK's key under
  the host's own ARK: attested still);
* the host runs the writer itself with the owner's public key: with no report, with a
  genuine report it lifted from another boot of the volume, from the very boot it replaces
  (rolled back to before it), from a boot of another volume, with the guest OS's
  attestation-protocol report, or with a report of the forged boot's own commitment that
  the guest OS obtained from VMPL1, or with a report of its own commitment signed by a chip
  of its own making (a VCEK under its own ASK and ARK, the genuine CHIP_ID and TCB copied),
  its ASK and ARK carried in the evidence or not;
* the host launches another SVSM build, or the genuine one with the debug policy.

Each image is verified as the owner would (``--trust-root`` the TEST-ONLY ARK, ``--cert`` its
ASK, ``--measurement`` the genuine build's), without and with ``--require-attestation``.
What the verdict must be is not written down per class: `Base.expect` derives it, from the
writer-side ground truth of the run (every device write, the host's included), by the frame
rules (`Rules`) and the origin rules (`OriginRules`: what an honest attested writer must
have written), and the reader's origin findings must be exactly those predicted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import cache

from .. import crypto
from ..device import MemoryDevice, RecordingDevice, Write
from ..format import Layout
from ..model import host
from ..model.amdsp import Chain, TestPlatform, decoy_ask, new_chain
from ..model.config import LaunchConfig
from ..model.scenarios import BootPlan, get_scenario
from ..model.svsm import launch_measurement
from ..volume import format_volume
from ..writer import Evidence
from .common import IssuingPlatform, Run, _wrapped, attest_truth, campaign_key, issuing_chip, model_run
from .tamper import (
    GENERATORS,
    REMOVALS,
    Base,
    Case,
    TamperFigures,
    judge,
    merge_tamper,
    other_volume,
    tamper_campaign,
)

OTHER_BUILD = "coconut-svsm model build 0 (old, vulnerable)"
PREFIX = "attested: "


@dataclass(frozen=True)
class VolumeSpec:
    name: str
    scenario: str  # whose launch configuration (region sizes, minimum level) it uses
    layout: Layout
    boots: int
    seed: int
    steady_s: float = 1.0


class Volume:
    """A volume formatted once (a fixed volume id, so every program of it is the same volume),
    its images after each genuine boot, and the untouched run of all its boots (the control,
    and the images whose reports the host has seen)."""

    def __init__(self, spec: VolumeSpec, chip: IssuingPlatform) -> None:
        self.spec = spec
        self.chip = chip
        sc, _ = get_scenario(spec.scenario)
        owner, debug = campaign_key("owner"), campaign_key("debug")
        self.config: LaunchConfig = sc.default_config([owner.public], spec.layout, debug.public)
        self.owners = [owner]
        self.measurement = launch_measurement(self.config)
        n = self.config.volume_sectors()
        mem = MemoryDevice(n)
        rec = RecordingDevice(mem)
        vid = crypto.sha256(b"svsmlog forgery campaign", spec.name.encode())[:16]
        format_volume(rec, vid, self.config.streams())
        image, writes = mem.image(), list(rec.writes)
        self.prefix: list[tuple[bytes, list[Write]]] = [(image, list(writes))]
        for i in range(spec.boots):
            image = self.genuine(image, i, writes)
            self.prefix.append((image, list(writes)))
        self.control = image
        self.seen = host.seen_reports(image)  # reports the host lifted from the untouched volume
        self.truth = attest_truth(chip, self.measurement)

    def plan(self, i: int) -> BootPlan:
        last = i == self.spec.boots - 1
        ending = "clean" if last else ("clean", "panic", "power-loss")[i % 3]
        return BootPlan(ending, panic_service="vtpm", steady_s=self.spec.steady_s)

    def launch_kw(self, i: int, record: list[Write]) -> dict[str, object]:
        return {"plan": self.plan(i), "seed": self.spec.seed * 100 + i, "record": record}

    def genuine(self, image: bytes, i: int, record: list[Write]) -> bytes:
        return host.launch_genuine(image, self.config, self.chip, **self.launch_kw(i, record))

    def run_of(self, name: str, writes: list[Write]) -> Run:
        cfg = self.config
        run = Run(
            name,
            cfg.layout,
            cfg.streams(),
            self.owners,
            cfg.volume_sectors(),
            writes,
            [],
            None,
            attest=self.truth,
        )
        run.wrapped = _wrapped(run)
        return run


# An act of the host at boot position p (1-based): (volume, other volume, p, image, record) -> image
Act = Callable[[Volume, Volume, int, bytes, list[Write]], bytes]


def _forge(evidence: Callable[[Volume, Volume, int], Evidence | None]) -> Act:
    def act(v: Volume, other: Volume, p: int, image: bytes, record: list[Write]) -> bytes:
        ev = evidence(v, other, p)
        pub = [k.public for k in v.owners]
        if ev is None:
            return host.forge_boot(image, pub, layout=v.config.layout, record=record)
        return host.transplant_report(image, pub, ev, layout=v.config.layout, record=record)

    return act


def _seen(v: Volume, boot: int) -> Evidence:
    return v.seen[boot] if boot in v.seen else next(iter(v.seen.values()))


def _guest(v: Volume, other: Volume, p: int, image: bytes, record: list[Write]) -> bytes:
    pub = [k.public for k in v.owners]
    guest = host.guest_of(v.config, v.chip)
    return host.substitute_guest_report(image, pub, guest, layout=v.config.layout, record=record)


def _vmpl1(v: Volume, other: Volume, p: int, image: bytes, record: list[Write]) -> bytes:
    pub = [k.public for k in v.owners]
    guest = host.guest_of(v.config, v.chip)
    return host.forge_with_vmpl1_report(image, pub, guest, layout=v.config.layout, record=record)


@cache
def _host_chain() -> Chain:
    return new_chain()  # two RSA-4096 keys: once a process


def _own_chip(with_chain: bool) -> Act:
    def act(v: Volume, other: Volume, p: int, image: bytes, record: list[Write]) -> bytes:
        chip = TestPlatform(v.chip.product, chip_id=v.chip.chip_id, tcb=dict(v.chip.tcb or {}),
                            seed=v.chip.seed, version=v.chip.version, _chain=_host_chain())
        pub = [k.public for k in v.owners]
        return host.forge_with_own_chip(image, pub, chip, v.measurement, with_chain=with_chain,
                                        layout=v.config.layout, record=record)

    return act


def _decoy(v: Volume, other: Volume, p: int, image: bytes, record: list[Write]) -> bytes:
    decoy = decoy_ask(v.chip.ask, _host_chain()).der
    return host.launch_with_decoy_ask(image, v.config, v.chip, decoy, **v.launch_kw(p - 1, record))


def _refused(v: Volume, other: Volume, p: int, image: bytes, record: list[Write]) -> bytes:
    return host.refuse_report(image, v.config, v.chip, **v.launch_kw(p - 1, record))


def _other_build(v: Volume, other: Volume, p: int, image: bytes, record: list[Write]) -> bytes:
    return host.launch_other_build(image, v.config, v.chip, OTHER_BUILD, **v.launch_kw(p - 1, record))


def _debug(v: Volume, other: Volume, p: int, image: bytes, record: list[Write]) -> bytes:
    return host.launch_debug(image, v.config, v.chip, **v.launch_kw(p - 1, record))


# (row, the act): the class names say what the host did, never what the reader should say
ACTS: list[tuple[str, Act]] = [
    ("honest boot, the host's decoy ASK ahead of its VCEK", _decoy),
    ("honest boot whose report the host refused", _refused),
    ("forged boot (host runs the writer), no report", _forge(lambda v, o, p: None)),
    (
        "forged boot, genuine report of another boot of the volume",
        _forge(lambda v, o, p: _seen(v, p % v.spec.boots + 1)),
    ),
    (
        "forged boot, genuine report of the boot it replaces (rolled back)",
        _forge(lambda v, o, p: _seen(v, p)),
    ),
    ("forged boot, genuine report of a boot of another volume", _forge(lambda v, o, p: _seen(o, p))),
    ("forged boot, the guest OS's attestation-protocol report", _guest),
    ("forged boot, a VMPL1 report of its own commitment", _vmpl1),
    ("forged boot, its own commitment signed by a host-made chip, its ASK and ARK carried", _own_chip(True)),
    ("forged boot, its own commitment signed by a host-made chip, its VCEK alone", _own_chip(False)),
    ("another SVSM build launched (other measurement)", _other_build),
    ("debug-policy launch", _debug),
]
CONTROL = "honest boots, untouched"
CLASSES = (CONTROL, *(name for name, _ in ACTS))


def program(v: Volume, other: Volume, p: int, act: Act) -> tuple[Run, bytes]:
    """Boots 1..p-1 genuine, boot p the host's act, boots p+1..N genuine again."""
    image, writes = v.prefix[p - 1]
    writes = list(writes)
    image = act(v, other, p, image, writes)
    for i in range(p, v.spec.boots):
        image = v.genuine(image, i, writes)
    run = v.run_of(f"{v.spec.name}, boot {p}", writes)
    if run.final() != image:
        raise AssertionError("the recorded writes do not make the program's image")
    return run, image


def cases(cls: str, base: Base, image: bytes, what: str, target: int | None) -> Iterator[Case]:
    idents = {base.ident(f) for f in base.run.frames if f.boot == target}
    for require in (False, True):
        exp = base.expect(image, require=require)
        if exp.kind == "limit":  # every frame as its writer wrote it: nothing is gone
            exp = replace(exp, kind="harmless", reason="every frame as written")
        yield Case(
            PREFIX + cls,
            what + (", attestation required" if require else ""),
            image,
            exp,
            idents=idents,
            require=require,
            strict=True,
        )


def positions(n: int, every: bool) -> list[int]:
    return list(range(1, n + 1)) if every else sorted({1, (n + 1) // 2, n})


def forgery_specs(size: str) -> tuple[list[VolumeSpec], VolumeSpec]:
    """The volumes programs are made of, and another volume whose reports the host has seen."""
    full = size == "full"
    n = 5 if full else 3
    specs = [
        VolumeSpec("multi-boot/per-service", "multi-boot", Layout.PER_SERVICE, n, 21),
        VolumeSpec("multi-boot/aggregated", "multi-boot", Layout.AGGREGATED, n, 22),
        VolumeSpec("wraparound/aggregated", "wraparound", Layout.AGGREGATED, 4 if full else 3, 23, 3.0),
    ]
    if full:
        specs.append(VolumeSpec("wraparound/per-service", "wraparound", Layout.PER_SERVICE, 4, 24, 3.0))
    else:
        specs = [specs[0], specs[2]]
    return specs, VolumeSpec("other volume", "multi-boot", Layout.AGGREGATED, 3, 29)


def forgery_campaign(
    specs: list[VolumeSpec], other_spec: VolumeSpec, *, every: bool, newest_only: bool = False
) -> TamperFigures:
    """``every``: the host acts at every boot position, not only the first, middle, newest."""
    t0 = time.perf_counter()
    fig = TamperFigures(bases=[f"{s.name} (attested, with the host's boots)" for s in specs])
    other = Volume(other_spec, issuing_chip())
    for spec in specs:
        v = Volume(spec, issuing_chip())
        control = Base(f"{spec.name} (attested)", v.run_of(spec.name, v.prefix[-1][1]), honest=False)
        if spec.scenario == "wraparound" and not control.run.wrapped:
            raise AssertionError(f"{spec.name}: the attested volume was meant to wrap")
        for case in cases(CONTROL, control, v.control, f"{spec.name}: {spec.boots} boots", None):
            judge(case, control, fig, None)
        for p in [spec.boots] if newest_only else positions(spec.boots, every):
            for cls, act in ACTS:
                run, image = program(v, other, p, act)
                base = Base(run.name, run, honest=False)
                what = f"{spec.name}: boot {p} of {spec.boots}"
                for case in cases(cls, base, image, what, p):
                    judge(case, base, fig, None)
    fig.seconds = time.perf_counter() - t0
    return fig


# (name, scenario, boots, seed, steady seconds at CI and full size)
ATTESTED_BASES = (
    ("multi-boot/aggregated (attested)", "multi-boot", 4, 31, 1.5, 3.0),
    ("wraparound/aggregated (attested)", "wraparound", 3, 32, 6.0, 12.0),
)


def attested_bases(size: str, index: int | None = None) -> list[Base]:
    """Attested model runs for the tamper classes of `tamper_campaign` (every one at full
    size, those taking frames away or forging one at CI size; see `attested_tamper`): the
    origin rules then say, for each change, which boots still show their report."""
    full = size == "full"
    pick = ATTESTED_BASES if index is None else ATTESTED_BASES[index : index + 1]
    out = []
    for name, sc, n, seed, t_ci, t_full in pick:
        steady = t_full if full else t_ci
        run = model_run(sc, Layout.AGGREGATED, boots=n, seed=seed, steady_s=steady, attest=True)
        out.append(Base(name, run))
    return out


def attested_tamper(size: str, index: int | None = None) -> TamperFigures:
    bases = attested_bases(size, index)
    other = other_volume()
    if size != "full":
        return tamper_campaign(bases, other, dense=False, only=REMOVALS)
    # every class densely but the bit flips of every header and body field of every frame
    # (9 in 10 of the cost, and origin-wise only "this frame no longer authenticates"): sampled
    sampled = ("flips", "superblock")
    dense = tuple(g for g in GENERATORS if g not in sampled)
    return merge_tamper(
        [
            tamper_campaign(bases, other, dense=True, only=dense),
            tamper_campaign(bases, other, dense=False, only=sampled),
        ]
    )
