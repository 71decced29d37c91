"""The analyst's workflow: wall-clock timelines, the crash summary, journalctl's options.

Uses the session images of tests/test_cli.py (three boots: clean, panic, torn tail; host
times 2023-11-14T22:13:20Z + 0 s, 1000 s, 2000 s) and a few made here.
"""

# The session images of tests/test_cli.py are imported as a fixture: parameters of that
# name are what pytest injects, not redefinitions.
# ruff: noqa: F811

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from svsmlog import crashes
from svsmlog.records import FLAG_PANIC, Level, LocatedRecord, Record
from svsmlog.report import BootSummary, Report, StreamSpan
from svsmlog.vectors import vector_key
from tests.test_cli import Images, _jsonl, error_line, images, run  # noqa: F401 - images is a fixture

HOST0 = "2023-11-14T22:13:20"  # boot 1's host time (HOST_TIME_NS)
REMOTE = next((p for p in ("/lib/systemd/systemd-journal-remote", "/usr/lib/systemd/systemd-journal-remote")
               if os.access(p, os.X_OK)), shutil.which("systemd-journal-remote"))
needs_journal = pytest.mark.skipif(REMOTE is None or shutil.which("journalctl") is None,
                                   reason="systemd-journal-remote/journalctl not installed")


def _extract(images: Images, *args: object) -> object:
    r = run("extract", images.raw, "--key", images.owner_key, *args)
    assert r.code == 0, r.stderr
    return r


def _journalctl(*args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TZ": "UTC", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": "", "LANG": "C.UTF-8"}
    return subprocess.run(["journalctl", "--no-pager", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=60, check=False)


# --------------------------------------------------------------------------- 1. wall-clock timelines


def test_host_time_in_every_format_and_always_marked_untrusted(images: Images) -> None:
    text = _extract(images, "--boot", 1, "--host-time")
    first = text.stdout.splitlines()[1]
    assert first.startswith(f"host:{HOST0}.000000Z [    0.000000]"), first
    assert "untrusted" in text.stderr
    rec = _jsonl(_extract(images, "-f", "jsonl", "--boot", 2, "--host-time").stdout)[0]
    assert rec["host_time_untrusted"] == "2023-11-14T22:30:00.500000Z"  # +1000 s, t = 0.5 s
    syslog = _extract(images, "-f", "syslog", "--boot", 1, "--host-time").stdout.splitlines()[0]
    assert f" {HOST0}.000000Z " in syslog and 'time_source="host-untrusted"' in syslog
    # Without --host-time, nothing of the host's clock shows but in the journal (below).
    assert "host_time_untrusted" not in _extract(images, "-f", "jsonl").stdout
    assert "host:" not in _extract(images).stdout


def test_timesketch_format(images: Images) -> None:
    lines = _jsonl(_extract(images, "-f", "timesketch", "--stream", "vtpm", "--boot", 1).stdout)
    e = lines[1]
    assert e["datetime"] == f"{HOST0}.250000Z" and e["timestamp"] == 1_700_000_000_250_000
    assert e["timestamp_desc"] == "SVSM record time (host-supplied boot clock, untrusted)"
    assert e["message"] == "PCR1 extended" and e["host_time_untrusted"] is True
    assert (e["boot"], e["stream"], e["t_ns"], e["field_pcr"]) == (1, "vtpm", 250_000_000, "1")


def test_journal_export_carries_host_time_by_default(images: Images) -> None:
    r = _extract(images, "-f", "journal", "--boot", 1, "--stream", "core")
    first = r.stdout_bytes.split(b"\n\n")[0].decode() + "\n"
    assert "__REALTIME_TIMESTAMP=1700000000000000\n" in first
    assert "__MONOTONIC_TIMESTAMP=0\n" in first and "SVSM_REALTIME_SOURCE=host-untrusted\n" in first


@needs_journal
def test_journalctl_since_and_list_boots_on_journal_files(images: Images, tmp_path: Path) -> None:
    out = tmp_path / "journal"
    _extract(images, "-f", "journal", "-o", out)
    files = sorted(out.glob("*.journal"))
    assert files and all(f.read_bytes()[:8] == b"LPKSHHRH" for f in files)  # real journal files
    # Boot 1, core: records every 0.5 s from the host's 22:13:20; --since 22:13:30 leaves t >= 10 s.
    shown = _journalctl("--file", out / "boot-0001-core.journal", "--since", f"{HOST0[:10]} 22:13:30",
                        "-o", "json")
    assert shown.returncode == 0, shown.stderr
    times = [int(json.loads(line)["SVSM_T_NS"]) for line in shown.stdout.splitlines()]
    assert times and min(times) == 10 * 10**9
    boots = _journalctl("--directory", out, "--list-boots")
    assert boots.returncode == 0, boots.stderr
    assert len([line for line in boots.stdout.splitlines() if line.strip() and "IDX" not in line]) == 3


@needs_journal
def test_the_readme_journal_recipe(images: Images, tmp_path: Path) -> None:
    export = tmp_path / "svsm.export"
    export.write_bytes(_extract(images, "-f", "journal").stdout_bytes)
    journal = tmp_path / "svsm.journal"
    done = subprocess.run([REMOTE, f"--output={journal}", export], capture_output=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    since = _journalctl("--file", journal, "--since", "2023-11-14 22:46:40", "-o", "json")
    assert {json.loads(line)["SVSM_BOOT"] for line in since.stdout.splitlines()} == {"3"}


# --------------------------------------------------------------------------- 2. crashes


def _panic_record(fields: tuple[tuple[str, str], ...], message: str = "Panic on CPU[7]!") -> Record:
    return Record(5 * 10**9, Level.ERROR, "vtpm", "panic", message, None, fields, FLAG_PANIC)


@pytest.mark.parametrize(
    ("fields", "message", "location", "reason"),
    [
        ((("info", "panicked at kernel/src/vtpm/mod.rs:214:13: NV overflow"),), "Panic on CPU[7]!",
         "kernel/src/vtpm/mod.rs:214:13", "NV overflow"),
        ((("file", "a.rs"), ("line", "9"), ("reason", "boom")), "Panic", "a.rs:9", "boom"),
        ((), "panicked at 'old style', src/x.rs:3:4", "src/x.rs:3:4", "old style"),
        ((), "Panic on CPU[0]!", None, None),
    ],
)
def test_panic_detail(fields: tuple[tuple[str, str], ...], message: str, location: str | None,
                      reason: str | None) -> None:
    d = crashes.panic_detail(_panic_record(fields, message))
    if location is None and reason is None:
        assert d is None
        return
    assert d is not None and (d.location, d.reason) == (location, reason)
    assert reason in d.message and location in d.message


def test_summarize_keeps_the_last_records_before_the_panic() -> None:
    report = Report(b"\0" * 16)
    report.boots[1] = BootSummary(1, {"core": StreamSpan("core", frames=1, ended_clean=True)})
    report.boots[2] = BootSummary(2, {"core": StreamSpan("core", frames=1, panic=True)})
    recs = [LocatedRecord(1, "core", 0, 0, Record(i, Level.INFO, "svsm", "c", f"b1 {i}")) for i in range(5)]
    recs += [LocatedRecord(2, "core", 0, 0, Record(i, Level.INFO, "svsm", "c", f"b2 {i}")) for i in range(5)]
    recs.insert(8, LocatedRecord(2, "core", 0, 0, _panic_record((("reason", "r"),))))
    out = crashes.summarize(recs, report, 2)
    assert [c.ending for c in out] == ["clean", "panic"]
    assert [lr.record.message for lr in out[0].last] == ["b1 3", "b1 4"]
    assert out[1].reason == "r" and out[1].service == "vtpm"
    assert out[1].last[-1].record.panic and len(out[1].last) == 2


@pytest.fixture(scope="module")
def panic_image(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("panic") / "panic.img"
    r = run("simulate", "--recipient", images.owner_pub, "--image", path, "--scenario", "panic",
            "--boots", 2, "--seed", 1, "--size", "8M")
    assert r.code == 0, r.stderr
    return path


def test_crashes_command(images: Images, panic_image: Path) -> None:
    r = run("crashes", images.raw, "--key", images.owner_key, "-n", 2)
    assert r.code == 0, r.stderr
    assert "boot 1: clean" in r.stdout and "boot 2: panic" in r.stdout and "boot 3: crash" in r.stdout
    assert "page fault in kernel" in r.stdout
    d = json.loads(run("crashes", images.raw, "--key", images.owner_key, "--json", "-n", 3).stdout)
    assert [b["ending"] for b in d["boots"]] == ["clean", "panic", "crash"]
    assert d["boots"][1]["service"] == "svsm" and len(d["boots"][1]["last_records"]) == 3
    # The model's panic: the reason and the file:line come from its fields.
    model = json.loads(run("crashes", panic_image, "--key", images.owner_key, "--json").stdout)
    panics = [b for b in model["boots"] if b["ending"] == "panic"]
    assert panics and all(p["location"] and ".rs:" in p["location"] and p["reason"] for p in panics)


def test_a_panic_reason_is_searchable(images: Images, panic_image: Path) -> None:
    model = json.loads(run("crashes", panic_image, "--key", images.owner_key, "--json").stdout)
    reason = next(b["reason"] for b in model["boots"] if b["ending"] == "panic")
    word = reason.split()[0].lower()  # smart case: lower-case pattern matches any case
    r = run("extract", panic_image, "--key", images.owner_key, "-f", "jsonl", "--grep", word)
    assert r.code == 0, r.stderr
    assert any(rec.get("panic") for rec in _jsonl(r.stdout))  # matched in a field, not the message
    journal = run("extract", panic_image, "--key", images.owner_key, "-f", "journal", "--grep", word)
    entry = next(e for e in journal.stdout_bytes.decode().split("\n\n") if "SVSM_PANIC=1" in e)
    message = next(line for line in entry.splitlines() if line.startswith("MESSAGE="))
    assert reason in message and " at kernel/src/" in message
    assert "SVSM_FIELD_INFO=" in entry and "SVSM_PANIC_REASON=" in entry


# --------------------------------------------------------------------------- 3. journalctl options


def _messages(images: Images, *args: object) -> list[dict]:
    return _jsonl(_extract(images, "-f", "jsonl", *args).stdout)


def test_priority_and_level_aliases(images: Images) -> None:
    everything = _messages(images)
    assert {r["level"] for r in _messages(images, "-p", "err")} == {"error"}
    assert {r["level"] for r in _messages(images, "-p", "err..warning")} == {"error", "warn"}
    assert {r["level"] for r in _messages(images, "-p", "warning..err")} == {"error", "warn"}
    assert {r["level"] for r in _messages(images, "-p", "6")} == {"error", "warn", "info"}
    assert _messages(images, "--level", "warning") == _messages(images, "--level", "warn")
    assert _messages(images, "--level", "err") == [r for r in everything if r["level"] == "error"]
    assert "invalid --priority 'loud'" in error_line(run("extract", images.raw, "--key", images.owner_key,
                                                         "-p", "loud"))


def test_lines_reverse_and_boot_offsets(images: Images) -> None:
    everything = _messages(images)
    assert _messages(images, "-n", 3) == everything[-3:]
    assert _messages(images, "-n", 3, "-r") == everything[-3:][::-1]
    # journalctl's meaning: 0 the newest boot, -1 the one before
    assert _messages(images, "-b", 0) == [r for r in everything if r["boot"] == 3]
    assert _messages(images, "-b", -1) == [r for r in everything if r["boot"] == 2]
    assert _messages(images, "--boot", -2) == [r for r in everything if r["boot"] == 1]
    listing = _extract(images, "--list-boots").stdout.splitlines()
    assert listing[0].split()[:2] == ["IDX", "BOOT"]
    assert [line.split()[:2] for line in listing[1:]] == [["-2", "1"], ["-1", "2"], ["0", "3"]]
    assert "panic" in listing[2] and HOST0 in listing[1]


def test_smart_case_grep(images: Images) -> None:
    assert _messages(images, "--grep", "pcr1 ext") == _messages(images, "--grep", "PCR1 ext")
    assert _messages(images, "--grep", "Pcr1") == []


def test_wall_clock_since_until(images: Images) -> None:
    got = _messages(images, "--host-time", "--since", "2023-11-14 22:30:00", "--until", "2023-11-14T22:40Z")
    assert got and {r["boot"] for r in got} == {2}
    everything = _messages(images, "--host-time")
    assert _messages(images, "--host-time", "--since", "@1700002000") == [
        r for r in everything if r["boot"] == 3]
    assert _messages(images, "--host-time", "--since", "10s") == [
        r for r in everything if r["t_ns"] >= 10 * 10**9]


def test_output_fields(images: Images) -> None:
    got = _messages(images, "--stream", "vtpm", "--output-fields", "boot,message,fields.pcr", "-n", 1)
    assert got == [{"boot": 3, "message": "PCR0 extended"}]
    first = _messages(images, "--stream", "vtpm", "--output-fields", "message,fields.pcr")[0]
    assert first == {"message": "PCR0 extended", "fields.pcr": "0"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--boot", 9], "no boot 9 in this image; its boots: 1, 2, 3"),
        (["--boot", -3], "--boot -3: the image holds 3 boot(s)"),
        (["--service", "nope"], "no records of service 'nope'"),
        (["-o", "json"], "use '-f jsonl'"),
        (["-o", "export"], "use '-f journal'"),
        (["-f", "text", "--output-fields", "message"], "--output-fields applies to"),
        (["-n", 2, "-o", "somewhere"], "-n/--lines and -r/--reverse apply to output on stdout"),
        (["--host-time", "--since", "2023-13-45"], "invalid date"),
    ],
)
def test_filters_that_cannot_match_are_errors(images: Images, args: list[object], message: str,
                                              tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # -o json must not leave a directory anywhere
    r = run("extract", images.raw, "--key", images.owner_key, *args)
    assert r.code == 2
    assert message in error_line(r)
    assert r.stdout == "" and not (tmp_path / "json").exists()


def test_journal_files_need_systemd_journal_remote(images: Images, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from svsmlog.cli import reading

    monkeypatch.setattr(reading, "journal_remote", lambda: None)
    r = run("extract", images.raw, "--key", images.owner_key, "-f", "journal", "-o", tmp_path / "j")
    assert r.code == 2 and "systemd-journal-remote" in error_line(r)
    assert not (tmp_path / "j").exists()


def test_gap_markers_where_frames_are_missing(tmp_path: Path) -> None:
    key = tmp_path / "owner.key"
    key.write_bytes(vector_key("owner").to_pem())
    image = Path(__file__).parent.parent / "formats/vectors/drop-middle-frame.img"
    r = run("extract", image, "--key", key, "--stream", "core")
    assert r.code == 1
    lines = r.stdout.splitlines()
    marker = next(i for i, line in enumerate(lines) if line.startswith("-- frames missing here"))
    assert "boot 1, stream core, from seq 2: frame_missing" in lines[marker]
    assert lines[0] == "-- boot 1 --" and marker > 1


def test_pager_only_on_a_terminal(images: Images, tmp_path: Path) -> None:
    from tests.test_cli import _on_a_terminal

    paged = tmp_path / "paged.txt"
    args = ["extract", str(images.raw), "--key", str(images.owner_key), "--boot", "2"]
    _on_a_terminal(args, env={"PAGER": f"tee {paged}", "NO_COLOR": "1"}, stdout_tty=True)
    assert "page fault in kernel" in paged.read_text()
    paged.unlink()
    _on_a_terminal([*args, "--no-pager"], env={"PAGER": f"tee {paged}"}, stdout_tty=True)
    assert not paged.exists()
    _, piped = _on_a_terminal(args, env={"PAGER": f"tee {paged}"}, stdout_tty=False)
    assert not paged.exists() and b"page fault in kernel" in piped


# --------------------------------------------------------------------------- 4. many images


@pytest.fixture(scope="module")
def fleet_dir(images: Images, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("fleet")
    (d / "sub").mkdir()
    shutil.copy(images.raw, d / "a.img")
    shutil.copy(images.qcow2, d / "sub" / "b.qcow2")
    shutil.copy(images.violated, d / "sub" / "c.raw")
    (d / "notes.txt").write_text("not an image")
    return d


def test_verify_many_images_and_directories(images: Images, fleet_dir: Path) -> None:
    r = run("verify", fleet_dir, "--key", images.owner_key, "--jobs", 2)
    assert r.code == 1  # the worst of them: c.raw is violated
    assert "3 image(s)" in r.stdout and "notes.txt" not in r.stdout
    lines = [json.loads(line) for line in run("verify", fleet_dir, images.raw, "--key", images.owner_key,
                                               "--json").stdout.splitlines()]
    assert [Path(d["image"]).name for d in lines] == ["a.img", "b.qcow2", "c.raw", "disk.img"]
    assert [d["verdict"] for d in lines] == ["intact", "intact", "violated", "intact"]
    assert all("findings" in d and "boots" in d for d in lines)
    broken = run("verify", images.raw, images.random, "--key", images.owner_key, "--json")
    assert broken.code == 2 and "error" in json.loads(broken.stdout.splitlines()[1])


def test_info_and_extract_many(images: Images, fleet_dir: Path, tmp_path: Path) -> None:
    info = [json.loads(line) for line in run("info", fleet_dir, "--json").stdout.splitlines()]
    assert len(info) == 3 and all("volume" in d for d in info)
    r = run("extract", fleet_dir, "--key", images.owner_key, "-f", "jsonl")
    assert r.code == 2 and "-o DIR" in error_line(r)
    out = tmp_path / "x"
    r = run("extract", fleet_dir, "--key", images.owner_key, "-f", "jsonl", "-o", out)
    assert r.code == 1
    assert len(list(out.glob("*/report.json"))) == 3


def test_offset_reads_a_volume_anywhere(images: Images, tmp_path: Path) -> None:
    shifted = tmp_path / "mbr.img"
    shifted.write_bytes(b"\x55" * 1000 + images.raw.read_bytes())  # not even sector-aligned
    assert run("verify", shifted, "--key", images.owner_key).code == 2
    r = run("verify", shifted, "--key", images.owner_key, "--offset", 1000, "--json")
    assert r.code == 0 and json.loads(r.stdout)["verdict"] == "intact"
    assert "at byte 12" in error_line(run("info", shifted, "--offset", 12))


def test_fleet_writes_tables(images: Images, fleet_dir: Path, tmp_path: Path) -> None:
    pytest.importorskip("dask.bag")
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "fleet"
    r = run("fleet", fleet_dir, "--key", images.owner_key, "--out", out, "--scheduler", "threads")
    assert r.code == 1, r.stderr  # one violated image
    assert "3 image(s)" in r.stdout and "images/s" in r.stdout
    rows = pq.read_table(out / "images.parquet").to_pylist()
    assert sorted(str(row["verdict"]) for row in rows) == ["intact", "intact", "violated"]
    findings = pq.read_table(out / "findings.parquet").to_pylist()
    assert {f["kind"] for f in findings if f["image"].endswith("c.raw")} >= {"frame_corrupt"} or findings
    import pyarrow.dataset as ds

    records = ds.dataset(out / "records").to_table().to_pylist()
    assert len(records) == sum(int(row["records"]) for row in rows)
    assert any(rec["panic"] for rec in records) and all(rec["image"] for rec in records)
    jl = tmp_path / "fleet-jsonl"
    assert run("fleet", fleet_dir, "--key", images.owner_key, "--out", jl, "-f", "jsonl",
               "--scheduler", "sync").code == 1
    assert len((jl / "images.jsonl").read_text().splitlines()) == 3
