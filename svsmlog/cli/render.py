"""Human-readable verification reports (``verify``, and the summary panel of ``extract``).

Everything shown here may come from the untrusted image (stream names, details quoting
it): it is passed to rich as plain ``Text``/str on a console without markup. Built from
``tables``' stand-ins for rich's classes, which unstyled output prints without rich.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import TextIO

from ..report import BootSummary, Ending, Finding, Kind, Report, Severity, StreamSpan
from .common import Image, format_ns
from .tables import Panel, ReportConsole, Table, Text

_ENDING_STYLE = {
    Ending.CLEAN: "green",
    Ending.CRASH: "yellow",
    Ending.UNKNOWN: "yellow",
    Ending.PANIC: "bold red",
}


def _verdict_text(report: Report) -> Text:
    if report.verdict == "intact":
        return Text("INTACT", style="bold green")
    if report.verdict == "partial":
        return Text("PARTIAL (" + report.scope() + ")", style="bold yellow")
    if report.verdict == "unverifiable":
        return Text("UNVERIFIABLE (no key given opens this log)", style="bold yellow")
    return Text("VIOLATED", style="bold red")


def _counts(report: Report) -> tuple[int, int, int]:
    violations = sum(1 for f in report.findings if f.violation)
    unproven = sum(1 for f in report.findings if f.unproven)
    return violations, unproven, len(report.findings) - violations - unproven


def summary_lines(image: Image, report: Report) -> list[Text]:
    violations, unproven, notices = _counts(report)
    spans = [s for b in report.boots.values() for s in b.streams.values()]
    frames = sum(s.frames for s in spans)
    records = sum(s.records for s in spans)
    verdict = Text("verdict   ")
    verdict.append_text(_verdict_text(report))
    verdict.append(f"   {violations} violation(s), {unproven} unproven, {notices} notice(s)")
    proven = report.proven_boots()
    unread = sorted(report.unproven_boots())
    lines = [
        Text(f"image     {image.name} ({image.describe()})"),
        Text(f"volume    {report.volume_id.hex()}, {len(image.volume.superblock.regions)} stream(s)"),
        verdict,
        Text(f"verified  {frames} frame(s), {records} record(s); boots proven: "
             + (", ".join(map(str, proven)) or "none") + f" of {len(report.boots)}"),
    ]
    if unread:
        lines.append(Text("unproven  boot(s) " + ", ".join(map(str, unread))
                          + ": frames no key given opens, history only unauthenticated bytes explain, or an "
                          "origin no report proves (see Findings)",
                          style="yellow"))
    read = [b for b, s in report.boots.items() if any(span.frames for span in s.streams.values())]
    proven_all = set(report.attested_boots()) >= set(read)
    lines.append(Text("origin    " + report.origin(), style="" if proven_all else "bold yellow"))
    debug = [b for b, s in sorted(report.boots.items()) if s.attestation and s.attestation.debug]
    if debug:
        lines.append(Text("DEBUG     boot(s) " + ", ".join(map(str, debug)) + " ran with the SEV-SNP debug "
                          "policy: the host could read and change their memory, keys included",
                          style="bold red"))
    lines.append(Text("anchor    " + _anchor_line(report)))
    return lines


def _anchored(report: Report) -> set[int]:
    # Which boots an anchor vouches for (spec §8.5)
    return set(report.anchored_boots)


def _anchor_line(report: Report) -> str:
    if not report.anchor_checked:
        return "not given: a cut-off tail of the newest boot goes unnoticed"
    src = report.anchor_source
    how = "checked"
    if src.get("form") == "snp-report":
        nonce = str(src.get("nonce", ""))
        fresh = "zero nonce" if not nonce.strip("0") else f"nonce {nonce[:16]}… (--json: all of it)"
        how = f"checked (an SEV-SNP anchor report, {fresh})"
    anchored = sorted(_anchored(report))
    if not anchored:
        return f"{how}; it vouches for no boot"
    return f"{how}; it vouches for boot(s) " + ", ".join(map(str, anchored))


def summary_panel(image: Image, report: Report) -> Panel:
    style = {"intact": "green", "partial": "yellow", "unverifiable": "yellow"}.get(report.verdict, "red")
    return Panel(summary_lines(image, report), title="svsmlog verification", border_style=style)


def _host_time(ns: int | None) -> str:
    if not ns:
        return "-"
    try:
        return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return str(ns)


def boots_table(report: Report) -> Table:
    t = Table(title="Boots", title_justify="left")
    for col in ("boot", "ending", "attested by", "measurement", "SNP debug", "anchored",
                "host time (untrusted)", "debug grants", "layout", "config digest"):
        t.add_column(col)
    anchored = _anchored(report)
    for b in sorted(report.boots):
        s: BootSummary = report.boots[b]
        state = "on" if s.debug_enabled else "off"
        debug = "-" if s.debug_enabled is None else f"{state} ({s.debug_ceiling})"
        digest = s.config_digest.hex()[:16] if s.config_digest else "-"
        who, measured, snp_debug = _attestation_cells(s)
        t.add_row(str(b), _ending(s), who, measured, snp_debug, "yes" if b in anchored else "no",
                  _host_time(s.host_time_ns), debug, s.layout or "-", digest)
    return t


def _attestation_cells(s: BootSummary) -> tuple[Text, Text, Text]:
    """Who attested the boot (chip, product, TCB), whether its measurement is expected, and
    whether it ran with the SEV-SNP debug policy."""
    a = s.attestation
    if a is None or a.status in ("unattested", "unknown"):
        return Text("not attested", style="yellow"), Text("-"), Text("-")
    if a.status in ("invalid", "misplaced"):
        return Text(f"{a.status.upper()} report", style="bold red"), Text("-"), Text("-")
    tcb = "/".join(part.split("=")[1] for part in (a.tcb or "").split()) or "?"
    who = Text(f"{a.product or '?'} {(a.signing_key or '').upper()} {(a.chip_id or '')[:8]}… TCB {tcb}")
    m = (a.measurement or "")[:16] + "…"
    if a.measurement_expected is None:
        measured = Text(f"{m} (not checked)", style="yellow")
    elif a.measurement_expected:
        measured = Text(f"{m} expected", style="green")
    else:
        measured = Text(f"{m} UNEXPECTED", style="bold red")
    return who, measured, Text("ON", style="bold red") if a.debug else Text("off")


def _ending(s: BootSummary) -> Text:
    # BootSummary.ending calls a boot without one readable frame a clean shutdown; say
    # what we know instead.
    if not any(span.frames for span in s.streams.values()):
        return Text("unknown (no key for this boot)", style="yellow")
    return Text(s.ending.value, style=_ENDING_STYLE[s.ending])


def _span_state(span: StreamSpan) -> Text:
    parts = []
    if span.violated:
        parts.append(("VIOLATED", "bold red"))
    if span.panic:
        parts.append(("panic", "bold red"))
    if span.ended_clean:
        parts.append(("clean end", "green"))
    if span.torn_tail:
        parts.append(("crash tail", "yellow"))
    if span.unreadable_frames:
        parts.append((f"{span.unreadable_frames} frame(s) without key", "yellow"))
    if not parts:
        parts.append(("no end record", "yellow"))
    out = Text()
    for i, (word, style) in enumerate(parts):
        if i:
            out.append(", ")
        out.append(word, style=style)
    return out


def streams_table(report: Report) -> Table:
    t = Table(title="Verified ranges (per boot and stream)", title_justify="left")
    for col in ("boot", "stream", "seq", "frames", "records", "time since boot", "state"):
        t.add_column(col)
    for b in sorted(report.boots):
        for span in report.boots[b].streams.values():
            seqs = "-" if span.first_seq is None else f"{span.first_seq}..{span.last_seq}"
            times = "-" if span.first_t_ns is None else (
                f"{format_ns(span.first_t_ns)}..{format_ns(span.last_t_ns)}")
            t.add_row(str(b), span.stream, seqs, str(span.frames), str(span.records), times,
                      _span_state(span))
    return t


def _cell(value: object) -> str:
    return "-" if value is None else str(value)


def findings_table(findings: list[Finding]) -> Table:
    t = Table(title="Findings", title_justify="left")
    for col in ("kind", "severity", "boot", "stream", "seq", "offset", "detail"):
        t.add_column(col, overflow="fold")
    for f in findings:
        style = "red" if f.violation else "yellow" if f.kind is not Kind.NO_SHUTDOWN else ""
        style = "bold yellow" if f.unproven else style
        t.add_row(Text(f.kind.value, style=style), f.kind.severity.value, _cell(f.boot), _cell(f.stream),
                  _cell(f.seq), _cell(f.offset), f.detail)
    return t


def rotated_lines(report: Report) -> list[Text]:
    """Rotated-out history: what the ring reclaimed, which is expected and not a failure."""
    out = []
    for f in report.findings:
        if f.kind is Kind.ROTATED_OUT:
            out.append(Text(f"  {f.stream}: history before boot {f.boot} seq {f.seq} was reclaimed "
                            "by the ring"))
    stale = Counter(f.stream for f in report.findings if f.kind is Kind.STALE_REMNANT)
    for stream, n in stale.items():
        out.append(Text(f"  {stream}: {n} stale frame(s) of an earlier lap left in the wrapped region"))
    return out


def render_report(console: ReportConsole, image: Image, report: Report) -> None:
    console.print(summary_panel(image, report))
    if report.boots:
        console.print(boots_table(report))
        console.print(streams_table(report))
    rotated = rotated_lines(report)
    if rotated:
        console.print(Text("Rotated-out history (expected in a ring, not a failure)"))
        for line in rotated:
            console.print(line)
        console.print()
    rank = {Severity.VIOLATION: 0, Severity.UNPROVEN: 1, Severity.NOTICE: 2}
    ordered = sorted(_grouped(report.findings), key=lambda f: rank[f.kind.severity])
    if ordered:
        console.print(findings_table(ordered[:MAX_FINDING_ROWS]))
        if len(ordered) > MAX_FINDING_ROWS:
            console.print(Text(omitted_line(ordered[MAX_FINDING_ROWS:])))
    else:
        console.print(Text("No findings."))


# Rows of the findings table, at most. A host can make the reader report a finding per
# frame (every frame of a region moved: 131,008 rows for a 64 MiB region), which no one
# reads in a table and which cost 227 MiB to lay out; --json still lists every finding.
MAX_FINDING_ROWS = 1000


def omitted_line(rest: list[Finding]) -> str:
    """What the table leaves out, counted by kind (most first)."""
    counts = Counter(f.kind.value for f in rest).most_common()
    kinds = ", ".join(f"{kind} {n:,}" for kind, n in counts)
    return (f"... and {len(rest):,} more finding(s) not shown ({kinds}); "
            "'svsmlog verify --json' lists every finding")


def _grouped(findings: list[Finding]) -> list[Finding]:
    """One row per boot for its no_shutdown notices (a many-boot image has one per boot and
    stream, which drowned the rest); every other finding as it is. --json keeps them all."""
    by_boot: dict[int | None, list[Finding]] = {}
    out: list[Finding] = []
    for f in findings:
        if f.kind is Kind.NO_SHUTDOWN:
            if f.boot not in by_boot:
                out.append(f)  # its place in the list, replaced below
            by_boot.setdefault(f.boot, []).append(f)
        else:
            out.append(f)
    merged = []
    for f in out:
        group = by_boot.get(f.boot) if f.kind is Kind.NO_SHUTDOWN else None
        if group is not None and len(group) > 1:
            streams = ", ".join(str(g.stream) for g in group)
            f = Finding(f.kind, f"{len(group)} streams", f.boot, None, None,
                        f"no shutdown record in {streams}")
        merged.append(f)
    return merged


def write_report_json(report: Report, out: TextIO) -> None:
    """``print(json.dumps(report.as_json(), indent=2), file=out)``, byte for byte, with the
    findings encoded one at a time (svsmlog.cli.jsonout): a host can make the reader report
    a finding per frame, and the whole document as one object of dicts cost 313 MiB and
    2.9 s at 131,008 findings."""
    from .jsonout import write_with_list

    write_with_list(report.as_json(findings=False), "findings", (f.as_json() for f in report.findings), out)
