"""Monitoring: how production models and the live engine are doing, and the alerts about it."""
