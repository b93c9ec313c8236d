"""A client of Mosquitto's Dynamic Security plugin: commands over ``$CONTROL/dynamic-security/v1``.

The plugin takes a JSON list of commands on the control topic and answers on
``…/response`` with one result per command (``error`` set when it failed), each
carrying back the ``correlationData`` we sent.  Provisioning is rare (a device a
day, not a reading a millisecond), so each :meth:`DynsecClient.session` is its own
short MQTT connection: nothing to keep alive or reconnect, and an unreachable
broker is noticed at once, before anything is changed in the database.

Errors::

    DynsecUnavailable     the broker cannot be reached, refuses the admin client, or the
                          plugin does not answer in time (nothing known to have changed)
    DynsecCommandFailed   the plugin answered a command with an error (``.error``)
"""

from __future__ import annotations

import logging
import ssl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from jitstock.server.mqtt import parse_mqtt_url

log = logging.getLogger(__name__)

CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
# The plugin's own texts for a missing or duplicate entity (mosquitto 2.0 dynsec).
NOT_FOUND_ERRORS = frozenset({"Client not found", "Role not found"})
EXISTS_ERRORS = frozenset({"Client already exists", "Role already exists"})
# Admin connections live for one request; the broker only needs to see us alive that long.
KEEPALIVE_S = 30


class DynsecUnavailable(RuntimeError):
    """The broker or its Dynamic Security plugin cannot take commands right now."""


class DynsecCommandFailed(RuntimeError):
    """The plugin refused one command; ``error`` is its text (e.g. 'Client not found')."""

    def __init__(self, command: str, error: str) -> None:
        super().__init__(f"{command}: {error}")
        self.command = command
        self.error = error


@dataclass(frozen=True, slots=True)
class DynsecConfig:
    """Where the broker is and who the admin client is."""

    url: str
    username: str
    password: str | None
    timeout_s: float = 5.0
    tls_ca: Path | None = None


@dataclass(frozen=True, slots=True)
class Result:
    """One command's answer: ``error`` None when it succeeded; ``data`` for get* commands."""

    command: str
    error: str | None
    data: dict[str, Any]

    def check(self) -> Result:
        """Raise DynsecCommandFailed if the command failed; else return self."""
        if self.error is not None:
            raise DynsecCommandFailed(self.command, self.error)
        return self


class DynsecSession:
    """One connected admin client; :meth:`run` sends commands and waits for their answers."""

    def __init__(self, client: mqtt.Client, config: DynsecConfig) -> None:
        self._client = client
        self._config = config
        self._cond = threading.Condition()
        self._answers: dict[str, Result] = {}
        self._pending: set[str] = set()

    def on_message(self, payload: bytes) -> None:
        """Collect the answers of the response topic (another admin's answers are ignored)."""
        try:
            doc = orjson.loads(payload)
            responses = doc["responses"]
            assert isinstance(responses, list)
        except (orjson.JSONDecodeError, KeyError, TypeError, AssertionError):
            log.warning("dynsec: unreadable response ignored (%d bytes)", len(payload))
            return
        with self._cond:
            for r in responses:
                if (
                    not isinstance(r, dict)
                    or r.get("correlationData") not in self._pending
                ):
                    continue
                error = r.get("error")
                data = r.get("data")
                self._answers[r["correlationData"]] = Result(
                    str(r.get("command")),
                    None if error is None else str(error),
                    data if isinstance(data, dict) else {},
                )
            self._cond.notify_all()

    def run(self, *commands: dict[str, Any]) -> list[Result]:
        """Send ``commands`` in one message; their results in the same order."""
        ids = [uuid.uuid4().hex for _ in commands]
        body = [{**c, "correlationData": i} for c, i in zip(commands, ids, strict=True)]
        with self._cond:
            self._pending.update(ids)
        info = self._client.publish(
            CONTROL_TOPIC, orjson.dumps({"commands": body}), qos=1
        )
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            raise DynsecUnavailable(
                f"could not send to the broker: {mqtt.error_string(info.rc)}"
            )
        with self._cond:
            answered = self._cond.wait_for(
                lambda: all(i in self._answers for i in ids), self._config.timeout_s
            )
            if not answered:
                raise DynsecUnavailable(
                    "the broker's Dynamic Security plugin did not answer within "
                    f"{self._config.timeout_s:g} s: is mosquitto_dynamic_security.so loaded, "
                    f"and is {self._config.username!r} a dynsec admin client?"
                )
            self._pending.difference_update(ids)
            return [self._answers.pop(i) for i in ids]


class DynsecClient:
    """Opens admin sessions on the broker (one short MQTT connection each)."""

    def __init__(self, config: DynsecConfig) -> None:
        self.config = config
        self.address = parse_mqtt_url(config.url)

    @contextmanager
    def session(self) -> Iterator[DynsecSession]:
        """Connect, subscribe to the answers, yield; disconnect on the way out.

        Raises DynsecUnavailable when the broker cannot be reached, refuses the
        admin client, or does not grant the response subscription in time.
        """
        cfg = self.config
        client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"jitstock-dynsec-{uuid.uuid4().hex[:12]}",
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.username_pw_set(cfg.username, cfg.password)
        client.connect_timeout = cfg.timeout_s
        if self.address.tls:
            client.tls_set(
                ca_certs=str(cfg.tls_ca) if cfg.tls_ca else None,
                cert_reqs=ssl.CERT_REQUIRED,
            )
        session = DynsecSession(client, cfg)
        ready = threading.Event()
        problem: list[str] = []

        def on_connect(
            c: mqtt.Client, _u: Any, _f: Any, rc: ReasonCode, _p: Any
        ) -> None:
            if rc.is_failure:
                problem.append(
                    f"the broker refused the dynsec admin client {cfg.username!r}: {rc} "
                    "(check JITSTOCK_MQTT_DYNSEC_USER / _PASSWORD)"
                )
                ready.set()
            else:
                c.subscribe(RESPONSE_TOPIC, qos=1)

        def on_subscribe(
            _c: mqtt.Client, _u: Any, _mid: int, codes: list[ReasonCode], _p: Any
        ) -> None:
            if any(code.is_failure for code in codes):
                problem.append(
                    f"the broker does not let {cfg.username!r} read {RESPONSE_TOPIC}: "
                    "it is not a dynsec admin client"
                )
            ready.set()

        client.on_connect = on_connect
        client.on_subscribe = on_subscribe
        client.on_message = lambda _c, _u, msg: session.on_message(bytes(msg.payload))
        where = f"{self.address.host}:{self.address.port}"
        try:
            client.connect(self.address.host, self.address.port, KEEPALIVE_S)
        except (OSError, ValueError) as exc:  # refused, unresolvable, TLS, timeout
            raise DynsecUnavailable(
                f"cannot reach the MQTT broker at {where}: {exc}"
            ) from exc
        client.loop_start()
        try:
            if not ready.wait(cfg.timeout_s):
                raise DynsecUnavailable(
                    f"the MQTT broker at {where} did not accept the dynsec admin client "
                    f"within {cfg.timeout_s:g} s"
                )
            if problem:
                raise DynsecUnavailable(problem[0])
            yield session
        finally:
            client.disconnect()
            client.loop_stop()
