"""Test vectors (spec §11): ``python -m svsmlog.vectors formats/vectors``.

Writer vectors fix every input, HPKE envelopes included (HPKE encryption is
randomised, so its output is an input here): a conforming writer given them must
write the image byte for byte. Reader vectors are damaged copies with the outcome a
conforming verifier must report, written by hand below, not taken from our reader:
generation fails if the reader disagrees with a label.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import crypto
from .anchor import Anchor
from .codec import RegionEntry, decode_frame_header
from .device import SECTOR, MemoryDevice
from .format import FRAME_AAD_LEN, FRAME_HEADER_LEN, DebugCeiling, Layout
from .keyschedule import step, stream_root
from .records import Level, Record
from .scan import Candidate, scan_region
from .verify import Keyring, Verifier
from .volume import StreamSpec, key_dir_slot, read_volume
from .writer import BootPolicy, LogWriter

# Fixed test keys: never use them for anything but vectors.
KEY_SEEDS = {
    "owner": (crypto.KEM_X25519, bytes(range(1, 33))),
    "owner-pq": (crypto.KEM_MLKEM768_X25519, bytes(range(100, 196))),
    "debug": (crypto.KEM_X25519, bytes(range(200, 232))),
}


def vector_key(name: str) -> crypto.PrivateKey:
    kem, seed = KEY_SEEDS[name]
    return crypto.private_key_from_seed(kem, seed)


def _h(b: bytes) -> str:
    return b.hex()


# ---------------------------------------------------------------- replaying a writer vector


class EnvelopeBook:
    """HPKE envelopes as fixed inputs: looked up by (key id, info); in ``record`` mode a
    missing one is sealed for real and kept."""

    def __init__(self, book: dict[str, str], *, record: bool) -> None:
        self.book, self.record = book, record
        self.used: set[str] = set()

    def __call__(self, key: crypto.PublicKey, plaintext: bytes, info: bytes) -> bytes:
        slot = f"{_h(key.key_id)}:{_h(info)}"
        self.used.add(slot)
        if slot not in self.book:
            if not self.record:
                raise KeyError(f"vector has no envelope for {slot}")
            self.book[slot] = _h(crypto.hpke_seal(key, plaintext, info))
        return bytes.fromhex(self.book[slot])


def _record(d: dict[str, Any]) -> Record:
    return Record(
        d["t_ns"],
        Level.parse(d["level"]),
        d["service"],
        d["component"],
        d["message"],
        d.get("target"),
        tuple((k, v) for k, v in d.get("fields", [])),
        d.get("flags", 0),
    )


def _popper(values: list[bytes]) -> Callable[[int], bytes]:
    return lambda n: values.pop(0)[:n]


def _reader(cell: dict[str, int]) -> Callable[[], int]:
    return lambda: cell["t"]


def run_writer_vector(vec: dict[str, Any], *, record_envelopes: bool = False) -> tuple[bytes, list[Anchor]]:
    """Execute a writer vector's operations; returns the image and the anchors taken."""
    inp = vec["inputs"]
    dev = MemoryDevice(inp["sector_count"])
    streams = [StreamSpec(s["stream"], s["name"], s["sectors"]) for s in inp["streams"]]
    book = EnvelopeBook(inp.setdefault("envelopes", {}), record=record_envelopes)
    anchors: list[Anchor] = []
    for i, boot in enumerate(inp["boots"]):
        randoms = ([bytes.fromhex(inp["volume_id"])] if i == 0 else []) + [bytes.fromhex(boot["boot_secret"])]
        clock = {"t": 0}
        p = boot.get("policy", {})
        policy = BootPolicy(
            config_digest=bytes.fromhex(p.get("config_digest", "00" * 32)),
            host_time_ns=p.get("host_time_ns", 0),
            debug_ceiling=DebugCeiling[p.get("debug_ceiling", "never").upper().replace("-", "_")],
            debug_enabled=p.get("debug_enabled", False),
            layout=Layout[p.get("layout", "aggregated").upper().replace("-", "_")],
            min_level=Level.parse(p.get("min_level", "trace")),
        )
        w = LogWriter(
            dev,
            streams,
            [vector_key(n).public for n in inp["owners"]],
            policy=policy,
            stream_grants={
                int(s): [vector_key(n).public for n in names]
                for s, names in boot.get("grants_at_boot", {}).items()
            },
            rng=_popper(randoms),
            sealer=book,
            clock=_reader(clock),
        )
        for op in boot["ops"]:
            kind = op["op"]
            if kind == "append":
                rec = _record(op["record"])
                clock["t"] = rec.t_ns
                w.append(op["stream"], rec)
            elif kind == "flush":
                w.flush(op.get("stream"))
            elif kind == "grant":
                clock["t"] = op["t_ns"]
                w.grant(op["stream"], vector_key(op["recipient"]).public)
            elif kind == "close":
                w.close()
            elif kind == "anchor":
                anchors.append(w.anchor())
            else:
                raise ValueError(f"unknown op {kind!r}")
    if record_envelopes:  # drop envelopes an earlier format or vector needed and this one does not
        inp["envelopes"] = {k: v for k, v in book.book.items() if k in book.used}
    return dev.image(), anchors


# ---------------------------------------------------------------- frames of an image


@dataclass(frozen=True)
class FrameAt:
    region: RegionEntry
    lba: int
    sectors: int
    boot: int
    seq: int
    type: int


def frames_of(image: bytes) -> list[FrameAt]:
    """Every complete frame, keyless (what the host sees), in region and disk order."""
    dev = MemoryDevice(len(image) // SECTOR, image)
    vol = read_volume(dev.read(0, 1), dev.sector_count)
    out = []
    for r in vol.superblock.regions:
        for c in scan_region(dev.read, r):
            if isinstance(c, Candidate) and c.digest_ok():
                c.accepted = True
                h = c.header
                out.append(FrameAt(r, c.lba, h.sectors, h.boot, h.seq, h.type))
    return out


def find(image: bytes, stream: str, boot: int, seq: int) -> FrameAt:
    for f in frames_of(image):
        if (f.region.name, f.boot, f.seq) == (stream, boot, seq):
            return f
    raise LookupError(f"no frame {stream} boot {boot} seq {seq}")


def verify_image(image: bytes, key_names: list[str], anchor: Anchor | None = None) -> tuple[str, set[str]]:
    dev = MemoryDevice(len(image) // SECTOR, image)
    v = Verifier(dev.read, dev.sector_count, Keyring([vector_key(n) for n in key_names]))
    rep = v.run(anchor)
    return rep.verdict, {f.kind.value for f in rep.findings}


# ---------------------------------------------------------------- the vectors


def rec(t: int, level: str, service: str, component: str, message: str, **kw: Any) -> dict[str, Any]:
    return {"t_ns": t, "level": level, "service": service, "component": component, "message": message, **kw}


def _boot_ops_basic() -> list[dict[str, Any]]:
    return [
        {
            "op": "append",
            "stream": 1,
            "record": rec(
                1_000, "info", "boot", "svsm", "COCONUT Secure Virtual Machine Service Module Version 0.1"
            ),
        },
        {
            "op": "append",
            "stream": 1,
            "record": rec(
                2_500_000,
                "debug",
                "core",
                "cpu-3",
                "CPU 3 is online",
                target="svsm::cpu::smp",
                fields=[["apic_id", "3"]],
            ),
        },
        {"op": "flush"},
        {
            "op": "append",
            "stream": 1,
            "record": rec(9_000_000, "info", "attest", "attest", "attestation successful"),
        },
        {"op": "close"},
    ]


def writer_vectors() -> list[dict[str, Any]]:
    one = [{"stream": 1, "name": "all", "sectors": 64}]
    two = [{"stream": 1, "name": "core", "sectors": 48}, {"stream": 2, "name": "vtpm", "sectors": 48}]
    big = "VTPM: NV state dump " + "0123456789abcdef" * 90  # a multi-sector frame
    return [
        {
            "name": "basic-x25519",
            "description": "one boot, one aggregated stream, two flushes and a clean shutdown",
            "inputs": {
                "sector_count": 192,
                "volume_id": "11" * 16,
                "owners": ["owner"],
                "streams": one,
                "boots": [{"boot_secret": "22" * 32, "ops": _boot_ops_basic()}],
            },
            "expect": {"verdict": "intact", "kinds": []},
        },
        {
            "name": "hybrid-mlkem768-x25519",
            "description": "as basic-x25519, the owner holding an MLKEM768-X25519 key",
            "inputs": {
                "sector_count": 192,
                "volume_id": "33" * 16,
                "owners": ["owner-pq"],
                "streams": one,
                "boots": [{"boot_secret": "44" * 32, "ops": _boot_ops_basic()}],
            },
            "expect": {"verdict": "intact", "kinds": [], "key": ["owner-pq"]},
        },
        {
            "name": "multiboot-perservice",
            "description": "two streams, boot 1 shuts down cleanly, boot 2 stops after a multi-sector flush",
            "inputs": {
                "sector_count": 192,
                "volume_id": "55" * 16,
                "owners": ["owner"],
                "streams": two,
                "boots": [
                    {
                        "boot_secret": "66" * 32,
                        "policy": {"layout": "per-service", "host_time_ns": 1764150000_000000000},
                        "ops": [
                            {
                                "op": "append",
                                "stream": 1,
                                "record": rec(1_000, "info", "core", "svsm", "SVSM starting"),
                            },
                            {
                                "op": "append",
                                "stream": 2,
                                "record": rec(
                                    2_000, "info", "vtpm", "vtpm", "VTPM: manufacturing new NV state"
                                ),
                            },
                            {"op": "flush"},
                            {
                                "op": "append",
                                "stream": 1,
                                "record": rec(3_000, "info", "core", "cpu-1", "CPU 1 is online"),
                            },
                            {"op": "flush"},
                            {
                                "op": "append",
                                "stream": 1,
                                "record": rec(4_000, "info", "core", "svsm", "shutting down"),
                            },
                            {"op": "close"},
                        ],
                    },
                    {
                        "boot_secret": "77" * 32,
                        "policy": {"layout": "per-service", "host_time_ns": 1764153600_000000000},
                        "ops": [
                            {
                                "op": "append",
                                "stream": 2,
                                "record": rec(
                                    5_000,
                                    "info",
                                    "vtpm",
                                    "vtpm",
                                    "VTPM: loaded existing NV state from persistent storage",
                                ),
                            },
                            {"op": "flush"},
                            {
                                "op": "append",
                                "stream": 1,
                                "record": rec(6_000, "warn", "core", "svsm", "low on memory"),
                            },
                            {"op": "flush"},
                            {"op": "append", "stream": 2, "record": rec(7_000, "debug", "vtpm", "vtpm", big)},
                            {"op": "flush", "stream": 2},
                            {"op": "anchor"},
                        ],
                    },
                ],
            },
            "expect": {"verdict": "intact", "kinds": ["no_shutdown"]},
        },
        {
            "name": "debug-grant",
            "description": "a debug recipient is granted the vtpm stream mid-boot; "
            "read with the debug key it "
            "sees vtpm from the grant on and nothing of core",
            "inputs": {
                "sector_count": 192,
                "volume_id": "88" * 16,
                "owners": ["owner"],
                "streams": two,
                "boots": [
                    {
                        "boot_secret": "99" * 32,
                        "policy": {"debug_ceiling": "debug-only", "layout": "per-service"},
                        "ops": [
                            {
                                "op": "append",
                                "stream": 2,
                                "record": rec(1_000, "info", "vtpm", "vtpm", "before the grant: owner only"),
                            },
                            {"op": "grant", "stream": 2, "recipient": "debug", "t_ns": 2_000},
                            {
                                "op": "append",
                                "stream": 2,
                                "record": rec(3_000, "info", "vtpm", "vtpm", "after the grant"),
                            },
                            {
                                "op": "append",
                                "stream": 1,
                                "record": rec(3_500, "info", "core", "svsm", "core is never granted"),
                            },
                            {"op": "close"},
                        ],
                    }
                ],
            },
            "expect": {"verdict": "intact", "kinds": []},
            "also": [
                {"key": ["debug"], "verdict": "partial", "kinds": ["no_key"], "records": ["after the grant"]}
            ],
        },
        {
            "name": "wraparound",
            "description": "a 16-sector region wraps within boot 2: a KEYS frame re-keys the region start",
            "inputs": {
                "sector_count": 96,
                "volume_id": "aa" * 16,
                "owners": ["owner"],
                "streams": [{"stream": 1, "name": "all", "sectors": 16}],
                "boots": [
                    {
                        "boot_secret": "bb" * 32,
                        "ops": [
                            *(
                                {
                                    "op": "append",
                                    "stream": 1,
                                    "record": rec(
                                        i * 1000, "info", "core", "svsm", f"boot 1 line {i} " + "." * 600
                                    ),
                                }
                                for i in range(4)
                            ),
                            {"op": "flush"},
                            {"op": "close"},
                        ],
                    },
                    {
                        "boot_secret": "cc" * 32,
                        "ops": [
                            x
                            for i in range(5)
                            for x in (
                                {
                                    "op": "append",
                                    "stream": 1,
                                    "record": rec(
                                        i * 1000, "info", "core", "svsm", f"boot 2 line {i} " + "," * 900
                                    ),
                                },
                                {"op": "flush"},
                            )
                        ]
                        + [{"op": "close"}],
                    },
                ],
            },
            "expect": {"verdict": "intact", "kinds": ["rotated_out"]},
        },
    ]


Mutation = Callable[[bytearray, dict[str, Any]], None]


def _sector_range(f: FrameAt) -> slice:
    return slice(f.lba * SECTOR, (f.lba + f.sectors) * SECTOR)


def _flip(offset_in_frame: Callable[[FrameAt, bytes], int], stream: str, boot: int, seq: int) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        f = find(bytes(img), stream, boot, seq)
        off = f.lba * SECTOR + offset_in_frame(f, bytes(img))
        img[off] ^= 0x01
        ctx["offset"] = off

    return m


def _ct_offset(f: FrameAt, img: bytes) -> int:
    h = decode_frame_header(img[f.lba * SECTOR :])
    return FRAME_HEADER_LEN + h.clear_len + 3


def _zero(stream: str, boot: int, seq: int) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        f = find(bytes(img), stream, boot, seq)
        img[_sector_range(f)] = bytes(f.sectors * SECTOR)

    return m


def _tear_last_sector(stream: str, boot: int, seq: int) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        f = find(bytes(img), stream, boot, seq)
        last = (f.lba + f.sectors - 1) * SECTOR
        img[last : last + SECTOR] = bytes(SECTOR)

    return m


def _copy_to_free(stream: str, boot: int, seq: int, from_image: bytes | None = None) -> Mutation:
    """Put a frame (of this image, or another) in the free sectors at the region's end."""

    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        src = from_image if from_image is not None else bytes(img)
        f = find(src, stream, boot, seq)
        region_end = (f.region.start + f.region.sectors) if from_image is None else None
        dst_region = (
            next(x.region for x in frames_of(bytes(img)) if x.region.name == stream)
            if from_image is not None
            else f.region
        )
        end = region_end or dst_region.start + dst_region.sectors
        dst = end - f.sectors
        img[dst * SECTOR : end * SECTOR] = src[_sector_range(f)]

    return m


def _superblock_rename(img: bytearray, ctx: dict[str, Any]) -> None:
    off = 64 + 4  # first region entry's name
    img[off] = ord("x")


def _swap_regions_first_frames(img: bytearray, ctx: dict[str, Any]) -> None:
    a, b = find(bytes(img), "core", 1, 1), find(bytes(img), "vtpm", 1, 1)
    sa, sb = bytes(img[_sector_range(a)]), bytes(img[_sector_range(b)])
    img[_sector_range(a)], img[_sector_range(b)] = sb, sa


def reader_vectors(images: dict[str, bytes]) -> list[tuple[dict[str, Any], Mutation]]:
    base = "multiboot-perservice"
    basic = images["basic-x25519"]
    return [
        (
            {
                "name": "flip-ciphertext",
                "base": base,
                "mutation": "one bit of the ciphertext of core boot 1 seq 1 flipped",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_corrupt", "frame_missing", "no_shutdown"],
                    "at": {"kind": "frame_corrupt", "stream": "core", "boot": 1, "seq": 1},
                },
            },
            _flip(_ct_offset, "core", 1, 1),
        ),
        (
            {
                "name": "flip-header-seq",
                "base": base,
                "mutation": "one bit of the seq field of core boot 1 seq 2 flipped (seq 2 -> 3)",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_corrupt", "frame_missing", "no_shutdown"],
                    "at": {"kind": "frame_corrupt", "stream": "core", "boot": 1, "seq": 3},
                },
            },
            _flip(lambda f, i: 12, "core", 1, 2),
        ),
        (
            {
                "name": "flip-envelope",
                "base": base,
                "mutation": "one bit of the owner envelope in vtpm boot 2's BOOT frame flipped",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_corrupt", "frame_missing", "no_shutdown"],
                    "at": {"kind": "frame_corrupt", "stream": "vtpm", "boot": 2, "seq": 0},
                },
            },
            _flip(lambda f, i: FRAME_HEADER_LEN + 2 + 21 + 40, "vtpm", 2, 0),
        ),
        (
            {
                "name": "flip-digest",
                "base": base,
                "mutation": "one bit of the (unauthenticated) commit digest of core boot 1 seq 1 flipped: "
                "cannot matter, the frame still authenticates",
                "expect": {"verdict": "intact", "kinds": ["no_shutdown"]},
            },
            _flip(lambda f, i: FRAME_AAD_LEN + 5, "core", 1, 1),
        ),
        (
            {
                "name": "flip-padding",
                "base": base,
                "mutation": "one byte of padding after core boot 1 seq 1 changed: cannot matter",
                "expect": {"verdict": "intact", "kinds": ["no_shutdown"]},
            },
            _flip(lambda f, i: SECTOR - 1, "core", 1, 1),
        ),
        (
            {
                "name": "flip-keydir",
                "base": base,
                "mutation": "one bit of boot 2's key-directory slot flipped (its owner envelope); "
                "the BOOT frames still carry the envelopes",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_corrupt", "no_shutdown"],
                    "at": {"kind": "frame_corrupt", "stream": "keydir", "boot": 2, "seq": 0},
                },
            },
            _flip_keydir(2),
        ),
        (
            {
                "name": "drop-middle-frame",
                "base": base,
                "mutation": "core boot 1 seq 2 zeroed",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_missing", "no_shutdown"],
                    "at": {"kind": "frame_missing", "stream": "core", "boot": 1, "seq": 2},
                },
            },
            _zero("core", 1, 2),
        ),
        (
            {
                "name": "truncate-earlier-boot",
                "base": base,
                "mutation": "core boot 1's last frame (END, seq 3) zeroed after boot 2 started",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["boot_truncated", "no_shutdown"],
                    "at": {"kind": "boot_truncated", "stream": "core", "boot": 1, "seq": 3},
                },
            },
            _zero("core", 1, 3),
        ),
        (
            {
                "name": "torn-tail",
                "base": base,
                "mutation": "the last sector of vtpm boot 2's last (multi-sector) frame lost, "
                "as a crash tears it",
                "expect": {"verdict": "intact", "kinds": ["crash_tail", "no_shutdown"]},
            },
            _tear_last_sector("vtpm", 2, 2),
        ),
        (
            {
                "name": "moved-frame",
                "base": base,
                "mutation": "a copy of core boot 1 seq 1 placed in the free sectors "
                "at the end of the core region",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_moved", "no_shutdown"],
                    "at": {"kind": "frame_moved", "stream": "core", "boot": 1, "seq": 1},
                },
            },
            _copy_to_free("core", 1, 1),
        ),
        (
            {
                "name": "foreign-frame",
                "base": base,
                "mutation": "a frame of another volume (basic-x25519, all boot 1 seq 1) "
                "spliced into the core region",
                "expect": {"verdict": "violated", "kinds": ["frame_foreign", "no_shutdown"]},
            },
            _copy_to_free_from_other(basic),
        ),
        (
            {
                "name": "swap-streams",
                "base": base,
                "mutation": "core boot 1 seq 1 and vtpm boot 1 seq 1 swapped between regions",
                "expect": {
                    "verdict": "violated",
                    "kinds": ["frame_misplaced", "frame_missing", "no_shutdown"],
                },
            },
            _swap_regions_first_frames,
        ),
        (
            {
                "name": "superblock-renamed",
                "base": base,
                "mutation": "the first region's name changed in the superblock (still a valid superblock)",
                "expect": {"verdict": "violated", "kinds": ["superblock_mismatch", "no_shutdown"]},
            },
            _superblock_rename,
        ),
    ]


def _flip_keydir(boot: int) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        img[key_dir_slot(boot) * SECTOR + FRAME_HEADER_LEN + 2 + 23 + 40] ^= 0x01

    return m


def _copy_to_free_from_other(other: bytes) -> Mutation:
    def m(img: bytearray, ctx: dict[str, Any]) -> None:
        f = find(other, "all", 1, 1)
        core = next(x.region for x in frames_of(bytes(img)) if x.region.name == "core")
        end = core.start + core.sectors
        img[(end - f.sectors) * SECTOR : end * SECTOR] = other[_sector_range(f)]

    return m


# ---------------------------------------------------------------- trace for implementers


def trace(vec: dict[str, Any], image: bytes) -> dict[str, Any]:
    inp = vec["inputs"]
    vid = bytes.fromhex(inp["volume_id"])
    boots = []
    for b, boot in enumerate(inp["boots"], start=1):
        secret = bytes.fromhex(boot["boot_secret"])
        streams = []
        for s in inp["streams"]:
            root = stream_root(secret, vid, b, s["stream"])
            ck, frames = root, []
            for seq in range(3):
                nxt, key, nonce = step(ck)
                frames.append({"seq": seq, "chain_key": _h(ck), "aead_key": _h(key), "nonce": _h(nonce)})
                ck = nxt
            streams.append({"stream": s["stream"], "root": _h(root), "first_frames": frames})
        boots.append({"boot": b, "streams": streams})
    first = frames_of(image)[:3]
    return {
        "key_ids": {n: _h(vector_key(n).key_id) for n in inp["owners"]},
        "boots": boots,
        "first_frames_aad_hex": [_h(image[f.lba * SECTOR : f.lba * SECTOR + FRAME_AAD_LEN]) for f in first],
        "first_record_block": _first_record_block(vec),
    }


def _first_record_block(vec: dict[str, Any]) -> str:
    """The record block of the first appended record alone (spec §4.6)."""
    from .codec import encode_record_block

    for boot in vec["inputs"]["boots"]:
        for op in boot["ops"]:
            if op["op"] == "append":
                return _h(encode_record_block([_record(op["record"])]))
    return ""


# ---------------------------------------------------------------- generation and checking


def _anchor_json(anchors: list[Anchor]) -> list[Any]:
    return [json.loads(a.to_json()) for a in anchors]


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, bytes] = {}
    for vec in writer_vectors():
        path = out / f"{vec['name']}.json"
        if path.exists():  # keep the recorded envelopes: they are inputs
            vec["inputs"]["envelopes"] = json.loads(path.read_text())["inputs"].get("envelopes", {})
        image, anchors = run_writer_vector(vec, record_envelopes=True)
        images[vec["name"]] = image
        vec["image"] = f"{vec['name']}.img"
        vec["image_sha256"] = hashlib.sha256(image).hexdigest()
        vec["keys"] = {
            n: {
                "kem_id": KEY_SEEDS[n][0],
                "private_seed": _h(KEY_SEEDS[n][1]),
                "public_raw": _h(vector_key(n).public.raw),
                "key_id": _h(vector_key(n).key_id),
            }
            for n in KEY_SEEDS
        }
        vec["anchors"] = _anchor_json(anchors)
        vec["trace"] = trace(vec, image)
        _check_label(vec["name"], image, vec["expect"])
        for extra in vec.get("also", []):
            _check_label(vec["name"], image, extra)
        (out / vec["image"]).write_bytes(image)
        path.write_text(json.dumps(vec, indent=1) + "\n")
    anchor_base = images["multiboot-perservice"]
    for meta, mutate in reader_vectors(images):
        img = bytearray(images[meta["base"]])
        ctx: dict[str, Any] = {}
        mutate(img, ctx)
        _check_label(meta["name"], bytes(img), meta["expect"])
        meta["image"] = f"{meta['name']}.img"
        meta["image_sha256"] = hashlib.sha256(img).hexdigest()
        (out / meta["image"]).write_bytes(bytes(img))
        (out / f"{meta['name']}.json").write_text(json.dumps(meta, indent=1) + "\n")
    # Tail truncation is only provable with an anchor: the same cut, with and without one.
    vec = json.loads((out / "multiboot-perservice.json").read_text())
    anchor = Anchor.from_json(json.dumps(vec["anchors"][0]))
    cut = bytearray(anchor_base)
    _zero("vtpm", 2, 2)(cut, {})
    cases: list[tuple[str, bool, dict[str, Any]]] = [
        ("truncate-tail-no-anchor", False, {"verdict": "intact", "kinds": ["no_shutdown"]}),
        (
            "truncate-tail-with-anchor",
            True,
            {
                "verdict": "violated",
                "kinds": ["anchor_truncated", "no_shutdown"],
                "at": {"kind": "anchor_truncated", "stream": "vtpm", "boot": 2, "seq": 2},
            },
        ),
    ]
    for name, with_anchor, expect in cases:
        meta = {
            "name": name,
            "base": "multiboot-perservice",
            "mutation": "vtpm boot 2's newest frame zeroed (tail truncation)",
            "anchor": vec["anchors"][0] if with_anchor else None,
            "expect": expect,
            "image": f"{name}.img",
            "image_sha256": hashlib.sha256(cut).hexdigest(),
        }
        _check_label(name, bytes(cut), expect, anchor if with_anchor else None)
        (out / meta["image"]).write_bytes(bytes(cut))
        (out / f"{name}.json").write_text(json.dumps(meta, indent=1) + "\n")


def _check_label(name: str, image: bytes, expect: dict[str, Any], anchor: Anchor | None = None) -> None:
    verdict, kinds = verify_image(image, expect.get("key", ["owner"]), anchor)
    if verdict != expect["verdict"] or kinds != set(expect["kinds"]):
        raise SystemExit(
            f"vector {name}: reader says {verdict} {sorted(kinds)}, label says "
            f"{expect['verdict']} {sorted(expect['kinds'])}"
        )


def main(argv: list[str]) -> int:
    generate(Path(argv[1] if len(argv) > 1 else "formats/vectors"))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
