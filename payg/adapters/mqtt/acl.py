"""The broker-side half of "commands only from a named user": a Mosquitto ACL for a fleet.

The MQTT protocol does not tell a subscriber who published a message, so a controller cannot check
the sender itself: the broker must refuse everyone else's publishes on the command topic. This
writes the lines that do it (Mosquitto's acl_file format; other brokers have the same rules in
their own syntax, README "Many buildings").
"""

from __future__ import annotations


def mosquitto_acl(prefix: str, controllers: dict[str, str], command_users: list[str] | tuple[str, ...],
                  readers: list[str] | tuple[str, ...] = (), discovery_prefix: str | None = "homeassistant") -> str:
    """controllers: each controller's name in the topics -> the broker user it logs in as.
    command_users may send commands to every controller and read everything of payg (the hub, a landlord's
    Home Assistant); readers may only read (a dashboard)."""
    lines = ["# payg: the broker ACL of payg controllers (`payg mqtt-acl` prints a controller's)", ""]
    for name, user in controllers.items():
        lines += [f"user {user}",
                  f"topic write {prefix}/{name}/status",
                  f"topic readwrite {prefix}/{name}/+/state",  # read: its removed sockets' states, to clear them
                  f"topic write {prefix}/{name}/events",
                  f"topic write {prefix}/{name}/response",
                  f"topic read {prefix}/{name}/command"]
        if discovery_prefix:
            lines += [f"topic readwrite {discovery_prefix}/+/payg_{name}/+/config"]
        lines.append("")
    for user in command_users:
        lines += [f"user {user}", f"topic read {prefix}/#", f"topic write {prefix}/+/command"]
        if discovery_prefix:
            lines.append(f"topic read {discovery_prefix}/#")
        lines.append("")
    for user in readers:
        lines += [f"user {user}", f"topic read {prefix}/#", ""]
    return "\n".join(lines)
