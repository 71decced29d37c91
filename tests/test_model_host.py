"""The host's forging toolkit (svsmlog/model/host.py): it works from what the host has (the
owner's public key, the image, reports it has seen, the guest OS's reports) and nothing more.
What the reader makes of its forgeries is the forgery campaign's business
(tests/campaigns/test_forgery_campaign.py)."""

from __future__ import annotations

import struct

import pytest

from svsmlog import crypto
from svsmlog.device import SECTOR, MemoryDevice, Write
from svsmlog.format import Layout
from svsmlog.model import host
from svsmlog.model.amdsp import TestPlatform
from svsmlog.model.config import LaunchConfig
from svsmlog.model.scenarios import BootPlan
from svsmlog.model.svsm import launch_measurement
from svsmlog.volume import format_volume
from svsmlog.writer import Evidence


@pytest.fixture(scope="module")
def setup() -> tuple[LaunchConfig, TestPlatform, bytes]:
    owner = crypto.private_key_from_seed(crypto.KEM_X25519, bytes(range(1, 33)))
    cfg = LaunchConfig.default([owner.public], Layout.AGGREGATED)
    chip = TestPlatform()
    dev = MemoryDevice(cfg.volume_sectors())
    format_volume(dev, bytes(16), cfg.streams())
    image = dev.image()
    for i in range(2):
        image = host.launch_genuine(image, cfg, chip, plan=BootPlan(steady_s=0.5), seed=i)
    return cfg, chip, image


def _boots(image: bytes) -> set[int]:
    return {struct.unpack_from("<I", image, o + 8)[0] for o in range(0, len(image), SECTOR)
            if image[o : o + 4] == b"SVLF"}


Setup = tuple[LaunchConfig, TestPlatform, bytes]


def test_seen_reports_lifts_every_boot_s_report_from_the_clear(setup: Setup) -> None:
    cfg, chip, image = setup
    seen = host.seen_reports(image)
    assert set(seen) == {1, 2}
    for ev in seen.values():
        assert len(ev.report) == 1184 and ev.certs == (chip.vcek_der,)
        assert ev.report[0x90:0xC0] == launch_measurement(cfg)
    assert host.streams_of(image) == cfg.streams()


def test_forging_needs_only_the_public_key_and_returns_a_new_image(setup: Setup) -> None:
    cfg, _, image = setup
    writes: list[Write] = []
    asked: list[bytes] = []

    def attester(data: bytes) -> Evidence:
        asked.append(data)
        return host.seen_reports(image)[1]

    out = host.forge_boot(image, list(cfg.owners), attester=attester, record=writes)
    assert out != image and len(out) == len(image) and writes and len(asked) == 1
    assert _boots(out) == {1, 2, 3}
    assert host.seen_reports(out)[3] == host.seen_reports(image)[1]  # the transplanted report


def test_the_guest_os_reports(setup: Setup) -> None:
    cfg, chip, _ = setup
    guest = host.guest_of(cfg, chip)
    r = guest.protocol_report(b"nonce", b"manifest").report
    assert r[0x50:0x90] == crypto.sha512(b"nonce", b"manifest") and struct.unpack_from("<I", r, 0x30)[0] == 0
    r1 = guest.vmpl1_report(bytes(range(64))).report
    assert r1[0x50:0x90] == bytes(range(64)) and struct.unpack_from("<I", r1, 0x30)[0] == 1
    debug = host.guest_of(cfg, chip, debug=True).protocol_report(b"n", b"m").report
    assert struct.unpack_from("<Q", debug, 0x08)[0] & (1 << 19)


def test_a_host_made_chip_copies_everything_public_and_signs_with_its_own_chain(setup: Setup) -> None:
    from svsmlog.attestation import parse_report, verify_report
    from svsmlog.model.amdsp import new_chain

    cfg, chip, image = setup
    owner = crypto.private_key_from_seed(crypto.KEM_X25519, bytes(range(1, 33)))
    own = TestPlatform(chip.product, chip_id=chip.chip_id, tcb=dict(chip.tcb or {}), _chain=new_chain())
    genuine = host.seen_reports(image)[2].report
    for with_chain in (True, False):
        forged = host.forge_with_own_chip(image, [owner.public], own, launch_measurement(cfg),
                                          with_chain=with_chain)
        ev = host.seen_reports(forged)[3]
        assert ev.certs == ((own.vcek_der, *own.chain_ders) if with_chain else (own.vcek_der,))
        for at, n in ((0x30, 4), (0x90, 48), (0x1A0, 64), (0x180, 8)):  # VMPL, MEASUREMENT, CHIP_ID, TCB
            assert ev.report[at : at + n] == genuine[at : at + n]
        report, leaf = parse_report(ev.report), crypto.load_certificates(own.vcek_der)
        host_ask, host_ark = (crypto.load_certificates(d) for d in own.chain_ders)
        assert verify_report(report, leaf + host_ask, host_ark).valid  # under the host's own root
        owners_ask = crypto.load_certificates(chip.chain_pems)[:1]
        owners_root = crypto.load_certificates(chip.ark_pem)
        checks = {r.check for r in verify_report(report, leaf + host_ask + owners_ask, owners_root).reasons}
        assert checks == {"chain"}  # under the owner's root only the chain tells them apart
