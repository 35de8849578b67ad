#!/usr/bin/env python3
"""Regenerate medview's bundled sample studies and check them.

Run from the repository root::

    .venv/bin/python resources/samples/make_samples.py

Provenance
----------
``chest_ct/``
    From the pyradiomics test case ``lung1`` (``/work/shared/data/radiomics-cases/``, BSD-3,
    Copyright 2017 Harvard Medical School; see ``chest_ct/LICENSE.txt``): a 512x512x48 CT in HU,
    0.5703125 x 0.5703125 x 5 mm, and its tumour mask.  ``plastimatch convert`` writes the NRRD as a
    DICOM CT series (plus an RTSTRUCT ``rtss.dcm`` drawn from the mask); pydicom then sets the
    descriptive headers and window presets, replaces plastimatch's random UIDs with stable ones and
    blanks its creation dates (so that a rerun gives the same files), and ``dcmcjpls +el`` recompresses
    every slice to JPEG-LS lossless (1.2.840.10008.1.2.4.80).  Geometry tags are left as plastimatch
    wrote them.  The mask is written separately as a gzip NRRD (uint8, CT grid).
``brain_mr/``
    From the Debian package mricron-data (``/usr/share/mricron/templates/``, BSD-3, MRIcron, Chris
    Rorden; see ``brain_mr/LICENSE.txt``): the Colin27 single-subject T1 (``ch2.nii.gz``) and the AAL
    atlas (``aal.nii.gz``), copied byte for byte (they share one 181x217x181 1 mm MNI grid, which is
    checked), and the AAL names from ``aal.nii.txt`` with one generated colour per label.

Needs plastimatch and dcmtk (``dcmcjpls``) on PATH and the medview venv (pydicom, SimpleITK).
The script ends by checking the outputs against the sources and exits 1 on any mismatch.
"""

from __future__ import annotations

import colorsys
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk  # noqa: N813 - the usual alias
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.uid import UID, JPEGLSLossless, generate_uid

CASES = Path("/work/shared/data/radiomics-cases")
TEMPLATES = Path("/usr/share/mricron/templates")
MRICRON_COPYRIGHT = Path("/usr/share/doc/mricron-data/copyright")
HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CHEST, BRAIN = HERE / "chest_ct", HERE / "brain_mr"

TUMOUR = {"1": {"name": "Tumour", "color": [230, 25, 75]}}
CT_HEADERS = {
    "PatientName": "LUNG1^DEMO",
    "StudyDescription": "Chest CT sample (pyradiomics lung1)",
    "SeriesDescription": "Chest CT (NSCLC, lung1)",
    "SeriesNumber": 2,
    "WindowCenter": [-600, 40],
    "WindowWidth": [1500, 400],
    "WindowCenterWidthExplanation": ["LUNG", "MEDIASTINUM"],
}
MAX_TOTAL_BYTES = 25 * 1024 * 1024


def write_table(path: Path, table: dict[str, dict[str, object]]) -> None:
    """Write a label table as JSON with one label per line (value -> {name, color, ...})."""
    rows = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in table.items())
    path.write_text("{\n" + rows + "\n}\n")


def sh(*cmd: str | Path) -> None:
    """Run a command, failing loudly (with its output) if it fails."""
    done = subprocess.run([str(c) for c in cmd], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(map(str, cmd))} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")


# -- chest CT -------------------------------------------------------------------------------------
def stabilise(datasets: list[Dataset], seed: str) -> None:
    """Replace every unregistered UID with a stable one and blank all dates and times.

    UIDs are renamed in order of first appearance (files in the order given, elements in tag order,
    sequences included), so references between the CT slices and the RTSTRUCT stay consistent.
    """
    renamed: dict[str, str] = {}

    def visit(ds: Dataset, elem: DataElement) -> None:
        if elem.VR == "UI" and elem.value and UID(str(elem.value)).name == str(elem.value):
            old = str(elem.value)
            elem.value = renamed.setdefault(old, generate_uid(entropy_srcs=[seed, str(len(renamed))]))
        elif elem.VR in ("DA", "TM", "DT"):
            elem.value = ""

    for ds in datasets:
        ds.walk(visit)
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def make_chest_ct() -> None:
    """Write ``chest_ct/``: JPEG-LS DICOM series + RTSTRUCT, tumour label NRRD, table, licence."""
    dicom_dir = CHEST / "dicom"
    shutil.rmtree(dicom_dir, ignore_errors=True)
    dicom_dir.mkdir(parents=True)
    label = sitk.Cast(sitk.ReadImage(str(CASES / "lung1_label.nrrd")), sitk.sitkUInt8)
    sitk.WriteImage(label, str(CHEST / "tumour_label.nrrd"), useCompression=True)
    write_table(CHEST / "label_table.json", TUMOUR)
    shutil.copyfile(CASES / "LICENSE.txt", CHEST / "LICENSE.txt")

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sitk.WriteImage(label, str(tmp / "mask.nrrd"), useCompression=True)
        # plastimatch structure-set list: "bit|R G B|name"; bit 0 is label value 1.
        (tmp / "ss.txt").write_text("0|{}|{}\n".format(" ".join(map(str, TUMOUR["1"]["color"])),
                                                       TUMOUR["1"]["name"]))
        raw = tmp / "raw"
        sh("plastimatch", "convert", "--input", CASES / "lung1_image.nrrd",
           "--input-ss-img", tmp / "mask.nrrd", "--input-ss-list", tmp / "ss.txt",
           "--output-dicom", raw, "--filenames-without-uids",
           "--patient-id", "LUNG1", "--patient-name", CT_HEADERS["PatientName"],
           "--study-description", CT_HEADERS["StudyDescription"],  # plastimatch 1.9.4: RTSTRUCT only
           "--rtss-series-description", "Tumour contour (lung1)", "--rtss-series-number", "3")
        images = sorted(raw.glob("image*.dcm"))
        datasets = [pydicom.dcmread(p) for p in images] + [pydicom.dcmread(raw / "rtss.dcm")]
        stabilise(datasets, "medview sample chest_ct lung1")
        for number, ds in enumerate(datasets[:-1], start=1):
            for keyword, value in CT_HEADERS.items():
                setattr(ds, keyword, value)
            ds.InstanceNumber = number  # plastimatch counts from 0
        for path, ds in zip([*images, raw / "rtss.dcm"], datasets, strict=True):
            ds.save_as(path, enforce_file_format=True)
        for path in images:
            sh("dcmcjpls", "+el", path, dicom_dir / path.name)
        shutil.copyfile(raw / "rtss.dcm", dicom_dir / "rtss.dcm")


# -- brain MR -------------------------------------------------------------------------------------
def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-4) -> bool:
    """Same size, and spacing, origin and direction equal within ``tol``."""
    keys = ("GetSpacing", "GetOrigin", "GetDirection")
    close = all(np.allclose(getattr(a, k)(), getattr(b, k)(), atol=tol) for k in keys)
    return a.GetSize() == b.GetSize() and close


def label_color(index: int) -> list[int]:
    """A distinct, fairly bright colour for 1-based ``index`` (golden-angle hue steps)."""
    hue = (index * 0.618033988749895) % 1.0
    sat, val = (0.75, 0.95) if index % 2 else (0.55, 0.80)
    return [round(255 * c) for c in colorsys.hsv_to_rgb(hue, sat, val)]


def parse_aal_names(path: Path) -> dict[str, dict[str, object]]:
    """``aal.nii.txt`` lines are ``value name aal_code`` (CRLF, trailing blank line)."""
    table: dict[str, dict[str, object]] = {}
    for line in path.read_text().splitlines():
        if line.strip():
            value, name, code = line.split()
            table[value] = {"name": name, "color": label_color(int(value)), "aal_code": int(code)}
    return table


def mricron_license() -> str:
    """Brain licence notice: MRIcron's BSD-3 stanza from the Debian copyright file, plus sources."""
    text = MRICRON_COPYRIGHT.read_text()
    stanza = text[text.index("License: BSD-3-clause\n  Redistribution"):].splitlines()[1:]
    body = "\n".join("" if ln.strip() == "." else ln.strip() for ln in stanza if ln.startswith("  "))
    return (
        "The images and label names in this folder are unmodified copies of files shipped in the Debian\n"
        "package mricron-data 1.2.20211006+dfsg-4 (/usr/share/mricron/templates/ch2.nii.gz, aal.nii.gz,\n"
        "aal.nii.txt).  Its copyright file (/usr/share/doc/mricron-data/copyright) places them under\n"
        "\"Files: *\", which reads:\n\n"
        "Copyright 2006-2010, Chris Rorden (MRIcron)\n\n" + body + "\n\n"
        "Origin of the images.  The Debian copyright file and package docs do not describe the templates\n"
        "further; for attribution, the usual references are:\n"
        "- ch2 (\"Colin27\"): the MNI single-subject T1 template, an average of 27 scans of one person.\n"
        "  Holmes CJ et al., Enhancement of MR images using registration for signal averaging.\n"
        "  J Comput Assist Tomogr 1998;22(2):324-333.\n"
        "- AAL (Automated Anatomical Labeling, 116 regions, drawn on the Colin27 brain):\n"
        "  Tzourio-Mazoyer N et al., Automated anatomical labeling of activations in SPM using a\n"
        "  macroscopic anatomical parcellation of the MNI MRI single-subject brain.\n"
        "  NeuroImage 2002;15(1):273-289.\n"
        "The colours in aal_labels.json are generated by make_samples.py (not MRIcron's aal.nii.lut).\n"
    )


def make_brain_mr() -> None:
    """Write ``brain_mr/``: the Colin27 T1, the AAL atlas on its grid, label names and licence."""
    BRAIN.mkdir(parents=True, exist_ok=True)
    t1, atlas = (sitk.ReadImage(str(TEMPLATES / f)) for f in ("ch2.nii.gz", "aal.nii.gz"))
    shutil.copyfile(TEMPLATES / "ch2.nii.gz", BRAIN / "colin27_t1.nii.gz")
    if same_grid(t1, atlas):
        shutil.copyfile(TEMPLATES / "aal.nii.gz", BRAIN / "aal_atlas.nii.gz")
    else:  # not the case for mricron-data 1.2.20211006, kept for other versions
        print("AAL is not on the ch2 grid: resampling it (nearest neighbour)")
        atlas = sitk.Resample(atlas, t1, sitk.Transform(), sitk.sitkNearestNeighbor, 0, atlas.GetPixelID())
        sitk.WriteImage(atlas, str(BRAIN / "aal_atlas.nii.gz"), useCompression=True)
    table = parse_aal_names(TEMPLATES / "aal.nii.txt")
    write_table(BRAIN / "aal_labels.json", table)
    (BRAIN / "LICENSE.txt").write_text(mricron_license())


# -- verification ---------------------------------------------------------------------------------
class Checker:
    """Collects named pass/fail results and prints them as it goes."""

    def __init__(self) -> None:
        self.failures = 0

    def __call__(self, name: str, ok: bool, detail: str = "") -> None:
        self.failures += not ok
        print(f"  [{'ok' if ok else 'FAIL'}] {name}{': ' + detail if detail else ''}")

    def geometry(self, name: str, got: tuple, want: sitk.Image, tol: float = 1e-3) -> None:
        """``got`` = (spacing, origin, direction) in ITK (x, y, z) order, LPS."""
        diffs = [float(np.max(np.abs(np.subtract(g, w)))) for g, w in
                 zip(got, (want.GetSpacing(), want.GetOrigin(), want.GetDirection()), strict=True)]
        detail = "max |diff| spacing {:.2g}, origin {:.2g}, direction {:.2g} mm".format(*diffs)
        self(name, max(diffs) <= tol, detail)


def verify() -> int:
    """Compare the outputs with their sources; return the number of failed checks."""
    sys.path.insert(0, str(REPO))
    import medview

    check = Checker()
    ct_ref = sitk.ReadImage(str(CASES / "lung1_image.nrrd"))
    ref = sitk.GetArrayFromImage(ct_ref)
    dicom_dir = CHEST / "dicom"

    print("chest_ct/dicom via medview.open_image:")
    vol = medview.open_image(dicom_dir)
    g = vol.geometry
    check("shape (z, y, x)", vol.array.shape == ref.shape, f"{vol.array.shape}")
    check("voxels equal (HU)", np.array_equal(vol.array, ref),
          f"max |diff| {np.max(np.abs(vol.array.astype(np.float64) - ref)):.3g}, dtype {vol.array.dtype}")
    check.geometry("geometry vs lung1_image.nrrd", (g.spacing, g.origin, g.direction), ct_ref)
    meta = vol.metadata
    check("modality, units, series", (meta.modality, meta.units, meta.series_description, meta.series_number)
          == ("CT", "HU", CT_HEADERS["SeriesDescription"], CT_HEADERS["SeriesNumber"]),
          f"{meta.modality}, {meta.units}, {meta.series_description!r}, #{meta.series_number}")
    check("patient name", meta.patient_name == CT_HEADERS["PatientName"], f"{meta.patient_name!r}")
    check("window presets", [(w.center, w.width, w.name) for w in meta.window_presets]
          == [(-600.0, 1500.0, "LUNG"), (40.0, 400.0, "MEDIASTINUM")], f"{meta.window_presets}")

    print("chest_ct/dicom via SimpleITK ImageSeriesReader:")
    series_uid = meta.series_uid
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(dicom_dir), series_uid))
    itk_dcm = reader.Execute()
    check("voxels equal", np.array_equal(sitk.GetArrayFromImage(itk_dcm), ref))
    check.geometry("geometry vs lung1_image.nrrd", (itk_dcm.GetSpacing(), itk_dcm.GetOrigin(),
                                                    itk_dcm.GetDirection()), ct_ref)

    print("chest_ct/dicom files:")
    images = sorted(dicom_dir.glob("image*.dcm"))
    syntaxes = {str(pydicom.dcmread(p, stop_before_pixels=True).file_meta.TransferSyntaxUID) for p in images}
    check("48 slices, all JPEG-LS lossless", len(images) == 48 and syntaxes == {JPEGLSLossless},
          f"{len(images)} files, {syntaxes}")
    rtss = pydicom.dcmread(dicom_dir / "rtss.dcm")
    ref_series = rtss.ReferencedFrameOfReferenceSequence[0].RTReferencedStudySequence[0] \
        .RTReferencedSeriesSequence[0].SeriesInstanceUID
    check("rtss.dcm refers to the CT series", rtss.Modality == "RTSTRUCT" and ref_series == series_uid,
          f"ROI {rtss.StructureSetROISequence[0].ROIName!r}, "
          f"{len(rtss.ROIContourSequence[0].ContourSequence)} contours")

    print("chest_ct/tumour_label.nrrd:")
    lab = sitk.ReadImage(str(CHEST / "tumour_label.nrrd"))
    lab_ref = sitk.GetArrayFromImage(sitk.ReadImage(str(CASES / "lung1_label.nrrd")))
    lab_arr = sitk.GetArrayFromImage(lab)
    check("uint8, voxels equal lung1_label.nrrd",
          lab_arr.dtype == np.uint8 and np.array_equal(lab_arr, lab_ref),
          f"values {np.unique(lab_arr).tolist()}, {int(lab_arr.sum())} tumour voxels")
    check.geometry("geometry vs CT NRRD", (lab.GetSpacing(), lab.GetOrigin(), lab.GetDirection()), ct_ref)
    lab_vol = medview.open_image(CHEST / "tumour_label.nrrd")
    check.geometry("geometry (medview) vs CT DICOM (medview)",
                   (lab_vol.geometry.spacing, lab_vol.geometry.origin, lab_vol.geometry.direction), itk_dcm)

    print("brain_mr:")
    t1 = sitk.ReadImage(str(BRAIN / "colin27_t1.nii.gz"))
    atlas = sitk.ReadImage(str(BRAIN / "aal_atlas.nii.gz"))
    check("atlas on the T1 grid", same_grid(t1, atlas),
          f"{t1.GetSize()}, spacing {t1.GetSpacing()}, origin {t1.GetOrigin()}")
    table = json.loads((BRAIN / "aal_labels.json").read_text())
    present = {int(v) for v in np.unique(sitk.GetArrayViewFromImage(atlas))} - {0}
    check("every atlas value is named", present <= {int(k) for k in table},
          f"{len(present)} values in image, {len(table)} names")
    mr = medview.open_image(BRAIN / "colin27_t1.nii.gz")
    check.geometry("T1 geometry (medview) vs SimpleITK",
                   (mr.geometry.spacing, mr.geometry.origin, mr.geometry.direction), t1, tol=1e-6)

    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    check("total size under 25 MiB", total < MAX_TOTAL_BYTES, f"{total / 2**20:.1f} MiB")
    return check.failures


def main() -> int:
    make_chest_ct()
    make_brain_mr()
    failures = verify()
    print("all checks passed" if not failures else f"{failures} check(s) FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
