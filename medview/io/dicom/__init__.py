"""DICOM: header-only scanning (scan.py) and pixel loading (load.py)."""
