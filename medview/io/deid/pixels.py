"""Pixels that may show identities: burned-in text (issue 19).

De-identifying the header does nothing for a name written into the image itself.  An image is *at risk* when it
says so (Burned In Annotation YES) or when it does not say and is of a kind that often carries text: ultrasound,
secondary capture and screen captures (the Secondary Capture family of SOP classes), and projection radiographs
(CR, DX, MG, XA, RF, IO, PX) whose operators annotate on the modality.  Such an image is refused unless the user
gives rectangles to blank for it (per modality and image size); it is never passed through silently.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
from pydicom.dataset import Dataset

from medview.core.errors import MedviewError

TEXT_PRONE_MODALITIES = frozenset({"US", "SC", "OT", "CR", "DX", "MG", "XA", "RF", "IO", "PX", "ES", "XC", "GM"})
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"  # the Secondary Capture family: ...1.7, ...1.7.1 to ...1.7.4


class BurnedInTextError(MedviewError):
    """The image may carry burned-in identifying text and no mask was given for it."""


@dataclass(frozen=True)
class Rect:
    """A rectangle to blank, in pixels: columns ``x`` to ``x + width``, rows ``y`` to ``y + height``."""

    x: int
    y: int
    width: int
    height: int


def burned_in_reason(ds: Dataset) -> str | None:
    """Why ``ds``'s pixels may show identifying text, or None when they are taken as clean (Burned In
    Annotation NO, or absent on a modality that seldom has text, such as CT and MR)."""
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        return None
    said = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    if said == "YES":
        return "Burned In Annotation is YES"
    if said == "NO":
        return None
    modality = str(ds.get("Modality", "") or "").upper()
    sop_class = str(ds.get("SOPClassUID", "") or "")
    if sop_class == SECONDARY_CAPTURE or sop_class.startswith(SECONDARY_CAPTURE + "."):
        return "a secondary capture or screen capture without Burned In Annotation"
    if modality in TEXT_PRONE_MODALITIES:
        return f"a {modality} image without Burned In Annotation"
    return None


def masks_for(ds: Dataset, masks: Mapping[tuple[str, int, int], Iterable[Rect]]) -> list[Rect] | None:
    """The rectangles the user gave for this image's (modality, columns, rows), or None."""
    key = (str(ds.get("Modality", "") or "").upper(), int(ds.get("Columns", 0) or 0), int(ds.get("Rows", 0) or 0))
    found = masks.get(key)
    return None if found is None else list(found)


def apply_masks(ds: Dataset, rects: Iterable[Rect]) -> None:
    """Blank ``rects`` in every frame of ``ds`` (to the smallest stored value, black on MONOCHROME2), store the
    pixels uncompressed (Explicit VR Little Endian) and record Burned In Annotation NO."""
    from pydicom.uid import ExplicitVRLittleEndian

    try:
        pixels = ds.pixel_array.copy()
    except Exception as exc:  # a codec pydicom lacks, damaged data: the image cannot be cleaned
        raise BurnedInTextError(f"the pixels cannot be decoded to mask them ({type(exc).__name__}: {exc})") from None
    rows, cols = int(ds.Rows), int(ds.Columns)
    frames = pixels.reshape((-1, rows, cols) + pixels.shape[-1:] if int(ds.get("SamplesPerPixel", 1)) > 1
                            else (-1, rows, cols))
    fill = _fill_value(ds, pixels)
    for rect in rects:
        x0, y0 = max(0, int(rect.x)), max(0, int(rect.y))
        x1, y1 = min(cols, x0 + int(rect.width)), min(rows, y0 + int(rect.height))
        if x1 > x0 and y1 > y0:
            frames[:, y0:y1, x0:x1] = fill
    if ds.file_meta.TransferSyntaxUID.is_compressed or ds.get("PhotometricInterpretation", "").startswith("YBR"):
        if ds.get("PhotometricInterpretation", "").startswith("YBR"):
            ds.PhotometricInterpretation = "RGB"  # pixel_array converted YBR to RGB
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        if int(ds.get("SamplesPerPixel", 1)) > 1:
            ds.PlanarConfiguration = 0
    ds.PixelData = frames.reshape(pixels.shape).tobytes()
    ds["PixelData"].VR = "OB" if int(ds.BitsAllocated) <= 8 else "OW"
    ds["PixelData"].is_undefined_length = False
    ds.BurnedInAnnotation = "NO"


def _fill_value(ds: Dataset, pixels: np.ndarray):
    """Black in the stored range: the lowest stored value, the highest for MONOCHROME1."""
    bits = int(ds.get("BitsStored", 8 * pixels.dtype.itemsize))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    if pixels.dtype.kind == "f":
        low, high = float(pixels.min()), float(pixels.max())
    return high if str(ds.get("PhotometricInterpretation", "")).upper() == "MONOCHROME1" else low
