"""The SEV-SNP ATTESTATION_REPORT (AMD SEV-SNP Firmware ABI, "ATTESTATION_REPORT Structure"),
declared with construct, for report versions 2, 3 and 5.

The declaration is the definition: every field at its ABI offset (``OFFSETS`` repeats them so
a test can hold the two against each other). Reports come from whoever hands them over: they
are never parsed by a compiled construct parser (it skips checks). ``parse_report`` reads
them with ``LAYOUTS``, slices at fixed offsets: importing construct, building the
declaration and interpreting it cost a 1-boot ``verify`` 53 M CPU instructions, 6 % of its
start-up. tests/test_attestation.py holds the two equal on every version, on real reports
and on random bytes. ``parse_report`` raises ``ReportError`` and nothing else.

What is *structure* (wrong length, unknown version, not hex) is an error here; what is
*content* (a reserved byte that is not zero) is a finding, listed by ``reserved_findings``
for the verifier to report, so the rest of a suspicious report can still be shown.
"""

from __future__ import annotations

import string
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from construct import Struct

REPORT_LEN = 0x4A0  # 1184
SIGNED_LEN = 0x2A0  # the signature covers bytes 0x000..0x29F, whatever the version
SIG_R, SIG_S, SIG_COMPONENT_LEN = 0x2A0, 0x2E8, 72  # ECDSA P-384 R and S, little-endian
UNSIGNED_AREA = (0x330, REPORT_LEN)  # after R and S: neither signed nor meaningful, must be zero
VERSIONS = (2, 3, 5)  # the versions this parser knows; 4 is not one of them (no layout checked)
SIG_ALGO_ECDSA_P384_SHA384 = 1


def _declare() -> Struct:
    from construct import Bytes, If, Int8ul, Int32ul, Int64ul, Struct, Terminated, this

    # TCB_VERSION is 8 bytes whose layout depends on the processor (see fields.py): kept raw here.
    TcbVersion = Bytes(8)
    return Struct(
        "version" / Int32ul,                          # 0x000
        "guest_svn" / Int32ul,                        # 0x004
        "policy" / Int64ul,                           # 0x008
        "family_id" / Bytes(16),                      # 0x010
        "image_id" / Bytes(16),                       # 0x020
        "vmpl" / Int32ul,                             # 0x030
        "signature_algo" / Int32ul,                   # 0x034
        "current_tcb" / TcbVersion,                   # 0x038
        "platform_info" / Int64ul,                    # 0x040
        "signer_info" / Int32ul,                      # 0x048 AUTHOR_KEY_EN, MASK_CHIP_KEY, SIGNING_KEY
        "reserved_04c" / Bytes(4),                    # 0x04C
        "report_data" / Bytes(64),                    # 0x050
        "measurement" / Bytes(48),                    # 0x090
        "host_data" / Bytes(32),                      # 0x0C0
        "id_key_digest" / Bytes(48),                  # 0x0E0
        "author_key_digest" / Bytes(48),              # 0x110
        "report_id" / Bytes(32),                      # 0x140
        "report_id_ma" / Bytes(32),                   # 0x160
        "reported_tcb" / TcbVersion,                  # 0x180
        # Version 3 put CPUID family/model/stepping in what version 2 reserved.
        "reserved_188" / If(this.version < 3, Bytes(24)),   # 0x188 (v2)
        "cpuid_fam_id" / If(this.version >= 3, Int8ul),     # 0x188 (v3+)
        "cpuid_mod_id" / If(this.version >= 3, Int8ul),     # 0x189
        "cpuid_step" / If(this.version >= 3, Int8ul),       # 0x18A
        "reserved_18b" / If(this.version >= 3, Bytes(21)),  # 0x18B
        "chip_id" / Bytes(64),                        # 0x1A0
        "committed_tcb" / TcbVersion,                 # 0x1E0
        "current_build" / Int8ul,                     # 0x1E8
        "current_minor" / Int8ul,                     # 0x1E9
        "current_major" / Int8ul,                     # 0x1EA
        "reserved_1eb" / Bytes(1),                    # 0x1EB
        "committed_build" / Int8ul,                   # 0x1EC
        "committed_minor" / Int8ul,                   # 0x1ED
        "committed_major" / Int8ul,                   # 0x1EE
        "reserved_1ef" / Bytes(1),                    # 0x1EF
        "launch_tcb" / TcbVersion,                    # 0x1F0
        # Version 5 added the mitigation vectors where earlier versions reserved.
        "reserved_1f8" / If(this.version < 5, Bytes(168)),        # 0x1F8 (v2, v3)
        "launch_mit_vector" / If(this.version >= 5, Int64ul),     # 0x1F8 (v5)
        "current_mit_vector" / If(this.version >= 5, Int64ul),    # 0x200
        "reserved_208" / If(this.version >= 5, Bytes(152)),       # 0x208
        "signature_r" / Bytes(SIG_COMPONENT_LEN),     # 0x2A0
        "signature_s" / Bytes(SIG_COMPONENT_LEN),     # 0x2E8
        "reserved_330" / Bytes(REPORT_LEN - 0x330),   # 0x330, outside the signature
        Terminated,
    )


def __getattr__(name: str) -> Any:
    """``ATTESTATION_REPORT``, the declaration, built on first use (the model builds reports
    with it; the tests parse with it)."""
    if name == "ATTESTATION_REPORT":
        globals()[name] = decl = _declare()
        return decl
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Field -> offset, as the ABI tables give them (a test parses a patterned buffer against this).
OFFSETS: dict[str, int] = {
    "version": 0x000, "guest_svn": 0x004, "policy": 0x008, "family_id": 0x010, "image_id": 0x020,
    "vmpl": 0x030, "signature_algo": 0x034, "current_tcb": 0x038, "platform_info": 0x040,
    "signer_info": 0x048, "reserved_04c": 0x04C, "report_data": 0x050, "measurement": 0x090,
    "host_data": 0x0C0, "id_key_digest": 0x0E0, "author_key_digest": 0x110, "report_id": 0x140,
    "report_id_ma": 0x160, "reported_tcb": 0x180, "reserved_188": 0x188, "cpuid_fam_id": 0x188,
    "cpuid_mod_id": 0x189, "cpuid_step": 0x18A, "reserved_18b": 0x18B, "chip_id": 0x1A0,
    "committed_tcb": 0x1E0, "current_build": 0x1E8, "current_minor": 0x1E9, "current_major": 0x1EA,
    "reserved_1eb": 0x1EB, "committed_build": 0x1EC, "committed_minor": 0x1ED,
    "committed_major": 0x1EE, "reserved_1ef": 0x1EF, "launch_tcb": 0x1F0, "reserved_1f8": 0x1F8,
    "launch_mit_vector": 0x1F8, "current_mit_vector": 0x200, "reserved_208": 0x208,
    "signature_r": SIG_R, "signature_s": SIG_S, "reserved_330": UNSIGNED_AREA[0],
}


# What parse_report reads, per version: (name, offset, size, little-endian unsigned integer?),
# in offset order, tiling the 1184 bytes. Sizes and kinds as the declaration above gives them
# (Int8ul/32ul/64ul: integers; Bytes(n): raw bytes); a field runs to where the next begins.
_INTS = frozenset({"version", "guest_svn", "policy", "vmpl", "signature_algo", "platform_info",
                   "signer_info", "cpuid_fam_id", "cpuid_mod_id", "cpuid_step", "current_build",
                   "current_minor", "current_major", "committed_build", "committed_minor",
                   "committed_major", "launch_mit_vector", "current_mit_vector"})
_ONLY = {"reserved_188": (2,), "cpuid_fam_id": (3, 5), "cpuid_mod_id": (3, 5), "cpuid_step": (3, 5),
         "reserved_18b": (3, 5), "reserved_1f8": (2, 3), "launch_mit_vector": (5,),
         "current_mit_vector": (5,), "reserved_208": (5,)}


def _layout(version: int) -> tuple[tuple[str, int, int, bool], ...]:
    names = [n for n in OFFSETS if version in _ONLY.get(n, VERSIONS)]
    ends = [OFFSETS[n] for n in names[1:]] + [REPORT_LEN]
    return tuple((n, OFFSETS[n], end - OFFSETS[n], n in _INTS) for n, end in zip(names, ends, strict=True))


LAYOUTS = {v: _layout(v) for v in VERSIONS}


class ReportError(ValueError):
    """Input that is not an ATTESTATION_REPORT this parser knows (length, version, encoding)."""


class Report(NamedTuple):
    """A parsed report: the raw bytes (the signature is checked over these, never over a
    re-encoding) and the fields by name, also as attributes (``report.vmpl``)."""

    raw: bytes
    fields: dict[str, Any]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def signed_bytes(self) -> bytes:
        return self.raw[:SIGNED_LEN]

    @property
    def signature_rs(self) -> tuple[int, int]:
        """R and S as integers (the report stores them little-endian, zero-padded to 72 bytes)."""
        return (int.from_bytes(self.fields["signature_r"], "little"),
                int.from_bytes(self.fields["signature_s"], "little"))


_HEX = frozenset(string.hexdigits.encode())
_SPACE = frozenset(string.whitespace.encode())


def _from_hex(data: bytes) -> bytes | None:
    """Hex text (any whitespace, e.g. ``xxd -p`` or a line-wrapped dump) -> bytes; ``None`` when
    ``data`` is not hex text."""
    digits = bytes(b for b in data if b not in _SPACE)
    if not digits or not _HEX.issuperset(digits):
        return None
    if len(digits) % 2:
        raise ReportError(f"hex text with an odd number of digits ({len(digits)})")
    return bytes.fromhex(digits.decode())


def parse_report(data: bytes) -> Report:
    """Binary (exactly 1184 bytes) or hex text of it."""
    if len(data) != REPORT_LEN:  # a binary report is exactly this long; its hex text never is
        data = _from_hex(data) or data
    if len(data) != REPORT_LEN:
        what = "short" if len(data) < REPORT_LEN else "long"
        raise ReportError(f"{len(data)} bytes: too {what} for an ATTESTATION_REPORT "
                          f"({REPORT_LEN} bytes, or its hex text)")
    version = int.from_bytes(data[:4], "little")
    if version not in VERSIONS:
        raise ReportError(f"report version {version} is unknown: this tool reads versions "
                          f"{', '.join(map(str, VERSIONS))}")
    data = bytes(data)
    fields = {name: int.from_bytes(data[at : at + size], "little") if is_int else data[at : at + size]
              for name, at, size, is_int in LAYOUTS[version]}
    return Report(raw=data, fields=fields)


def reserved_findings(report: Report) -> list[str]:
    """Every reserved region of this version that is not zero, by offset and role."""
    found = []
    for name, value in report.fields.items():
        if name.startswith("reserved_") and any(value):
            start = OFFSETS[name]
            first = start + next(i for i, b in enumerate(value) if b)
            where = "outside the signature" if name == "reserved_330" else "signed"
            found.append(f"reserved bytes 0x{start:03X}..0x{start + len(value) - 1:03X} ({where}) "
                         f"are not zero: first nonzero byte at 0x{first:03X}")
    return found
