"""Repair of one known encoder defect in sequential JPEG streams (ISO/IEC 10918-1), before decoding.

A sequential DCT scan (baseline SOF0, extended SOF1, arithmetic SOF9) must declare spectral selection
Ss = 0, Se = 63 and successive approximation Ah = Al = 0 in its start-of-scan (SOS) header (10918-1
B.2.3); only progressive scans use other values.  Some encoders wrote Se = 0 (e.g. NEMA's WG04 sample
NM1_JPLY, pydicom's ``JPEG-lossy.dcm``).  IJG's libjpeg, the decoder in DCMTK and GDCM, warns
("Invalid SOS parameters for sequential JPEG") and decodes the scan as the sequential scan it must be;
pylibjpeg-libjpeg refuses it.  :func:`repair_sequential_scans` writes the only legal values into such
headers, so the pinned pylibjpeg-libjpeg decodes the stream the way IJG does.
"""

from __future__ import annotations

_SEQUENTIAL_SOF = {0xC0, 0xC1, 0xC9}  # baseline, extended Huffman, extended arithmetic
_SOF = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # frame headers (C4 DHT, C8 JPG, CC DAC are not)
_SOI, _EOI, _SOS = 0xD8, 0xD9, 0xDA
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length


def repair_sequential_scans(stream: bytes) -> bytes | None:
    """The stream with every sequential scan header set to Ss=0, Se=63, Ah=Al=0; None if nothing changed.

    Returns None too for anything that is not a well-formed sequential JPEG stream (progressive,
    lossless, truncated headers): the decoder's own error then stands.
    """
    if len(stream) < 4 or stream[0] != 0xFF or stream[1] != _SOI:
        return None
    data = bytearray(stream)
    sequential: bool | None = None
    changed = False
    i = 2
    n = len(data)
    while i + 1 < n:
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == _EOI:
            break
        if marker in _STANDALONE:
            i += 2
            continue
        if i + 3 >= n:
            return None
        length = (data[i + 2] << 8) | data[i + 3]
        if length < 2 or i + 2 + length > n:
            return None
        if marker in _SOF:
            sequential = marker in _SEQUENTIAL_SOF
        elif marker == _SOS:
            if sequential is None:
                return None  # a scan before any frame header
            components = data[i + 4] if length > 2 else 0
            tail = i + 5 + 2 * components  # Ss, Se, Ah/Al follow the component specifications
            if length != 6 + 2 * components or tail + 2 >= n:
                return None
            if sequential and (data[tail], data[tail + 1], data[tail + 2]) != (0, 63, 0):
                data[tail], data[tail + 1], data[tail + 2] = 0, 63, 0
                changed = True
            i = _after_entropy_data(data, i + 2 + length)
            continue
        i += 2 + length
    return bytes(data) if changed else None


def _after_entropy_data(data: bytearray, i: int) -> int:
    """Index of the first marker after a scan's entropy-coded data (stuffed 0xFF00 and RSTn are data)."""
    n = len(data)
    while i + 1 < n:
        if data[i] == 0xFF and data[i + 1] != 0x00 and not 0xD0 <= data[i + 1] <= 0xD7 and data[i + 1] != 0xFF:
            return i
        i += 1
    return n
