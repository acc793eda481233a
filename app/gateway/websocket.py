"""The bot's message websocket through the gateway.

`/api/strategy/<id>/api/v1/message/ws?token=<gateway access token or API token>` (FreqUI's way)
is checked *before* the upgrade (bad token → 403, unknown id → 404, bot down → 502, like a plain
request), then the gateway opens the bot's own `/api/v1/message/ws?token=<ws_token>` and pumps
frames both ways until either side closes; the bot's close code (1012 after reload_config)
reaches the caller. The bot's ws_token never leaves the gateway.
"""

from __future__ import annotations

import logging
import struct
import threading

import websocket  # websocket-client
from flask import Response, current_app, request
from simple_websocket import ConnectionClosed, Server

from app.errors import error_response
from app.gateway.auth import AuthFailure
from app.gateway.proxy import PREFIX
from app.gateway.routes_cache import mask

log = logging.getLogger(__name__)

SERVER_OPTIONS = {"ping_interval": 25, "max_message_size": 16 * 1024 * 1024}


def _error(code: int, message: str):
    return error_response(code, message)


def message_ws(strategy_id: int):
    """Flask view (websocket=True): authenticate, connect to the bot, then pump frames."""
    proxy = current_app.extensions["btcw_gateway"]
    route = proxy.routes.get(strategy_id)
    if route is None:
        return _error(404, f"No strategy with id {strategy_id}.")
    try:
        proxy.auth.identify(request.environ, "GET", query_token=request.args.get("token"))
    except AuthFailure as exc:
        return _error(403, exc.message)
    if not route.routable:
        return _error(502, f"The bot of {route.label} is not running (status: {route.status}).")
    gw = current_app.extensions["btcw_settings"].settings.system.gateway
    url = f"ws://{route.upstream}/api/v1/message/ws?token={route.ws_token}"
    try:
        upstream = websocket.create_connection(url, timeout=gw.connect_timeout,
                                               enable_multithread=True)
    except Exception as exc:  # noqa: BLE001 - every failure to reach the bot is a 502
        reason = str(exc).replace(route.ws_token, "***")
        log.warning("gateway ws: %s unreachable: %s", route.label, reason)
        return _error(502, f"The bot of {route.label} refused its message websocket at "
                           f"{route.upstream} ({type(exc).__name__}). Is it running?")
    upstream.settimeout(None)
    ws = Server(request.environ, **SERVER_OPTIONS)
    _pump(ws, upstream, route.label, route.secrets)
    return _finished(ws)


def _pump(ws: Server, upstream: websocket.WebSocket, label: str,
          secrets: tuple[bytes, ...]) -> None:
    """Bot → caller in a helper thread (a greenlet under gevent), caller → bot here; the
    bot's secrets are masked in what reaches the caller."""
    closed = threading.Event()

    def bot_to_caller() -> None:
        code, message = 1011, "bot connection lost"
        try:
            while not closed.is_set():
                opcode, data = upstream.recv_data(control_frame=True)
                if opcode == websocket.ABNF.OPCODE_TEXT:
                    ws.send(mask(bytes(data), secrets).decode("utf-8", "replace"))
                elif opcode == websocket.ABNF.OPCODE_BINARY:
                    ws.send(mask(bytes(data), secrets))
                elif opcode == websocket.ABNF.OPCODE_CLOSE:
                    if len(data) >= 2:
                        code = struct.unpack("!H", data[:2])[0]
                        message = data[2:].decode("utf-8", "replace")
                    else:
                        code, message = 1000, ""
                    break
        except (websocket.WebSocketException, ConnectionClosed, OSError) as exc:
            log.debug("gateway ws: %s upstream ended: %s", label, exc)
        finally:
            closed.set()
            try:
                ws.close(reason=code, message=message)
            except Exception:  # noqa: BLE001, S110 - the caller may be gone already
                pass

    pump = threading.Thread(target=bot_to_caller, name="btcw-ws-pump", daemon=True)
    pump.start()
    try:
        while not closed.is_set():
            data = ws.receive(timeout=1.0)
            if data is None:
                continue
            if isinstance(data, bytes):
                upstream.send_binary(data)
            else:
                upstream.send(data)
    except (ConnectionClosed, websocket.WebSocketException, OSError) as exc:
        log.debug("gateway ws: %s caller ended: %s", label, exc)
    finally:
        closed.set()
        try:
            upstream.close()
        except Exception:  # noqa: BLE001, S110
            pass
        pump.join(timeout=5)


def _finished(ws: Server) -> Response:
    """The response after a websocket ends (what flask-sock does per server mode)."""

    class WebSocketResponse(Response):
        def __call__(self, *args, **kwargs):
            if ws.mode == "gunicorn":
                raise StopIteration()
            if ws.mode == "werkzeug":
                return super().__call__(*args, **kwargs)
            return []

    return WebSocketResponse()


def ws_paths() -> list[str]:
    """The websocket URL rules (with and without the /api/v1 part)."""
    return [f"{PREFIX}<int:strategy_id>/api/v1/message/ws", f"{PREFIX}<int:strategy_id>/message/ws"]
