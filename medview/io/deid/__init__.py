"""De-identification (issue 19): DICOM PS3.15 Annex E, the Basic Application Level Confidentiality Profile and
its options, applied to everything in a file.  ``profile`` holds the standard's Table E.1-1 as data
(``resources/deid/ps3.15-e1-1.json``, made by ``packaging/deid/make_profile_table.py``)."""
