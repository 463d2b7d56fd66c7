"""Tracking: our ids in outbound mail (ids.py), and the open/click endpoint's signed links."""
