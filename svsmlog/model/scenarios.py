"""Scenarios: sequences of boots of the SVSM model over one device, each with its ending.

A scenario picks, for each boot, how it ends (clean shutdown, a panic, a failed
attestation, power loss) and what else happens (a debug-mode request), and supplies the
launch configuration to use when the guest owner gave none (some scenarios need one:
small regions for ``wraparound``, a debug ceiling for ``debug``). ``run`` drives the boots
in virtual time; everything is a function of the seed and the device's prior contents.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from .. import crypto
from ..anchor import Anchor
from ..device import BlockDevice, Crashed
from ..format import DebugCeiling, Layout
from ..records import Level
from .config import LaunchConfig
from .services import MS, PROTOCOLS, Event, S, Workload
from .svsm import DurableRecord, SnpPlatform, SvsmModel, SvsmStopped, VirtualClock, WriteTap

ENDINGS = ("clean", "panic", "power-loss", "attestation-failure")
HOST_EPOCH_NS = 1_749_628_800 * S  # 2025-06-11T08:00:00Z: what the host claims, untrusted


@dataclass(frozen=True)
class BootPlan:
    ending: str = "clean"
    panic_service: str = "vtpm"
    steady_s: float = 6.0
    debug_at_s: float | None = None  # seconds after attestation: the guest asks for debug mode
    debug_streams: tuple[str, ...] | None = None  # None: what the launch policy names
    steady_records: int | None = None  # instead of steady_s: the first N steady-state records
    refuse_report: bool = False  # the host refuses this boot's attestation-report request


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    layout: Layout = Layout.AGGREGATED  # when neither a config file nor --streams chooses
    snp_debug: bool = False
    min_boots: int = 1
    default_boots: int = 1  # used when the caller asks for a single boot but the scenario needs more
    config_options: dict[str, object] = field(default_factory=dict)
    plan: Callable[[int, int, str | None], BootPlan] = lambda i, n, arg: BootPlan()

    def plans(self, boots: int, arg: str | None = None) -> list[BootPlan]:
        n = boots if boots >= self.min_boots else self.default_boots
        return [self.plan(i, n, arg) for i in range(n)]

    def default_config(
        self, owners: list[crypto.PublicKey], layout: Layout | None, debug_key: crypto.PublicKey | None
    ) -> LaunchConfig:
        lay = self.layout if layout is None else layout
        opts = dict(self.config_options)
        sectors = opts.pop("sectors", None)
        if isinstance(sectors, dict):
            sectors = sectors[lay]
        debug_streams = opts.pop("debug_streams", None)
        if isinstance(debug_streams, dict):
            debug_streams = debug_streams[lay]
        return LaunchConfig.default(
            owners,
            lay,
            **opts,
            **({"sectors": sectors} if sectors else {}),
            **({"debug_streams": debug_streams} if debug_streams else {}),
            debug_recipient=debug_key,
        )


def _multi_boot(i: int, n: int, arg: str | None) -> BootPlan:
    if i == n - 1:
        return BootPlan("clean", steady_s=4.0)
    ending = ENDINGS[i % len(ENDINGS)]
    return BootPlan(ending, panic_service=("uefi", "vtpm", "core")[(i // len(ENDINGS)) % 3], steady_s=4.0)


_SCENARIO_LIST = (
    Scenario(
        "normal", "every boot runs and shuts down cleanly", plan=lambda i, n, arg: BootPlan(steady_s=20.0)
    ),
    Scenario(
        "panic",
        "a service panics (default vtpm; 'panic:<service>' picks another); the panic "
        "record is flushed with everything pending and the boot stops",
        plan=lambda i, n, arg: BootPlan("panic", panic_service=arg or "vtpm"),
    ),
    Scenario(
        "attestation-failure",
        "attestation fails: errors are logged (flushed at once), then the "
        "SVSM stops without a clean shutdown",
        plan=lambda i, n, arg: BootPlan("attestation-failure"),
    ),
    Scenario(
        "multi-boot",
        "several boots with mixed endings (clean, panic, power loss, attestation "
        "failure), the last one clean; 5 boots unless --boots N > 1",
        min_boots=2,
        default_boots=5,
        plan=_multi_boot,
    ),
    Scenario(
        "wraparound",
        "small regions (unless a config says otherwise) filled past their end: "
        "the rings wrap and reclaim old frames",
        plan=lambda i, n, arg: BootPlan(steady_s=30.0),
        config_options={
            "min_level": Level.DEBUG,
            "sectors": {
                Layout.AGGREGATED: {"all": 48},
                Layout.PER_SERVICE: {
                    n: 32 for n in ("boot", "core", "attest", "vtpm", "apic", "uefi", "console")
                },
            },
        },
    ),
    Scenario(
        "report-refused",
        "three clean boots; the host refuses the second boot's attestation-report request, so "
        "that boot is written unattested (with --attest)",
        min_boots=3,
        default_boots=3,
        plan=lambda i, n, arg: BootPlan("clean", steady_s=4.0, refuse_report=i == 1),
    ),
    Scenario(
        "debug",
        "debug ceiling 'debug-only' with the SNP debug policy bit set; the guest enables "
        "debug mode mid-boot for some streams (vtpm and console per service)",
        layout=Layout.PER_SERVICE,
        snp_debug=True,
        plan=lambda i, n, arg: BootPlan("clean", debug_at_s=1.5),
        config_options={
            "debug_ceiling": DebugCeiling.DEBUG_ONLY,
            "min_level": Level.DEBUG,
            "debug_streams": {Layout.AGGREGATED: ("all",), Layout.PER_SERVICE: ("vtpm", "console")},
        },
    ),
)
SCENARIO_BY_NAME = {s.name: s for s in _SCENARIO_LIST}
SCENARIOS: tuple[str, ...] = tuple(SCENARIO_BY_NAME)


class ScenarioError(ValueError):
    pass


def get_scenario(name: str) -> tuple[Scenario, str | None]:
    """A scenario by name; "panic:<service>" selects the service that panics."""
    base, _, arg = name.partition(":")
    sc = SCENARIO_BY_NAME.get(base)
    if sc is None:
        raise ScenarioError(f"unknown scenario {name!r} (known: {', '.join(SCENARIOS)})")
    if arg and base != "panic":
        raise ScenarioError(f"scenario {base!r} takes no argument")
    if arg and arg not in PROTOCOLS and arg not in ("boot", "console"):
        raise ScenarioError(f"unknown service {arg!r} (known: boot, {', '.join(PROTOCOLS)}, console)")
    return sc, (arg or None)


# ---------------------------------------------------------------------- running


@dataclass
class RunLog:
    """What a run did: the boots it started, their endings, every durable record, whether
    the device stopped (crash), and the newest anchor taken after a completed write."""

    tap: WriteTap
    boots: list[int] = field(default_factory=list)
    endings: list[str] = field(default_factory=list)
    durable: list[DurableRecord] = field(default_factory=list)
    crashed: bool = False
    anchor: Anchor | None = None
    debug_grants: dict[int, list[str]] = field(default_factory=dict)  # boot -> streams granted
    # anchor_nonce given: the last boot's anchor report (raw report, its anchor), issued just
    # before the boot ends; None if the host refused it or the device stopped first
    anchor_report: tuple[bytes, Anchor] | None = None


def boot_rng(seed: int, index: int) -> random.Random:
    """The random source of the index-th boot of a run (string seeds hash the same everywhere)."""
    return random.Random(f"svsmlog-model/{seed}/{index}")


def run(
    scenario: str | Scenario,
    device: BlockDevice,
    config: LaunchConfig,
    *,
    boots: int = 1,
    seed: int = 0,
    snp_debug: bool | None = None,
    steady_s: float | None = None,
    on_durable: Callable[[DurableRecord], None] | None = None,
    steady_records: int | None = None,
    snp: SnpPlatform | None = None,
    anchor_nonce: bytes | None = None,
) -> RunLog:
    """Run the scenario's boots on ``device``. A ``Crashed`` from the device ends the run
    (``crashed``); a model-level stop (panic, halt) ends only its boot. With ``anchor_nonce``
    (and ``snp``) the last boot issues an anchor report just before it ends (spec §6.5)."""
    if anchor_nonce is not None and snp is None:
        raise ScenarioError("an anchor report needs the SNP platform (attestation)")
    if isinstance(scenario, str):
        sc, arg = get_scenario(scenario)
    else:
        sc, arg = scenario, None
    tap = device if isinstance(device, WriteTap) else WriteTap(device)
    out = RunLog(tap)
    nv_exists: bool | None = None

    def durable(d: DurableRecord) -> None:
        out.durable.append(d)
        if on_durable is not None:
            on_durable(d)

    def issue_anchor_report(m: SvsmModel) -> None:
        assert anchor_nonce is not None
        out.anchor_report = m.issue_anchor_report(anchor_nonce)

    plans = sc.plans(boots, arg)
    for i, plan in enumerate(plans):
        if steady_s is not None or steady_records is not None:
            plan = BootPlan(
                plan.ending,
                plan.panic_service,
                steady_s if steady_s is not None else plan.steady_s,
                plan.debug_at_s,
                plan.debug_streams,
                steady_records,
                plan.refuse_report,
            )
        rng = boot_rng(seed, i)
        host_time = HOST_EPOCH_NS + seed % 1000 * S + i * 3600 * S
        try:
            svsm = SvsmModel(
                tap,
                config,
                clock=VirtualClock(),
                snp_debug=sc.snp_debug if snp_debug is None else snp_debug,
                host_time_ns=host_time,
                on_durable=durable,
                snp=replace(snp, refuse=snp.refuse or plan.refuse_report) if snp is not None else None,
            )
        except Crashed:
            out.crashed = True
            break
        out.boots.append(svsm.boot)
        if nv_exists is None:
            nv_exists = svsm.boot > 1
        wl = Workload(rng, boot=svsm.boot, nv_state_exists=nv_exists)
        last = anchor_nonce is not None and i == len(plans) - 1
        try:
            ending = run_boot(svsm, wl, plan, before_end=issue_anchor_report if last else None)
        except Crashed:
            out.crashed = True
            ending = "crash"
        nv_exists = wl.nv_state_exists
        out.endings.append(ending)
        if svsm.debug_streams:
            out.debug_grants[svsm.boot] = sorted(svsm.debug_streams)
        if svsm.last_anchor is not None:
            out.anchor = svsm.last_anchor
        if out.crashed:
            break
    return out


def run_boot(
    svsm: SvsmModel, wl: Workload, plan: BootPlan, *, before_end: Callable[[SvsmModel], None] | None = None
) -> str:
    """One boot along its plan; returns how it ended. ``before_end`` runs just before the
    boot's ending (shutdown, panic, halt)."""
    items: list[tuple[int, int, Event | tuple[str, object]]] = []

    def add(events: list[Event]) -> None:
        for e in events:
            items.append((e.t_ns, len(items), e))

    def act(t: int, what: str, arg: object = None) -> None:
        items.append((t, len(items), (what, arg)))

    early, t = wl.early_boot(0)
    add(early)
    if plan.ending == "attestation-failure":
        att, t = wl.attestation(t, fail=True)
        add(att)
        act(t + 200 * MS, "halt", "attestation-failure")
    else:
        att, t = wl.attestation(t, fail=False)
        add(att)
        t_attested = t
        svc, t = wl.services_start(t)
        add(svc)
        fw, t = wl.firmware_and_guest(t)
        add(fw)
        end = t + int(plan.steady_s * S)
        steady: Callable[[int, int], list[Event]] = wl.steady
        if plan.steady_records is not None:
            # As long as the services' rates take to log N records: draw a window that holds
            # enough, keep the first N, and end the steady phase just after the last.
            # Only records the launch policy logs count (min_level drops the rest).
            span = max(1.0, plan.steady_records / 20)
            while True:
                drawn = [e for e in wl.steady(t, t + int(span * S)) if e.level <= svsm.config.min_level]
                if len(drawn) >= plan.steady_records:
                    break
                span *= 2
            kept = sorted(drawn, key=lambda e: e.t_ns)[: plan.steady_records]
            end = (kept[-1].t_ns if kept else t) + 1
            def steady(a: int, b: int) -> list[Event]:
                return [e for e in kept if a <= e.t_ns < b]
        if plan.debug_at_s is not None:
            act(t_attested + int(plan.debug_at_s * S), "debug", plan.debug_streams)
        if plan.ending == "panic":
            tp = wl.rng.randint(t + (end - t) // 3, t + (end - t) * 2 // 3)
            add(steady(t, tp))
            lead, site, tp2 = wl.panic_site(plan.panic_service, tp)
            add(lead)
            act(tp2, "panic", site)
        elif plan.ending == "power-loss":
            tp = wl.rng.randint(t + (end - t) // 2, end)
            add(steady(t, tp))
            act(tp, "halt", "power-loss")
        else:
            add(steady(t, end))
            sd, t2 = wl.shutdown(end)
            add(sd)
            act(t2 + 100 * MS, "shutdown")
    items.sort(key=lambda it: (it[0], it[1]))
    try:
        for t_ns, _, item in items:
            svsm.advance_to(t_ns)
            if isinstance(item, Event):
                svsm.log(
                    item.service,
                    item.level,
                    item.message,
                    component=item.component,
                    target=item.target,
                    fields=item.fields,
                )
                continue
            what, arg = item
            if what != "debug" and before_end is not None:
                before_end(svsm)
                before_end = None
            if what == "debug":
                svsm.enable_debug(arg)  # type: ignore[arg-type]
            elif what == "panic":
                svsm.panic(arg)  # type: ignore[arg-type]
            elif what == "halt":
                svsm.halt(str(arg))
            elif what == "shutdown":
                svsm.shutdown()
                return "clean"
    except SvsmStopped as e:
        return e.ending
    return "unfinished"
