"""The command line, driven as a user drives it: ``svsmlog.cli.main`` with an argument list
(in process, for speed) and, where the installed program matters, the console script.

The images are written by the core writer directly (not the model), once per session:
three boots over three streams, one of them a small ring that wraps, a panic, and a
crash that tears the last frame — an intact log a forensic reader must accept.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
from typer.testing import CliRunner

from svsmlog import crypto
from svsmlog.cli import app, main
from svsmlog.device import SECTOR, FileDevice, RecordingDevice
from svsmlog.records import FLAG_PANIC, Level, Record
from svsmlog.source import write_gpt_image, write_qcow2_image
from svsmlog.volume import StreamSpec
from svsmlog.writer import BootPolicy, LogWriter

ANSI = re.compile(r"\x1b\[")
PASSPHRASE = b"correct horse battery staple"
STREAMS = [StreamSpec(1, "core", 256), StreamSpec(2, "vtpm", 128), StreamSpec(3, "ring", 32)]
HOST_TIME_NS = 1_700_000_000 * 10**9


# --------------------------------------------------------------------------- running the CLI


def run(*args: object, env: dict[str, str] | None = None) -> SimpleNamespace:
    """``svsmlog ARGS`` in process, through main() exactly as the console script calls it."""
    runner = CliRunner()
    with runner.isolation(env=env) as (out, err, _):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:  # shell completion exits by itself, as the console script would
            code = e.code if isinstance(e.code, int) else 0
        sys.stdout.flush()
        sys.stderr.flush()
        stdout, stderr = out.getvalue(), err.getvalue()
    return SimpleNamespace(code=code, stdout=stdout.decode(), stderr=stderr.decode(), stdout_bytes=stdout)


def run_json(*args: object) -> dict:
    r = run(*args)
    assert r.stderr == "" or r.code != 0, r.stderr
    return json.loads(r.stdout)


def error_line(r: SimpleNamespace) -> str:
    """Exactly one line on stderr, in the program's error format, and no traceback."""
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("svsmlog: error: "), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# --------------------------------------------------------------------------- test images


def _record(t_s: float, message: str, *, level: Level = Level.INFO, service: str = "svsm",
            component: str = "core", fields: tuple[tuple[str, str], ...] = (), flags: int = 0) -> Record:
    return Record(int(t_s * 1e9), level, service, component, message, None, fields, flags)


def _boot_one(dev: RecordingDevice, owner: crypto.PublicKey) -> int:
    """Clean boot: every stream ends with an END frame. Returns the lba of core's seq 2."""
    w = LogWriter(dev, STREAMS, [owner], policy=BootPolicy(host_time_ns=HOST_TIME_NS))
    lba = 0
    for i in range(30):
        w.append(1, _record(i * 0.5, f"core event {i}", level=Level(i % 5)))
        w.append(2, _record(i * 0.25, f"PCR{i % 24} extended", service="vtpm", component="tpm",
                            fields=(("pcr", str(i % 24)),)))
        w.append(3, _record(i * 0.1, f"ring line {i} " + "x" * 300, service="ring"))
        if i % 3 == 2:
            for sealed in w.flush():
                if sealed.stream == 1 and sealed.seq == 2:
                    lba = sealed.lba
    w.close()
    return lba


def _boot_two(dev: RecordingDevice, owner: crypto.PublicKey) -> None:
    """A boot that panics: its last record carries the panic flag, and no END frame."""
    w = LogWriter(dev, STREAMS, [owner], policy=BootPolicy(host_time_ns=HOST_TIME_NS + 10**12))
    w.append(1, _record(0.5, "starting"))
    w.append(2, _record(0.7, "tpm manufactured", service="vtpm", component="tpm"))
    w.append(1, _record(1.5, "page fault in kernel", level=Level.ERROR, flags=FLAG_PANIC))
    w.flush()


def _boot_three(dev: RecordingDevice, owner: crypto.PublicKey, anchor_path: Path) -> None:
    """A boot that crashes in the middle of a multi-sector write: a torn tail. The anchor
    is taken just before, as an attestation report would carry it."""
    w = LogWriter(dev, STREAMS, [owner], policy=BootPolicy(host_time_ns=HOST_TIME_NS + 2 * 10**12))
    w.append(1, _record(0.1, "boot three"))
    w.append(2, _record(0.2, "PCR0 extended", service="vtpm", component="tpm"))
    w.flush()
    anchor_path.write_text(w.anchor().to_json())
    w.append(1, _record(0.3, "a long line " + "y" * 1500))
    dev.crash_after, dev.tear_sectors = len(dev.writes), 1
    with pytest.raises(Exception, match="crashed"):
        w.flush(1)


@dataclass
class Images:
    dir: Path
    owner_key: Path
    owner_pub: Path
    encrypted_key: Path
    passphrase: Path
    other_key: Path
    raw: Path
    qcow2: Path
    gpt: Path
    gpt_qcow2: Path
    two_partitions: Path
    violated: Path
    anchor: Path
    empty: Path
    random: Path
    truncated: Path


def _write_keys(d: Path) -> tuple[crypto.PrivateKey, crypto.PrivateKey]:
    owner, other = crypto.generate_private_key(), crypto.generate_private_key()
    (d / "owner.key").write_bytes(owner.to_pem())
    (d / "owner.pub").write_bytes(owner.public.to_pem())
    (d / "owner-enc.key").write_bytes(owner.to_pem(PASSPHRASE))
    (d / "pass.txt").write_bytes(PASSPHRASE + b"\n")
    (d / "other.key").write_bytes(other.to_pem())
    for key in ("owner.key", "owner-enc.key", "other.key"):  # as keygen leaves them
        (d / key).chmod(0o600)
    return owner, other


@pytest.fixture(scope="session")
def images(tmp_path_factory: pytest.TempPathFactory) -> Images:
    d = tmp_path_factory.mktemp("cli")
    owner, _ = _write_keys(d)
    raw = d / "disk.img"
    dev = RecordingDevice(FileDevice(raw, create_sectors=1024))
    corrupt_lba = _boot_one(dev, owner.public)
    _boot_two(dev, owner.public)
    _boot_three(dev, owner.public, d / "anchor.json")
    dev.inner.close()  # type: ignore[attr-defined]

    data = raw.read_bytes()
    write_qcow2_image(d / "disk.qcow2", data)
    write_gpt_image(d / "gpt.img", data)
    write_gpt_image(d / "two.img", data, extra_partitions=1)
    write_qcow2_image(d / "gpt.qcow2", (d / "gpt.img").read_bytes())
    bad = bytearray(data)
    bad[corrupt_lba * SECTOR + 100] ^= 0x40  # inside the ciphertext of core, boot 1, seq 2
    (d / "violated.img").write_bytes(bytes(bad))
    (d / "empty.img").write_bytes(b"")
    (d / "random.img").write_bytes(os.urandom(64 * 1024))
    (d / "truncated.img").write_bytes(data[: len(data) // 3])
    qcow2 = (d / "disk.qcow2").read_bytes()
    (d / "truncated.qcow2").write_bytes(qcow2[: len(qcow2) // 3])
    return Images(d, d / "owner.key", d / "owner.pub", d / "owner-enc.key", d / "pass.txt", d / "other.key",
                  raw, d / "disk.qcow2", d / "gpt.img", d / "gpt.qcow2", d / "two.img", d / "violated.img",
                  d / "anchor.json", d / "empty.img", d / "random.img", d / "truncated.img")


def _jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line]


def _all_records(images: Images) -> list[dict]:
    r = run("extract", images.raw, "--key", images.owner_key, "--format", "jsonl")
    assert r.code == 0, r.stderr
    return _jsonl(r.stdout)


# --------------------------------------------------------------------------- keygen


def test_keygen_writes_a_private_and_a_public_key(tmp_path: Path) -> None:
    r = run("keygen", "--out", tmp_path / "owner")
    assert r.code == 0, r.stderr
    key_file, pub_file = tmp_path / "owner.key", tmp_path / "owner.pub"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = crypto.load_private_key(key_file.read_bytes())
    assert crypto.load_public_key(pub_file.read_bytes()).key_id == key.key_id
    assert key.kem_id == crypto.KEM_X25519
    assert key.key_id.hex() in r.stdout
    assert b"BEGIN PRIVATE KEY" in key_file.read_bytes()


def test_keygen_with_a_passphrase_encrypts_the_private_key(images: Images, tmp_path: Path) -> None:
    r = run("keygen", "--out", tmp_path / "enc.key", "--passphrase-file", images.passphrase)
    assert r.code == 0, r.stderr
    data = (tmp_path / "enc.key").read_bytes()  # a .key suffix on NAME is not doubled
    assert b"ENCRYPTED PRIVATE KEY" in data
    with pytest.raises(crypto.KeyError_):
        crypto.load_private_key(data)
    assert crypto.load_private_key(data, PASSPHRASE).key_id.hex() in r.stdout


def test_keygen_hybrid_key_reads_a_log_sealed_to_it(tmp_path: Path) -> None:
    assert run("keygen", "--out", tmp_path / "pq", "--kem", "mlkem768-x25519").code == 0
    key = crypto.load_private_key((tmp_path / "pq.key").read_bytes())
    assert key.kem_id == crypto.KEM_MLKEM768_X25519
    image = _small_image(tmp_path / "pq.img", crypto.load_public_key((tmp_path / "pq.pub").read_bytes()))
    r = run("extract", image, "--key", tmp_path / "pq.key", "-f", "jsonl")
    assert r.code == 0, r.stderr
    assert [rec["message"] for rec in _jsonl(r.stdout)] == ["hello", "world"]


def test_keygen_keeps_existing_keys_unless_forced(tmp_path: Path) -> None:
    assert run("keygen", "--out", tmp_path / "k").code == 0
    before = (tmp_path / "k.key").read_bytes()
    r = run("keygen", "--out", tmp_path / "k")
    assert r.code == 2
    assert "already exists" in error_line(r)
    assert (tmp_path / "k.key").read_bytes() == before
    (tmp_path / "lone.pub").write_text("someone else's")
    assert run("keygen", "--out", tmp_path / "lone").code == 2
    assert not (tmp_path / "lone.key").exists()
    assert run("keygen", "--out", tmp_path / "k", "--force").code == 0
    assert (tmp_path / "k.key").read_bytes() != before
    assert stat.S_IMODE((tmp_path / "k.key").stat().st_mode) == 0o600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kem", "rsa"], "'rsa' is not one of"),
        (["--passphrase-file", "missing.txt"], "no such file"),
    ],
)
def test_keygen_bad_usage(tmp_path: Path, args: list[str], message: str) -> None:
    args = [str(tmp_path / a) if a.endswith(".txt") else a for a in args]
    r = run("keygen", "--out", tmp_path / "k", *args)
    assert r.code == 2
    assert message in error_line(r)
    assert not (tmp_path / "k.key").exists()


def test_keygen_refuses_an_empty_passphrase(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    r = run("keygen", "--out", tmp_path / "k", "--passphrase-file", tmp_path / "empty")
    assert r.code == 2
    assert "empty" in error_line(r)


def _small_image(path: Path, recipient: crypto.PublicKey) -> Path:
    dev = FileDevice(path, create_sectors=256)
    w = LogWriter(dev, [StreamSpec(1, "core", 64)], [recipient])
    w.append(1, _record(0.1, "hello"))
    w.append(1, _record(0.2, "world"))
    w.close()
    dev.close()
    return path


# --------------------------------------------------------------------------- keys made by openssl


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl program")
def test_openssl_keys_work_everywhere_a_key_is_taken(tmp_path: Path) -> None:
    def openssl(*args: object) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    key, pub, enc, pw = tmp_path / "o.key", tmp_path / "o.pub", tmp_path / "o-enc.key", tmp_path / "pw"
    pw.write_text("sesame\n")
    openssl("genpkey", "-algorithm", "X25519", "-out", key)
    openssl("pkey", "-in", key, "-pubout", "-out", pub)
    openssl("pkcs8", "-topk8", "-in", key, "-out", enc, "-v2", "aes-256-cbc", "-passout", f"file:{pw}")
    image = _small_image(tmp_path / "o.img", crypto.load_public_key(pub.read_bytes()))
    assert run("verify", image, "--key", key).code == 0
    assert run("verify", image, "--key", enc, "--passphrase-file", pw).code == 0
    assert run("verify", image, "--key", enc).code == 3
    r = run("extract", image, "--key", enc, "--passphrase-file", pw, "-f", "jsonl")
    assert len(_jsonl(r.stdout)) == 2
    out = tmp_path / "core.json"
    assert run("export-key", image, "--key", key, "--boot", 1, "--stream", "core", "--out", out).code == 0
    # And the other way round: openssl reads what keygen writes.
    assert run("keygen", "--out", tmp_path / "mine", "--passphrase-file", pw).code == 0
    openssl("pkey", "-pubin", "-in", tmp_path / "mine.pub", "-noout")
    openssl("pkey", "-in", tmp_path / "mine.key", "-passin", f"file:{pw}", "-noout")


# --------------------------------------------------------------------------- info


def test_info_shows_what_the_host_sees(images: Images) -> None:
    r = run("info", images.raw)
    assert r.code == 0, r.stderr
    owner = crypto.load_private_key(images.owner_key.read_bytes())
    for text in ("core", "vtpm", "ring", owner.key_id.hex(), "x25519", "boot 3 seq 1"):
        assert text in r.stdout
    assert not ANSI.search(r.stdout)


def test_info_json_lists_every_frame_where_it_is(images: Images) -> None:
    d = run_json("info", images.raw, "--json")
    assert d["boots"] == [1, 2, 3]
    assert [s["stream"] for s in d["streams"]] == ["core", "vtpm", "ring"]
    owner = crypto.load_private_key(images.owner_key.read_bytes())
    assert [(r["key_id"], r["kind"]) for r in d["recipients"]] == [(owner.key_id.hex(), "boot-secret")]
    data = images.raw.read_bytes()
    for f in d["frames"]:
        assert {"offset", "length", "stream", "boot", "seq"} <= f.keys()
        assert data[f["offset"] : f["offset"] + 4] == b"SVLF"
        assert f["length"] % SECTOR == 0
    torn = [f for f in d["frames"] if f["status"] == "torn"]
    assert [(f["stream"], f["boot"], f["seq"]) for f in torn] == [("core", 3, 2)]
    # Each boot also left its envelopes in a key-directory slot, before the regions.
    assert d["key_directory"]["boots"] == [1, 2, 3]
    slots = [f for f in d["frames"] if f["stream"] == "keydir"]
    assert [(f["boot"], f["type"]) for f in slots] == [(1, "keys"), (2, "keys"), (3, "keys")]
    assert max(f["offset"] for f in slots) < min(s["offset"] for s in d["streams"])


def test_info_offsets_count_from_the_image_start(images: Images) -> None:
    raw = run_json("info", images.raw, "--json")
    gpt = run_json("info", images.gpt, "--json")
    base = gpt["base_offset"]
    assert base > 0
    assert [f["offset"] - base for f in gpt["frames"]] == [f["offset"] for f in raw["frames"]]
    data = images.gpt.read_bytes()
    assert all(data[f["offset"] : f["offset"] + 4] == b"SVLF" for f in gpt["frames"])
    assert run_json("info", images.gpt_qcow2, "--json")["frames"] == gpt["frames"]


def test_info_lists_frames_on_request(images: Images) -> None:
    r = run("info", images.qcow2, "--frames")
    assert r.code == 0
    assert "torn" in r.stdout and "Frames" in r.stdout


# --------------------------------------------------------------------------- verify


@pytest.mark.parametrize("container", ["raw", "qcow2", "gpt", "gpt_qcow2"])
def test_verify_an_intact_log_in_any_container(images: Images, container: str) -> None:
    r = run("verify", getattr(images, container), "--key", images.owner_key)
    assert r.code == 0, r.stderr
    assert r.stderr == ""
    for text in ("INTACT", "clean shutdown", "panic", "crash (torn tail)", "crash_tail", "rotated_out",
                 "reclaimed by the ring"):
        assert text in r.stdout


def test_verify_json_is_the_report(images: Images) -> None:
    d = run_json("verify", images.raw, "--key", images.owner_key, "--json")
    assert d["verdict"] == "intact"
    assert [(b["boot"], b["ending"]) for b in d["boots"]] == [
        (1, "clean shutdown"), (2, "panic"), (3, "crash (torn tail)")]
    kinds = {f["kind"] for f in d["findings"]}
    assert {"crash_tail", "rotated_out", "no_shutdown"} <= kinds
    for f in d["findings"]:
        assert {"kind", "boot", "stream", "seq", "offset", "detail"} <= f.keys()
    crash = next(f for f in d["findings"] if f["kind"] == "crash_tail")
    assert images.raw.read_bytes()[crash["offset"] : crash["offset"] + 4] == b"SVLF"
    assert d["anchor_checked"] is False


def test_verify_offsets_in_a_gpt_disk_count_from_the_disk_start(images: Images) -> None:
    raw = run_json("verify", images.raw, "--key", images.owner_key, "--json")
    gpt = run_json("verify", images.gpt, "--key", images.owner_key, "--json")
    base = run_json("info", images.gpt, "--json")["base_offset"]
    assert [f["offset"] for f in gpt["findings"]] == [
        None if f["offset"] is None else f["offset"] + base for f in raw["findings"]]


def test_verify_with_the_anchor(images: Images) -> None:
    d = run_json("verify", images.raw, "--key", images.owner_key, "--anchor", images.anchor, "--json")
    assert d["verdict"] == "intact" and d["anchor_checked"] is True
    text = run("verify", images.raw, "--key", images.owner_key, "--anchor", images.anchor).stdout
    assert "it vouches for boot(s) 1, 2, 3" in text
    plain = run("verify", images.raw, "--key", images.owner_key).stdout
    assert "a cut-off tail of the newest boot goes unnoticed" in plain
    assert "none of 3 boot(s) is attested" in plain


def test_verify_an_anchor_of_another_volume_is_a_violation(images: Images, tmp_path: Path) -> None:
    from svsmlog.anchor import Anchor

    mine = Anchor.from_json(images.anchor.read_text())
    foreign = tmp_path / "foreign.json"
    foreign.write_text(Anchor(bytes(16), mine.boot, mine.heads).to_json())
    r = run("verify", images.raw, "--key", images.owner_key, "--anchor", foreign, "--json")
    assert r.code == 1
    assert "anchor_mismatch" in {f["kind"] for f in json.loads(r.stdout)["findings"]}


def test_verify_a_tampered_log(images: Images) -> None:
    r = run("verify", images.violated, "--key", images.owner_key)
    assert r.code == 1
    assert "VIOLATED" in r.stdout and "frame_corrupt" in r.stdout
    d = run_json("verify", images.violated, "--key", images.owner_key, "--json")
    assert d["verdict"] == "violated"
    bad = [f for f in d["findings"] if f["severity"] == "violation"]
    assert {(f["boot"], f["stream"]) for f in bad} == {(1, "core")}


def test_verify_encrypted_key(images: Images) -> None:
    r = run("verify", images.raw, "--key", images.encrypted_key, "--passphrase-file", images.passphrase)
    assert r.code == 0, r.stderr


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "encrypted: give its passphrase with --passphrase-file"),
        (["--passphrase-file", "owner.pub"], "wrong passphrase"),
    ],
)
def test_verify_encrypted_key_without_the_right_passphrase(images: Images, extra: list[str],
                                                           message: str) -> None:
    extra = [str(images.dir / e) if e.endswith(".pub") else e for e in extra]
    r = run("verify", images.raw, "--key", images.encrypted_key, *extra)
    assert r.code == 3
    assert message in error_line(r)
    assert r.stdout == ""


def test_verify_with_a_key_that_is_not_a_recipient(images: Images) -> None:
    r = run("verify", images.raw, "--key", images.other_key, "--json")
    assert r.code == 3
    assert "none of the given keys opens this log" in error_line(r)
    spans = [s for b in json.loads(r.stdout)["boots"] for s in b["streams"]]
    assert spans and all(s["frames"] == 0 and s["unreadable_frames"] > 0 for s in spans)


def test_a_boot_nobody_could_read_is_not_called_clean(images: Images) -> None:
    """Without a key only keyless evidence counts: a torn tail (its commit digest) is a
    crash; nothing can show a clean shutdown."""
    r = run("verify", images.raw, "--key", images.other_key, "--json")
    endings = {b["ending"] for b in json.loads(r.stdout)["boots"]}
    assert endings <= {"unknown (no shutdown record)", "crash (torn tail)"}
    assert "unknown (no shutdown record)" in endings


def test_a_key_that_opens_nothing_gets_no_verdict(images: Images) -> None:
    """No INTACT panel and no "intact" in JSON for a key that opens nothing: exit 3."""
    r = run("verify", images.raw, "--key", images.other_key)
    assert r.code == 3
    assert r.stdout == "" and "INTACT" not in r.stderr and len(r.stderr.splitlines()) == 1
    j = run("verify", images.raw, "--key", images.other_key, "--json")
    assert j.code == 3 and json.loads(j.stdout)["verdict"] == "unverifiable"


def test_verify_with_a_wrong_and_a_right_key(images: Images) -> None:
    r = run("verify", images.raw, "--key", images.other_key, "--key", images.owner_key)
    assert r.code == 0, r.stderr


@pytest.mark.parametrize(
    ("key_text", "message"),
    [
        (None, "no such file"),
        (b"not a key", "no PEM block"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "is a public key"),
        (b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "not a readable"),
    ],
)
def test_verify_unusable_key_files(images: Images, tmp_path: Path, key_text: bytes | None,
                                   message: str) -> None:
    key = tmp_path / "k.key"
    if key_text is not None:
        key.write_bytes(key_text)
    r = run("verify", images.raw, "--key", key)
    assert r.code == 2
    assert message in error_line(r)


def test_verify_directory_as_key(images: Images, tmp_path: Path) -> None:
    r = run("verify", images.raw, "--key", tmp_path)
    assert r.code == 2
    assert "is a directory" in error_line(r)


def test_verify_needs_a_key(images: Images) -> None:
    r = run("verify", images.raw)
    assert r.code == 2
    assert "--key" in error_line(r)


@pytest.mark.parametrize("text", ["{}", "not json", '{"format": "svsmlog-anchor-v1", "heads": []}'])
def test_verify_unreadable_anchor(images: Images, tmp_path: Path, text: str) -> None:
    anchor = tmp_path / "a.json"
    anchor.write_text(text)
    r = run("verify", images.raw, "--key", images.owner_key, "--anchor", anchor)
    assert r.code == 2
    assert "a.json" in error_line(r)


def test_verify_a_disk_with_two_svsmlog_partitions(images: Images) -> None:
    r = run("verify", images.two_partitions, "--key", images.owner_key)
    assert r.code == 2
    assert "--partition" in error_line(r)
    assert run("verify", images.two_partitions, "--key", images.owner_key, "--partition", 2).code == 0


# --------------------------------------------------------------------------- bad images


@pytest.mark.parametrize(
    ("which", "message"),
    [
        ("missing", "no such file"),
        ("directory", "is a directory"),
        ("empty", "empty file"),
        ("random", "not an svsmlog volume"),
        ("truncated", "not an svsmlog volume"),
        ("truncated.qcow2", "qcow2"),
    ],
)
@pytest.mark.parametrize("command", ["info", "verify", "extract", "export-key"])
def test_bad_images(images: Images, which: str, message: str, command: str) -> None:
    path = {"missing": images.dir / "missing.img", "directory": images.dir, "empty": images.empty,
            "random": images.random, "truncated": images.truncated,
            "truncated.qcow2": images.dir / "truncated.qcow2"}[which]
    if which == "directory" and command != "export-key":
        # info, verify and extract search a directory for images: one without any is the error.
        path = images.dir / "no-images"
        path.mkdir(exist_ok=True)
        message = "no images (*.img, *.qcow2, *.raw) in"
    args: list[object] = [command, path]
    if command != "info":
        args += ["--key", images.owner_key]
    if command == "export-key":
        args += ["--boot", 1, "--stream", "core", "--out", images.dir / "never.json"]
    r = run(*args)
    assert r.code == 2
    assert message in error_line(r)
    assert r.stdout == ""
    assert not (images.dir / "never.json").exists()


def test_image_cut_short_inside_a_region(images: Images, tmp_path: Path) -> None:
    """The superblock is intact but the file ends inside the regions."""
    data = images.raw.read_bytes()
    cut = tmp_path / "cut.img"
    cut.write_bytes(data[: 200 * SECTOR])
    r = run("verify", cut, "--key", images.owner_key)
    assert r.code == 2
    error_line(r)


# --------------------------------------------------------------------------- extract


def test_extract_text_shows_a_summary_and_every_record(images: Images) -> None:
    r = run("extract", images.raw, "--key", images.owner_key)
    assert r.code == 0, r.stderr
    # The summary goes to stderr, so that stdout holds the records (and markers) only.
    assert "svsmlog verification" in r.stderr and "INTACT" in r.stderr
    assert "svsmlog verification" not in r.stdout
    assert "core event 29" in r.stdout and "PCR3 extended" in r.stdout
    assert "PANIC" in r.stdout and "page fault in kernel" in r.stdout
    assert not ANSI.search(r.stdout) and not ANSI.search(r.stderr)
    lines = r.stdout.splitlines()
    markers = [line for line in lines if line.startswith("-- ")]
    assert markers == ["-- boot 1 --", "-- boot 2 --", "-- boot 3 --"]
    assert len(lines) - 3 == len(_all_records(images))


def test_extract_jsonl_holds_every_verified_record(images: Images) -> None:
    records = _all_records(images)
    summary = run_json("verify", images.raw, "--key", images.owner_key, "--json")
    assert len(records) == sum(s["records"] for b in summary["boots"] for s in b["streams"])
    keys = [(r["boot"], r["t_ns"]) for r in records]
    assert keys == sorted(keys)
    assert all("verified" not in r for r in records)
    assert any(r.get("panic") for r in records)


@pytest.mark.parametrize(
    ("args", "check"),
    [
        (["--boot", "2"], lambda r: r["boot"] == 2),
        (["--boot", "1", "--boot", "3"], lambda r: r["boot"] in (1, 3)),
        (["--stream", "vtpm"], lambda r: r["stream"] == "vtpm"),
        (["--stream", "2"], lambda r: r["stream"] == "vtpm"),
        (["--service", "ring"], lambda r: r["service"] == "ring"),
        # with another filter, the record pass must not take --service as the whole filter
        (["--service", "ring", "--since", "2.5"],
         lambda r: r["service"] == "ring" and r["t_ns"] >= 2_500_000_000),
        (["--level", "warn"], lambda r: r["level"] in ("error", "warn")),
        (["--since", "2.5", "--until", "4"], lambda r: 2_500_000_000 <= r["t_ns"] <= 4_000_000_000),
        (["--since", "250ms", "--until", "1s"], lambda r: 250_000_000 <= r["t_ns"] <= 10**9),
        (["--until", "0.1"], lambda r: r["t_ns"] <= 100_000_000),
        (["--grep", r"^PCR1\d extended$"], lambda r: re.match(r"^PCR1\d extended$", r["message"])),
        (["--boot", "1", "--stream", "core", "--level", "error"],
         lambda r: (r["boot"], r["stream"], r["level"]) == (1, "core", "error")),
    ],
)
def test_extract_filters(images: Images, args: list[str], check: object) -> None:
    everything = _all_records(images)
    r = run("extract", images.raw, "--key", images.owner_key, "-f", "jsonl", *args)
    assert r.code == 0, r.stderr
    got = _jsonl(r.stdout)
    expected = [rec for rec in everything if check(rec)]  # type: ignore[operator]
    assert got and got == expected


def test_extract_journal_export_format(images: Images) -> None:
    r = run("extract", images.raw, "--key", images.owner_key, "--format", "journal", "--boot", 1)
    assert r.code == 0, r.stderr
    entries = r.stdout_bytes.split(b"\n\n")
    assert entries[-1] == b""
    assert len(entries) - 1 == sum(1 for rec in _all_records(images) if rec["boot"] == 1)
    assert all(e.startswith(b"__CURSOR=") for e in entries[:-1])
    assert b"MESSAGE=core event 0\n" in r.stdout_bytes


def test_extract_syslog(images: Images) -> None:
    r = run("extract", images.raw, "--key", images.owner_key, "--format", "syslog", "--stream", "vtpm")
    assert r.code == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines and all(line.startswith("<") and 'stream="vtpm"' in line for line in lines)
    assert " - " in lines[0]  # NILVALUE timestamp: the host's clock is not used by default
    host = run("extract", images.raw, "--key", images.owner_key, "-f", "syslog", "--stream", "vtpm",
               "--host-time")
    assert host.stdout.splitlines()[0].split()[1].startswith("2023-11-14T22:13:20")


@pytest.mark.parametrize(("fmt", "ext"), [("jsonl", "jsonl"), ("text", "txt"), ("journal", "journal"),
                                          ("syslog", "log")])
def test_extract_to_a_directory(images: Images, tmp_path: Path, fmt: str, ext: str) -> None:
    out = tmp_path / "out"
    r = run("extract", images.raw, "--key", images.owner_key, "-f", fmt, "-o", out)
    assert r.code == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    records = _all_records(images)
    expected = sorted({f"boot-{rec['boot']:04d}-{rec['stream']}.{ext}" for rec in records} | {"report.json"})
    assert names == expected
    assert json.loads((out / "report.json").read_text())["verdict"] == "intact"
    if fmt == "jsonl":
        got = _jsonl((out / "boot-0001-vtpm.jsonl").read_text())
        assert got == [rec for rec in records if (rec["boot"], rec["stream"]) == (1, "vtpm")]
    if fmt == "text":
        assert not ANSI.search((out / "boot-0002-core.txt").read_text())


def test_extract_marks_records_of_a_violated_stream(images: Images) -> None:
    r = run("extract", images.violated, "--key", images.owner_key, "-f", "jsonl")
    assert r.code == 1
    assert "integrity violation" in r.stderr and "warning" in r.stderr
    records = _jsonl(r.stdout)
    unverified = {(rec["boot"], rec["stream"]) for rec in records if rec.get("verified") is False}
    assert unverified == {(1, "core")}
    text = run("extract", images.violated, "--key", images.owner_key, "--boot", 1, "--stream", "core")
    assert text.code == 1
    assert "VIOLATED" in text.stderr and "UNVERIFIED" in text.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--format", "xml"], "'xml' is not one of"),
        (["--level", "loud"], "invalid --level 'loud'"),
        (["--since", "soon"], "invalid --since"),
        (["--until", "-1"], "invalid --until"),
        (["--grep", "(unclosed"], "invalid --grep"),
        (["--stream", "nope"], "no stream 'nope'"),
        (["--boot", "one"], "'--boot'"),
    ],
)
def test_extract_bad_options(images: Images, args: list[str], message: str) -> None:
    r = run("extract", images.raw, "--key", images.owner_key, *args)
    assert r.code == 2
    assert message in error_line(r)
    assert r.stdout == ""


def test_extract_with_a_key_that_is_not_a_recipient(images: Images, tmp_path: Path) -> None:
    r = run("extract", images.raw, "--key", images.other_key, "-o", tmp_path / "out")
    assert r.code == 3
    error_line(r)
    assert r.stdout == "" and not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- export-key and stream keys


def _export(images: Images, boot: int, stream: str, out: Path) -> Path:
    r = run("export-key", images.raw, "--key", images.owner_key, "--boot", boot, "--stream", stream,
            "--out", out)
    assert r.code == 0, r.stderr
    return out


@pytest.fixture(scope="session")
def vtpm_key(images: Images) -> Path:
    """The vtpm stream of boot 3, the newest boot."""
    return _export(images, 3, "vtpm", images.dir / "vtpm-boot3.json")


def test_export_key_file(images: Images, vtpm_key: Path) -> None:
    assert stat.S_IMODE(vtpm_key.stat().st_mode) == 0o600
    d = json.loads(vtpm_key.read_text())
    info = run_json("info", images.raw, "--json")
    assert d["format"] == "svsmlog-stream-key-v1"
    assert d["volume_id"] == info["volume"]["id"]
    assert (d["boot"], d["stream"], d["seq"]) == (3, 2, 0)
    assert len(bytes.fromhex(d["chain_key"])) == 32


def _only(images: Images, boot: int, stream: str) -> list[dict]:
    return [rec for rec in _all_records(images) if (rec["boot"], rec["stream"]) == (boot, stream)]


def _check_stream_key_reads_only(images: Images, key: Path, boot: int, stream: str) -> None:
    r = run("extract", images.raw, "--stream-key", key, "-f", "jsonl")
    # everything else is present but not ours to verify: partial, exit 4, said on stderr
    assert r.code == 4, r.stderr
    assert "intact for what the keys open" in r.stderr
    assert _jsonl(r.stdout) == _only(images, boot, stream)
    d = run_json("verify", images.raw, "--stream-key", key, "--json")
    # One stream key proves that stream of that boot only; the rest is not proven (partial).
    assert d["verdict"] == "partial"
    spans = [(b["boot"], s["stream"]) for b in d["boots"] for s in b["streams"] if s["frames"]]
    assert spans == [(boot, stream)]


def test_a_stream_key_reads_that_stream_of_that_boot_only(images: Images, vtpm_key: Path) -> None:
    _check_stream_key_reads_only(images, vtpm_key, 3, "vtpm")


def test_a_stream_key_of_an_earlier_boot(images: Images, tmp_path: Path) -> None:
    _check_stream_key_reads_only(images, _export(images, 1, "vtpm", tmp_path / "k.json"), 1, "vtpm")


def test_a_stream_key_with_the_owner_key(images: Images, vtpm_key: Path) -> None:
    r = run("extract", images.raw, "--key", images.owner_key, "--stream-key", vtpm_key, "-f", "jsonl")
    assert r.code == 0
    assert _jsonl(r.stdout) == _all_records(images)


def test_a_stream_key_may_name_its_stream(images: Images, vtpm_key: Path, tmp_path: Path) -> None:
    d = json.loads(vtpm_key.read_text())
    d["stream"] = "vtpm"
    named = tmp_path / "named.json"
    named.write_text(json.dumps(d))
    r = run("extract", images.raw, "--stream-key", named, "-f", "jsonl")
    assert r.code == 4  # partial: only that stream of that boot is ours to verify
    assert _jsonl(r.stdout) == _only(images, 3, "vtpm")


def test_a_stream_key_of_another_volume(images: Images, vtpm_key: Path, tmp_path: Path) -> None:
    d = json.loads(vtpm_key.read_text())
    d["volume_id"] = "00" * 16
    other = tmp_path / "other.json"
    other.write_text(json.dumps(d))
    r = run("verify", images.raw, "--stream-key", other)
    assert r.code == 3
    assert "is a key for volume" in r.stderr


@pytest.mark.parametrize("text", ["[]", "{}", '{"format": "svsmlog-stream-key-v1", "boot": 1}', "\xff"])
def test_unreadable_stream_key_files(images: Images, tmp_path: Path, text: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(text, encoding="latin-1")
    r = run("extract", images.raw, "--stream-key", bad)
    assert r.code == 2
    assert "bad.json" in error_line(r)


def test_export_key_errors(images: Images, vtpm_key: Path, tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    base = ["export-key", images.raw, "--stream", "vtpm", "--out", out]
    absent = run(*base, "--key", images.owner_key, "--boot", 9)
    assert absent.code == 2 and "boot 9 has no frames" in error_line(absent)
    stranger = run(*base, "--key", images.other_key, "--boot", 1)
    assert stranger.code == 3
    error_line(stranger)
    narrow = run(*base, "--stream-key", vtpm_key, "--boot", 2)  # the key opens boot 3 only
    assert narrow.code == 3 and "do not open boot 2" in error_line(narrow)
    assert not out.exists()
    assert run(*base, "--stream-key", vtpm_key, "--boot", 3).code == 0  # re-exporting what one holds
    again = run(*base, "--key", images.owner_key, "--boot", 1)
    assert again.code == 2 and "already exists" in error_line(again)
    assert run(*base, "--key", images.owner_key, "--boot", 1, "--force").code == 0
    missing = run("export-key", images.raw, "--key", images.owner_key, "--boot", 1, "--stream", "vtpm")
    assert missing.code == 2 and "--out" in error_line(missing)


# --------------------------------------------------------------------------- the program


def test_usage_errors_are_one_line_and_exit_2(images: Images) -> None:
    for args in (["frobnicate"], ["verify"], ["extract", images.raw, "--key"],
                 ["info", images.raw, "--nope"]):
        r = run(*args)
        assert r.code == 2, args
        error_line(r)
    assert "see 'svsmlog verify --help'" in run("verify").stderr


def test_no_arguments_prints_help_and_exits_2() -> None:
    r = run()
    assert r.code == 2
    assert "Usage" in r.stdout + r.stderr and "export-key" in r.stdout + r.stderr


def test_version() -> None:
    r = run("--version")
    assert r.code == 0
    assert re.fullmatch(r"svsmlog \S+\n", r.stdout)


@pytest.mark.parametrize("command", ["keygen", "info", "verify", "extract", "export-key", "simulate"])
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_help_everywhere_with_examples_and_exit_codes(command: str, flag: str) -> None:
    r = run(command, flag, env={"COLUMNS": "200"})
    assert r.code == 0
    assert "Examples" in r.stdout and f"svsmlog {command}" in r.stdout
    # Only the commands that verify have verify's exit statuses.
    verifies = command in ("verify", "extract", "export-key")
    assert ("Exit status" in r.stdout and "no given key opens the log" in r.stdout) == verifies


def test_shell_completion() -> None:
    """Independent of the shell make test runs under (sh, dash, bash)."""
    r = run("--show-completion", "bash")
    assert r.code == 0
    assert "_svsmlog_completion" in r.stdout
    bad = run("--show-completion", "sh")
    assert bad.code == 2 and bad.stderr.startswith("svsmlog: error: ") and len(bad.stderr.splitlines()) == 1


def test_unexpected_errors_have_no_traceback_unless_debug(images: Images,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from svsmlog.cli import info

    def boom(*_: object, **__: object) -> None:
        raise RuntimeError("something broke")

    monkeypatch.setattr(info, "collect", boom)
    plain = run("info", images.raw)
    assert plain.code == 2
    assert "something broke" in error_line(plain) and "--debug" in plain.stderr
    debug = run("--debug", "info", images.raw)
    assert debug.code == 2
    assert "Traceback" in debug.stderr
    assert debug.stderr.splitlines()[-1] == "svsmlog: error: unexpected RuntimeError: something broke"
    again = run("info", images.raw)  # --debug does not stick to later runs in the same process
    assert again.code == 2 and "Traceback" not in again.stderr


def test_commands_map_errors_under_typer_standalone_mode_too(images: Images) -> None:
    """typer's own runner (standalone mode, no main()) sees the same exit codes."""
    missing = str(images.dir / "missing.img")
    result = CliRunner().invoke(app, ["verify", missing, "--key", str(images.owner_key)])
    assert result.exit_code == 2
    assert result.stderr.startswith("svsmlog: error: ")
    result = CliRunner().invoke(app, ["verify", str(images.raw), "--key", str(images.other_key)])
    assert result.exit_code == 3


def test_parse_since_boot() -> None:
    from svsmlog.cli.common import CliError, parse_since_boot

    assert parse_since_boot("12.5", "--since") == 12_500_000_000
    assert parse_since_boot("250ms", "--since") == 250_000_000
    assert parse_since_boot("3s", "--since") == 3 * 10**9
    assert parse_since_boot("2m", "--since") == 120 * 10**9
    assert parse_since_boot("1h", "--since") == 3600 * 10**9
    assert parse_since_boot("15us", "--since") == 15_000
    assert parse_since_boot("7ns", "--since") == 7
    assert parse_since_boot(".5", "--since") == 500_000_000
    for bad in ("", "-1", "1e3", "3 days", "ms"):
        with pytest.raises(CliError):
            parse_since_boot(bad, "--since")


# --------------------------------------------------------------------------- the installed program


def _program() -> list[str]:
    script = Path(sys.executable).with_name("svsmlog")
    return [str(script)] if script.exists() else [sys.executable, "-m", "svsmlog.cli"]


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["verify", "{raw}", "--key", "{owner}"], 0),
        (["verify", "{violated}", "--key", "{owner}"], 1),
        (["verify", "{raw}", "--key", "{owner}", "--format", "jsonl"], 2),
        (["verify", "{raw}", "--key", "{other}"], 3),
    ],
)
def test_console_script_exit_codes(images: Images, args: list[str], code: int) -> None:
    paths = {"raw": images.raw, "violated": images.violated, "owner": images.owner_key,
             "other": images.other_key}
    argv = [a.format(**paths) for a in args]
    p = subprocess.run([*_program(), *argv], capture_output=True, text=True, timeout=60)
    assert p.returncode == code, p.stderr
    assert "Traceback" not in p.stderr
    if code >= 2:
        assert p.stderr.startswith("svsmlog: error: ") and p.stderr.count("\n") == 1


def test_console_script_in_a_closed_pipe(images: Images) -> None:
    """``svsmlog extract ... | head -1``: quiet, no traceback, no 'Exception ignored'."""
    args = ["extract", str(images.raw), "--key", str(images.owner_key), "-f", "jsonl"]
    p = subprocess.Popen([*_program(), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None and p.stderr is not None
    p.stdout.readline()
    p.stdout.close()
    err = p.stderr.read()
    p.wait(timeout=60)
    # nothing but the one-line notes (the origin of unattested boots): no traceback, no error
    assert all(line.startswith(b"svsmlog: note: ") for line in err.splitlines()), err
    assert p.returncode in (0, 141)


# --------------------------------------------------------------------------- on a terminal


def _on_a_terminal(args: list[str], *, env: dict[str, str], stdout_tty: bool) -> tuple[bytes, bytes]:
    """Run the program with stderr (and optionally stdout) on a pseudo-terminal."""
    import pty

    master, slave = pty.openpty()
    p = subprocess.Popen([*_program(), *args], stdout=slave if stdout_tty else subprocess.PIPE, stderr=slave,
                         env={**os.environ, **env, "COLUMNS": "120", "TERM": "xterm-256color"})
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the other side is closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    out = p.stdout.read() if p.stdout else b""
    p.wait(timeout=60)
    os.close(master)
    return b"".join(chunks), out


def test_a_terminal_gets_colour_unless_no_color(images: Images) -> None:
    args = ["extract", str(images.raw), "--key", str(images.owner_key), "--boot", "2"]
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR")}
    coloured, _ = _on_a_terminal(args, env=env, stdout_tty=True)
    assert b"\x1b[" in coloured and b"page fault in kernel" in coloured
    plain, _ = _on_a_terminal(args, env={"NO_COLOR": "1"}, stdout_tty=True)
    assert b"page fault in kernel" in plain
    assert b"\x1b[3" not in plain and b"\x1b[1m" not in plain  # no colour, no bold


def test_progress_bar_on_a_terminal_stderr_only(images: Images) -> None:
    terminal, out = _on_a_terminal(["verify", str(images.qcow2), "--key", str(images.owner_key), "--json"],
                                   env={}, stdout_tty=False)
    assert b"verifying" in terminal
    assert json.loads(out)["verdict"] == "intact"  # stdout stays clean JSON
    assert run("verify", images.raw, "--key", images.owner_key).stderr == ""  # no bar off a terminal


def test_read_progress_counts_bytes() -> None:
    import io

    from rich.console import Console

    from svsmlog.cli.common import ReadProgress

    sink = io.StringIO()
    console = Console(file=sink, force_terminal=True, width=100)
    with ReadProgress(lambda lba, n: bytes(n * SECTOR), [(0, 4)], "scanning", console) as p:
        assert len(p.read(0, 2)) == 2 * SECTOR
        p.read(2, 2)
        assert p.bars == [("scanning", 4 * SECTOR, 4 * SECTOR)]
    assert "scanning" in sink.getvalue()


def test_der_keys_from_openssl_and_a_warning_for_a_key_others_can_read(images: Images,
                                                                      tmp_path: Path) -> None:
    """`openssl genpkey -outform DER` keys load; a key file readable by group or others
    still opens the log, with one warning line on stderr (as ssh warns, but not refuses)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    der = tmp_path / "k.der"
    subprocess.run(["openssl", "genpkey", "-algorithm", "X25519", "-outform", "DER", "-out", str(der)],
                   check=True, capture_output=True, timeout=30)
    der.chmod(0o600)
    r = run("verify", images.raw, "--key", der)
    assert r.code == 3 and "none of the given keys opens" in r.stderr  # a real key, not a recipient
    assert "readable by others" not in r.stderr
    pem = tmp_path / "owner.key"
    pem.write_bytes(Path(images.owner_key).read_bytes())
    pem.chmod(0o644)
    r = run("verify", images.raw, "--key", pem)
    assert r.code == 0
    assert [ln for ln in r.stderr.splitlines() if "readable by others" in ln] != []


def test_color_when_and_force_color(images: Images, monkeypatch: pytest.MonkeyPatch) -> None:
    """--color always / FORCE_COLOR style into a pipe; --color never / NO_COLOR do not."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    assert "\x1b[" not in run("verify", images.raw, "--key", images.owner_key).stdout
    assert "\x1b[" in run("--color", "always", "verify", images.raw, "--key", images.owner_key).stdout
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert "\x1b[" in run("extract", images.raw, "--key", images.owner_key, "-n", "1").stdout
    assert "\x1b[" not in run("--color", "never", "extract", images.raw, "--key", images.owner_key).stdout
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def test_extract_checks_an_anchor(images: Images, tmp_path: Path) -> None:
    """A log cut short behind an anchor: extract says so (exit 1), as verify does, and still
    writes the records it verified."""
    from svsmlog.device import SECTOR, MemoryDevice
    from svsmlog.verify import Keyring, Verifier

    assert run("extract", images.raw, "--key", images.owner_key, "--anchor", images.anchor).code == 0
    data = bytearray(Path(images.raw).read_bytes())
    dev = MemoryDevice(len(data) // SECTOR, bytes(data))
    owner = crypto.load_private_key(images.owner_key.read_bytes())
    v = Verifier(dev.read, dev.sector_count, Keyring([owner]))
    v.run()
    newest = max((e for entries in v._entries.values() for e in entries), key=lambda e: e.key)
    data[newest.lba * SECTOR : (newest.lba + newest.sectors) * SECTOR] = bytes(newest.sectors * SECTOR)
    short = tmp_path / "short.img"
    short.write_bytes(bytes(data))
    r = run("extract", short, "--key", images.owner_key, "--anchor", images.anchor, "-f", "jsonl")
    assert r.code == 1 and r.stdout.strip(), r.stderr
    assert "integrity violation" in r.stderr


def test_usage_lines_name_arguments_plainly() -> None:
    for cmd in ("verify", "extract", "info", "crashes"):
        usage = next(line for line in run(cmd, "--help").stdout.splitlines() if "Usage:" in line)
        assert "{" not in usage and "<bool>" not in run(cmd, "--help").stdout, usage


def test_no_shutdown_notices_are_one_row_per_boot_in_text(tmp_path: Path) -> None:
    """A boot that stopped without shutting down has a no_shutdown notice in every stream;
    the text report folds them into one row per boot (they drowned the rest), JSON keeps all."""
    root = Path(__file__).resolve().parent.parent
    image, key = root / "samples" / "attestation-failure.img", tmp_path / "k.key"
    key.write_bytes((root / "samples" / "TEST-ONLY-owner.key").read_bytes())
    key.chmod(0o600)
    d = json.loads(run("verify", image, "--key", key, "--json").stdout)
    per_stream = [f for f in d["findings"] if f["kind"] == "no_shutdown"]
    text = run("verify", image, "--key", key).stdout
    rows = [line for line in text.splitlines() if "no_shutdown" in line]
    assert len(per_stream) > len(rows) == len({f["boot"] for f in per_stream})
