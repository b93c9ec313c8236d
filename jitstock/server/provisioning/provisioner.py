"""Agents' MQTT clients at the broker: create, enable, disable, remove, new password.

Each operation is one dynsec session (jitstock.server.provisioning.dynsec).  The API
changes the broker first and commits the agent row after, holding :data:`LOCK`
across both, so two requests for one agent never interleave in this process; if
the commit fails it calls :meth:`Provisioner.remove`.  A client that carries
jitstock's mark for the agent but has no agent row (a provisioning that failed
between broker and database) is replaced by the next attempt; a client someone
made by hand under that name is never touched (ProvisioningConflict).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from jitstock.server.provisioning import agent_access
from jitstock.server.provisioning.dynsec import (
    NOT_FOUND_ERRORS,
    DynsecClient,
    DynsecCommandFailed,
    DynsecConfig,
    DynsecSession,
)
from jitstock.server.settings import ServerSettings

log = logging.getLogger(__name__)

# One provisioning change at a time per server process (broker change + DB commit).
LOCK = threading.Lock()


class ProvisioningConflict(RuntimeError):
    """The broker's state forbids the change (a foreign client of that name, a missing one)."""


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a newly provisioned agent needs; the password is shown once and never stored."""

    username: str
    password: str
    edge_toml: str


class Provisioner:
    """Makes and changes agents' dynsec clients and roles."""

    def __init__(self, client: DynsecClient, agent_url: str) -> None:
        self.client = client
        self.agent_url = agent_url

    @classmethod
    def from_settings(cls, settings: ServerSettings) -> Provisioner | None:
        """The provisioner the settings ask for; None when no dynsec admin is configured."""
        if not settings.mqtt_dynsec_user:
            return None
        config = DynsecConfig(
            url=settings.mqtt_url,
            username=settings.mqtt_dynsec_user,
            password=settings.mqtt_dynsec_password,
            timeout_s=settings.mqtt_dynsec_timeout_s,
            tls_ca=settings.mqtt_tls_ca,
        )
        return cls(DynsecClient(config), settings.mqtt_agent_url or settings.mqtt_url)

    def create(self, agent_id: str, site_id: str) -> Credentials:
        """A new client for the agent with a fresh password, confined by its own role.

        Replaces jitstock's own earlier client of this agent (a running agent
        with the old password is disconnected); refuses a client made by hand.
        """
        role = agent_access.role_name(agent_id)
        password = agent_access.new_password()
        with self.client.session() as s:
            _clear_own(s, agent_id, role)
            made_role, made_client = s.run(
                {
                    "command": "createRole",
                    "rolename": role,
                    "textname": agent_access.textname(agent_id, site_id),
                    "acls": agent_access.acls(site_id, agent_id),
                },
                {
                    "command": "createClient",
                    "username": agent_id,
                    "password": password,
                    "textname": agent_access.textname(agent_id, site_id),
                    "roles": [{"rolename": role}],
                },
            )
            if made_role.error is not None or made_client.error is not None:
                # leave nothing half-made behind
                s.run(
                    {"command": "deleteClient", "username": agent_id},
                    {"command": "deleteRole", "rolename": role},
                )
                made_role.check()
                made_client.check()
        log.info("provisioned MQTT client %s (role %s)", agent_id, role)
        toml = agent_access.edge_toml(site_id, agent_id, self.agent_url, password)
        return Credentials(agent_id, password, toml)

    def set_enabled(self, username: str, enabled: bool) -> None:
        """Enable or disable the client; disabling disconnects it if it is connected."""
        command = "enableClient" if enabled else "disableClient"
        with self.client.session() as s:
            (result,) = s.run({"command": command, "username": username})
        if result.error in NOT_FOUND_ERRORS:
            raise ProvisioningConflict(
                f"the broker has no MQTT client {username!r} (removed by hand?); "
                f"POST /api/v1/agents/{username}/credentials makes a new one"
            )
        result.check()
        log.info("MQTT client %s %sd", username, command.removesuffix("Client"))

    def remove(self, username: str) -> None:
        """Delete the client and its role (disconnecting it); already gone is fine."""
        with self.client.session() as s:
            results = s.run(
                {"command": "deleteClient", "username": username},
                {"command": "deleteRole", "rolename": agent_access.role_name(username)},
            )
        for r in results:
            if r.error not in NOT_FOUND_ERRORS:
                r.check()
        log.info("removed MQTT client %s", username)


def _clear_own(s: DynsecSession, agent_id: str, role: str) -> None:
    """Delete jitstock's earlier client and role of this agent; refuse anyone else's."""
    got_client, got_role = s.run(
        {"command": "getClient", "username": agent_id},
        {"command": "getRole", "rolename": role},
    )
    stale: list[dict[str, Any]] = []
    for result, key, command, name_key in (
        (got_client, "client", "deleteClient", "username"),
        (got_role, "role", "deleteRole", "rolename"),
    ):
        if result.error in NOT_FOUND_ERRORS:
            continue
        result.check()
        entity = result.data.get(key)
        if not isinstance(entity, dict) or not agent_access.made_by_us(
            entity, agent_id
        ):
            raise ProvisioningConflict(
                f"the broker already has an MQTT {key} {entity_name(entity, name_key)!r} "
                "that jitstock did not make for this agent; choose another agent id, "
                f"or remove it first (mosquitto_ctrl dynsec {command} …)"
            )
        stale.append({"command": command, name_key: entity[name_key]})
    if stale:
        log.info("replacing jitstock's earlier MQTT client/role of agent %s", agent_id)
        for r in s.run(*stale):
            if r.error not in NOT_FOUND_ERRORS:
                r.check()


def entity_name(entity: Any, name_key: str) -> str:
    """The name of a getClient/getRole answer, for messages."""
    return str(entity.get(name_key)) if isinstance(entity, dict) else "?"


__all__ = [
    "LOCK",
    "Credentials",
    "DynsecCommandFailed",
    "Provisioner",
    "ProvisioningConflict",
]
