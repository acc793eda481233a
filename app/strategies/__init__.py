"""Strategies: records, pages, JSON API and CLI for the FreqTrade bots."""
