"""FreqUI for every bot with one BTC Watcher login, served by the gateway from its own origin.

FreqUI (FreqTrade's web UI, a static single-page app built for the root of an origin) is served
from `system.gateway.frequi_dir` at the gateway's `/`; its API calls go to
`<gateway>/api/strategy/<id>/api/v1/…` on the same origin, so no CORS is involved.

The login is the web app's: its `/frequi` page (behind the BTC Watcher login) sends the browser
here with a one-time ticket (signed with the shared SECRET_KEY, valid 60 s, used once — kept in
Redis); `/frequi/login` turns it into the gateway's own FreqUI cookie (HttpOnly, as long-lived
as a web session, ended by logout or a password change like every session). Each load of FreqUI's
page then writes FreqUI's bot list (`ftAuthLoginInfo` in localStorage) before FreqUI starts:
every running strategy, with gateway-issued tokens (access 15 min, refresh 30 days, as
FreqTrade's own) — the same list on every browser; bots that started or stopped appear or go
on the next load, and bots the user added to FreqUI by hand are kept.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer
from redis.exceptions import RedisError

from app.auth import service as auth
from app.extensions import redis_store
from app.gateway.routes_cache import Route
from app.runtime.paths import resolve_path
from app.system.settings import current_settings

TICKET_SECONDS = 60
COOKIE = "btcw_frequi"
BOT_PREFIX = "btcw-"  # FreqUI bot ids this module owns in ftAuthLoginInfo
LOGIN_PATH = "/frequi/login"


class FrequiError(Exception):
    """FreqUI cannot be served or entered; `status` and a message that says what to do."""

    def __init__(self, message: str, status: int = 401):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class FrequiUser:
    user_id: int
    username: str


def _serializer(secret: str, what: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(secret, salt=f"btcw-frequi-{what}")


def build_dir() -> Path | None:
    """The configured FreqUI build, or None when none is configured."""
    folder = current_settings().system.gateway.frequi_dir
    if not folder:
        return None
    return resolve_path(str(Path(folder).expanduser()))


def index_file() -> Path:
    """FreqUI's index.html; FrequiError(404) saying how to get a build when there is none."""
    folder = build_dir()
    if folder is None:
        raise FrequiError("FreqUI is not set up: put a FreqUI build in a folder (see the README: "
                          "`freqtrade install-ui` downloads one) and set "
                          "system.gateway.frequi_dir to it.", 404)
    index = folder / "index.html"
    if not index.is_file():
        raise FrequiError(f"system.gateway.frequi_dir ({folder}) holds no index.html: it must be "
                          f"a FreqUI build (the folder with index.html and assets/).", 404)
    return index


# ------------------------------------------------------------------------ tickets and cookie


def make_ticket(secret: str, user) -> str:
    """A one-time ticket for `user` (web app side): valid TICKET_SECONDS, used once."""
    return _serializer(secret, "ticket").dumps(
        {"u": user.id, "p": auth.session_mark(user), "n": secrets.token_urlsafe(12)})


def _user_for(payload) -> FrequiUser:
    if not isinstance(payload, dict) or not isinstance(payload.get("u"), int):
        raise FrequiError("Invalid FreqUI login; open FreqUI from BTC Watcher again.")
    user = auth.user_by_id(payload["u"])
    if user is None or payload.get("p") != auth.session_mark(user):
        raise FrequiError("Your BTC Watcher session ended (signed out or password changed); "
                          "open FreqUI from BTC Watcher again.")
    return FrequiUser(user.id, user.username)


def redeem_ticket(secret: str, ticket: str) -> tuple[FrequiUser, str]:
    """The user of a fresh, unused ticket and the FreqUI cookie value for them."""
    try:
        payload = _serializer(secret, "ticket").loads(ticket, max_age=TICKET_SECONDS)
    except BadSignature as exc:  # expired ones included
        raise FrequiError("This FreqUI link has expired or is invalid; open FreqUI from "
                          "BTC Watcher again.") from exc
    user = _user_for(payload)
    nonce = payload.get("n")
    try:
        fresh = redis_store.client.set(f"btcw:frequi:ticket:{nonce}", 1, nx=True,
                                       ex=TICKET_SECONDS * 2)
    except RedisError as exc:
        raise FrequiError("Cannot check the FreqUI link right now (Redis is down); try again "
                          "in a moment.", 503) from exc
    if not fresh:
        raise FrequiError("This FreqUI link was used already; open FreqUI from BTC Watcher "
                          "again.")
    cookie = _serializer(secret, "session").dumps({"u": user.user_id,
                                                   "p": payload.get("p")})
    return user, cookie


def cookie_max_age() -> int:
    """As long as a web session lasts."""
    return int(current_settings().system.security.session_expire_hours) * 3600


def user_of_cookie(secret: str, value: str | None) -> FrequiUser:
    """The user of the FreqUI cookie; FrequiError when missing, expired or ended."""
    if not value:
        raise FrequiError("Log in to BTC Watcher first.")
    try:
        payload = _serializer(secret, "session").loads(value, max_age=cookie_max_age())
    except BadSignature as exc:
        raise FrequiError("Your FreqUI login expired; open FreqUI from BTC Watcher again.") \
            from exc
    return _user_for(payload)


# ------------------------------------------------------------------------ the page


def bot_list(routes: list[Route], base_url: str, username: str, tokens: dict) -> dict:
    """FreqUI's ftAuthLoginInfo entries for the running strategies, keyed btcw-<id>."""
    return {f"{BOT_PREFIX}{route.strategy_id}": {
        "botName": route.name, "apiUrl": f"{base_url}/api/strategy/{route.strategy_id}",
        "username": username, "accessToken": tokens["access_token"],
        "refreshToken": tokens["refresh_token"], "autoRefresh": True, "sortId": number,
    } for number, route in enumerate(sorted(routes, key=lambda r: r.strategy_id))}


def _script_json(value) -> str:
    """JSON safe inside an inline <script> (no </script>, no HTML comment openers)."""
    return (json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("&", "\\u0026").replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


BOOT = """<script>(function () {
  var key = "ftAuthLoginInfo", bots = %(bots)s, selected = %(selected)s, known = {};
  try { known = JSON.parse(localStorage.getItem(key) || "{}") || {}; } catch (e) { known = {}; }
  Object.keys(known).forEach(function (id) { if (id.indexOf(%(prefix)s) === 0) delete known[id]; });
  Object.keys(bots).forEach(function (id) { known[id] = bots[id]; });
  localStorage.setItem(key, JSON.stringify(known));
  var current = localStorage.getItem("ftSelectedBot");
  if (selected && bots[selected]) localStorage.setItem("ftSelectedBot", selected);
  else if (!current || !known[current]) {
    var first = Object.keys(bots)[0];
    if (first) localStorage.setItem("ftSelectedBot", first);
  }
})();</script>
"""


def page(index: Path, bots: dict, selected: str | None) -> str:
    """FreqUI's index.html with the bot list written before its own scripts run."""
    html = index.read_text(encoding="utf-8")
    boot = BOOT % {"bots": _script_json(bots), "selected": _script_json(selected),
                   "prefix": _script_json(BOT_PREFIX)}
    at = html.find("<script")
    if at < 0:
        at = html.find("</head>")
    return html[:at] + boot + html[at:] if at >= 0 else boot + html
