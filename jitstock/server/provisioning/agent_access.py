"""What a provisioned agent may do at the broker, and the edge.toml it is handed.

An agent's MQTT username is its agent id (as with deploy/mosquitto.acl, whose
``pattern`` lines key on ``%u``), and its role allows exactly the topics
docs/protocol.md gives an agent: publish its readings, scans and status (the last
will is a status), subscribe to and receive its retained config.  Everything else
falls to the plugin's default access, which ``mosquitto_ctrl dynsec init`` sets to
deny publishing and subscribing.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from jitstock import protocol

# Roles the server makes are named after the agent, so `mosquitto_ctrl dynsec listRoles`
# reads as a list of agents and a hand-made role never collides with one.
ROLE_PREFIX = "jitstock-agent-"
# The textname marks a client as made by jitstock for this agent: a client that carries it
# but has no agent row is the leftover of a provisioning that failed half-way, safe to redo.
TEXTNAME_PREFIX = "jitstock agent "
# 32 random bytes: as strong as the server's own API keys; URL-safe, so no TOML or shell quoting.
PASSWORD_BYTES = 32


def role_name(agent_id: str) -> str:
    """The dynsec role confining ``agent_id`` to its own topics."""
    return ROLE_PREFIX + agent_id


def textname(agent_id: str, site_id: str) -> str:
    """The mark a provisioned client carries (shown by mosquitto_ctrl getClient)."""
    return f"{TEXTNAME_PREFIX}{agent_id} of site {site_id}"


def made_by_us(client: dict[str, Any], agent_id: str) -> bool:
    """Whether a dynsec client (getClient data) was provisioned by jitstock for this agent."""
    name = client.get("textname")
    return isinstance(name, str) and name.startswith(f"{TEXTNAME_PREFIX}{agent_id} of ")


def new_password() -> str:
    """A fresh random MQTT password."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def acls(site_id: str, agent_id: str) -> list[dict[str, Any]]:
    """The role's ACL entries: the agent's own topics of docs/protocol.md, nothing else."""
    out: list[dict[str, Any]] = [
        {
            "acltype": "publishClientSend",
            "topic": protocol.agent_topic(site_id, agent_id, kind),
            "allow": True,
        }
        for kind in ("readings", "scans", "status")
    ]
    config = protocol.agent_topic(site_id, agent_id, "config")
    out += [
        {"acltype": "subscribeLiteral", "topic": config, "allow": True},
        # explicit, so a broker whose default lets clients receive nothing still works
        {"acltype": "publishClientReceive", "topic": config, "allow": True},
    ]
    return out


def edge_toml(site_id: str, agent_id: str, mqtt_url: str, password: str) -> str:
    """A ready edge.toml for jitstock-edge (jitstock/edge/settings.py): add the scales."""

    def q(value: str) -> str:
        # a JSON string is a valid TOML basic string (same escapes)
        return json.dumps(value)

    return (
        f"# jitstock-edge settings for agent {agent_id} of site {site_id}, made by the\n"
        "# server when the agent was provisioned. It holds the agent's MQTT password:\n"
        "# install it as /etc/jitstock/edge.toml with mode 0600 (or move mqtt_password to\n"
        "# JITSTOCK_MQTT_PASSWORD in /etc/jitstock/edge.env). See deploy/edge.example.toml\n"
        "# for every key.\n"
        f"site = {q(site_id)}\n"
        f"agent = {q(agent_id)}\n"
        f"mqtt_url = {q(mqtt_url)}\n"
        f"mqtt_user = {q(agent_id)}\n"
        f"mqtt_password = {q(password)}\n"
        '# mqtt_ca_file = "/etc/jitstock/ca.crt"   # private CA of an mqtts:// broker\n'
        "\n"
        "# One [[scales]] table per scale, e.g.\n"
        "# [[scales]]\n"
        '# port = "/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0"\n'
        '# bin = "A-01"\n'
    )
