"""Slice views and the layout grid that holds them."""
