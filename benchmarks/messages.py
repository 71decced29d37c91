"""The benchmark's one message set: deterministic COCONUT-SVSM-like log lines.

``generate(n)`` returns ``n`` records from ``random.Random(seed)``: the services of
``svsmlog.model.services`` (boot, core, attest, vtpm, apic, uefi, console) with their
components and Rust targets, lines modelled on the model's own, levels mostly info and
debug with some warnings and few errors, message text of 40 to 200 bytes (ASCII, so
bytes = characters) and strictly increasing boot-relative timestamps (bursts of a few
milliseconds between quieter gaps: about 100 lines a second on average).

Generation is sequential, so the first ``k`` records of ``generate(n)`` are exactly
``generate(k)``: the 100k set is a prefix of the 1M set. Every tool is fed these records.
"""

from __future__ import annotations

import bisect
import itertools
import random
from collections.abc import Callable, Iterable

from svsmlog.model.services import COMPONENT, EFI_GLOBAL, EFI_IMAGE_SECURITY_DB, TARGET, TPM_COMMANDS, VERSION
from svsmlog.records import Level, Record

MIN_LEN = 40
MAX_LEN = 200
SEED = 0

# Share of the lines each service logs (steady state of a busy guest).
SERVICE_WEIGHTS: tuple[tuple[str, int], ...] = (
    ("core", 30),
    ("vtpm", 20),
    ("uefi", 17),
    ("apic", 14),
    ("console", 8),
    ("boot", 6),
    ("attest", 5),
)
# Level mix, the same for every service: mostly info/debug, some warnings, few errors.
LEVEL_WEIGHTS: tuple[tuple[Level, int], ...] = (
    (Level.DEBUG, 500),
    (Level.INFO, 450),
    (Level.WARN, 47),
    (Level.ERROR, 3),
)

Template = Callable[[random.Random], str]
_VARS = ("BootOrder", "Timeout", "SecureBoot", "MokListRT", "BootCurrent", "PlatformLang", "ConOut", "db")


def _gpa(r: random.Random) -> str:
    return f"{r.randrange(0x100000, 8 << 30, 0x200000):#018x}"


def _buf(r: random.Random) -> str:
    return f"0x{r.randrange(1 << 20, 1 << 30, 4096):x}"


# Per service and level: line templates (each a function of the generator).
TEMPLATES: dict[str, dict[Level, tuple[Template, ...]]] = {
    "core": {
        Level.DEBUG: (
            lambda r: f"PVALIDATE request: {r.choice((1, 4, 16, 64, 512))} entries (4K) from {_gpa(r)}",
            lambda r: f"core: PVALIDATE {r.choice((1, 16, 512))} x 2M at {_gpa(r)} validate=1: done",
            lambda r: f"DEPOSIT_MEM: {r.choice((4, 16, 64))} pages from the guest at {_gpa(r)}",
            lambda r: f"CREATE_VCPU: APIC ID {r.randrange(8)}, VMSA {_gpa(r)}, CAA {_gpa(r)}",
        ),
        Level.INFO: (
            lambda r: f"Guest OS requested SVSM protocol {r.randrange(5)} version 1 on CPU {r.randrange(8)}",
            lambda r: (
                f"core: {r.randint(1, 4096)} pages accepted since the last report, "
                f"{r.randint(1, 64)} GiB validated in total"
            ),
            lambda r: "Launching Firmware",
        ),
        Level.WARN: (
            lambda r: f"PVALIDATE {_gpa(r)} 2M failed: FAIL_SIZEMISMATCH; retrying as 512 4K pages",
            lambda r: (
                f"core: request queue on CPU {r.randrange(8)} is {r.randint(64, 256)} deep; "
                "the guest is waiting for page validation"
            ),
        ),
        Level.ERROR: (
            lambda r: (
                f"core: RMPADJUST at {_gpa(r)} failed with FAIL_PERMISSION; "
                "the request is rejected and the guest is told SVSM_ERR_INVALID_ADDRESS"
            ),
        ),
    },
    "vtpm": {
        Level.DEBUG: (
            lambda r: f"{r.choice(TPM_COMMANDS)} rc=0x0, locality 0, {r.randint(10, 1400)} response bytes",
            lambda r: f"vtpm: command buffer {_buf(r)} size {r.randint(10, 512)}",
        ),
        Level.INFO: (
            lambda r: "VTPM: NV state saved to persistent storage (65536 bytes)",
            lambda r: "VTPM: guest driver connected (TPM CRB over SVSM vTPM protocol)",
            lambda r: f"VTPM: {r.choice(TPM_COMMANDS)} served in {r.randint(20, 9000)} us",
        ),
        Level.WARN: (
            lambda r: "VTPM: NV write of 65600 bytes exceeds the 65536-byte NV buffer",
            lambda r: f"VTPM: {r.choice(TPM_COMMANDS)} returned rc=0x{r.choice((0x922, 0x98E, 0x101)):x}",
        ),
        Level.ERROR: (lambda r: "VTPM: failed to save NV state to persistent storage: device write error",),
    },
    "uefi": {
        Level.DEBUG: (
            lambda r: f"GetVariable({r.choice(_VARS)}, {EFI_GLOBAL}) -> {r.randint(1, 3000)} bytes",
            lambda r: f"uefi_mm: MM communicate buffer {_buf(r)}, {r.randint(64, 4096)} bytes",
        ),
        Level.INFO: (
            lambda r: f"SetVariable({r.choice(_VARS)}, {EFI_GLOBAL}) {r.randint(1, 64)} bytes NV|BS|RT",
            lambda r: f"UEFI variables: loaded {r.randint(20, 40)} variables from persistent storage",
        ),
        Level.WARN: (
            lambda r: (
                f"SetVariable(db, {EFI_IMAGE_SECURITY_DB}): authenticated update rejected: "
                "signature verification is not supported"
            ),
        ),
        Level.ERROR: (
            lambda r: "UEFI variables: variable store full; SetVariable returned EFI_OUT_OF_RESOURCES",
        ),
    },
    "apic": {
        Level.DEBUG: (
            lambda r: (
                f"IPI vector {r.choice((0xFB, 0xFC, 0xFD, 0xEC)):#04x} from CPU {r.randrange(8)} "
                f"to CPU {r.randrange(8)}"
            ),
            lambda r: f"APIC: x2APIC emulation enabled for CPU {r.randrange(8)}",
        ),
        Level.INFO: (
            lambda r: "APIC protocol: x2APIC emulation available",
            lambda r: f"APIC: CPU {r.randrange(8)} registered {r.randint(1, 32)} interrupt vectors",
        ),
        Level.WARN: (lambda r: f"APIC: guest wrote reserved bits of ICR on CPU {r.randrange(8)}: {_buf(r)}",),
        Level.ERROR: (lambda r: f"APIC: invalid vector {r.randrange(16)} requested; assertion vector >= 16",),
    },
    "console": {
        Level.DEBUG: (lambda r: "console: guest requested a log level query",),
        Level.INFO: (
            lambda r: (
                f"heartbeat: uptime {r.randint(1, 90000)} s, {r.choice((2, 4, 8))} CPUs online, "
                f"{r.randint(1, 10**7)} protocol requests served"
            ),
            lambda r: "Console: serial output disabled; lines go to the encrypted persistent log only",
        ),
        Level.WARN: (lambda r: f"console: line buffer overflow, {r.randint(1, 400)} bytes dropped",),
        Level.ERROR: (lambda r: "console: line buffer poisoned; console output stops here",),
    },
    "boot": {
        Level.DEBUG: (
            lambda r: f"Validating {_gpa(r)}-{_gpa(r)} ({r.randint(1, 4096)} pages)",
            lambda r: f"Creating VMSA for AP {r.randint(1, 7)}",
            lambda r: f"Launching request-processing task on CPU {r.randrange(8)}",
        ),
        Level.INFO: (
            lambda r: f"COCONUT Secure Virtual Machine Service Module Version {VERSION}",
            lambda r: "SEV-SNP guest: VMPL0, SNP features 0x1 (SNP active)",
            lambda r: "Persistent storage: virtio-blk at MMIO 0x00000000fef03000",
            lambda r: f"CPU {r.randint(1, 7)} is online",
        ),
        Level.WARN: (lambda r: "Stage2: IGVM parameter page carries an unknown flag; ignored",),
        Level.ERROR: (lambda r: "Failed to validate kernel heap: PVALIDATE returned FAIL_INPUT",),
    },
    "attest": {
        Level.DEBUG: (
            lambda r: "attest: SNP_GUEST_REQUEST MSG_REPORT_REQ returned 1184 bytes",
            lambda r: "attest: negotiation with KBS at 10.0.2.2:8080: hash sha384, key type ec384",
        ),
        Level.INFO: (
            lambda r: "Guest requested an attestation report (SVSM_ATTEST_SERVICES, 1 service manifest)",
            lambda r: "attestation successful",
        ),
        Level.WARN: (lambda r: f"attest: KBS did not answer within 250 ms (attempt {r.randint(1, 3)}/3)",),
        Level.ERROR: (
            lambda r: (
                "attestation failed: KBS returned 401 Unauthorized (the launch measurement "
                "does not match the reference values)"
            ),
        ),
    },
}

# Context some lines carry after their text (what a request handler adds).
_SOURCES = (
    "kernel/src/protocols/core.rs",
    "kernel/src/vtpm/tcgtpm/mod.rs",
    "kernel/src/protocols/uefi_mm.rs",
    "kernel/src/cpu/apic.rs",
    "kernel/src/console.rs",
    "kernel/src/attest/kbs.rs",
    "kernel/src/svsm.rs",
)
CONTEXT: tuple[Template, ...] = (
    lambda r: f" [vcpu {r.randrange(8)}, req {r.randrange(1, 10**6)}]",
    lambda r: f"; at {r.choice(_SOURCES)}:{r.randrange(20, 900)}:{r.randrange(1, 40)}",
    lambda r: f"; caa {_gpa(r)}, vmsa {_gpa(r)}, {r.randrange(1, 5000)} us in the handler",
    lambda r: (
        f" (guest rip 0x{r.randrange(1 << 40, 1 << 47):016x}, sev_status 0x{r.randrange(1 << 16):x},"
        f" ghcb {_gpa(r)}, exit code 0x{r.randrange(0x400):x})"
    ),
)
CONTEXT_SHARE = 0.4


def _fit(text: str, r: random.Random) -> str:
    """Add request context to some lines and to every line under 40 bytes; cut at 200."""
    if r.random() < CONTEXT_SHARE:
        text += r.choice(CONTEXT)(r)
    while len(text) < MIN_LEN:
        text += r.choice(CONTEXT)(r)
    return text[:MAX_LEN]


def generate(n: int, seed: int = SEED) -> list[Record]:
    """``n`` records, the same for a given seed; a prefix of any longer set."""
    r = random.Random(seed)
    services = [s for s, _ in SERVICE_WEIGHTS]
    s_cum = list(itertools.accumulate(w for _, w in SERVICE_WEIGHTS))
    levels = [lv for lv, _ in LEVEL_WEIGHTS]
    l_cum = list(itertools.accumulate(w for _, w in LEVEL_WEIGHTS))
    rnd, pick = r.random, bisect.bisect_right
    out: list[Record] = []
    t_ns = 0
    for _ in range(n):
        # Bursts (mean 2 ms apart) and quiet spells (mean 30 ms): about 100 lines a second.
        gap = r.expovariate(500.0) if rnd() < 0.7 else r.expovariate(33.0)
        t_ns += max(1_000, int(gap * 1e9))
        svc = services[pick(s_cum, rnd() * s_cum[-1])]
        lvl = levels[pick(l_cum, rnd() * l_cum[-1])]
        text = _fit(r.choice(TEMPLATES[svc][lvl])(r), r)
        target = TARGET.get(svc, "svsm::svsm") if lvl >= Level.DEBUG else None
        out.append(Record(t_ns, lvl, svc, COMPONENT.get(svc, "SVSM"), text, target))
    return out


def payload_bytes(records: Iterable[Record]) -> int:
    """Bytes of message text (UTF-8): the denominator of every per-byte figure."""
    return sum(len(rec.message.encode()) for rec in records)
