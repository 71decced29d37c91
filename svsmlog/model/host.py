"""A hostile host's forging toolkit against attested boots (issue 12), with the host's
capabilities and nothing more.

What the host has:

* the launch configuration it launches the VM with: the owner's *public* keys, the streams,
  the layout (so it can run the writer itself and seal a boot secret of its own to the
  owner, spec §10);
* the image bytes, and every report it has seen in any image: reports and their
  certificates ride in clear sections (spec §4.4), so any image it ever held gives them away
  (``seen_reports``);
* what the guest OS can get from the AMD-SP (``GuestOS``): through the SVSM's attestation
  protocol a VMPL0 report whose REPORT_DATA is SHA-512(nonce || manifest), and, asking the
  AMD-SP itself from VMPL1, a report with any REPORT_DATA it likes (VMPL 1 in the report);
* its machine: it launches the VM it likes (another SVSM build, a debug policy) and relays
  or refuses the guest's report requests (``launch``).

What it does not have: any boot secret but its own, and a way to make the AMD-SP sign a
VMPL0 report with a REPORT_DATA of its choice. TEST-ONLY: the chip is
``svsmlog.model.amdsp.TestPlatform``.

Every function takes the image bytes and returns the new image bytes. ``record``, when
given, receives every device write made (in order): the campaigns' writer-side ground truth.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import crypto
from ..codec import DecodeError, decode_clear_section, decode_frame_header
from ..device import SECTOR, BlockDevice, MemoryDevice, RecordingDevice, Write
from ..format import FRAME_HEADER_LEN, FRAME_MAGIC, SNP_REPORT_LEN, EnvelopeKind, Layout
from ..records import Level, Record
from ..volume import StreamSpec, read_volume
from ..writer import BootPolicy, Evidence, LogWriter
from .amdsp import POLICY_DEFAULT, TestPlatform
from .config import LaunchConfig
from .scenarios import BootPlan, Scenario, run
from .svsm import SNP_POLICY_DEBUG_BIT, SnpPlatform, launch_measurement

# REPORT_DATA -> the evidence the host hands the writer (None: no report at all)
Attester = Callable[[bytes], "Evidence | None"]

FORGED_RECORDS = (
    Record(1_000_000, Level.ERROR, "attest", "svsm", "attestation failed: vTPM quote mismatch (forged)"),
    Record(2_000_000, Level.ERROR, "core", "svsm", "panic: forged by the host"),
)


def _on_copy(image: bytes, act: Callable[[BlockDevice], None], record: list[Write] | None) -> bytes:
    mem = MemoryDevice(len(image) // SECTOR, image)
    dev = RecordingDevice(mem)
    act(dev)
    if record is not None:
        record.extend(dev.writes)
    return mem.image()


def streams_of(image: bytes) -> list[StreamSpec]:
    """The streams of the volume on ``image``, from its superblock (written in the clear)."""
    sb = read_volume(image[:SECTOR], len(image) // SECTOR).superblock
    return [StreamSpec(r.stream, r.name, r.sectors) for r in sb.regions]


def seen_reports(image: bytes) -> dict[int, Evidence]:
    """Every boot's report the host can lift from ``image``: the SNP_REPORT item (the report
    without its launch-grant digests) and the SNP_CERT items of any frame's clear section,
    by the boot number its header claims. Nothing here needs a key."""
    out: dict[int, Evidence] = {}
    for lba in range(len(image) // SECTOR):
        off = lba * SECTOR
        if image[off : off + 4] != FRAME_MAGIC:
            continue
        try:
            h = decode_frame_header(image, off)
            items = decode_clear_section(image[off + FRAME_HEADER_LEN : off + FRAME_HEADER_LEN + h.clear_len])
        except DecodeError:
            continue
        report = next((e.sealed for e in items if e.kind == EnvelopeKind.SNP_REPORT), None)
        if report is not None and h.boot not in out:
            certs = tuple(e.sealed for e in items if e.kind == EnvelopeKind.SNP_CERT)
            out[h.boot] = Evidence(report[:SNP_REPORT_LEN], certs)
    return out


def forge_boot(
    image: bytes,
    owners: Sequence[crypto.PublicKey],
    *,
    attester: Attester | None = None,
    layout: Layout = Layout.AGGREGATED,
    records: Sequence[Record] = FORGED_RECORDS,
    record: list[Write] | None = None,
) -> bytes:
    """The host runs the writer itself (``svsmlog.writer.LogWriter``) on a copy of the device,
    with a boot secret of its own sealed to the owner's public keys: a boot with any records
    it likes. ``attester`` answers the writer's report request (it is given the forged boot's
    own commitment); without one the boot is written unattested."""

    def act(dev: BlockDevice) -> None:
        streams = streams_of(image)
        w = LogWriter(dev, streams, list(owners), policy=BootPolicy(layout=layout), attester=attester)
        names = {s.name: s.stream for s in streams}
        for r in records:
            w.append(names.get(r.service, streams[0].stream), r)
        w.close()

    return _on_copy(image, act, record)


def transplant_report(
    image: bytes, owners: Sequence[crypto.PublicKey], evidence: Evidence, **kw: object
) -> bytes:
    """A forged boot carrying a genuine report (and its certificates) lifted from some image:
    another boot of this volume, the boot the forged one replaces after a rollback, or a boot
    of another volume. The writer adds this volume's launch-grant digests after it."""
    return forge_boot(image, owners, attester=lambda _data: evidence, **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class GuestOS:
    """What a guest OS in league with the host can get from the AMD-SP of the VM it runs in
    (its measurement and policy are the VM's)."""

    chip: TestPlatform
    measurement: bytes
    policy: int = POLICY_DEFAULT

    def protocol_report(self, nonce: bytes, manifest: bytes) -> Evidence:
        """The SVSM attestation protocol (SVSM_ATTEST_SERVICES): the SVSM asks at VMPL0 with
        REPORT_DATA = SHA-512(nonce || manifest) for the guest; the host relays the answer."""
        data = crypto.sha512(nonce, manifest)
        report = self.chip.report(data, vmpl=0, policy=self.policy, measurement=self.measurement)
        return Evidence(report, (self.chip.vcek_der,))

    def vmpl1_report(self, report_data: bytes) -> Evidence:
        """MSG_REPORT_REQ from VMPL1 with any REPORT_DATA: the AMD-SP writes VMPL 1 into it."""
        report = self.chip.report(report_data, vmpl=1, policy=self.policy, measurement=self.measurement)
        return Evidence(report, (self.chip.vcek_der,))


def substitute_guest_report(
    image: bytes,
    owners: Sequence[crypto.PublicKey],
    guest: GuestOS,
    nonce: bytes = b"relying party nonce",
    manifest: bytes = b'{"services": ["vtpm"]}',
    **kw: object,
) -> bytes:
    """A forged boot carrying the guest OS's attestation-protocol report (VMPL0, genuine
    measurement, the same chip)."""
    return transplant_report(image, owners, guest.protocol_report(nonce, manifest), **kw)


def forge_with_vmpl1_report(
    image: bytes, owners: Sequence[crypto.PublicKey], guest: GuestOS, **kw: object
) -> bytes:
    """A forged boot whose report commits to the forged boot itself, obtained by the guest OS
    from VMPL1 (the one REPORT_DATA the host can have signed: at the wrong VMPL)."""
    return forge_boot(image, owners, attester=guest.vmpl1_report, **kw)  # type: ignore[arg-type]


def forge_with_own_chip(
    image: bytes, owners: Sequence[crypto.PublicKey], chip: TestPlatform, measurement: bytes,
    *, with_chain: bool, **kw: object
) -> bytes:
    """A forged boot whose report commits to the forged boot itself, signed by a chip of the
    host's making: a VCEK (the genuine chip's CHIP_ID and TCB copied, they are public) under
    an ASK and ARK of its own, at VMPL0, with the genuine build's MEASUREMENT and no debug
    policy. Every field is what an honest boot's report says; only the chain is not AMD's
    (here: not the owner's root). ``with_chain``: the evidence carries the host's ASK and ARK
    after the VCEK, so a reader meets the host's ASK before the genuine one it was given."""

    def attester(report_data: bytes) -> Evidence:
        report = chip.report(report_data, vmpl=0, measurement=measurement)
        return Evidence(report, (chip.vcek_der, *(chip.chain_ders if with_chain else ())))

    return forge_boot(image, owners, attester=attester, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- launching VMs


def launch(
    image: bytes,
    config: LaunchConfig,
    snp: SnpPlatform | None,
    *,
    snp_debug: bool = False,
    plan: BootPlan | None = None,
    seed: int = 0,
    record: list[Write] | None = None,
) -> bytes:
    """The host launches the SVSM (the model, ``svsmlog.model.svsm``) for one boot on the
    image: ``snp`` says on which chip, which build, and whether the host refuses the boot's
    report request; ``snp_debug`` launches it with the SEV-SNP debug policy bit."""
    one = plan or BootPlan(steady_s=1.0)
    sc = Scenario("host launch", "one boot the host launches", plan=lambda i, n, arg: one)

    def act(dev: BlockDevice) -> None:
        run(sc, dev, config, boots=1, seed=seed, snp_debug=snp_debug, snp=snp)

    return _on_copy(image, act, record)


def launch_genuine(image: bytes, config: LaunchConfig, chip: TestPlatform, **kw: object) -> bytes:
    """The genuine SVSM, its report request relayed: an honest attested boot."""
    return launch(image, config, SnpPlatform(chip), **kw)  # type: ignore[arg-type]


def refuse_report(image: bytes, config: LaunchConfig, chip: TestPlatform, **kw: object) -> bytes:
    """The genuine SVSM, its report request refused by the host: an honest boot, unattested."""
    return launch(image, config, SnpPlatform(chip, refuse=True), **kw)  # type: ignore[arg-type]


def launch_with_decoy_ask(image: bytes, config: LaunchConfig, chip: TestPlatform, decoy: bytes,
                          **kw: object) -> bytes:
    """The genuine SVSM, its report relayed, with a certificate of the host's put ahead of the
    VCEK in the answer to its extended request: an honest attested boot, its evidence salted."""
    return launch(image, config, SnpPlatform(chip, host_certs=(decoy,)), **kw)  # type: ignore[arg-type]


def launch_other_build(
    image: bytes, config: LaunchConfig, chip: TestPlatform, build: str, **kw: object
) -> bytes:
    """Another SVSM build (an old, vulnerable one, say) launched with the same configuration:
    its report is genuine, its MEASUREMENT is that build's."""
    return launch(image, config, SnpPlatform(chip, build=build), **kw)  # type: ignore[arg-type]


def launch_debug(image: bytes, config: LaunchConfig, chip: TestPlatform, **kw: object) -> bytes:
    """The genuine SVSM launched with POLICY.DEBUG (bit 19): the host can read and change the
    VM's memory, boot secret included; the report says so."""
    return launch(image, config, SnpPlatform(chip), snp_debug=True, **kw)  # type: ignore[arg-type]


def guest_of(config: LaunchConfig, chip: TestPlatform, *, debug: bool = False) -> GuestOS:
    """The guest OS of the genuine VM launched with ``config`` on ``chip``."""
    policy = POLICY_DEFAULT | (1 << SNP_POLICY_DEBUG_BIT if debug else 0)
    return GuestOS(chip, launch_measurement(config), policy)
