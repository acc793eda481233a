"""The exchange relay: one shared, rate-budgeted door to the exchange for every bot of a host."""
