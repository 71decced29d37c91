"""The vectors, both ways (formats/vectors/README.md): our writer reproduces every writer
vector byte for byte, its trace included; every reader vector is its base image with the
stated mutation; our reader gives every label its verdict and finding kinds; and every
finding kind and every verdict is the label of some vector."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from svsmlog import vectors as V
from svsmlog.report import Kind, Verdict

VECTORS = Path(__file__).resolve().parent.parent / "formats" / "vectors"
ALL = sorted(p.stem for p in VECTORS.glob("*.json"))
WRITER = sorted(n for n in ALL if "inputs" in json.loads((VECTORS / f"{n}.json").read_text()))
READER = sorted(set(ALL) - set(WRITER))

# The fields README.md defines; a vector using another one is not replayable from the README.
OP_FIELDS = {
    "append": {"op", "stream", "record"},
    "flush": {"op", "stream", "note"},
    "grant": {"op", "stream", "recipient", "t_ns"},
    "close": {"op"},
    "anchor": {"op"},
}
RECORD_FIELDS = {"t_ns", "level", "service", "component", "message", "target", "fields", "panic"}
BOOT_FIELDS = {"boot_secret", "owners", "policy", "grants_at_boot", "tear", "attestation", "ops"}
POLICY_FIELDS = {"config_digest", "host_time_ns", "debug_ceiling", "debug_enabled", "layout", "min_level"}
LABEL_FIELDS = {"verdict", "kinds", "key", "at", "records", "verify", "attested"}
VERIFY_FIELDS = {"trust_roots", "measurements", "require_attestation"}


def load(name: str) -> dict[str, Any]:
    return json.loads((VECTORS / f"{name}.json").read_text())


def image(vec: dict[str, Any]) -> bytes:
    data = (VECTORS / vec["image"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == vec["image_sha256"]
    return data


def test_every_generated_vector_is_committed() -> None:
    made = {v["name"] for v in V.writer_vectors()} | {m["name"] for m, _ in V.contract_reader_vectors()}
    made |= {m["name"] for m, _ in _reader_cases().values()}
    assert made <= set(ALL)
    assert {load(n)["base"] for n in READER} <= set(WRITER)


@pytest.mark.parametrize("name", WRITER)
def test_writer_reproduces_vector(name: str) -> None:
    vec = load(name)
    replay = V.replay_writer_vector(copy.deepcopy(vec), record_envelopes=False)
    assert replay.image == image(vec)
    assert [json.loads(a.to_json()) for a in replay.anchors] == vec["anchors"]
    assert V.trace(vec, replay) == vec["trace"]


@pytest.mark.parametrize("name", WRITER)
def test_writer_vector_uses_only_documented_fields(name: str) -> None:
    inp = load(name)["inputs"]
    assert set(inp) <= {"sector_count", "volume_id", "owners", "streams", "boots", "envelopes"}
    for boot in inp["boots"]:
        assert set(boot) <= BOOT_FIELDS
        assert set(boot.get("policy", {})) <= POLICY_FIELDS
        for op in boot["ops"]:
            assert set(op) <= OP_FIELDS[op["op"]], op
            if op["op"] == "append":
                assert set(op["record"]) <= RECORD_FIELDS
        if "attestation" in boot:
            assert set(boot["attestation"]) <= {"report", "certs"}


def _reader_cases() -> dict[str, tuple[dict[str, Any], V.Mutation]]:
    images = {n: image(load(n)) for n in WRITER}
    cases = [*V.reader_vectors(images), *V.contract_reader_vectors(), *V.attestation_reader_vectors(images)]
    return {m["name"]: (m, f) for m, f in cases}


@pytest.mark.parametrize("name", [n for n in READER if not n.startswith("truncate-tail")])
def test_reader_vector_is_its_base_mutated(name: str) -> None:
    vec = load(name)
    meta, mutate = _reader_cases()[name]
    base = load(vec["base"])
    secrets = {b["boot"]: bytes.fromhex(b["boot_secret"]) for b in base["trace"]["boots"]}
    ctx: dict[str, Any] = {"secrets": secrets}
    if "forgery" in vec:
        ctx["forgery"] = vec["forgery"]
        ctx["book"] = V.EnvelopeBook(dict(vec["forgery"]["envelopes"]), record=False)
    img = bytearray(image(base))
    mutate(img, ctx)
    assert bytes(img) == image(vec)
    assert meta["expect"] == vec["expect"]
    assert meta.get("verify") == vec.get("verify")


def _labels(name: str) -> list[tuple[str, dict[str, Any], bool]]:
    vec = load(name)
    defect = "known_reader_defect" in vec
    return [(name, label, defect and i == 0) for i, label in enumerate(V.labels(vec))]


LABELS = [x for n in ALL for x in _labels(n)]


@pytest.mark.parametrize(
    ("name", "label", "defect"),
    LABELS,
    ids=[f"{n}-{'+'.join(label.get('key', ['owner']))}" for n, label, _ in LABELS],
)
def test_reader_gives_labelled_verdict(name: str, label: dict[str, Any], defect: bool) -> None:
    vec = load(name)
    assert set(label) <= LABEL_FIELDS
    verify = vec.get("verify")
    for block in (verify, label.get("verify")):
        assert set(block or {}) <= VERIFY_FIELDS
    img, anchor = image(vec), V.vector_anchor(vec)
    if defect:
        # The label follows the rules; our reader is known to say otherwise (the report of the
        # vectors work names each case). It must say exactly that, until it is fixed.
        assert V.label_mismatch(img, {**label, **vec["reader_says"], "at": []}, anchor, verify) is None
        pytest.xfail(vec["known_reader_defect"])
    assert V.label_mismatch(img, label, anchor, verify) is None


def test_every_kind_and_verdict_has_a_vector() -> None:
    """A finding kind (or verdict) no vector labels is one a second implementation cannot test."""
    kinds: set[str] = set()
    verdicts: set[str] = set()
    for _, label, defect in LABELS:
        if not defect:  # only labels our reader is checked against count
            kinds |= set(label["kinds"])
            verdicts.add(label["verdict"])
    assert {k.value for k in Kind} - kinds == set()
    assert {v.value for v in Verdict} - verdicts == set()


def test_a_changed_envelope_input_changes_the_image() -> None:
    """The envelopes really are inputs: the writer uses them, it does not re-seal."""
    vec = load("basic-x25519")
    slot = next(iter(vec["inputs"]["envelopes"]))
    sealed = bytes.fromhex(vec["inputs"]["envelopes"][slot])
    vec["inputs"]["envelopes"][slot] = (bytes([sealed[0] ^ 0xFF]) + sealed[1:]).hex()
    replay = V.replay_writer_vector(vec)
    assert replay.image != image(load("basic-x25519"))


def test_a_torn_boot_start_takes_a_boot_number() -> None:
    """torn-boot-start: the torn boot is boot 2, and the boot after it boot 3."""
    vec = load("torn-boot-start")
    replay = V.replay_writer_vector(copy.deepcopy(vec))
    assert replay.boots == [1, 2, 3]
    torn = [w for w in vec["trace"]["writes"] if w.get("torn")]
    assert [(w["boot"], w["index"]) for w in torn] == [(2, 1)]


def test_an_attested_boot_uses_its_report_input() -> None:
    """The report and certificates are inputs the writer puts in its clear sections as given;
    a report of another REPORT_DATA than the one the writer computes is refused."""
    vec = load("attested-boot")
    att = vec["inputs"]["boots"][0]["attestation"]
    cert = bytes.fromhex(att["certs"][0])
    changed = copy.deepcopy(vec)
    changed["inputs"]["boots"][0]["attestation"]["certs"][0] = (cert[:-1] + bytes([cert[-1] ^ 1])).hex()
    assert V.replay_writer_vector(changed).image != image(vec)
    report = bytes.fromhex(att["report"])
    changed = copy.deepcopy(vec)
    changed["inputs"]["boots"][0]["attestation"]["report"] = (report[:0x50] + bytes(64) + report[0x90:]).hex()
    with pytest.raises(ValueError, match="REPORT_DATA"):
        V.replay_writer_vector(changed)


def test_attested_boots_trace_their_commitment() -> None:
    """Every attested boot's trace names the REPORT_DATA its report carries."""
    for name in WRITER:
        vec = load(name)
        for boot, traced in zip(vec["inputs"]["boots"], vec["trace"]["boots"], strict=True):
            if "attestation" not in boot:
                assert "attestation" not in traced
                continue
            report = bytes.fromhex(boot["attestation"]["report"])
            assert traced["attestation"]["report_data"] == V.report_data_of(report).hex()
