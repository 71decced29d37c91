"""What the SVSM's services log during one boot: deterministic traffic from a seed.

Modelled on COCONUT-SVSM: the Stage2 boot loader and kernel initialisation, then the
protocols of the SVSM specification (AMD 58019) — CORE = 0 (page validation, vCPU
creation, memory deposit), ATTEST = 1, VTPM = 2, APIC = 3, UEFI_MM = 4 (the UEFI
variable store) — and the console task. Lines look like the kernel's own (``[SVSM]
attestation successful``); debug and trace lines carry the Rust module path as target.

Time is virtual: every event carries a boot-relative monotonic timestamp in nanoseconds,
produced by a ``random.Random`` seeded by the caller. No wall clock is read anywhere, so a
seed always yields the same events. The rates mimic a real boot: a dense burst while the
kernel, the firmware (OVMF) and the guest kernel start, then a quiet steady state.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from ..records import Level

VERSION = "0.1.0-dev+g3f1c2ab"
SERVICES = ("boot", "core", "attest", "vtpm", "apic", "uefi", "console")
PROTOCOLS = {"core": 0, "attest": 1, "vtpm": 2, "apic": 3, "uefi": 4}
COMPONENT = {  # the task whose line buffer prefixes the line
    "core": "SVSM",
    "attest": "SVSM",
    "vtpm": "vtpm",
    "apic": "SVSM",
    "uefi": "uefi-vars",
    "console": "console",
}
TARGET = {
    "core": "svsm::protocols::core",
    "attest": "svsm::attest",
    "vtpm": "svsm::vtpm",
    "apic": "svsm::protocols::apic",
    "uefi": "svsm::protocols::uefi_mm",
    "console": "svsm::console",
}
TPM_COMMANDS = (  # what the guest's TPM driver sends the vTPM most
    "TPM2_GetRandom(32)",
    "TPM2_PCR_Read(sha256: 0-7)",
    "TPM2_NV_Read(0x01c00002, EK certificate)",
    "TPM2_GetCapability(TPM_PROPERTIES)",
    "TPM2_Quote(PCR 0-7, sha256)",
    "TPM2_PCR_Extend PCR[10] sha256 (IMA)",
)
EFI_GLOBAL = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
EFI_IMAGE_SECURITY_DB = "d719b2cb-3d3a-4596-a3bc-dad00e67656f"
MS = 1_000_000
US = 1_000
S = 1_000_000_000


@dataclass(frozen=True)
class Event:
    """One line a service logs at a virtual time."""

    t_ns: int
    service: str
    level: Level
    message: str
    component: str
    target: str | None = None
    fields: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class PanicSite:
    """What the panic handler prints: ``Panic on CPU[n]! COCONUT-SVSM Version: …``, the
    panic info (location and reason) and a short backtrace."""

    service: str
    cpu: int
    location: str
    reason: str
    backtrace: tuple[int, ...]

    @property
    def message(self) -> str:
        return f"Panic on CPU[{self.cpu}]! COCONUT-SVSM Version: {VERSION}"

    @property
    def fields(self) -> tuple[tuple[str, str], ...]:
        return (
            ("service", self.service),
            ("cpu", str(self.cpu)),
            ("info", f"panicked at {self.location}: {self.reason}"),
            ("backtrace", " ".join(f"{a:#018x}" for a in self.backtrace)),
        )


_PANICS = {
    "vtpm": ("kernel/src/vtpm/tcgtpm/mod.rs:214:13", "NV state buffer overflow: 65600 > 65536 bytes"),
    "uefi": (
        "kernel/src/protocols/uefi_mm.rs:388:21",
        "variable store index out of bounds: the len is 64 but the index is 64",
    ),
    "core": ("kernel/src/protocols/core.rs:301:9", "called `Option::unwrap()` on a `None` value"),
    "attest": ("kernel/src/attest/kbs.rs:142:17", "attestation response too large for the shared page"),
    "apic": ("kernel/src/cpu/apic.rs:497:13", "assertion failed: vector >= 16"),
    "console": ("kernel/src/console.rs:77:5", "console line buffer poisoned"),
    "boot": ("kernel/src/svsm.rs:402:9", "Failed to validate kernel heap"),
}


def _hex(v: int) -> str:
    return f"{v:#018x}"


class Workload:
    """The log traffic of one boot. Each phase method takes the time it starts at and
    returns its events (in time order) and the time it ends."""

    def __init__(self, rng: random.Random, *, boot: int, nv_state_exists: bool) -> None:
        self.rng = rng
        self.boot = boot
        self.nv_state_exists = nv_state_exists
        self.cpus = rng.choice((2, 4, 4, 8))
        self.mem_gib = rng.choice((2, 4, 8))
        self.requests = 0

    # ------------------------------------------------------------------ helpers

    def _ev(
        self,
        t: int,
        service: str,
        level: Level,
        message: str,
        *,
        component: str | None = None,
        target: str | None = None,
        fields: tuple[tuple[str, str], ...] = (),
    ) -> Event:
        if level >= Level.DEBUG and target is None:
            target = TARGET.get(service, "svsm")
        return Event(t, service, level, message, component or COMPONENT.get(service, "SVSM"), target, fields)

    def _gap(self, lo_us: int, hi_us: int) -> int:
        return self.rng.randint(lo_us, hi_us) * US

    def _gpa(self) -> int:
        return self.rng.randrange(0x100000, self.mem_gib << 30, 0x200000)

    def _exp(self, rate_per_s: float) -> int:
        """Poisson inter-arrival time at ``rate_per_s``, in ns (at least 1 µs)."""
        return max(US, int(self.rng.expovariate(rate_per_s) * S))

    # ------------------------------------------------------------------ boot burst

    def early_boot(self, t: int) -> tuple[list[Event], int]:
        """Stage2 loads the kernel; the kernel sets up memory, brings the APs online and
        starts the request loops. Everything goes to the "boot" stream."""
        ev: list[Event] = []

        def boot(
            level: Level,
            msg: str,
            comp: str = "SVSM",
            target: str | None = None,
            fields: tuple[tuple[str, str], ...] = (),
        ) -> None:
            nonlocal t
            t += self._gap(40, 900)
            if level >= Level.DEBUG and target is None:
                target = "svsm::svsm" if comp == "SVSM" else "stage2"
            ev.append(Event(t, "boot", level, msg, comp, target, fields))

        kernel_start = 0xFFFFFF8000000000
        boot(Level.INFO, "COCONUT Secure Virtual Machine Service Module (SVSM) Stage 2 Loader", "Stage2")
        boot(
            Level.DEBUG,
            f"IGVM parameters at 0x0000000000807000: 2 memory regions, {self.cpus} vCPUs",
            "Stage2",
        )
        boot(Level.INFO, f"  kernel_region_phys_start = {_hex(0x8A000000)}", "Stage2")
        boot(Level.INFO, f"  kernel_region_phys_end   = {_hex(0x8B000000)}", "Stage2")
        boot(Level.DEBUG, f"Validating {_hex(0x8A000000)}-{_hex(0x8B000000)} (4096 pages)", "Stage2")
        boot(Level.TRACE, "PVALIDATE 0x000000008a000000 2M: success", "Stage2")
        boot(Level.DEBUG, f"Loaded kernel ELF: entry {_hex(kernel_start + 0x2650)}, 3 segments", "Stage2")
        boot(Level.INFO, "Starting SVSM kernel...", "Stage2")
        t += self._gap(3000, 8000)
        boot(Level.INFO, f"COCONUT Secure Virtual Machine Service Module Version {VERSION}")
        boot(Level.INFO, f"Kernel region: {_hex(kernel_start)}-{_hex(kernel_start + 0x1000000)}")
        boot(
            Level.DEBUG,
            "Kernel heap: 0xffffff8000a00000-0xffffff8006a00000 (96 MiB)",
            target="svsm::mm::alloc",
        )
        boot(Level.DEBUG, "Page tables ready: 4-level paging, C-bit 51", target="svsm::mm::pagetable")
        boot(Level.INFO, "SEV-SNP guest: VMPL0, SNP features 0x1 (SNP active)")
        boot(Level.INFO, "Persistent storage: virtio-blk at MMIO 0x00000000fef03000")
        boot(Level.INFO, f"svsmlog: logging to persistent storage, boot {self.boot}")
        for cpu in range(1, self.cpus):
            t += self._gap(800, 3000)
            boot(Level.DEBUG, f"Creating VMSA for AP {cpu}", target="svsm::cpu::smp")
            boot(
                Level.TRACE,
                f"AP {cpu}: VMSA at {_hex(self._gpa())}, RMPADJUST VMSA bit set",
                target="svsm::cpu::smp",
            )
            boot(Level.INFO, f"CPU {cpu} is online")
        boot(Level.INFO, f"Brought {self.cpus - 1} AP(s) online")
        for cpu in range(self.cpus):
            boot(Level.DEBUG, f"Launching request-processing task on CPU {cpu}", target="svsm::task")
        boot(Level.INFO, "SVSM protocols: core 1, attest 1, vtpm 1, apic 1, uefi_mm 1")
        return ev, t

    def attestation(self, t: int, *, fail: bool) -> tuple[list[Event], int]:
        """Attestation to the Key Broker Service: the storage key arrives only if it succeeds."""
        ev: list[Event] = []

        def att(
            dt: tuple[int, int], level: Level, msg: str, fields: tuple[tuple[str, str], ...] = ()
        ) -> None:
            nonlocal t
            t += self._gap(*dt)
            ev.append(self._ev(t, "attest", level, msg, fields=fields))

        att(
            (500, 2000),
            Level.INFO,
            "Attestation: requesting SNP report (VMPL0, REPORT_DATA = session key hash)",
        )
        att(
            (2000, 6000),
            Level.DEBUG,
            "attest: SNP_GUEST_REQUEST MSG_REPORT_REQ returned 1184 bytes",
            (("vmpl", "0"), ("report_version", "3")),
        )
        att(
            (300, 900),
            Level.DEBUG,
            "attest: negotiation with KBS at 10.0.2.2:8080: hash sha384, key type ec384",
        )
        att((300, 900), Level.TRACE, "attest: POST /kbs/v0/auth 212 bytes", ())
        if not fail:
            att((40_000, 120_000), Level.DEBUG, "attest: KBS challenge received, nonce 32 bytes")
            att((20_000, 80_000), Level.INFO, "attestation successful", (("kbs", "10.0.2.2:8080"),))
            att((200, 900), Level.INFO, "Storage key received; mounting persistent storage (CocoonFs)")
            return ev, t
        for attempt in (1, 2, 3):
            att(
                (150_000, 250_000),
                Level.WARN,
                f"attest: KBS did not answer within 250 ms (attempt {attempt}/3)",
                (("attempt", str(attempt)),),
            )
        att(
            (1000, 5000),
            Level.ERROR,
            "attestation failed: KBS returned 401 Unauthorized (the launch "
            "measurement does not match the reference values)",
            (("status", "401"),),
        )
        att(
            (100, 400),
            Level.ERROR,
            "Storage key unavailable: persistent state (vTPM NV, UEFI variables) cannot be opened",
        )
        att((100, 400), Level.ERROR, "Failed to initialize SVSM services; terminating the guest")
        return ev, t

    def services_start(self, t: int) -> tuple[list[Event], int]:
        """After attestation: vTPM NV state, the UEFI variable store, the APIC protocol."""
        ev: list[Event] = []

        def e(service: str, dt: tuple[int, int], level: Level, msg: str, **kw: object) -> None:
            nonlocal t
            t += self._gap(*dt)
            ev.append(self._ev(t, service, level, msg, **kw))  # type: ignore[arg-type]

        if self.nv_state_exists:
            e(
                "vtpm",
                (500, 2000),
                Level.INFO,
                "VTPM: loaded existing NV state from persistent storage",
                fields=(("nv_bytes", "65536"),),
            )
        else:
            e("vtpm", (500, 2000), Level.INFO, "VTPM: manufacturing new NV state")
            e("vtpm", (20_000, 60_000), Level.DEBUG, "VTPM: EK created: RSA 2048, handle 0x81010001")
            e(
                "vtpm",
                (2000, 9000),
                Level.INFO,
                "VTPM: NV state saved to persistent storage",
                fields=(("nv_bytes", "65536"),),
            )
            self.nv_state_exists = True
        e("vtpm", (300, 1200), Level.INFO, "VTPM: TPM 2.0 Reference Implementation initialized")
        e("vtpm", (100, 500), Level.DEBUG, "VTPM: TPM2_Startup(SU_CLEAR) rc=0x0")
        e(
            "uefi",
            (500, 2000),
            Level.INFO,
            "UEFI variables: loaded 27 variables from persistent storage",
            fields=(("bytes", "41322"),),
        )
        e(
            "uefi",
            (200, 800),
            Level.INFO,
            "Secure Boot: PK, KEK, db and dbx present; db holds 2 certificates "
            "(Microsoft Windows Production PCA 2011, Microsoft UEFI CA 2011)",
        )
        e("apic", (200, 800), Level.INFO, "APIC protocol: x2APIC emulation available")
        e(
            "console",
            (100, 600),
            Level.INFO,
            "Console: serial output disabled; lines go to the encrypted persistent log only",
        )
        e("core", (500, 2000), Level.INFO, "Launching Firmware")
        return ev, t

    def firmware_and_guest(self, t: int) -> tuple[list[Event], int]:
        """OVMF then the guest kernel: a burst of variable reads, page validations, PCR
        extends, vCPU creation and IPIs over about two seconds of virtual time."""
        rng = self.rng
        ev: list[Event] = []
        start = t
        # OVMF: variable store traffic and measured boot.
        names = (
            "PlatformLang",
            "Lang",
            "Timeout",
            "BootOrder",
            "Boot0000",
            "Boot0001",
            "ConIn",
            "ConOut",
            "SecureBoot",
            "SetupMode",
            "PK",
            "KEK",
            "db",
            "dbx",
            "MokListRT",
            "SbatLevel",
        )
        for name in names:
            t += self._gap(500, 6000)
            guid = EFI_IMAGE_SECURITY_DB if name in ("db", "dbx") else EFI_GLOBAL
            size = {"SecureBoot": 1, "SetupMode": 1, "BootOrder": 4, "Timeout": 2}.get(
                name, rng.randint(16, 3000)
            )
            ev.append(
                self._ev(
                    t,
                    "uefi",
                    Level.DEBUG,
                    f"GetVariable({name}, {guid}) -> {size} bytes",
                    fields=(("status", "EFI_SUCCESS"),),
                )
            )
            if rng.random() < 0.3:
                t += self._gap(50, 400)
                ev.append(
                    self._ev(
                        t,
                        "uefi",
                        Level.TRACE,
                        f"uefi_mm: MM communicate buffer 0x{rng.randrange(1 << 20, 1 << 30, 4096):x}, "
                        f"{rng.randint(64, 4096)} bytes",
                    )
                )
        for pcr, what in (
            (0, "firmware code"),
            (1, "firmware config"),
            (2, "option ROMs"),
            (4, "shimx64.efi"),
            (7, "Secure Boot state"),
            (4, "grubx64.efi"),
            (8, "grub command line"),
            (9, "vmlinuz"),
            (9, "initrd"),
        ):
            t += self._gap(2000, 30_000)
            ev.append(
                self._ev(
                    t,
                    "vtpm",
                    Level.DEBUG,
                    f"TPM2_PCR_Extend PCR[{pcr}] sha256 ({what})",
                    fields=(("rc", "0x0"),),
                )
            )
        t += self._gap(500, 3000)
        ev.append(
            self._ev(
                t,
                "uefi",
                Level.DEBUG,
                "Secure Boot: db check for shimx64.efi: signature chains to "
                "db[1] (Microsoft UEFI CA 2011); sha256 not in dbx",
            )
        )
        t += self._gap(500, 3000)
        ev.append(self._ev(t, "uefi", Level.INFO, f"SetVariable(BootOrder, {EFI_GLOBAL}) 4 bytes NV|BS|RT"))
        if rng.random() < 0.5:
            t += self._gap(500, 3000)
            ev.append(
                self._ev(
                    t,
                    "uefi",
                    Level.WARN,
                    f"SetVariable(db, {EFI_IMAGE_SECURITY_DB}): authenticated "
                    "update rejected: signature verification is not supported",
                    fields=(("status", "EFI_SECURITY_VIOLATION"),),
                )
            )
        # Guest kernel: lazy memory acceptance, AP bring-up, IPIs.
        t += self._gap(100_000, 300_000)
        ev.append(self._ev(t, "core", Level.INFO, "Guest OS requested SVSM protocol 0 (core) version 1"))
        for cpu in range(1, self.cpus):
            t += self._gap(3000, 20_000)
            ev.append(
                self._ev(
                    t,
                    "core",
                    Level.DEBUG,
                    f"CREATE_VCPU: APIC ID {cpu}, VMSA {_hex(self._gpa())}, CAA {_hex(self._gpa())}",
                    fields=(("apic_id", str(cpu)),),
                )
            )
            t += self._gap(200, 2000)
            ev.append(self._ev(t, "apic", Level.DEBUG, f"APIC: x2APIC emulation enabled for CPU {cpu}"))
        t += self._gap(1000, 5000)
        ev.append(
            self._ev(t, "vtpm", Level.INFO, "VTPM: guest driver connected (TPM CRB over SVSM vTPM protocol)")
        )
        end = t + 1_200 * MS
        t2 = t
        while True:
            t2 += self._exp(60.0)
            if t2 >= end:
                break
            ev.append(self._pvalidate(t2, burst=True))
        t2 = t
        while True:
            t2 += self._exp(25.0)
            if t2 >= end:
                break
            ev.append(self._ipi(t2))
        ev.sort(key=lambda e: e.t_ns)
        return ev, max(end, start)

    # ------------------------------------------------------------------ steady state

    def _pvalidate(self, t: int, *, burst: bool = False) -> Event:
        self.requests += 1
        rng = self.rng
        pages, size = (
            (512, "2M") if rng.random() < (0.7 if burst else 0.3) else (rng.choice((1, 4, 16, 64)), "4K")
        )
        gpa = self._gpa()
        if rng.random() < 0.01:
            return self._ev(
                t,
                "core",
                Level.WARN,
                f"PVALIDATE {_hex(gpa)} 2M failed: FAIL_SIZEMISMATCH; retrying as 512 4K pages",
                fields=(("gpa", _hex(gpa)),),
            )
        if rng.random() < 0.5:
            return self._ev(
                t,
                "core",
                Level.TRACE,
                f"core: PVALIDATE {pages} x {size} at {_hex(gpa)} validate=1: done",
                target="svsm::mm::validate",
            )
        return self._ev(
            t,
            "core",
            Level.DEBUG,
            f"PVALIDATE request: {pages} entries ({size}) from {_hex(gpa)}",
            fields=(("entries", str(pages)), ("page_size", size)),
        )

    def _ipi(self, t: int) -> Event:
        rng = self.rng
        src, dst = rng.randrange(self.cpus), rng.randrange(self.cpus)
        vec = rng.choice((0xFB, 0xFC, 0xFD, 0xEC))
        return self._ev(t, "apic", Level.TRACE, f"IPI vector {vec:#04x} from CPU {src} to CPU {dst}")

    def steady(self, t0: int, t1: int) -> list[Event]:
        """Steady operation between ``t0`` and ``t1``: independent Poisson streams per service
        (rates per second), page validation decaying as the guest finishes accepting memory."""
        rng = self.rng
        ev: list[Event] = []
        # core: decaying page validation plus occasional memory deposits.
        t = t0
        while True:
            age = (t - t0) / S
            t += self._exp(1.5 + 20.0 * math.exp(-age / 2.0))
            if t >= t1:
                break
            if rng.random() < 0.05:
                n = rng.choice((4, 16, 64))
                ev.append(
                    self._ev(
                        t,
                        "core",
                        Level.DEBUG,
                        f"DEPOSIT_MEM: {n} pages from the guest",
                        fields=(("pages", str(n)),),
                    )
                )
            else:
                ev.append(self._pvalidate(t))
        t = t0
        while True:
            t += self._exp(4.0)
            if t >= t1:
                break
            ev.append(self._ipi(t))
        t = t0
        while True:
            t += self._exp(1.2)
            if t >= t1:
                break
            cmd = rng.choice(TPM_COMMANDS)
            ev.append(
                self._ev(
                    t,
                    "vtpm",
                    Level.DEBUG,
                    f"{cmd} rc=0x0",
                    fields=(("locality", "0"), ("response_bytes", str(rng.randint(10, 1400)))),
                )
            )
            if rng.random() < 0.3:
                ev.append(
                    self._ev(
                        t + 200 * US,
                        "vtpm",
                        Level.TRACE,
                        f"vtpm: command buffer 0x{rng.randrange(1 << 20, 1 << 30, 4096):x} "
                        f"size {rng.randint(10, 512)}",
                    )
                )
        t = t0
        while True:
            t += self._exp(0.4)
            if t >= t1:
                break
            name = rng.choice(("BootOrder", "Timeout", "SecureBoot", "MokListRT", "BootCurrent"))
            if rng.random() < 0.25:
                ev.append(
                    self._ev(
                        t,
                        "uefi",
                        Level.INFO,
                        f"SetVariable({name}, {EFI_GLOBAL}) {rng.randint(1, 64)} bytes NV|BS|RT",
                    )
                )
            else:
                ev.append(
                    self._ev(
                        t,
                        "uefi",
                        Level.DEBUG,
                        f"GetVariable({name}, {EFI_GLOBAL}) -> {rng.randint(1, 64)} bytes",
                        fields=(("status", "EFI_SUCCESS"),),
                    )
                )
        # console: a heartbeat every 5 s, occasional debug notes.
        t = t0 + 5 * S
        while t < t1:
            ev.append(
                self._ev(
                    t,
                    "console",
                    Level.INFO,
                    f"heartbeat: uptime {t // S} s, {self.cpus} CPUs online, "
                    f"{self.requests} protocol requests served",
                )
            )
            t += 5 * S
        t = t0
        while True:
            t += self._exp(0.3)
            if t >= t1:
                break
            ev.append(self._ev(t, "console", Level.DEBUG, "console: guest requested a log level query"))
        if rng.random() < 0.4:
            tw = rng.randint(t0, max(t0, t1 - 1))
            ev.append(
                self._ev(
                    tw,
                    "attest",
                    Level.INFO,
                    "Guest requested an attestation report (SVSM_ATTEST_SERVICES, 1 service manifest)",
                )
            )
        ev.sort(key=lambda e: e.t_ns)
        return ev

    # ------------------------------------------------------------------ endings

    def shutdown(self, t: int) -> tuple[list[Event], int]:
        t += self._gap(100, 2000)
        ev = [self._ev(t, "core", Level.INFO, "Guest requested shutdown: all vCPUs stopped")]
        t += self._gap(100, 2000)
        ev.append(
            self._ev(
                t,
                "vtpm",
                Level.INFO,
                "VTPM: NV state saved to persistent storage",
                fields=(("nv_bytes", "65536"),),
            )
        )
        t += self._gap(100, 2000)
        ev.append(self._ev(t, "console", Level.INFO, "SVSM shutting down: closing the persistent log"))
        return ev, t

    def panic_site(self, service: str, t: int) -> tuple[list[Event], PanicSite, int]:
        """The lines leading up to a panic in ``service`` and what the panic handler reports."""
        location, reason = _PANICS.get(service, _PANICS["core"])
        ev = []
        t += self._gap(100, 3000)
        if service == "vtpm":
            ev.append(self._ev(t, "vtpm", Level.DEBUG, "TPM2_NV_Write(0x01500016, 65600 bytes)"))
            t += self._gap(20, 200)
            ev.append(
                self._ev(
                    t, "vtpm", Level.WARN, "VTPM: NV write of 65600 bytes exceeds the 65536-byte NV buffer"
                )
            )
        else:
            ev.append(self._ev(t, service, Level.WARN, f"{service}: unexpected request state; continuing"))
        t += self._gap(20, 200)
        cpu = self.rng.randrange(self.cpus)
        trace = tuple(0xFFFFFF8000000000 + self.rng.randrange(0x10000, 0x400000, 0x10) + 1 for _ in range(5))
        return ev, PanicSite(service, cpu, location, reason, trace), t
