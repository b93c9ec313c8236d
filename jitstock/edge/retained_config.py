"""The agent's retained config topic (``…/config``): apply what the server publishes,
ignore a bad one with one line, and go back to the file's values when it is cleared —
also when it was cleared while the agent was offline (no retained message at all
arrives after the subscription)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from jitstock import protocol
from jitstock.clock import Clock
from jitstock.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

# The broker sends retained messages right after SUBACK; none after this long means none is retained.
CONFIG_SETTLE_S = 2.0

ConfigCallback = Callable[[protocol.AgentConfig], None]


class RetainedConfig:
    """State of one agent's config subscription; called from the publisher thread only.

    ``stats`` is the publisher's counter dict (``config_applied``, ``config_rejected``).
    """

    def __init__(
        self,
        topic: str,
        on_config: ConfigCallback | None,
        stats: dict[str, int],
        clock: Clock,
        rlog: RateLimitedLog,
    ) -> None:
        self.topic = topic
        self._on_config = on_config
        self._stats = stats
        self._clock = clock
        self._rlog = rlog
        self._last: bytes | None = None
        self._seen = False
        self._subscribed_at: float | None = None

    def reconnected(self) -> None:
        """A new session: whether a retained config exists is to be seen again."""
        self._seen = False
        self._subscribed_at = None

    def subscribed(self) -> None:
        """SUBACK: retained messages, if any, arrive now."""
        self._subscribed_at = self._clock.monotonic()

    def check_cleared(self) -> None:
        """After a reconnect, no retained config at all means it was cleared while we were away."""
        since = self._subscribed_at
        if since is None or self._seen:
            return
        if self._clock.monotonic() - since >= CONFIG_SETTLE_S:
            self._subscribed_at = None
            self._clear()

    def message(self, topic: str, payload: bytes) -> None:
        """A message on the config topic: apply it, or undo the last one when it is empty."""
        if topic != self.topic:
            return
        self._seen = True
        if payload == self._last:
            return  # the retained copy re-delivered after a reconnect
        if not payload:
            self._clear()
            return
        try:
            config = protocol.decode_config(payload)
        except protocol.ProtocolError as exc:
            self._stats["config_rejected"] += 1
            self._rlog.log(
                logging.WARNING,
                "config",
                "ignoring bad config on %s: %s",
                topic,
                exc.message,
            )
            return
        self._last = payload
        if self._on_config is None:
            return
        try:
            self._on_config(config)
        except (
            ValueError
        ) as exc:  # a config the agent cannot apply: one line, no traceback
            self._stats["config_rejected"] += 1
            self._rlog.log(
                logging.WARNING,
                "config",
                "ignoring config from %s: %s",
                topic,
                " ".join(str(exc).split()),
            )
            return
        except Exception:  # a bad config must never take the publisher down
            self._stats["config_rejected"] += 1
            log.exception("applying config from %s failed", topic)
            return
        self._stats["config_applied"] += 1

    def _clear(self) -> None:
        """The retained config is gone: the agent runs on its file's values again."""
        if not self._last:
            self._last = b""
            return  # never had one: nothing to undo
        self._last = b""
        log.info("retained config cleared: back to the file's values")
        if self._on_config is not None:
            try:
                self._on_config(protocol.AgentConfig())
            except Exception:
                self._stats["config_rejected"] += 1
                log.exception("restoring the file's config failed")
                return
        self._stats["config_applied"] += 1
