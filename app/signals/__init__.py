"""Signals: webhook ingestion, grading, storage and live pages."""
