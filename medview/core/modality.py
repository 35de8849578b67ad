"""Does an image's modality fit a tool made for one modality (a CT model, a virtual radiograph)?

A model trained on CT labels the air around an MR head "Lungs"; a ray sum of MR signal is no radiograph.
Such a run needs the user's explicit word: a dialog in the GUI, ``--allow-modality-mismatch`` on the command
line, ``allow_modality_mismatch=True`` in the API.  An image whose file does not say its modality (NRRD, NIfTI:
modality ``""`` or ``"unknown"``) does not match either: the reader cannot know it is a CT.
"""

from __future__ import annotations

from medview.core.errors import MedviewError

UNKNOWN = "unknown"
ALLOW_FLAG = "--allow-modality-mismatch"


class ModalityMismatchError(MedviewError):
    """The image's modality is not (or not known to be) the one a tool was made for; nothing was run."""


def shown_modality(modality: str | None) -> str:
    """The modality as a message names it: the DICOM code, or ``'unknown'``."""
    text = (modality or "").strip()
    return text if text and text.lower() != UNKNOWN else UNKNOWN


def modality_matches(expected: str, actual: str | None) -> bool:
    """True only when ``actual`` is known and is ``expected`` (DICOM codes, any case)."""
    shown = shown_modality(actual)
    return shown != UNKNOWN and shown.upper() == expected.strip().upper()


def modality_mismatch(expected: str, actual: str | None, what: str) -> str | None:
    """None when ``actual`` matches ``expected``; else a sentence saying what ``what`` was made for and what
    this image is (for a dialog, a warning or an error)."""
    if modality_matches(expected, actual):
        return None
    shown = shown_modality(actual)
    this = "of unknown modality (the file does not say)" if shown == UNKNOWN else f"{shown}"
    return f"{what} is made for {expected} images; this image is {this}, so its result would not mean anything"


def check_modality(expected: str, actual: str | None, what: str, *, allow_mismatch: bool = False) -> str | None:
    """:func:`modality_mismatch`, raised as :class:`ModalityMismatchError` unless ``allow_mismatch``.

    Returns the mismatch sentence (to report as a warning) when the mismatch is allowed, None on a match.
    """
    problem = modality_mismatch(expected, actual, what)
    if problem is not None and not allow_mismatch:
        raise ModalityMismatchError(f"{problem}. Nothing was run. If you know the image is {expected}, run it "
                                    f"anyway: confirm in the dialog, or pass {ALLOW_FLAG} on the command line")
    return problem
