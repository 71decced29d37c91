"""svsmlog.cli.tables writes reports without rich into files and pipes: the same characters
rich writes for the same objects, or rich does it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from svsmlog.cli.common import _rich_console
from svsmlog.cli.tables import LongTable, Panel, ReportConsole, Table, Text, render_plain

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"

# Mostly printable ASCII (the fast path), sometimes what only rich may lay out: wide and
# combining characters, controls, tabs, newlines, markup brackets.
ascii_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
odd_text = st.text(st.sampled_from(list("ab -[]…§é中\u0301\t\n\x1b\r")), max_size=12)
cell_text = st.one_of(ascii_text, ascii_text, ascii_text, odd_text)
styles = st.sampled_from(["", "bold", "red", "bold yellow"])


@st.composite
def texts(draw: st.DrawFn) -> Text:
    t = Text(draw(cell_text), style=draw(styles))
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()):
            t.append(draw(cell_text), style=draw(styles))
        else:
            t.append_text(Text(draw(cell_text), style=draw(styles)))
    return t


@st.composite
def tables(draw: st.DrawFn) -> Table:
    t = Table(title=draw(st.none() | cell_text), title_justify="left")
    n = draw(st.integers(1, 8))
    for _ in range(n):
        options = draw(st.fixed_dictionaries({}, optional={"justify": st.sampled_from(["left", "right"]),
                                                             "overflow": st.just("fold")}))
        t.add_column(draw(st.text(st.characters(min_codepoint=0x61, max_codepoint=0x7A), min_size=1,
                                  max_size=12)), **options)
    for _ in range(draw(st.integers(0, 5))):
        t.add_row(*(draw(st.one_of(cell_text, texts())) for _ in range(n)))
    return t


@st.composite
def panels(draw: st.DrawFn) -> Panel:
    lines = draw(st.lists(texts(), min_size=1, max_size=6))
    return Panel(lines, title=draw(st.sampled_from(["svsmlog verification", "x", "a [b]"])),
                 border_style=draw(styles))


def by_rich(obj: Text | Table | Panel | None, width: int) -> str:
    out = io.StringIO()
    console = Console(file=out, color_system=None, force_terminal=False, no_color=True, width=width,
                      markup=False, emoji=False, highlight=False)
    if obj is None:
        console.print()
    else:
        console.print(obj.to_rich())
    return out.getvalue()


def by_us(obj: Text | Table | Panel | LongTable | None, width: int) -> str:
    out = io.StringIO()
    console = ReportConsole(out, styled=False, width=width, make_rich=_rich_console,
                            rich_options={"file": out, "color_system": None, "force_terminal": False,
                                          "no_color": True, "width": width, "markup": False, "emoji": False,
                                          "highlight": False})
    if obj is None:
        console.print()
    else:
        console.print(obj)
    return out.getvalue()


@settings(max_examples=400, deadline=None)
@given(st.one_of(texts(), tables(), panels()), st.integers(8, 200))
def test_plain_output_is_what_rich_writes(obj: Text | Table | Panel, width: int) -> None:
    assert by_us(obj, width) == by_rich(obj, width)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(ascii_text, min_size=3, max_size=3), max_size=6), st.integers(60, 200))
def test_ascii_tables_that_fit_are_written_without_rich(rows: list[list[str]], width: int) -> None:
    t = Table(title="Boots")
    for col in ("boot", "stream", "detail"):
        t.add_column(col)
    for row in rows:
        t.add_row(*row)
    fits = sum(max([len(c)] + [len(r[i]) for r in rows]) + 2 for i, c in enumerate(("boot", "stream",
                                                                                         "detail"))) + 4
    plain = render_plain(t, width)
    assert (plain is not None) == (fits <= width)
    if plain is not None:
        assert plain == by_rich(t, width)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cell_text, min_size=3, max_size=3), max_size=8), st.integers(8, 200),
       st.none() | cell_text)
def test_a_long_table_is_written_as_rich_writes_its_rows(rows: list[list[str]], width: int,
                                                         title: str | None) -> None:
    """info --frames: a row per frame, laid out and written without holding the rows."""
    long = LongTable(title, ["offset", "stream", "status"], lambda: iter(rows))
    assert by_us(long, width) == by_rich(long.table(), width)


def test_a_long_table_is_laid_out_in_one_pass_over_its_rows_and_written_in_another() -> None:
    calls = []

    def rows() -> list[list[str]]:
        calls.append(1)
        return [[str(i), "core", "complete"] for i in range(10_000)]

    text = by_us(LongTable("Frames", ["offset", "stream", "status"], rows), 160)
    assert len(calls) == 2  # one pass for the widths, one to write
    assert text.count("complete") == 10_000 and text.splitlines()[4].split() == ["0", "core", "complete"]


def test_an_empty_print_is_a_newline() -> None:
    assert by_us(None, 160) == by_rich(None, 160) == "\n"


def test_styled_output_goes_to_rich() -> None:
    out = io.StringIO()
    console = ReportConsole(out, styled=True, width=None, make_rich=_rich_console,
                            rich_options={"file": out, "force_terminal": True, "color_system": "standard",
                                          "markup": False, "emoji": False, "highlight": False})
    console.print(Text("INTACT", style="bold green"))
    assert "\x1b[" in out.getvalue()


def test_reports_of_the_samples_are_the_same_with_rich_forced() -> None:
    """Every sample's verify and info report, as written here and as rich writes it (the
    fast path switched off by a console that always falls back)."""
    code = ("import sys; import svsmlog.cli.tables as t; t.render_plain = lambda obj, width: None; "
            "t.long_lines = lambda table, width: None; "
            "from svsmlog.cli import main; sys.argv[0] = 'svsmlog'; sys.exit(main())")
    key = str(SAMPLES / "TEST-ONLY-owner.key")
    os.chmod(key, 0o600)
    for image in sorted(SAMPLES.glob("*.img")):
        for args in (["verify", str(image), "--key", key], ["info", str(image)],
                     ["info", str(image), "--frames"]):
            for columns in (None, "70"):
                env = dict(os.environ, PYTHONPATH=str(ROOT))
                env.pop("COLUMNS", None)
                if columns:
                    env["COLUMNS"] = columns
                ours = subprocess.run([sys.executable, "-m", "svsmlog.cli", *args], capture_output=True,
                                      text=True, env=env)
                theirs = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                                        env=env)
                assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout), (args, columns)


def test_the_one_cell_characters_are_one_cell_and_written_as_rich_writes_them() -> None:
    """The Boots table of an attested boot ("Milan VCEK 87fc56a7… TCB 4/0/22/213") is
    written without rich, and as rich would write it."""
    from rich.cells import cell_len

    from svsmlog.cli.tables import _ONE_CELL

    for c in _ONE_CELL:
        assert cell_len(c) == 1 and c.isprintable()
    t = Table(title="Boots", title_justify="left")
    for name in ("boot", "attested by", "measurement"):
        t.add_column(name)
    t.add_row("1", "Milan VCEK 87fc56a7… TCB 4/0/22/213", Text("c0b70703746c4ecd… expected"))
    t.add_row("2", "§ 8.1", "5 µs")
    plain = render_plain(t, 200)
    assert plain is not None and "87fc56a7…" in plain
    assert plain == by_rich(t, 200)


def test_an_attested_boots_row_is_one_line_in_a_pipe() -> None:
    """The default width of a report in a pipe holds the Boots table of an attested boot
    (about 180 columns) without wrapping, and writes it without rich."""
    key = str(SAMPLES / "TEST-ONLY-owner.key")
    os.chmod(key, 0o600)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("COLUMNS", None)
    code = ("import sys; from svsmlog.cli import main; sys.argv[0] = 'svsmlog'; rc = main(); "
            "sys.stderr.write('rich imported\\n' if 'rich.console' in sys.modules else ''); sys.exit(rc)")
    args = ["verify", str(SAMPLES / "vtpm-panic.img"), "--key", key,
            "--trust-root", str(SAMPLES / "TEST-ONLY-amd-chain.pem"),
            "--measurement", (SAMPLES / "measurement.hex").read_text().strip()]
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    rows = [line for line in run.stdout.splitlines() if "VCEK" in line and "…" in line]
    assert len(rows) == 1 and rows[0].split()[:2] == ["1", "panic"], run.stdout
    assert 160 < len(rows[0]) <= 200
    assert "rich imported" not in run.stderr
