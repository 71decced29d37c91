"""The vectors, both ways: our writer reproduces every writer vector byte for byte, and
our reader gives every vector the verdict and finding kinds its label states."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest

from svsmlog.anchor import Anchor
from svsmlog.device import SECTOR, MemoryDevice
from svsmlog.vectors import run_writer_vector, vector_key, writer_vectors
from svsmlog.verify import Keyring, Verifier

VECTORS = Path(__file__).resolve().parent.parent / "formats" / "vectors"
ALL = sorted(p.stem for p in VECTORS.glob("*.json"))
WRITER = sorted(n for n in ALL if "inputs" in json.loads((VECTORS / f"{n}.json").read_text()))


def load(name: str) -> dict:
    return json.loads((VECTORS / f"{name}.json").read_text())


def test_every_generated_vector_is_committed() -> None:
    assert {v["name"] for v in writer_vectors()} <= set(WRITER)
    assert len(ALL) >= 15


@pytest.mark.parametrize("name", WRITER)
def test_writer_reproduces_vector(name: str) -> None:
    vec = load(name)
    image, anchors = run_writer_vector(copy.deepcopy(vec), record_envelopes=False)
    expected = (VECTORS / vec["image"]).read_bytes()
    assert hashlib.sha256(expected).hexdigest() == vec["image_sha256"]
    assert image == expected
    assert [json.loads(a.to_json()) for a in anchors] == vec["anchors"]


@pytest.mark.parametrize("name", ALL)
def test_reader_gives_labelled_verdict(name: str) -> None:
    vec = load(name)
    image = (VECTORS / vec["image"]).read_bytes()
    labels = [vec["expect"], *vec.get("also", [])]
    anchor = Anchor.from_json(json.dumps(vec["anchor"])) if vec.get("anchor") else None
    for label in labels:
        dev = MemoryDevice(len(image) // SECTOR, image)
        v = Verifier(
            dev.read, dev.sector_count, Keyring([vector_key(k) for k in label.get("key", ["owner"])])
        )
        report = v.run(anchor)
        assert report.verdict == label["verdict"]
        assert {f.kind.value for f in report.findings} == set(label["kinds"])
        if "at" in label:
            at = label["at"]
            assert any(
                (f.kind.value, f.stream, f.boot, f.seq) == (at["kind"], at["stream"], at["boot"], at["seq"])
                for f in report.findings
            ), [f.as_json() for f in report.findings]
        if "records" in label:
            assert [r.record.message for r in v.records()] == label["records"]


def test_a_changed_envelope_input_changes_the_image() -> None:
    """The envelopes really are inputs: the writer uses them, it does not re-seal."""
    vec = load("basic-x25519")
    slot = next(iter(vec["inputs"]["envelopes"]))
    sealed = bytes.fromhex(vec["inputs"]["envelopes"][slot])
    vec["inputs"]["envelopes"][slot] = (bytes([sealed[0] ^ 0xFF]) + sealed[1:]).hex()
    image, _ = run_writer_vector(vec)
    assert image != (VECTORS / "basic-x25519.img").read_bytes()
