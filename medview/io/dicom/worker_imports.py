"""The first module the decode workers' fork server imports: keeps download helpers out of the workers.

pydicom imports ``requests`` and ``tqdm`` when they are installed, for its optional test-data downloads;
that is 0.1 s of the fork server's start (``python -X importtime``), and the first scan of a study waits
for the fork server.  Workers only parse headers and decode pixels and never download, so in them these
imports fail as if the packages were absent (pydicom then does without).  Never imported by medview's own
process: :mod:`medview.io.dicom.parallel` names it only in the fork server's preload list.

The same fork server starts the GUI's job processes (:mod:`medview.app.offload`), and a job may need them (a
DICOMweb retrieve runs dicomweb-client, which is built on ``requests``): a job's process calls
:func:`allow_again` first.
"""

from __future__ import annotations

import sys

NOT_IN_WORKERS = ("requests", "tqdm")

for _name in NOT_IN_WORKERS:
    sys.modules.setdefault(_name, None)  # type: ignore[arg-type]  # None makes 'import requests' fail


def allow_again() -> None:
    """Undo the block in this process (a job's, not a decode worker's): the packages import as usual again."""
    for name in NOT_IN_WORKERS:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
