"""Anchors from SEV-SNP reports (spec §6.5, §8.5): ``--anchor`` takes a raw report whose
REPORT_DATA is anchor || nonce; the heads it commits to come from the ``log anchor issued``
record the SVSM made durable before handing the report out. Everything here runs on the
model's TEST-ONLY AMD chain."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.testing import CliRunner

from svsmlog import crypto
from svsmlog.anchor import (
    FIELD_ANCHOR,
    FIELD_HEADS,
    PREIMAGE_MESSAGE,
    Anchor,
    AnchorError,
    ReportAnchor,
    load_anchor,
)
from svsmlog.cli import main
from svsmlog.device import MemoryDevice
from svsmlog.model.amdsp import TestPlatform
from svsmlog.model.config import LaunchConfig
from svsmlog.model.svsm import SnpPlatform, SvsmModel, launch_measurement
from svsmlog.origin import OriginPolicy
from svsmlog.records import Level
from svsmlog.report import Kind, Report
from svsmlog.verify import Keyring, StreamKey, Verifier

from .helpers import image_device

MS = 1_000_000
NONCE = bytes(range(32))


def _chain() -> tuple[tuple[crypto.Certificate, ...], tuple[crypto.Certificate, ...]]:
    """(roots, intermediates) of the TEST-ONLY chain, as --trust-root splits them."""
    given = crypto.load_certificates(TestPlatform().chain_pems)
    return tuple(c for c in given if c.self_issued), tuple(c for c in given if not c.self_issued)


ROOTS, INTERMEDIATES = _chain()


@dataclass
class Logged:
    cfg: LaunchConfig
    chip: TestPlatform
    image: bytes  # two boots; boot 2 issued an anchor report, logged on, and shut down
    rolled: bytes  # the same log rolled back to the anchor: the preimage record and later gone
    report: bytes
    anchor: Anchor
    measurement: bytes

    def policy(self, *, measured: bool = True, certs: tuple[crypto.Certificate, ...] = ()) -> OriginPolicy:
        m = frozenset({self.measurement}) if measured else frozenset()
        return OriginPolicy(roots=ROOTS, certs=INTERMEDIATES + certs, measurements=m)

    def signed(self, **kw: object) -> ReportAnchor:
        """A report of this log's anchor as someone else's request would get it."""
        kw.setdefault("measurement", self.measurement)
        return ReportAnchor.from_bytes(self.chip.report(self.anchor.commitment + NONCE, **kw))  # type: ignore[arg-type]


def _boot(dev: MemoryDevice, cfg: LaunchConfig, snp: SnpPlatform | None, n: int) -> SvsmModel:
    m = SvsmModel(dev, cfg, snp=snp)
    for i in range(n):
        m.advance_to((i + 1) * 10 * MS)
        m.log(("core", "vtpm", "console")[i % 3], Level.INFO, f"event {i}")
    return m


def _logged(owner: crypto.PrivateKey, *, attested: bool = True) -> Logged:
    cfg = LaunchConfig.default([owner.public], "per-service")
    chip = TestPlatform()
    snp = SnpPlatform(chip)
    dev = MemoryDevice(cfg.volume_sectors())
    _boot(dev, cfg, snp if attested else None, 12).shutdown()
    m = _boot(dev, cfg, snp if attested else None, 9)
    m.snp = snp  # an unattested boot's SVSM still answers anchor requests
    m.flush()
    rolled = dev.image()
    issued = m.issue_anchor_report(NONCE)
    assert issued is not None
    report, anchor = issued
    assert dev.image() != rolled  # the preimage record went out before the report
    m.advance_to(500 * MS)
    m.log("vtpm", Level.INFO, "after the anchor")
    m.shutdown()
    return Logged(cfg, chip, dev.image(), rolled, report, anchor, launch_measurement(cfg))


@pytest.fixture(scope="module")
def logged(owner: crypto.PrivateKey) -> Logged:
    return _logged(owner)


def check(
    image: bytes,
    owner: crypto.PrivateKey | None,
    anchor: Anchor | ReportAnchor | None,
    policy: OriginPolicy,
    stream_keys: list[StreamKey] | None = None,
) -> Report:
    dev = image_device(image)
    ring = Keyring([owner] if owner else [], stream_keys or [])
    return Verifier(dev.read, dev.sector_count, ring, origin=policy).run(anchor)


def kinds(report: Report) -> set[Kind]:
    return {f.kind for f in report.findings}


# --------------------------------------------------------------------------- the model


def test_the_svsm_logs_the_preimage_durably_before_the_report(
    owner: crypto.PrivateKey, logged: Logged
) -> None:
    rep = ReportAnchor.from_bytes(logged.report)
    assert rep.commitment == logged.anchor.commitment and rep.nonce == NONCE
    assert rep.report.vmpl == 0 and rep.report.measurement == logged.measurement
    dev = image_device(logged.image)
    v = Verifier(dev.read, dev.sector_count, Keyring([owner]))
    found = [lr.record for lr in v.records() if lr.record.message == PREIMAGE_MESSAGE]
    assert len(found) == 1 and found[0].service == "core"
    assert Anchor.from_preimage_fields(logged.anchor.volume_id, found[0].fields) == logged.anchor
    assert dict(found[0].fields)["nonce"] == NONCE.hex()


def test_preimage_fields_round_trip_and_malformed_ones_are_ignored(logged: Logged) -> None:
    a = logged.anchor
    fields = a.preimage_fields(NONCE)
    assert Anchor.from_preimage_fields(a.volume_id, fields) == a
    d = dict(fields)
    for bad in (
        {**d, FIELD_HEADS: d[FIELD_HEADS][:-2]},
        {**d, FIELD_HEADS: "zz"},
        {**d, "anchor_boot": "-1"},
        {k: v for k, v in d.items() if k != "anchor_boot"},
    ):
        assert Anchor.from_preimage_fields(a.volume_id, tuple(bad.items())) is None


def test_a_refused_request_hands_nothing_out(owner: crypto.PrivateKey) -> None:
    cfg = LaunchConfig.default([owner.public])
    m = SvsmModel(MemoryDevice(cfg.volume_sectors()), cfg, snp=SnpPlatform(TestPlatform(), refuse=True))
    assert m.issue_anchor_report(NONCE) is None
    with pytest.raises(ValueError, match="SNP platform"):
        SvsmModel(MemoryDevice(cfg.volume_sectors()), cfg).issue_anchor_report(NONCE)


# --------------------------------------------------------------------------- the verifier


def test_a_genuine_anchor_report_anchors_the_boots_the_json_anchor_does(
    owner: crypto.PrivateKey, logged: Logged
) -> None:
    raw = check(logged.image, owner, ReportAnchor.from_bytes(logged.report), logged.policy())
    js = check(logged.image, owner, logged.anchor, logged.policy())
    assert raw.verdict == js.verdict == "intact", raw.findings
    assert raw.anchored_boots == js.anchored_boots == {1, 2}
    src: Any = raw.as_json()["anchor"]
    assert src["form"] == "snp-report" and src["valid"] is True and src["nonce"] == NONCE.hex()
    assert src["preimage"]["boot"] == 2 and src["preimage"]["stream"] == logged.cfg.stream_for_service("core")
    assert js.as_json()["anchor"] == {"form": "json"}
    # Without --measurement the report is still checked against the anchored boot's own.
    assert check(
        logged.image, owner, ReportAnchor.from_bytes(logged.report), logged.policy(measured=False)
    ).anchored_boots == {1, 2}


def test_a_log_cut_after_the_anchor_is_anchor_truncated(owner: crypto.PrivateKey, logged: Logged) -> None:
    """The heads are all still here, so the JSON anchor is met; but the preimage record the SVSM
    made durable before the report left is gone: the log was rolled back after the anchor."""
    js = check(logged.rolled, owner, logged.anchor, logged.policy())
    assert js.anchored_boots == {1, 2} and js.verdict == "intact"
    raw = check(logged.rolled, owner, ReportAnchor.from_bytes(logged.report), logged.policy())
    assert raw.verdict == "violated" and raw.anchored_boots == set()
    cut = [f for f in raw.findings if f.kind is Kind.ANCHOR_TRUNCATED]
    assert len(cut) == 1 and "rolled back after the anchor" in cut[0].detail
    assert "another volume" in cut[0].detail  # a report does not say which volume it is for


def test_a_report_of_another_measurement_is_a_finding(owner: crypto.PrivateKey, logged: Logged) -> None:
    other = logged.signed(measurement=crypto.sha384(b"another SVSM build"))
    measured = check(logged.image, owner, other, logged.policy())
    assert Kind.MEASUREMENT_UNEXPECTED in kinds(measured) and measured.anchored_boots == set()
    assert measured.verdict == "violated"
    # No --measurement: boot 2's own report says which SVSM wrote boot 2.
    unmeasured = check(logged.image, owner, other, logged.policy(measured=False))
    f = next(f for f in unmeasured.findings if f.kind is Kind.MEASUREMENT_UNEXPECTED)
    assert "boot 2's own report" in f.detail and f.boot == 2
    assert unmeasured.anchored_boots == set()


def test_a_report_of_another_chip_is_invalid(owner: crypto.PrivateKey, logged: Logged) -> None:
    other = TestPlatform(seed=5)  # its VCEK is not given, and the log carries only the real chip's
    ra = ReportAnchor.from_bytes(
        other.report(logged.anchor.commitment + NONCE, measurement=logged.measurement)
    )
    report = check(logged.image, owner, ra, logged.policy())
    f = next(f for f in report.findings if f.kind is Kind.ATTESTATION_INVALID)
    assert "anchor report is not valid" in f.detail and "signature" in f.detail
    assert report.anchored_boots == set() and report.verdict == "violated"


def test_a_vmpl1_report_is_invalid(owner: crypto.PrivateKey, logged: Logged) -> None:
    """The guest OS (VMPL1 and up) can have any REPORT_DATA signed; only the SVSM is at VMPL0."""
    report = check(logged.image, owner, logged.signed(vmpl=1), logged.policy())
    f = next(f for f in report.findings if f.kind is Kind.ATTESTATION_INVALID)
    assert "vmpl" in f.detail and report.anchored_boots == set()


def test_a_debug_policy_report_vouches_for_no_boot(owner: crypto.PrivateKey, logged: Logged) -> None:
    report = check(logged.image, owner, logged.signed(policy=0x30000 | 1 << 19), logged.policy())
    assert Kind.DEBUG_POLICY in kinds(report) and report.anchored_boots == set()


def test_a_reader_who_cannot_open_the_preimage_stream_is_not_told_truncated(
    owner: crypto.PrivateKey, logged: Logged
) -> None:
    dev = image_device(logged.image)
    v = Verifier(dev.read, dev.sector_count, Keyring([owner]))
    v.run()
    vtpm = logged.cfg.stream_id("vtpm")
    key = v.chain_key(2, vtpm)
    assert key is not None
    sk = StreamKey(v.volume.volume_id, 2, vtpm, 0, key)
    report = check(logged.image, None, ReportAnchor.from_bytes(logged.report), logged.policy(), [sk])
    assert Kind.ANCHOR_TRUNCATED not in kinds(report) and report.anchored_boots == set()
    f = next(f for f in report.findings if f.kind is Kind.UNPROVEN and "preimage" in f.detail)
    assert "no key given opens" in f.detail


def test_the_vcek_may_come_from_cert_when_no_boot_carries_one(owner: crypto.PrivateKey) -> None:
    plain = _logged(owner, attested=False)
    ra = ReportAnchor.from_bytes(plain.report)
    with pytest.raises(AnchorError, match="no VCEK or VLEK"):
        check(plain.image, owner, ra, plain.policy())
    report = check(plain.image, owner, ra, plain.policy(certs=(plain.chip.vcek,)))
    assert report.anchored_boots == {1, 2} and report.verdict == "intact"


def test_a_boots_own_report_is_not_an_anchor_report(owner: crypto.PrivateKey, logged: Logged) -> None:
    dev = image_device(logged.image)
    v = Verifier(dev.read, dev.sector_count, Keyring([owner]))
    v.run()
    own = next(e.evidence.report for es in v._entries.values() for e in es if e.evidence is not None)
    with pytest.raises(AnchorError, match="boot's own attestation report"):
        check(logged.image, owner, ReportAnchor.from_bytes(own[:1184]), logged.policy())


def test_load_anchor_tells_the_forms_apart(logged: Logged) -> None:
    assert load_anchor(logged.anchor.to_json().encode()) == logged.anchor
    assert load_anchor(logged.report).raw == logged.report  # type: ignore[union-attr]
    assert load_anchor(logged.report.hex().encode() + b"\n").raw == logged.report  # type: ignore[union-attr]
    with pytest.raises(AnchorError, match="neither an svsmlog anchor file"):
        load_anchor(b"garbage")


def test_a_record_naming_the_anchor_with_other_heads_is_not_its_preimage(
    owner: crypto.PrivateKey, logged: Logged
) -> None:
    """Whoever can write a frame could log a 'log anchor issued' line; only the heads that hash
    to REPORT_DATA are the preimage."""
    cfg = LaunchConfig.default([owner.public], "per-service")
    snp = SnpPlatform(TestPlatform())
    dev = MemoryDevice(cfg.volume_sectors())
    m = _boot(dev, cfg, snp, 6)
    m.flush()
    anchor = m.anchor()
    fake = Anchor(anchor.volume_id, anchor.boot, anchor.heads[:-1])
    fields = tuple(
        (k, anchor.commitment.hex() if k == FIELD_ANCHOR else v) for k, v in fake.preimage_fields(NONCE)
    )
    m.log("core", Level.INFO, PREIMAGE_MESSAGE, fields=fields)
    m.flush()
    m.shutdown()
    ra = ReportAnchor.from_bytes(
        snp.chip.report(anchor.commitment + NONCE, measurement=launch_measurement(cfg))
    )
    report = check(dev.image(), owner, ra, logged.policy())
    assert Kind.ANCHOR_TRUNCATED in kinds(report)


# --------------------------------------------------------------------------- the command line


def run(*args: object) -> SimpleNamespace:
    with CliRunner().isolation() as (out, err, _):
        code = main([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        return SimpleNamespace(code=code, stdout=out.getvalue().decode(), stderr=err.getvalue().decode())


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("anchor-report")
    assert run("keygen", "--out", d / "owner").code == 0
    r = run(
        "simulate",
        "--recipient",
        d / "owner.pub",
        "--image",
        d / "disk.img",
        "--boots",
        2,
        "--size",
        "8M",
        "--attest-out",
        d / "amd",
        "--anchor-report-out",
        d / "anchor.bin",
        "--anchor-out",
        d / "anchor.json",
        "--records",
        20,
    )
    assert r.code == 0, r.stderr
    assert "anchor report of boot 2 written to" in r.stdout
    return d


def verify_json(d: Path, anchor: Path, *extra: object, code: int = 0) -> dict:
    r = run(
        "verify",
        d / "disk.img",
        "--key",
        d / "owner.key",
        "--anchor",
        anchor,
        "--trust-root",
        d / "amd" / "TEST-ONLY-amd-chain.pem",
        "--measurement",
        (d / "amd" / "measurement.hex").read_text().strip(),
        "--json",
        *extra,
    )
    assert r.code == code, r.stdout + r.stderr
    return json.loads(r.stdout)


def test_cli_verify_with_a_raw_anchor_report(simulated: Path) -> None:
    assert (simulated / "anchor.bin").stat().st_size == 1184
    d = verify_json(simulated, simulated / "anchor.bin")
    assert d["verdict"] == "intact" and d["anchored_boots"] == [1, 2]
    assert d["anchor"]["form"] == "snp-report" and d["anchor"]["preimage"]["boot"] == 2
    assert verify_json(simulated, simulated / "anchor.json")["anchored_boots"] == [1, 2]
    text = run(
        "verify",
        simulated / "disk.img",
        "--key",
        simulated / "owner.key",
        "--anchor",
        simulated / "anchor.bin",
        "--trust-root",
        simulated / "amd" / "TEST-ONLY-amd-chain.pem",
    ).stdout
    assert "checked (an SEV-SNP anchor report, zero nonce); it vouches for boot(s) 1, 2" in text


def test_cli_accepts_the_report_as_hex_text(simulated: Path) -> None:
    hexed = simulated / "anchor.hex"
    raw = (simulated / "anchor.bin").read_bytes().hex()
    hexed.write_text("\n".join(raw[i : i + 64] for i in range(0, len(raw), 64)) + "\n")
    assert verify_json(simulated, hexed)["anchored_boots"] == [1, 2]


def test_cli_extract_checks_the_anchor_report_too(simulated: Path) -> None:
    r = run(
        "extract",
        simulated / "disk.img",
        "--key",
        simulated / "owner.key",
        "--anchor",
        simulated / "anchor.bin",
        "--trust-root",
        simulated / "amd" / "TEST-ONLY-amd-chain.pem",
        "-f",
        "jsonl",
    )
    assert r.code == 0, r.stderr
    assert any(json.loads(line)["message"] == PREIMAGE_MESSAGE for line in r.stdout.splitlines())


def test_cli_without_the_test_root_the_anchor_report_is_invalid(simulated: Path) -> None:
    r = run(
        "verify",
        simulated / "disk.img",
        "--key",
        simulated / "owner.key",
        "--anchor",
        simulated / "anchor.bin",
        "--json",
    )
    assert r.code == 1
    d = json.loads(r.stdout)
    assert d["anchored_boots"] == [] and d["anchor"]["valid"] is False
    assert any("anchor report is not valid" in f["detail"] for f in d["findings"])


@pytest.mark.parametrize(
    "content",
    [b"garbage, neither JSON nor a report\n", b"\x00" * 1000, b"ab" * 1184],
    ids=["text", "short-binary", "long-hex"],
)
def test_cli_a_garbage_anchor_exits_2_with_one_line(simulated: Path, tmp_path: Path, content: bytes) -> None:
    bad = tmp_path / "anchor.bad"
    bad.write_bytes(content)
    r = run("verify", simulated / "disk.img", "--key", simulated / "owner.key", "--anchor", bad)
    assert r.code == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"svsmlog: error: {bad}: "), r.stderr
    assert "neither an svsmlog anchor file (JSON) nor an SEV-SNP attestation report" in lines[0]
    assert "Traceback" not in r.stderr


def _own_report(image: Path, key: Path) -> bytes:
    """A boot's own attestation report, as it rides in the log."""
    dev = image_device(image.read_bytes())
    v = Verifier(dev.read, dev.sector_count, Keyring([crypto.load_private_key(key.read_bytes())]))
    v.run()
    return next(e.evidence.report for es in v._entries.values() for e in es if e.evidence is not None)[:1184]


def test_cli_a_report_that_cannot_be_judged_exits_2(simulated: Path, tmp_path: Path) -> None:
    own = tmp_path / "boot-report.bin"
    own.write_bytes(_own_report(simulated / "disk.img", simulated / "owner.key"))
    r = run(
        "verify",
        simulated / "disk.img",
        "--key",
        simulated / "owner.key",
        "--anchor",
        own,
        "--trust-root",
        simulated / "amd" / "TEST-ONLY-amd-chain.pem",
    )
    assert r.code == 2 and r.stdout == ""
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and "a boot's own attestation report" in lines[0], r.stderr


def test_cli_simulate_writes_no_anchor_report_the_host_refused(tmp_path: Path) -> None:
    d = tmp_path
    assert run("keygen", "--out", d / "owner").code == 0
    r = run(
        "simulate",
        "--recipient",
        d / "owner.pub",
        "--image",
        d / "disk.img",
        "--size",
        "8M",
        "--refuse-report",
        "--anchor-report-out",
        d / "anchor.bin",
    )
    assert r.code == 0 and "no anchor report written" in r.stdout
    assert not (d / "anchor.bin").exists()
