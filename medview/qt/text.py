"""How DICOM values read on screen, one place for the panels, the views and the window title."""

from __future__ import annotations


def display_date(value: object, empty: str = "") -> str:
    """A DA value (YYYYMMDD) as YYYY-MM-DD; anything else as it is, ``empty`` for nothing."""
    text = str(value or "")
    return f"{text[:4]}-{text[4:6]}-{text[6:8]}" if len(text) == 8 and text.isdigit() else text or empty


def display_name(value: object) -> str:
    """A PN value with its ^ separators as spaces."""
    return str(value or "").replace("^", " ").strip()
