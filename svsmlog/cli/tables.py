"""Reports' text, tables and panels, printed without rich when plain text is all it takes.

``verify``, ``info`` and ``extract``'s summary print a panel and a few tables. Into a file or
a pipe (no colour), rich's output of them is plain text that follows from the cells'
widths; importing rich (console, table, panel: about 20 ms) and laying the tables out
(about 10 ms) cost more than verifying a small image. So the reports are built from the
small classes here, which record what rich would be given, and :class:`ReportConsole`
writes them itself when the output is unstyled and every string is printable ASCII (or
one of a few one-cell characters) that fits the width: exactly the characters rich writes
for them (``tests/test_tables.py`` holds the two equal). Anything else (a terminal,
colour, a string with other characters, a line or table too wide for the console, which
rich would wrap) goes to rich, given the same objects.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console

# Characters the reports use beyond ASCII that take one cell in rich's layout
# (rich.cells.cell_len) and that it writes as they are: "…" ends a shortened chip id or
# measurement in the Boots table, which otherwise alone sent verify's report to rich.
_ONE_CELL = frozenset("…§µ")


def _simple(s: str) -> bool:
    """Printable, one cell a character, nothing rich would strip or expand: ASCII, or the
    few characters of ``_ONE_CELL``."""
    return s.isprintable() and (s.isascii() or all(c.isascii() or c in _ONE_CELL for c in s))


class Text:
    """rich's ``Text(text, style=...)`` with ``append`` and ``append_text``, kept as the calls
    that build it, so the rich object made from it is the one rich would have had."""

    __slots__ = ("_first", "_parts", "plain", "style")

    def __init__(self, text: str = "", style: str = "") -> None:
        self.plain = text
        self.style = style
        self._first = text
        self._parts: list[tuple[str, str] | Text] = []

    def append(self, text: str, style: str = "") -> Text:
        self._parts.append((text, style))
        self.plain += text
        return self

    def append_text(self, text: Text) -> Text:
        self._parts.append(text)
        self.plain += text.plain
        return self

    def to_rich(self) -> Any:
        from rich.text import Text as RichText

        t = RichText(self._first, style=self.style)
        for p in self._parts:
            if isinstance(p, Text):
                t.append_text(p.to_rich())
            else:
                t.append(p[0], style=p[1] or None)
        return t


class Table:
    """rich's ``Table(title=..., title_justify=..., box=box.SIMPLE_HEAD)``: a header row
    under a line, columns padded by one space."""

    __slots__ = ("columns", "rows", "title", "title_justify")

    def __init__(self, title: str | None = None, title_justify: str = "left") -> None:
        self.title = title
        self.title_justify = title_justify
        self.columns: list[tuple[str, dict[str, str]]] = []
        self.rows: list[tuple[str | Text, ...]] = []

    def add_column(self, header: str, **options: str) -> None:
        """``options``: rich's ``justify`` and ``overflow``."""
        self.columns.append((header, options))

    def add_row(self, *cells: str | Text) -> None:
        self.rows.append(cells)

    def to_rich(self) -> Any:
        from rich import box
        from rich.table import Table as RichTable

        t = RichTable(title=self.title, title_justify=self.title_justify, box=box.SIMPLE_HEAD)  # type: ignore[arg-type]
        for header, options in self.columns:
            t.add_column(header, **options)  # type: ignore[arg-type]
        for row in self.rows:
            t.add_row(*(c.to_rich() if isinstance(c, Text) else c for c in row))
        return t


class Panel:
    """rich's ``Panel(Group(*lines), title=..., title_align="left", border_style=...,
    expand=False)``: rounded borders around the lines, one space inside."""

    __slots__ = ("border_style", "lines", "title")

    def __init__(self, lines: list[Text], title: str, border_style: str = "") -> None:
        self.lines = lines
        self.title = title
        self.border_style = border_style

    def to_rich(self) -> Any:
        from rich.console import Group
        from rich.panel import Panel as RichPanel

        lines = Group(*(line.to_rich() for line in self.lines))
        return RichPanel(lines, title=self.title, title_align="left", border_style=self.border_style,
                         expand=False)


Renderable = Text | Table | Panel


# --------------------------------------------------------------------------- plain rendering


def _render_text(t: Text, width: int) -> str | None:
    s = t.plain
    if not _simple(s) or len(s) > width:
        return None
    return s + "\n"


def _render_table(t: Table, width: int) -> str | None:
    rows = [[c.plain if isinstance(c, Text) else c for c in row] for row in t.rows]
    layout = _table_layout(t, rows, width)
    if layout is None:
        return None
    return "\n".join(_table_lines(t, layout, rows)) + "\n"


def _table_layout(t: Table | LongTable, rows: Iterable[Sequence[str]], width: int
                  ) -> tuple[list[int], int] | None:
    """Each column's width (its widest cell plus a space either side) and the table's, or
    None when rich must lay it out."""
    headers = [h for h, _ in t.columns]
    if not headers or not all(_simple(h) for h in headers):
        return None
    if any(set(options) - {"justify", "overflow"} or options.get("justify", "left") not in ("left", "right")
           for _, options in t.columns):
        return None
    widths = [len(h) + 2 for h in headers]
    for row in rows:
        if len(row) != len(headers):
            return None
        for i, s in enumerate(row):
            if len(s) + 2 > widths[i]:
                widths[i] = len(s) + 2
            if not _simple(s):
                return None
    # The edges and the dividers of SIMPLE_HEAD are spaces.
    total = sum(widths) + len(widths) + 1
    if total > width:
        return None  # rich would shrink and wrap the columns
    if t.title and (not _simple(t.title) or len(t.title) > total or t.title_justify != "left"):
        return None
    return widths, total


def _table_lines(t: Table | LongTable, layout: tuple[list[int], int], rows: Iterable[Sequence[str]]
                 ) -> Iterator[str]:
    widths, total = layout
    right = [options.get("justify") == "right" for _, options in t.columns]

    def line(row: Sequence[str]) -> str:
        return " " + " ".join(" " + (s.rjust(w - 2) if r else s.ljust(w - 2)) + " "
                              for s, w, r in zip(row, widths, right, strict=True)) + " "

    if t.title:  # rich shows no empty title
        yield t.title.ljust(total)
    yield " " * total
    yield line([h for h, _ in t.columns])
    yield " " + "─".join("─" * w for w in widths) + " "
    yield from map(line, rows)
    yield " " * total


def long_lines(t: LongTable, width: int) -> Iterator[str] | None:
    """The lines rich writes for ``t.table()`` on an unstyled console ``width`` columns
    wide, made as they are written, or None when rich must do it."""
    layout = _table_layout(t, t.rows(), width)
    return None if layout is None else _table_lines(t, layout, t.rows())


class LongTable:
    """A :class:`Table` of as many rows as the image has frames, which ``rows()`` gives
    again each time it is called: printed plain, it is laid out in one pass over them and
    written in another, a batch of lines at a time, never held (the same characters as
    Table). Where rich must lay it out, its rows are gathered into a Table for rich."""

    def __init__(self, title: str | None, columns: list[str],
                 rows: Callable[[], Iterable[Sequence[str]]]) -> None:
        self.title = title
        self.title_justify = "left"
        self.columns: list[tuple[str, dict[str, str]]] = [(c, {}) for c in columns]
        self.rows = rows

    def table(self) -> Table:
        t = Table(title=self.title, title_justify=self.title_justify)
        for header, options in self.columns:
            t.add_column(header, **options)
        for row in self.rows():
            t.add_row(*row)
        return t


_TITLE_PAD = 1  # rich pads a panel's title with a space either side


def _render_panel(p: Panel, width: int) -> str | None:
    lines = [line.plain for line in p.lines]
    if not all(_simple(s) for s in lines) or not _simple(p.title) or "[" in p.title:
        return None  # rich reads a panel's title as markup
    title = " " * _TITLE_PAD + p.title + " " * _TITLE_PAD
    inner = max((len(s) for s in lines), default=0) + 2  # the content and its padding
    if inner > width - 2:
        return None  # rich would wrap the lines
    inner = min(width - 2, max(inner, len(title) + 2))
    if len(title) > inner - 2:
        return None
    out = ["╭─" + title + "─" * (inner - 2 - len(title)) + "─╮"]
    out.extend("│ " + s.ljust(inner - 2) + " │" for s in lines)
    out.append("╰" + "─" * inner + "╯")
    return "\n".join(out) + "\n"


def render_plain(obj: Renderable, width: int) -> str | None:
    """What rich writes for ``obj`` on an unstyled console ``width`` columns wide, or None
    when rich must do it (see the module's docstring)."""
    if isinstance(obj, Text):
        return _render_text(obj, width)
    if isinstance(obj, Table):
        return _render_table(obj, width)
    return _render_panel(obj, width)


class ReportConsole:
    """What ``common.report_console`` returns: ``print`` takes our renderables (and rich's,
    passed to rich as they are). Unstyled output is written here when
    :func:`render_plain` can; otherwise, and always when styled, by a rich ``Console``
    made on first use with the options ``rich_options`` gives it."""

    def __init__(self, file: TextIO, *, styled: bool, width: int | None, rich_options: dict[str, Any],
                 make_rich: Any) -> None:
        self.file = file
        self.styled = styled
        self.width = width
        self._rich_options = rich_options
        self._make_rich = make_rich
        self._console: Console | None = None

    @property
    def rich(self) -> Console:
        if self._console is None:
            self._console = self._make_rich(**self._rich_options)
        return self._console

    def print(self, *objects: Any) -> None:
        if not objects:
            if not self.styled:
                self._write("\n")
                return
            self.rich.print()
            return
        if len(objects) == 1 and isinstance(objects[0], LongTable):
            self._print_long(objects[0])
            return
        if len(objects) == 1 and not self.styled and self.width is not None and isinstance(
                objects[0], (Text, Table, Panel)) and _utf8(self.file):
            text = render_plain(objects[0], self.width)
            if text is not None:
                self._write(text)
                return
        self.rich.print(*(o.to_rich() if isinstance(o, (Text, Table, Panel)) else o for o in objects))

    def _print_long(self, t: LongTable) -> None:
        lines = (long_lines(t, self.width)
                 if not self.styled and self.width is not None and _utf8(self.file) else None)
        if lines is None:
            self.print(t.table())
            return
        while batch := list(islice(lines, 4096)):
            self.file.write("\n".join(batch) + "\n")
        self.file.flush()

    def _write(self, text: str) -> None:
        self.file.write(text)
        self.file.flush()  # as rich does after each print: stderr lines after it stay after it


def _utf8(file: TextIO) -> bool:
    """rich draws boxes in ASCII on a file whose encoding is not a UTF (``Console.encoding``)."""
    return (getattr(file, "encoding", "utf-8") or "utf-8").lower().startswith("utf")
