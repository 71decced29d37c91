"""The man pages: clean roff, and in step with the program they document."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer

from svsmlog.cli import app
from svsmlog.report import Kind

ROOT = Path(__file__).resolve().parent.parent
PAGE1 = ROOT / "man" / "svsmlog.1"
PAGE5 = ROOT / "man" / "svsmlog.5"
PAGE_ATTEST = ROOT / "man" / "svsmlog-attest.1"
# Commands documented on a page of their own instead of a section of svsmlog(1).
OWN_PAGES = {"svsmlog attest": PAGE_ATTEST}


def _plain(page: Path) -> str:
    """The page's text with roff escapes for dashes and fonts undone."""
    text = page.read_text()
    text = text.replace("\\-", "-").replace("\\e", "\\")
    return re.sub(r"\\f[BIRP]", "", text)


def _options() -> dict[str, list[str]]:
    """Every option of every command, from the click tree typer builds."""
    root = typer.main.get_command(app)
    root_ctx = root.context_class(root, info_name="svsmlog", **root.context_settings)
    contexts = [root_ctx] + [
        cmd.context_class(cmd, parent=root_ctx, info_name=name)
        for name, cmd in root.commands.items()  # type: ignore[attr-defined]
    ]
    found = {}
    for ctx in contexts:
        names = []
        for param in ctx.command.get_params(ctx):  # with -h/--help, which click adds here
            if param.param_type_name == "option":
                names += [*param.opts, *param.secondary_opts]
        found[ctx.command_path] = names
    return found


@pytest.mark.skipif(shutil.which("groff") is None, reason="needs groff")
@pytest.mark.parametrize("page", [PAGE1, PAGE5, PAGE_ATTEST], ids=lambda p: p.name)
def test_groff_has_nothing_to_say(page: Path) -> None:
    p = subprocess.run(["groff", "-ww", "-z", "-man", str(page)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0
    assert p.stdout == "" and p.stderr == ""


def test_every_option_of_every_command_is_documented() -> None:
    pages = {cmd: _plain(page) for cmd, page in OWN_PAGES.items()}
    text = _plain(PAGE1)
    options = _options()
    assert len(options) == 10  # the program and its nine commands
    assert set(OWN_PAGES) <= set(options)
    assert all("-h" in opts and "--help" in opts for opts in options.values())
    assert _undocumented(options, text, pages) == []
    # The check itself: an option a page lacks is found, on svsmlog(1) and on a page of its own.
    assert _undocumented(options, text.replace("--host-time", "--wallclock"), pages) == [
        ("svsmlog extract", "--host-time")]
    hidden = {**pages, "svsmlog attest": pages["svsmlog attest"].replace("--trust-root", "--trusted")}
    assert _undocumented(options, text, hidden) == [("svsmlog attest", "--trust-root")]


def _undocumented(options: dict[str, list[str]], text: str, pages: dict[str, str]) -> list[tuple[str, str]]:
    return [(cmd, opt) for cmd, opts in options.items() for opt in opts
            if not re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", pages.get(cmd, text))]


def test_every_command_has_a_section() -> None:
    text = _plain(PAGE1)
    for name in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        if f"svsmlog {name}" in OWN_PAGES:
            page = _plain(OWN_PAGES[f"svsmlog {name}"])
            assert f".B svsmlog {name}\n" in page.split(".SH SYNOPSIS", 1)[1].split(".SH ", 1)[0], name
        else:
            assert f'.SS "svsmlog {name} ' in text, name


def test_pages_of_their_own_have_the_usual_sections() -> None:
    for cmd, page in OWN_PAGES.items():
        text = _plain(page)
        sections = re.findall(r"^\.SH (.+)$", text, re.M)
        for needed in ("NAME", "SYNOPSIS", "DESCRIPTION", "OPTIONS", "EXIT STATUS", "EXAMPLES", "SEE ALSO"):
            assert needed in sections, (cmd, needed)
        exit_status = text.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
        for code in ("0", "1", "2"):
            assert f".B {code}\n" in exit_status, (cmd, code)
        assert ".BR svsmlog (1)" in text.split(".SH SEE ALSO", 1)[1]
        examples = text.split(".SH EXAMPLES", 1)[1].split(".SH ", 1)[0]
        assert f"{cmd} " in examples


def test_exit_codes_examples_files_and_see_also() -> None:
    text = _plain(PAGE1)
    sections = re.findall(r"^\.SH (.+)$", text, re.M)
    for needed in ("SYNOPSIS", "DESCRIPTION", "COMMANDS", "EXIT STATUS", "FILES", "EXAMPLES", "SEE ALSO"):
        assert needed in sections
    exit_status = text.split(".SH EXIT STATUS", 1)[1].split(".SH ", 1)[0]
    for code in ("0", "1", "2", "3"):
        assert f".B {code}\n" in exit_status
    see_also = text.split(".SH SEE ALSO", 1)[1]
    for ref in (".BR journalctl (1)", ".BR systemd-journal-remote (8)", ".BR svsmlog (5)"):
        assert ref in see_also


def test_section_5_points_to_the_specification_and_names_every_finding() -> None:
    text = _plain(PAGE5)
    assert "formats/svsmlog-v3.md" in text
    assert (ROOT / "formats" / "svsmlog-v3.md").exists()
    for kind in Kind:
        assert f".B {kind.value}" in text or f".BR {kind.value}" in text, kind


def test_scenarios_are_documented() -> None:
    simulate = pytest.importorskip("svsmlog.model.simulate")
    from svsmlog.cli.simulate import SCENARIO_HELP

    page = _plain(PAGE1).split('.SS "svsmlog simulate', 1)[1]
    for name in simulate.SCENARIOS:
        assert name in SCENARIO_HELP
        assert re.search(rf"\.BR? {re.escape(name)}\b", page), name
