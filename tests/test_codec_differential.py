"""The fast decoders (svsmlog.codec) agree with the declarative definitions
(svsmlog.format) on valid input, on mutated input, and on random bytes."""

from __future__ import annotations

import struct
from itertools import accumulate

import construct
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from svsmlog import codec, format
from svsmlog.records import Level, Record

text = st.text(max_size=40)
short = st.text(max_size=20).filter(lambda s: len(s.encode()) <= 255)
records = st.builds(
    Record,
    t_ns=st.integers(2**40, 2**40 + 2**30),  # each within ±2**31 ns of the one before
    level=st.sampled_from(list(Level)),
    service=short,
    component=short,
    message=st.text(max_size=300),
    target=st.one_of(st.none(), short.filter(bool)),
    fields=st.lists(st.tuples(short, text), max_size=4).map(tuple),
    flags=st.sampled_from([0, 1]),
)


def construct_records(buf: bytes) -> list[Record] | None:
    try:
        parsed = format.RecordBlock.parse(buf)
    except (construct.ConstructError, UnicodeDecodeError):
        return None
    names = [(n.service, n.component, n.target or None) for n in parsed.names]
    times = list(accumulate(parsed.t_deltas, initial=parsed.t_base))[1:]
    return [
        Record(
            t,
            Level(head & format.HEAD_LEVEL),
            *names[i][:2],
            msg,
            names[i][2],
            tuple((f.key, f.value) for f in x.entries) if x else (),
            1 if head & format.HEAD_PANIC else 0,
        )
        for head, i, t, msg, x in zip(
            parsed.heads, parsed.name_ids, times, parsed.messages, parsed.extras, strict=True
        )
    ]


def fast_records(buf: bytes) -> list[Record] | None:
    try:
        out = codec.decode_record_block(buf)
    except codec.DecodeError:
        out = None
    try:  # verification checks without decoding: it must accept exactly the same blocks
        s = codec.summarize_record_block(buf)
    except codec.DecodeError:
        assert out is None
        return None
    assert out is not None and s.count == len(out) and s.panic == any(r.panic for r in out)
    assert (s.first_t, s.last_t) == ((out[0].t_ns, out[-1].t_ns) if out else (None, None))
    return out


@given(st.lists(records, max_size=8))
def test_record_block_round_trip_and_agreement(recs: list[Record]) -> None:
    buf = codec.encode_record_block(recs)
    assert fast_records(buf) == recs
    assert construct_records(buf) == recs


@given(st.lists(records, min_size=1, max_size=4), st.data())
@settings(max_examples=300)
def test_record_block_mutations_agree(recs: list[Record], data: st.DataObject) -> None:
    buf = bytearray(codec.encode_record_block(recs))
    for _ in range(data.draw(st.integers(1, 3))):
        op = data.draw(st.sampled_from(["flip", "cut", "grow"]))
        if op == "flip" and buf:
            i = data.draw(st.integers(0, len(buf) - 1))
            buf[i] ^= data.draw(st.integers(1, 255))
        elif op == "cut" and buf:
            del buf[data.draw(st.integers(0, len(buf) - 1)) :]
        else:
            buf += data.draw(st.binary(min_size=1, max_size=8))
    assert fast_records(bytes(buf)) == construct_records(bytes(buf))


@given(st.lists(records, min_size=1, max_size=4),
       st.lists(st.tuples(st.integers(0, 10**6), st.integers(1, 255)), min_size=1, max_size=12))
@settings(max_examples=200)
def test_blocks_after_blocks_of_the_same_names_agree(recs: list[Record],
                                                     flips: list[tuple[int, int]]) -> None:
    """A block decoded again and again (its name table then comes from the recent tables,
    codec._names_of), between copies of it with a byte changed anywhere, the table and its
    count included: each as construct reads it."""
    base = codec.encode_record_block(recs)
    for where, xor in flips:
        buf = bytearray(base)
        buf[where % len(buf)] ^= xor
        assert fast_records(bytes(buf)) == construct_records(bytes(buf))
        assert fast_records(base) == recs


def test_a_short_name_table_is_decoded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    recs = [Record(2**40 + i, Level.INFO, "vtpm", "tpm", f"m{i}", "svsm::vtpm") for i in range(3)]
    base = codec.encode_record_block(recs)
    calls = []
    real = codec._names

    def counting(buf: bytes, n: int, decode: bool = True):  # type: ignore[no-untyped-def]
        calls.append(buf)
        return real(buf, n, decode)

    monkeypatch.setattr(codec, "_names", counting)
    monkeypatch.setattr(codec, "_RECENT_TABLES", [])
    for _ in range(3):
        assert codec.decode_record_block(base) == recs
    assert len(calls) == 1


@given(st.binary(max_size=200))
def test_record_block_random_bytes_agree(buf: bytes) -> None:
    assert fast_records(buf) == construct_records(buf)


def header_pair(buf: bytes) -> tuple[object, object]:
    try:
        fast: object = codec.decode_frame_header(buf)
    except codec.DecodeError:
        fast = None
    try:
        c = format.FrameHeader.parse(buf)
        slow: object = codec.FrameHeader(
            c.type, c.stream, c.boot, c.seq, c.lba, c.volume_id, c.prev_tag, c.clear_len, c.ct_len, c.digest
        )
    except construct.ConstructError:
        slow = None
    return fast, slow


headers = st.builds(
    codec.FrameHeader,
    type=st.integers(0, 6),
    stream=st.integers(0, 2**16 - 1),
    boot=st.integers(0, 2**32 - 1),
    seq=st.integers(0, 2**64 - 1),
    lba=st.integers(0, 2**64 - 1),
    volume_id=st.binary(min_size=16, max_size=16),
    prev_tag=st.binary(min_size=16, max_size=16),
    clear_len=st.integers(0, 2**17),
    ct_len=st.integers(0, 2**21),
    digest=st.binary(min_size=16, max_size=16),
)


@given(headers)
def test_frame_header_agreement(h: codec.FrameHeader) -> None:
    fast, slow = header_pair(codec.encode_frame_header(h))
    assert fast == slow
    valid = (
        h.type in (1, 2, 3, 4)
        and h.boot >= 1
        and h.clear_len <= format.MAX_CLEAR_LEN
        and 16 <= h.ct_len <= format.MAX_CT_LEN
    )
    assert (fast is not None) == valid


@given(st.binary(min_size=0, max_size=100))
def test_frame_header_random_bytes_agree(buf: bytes) -> None:
    buf = b"SVLF\x01" + buf if len(buf) % 2 else buf
    fast, slow = header_pair(buf)
    assert fast == slow


def clear_pair(buf: bytes) -> tuple[object, object]:
    try:
        fast: object = codec.decode_clear_section(buf)
    except codec.DecodeError:
        fast = None
    try:
        c = format.ClearSection.parse(buf)
        slow: object = [codec.Envelope(e.kind, e.kem_id, e.key_id, e.sealed) for e in c.envelopes]
    except construct.ConstructError:
        slow = None
    return fast, slow


envelopes = st.lists(
    st.builds(
        codec.Envelope,
        kind=st.sampled_from([1, 2]),
        kem_id=st.sampled_from([0x20, 0x647A]),
        key_id=st.binary(min_size=16, max_size=16),
        sealed=st.binary(min_size=1, max_size=90),
    ),
    max_size=5,
)


@given(envelopes, st.integers(0, 400), st.integers(0, 255))
def test_clear_section_agreement(envs: list[codec.Envelope], pos: int, xor: int) -> None:
    buf = bytearray(codec.encode_clear_section(envs))
    fast, slow = clear_pair(bytes(buf))
    assert fast == slow == envs
    if buf:
        buf[pos % len(buf)] ^= xor
    fast, slow = clear_pair(bytes(buf))
    assert fast == slow


_report_item = st.builds(
    codec.Envelope,
    kind=st.just(3),
    kem_id=st.sampled_from([0, 0, 0x20]),
    key_id=st.sampled_from([bytes(16), bytes(16), b"k" * 16]),
    sealed=st.integers(0, 15).map(lambda n: bytes(format.SNP_REPORT_LEN + 32 * n)),
)
_cert_item = st.builds(
    codec.Envelope,
    kind=st.just(4),
    kem_id=st.sampled_from([0, 0, 0x20]),
    key_id=st.just(bytes(16)),
    sealed=st.binary(min_size=1, max_size=40),
)
items = st.tuples(envelopes, st.lists(_report_item, max_size=2), st.lists(_cert_item, max_size=6)).flatmap(
    lambda t: st.permutations([*t[0], *t[1], *t[2]]) | st.just([*t[0], *t[1], *t[2]])
)


@given(items, st.integers(0, 4000), st.integers(0, 255))
def test_clear_sections_with_attestation_items_agree(envs: list[codec.Envelope], pos: int, xor: int) -> None:
    """Both decoders take the same items in the same order rules (spec §4.4): reports and
    certificates after the envelopes, one report, at most four certificates after it, and
    neither naming a recipient."""
    buf = bytearray(codec.encode_clear_section(envs))
    fast, slow = clear_pair(bytes(buf))
    assert fast == slow
    if fast is not None:
        assert fast == envs
    buf[pos % len(buf)] ^= xor
    fast, slow = clear_pair(bytes(buf))
    assert fast == slow


def test_an_ordered_attested_clear_section_parses() -> None:
    env = codec.Envelope(1, 0x20, b"k" * 16, b"s" * 80)
    report = codec.Envelope(3, 0, bytes(16), bytes(format.SNP_REPORT_LEN + 64))
    cert = codec.Envelope(4, 0, bytes(16), b"c" * 100)
    ok = [env, report, cert]
    assert codec.decode_clear_section(codec.encode_clear_section(ok)) == ok
    for bad in ([report, env], [env, cert], [env, report, report], [env, report, *[cert] * 5],
                [env, codec.Envelope(3, 0, bytes(16), bytes(format.SNP_REPORT_LEN))],
                [env, codec.Envelope(3, 0x20, bytes(16), bytes(format.SNP_REPORT_LEN + 32))]):
        fast, slow = clear_pair(codec.encode_clear_section(bad))
        assert fast is None and slow is None, bad


@given(st.binary(min_size=113, max_size=113))
def test_boot_body_random_bytes_agree(buf: bytes) -> None:
    try:
        fast: object = codec.decode_boot_body(buf)
    except codec.DecodeError:
        fast = None
    try:
        c = format.BootBody.parse(buf)
        ok_prior = c.prior_present or (c.prior_boot == 0 and c.prior_seq == 0 and c.prior_tag == bytes(16))
        slow: object = c if ok_prior else None
    except construct.ConstructError:
        slow = None
    assert (fast is None) == (slow is None)


@pytest.mark.parametrize("ceiling", [0, 1, 2, 3])
def test_boot_body_round_trip(ceiling: int) -> None:
    body = codec.BootBody(
        bytes(range(32)), bytes(32), 7, ceiling, True, 1, 2, codec.PriorHead(3, 9, bytes(range(16))), 5
    )
    buf = codec.encode_boot_body(body)
    assert len(buf) == format.BOOT_BODY_LEN
    if ceiling == 3:
        with pytest.raises(codec.DecodeError):
            codec.decode_boot_body(buf)
        with pytest.raises(construct.ConstructError):
            format.BootBody.parse(buf)
    else:
        assert codec.decode_boot_body(buf) == body
        assert format.BootBody.parse(buf).wrap_from == 5


keys_bodies = st.one_of(
    st.binary(min_size=format.KEYS_BODY_LEN, max_size=format.KEYS_BODY_LEN),
    st.builds(
        lambda r, t, w, d: struct.pack("<BQQ32s", r, t, w, d),
        st.integers(0, 4),
        st.integers(0, 2**64 - 1),
        st.sampled_from([0, 1, 2**40]),
        st.binary(min_size=32, max_size=32),
    ),
)


@given(keys_bodies)
def test_keys_body_agree(buf: bytes) -> None:
    try:
        fast: object = codec.decode_keys_body(buf)
    except codec.DecodeError:
        fast = None
    try:
        c = format.KeysBody.parse(buf)
        slow: object = c if (c.reason == 2) == (c.wrap_from > 0) else None
    except construct.ConstructError:
        slow = None
    assert (fast is None) == (slow is None)


superblocks = st.builds(
    codec.Superblock,
    volume_id=st.binary(min_size=16, max_size=16),
    total_sectors=st.integers(0, 2**40),
    regions=st.lists(
        st.builds(
            codec.RegionEntry,
            stream=st.integers(0, 2**16 - 1),
            name=st.text("abcxyz019_-", min_size=1, max_size=12),
            start=st.integers(0, 2**40),
            sectors=st.integers(0, 2**40),
        ),
        min_size=1,
        max_size=14,
    ).map(tuple),
)


@given(superblocks, st.integers(0, 511), st.integers(0, 255))
def test_superblock_agreement(sb: codec.Superblock, pos: int, xor: int) -> None:
    buf = bytearray(codec.encode_superblock(sb))
    assert codec.decode_superblock(bytes(buf)) == sb
    buf[pos] ^= xor

    def fast() -> object:
        try:
            return codec.decode_superblock(bytes(buf))
        except codec.DecodeError:
            return None

    def slow() -> object:
        try:
            c = format.Superblock.parse(bytes(buf))
        except (construct.ConstructError, UnicodeDecodeError):
            return None
        return codec.Superblock(
            c.volume_id,
            c.total_sectors,
            tuple(codec.RegionEntry(r.stream, r.name, r.start, r.sectors) for r in c.regions),
        )

    assert fast() == slow()


def _two_messages(first: bytes, second: bytes) -> bytes:
    """A block of two records (name ("a", "b", no target), level info) with these messages."""
    cols = b"\x02\x02" + b"\x00\x00" + struct.pack("<iiHH", 0, 1, len(first), len(second))
    return b"\x01\x01a\x01b\x00" + struct.pack("<IBQ", 2, 0, 5) + cols + first + second


@pytest.mark.parametrize(
    ("first", "second", "valid"),
    [
        ("é".encode(), b"x", True),
        (b"\xc3", b"\xa9", False),  # "é" split across two messages: the concatenation is UTF-8
        (b"", "é".encode(), True),
        (b"a\xc3", b"\xa9b", False),
        (b"\xed\xa0\x80", b"", False),  # a surrogate
        (b"", b"", True),
    ],
)
def test_message_boundaries_inside_a_character(first: bytes, second: bytes, valid: bool) -> None:
    buf = _two_messages(first, second)
    fast, slow = fast_records(buf), construct_records(buf)
    assert fast == slow
    assert (fast is not None) == valid


def _one_record(t_base: int, delta: int, flags: int = 0) -> bytes:
    cols = b"\x02\x00" + struct.pack("<iH", delta, 0)
    return b"\x01\x01a\x01b\x00" + struct.pack("<IBQ", 1, flags, t_base) + cols


@pytest.mark.parametrize(
    ("t_base", "delta", "flags", "t_ns"),
    [
        (5, -5, 0, 0),
        (5, -6, 0, None),  # before 0
        (2**64 - 1, 0, 0, 2**64 - 1),
        (2**64 - 1, 1, 0, None),  # past a u64
        (0, 2**31 - 1, 0, 2**31 - 1),
        (0, 0, 0x02, None),  # a reserved block flag
    ],
)
def test_block_times_and_flags_agree(t_base: int, delta: int, flags: int, t_ns: int | None) -> None:
    buf = _one_record(t_base, delta, flags)
    fast, slow = fast_records(buf), construct_records(buf)
    assert fast == slow
    assert (fast[0].t_ns if fast else None) == t_ns


def test_wide_lengths_round_trip_and_agree() -> None:
    recs = [Record(1, Level.INFO, "a", "b", "x" * 70_000), Record(2, Level.WARN, "a", "b", "short")]
    buf = codec.encode_record_block(recs)
    assert buf[6 + 4] & format.BLOCK_WIDE  # the flags byte: after the names (6 bytes) and the count
    assert fast_records(buf) == construct_records(buf) == recs


def test_records_of_a_block_lie_within_2_31_ns_of_the_one_before() -> None:
    """Time deltas are i32: a record further from the previous one goes in the next block."""
    b = codec.RecordBlockBuilder()
    assert b.add(Record(10**12, Level.INFO, "a", "b", "m"), 4096)
    assert b.add(Record(10**12 - 2**31, Level.INFO, "a", "b", "m"), 4096)
    assert b.add(Record(10**12 - 1, Level.INFO, "a", "b", "m"), 4096)
    assert not b.add(Record(10**12 - 1 + 2**31, Level.INFO, "a", "b", "m"), 4096)
    assert [r.t_ns for r in codec.decode_record_block(b.block())] == [10**12, 10**12 - 2**31, 10**12 - 1]


@given(st.integers(0, 2**64 - 1), st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=6))
def test_time_deltas_agree_wherever_they_lead(t_base: int, deltas: list[int]) -> None:
    """Deltas that may leave 0 .. 2**64-1 on the way: both decoders reject or both accept."""
    n = len(deltas)
    cols = b"\x02" * n + b"\x00" * n + struct.pack(f"<{n}i", *deltas) + struct.pack(f"<{n}H", *[0] * n)
    buf = b"\x01\x01a\x01b\x00" + struct.pack("<IBQ", n, 0, t_base) + cols
    assert fast_records(buf) == construct_records(buf)
