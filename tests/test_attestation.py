"""SEV-SNP attestation reports: the parser, the offline verifier, the simulated AMD-SP and
``svsmlog attest``.

Ground truth is tests/snp-testdata/ (real reports and AMD certificates; see its README for
where each came from). Every mutation below says which checks must fail and why: a flipped
signed bit breaks the signature, and sometimes also a binding the signature would have
vouched for (TCB, CHIP_ID); a flipped unsigned bit breaks nothing cryptographic and is caught
only by the reserved-bytes check.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from svsmlog import crypto
from svsmlog.attestation import (
    REPORT_LEN,
    ReportError,
    amd_intermediates,
    parse_report,
    pinned_roots,
    verify_report,
)
from svsmlog.attestation import vcek as vcek_ext
from svsmlog.attestation.fields import Policy, Product, product_from_cpuid
from svsmlog.attestation.report import ATTESTATION_REPORT, OFFSETS, SIGNED_LEN, VERSIONS
from svsmlog.cli import main
from svsmlog.model.amdsp import TestPlatform

DATA = Path(__file__).resolve().parent / "snp-testdata"
REPORTS = DATA / "reports"
PACKAGE_ROOTS = Path(__file__).resolve().parent.parent / "svsmlog" / "attestation" / "roots"

# name -> (valid, product, vmpl, signing key, debug), as the README says and the verifier must find
REAL = {
    "milan-v2-virtee": (True, Product.MILAN, 0, "vcek", False),
    "milan-v2-debug-policy": (True, Product.MILAN, 0, "vcek", True),
    "genoa-v5-oak": (True, Product.GENOA, 0, "vcek", False),
    "milan-v3-vlek": (True, Product.MILAN, 1, "vlek", False),
}


def raw(name: str) -> bytes:
    return (REPORTS / name / "report.bin").read_bytes()


def cert_path(name: str) -> Path:
    return next((REPORTS / name).glob("v*.der"))


def certs(name: str) -> list[crypto.Certificate]:
    return crypto.load_certificates(cert_path(name).read_bytes())


def checks(data: bytes, leaf: str, roots: list[crypto.Certificate] | None = None, **kw: object) -> set[str]:
    v = verify_report(parse_report(data), certs(leaf), roots, **kw)  # type: ignore[arg-type]
    return {r.check for r in v.reasons}


def flip(data: bytes, offset: int, bit: int = 0) -> bytes:
    b = bytearray(data)
    b[offset] ^= 1 << bit
    return bytes(b)


# --------------------------------------------------------------------------- real reports


@pytest.mark.parametrize("name", sorted(REAL))
def test_every_real_report_verifies(name: str) -> None:
    valid, product, vmpl, key, debug = REAL[name]
    v = verify_report(parse_report(raw(name)), certs(name))
    assert v.reasons == [] and v.valid is valid
    assert (v.product, v.report.vmpl, v.signing_key, v.policy.debug) == (product, vmpl, key, debug)
    assert [role for role, _ in v.chain] == [key, "asvk" if key == "vlek" else "ask", "ark"]


def test_product_comes_from_cpuid_from_v3_and_from_the_root_for_v2() -> None:
    assert verify_report(parse_report(raw("genoa-v5-oak")), certs("genoa-v5-oak")).product_source == "cpuid"
    v2 = verify_report(parse_report(raw("milan-v2-virtee")), certs("milan-v2-virtee"))
    assert v2.product_source == "root ARK-Milan"
    assert product_from_cpuid(0x19, 0x01) is Product.MILAN
    assert product_from_cpuid(0x19, 0x11) is Product.GENOA and product_from_cpuid(0x19, 0xA0) is Product.GENOA
    assert product_from_cpuid(0x1A, 0x02) is Product.TURIN
    assert product_from_cpuid(0x17, 0x31) is None


def test_decoded_fields_of_real_reports() -> None:
    dbg = verify_report(parse_report(raw("milan-v2-debug-policy")), certs("milan-v2-debug-policy"))
    assert dbg.policy == Policy.decode(0xB0000) and dbg.policy.debug and dbg.policy.smt
    assert dbg.policy.findings() == [] and any("DEBUG" in n for n in dbg.notes)
    genoa = verify_report(parse_report(raw("genoa-v5-oak")), certs("genoa-v5-oak"))
    assert genoa.tcb["reported"].components() == {"boot_loader": 10, "tee": 0, "snp": 25, "microcode": 84}
    assert genoa.report.launch_mit_vector == 1 and genoa.report.current_mit_vector == 1
    assert genoa.platform_info["smt_en"] and genoa.platform_info["alias_check_complete"]
    vlek = verify_report(parse_report(raw("milan-v3-vlek")), certs("milan-v3-vlek"))
    assert vlek.tcb["reported"].microcode == 217 and not any(vlek.report.chip_id)
    assert any("VLEK" in n for n in vlek.notes)


def test_packaged_roots_are_the_public_amd_roots() -> None:
    for product in ("milan", "genoa", "turin"):
        for kind in ("ark", "ask"):
            assert (PACKAGE_ROOTS / f"{kind}-{product}.pem").read_bytes() == \
                (DATA / "roots" / f"{kind}-{product}.pem").read_bytes()
        kds = (DATA / "roots" / f"{product}-ask-ark-asvk.pem").read_bytes()
        bundle = {c.der for c in crypto.load_certificates(kds)}
        asvk = crypto.load_certificates((PACKAGE_ROOTS / f"asvk-{product}.pem").read_bytes())[0]
        assert asvk.der in bundle and asvk.subject_cn == f"SEV-VLEK-{product.capitalize()}"
    for ark in pinned_roots():
        assert ark.self_issued and crypto.rsa_pss_sha384_signed_by(ark, ark)
        assert ark.subject_cn.startswith("ARK-")
    assert len(amd_intermediates()) == 6


def test_a_decoy_ask_ahead_of_the_vcek_does_not_hide_amds_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    """The host supplies the certificates of the SVSM's extended report request: it can put a
    certificate of AMD's real Genoa ASK key under an ARK of its own ahead of the VCEK. That
    decoy verifies the VCEK as the ASK does; the chain through AMD's ASK must still be found."""
    import svsmlog.attestation.verify as av
    from svsmlog.model.amdsp import decoy_ask, new_chain

    genoa_ask = next(c for c in amd_intermediates() if c.subject_cn == "SEV-Genoa")
    decoy = decoy_ask(genoa_ask, new_chain())
    report, vcek = parse_report(raw("genoa-v5-oak")), certs("genoa-v5-oak")
    assert crypto.rsa_pss_sha384_signed_by(vcek[0], decoy)  # the decoy does sign the VCEK
    v = verify_report(report, [decoy, *vcek])
    assert v.valid and [c.subject_cn for _, c in v.chain[1:]] == ["SEV-Genoa", "ARK-Genoa"]
    assert v.chain[1][1].der == genoa_ask.der

    def first_issuer(leaf: crypto.Certificate, candidates: list[crypto.Certificate],
                     trust: list[crypto.Certificate]) -> tuple[object, object]:
        inter = av._issuer_of(leaf, candidates)
        return inter, (av._issuer_of(inter, trust) if inter is not None else None)

    monkeypatch.setattr(av, "_chain_up", first_issuer)  # the search before: the first issuer found
    assert {r.check for r in verify_report(report, [decoy, *vcek]).reasons} == {"chain"}


def test_shipped_intermediates_are_read_only_when_the_given_certificates_lack_the_issuer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import svsmlog.attestation.verify as av

    calls: list[int] = []
    shipped = av.amd_intermediates

    def counted() -> tuple[crypto.Certificate, ...]:
        calls.append(1)
        return shipped()

    monkeypatch.setattr(av, "amd_intermediates", counted)
    kds = crypto.load_certificates((DATA / "roots" / "genoa-ask-ark-asvk.pem").read_bytes())
    given = verify_report(parse_report(raw("genoa-v5-oak")), certs("genoa-v5-oak") + kds)
    assert given.valid and not calls
    alone = verify_report(parse_report(raw("genoa-v5-oak")), certs("genoa-v5-oak"))
    assert alone.valid and calls == [1]
    assert [c.der for _, c in given.chain] == [c.der for _, c in alone.chain]  # the same chain either way


# --------------------------------------------------------------------------- the structure


@pytest.mark.parametrize("version", VERSIONS)
def test_fields_sit_at_their_abi_offsets(version: int) -> None:
    pattern = bytearray((i * 7 + 3) & 0xFF for i in range(REPORT_LEN))
    pattern[0:4] = version.to_bytes(4, "little")
    r = parse_report(bytes(pattern))
    for name, value in r.fields.items():
        at = OFFSETS[name]
        if isinstance(value, bytes):
            assert value == bytes(pattern[at:at + len(value)]), name
        else:
            width = {"version": 4, "guest_svn": 4, "vmpl": 4, "signature_algo": 4, "signer_info": 4,
                     "policy": 8, "platform_info": 8, "launch_mit_vector": 8,
                     "current_mit_vector": 8}.get(name, 1)
            assert value == int.from_bytes(pattern[at:at + width], "little"), name
    present = set(r.fields)
    assert ("cpuid_fam_id" in present) is (version >= 3)
    assert ("reserved_188" in present) is (version == 2)
    assert ("launch_mit_vector" in present) is (version >= 5)


@pytest.mark.parametrize("name", sorted(REAL))
def test_the_declaration_covers_every_byte(name: str) -> None:
    r = parse_report(raw(name))
    absent = dict.fromkeys(OFFSETS)  # fields of other versions: None, as If() parses them
    assert ATTESTATION_REPORT.build({**absent, **r.fields}) == r.raw  # nothing skipped or invented
    assert r.signed_bytes == r.raw[:0x2A0] and SIGNED_LEN == 0x2A0


def construct_fields(data: bytes) -> dict[str, object]:
    """What the declaration parses ``data`` into, as ``Report.fields`` holds it."""
    parsed = ATTESTATION_REPORT.parse(data)
    return {k: v for k, v in parsed.items() if not k.startswith("_") and v is not None}


@pytest.mark.parametrize("name", sorted(REAL))
def test_parse_report_reads_real_reports_as_the_declaration_does(name: str) -> None:
    r = parse_report(raw(name))
    fields = construct_fields(r.raw)
    assert list(r.fields.items()) == list(fields.items())  # same values, in the same order


@settings(max_examples=300, deadline=None)
@given(version=st.sampled_from(VERSIONS), body=st.binary(min_size=REPORT_LEN - 4, max_size=REPORT_LEN - 4))
def test_parse_report_reads_any_bytes_as_the_declaration_does(version: int, body: bytes) -> None:
    data = version.to_bytes(4, "little") + body
    r = parse_report(data)
    assert list(r.fields.items()) == list(construct_fields(data).items())
    assert {type(v) for v in r.fields.values()} <= {int, bytes}


def test_parse_report_does_not_import_construct() -> None:
    code = ("import sys; from svsmlog.attestation.report import parse_report; "
            f"parse_report(bytes.fromhex({raw('genoa-v5-oak').hex()!r})); "
            "assert 'construct' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def test_hex_text_is_accepted_with_any_whitespace() -> None:
    data = raw("milan-v2-virtee")
    h = data.hex()
    wrapped = "\n".join(h[i:i + 60] for i in range(0, len(h), 60)).upper() + "\n"
    spaced = " ".join(h[i:i + 2] for i in range(0, len(h), 2))
    for text in (h, wrapped, spaced, "\t" + h + "\r\n"):
        assert parse_report(text.encode()).raw == data
    with pytest.raises(ReportError, match="odd number"):
        parse_report(h[:-1].encode())


@pytest.mark.parametrize("length", [0, 1, 672, REPORT_LEN - 1, REPORT_LEN + 1, 2 * REPORT_LEN])
def test_wrong_lengths_are_refused(length: int) -> None:
    data = (raw("milan-v2-virtee") * 2)[:length]
    with pytest.raises(ReportError, match=f"^{length} bytes: too (short|long)"):
        parse_report(data)


@pytest.mark.parametrize("version", [0, 1, 4, 6, 7, 0xFFFFFFFF])
def test_unknown_versions_are_refused(version: int) -> None:
    data = version.to_bytes(4, "little") + raw("milan-v2-virtee")[4:]
    with pytest.raises(ReportError, match=f"version {version} is unknown.*2, 3, 5"):
        parse_report(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(min_size=REPORT_LEN, max_size=REPORT_LEN), st.sampled_from([None, 2, 3, 5]))
def test_parser_and_verifier_never_raise_anything_else(data: bytes, version: int | None) -> None:
    if version is not None:  # most random versions are unknown: force known ones half the time
        data = version.to_bytes(4, "little") + data[4:]
    try:
        r = parse_report(data)
    except ReportError:
        return
    v = verify_report(r, certs("milan-v2-virtee"))
    assert not v.valid  # a random report is never signed by AMD
    json.dumps(v.as_json())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3 * REPORT_LEN))
def test_parser_on_any_length(data: bytes) -> None:
    with contextlib.suppress(ReportError):
        parse_report(data)


# --------------------------------------------------------------------------- mutations


SIGNED_FLIPS = {  # field: (offset, bit, the checks that must fail)
    "version 2->3": (0x000, 0, {"signature", "product"}),  # now a v3 with CPUID 0/0: no processor
    "guest_svn": (0x004, 0, {"signature"}),
    "policy.debug": (0x00A, 3, {"signature"}),
    "family_id": (0x010, 0, {"signature"}),
    "vmpl": (0x030, 0, {"signature"}),
    "platform_info": (0x040, 1, {"signature"}),
    "signer_info VCEK->VLEK": (0x048, 2, {"signature", "signer"}),
    "reserved 0x04C": (0x04C, 0, {"signature", "reserved"}),
    "report_data": (0x050, 7, {"signature"}),
    "measurement": (0x090, 0, {"signature"}),
    "host_data": (0x0C0, 0, {"signature"}),
    "reported_tcb.boot_loader": (0x180, 0, {"signature", "tcb"}),
    "reported_tcb.microcode": (0x187, 0, {"signature", "tcb"}),
    "chip_id": (0x1A0, 0, {"signature", "chip-id"}),
    "committed_tcb": (0x1E0, 0, {"signature"}),
    "reserved 0x208": (0x208, 0, {"signature", "reserved"}),
    "signature R": (0x2A0, 0, {"signature"}),
    "signature S": (0x2E8 + 10, 4, {"signature"}),
}


@pytest.mark.parametrize("field", sorted(SIGNED_FLIPS))
def test_a_flipped_signed_bit_is_caught_and_named(field: str) -> None:
    offset, bit, expected = SIGNED_FLIPS[field]
    assert checks(flip(raw("milan-v2-virtee"), offset, bit), "milan-v2-virtee") == expected


def test_flipping_the_debug_bit_shows_debug_but_fails_the_signature() -> None:
    v = verify_report(parse_report(flip(raw("milan-v2-virtee"), 0x00A, 3)), certs("milan-v2-virtee"))
    assert v.policy.debug and {r.check for r in v.reasons} == {"signature"}


@pytest.mark.parametrize("offset", [0x330, 0x400, 0x49F])
def test_a_flipped_unsigned_bit_is_only_a_reserved_bytes_finding(offset: int) -> None:
    v = verify_report(parse_report(flip(raw("genoa-v5-oak"), offset)), certs("genoa-v5-oak"))
    [reason] = v.reasons  # the signature still verifies: these bytes are outside it
    assert reason.check == "reserved"
    assert "0x330..0x49F (outside the signature)" in reason.detail and f"0x{offset:03X}" in reason.detail


def test_the_vcek_of_another_chip() -> None:
    assert checks(raw("milan-v2-virtee"), "milan-v2-debug-policy") == {"signature", "tcb", "chip-id"}
    # Another product's VCEK: its root and productName say Milan, the Genoa CPUID does not.
    assert checks(raw("genoa-v5-oak"), "milan-v2-virtee") == {"signature", "tcb", "chip-id", "product"}


def test_reported_tcb_changed_under_the_real_vcek_names_both_reasons() -> None:
    data = bytearray(raw("milan-v2-virtee"))
    data[0x186] = 9  # snp 8 -> 9
    v = verify_report(parse_report(bytes(data)), certs("milan-v2-virtee"))
    assert {r.check for r in v.reasons} == {"signature", "tcb"}
    [tcb] = [r for r in v.reasons if r.check == "tcb"]
    assert "issued for TCB boot_loader=3 tee=0 snp=8 microcode=115" in tcb.detail
    assert "snp=9" in tcb.detail and "snp differs" in tcb.detail


def test_wrong_root() -> None:
    genoa_ark = crypto.load_certificates((DATA / "roots" / "ark-genoa.pem").read_bytes())
    assert checks(raw("milan-v2-virtee"), "milan-v2-virtee", genoa_ark) == {"chain"}
    test_ark = crypto.load_certificates(TestPlatform().ark_pem)
    v = verify_report(parse_report(raw("milan-v3-vlek")), certs("milan-v3-vlek"), test_ark)
    [reason] = v.reasons
    assert reason.check == "chain" and "does not chain to a trusted root" in reason.detail
    assert "--trust-root" in reason.detail


def test_a_vlek_must_come_through_the_asvk_and_a_vcek_through_the_ask() -> None:
    milan_ark = crypto.load_certificates((DATA / "roots" / "ark-milan.pem").read_bytes())
    assert checks(raw("milan-v3-vlek"), "milan-v3-vlek", milan_ark) == set()
    # A VLEK report presented with a VCEK: wrong kind of key, and it does not verify.
    assert checks(raw("milan-v3-vlek"), "milan-v2-virtee") == {"signature", "signer", "tcb"}


def test_vmpl0_is_required_only_when_asked() -> None:
    assert checks(raw("milan-v3-vlek"), "milan-v3-vlek") == set()
    assert checks(raw("milan-v3-vlek"), "milan-v3-vlek", require_vmpl0=True) == {"vmpl"}
    assert checks(raw("milan-v2-virtee"), "milan-v2-virtee", require_vmpl0=True) == set()


def test_no_leaf_certificate() -> None:
    ask = crypto.load_certificates((DATA / "roots" / "ask-milan.pem").read_bytes())
    v = verify_report(parse_report(raw("milan-v2-virtee")), ask)
    assert {r.check for r in v.reasons} == {"chain"} and "no VCEK or VLEK" in v.reasons[0].detail


def test_extension_der_helpers() -> None:
    for n in (0, 1, 0x7F, 0x80, 217, 255, 0x1234):
        assert vcek_ext.der_integer(vcek_ext.encode_der_integer(n)) == n
    assert vcek_ext.encode_der_integer(217) == bytes.fromhex("020200d9")
    for bad in ("", "0201", "020181", "02020001", "0401ff", "020300"):
        with pytest.raises(vcek_ext.ExtensionError):
            vcek_ext.der_integer(bytes.fromhex(bad))
    assert vcek_ext.der_ia5string(vcek_ext.encode_der_ia5string("Milan-B0")) == "Milan-B0"


# --------------------------------------------------------------------------- the simulated AMD-SP


@pytest.fixture(scope="module")
def milan() -> TestPlatform:
    return TestPlatform(product="Milan", seed=7)


def model_checks(p: TestPlatform, report: bytes, vcek: bytes | None = None, *, roots: bool = True,
                 **kw: object) -> set[str]:
    cs = crypto.load_certificates(vcek or p.vcek_der) + crypto.load_certificates(p.chain_pems)
    trust = crypto.load_certificates(p.ark_pem) if roots else None
    v = verify_report(parse_report(report), cs, trust, **kw)  # type: ignore[arg-type]
    return {r.check for r in v.reasons}


@pytest.mark.parametrize(("product", "version"), [("Milan", 3), ("Genoa", 5), ("Turin", 5), ("Turin", 3)])
def test_model_reports_verify_under_the_test_root_only(product: str, version: int) -> None:
    p = TestPlatform(product=product, version=version, seed=1)
    report = p.report(bytes(range(64)), measurement=b"\x11" * 48)
    v = verify_report(parse_report(report), crypto.load_certificates(p.vcek.pem() + p.chain_pems),
                      crypto.load_certificates(p.ark_pem))
    assert v.valid and v.product is Product(product) and v.report.version == version
    assert model_checks(p, report, roots=False) == {"chain"}  # AMD's ARKs did not sign the TEST-ONLY ASK


def test_model_names_say_test_only_and_structures_are_amds(milan: TestPlatform) -> None:
    chain = crypto.load_certificates(milan.chain_pems)
    leaf = milan.vcek
    for c in (leaf, *chain):
        assert "TEST-ONLY" in c.subject_cn and "TEST-ONLY" in c.subject
    assert [c.key_type for c in chain] == ["rsa-4096", "rsa-4096"] and leaf.key_type == "ec-secp384r1"
    assert crypto.rsa_pss_sha384_signed_by(leaf, chain[0])
    assert crypto.rsa_pss_sha384_signed_by(chain[0], chain[1])
    assert leaf.extensions[vcek_ext.OID_HWID] == milan.chip_id
    assert vcek_ext.der_integer(leaf.extensions[vcek_ext.TCB_OIDS["microcode"]]) == 213


def test_model_is_deterministic() -> None:
    a, b = TestPlatform(seed=3), TestPlatform(seed=3)
    assert a.report(b"n" * 64) == b.report(b"n" * 64)
    assert a.vcek.extensions == b.vcek.extensions and a.vcek.subject == b.vcek.subject
    assert TestPlatform(seed=4).report(b"n" * 64) != a.report(b"n" * 64)
    turin = TestPlatform(product="Turin")
    assert len(turin.vcek.extensions[vcek_ext.OID_HWID]) == 8 and not any(turin.chip_id[8:])


def test_a_vcek_of_another_tcb(milan: TestPlatform) -> None:
    # The report is signed by this chip's VCEK but claims another TCB: only the TCB binding fails.
    older = {"boot_loader": 3, "tee": 0, "snp": 22, "microcode": 213}
    assert model_checks(milan, milan.report(bytes(64), reported_tcb=older)) == {"tcb"}
    # The same chip at another TCB has another VCEK (AMD derives it from the TCB): presented
    # with it, the report fails the signature and the TCB binding, not the chip binding.
    other = TestPlatform(product="Milan", seed=7, chip_id=milan.chip_id, tcb=older)
    assert model_checks(milan, milan.report(bytes(64)), other.vcek_der) == {"signature", "tcb"}


def test_model_chip_id_masked_and_reserved_policy_bits(milan: TestPlatform) -> None:
    masked = TestPlatform(product="Milan", chip_id=bytes(64))
    v = verify_report(parse_report(masked.report(bytes(64))),
                      crypto.load_certificates(masked.vcek.pem() + masked.chain_pems),
                      crypto.load_certificates(masked.ark_pem))
    assert v.valid and any("masked" in n for n in v.notes)
    assert model_checks(milan, milan.report(bytes(64), policy=0x10000)) == {"format"}  # bit 17 must be 1
    assert model_checks(milan, milan.report(bytes(64), policy=0x30000 | 1 << 40)) == {"format"}


# --------------------------------------------------------------------------- foreign-made certificates


def openssl(*args: str, cwd: Path, input: bytes | None = None) -> bytes:
    return subprocess.run(["openssl", *args], cwd=cwd, input=input, check=True, capture_output=True).stdout


def der_ecdsa_rs(sig: bytes) -> tuple[int, int]:
    """The two INTEGERs of a DER ECDSA-Sig-Value (what ``openssl dgst -sign`` writes)."""
    assert sig[0] == 0x30
    i = 3 if sig[1] == 0x81 else 2
    out = []
    for _ in range(2):
        assert sig[i] == 0x02
        n = sig[i + 1]
        out.append(int.from_bytes(sig[i + 2:i + 2 + n], "big"))
        i += 2 + n
    return out[0], out[1]


PSS = ["-sha384", "-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_mgf1_md:sha384"]


def _openssl_chain(tmp: Path, hwid: bytes, salt: int = 48) -> None:
    pss = [*PSS, "-sigopt", f"rsa_pss_saltlen:{salt}"]
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ark.key", "-out", "ark.pem",
            "-subj", "/CN=openssl TEST-ONLY ARK", "-days", "3650", *pss,
            "-addext", "basicConstraints=critical,CA:true", cwd=tmp)
    openssl("req", "-new", "-newkey", "rsa:2048", "-nodes", "-keyout", "ask.key", "-out", "ask.csr",
            "-subj", "/CN=openssl TEST-ONLY ASK", cwd=tmp)
    (tmp / "ask.ext").write_text("basicConstraints=critical,CA:true\n")
    openssl("x509", "-req", "-in", "ask.csr", "-CA", "ark.pem", "-CAkey", "ark.key", "-set_serial", "2",
            "-days", "3650", *pss, "-extfile", "ask.ext", "-out", "ask.pem", cwd=tmp)
    openssl("ecparam", "-name", "secp384r1", "-genkey", "-noout", "-out", "vcek.key", cwd=tmp)
    openssl("req", "-new", "-key", "vcek.key", "-out", "vcek.csr", "-subj", "/CN=openssl TEST-ONLY VCEK",
            cwd=tmp)
    (tmp / "vcek.ext").write_text(
        "1.3.6.1.4.1.3704.1.3.1=DER:02:01:04\n1.3.6.1.4.1.3704.1.3.2=DER:02:01:00\n"
        "1.3.6.1.4.1.3704.1.3.3=DER:02:01:16\n1.3.6.1.4.1.3704.1.3.8=DER:02:02:00:d5\n"
        f"1.3.6.1.4.1.3704.1.4=DER:{':'.join(f'{b:02x}' for b in hwid)}\n")
    openssl("x509", "-req", "-in", "vcek.csr", "-CA", "ask.pem", "-CAkey", "ask.key", "-set_serial", "0",
            "-days", "3650", *pss, "-extfile", "vcek.ext", "-outform", "DER", "-out", "vcek.der", cwd=tmp)


def _openssl_signed_report(tmp: Path, p: TestPlatform) -> bytes:
    body = p.report(b"openssl".ljust(64, b"\0"))[:SIGNED_LEN]
    r, s = der_ecdsa_rs(openssl("dgst", "-sha384", "-sign", "vcek.key", cwd=tmp, input=body))
    return body + r.to_bytes(72, "little") + s.to_bytes(72, "little") + bytes(REPORT_LEN - 0x330)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_a_chain_and_signature_made_by_openssl_verify(tmp_path: Path) -> None:
    p = TestPlatform(product="Milan", seed=9)  # only for its report layout; openssl signs
    _openssl_chain(tmp_path, p.chip_id or b"")
    report = _openssl_signed_report(tmp_path, p)
    leaf = crypto.load_certificates((tmp_path / "vcek.der").read_bytes())  # DER
    pems = crypto.load_certificates((tmp_path / "ask.pem").read_bytes() + (tmp_path / "ark.pem").read_bytes())
    assert len(pems) == 2  # a PEM bundle
    v = verify_report(parse_report(report), leaf + pems[:1], pems[1:])
    assert v.reasons == [] and [c.subject_cn for _, c in v.chain] == [
        "openssl TEST-ONLY VCEK", "openssl TEST-ONLY ASK", "openssl TEST-ONLY ARK"]
    # The openssl ARK is not AMD's: with the pinned roots the same report does not chain.
    assert {r.check for r in verify_report(parse_report(report), leaf + pems).reasons} == {"chain"}
    # The openssl key is not this model chip's VCEK.
    assert {r.check for r in verify_report(parse_report(p.report(bytes(64))), leaf + pems[:1],
                                           pems[1:]).reasons} == {"signature"}


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl")
def test_rsa_pss_with_another_salt_length_is_not_amds(tmp_path: Path) -> None:
    p = TestPlatform(product="Milan", seed=9)
    _openssl_chain(tmp_path, p.chip_id or b"", salt=32)
    report = _openssl_signed_report(tmp_path, p)
    cs = crypto.load_certificates((tmp_path / "vcek.der").read_bytes()) + \
        crypto.load_certificates((tmp_path / "ask.pem").read_bytes())
    v = verify_report(parse_report(report), cs, crypto.load_certificates((tmp_path / "ark.pem").read_bytes()))
    assert {r.check for r in v.reasons} == {"chain"}  # salt 32: the VCEK -> ASK link is refused


def test_certificate_loading_errors(tmp_path: Path) -> None:
    for bad in (b"", b"not a certificate", b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
                b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", b"\x30\x82" + bytes(50)):
        with pytest.raises(crypto.CertificateError):
            crypto.load_certificates(bad)


# --------------------------------------------------------------------------- svsmlog attest


def run(*args: object) -> SimpleNamespace:
    with CliRunner().isolation() as (out, err, _):
        code = main([str(a) for a in args])
        sys.stdout.flush()
        sys.stderr.flush()
        return SimpleNamespace(code=code, stdout=out.getvalue().decode(), stderr=err.getvalue().decode())


@pytest.mark.parametrize("name", sorted(REAL))
def test_cli_json_for_every_real_report(name: str) -> None:
    valid, product, vmpl, key, debug = REAL[name]
    r = run("attest", REPORTS / name / "report.bin", "--cert", cert_path(name), "--json")
    assert r.code == 0 and r.stderr == ""
    j = json.loads(r.stdout)
    assert (j["valid"], j["product"], j["vmpl"], j["signing_key"], j["policy"]["debug"]) == \
        (valid, product.value, vmpl, key, debug)
    assert j["reasons"] == []
    data = raw(name)
    assert j["measurement"] == data[0x90:0xC0].hex() and j["report_data"] == data[0x50:0x90].hex()
    assert j["chip_id"] == data[0x1A0:0x1E0].hex() and j["version"] == data[0]
    assert set(j["reported_tcb"]) >= {"boot_loader", "tee", "snp", "microcode", "raw"}


def test_cli_human_output_is_loud_about_debug() -> None:
    name = "milan-v2-debug-policy"
    r = run("attest", REPORTS / name / "report.bin", "--cert", cert_path(name))
    assert r.code == 0 and "VALID" in r.stdout
    assert "the host could read this VM's memory" in r.stdout and "DEBUG POLICY" in r.stdout
    quiet = run("attest", REPORTS / "milan-v2-virtee" / "report.bin", "--cert", cert_path("milan-v2-virtee"))
    assert quiet.code == 0 and "could read" not in quiet.stdout


def test_cli_invalid_reports_exit_1_with_reasons(tmp_path: Path) -> None:
    bad = tmp_path / "bad.bin"
    bad.write_bytes(flip(raw("milan-v2-virtee"), 0x90))
    r = run("attest", bad, "--cert", cert_path("milan-v2-virtee"), "--json")
    assert r.code == 1 and json.loads(r.stdout)["reasons"][0]["check"] == "signature"
    human = run("attest", bad, "--cert", cert_path("milan-v2-virtee"))
    assert human.code == 1 and "INVALID" in human.stdout and "signature:" in human.stdout
    vlek = run("attest", REPORTS / "milan-v3-vlek" / "report.bin", "--cert", cert_path("milan-v3-vlek"),
               "--require-vmpl0", "--json")
    assert vlek.code == 1 and [x["check"] for x in json.loads(vlek.stdout)["reasons"]] == ["vmpl"]


def test_cli_hex_input_and_cert_bundles(tmp_path: Path) -> None:
    hexfile = tmp_path / "report.hex"
    h = raw("milan-v3-vlek").hex()
    hexfile.write_text("\n".join(h[i:i + 64] for i in range(0, len(h), 64)) + "\n")
    bundle = DATA / "roots" / "milan-ask-ark-asvk.pem"
    r = run("attest", hexfile, "--cert", cert_path("milan-v3-vlek"), "--cert", bundle, "--json")
    assert r.code == 0 and json.loads(r.stdout)["valid"] is True


@pytest.mark.parametrize("case", ["missing", "truncated", "overlong", "version4", "nocert", "badcert",
                                  "onlyask", "dir", "badroot"])
def test_cli_unreadable_or_bad_usage_exit_2_with_one_line(tmp_path: Path, case: str) -> None:
    report = tmp_path / "report.bin"
    report.write_bytes(raw("milan-v2-virtee"))
    cert: list[object] = ["--cert", cert_path("milan-v2-virtee")]
    extra: list[object] = []
    if case == "missing":
        report = tmp_path / "absent.bin"
    elif case == "truncated":
        report.write_bytes(raw("milan-v2-virtee")[:1000])
    elif case == "overlong":
        report.write_bytes(raw("milan-v2-virtee") + b"\0")
    elif case == "version4":
        report.write_bytes(b"\x04\0\0\0" + raw("milan-v2-virtee")[4:])
    elif case == "nocert":
        cert = []
    elif case == "badcert":
        (tmp_path / "c.pem").write_text("hello")
        cert = ["--cert", tmp_path / "c.pem"]
    elif case == "onlyask":
        cert = ["--cert", DATA / "roots" / "ask-milan.pem"]
    elif case == "dir":
        cert = ["--cert", tmp_path]
    elif case == "badroot":
        (tmp_path / "root.pem").write_bytes(b"\0" * 10)
        extra = ["--trust-root", tmp_path / "root.pem"]
    r = run("attest", report, *cert, *extra, "--json")
    assert r.code == 2 and r.stdout == ""
    assert r.stderr.startswith("svsmlog: error: ") and r.stderr.count("\n") == 1, r.stderr
    assert "Traceback" not in r.stderr


def test_cli_model_reports_need_the_test_root(tmp_path: Path) -> None:
    p = TestPlatform(product="Genoa", version=5, seed=2)
    (tmp_path / "r.bin").write_bytes(p.report(b"\x42" * 64))
    (tmp_path / "vcek.der").write_bytes(p.vcek_der)
    (tmp_path / "chain.pem").write_bytes(p.chain_pems)
    (tmp_path / "ark.pem").write_bytes(p.ark_pem)
    args = ["attest", tmp_path / "r.bin", "--cert", tmp_path / "vcek.der", "--cert", tmp_path / "chain.pem"]
    ok = run(*args, "--trust-root", tmp_path / "ark.pem", "--json")
    assert ok.code == 0 and json.loads(ok.stdout)["product"] == "Genoa"
    amd = run(*args, "--json")
    assert amd.code == 1
    [reason] = json.loads(amd.stdout)["reasons"]
    assert reason["check"] == "chain" and "AMD's pinned ARKs" in reason["detail"]

