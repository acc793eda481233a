"""The gateway: one port (8080) in front of every bot (SPEC §5).

`register_gateway(app)` puts the streaming proxy (proxy.py, a WSGI layer for
/api/strategy/<id>/…) in front of the Flask app, which serves the websocket proxy and the
gateway's own endpoints (routes.py). The supervisor calls
`app.gateway.routes_cache.publish_route_change(strategy_id)` whenever a route changes.
"""

from __future__ import annotations

from flask import Flask


def register_gateway(app: Flask) -> None:
    """Turn a Flask app (create_gateway_app) into the gateway."""
    from app import errors
    from app.gateway import routes
    from app.gateway.proxy import GatewayProxy

    errors.register(app)
    app.register_blueprint(routes.bp)
    proxy = GatewayProxy(app, app.wsgi_app)
    app.extensions["btcw_gateway"] = proxy
    app.wsgi_app = proxy
