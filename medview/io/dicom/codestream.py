"""The image size a compressed frame's own header claims, read before any decoder sees the frame.

A decoder sizes its work from the codestream (JPEG's SOF, JPEG-LS's SOF55, JPEG 2000's SIZ, RLE's segment
table), pydicom sizes the output from Rows and Columns: when the two disagree, GDCM throws an uncaught C++
exception (``gdcmBitmap.cxx ... len <= outbv->GetLength()``, the process aborts) and other decoders allocate
what the stream claims (65535 x 65535).  :func:`check_frame` compares them first, in pure Python.
"""

from __future__ import annotations

import struct

from medview.core.errors import CorruptFileError

JPEG_FAMILY = {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57",
               "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
J2K_FAMILY = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.201",
              "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203"}
RLE = "1.2.840.10008.1.2.5"
# start-of-frame markers: baseline, extended, progressive, lossless (Huffman and arithmetic), JPEG-LS
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_STANDALONE = {0x01, *range(0xD0, 0xD9)}  # TEM, RSTn, SOI: no length field


def jpeg_size(frame: bytes) -> tuple[int, int, int, int] | None:
    """(rows, columns, components, precision) from a JPEG or JPEG-LS frame header; None if there is none."""
    if frame[:2] != b"\xff\xd8":
        return None
    i = 2
    n = len(frame)
    while i + 4 <= n:
        if frame[i] != 0xFF:
            return None
        marker = frame[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _STANDALONE:
            i += 2
            continue
        length = struct.unpack(">H", frame[i + 2:i + 4])[0]
        if marker in _SOF:
            if i + 10 > n:
                return None
            rows, cols = struct.unpack(">HH", frame[i + 5:i + 9])
            return rows, cols, frame[i + 9], frame[i + 4]
        if marker == 0xDA or length < 2:  # scan data before any frame header
            return None
        i += 2 + length
    return None


def j2k_size(frame: bytes) -> tuple[int, int, int] | None:
    """(rows, columns, components) from a JPEG 2000 codestream's SIZ marker (a JP2 wrapper is skipped)."""
    offset = 0
    if frame[4:8] == b"jP  ":  # JP2 file: find the contiguous codestream box
        i = 0
        while i + 8 <= len(frame):
            length = struct.unpack(">I", frame[i:i + 4])[0]
            if frame[i + 4:i + 8] == b"jp2c":
                offset = i + 8
                break
            if length < 8:
                return None
            i += length
        else:
            return None
    head = frame[offset:offset + 42]
    if len(head) < 42 or head[:4] != b"\xff\x4f\xff\x51":
        return None
    xsiz, ysiz, xo, yo = struct.unpack(">IIII", head[8:24])
    components = struct.unpack(">H", head[40:42])[0]
    return max(ysiz - yo, 0), max(xsiz - xo, 0), components


def check_frame(frame: bytes, ts: str, rows: int, columns: int, samples: int, bits_allocated: int,
                location: str) -> None:
    """Raise :class:`CorruptFileError` when a compressed frame's own header disagrees with the DICOM header."""
    if ts == RLE:
        if len(frame) < 64:
            raise CorruptFileError(f"The RLE pixel data of {location} is incomplete: its 64-byte header is missing")
        segments = struct.unpack("<I", frame[:4])[0]
        expected = samples * max(bits_allocated // 8, 1)
        offsets = struct.unpack("<15I", frame[4:64])[:min(segments, 15)]
        if segments != expected or any(o < 64 or o > len(frame) for o in offsets) or list(offsets) != sorted(offsets):
            raise CorruptFileError(
                f"The RLE pixel data of {location} does not match its header: {segments} segment(s) for "
                f"{samples} sample(s) of {bits_allocated} bits (expected {expected}), or segment offsets outside "
                "the frame")
        # a PackBits run packet of 2 bytes gives at most 128: a shorter segment cannot fill rows x columns
        ends = [*offsets[1:], len(frame)]
        if any((end - start) * 64 < rows * columns for start, end in zip(offsets, ends, strict=True)):
            raise CorruptFileError(
                f"The RLE pixel data of {location} is too short for {columns}x{rows} pixels: the header's size or "
                "the data is damaged")
        return
    precision = 0
    if ts in JPEG_FAMILY:
        header, kind = jpeg_size(frame), "JPEG"
        size = header[:3] if header else None
        precision = header[3] if header else 0
    elif ts in J2K_FAMILY:
        size, kind = j2k_size(frame), "JPEG 2000"
    else:
        return
    if size is None:
        raise CorruptFileError(f"The {kind} pixel data of {location} has no readable frame header")
    if kind == "JPEG" and (bits_allocated not in (8, 16) or precision > bits_allocated):
        raise CorruptFileError(f"{location} says {bits_allocated} bits allocated per sample, but its JPEG data "
                               f"holds {precision}-bit samples (JPEG needs 8 or 16 bits allocated): the file is "
                               "damaged")
    s_rows, s_cols, s_comp = size
    if (s_rows not in (0, rows)) or s_cols != columns or s_comp != samples:  # JPEG may give rows 0 (DNL marker)
        raise CorruptFileError(
            f"{location} says {columns}x{rows} pixels, {samples} sample(s) per pixel, but its {kind} data holds "
            f"{s_cols}x{s_rows} pixels, {s_comp} component(s): the file is damaged")
