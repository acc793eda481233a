"""Login lockout: counted atomically, per account and source address, the account past a higher
threshold (unattended operation, security item 1)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from app.auth import service
from tests.conftest import PASSWORD

# The count is one statement on either database (an upsert with RETURNING).
pytestmark = pytest.mark.both_databases


@pytest.fixture
def checks(monkeypatch):
    """How many password hashes were checked."""
    counted = []
    real = service.check_password_hash

    def counting(*args):
        counted.append(1)
        return real(*args)

    monkeypatch.setattr(service, "check_password_hash", counting)
    return counted


def test_a_burst_of_parallel_guesses_gets_only_the_allowed_checks(app, user, checks):
    def guess(_):
        with app.app_context():
            return service.authenticate("alice", "wrong-guess!", source="203.0.113.9")

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = list(pool.map(guess, range(100)))
    assert len(checks) == 5, "a password was checked past the limit"
    assert all(r.user is None for r in results)
    assert sum(1 for r in results if r.locked_until) >= 95
    # The right password from that address is refused now...
    assert service.authenticate("alice", PASSWORD, source="203.0.113.9").user is None
    # ...but the owner, elsewhere, is not locked out.
    assert service.authenticate("alice", PASSWORD, source="198.51.100.1").user is not None


def test_failures_from_many_addresses_lock_the_whole_account(app, user, system_settings):
    system_settings("security", account_lockout_attempts=8)
    for n in range(8):
        result = service.authenticate("alice", "wrong-guess!", source=f"192.0.2.{n}")
    assert result.locked_until is not None
    locked = service.authenticate("alice", PASSWORD, source="198.51.100.1")
    assert locked.user is None and locked.error == "Account locked."


def test_a_success_resets_the_count_of_its_address(app, user):
    for _ in range(4):
        service.authenticate("alice", "wrong-guess!", source="203.0.113.9")
    assert service.authenticate("alice", PASSWORD, source="203.0.113.9").user is not None
    again = service.authenticate("alice", "wrong-guess!", source="203.0.113.9")
    assert again.attempts_left == 4 and again.locked_until is None


def test_a_password_change_lifts_the_locks(app, user):
    for _ in range(5):
        service.authenticate("alice", "wrong-guess!", source="203.0.113.9")
    service.set_password(user, "another-pass!word")
    assert service.authenticate("alice", "another-pass!word",
                                source="203.0.113.9").user is not None
