"""AMD's X.509 extensions on a VCEK or VLEK (AMD KDS interface specification): the TCB the key
was derived for and, on a VCEK, the chip it belongs to.

The values are tiny DER (an INTEGER per TCB component, an IA5String for names) or raw bytes
(hwID); the few lines of DER here read and write exactly those shapes and refuse anything
else, so no general ASN.1 parser touches certificate content.
"""

from __future__ import annotations

AMD_ARC = "1.3.6.1.4.1.3704.1"
OID_STRUCT_VERSION = f"{AMD_ARC}.1"
OID_PRODUCT_NAME = f"{AMD_ARC}.2"
OID_HWID = f"{AMD_ARC}.4"  # VCEK only: the CHIP_ID it was derived for
OID_CSP_ID = f"{AMD_ARC}.5"  # VLEK only: the cloud provider it was loaded for
TCB_OIDS = {  # TCB component -> extension (the SPL AMD derived the key for)
    "boot_loader": f"{AMD_ARC}.3.1",
    "tee": f"{AMD_ARC}.3.2",
    "snp": f"{AMD_ARC}.3.3",
    "microcode": f"{AMD_ARC}.3.8",
    "fmc": f"{AMD_ARC}.3.9",  # Turin only
}
HWID_LEN = {"milan-genoa": 64, "turin": 8}  # Turin's hwID is 8 bytes, CHIP_ID's first 8


class ExtensionError(ValueError):
    """An AMD extension whose value is not the DER shape the KDS specification gives it."""


def der_integer(value: bytes) -> int:
    """An unsigned DER INTEGER of at most 8 content bytes (an SPL is 0..255)."""
    if len(value) < 3 or value[0] != 0x02 or value[1] != len(value) - 2 or value[1] > 9:
        raise ExtensionError(f"not a small DER INTEGER: {value.hex()}")
    content = value[2:]
    if content[0] & 0x80:
        raise ExtensionError("negative INTEGER")
    if len(content) > 1 and content[0] == 0 and not content[1] & 0x80:
        raise ExtensionError("INTEGER not minimally encoded")
    return int.from_bytes(content, "big")


def encode_der_integer(n: int) -> bytes:
    body = n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big")  # room for a sign bit
    if len(body) > 1 and body[0] == 0 and not body[1] & 0x80:
        body = body[1:]
    return bytes([0x02, len(body)]) + body


def der_ia5string(value: bytes) -> str:
    if len(value) < 2 or value[0] != 0x16 or value[1] != len(value) - 2 or value[1] > 127:
        raise ExtensionError(f"not a short DER IA5String: {value[:16].hex()}")
    return value[2:].decode("ascii", errors="replace")


def encode_der_ia5string(text: str) -> bytes:
    body = text.encode("ascii")
    if len(body) > 127:
        raise ValueError("IA5String too long for the short form")
    return bytes([0x16, len(body)]) + body


def tcb_extensions(components: dict[str, int]) -> dict[str, bytes]:
    """The extension values for a TCB (what a model VCEK carries), reserved SPLs 4..7 zero as
    AMD's certificates have them."""
    exts = {oid: encode_der_integer(components[name]) for name, oid in TCB_OIDS.items()
            if name in components}
    for i in range(4, 8):
        exts[f"{AMD_ARC}.3.{i}"] = encode_der_integer(0)
    return exts
