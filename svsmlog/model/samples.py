"""``python -m svsmlog.model.samples OUTDIR``: the demo images, reproducibly.

Writes the TEST-ONLY keys, two launch configurations, the TEST-ONLY AMD chain
(``TEST-ONLY-amd-chain.pem``: the model AMD-SP's ASK and ARK) and the launch measurement of
``launch-per-service.toml`` (``measurement.hex``), seven images with their ground truth
(``.truth.jsonl``) and anchors, and a README.md saying what each one is and what
verification must conclude. ``vtpm-panic`` (the demo's image) and ``report-refused`` are
attested: every boot carries an SEV-SNP report of the model's TEST-ONLY AMD-SP, but for
boot 2 of ``report-refused``, whose report request the host refused. Every image is
verified while it is generated, with that chain and measurement: if the reader disagrees
with the expected verdict, generation fails.

Same records, sequence numbers, truth files, chain, measurement and README on every run;
the image bytes differ (fresh boot secrets and HPKE randomness), so do the anchors' tags.
"""

from __future__ import annotations

import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import crypto
from ..anchor import Anchor
from ..codec import FrameHeader, decode_frame_header
from ..device import SECTOR, FileDevice, MemoryDevice, RecordingDevice
from ..format import FRAME_HEADER_LEN, FRAME_MAGIC, FrameType
from ..origin import OriginPolicy
from ..report import Report
from ..scan import Candidate, scan_region
from ..volume import read_volume
from .config import LaunchConfig
from .scenarios import run
from .simulate import SimulateOptions, SimulateResult, simulate
from .svsm import launch_measurement
from .testkeys import KEY_KINDS, TEST_KEY_PEM, key_file_names, sample_key
from .truth import key, read_back, read_truth

SIZE = "1M"
CHAIN_PEM = "TEST-ONLY-amd-chain.pem"
MEASUREMENT_HEX = "measurement.hex"
PER_SERVICE_TOML = """\
# Launch configuration of the demo samples (TEST-ONLY keys: never use them for real).
[recipients]
owner = ["TEST-ONLY-owner.pub", "TEST-ONLY-owner-pq.pub"]

[log]
min_level = "debug"
layout = "per-service"

[log.streams.core]
sectors = 768

[log.streams.vtpm]
sectors = 256

[flush]
max_bytes = 4096
max_delay_ms = 200

[debug]
ceiling = "never"
"""
DEBUG_TOML = """\
# Debug-mode demo: the guest may enable debug mode for vtpm and console, and only if the
# SNP guest policy allows debugging (bit 19). TEST-ONLY keys: never use them for real.
[recipients]
owner = ["TEST-ONLY-owner.pub", "TEST-ONLY-owner-pq.pub"]

[log]
min_level = "debug"
layout = "per-service"

[flush]
max_bytes = 4096
max_delay_ms = 200

[debug]
ceiling = "debug-only"
recipient = "TEST-ONLY-debug.pub"
streams = ["vtpm", "console"]
"""


@dataclass
class Sample:
    name: str
    what: str
    expect: str
    result: SimulateResult | None = None
    report: Report | None = None
    notes: str = ""


def write_keys(out: Path) -> None:
    for name in KEY_KINDS:
        priv, pub = key_file_names(name)
        (out / priv).write_text(TEST_KEY_PEM[name])
        (out / pub).write_bytes(sample_key(name).public.to_pem())


def write_attestation_files(out: Path, config: Path) -> OriginPolicy:
    """The TEST-ONLY AMD chain (ASK, then ARK) and the launch measurement of ``config``, as
    ``simulate --attest-out`` writes them; returns the owner's policy they give (what
    ``--trust-root`` and ``--measurement`` give the command line)."""
    from .amdsp import TestPlatform

    chain = TestPlatform().chain_pems
    measurement = launch_measurement(LaunchConfig.load(config))
    (out / CHAIN_PEM).write_bytes(chain)
    (out / MEASUREMENT_HEX).write_text(measurement.hex() + "\n")
    certs = crypto.load_certificates(chain)
    return OriginPolicy(
        roots=tuple(c for c in certs if c.self_issued),
        certs=tuple(c for c in certs if not c.self_issued),
        measurements=frozenset({measurement}),
    )


def _verify(
    img: Path, keys: list[str], anchor: Path | None = None, origin: OriginPolicy | None = None
) -> tuple[Report, list[dict[str, Any]]]:
    dev = FileDevice(img)
    try:
        a = Anchor.from_json(anchor.read_text()) if anchor else None
        return read_back(dev.read, dev.sector_count, [sample_key(k) for k in keys], a, origin)
    finally:
        dev.close()


def _findings(rep: Report) -> str:
    c = Counter((f.kind.value, f.kind.severity.value) for f in rep.findings)
    if not c:
        return "no findings"
    return ", ".join(f"{k} ({sev}) ×{n}" for (k, sev), n in sorted(c.items()))


def _endings(rep: Report) -> str:
    return ", ".join(f"boot {b}: {rep.boots[b].ending.value}" for b in sorted(rep.boots))


def _crash_point(cfg_path: Path, seed: int) -> tuple[int, int]:
    """Replay the run in memory and pick a write to tear: the last data frame of more than
    one sector (deterministic: the writes depend only on the seed and the configuration)."""
    cfg = LaunchConfig.load(cfg_path)
    rec = RecordingDevice(MemoryDevice(cfg.volume_sectors()))
    run("normal", rec, cfg, seed=seed)
    for k in range(len(rec.writes) - 1, -1, -1):
        w = rec.writes[k]
        if (
            w.sectors >= 2
            and w.data[:4] == FRAME_MAGIC
            and decode_frame_header(w.data).type == FrameType.DATA
        ):
            return k, 1  # crash after k writes; write k+1 lands only its first sector
    raise RuntimeError("no multi-sector data write to tear")


def _frames(img: Path) -> list[tuple[str, int, FrameHeader]]:
    """Every complete frame of the image as (stream name, lba, header), keyless."""
    dev = FileDevice(img)
    out = []
    try:
        vol = read_volume(dev.read(0, 1), dev.sector_count)
        for region in vol.superblock.regions:
            for c in scan_region(dev.read, region):
                if isinstance(c, Candidate) and c.digest_ok():
                    c.accepted = True
                    out.append((region.name, c.lba, c.header))
    finally:
        dev.close()
    return out


def _tamper(src: Path, dst: Path) -> str:
    """Flip bytes inside one frame's ciphertext and drop (zero) another frame."""
    shutil.copyfile(src, dst)
    frames = _frames(dst)
    data = [(s, lba, h) for s, lba, h in frames if h.type == FrameType.DATA]
    flip = next((s, lba, h) for s, lba, h in data if s == "vtpm" and h.boot == 2 and h.seq == 2)
    drop = next((s, lba, h) for s, lba, h in data if s == "core" and h.boot == 1 and h.seq == 3)
    with open(dst, "r+b") as f:
        s, lba, h = flip
        off = lba * SECTOR + FRAME_HEADER_LEN + h.clear_len + 40
        f.seek(off)
        b = bytearray(f.read(3))
        f.seek(off)
        f.write(bytes(x ^ 0x5A for x in b))
        s2, lba2, h2 = drop
        f.seek(lba2 * SECTOR)
        f.write(bytes(h2.sectors * SECTOR))
    return (
        f"bytes {off}..{off + 2} (3 bytes XOR 0x5a) inside the ciphertext of stream '{s}' boot {h.boot} "
        f"seq {h.seq} (frame at sector {lba}); stream '{s2}' boot {h2.boot} seq {h2.seq} (sectors "
        f"{lba2}..{lba2 + h2.sectors - 1}) zeroed, i.e. dropped"
    )


def generate(out: Path) -> list[Sample]:
    out.mkdir(parents=True, exist_ok=True)
    write_keys(out)
    (out / "launch-per-service.toml").write_text(PER_SERVICE_TOML)
    (out / "launch-debug.toml").write_text(DEBUG_TOML)
    per_service, debug_cfg = out / "launch-per-service.toml", out / "launch-debug.toml"
    origin = write_attestation_files(out, per_service)
    owners = [out / key_file_names("owner")[1], out / key_file_names("owner-pq")[1]]
    samples: list[Sample] = []

    def sim(name: str, **kw: Any) -> SimulateResult:
        img = out / f"{name}.img"
        img.unlink(missing_ok=True)
        opts = SimulateOptions(
            image=img,
            recipients=owners,
            size=SIZE,
            truth=out / f"{name}.truth.jsonl",
            anchor_out=out / f"{name}.anchor.json",
            **kw,
        )
        return simulate(opts)

    def check(
        s: Sample, keys: list[str], verdict: str, *, anchor: bool = True, all_truth: bool = True
    ) -> None:
        img = out / f"{s.name}.img"
        a = out / f"{s.name}.anchor.json"
        rep, recs = _verify(img, keys, a if anchor and a.exists() else None, origin)
        s.report = rep
        if rep.verdict != verdict:
            raise RuntimeError(f"{s.name}: verdict {rep.verdict}, expected {verdict}: {_findings(rep)}")
        truth = read_truth(out / f"{s.name}.truth.jsonl")
        if all_truth and not Counter(map(key, truth)) <= Counter(map(key, recs)):
            raise RuntimeError(f"{s.name}: some durable records are not recovered")
        samples.append(s)

    s = Sample(
        "clean-multiboot",
        "normal scenario, per-service layout, 3 boots, each shut down cleanly "
        "(launch-per-service.toml, seed 1)",
        "intact; 3 boots, every one a clean shutdown",
    )
    s.result = sim(s.name, config=per_service, boots=3, seed=1)
    check(s, ["owner"], "intact")

    k, t = _crash_point(per_service, seed=2)
    s = Sample(
        "crash-torn",
        f"normal scenario, per-service, seed 2; the machine stops after device write {k} "
        f"and write {k + 1} (a data frame) lands only its first {t} sector: a torn tail",
        "intact (a crash is not tampering); the boot ends in 'crash (torn tail)' with a crash_tail "
        "notice; every record of the truth file is recovered",
    )
    s.result = sim(s.name, config=per_service, seed=2, crash_after_writes=k, tear_sectors=t)
    check(s, ["owner"], "intact")

    s = Sample(
        "vtpm-panic",
        "panic scenario: the vTPM panics mid-boot (per-service, seed 3, attested); the panic "
        "record and everything pending are flushed, then the boot stops",
        "intact; the boot ends in 'panic'; the vtpm stream's last record carries the panic flag; "
        f"with `--trust-root {CHAIN_PEM}` and `--measurement` of `{MEASUREMENT_HEX}` the boot's origin "
        "is proven (1 of 1 boot attested)",
    )
    s.result = sim(s.name, config=per_service, scenario="panic", seed=3, attest=True)
    check(s, ["owner"], "intact")
    if s.report is None or s.report.attested_boots() != [1]:
        raise RuntimeError(f"vtpm-panic: the boot is not attested: {s.report and s.report.origin()}")

    s = Sample(
        "attestation-failure",
        "attestation-failure scenario (per-service, seed 4): the KBS refuses, "
        "errors are logged and flushed at once, the SVSM stops without shutting down",
        "intact; no_shutdown notices; the attest stream ends with the three errors",
    )
    s.result = sim(s.name, config=per_service, scenario="attestation-failure", seed=4)
    check(s, ["owner"], "intact")

    s = Sample(
        "debug-mode",
        "debug scenario (launch-debug.toml: ceiling debug-only, SNP debug bit set, "
        "seed 5): the guest enables debug mode 1.5 s after attestation for vtpm and console",
        "intact with the owner key; with TEST-ONLY-debug.key alone partial: only vtpm and "
        "console are readable, and only from the grant on (no_key findings for the rest)",
    )
    s.result = sim(s.name, config=debug_cfg, scenario="debug", seed=5)
    check(s, ["owner"], "intact")
    rep_dbg, recs_dbg = _verify(out / "debug-mode.img", ["debug"])
    if rep_dbg.verdict != "partial" or {r["stream"] for r in recs_dbg} != {"vtpm", "console"}:
        raise RuntimeError("debug-mode: the debug key reads the wrong streams")
    s.notes = (
        f"With the debug key alone: verdict {rep_dbg.verdict}, {len(recs_dbg)} records, all from "
        f"streams vtpm and console ({_findings(rep_dbg)})."
    )

    s = Sample("tampered", "a copy of clean-multiboot.img changed by the 'host'", "violated")
    shutil.copyfile(out / "clean-multiboot.truth.jsonl", out / "tampered.truth.jsonl")
    shutil.copyfile(out / "clean-multiboot.anchor.json", out / "tampered.anchor.json")
    s.what += ": " + _tamper(out / "clean-multiboot.img", out / "tampered.img")
    s.expect = "violated: frame_corrupt for the flipped frame, frame_missing for the dropped one"
    check(s, ["owner"], "violated", all_truth=False)
    kinds = {f.kind.value for f in s.report.findings} if s.report else set()
    if not {"frame_corrupt", "frame_missing"} <= kinds:
        raise RuntimeError(f"tampered: unexpected findings {_findings(s.report)}")  # type: ignore[arg-type]

    s = Sample(
        "report-refused",
        "report-refused scenario (per-service, seed 6, attested): three clean boots; the host "
        "refuses boot 2's attestation-report request, so the SVSM writes that boot unattested "
        "(and says so in a WARN record)",
        "partial: boots 1 and 3 attested, boot 2 unattested (the host could have written it with "
        "the owner's public key); with `--require-attestation` violated (attestation_missing)",
    )
    s.result = sim(s.name, config=per_service, scenario="report-refused", boots=3, seed=6, attest=True)
    check(s, ["owner"], "partial")
    if s.report is None or s.report.attested_boots() != [1, 3]:
        raise RuntimeError(f"report-refused: wrong boots attested: {s.report and s.report.origin()}")
    if {f.kind.value for f in s.report.findings} != {"unattested"}:
        raise RuntimeError(f"report-refused: unexpected findings {_findings(s.report)}")

    (out / "README.md").write_text(readme(samples))
    return samples


def readme(samples: list[Sample]) -> str:
    lines = [
        "# svsmlog demo samples",
        "",
        "Generated by `python -m svsmlog.model.samples samples` (the SVSM model, `svsmlog.model`).",
        "Regenerating gives the same records, sequence numbers, truth files and this README; the",
        "image bytes and anchor tags differ (fresh boot secrets and HPKE randomness every run).",
        "",
        "**The keys here are TEST-ONLY and public**: `TEST-ONLY-owner.key` (X25519),",
        "`TEST-ONLY-owner-pq.key` (ML-KEM-768 + X25519 hybrid), `TEST-ONLY-debug.key` (X25519, the",
        "debug recipient). Anyone can read these images. Never use these keys for real.",
        "",
        "Launch configurations: `launch-per-service.toml` (owners: both owner keys; per-service",
        "streams; min_level debug; debug ceiling never) and `launch-debug.toml` (min_level debug;",
        "debug ceiling debug-only for vtpm and console, recipient TEST-ONLY-debug.pub).",
        "",
        "Attested images: `vtpm-panic.img` and `report-refused.img` carry, in each boot's key",
        "frames, an SEV-SNP report of the model's TEST-ONLY AMD Secure Processor, committed to the",
        f"boot's envelopes. `{CHAIN_PEM}` is its TEST-ONLY ASK and ARK (nothing of it is",
        "AMD's: without `--trust-root` the reports are invalid, a violation) and",
        f"`{MEASUREMENT_HEX}` the launch measurement of `launch-per-service.toml`, the SVSM the",
        "owner launched.",
        "",
        "Each image `NAME.img` comes with `NAME.truth.jsonl` (every record the writer reported",
        "durable, one JSON object per line: boot, stream, seq, service, component, level, t_ns,",
        "message) and `NAME.anchor.json` (the head commitment at the end of the run, or just before",
        "the crash). Try, for example:",
        "",
        "    svsmlog verify samples/clean-multiboot.img --key samples/TEST-ONLY-owner.key "
        "--anchor samples/clean-multiboot.anchor.json",
        "    svsmlog extract samples/vtpm-panic.img --key samples/TEST-ONLY-owner-pq.key "
        f"--trust-root samples/{CHAIN_PEM} --measurement $(cat samples/{MEASUREMENT_HEX})",
        "    svsmlog verify samples/report-refused.img --key samples/TEST-ONLY-owner.key "
        f"--trust-root samples/{CHAIN_PEM} --measurement $(cat samples/{MEASUREMENT_HEX})",
        "    svsmlog verify samples/debug-mode.img --key samples/TEST-ONLY-debug.key",
        "",
        "| image | what it is | expected verdict |",
        "|---|---|---|",
    ]
    for s in samples:
        lines.append(f"| `{s.name}.img` | {s.what} | {s.expect} |")
    lines += ["", "## What the reader reports (checked at generation)", ""]
    for s in samples:
        r, rep = s.result, s.report
        assert rep is not None
        lines.append(f"### {s.name}.img")
        lines.append("")
        lines.append(f"- verdict (owner key, anchor, TEST-ONLY chain, measurement): **{rep.verdict}**")
        lines.append(f"- origin: {rep.origin()}")
        lines.append(f"- endings: {_endings(rep)}")
        lines.append(f"- findings: {_findings(rep)}")
        for f in rep.findings:
            if f.violation:
                lines.append(
                    f"  - {f.kind.value}: stream {f.stream}, boot {f.boot}, seq {f.seq}, "
                    f"offset {f.offset}: {f.detail}"
                )
        if r is not None:
            lines.append(
                f"- written: boots {r.boots}, {r.records_durable} durable records, {r.frames} frames, "
                f"{r.device_writes} device writes, {r.sectors_written} sectors"
                + (" (crashed)" if r.crashed else "")
            )
        if s.notes:
            lines.append(f"- {s.notes}")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m svsmlog.model.samples OUTDIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    for s in generate(out):
        print(f"{s.name}.img: {s.report.verdict if s.report else '?'}")
    print(f"README: {out / 'README.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
