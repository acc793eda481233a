"""The bot runtime: port pool, launcher, supervisor and the control interface (control.py).

The strategies package is imported first: its routes import app.runtime.control, and control
imports the strategies models, so loading it from here keeps either import order working.
"""

import app.strategies  # noqa: F401
