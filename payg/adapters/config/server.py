"""The web server's limits, read the same for a controller ([web.server]) and the hub ([hub.server])."""

from __future__ import annotations

from payg.adapters.config.tables import Table, fill
from payg.domain.settings import ServerConfig


def server_table(t: Table) -> ServerConfig:
    """A web server's limits: a controller's [web.server], the hub's [hub.server]."""
    server = fill(t, ServerConfig)
    if server.buffer_budget_kib < server.max_body_kib:
        raise t.error("buffer_budget_kib", f"at least max_body_kib ({server.max_body_kib})", server.buffer_budget_kib)
    if server.max_live_connections + server.workers >= server.max_connections:
        raise t.error("max_connections", f"more than workers + max_live_connections "
                      f"({server.workers + server.max_live_connections})", server.max_connections)
    t.finish()
    return server
