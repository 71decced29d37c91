"""Tamper campaign at CI size. Expected outcomes come from the spec (svsmlog/campaign/
tamper.py); a miss or a wrong location is accepted here only when it carries the signature
of a known defect, whose reproducer is in test_found_defects.py."""

from __future__ import annotations

import pytest

from svsmlog.campaign.run import CI, run_tamper
from svsmlog.campaign.tamper import KNOWN_DEFECTS, TamperFigures


@pytest.fixture(scope="module")
def figures() -> TamperFigures:
    return run_tamper(CI)


def test_no_unexplained_miss_false_alarm_or_wrong_location(figures: TamperFigures) -> None:
    bad = {r.cls: r.examples for r in figures.rows.values() if r.unexplained}
    assert not bad


def test_only_known_defects_account_for_failures(figures: TamperFigures) -> None:
    for r in figures.rows.values():
        assert set(r.known) <= set(KNOWN_DEFECTS), r.cls


def test_harmless_changes_stay_harmless(figures: TamperFigures) -> None:
    rows = [r for r in figures.rows.values() if r.harmless]
    assert {r.cls for r in rows} == {"commit digest (any frame)", "padding (any frame)"}
    assert all(r.harmless_ok == r.harmless > 0 for r in rows)


def test_the_anchor_catches_every_tail_truncation_and_rollback(figures: TamperFigures) -> None:
    """What the rules cannot tell (a newest tail nothing later names, a rollback, a forged
    newest boot) an anchor taken at the end catches."""
    for cls in ("truncate a region's tail", "roll the image back", "forge a boot (host runs the writer)"):
        r = figures.rows[cls]
        assert r.anchor_cases > 0 and r.anchor_caught == r.anchor_cases, cls
    assert figures.rows["forge a boot (host runs the writer)"].claimed == 0


def test_nothing_unproven_is_reported_intact(figures: TamperFigures) -> None:
    assert sum(r.unproven for r in figures.rows.values()) > 50  # the campaign covers such cases
    for r in figures.rows.values():
        assert r.unproven_intact == 0, (r.cls, r.examples)


ERASURES = (
    "erase a whole region",
    "erase one boot's frames of one stream",
    "erase a wrapped region's newest lap",
    "erase a key-directory slot",
    "keyless boot: slot and BOOT frames erased",
)


def test_erasures_the_old_rules_excused_are_judged_by_the_new_ones(figures: TamperFigures) -> None:
    """Enumerated over every base image, with and without a crash first: every case the rules
    claim is detected and located; none the rules call unproven is intact."""
    for cls in (*ERASURES, *(f"{c}, after a crash" for c in ERASURES)):
        r = figures.rows[cls]
        assert r.cases > 0 and r.missed == 0 and r.unproven_intact == 0, (cls, r.examples)
        assert r.detected == r.located, (cls, r.examples)
    r = figures.rows["erase a whole region"]
    assert r.claimed == r.cases == r.detected  # every base boot left traces elsewhere (O1)


def test_red_team_classes_are_never_intact(figures: TamperFigures) -> None:
    for cls in (
        "red team: forged torn header at a region start",
        "red team: anchor met only by no_key copies of the heads",
    ):
        r = figures.rows[cls]
        assert r.cases > 0 and r.limits == 0 and r.missed == 0 and r.unproven_intact == 0, (cls, r.examples)


def test_false_violations_are_only_the_known_defect(figures: TamperFigures) -> None:
    """A frame_missing for an absence rule O1 excuses (rotation) is a false violation: today
    only D13 (tests/campaigns/test_found_defects.py) shows one."""
    for r in figures.rows.values():
        assert r.false_violations == r.known.get("D13", 0), (r.cls, r.examples)


def test_every_host_action_class_is_exercised(figures: TamperFigures) -> None:
    want = [
        "superblock byte",
        "superblock geometry",
        "key-directory slot: header",
        "key-directory slot: clear section",
        "key-directory slot: ciphertext",
        "key-directory slot: tag",
        "BOOT frame: header",
        "BOOT frame: clear section",
        "BOOT frame: ciphertext",
        "BOOT frame: tag",
        *(
            f"DATA frame: header {f}"
            for f in (
                "magic",
                "version",
                "type",
                "stream",
                "boot",
                "seq",
                "lba",
                "volume_id",
                "prev_tag",
                "clear_len",
                "ct_len",
            )
        ),
        "DATA frame: ciphertext",
        "DATA frame: tag",
        "KEYS frame: header",
        "commit digest (any frame)",
        "padding (any frame)",
        "drop (zero) a frame",
        "duplicate a frame elsewhere",
        "reorder (swap) two frames",
        "move a frame to another stream's region",
        "splice from another image",
        "splice from an earlier boot of this image",
        "roll the image back",
        "truncate a region's tail",
        "truncate an earlier boot",
        "forge a boot (host runs the writer)",
    ]
    for cls in want:
        assert figures.rows[cls].cases > 0, cls
        assert (
            figures.rows[f"{cls}, digest recomputed"].cases > 0
            if cls.startswith(("BOOT", "DATA", "key-dir"))
            else True
        )


def test_claimed_classes_are_detected_where_no_known_defect_interferes(figures: TamperFigures) -> None:
    for cls in (
        "duplicate a frame elsewhere",
        "reorder (swap) two frames",
        "move a frame to another stream's region",
        "splice from another image",
    ):
        r = figures.rows[cls]
        assert r.claimed == r.cases == r.detected == r.located > 0, cls


def test_records_of_untouched_frames_are_still_output(figures: TamperFigures) -> None:
    """A change costs at most the frames it touched (§9: frames that authenticate are output)."""
    checked = sum(r.collateral_checked for r in figures.rows.values())
    assert checked > 1000
    for r in figures.rows.values():
        assert r.collateral == 0, (r.cls, r.examples)


def test_no_verdict_depends_on_where_scan_windows_fall(figures: TamperFigures) -> None:
    """Every third case judged again with a 7-sector scan window (frames across its ends,
    which the verifier's window lane leaves to the general path): the same report and the
    same records, in every class."""
    assert sum(r.window_checked for r in figures.rows.values()) > 1000
    assert all(r.window_checked for r in figures.rows.values() if r.cases >= 3)
    for r in figures.rows.values():
        assert r.window_differs == 0, (r.cls, r.examples)
