"""The demo set: generated reproducibly, every image with the verdict its README states."""

from __future__ import annotations

from pathlib import Path

from svsmlog import crypto
from svsmlog.model.samples import generate, main
from svsmlog.model.testkeys import KEY_KINDS, key_file_names, sample_key
from svsmlog.origin import OriginPolicy

NAMES = [
    "clean-multiboot",
    "crash-torn",
    "vtpm-panic",
    "attestation-failure",
    "debug-mode",
    "tampered",
    "report-refused",
]
VERDICTS = {"tampered": "violated", "report-refused": "partial"}


def test_samples_generate_reproducibly(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    samples = generate(a)
    assert main([str(b)]) == 0
    assert [s.name for s in samples] == NAMES
    verdicts = {s.name: s.report.verdict for s in samples if s.report}
    assert verdicts == {n: VERDICTS.get(n, "intact") for n in NAMES}
    attested = {s.name: s.report.attested_boots() for s in samples if s.report}
    assert attested == {n: {"vtpm-panic": [1], "report-refused": [1, 3]}.get(n, []) for n in NAMES}
    for f in ("TEST-ONLY-amd-chain.pem", "measurement.hex"):  # what --trust-root and --measurement take
        assert (a / f).read_bytes() == (b / f).read_bytes()
    for n in NAMES:
        assert (a / f"{n}.img").stat().st_size <= 4 << 20
        # Same records, seqs and truth; different image bytes (fresh secrets).
        assert (a / f"{n}.truth.jsonl").read_bytes() == (b / f"{n}.truth.jsonl").read_bytes()
        assert (a / f"{n}.img").read_bytes() != (b / f"{n}.img").read_bytes()
        assert (a / f"{n}.anchor.json").exists()
    assert (a / "README.md").read_text() == (b / "README.md").read_text()
    readme = (a / "README.md").read_text()
    assert "TEST-ONLY" in readme and all(f"`{n}.img`" in readme for n in NAMES)
    assert sum(p.stat().st_size for p in a.iterdir()) < 10 << 20


def test_test_only_keys(tmp_path: Path) -> None:
    generate(tmp_path)
    for name, kem in KEY_KINDS.items():
        priv, pub = key_file_names(name)
        assert priv.startswith("TEST-ONLY-")
        k = crypto.load_private_key((tmp_path / priv).read_bytes())
        assert k.public.kem_name == kem
        public = crypto.load_public_key((tmp_path / pub).read_bytes())
        assert public.key_id == k.key_id == sample_key(name).key_id


def test_committed_samples_are_attested_as_their_readme_says() -> None:
    """The committed demo image and the refused-report sample, verified as ``make demo`` does
    (the TEST-ONLY chain, the committed measurement)."""
    from svsmlog.device import FileDevice
    from svsmlog.model.truth import read_back

    root = Path(__file__).resolve().parent.parent / "samples"
    certs = crypto.load_certificates((root / "TEST-ONLY-amd-chain.pem").read_bytes())
    origin = OriginPolicy(
        roots=tuple(c for c in certs if c.self_issued),
        certs=tuple(c for c in certs if not c.self_issued),
        measurements=frozenset({bytes.fromhex((root / "measurement.hex").read_text().strip())}),
    )
    for name, verdict, attested in (("vtpm-panic", "intact", [1]), ("report-refused", "partial", [1, 3])):
        dev = FileDevice(root / f"{name}.img")
        try:
            rep, _ = read_back(dev.read, dev.sector_count, [sample_key("owner")], None, origin)
        finally:
            dev.close()
        assert (rep.verdict, rep.attested_boots()) == (verdict, attested), name
