"""System: health, configuration, versions, the system page."""
