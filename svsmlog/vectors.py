"""Test vectors (spec §11): ``python -m svsmlog.vectors formats/vectors``.

Writer vectors fix every input, HPKE envelopes included (HPKE encryption is
randomised, so its output is an input here): a conforming writer given them must
write the image byte for byte. Reader vectors are damaged copies with the outcome a
conforming verifier must report, written by hand below, not taken from our reader:
generation fails if the reader disagrees with a label. A label the rules give and our
reader does not is kept and marked ``known_reader_defect``; the reader must then say
exactly ``reader_says``. The JSON schema is formats/vectors/README.md.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from . import crypto
from .anchor import Anchor
from .codec import (
    Envelope,
    FrameHeader,
    KeysBody,
    RegionEntry,
    decode_boot_body,
    decode_clear_section,
    decode_frame_header,
    decode_keys_body,
    decode_record_block,
    encode_boot_body,
    encode_clear_section,
    encode_frame_header,
    encode_keys_body,
)
from .device import SECTOR, MemoryDevice
from .format import (
    FRAME_AAD_LEN,
    FRAME_HEADER_LEN,
    KEY_DIR_SLOT_SECTORS,
    KEYS_BODY_LEN,
    NO_STREAM,
    SNP_REPORT_LEN,
    TAG_LEN,
    DebugCeiling,
    EnvelopeKind,
    FrameType,
    KeysReason,
    Layout,
)
from .frames import commit_digest, seal_frame
from .keyschedule import boot_report_data, envelope_info, launch_grant_digest, step, stream_root
from .origin import OriginPolicy
from .records import FLAG_PANIC, Level, Record
from .report import Report
from .scan import Candidate, scan_region
from .verify import Keyring, Verifier
from .volume import KEY_DIRECTORY, StreamSpec, key_dir_slot, read_volume
from .writer import BootPolicy, Evidence, LogWriter

# Fixed test keys: never use them for anything but vectors.
KEY_SEEDS = {
    "owner": (crypto.KEM_X25519, bytes(range(1, 33))),
    "owner-pq": (crypto.KEM_MLKEM768_X25519, bytes(range(100, 196))),
    "debug": (crypto.KEM_X25519, bytes(range(200, 232))),
    "owner-2": (crypto.KEM_X25519, bytes(range(33, 65))),  # another guest owner
}


def vector_key(name: str) -> crypto.PrivateKey:
    kem, seed = KEY_SEEDS[name]
    return crypto.private_key_from_seed(kem, seed)


def _h(b: bytes) -> str:
    return b.hex()


# ---------------------------------------------------------------- attestation (TEST-ONLY AMD-SP)
#
# Attested boots get their SEV-SNP report from the model's TEST-ONLY AMD-SP
# (svsmlog/model/amdsp.py): ARK -> ASK -> VCEK, none of it AMD's. The report is deterministic
# (RFC 6979 signatures over a report_data the envelopes fix); the VCEK certificate is not (its
# RSA-PSS signature draws a salt), so it is an input, kept from the committed vectors.

MEASUREMENT = crypto.sha384(b"svsmlog vectors: the SVSM build the owner launched")
OTHER_MEASUREMENT = crypto.sha384(b"svsmlog vectors: another SVSM build")
SNP_POLICY = 0x30000  # SMT allowed, reserved bit 17 set; debugging not allowed
SNP_POLICY_DEBUG = SNP_POLICY | 1 << 19  # POLICY.DEBUG: the host may read and change the VM's memory


@cache
def _platform() -> Any:
    from .model.amdsp import TestPlatform

    return TestPlatform()


def trust_chain_pem() -> str:
    """The TEST-ONLY ASK then ARK, PEM: a vector's ``verify.trust_roots``."""
    return str(_platform().chain_pems.decode())


def owner_verify(measurements: list[bytes] | None = None, *, require: bool = False) -> dict[str, Any]:
    """A ``verify`` block (README.md §4.2): the TEST-ONLY chain as trust roots, and the
    measurements the owner expects (default: the one the vectors' SVSM is launched with)."""
    return {
        "trust_roots": trust_chain_pem(),
        "measurements": [_h(m) for m in (measurements if measurements is not None else [MEASUREMENT])],
        "require_attestation": require,
    }


def origin_policy(verify: dict[str, Any] | None) -> OriginPolicy:
    """The verifier's origin policy from a ``verify`` block: certificates of ``trust_roots``
    that are self-signed are the roots, the others intermediates (as ``--trust-root``)."""
    verify = verify or {}
    given = crypto.load_certificates(verify["trust_roots"].encode()) if verify.get("trust_roots") else []
    roots = tuple(c for c in given if c.self_issued)
    return OriginPolicy(
        roots=roots or None,
        certs=tuple(c for c in given if not c.self_issued),
        measurements=frozenset(bytes.fromhex(m) for m in verify.get("measurements", [])),
        require=verify.get("require_attestation", False),
    )


class ReportMaker:
    """Record mode: answers a boot's report request as the TEST-ONLY AMD-SP does, for a boot
    whose ``attestation`` is still a request (``{measurement, policy, vmpl}``)."""

    def __init__(self, vcek_der: bytes | None = None) -> None:
        self.vcek_der = vcek_der if vcek_der is not None else bytes(_platform().vcek_der)

    def __call__(self, request: dict[str, Any], report_data: bytes) -> dict[str, Any]:
        report = _platform().report(
            report_data,
            vmpl=request.get("vmpl", 0),
            policy=request.get("policy", SNP_POLICY),
            measurement=bytes.fromhex(request["measurement"]),
        )
        ahead: list[bytes] = []
        if request.get("decoy_ask"):
            from .model.amdsp import decoy_ask, new_chain

            ahead = [decoy_ask(_platform().ask, new_chain()).der, _platform().ask.der]
        return {"report": _h(report), "certs": [_h(c) for c in (*ahead, self.vcek_der)]}


def evidence_input(att: dict[str, Any]) -> Evidence:
    return Evidence(bytes.fromhex(att["report"]), tuple(bytes.fromhex(c) for c in att.get("certs", [])))


def report_data_of(report: bytes) -> bytes:
    """REPORT_DATA, bytes 0x50..0x8F of an ATTESTATION_REPORT."""
    return report[0x50:0x90]


# ---------------------------------------------------------------- replaying a writer vector


class EnvelopeBook:
    """HPKE envelopes as fixed inputs: looked up by (key id, info); in ``record`` mode a
    missing one is sealed for real and kept."""

    def __init__(self, book: dict[str, str], *, record: bool) -> None:
        self.book, self.record = book, record
        self.used: set[str] = set()

    def __call__(self, key: crypto.PublicKey, plaintext: bytes, info: bytes) -> bytes:
        slot = f"{_h(key.key_id)}:{_h(info)}"
        self.used.add(slot)
        if slot not in self.book:
            if not self.record:
                raise KeyError(f"vector has no envelope for {slot}")
            self.book[slot] = _h(crypto.hpke_seal(key, plaintext, info))
        return bytes.fromhex(self.book[slot])


def _record(d: dict[str, Any]) -> Record:
    return Record(
        d["t_ns"],
        Level.parse(d["level"]),
        d["service"],
        d["component"],
        d["message"],
        d.get("target"),
        tuple((k, v) for k, v in d.get("fields", [])),
        FLAG_PANIC if d.get("panic", False) else 0,
    )


def _popper(values: list[bytes]) -> Callable[[int], bytes]:
    return lambda n: values.pop(0)[:n]


def _reader(cell: dict[str, int]) -> Callable[[], int]:
    return lambda: cell["t"]


class _Torn(Exception):
    """The vector's torn write happened: the boot stops there."""


@dataclass
class DeviceWrite:
    boot: int  # index of the boot in ``inputs.boots``, from 1
    index: int  # the boot's own count of frame writes, from 0
    lba: int
    sectors: int
    sha256: str
    torn: bool


class VectorDevice:
    """The replay's device: records every frame write (format writes apart) and tears the
    one write a boot's ``tear`` names."""

    def __init__(self, sector_count: int) -> None:
        self.inner = MemoryDevice(sector_count)
        self.writes: list[DeviceWrite] = []
        self.boot = 0
        self.tear: dict[str, Any] | None = None
        self._count = 0
        self._pending: list[tuple[int, bytes]] = []  # writes before the superblock: formatting

    @property
    def sector_count(self) -> int:
        return self.inner.sector_count

    def read(self, lba: int, count: int) -> bytes:
        return self.inner.read(lba, count)

    def start_boot(self, tear: dict[str, Any] | None) -> None:
        self.boot += 1
        self.tear = tear
        self._count = 0

    def write(self, lba: int, data: bytes) -> None:
        if lba == 0:  # formatting ends with the superblock: none of it counts as a frame write
            self.inner.write(lba, data)
            self._count = 0
            self.writes = [w for w in self.writes if w.boot != self.boot]
            return
        index, self._count = self._count, self._count + 1
        torn = self.tear is not None and self.tear["write"] == index
        if torn:
            assert self.tear is not None
            keep = self.tear["keep_sectors"] * SECTOR
            if not 0 <= keep < len(data):
                raise ValueError(
                    f"tear keeps {self.tear['keep_sectors']} of a {len(data) // SECTOR}-sector write"
                )
            fill = self.tear.get("fill", "old")
            rest = len(data) - keep
            if fill == "zero":
                landed = data[:keep] + bytes(rest)
            elif fill == "old":
                landed = data[:keep] + self.inner.read(lba + keep // SECTOR, rest // SECTOR)
            else:
                raise ValueError(f"unknown tear fill {fill!r}")
            self.inner.write(lba, landed)
        else:
            self.inner.write(lba, data)
        self.writes.append(
            DeviceWrite(self.boot, index, lba, len(data) // SECTOR, crypto.sha256(data).hex(), torn)
        )
        if torn:
            raise _Torn


@dataclass
class Replay:
    image: bytes
    anchors: list[Anchor]
    boots: list[int]  # the boot number each entry of ``inputs.boots`` got
    writes: list[DeviceWrite]
    report_data: list[bytes | None] = field(default_factory=list)  # per boot: what it asked the AMD-SP for


def _policy(p: dict[str, Any]) -> BootPolicy:
    return BootPolicy(
        config_digest=bytes.fromhex(p.get("config_digest", "00" * 32)),
        host_time_ns=p.get("host_time_ns", 0),
        debug_ceiling=DebugCeiling[p.get("debug_ceiling", "never").upper().replace("-", "_")],
        debug_enabled=p.get("debug_enabled", False),
        layout=Layout[p.get("layout", "aggregated").upper().replace("-", "_")],
        min_level=Level.parse(p.get("min_level", "trace")),
    )


def _attester(
    boot: dict[str, Any], report_data: list[bytes | None], reports: ReportMaker | None
) -> Callable[[bytes], Evidence]:
    """The boot's report request (README.md §3.1, attestation): answered with the vector's
    report and certificates, whose REPORT_DATA must be what the writer asked for."""

    def ask(rd: bytes) -> Evidence:
        report_data[-1] = rd
        att = boot["attestation"]
        if "report" not in att:  # a request, in a vector being made
            if reports is None:
                raise ValueError("the boot's attestation has no report")
            att = boot["attestation"] = reports(att, rd)
        ev = evidence_input(att)
        if len(ev.report) != SNP_REPORT_LEN or report_data_of(ev.report) != rd:
            raise ValueError(
                f"the writer asked for a report of REPORT_DATA {_h(rd)}; the vector's report is of another"
            )
        return ev

    return ask


def replay_writer_vector(
    vec: dict[str, Any], *, record_envelopes: bool = False, reports: ReportMaker | None = None
) -> Replay:
    """Execute a writer vector's operations (formats/vectors/README.md §3). ``reports``
    (record mode) answers the report requests of attested boots that have no report yet."""
    inp = vec["inputs"]
    dev = VectorDevice(inp["sector_count"])
    streams = [StreamSpec(s["stream"], s["name"], s["sectors"]) for s in inp["streams"]]
    book = EnvelopeBook(inp.setdefault("envelopes", {}), record=record_envelopes)
    anchors: list[Anchor] = []
    numbers: list[int] = []
    report_data: list[bytes | None] = []
    for i, boot in enumerate(inp["boots"]):
        report_data.append(None)
        randoms = ([bytes.fromhex(inp["volume_id"])] if i == 0 else []) + [bytes.fromhex(boot["boot_secret"])]
        clock = {"t": 0}
        owners = boot.get("owners", inp["owners"])
        dev.start_boot(boot.get("tear"))
        ops = boot["ops"]
        try:
            w = LogWriter(
                dev,
                streams,
                [vector_key(n).public for n in owners],
                policy=_policy(boot.get("policy", {})),
                stream_grants={
                    int(s): [vector_key(n).public for n in names]
                    for s, names in boot.get("grants_at_boot", {}).items()
                },
                rng=_popper(randoms),
                sealer=book,
                clock=_reader(clock),
                attester=_attester(boot, report_data, reports) if "attestation" in boot else None,
            )
        except _Torn:
            if ops:
                raise ValueError("a boot torn at its start has no ops") from None
            numbers.append(_torn_boot_number(dev))
            continue
        numbers.append(w.boot)
        for n, op in enumerate(ops):
            try:
                _run_op(w, op, clock, anchors)
            except _Torn:
                if n != len(ops) - 1:
                    raise ValueError("the op whose write tears must be the boot's last") from None
        if boot.get("tear") is not None and not any(x.torn for x in dev.writes if x.boot == dev.boot):
            raise ValueError(f"boot {i + 1}: the tear names a write the boot never made")
    if record_envelopes:  # drop envelopes an earlier format or vector needed and this one does not
        inp["envelopes"] = {k: v for k, v in book.book.items() if k in book.used}
    return Replay(dev.inner.image(), anchors, numbers, dev.writes, report_data)


def _torn_boot_number(dev: VectorDevice) -> int:
    """The boot number a boot torn in its first write claimed (its header is in place)."""
    w = dev.writes[-1]
    return decode_frame_header(dev.read(w.lba, 1)).boot


def _run_op(w: LogWriter, op: dict[str, Any], clock: dict[str, int], anchors: list[Anchor]) -> None:
    kind = op["op"]
    if kind == "append":
        r = _record(op["record"])
        clock["t"] = r.t_ns
        w.append(op["stream"], r)
    elif kind == "flush":
        w.flush(op.get("stream"))
    elif kind == "grant":
        clock["t"] = op["t_ns"]
        w.grant(op["stream"], vector_key(op["recipient"]).public)
    elif kind == "close":
        w.close()
    elif kind == "anchor":
        anchors.append(w.anchor())
    else:
        raise ValueError(f"unknown op {kind!r}")


def run_writer_vector(vec: dict[str, Any], *, record_envelopes: bool = False) -> tuple[bytes, list[Anchor]]:
    """Execute a writer vector's operations; returns the image and the anchors taken."""
    r = replay_writer_vector(vec, record_envelopes=record_envelopes)
    return r.image, r.anchors


# ---------------------------------------------------------------- frames of an image


@dataclass(frozen=True)
class FrameAt:
    region: RegionEntry
    lba: int
    sectors: int
    boot: int
    seq: int
    type: int


def frames_of(image: bytes) -> list[FrameAt]:
    """Every complete frame, keyless (what the host sees), in region and disk order."""
    dev = MemoryDevice(len(image) // SECTOR, image)
    vol = read_volume(dev.read(0, 1), dev.sector_count)
    out = []
    for r in vol.superblock.regions:
        for c in scan_region(dev.read, r):
            if isinstance(c, Candidate) and c.digest_ok():
                c.accepted = True
                h = c.header
                out.append(FrameAt(r, c.lba, h.sectors, h.boot, h.seq, h.type))
    return out


def find(image: bytes, stream: str, boot: int, seq: int) -> FrameAt:
    for f in frames_of(image):
        if (f.region.name, f.boot, f.seq) == (stream, boot, seq):
            return f
    raise LookupError(f"no frame {stream} boot {boot} seq {seq}")


def verify_image(
    image: bytes, key_names: list[str], anchor: Anchor | None = None, verify: dict[str, Any] | None = None
) -> tuple[str, set[str]]:
    dev = MemoryDevice(len(image) // SECTOR, image)
    v = Verifier(
        dev.read, dev.sector_count, Keyring([vector_key(n) for n in key_names]), origin=origin_policy(verify)
    )
    rep = v.run(anchor)
    return rep.verdict, {f.kind.value for f in rep.findings}


# ---------------------------------------------------------------- the vectors


def rec(t: int, level: str, service: str, component: str, message: str, **kw: Any) -> dict[str, Any]:
    return {"t_ns": t, "level": level, "service": service, "component": component, "message": message, **kw}


def _boot_ops_basic() -> list[dict[str, Any]]:
    return [
        {
            "op": "append",
            "stream": 1,
            "record": rec(
                1_000, "info", "boot", "svsm", "COCONUT Secure Virtual Machine Service Module Version 0.1"
            ),
        },
        {
            "op": "append",
            "stream": 1,
            "record": rec(
                2_500_000,
                "debug",
                "core",
                "cpu-3",
                "CPU 3 is online",
                target="svsm::cpu::smp",
                fields=[["apic_id", "3"]],
            ),
        },
        {"op": "flush"},
        {
            "op": "append",
            "stream": 1,
            "record": rec(9_000_000, "info", "attest", "attest", "attestation successful"),
        },
        {"op": "close"},
    ]


def writer_vectors() -> list[dict[str, Any]]:
    one = [{"stream": 1, "name": "all", "sectors": 64}]
    two = [{"stream": 1, "name": "core", "sectors": 48}, {"stream": 2, "name": "vtpm", "sectors": 48}]
    big = "VTPM: NV state dump " + "0123456789abcdef" * 90  # a multi-sector frame
    return [
        {
            "name": "basic-x25519",
            "description": "one boot, one aggregated stream, two flushes and a clean shutdown",
            "inputs": {
                "sector_count": 192,
                "volume_id": "11" * 16,
                "owners": ["owner"],
                "streams": one,
                "boots": [{"boot_secret": "22" * 32, "ops": _boot_ops_basic()}],
            },
            "expect": {"verdict": "intact", "kinds": []},
        },
        {
            "name": "hybrid-mlkem768-x25519",
            "description": "as basic-x25519, the owner holding an MLKEM768-X25519 key",
            "inputs": {
                "sector_count": 192,
                "volume_id": "33" * 16,
                "owners": ["owner-pq"],
                "streams": one,
                "boots": [{"boot_secret": "44" * 32, "ops": _boot_ops_basic()}],
            },
            "expect": {"verdict": "intact", "kinds": [], "key": ["owner-pq"]},
        },
        {
            "name": "multiboot-perservice",
            "description": "two streams, boot 1 shuts down cleanly, boot 2 stops after a multi-sector flush",
            "inputs": {
                "sector_count": 192,
                "volume_id": "55" * 16,
                "owners": ["owner"],
                "streams": two,
                "boots": [
                    {
                        "boot_secret": "66" * 32,
                        "policy": {"layout": "per-service", "host_time_ns": 1764150000_000000000},
                        "ops": [
                            {
                                "op": "append",
                                "stream": 1,
                                "record": rec(1_000, "info", "core", "svsm", "SVSM starting"),
                            },
                            {
                                "op": "append",
                                "stream": 2,
                                "record": rec(
                                    2_000, "info", "vtpm", "vtpm", "VTPM: manufacturing new NV state"
                                ),
                            },
                            {"op": "flush"},
                            {
                                "op": "append",
                                "stream": 1,
                                "record": rec(3_000, "info", "core", "cpu-1", "CPU 1 is online"),
                            },
                            {"op": "flush"},
                            {
                                "op": "append",
                                "stream": 1,
                                "record": rec(4_000, "info", "core", "svsm", "shutting down"),
                            },
                            {"op": "close"},
                        ],
                    },
                    {
                        "boot_secret": "77" * 32,
                        "policy": {"layout": "per-service", "host_time_ns": 1764153600_000000000},
                        "ops": [
                            {
                                "op": "append",
                                "stream": 2,
                                "record": rec(
                                    5_000,
                                    "info",
                                    "vtpm",
                                    "vtpm",
                                    "VTPM: loaded existing NV state from persistent storage",
                                ),
                            },
                            {"op": "flush"},
                            {
                                "op": "append",
                                "stream": 1,
                                "record": rec(6_000, "warn", "core", "svsm", "low on memory"),
                            },
                            {"op": "flush"},
                            {"op": "append", "stream": 2, "record": rec(7_000, "debug", "vtpm", "vtpm", big)},
                            {"op": "flush", "stream": 2},
                            {"op": "anchor"},
                        ],
                    },
                ],
            },
            "expect": {"verdict": "intact", "kinds": ["no_shutdown"]},
        },
        {
            "name": "debug-grant",
            "description": "a debug recipient is granted the vtpm stream mid-boot; "
            "read with the debug key it "
            "sees vtpm from the grant on and nothing of core",
            "inputs": {
                "sector_count": 192,
                "volume_id": "88" * 16,
                "owners": ["owner"],
                "streams": two,
                "boots": [
                    {
                        "boot_secret": "99" * 32,
                        "policy": {"debug_ceiling": "debug-only", "layout": "per-service"},
                        "ops": [
                            {
                                "op": "append",
                                "stream": 2,
                                "record": rec(1_000, "info", "vtpm", "vtpm", "before the grant: owner only"),
                            },
                            {"op": "grant", "stream": 2, "recipient": "debug", "t_ns": 2_000},
                            {
                                "op": "append",
                                "stream": 2,
                                "record": rec(3_000, "info", "vtpm", "vtpm", "after the grant"),
                            },
                            {
                                "op": "append",
                                "stream": 1,
                                "record": rec(3_500, "info", "core", "svsm", "core is never granted"),
                            },
                            {"op": "close"},
                        ],
                    }
                ],
            },
            "expect": {"verdict": "intact", "kinds": []},
            "also": [
                {"key": ["debug"], "verdict": "partial", "kinds": ["no_key"], "records": ["after the grant"]}
            ],
        },
        {
            "name": "wraparound",
            "description": "a 16-sector region wraps within boot 2: a KEYS frame re-keys the region start",
            "inputs": {
                "sector_count": 96,
                "volume_id": "aa" * 16,
                "owners": ["owner"],
                "streams": [{"stream": 1, "name": "all", "sectors": 16}],
                "boots": [
                    {
                        "boot_secret": "bb" * 32,
                        "ops": [
                            *(
                                {
                                    "op": "append",
                                    "stream": 1,
                                    "record": rec(
                                        i * 1000, "info", "core", "svsm", f"boot 1 line {i} " + "." * 600
                                    ),
                                }
                                for i in range(4)
                            ),
                            {"op": "flush"},
                            {"op": "close"},
                        ],
                    },
                    {
                        "boot_secret": "cc" * 32,
                        "ops": [
                            x
                            for i in range(5)
                            for x in (
                                {
                                    "op": "append",
                                    "stream": 1,
                                    "record": rec(
                                        i * 1000, "info", "core", "svsm", f"boot 2 line {i} " + "," * 900
                                    ),
                                },
                                {"op": "flush"},
                            )
                        ]
                        + [{"op": "close"}],
                    },
                ],
            },
            "expect": {"verdict": "intact", "kinds": ["rotated_out"]},
        },
        *more_writer_vectors(),
        *attested_writer_vectors(),
    ]


def _line(
    t: int, msg: str, stream: int = 1, level: str = "info", service: str = "core", **kw: Any
) -> dict[str, Any]:
    component = "vtpm" if service == "vtpm" else "svsm"
    return {"op": "append", "stream": stream, "record": rec(t, level, service, component, msg, **kw)}


def _filled(n: int, size: int, t0: int, stream: int = 1, service: str = "core") -> list[dict[str, Any]]:
    """n records of about ``size`` bytes, each flushed on its own (one frame each)."""
    out: list[dict[str, Any]] = []
    for i in range(n):
        t = t0 + i * 1000
        out += [
            _line(t, f"line {t} " + "." * size, stream, service=service),
            {"op": "flush", "stream": stream},
        ]
    return out


ONE = [{"stream": 1, "name": "all", "sectors": 64}]
TWO = [{"stream": 1, "name": "core", "sectors": 48}, {"stream": 2, "name": "vtpm", "sectors": 48}]
RING = [{"stream": 1, "name": "all", "sectors": 16}]


def more_writer_vectors() -> list[dict[str, Any]]:
    """The vectors of issue "The spec as a contract", point 2."""
    return [
        {
            "name": "two-owners",
            "description": "two owner recipients (X25519 and MLKEM768-X25519): every key frame carries both "
            "BOOT_SECRET envelopes, and either key reads everything; an anchor after the clean shutdown",
            "inputs": {
                "sector_count": 192,
                "volume_id": "c0" * 16,
                "owners": ["owner", "owner-pq"],
                "streams": ONE,
                "boots": [{"boot_secret": "c1" * 32, "ops": [*_boot_ops_basic(), {"op": "anchor"}]}],
            },
            "expect": {"verdict": "intact", "kinds": [], "key": ["owner"]},
            "also": [
                {"key": ["owner-pq"], "verdict": "intact", "kinds": []},
                {"key": ["owner", "owner-pq"], "verdict": "intact", "kinds": []},
                {"key": ["debug"], "verdict": "unverifiable", "kinds": ["no_key"]},
            ],
        },
        {
            "name": "boot-frame-wraps",
            "description": "boot 1 leaves 2 sectors after its END frame; boot 2's 3-sector BOOT frame (two "
            "owners) does not fit, so it wraps to the region start by itself (no KEYS frame) with "
            "wrap_from 14 in its boot record, reclaiming boot 1's first frames",
            "inputs": {
                "sector_count": 96,
                "volume_id": "c2" * 16,
                "owners": ["owner", "owner-pq"],
                "streams": RING,
                "boots": [
                    {"boot_secret": "c3" * 32, "ops": [*_filled(10, 100, 1000), {"op": "close"}]},
                    {"boot_secret": "c4" * 32, "ops": [_line(500, "boot 2 is up"), {"op": "close"}]},
                ],
            },
            "expect": {"verdict": "intact", "kinds": ["rotated_out"]},
            "also": [{"key": ["owner-pq"], "verdict": "intact", "kinds": ["rotated_out"]}],
        },
        {
            "name": "stale-remnant",
            "description": "lap 1 fills the 16-sector region with 1-sector frames; lap 2 (2-sector frames) "
            "wraps at sector 15, so lap 1's frame at sector 15 stays in the dead zone [15, 16) while "
            "lap 3 starts",
            "inputs": {
                "sector_count": 96,
                "volume_id": "c5" * 16,
                "owners": ["owner"],
                "streams": RING,
                "boots": [
                    {
                        "boot_secret": "c6" * 32,
                        "ops": [*_filled(15, 100, 1000), *_filled(8, 600, 100_000), {"op": "close"}],
                    }
                ],
            },
            "expect": {
                "verdict": "intact",
                "kinds": ["rotated_out", "stale_remnant"],
                "at": [{"kind": "stale_remnant", "stream": "all", "boot": 1, "seq": 15}],
            },
        },
        {
            "name": "crash-while-wrapping",
            "description": "the write that wraps the ring (WRAP_REKEY KEYS frame + DATA frame at the region "
            "start) is torn by a crash that leaves its sectors zero: the region start holds no frame, "
            "which only a crash while wrapping explains, and that rests on unauthenticated bytes",
            "inputs": {
                "sector_count": 96,
                "volume_id": "c7" * 16,
                "owners": ["owner"],
                "streams": RING,
                "boots": [
                    {
                        "boot_secret": "c8" * 32,
                        # writes: 0 BOOT, 1 key-directory slot, 2..8 the seven DATA frames, 9 the wrap
                        "tear": {"write": 9, "keep_sectors": 0, "fill": "zero"},
                        "ops": _filled(8, 600, 1000),
                    }
                ],
            },
            "expect": {
                "verdict": "partial",
                "kinds": ["crash_tail", "unproven", "rotated_out", "no_shutdown"],
                "at": [
                    {"kind": "crash_tail", "stream": "all", "boot": 1, "seq": None},
                    {"kind": "unproven", "stream": "all", "boot": 1, "seq": 2},
                ],
            },
        },
        {
            "name": "wrap-then-close",
            "description": "stream vtpm (the second region) wraps within boot 1, takes two more frames and "
            "ends with its END frame; stream core holds only BOOT and END",
            "inputs": {
                "sector_count": 192,
                "volume_id": "c9" * 16,
                "owners": ["owner"],
                "streams": [
                    {"stream": 1, "name": "core", "sectors": 32},
                    {"stream": 2, "name": "vtpm", "sectors": 32},
                ],
                "boots": [
                    {
                        "boot_secret": "ca" * 32,
                        "ops": [*_filled(18, 600, 1000, 2, "vtpm"), {"op": "close"}],
                    }
                ],
            },
            "expect": {"verdict": "intact", "kinds": ["rotated_out"]},
        },
        {
            "name": "panic",
            "description": "the panic path: the vtpm panic record (level error, panic flag, fields) goes "
            "into "
            "vtpm's pending frame, vtpm is flushed first, then every other stream with pending "
            "records (core); then the boot stops: no END frame",
            "inputs": {
                "sector_count": 192,
                "volume_id": "cb" * 16,
                "owners": ["owner"],
                "streams": TWO,
                "boots": [
                    {
                        "boot_secret": "cc" * 32,
                        "policy": {"layout": "per-service"},
                        "ops": [
                            _line(1_000, "SVSM starting"),
                            _line(2_000, "VTPM: manufacturing new NV state", 2, service="vtpm"),
                            {"op": "flush"},
                            _line(3_000, "CPU 1 is online"),
                            _line(
                                4_000,
                                "panicked at kernel/src/vtpm/mod.rs:120:9: NV index out of range",
                                2,
                                "error",
                                "vtpm",
                                fields=[["location", "kernel/src/vtpm/mod.rs:120:9"], ["cpu", "0"]],
                                panic=True,
                            ),
                            {"op": "flush", "stream": 2, "note": "panic path: the panic's stream first"},
                            {
                                "op": "flush",
                                "stream": 1,
                                "note": "then every other stream with pending records",
                            },
                        ],
                    }
                ],
            },
            "expect": {
                "verdict": "intact",
                "kinds": ["no_shutdown"],
                "records": [
                    "SVSM starting",
                    "VTPM: manufacturing new NV state",
                    "CPU 1 is online",
                    "panicked at kernel/src/vtpm/mod.rs:120:9: NV index out of range",
                ],
            },
        },
        {
            "name": "error-flush",
            "description": "an error record is durable before the logging call returns: its stream (vtpm) is "
            "flushed at once, then every other stream with pending records (core, holding an earlier "
            "debug line), so vtpm's frame is written before core's",
            "inputs": {
                "sector_count": 192,
                "volume_id": "cd" * 16,
                "owners": ["owner"],
                "streams": TWO,
                "boots": [
                    {
                        "boot_secret": "ce" * 32,
                        "policy": {"layout": "per-service"},
                        "ops": [
                            _line(1_000, "memory map: 4 regions", level="debug"),
                            _line(2_000, "VTPM: NV write failed: -5", 2, "error", "vtpm"),
                            {"op": "flush", "stream": 2, "note": "error record: its stream first"},
                            {
                                "op": "flush",
                                "stream": 1,
                                "note": "then every other stream with pending records",
                            },
                            _line(3_000, "continuing without a persistent vTPM", level="warn"),
                            {"op": "close"},
                        ],
                    }
                ],
            },
            "expect": {"verdict": "intact", "kinds": []},
        },
        {
            "name": "torn-boot-start",
            "description": "boot 2 crashes in its second write (vtpm's BOOT frame; only its first sector "
            "lands); the next boot is boot 3, not 2 again: the torn header claimed 2 (boot numbers are "
            "never reused). Boot 3's BOOT frame then overwrites the torn one",
            "inputs": {
                "sector_count": 192,
                "volume_id": "cf" * 16,
                "owners": ["owner", "owner-pq"],
                "streams": TWO,
                "boots": [
                    {
                        "boot_secret": "d0" * 32,
                        "ops": [_line(1_000, "boot 1"), _line(2_000, "boot 1", 2), {"op": "close"}],
                    },
                    {"boot_secret": "d1" * 32, "tear": {"write": 1, "keep_sectors": 1}, "ops": []},
                    {
                        "boot_secret": "d2" * 32,
                        "ops": [_line(1_000, "boot 3"), _line(2_000, "boot 3", 2), {"op": "close"}],
                    },
                ],
            },
            "expect": {"verdict": "intact", "kinds": ["no_shutdown"]},
            "also": [{"key": ["owner-pq"], "verdict": "intact", "kinds": ["no_shutdown"]}],
        },
        {
            "name": "torn-keydir-slot",
            "description": "boot 2 crashes in its third write, its key-directory slot (only the slot's first "
            "sector lands): a crash at boot start. Boot 3 is numbered 3 and uses slot 3; slot 2 keeps "
            "the torn header",
            "inputs": {
                "sector_count": 192,
                "volume_id": "d3" * 16,
                "owners": ["owner", "owner-pq"],
                "streams": TWO,
                "boots": [
                    {
                        "boot_secret": "d4" * 32,
                        "ops": [_line(1_000, "boot 1"), _line(2_000, "boot 1", 2), {"op": "close"}],
                    },
                    {"boot_secret": "d5" * 32, "tear": {"write": 2, "keep_sectors": 1}, "ops": []},
                    {
                        "boot_secret": "d6" * 32,
                        "ops": [_line(1_000, "boot 3"), _line(2_000, "boot 3", 2), {"op": "close"}],
                    },
                ],
            },
            "expect": {
                "verdict": "intact",
                "kinds": ["crash_tail", "no_shutdown"],
                "at": [{"kind": "crash_tail", "stream": "keydir", "boot": 2, "seq": 0}],
            },
        },
        {
            "name": "owner-change",
            "description": "boot 1 is sealed to owner, boot 2 to another owner (owner-2): each key reads its "
            "own boot and finds the other's frames present but unreadable",
            "inputs": {
                "sector_count": 256,
                "volume_id": "d7" * 16,
                "owners": ["owner"],
                "streams": [{"stream": 1, "name": "all", "sectors": 128}],
                "boots": [
                    {"boot_secret": "d8" * 32, "ops": [*_filled(2, 50, 1000), {"op": "close"}]},
                    {
                        "boot_secret": "d9" * 32,
                        "owners": ["owner-2"],
                        "ops": [*_filled(2, 50, 1000), {"op": "close"}],
                    },
                ],
            },
            "expect": {"verdict": "partial", "kinds": ["no_key"], "key": ["owner"]},
            "also": [
                {"key": ["owner-2"], "verdict": "partial", "kinds": ["no_key"]},
                {"key": ["owner", "owner-2"], "verdict": "intact", "kinds": []},
            ],
        },
        {
            "name": "three-boots",
            "description": "three boots in one 256-sector aggregated region, each two flushes and a clean "
            "shutdown",
            "inputs": {
                "sector_count": 384,
                "volume_id": "da" * 16,
                "owners": ["owner"],
                "streams": [{"stream": 1, "name": "all", "sectors": 256}],
                "boots": [
                    {"boot_secret": f"{0xDB + b:02x}" * 32, "ops": [*_filled(2, 80, 1000), {"op": "close"}]}
                    for b in range(3)
                ],
            },
            "expect": {"verdict": "intact", "kinds": []},
        },
        {
            "name": "boot-start-only",
            "description": "boot 2 starts (BOOT frame, key-directory slot) and writes nothing else",
            "inputs": {
                "sector_count": 192,
                "volume_id": "de" * 16,
                "owners": ["owner"],
                "streams": ONE,
                "boots": [
                    {"boot_secret": "df" * 32, "ops": _boot_ops_basic()},
                    {"boot_secret": "e0" * 32, "ops": []},
                ],
            },
            "expect": {"verdict": "intact", "kinds": ["no_shutdown"]},
        },
    ]


def _attest(policy: int = SNP_POLICY, *, decoy_ask: bool = False) -> dict[str, Any]:
    """A boot's report request, as written in the definitions below: generation replaces it
    with the TEST-ONLY AMD-SP's answer, ``{report, certs}`` (README.md §3.1). ``decoy_ask``:
    the host answers the extended request with a decoy ASK (the TEST-ONLY ASK's key under an
    ARK of the host's making) and the TEST-ONLY ASK ahead of the VCEK."""
    request: dict[str, Any] = {"measurement": _h(MEASUREMENT), "policy": policy}
    return {**request, "decoy_ask": True} if decoy_ask else request


def attested_writer_vectors() -> list[dict[str, Any]]:
    """Attested boots (spec §6.6, §8.9): each boot's SEV-SNP report, from the TEST-ONLY AMD-SP,
    in the clear sections of its key frames, verified against the TEST-ONLY chain."""
    per_service = {"layout": "per-service"}
    return [
        {
            "name": "attested-boot",
            "description": "one attested boot, two streams: every BOOT frame and the key-directory slot "
            "carry the SNP_REPORT item (the report, then both regions' launch-grant digests) and an "
            "SNP_CERT item (the TEST-ONLY VCEK); verified against the TEST-ONLY ASK and ARK with the "
            "launch measurement expected: origin proven. Without a measurement to expect it is still "
            "proven (MEASUREMENT is reported, not judged); against AMD's own ARKs (no trust_roots) the "
            "chain does not verify",
            "inputs": {
                "sector_count": 192,
                "volume_id": "e1" * 16,
                "owners": ["owner"],
                "streams": TWO,
                "boots": [
                    {
                        "boot_secret": "e2" * 32,
                        "policy": per_service,
                        "attestation": _attest(),
                        "ops": [
                            _line(1_000, "SVSM starting"),
                            _line(2_000, "VTPM: manufacturing new NV state", 2, service="vtpm"),
                            {"op": "flush"},
                            _line(3_000, "log attested: the SNP report binds this boot's keys"),
                            {"op": "close"},
                        ],
                    }
                ],
            },
            "verify": owner_verify(),
            "expect": {"verdict": "intact", "kinds": [], "attested": [1]},
            "also": [
                {"verify": owner_verify([]), "verdict": "intact", "kinds": [], "attested": [1]},
                {"verify": {}, "verdict": "violated", "kinds": ["attestation_invalid"], "attested": []},
            ],
        },
        {
            "name": "attested-decoy-ask",
            "description": "one attested boot whose report request the host answered with three "
            "certificates, the SVSM storing them as given: a decoy ASK (the TEST-ONLY ASK's public key "
            "and name under an ARK of the host's making), the TEST-ONLY ASK, then the VCEK. The decoy "
            "verifies the VCEK as the ASK does and reaches no trusted root; verified against the TEST-ONLY "
            "ARK alone (the intermediates come from the evidence only), the chain through the TEST-ONLY "
            "ASK is found behind it: origin proven (spec §8.9, check 1). A reader that takes the first "
            "certificate that signs the VCEK calls this report invalid",
            "inputs": {
                "sector_count": 192,
                "volume_id": "e4" * 16,
                "owners": ["owner"],
                "streams": TWO,
                "boots": [
                    {
                        "boot_secret": "e5" * 32,
                        "policy": per_service,
                        "attestation": _attest(decoy_ask=True),
                        "ops": [
                            _line(1_000, "SVSM starting"),
                            _line(2_000, "VTPM: manufacturing new NV state", 2, service="vtpm"),
                            {"op": "close"},
                        ],
                    }
                ],
            },
            "verify": {**owner_verify(), "trust_roots": _platform().ark_pem.decode()},
            "expect": {"verdict": "intact", "kinds": [], "attested": [1]},
            "also": [{"verify": owner_verify(), "verdict": "intact", "kinds": [], "attested": [1]}],
        },
        {
            "name": "attested-perservice-grant",
            "description": "an attested boot with debug ceiling always: the debug recipient is granted "
            "vtpm at launch, so vtpm's BOOT frame carries its CHAIN_KEY envelope and the report commits "
            "to it (vtpm's launch-grant digest). The owner reads everything, origin proven; the debug "
            "key reads vtpm only (core is no_key: partial), and the origin of what it reads is proven "
            "too: its chain key came from a launch grant the report commits to",
            "inputs": {
                "sector_count": 192,
                "volume_id": "e3" * 16,
                "owners": ["owner"],
                "streams": TWO,
                "boots": [
                    {
                        "boot_secret": "e4" * 32,
                        "policy": {"debug_ceiling": "always", "debug_enabled": True, "layout": "per-service"},
                        "grants_at_boot": {"2": ["debug"]},
                        "attestation": _attest(),
                        "ops": [
                            _line(1_000, "SVSM starting"),
                            _line(2_000, "VTPM: manufacturing new NV state", 2, service="vtpm"),
                            {"op": "flush"},
                            _line(3_000, "core is never granted"),
                            _line(4_000, "VTPM: TPM2_Startup done", 2, service="vtpm"),
                            {"op": "close"},
                        ],
                    }
                ],
            },
            "verify": owner_verify(),
            "expect": {"verdict": "intact", "kinds": [], "attested": [1]},
            "also": [
                {
                    "key": ["debug"],
                    "verdict": "partial",
                    "kinds": ["no_key"],
                    "records": ["VTPM: manufacturing new NV state", "VTPM: TPM2_Startup done"],
                    "attested": [1],
                },
            ],
        },
        {
            "name": "attested-later-grant",
            "description": "as attested-perservice-grant, and the debug recipient is also granted core "
            "mid-boot (a DEBUG_GRANT KEYS frame): the report commits to the launch grant of vtpm, not "
            "to the later grant of core. Read with the debug key, the core records it reads come from "
            "a chain key the report does not vouch for (a host that forges such a grant frame, sealed "
            "to the debug key's public key, gives the same view), so boot 1's origin is not proven for "
            "that key; the owner's view is proven",
            "inputs": {
                "sector_count": 192,
                "volume_id": "ed" * 16,
                "owners": ["owner"],
                "streams": TWO,
                "boots": [
                    {
                        "boot_secret": "ee" * 32,
                        "policy": {"debug_ceiling": "always", "debug_enabled": True, "layout": "per-service"},
                        "grants_at_boot": {"2": ["debug"]},
                        "attestation": _attest(),
                        "ops": [
                            _line(1_000, "SVSM starting"),
                            _line(2_000, "VTPM: manufacturing new NV state", 2, service="vtpm"),
                            {"op": "flush"},
                            {"op": "grant", "stream": 1, "recipient": "debug", "t_ns": 2_500},
                            _line(3_000, "core after the later grant"),
                            {"op": "close"},
                        ],
                    }
                ],
            },
            "verify": owner_verify(),
            "expect": {
                "key": ["debug"],
                "verdict": "partial",
                "kinds": ["no_key"],
                "records": ["VTPM: manufacturing new NV state", "core after the later grant"],
                "attested": [],
            },
            "also": [{"verdict": "intact", "kinds": [], "attested": [1]}],
        },
        {
            "name": "attested-debug-policy",
            "description": "an attested boot whose report's guest policy has POLICY.DEBUG (bit 19) set: the "
            "host could read and change the VM's memory, boot secret included, so the report proves "
            "nothing of who wrote the boot (debug_policy, unproven)",
            "inputs": {
                "sector_count": 192,
                "volume_id": "e5" * 16,
                "owners": ["owner"],
                "streams": ONE,
                "boots": [
                    {
                        "boot_secret": "e6" * 32,
                        "attestation": _attest(SNP_POLICY_DEBUG),
                        "ops": _boot_ops_basic(),
                    }
                ],
            },
            "verify": owner_verify(),
            "expect": {"verdict": "partial", "kinds": ["debug_policy"], "attested": []},
        },
        {
            "name": "unattested-boot",
            "description": "three boots, boots 1 and 3 attested; for boot 2 the host refused the report "
            "request, and the writer wrote the boot unattested (no SNP_REPORT item): boot 2 is "
            "unattested (unproven: the host may as well have written it with the owner's public key)",
            "inputs": {
                "sector_count": 192,
                "volume_id": "e7" * 16,
                "owners": ["owner"],
                "streams": ONE,
                "boots": [
                    {
                        "boot_secret": f"{0xE8 + b:02x}" * 32,
                        **({"attestation": _attest()} if b != 1 else {}),
                        "ops": [
                            _line(1_000, f"boot {b + 1} starting"),
                            _line(2_000, "shutting down"),
                            {"op": "close"},
                        ],
                    }
                    for b in range(3)
                ],
            },
            "verify": owner_verify(),
            "expect": {"verdict": "partial", "kinds": ["unattested"], "attested": [1, 3]},
        },
        {
            "name": "attested-wraparound",
            "description": "two owners (X25519 and MLKEM768-X25519) and an attested boot in a 32-sector "
            "region: the owner envelopes and the evidence do not fit a 7-sector key-directory slot "
            "together, so the slot holds the envelopes only; the ring wraps, and the WRAP_REKEY KEYS "
            "frame that overwrites the BOOT frame carries the evidence: the only report left",
            "inputs": {
                "sector_count": 128,
                "volume_id": "eb" * 16,
                "owners": ["owner", "owner-pq"],
                "streams": [{"stream": 1, "name": "all", "sectors": 32}],
                "boots": [
                    {
                        "boot_secret": "ec" * 32,
                        "attestation": _attest(),
                        "ops": [*_filled(13, 600, 1000), {"op": "close"}],
                    }
                ],
            },
            "verify": owner_verify(),
            "expect": {"verdict": "intact", "kinds": ["rotated_out"], "attested": [1]},
            "also": [{"key": ["owner-pq"], "verdict": "intact", "kinds": ["rotated_out"], "attested": [1]}],
        },
    ]


Mutation = Callable[[bytearray, dict[str, Any]], None]


def _sector_range(f: FrameAt) -> slice:
    return slice(f.lba * SECTOR, (f.lba + f.sectors) * SECTOR)


def _flip(offset_in_frame: Callable[[FrameAt, bytes], int], stream: str, boot: int, seq: int) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        f = find(bytes(img), stream, boot, seq)
        off = f.lba * SECTOR + offset_in_frame(f, bytes(img))
        img[off] ^= 0x01
        ctx["offset"] = off

    return m


def _ct_offset(f: FrameAt, img: bytes) -> int:
    h = decode_frame_header(img[f.lba * SECTOR :])
    return FRAME_HEADER_LEN + h.clear_len + 3


def _zero(stream: str, boot: int, seq: int) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        f = find(bytes(img), stream, boot, seq)
        img[_sector_range(f)] = bytes(f.sectors * SECTOR)

    return m


def _tear_last_sector(stream: str, boot: int, seq: int) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        f = find(bytes(img), stream, boot, seq)
        last = (f.lba + f.sectors - 1) * SECTOR
        img[last : last + SECTOR] = bytes(SECTOR)

    return m


def _copy_to_free(stream: str, boot: int, seq: int, from_image: bytes | None = None) -> Mutation:
    """Put a frame (of this image, or another) in the free sectors at the region's end."""

    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        src = from_image if from_image is not None else bytes(img)
        f = find(src, stream, boot, seq)
        region_end = (f.region.start + f.region.sectors) if from_image is None else None
        dst_region = (
            next(x.region for x in frames_of(bytes(img)) if x.region.name == stream)
            if from_image is not None
            else f.region
        )
        end = region_end or dst_region.start + dst_region.sectors
        dst = end - f.sectors
        img[dst * SECTOR : end * SECTOR] = src[_sector_range(f)]

    return m


def _superblock_rename(img: bytearray, ctx: dict[str, Any]) -> None:
    off = 64 + 4  # first region entry's name
    img[off] = ord("x")


def _swap_regions_first_frames(img: bytearray, ctx: dict[str, Any]) -> None:
    a, b = find(bytes(img), "core", 1, 1), find(bytes(img), "vtpm", 1, 1)
    sa, sb = bytes(img[_sector_range(a)]), bytes(img[_sector_range(b)])
    img[_sector_range(a)], img[_sector_range(b)] = sb, sa


def reader_vectors(images: dict[str, bytes]) -> list[tuple[dict[str, Any], Mutation]]:
    base = "multiboot-perservice"
    basic = images["basic-x25519"]
    return [
        (
            {
                "name": "flip-ciphertext",
                "base": base,
                "mutation": "one bit of the ciphertext of core boot 1 seq 1 flipped",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_corrupt", "frame_missing", "no_shutdown"],
                    "at": [{"kind": "frame_corrupt", "stream": "core", "boot": 1, "seq": 1}],
                },
            },
            _flip(_ct_offset, "core", 1, 1),
        ),
        (
            {
                "name": "flip-header-seq",
                "base": base,
                "mutation": "one bit of the seq field of core boot 1 seq 2 flipped (seq 2 -> 3)",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_corrupt", "frame_missing", "no_shutdown"],
                    "at": [{"kind": "frame_corrupt", "stream": "core", "boot": 1, "seq": 3}],
                },
            },
            _flip(lambda f, i: 12, "core", 1, 2),
        ),
        (
            {
                "name": "flip-envelope",
                "base": base,
                "mutation": "one bit of the owner envelope in vtpm boot 2's BOOT frame flipped",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_corrupt", "frame_missing", "no_shutdown"],
                    "at": [{"kind": "frame_corrupt", "stream": "vtpm", "boot": 2, "seq": 0}],
                },
            },
            _flip(lambda f, i: FRAME_HEADER_LEN + 2 + 21 + 40, "vtpm", 2, 0),
        ),
        (
            {
                "name": "flip-digest",
                "base": base,
                "mutation": "one bit of the (unauthenticated) commit digest of core boot 1 seq 1 flipped: "
                "cannot matter, the frame still authenticates",
                "expect": {"verdict": "intact", "kinds": ["no_shutdown"]},
            },
            _flip(lambda f, i: FRAME_AAD_LEN + 5, "core", 1, 1),
        ),
        (
            {
                "name": "flip-padding",
                "base": base,
                "mutation": "one byte of padding after core boot 1 seq 1 changed: cannot matter",
                "expect": {"verdict": "intact", "kinds": ["no_shutdown"]},
            },
            _flip(lambda f, i: SECTOR - 1, "core", 1, 1),
        ),
        (
            {
                "name": "flip-keydir",
                "base": base,
                "mutation": "one bit of boot 2's key-directory slot flipped (its owner envelope); "
                "the BOOT frames still carry the envelopes",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_corrupt", "no_shutdown"],
                    "at": [{"kind": "frame_corrupt", "stream": "keydir", "boot": 2, "seq": 0}],
                },
            },
            _flip_keydir(2),
        ),
        (
            {
                "name": "drop-middle-frame",
                "base": base,
                "mutation": "core boot 1 seq 2 zeroed",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_missing", "no_shutdown"],
                    "at": [{"kind": "frame_missing", "stream": "core", "boot": 1, "seq": 2}],
                },
            },
            _zero("core", 1, 2),
        ),
        (
            {
                "name": "truncate-earlier-boot",
                "base": base,
                "mutation": "core boot 1's last frame (END, seq 3) zeroed after boot 2 started",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["boot_truncated", "no_shutdown"],
                    "at": [{"kind": "boot_truncated", "stream": "core", "boot": 1, "seq": 3}],
                },
            },
            _zero("core", 1, 3),
        ),
        (
            {
                "name": "torn-tail",
                "base": base,
                "mutation": "the last sector of vtpm boot 2's last (multi-sector) frame lost, "
                "as a crash tears it",
                "expect": {"verdict": "intact", "kinds": ["crash_tail", "no_shutdown"]},
            },
            _tear_last_sector("vtpm", 2, 2),
        ),
        (
            {
                "name": "moved-frame",
                "base": base,
                "mutation": "a copy of core boot 1 seq 1 placed in the free sectors "
                "at the end of the core region",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_moved", "no_shutdown"],
                    "at": [{"kind": "frame_moved", "stream": "core", "boot": 1, "seq": 1}],
                },
            },
            _copy_to_free("core", 1, 1),
        ),
        (
            {
                "name": "foreign-frame",
                "base": base,
                "mutation": "a frame of another volume (basic-x25519, all boot 1 seq 1) "
                "spliced into the core region",
                "expect": {"verdict": "violated", "kinds": ["frame_foreign", "no_shutdown"]},
            },
            _copy_to_free_from_other(basic),
        ),
        (
            {
                "name": "swap-streams",
                "base": base,
                "mutation": "core boot 1 seq 1 and vtpm boot 1 seq 1 swapped between regions",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_misplaced", "frame_missing", "no_shutdown"],
                },
            },
            _swap_regions_first_frames,
        ),
        (
            {
                "name": "superblock-renamed",
                "base": base,
                "mutation": "the first region's name changed in the superblock (still a valid superblock)",
                "expect": {"verdict": "violated", "kinds": ["superblock_mismatch", "no_shutdown"]},
            },
            _superblock_rename,
        ),
    ]


def _flip_keydir(boot: int) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        img[key_dir_slot(boot) * SECTOR + FRAME_HEADER_LEN + 2 + 23 + 40] ^= 0x01

    return m


def _copy_to_free_from_other(other: bytes) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        f = find(other, "all", 1, 1)
        core = next(x.region for x in frames_of(bytes(img)) if x.region.name == "core")
        end = core.start + core.sectors
        img[(end - f.sectors) * SECTOR : end * SECTOR] = other[_sector_range(f)]

    return m


# ---------------------------------------------------------------- mutations that need keys
#
# The host holds no key of ours, but a vector knows every boot secret: re-sealing a frame
# with its genuine frame keys is what a stolen key (or a writer bug) allows, and it is the
# only way to make authenticated bytes that a conforming reader must reject as such.


def frame_keys(
    secret: bytes, volume_id: bytes, boot: int, stream: int, seq: int
) -> tuple[bytes, bytes, bytes]:
    """(chain key, AEAD key, nonce) of frame ``seq`` of (boot, stream) (spec §6.4)."""
    ck = stream_root(secret, volume_id, boot, stream)
    for _ in range(seq):
        ck = step(ck)[0]
    _, key, nonce = step(ck)
    return ck, key, nonce


def _frame_bytes(img: bytearray, lba: int) -> tuple[FrameHeader, bytes, bytes]:
    """Header, clear section and ciphertext of the frame at ``lba``."""
    h = decode_frame_header(bytes(img[lba * SECTOR : lba * SECTOR + FRAME_HEADER_LEN]))
    raw = bytes(img[lba * SECTOR : lba * SECTOR + h.body_len])
    return h, raw[FRAME_HEADER_LEN : FRAME_HEADER_LEN + h.clear_len], raw[FRAME_HEADER_LEN + h.clear_len :]


def _reseal(
    stream: str,
    boot: int,
    seq: int,
    body: Callable[[bytes], bytes] = lambda pt: pt,
    *,
    prev_tag: bytes | None = None,
) -> Mutation:
    """Re-seal a frame in place with its genuine frame keys: new plaintext ``body(old)``,
    and ``prev_tag`` if given; header fields otherwise as they were."""

    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        f = find(bytes(img), stream, boot, seq)
        h, clear, ct = _frame_bytes(img, f.lba)
        _, key, nonce = frame_keys(ctx["secrets"][boot], h.volume_id, boot, h.stream, seq)
        old = crypto.aead_open(
            key, nonce, ct, bytes(img[f.lba * SECTOR : f.lba * SECTOR + FRAME_AAD_LEN]) + clear
        )
        assert old is not None
        frame, _ = seal_frame(
            ftype=h.type,
            stream=h.stream,
            boot=boot,
            seq=seq,
            lba=h.lba,
            volume_id=h.volume_id,
            prev_tag=h.prev_tag if prev_tag is None else prev_tag,
            clear=clear,
            plaintext=body(old),
            key=key,
            nonce=nonce,
        )
        assert len(frame) <= f.sectors * SECTOR
        img[_sector_range(f)] = frame + bytes(f.sectors * SECTOR - len(frame))

    return m


def _no_prior(pt: bytes) -> bytes:
    b = decode_boot_body(pt)
    return encode_boot_body(b._replace(prior=None))


def _zero_slot(boot: int) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        lba = key_dir_slot(boot)
        img[lba * SECTOR : (lba + KEY_DIR_SLOT_SECTORS) * SECTOR] = bytes(KEY_DIR_SLOT_SECTORS * SECTOR)

    return m


def _zero_region(stream: str) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        r = _region(img, stream)
        img[r.start * SECTOR : (r.start + r.sectors) * SECTOR] = bytes(r.sectors * SECTOR)

    return m


def _region(img: bytearray | bytes, stream: str) -> RegionEntry:
    vol = read_volume(bytes(img[:SECTOR]), len(img) // SECTOR)
    return next(r for r in vol.superblock.regions if r.name == stream)


def _zero_lap_before_end(stream: str, boot: int) -> Mutation:
    """Zero the region from its start up to (not including) the boot's END frame."""

    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        end = max(
            (f for f in frames_of(bytes(img)) if f.region.name == stream and f.boot == boot),
            key=lambda f: f.seq,
        )
        assert end.type == FrameType.END
        img[end.region.start * SECTOR : end.lba * SECTOR] = bytes((end.lba - end.region.start) * SECTOR)
        ctx["at"] = {"from_lba": end.region.start, "to_lba": end.lba}

    return m


def _both(*ms: Mutation) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        for x in ms:
            x(img, ctx)

    return m


def _duplicate_unreadable(stream: str, boot: int, seq: int) -> Mutation:
    """Copy a frame to the region's last sectors with its header's ``lba`` set to the new place
    and its commit digest recomputed: both are in reach of anyone (no key needed); only the
    tag, which covers ``lba``, tells a reader holding the frame's key."""

    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        f = find(bytes(img), stream, boot, seq)
        h, clear, ct = _frame_bytes(img, f.lba)
        dst = f.region.start + f.region.sectors - f.sectors
        moved = h._replace(lba=dst)
        aad = encode_frame_header(moved)[:FRAME_AAD_LEN]
        data = aad + commit_digest(aad, clear, ct) + clear + ct
        img[dst * SECTOR : (dst + f.sectors) * SECTOR] = data + bytes(f.sectors * SECTOR - len(data))

    return m


FLOOD_SECRETS = 5  # one more than the 4 boot secrets a reader uses per boot (spec §8.2)


def _secret_flood(stream: str, boot: int, at_rel: int) -> Mutation:
    """A KEYS frame of ``boot`` (seq 1000) at relative sector ``at_rel``, its clear section
    ``FLOOD_SECRETS`` BOOT_SECRET envelopes for owner, each of another host-chosen secret:
    with the genuine one, more boot secrets open for the boot than any writer seals."""

    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        r = _region(img, stream)
        vid = bytes(img[16:32])
        owner = vector_key("owner").public
        info = envelope_info(EnvelopeKind.BOOT_SECRET, vid, boot, 0, 0)
        book: dict[str, str] = ctx["forgery"]["envelopes"]
        envs = []
        for secret in ctx["forgery"]["boot_secrets"]:
            if secret not in book:  # HPKE output is random: recorded once, then an input
                if not ctx.get("record"):
                    raise KeyError(f"forgery has no envelope for {secret}")
                book[secret] = _h(crypto.hpke_seal(owner, bytes.fromhex(secret), info))
            sealed = bytes.fromhex(book[secret])
            envs.append(Envelope(EnvelopeKind.BOOT_SECRET, owner.kem_id, owner.key_id, sealed))
        clear = encode_clear_section(envs)
        ct = (crypto.sha256(b"ct") * 3)[: KEYS_BODY_LEN + TAG_LEN]  # opens under no key
        lba = r.start + at_rel
        h = FrameHeader(
            FrameType.KEYS, r.stream, boot, 1000, lba, vid, bytes(TAG_LEN), len(clear), len(ct), bytes(16)
        )
        aad = encode_frame_header(h)[:FRAME_AAD_LEN]
        data = aad + commit_digest(aad, clear, ct) + clear + ct
        n = -(-len(data) // SECTOR)
        img[lba * SECTOR : (lba + n) * SECTOR] = data + bytes(n * SECTOR - len(data))

    return m


def _forged_extension(stream: str, boot: int) -> Mutation:
    """The host seals a boot secret of its own for an existing boot to owner's public key
    (HPKE base mode is anonymous) and appends a KEYS frame after the boot's END, chained to
    the END frame's (public) tag, sealed under that secret's chain."""

    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        forgery = ctx["forgery"]
        secret = bytes.fromhex(forgery["boot_secret"])
        end = max(
            (f for f in frames_of(bytes(img)) if f.region.name == stream and f.boot == boot),
            key=lambda f: f.seq,
        )
        h, _, ct = _frame_bytes(img, end.lba)
        vid = h.volume_id
        owner = vector_key("owner").public
        info = envelope_info(EnvelopeKind.BOOT_SECRET, vid, boot, 0, 0)
        env = Envelope(EnvelopeKind.BOOT_SECRET, owner.kem_id, owner.key_id, ctx["book"](owner, secret, info))
        seq = end.seq + 1
        _, key, nonce = frame_keys(secret, vid, boot, h.stream, seq)
        body = encode_keys_body(KeysBody(KeysReason.DEBUG_GRANT, 0, 0, crypto.sha256(bytes(img[:SECTOR]))))
        lba = end.lba + end.sectors
        frame, _ = seal_frame(
            ftype=FrameType.KEYS,
            stream=h.stream,
            boot=boot,
            seq=seq,
            lba=lba,
            volume_id=vid,
            prev_tag=ct[-TAG_LEN:],
            clear=encode_clear_section([env]),
            plaintext=body,
            key=key,
            nonce=nonce,
        )
        img[lba * SECTOR : lba * SECTOR + len(frame)] = frame

    return m


def contract_reader_vectors() -> list[tuple[dict[str, Any], Mutation]]:
    """Reader vectors of issue "The spec as a contract", point 2."""
    multi = "multiboot-perservice"
    return [
        (
            {
                "name": "wrap-hole",
                "base": "wrap-then-close",
                "mutation": "vtpm (the second region) zeroed from its start up to, not including, boot 1's "
                "END "
                "frame: the newest lap's WRAP_REKEY KEYS frame and DATA frames are gone, the END frame "
                "and the previous lap's frames after it stay. Only a later boot's BOOT frame could "
                "follow an END and wrap, and that boot would have BOOT frames in core: there are none",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_missing"],
                    "at": [
                        {"kind": "frame_missing", "stream": "vtpm", "boot": 1, "seq": 16},
                        {"kind": "frame_missing", "stream": "vtpm", "boot": 1, "seq": 0},
                    ],
                },
            },
            _zero_lap_before_end("vtpm", 1),
        ),
        (
            {
                "name": "duplicate-unreadable-frame",
                "base": "owner-change",
                "mutation": "a copy of boot 2 seq 1 (sealed to owner-2) put in the last sectors of the "
                "region, "
                "its header's lba set to the new place and its commit digest recomputed (no key needed)",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_duplicated", "no_key"],
                    "key": ["owner"],
                    "at": [{"kind": "frame_duplicated", "stream": "all", "boot": 2, "seq": 1}],
                },
                "also": [
                    {
                        "key": ["owner-2"],
                        "verdict": "violated",
                        "kinds": ["frame_corrupt", "no_key"],
                        "at": [{"kind": "frame_corrupt", "stream": "all", "boot": 2, "seq": 1}],
                    }
                ],
            },
            _duplicate_unreadable("all", 2, 1),
        ),
        (
            {
                "name": "chain-broken",
                "base": "basic-x25519",
                "mutation": "boot 1's END frame (seq 2) re-sealed with its genuine frame keys (derived from "
                "the "
                "base vector's boot_secret) with prev_tag set to 16 zero bytes, body unchanged",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["chain_broken"],
                    "at": [{"kind": "chain_broken", "stream": "all", "boot": 1, "seq": 2}],
                },
            },
            _reseal("all", 1, 2, prev_tag=bytes(TAG_LEN)),
        ),
        (
            {
                "name": "boot-claim-mismatch",
                "base": "boot-start-only",
                "mutation": "boot 2's BOOT frame re-sealed with its genuine frame keys with prior_present = "
                "0 "
                "(prior_boot, prior_seq, prior_tag zero): boot 2 claims it found nothing, yet boot 1's "
                "frames precede it",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["boot_claim_mismatch", "no_shutdown"],
                    "at": [{"kind": "boot_claim_mismatch", "stream": "all", "boot": 2, "seq": 0}],
                },
            },
            _reseal("all", 2, 0, _no_prior),
        ),
        (
            {
                "name": "record-malformed",
                "base": "basic-x25519",
                "mutation": "boot 1's END frame (seq 2) re-sealed with its genuine frame keys over the "
                "1-byte "
                "plaintext 00 (name_count 0, then nothing: a record block cut short); header, prev_tag "
                "and clear section unchanged",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["record_malformed"],
                    "at": [{"kind": "record_malformed", "stream": "all", "boot": 1, "seq": 2}],
                },
            },
            _reseal("all", 1, 2, lambda pt: b"\x00"),
        ),
        (
            {
                "name": "envelope-flood",
                "base": "three-boots",
                "mutation": "a KEYS frame of boot 1, seq 1000, put at relative sector 128 of the region "
                "(correct lba, stream and volume id, prev_tag zero, commit digest right, ciphertext "
                'SHA-256("ct") repeated, cut to 65 bytes); its clear section holds '
                f"{FLOOD_SECRETS} BOOT_SECRET envelopes for owner, sealing forgery.boot_secrets in that "
                "order (HPKE info of boot 1). With the genuine secret that is more boot secrets opening "
                "for one boot than the 4 a reader uses",
                "forgery": {"boot_secrets": [f"{0xF1 + i:02x}" * 32 for i in range(FLOOD_SECRETS)]},
                "expect": {
                    "verdict": "violated",
                    "kinds": ["envelope_flood", "frame_corrupt"],
                    "at": [{"kind": "envelope_flood", "stream": "all", "boot": 1, "seq": None}],
                },
            },
            _secret_flood("all", 1, 128),
        ),
        (
            {
                "name": "keydir-slot-erased",
                "base": multi,
                "mutation": "boot 2's key-directory slot (LBA 8 + 2 x 7, 7 sectors) zeroed; every frame of "
                "boot 2 "
                "stays in the regions and still carries the envelopes",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_missing", "no_shutdown"],
                    "at": [{"kind": "frame_missing", "stream": "keydir", "boot": 2, "seq": 0}],
                },
            },
            _zero_slot(2),
        ),
        (
            {
                "name": "stream-erased",
                "base": multi,
                "mutation": "the whole vtpm region zeroed: both boots' frames of that stream are gone, core "
                "and "
                "the key directory stay",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_missing", "no_shutdown"],
                    "at": [
                        {"kind": "frame_missing", "stream": "vtpm", "boot": 1, "seq": 0},
                        {"kind": "frame_missing", "stream": "vtpm", "boot": 2, "seq": 0},
                    ],
                },
            },
            _zero_region("vtpm"),
        ),
        (
            {
                "name": "keyless-middle-boot",
                "base": "three-boots",
                "mutation": "boot 2's key-directory slot and its BOOT frame (seq 0) zeroed: no envelope of "
                "boot 2 "
                "is left, its DATA and END frames stay (unreadable), and boot 3's boot record names "
                "boot 2's END (seq 3) as the newest frame it found",
                # Boot 3's sealed record names boot 2 seq 3: boot 2 went past its start, so it
                # wrote its slot if its envelopes fitted one. Nothing of boot 2 we can read says
                # whether they did, so the slot's absence is unproven (spec §8.7), and boot 2's
                # frames are no_key: not intact, not a provable violation.
                "expect": {
                    "verdict": "partial",
                    "kinds": ["no_key", "unproven"],
                    "at": [{"kind": "unproven", "stream": "keydir", "boot": 2, "seq": 0}],
                },
            },
            _both(_zero_slot(2), _zero("all", 2, 0)),
        ),
        (
            {
                "name": "forged-extension",
                "base": "basic-x25519",
                "mutation": "the host seals a boot secret of its own (forgery.boot_secret) for boot 1 to "
                "owner's "
                "public key and appends, right after boot 1's END frame (seq 2), a KEYS frame (reason "
                "DEBUG_GRANT, t_ns 0) of boot 1 seq 3 chained to the END frame's tag and sealed under "
                "that secret's chain; its clear section is that one BOOT_SECRET envelope",
                "forgery": {"boot_secret": "42" * 32},
                "expect": {
                    "verdict": "violated",
                    "kinds": ["key_conflict", "frame_corrupt"],
                    "at": [
                        {"kind": "key_conflict", "stream": "all", "boot": 1, "seq": 3},
                        {"kind": "frame_corrupt", "stream": "all", "boot": 1, "seq": 3},
                    ],
                },
            },
            _forged_extension("all", 1),
        ),
        (
            {
                "name": "anchor-other-volume",
                "base": "basic-x25519",
                "mutation": "none; read with the anchor of writer vector two-owners (another volume)",
                "anchor_from": "two-owners",
                "expect": {"verdict": "violated", "kinds": ["anchor_mismatch"]},
            },
            lambda img, ctx: None,
        ),
    ]


# ---------------------------------------------------------------- forged and moved attestation
#
# A frame's clear section is AAD: changing a report in place breaks the frame's tag
# (frame_corrupt). What the host can do is write a boot of its own, as the SVSM's writer
# would: it holds the owner's PUBLIC key, picks its own boot secret, and puts in whatever
# evidence it has (a report it read from a clear section, or a doctored one).


def stolen_evidence(image: bytes, boot: int) -> Evidence:
    """The report and certificates of ``boot``'s first BOOT frame, as anyone reads them
    from its clear section (no key needed)."""
    f = next(f for f in frames_of(image) if f.boot == boot and f.type == FrameType.BOOT)
    _, clear, _ = _frame_bytes(bytearray(image), f.lba)
    items = decode_clear_section(clear)
    report = next(e.sealed for e in items if e.kind == EnvelopeKind.SNP_REPORT)
    return Evidence(
        report[:SNP_REPORT_LEN], tuple(e.sealed for e in items if e.kind == EnvelopeKind.SNP_CERT)
    )


def _host_boot(evidence: Callable[[bytes, Evidence], Evidence], stolen_from: bytes | None = None) -> Mutation:
    """The host starts the next boot on the volume with svsmlog's own writer: owner's public
    key, boot secret ``forgery.boot_secret``, HPKE outputs ``forgery.envelopes``, default boot
    policy, the clock at 0; it appends one record to the first stream and shuts down. Its
    report request is answered with ``evidence(report_data, boot 1's evidence)``, boot 1's
    evidence read from ``stolen_from`` (default: the image itself)."""

    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        stolen = stolen_evidence(stolen_from if stolen_from is not None else bytes(img), 1)
        dev = MemoryDevice(len(img) // SECTOR, bytes(img))
        vol = read_volume(bytes(img[:SECTOR]), len(img) // SECTOR)
        streams = [StreamSpec(r.stream, r.name, r.sectors) for r in vol.superblock.regions]
        w = LogWriter(
            dev,
            streams,
            [vector_key("owner").public],
            rng=_popper([bytes.fromhex(ctx["forgery"]["boot_secret"])]),
            sealer=ctx["book"],
            attester=lambda rd: evidence(rd, stolen),
        )
        w.append(streams[0].stream, Record(1_000, Level.INFO, "core", "svsm", "written by the host"))
        w.close()
        img[:] = dev.image()

    return m


def _with_report_data(rd: bytes, ev: Evidence) -> Evidence:
    """The report with its REPORT_DATA made the host boot's commitment: its signature no
    longer verifies."""
    return Evidence(ev.report[:0x50] + rd + ev.report[0x90:], ev.certs)


def attestation_reader_vectors(images: dict[str, bytes]) -> list[tuple[dict[str, Any], Mutation]]:
    """Reader vectors of attested boots: a finding of every origin kind (spec §8.9)."""
    verify = owner_verify()
    return [
        (
            {
                "name": "attestation-invalid",
                "base": "attested-boot",
                "mutation": "the host writes boot 2 itself (svsmlog's writer, owner's public key, its own "
                "boot secret forgery.boot_secret; one record, clean shutdown); for its report it takes boot "
                "1's report and VCEK certificate from boot 1's BOOT frame and sets the report's "
                "REPORT_DATA (bytes 0x50..0x8F) to boot 2's commitment, so the report commits to boot 2 "
                "but its signature does not verify",
                "forgery": {"boot_secret": "f7" * 32},
                "verify": verify,
                "expect": {"verdict": "violated", "kinds": ["attestation_invalid"], "attested": [1]},
            },
            _host_boot(_with_report_data),
        ),
        (
            {
                "name": "attestation-replayed",
                "base": "attested-boot",
                "mutation": "the host writes boot 2 itself (svsmlog's writer, owner's public key, its own "
                "boot secret forgery.boot_secret; one record, clean shutdown) and puts in boot 1's "
                "genuine report and VCEK certificate, read from boot 1's BOOT frame: a valid report whose "
                "REPORT_DATA is boot 1's commitment, not boot 2's",
                "forgery": {"boot_secret": "f8" * 32},
                "verify": verify,
                "expect": {"verdict": "violated", "kinds": ["attestation_misplaced"], "attested": [1]},
            },
            _host_boot(lambda rd, ev: ev),
        ),
        (
            {
                "name": "attestation-other-volume",
                "base": "basic-x25519",
                "mutation": "the host writes boot 2 of this (unattested) volume itself (svsmlog's writer, "
                "owner's public key, its own boot secret forgery.boot_secret; one record, clean shutdown) "
                "and puts in the genuine report and VCEK certificate of boot 1 of writer vector "
                "attested-boot, another volume: valid, but committed to that volume's boot",
                "forgery": {"boot_secret": "f9" * 32},
                "verify": verify,
                "expect": {"verdict": "violated", "kinds": ["attestation_misplaced"], "attested": []},
            },
            _host_boot(lambda rd, ev: ev, images["attested-boot"]),
        ),
        (
            {
                "name": "measurement-unexpected",
                "base": "attested-boot",
                "mutation": "none; verified expecting another launch measurement than the report's (the "
                "owner launched another SVSM build). Expecting both, it is one of them: intact",
                "verify": owner_verify([OTHER_MEASUREMENT]),
                "expect": {"verdict": "violated", "kinds": ["measurement_unexpected"], "attested": []},
                "also": [
                    {
                        "verify": owner_verify([OTHER_MEASUREMENT, MEASUREMENT]),
                        "verdict": "intact",
                        "kinds": [],
                        "attested": [1],
                    }
                ],
            },
            lambda img, ctx: None,
        ),
        (
            {
                "name": "attestation-required",
                "base": "unattested-boot",
                "mutation": "none; verified with require_attestation: boot 2, which carries no report, is "
                "a violation, not an unproven boot",
                "verify": owner_verify(require=True),
                "expect": {"verdict": "violated", "kinds": ["attestation_missing"], "attested": [1, 3]},
            },
            lambda img, ctx: None,
        ),
    ]


# ---------------------------------------------------------------- trace for implementers


def _body_json(ftype: int, pt: bytes) -> dict[str, Any] | None:
    if ftype == FrameType.BOOT:
        b = decode_boot_body(pt)
        p = b.prior
        return {
            "superblock_digest": _h(b.superblock_digest),
            "config_digest": _h(b.config_digest),
            "host_time_ns": b.host_time_ns,
            "debug_ceiling": b.debug_ceiling,
            "debug_enabled": int(b.debug_enabled),
            "layout": b.layout,
            "min_level": b.min_level,
            "prior": None if p is None else {"boot": p.boot, "seq": p.seq, "tag": _h(p.tag)},
            "wrap_from": b.wrap_from,
        }
    if ftype == FrameType.KEYS:
        k = decode_keys_body(pt)
        return {
            "reason": k.reason,
            "t_ns": k.t_ns,
            "wrap_from": k.wrap_from,
            "superblock_digest": _h(k.superblock_digest),
        }
    return None


def _attestation_trace(
    vec: dict[str, Any], regions: Sequence[RegionEntry], i: int, boot: int, r: Replay
) -> dict[str, Any]:
    """An attested boot's commitment (spec §6.6), from the vector's inputs alone: its
    owner section (its BOOT_SECRET envelopes), every region's launch-grant digest, the
    REPORT_DATA they give, and what the report says of the SVSM."""
    inp = vec["inputs"]
    b = inp["boots"][i]
    if "attestation" not in b:
        return {}
    vid = bytes.fromhex(inp["volume_id"])
    book = inp["envelopes"]

    def envelope(kind: EnvelopeKind, name: str, stream: int) -> Envelope:
        k = vector_key(name).public
        sealed = book[f"{_h(k.key_id)}:{_h(envelope_info(kind, vid, boot, stream, 0))}"]
        return Envelope(kind, k.kem_id, k.key_id, bytes.fromhex(sealed))

    owner_section = encode_clear_section(
        [envelope(EnvelopeKind.BOOT_SECRET, n, 0) for n in b.get("owners", inp["owners"])]
    )
    grants = b.get("grants_at_boot", {})
    digests = [
        launch_grant_digest(
            encode_clear_section(
                [envelope(EnvelopeKind.CHAIN_KEY, n, x.stream) for n in grants.get(str(x.stream), [])]
            )
        )
        for x in regions
    ]
    report_data = boot_report_data(vid, boot, owner_section, digests)
    if r.report_data[i] != report_data:
        raise ValueError(
            f"boot {boot}: the writer asked for REPORT_DATA {r.report_data[i]!r}, not {_h(report_data)}"
        )
    report = bytes.fromhex(b["attestation"]["report"])
    return {
        "attestation": {
            "owner_section_sha256": _h(crypto.sha256(owner_section)),
            "launch_grant_digests": [_h(d) for d in digests],
            "report_data": _h(report_data),
            "policy": int.from_bytes(report[0x08:0x10], "little"),
            "vmpl": int.from_bytes(report[0x30:0x34], "little"),
            "measurement": _h(report[0x90:0xC0]),
        }
    }


def trace(vec: dict[str, Any], r: Replay) -> dict[str, Any]:
    """Every intermediate value of the final image (README.md, "trace")."""
    inp = vec["inputs"]
    vid = bytes.fromhex(inp["volume_id"])
    secrets = {n: bytes.fromhex(b["boot_secret"]) for n, b in zip(r.boots, inp["boots"], strict=True)}
    vol = read_volume(r.image[:SECTOR], len(r.image) // SECTOR)
    boots = [
        {
            "boot": n,
            "boot_secret": _h(secret),
            "stream_roots": {
                str(s): _h(stream_root(secret, vid, n, s))
                for s in (*(x.stream for x in vol.superblock.regions), NO_STREAM)
            },
        }
        | _attestation_trace(vec, vol.superblock.regions, i, n, r)
        for i, (n, secret) in enumerate(secrets.items())
    ]
    frames = []
    dev = MemoryDevice(len(r.image) // SECTOR, r.image)
    for region in (KEY_DIRECTORY, *vol.superblock.regions):
        for c in scan_region(dev.read, region):
            if not isinstance(c, Candidate) or not c.digest_ok() or c.header.volume_id != vid:
                continue
            h = c.header
            if h.lba != c.lba or h.stream != region.stream or h.boot not in secrets:
                continue
            ck, key, nonce = frame_keys(secrets[h.boot], vid, h.boot, h.stream, h.seq)
            aad = c.raw[:FRAME_AAD_LEN] + c.clear
            pt = crypto.aead_open(key, nonce, c.ciphertext, aad)
            if pt is None:
                continue
            c.accepted = True
            entry: dict[str, Any] = {
                "stream_name": region.name,
                "stream": h.stream,
                "lba": c.lba,
                "sectors": h.sectors,
                "type": FrameType(h.type).name,
                "boot": h.boot,
                "seq": h.seq,
                "chain_key": _h(ck),
                "aead_key": _h(key),
                "nonce": _h(nonce),
                "header": _h(c.raw[:FRAME_HEADER_LEN]),
                "aad": _h(aad),
                "plaintext": _h(pt),
                "tag": _h(c.tag),
                "digest": _h(h.digest),
            }
            body = _body_json(h.type, pt)
            if body is not None:
                entry["body"] = body
            else:
                entry["record_count"] = len(decode_record_block(pt))
            frames.append(entry)
    return {
        "key_ids": {n: _h(vector_key(n).key_id) for n in KEY_SEEDS},
        "superblock": _h(r.image[:SECTOR]),
        "superblock_sha256": _h(crypto.sha256(r.image[:SECTOR])),
        "boots": boots,
        "writes": [
            {
                "boot": r.boots[w.boot - 1],
                "index": w.index,
                "lba": w.lba,
                "sectors": w.sectors,
                "sha256": w.sha256,
            }
            | ({"torn": True} if w.torn else {})
            for w in r.writes
        ],
        "frames": frames,
    }


# ---------------------------------------------------------------- generation and checking


def _anchor_json(anchors: list[Anchor]) -> list[Any]:
    return [json.loads(a.to_json()) for a in anchors]


def _keys_json() -> dict[str, Any]:
    return {
        n: {
            "kem_id": KEY_SEEDS[n][0],
            "private_seed": _h(KEY_SEEDS[n][1]),
            "public_raw": _h(vector_key(n).public.raw),
            "key_id": _h(vector_key(n).key_id),
        }
        for n in KEY_SEEDS
    }


def _old(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _write(out: Path, meta: dict[str, Any], image: bytes) -> None:
    meta["image"] = f"{meta['name']}.img"
    meta["image_sha256"] = crypto.sha256(image).hex()
    (out / meta["image"]).write_bytes(image)
    (out / f"{meta['name']}.json").write_text(json.dumps(meta, indent=1) + "\n")


def committed_vcek(out: Path) -> bytes | None:
    """The TEST-ONLY VCEK certificate the committed vectors use (its signature is random:
    regenerating keeps it), or None before there is one."""
    for path in sorted(out.glob("*.json")):
        for boot in _old(path).get("inputs", {}).get("boots", []):
            certs = boot.get("attestation", {}).get("certs", [])
            if certs:  # the VCEK comes last: certificates the host adds go ahead of it
                return bytes.fromhex(certs[-1])
    return None


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {}
    vecs: dict[str, dict[str, Any]] = {}
    secrets: dict[str, dict[int, bytes]] = {}
    reports = ReportMaker(committed_vcek(out))
    for vec in writer_vectors():
        path = out / f"{vec['name']}.json"
        # keep the recorded envelopes: they are inputs
        vec["inputs"]["envelopes"] = _old(path).get("inputs", {}).get("envelopes", {})
        # and a recorded decoy ASK (new RSA keys each time it is made)
        old_boots = _old(path).get("inputs", {}).get("boots", [])
        for boot, was in zip(vec["inputs"]["boots"], old_boots, strict=False):
            if boot.get("attestation", {}).get("decoy_ask") and "report" in was.get("attestation", {}):
                boot["attestation"] = was["attestation"]
        r = replay_writer_vector(vec, record_envelopes=True, reports=reports)
        vec["keys"] = _keys_json()
        vec["anchors"] = _anchor_json(r.anchors)
        vec["trace"] = trace(vec, r)
        check_labels(vec, r.image)
        _write(out, vec, r.image)
        images[vec["name"]], vecs[vec["name"]] = r.image, vec
        secrets[vec["name"]] = {
            n: bytes.fromhex(b["boot_secret"]) for n, b in zip(r.boots, vec["inputs"]["boots"], strict=True)
        }
    for meta, mutate in [
        *reader_vectors(images),
        *contract_reader_vectors(),
        *attestation_reader_vectors(images),
    ]:
        ctx: dict[str, Any] = {"secrets": secrets[meta["base"]]}
        if "forgery" in meta:
            old = _old(out / f"{meta['name']}.json").get("forgery", {}).get("envelopes", {})
            meta["forgery"]["envelopes"] = old
            ctx["forgery"], ctx["book"] = meta["forgery"], EnvelopeBook(old, record=True)
            ctx["record"] = True
        if "anchor_from" in meta:
            meta["anchor"] = vecs[meta["anchor_from"]]["anchors"][0]
        img = bytearray(images[meta["base"]])
        mutate(img, ctx)
        if "book" in ctx and ctx["book"].used:
            meta["forgery"]["envelopes"] = {
                k: v for k, v in ctx["book"].book.items() if k in ctx["book"].used
            }
        check_labels(meta, bytes(img))
        _write(out, meta, bytes(img))
    # Tail truncation is only provable with an anchor: the same cut, with and without one.
    anchor = vecs["multiboot-perservice"]["anchors"][0]
    cut = bytearray(images["multiboot-perservice"])
    _zero("vtpm", 2, 2)(cut, {})
    cases: list[tuple[str, bool, dict[str, Any]]] = [
        ("truncate-tail-no-anchor", False, {"verdict": "intact", "kinds": ["no_shutdown"]}),
        (
            "truncate-tail-with-anchor",
            True,
            {
                "verdict": "violated",
                "kinds": ["anchor_truncated", "no_shutdown"],
                "at": [{"kind": "anchor_truncated", "stream": "vtpm", "boot": 2, "seq": 2}],
            },
        ),
    ]
    for name, with_anchor, expect in cases:
        meta = {
            "name": name,
            "base": "multiboot-perservice",
            "mutation": "vtpm boot 2's newest frame zeroed (tail truncation)",
            "anchor": anchor if with_anchor else None,
            "expect": expect,
        }
        check_labels(meta, bytes(cut))
        _write(out, meta, bytes(cut))


def labels(vec: dict[str, Any]) -> list[dict[str, Any]]:
    return [vec["expect"], *vec.get("also", [])]


def read_with(
    image: bytes, label: dict[str, Any], anchor: Anchor | None, verify: dict[str, Any] | None = None
) -> tuple[Verifier, Report]:
    """Verify as the label says: its keys, the anchor, and its ``verify`` block (or else the
    vector's, ``verify``)."""
    dev = MemoryDevice(len(image) // SECTOR, image)
    v = Verifier(
        dev.read,
        dev.sector_count,
        Keyring([vector_key(n) for n in label.get("key", ["owner"])]),
        origin=origin_policy(label.get("verify", verify)),
    )
    return v, v.run(anchor)


def label_mismatch(
    image: bytes, label: dict[str, Any], anchor: Anchor | None, verify: dict[str, Any] | None = None
) -> str | None:
    """What the reader says that the label does not (None: it agrees on everything).
    ``verify``: the vector's verify block, for a label without its own."""
    v, rep = read_with(image, label, anchor, verify)
    kinds = {f.kind.value for f in rep.findings}
    if rep.verdict != label["verdict"] or kinds != set(label["kinds"]):
        said = f"{label['verdict']} {sorted(label['kinds'])}"
        return f"reader says {rep.verdict} {sorted(kinds)}, label says {said}"
    for at in label.get("at", []):
        where = (at["kind"], at["stream"], at["boot"], at["seq"])
        if not any((f.kind.value, f.stream, f.boot, f.seq) == where for f in rep.findings):
            return f"no finding at {where}: {[(f.kind.value, f.stream, f.boot, f.seq) for f in rep.findings]}"
    if "records" in label and [r.record.message for r in v.records()] != label["records"]:
        return "the records differ"
    if "attested" in label and rep.attested_boots() != sorted(label["attested"]):
        boots = sorted(label["attested"])
        return f"reader proves the origin of boots {rep.attested_boots()}, label says {boots}"
    return None


def vector_anchor(vec: dict[str, Any]) -> Anchor | None:
    return Anchor.from_json(json.dumps(vec["anchor"])) if vec.get("anchor") else None


def check_labels(vec: dict[str, Any], image: bytes) -> None:
    """Fail unless our reader gives every label of the vector; a vector marked
    ``known_reader_defect`` must instead get exactly ``reader_says`` for its ``expect``."""
    anchor, verify = vector_anchor(vec), vec.get("verify")
    for i, label in enumerate(labels(vec)):
        if i == 0 and "known_reader_defect" in vec:
            if label_mismatch(image, label, anchor, verify) is None:
                raise SystemExit(f"vector {vec['name']}: the reader now agrees; drop known_reader_defect")
            said = label_mismatch(image, {**label, **vec["reader_says"], "at": []}, anchor, verify)
            if said is not None:
                raise SystemExit(f"vector {vec['name']}: not even the known defect: {said}")
            continue
        wrong = label_mismatch(image, label, anchor, verify)
        if wrong is not None:
            raise SystemExit(f"vector {vec['name']} {label.get('key', ['owner'])}: {wrong}")


def main(argv: list[str]) -> int:
    generate(Path(argv[1] if len(argv) > 1 else "formats/vectors"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
