"""Containers made by the real tools: qcow2 by qemu-img/qemu-io, GPT disks by sgdisk.

Our own writers (source.write_qcow2_image, write_gpt_image) only ever produce what our
reader expects, which is how a reader that returned zeros for compressed clusters passed
every test. Here the reference is qemu itself: whatever open_image returns must be byte for
byte what ``qemu-img convert -O raw`` writes, or open_image must refuse with that command.
Each test skips, saying why, only when its tool is not installed (scripts/ensure-test-tools.sh
installs them under ``make test``).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from svsmlog.format import GPT_PARTITION_TYPE
from svsmlog.qcow2 import convert_command
from svsmlog.source import ImageError, open_image

SECTOR = 512
KIB = 1024
MIB = 1 << 20
SAMPLE = Path(__file__).resolve().parent.parent / "samples" / "vtpm-panic.img"
LINUX_FS_TYPE = "0fc63daf-8483-4772-8e79-3d47de8e7de4"


def need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.skip(f"{tool} is not installed (sh scripts/ensure-test-tools.sh installs it)")
    return path


def run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


def qemu_raw(image: Path, tmp: Path) -> bytes:
    """The guest disk as qemu sees it: the reference every read is compared with."""
    out = tmp / f"{image.name}.ref.raw"
    run(need("qemu-img"), "convert", "-O", "raw", image, out)
    return out.read_bytes()


def read_all(image: Path, partition: int | None = None) -> bytes:
    with open_image(image, partition=partition) as src:
        return src.read(0, src.size)


def synthetic_raw(clusters: int = 96, cluster: int = 64 * KIB) -> bytes:
    """Distinct data in every 4 KiB block: text of varying compressibility (so compressed
    clusters get every length, and so start at odd host bytes), random-looking bytes
    (stored uncompressed even under -c), and whole zero clusters (left unallocated)."""
    blocks = []
    for i in range(clusters * cluster // (4 * KIB)):
        kind = i % 7
        if kind == 6 and (i * 4 * KIB) % cluster == 0:
            blocks.append(bytes(cluster))  # a whole zero cluster
        elif kind in (2, 5):
            # xorshift: incompressible, deterministic, distinct per block
            x = (i * 2654435761 + 1) & 0xFFFFFFFF
            words = []
            for _ in range(1024):
                x ^= (x << 13) & 0xFFFFFFFF
                x ^= x >> 17
                x ^= (x << 5) & 0xFFFFFFFF
                words.append(x)
            blocks.append(struct.pack("<1024I", *words))
        else:
            line = f"svsmlog block {i:06d} level {kind} " + "x" * (i % 53)
            blocks.append((line.encode() * (4 * KIB // len(line) + 1))[: 4 * KIB])
    data = b"".join(blocks)
    return data[: clusters * cluster]


@pytest.fixture(scope="module")
def raw_images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("raw")
    syn = tmp / "synthetic.img"
    syn.write_bytes(synthetic_raw())
    return {"sample": SAMPLE, "synthetic": syn}


def compressed_offsets(path: Path) -> list[int]:
    """Host offsets of the compressed clusters of a standard-L2 qcow2, parsed here
    independently of svsmlog.qcow2, to prove the fixtures reach odd offsets."""
    data = path.read_bytes()
    cluster_bits, _size, _crypt, l1_size, l1_offset = struct.unpack_from(">IQIIQ", data, 20)
    shift = 62 - (cluster_bits - 8)
    offsets = []
    for (l1e,) in struct.iter_unpack(">Q", data[l1_offset : l1_offset + 8 * l1_size]):
        l2 = l1e & 0x00FF_FFFF_FFFF_FE00
        if l2:
            for (e,) in struct.iter_unpack(">Q", data[l2 : l2 + (1 << cluster_bits)]):
                if e >> 62 & 1:
                    offsets.append(e & ((1 << shift) - 1))
    return offsets


# ------------------------------------------------------------------ qcow2 by qemu-img

# Every layout qemu-img writes that we read: compression, extended L2, 512 B..2 MiB clusters,
# v2 (compat=0.10) and v3.
READABLE = {
    "plain": [],
    "zlib": ["-c"],
    "zlib-v2": ["-c", "-o", "compat=0.10"],
    "plain-v2": ["-o", "compat=0.10"],
    "zlib-512": ["-c", "-o", "cluster_size=512"],
    "zlib-4k": ["-c", "-o", "cluster_size=4k"],
    "zlib-16k": ["-c", "-o", "cluster_size=16k"],
    "zlib-2m": ["-c", "-o", "cluster_size=2M"],
    "plain-2m": ["-o", "cluster_size=2M"],
    "extl2": ["-o", "extended_l2=on"],
    "extl2-zlib": ["-c", "-o", "extended_l2=on"],
    "extl2-zlib-16k": ["-c", "-o", "extended_l2=on,cluster_size=16k"],
    "extl2-2m": ["-o", "extended_l2=on,cluster_size=2M"],
    # Host clusters laid out up front: allocated clusters that qemu marks as zeros.
    "prealloc-metadata": ["-o", "preallocation=metadata"],
    "extl2-prealloc-metadata": ["-o", "extended_l2=on,preallocation=metadata"],
    "lazy-refcounts": ["-o", "lazy_refcounts=on"],
    # zstd as the image's type, but nothing compressed: nothing to decode, so it reads.
    "zstd-type-only": ["-o", "compression_type=zstd"],
}


@pytest.mark.parametrize("source", ["sample", "synthetic"])
@pytest.mark.parametrize("variant", sorted(READABLE))
def test_qemu_img_qcow2_reads_byte_identical(
    tmp_path: Path, raw_images: dict[str, Path], source: str, variant: str
) -> None:
    raw = raw_images[source]
    q = tmp_path / f"{variant}.qcow2"
    run(need("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", *READABLE[variant], raw, q)
    ref = qemu_raw(q, tmp_path)
    assert ref == raw.read_bytes()  # qemu's own round trip, for the record
    with open_image(q) as src:
        assert (src.container, src.size, src.dropped_tail) == ("qcow2", len(ref), 0)
        assert src.read(0, src.size) == ref
        # Unaligned reads across cluster (and subcluster) boundaries.
        for at in range(0, len(ref) - 3000, len(ref) // 37 + 1):
            assert src.read(at + 777, 2222) == ref[at + 777 : at + 2999]


def test_compressed_fixture_reaches_odd_host_offsets(tmp_path: Path, raw_images: dict[str, Path]) -> None:
    # The case libqcow got wrong: its reads of these clusters came back as zeros.
    for source in ("sample", "synthetic"):
        q = tmp_path / f"{source}.qcow2"
        run(need("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", "-c", raw_images[source], q)
        offsets = compressed_offsets(q)
        assert any(o % 2 for o in offsets), source
        assert any(o % SECTOR == 0 for o in offsets) or len(offsets) > 1
        assert read_all(q) == raw_images[source].read_bytes()


@pytest.mark.parametrize("options", ["compression_type=zstd", "compression_type=zstd,extended_l2=on"])
def test_zstd_compressed_clusters_are_refused_with_the_convert_command(
    tmp_path: Path, raw_images: dict[str, Path], options: str
) -> None:
    q = tmp_path / "zstd.qcow2"
    run(need("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", "-c", "-o", options, raw_images["sample"], q)
    with pytest.raises(ImageError) as e:
        read_all(q)
    command = f"qemu-img convert -O raw {q} {tmp_path / 'zstd.raw'}"
    assert command in str(e.value) and "zstd" in str(e.value) and "\n" not in str(e.value)
    # The command it gives is the way out: it produces an image we read.
    run(*command.split())
    assert read_all(tmp_path / "zstd.raw") == raw_images["sample"].read_bytes()


def test_backing_file_is_refused_with_the_convert_command(
    tmp_path: Path, raw_images: dict[str, Path]
) -> None:
    # An overlay on the sample with one cluster rewritten: alone it is mostly holes.
    base = tmp_path / "base.img"
    shutil.copy(raw_images["sample"], base)
    overlay = tmp_path / "overlay.qcow2"
    run(need("qemu-img"), "create", "-f", "qcow2", "-b", base, "-F", "raw", overlay)
    run(need("qemu-io"), "-f", "qcow2", "-c", "write -P 0x5a 128k 64k", overlay)
    with pytest.raises(ImageError) as e:
        open_image(overlay)
    message = str(e.value)
    assert f"backing file ({base})" in message
    assert f"qemu-img convert -O raw {overlay} {tmp_path / 'overlay.raw'}" in message
    flat = qemu_raw(overlay, tmp_path)
    expect = bytearray(base.read_bytes())
    expect[128 * KIB : 192 * KIB] = b"\x5a" * (64 * KIB)
    assert flat == expect


@pytest.mark.parametrize("extended_l2", ["off", "on"])
def test_qemu_io_writes_zero_flags_and_subclusters(
    tmp_path: Path, raw_images: dict[str, Path], extended_l2: str
) -> None:
    # Writes smaller than a cluster, zero writes (zero flag / subcluster zero bits, with and
    # without a preallocated host cluster), and discards, on top of converted data.
    q = tmp_path / "edited.qcow2"
    run(
        need("qemu-img"),
        "convert",
        "-f",
        "raw",  # never guess: a raw image can start with another format's magic
        "-O",
        "qcow2",
        "-o",
        f"extended_l2={extended_l2}",
        raw_images["synthetic"],
        q,
    )
    commands = [
        "write -P 0x11 2k 2k",  # inside an allocated cluster
        "write -z 8k 4k",  # subcluster zeros / ZERO_ALLOC over data
        "write -z -u 192k 64k",  # zero, host cluster released
        "write -z 320k 64k",  # zero, host cluster kept (preallocated zero)
        "discard 448k 64k",
        "write -P 0x22 1234567 5000",  # unaligned, across a cluster boundary
        "write -P 0x33 5000k 6k",  # into what was a zero cluster
    ]
    args: list[str | Path] = [need("qemu-io"), "-f", "qcow2"]
    for c in commands:
        args += ["-c", c]
    run(*args, q)
    ref = qemu_raw(q, tmp_path)
    assert ref != raw_images["synthetic"].read_bytes()
    assert read_all(q) == ref


def test_fresh_extended_l2_image_with_scattered_subclusters(tmp_path: Path) -> None:
    q = tmp_path / "fresh.qcow2"
    run(need("qemu-img"), "create", "-f", "qcow2", "-o", "extended_l2=on,cluster_size=128k", q, "8M")
    # 128 KiB clusters have 4 KiB subclusters: allocate a scatter of them.
    args: list[str | Path] = [need("qemu-io"), "-f", "qcow2"]
    for i, at in enumerate([0, 12, 40, 124, 128, 1000, 4100, 8188]):
        args += ["-c", f"write -P {i + 1} {at}k 4k"]
    run(*args, q)
    assert read_all(q) == qemu_raw(q, tmp_path)


def test_convert_command_quotes_paths() -> None:
    assert convert_command("disk.qcow2") == "qemu-img convert -O raw disk.qcow2 disk.raw"
    assert convert_command("my disk") == "qemu-img convert -O raw 'my disk' 'my disk.raw'"


_PROPERTY = settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# One 4 KiB cluster's content: zeros, a short repeated pattern (very compressible), text,
# or random bytes (not compressible, so stored raw among compressed neighbours).
_cluster = st.one_of(
    st.just(bytes(4 * KIB)),
    st.binary(min_size=1, max_size=8).map(lambda b: (b * (4 * KIB))[: 4 * KIB]),
    st.text(alphabet="svsmlog 0123456789\n", min_size=1, max_size=300).map(
        lambda t: (t.encode() * (4 * KIB))[: 4 * KIB]
    ),
    st.binary(min_size=4 * KIB, max_size=4 * KIB),
)


@_PROPERTY
@given(
    clusters=st.lists(_cluster, min_size=1, max_size=24),
    options=st.sampled_from(
        ["cluster_size=4k", "cluster_size=4k,compat=0.10", "cluster_size=16k,extended_l2=on"]
    ),
)
def test_random_clusters_survive_qemu_img_compression(
    tmp_path: Path, clusters: list[bytes], options: str
) -> None:
    raw = tmp_path / "random.img"
    raw.write_bytes(b"".join(clusters))
    q = tmp_path / "random.qcow2"
    run(need("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", "-c", "-o", options, raw, q)
    assert read_all(q) == raw.read_bytes()


# ------------------------------------------------------------------ GPT by sgdisk


def sgdisk_disk(tmp: Path, volume: bytes, *, first: int = 2048, extra_linux: bool = False) -> Path:
    """A disk made by sgdisk with the svsmlog partition at ``first``, the volume dd'd into it."""
    sgdisk = need("sgdisk")
    disk = tmp / "disk.img"
    sectors = len(volume) // SECTOR
    disk.write_bytes(b"")
    with open(disk, "r+b") as f:
        f.truncate((first + sectors + 4096) * SECTOR)
    n = 1
    if extra_linux:
        run(sgdisk, "-n1:2048:+1000", f"-t1:{LINUX_FS_TYPE}", disk)
        n = 2
    run(sgdisk, f"-n{n}:{first}:+{sectors}", f"-t{n}:{GPT_PARTITION_TYPE}", f"-c{n}:svsmlog", disk)
    with open(disk, "r+b") as f:  # dd of=disk seek=first conv=notrunc
        f.seek(first * SECTOR)
        f.write(volume)
    return disk


def test_sgdisk_gpt_partition_is_the_volume(tmp_path: Path) -> None:
    vol = SAMPLE.read_bytes()
    disk = sgdisk_disk(tmp_path, vol)
    with open_image(disk) as src:
        assert (src.partition, src.base_offset, src.size, src.gpt_header) == (1, MIB, len(vol), "primary")
        assert src.read(0, src.size) == vol


def test_sgdisk_gpt_with_another_partition_first(tmp_path: Path) -> None:
    vol = SAMPLE.read_bytes()
    disk = sgdisk_disk(tmp_path, vol, first=4096, extra_linux=True)
    with open_image(disk) as src:
        assert (src.partition, src.base_offset) == (2, 4096 * SECTOR)
        assert src.read(0, src.size) == vol


@pytest.mark.parametrize(
    ("what", "offset", "length"),
    [("primary header", SECTOR, SECTOR), ("primary entries", 2 * SECTOR, 32 * SECTOR)],
)
def test_sgdisk_gpt_with_damaged_primary_reads_via_backup(
    tmp_path: Path, what: str, offset: int, length: int
) -> None:
    vol = SAMPLE.read_bytes()
    disk = sgdisk_disk(tmp_path, vol)
    with open(disk, "r+b") as f:
        f.seek(offset)
        f.write(bytes(length))
    with open_image(disk) as src:
        assert (src.partition, src.base_offset, src.gpt_header) == (1, MIB, "backup"), what
        assert src.read(0, src.size) == vol
    # sgdisk agrees the backup is intact: it finds the same partition from it.
    info = subprocess.run([need("sgdisk"), "-i1", str(disk)], capture_output=True, text=True).stdout
    assert "First sector: 2048" in info
    assert str(uuid.UUID(GPT_PARTITION_TYPE)).upper() in info


def test_sgdisk_gpt_inside_compressed_qcow2(tmp_path: Path) -> None:
    vol = SAMPLE.read_bytes()
    disk = sgdisk_disk(tmp_path, vol)
    with open(disk, "r+b") as f:  # and with its primary header gone
        f.seek(SECTOR)
        f.write(bytes(SECTOR))
    q = tmp_path / "disk.qcow2"
    run(need("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", "-c", disk, q)
    with open_image(q) as src:
        assert (src.container, src.partition, src.gpt_header) == ("qcow2", 1, "backup")
        assert src.read(0, src.size) == vol


# ------------------------------------------------------------------ hostile qcow2 metadata


@pytest.fixture(scope="module")
def qemu_qcow_bases(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Compressed images in both L2 formats: the metadata paths our writer never makes."""
    tmp = tmp_path_factory.mktemp("qbase")
    raw = tmp / "raw.img"
    raw.write_bytes(synthetic_raw(clusters=8, cluster=16 * KIB))
    bases = {}
    for label, options in (("std", "cluster_size=16k"), ("extl2", "cluster_size=16k,extended_l2=on")):
        q = tmp / f"{label}.qcow2"
        run(need("qemu-img"), "convert", "-f", "raw", "-O", "qcow2", "-c", "-o", options, raw, q)
        bases[label] = q.read_bytes()
    return bases


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    label=st.sampled_from(["std", "extl2"]),
    # The header, and the first clusters after it (L1, refcounts, L2, compressed data).
    mutations=st.lists(
        st.tuples(
            st.one_of(st.integers(0, 111), st.integers(16 * KIB, 6 * 16 * KIB - 1)), st.integers(0, 255)
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_mutated_qemu_qcow2_only_raises_image_error(
    tmp_path: Path, qemu_qcow_bases: dict[str, bytes], label: str, mutations: list[tuple[int, int]]
) -> None:
    img = bytearray(qemu_qcow_bases[label])
    for at, value in mutations:
        if at < len(img):
            img[at] = value
    p = tmp_path / "fuzz.qcow2"
    p.write_bytes(img)
    try:
        with open_image(p) as src:
            # The base is 128 KiB; a mutated size must not make the test itself allocate GBs.
            src.read(0, min(src.size, MIB))
    except ImageError as e:
        assert "\n" not in str(e)
