"""The PHI corpus de-identified (issue 19 part 3): no injected identifier in any output byte, every UID changed
and every reference consistent with the mapping, pixel data identical, dciodvfy reporting no error the input
did not have.  Independent of medview's own output: the identifiers are the injected ones, the pixels are
compared with pydicom's reading of the input, the validity with dicom3tools' dciodvfy."""

from __future__ import annotations

import re
import subprocess

import pydicom
import pytest

from medview.io.deid.apply import Deidentifier, deidentify_file
from medview.io.deid.keys import map_uid
from medview.io.deid.profile import Options, load_profile
from tests.conftest import require_tool
from tests.io import phi_corpus

KEY = b"corpus-key-0123456789abcdef-0123"
OPTIONS = [Options(), Options(clean_descriptors=True), Options(retain_longitudinal_modified_dates=True,
                                                               retain_patient_characteristics=True)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("phi")
    files = phi_corpus.build(folder / "in")
    for f in files:
        assert phi_corpus.leaks(f.read_bytes()), f"{f.name}: the injection put nothing in"
    return folder, files


def _uid_elements(ds, profile, options: Options) -> dict[str, str]:
    """{path: value} of every UI element the table replaces (U, also inside sequences), kept apart from the
    UIDs it does not list (SOP classes, Creator Version UID, coding schemes), which stay."""
    found: dict[str, str] = {}

    def visit(d, path: str) -> None:
        for elem in d:
            here = f"{path}{elem.keyword or elem.tag}"
            if elem.VR == "SQ":
                for i, item in enumerate(elem.value or []):
                    visit(item, f"{here}[{i}].")
            elif elem.VR == "UI" and elem.value and profile.action(int(elem.tag), options) == "U":
                found[here] = str(elem.value)

    visit(ds, "")
    return found


@pytest.mark.parametrize("options", OPTIONS, ids=["basic", "clean-descriptors", "modified-dates"])
def test_nothing_leaks_and_references_hold(corpus, tmp_path, options: Options) -> None:
    _folder, files = corpus
    deid = Deidentifier(load_profile(), options, KEY)
    for source in files:
        target = tmp_path / source.name
        original = pydicom.dcmread(source)
        deidentify_file(str(source), str(target), deid)
        data = target.read_bytes()
        assert not phi_corpus.leaks(data), (source.name, phi_corpus.leaks(data))
        written = pydicom.dcmread(target)
        before = _uid_elements(original, deid.profile, options)
        assert before, source.name
        after = _uid_elements(written, deid.profile, options)
        for path, uid in before.items():  # replaced, by the keyed map (the same in every file: references hold)
            assert after.get(path) == map_uid(uid, KEY) != uid, (source.name, path)
        if "PixelData" in original:
            assert written.PixelData == original.PixelData, source.name  # the bytes, compressed or not
        assert written.PatientIdentityRemoved == "YES"
        graphics = [e.tag for e in written if e.tag.group % 2 == 0 and (0x5000 <= e.tag.group <= 0x501E or
                                                                          0x6000 <= e.tag.group <= 0x601E)]
        assert not graphics, (source.name, graphics)  # overlays (60xx) and curves (50xx): gone whole


def test_output_is_as_valid_as_the_input(corpus, tmp_path) -> None:
    dciodvfy = require_tool("dciodvfy")
    _folder, files = corpus
    deid = Deidentifier(load_profile(), Options(), KEY)

    def errors(path) -> set[str]:
        out = subprocess.run([dciodvfy, str(path)], capture_output=True, text=True, timeout=60)
        lines = [line for line in (out.stdout + out.stderr).splitlines() if line.startswith("Error")]
        # values differ (dummy values, new UIDs): compare the error and its element, not the quoted value
        return {re.sub(r"\"[^\"]*\"|\b\d+\b", "", line) for line in lines}

    for source in files:
        target = tmp_path / source.name
        deidentify_file(str(source), str(target), deid)
        new = errors(target) - errors(source)
        assert not new, (source.name, sorted(new))
