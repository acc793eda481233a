"""The market simulator: an offline Binance look-alike for dry-run bots, demos and tests.

``market`` holds the deterministic price model, ``server`` the Binance REST subset and the
``/_sim/`` control API, ``cli`` the ``flask simulator run`` command (``simulator_cli``).
"""
