"""The demo set: generated reproducibly, every image with the verdict its README states."""

from __future__ import annotations

from pathlib import Path

from svsmlog import crypto
from svsmlog.model.samples import generate, main
from svsmlog.model.testkeys import KEY_KINDS, key_file_names, sample_key

NAMES = ["clean-multiboot", "crash-torn", "vtpm-panic", "attestation-failure", "debug-mode", "tampered"]


def test_samples_generate_reproducibly(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    samples = generate(a)
    assert main([str(b)]) == 0
    assert [s.name for s in samples] == NAMES
    verdicts = {s.name: s.report.verdict for s in samples if s.report}
    assert verdicts == {n: ("violated" if n == "tampered" else "intact") for n in NAMES}
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
