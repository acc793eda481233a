"""Monitoring and capacity: periodic status, health scores, capacity."""
