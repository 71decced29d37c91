"""SEV-SNP attestation reports: parse (``report``, ``fields``) and verify offline against AMD's
certificate chain (``verify``). All cryptography goes through ``svsmlog.crypto``."""

from .report import REPORT_LEN, Report, ReportError, parse_report
from .verify import Reason, Verification, amd_intermediates, pinned_roots, verify_report

__all__ = [
    "REPORT_LEN",
    "Reason",
    "Report",
    "ReportError",
    "Verification",
    "amd_intermediates",
    "parse_report",
    "pinned_roots",
    "verify_report",
]
