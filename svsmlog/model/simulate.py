"""``svsmlog simulate``: run the SVSM model over an image file (the CLI calls ``simulate``).

The image is created (sparse, ``size``) if it does not exist; otherwise the boots append to
it, as reboots of the same VM would. The same seed gives the same records, sequence numbers
and truth file; the image bytes differ between runs (the boot secret and the HPKE
randomness are fresh). With ``crash_after_writes=K`` the device stops after K writes counted
over the whole run, formatting included; ``tear_sectors=T`` also lands the first T sectors
of write K+1. The truth file then holds exactly the records durable before the crash, and
the anchor is the one taken after the last write that completed. ``anchor_report_out``
has the last boot issue an anchor report (spec §6.5) just before it ends, and writes it (raw,
1184 bytes): the SVSM asks the AMD-SP for it, so it implies ``attest``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from .. import crypto
from ..anchor import Anchor
from ..codec import DecodeError
from ..device import SECTOR, BlockDevice, FileDevice, RecordingDevice
from ..format import DebugCeiling
from ..volume import read_volume
from ..writer import WriterError
from .config import ConfigError, LaunchConfig, ceiling_name, parse_layout
from .scenarios import SCENARIOS, ScenarioError, get_scenario, run
from .svsm import DEFAULT_BUILD, SnpPlatform, launch_measurement
from .truth import write_truth

__all__ = [
    "SCENARIOS",
    "ConfigError",
    "SimulateOptions",
    "SimulateResult",
    "SimulationError",
    "parse_size",
    "simulate",
]


class SimulationError(Exception):
    """Bad input to ``simulate``; the message is one line."""


@dataclass
class SimulateOptions:
    image: Path
    recipients: list[Path]
    config: Path | None = None
    scenario: str = "normal"
    boots: int = 1
    streams: str | None = None  # "aggregated" | "per-service": overrides the config
    seed: int = 0
    truth: Path | None = None
    anchor_out: Path | None = None
    crash_after_writes: int | None = None
    tear_sectors: int = 0
    size: str = "64M"
    debug_key: Path | None = None  # debug recipient public key when no config names one
    records: int | None = None  # steady-state records per boot (else the scenario's duration)
    attest: bool = False  # the model's TEST-ONLY AMD-SP signs a report for every boot
    snp_build: str | None = None  # the SVSM build launched (another build: another MEASUREMENT)
    refuse_report: bool = False  # the host refuses every boot's report request
    attest_out: Path | None = None  # write the TEST-ONLY trust chain and the expected measurement here
    anchor_report_out: Path | None = None  # the last boot's anchor report (raw, binary; implies attest)


@dataclass
class SimulateResult:
    boots: list[int]
    device_writes: int
    sectors_written: int
    records_durable: int
    message_bytes: int
    frames: int
    crashed: bool
    anchor: Anchor | None
    measurement: bytes | None = None
    attest_out: Path | None = None
    anchor_report: Anchor | None = None  # the anchor of the report written to anchor_report_out

    def summary(self) -> str:
        """What the CLI prints."""
        amp = self.sectors_written * SECTOR / self.message_bytes if self.message_bytes else 0.0
        lines = [
            f"boots: {', '.join(map(str, self.boots)) or 'none'}",
            f"records durable: {self.records_durable} ({self.message_bytes} message bytes)",
            f"device writes: {self.device_writes} ({self.sectors_written} sectors, {self.frames} frames; "
            f"{amp:.1f} device bytes per message byte)",
        ]
        if self.crashed:
            lines.append("crashed: the device stopped as asked (--crash-after-writes)")
        if self.anchor is not None:
            lines.append(f"anchor report_data: {self.anchor.commitment.hex()}")
        if self.measurement is not None:
            lines.append(f"attested by the model's TEST-ONLY AMD-SP; measurement {self.measurement.hex()}")
        if self.anchor_report is not None:
            lines.append(f"anchor report of boot {self.anchor_report.boot}: REPORT_DATA "
                         f"{self.anchor_report.commitment.hex()} || zero nonce")
        if self.attest_out is not None:
            lines.append(f"verify with: --trust-root {self.attest_out / 'TEST-ONLY-amd-chain.pem'} "
                         f"--measurement $(cat {self.attest_out / 'measurement.hex'})")
        return "\n".join(lines)


_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.I)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_size(text: str) -> int:
    """ "64M", "512K", "1G", "1048576" (bytes; K/M/G/T are powers of 1024) -> bytes."""
    m = _SIZE.match(text)
    if not m:
        raise SimulationError(f"size {text!r}: expected a number with an optional K, M, G or T suffix")
    n = int(m.group(1)) * _UNITS[m.group(2).lower()]
    if n <= 0 or n % SECTOR:
        raise SimulationError(f"size {text!r}: must be a positive multiple of {SECTOR} bytes")
    return n


def _load_public(path: Path, what: str) -> crypto.PublicKey:
    try:
        return crypto.load_public_key(Path(path).read_bytes())
    except OSError as e:
        raise SimulationError(f"{what} {path}: {e.strerror}") from None
    except crypto.KeyError_ as e:
        raise SimulationError(f"{what} {path}: {e}") from None


def effective_config(opts: SimulateOptions) -> LaunchConfig:
    """The launch configuration the run uses: the file (or the scenario's default), with
    the command line's extra owners, layout and debug key applied."""
    sc, _ = _scenario(opts.scenario)
    owners = [_load_public(p, "recipient key") for p in opts.recipients]
    debug_key = _load_public(opts.debug_key, "debug key") if opts.debug_key else None
    layout = None
    if opts.streams is not None:
        try:
            layout = parse_layout(opts.streams)
        except ConfigError as e:
            raise SimulationError(f"--streams: {e}") from None
    if opts.config is not None:
        cfg = LaunchConfig.load(opts.config)
        have = {k.key_id for k in cfg.owners}
        extra = [k for k in owners if k.key_id not in have]
        if extra:
            cfg = cfg.replace(owners=cfg.owners + tuple(extra))
        if layout is not None and layout != cfg.layout:
            cfg = cfg.replace(layout=layout)
        if debug_key is not None and cfg.debug_recipient is None:
            cfg = cfg.replace(debug_recipient=debug_key)
    else:
        if not owners:
            raise SimulationError("no recipient: give at least one owner public key (or a config naming one)")
        cfg = sc.default_config(owners, layout, debug_key)
    if cfg.debug_ceiling != DebugCeiling.NEVER and cfg.debug_recipient is None:
        raise ConfigError(
            f"debug ceiling '{ceiling_name(cfg.debug_ceiling)}' needs a debug recipient: "
            "set [debug] recipient in the config or give a debug key"
        )
    return cfg


def _scenario(name: str):  # type: ignore[no-untyped-def]
    try:
        return get_scenario(name)
    except ScenarioError as e:
        raise SimulationError(str(e)) from None


def _check_existing(path: Path) -> None:
    """Refuse to format over a file that holds something else: boots append only to an
    svsmlog volume, or to a file whose first sector is zero (new, or formatting crashed)."""
    size = path.stat().st_size
    if size == 0 or size % SECTOR:
        raise SimulationError(f"{path}: size {size} is not a positive multiple of {SECTOR} bytes")
    with open(path, "rb") as f:
        first = f.read(SECTOR)
    if first == bytes(SECTOR):
        return
    try:
        read_volume(first, size // SECTOR)
    except DecodeError as e:
        raise SimulationError(
            f"{path}: exists and holds no svsmlog volume ({e}); refusing to format it"
        ) from None


def simulate(opts: SimulateOptions) -> SimulateResult:
    _scenario(opts.scenario)
    if opts.boots < 1:
        raise SimulationError("boots must be at least 1")
    if opts.crash_after_writes is not None and opts.crash_after_writes < 0:
        raise SimulationError("crash-after-writes must be 0 or more")
    if opts.tear_sectors < 0:
        raise SimulationError("tear-sectors must be 0 or more")
    if opts.tear_sectors and opts.crash_after_writes is None:
        raise SimulationError("tear-sectors needs crash-after-writes")
    cfg = effective_config(opts)
    image = Path(opts.image)
    need = cfg.volume_sectors()
    if image.exists():
        _check_existing(image)
        have = image.stat().st_size // SECTOR
        create = None
    else:
        have = parse_size(opts.size) // SECTOR
        create = have
    if have < need:
        raise SimulationError(
            f"{image}: {have * SECTOR} bytes cannot hold the configured regions "
            f"({need * SECTOR} bytes needed); use a larger size or smaller [log.streams] sectors"
        )
    try:
        fdev = FileDevice(image, create_sectors=create)
    except (OSError, ValueError) as e:
        raise SimulationError(f"{image}: {e}") from None
    try:
        dev: BlockDevice = fdev
        if opts.crash_after_writes is not None:
            dev = RecordingDevice(fdev, crash_after=opts.crash_after_writes, tear_sectors=opts.tear_sectors)
        snp = _snp(opts)
        try:
            log = run(opts.scenario, dev, cfg, boots=opts.boots, seed=opts.seed, steady_records=opts.records,
                      snp=snp, anchor_nonce=bytes(32) if opts.anchor_report_out is not None else None)
        except WriterError as e:
            raise SimulationError(f"{image}: {e}") from None
        except ScenarioError as e:
            raise SimulationError(str(e)) from None
    finally:
        fdev.close()
    if opts.truth is not None:
        write_truth(Path(opts.truth), log.durable)
    if opts.anchor_out is not None and log.anchor is not None:
        Path(opts.anchor_out).write_text(log.anchor.to_json() + "\n")
    if opts.anchor_report_out is not None and log.anchor_report is not None:
        Path(opts.anchor_report_out).write_bytes(log.anchor_report[0])
    measurement = launch_measurement(cfg, snp.build) if snp is not None else None
    if snp is not None and opts.attest_out is not None and measurement is not None:
        out = Path(opts.attest_out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "TEST-ONLY-amd-chain.pem").write_bytes(snp.chip.chain_pems)
        (out / "measurement.hex").write_text(launch_measurement(cfg).hex() + "\n")
    st = log.tap.stats
    return SimulateResult(
        boots=log.boots,
        device_writes=st.writes,
        sectors_written=st.sectors,
        records_durable=len(log.durable),
        message_bytes=sum(len(d.record.message.encode()) for d in log.durable),
        frames=sum(st.frames.values()),
        crashed=log.crashed,
        anchor=log.anchor,
        measurement=measurement,
        attest_out=Path(opts.attest_out) if snp is not None and opts.attest_out is not None else None,
        anchor_report=log.anchor_report[1] if log.anchor_report is not None else None,
    )


def _snp(opts: SimulateOptions) -> SnpPlatform | None:
    if not (opts.attest or opts.snp_build or opts.refuse_report or opts.attest_out or opts.anchor_report_out):
        return None
    from .amdsp import TestPlatform

    return SnpPlatform(TestPlatform(), build=opts.snp_build or DEFAULT_BUILD, refuse=opts.refuse_report)
