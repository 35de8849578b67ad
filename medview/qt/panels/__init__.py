"""Dock-able panels of the main window."""
