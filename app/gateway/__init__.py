"""The gateway: one port (8080) in front of every bot (SPEC §5).

`create_gateway_app()` (app/__init__.py) puts the streaming proxy (proxy.py, a WSGI layer for
/api/strategy/<id>/…) in front of a Flask app, which serves the websocket proxy and the
gateway's own endpoints (routes.py). The supervisor calls
`app.gateway.routes_cache.publish_route_change(strategy_id)` whenever a route changes.
"""
