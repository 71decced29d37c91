"""Many images: one machine's process pool, and a fleet through Dask.

``analyse`` is the unit of work: one image in, one plain dict out (picklable, JSON-able),
never an exception, so one unreadable image cannot stop a fleet run. ``run_local`` maps it
over a process pool (``verify``/``info`` with several images); ``run_fleet`` maps it with
``dask.bag`` (the optional ``fleet`` extra) and writes tables DuckDB, Spark or pandas load
directly: ``images``, ``findings`` (one row each) and ``records/`` (one file per image,
written by the worker that read it, so records never travel through the scheduler).

The workers load the keys themselves: key objects are not sent between processes, only
the paths of the key files.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import crypto

if TYPE_CHECKING:
    from .cli.common import OriginArgs

IMAGE_SUFFIXES = (".img", ".qcow2", ".raw")


def expand_images(paths: Iterable[Path]) -> list[Path]:
    """Files as given; directories searched recursively for *.img, *.qcow2, *.raw (sorted,
    so that runs and their outputs are reproducible)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix.lower() in IMAGE_SUFFIXES and f.is_file()))
        else:
            out.append(p)
    return list(dict.fromkeys(out))


@dataclass(frozen=True)
class Job:
    """What a worker needs for one image: paths only (cheap to pickle)."""

    image: Path
    keys: tuple[Path, ...] = ()
    stream_keys: tuple[Path, ...] = ()
    passphrase_file: Path | None = None
    anchor: Path | None = None
    partition: int | None = None
    offset: int | None = None
    mode: str = "verify"  # "verify" or "info"
    records_dir: Path | None = None  # fleet: write this image's records here
    records_format: str = "parquet"
    origin: OriginArgs | None = None  # --measurement, --require-attestation, --trust-root, --cert
    with_report: bool = True  # the whole report in the Result (verify --json, fleet's findings table)


@dataclass
class Result:
    image: str
    ok: bool
    code: int
    error: str | None = None
    summary: dict[str, object] = field(default_factory=dict)
    report: dict[str, object] | None = None
    records_file: str | None = None
    seconds: float = 0.0

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"image": self.image, "ok": self.ok, "exit_code": self.code,
                                  "seconds": round(self.seconds, 4), **self.summary}
        if self.error is not None:
            out["error"] = self.error
        if self.report is not None:
            out["report"] = self.report
        if self.records_file is not None:
            out["records_file"] = self.records_file
        return out


def analyse(job: Job) -> Result:
    """One image: verify it (or, ``mode="info"``, read what anyone can see). Errors become
    a Result with the exit code the single-image command would give."""
    from .cli.common import CliError, open_volume
    from .codec import DecodeError
    from .source import ImageError
    from .verify import VolumeError

    start = time.perf_counter()
    try:
        with open_volume(job.image, job.partition, job.offset) as image:
            if job.mode == "info":
                from .cli import info as info_cmd

                # Without the frames: too many for a table ('info IMAGE' lists them).
                info = info_cmd.collect(image).as_json()
                return Result(str(job.image), True, 0, summary={"info": info},
                              seconds=time.perf_counter() - start)
            result = _verify(job, image)
    except CliError as e:
        return Result(str(job.image), False, int(e.code), str(e), seconds=time.perf_counter() - start)
    except (ImageError, VolumeError, DecodeError, OSError) as e:
        return Result(str(job.image), False, 2, str(e), seconds=time.perf_counter() - start)
    except Exception as e:  # a bug or an input nobody foresaw: reported for this image only
        return Result(str(job.image), False, 2, f"unexpected {type(e).__name__}: {e}",
                      seconds=time.perf_counter() - start)
    result.seconds = time.perf_counter() - start
    return result


def _verify(job: Job, image: Any) -> Result:
    from .cli.verification import verify_image

    v = verify_image(image, list(job.keys), list(job.stream_keys), job.passphrase_file, job.anchor, jobs=1,
                     origin=job.origin)
    if v.nothing_opened():
        raise v.no_key_error()
    report = v.report
    spans = [s for b in report.boots.values() for s in b.streams.values()]
    summary: dict[str, object] = {
        "verdict": report.verdict,
        "volume_id": report.volume_id.hex(),
        "boots": len(report.boots),
        "records": sum(s.records for s in spans),
        "frames": sum(s.frames for s in spans),
        "violations": sum(1 for f in report.findings if f.violation),
        "unproven": sum(1 for f in report.findings if f.unproven),
        "notices": sum(1 for f in report.findings if not f.violation and not f.unproven),
        "panics": sum(1 for b in report.boots.values() if b.ending.name == "PANIC"),
        "attested_boots": len(report.attested_boots()),
    }
    records_file = None
    if job.records_dir is not None:
        records_file = str(_write_records(job, v))
    return Result(str(job.image), True, int(v.exit_code), summary=summary,
                  report=report.as_json() if job.with_report else None, records_file=records_file)


RECORD_COLUMNS = ("image", "boot", "stream", "seq", "offset", "service", "component", "level", "t_ns",
                  "host_time_us_untrusted", "message", "target", "fields_json", "panic", "verified")


def _record_rows(image: str, v: Any) -> Iterator[dict[str, object]]:
    bases = {b: s.host_time_ns // 1000 for b, s in v.report.boots.items() if s.host_time_ns}
    for lr in v.verifier.records():
        r = lr.record
        base = bases.get(lr.boot)
        yield {
            "image": image, "boot": lr.boot, "stream": lr.stream, "seq": lr.seq, "offset": lr.offset,
            "service": r.service, "component": r.component, "level": r.level.label, "t_ns": r.t_ns,
            "host_time_us_untrusted": None if base is None else base + r.t_ns // 1000,
            "message": r.message, "target": r.target,
            "fields_json": json.dumps(dict(r.fields), ensure_ascii=False) if r.fields else None,
            "panic": r.panic, "verified": lr.verified,
        }


def _write_records(job: Job, v: Any) -> Path:
    assert job.records_dir is not None
    # One file per image, named by a hash of its path: unique in the fleet, stable across runs.
    stem = crypto.sha256(str(job.image).encode()).hex()[:16]
    rows = _record_rows(str(job.image), v)
    if job.records_format == "parquet":
        path = job.records_dir / f"{stem}.parquet"
        write_parquet(path, list(rows), RECORD_COLUMNS)
    else:
        path = job.records_dir / f"{stem}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=True) + "\n")
    return path


_SCHEMA_TYPES = {"boot": "int64", "seq": "uint64", "offset": "int64", "t_ns": "uint64",
                 "host_time_us_untrusted": "int64", "panic": "bool_", "verified": "bool_"}


def write_parquet(path: Path, rows: list[dict[str, object]], columns: Iterable[str]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols = list(columns)
    fields = [pa.field(c, getattr(pa, _SCHEMA_TYPES.get(c, "string"))()) for c in cols]
    # An explicit schema: an image without records still gives a file every reader accepts.
    table = pa.Table.from_pylist(rows, schema=pa.schema(fields)) if rows else pa.table(
        {f.name: pa.array([], type=f.type) for f in fields})
    pq.write_table(table, path)


# --------------------------------------------------------------------------- one machine


def run_local(jobs: list[Job], workers: int | None, fn: Callable[[Job], Result] = analyse) -> list[Result]:
    """Images in parallel in a process pool (fork: the workers need nothing re-imported),
    results in the order of ``jobs``."""
    return list(iter_local(jobs, workers, fn))


def iter_local(jobs: list[Job], workers: int | None,
               fn: Callable[[Job], Result] = analyse) -> Iterator[Result]:
    """``run_local``'s results one by one, as they come in order: a caller that writes each
    and lets go of its report holds one at a time (a host can make a report as long as its
    image: a finding per frame)."""
    workers = min(workers or os.cpu_count() or 1, len(jobs)) or 1
    if workers == 1:
        yield from map(fn, jobs)
        return
    with ProcessPoolExecutor(workers, mp_context=get_context("fork")) as pool:
        yield from pool.map(fn, jobs, chunksize=1)


# --------------------------------------------------------------------------- a fleet (Dask)


IMAGE_COLUMNS = ("image", "ok", "exit_code", "error", "verdict", "volume_id", "boots", "records", "frames",
                 "violations", "unproven", "notices", "panics", "attested_boots", "seconds", "records_file")
FINDING_COLUMNS = ("image", "kind", "severity", "boot", "stream", "seq", "offset", "detail")


@dataclass
class FleetRun:
    images: int
    records: int
    seconds: float
    failed: int
    verdicts: dict[str, int]
    out_dir: Path

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds else 0.0

    @property
    def records_per_s(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


def run_fleet(jobs: list[Job], out_dir: Path, *, scheduler: str = "processes", workers: int | None = None,
              fmt: str = "parquet") -> FleetRun:
    """``dask.bag`` over the images; writes images.*, findings.* and records/ under out_dir.

    ``scheduler``: "processes" or "threads" (Dask's local schedulers), "sync" (one thread,
    for debugging), or a ``dask.distributed`` scheduler address ("tcp://host:8786"): then
    every worker must see the image paths and out_dir at the same place (a shared file
    system), as a Spark or Dask cluster usually does."""
    import dask
    import dask.bag as db

    out_dir.mkdir(parents=True, exist_ok=True)
    records_dir = out_dir / "records"
    records_dir.mkdir(exist_ok=True)
    jobs = [Job(**{**j.__dict__, "records_dir": records_dir, "records_format": fmt}) for j in jobs]
    start = time.perf_counter()
    bag = db.from_sequence(jobs, npartitions=max(1, min(len(jobs), (workers or os.cpu_count() or 1) * 4)))
    rows = bag.map(analyse).map(Result.as_json)
    if scheduler.startswith(("tcp://", "tls://")):
        from dask.distributed import Client  # only with the distributed package installed

        with Client(scheduler):
            results = rows.compute()
    else:
        with dask.config.set(scheduler=scheduler, num_workers=workers):
            results = rows.compute()
    seconds = time.perf_counter() - start
    image_rows, finding_rows = [], []
    for r in results:
        report = r.pop("report", None)
        image_rows.append({c: r.get(c) for c in IMAGE_COLUMNS})
        for f in (report or {}).get("findings", []):  # type: ignore[union-attr]
            finding_rows.append({"image": r["image"], **{c: f.get(c) for c in FINDING_COLUMNS[1:]}})
    _write_table(out_dir / "images", image_rows, IMAGE_COLUMNS, fmt)
    _write_table(out_dir / "findings", finding_rows, FINDING_COLUMNS, fmt)
    verdicts: dict[str, int] = {}
    for r in image_rows:
        key = str(r["verdict"]) if r["ok"] else "error"
        verdicts[key] = verdicts.get(key, 0) + 1
    return FleetRun(len(jobs), sum(int(r["records"] or 0) for r in image_rows), seconds,
                    sum(1 for r in image_rows if not r["ok"]), verdicts, out_dir)


_TABLE_TYPES = {"ok": "bool_", "exit_code": "int64", "boots": "int64", "records": "int64", "frames": "int64",
                "violations": "int64", "unproven": "int64", "notices": "int64", "panics": "int64",
                "attested_boots": "int64",
                "seconds": "float64", "boot": "int64", "seq": "uint64", "offset": "int64"}


def _write_table(stem: Path, rows: list[dict[str, object]], columns: Iterable[str], fmt: str) -> None:
    if fmt == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = [pa.field(c, getattr(pa, _TABLE_TYPES.get(c, "string"))()) for c in columns]
        pq.write_table(pa.Table.from_pylist(rows, schema=pa.schema(fields)), stem.with_suffix(".parquet"))
        return
    with open(stem.with_suffix(".jsonl"), "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=True) + "\n")
