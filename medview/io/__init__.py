"""Readers and writers: DICOM through pydicom and its codecs, research formats through SimpleITK."""
