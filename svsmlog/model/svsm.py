"""The SVSM model: services log through it into a LogWriter on the persistent device.

What it models, and what it promises:

* **Routing**: each service's records go to its stream (per-service layout) or all to
  stream "all" (aggregated); records less severe than ``[log] min_level`` are dropped.
* **Flush policy**: an ERROR record is durable before ``log`` returns: its stream is
  flushed first, then every other stream with pending records (the context that led up
  to it). Other records are batched per stream and flushed when ``max_bytes`` of records
  are pending or ``max_delay_ms`` of virtual time has passed since the oldest pending one
  was logged. A record is durable exactly when the device write of its frame returned:
  the model learns it from the ``Sealed.records`` the writer returns, and reports each
  one as a ``DurableRecord`` naming that write.
* **Panic path** (pstore/blk in spirit): the panic record (FLAG_PANIC, message, service,
  panic info and backtrace in fields) goes into its stream's pending frame, that stream is
  flushed first, then every other pending stream; nothing else — no new stream, no key
  frame — and the boot stops.
* **Debug mode**: ``enable_debug`` is a guest request, honoured only as far as the launch
  policy's debug ceiling allows; the request and its outcome are logged (and flushed)
  before any grant takes effect. ``always`` grants the debug recipient at launch.
* **Attestation**: with an ``SnpPlatform`` the boot asks the model's AMD-SP for a report
  whose REPORT_DATA commits to the boot (spec §6.6) before its first write, and stores it
  with the VCEK in its key frames; if the host refuses the request the boot is written
  anyway, unattested, and says so in a WARN record.
* **Anchors**: ``anchor()`` is the writer's head commitment; ``last_anchor`` is the one
  taken after the newest device write that returned (what survives a crash).
  ``issue_anchor_report(nonce)`` is the SVSM answering a verifier's request (spec §6.5): it
  flushes every stream, takes the anchor, asks the AMD-SP at VMPL0 for a report with
  REPORT_DATA = anchor || nonce, and makes the anchor's preimage durable in a ``log anchor
  issued`` record before it hands the report out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from .. import crypto
from ..anchor import PREIMAGE_MESSAGE, Anchor
from ..codec import DecodeError, decode_frame_header
from ..device import SECTOR, BlockDevice, Crashed
from ..format import FRAME_MAGIC, NO_STREAM, DebugCeiling, FrameType
from ..records import FLAG_PANIC, Level, Record
from ..writer import BootPolicy, Evidence, LogWriter, Sealed
from .config import LaunchConfig, ceiling_name
from .services import COMPONENT, PanicSite

if TYPE_CHECKING:
    from .amdsp import TestPlatform

SNP_POLICY_DEBUG_BIT = 19  # SEV-SNP guest policy: debugging allowed
DEFAULT_BUILD = "coconut-svsm model build 1"


def launch_measurement(config: LaunchConfig, build: str = DEFAULT_BUILD) -> bytes:
    """The model's MEASUREMENT (48 bytes): the SVSM build and the launch configuration it is
    launched with, as a real launch digest covers the SVSM binary and its measured config."""
    return crypto.sha384(b"svsmlog model launch digest\0", build.encode(), b"\0", config.digest)


@dataclass(frozen=True)
class SnpPlatform:
    """How the boot's report request goes: the (TEST-ONLY) chip that answers it, the SVSM
    build being launched, and whether the host refuses to relay it."""

    chip: TestPlatform
    build: str = DEFAULT_BUILD
    refuse: bool = False
    # Certificates the host hands back ahead of the chip's VCEK (an extended report request
    # returns whatever the host supplies; the SVSM stores them as given).
    host_certs: tuple[bytes, ...] = ()


class SvsmStopped(Exception):
    """The modelled SVSM stopped (panic or halt): it logs nothing more this boot."""

    def __init__(self, ending: str) -> None:
        super().__init__(f"the SVSM stopped: {ending}")
        self.ending = ending


@dataclass(frozen=True)
class DurableRecord:
    """A record the writer reported durable: in frame ``seq`` of ``stream`` of ``boot``,
    whose device write was write number ``write`` (1-based, counted by the WriteTap)."""

    boot: int
    stream: str
    seq: int
    record: Record
    write: int


class VirtualClock:
    """Boot-relative monotonic time in nanoseconds; only ever moved forward by the model."""

    def __init__(self, start_ns: int = 0) -> None:
        self.now_ns = start_ns

    def __call__(self) -> int:
        return self.now_ns

    def set(self, t_ns: int) -> None:
        if t_ns < self.now_ns:
            raise ValueError(f"virtual time cannot go back ({t_ns} < {self.now_ns})")
        self.now_ns = t_ns


@dataclass
class WriteStats:
    writes: int = 0
    sectors: int = 0
    frames: dict[str, int] = field(default_factory=dict)  # frame type name (or DIRECTORY) -> count
    frame_writes: int = 0  # writes that carried at least one frame (formatting excluded)
    frame_sectors: int = 0


class WriteTap:
    """A pass-through block device that numbers the writes that returned, counts sectors
    and frames (by their headers), and tells its listener after each write."""

    def __init__(self, inner: BlockDevice) -> None:
        self.inner = inner
        self.stats = WriteStats()
        # Since mark(): (write number, lba, sectors, frames as (type, stream, seq)).
        self.log: list[tuple[int, int, int, list[tuple[FrameType, int, int]]]] = []
        self.after_write: Callable[[], None] | None = None

    @property
    def sector_count(self) -> int:
        return self.inner.sector_count

    @property
    def writes(self) -> int:
        return self.stats.writes

    def read(self, lba: int, count: int) -> bytes:
        return self.inner.read(lba, count)

    def write(self, lba: int, data: bytes) -> None:
        self.inner.write(lba, data)  # raises (Crashed) if the device stops: not counted
        st = self.stats
        st.writes += 1
        n = len(data) // SECTOR
        st.sectors += n
        frames = _frames(data)
        self.log.append((st.writes, lba, n, frames))
        if frames:
            st.frame_writes += 1
            st.frame_sectors += n
            for ft, stream, _ in frames:
                name = "DIRECTORY" if stream == NO_STREAM else ft.name  # the key directory's slots
                st.frames[name] = st.frames.get(name, 0) + 1
        if self.after_write is not None:
            self.after_write()

    def mark(self) -> None:
        self.log.clear()

    def write_of(self, lba: int) -> int:
        """The newest write since mark() that covered sector ``lba``."""
        for number, start, n, _ in reversed(self.log):
            if start <= lba < start + n:
                return number
        raise LookupError(f"no write covered sector {lba}")


def _frames(data: bytes) -> list[tuple[FrameType, int, int]]:
    """(type, stream, seq) of the frames a write carries, read from their clear headers."""
    out, pos = [], 0
    while pos + SECTOR <= len(data) and data[pos : pos + 4] == FRAME_MAGIC:
        try:
            h = decode_frame_header(data, pos)
        except DecodeError:
            break
        out.append((FrameType(h.type), h.stream, h.seq))
        pos += h.sectors * SECTOR
    return out


class SvsmModel:
    """One boot of the SVSM. Creating it mounts (or formats) the volume and writes the
    BOOT frames; then services ``log``, the scenario moves time with ``advance_to``, and
    the boot ends with ``shutdown``, ``panic`` or ``halt``."""

    def __init__(
        self,
        device: BlockDevice,
        config: LaunchConfig,
        *,
        clock: VirtualClock | None = None,
        snp_debug: bool = False,
        host_time_ns: int = 0,
        on_durable: Callable[[DurableRecord], None] | None = None,
        snp: SnpPlatform | None = None,
    ) -> None:
        self.tap = device if isinstance(device, WriteTap) else WriteTap(device)
        self.config = config
        self.clock = clock or VirtualClock()
        self.snp_debug = snp_debug
        self.snp_guest_policy = 0x30000 | (1 << SNP_POLICY_DEBUG_BIT if snp_debug else 0)
        self.on_durable = on_durable
        self.durable: list[DurableRecord] = []
        self.stopped: str | None = None
        self.debug_streams: set[str] = set()  # streams the debug recipient can read
        self.debug_grants: dict[str, int] = {}  # stream -> seq of its DEBUG_GRANT key frame
        self._deadline: dict[int, int] = {}  # stream -> virtual time its pending frame is due
        self._pending: dict[int, list[Record]] = {}  # what the writer holds for each stream
        self._max_delay_ns = config.flush_max_delay_ms * 1_000_000
        self.writer: LogWriter | None = None
        self.last_anchor: Anchor | None = None
        self.snp = snp

        always = config.debug_ceiling == DebugCeiling.ALWAYS and config.debug_recipient is not None
        grants: dict[int, list[crypto.PublicKey]] = {}
        if always:
            assert config.debug_recipient is not None
            grants = {config.stream_id(n): [config.debug_recipient] for n in config.debug_streams}
        policy = BootPolicy(
            config_digest=config.digest,
            host_time_ns=host_time_ns,
            debug_ceiling=config.debug_ceiling,
            debug_enabled=always,
            layout=config.layout,
            min_level=config.min_level,
        )
        self.tap.after_write = self._snapshot
        self.tap.mark()
        self.writer = LogWriter(
            self.tap,
            config.streams(),
            list(config.owners),
            policy=policy,
            stream_grants=grants,
            clock=self.clock,
            attester=self._attester(snp) if snp is not None else None,
        )
        self.boot = self.writer.boot
        self._snapshot()
        if snp is not None:
            self._log_attestation(self.writer.evidence)
        if always:
            self.debug_streams = set(config.debug_streams)
            self.debug_grants = {n: 0 for n in config.debug_streams}
            self._audit(
                Level.WARN,
                "debug mode enabled at launch (debug ceiling 'always'): streams "
                f"{', '.join(config.debug_streams)} are readable by debug recipient "
                f"{self._debug_key_id()}",
            )

    # ------------------------------------------------------------------ time and logging

    @property
    def now(self) -> int:
        return self.clock.now_ns

    def advance_to(self, t_ns: int) -> None:
        """Move virtual time to ``t_ns``, flushing every batch that falls due on the way."""
        self._running()
        while True:
            due = [(d, sid) for sid, d in self._deadline.items() if d <= t_ns]
            if not due:
                break
            d, sid = min(due)
            self.clock.set(max(self.now, d))
            self._flush(sid)
        self.clock.set(t_ns)

    def log(
        self,
        service: str,
        level: Level,
        message: str,
        *,
        component: str | None = None,
        target: str | None = None,
        fields: tuple[tuple[str, str], ...] = (),
        force: bool = False,
    ) -> bool:
        """Log one line now. Returns False if ``min_level`` dropped it. ERROR records are
        durable when this returns; others when their batch is flushed."""
        self._running()
        if level > self.config.min_level and not force:
            return False
        self.advance_to(self.now)
        rec = Record(
            self.now, level, service, component or COMPONENT.get(service, "SVSM"), message, target, fields
        )
        sid = self._sid(service)
        self._append(sid, rec)
        if level == Level.ERROR:
            self._flush_all(first=sid)
        elif (
            self._writer.pending_bytes(sid) >= self.config.flush_max_bytes or self._deadline[sid] <= self.now
        ):
            self._flush(sid)
        return True

    def flush(self) -> None:
        """Flush every stream's pending records now."""
        self._running()
        self._flush_all()

    # ------------------------------------------------------------------ endings

    def shutdown(self) -> None:
        """Clean shutdown: pending records go out in every stream's END frame."""
        self._running()
        try:
            self._take(self._call(self._writer.close))
        except Crashed:
            # close() writes one END frame per stream and reports them all only at the end:
            # the END frames whose writes returned before the crash are durable all the same.
            for number, _, _, frames in list(self.tap.log):
                for ftype, stream, seq in frames:
                    if ftype == FrameType.END:
                        self._durable(stream, seq, self._pending.get(stream, []), number)
            raise
        self._deadline.clear()
        self.stopped = "clean"

    def panic(self, site: PanicSite) -> NoReturn:
        """The panic path: the panic record first, then whatever else is pending; then stop."""
        self._running()
        rec = Record(
            self.now,
            Level.ERROR,
            site.service,
            COMPONENT.get(site.service, "SVSM"),
            site.message,
            None,
            site.fields,
            FLAG_PANIC,
        )
        sid = self._sid(site.service)
        self._append(sid, rec)
        self._flush_all(first=sid)
        self.stopped = "panic"
        raise SvsmStopped("panic")

    def halt(self, ending: str = "halt") -> NoReturn:
        """Stop at once, writing nothing more (terminate request, power loss): whatever
        is still batched is lost, as it would be on the real machine."""
        self._running()
        self.stopped = ending
        raise SvsmStopped(ending)

    # ------------------------------------------------------------------ debug mode

    def enable_debug(self, streams: Sequence[str] | None = None) -> bool:
        """The guest asks for debug mode on ``streams`` (default: those the launch policy
        names). Granted only within the debug ceiling; logged either way, before it acts."""
        self._running()
        cfg = self.config
        want = tuple(streams) if streams is not None else cfg.debug_streams
        ceiling = ceiling_name(cfg.debug_ceiling)
        self._audit(Level.INFO, f"debug mode requested by the guest for streams {', '.join(want)}")
        refusal = None
        if cfg.debug_ceiling == DebugCeiling.NEVER:
            refusal = "the launch policy's debug ceiling is 'never'"
        elif cfg.debug_ceiling == DebugCeiling.DEBUG_ONLY and not self.snp_debug:
            refusal = (
                f"debug ceiling 'debug-only' but the SNP guest policy "
                f"{self.snp_guest_policy:#x} does not allow debugging (bit {SNP_POLICY_DEBUG_BIT} clear)"
            )
        elif cfg.debug_recipient is None:
            refusal = "the launch policy names no debug recipient"
        elif not want or any(n not in cfg.debug_streams for n in want):
            refusal = f"the launch policy allows debug mode only for streams {', '.join(cfg.debug_streams)}"
        if refusal is not None:
            self._audit(Level.WARN, f"debug mode request refused: {refusal}")
            return False
        new = [n for n in want if n not in self.debug_streams]
        if not new:
            self._audit(
                Level.INFO, f"debug mode already enabled (ceiling '{ceiling}') for streams {', '.join(want)}"
            )
            return True
        self._audit(
            Level.WARN,
            f"debug mode enabled (ceiling '{ceiling}'): streams {', '.join(new)} are "
            f"readable by debug recipient {self._debug_key_id()} from now on",
        )
        assert cfg.debug_recipient is not None
        for name in new:
            sid = cfg.stream_id(name)
            # Flush here rather than inside grant(), which does not report what it flushed.
            self._flush(sid)
            recipient = cfg.debug_recipient
            sealed = self._call(lambda s=sid, k=recipient: self._writer.grant(s, k))  # type: ignore[misc]
            self._take(sealed)
            self.debug_grants[name] = sealed[-1].seq
            self.debug_streams.add(name)
        return True

    # ------------------------------------------------------------------ anchors

    def anchor(self) -> Anchor:
        return self._writer.anchor()

    def issue_anchor_report(self, nonce: bytes = bytes(32)) -> tuple[bytes, Anchor] | None:
        """An anchor report for a verifier's ``nonce`` (spec §6.5): (the raw 1184-byte report,
        the anchor its REPORT_DATA commits to), or None if the host refused the request. Every
        pending record is flushed first, so the anchor covers all that was logged; the
        preimage record is durable before this returns, and a crash before then (``Crashed``)
        hands nothing out."""
        self._running()
        if self.snp is None:
            raise ValueError("an anchor report needs an SNP platform (SvsmModel(snp=...))")
        if len(nonce) != 32:
            raise ValueError("the anchor report's nonce is 32 bytes")
        self._flush_all()
        anchor = self._writer.anchor()
        if self.snp.refuse:
            self.log("core", Level.WARN,
                     "SNP_GUEST_REQUEST for an anchor report failed (the host refused it)",
                     component="svsm", target="svsm::log::anchor", force=True)
            self._flush(self._sid("core"))
            return None
        report = self.snp.chip.report(
            anchor.commitment + nonce,
            vmpl=0,
            policy=self.snp_guest_policy,
            measurement=launch_measurement(self.config, self.snp.build),
        )
        self.log("core", Level.INFO, PREIMAGE_MESSAGE, component="svsm", target="svsm::log::anchor",
                 fields=anchor.preimage_fields(nonce), force=True)
        self._flush(self._sid("core"))  # durable before the report leaves the SVSM
        return report, anchor

    # ------------------------------------------------------------------ internals

    @property
    def _writer(self) -> LogWriter:
        assert self.writer is not None
        return self.writer

    def _running(self) -> None:
        if self.stopped is not None:
            raise SvsmStopped(self.stopped)

    def _sid(self, service: str) -> int:
        return self.config.stream_id(self.config.stream_for_service(service))

    def _attester(self, snp: SnpPlatform) -> Callable[[bytes], Evidence | None]:
        def ask(report_data: bytes) -> Evidence | None:
            # MSG_REPORT_REQ at VMPL0 with VMPCK0: the host relays it and may refuse, but
            # cannot read or forge the answer; the certificates come from the host.
            if snp.refuse:
                return None
            report = snp.chip.report(
                report_data,
                vmpl=0,
                policy=self.snp_guest_policy,
                measurement=launch_measurement(self.config, snp.build),
            )
            return Evidence(report, (*snp.host_certs, snp.chip.vcek_der))

        return ask

    def _log_attestation(self, evidence: Evidence | None) -> None:
        if evidence is None:
            self.log("core", Level.WARN,
                     "SNP_GUEST_REQUEST for the log's attestation report failed (the host refused "
                     "it): this boot is unattested", component="svsm", target="svsm::log::attest",
                     force=True)
        else:
            fields = (("report_data", self._writer.report_data.hex()),
                      ("measurement", launch_measurement_hex(evidence)))
            self.log("core", Level.INFO, "log attested: the SNP report binds this boot's keys",
                     component="svsm", target="svsm::log::attest", fields=fields, force=True)

    def _debug_key_id(self) -> str:
        k = self.config.debug_recipient
        return k.key_id.hex()[:16] if k else "(none)"

    def _audit(self, level: Level, message: str) -> None:
        """A debug-mode decision: logged whatever min_level says, on the console stream,
        and durable before anything it announces takes effect."""
        self.log("console", level, message, component="console", target=None, force=True)
        self._flush(self._sid("console"))

    def _snapshot(self) -> None:
        if self.writer is not None:
            self.last_anchor = self.writer.anchor()

    def _call(self, fn: Callable[[], list[Sealed]]) -> list[Sealed]:
        self.tap.mark()
        return fn()

    def _append(self, sid: int, rec: Record) -> None:
        sealed = self._call(lambda: self._writer.append(sid, rec))
        if sealed:  # the pending frame was full: the writer flushed it first
            self._take(sealed)
            self._deadline.pop(sid, None)
        self._pending.setdefault(sid, []).append(rec)
        self._deadline.setdefault(sid, self.now + self._max_delay_ns)

    def _flush(self, sid: int) -> None:
        self._deadline.pop(sid, None)
        if self._writer.pending_bytes(sid) > 0:
            self._take(self._call(lambda: self._writer.flush(sid)))

    def _flush_all(self, first: int | None = None) -> None:
        order = ([first] if first is not None else []) + [s for s in self._writer.streams if s != first]
        for sid in order:
            self._flush(sid)

    def _take(self, sealed: list[Sealed]) -> None:
        for s in sealed:
            self._pending.pop(s.stream, None)
            if s.records:
                self._durable(s.stream, s.seq, s.records, self.tap.write_of(s.lba))

    def _durable(self, stream: int, seq: int, records: Sequence[Record], write: int) -> None:
        name = self.config.stream_name(stream)
        for r in records:
            d = DurableRecord(self.boot, name, seq, r, write)
            self.durable.append(d)
            if self.on_durable is not None:
                self.on_durable(d)


def launch_measurement_hex(evidence: Evidence) -> str:
    """The MEASUREMENT field (offset 0x90) of the evidence's report."""
    return evidence.report[0x90:0xC0].hex()
