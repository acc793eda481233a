"""Session-scoped real FreqTrade bots shared by every test that needs one (see runtime tests)."""
