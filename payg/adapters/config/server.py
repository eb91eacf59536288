"""The web server's limits, read the same for a controller ([web.server]) and the hub ([hub.server])."""

from __future__ import annotations

from payg.adapters.config.tables import Table
from payg.domain.settings import ServerConfig


def server_table(t: Table) -> ServerConfig:
    """A web server's limits: a controller's [web.server], the hub's [hub.server]."""
    d = ServerConfig()
    server = ServerConfig(
        max_connections=t.integer("max_connections", d.max_connections, minimum=8, maximum=60_000),
        workers=t.integer("workers", d.workers, minimum=1, maximum=256),
        max_live_connections=t.integer("max_live_connections", d.max_live_connections, minimum=0, maximum=10_000),
        header_timeout_s=t.number("header_timeout_s", d.header_timeout_s, positive=True),
        body_timeout_s=t.number("body_timeout_s", d.body_timeout_s, positive=True),
        idle_timeout_s=t.number("idle_timeout_s", d.idle_timeout_s, positive=True),
        max_body_kib=t.integer("max_body_kib", d.max_body_kib, minimum=16, maximum=64 * 1024),
        max_live_per_client=t.integer("max_live_per_client", d.max_live_per_client, minimum=1, maximum=10_000),
        buffer_budget_kib=t.integer("buffer_budget_kib", d.buffer_budget_kib, minimum=256, maximum=4 * 1024 * 1024),
    )
    if server.buffer_budget_kib < server.max_body_kib:
        raise t.error("buffer_budget_kib", f"at least max_body_kib ({server.max_body_kib})", server.buffer_budget_kib)
    if server.max_live_connections + server.workers >= server.max_connections:
        raise t.error("max_connections", f"more than workers + max_live_connections "
                      f"({server.workers + server.max_live_connections})", server.max_connections)
    t.finish()
    return server
