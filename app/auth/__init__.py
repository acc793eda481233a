"""Auth: login, logout, sessions and API tokens."""
