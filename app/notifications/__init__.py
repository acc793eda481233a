"""Notifications: channels, policy, delivery and history."""
