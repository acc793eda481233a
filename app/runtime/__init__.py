"""The bot runtime: port pool, launcher, supervisor and the control interface (control.py)."""
