"""``svsmlog simulate``: run the model of the SVSM writer over an image (svsmlog.model).

The model is imported only when the command runs: the forensic commands must not pay for
it, nor fail where it is not installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .common import CliError

# For the help text; tests/test_manpage.py checks it against the model's own list.
SCENARIO_HELP = (
    "normal, panic (or panic:SERVICE), attestation-failure, multi-boot, wraparound, report-refused, debug"
)


def _model() -> Any:
    try:
        from ..model import simulate as model
    except ImportError as e:
        raise CliError(f"simulate needs the svsmlog.model package, which is not available ({e})") from None
    return model


def simulate(options: dict[str, Any]) -> str:
    """Run the model with the options given on the command line (the others keep the
    model's defaults); returns the summary to print."""
    model = _model()
    given = {k: v for k, v in options.items() if v is not None}
    try:
        result = model.simulate(model.SimulateOptions(**given))
    except (model.SimulationError, model.ConfigError) as e:
        raise CliError(f"simulate: {e}") from None
    return describe(Path(options["image"]), result, options.get("anchor_out"),
                    options.get("anchor_report_out"))


def describe(image: Path, result: Any, anchor_out: Path | None, anchor_report_out: Path | None = None) -> str:
    boots = result.boots
    span = f"boot {boots[0]}" if len(boots) == 1 else f"boots {boots[0]}..{boots[-1]}" if boots else "no boot"
    lines = [
        f"wrote {image}: {span}, {result.records_durable} record(s) durable in {result.frames} frame(s) "
        f"({result.device_writes} device writes, {result.sectors_written} sectors)",
    ]
    if result.crashed:
        lines.append(f"the simulated machine crashed after {result.device_writes} device writes, as asked")
    if anchor_out is not None and result.anchor is not None:
        lines.append(f"anchor of boot {result.anchor.boot} written to {anchor_out} "
                     f"(REPORT_DATA {result.anchor.commitment.hex()})")
    report_out = getattr(result, "anchor_report", None)
    if report_out is not None:
        lines.append(f"anchor report of boot {report_out.boot} written to {anchor_report_out} "
                     f"(REPORT_DATA {report_out.commitment.hex()} || zero nonce)")
    elif anchor_report_out is not None:
        lines.append(f"no anchor report written to {anchor_report_out}: the host refused the request, "
                     "or the machine stopped first")
    if getattr(result, "measurement", None) is not None:
        lines.append(f"every boot asked the model's TEST-ONLY AMD-SP for a report (measurement "
                     f"{result.measurement.hex()[:16]}…)")
    if getattr(result, "attest_out", None) is not None:
        out = result.attest_out
        lines.append(f"verify with: --trust-root {out / 'TEST-ONLY-amd-chain.pem'} "
                     f"--measurement $(cat {out / 'measurement.hex'})")
    return "\n".join(lines)
