"""The de-identification profile (issue 19): DICOM PS3.15 Table E.1-1 as data, and how a row's codes become
one action.  The expected actions are facts of the standard's table (Annex E, Table E.1-1), written here from
the standard, not from the generated file."""

from __future__ import annotations

import json

import pytest

from medview.io.deid.profile import COMPOUND, Options, Profile, ProfileError, load_profile, resolve, table_path

BASIC = Options()
# (tag, basic action, {option: action}) from Table E.1-1
FACTS = [
    (0x00100010, "Z", {}),                                         # Patient's Name
    (0x00100030, "Z", {}),                                         # Patient's Birth Date
    (0x00080050, "Z", {}),                                         # Accession Number
    (0x00080090, "Z", {}),                                         # Referring Physician's Name
    (0x0020000D, "U", {"retain_uids": "K"}),                        # Study Instance UID
    (0x00080018, "U", {"retain_uids": "K"}),                        # SOP Instance UID
    (0x00200052, "U", {"retain_uids": "K"}),                        # Frame of Reference UID
    (0x00080020, "Z", {"retain_longitudinal_full_dates": "K", "retain_longitudinal_modified_dates": "C"}),
    (0x00080080, "D", {"retain_institution_identity": "K"}),        # Institution Name, X/Z/D
    (0x00101010, "X", {"retain_patient_characteristics": "K"}),     # Patient's Age
    (0x00100040, "Z", {"retain_patient_characteristics": "K"}),     # Patient's Sex
    (0x00081030, "X", {"clean_descriptors": "C"}),                  # Study Description
    (0x00204000, "X", {"clean_descriptors": "C"}),                  # Image Comments
    (0x00181000, "D", {"retain_device_identity": "K"}),             # Device Serial Number, X/Z/D
    (0x00101002, "X", {}),                                         # Other Patient IDs Sequence
    (0x00400275, "X", {"clean_descriptors": "C"}),                  # Request Attributes Sequence
    (0x60003000, "X", {"clean_graphics": "C"}),                     # Overlay Data, group 6000
    (0x601E3000, "X", {"clean_graphics": "C"}),                     # ... and any other overlay group
    (0x50000000 | 0x3000, "X", {"clean_graphics": "C"}),            # Curve Data (retired), group 5000
    (0x00091010, "X", {"retain_safe_private": "C"}),                # a private attribute
    (0x00290010, "X", {"retain_safe_private": "C"}),                # a private creator
]


@pytest.mark.parametrize(("tag", "basic", "options"), FACTS, ids=[f"{t:08X}" for t, _, _ in FACTS])
def test_actions_are_the_standards(tag: int, basic: str, options: dict[str, str]) -> None:
    profile = load_profile()
    assert profile.action(tag, BASIC) == basic
    for name, action in options.items():
        assert profile.action(tag, Options(**{name: True})) == action, name


def test_attributes_the_table_does_not_list_are_left_to_the_caller() -> None:
    profile = load_profile()
    for tag in (0x7FE00010, 0x00280010, 0x00280030, 0x00200032, 0x00080060):  # pixels, rows, spacing, IPP, modality
        assert profile.rule_for(tag) is None and profile.action(tag, BASIC) is None


def test_the_table_is_a_whole_edition() -> None:
    profile = load_profile()
    table = json.loads(table_path().read_text(encoding="utf-8"))
    assert len(profile) == len(table["rows"]) > 600  # Table E.1-1 has over 600 rows in recent editions
    assert profile.edition == table["source"]["edition"] and "NEMA" in table["source"]["attribution"]
    assert profile.private is not None and len(profile.patterns) >= 3
    codes = {r[2] for r in table["rows"]} | {c for r in table["rows"] for c in r[3].values()}
    assert codes <= set("DZXKCU") | set(COMPOUND)  # every code has a defined single action


def test_compound_codes_take_the_choice_valid_for_any_type() -> None:
    assert [resolve(c) for c in ("X/Z", "X/D", "Z/D", "X/Z/D", "X/Z/U*", "K")] == ["Z", "D", "D", "D", "U", "K"]
    with pytest.raises(ProfileError):
        resolve("Q")


def test_options_and_bad_tables() -> None:
    with pytest.raises(ProfileError, match="not both"):
        Options(retain_longitudinal_full_dates=True, retain_longitudinal_modified_dates=True)
    assert Options(retain_uids=True, clean_graphics=True).picked() == ["retain_uids", "clean_graphics"]
    good = json.loads(table_path().read_text(encoding="utf-8"))
    bad = dict(good, rows=[["00100010", "Patient's Name", "Q", {}, False]])
    with pytest.raises(ProfileError, match="Unknown action code"):
        Profile(bad)
    with pytest.raises(ProfileError, match="format"):
        Profile(dict(good, format=2))
    with pytest.raises(ProfileError, match="Cannot read"):
        load_profile("/nonexistent/table.json")
