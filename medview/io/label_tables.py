"""Label names and colours from the text tables atlases ship beside their label image.

The common sidecar formats, recognised by their lines rather than their names:

* **MRIcron / AAL** ``aal.nii.txt``: ``index name [code]`` per line (space or tab separated; AAL's third
  column is the region's AAL code, not a colour).  MRIcron keeps colours in ``aal.nii.lut``: 768 bytes,
  256 reds, then 256 greens, then 256 blues (indexed by label value).
* **FreeSurfer colour LUT** (``FreeSurferColorLUT.txt``, 3D Slicer ``.ctbl``): ``index name R G B A``.
* **ITK-SNAP label description**: ``IDX R G B A VIS MSH "name"``, comments starting with ``#``.

:func:`find_label_table` looks beside an image ``S.nii.gz`` for ``S.nii.txt``, ``S.txt``, ``S_labels.txt``,
``SLUT.txt``, ``S_LUT.txt``, ``S.ctbl``, ``S.label``, ``label_descriptions.txt``,
``FreeSurferColorLUT.txt`` (first found wins) and for MRIcron's ``S.nii.lut`` / ``S.lut`` colours.
Value 0 (background, "Clear Label", "Unknown") is never a label.
"""

from __future__ import annotations

import re
from pathlib import Path

Table = dict[int, dict]  # value -> {"name": str, "color": (r, g, b)} ("color" only when the file gives one)

_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".hdr", ".img", ".dcm")
_ITKSNAP_LINE = re.compile(r'^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.eE+-]+)\s+(\d+)\s+(\d+)\s+"(.*)"\s*$')
_MAX_TABLE_BYTES = 4 << 20


def _stems(image: Path) -> tuple[str, str]:
    """``(name without image suffix, name without its last suffix)``: ``aal.nii.gz`` -> ``aal``, ``aal.nii``."""
    name = image.name
    lower = name.lower()
    for suffix in _IMAGE_SUFFIXES:
        if lower.endswith(suffix):
            stem = name[: -len(suffix)]
            return stem, stem + (".nii" if suffix == ".nii.gz" else suffix)
    return image.stem, name


def _is_byte(text: str) -> bool:
    return text.isdigit() and int(text) <= 255


def parse_label_table(text: str) -> Table:
    """Entries of an MRIcron/AAL, FreeSurfer LUT or ITK-SNAP label description text (see module doc).

    Lines that fit none of the formats (headers, comments) are skipped.
    """
    table: Table = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        snap = _ITKSNAP_LINE.match(line)
        if snap:
            value = int(snap.group(1))
            if value > 0:
                table[value] = {"name": snap.group(8).strip() or f"Label {value}",
                                "color": tuple(int(snap.group(k)) for k in (2, 3, 4))}
            continue
        fields = line.split("\t") if "\t" in line.strip() else line.split()
        fields = [f.strip() for f in fields if f.strip()]
        if len(fields) < 2 or not fields[0].isdigit():
            continue
        value, rest = int(fields[0]), fields[1:]
        if "\t" not in line.strip():  # whitespace separated: a name may span words before the numbers
            color_fields = 4 if len(rest) >= 5 and all(_is_byte(f) for f in rest[-4:]) else \
                3 if len(rest) >= 4 and all(_is_byte(f) for f in rest[-3:]) else 0
            numbers = color_fields or (1 if len(rest) >= 2 and rest[-1].lstrip("-").isdigit() else 0)
            name = " ".join(rest[: len(rest) - numbers]) if numbers else " ".join(rest)
            color = tuple(int(f) for f in rest[-color_fields:][:3]) if color_fields else None
        else:
            name = rest[0]
            color = tuple(int(f) for f in rest[1:4]) if len(rest) >= 4 and all(map(_is_byte, rest[1:4])) else None
        if value <= 0 or not name:
            continue
        table[value] = {"name": name, **({"color": color} if color else {})}
    return table


def read_mricron_lut(path: Path) -> dict[int, tuple[int, int, int]]:
    """MRIcron's binary ``.lut``: value -> (r, g, b) for values 1..255."""
    data = path.read_bytes()
    if len(data) != 768:
        return {}
    return {v: (data[v], data[256 + v], data[512 + v]) for v in range(1, 256)}


def _candidates(image: Path) -> list[Path]:
    stem, with_suffix = _stems(image)
    folder = image.parent
    names = [f"{with_suffix}.txt", f"{stem}.txt", f"{stem}_labels.txt", f"{stem}LUT.txt", f"{stem}_LUT.txt",
             f"{stem}.ctbl", f"{stem}.label", "label_descriptions.txt", "FreeSurferColorLUT.txt"]
    return [folder / n for n in dict.fromkeys(names)]


def find_label_table(image: str | Path) -> tuple[Table, Path | None]:
    """The label table beside ``image`` (names, and colours when the file or an MRIcron ``.lut`` gives
    them) and the file it came from; ``({}, None)`` when there is none."""
    image = Path(image)
    table: Table = {}
    source = None
    for candidate in _candidates(image):
        if candidate.is_file() and candidate.stat().st_size <= _MAX_TABLE_BYTES:
            try:
                table = parse_label_table(candidate.read_text(encoding="utf-8", errors="replace"))
            except OSError:
                continue
            if table:
                source = candidate
                break
    if not table:
        return {}, None
    stem, with_suffix = _stems(image)
    for lut in (image.parent / f"{with_suffix}.lut", image.parent / f"{stem}.lut"):
        if lut.is_file():
            colors = read_mricron_lut(lut)
            for value, entry in table.items():
                if "color" not in entry and value in colors:
                    entry["color"] = colors[value]
            break
    return table, source
