"""Tamper campaign: every class of change the host can make (spec §1), judged by the spec.

Each case's expected outcome is decided here from formats/svsmlog-v3.md — the §10 table
and the §8 rules — and from the writer-side ground truth of the image (which frames the
writer wrote where, in which order), never from what the reader says:

* ``detect``: verdict violated, and a violation finding whose byte offset or (stream,
  boot, seq) points at the changed frame or structure;
* ``harmless``: the commit digest and padding are not authenticated (§4.3): verdict
  intact, the very same records verified;
* ``limit``: a stated limit (§10 "cannot prove"): a truncated newest tail or a rolled
  back image (an anchor taken at the end must catch those), erasing the start of a small
  region (a crash while wrapping), the ring's oldest history, an erased key-directory
  slot. Counted separately as "not claimed".

On an attested base (``Run.attest``: every boot's SEV-SNP report in its key frames) the origin
rules (``OriginRules``, §8.9) join them: over the frames the rules find authenticated after a
change, what each boot's key frames carry, as written, against what an honest attested writer
must have written; the reader's origin findings must be exactly those predicted. The forgery
campaign (``forgery.py``) puts the host's own boots into such runs.

Removals are judged by one rule (§8.3, §8.4): within a region's history (its live
frames in write order), losing a frame that has survivors on both sides is always
detected; losing the newest frames is a tail truncation; losing the oldest is rotation
if the region wrapped, a crash while wrapping if the region start is gone and less than
``MAX_WRAP_SECTORS`` are left after the newest frame, and ``frame_missing`` otherwise.
"""

from __future__ import annotations

import struct
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from itertools import pairwise

from ..anchor import Anchor
from ..codec import (
    DecodeError,
    FrameHeader,
    decode_clear_section,
    decode_frame_header,
    encode_clear_section,
    encode_frame_header,
)
from ..device import SECTOR, Write
from ..format import (
    FRAME_AAD_LEN,
    FRAME_HEADER_LEN,
    KEY_DIR_SLOTS,
    MAX_BOOT_SECTORS,
    MAX_FRAME_SECTORS,
    MAX_WRAP_SECTORS,
    NO_STREAM,
    SNP_REPORT_LEN,
    EnvelopeKind,
    FrameType,
    Layout,
)
from ..frames import commit_digest
from ..keyschedule import boot_report_data, launch_grant_digest
from ..origin import OriginPolicy
from ..records import Level, Record
from ..report import Kind
from ..volume import KEY_DIRECTORY, key_dir_slot
from .common import FrameRec, Run, Verified, frames_in_write, histories, owners_public, prior_of, verify_bytes

KEYDIR = KEY_DIRECTORY.name
KEYDIR_END = KEY_DIRECTORY.start + KEY_DIRECTORY.sectors


@dataclass(frozen=True)
class Expect:
    kind: str  # "detect" | "unproven" | "harmless" | "limit"
    reason: str = ""
    anchor: bool = False  # a limit an anchor taken at the end must catch
    findings: tuple[Expected, ...] = ()  # the violations the rules predict (detect)
    excused: tuple[tuple[str, int, bool], ...] = ()  # (stream, boot, via no_key link) O1 excuses
    # attested runs: every origin finding the rules predict (§8.9); None where the outcome is
    # not derived by the rules (a superblock change: DETECT, whatever the origin judge says)
    origin: tuple[Expected, ...] | None = None


DETECT = Expect("detect")
HARMLESS = Expect("harmless", "not authenticated (§4.3)")


def limit(reason: str, anchor: bool = False) -> Expect:
    return Expect("limit", reason, anchor)


TAIL = limit("newest tail: truncation / crash (§8.4, §10)", anchor=True)


def combine(a: Expect, b: Expect) -> Expect:
    """Two effects of one change: detected if either is."""
    if a.kind == "detect" or b.kind == "detect":
        return DETECT
    if a.kind == "limit":
        return a
    return b


@dataclass
class Case:
    cls: str
    what: str
    image: bytes
    expect: Expect
    offsets: set[int] = field(default_factory=set)
    idents: set[tuple[str, int, int]] = field(default_factory=set)
    superblock: bool = False
    at_start: bool = False  # a frame at its region's first sector is among those changed
    tags: frozenset[str] = frozenset()
    with_anchor: bool = False  # judged as verified with the writer's anchor from the end of the run
    require: bool = False  # attested runs: verified with --require-attestation
    strict: bool = False  # a violation where the rules give none is a false violation


# --------------------------------------------------------------------------- the base images


@dataclass(frozen=True)
class WrittenItems:
    """The clear-section items of a key frame as its writer wrote them (spec §4.4)."""

    report: bytes | None  # the SNP_REPORT item: report || launch-grant digests
    certs: tuple[bytes, ...]
    owner_section: bytes  # the encoding of its BOOT_SECRET envelopes alone
    grant_section: bytes  # the encoding of its CHAIN_KEY envelopes alone (a BOOT frame's launch grants)


def written_items(raw: bytes, clear_len: int) -> WrittenItems | None:
    try:
        items = decode_clear_section(raw[FRAME_HEADER_LEN : FRAME_HEADER_LEN + clear_len])
    except DecodeError:
        return None
    return WrittenItems(
        next((e.sealed for e in items if e.kind == EnvelopeKind.SNP_REPORT), None),
        tuple(e.sealed for e in items if e.kind == EnvelopeKind.SNP_CERT),
        encode_clear_section([e for e in items if e.kind == EnvelopeKind.BOOT_SECRET]),
        encode_clear_section([e for e in items if e.kind == EnvelopeKind.CHAIN_KEY]),
    )


class Base:
    """An image with its ground truth: untampered (``honest``: it must verify intact), or
    the image of a run in which the host wrote some boot itself (the forgery campaign)."""

    def __init__(self, name: str, run: Run, tear: Write | None = None, *, honest: bool = True) -> None:
        """``tear``: the write the writer was making when it crashed, of which only the first
        sector landed (the run's writes are those that returned)."""
        self.name = name
        self.run = run
        img = run.image_after(len(run.writes))
        torn_frames: list[FrameRec] = []
        if tear is not None:
            img[tear.lba * SECTOR : (tear.lba + 1) * SECTOR] = tear.data[:SECTOR]
            torn_frames = frames_in_write(tear, len(run.writes))[:1]
        self.image = bytes(img)
        self.torn_frames = torn_frames
        self.hist = histories(run)
        # the torn write's landed sector overwrote what was there
        live = [f for f in run.live_frames() if not any(f.lba <= t.lba < f.end for t in torn_frames)]
        self.live = live
        in_hist = {id(f) for h in self.hist.values() for f in h}
        self.remnants = [f for f in live if f.stream in run.regions and id(f) not in in_hist]
        self.slots = [f for f in live if f.stream == NO_STREAM]
        self.slot_written = {f.boot for f in run.frames if f.stream == NO_STREAM}
        self.volume_id = run.superblock.volume_id
        self.boots = {f.boot for f in run.frames}  # boots whose keys the owner holds
        self.region_boots = {f.boot for f in live if f.stream != NO_STREAM}
        # Every frame that may carry a boot's keys (BOOT and KEYS frames, directory slots):
        # change all of them and the boot's other frames are unreadable, which is no loss
        # of "untouched" records (§10: the host can always destroy keys).
        self.key_frames: dict[int, set[tuple[str, int, int]]] = {}
        for f in live:
            start = self.region_of(f)[0]
            if f.type == FrameType.BOOT or (
                f.type == FrameType.KEYS and (f.lba == start or f.stream == NO_STREAM)
            ):
                # (a debug grant's KEYS frame carries no owner envelope: only wrap frames do)
                self.key_frames.setdefault(f.boot, set()).add(self.ident(f))
        # Writer-side facts of every frame ever written, for the rules (`Rules`): its bytes
        # as written, the head each BOOT frame found, where each wrap frame's lap began.
        writes = [*run.writes, *([tear] if tear is not None else [])]
        self.written: list[tuple[FrameRec, bytes, int, int, bool]] = []
        self.prior: dict[FrameRec, FrameRec | None] = {}
        self.wrap_from: dict[FrameRec, int] = {}
        self.items: dict[FrameRec, WrittenItems] = {}  # frames written with a clear section
        for g in [*run.frames, *torn_frames]:
            w = writes[g.write]
            raw = w.data[(g.lba - w.lba) * SECTOR : (g.end - w.lba) * SECTOR]
            h = decode_frame_header(raw)
            start = self.region_of(g)[0]
            carrier = (
                g.stream == NO_STREAM
                or g.type == FrameType.BOOT
                or (g.type == FrameType.KEYS and g.lba == start)
            )
            self.written.append((g, raw, h.clear_len, h.body_len, carrier))
            if h.clear_len and run.attest is not None:
                it = written_items(raw, h.clear_len)
                if it is not None:
                    self.items[g] = it
            if g.stream == NO_STREAM:
                continue
            if g.type == FrameType.BOOT:
                self.prior[g] = prior_of(run, g)
            if g.lba == start and g.type in (FrameType.BOOT, FrameType.KEYS):
                before = [f for f in run.frames if f.stream == g.stream and f.write < g.write]
                self.wrap_from[g] = before[-1].end - start if before else 0
        self.verified = verify_bytes(self.image, run.owners, origin=self.origin_policy(False))
        if honest and self.verified.verdict != "intact":
            raise AssertionError(f"base image {name} does not verify intact: {self.verified.verdict}")
        self.snapshots = [bytes(run.image_after(k)) for k in run.boot_starts[1:]]  # after boots 1..N-1

    def origin_policy(self, require: bool) -> OriginPolicy | None:
        a = self.run.attest
        return a.policy_for(require) if a is not None else None

    def still_there(self, image: bytes | bytearray, f: FrameRec) -> bool:
        w = self.written_of(f)
        return image[f.offset : f.offset + len(w)] == w

    def written_of(self, f: FrameRec) -> bytes:
        return next(w for g, w, _, _, _ in self.written if g is f)

    def sname(self, sid: int) -> str:
        return KEYDIR if sid == NO_STREAM else self.run.names[sid]

    def ident(self, f: FrameRec) -> tuple[str, int, int]:
        return (self.sname(f.stream), f.boot, f.seq)

    def region_of(self, f: FrameRec) -> tuple[int, int]:
        if f.stream == NO_STREAM:
            return KEY_DIRECTORY.start, KEYDIR_END
        r = self.run.regions[f.stream]
        return r.start, r.start + r.sectors

    def at_start(self, frames: list[FrameRec]) -> bool:
        return any(f.lba == self.region_of(f)[0] for f in frames)

    def frames(self) -> list[FrameRec]:
        return [f for h in self.hist.values() for f in h]

    def wrapped(self, sid: int) -> bool:
        start = self.run.regions[sid].start
        return sum(1 for f in self.run.frames if f.stream == sid and f.lba == start) > 1

    # ---------------------------------------------------------------- what the image holds

    def seen_of(self, image: bytes, overrides: list[Seen] | None = None) -> list[Seen]:
        """The frames the writer wrote (ever, and the torn write of a crashed base) that are
        still at their place in ``image``, each with what of it is as written; frames at the
        LBAs of ``overrides`` are replaced by those (header changes the campaign made)."""
        skip = {o.lba for o in overrides or []}
        out = list(overrides or [])
        for g, w, clear_len, body_len, carrier in self.written:
            off = g.offset
            if g.lba in skip or image[off : off + FRAME_AAD_LEN] != w[:FRAME_AAD_LEN]:
                continue
            c0 = FRAME_HEADER_LEN
            clear_same = image[off + c0 : off + c0 + clear_len] == w[c0 : c0 + clear_len]
            if clear_same and image[off + c0 + clear_len : off + body_len] == w[c0 + clear_len : body_len]:
                status = "intact"  # header, clear section and ciphertext as written: the tag verifies
            else:
                aad = image[off : off + FRAME_AAD_LEN]
                clear = image[off + c0 : off + c0 + clear_len]
                ct = image[off + c0 + clear_len : off + body_len]
                fixed = commit_digest(aad, clear, ct) == image[off + FRAME_AAD_LEN : off + FRAME_HEADER_LEN]
                status = "fixed" if fixed else "torn"
            out.append(
                Seen(
                    g.lba,
                    g.sectors,
                    g.stream,
                    g.boot,
                    g.seq,
                    g.type,
                    status,
                    g.tag,
                    self.prior.get(g),
                    self.wrap_from.get(g, 0),
                    g.boot if carrier and clear_same else None,
                    # a changed clear section breaks our envelopes only while it still names
                    # one of our key ids; with every one renamed it is a frame no key of ours
                    # opens (no_key: another owner's boot looks the same, spec §8.2)
                    carrier and not clear_same and self.names_our_key(image[off + c0 : off + c0 + clear_len]),
                    self.items.get(g) if clear_same else None,
                )
            )
        return out

    def names_our_key(self, clear: bytes) -> bool:
        return any(k.public.key_id in clear for k in self.run.owners)

    def expect(self, image: bytes, overrides: list[Seen] | None = None, *, require: bool = False) -> Expect:
        """The outcome the rules give for ``image`` (and the findings they predict); for an
        attested run, with the origin rules (``OriginRules``) over the frames the rules
        found authenticated, the owner requiring attestation or not."""
        seen = self.seen_of(image, overrides)
        rules = Rules(self, seen)
        found = rules.run()
        origin: list[Expected] = []
        if self.run.attest is not None:
            origin = OriginRules(self, seen, require).run()
            found += origin
        exc = tuple((s, b, u) for (s, b), u in sorted(rules.excused.items()))
        if any(f.violation for f in found):
            out = Expect("detect", "", False, tuple(f for f in found if f.violation), exc)
        elif any(f.unproven for f in found):
            kinds = sorted({f.kind.value for f in found if f.unproven})
            out = Expect("unproven", "rests on unauthenticated bytes: " + ", ".join(kinds), excused=exc)
        else:
            out = replace(self.why_silent(seen), excused=exc)
        return replace(out, origin=tuple(origin) if self.run.attest is not None else None)

    def why_silent(self, seen: list[Seen]) -> Expect:
        """Nothing the rules check is broken: say which stated limit (§10) the change hides in."""
        ok = {(s.stream, s.boot, s.seq, s.tag) for s in seen if s.status == "ok"}
        anchor = self.run.anchor
        if anchor is not None and any((h.stream, h.boot, h.seq, h.tag) not in ok for h in anchor.heads):
            return TAIL
        lost = [f for f in self.live if (f.stream, f.boot, f.seq, f.tag) not in ok]
        if lost and all(f.stream != NO_STREAM and self.wrapped(f.stream) for f in lost):
            return limit("oldest history of a wrapped region: rotation (§10)")
        if lost and all(f.stream == NO_STREAM for f in lost):
            return limit("a key-directory slot a later boot of the same slot number may have taken (§4.7)")
        no_key = {(s.stream, s.boot, s.seq, s.tag) for s in seen if s.status == "no_key"}
        if lost and all((f.stream, f.boot, f.seq, f.tag) in no_key or f.stream == NO_STREAM for f in lost):
            return limit("keys destroyed: what is left reads as another recipient's, older than a rotation")
        return limit("nothing authenticated names what is gone (§10)")

    def removal(self, frames: list[FrameRec]) -> tuple[bytes, Expect]:
        img = bytearray(self.image)
        for f in frames:
            zero(img, f.lba, 1 if f in self.torn_frames else f.sectors)  # a torn frame: what landed
        return bytes(img), self.expect(bytes(img))


# --------------------------------------------------------------------------- the rules, on ground truth

INF_SEQ = 1 << 64


@dataclass
class Seen:
    """A frame the reader will find after a change, as the writer's ground truth says it is:
    which frame the writer put there, and what of it is still as written."""

    lba: int
    sectors: int
    stream: int
    boot: int
    seq: int
    type: int
    # "intact" (tag verifies if we hold the boot's secret), "fixed" (changed, commit digest
    # right), "torn" (commit digest wrong); settled by `Rules` into ok / no_key / corrupt / torn
    status: str
    tag: bytes = b""
    prior: FrameRec | None = None  # BOOT frames: the head the writer found (None: genesis)
    wrap_from: int = 0  # wrap frames: where the previous lap ended (relative)
    secret: int | None = None  # the boot whose secret its intact owner envelopes carry
    envelopes_broken: bool = False  # carries owner envelopes that no longer open (§8.2)
    items: WrittenItems | None = None  # its clear section's items, when it is as written

    @property
    def key(self) -> tuple[int, int]:
        return (self.boot, self.seq)

    @property
    def end(self) -> int:
        return self.lba + self.sectors

    @property
    def genesis(self) -> bool:
        return self.type == FrameType.BOOT and self.seq == 0 and self.prior is None


@dataclass(frozen=True)
class Expected:
    """A finding the rules say the reader must make."""

    kind: Kind
    stream: str
    boot: int | None
    seq: int | None
    lba: int | None

    @property
    def violation(self) -> bool:
        return self.kind.severity.value == "violation"

    @property
    def unproven(self) -> bool:
        return self.kind.severity.value == "unproven"


@dataclass
class RegionFacts:
    """What one region proves, for the obligations across regions."""

    order: list[Seen]
    head: Seen | None = None
    oldest: Seen | None = None
    history: str = "genesis"  # genesis | wrapped | crash | gap
    via_unreadable: bool = False  # wrapped, the suffix starting at a link through a no_key frame
    excused: tuple[tuple[int, int], tuple[int, int]] | None = None


class Rules:
    """The reader rules of format v3 applied to the frames the writer's ground truth says are
    on the image after a change. Written from the rules (the brief of the tamper campaign and
    spec §8), not from the reader's code, and fed only writer-side facts."""

    def __init__(self, base: Base, seen: list[Seen]) -> None:
        self.started_before: set[int] | None = None
        self.base = base
        self.out: list[Expected] = []
        # (stream, boot) absences O1 excuses, and whether only through a no_key link (D13)
        self.excused: dict[tuple[str, int], bool] = {}
        self.held = {s.secret for s in seen if s.secret is not None}
        for s in seen:
            if s.status == "intact":
                s.status = "ok" if s.boot in self.held else "no_key"
            elif s.status == "fixed":
                # a complete frame whose tag fails: corrupt where a key of ours should open it,
                # or where it carries an envelope for our key that no longer opens
                s.status = "corrupt" if s.boot in self.held or s.envelopes_broken else "no_key"
        self.slots = [s for s in seen if s.stream == NO_STREAM]
        self.by_region = {sid: [s for s in seen if s.stream == sid] for sid in base.run.regions}
        self.newest_boot = max(
            (s.boot for v in self.by_region.values() for s in v if s.status in ("ok", "no_key")), default=0
        )

    def add(self, kind: Kind, sid: int, boot: int | None, seq: int | None, lba: int | None) -> None:
        self.out.append(Expected(kind, self.base.sname(sid), boot, seq, lba))

    def run(self) -> list[Expected]:
        facts: dict[int, RegionFacts] = {}
        started: set[int] | None = None  # boots with an ok BOOT frame in every region so far
        for r in self.base.run.superblock.regions:
            frames = self.by_region[r.stream]
            self.started_before = started
            facts[r.stream] = self.region(r.stream, frames)
            booted = {s.boot for s in frames if s.status == "ok" and s.type == FrameType.BOOT}
            started = booted if started is None else started & booted
        for s in self.slots:
            if s.status == "corrupt":
                self.add(Kind.FRAME_CORRUPT, NO_STREAM, s.boot, s.seq, s.lba)
            elif s.status == "no_key":  # present, not ours to verify: unproven (spec §8.8)
                self.add(Kind.NO_KEY, NO_STREAM, s.boot, s.seq, s.lba)
        wrote_on = {
            s.boot for f in facts.values() for s in f.order if s.status == "ok" and s.type != FrameType.BOOT
        }
        for s in self.slots:
            if s.status == "torn" and s.boot in wrote_on:
                self.add(Kind.FRAME_CORRUPT, NO_STREAM, s.boot, s.seq, s.lba)
        self.obligations(facts)
        return self.out

    # ---------------------------------------------------------------- one region

    def region(self, sid: int, frames: list[Seen]) -> RegionFacts:
        r = self.base.run.regions[sid]
        start, end = r.start, r.start + r.sectors
        present: dict[tuple[int, int], Seen] = {}
        for s in sorted(frames, key=lambda s: s.lba):
            if s.status == "corrupt":
                self.add(Kind.FRAME_CORRUPT, sid, s.boot, s.seq, s.lba)
            elif s.status in ("ok", "no_key"):
                if s.key in present:
                    self.add(Kind.FRAME_DUPLICATED, sid, s.boot, s.seq, s.lba)
                else:
                    present[s.key] = s
        order = sorted(present.values(), key=lambda s: s.key)
        facts = RegionFacts(order)
        ends = {s.boot: s.seq for s in order if s.status == "ok" and s.type == FrameType.END}
        # a torn frame is a crash only as the writer's next write (§8.4)
        for t in (s for s in frames if s.status == "torn"):
            last = max((s.seq for s in order if s.boot == t.boot), default=-1)
            nxt = (
                t.seq == last + 1
                and t.boot <= self.newest_boot + 1
                and (t.type == FrameType.BOOT) == (t.seq == 0)
                and t.boot not in ends
            )
            pred = max((s for s in order if s.key < t.key), key=lambda s: s.key, default=None)
            if pred is None:
                where = t.lba == start
            else:
                where = t.lba == pred.end or (t.lba == start and end - pred.end < MAX_WRAP_SECTORS)
            later = min(
                (
                    s
                    for s in order
                    if s.boot > t.boot and s.seq == 0 and s.type == FrameType.BOOT and s.status == "ok"
                ),
                key=lambda s: s.key,
                default=None,
            )
            moved_on = later is None or later.prior is None or (later.prior.boot, later.prior.seq) < t.key
            if not (nxt and where and moved_on):
                self.add(Kind.FRAME_CORRUPT, sid, t.boot, t.seq, t.lba)
        # END rule
        for s in order:
            if s.boot in ends and s.seq > ends[s.boot]:
                self.add(Kind.FRAME_CORRUPT, sid, s.boot, s.seq, s.lba)
        readable = [s for s in order if s.status == "ok"]
        if not readable:
            self.no_key(sid, order, facts)
            return facts
        facts.head = readable[-1]
        cuts = [
            i for i in range(1, len(readable)) if not self.link(sid, readable[i - 1], readable[i], present)
        ]
        self.rotation(sid, r.start, end, readable, cuts, present, order, facts)
        self.no_key(sid, order, facts)
        return facts

    def no_key(self, sid: int, order: list[Seen], facts: RegionFacts) -> None:
        """Frames no key of ours opens are unproven, unless older than a proven rotation."""
        for b in sorted({s.boot for s in order if s.status == "no_key"}):
            mine = [
                s
                for s in order
                if s.boot == b
                and s.status == "no_key"
                and not (facts.history == "wrapped" and facts.oldest is not None and s.key < facts.oldest.key)
            ]
            if mine:
                self.add(Kind.NO_KEY, sid, b, mine[0].seq, mine[0].lba)

    def link(self, sid: int, x: Seen, y: Seen, present: dict[tuple[int, int], Seen]) -> bool:
        if y.boot == x.boot:
            return y.seq == x.seq + 1
        if y.seq != 0 or y.type != FrameType.BOOT:
            return False
        p = y.prior
        if p is None:
            self.add(Kind.BOOT_CLAIM_MISMATCH, sid, y.boot, 0, y.lba)
            return True
        if (p.boot, p.seq) == x.key:
            if p.tag != x.tag:
                self.add(Kind.CHAIN_BROKEN, sid, y.boot, 0, y.lba)
            return True
        if (p.boot, p.seq) > x.key:
            seen = present.get((p.boot, p.seq))
            if seen is not None and seen.status == "no_key":
                if p.tag != seen.tag:
                    self.add(Kind.CHAIN_BROKEN, sid, y.boot, 0, y.lba)
                return True  # a link through an unreadable frame: that frame is no_key
            return False
        self.add(Kind.BOOT_CLAIM_MISMATCH, sid, x.boot, x.seq, x.lba)
        return True

    @staticmethod
    def follows_unreadable(s: Seen, present: dict[tuple[int, int], Seen]) -> bool:
        if s.seq != 0 or s.type != FrameType.BOOT or s.prior is None:
            return False
        seen = present.get((s.prior.boot, s.prior.seq))
        return seen is not None and seen.status == "no_key" and seen.tag == s.prior.tag

    def rotation(
        self,
        sid: int,
        start: int,
        end: int,
        readable: list[Seen],
        cuts: list[int],
        present: dict[tuple[int, int], Seen],
        order: list[Seen],
        facts: RegionFacts,
    ) -> None:
        s0 = cuts[-1] if cuts else 0
        oldest = readable[s0]
        facts.oldest = oldest
        at0 = next((s for s in present.values() if s.lba == start), None)
        wrapped = at0 is not None and at0.status == "ok" and at0.wrap_from > 0
        if not cuts and (oldest.genesis or self.follows_unreadable(oldest, present)):
            # Nothing missing (or linked through frames we cannot read). O1 still counts an
            # authenticated wrap frame of the suffix as proof that older history rotated out.
            if wrapped and at0 is not None and at0.key >= oldest.key:
                facts.history = "wrapped"
                facts.via_unreadable = not oldest.genesis
            return
        if wrapped and at0 is not None and at0.key < oldest.key:
            self.add(Kind.FRAME_MISSING, sid, at0.boot, at0.seq, at0.lba)
        dead_from: int | None = None
        excused: int | None = None
        if wrapped and at0 is not None:
            facts.history = "wrapped"
            dead_from = start + at0.wrap_from
        else:
            crash = self.crash_while_wrapping(
                start, end, readable, cuts, order, at0, facts, self.started_before
            )
            if crash is None:
                facts.history = "gap"
                first = readable[0]
                if not first.genesis and not self.follows_unreadable(first, present):
                    self.add(Kind.FRAME_MISSING, sid, None, None, first.lba)
                for i in cuts:
                    self.add(Kind.FRAME_MISSING, sid, None, None, readable[i].lba)
                return
            facts.history = "crash"
            self.add(Kind.UNPROVEN, sid, oldest.boot, oldest.seq, oldest.lba)
            dead_from, excused = crash
        for i in cuts:
            if i != excused and (dead_from is None or readable[i - 1].lba < dead_from):
                self.add(Kind.FRAME_MISSING, sid, None, None, readable[i].lba)

    @staticmethod
    def crash_while_wrapping(
        start: int,
        end: int,
        readable: list[Seen],
        cuts: list[int],
        order: list[Seen],
        at0: Seen | None,
        facts: RegionFacts,
        started_before: set[int] | None = None,
    ) -> tuple[int | None, int | None] | None:
        """The shape a crash in the write that wrapped the ring leaves (unproven, never intact).
        After an END head, only a later boot's BOOT frame can have wrapped: in a region after
        the first, that boot has ok BOOT frames in every region before it and none here."""
        if at0 is not None:
            return None  # something present at relative sector 0 that opens no lap
        head = readable[-1]
        s0 = cuts[-1] if cuts else 0
        first = readable[s0]
        if any(s.lba < first.lba for s in order):
            return None
        lap = [s for s in order if s.key >= first.key]
        if any(b.lba != a.end for a, b in pairwise(lap)):
            return None
        # The crash came after some frame f of the lap with every later lap frame of a newer
        # boot (a crash ends a boot), and the write after f did not fit the room after f.
        here = {s.boot for s in order}
        w: int | None = None
        newer = 1 << 32
        for f in reversed(lap):
            if f.boot < newer:
                wf = MAX_BOOT_SECTORS if f.type == FrameType.END else MAX_WRAP_SECTORS
                later = f.type != FrameType.END or started_before is None or any(
                    b > f.boot and b not in here for b in started_before
                )
                if end - f.end < wf and later:
                    w = max(w or 0, wf)
            newer = min(newer, f.boot)
        if w is None or not 0 < first.lba - start < w + MAX_FRAME_SECTORS:
            return None
        dead_from = None
        if cuts:
            older = readable[s0 - 1]
            if older.lba < head.end:
                return None
            dead_from = older.end
        facts.excused = (readable[s0 - 1].key if cuts else (0, 0), first.key)
        return dead_from, (s0 if cuts else None)

    # ---------------------------------------------------------------- across regions

    def obligations(self, facts: dict[int, RegionFacts]) -> None:
        sids = [r.stream for r in self.base.run.superblock.regions]
        reached: dict[int, int] = {}
        past: set[int] = set()
        for i, sid in enumerate(sids):
            for s in facts[sid].order:
                if s.status != "ok":
                    continue
                if s.type == FrameType.BOOT:
                    reached[s.boot] = max(reached.get(s.boot, -1), i - 1)
                else:
                    past.add(s.boot)
        past |= {s.boot for s in self.slots if s.status == "ok"}
        for b in past:
            reached[b] = len(sids) - 1
        # O1: every region up to the one its authenticated frames prove it reached holds a frame of b
        for i, sid in enumerate(sids):
            f = facts[sid]
            here = {s.boot for s in f.order}
            for b in sorted(x for x, last in reached.items() if last >= i and x not in here):
                if f.head is not None and f.oldest is not None:
                    if b < f.oldest.boot and f.history in ("wrapped", "crash"):
                        self.excused[(self.base.sname(sid), b)] = f.via_unreadable
                        continue
                    if f.excused is not None and f.excused[0] < (b, 0) and (b, INF_SEQ) < f.excused[1]:
                        continue
                r = self.base.run.regions[sid]
                self.add(Kind.FRAME_MISSING, sid, b, 0, f.head.end if f.head else r.start)
        # O2: a boot past its start whose secret we hold left its key-directory slot
        booted = {s.boot for f in facts.values() for s in f.order if s.status == "ok"}
        booted |= {s.boot for s in self.slots if s.status in ("ok", "no_key")}
        headers = {s.boot for s in self.slots}
        for b in sorted(past & self.held):
            if b in headers or b not in self.base.slot_written:
                continue
            if any(x > b and (x - b) % KEY_DIR_SLOTS == 0 for x in booted):
                continue
            lba = key_dir_slot(b)
            if any(s.status == "torn" and s.lba == lba and s.boot > b for s in self.slots):
                self.add(Kind.UNPROVEN, NO_STREAM, b, 0, lba)
            else:
                self.add(Kind.FRAME_MISSING, NO_STREAM, b, 0, lba)


# --------------------------------------------------------------------------- origin, on ground truth

# SEV-SNP ATTESTATION_REPORT fields (AMD SEV-SNP ABI, Table "ATTESTATION_REPORT Structure")
REPORT_POLICY, REPORT_VMPL, REPORT_DATA, REPORT_MEASUREMENT = 0x08, 0x30, 0x50, 0x90
POLICY_DEBUG = 1 << 19
ORIGIN_KINDS = frozenset(
    {
        Kind.ATTESTATION_INVALID,
        Kind.ATTESTATION_MISPLACED,
        Kind.MEASUREMENT_UNEXPECTED,
        Kind.ATTESTATION_MISSING,
        Kind.DEBUG_POLICY,
        Kind.UNATTESTED,
    }
)


class OriginRules:
    """Spec §8.9 on the writer's ground truth: what the authenticated key frames of each boot
    carry, held against what an honest attested writer must have written. That writer asked
    the AMD-SP, at VMPL0 and before its first write, for a report whose REPORT_DATA is its
    boot's commitment (``boot_report_data`` over the volume, the boot number, the BOOT_SECRET
    envelopes it wrote and the launch grants of the BOOT frames it wrote, each as written),
    launched as the owner's build (MEASUREMENT expected) without POLICY.DEBUG, and put that
    report with the VCEK into every key frame it wrote. Whether a chip the owner's root
    trusts signed a report is the chip's record (``AttestTruth.issued``), not the log's.

    Every boot here was written by ``LogWriter`` (the SVSM's or the host's), so the frames of
    a boot are always sealed under the secret its envelopes carry (check 3 of §8.9 holds);
    what a boot can get wrong is which report it carries, and that is all these rules need
    to tell. Fed only the frames `Rules` settled as authenticated (status ok)."""

    def __init__(self, base: Base, seen: list[Seen], require: bool) -> None:
        assert base.run.attest is not None
        self.base = base
        self.truth = base.run.attest
        self.require = require
        self.index = {r.stream: i for i, r in enumerate(base.run.superblock.regions)}
        self.ok: dict[int, list[Seen]] = {}
        for s in seen:
            if s.status == "ok":
                self.ok.setdefault(s.boot, []).append(s)
        self.out: list[Expected] = []

    def _at(self, s: Seen) -> tuple[int, int, int]:
        """The reader's order of a boot's frames: its slot, then region by region."""
        return (-1 if s.stream == NO_STREAM else self.index[s.stream], s.seq, s.lba)

    def add(self, kind: Kind, s: Seen) -> None:
        self.out.append(Expected(kind, self.base.sname(s.stream), s.boot, s.seq, s.lba))

    def commitment(self, boot: int, owner_section: bytes) -> tuple[bytes, list[bytes]]:
        """The REPORT_DATA the honest writer of ``boot`` asked for, and the launch-grant digests
        it listed: from the BOOT frames it wrote (every region gets one before anything else)."""
        grants: dict[int, bytes] = {}
        for g, it in self.base.items.items():
            if g.boot == boot and g.type == FrameType.BOOT and g.stream in self.index:
                grants.setdefault(g.stream, launch_grant_digest(it.grant_section))
        digests = [grants[r.stream] for r in self.base.run.superblock.regions if r.stream in grants]
        return boot_report_data(self.base.volume_id, boot, owner_section, digests), digests

    def run(self) -> list[Expected]:
        status = {b: self.boot(b, sorted(frames, key=self._at)) for b, frames in sorted(self.ok.items())}
        # a boot passed checks 1-3 (its report is valid, its own and commits to its keys),
        # whatever its measurement: then an unattested boot is a finding
        attested_any = any(st in ("attested", "unexpected") for st in status.values())
        for b, st in status.items():
            if st not in ("unattested", "unknown"):
                continue
            # located at the boot's first key frame, or at its first other frame if that comes
            # earlier (slot, then region by region, in seq order): lowest seq, regions first
            frames = sorted(self.ok[b], key=self._at)
            keyed = [s for s in frames if s.type in (FrameType.BOOT, FrameType.KEYS)]
            others = [s for s in frames if s.type not in (FrameType.BOOT, FrameType.KEYS)][:1]
            first = min(keyed + others, key=lambda s: (s.stream == NO_STREAM, s.seq, self._at(s)[0]))
            if self.require:
                self.add(Kind.ATTESTATION_MISSING, first)
            elif attested_any:
                self.add(Kind.UNATTESTED, first)
        return self.out

    def boot(self, b: int, frames: list[Seen]) -> str:
        carrying = [s for s in frames if s.items is not None and s.items.report is not None]
        if not carrying:
            keyed = any(s.type in (FrameType.BOOT, FrameType.KEYS) for s in frames)
            return "unattested" if keyed else "unknown"
        at = carrying[0]
        it = at.items
        assert it is not None and it.report is not None
        same = (it.report, it.certs)
        if any(s.items is not None and (s.items.report, s.items.certs) != same for s in carrying):
            self.add(Kind.ATTESTATION_INVALID, at)  # a boot asks for one report
            return "invalid"
        report, listed = it.report[:SNP_REPORT_LEN], it.report[SNP_REPORT_LEN:]
        vmpl = struct.unpack_from("<I", report, REPORT_VMPL)[0]
        vcek = self.truth.issued.get(report)
        if vcek is None or vcek not in it.certs or vmpl != 0:
            self.add(Kind.ATTESTATION_INVALID, at)  # not signed by a trusted chip at VMPL0
            return "invalid"
        if len(listed) != 32 * len(self.index):
            self.add(Kind.ATTESTATION_INVALID, at)
            return "invalid"
        data, digests = self.commitment(b, it.owner_section)
        if report[REPORT_DATA : REPORT_DATA + 64] != data or listed != b"".join(digests):
            self.add(Kind.ATTESTATION_MISPLACED, at)  # a genuine report made for something else
            return "misplaced"
        st = "attested"
        expected = self.truth.policy.measurements
        if expected and report[REPORT_MEASUREMENT : REPORT_MEASUREMENT + 48] not in expected:
            self.add(Kind.MEASUREMENT_UNEXPECTED, at)
            st = "unexpected"
        if struct.unpack_from("<Q", report, REPORT_POLICY)[0] & POLICY_DEBUG:
            self.add(Kind.DEBUG_POLICY, at)
        return st


# --------------------------------------------------------------------------- image edits


def fix_digest(img: bytearray, lba: int) -> bool:
    """The host recomputes the keyless commit digest of the (changed) frame at lba."""
    try:
        h = decode_frame_header(bytes(img[lba * SECTOR : lba * SECTOR + FRAME_HEADER_LEN]))
    except DecodeError:
        return False
    off = lba * SECTOR
    raw = img[off : off + h.body_len]
    if len(raw) < h.body_len:
        return False
    clear = bytes(raw[FRAME_HEADER_LEN : FRAME_HEADER_LEN + h.clear_len])
    ct = bytes(raw[FRAME_HEADER_LEN + h.clear_len : h.body_len])
    img[off + FRAME_AAD_LEN : off + FRAME_HEADER_LEN] = commit_digest(bytes(raw[:FRAME_AAD_LEN]), clear, ct)
    return True


def zero(img: bytearray, lba: int, sectors: int) -> None:
    img[lba * SECTOR : (lba + sectors) * SECTOR] = bytes(sectors * SECTOR)


def copy_sectors(dst: bytearray, src: bytes, src_lba: int, dst_lba: int, sectors: int) -> None:
    dst[dst_lba * SECTOR : (dst_lba + sectors) * SECTOR] = src[
        src_lba * SECTOR : (src_lba + sectors) * SECTOR
    ]


# --------------------------------------------------------------------------- header fields

# (name, first byte, length) of the frame header (§4.3).
HEADER_FIELDS = [
    ("magic", 0, 4),
    ("version", 4, 1),
    ("type", 5, 1),
    ("stream", 6, 2),
    ("boot", 8, 4),
    ("seq", 12, 8),
    ("lba", 20, 8),
    ("volume_id", 28, 16),
    ("prev_tag", 44, 16),
    ("clear_len", 60, 4),
    ("ct_len", 64, 4),
    ("digest", 68, 16),
]
# A claimed seq at least this far out is past the reader's ratchet budget for any image the
# campaign builds (16 x total_sectors + 2**20 steps, spec §8.2): frame_corrupt. Claimed seqs
# between the image's own and this are not tried (whether they fit the budget depends on
# what else the pass ratcheted).
BEYOND_BUDGET = 1 << 24


def _positions(name: str, start: int, length: int, dense: bool) -> list[tuple[int, int]]:
    """(byte offset in the frame, xor mask) to try in a header field."""
    if name == "seq":  # claimed seqs far out: gen_huge_seq (each costs the reader its whole budget)
        if not dense:
            return [(start, 0x01), (start, 0x10), (start + 1, 0x02)]
        out = [(start, 1 << b) for b in range(8)] + [(start + 1, 1), (start + 1, 2)]
        return [*out, (start, 255)]
    if not dense:
        return [(start + length - 1, 1 << ((start + length - 1) % 8)), (start, 0xFF)]
    idx = range(length) if length <= 8 else sorted({0, 1, length // 2, length - 1})
    out = [(start + i, 1 << ((start + i) % 8)) for i in idx]
    out.append((start, 0xFF))
    return out


def _body_positions(img: bytes, f: FrameRec, dense: bool) -> list[tuple[str, int, int]]:
    """(field, byte offset in the frame, mask) for clear section, ciphertext, tag, padding."""
    h = decode_frame_header(img[f.offset : f.offset + FRAME_HEADER_LEN])
    out: list[tuple[str, int, int]] = []
    if h.clear_len:
        c0 = FRAME_HEADER_LEN
        pts = [0, 1, 2, 3, 5, 21, 23, 23 + 40, h.clear_len - 1] if dense else [0, 3, 23 + 40]
        if dense:
            pts += list(range(0, h.clear_len, max(1, h.clear_len // 24)))
        out += [("clear", c0 + p, 1 << (p % 8)) for p in sorted(set(pts)) if p < h.clear_len]
    ct0 = FRAME_HEADER_LEN + h.clear_len
    body = h.ct_len - 16
    pts = ([0, body // 2, body - 1] if dense else [body // 2]) if body > 0 else []
    if dense and body > 0:
        pts += list(range(0, body, max(1, body // 16)))
    out += [("ciphertext", ct0 + p, 1 << (p % 8)) for p in sorted(set(pts))]
    out += [("tag", ct0 + body + p, 1 << (p % 8)) for p in ((0, 7, 15) if dense else (15,))]
    pad = f.sectors * SECTOR - h.body_len
    if pad:
        out += [("padding", h.body_len, 0x01), ("padding", f.sectors * SECTOR - 1, 0xFF)]
    return out


def _expect_header_change(base: Base, f: FrameRec, img: bytes, field_name: str, fixed: bool) -> Expect:
    """The outcome of a header or body change of frame f: decided by the rules (`Rules`) over
    what the image then holds; the checks of a single header (§8.1, §8.2) are decided here."""
    if field_name in ("digest", "padding"):
        return HARMLESS
    _start, end = base.region_of(f)
    hdr = img[f.offset : f.offset + FRAME_HEADER_LEN]
    if hdr[:FRAME_AAD_LEN] == base.written_of(f)[:FRAME_AAD_LEN] or hdr[:4] != b"SVLF":
        return base.expect(img)  # the body changed, or no longer a candidate at all
    try:
        h = decode_frame_header(hdr)
    except DecodeError:
        return DETECT  # magic with a bad header: frame_corrupt (§8.1)
    if f.lba + h.sectors > end:
        return DETECT  # does not fit its region: frame_corrupt (§8.1)
    if f.stream == NO_STREAM:
        if h.lba != key_dir_slot(h.boot) or h.seq != 0 or h.type != FrameType.KEYS:
            return DETECT  # a frame in the wrong slot: frame_moved (§8.2)
        if h.volume_id != base.volume_id or h.stream != NO_STREAM:
            return DETECT  # frame_foreign / frame_misplaced
    elif h.volume_id != base.volume_id or h.stream != f.stream or h.lba != f.lba:
        return DETECT  # frame_foreign / frame_misplaced / frame_moved (§8.2)
    if h.seq >= BEYOND_BUDGET and h.boot in base.boots:
        return DETECT  # further than the ratchet budget reaches: frame_corrupt (§8.2)
    # The header claims other numbers: a torn candidate (digest wrong) or a complete frame
    # whose tag fails (digest recomputed). Its owner envelopes still open only if it still
    # claims its boot and a key frame type, with the clear section where it was.
    carrier = next(c for g, _, _, _, c in base.written if g is f)
    orig = decode_frame_header(base.written_of(f)[:FRAME_HEADER_LEN])
    same = h.boot == f.boot and h.clear_len == orig.clear_len and h.type in (FrameType.BOOT, FrameType.KEYS)
    claimed = Seen(
        f.lba,
        h.sectors,
        f.stream,
        h.boot,
        h.seq,
        h.type,
        "fixed" if fixed else "torn",
        secret=f.boot if carrier and same else None,
        envelopes_broken=carrier and not same,
    )
    return base.expect(img, [claimed])


def flip_class(f: FrameRec, name: str, fixed: bool) -> str:
    """Table rows: one per structure and part; DATA header fields one by one."""
    if name == "digest":
        return "commit digest (any frame)"
    if name == "padding":
        return "padding (any frame)"
    kind = "key-directory slot" if f.stream == NO_STREAM else f"{FrameType(f.type).name} frame"
    if name in ("clear", "ciphertext", "tag"):
        part = {"clear": "clear section"}.get(name, name)
    elif f.type == FrameType.DATA and f.stream != NO_STREAM:
        part = f"header {name}"
    else:
        part = "header"
    return f"{kind}: {part}" + (", digest recomputed" if fixed else "")


def gen_field_flips(base: Base, targets: list[FrameRec], *, fixed: bool, dense: bool) -> Iterator[Case]:
    for f in targets:
        start, _ = base.region_of(f)
        spots = [(n, off, m) for n, s, ln in HEADER_FIELDS for off, m in _positions(n, s, ln, dense)]
        spots += _body_positions(base.image, f, dense)
        for name, off, mask in spots:
            if fixed and name in ("digest", "padding"):
                continue
            img = bytearray(base.image)
            img[f.offset + off] ^= mask
            if fixed and name != "magic":
                fix_digest(img, f.lba)
            exp = _expect_header_change(base, f, bytes(img), name, fixed)
            boot0 = name == "boot" and struct.unpack_from("<I", img, f.offset + 8)[0] == 0
            yield Case(
                flip_class(f, name, fixed),
                f"{base.name}: {base.ident(f)} byte {off} ^ {mask:#04x}"
                + (", digest recomputed" if fixed else ""),
                bytes(img),
                exp,
                {f.offset},
                {base.ident(f)},
                at_start=f.lba == start,
                tags=frozenset({"boot0"} if boot0 else ()),
            )


def gen_huge_seq(base: Base, targets: list[FrameRec], variants: int) -> Iterator[Case]:
    """A claimed seq past the ratchet budget (+2**56), digest kept or recomputed, in the
    middle frame of the first region: frame_corrupt at that frame, and every other frame
    still read (§8.2). Each case costs the reader its whole budget, so there are few."""
    frames = [f for f in targets if f.stream != NO_STREAM]
    for f in frames[len(frames) // 2 :][:1]:
        for off, mask in ((12 + 7, 0x01),):
            for fixed in (False, True)[:variants]:
                img = bytearray(base.image)
                img[f.offset + off] ^= mask
                if fixed:
                    fix_digest(img, f.lba)
                yield Case(
                    flip_class(f, "seq", fixed),
                    f"{base.name}: {base.ident(f)} byte {off} ^ {mask:#04x} (claimed seq past the budget)"
                    + (", digest recomputed" if fixed else ""),
                    bytes(img),
                    DETECT,
                    {f.offset},
                    {base.ident(f)},
                    at_start=f.lba == base.region_of(f)[0],
                )


def gen_drop(base: Base, targets: list[FrameRec]) -> Iterator[Case]:
    for f in targets:
        img, exp = base.removal([f])
        yield Case(
            "drop (zero) a frame",
            f"{base.name}: {base.ident(f)}",
            img,
            exp,
            {f.offset},
            {base.ident(f)},
            at_start=base.at_start([f]),
        )


def _free_space(base: Base, sid: int, img: bytes, need: int) -> int | None:
    """An all-zero run of sectors after the region's newest frame."""
    r = base.run.regions[sid]
    hist = base.hist[sid]
    lo = hist[-1].end if hist else r.start
    hi = r.start + r.sectors
    if hi - lo >= need + 2:
        at = hi - need
        if img[at * SECTOR : hi * SECTOR] == bytes(need * SECTOR):
            return at
    return None


def gen_duplicate(base: Base, targets: list[FrameRec]) -> Iterator[Case]:
    for f in targets:
        if f.stream == NO_STREAM:
            continue
        at = _free_space(base, f.stream, base.image, f.sectors)
        if at is not None:
            img = bytearray(base.image)
            copy_sectors(img, base.image, f.lba, at, f.sectors)
            yield Case(
                "duplicate a frame elsewhere",
                f"{base.name}: {base.ident(f)} copied to {at}",
                bytes(img),
                DETECT,
                {at * SECTOR},
                {base.ident(f)},
            )
            img = bytearray(base.image)
            copy_sectors(img, base.image, f.lba, at, f.sectors)
            struct.pack_into("<Q", img, at * SECTOR + 20, at)  # the host rewrites lba to match
            fix_digest(img, at)
            yield Case(
                "duplicate a frame elsewhere",
                f"{base.name}: {base.ident(f)} copied to {at}, lba and digest rewritten",
                bytes(img),
                DETECT,
                {at * SECTOR},
                {base.ident(f)},
            )
        # over another frame of the same region
        hist = base.hist[f.stream]
        others = [g for g in hist if g.lba != f.lba and g.sectors >= f.sectors]
        if others:
            g = others[len(others) // 2]
            img = bytearray(base.image)
            copy_sectors(img, base.image, f.lba, g.lba, f.sectors)
            yield Case(
                "duplicate a frame elsewhere",
                f"{base.name}: {base.ident(f)} copied over {base.ident(g)}",
                bytes(img),
                DETECT,
                {g.offset, f.offset},
                {base.ident(f), base.ident(g)},
            )


def gen_swap(base: Base, limit_pairs: int) -> Iterator[Case]:
    n = 0
    for _sid, hist in base.hist.items():
        for i in range(len(hist) - 1):
            a = hist[i]
            b = next((g for g in hist[i + 1 :] if g.sectors == a.sectors), None)
            if b is None:
                continue
            yield Case(
                "reorder (swap) two frames",
                f"{base.name}: {base.ident(a)} <-> {base.ident(b)}",
                _swapped(base.image, a, b),
                DETECT,
                {a.offset, b.offset},
                {base.ident(a), base.ident(b)},
            )
            n += 1
            if n >= limit_pairs:
                return


def _swapped(image: bytes, a: FrameRec, b: FrameRec) -> bytes:
    """``image`` with frames a and b (of the same length) in each other's place."""
    img = bytearray(image)
    copy_sectors(img, image, a.lba, b.lba, a.sectors)
    copy_sectors(img, image, b.lba, a.lba, a.sectors)
    return bytes(img)


def gen_misplace(base: Base, targets: list[FrameRec]) -> Iterator[Case]:
    sids = list(base.run.regions)
    for f in targets:
        if f.stream == NO_STREAM:
            continue
        for other in sids:
            if other == f.stream:
                continue
            at = _free_space(base, other, base.image, f.sectors)
            if at is not None:
                img = bytearray(base.image)
                copy_sectors(img, base.image, f.lba, at, f.sectors)
                yield Case(
                    "move a frame to another stream's region",
                    f"{base.name}: {base.ident(f)} into {base.sname(other)} at {at}",
                    bytes(img),
                    DETECT,
                    {at * SECTOR},
                    {base.ident(f)},
                )
            hist = base.hist[other]
            g = next((g for g in hist[1:] if g.sectors == f.sectors), None)
            if g is not None:
                yield Case(
                    "move a frame to another stream's region",
                    f"{base.name}: {base.ident(f)} swapped with {base.ident(g)}",
                    _swapped(base.image, f, g),
                    DETECT,
                    {f.offset, g.offset},
                    {base.ident(f), base.ident(g)},
                )
            break


def gen_foreign(base: Base, other: Base, targets: list[FrameRec]) -> Iterator[Case]:
    """Sectors spliced in from another volume."""
    for f in other.frames()[:: max(1, len(other.frames()) // max(1, len(targets)))][: len(targets)]:
        sid = f.stream if f.stream in base.run.regions else next(iter(base.run.regions))
        at = _free_space(base, sid, base.image, f.sectors)
        if at is not None:
            img = bytearray(base.image)
            copy_sectors(img, other.image, f.lba, at, f.sectors)
            yield Case(
                "splice from another image",
                f"{base.name}: {other.name} {other.ident(f)} at {at}",
                bytes(img),
                DETECT,
                {at * SECTOR},
            )
        # the same sectors, at the same place (where that place is inside one of our regions)
        inside = any(r.start <= f.lba and f.end <= r.start + r.sectors for r in base.run.regions.values())
        if inside:
            img = bytearray(base.image)
            copy_sectors(img, other.image, f.lba, f.lba, f.sectors)
            if bytes(img) != base.image:
                yield Case(
                    "splice from another image",
                    f"{base.name}: {other.name} sectors {f.lba}+{f.sectors} in place",
                    bytes(img),
                    DETECT,
                    {f.offset},
                    {base.ident(g) for g in base.frames() + base.remnants if g.lba < f.end and f.lba < g.end},
                )
    # the other image's key-directory slot
    for s in other.slots[:2]:
        img = bytearray(base.image)
        copy_sectors(img, other.image, s.lba, s.lba, s.sectors)
        yield Case(
            "splice from another image",
            f"{base.name}: {other.name} key-directory slot {s.lba}",
            bytes(img),
            DETECT,
            {s.offset},
            {base.ident(g) for g in base.slots if g.lba < s.end and s.lba < g.end},
        )


def gen_snapshot_splice(base: Base, targets: list[FrameRec]) -> Iterator[Case]:
    """Sectors from an earlier copy of this image (an earlier boot)."""
    if not base.snapshots:
        return
    snap_index = len(base.snapshots) // 2
    snap = base.snapshots[snap_index]
    k = base.run.boot_starts[1:][snap_index]
    old = [f for f in base.run.live_frames(k) if f.stream != NO_STREAM]
    # an earlier frame put back somewhere else
    for f in old[:: max(1, len(old) // max(1, len(targets)))][: len(targets)]:
        hist = base.hist[f.stream]
        at = _free_space(base, f.stream, base.image, f.sectors)
        dests = ([at] if at is not None else []) + [
            g.lba for g in hist if g.lba != f.lba and g.sectors >= f.sectors
        ][:1]
        for d in dests:
            img = bytearray(base.image)
            copy_sectors(img, snap, f.lba, d, f.sectors)
            over = {g.ident for g in hist + base.remnants if g.lba < d + f.sectors and d < g.end}
            yield Case(
                "splice from an earlier boot of this image",
                f"{base.name}: snapshot frame {base.ident(f)} at {d}",
                bytes(img),
                DETECT,
                {d * SECTOR},
                {base.ident(f)} | {(base.sname(f.stream), b, s) for _, b, s in over},
            )
    # an earlier copy of the sectors of a frame written since, in place
    for f in targets:
        if f.stream == NO_STREAM or f.write < k:
            continue
        img = bytearray(base.image)
        copy_sectors(img, snap, f.lba, f.lba, f.sectors)
        hit = [g for g in base.hist[f.stream] if g.lba < f.end and f.lba < g.end]
        exp = base.expect(bytes(img))
        yield Case(
            "splice from an earlier boot of this image",
            f"{base.name}: sectors of {base.ident(f)} from the snapshot after boot {snap_index + 1}",
            bytes(img),
            exp,
            {f.offset},
            {base.ident(g) for g in hit},
            at_start=base.at_start(hit),
        )


def gen_truncate_earlier_boot(base: Base) -> Iterator[Case]:
    """Cut an earlier boot short after a later boot started (§10: boot_truncated)."""
    for sid, hist in base.hist.items():
        boots = sorted({f.boot for f in hist})
        for b in boots[:-1]:
            mine = [f for f in hist if f.boot == b]
            for j in range(len(mine)):
                what = f"{base.name}: {base.sname(sid)} boot {b} from seq {mine[j].seq}"
                yield _removal(base, sid, mine[j:], "truncate an earlier boot", what, base.at_start(mine[j:]))


def _removal(
    base: Base, sid: int, frames: list[FrameRec], cls: str, what: str, at_start: bool = False
) -> Case:
    """The case of ``frames`` zeroed, as the rules judge their absence."""
    img, exp = base.removal(frames)
    offsets, idents = {f.offset for f in frames}, {base.ident(f) for f in frames}
    return Case(cls, what, img, exp, offsets, idents, at_start=at_start)


def gen_truncate_tail(base: Base) -> Iterator[Case]:
    """The newest frames of a region gone, at every frame boundary (§10: anchor only)."""
    for sid, hist in base.hist.items():
        for p in range(len(hist)):
            what = f"{base.name}: {base.sname(sid)} from {base.ident(hist[p])}"
            yield _removal(base, sid, hist[p:], "truncate a region's tail", what)


def gen_rollback(base: Base) -> Iterator[Case]:
    for i, snap in enumerate(base.snapshots):
        yield Case(
            "roll the image back",
            f"{base.name}: whole image to after boot {i + 1}",
            snap,
            limit("rollback of the whole image (§10)", anchor=True),
        )
        parts = [(base.sname(sid), r.start, r.sectors) for sid, r in base.run.regions.items()]
        parts.append((KEYDIR, KEY_DIRECTORY.start, KEY_DIRECTORY.sectors))
        for name, start, sectors in parts:
            img = bytearray(base.image)
            copy_sectors(img, snap, start, start, sectors)
            if bytes(img) == base.image:
                continue
            where = "key directory" if name == KEYDIR else f"region {name}"
            changed = [
                f for f in base.live if start <= f.lba < start + sectors and not base.still_there(img, f)
            ]
            yield Case(
                "roll the image back",
                f"{base.name}: {where} to after boot {i + 1}",
                bytes(img),
                base.expect(bytes(img)),
                {f.offset for f in changed},
                {base.ident(f) for f in changed},
            )


def _region_edits(i: int, sb: bytes) -> list[tuple[str, Callable[[bytearray], None]]]:
    """Changes to region entry i that keep the superblock valid."""
    e = 64 + 32 * i
    start, sectors = struct.unpack_from("<QQ", sb, e + 16)
    stream = struct.unpack_from("<H", sb, e)[0]

    def shrink(b: bytearray) -> None:
        struct.pack_into("<Q", b, e + 24, sectors - 8)

    def shift(b: bytearray) -> None:
        struct.pack_into("<QQ", b, e + 16, start + 8, sectors - 8)

    def renumber(b: bytearray) -> None:
        struct.pack_into("<H", b, e, stream + 100)

    def rename(b: bytearray) -> None:
        b[e + 4] = ord("z") if b[e + 4] != ord("z") else ord("y")

    return [
        (f"region {i} sectors - 8", shrink),
        (f"region {i} start + 8, sectors - 8", shift),
        (f"region {i} stream id + 100", renumber),
        (f"region {i} renamed", rename),
    ]


def gen_superblock(base: Base, dense: bool) -> Iterator[Case]:
    n = len(base.run.regions)
    table_end = 64 + 32 * n
    step = 1 if dense else 3
    for off in [*list(range(0, table_end, step)), table_end, 300, 511]:
        for mask in (0xFF, 0x01) if dense else (0xFF,):
            img = bytearray(base.image)
            img[off] ^= mask
            yield Case(
                "superblock byte",
                f"{base.name}: superblock byte {off} ^ {mask:#04x}",
                bytes(img),
                DETECT,
                {0},
                superblock=True,
            )
    # still-valid geometry changes
    sb = bytearray(base.image[:SECTOR])
    total = struct.unpack_from("<Q", sb, 32)[0]
    edits: list[tuple[str, Callable[[bytearray], None]]] = [
        ("total_sectors - 1", lambda b: struct.pack_into("<Q", b, 32, total - 1)),
    ]
    for i in range(n):
        edits += _region_edits(i, bytes(sb))
    if n > 1:

        def swap_names(b: bytearray) -> None:
            a, c = bytes(b[64 + 4 : 64 + 16]), bytes(b[96 + 4 : 96 + 16])
            b[64 + 4 : 64 + 16], b[96 + 4 : 96 + 16] = c, a

        edits.append(("first two region names swapped", swap_names))
    for what, edit in edits:
        img = bytearray(base.image)
        s = bytearray(img[:SECTOR])
        edit(s)
        img[:SECTOR] = s
        yield Case("superblock geometry", f"{base.name}: {what}", bytes(img), DETECT, {0}, superblock=True)


def _forge_on(base: Base, k: int, message: str) -> tuple[bytes, int, Base]:
    """The host forges a boot on the image after the base's first ``k`` writes; on an attested
    base, the forged boot's writes join the ground truth (a base of their own) so that the
    rules, not this function, say what its verdict must be."""
    from ..model.host import forge_boot

    run = base.run
    writes = list(run.writes[:k])
    image = bytes(run.image_after(k))
    rec = Record(1_000, Level.ERROR, "attest", "svsm", message)
    forged = forge_boot(image, owners_public(run), layout=run.layout, records=[rec], record=writes)
    boot = max(f.boot for i, w in enumerate(writes[k:]) for f in frames_in_write(w, k + i))
    if run.attest is None:
        return forged, boot, base
    truth = Run(run.name, run.layout, run.streams, run.owners, run.sector_count, writes, [])
    truth.attest = run.attest
    assert truth.final() == forged
    return forged, boot, Base(f"{base.name}, boot {boot} forged", truth, honest=False)


def gen_forge(base: Base) -> list[tuple[Case, int, Base]]:
    """The host runs the writer itself with the owner's public key (§10: only an anchor of a
    later boot, or of the forged boot's number, tells, unless the base's boots are attested:
    then the forged boot is not, and the origin rules give the verdict)."""
    attested = base.run.attest is not None
    n = len(base.run.writes)
    img, boot, fb = _forge_on(base, n, "attestation failed (forged by the host)")
    out = [
        (
            Case(
                "forge a boot (host runs the writer)",
                f"{base.name}: forged newest boot {boot}",
                img,
                fb.expect(img)
                if attested
                else limit("a forged newest boot, the anchor being of an earlier boot (§10)"),
            ),
            boot,
            fb,
        )
    ]
    if base.snapshots:
        k = base.run.boot_starts[1:][len(base.snapshots) // 2]
        img, boot, fb = _forge_on(base, k, "forged after a rollback")
        out.append(
            (
                Case(
                    "forge a boot (host runs the writer)",
                    f"{base.name}: rolled back, then forged boot {boot}",
                    img,
                    fb.expect(img)
                    if attested
                    else limit(
                        "a forged boot after a rollback: the anchor of a later boot catches it (§10)", True
                    ),
                ),
                boot,
                fb,
            )
        )
    return out


# --------------------------------------------------------------------------- running


@dataclass
class TamperRow:
    cls: str
    cases: int = 0
    claimed: int = 0
    detected: int = 0
    located: int = 0
    missed: int = 0
    harmless: int = 0
    harmless_ok: int = 0
    harmless_flagged: int = 0
    unproven: int = 0  # the rules give no violation but something unproven: never intact
    unproven_ok: int = 0  # reported partial (or violated, or unverifiable)
    unproven_intact: int = 0  # reported intact: a must-be-zero figure
    limits: int = 0
    limits_flagged: int = 0  # a limit case the reader flagged anyway (fine)
    # a frame_missing the reader reports for a (stream, boot) absence rule O1 excuses: a false
    # violation (it would be raised on an honest image of the same shape)
    false_violations: int = 0
    anchor_cases: int = 0
    anchor_caught: int = 0
    collateral_checked: int = 0
    collateral: int = 0  # cases where records of frames the change did not touch were not output
    # every WINDOW_EVERY-th case judged again with a scan window of WINDOW_SECTORS: frames
    # then lie across the ends of windows, where the verifier's window lane leaves them to
    # the general path; the report and the records must not depend on where windows fall
    window_checked: int = 0
    window_differs: int = 0
    origin_checked: int = 0  # attested runs: cases whose origin findings were compared
    origin_wrong: int = 0  # ... and differ from those the origin rules predict
    origin_predicted: dict[str, int] = field(default_factory=dict)  # cases predicting each origin kind
    known: dict[str, int] = field(default_factory=dict)  # must-be-zero figures by known defect
    examples: list[str] = field(default_factory=list)

    @property
    def mislocated(self) -> int:
        return self.detected - self.located

    @property
    def must_be_zero(self) -> int:
        return (
            self.missed
            + self.mislocated
            + self.unproven_intact
            + self.false_violations
            + self.harmless_flagged
            + self.collateral
            + self.origin_wrong
            + self.window_differs
            + (self.anchor_cases - self.anchor_caught)
        )

    @property
    def unexplained(self) -> int:
        """Must-be-zero figures not accounted for by a known defect (tests/campaigns/
        test_found_defects.py): what a new defect would show up as."""
        return self.must_be_zero - sum(self.known.values())

    def note(self, what: str) -> None:
        if len(self.examples) < 6:
            self.examples.append(what)


@dataclass
class TamperFigures:
    rows: dict[str, TamperRow] = field(default_factory=dict)
    bases: list[str] = field(default_factory=list)
    forged_verified_records: int = 0
    seconds: float = 0.0
    collateral: bool = True  # also check that records of untouched frames are still output

    def row(self, cls: str) -> TamperRow:
        return self.rows.setdefault(cls, TamperRow(cls))

    @property
    def must_be_zero(self) -> int:
        return sum(r.must_be_zero for r in self.rows.values())

    @property
    def unexplained(self) -> int:
        return sum(r.unexplained for r in self.rows.values())


def merge_tamper(parts: list[TamperFigures]) -> TamperFigures:
    out = TamperFigures()
    for p in parts:
        out.bases += [b for b in p.bases if b not in out.bases]
        out.forged_verified_records += p.forged_verified_records
        out.seconds += p.seconds
        for cls, r in p.rows.items():
            t = out.row(cls)
            for f in (
                "cases",
                "claimed",
                "detected",
                "located",
                "missed",
                "harmless",
                "harmless_ok",
                "harmless_flagged",
                "unproven",
                "unproven_ok",
                "unproven_intact",
                "limits",
                "limits_flagged",
                "false_violations",
                "anchor_cases",
                "anchor_caught",
                "collateral",
                "collateral_checked",
                "origin_checked",
                "origin_wrong",
                "window_checked",
                "window_differs",
            ):
                setattr(t, f, getattr(t, f) + getattr(r, f))
            for k, v in r.known.items():
                t.known[k] = t.known.get(k, 0) + v
            for k, v in r.origin_predicted.items():
                t.origin_predicted[k] = t.origin_predicted.get(k, 0) + v
            t.examples += r.examples[: max(0, 6 - len(t.examples))]
    return out


# Known defects (reproducers in tests/campaigns/test_found_defects.py). A miss is put down to
# one only when it shows that defect's signature; anything else is unexplained.
# None is open (D13, the last, is fixed: run.py FIXED_DEFECTS). When a campaign finds a defect that is
# not fixed at once, name it here and teach `attribute` (or `judge`) its signature, so the
# figures keep it apart from unexplained failures until the fix lands.
KNOWN_DEFECTS: dict[str, str] = {}


def attribute(case: Case, v: Verified, missed: bool) -> str | None:
    """The known defect a miss or a wrong location shows the signature of (D13 is told apart
    where false violations are counted, in `judge`)."""
    return None


def located(case: Case, v: Verified, base: Base) -> bool:
    """A violation names the changed frame or structure, or is one the rules predict (they
    place each at the frame a check fails on, from the writer's ground truth)."""
    if v.report is None:
        return case.superblock
    predicted = {(p.kind, p.stream, p.boot, p.seq) for p in case.expect.findings if p.boot is not None}
    at = {(p.kind, p.stream, p.lba * SECTOR) for p in case.expect.findings if p.lba is not None}
    for f in v.violations():
        if (f.kind, f.stream, f.boot, f.seq) in predicted or (f.kind, f.stream, f.offset) in at:
            return True
        if case.superblock and (f.kind is Kind.SUPERBLOCK_MISMATCH or f.offset == 0):
            return True
        if f.offset is not None and f.offset in case.offsets:
            return True
        if (f.stream, f.boot, f.seq) in case.idents:
            return True
    return False


# Classes whose changes legitimately take other frames with them: an unreadable or re-keyed
# superblock, a rolled-back image, a forged boot that may reclaim frames.
NO_COLLATERAL_CHECK = ("superblock", "roll the image back", "forge", "red team: anchor")
WINDOW_EVERY = 3
WINDOW_SECTORS = 7  # sectors: most frames of the campaign's images take 1 to 3


def _outcome(v: Verified) -> tuple[object, ...]:
    return v.verdict, v.report.as_json() if v.report else v.error, v.output


def _with_window(sectors: int, judge_once: Callable[[], Verified]) -> Verified:
    """``judge_once()`` with the region scan reading ``sectors`` at a time."""
    from .. import scan

    saved = scan.WINDOW_SECTORS
    scan.WINDOW_SECTORS = sectors
    try:
        return judge_once()
    finally:
        scan.WINDOW_SECTORS = saved


def judge(case: Case, base: Base, fig: TamperFigures, anchor: Anchor | None) -> None:
    row = fig.row(case.cls)
    row.cases += 1
    check_collateral = fig.collateral and not case.cls.startswith(NO_COLLATERAL_CHECK)
    policy = base.origin_policy(case.require)
    def judge_once() -> Verified:
        return verify_bytes(
            case.image,
            base.run.owners,
            anchor if case.with_anchor else None,
            records=case.expect.kind == "harmless" or check_collateral,
            origin=policy,
        )

    v = judge_once()
    if row.cases % WINDOW_EVERY == 0:
        row.window_checked += 1
        w = _with_window(WINDOW_SECTORS, judge_once)
        if _outcome(w) != _outcome(v):
            row.window_differs += 1
            row.note(f"WINDOW {case.what}: {w.verdict} with a window of {WINDOW_SECTORS} sectors, "
                     f"{v.verdict} with the default")
    kinds = sorted({f.kind.value for f in v.violations()}) if v.report else ["unreadable"]
    violated = v.verdict in ("violated", "unreadable")
    if policy is not None and v.report is not None and case.expect.origin is not None:
        # attested runs: the origin findings are exactly those the origin rules predict
        row.origin_checked += 1
        predicted = sorted({(p.kind.value, p.boot) for p in case.expect.origin})
        reported = sorted({(f.kind.value, f.boot) for f in v.report.findings if f.kind in ORIGIN_KINDS})
        for k in {k for k, _ in predicted}:
            row.origin_predicted[k] = row.origin_predicted.get(k, 0) + 1
        if reported != predicted:
            row.origin_wrong += 1
            row.note(f"ORIGIN {case.what}: predicted {predicted}, reported {reported}")
    if case.strict and case.expect.kind != "detect" and violated:
        row.false_violations += 1
        row.note(f"FALSE VIOLATION {case.what}: {kinds}, the rules give {case.expect.kind}")
    if check_collateral:
        row.collateral_checked += 1
        names = {(s, b, q) for s, b, q in case.idents}
        keyless = {b for b, frames in base.key_frames.items() if frames <= names}
        want = Counter(
            {
                k: n
                for k, n in base.verified.output.items()
                if (k[1], k[0], k[2]) not in names and k[0] not in keyless
            }
        )
        lost = want - v.output
        if lost:
            row.collateral += 1
            d = attribute(case, v, False)
            if d:
                row.known[d] = row.known.get(d, 0) + 1
            row.note(
                f"COLLATERAL{f' ({d})' if d else ''} {case.what}: {sum(lost.values())} records of untouched "
                f"frames not output, e.g. {next(iter(lost))[:3]}"
            )
    if v.report is not None and case.expect.excused:
        excused = {(st, b): u for st, b, u in case.expect.excused}
        wrong = [
            f
            for f in v.violations()
            if f.kind is Kind.FRAME_MISSING and f.seq == 0 and (f.stream, f.boot) in excused
        ]
        if wrong:
            row.false_violations += 1
            d = "D13" if all(excused[(f.stream, f.boot)] for f in wrong) else None
            if d:
                row.known[d] = row.known.get(d, 0) + 1
            f = wrong[0]
            row.note(
                f"FALSE VIOLATION{f' ({d})' if d else ''} {case.what}: frame_missing of boot {f.boot} in "
                f"{f.stream}, an absence O1 excuses (rotation)"
            )
    if case.expect.kind == "detect":
        row.claimed += 1
        if not violated:
            row.missed += 1
            d = attribute(case, v, True)
            if d:
                row.known[d] = row.known.get(d, 0) + 1
            row.note(f"MISSED{f' ({d})' if d else ''} {case.what}: {v.verdict}")
        else:
            row.detected += 1
            if located(case, v, base):
                row.located += 1
            else:
                d = attribute(case, v, False)
                if d:
                    row.known[d] = row.known.get(d, 0) + 1
                row.note(
                    f"MISLOCATED{f' ({d})' if d else ''} {case.what}: "
                    f"{[f.as_json() for f in v.violations()][:2]}"
                )
    elif case.expect.kind == "unproven":
        row.unproven += 1
        if v.verdict == "intact":
            row.unproven_intact += 1
            d = attribute(case, v, True)
            if d:
                row.known[d] = row.known.get(d, 0) + 1
            row.note(f"INTACT{f' ({d})' if d else ''} {case.what}: expected unproven ({case.expect.reason})")
        else:
            row.unproven_ok += 1
    elif case.expect.kind == "harmless":
        row.harmless += 1
        if v.verdict == "intact" and v.records == base.verified.records:
            row.harmless_ok += 1
        else:
            row.harmless_flagged += 1
            row.note(f"FLAGGED harmless {case.what}: {v.verdict} {kinds}")
    else:
        row.limits += 1
        if violated:
            row.limits_flagged += 1
        if case.expect.anchor and anchor is not None:
            row.anchor_cases += 1
            va = verify_bytes(case.image, base.run.owners, anchor, records=False, origin=policy)
            caught = va.report is None or any(
                f.kind in (Kind.ANCHOR_TRUNCATED, Kind.ANCHOR_MISMATCH) for f in va.violations()
            )
            if caught:
                row.anchor_caught += 1
            else:
                row.note(f"ANCHOR MISSED {case.what}")


def pick_targets(base: Base, dense: bool) -> list[FrameRec]:
    """Every frame (dense), or per region the first, second, middle, last two, every BOOT
    frame of the second boot and every KEYS frame; plus the key-directory slots."""
    out: list[FrameRec] = []
    hists = list(base.hist.values())
    if not dense and len(hists) > 3:
        hists = hists[:: len(hists) // 3][:3]
    for hist in hists:
        if dense:
            out += hist
            continue
        idx = {0, 1, len(hist) // 2, len(hist) - 2, len(hist) - 1}
        pick = [hist[i] for i in sorted(i for i in idx if 0 <= i < len(hist))]
        pick += [f for f in hist if f.type == FrameType.KEYS][:2]
        pick += [f for f in hist if f.type == FrameType.BOOT and f.boot == 2]
        out += list({id(f): f for f in pick}.values())
    out += base.slots if dense else base.slots[:2]
    return out


# The classes that take frames away (or put the host's own in): on attested bases these
# decide which boots still show their report, so the origin rules' view of what is left
# is what they test; the CI size runs only these there.
REMOVALS = ("drop", "truncate", "rollback", "erasures", "torn start", "forge")
GENERATORS = (
    "flips",
    "huge seq",
    "drop",
    "duplicate",
    "swap",
    "misplace",
    "foreign",
    "snapshot",
    "truncate",
    "rollback",
    "superblock",
    "erasures",
    "torn start",
    "anchor",
    "forge",
)


def tamper_campaign(
    bases: list[Base],
    other: Base,
    *,
    dense: bool,
    swaps: int = 12,
    huge_seq: int | None = None,
    only: tuple[str, ...] | None = None,
) -> TamperFigures:
    """``only``: run just these generators (names as in ``GENERATORS``), as the attested
    bases do (svsmlog/campaign/forgery.py ``attested_tamper``)."""
    assert only is None or set(only) <= set(GENERATORS), only
    t0 = time.perf_counter()
    fig = TamperFigures(bases=[b.name for b in bases])
    for i, base in enumerate(bases):
        targets = pick_targets(base, dense)
        huge = huge_seq if huge_seq is not None else (2 if dense else int(i == 0))
        anchor = base.run.anchor
        # generators are lazy: one not run costs nothing
        named: list[tuple[str, Iterator[Case]]] = [
            ("flips", gen_field_flips(base, targets, fixed=False, dense=dense)),
            ("flips", gen_field_flips(base, targets, fixed=True, dense=dense)),
            ("huge seq", gen_huge_seq(base, targets, huge)),
            ("drop", gen_drop(base, targets)),
            ("duplicate", gen_duplicate(base, targets)),
            ("swap", gen_swap(base, swaps)),
            ("misplace", gen_misplace(base, targets)),
            ("foreign", gen_foreign(base, other, targets)),
            ("snapshot", gen_snapshot_splice(base, targets)),
            ("truncate", gen_truncate_earlier_boot(base)),
            ("truncate", gen_truncate_tail(base)),
            ("rollback", gen_rollback(base)),
            ("superblock", gen_superblock(base, dense)),
            ("erasures", gen_erasures(base)),
            ("torn start", forged_torn_start(base)),
            ("anchor", forged_no_key_anchor(base)),
        ]
        for name, gen in named:
            if only is None or name in only:
                for case in gen:
                    judge(case, base, fig, anchor)
        crash = crashed(base) if only is None or "erasures" in only else None
        if crash is not None:
            for case in gen_erasures(crash, ", after a crash"):
                judge(case, crash, fig, None)
        for case, boot, forged in gen_forge(base) if only is None or "forge" in only else []:
            judge(case, forged, fig, anchor)
            v = verify_bytes(case.image, base.run.owners)
            if not case.expect.anchor and base.run.attest is None:
                fig.forged_verified_records += sum(n for k, n in v.records.items() if k[0] == boot)
    fig.seconds = time.perf_counter() - t0
    return fig


def tamper_bases(size: str) -> tuple[list[Base], Base]:
    """The scenarios the campaign tampers with, and another volume to splice from."""
    from ..volume import StreamSpec
    from .common import model_run, writer_run

    small = {n: 32 for n in ("boot", "core", "attest", "vtpm", "apic", "uefi", "console")}
    full = size == "full"
    runs = [
        Base(
            "multi-boot/per-service",
            model_run("multi-boot", Layout.PER_SERVICE, boots=4, seed=3, steady_s=3 if full else 1.5),
        ),
        Base(
            "roomy/aggregated",
            writer_run(
                "roomy",
                [StreamSpec(1, "all", 2600)],
                boots=3,
                records_per_boot=24 if full else 12,
                seed=5,
                big_every=1000,
            ),
        ),
        Base(
            "wraparound/aggregated",
            model_run("wraparound", Layout.AGGREGATED, boots=3, seed=4, steady_s=12 if full else 6),
        ),
        Base(
            "debug/per-service",
            model_run("debug", Layout.PER_SERVICE, boots=2, seed=6, sectors=small, steady_s=2 if full else 1),
        ),
    ]
    if full:
        runs += [
            Base(
                "multi-boot/aggregated",
                model_run("multi-boot", Layout.AGGREGATED, boots=5, seed=7, steady_s=3),
            ),
            Base(
                "wraparound/per-service",
                model_run("wraparound", Layout.PER_SERVICE, boots=3, seed=8, steady_s=8),
            ),
        ]
    return runs, other_volume()


def other_volume() -> Base:
    """Another volume to splice frames from."""
    from .common import model_run

    return Base("other-volume", model_run("multi-boot", Layout.PER_SERVICE, boots=2, seed=9, steady_s=1))


# --------------------------------------------------------------------------- erasures the rules now catch


def crashed(base: Base) -> Base | None:
    """``base`` cut short by a crash: the newest write carrying a multi-sector frame of a region
    (not at its start) landed only its first sector; nothing after it was written."""
    run = base.run
    for k in range(len(run.writes) - 1, run.boot_starts[-1], -1):
        fs = frames_in_write(run.writes[k], k)
        if (
            fs
            and fs[0].stream in run.regions
            and fs[0].sectors > 1
            and fs[0].lba != run.regions[fs[0].stream].start
        ):
            cut = Run(
                run.name,
                run.layout,
                run.streams,
                run.owners,
                run.sector_count,
                run.writes[:k],
                [(key, w) for key, w in run.durable if w < k],
                None,
                attest=run.attest,
            )
            return Base(f"{base.name} + crash", cut, run.writes[k])
    return None


def _erase(base: Base, cls: str, what: str, frames: list[FrameRec]) -> Case:
    img, exp = base.removal(frames)
    return Case(
        cls,
        f"{base.name}: {what}",
        img,
        exp,
        {f.offset for f in frames},
        {base.ident(f) for f in frames},
        at_start=base.at_start(frames),
    )


def gen_erasures(base: Base, suffix: str = "") -> Iterator[Case]:
    """Erasures the old rules could not tell from a crash or a truncation, enumerated over the
    whole image: each region, each boot's frames of each stream, a wrapped region's newest lap,
    each key-directory slot, and a boot's slot with its BOOT frames (a keyless boot)."""
    present = [*base.live, *base.torn_frames]
    for sid, r in base.run.regions.items():
        mine = [f for f in present if f.stream == sid]
        img = bytearray(base.image)
        zero(img, r.start, r.sectors)  # dd zeros over the whole region
        yield Case(
            "erase a whole region" + suffix,
            f"{base.name}: {base.sname(sid)}",
            bytes(img),
            base.expect(bytes(img)),
            {f.offset for f in mine} | {r.start * SECTOR},
            {base.ident(f) for f in mine},
            at_start=True,
        )
        for b in sorted({f.boot for f in mine}):
            frames = [f for f in mine if f.boot == b]
            yield _erase(
                base, "erase one boot's frames of one stream" + suffix, f"{base.sname(sid)} boot {b}", frames
            )
        hist = base.hist[sid]
        starts = [i for i, f in enumerate(hist) if f.lba == r.start and base.wrap_from.get(f, 0) > 0]
        if starts:
            lap = hist[starts[-1] :]
            cls = "erase a wrapped region's newest lap" + suffix
            if len(lap) > 1:
                yield _erase(base, cls, f"{base.sname(sid)} from {base.ident(lap[0])}, head kept", lap[:-1])
            yield _erase(base, cls, f"{base.sname(sid)} from {base.ident(lap[0])}, head too", lap)
    for s in base.slots:
        yield _erase(base, "erase a key-directory slot" + suffix, f"slot of boot {s.boot}", [s])
    for b in sorted(base.boots):
        slot = [s for s in base.slots if s.boot == b]
        boots = [f for f in present if f.boot == b and f.type == FrameType.BOOT and f.stream != NO_STREAM]
        if not boots:
            continue
        yield _erase(base, "keyless boot: slot and BOOT frames erased" + suffix, f"boot {b}", slot + boots)
        wraps = [f for f in present if f.boot == b and f.type == FrameType.KEYS and f.stream != NO_STREAM]
        wraps = [f for f in wraps if f.lba == base.run.regions[f.stream].start]
        if wraps:
            yield _erase(
                base,
                "keyless boot: slot and BOOT frames erased" + suffix,
                f"boot {b}, its wrap KEYS frames too",
                slot + boots + wraps,
            )


def forged_torn_start(base: Base) -> Iterator[Case]:
    """Red team: a torn header of the next boot (seq 0, BOOT, wrong digest) over sector 0 of a
    region, as a crash of the next boot's first write would leave it; but that write goes where
    the head ends, never over the region start while there is room (§8.4)."""
    newest = max(base.boots)
    for sid, r in base.run.regions.items():
        h = FrameHeader(
            FrameType.BOOT, sid, newest + 1, 0, r.start, base.volume_id, bytes(16), 0, 16, bytes(16)
        )
        img = bytearray(base.image)
        zero(img, r.start, 1)
        img[r.start * SECTOR : r.start * SECTOR + FRAME_HEADER_LEN] = encode_frame_header(h)
        claimed = Seen(r.start, 1, sid, newest + 1, 0, FrameType.BOOT, "torn")
        at0 = [f for f in base.live if f.stream == sid and f.lba == r.start]
        exp = base.expect(bytes(img), [claimed])
        yield Case(
            "red team: forged torn header at a region start",
            f"{base.name}: {base.sname(sid)} boot {newest + 1}",
            bytes(img),
            exp,
            {r.start * SECTOR},
            {(base.sname(sid), newest + 1, 0), *(base.ident(f) for f in at0)},
            at_start=True,
        )


def forged_no_key_anchor(base: Base) -> Iterator[Case]:
    """Red team: roll the image back, then plant the sectors of every anchored head frame where
    they were; the head's boot left no key on the image, so each head is present but no_key. An
    anchor is met only by an authenticated head (§8.5): verified with the anchor, never intact."""
    anchor = base.run.anchor
    if anchor is None:
        return
    heads = [
        f
        for f in base.live
        for h in anchor.heads
        if (f.stream, f.boot, f.seq, f.tag) == (h.stream, h.boot, h.seq, h.tag)
    ]
    for i, snap in enumerate(base.snapshots):
        img = bytearray(snap)
        for f in heads:
            copy_sectors(img, base.image, f.lba, f.lba, f.sectors)
        yield Case(
            "red team: anchor met only by no_key copies of the heads",
            f"{base.name}: rolled back to after boot {i + 1}, {len(heads)} head(s) planted",
            bytes(img),
            Expect("unproven", "the anchored heads are present but unauthenticated (§8.5)"),
            {f.offset for f in heads},
            {base.ident(f) for f in heads},
            with_anchor=True,
        )
