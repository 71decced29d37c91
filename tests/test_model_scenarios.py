"""The SVSM model end to end: every scenario through ``simulate``, read back by the verifier."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from svsmlog import crypto
from svsmlog.anchor import Anchor
from svsmlog.device import SECTOR, FileDevice
from svsmlog.model.config import ConfigError
from svsmlog.model.simulate import (
    SCENARIOS,
    SimulateOptions,
    SimulateResult,
    SimulationError,
    parse_size,
    simulate,
)
from svsmlog.model.truth import FIELDS, key, read_back, read_truth
from svsmlog.report import Ending, Kind, Report
from svsmlog.verify import VolumeError

LAYOUTS = ("aggregated", "per-service")


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("keys")
    out: dict[str, Any] = {"dir": d}
    for name, kem in (("owner", crypto.KEM_X25519), ("owner-pq", crypto.KEM_MLKEM768_X25519),
                      ("debug", crypto.KEM_X25519)):
        k = crypto.generate_private_key(kem)
        (d / f"{name}.pub").write_bytes(k.public.to_pem())
        out[name] = k
    return out


def opts(keys: dict[str, Any], tmp: Path, **kw: Any) -> SimulateOptions:
    base: dict[str, Any] = {
        "image": tmp / "disk.img",
        "recipients": [keys["dir"] / "owner.pub", keys["dir"] / "owner-pq.pub"],
        "truth": tmp / "truth.jsonl",
        "anchor_out": tmp / "anchor.json",
        "size": "2M",
        "debug_key": keys["dir"] / "debug.pub",
    }
    base.update(kw)
    return SimulateOptions(**base)


def read_image(path: Path, keys: list[crypto.PrivateKey], anchor: Path | None = None
               ) -> tuple[Report, list[dict[str, Any]]]:
    dev = FileDevice(path)
    try:
        a = Anchor.from_json(anchor.read_text()) if anchor is not None and anchor.exists() else None
        return read_back(dev.read, dev.sector_count, keys, a)
    finally:
        dev.close()


def per_stream(lines: list[dict[str, Any]]) -> dict[tuple[int, str], list[tuple[Any, ...]]]:
    out: dict[tuple[int, str], list[tuple[Any, ...]]] = {}
    for d in lines:
        out.setdefault((d["boot"], d["stream"]), []).append(key(d))
    return out


def violations(rep: Report) -> list[str]:
    return [f"{f.kind.value} {f.stream} b{f.boot} s{f.seq}: {f.detail}" for f in rep.findings if f.violation]


# ---------------------------------------------------------------------- every scenario


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_verifies_and_truth_matches(keys: dict[str, Any], tmp_path: Path, scenario: str,
                                             layout: str) -> None:
    o = opts(keys, tmp_path, scenario=scenario, streams=layout, seed=11)
    res = simulate(o)
    assert not res.crashed and res.records_durable > 0
    truth = read_truth(tmp_path / "truth.jsonl")
    assert len(truth) == res.records_durable
    assert all(list(d) == list(FIELDS) for d in truth)
    for k in ("owner", "owner-pq"):
        rep, got = read_image(o.image, [keys[k]], tmp_path / "anchor.json")
        assert rep.verdict == "intact", violations(rep)
        assert rep.anchor_checked
        if scenario == "wraparound":
            check_wrapped(rep, truth, got)
        else:
            assert Counter(map(key, got)) == Counter(map(key, truth))
            assert per_stream(got) == per_stream(truth)  # and in the same order, stream by stream
    check_scenario(scenario, layout, res, rep, truth)


def check_wrapped(rep: Report, truth: list[dict[str, Any]], got: list[dict[str, Any]]) -> None:
    """Rotation may reclaim old frames, never anything after the oldest unbroken frame."""
    rotated = [f for f in rep.findings if f.kind == Kind.ROTATED_OUT]
    assert rotated, "the wraparound scenario must wrap"
    assert Counter(map(key, got)) <= Counter(map(key, truth))
    have = Counter(map(key, got))
    for f in rotated:
        newer = [d for d in truth if d["stream"] == f.stream and (d["boot"], d["seq"]) >= (f.boot, f.seq)]
        assert newer and all(have[key(d)] for d in newer), f.stream
    for stream in {d["stream"] for d in truth}:  # the newest record of every stream survives
        assert have[key([d for d in truth if d["stream"] == stream][-1])]


def check_scenario(scenario: str, layout: str, res: SimulateResult, rep: Report,
                   truth: list[dict[str, Any]]) -> None:
    endings = [rep.boots[b].ending for b in sorted(rep.boots)]
    if scenario in ("normal", "wraparound", "debug"):
        assert endings == [Ending.CLEAN]
    elif scenario == "panic":
        assert endings == [Ending.PANIC]
        last = [d for d in truth if d["service"] == "vtpm"][-1]
        assert last["message"].startswith("Panic on CPU[") and last["level"] == "error"
        assert last == [d for d in truth if d["stream"] == last["stream"]][-1]
    elif scenario == "attestation-failure":
        assert endings == [Ending.UNKNOWN]
        errors = [d["message"] for d in truth if d["level"] == "error"]
        assert errors and errors[0].startswith("attestation failed")
        assert not any(d["service"] in ("vtpm", "uefi") for d in truth)  # never got that far
        assert not any(d["message"] == "attestation successful" for d in truth)
    elif scenario == "multi-boot":
        assert res.boots == [1, 2, 3, 4, 5]
        assert endings == [Ending.CLEAN, Ending.PANIC, Ending.UNKNOWN, Ending.UNKNOWN, Ending.CLEAN]
    if layout == "per-service":
        assert all(d["stream"] == d["service"] for d in truth)
    else:
        assert {d["stream"] for d in truth} == {"all"}


def test_debug_scenario_grants_the_debug_key(keys: dict[str, Any], tmp_path: Path) -> None:
    o = opts(keys, tmp_path, scenario="debug")
    simulate(o)
    rep, got = read_image(o.image, [keys["debug"]])
    assert rep.verdict == "partial", violations(rep)  # the other streams are not its to read
    assert got and {d["stream"] for d in got} == {"vtpm", "console"}
    rep, _ = read_image(o.image, [keys["owner"]])  # the boot record: what the policy said at launch
    assert rep.boots[1].debug_ceiling == "debug-only" and rep.boots[1].debug_enabled is False


def test_boots_applies_to_every_scenario(keys: dict[str, Any], tmp_path: Path) -> None:
    res = simulate(opts(keys, tmp_path, scenario="panic", boots=3, streams="per-service"))
    assert res.boots == [1, 2, 3]
    rep, _ = read_image(tmp_path / "disk.img", [keys["owner"]])
    assert [rep.boots[b].ending for b in (1, 2, 3)] == [Ending.PANIC] * 3
    assert rep.verdict == "intact"


def test_reboots_append_to_an_existing_image(keys: dict[str, Any], tmp_path: Path) -> None:
    first = simulate(opts(keys, tmp_path, truth=tmp_path / "t1.jsonl", seed=1))
    second = simulate(opts(keys, tmp_path, truth=tmp_path / "t2.jsonl", seed=2, boots=2, size="999M"))
    assert first.boots == [1] and second.boots == [2, 3]
    assert (tmp_path / "disk.img").stat().st_size == 2 << 20  # --size only sizes a new image
    rep, got = read_image(tmp_path / "disk.img", [keys["owner"]], tmp_path / "anchor.json")
    assert rep.verdict == "intact"
    truth = read_truth(tmp_path / "t1.jsonl") + read_truth(tmp_path / "t2.jsonl")
    assert Counter(map(key, got)) == Counter(map(key, truth))
    # The second run's first boot found the first run's vTPM state.
    assert any(d["message"] == "VTPM: loaded existing NV state from persistent storage" and d["boot"] == 2
               for d in truth)


def test_layout_change_on_an_existing_image_is_refused(keys: dict[str, Any], tmp_path: Path) -> None:
    simulate(opts(keys, tmp_path))
    with pytest.raises(SimulationError, match="refusing to reformat"):
        simulate(opts(keys, tmp_path, streams="per-service"))


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_same_seed_same_records(keys: dict[str, Any], tmp_path: Path, scenario: str) -> None:
    a = simulate(opts(keys, tmp_path, scenario=scenario, image=tmp_path / "a.img", truth=tmp_path / "a.jsonl",
                      seed=5, streams="per-service"))
    b = simulate(opts(keys, tmp_path, scenario=scenario, image=tmp_path / "b.img", truth=tmp_path / "b.jsonl",
                      seed=5, streams="per-service"))
    c = simulate(opts(keys, tmp_path, scenario=scenario, image=tmp_path / "c.img", truth=tmp_path / "c.jsonl",
                      seed=6, streams="per-service"))
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()
    assert (a.device_writes, a.sectors_written, a.frames) == (b.device_writes, b.sectors_written, b.frames)
    assert (tmp_path / "a.img").read_bytes() != (tmp_path / "b.img").read_bytes()  # fresh secrets
    assert [h.seq for h in a.anchor.heads] == [h.seq for h in b.anchor.heads]  # type: ignore[union-attr]
    del c


def test_result_counts(keys: dict[str, Any], tmp_path: Path) -> None:
    res = simulate(opts(keys, tmp_path, streams="per-service"))
    truth = read_truth(tmp_path / "truth.jsonl")
    assert res.message_bytes == sum(len(d["message"].encode()) for d in truth)
    assert res.sectors_written * SECTOR > res.message_bytes
    assert res.frames >= 7 * 2  # a BOOT and an END frame per stream at least
    assert "records durable" in res.summary()
    anchor = Anchor.from_json((tmp_path / "anchor.json").read_text())
    assert anchor == res.anchor and anchor.boot == 1


# ---------------------------------------------------------------------- crashes


@pytest.mark.parametrize("layout", LAYOUTS)
def test_crash_at_every_write(keys: dict[str, Any], tmp_path: Path, layout: str) -> None:
    """--crash-after-writes K (every K of a run) with tears of 0, 1 and 2 sectors: the
    truth file holds what was durable before the crash, all of it recovered, no violation,
    and the anchor written just before the crash still holds."""
    full = simulate(opts(keys, tmp_path, image=tmp_path / "full.img", streams=layout, seed=3, boots=2))
    assert not full.crashed
    for k in range(full.device_writes):
        for tear in (0, 1, 2):
            img = tmp_path / f"crash-{k}-{tear}.img"
            anchor = tmp_path / f"crash-{k}-{tear}.anchor.json"
            res = simulate(opts(keys, tmp_path, image=img, streams=layout, seed=3, boots=2,
                                crash_after_writes=k, tear_sectors=tear, anchor_out=anchor))
            assert res.crashed and res.device_writes == k
            truth = read_truth(tmp_path / "truth.jsonl")
            assert len(truth) == res.records_durable
            try:
                rep, got = read_image(img, [keys["owner"]], anchor)
            except VolumeError:  # crashed while formatting: the superblock is written last
                assert not truth and not anchor.exists()
                continue
            assert rep.verdict == "intact", (k, tear, violations(rep))
            assert Counter(map(key, truth)) <= Counter(map(key, got)), (k, tear)
            img.unlink()


# ---------------------------------------------------------------------- bad input


def test_bad_inputs(keys: dict[str, Any], tmp_path: Path) -> None:
    cases: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"scenario": "nonsense"}, SimulationError, "unknown scenario"),
        ({"scenario": "panic:gpu"}, SimulationError, "unknown service"),
        ({"boots": 0}, SimulationError, "boots"),
        ({"size": "12Q"}, SimulationError, "size"),
        ({"size": "1000"}, SimulationError, "multiple of 512"),
        ({"size": "64K"}, SimulationError, "cannot hold the configured regions"),
        ({"streams": "per-cpu"}, SimulationError, "unknown layout"),
        ({"tear_sectors": 2}, SimulationError, "needs crash-after-writes"),
        ({"crash_after_writes": -1}, SimulationError, "0 or more"),
        ({"recipients": []}, SimulationError, "no recipient"),
        ({"recipients": [tmp_path / "absent.pub"]}, SimulationError, "absent.pub"),
        ({"scenario": "debug", "debug_key": None}, ConfigError, "needs a debug recipient"),
        ({"config": tmp_path / "absent.toml"}, ConfigError, "cannot read"),
    ]
    for kw, exc, text in cases:
        with pytest.raises(exc) as e:
            simulate(opts(keys, tmp_path, **kw))
        assert text in str(e.value) and "\n" not in str(e.value), (kw, str(e.value))
        assert not (tmp_path / "disk.img").exists()  # nothing is created for bad input


def test_refuses_to_format_a_foreign_file(keys: dict[str, Any], tmp_path: Path) -> None:
    img = tmp_path / "disk.img"
    img.write_bytes(b"\x7fELF" + bytes(4 * SECTOR - 4))
    with pytest.raises(SimulationError, match="holds no svsmlog volume"):
        simulate(opts(keys, tmp_path))
    assert img.read_bytes()[:4] == b"\x7fELF"


def test_config_file_and_command_line(keys: dict[str, Any], tmp_path: Path) -> None:
    d = keys["dir"]
    cfg = tmp_path / "launch.toml"
    cfg.write_text(f'[recipients]\nowner = ["{d / "owner.pub"}"]\n[log]\nlayout = "per-service"\n'
                   '[log.streams.core]\nsectors = 512\n[debug]\nceiling = "always"\nstreams = ["apic"]\n')
    res = simulate(opts(keys, tmp_path, config=cfg, recipients=[]))
    rep, got = read_image(tmp_path / "disk.img", [keys["debug"]])
    # ceiling "always": the debug key reads exactly the named stream, from the boot on.
    assert {d["stream"] for d in got} == {"apic"}
    assert rep.boots[1].debug_enabled is True and rep.boots[1].debug_ceiling == "always"
    truth = read_truth(tmp_path / "truth.jsonl")
    assert Counter(map(key, got)) == Counter(key(t) for t in truth if t["stream"] == "apic")
    # The owner key the config names reads everything; the pq key was not a recipient.
    rep, got = read_image(tmp_path / "disk.img", [keys["owner"]])
    assert len(got) == res.records_durable
    _, got = read_image(tmp_path / "disk.img", [keys["owner-pq"]])
    assert not got


@pytest.mark.parametrize(("text", "size"), [("64M", 64 << 20), ("512K", 512 << 10), ("1g", 1 << 30),
                                            ("4MiB", 4 << 20), ("1024", 1024), ("2048B", 2048)])
def test_parse_size(text: str, size: int) -> None:
    assert parse_size(text) == size
