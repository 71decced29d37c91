"""``svsmlog attest``: check an SEV-SNP attestation report offline against AMD's chain.

The typer command is declared here and registered by ``app.py``. Certificates come only from
the command line (no network, ever); the trust roots are AMD's ARKs pinned in the package
unless ``--trust-root`` replaces them. Exit status: 0 valid, 1 invalid (a ``Reason`` found),
2 unreadable input or bad usage.

A report from any VMPL is accepted unless ``--require-vmpl0``: the command answers "did AMD's
processor sign this", and the guest OS's own reports (VMPL1 and up under an SVSM) are genuine
too. The SVSM's boot reports, which bind svsmlog's anchors, are VMPL0; whoever checks those
asks for it.
"""

from __future__ import annotations

# json is imported by the functions that use it: a plain verify never does (json costs a
# few ms of start-up, benchmarks/README.md).
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from .. import crypto
from .common import CliError, Exit, load_certificate_files, read_small_file

if TYPE_CHECKING:
    from ..attestation import Verification

ReportArg = Annotated[Path, typer.Argument(metavar="REPORT", show_default=False,
                                           help="ATTESTATION_REPORT: 1184 bytes, or its hex text.")]
CertOpt = Annotated[list[Path] | None, typer.Option("--cert", metavar="FILE",
                                                    help="VCEK or VLEK certificate, and optionally "
                                                    "the ASK/ASVK and ARK (PEM, PEM bundle or DER). "
                                                    "Repeatable.")]
RootOpt = Annotated[list[Path] | None, typer.Option("--trust-root", metavar="FILE",
                                                    help="Trust this ARK instead of AMD's pinned ARKs "
                                                    "(PEM, PEM bundle or DER). Repeatable.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="One JSON object: the verdict, the reasons and "
                                       "every decoded field.")]
Vmpl0Opt = Annotated[bool, typer.Option("--require-vmpl0", help="Invalid unless the report was "
                                        "requested at VMPL0 (as the SVSM's own reports are).")]


def _certificates(paths: list[Path], what: str) -> list[crypto.Certificate]:
    return load_certificate_files(paths, what)


def attest(
    report: ReportArg,
    cert: CertOpt = None,
    trust_root: RootOpt = None,
    as_json: JsonOpt = False,
    require_vmpl0: Vmpl0Opt = False,
) -> Exit:
    """Verify an SEV-SNP attestation report offline.

    Checks the report's ECDSA P-384 signature over its bytes 0x000-0x29F under the VCEK or
    VLEK, the chain VCEK -> ASK -> ARK (VLEK -> ASVK -> ARK) with RSA-PSS SHA-384, that the
    certificate was issued for the report's REPORTED_TCB and (VCEK) its CHIP_ID, and that
    reserved bytes are zero. Nothing is fetched: get the VCEK from AMD's KDS yourself. AMD's
    ASKs and ASVKs ship with svsmlog, so --cert with the VCEK alone is enough.

    Exit status of attest: 0 the report is valid, 1 it is not (each reason is printed),
    2 an input cannot be read or no VCEK/VLEK was given.

    [bold]Examples[/bold]

      svsmlog attest report.bin --cert vcek.der
      svsmlog attest report.hex --cert vlek.pem --cert cert_chain.pem --json | jq .valid
      svsmlog attest report.bin --cert vcek.der --require-vmpl0
      svsmlog attest model.bin --cert vcek.pem --trust-root TEST-ONLY-ark.pem
    """
    import json

    from ..attestation import ReportError, parse_report, verify_report  # only this command needs it

    data = read_small_file(report, "attestation report")
    try:
        parsed = parse_report(data)
    except ReportError as e:
        raise CliError(f"{report}: {e}") from None
    certs = _certificates(list(cert or []), "certificate")
    if not any(c.key_type.startswith("ec-") for c in certs):
        raise CliError("no VCEK or VLEK given: name it with --cert FILE (AMD's KDS serves it for "
                       "the report's CHIP_ID and REPORTED_TCB; svsmlog never fetches it)")
    roots = _certificates(list(trust_root), "trust root") if trust_root else None
    result = verify_report(parsed, certs, roots, require_vmpl0=require_vmpl0)
    if as_json:
        print(json.dumps(result.as_json(), indent=2))
    else:
        print(render(result, report))
    return Exit.INTACT if result.valid else Exit.VIOLATED


def render(v: Verification, path: Path) -> str:
    """A short summary: the verdict first, then what the report says, loud about debug."""
    r = v.report
    lines = [f"{path}: {'VALID' if v.valid else 'INVALID'} SEV-SNP attestation report"]
    lines += [f"  ! {reason}" for reason in v.reasons]
    if v.policy.debug:
        lines.append("  WARNING: DEBUG POLICY: the host could read this VM's memory (and change it);"
                     " nothing this VM measured or logged is confidential")
    chain = " -> ".join(f"{role.upper()} '{c.subject_cn}'" for role, c in v.chain)
    product = f"{v.product.value} ({v.product_source})" if v.product else "unknown"
    lines += [
        f"  version       {r.version}",
        f"  product       {product}",
        f"  vmpl          {r.vmpl}",
        f"  signed by     {v.signing_key.upper()}" + (f": {chain}" if chain else ""),
        f"  measurement   {r.measurement.hex()}",
        f"  report_data   {r.report_data.hex()}",
        f"  host_data     {r.host_data.hex()}",
        f"  chip_id       {r.chip_id.hex()}",
        f"  reported_tcb  {v.tcb['reported']}",
        f"  policy        0x{v.policy.raw:x}: ABI >= {v.policy.abi_major}.{v.policy.abi_minor}, "
        f"debug {'ON' if v.policy.debug else 'off'}, SMT {'allowed' if v.policy.smt else 'no'}, "
        f"migration agent {'allowed' if v.policy.migrate_ma else 'no'}",
        f"  firmware      {r.current_major}.{r.current_minor} build {r.current_build}",
    ]
    lines += [f"  note: {n}" for n in v.notes if not n.startswith("POLICY.DEBUG")]
    return "\n".join(lines)
