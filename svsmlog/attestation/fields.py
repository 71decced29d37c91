"""The packed fields of an ATTESTATION_REPORT, decoded: POLICY, PLATFORM_INFO, the signer
info at 0x048, TCB_VERSION (whose layout depends on the processor), and the processor itself.

Bit positions are those of the AMD SEV-SNP Firmware ABI specification. Reserved bits that the
ABI says must be zero (or one) are reported as findings, not guessed at; PLATFORM_INFO's
undefined bits are only listed, because firmware sets new ones as features appear and a
verifier that rejected them would reject genuine reports from newer platforms.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, NamedTuple


class Product(StrEnum):
    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"


def product_from_cpuid(family: int, model: int) -> Product | None:
    """The report's CPUID_FAM_ID/CPUID_MOD_ID (v3+): Zen 3/4 are family 19h (Milan models 00-0F;
    Genoa, and Bergamo/Siena which AMD endorses under the Genoa keys, 10-1F and A0-AF); Zen 5 is
    family 1Ah (Turin, models 00-11)."""
    if family == 0x19 and model <= 0x0F:
        return Product.MILAN
    if family == 0x19 and (0x10 <= model <= 0x1F or 0xA0 <= model <= 0xAF):
        return Product.GENOA
    if family == 0x1A and model <= 0x11:
        return Product.TURIN
    return None


def product_from_name(name: str) -> Product | None:
    """A product from an AMD name: the ARK's CN ("ARK-Milan"), the ASK's ("SEV-Genoa"), or the
    VCEK's productName extension ("Milan-B0")."""
    for p in Product:
        if p.value.lower() in name.lower():
            return p
    return None


# --------------------------------------------------------------------------- POLICY (0x008)

POLICY_BITS = {  # bit -> name, for the bits the ABI defines beyond ABI_MINOR/ABI_MAJOR
    16: "smt", 18: "migrate_ma", 19: "debug", 20: "single_socket", 21: "cxl_allow",
    22: "mem_aes_256_xts", 23: "rapl_dis", 24: "ciphertext_hiding_dram", 25: "page_swap_disable",
}
POLICY_MUST_BE_ONE = 17
POLICY_RESERVED_FROM = 26  # bits 63:26 must be zero
DEBUG_BIT = 19


class Policy(NamedTuple):
    raw: int
    abi_major: int
    abi_minor: int
    smt: bool
    migrate_ma: bool
    debug: bool  # the host may read and change this VM's memory (SNP_DBG_DECRYPT/ENCRYPT)
    single_socket: bool
    cxl_allow: bool
    mem_aes_256_xts: bool
    rapl_dis: bool
    ciphertext_hiding_dram: bool
    page_swap_disable: bool

    @classmethod
    def decode(cls, raw: int) -> Policy:
        flags = {name: bool(raw >> bit & 1) for bit, name in POLICY_BITS.items()}
        return cls(raw=raw, abi_major=raw >> 8 & 0xFF, abi_minor=raw & 0xFF, **flags)

    def findings(self) -> list[str]:
        out = []
        if not self.raw >> POLICY_MUST_BE_ONE & 1:
            out.append(f"POLICY bit {POLICY_MUST_BE_ONE} (reserved, must be one) is zero")
        if self.raw >> POLICY_RESERVED_FROM:
            out.append(f"POLICY reserved bits 63:{POLICY_RESERVED_FROM} are not zero "
                       f"(POLICY 0x{self.raw:016x})")
        return out

    def as_json(self) -> dict[str, Any]:
        d = self._asdict()
        d["raw"] = f"0x{self.raw:x}"
        return d


# --------------------------------------------------------------------------- PLATFORM_INFO (0x040)

PLATFORM_INFO_BITS = {0: "smt_en", 1: "tsme_en", 2: "ecc_en", 3: "rapl_dis",
                      4: "ciphertext_hiding_dram_en", 5: "alias_check_complete"}


def decode_platform_info(raw: int) -> dict[str, Any]:
    out: dict[str, Any] = {"raw": f"0x{raw:x}"}
    out.update({name: bool(raw >> bit & 1) for bit, name in PLATFORM_INFO_BITS.items()})
    known = sum(1 << b for b in PLATFORM_INFO_BITS)
    out["other_bits"] = f"0x{raw & ~known:x}"  # listed, not judged (see the module docstring)
    return out


# --------------------------------------------------------------------------- signer info (0x048)

SIGNING_KEYS = {0: "vcek", 1: "vlek", 7: "none"}  # 2-6 reserved


class SignerInfo(NamedTuple):
    raw: int
    author_key_en: bool
    mask_chip_key: bool  # the firmware was told not to sign: the signature is zero
    signing_key: str  # "vcek", "vlek", "none", or "reserved(N)"

    @classmethod
    def decode(cls, raw: int) -> SignerInfo:
        key = raw >> 2 & 7
        return cls(raw=raw, author_key_en=bool(raw & 1), mask_chip_key=bool(raw & 2),
                   signing_key=SIGNING_KEYS.get(key, f"reserved({key})"))

    def findings(self) -> list[str]:
        out = []
        if self.raw >> 5:
            out.append(f"signer info (0x048) reserved bits 31:5 are not zero (0x{self.raw:08x})")
        if self.signing_key.startswith("reserved"):
            out.append(f"SIGNING_KEY {self.raw >> 2 & 7} is reserved (0 is VCEK, 1 VLEK, 7 none)")
        return out


# --------------------------------------------------------------------------- TCB_VERSION

# Byte index of each component in the 8 little-endian bytes, per layout; the rest is reserved.
TCB_LAYOUTS: dict[str, dict[str, int]] = {
    "milan-genoa": {"boot_loader": 0, "tee": 1, "snp": 6, "microcode": 7},
    "turin": {"fmc": 0, "boot_loader": 1, "tee": 2, "snp": 3, "microcode": 7},
}


def tcb_layout(product: Product | None) -> str:
    """Turin has its own layout. Version 2 reports only come from Milan and Genoa firmware
    (Turin's first firmware already writes version 3), so an unknown product of a v2 report
    reads as Milan/Genoa; callers pass ``None`` only then."""
    return "turin" if product is Product.TURIN else "milan-genoa"


class Tcb(NamedTuple):
    raw: bytes
    layout: str
    boot_loader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None  # Turin only

    @classmethod
    def decode(cls, raw: bytes, layout: str) -> Tcb:
        idx = TCB_LAYOUTS[layout]
        return cls(raw=raw, layout=layout, fmc=raw[idx["fmc"]] if "fmc" in idx else None,
                   **{k: raw[i] for k, i in idx.items() if k != "fmc"})

    def components(self) -> dict[str, int]:
        out = {"boot_loader": self.boot_loader, "tee": self.tee, "snp": self.snp,
               "microcode": self.microcode}
        if self.fmc is not None:
            out["fmc"] = self.fmc
        return out

    def reserved_nonzero(self) -> bool:
        used = set(TCB_LAYOUTS[self.layout].values())
        return any(b for i, b in enumerate(self.raw) if i not in used)

    def as_json(self) -> dict[str, Any]:
        return {**self.components(), "raw": self.raw[::-1].hex()}  # raw as the u64 reads

    def __str__(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.components().items())
