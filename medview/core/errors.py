"""Error types with messages a clinician or researcher can act on.

Every failure caused by the input (a file, a folder, a parameter) raises a subclass of
:class:`MedviewError`.  The GUI shows ``str(error)`` in a dialog; the CLI prints it on one line to
stderr and exits with :attr:`MedviewError.exit_code` (3 for bad input).  Programming errors are not
wrapped: they keep their traceback so they can be fixed.
"""

from __future__ import annotations


class MedviewError(Exception):
    """Base class of all errors caused by input rather than by a bug."""

    exit_code = 3

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:  # one line, no traceback noise
        message = super().__str__()
        if self.path and self.path not in message:
            return f"{message} ({self.path})"
        return message


class InputNotFoundError(MedviewError):
    """The path does not exist or holds nothing medview can read."""


class UnsupportedFormatError(MedviewError):
    """The file exists but is not an image format medview reads."""


class CorruptFileError(MedviewError):
    """The file claims to be a supported format but cannot be parsed (truncated, malformed)."""


class DecodeError(MedviewError):
    """Pixel data could not be decoded (missing codec, damaged compressed stream)."""


class ResourceLimitError(MedviewError):
    """Reading the input would exceed a configured memory or size budget."""


class SeriesNotFoundError(MedviewError):
    """The requested series UID is not in the scanned input."""


class AmbiguousInputError(MedviewError):
    """The input holds several series and the caller did not say which one to open."""


class InconsistentSeriesError(MedviewError):
    """Slices of one series disagree in a way that makes a single volume impossible."""


class WriteError(MedviewError):
    """An output file could not be written."""


class CancelledError(MedviewError):
    """The user cancelled a running task.  Not a failure: nothing is reported as an error."""

    exit_code = 130
