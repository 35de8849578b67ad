"""Separate windows and dialogs of the workstation (radiograph viewer, ...)."""
