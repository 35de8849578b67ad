"""DICOM networking: configured remote nodes (``nodes.toml``) and a DIMSE client (C-ECHO, C-FIND, C-STORE).

pynetdicom (the ``net`` extra) is imported only when a network operation runs.
"""
