"""Reusable pieces of the dashboard: pure figure builders, audio helpers, diff rendering, share and error widgets."""
