"""ScaleReader: one daemon thread per serial scale, from bytes to readings and health.

The thread opens the port (a path or a pyserial URL) exclusively (pyserial
``exclusive=True``, a flock on the device: a second agent or ``check-port``
cannot read the same scale), reads the continuous stream
or polls with MT-SICS `SI` (the immediate weight, `S S` stable / `S D` dynamic,
so a moving load is seen as motion instead of a held or busy answer), parses each line, checks the range, feeds the
:class:`~jitstock.edge.stability.SignalPath` and hands readings and health changes to
a :class:`ReadingSink`. A vanished port is reopened with capped exponential backoff;
nothing raises out of the thread, so one bad scale never stops the others.

Health faults (the label reported through `on_health`): "no_data", "scale_error",
"out_of_range", "garbage", "port_error", "net_weight" (a net frame on a scale set
to refuse them). Net frames are otherwise published as net + the scale's `tare_g`. A bin recovers by itself once good frames
have flowed for `recovery_s`.
"""

from __future__ import annotations

import logging
import termios
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

import serial

from jitstock.clock import REAL_CLOCK, Clock, real_seconds, wait
from jitstock.edge.frames import (
    FRAME_REASONS,
    Frame,
    FrameError,
    parse_sics_response,
    parse_stream_line,
)
from jitstock.edge.registers import ModbusSpec
from jitstock.edge.stability import SignalPath, SignalSettings
from jitstock.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

# Real seconds one read may block: bounds how late stop(), keep-alives and the no-data check run.
READ_TIMEOUT_S = 0.05
# First reopen soon (a USB adapter re-enumerates in well under a second) ...
BACKOFF_INITIAL_S = 0.5
# ... then doubling up to this, so a missing port is retried forever without hammering udev or the log.
BACKOFF_MAX_S = 30.0
# Good frames must flow this long before a faulty bin is reported ok again (no status flapping).
RECOVERY_S = 2.0
# An MT-SICS scale answers `S` within ~100 ms at 9600 baud; after this, ask again.
SICS_RESPONSE_TIMEOUT_S = 1.0
# Longest plausible frame; a longer run of bytes without a newline is garbage, up to
# and including its newline (its tail is not read as a frame of its own).
MAX_LINE_BYTES = 256
# MT-SICS poll: `SI` answers at once (`S D` while the load moves); `S` would hold its
# answer until the scale settles, or say `S I`, and look silent during motion.
SICS_POLL = b"SI\r\n"

FAULTS = (
    "no_data",
    "scale_error",
    "out_of_range",
    "garbage",
    "port_error",
    "net_weight",
)

Protocol_ = Literal["stream", "sics", "modbus"]
# What a net frame becomes: refused (fault `net_weight`), or net + the scale's tare_g.
NetWeight = Literal["reject", "add_tare"]


@dataclass(frozen=True)
class ScalePortConfig:
    """Which port a scale hangs on, which bin it weighs and how it talks."""

    port: str
    bin: str
    protocol: Protocol_ = "stream"
    baudrate: int = 9600
    poll_interval_s: float = 0.1
    # None: the protocol's default (stream: reject, sics: add_tare, MT-SICS answers being net)
    net_weight: NetWeight | None = None
    tare_g: float = 0.0
    # protocol "modbus": the unit id and registers (edge/modbus.py)
    modbus: ModbusSpec | None = None

    @property
    def key(self) -> str:
        """What names this scale in the agent: its port, with the unit id on a Modbus bus."""
        if self.modbus is None:
            return self.port
        return f"{self.port}#{self.modbus.unit_id}"

    @property
    def net_policy(self) -> NetWeight:
        """What a net frame becomes on this scale."""
        if self.net_weight is not None:
            return self.net_weight
        return "add_tare" if self.protocol == "sics" else "reject"


class ReadingSink(Protocol):
    """Receives what the readers produce (called from reader threads)."""

    def on_reading(self, bin: str, ts_ms: int, grams: float, stable: bool) -> None:
        """A changed stable weight or a keep-alive."""
        ...

    def on_health(self, bin: str, ok: bool, fault: str | None) -> None:
        """The bin's health changed (called only on change)."""
        ...


class _PortGone(Exception):
    """The port failed while serving; reopen it."""


class ScaleReader:
    """Reads one scale port in a daemon thread (see module docstring)."""

    def __init__(
        self,
        config: ScalePortConfig,
        settings: SignalSettings,
        sink: ReadingSink,
        clock: Clock = REAL_CLOCK,
        *,
        recovery_s: float = RECOVERY_S,
        backoff_initial_s: float = BACKOFF_INITIAL_S,
        backoff_max_s: float = BACKOFF_MAX_S,
        serial_factory: Callable[..., Any] = serial.serial_for_url,
        exclusive: bool = True,
    ) -> None:
        self._config = config
        self._settings = settings
        self._sink = sink
        self._clock = clock
        self._recovery_s = recovery_s
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._serial_factory = serial_factory
        self._exclusive = exclusive
        self._path = SignalPath(settings, clock)
        self._lock = threading.Lock()
        self._pending_config: ScalePortConfig | None = None
        self._pending_settings: SignalSettings | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._stats: dict[str, int] = {"frames_ok": 0, "reopens": 0, "open_failures": 0}
        for reason in (*FRAME_REASONS, "net_weight"):
            self._stats[f"frames_bad_{reason}"] = 0
        self._ratelog = RateLimitedLog(log)
        # health as last reported: None until the first verdict
        self._ok: bool | None = None
        self._fault: str | None = None
        self._good_since: float | None = None
        self._last_line_at = 0.0
        self._opened_once = False

    # -- public -------------------------------------------------------------------------

    @property
    def config(self) -> ScalePortConfig:
        """The configuration in force (pending updates included)."""
        with self._lock:
            return self._pending_config or self._config

    @property
    def settings(self) -> SignalSettings:
        """The thresholds in force (pending updates included)."""
        with self._lock:
            return self._pending_settings or self._settings

    @property
    def stats(self) -> dict[str, int]:
        """Counters: frames_ok, frames_bad_<reason>, reopens, open_failures."""
        with self._lock:
            return dict(self._stats)

    def start(self) -> None:
        """Start the reader thread."""
        if self._thread is not None:
            raise RuntimeError("ScaleReader already started")
        self._thread = threading.Thread(
            target=self._run, name=f"scale-{self._config.bin}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the port."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def update(
        self,
        config: ScalePortConfig | None = None,
        settings: SignalSettings | None = None,
    ) -> None:
        """Apply a new port config and/or thresholds without restarting (the thread picks them up)."""
        with self._lock:
            if config is not None:
                self._pending_config = config
            if settings is not None:
                self._pending_settings = replace(settings)

    # -- thread -------------------------------------------------------------------------

    def _count(self, key: str) -> None:
        with self._lock:
            self._stats[key] += 1

    def _run(self) -> None:
        backoff = self._backoff_initial_s
        while not self._stop.is_set():
            try:
                self._apply_pending()
                cfg = self._config
                try:
                    port = self._open(cfg)
                # termios.error: the driver refuses the line settings (pyserial passes it on)
                except (
                    serial.SerialException,
                    OSError,
                    ValueError,
                    termios.error,
                ) as exc:
                    self._count("open_failures")
                    self._ratelog.log(
                        logging.WARNING,
                        f"open:{cfg.port}",
                        "cannot open %s: %s",
                        cfg.port,
                        exc,
                    )
                    self._set_fault("port_error")
                    if wait(self._clock, backoff, self._stop):
                        return
                    backoff = min(backoff * 2, self._backoff_max_s)
                    continue
                try:
                    if self._serve(port, cfg):
                        backoff = self._backoff_initial_s
                except _PortGone as exc:
                    self._ratelog.log(
                        logging.WARNING,
                        f"gone:{cfg.port}",
                        "port %s failed: %s",
                        cfg.port,
                        exc,
                    )
                    self._set_fault("port_error")
                    if wait(self._clock, backoff, self._stop):
                        return
                    backoff = min(backoff * 2, self._backoff_max_s)
                finally:
                    try:
                        port.close()
                    except (
                        Exception
                    ):  # closing a dead port may fail too; it is gone either way
                        pass
            except Exception:
                # a bug must not kill the thread: log it, pause, go on
                self._ratelog.log(
                    logging.ERROR, "bug", "scale reader %s crashed", self._config.bin
                )
                log.debug("scale reader crash", exc_info=True)
                if wait(self._clock, backoff, self._stop):
                    return

    def _open(self, cfg: ScalePortConfig) -> Any:
        timeout = READ_TIMEOUT_S
        if cfg.protocol == "sics":
            timeout = min(
                timeout, max(0.001, real_seconds(self._clock, cfg.poll_interval_s) / 2)
            )
        kwargs: dict[str, Any] = {"baudrate": cfg.baudrate, "timeout": timeout}
        if self._exclusive and "://" not in cfg.port:
            # a local port only: pyserial URL handlers (loop://, socket://) refuse the flag
            kwargs["exclusive"] = True
        port = self._serial_factory(cfg.port, **kwargs)
        if self._opened_once:
            self._count("reopens")
        self._opened_once = True
        self._last_line_at = self._clock.monotonic()
        return port

    def _apply_pending(self) -> bool:
        """Take pending updates; True when the port must be reopened."""
        with self._lock:
            cfg, settings = self._pending_config, self._pending_settings
            self._pending_config = self._pending_settings = None
        reopen = False
        if settings is not None:
            self._settings = settings
            self._path.reconfigure(settings)
        if cfg is not None:
            old = self._config
            self._config = cfg
            if cfg.bin != old.bin:
                # a new bin has no reported health yet
                self._ok, self._fault, self._good_since = None, None, None
            reopen = (cfg.port, cfg.protocol, cfg.baudrate, cfg.poll_interval_s) != (
                old.port,
                old.protocol,
                old.baudrate,
                old.poll_interval_s,
            )
        return reopen

    def _serve(self, port: Any, cfg: ScalePortConfig) -> bool:
        """Read until stop or reconfiguration; True if a good frame was seen. Raises _PortGone."""
        sics = cfg.protocol == "sics"
        parse = parse_sics_response if sics else parse_stream_line
        clock = self._clock
        buf = bytearray()
        # after an overlong line: drop what follows up to its newline (its tail is no frame)
        skipping = False
        got_good = False
        next_request = clock.monotonic()
        awaiting_since: float | None = None
        while not self._stop.is_set():
            if self._apply_pending():
                return got_good
            now = clock.monotonic()
            if sics and (
                (awaiting_since is None and now >= next_request)
                or (
                    awaiting_since is not None
                    and now - awaiting_since >= SICS_RESPONSE_TIMEOUT_S
                )
            ):
                try:
                    port.write(SICS_POLL)
                except (serial.SerialException, OSError) as exc:
                    raise _PortGone(str(exc)) from exc
                awaiting_since = now
                next_request = now + cfg.poll_interval_s
            try:
                chunk = port.read(port.in_waiting or 1)
            except (serial.SerialException, OSError) as exc:
                raise _PortGone(str(exc)) from exc
            if chunk:
                buf += chunk
                if skipping:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        buf.clear()
                    else:
                        del buf[: nl + 1]
                        skipping = False
                while True:
                    nl = buf.find(b"\n")
                    if nl < 0:
                        break
                    line = bytes(buf[:nl]).rstrip(b"\r")
                    del buf[: nl + 1]
                    if not line.strip():
                        continue
                    awaiting_since = None
                    if self._handle_line(line, parse):
                        got_good = True
                if len(buf) > MAX_LINE_BYTES:
                    buf.clear()
                    skipping = True
                    self._bad("garbage", f"{MAX_LINE_BYTES}+ bytes without a newline")
            self._housekeeping()
        return got_good

    def _handle_line(self, line: bytes, parse: Callable[[bytes], Frame]) -> bool:
        now = self._clock.monotonic()
        self._last_line_at = now
        try:
            frame = parse(line)
        except FrameError as exc:
            if exc.reason == "busy":
                self._path.motion()  # the scale cannot weigh now: not stable
            self._bad(exc.reason, str(exc))
            return False
        return self._handle_frame(frame, now)

    def _handle_frame(self, frame: Frame, now: float) -> bool:
        """Net policy, range check, filter and stability for one weight; True if it was good."""
        if frame.net:
            cfg = self._config
            if cfg.net_policy == "reject":
                self._bad(
                    "net_weight",
                    "net weight frame (the indicator's tare is on); lock the tare key "
                    'or set net_weight = "add_tare" with tare_g',
                )
                return False
            frame = Frame(frame.grams + cfg.tare_g, frame.stable)
        if not self._settings.in_range(frame.grams):
            self._bad(
                "out_of_range", f"{frame.grams:.1f} g outside the configured range"
            )
            return False
        self._count("frames_ok")
        self._good_frame(now)
        out = self._path.feed(frame)
        if out is not None:
            self._emit_reading(out.ts_ms, out.grams, out.stable)
        return True

    def _bad(self, reason: str, message: str) -> None:
        self._count(f"frames_bad_{reason}")
        self._ratelog.log(
            logging.WARNING,
            f"{reason}:{self._config.bin}",
            "bin %s: %s",
            self._config.bin,
            message,
        )
        if reason != "busy":  # a busy scale is talking, just not weighing right now
            self._set_fault(reason)

    def _housekeeping(self) -> None:
        now = self._clock.monotonic()
        if now - self._last_line_at > self._settings.no_data_timeout_s:
            self._set_fault("no_data")
        elif self._ok:
            out = self._path.tick()
            if out is not None:
                self._emit_reading(out.ts_ms, out.grams, out.stable)

    # -- health -------------------------------------------------------------------------

    def _set_fault(self, fault: str) -> None:
        self._good_since = None
        if self._ok is False and self._fault == fault:
            return
        self._ok, self._fault = False, fault
        self._emit_health(False, fault)

    def _good_frame(self, now: float) -> None:
        if self._ok:
            return
        if self._ok is None:
            self._ok = True
            self._emit_health(True, None)
            return
        if self._good_since is None:
            self._good_since = now
        if now - self._good_since >= self._recovery_s:
            self._ok, self._fault, self._good_since = True, None, None
            self._emit_health(True, None)

    def _emit_health(self, ok: bool, fault: str | None) -> None:
        try:
            self._sink.on_health(self._config.bin, ok, fault)
        except Exception:
            log.exception("sink.on_health failed for bin %s", self._config.bin)

    def _emit_reading(self, ts_ms: int, grams: float, stable: bool) -> None:
        try:
            self._sink.on_reading(self._config.bin, ts_ms, grams, stable)
        except Exception:
            log.exception("sink.on_reading failed for bin %s", self._config.bin)
