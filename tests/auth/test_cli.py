"""flask users create / tokens create."""

from app.auth import service


def test_users_create_reads_password_twice_from_a_pipe(runner):
    result = runner.invoke(args=["users", "create", "carol"], input="s3cret-pass!\ns3cret-pass!\n")
    assert result.exit_code == 0, result.output
    assert service.user_by_name("carol") is not None


def test_users_create_refuses_mismatch_and_weak(runner):
    result = runner.invoke(args=["users", "create", "dave"], input="s3cret-pass!\nother-pass!\n")
    assert result.exit_code != 0 and "differ" in result.output
    result = runner.invoke(args=["users", "create", "dave"], input="weakpass\nweakpass\n")
    assert result.exit_code != 0 and "special character" in result.output
    assert service.user_by_name("dave") is None


def test_tokens_create_prints_token_last(runner, user, client):
    result = runner.invoke(args=["tokens", "create", "ci"])
    assert result.exit_code == 0, result.output
    token = result.output.strip().splitlines()[-1]
    assert token.startswith("btcw_")
    response = client.get("/api/v1/system/config/proxy",
                          headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
