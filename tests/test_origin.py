"""Attested boots (spec §6.6, §8.9): what each boot's SEV-SNP report proves, and every way the
host can try to pass off a boot of its own. Model images, the model's TEST-ONLY AMD-SP."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from svsmlog import crypto
from svsmlog.cli.app import main
from svsmlog.device import MemoryDevice
from svsmlog.keyschedule import boot_report_data
from svsmlog.model import scenarios
from svsmlog.model.amdsp import TestPlatform
from svsmlog.model.config import LaunchConfig
from svsmlog.model.svsm import SnpPlatform, launch_measurement
from svsmlog.origin import OriginPolicy
from svsmlog.report import Report
from svsmlog.verify import Keyring, Verifier
from svsmlog.writer import Evidence, LogWriter


def run(*args: object, code: int = 0) -> SimpleNamespace:
    """``svsmlog ARGS`` in process, as the console script calls it; asserts the exit status."""
    with CliRunner().isolation() as (out, err, _):
        got = main([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        r = SimpleNamespace(code=got, stdout=out.getvalue().decode(), stderr=err.getvalue().decode())
    assert r.code == code, (r.code, r.stderr)
    return r


def run_json(*args: object, code: int = 0) -> dict:
    return json.loads(run(*args, code=code).stdout)

CHIP = TestPlatform()
GENUINE = SnpPlatform(CHIP)


@pytest.fixture(scope="module")
def owner() -> crypto.PrivateKey:
    return crypto.private_key_from_seed(crypto.KEM_X25519, b"origin-tests".ljust(32, b"\0"))


def _config(owner: crypto.PrivateKey, layout: str = "aggregated") -> LaunchConfig:
    return LaunchConfig.default([owner.public], layout)


def _policy(config: LaunchConfig, *, require: bool = False, measured: bool = True) -> OriginPolicy:
    return OriginPolicy(
        roots=(crypto.load_certificates(CHIP.ark_pem)[0],),
        certs=tuple(crypto.load_certificates(CHIP.chain_pems)),
        measurements=frozenset({launch_measurement(config)}) if measured else frozenset(),
        require=require,
    )


def _image(owner: crypto.PrivateKey, scenario: str = "normal", boots: int = 3, *, layout: str = "aggregated",
           snp: SnpPlatform | None = GENUINE, **kw: object) -> tuple[MemoryDevice, LaunchConfig]:
    config = _config(owner, layout)
    dev = MemoryDevice(config.volume_sectors())
    scenarios.run(scenario, dev, config, boots=boots, snp=snp, steady_s=2.0, **kw)  # type: ignore[arg-type]
    return dev, config


def _verify(dev: MemoryDevice, owner: crypto.PrivateKey, policy: OriginPolicy) -> Report:
    return Verifier(dev.read, dev.sector_count, Keyring([owner]), origin=policy).run()


def _kinds(report: Report) -> set[str]:
    return {f.kind.value for f in report.findings if f.kind.value not in ("no_shutdown",)}


@pytest.mark.parametrize("layout", ["aggregated", "per-service"])
def test_attested_boots_are_intact_and_say_who_attested_them(owner: crypto.PrivateKey, layout: str) -> None:
    dev, config = _image(owner, layout=layout)
    report = _verify(dev, owner, _policy(config))
    assert report.verdict == "intact" and _kinds(report) == set()
    assert report.attested_boots() == [1, 2, 3]
    a = report.boots[2].attestation
    assert a is not None and a.status == "attested" and a.product == "Milan" and a.signing_key == "vcek"
    assert a.measurement == launch_measurement(config).hex() and a.measurement_expected is True
    assert a.chip_id == CHIP.chip_id.hex() and a.vmpl == 0 and a.debug is False  # type: ignore[union-attr]
    assert report.origin().startswith("3 of 3 boot(s) attested")


def test_pinned_amd_roots_reject_the_test_only_chain(owner: crypto.PrivateKey) -> None:
    dev, _ = _image(owner, boots=1)
    report = _verify(dev, owner, OriginPolicy())
    assert report.verdict == "violated" and _kinds(report) == {"attestation_invalid"}
    assert "chain" in next(f.detail for f in report.findings if f.kind.value == "attestation_invalid")


def test_a_refused_report_is_never_intact(owner: crypto.PrivateKey) -> None:
    dev, config = _image(owner, "report-refused")
    report = _verify(dev, owner, _policy(config))
    assert report.verdict == "partial" and _kinds(report) == {"unattested"}
    assert [f.boot for f in report.findings if f.kind.value == "unattested"] == [2]
    strict = _verify(dev, owner, _policy(config, require=True))
    assert strict.verdict == "violated" and _kinds(strict) == {"attestation_missing"}


def test_a_volume_never_attested_says_so_and_fails_only_when_required(owner: crypto.PrivateKey) -> None:
    dev, config = _image(owner, snp=None)
    report = _verify(dev, owner, _policy(config))
    assert report.verdict == "intact" and report.origin().startswith("not proven: none of 3")
    assert all(b.attestation and b.attestation.status == "unattested" for b in report.boots.values())
    strict = _verify(dev, owner, _policy(config, require=True))
    assert strict.verdict == "violated"
    assert [f.boot for f in strict.findings if f.kind.value == "attestation_missing"] == [1, 2, 3]


def test_a_debug_policy_launch_is_reported(owner: crypto.PrivateKey) -> None:
    dev, config = _image(owner, boots=1, snp_debug=True)
    report = _verify(dev, owner, _policy(config))
    assert report.verdict == "partial" and _kinds(report) == {"debug_policy"}
    assert report.boots[1].attestation.debug  # type: ignore[union-attr]
    assert report.attested_boots() == []


def test_another_svsm_build_is_an_unexpected_measurement(owner: crypto.PrivateKey) -> None:
    dev, config = _image(owner, boots=2, snp=SnpPlatform(CHIP, build="host's own build"))
    report = _verify(dev, owner, _policy(config))
    assert report.verdict == "violated" and _kinds(report) == {"measurement_unexpected"}
    unchecked = _verify(dev, owner, _policy(config, measured=False))
    assert unchecked.verdict == "intact" and "not checked" in unchecked.origin()


def _forge_boot(dev: MemoryDevice, config: LaunchConfig, evidence: Evidence | None) -> LogWriter:
    """The host writes a boot of its own: it holds the owner's public key, nothing else."""
    w = LogWriter(dev, config.streams(), list(config.owners), attester=lambda _rd: evidence)
    for sid in w.streams:
        from svsmlog.records import Level, Record

        w.append(sid, Record(1_000, Level.ERROR, "attest", "SVSM", "attestation failed", None, ()))
    w.close()
    return w


def _evidence_of(dev: MemoryDevice, boot: int) -> Evidence:
    """A genuine boot's report and certificate, as anyone reading the image sees them."""
    from svsmlog.codec import decode_clear_section, decode_frame_header
    from svsmlog.volume import key_dir_slot

    raw = dev.read(key_dir_slot(boot), 7)
    h = decode_frame_header(raw)
    items = decode_clear_section(raw[84 : 84 + h.clear_len])
    report = next(e.sealed for e in items if e.kind == 3)[:0x4A0]
    return Evidence(report, tuple(e.sealed for e in items if e.kind == 4))


def test_a_boot_forged_with_the_owners_public_key_is_not_intact(owner: crypto.PrivateKey) -> None:
    dev, config = _image(owner, boots=2)
    _forge_boot(dev, config, None)
    report = _verify(dev, owner, _policy(config))
    assert report.verdict == "partial" and _kinds(report) == {"unattested"}
    assert [f.boot for f in report.findings if f.kind.value == "unattested"] == [3]
    assert _verify(dev, owner, _policy(config, require=True)).verdict == "violated"


def test_a_genuine_report_moved_to_a_forged_boot_is_misplaced(owner: crypto.PrivateKey) -> None:
    dev, config = _image(owner, boots=2)
    _forge_boot(dev, config, _evidence_of(dev, 2))
    report = _verify(dev, owner, _policy(config))
    assert report.verdict == "violated" and _kinds(report) == {"attestation_misplaced"}
    assert report.boots[3].attestation.status == "misplaced"  # type: ignore[union-attr]
    assert report.attested_boots() == [1, 2]


def test_a_genuine_report_of_another_volume_is_misplaced(owner: crypto.PrivateKey) -> None:
    other, _ = _image(owner, boots=1)
    dev, config = _image(owner, boots=1)
    _forge_boot(dev, config, _evidence_of(other, 1))
    report = _verify(dev, owner, _policy(config))
    assert _kinds(report) == {"attestation_misplaced"}


def test_the_guest_oss_attestation_protocol_report_is_misplaced(owner: crypto.PrivateKey) -> None:
    """A VMPL0 report the SVSM made for the guest OS: REPORT_DATA = SHA-512(nonce || manifest)."""
    dev, config = _image(owner, boots=1)
    nonce, manifest = b"\x01" * 32, b"services manifest"
    guest = CHIP.report(crypto.sha512(nonce, manifest), vmpl=0, measurement=launch_measurement(config))
    _forge_boot(dev, config, Evidence(guest, (CHIP.vcek_der,)))
    report = _verify(dev, owner, _policy(config))
    assert _kinds(report) == {"attestation_misplaced"}


def test_a_vmpl1_report_over_the_right_commitment_is_invalid(owner: crypto.PrivateKey) -> None:
    """The guest OS can ask the AMD-SP itself, with any REPORT_DATA, but only from VMPL >= 1."""
    dev, config = _image(owner, boots=1)

    def vmpl1(report_data: bytes) -> Evidence:
        return Evidence(CHIP.report(report_data, vmpl=1, measurement=launch_measurement(config)),
                        (CHIP.vcek_der,))

    w = LogWriter(dev, config.streams(), list(config.owners), attester=vmpl1)
    w.close()
    report = _verify(dev, owner, _policy(config))
    assert _kinds(report) == {"attestation_invalid"}
    assert "VMPL" in next(f.detail for f in report.findings if f.kind.value == "attestation_invalid")


def test_report_data_commits_to_volume_boot_envelopes_and_grants() -> None:
    base = boot_report_data(b"v" * 16, 1, b"\1\0env", [b"g" * 32])
    assert len(base) == 64
    for changed in (boot_report_data(b"w" * 16, 1, b"\1\0env", [b"g" * 32]),
                    boot_report_data(b"v" * 16, 2, b"\1\0env", [b"g" * 32]),
                    boot_report_data(b"v" * 16, 1, b"\1\0enw", [b"g" * 32]),
                    boot_report_data(b"v" * 16, 1, b"\1\0env", [b"h" * 32]),
                    boot_report_data(b"v" * 16, 1, b"\1\0env", [b"g" * 32, b"g" * 32])):
        assert changed != base


def test_the_cli_checks_attestation_and_shows_it(tmp_path: Path) -> None:
    key = tmp_path / "owner.key"
    run("keygen", "-o", key)
    img, amd = tmp_path / "d.img", tmp_path / "amd"
    run("simulate", "--recipient", tmp_path / "owner.pub", "--image", img, "--scenario", "report-refused",
        "--attest", "--attest-out", amd)
    m = (amd / "measurement.hex").read_text().strip()
    chain = amd / "TEST-ONLY-amd-chain.pem"
    d = run_json("verify", img, "-k", key, "--trust-root", chain, "--measurement", m, "--json", code=4)
    assert d["verdict"] == "partial" and d["origin"]["attested_boots"] == [1, 3]
    assert [b["attestation"]["status"] for b in d["boots"]] == ["attested", "unattested", "attested"]
    text = run("verify", img, "-k", key, "--trust-root", chain, "--measurement", m, code=4).stdout
    assert "2 of 3 boot(s) attested" in text and "not attested" in text
    strict = run("verify", img, "-k", key, "--trust-root", chain, "--measurement", m,
                 "--require-attestation", "--json", code=1)
    assert "attestation_missing" in {f["kind"] for f in json.loads(strict.stdout)["findings"]}
    bad = run("verify", img, "-k", key, "--require-attestation", code=2)
    assert "--require-attestation needs --measurement" in bad.stderr
    assert run("verify", img, "-k", key, "--measurement", "abc", code=2).stderr.count("\n") == 1
