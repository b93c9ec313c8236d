"""Edge agent composition root: scales and scanners in, one batch per tick into the outbox, MQTT out.

Threads: one reader per serial port (edge/scale.py, edge/scanner.py) calls
:meth:`Agent.on_reading` / :meth:`Agent.on_health` / :meth:`Agent.on_scan`; the
tick loop (:meth:`Agent.run`, the main thread) turns what arrived during the
tick into ONE readings batch and ONE scans batch, written to the disk outbox in
one transaction before anything is published; the publisher thread drains the
outbox and keeps the retained status current; the retained config topic is
applied through :meth:`Agent.apply_config` without a restart.

Live config is layered on the file, never on an earlier config: each retained
config is applied over the file's values (thresholds over ``[signal]``, bin
mappings over ``[[scales]]``), so a key absent from the newest config has the
file's value, and an empty config restores the file. A scale's own keys in the
file (``step_g`` ... ``division_g`` under ``[[scales]]``) win over both.

A tick's items are split into batches that fit the broker's payload limit
(:attr:`Publisher.payload_limit`, edge/batching.py). If the publisher thread
dies, :meth:`Agent.run` stops and returns 1 (systemd restarts the service).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import replace

from jitstock import protocol
from jitstock.clock import REAL_CLOCK, Clock, wait
from jitstock.edge.batching import WIDEST_SEQ, fit
from jitstock.edge.hid import HidScannerReader
from jitstock.edge.modbus import ModbusBus, ModbusScaleReader
from jitstock.edge.outbox import BatchBuilder, BatchKind, Outbox, OutboxError
from jitstock.edge.publisher import Publisher
from jitstock.edge.registers import bus_key
from jitstock.edge.scale import ScalePortConfig, ScaleReader
from jitstock.edge.scanner import ScannerReader
from jitstock.edge.settings import EdgeSettings, ScaleSettings, scale_signal
from jitstock.edge.stability import SignalSettings
from jitstock.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

# Readings/scans kept in memory while the outbox cannot be written (disk full); beyond, dropped and counted.
MAX_UNWRITTEN_ITEMS = 50_000
# How often the agent logs its counters at INFO (enough to see trends in journald, not spam it).
STATS_LOG_S = 300.0
# Health shown for a configured bin before its reader has given a verdict.
UNKNOWN_FAULT = "no_data"

# AgentConfig threshold fields that map 1:1 onto SignalSettings fields.
_CONFIG_SIGNAL_FIELDS = (
    "step_g",
    "keepalive_s",
    "stability_window_s",
    "stability_spread_g",
)


class Agent:
    """One Raspberry Pi's agent: readers, tick batching, outbox, publisher."""

    def __init__(self, settings: EdgeSettings, clock: Clock = REAL_CLOCK) -> None:
        self.settings = settings
        self._clock = clock
        self._rlog = RateLimitedLog(log)
        self._stop = threading.Event()
        self._lock = threading.Lock()  # guards the tick buffers and health
        self._config_lock = threading.Lock()  # serialises config application
        self._readings: list[protocol.Reading] = []
        self._scans: list[protocol.Scan] = []
        self._health: dict[str, protocol.SensorStatus] = {}
        self._running = False
        self._stats: dict[str, int] = dict.fromkeys(
            (
                "ticks",
                "readings",
                "scans",
                "readings_batches",
                "scans_batches",
                "outbox_errors",
                "dropped_items",
                "configs_applied",
                "tick_errors",
            ),
            0,
        )
        self.outbox = Outbox(
            settings.outbox_path,
            max_batches=settings.outbox_max_batches,
            agent=settings.agent,
            clock=clock,
        )
        self.publisher = Publisher(
            self.outbox,
            settings.broker(),
            site=settings.site,
            agent=settings.agent,
            on_config=self.apply_config,
            window=settings.inflight_window,
            clock=clock,
            reconnect_max_s=settings.mqtt_reconnect_max_s,
            max_payload_bytes=settings.mqtt_max_payload_bytes,
        )
        # what the file says; every retained config is applied over these
        # keyed by ScaleSettings.key: the port, with the unit id for a Modbus indicator
        self._file_scales: dict[str, ScaleSettings] = {
            s.key: s for s in settings.scales
        }
        self._signal = replace(settings.signal)
        self._readers: dict[str, ScaleReader] = {}
        self._buses: dict[str, ModbusBus] = {}  # one per Modbus port or TCP address
        for scale in settings.scales:
            self._add_reader(scale.port_config())
        self._scanners: list[ScannerReader | HidScannerReader] = [
            HidScannerReader(s.port, s.id, self, clock, s.layout or "us")
            if s.kind == "hid"
            else ScannerReader(s.port, s.id, self, clock, s.baudrate)
            for s in settings.scanners
        ]
        # HID scanners report their health (unplugged or not) beside the bins
        self._hid_ids = [s.id for s in settings.scanners if s.kind == "hid"]

    # ------------------------------------------------------------ lifecycle

    def run(self) -> int:
        """Start everything and batch every ``tick_s`` until :meth:`stop`; returns the exit code."""
        self.publisher.start()
        with self._config_lock:
            self._running = True
            for reader in self._readers.values():
                reader.start()
        for scanner in self._scanners:
            scanner.start()
        log.info(
            "agent %s/%s running: %d scales, %d scanners, outbox %s (%d pending)",
            self.settings.site,
            self.settings.agent,
            len(self._readers),
            len(self._scanners),
            self.settings.outbox_path,
            self.outbox.depth,
        )
        next_stats = self._clock.monotonic() + STATS_LOG_S
        rc = 0
        while not wait(self._clock, self.settings.tick_s, self._stop):
            self._safe_tick()
            if self.publisher.failed:
                log.error(
                    "publisher thread died (%r); stopping", self.publisher.failure
                )
                rc = 1
                break
            if self._clock.monotonic() >= next_stats:
                next_stats += STATS_LOG_S
                log.info("stats %s publisher %s", self.stats, self.publisher.stats)
        self._shutdown()
        return rc

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler)."""
        self._stop.set()

    def _shutdown(self) -> None:
        with self._config_lock:
            self._running = False
            readers = list(self._readers.values())
        for reader in readers:
            reader.stop()
        for bus in self._buses.values():
            bus.close()
        for scanner in self._scanners:
            scanner.stop()
        self._safe_tick()  # what arrived since the last tick is on disk for the next start
        self.publisher.stop()  # retained `offline`, clean disconnect
        self.outbox.close()
        log.info("agent stopped: %s", self.stats)

    @property
    def stats(self) -> dict[str, int]:
        """Counters for logs and tests."""
        with self._lock:
            return dict(self._stats)

    # ------------------------------------------------------------ sinks (reader threads)

    def on_reading(self, bin: str, ts_ms: int, grams: float, stable: bool) -> None:
        """ReadingSink: queue a reading for this tick's batch."""
        with self._lock:
            self._readings.append(protocol.Reading(bin, ts_ms, grams, stable))
            self._stats["readings"] += 1

    def on_health(self, bin: str, ok: bool, fault: str | None) -> None:
        """ReadingSink: remember a bin's health; the status goes out at the next tick."""
        with self._lock:
            self._health[bin] = protocol.SensorStatus(bin, ok, None if ok else fault)

    def on_scan(self, scanner: str, ts_ms: int, code: str) -> None:
        """ScanSink: queue a scan for this tick's batch."""
        with self._lock:
            self._scans.append(protocol.Scan(scanner, ts_ms, code))
            self._stats["scans"] += 1

    # ------------------------------------------------------------ tick

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except (
            Exception
        ) as exc:  # the agent must keep serving its other scales whatever happens
            with self._lock:
                self._stats["tick_errors"] += 1
            self._rlog.log(logging.ERROR, "tick", "tick failed: %r", exc)
            log.debug("tick failure", exc_info=True)

    def tick(self) -> None:
        """Write this tick's readings and scans as one batch each, then refresh the status."""
        with self._lock:
            readings, self._readings = self._readings, []
            scans, self._scans = self._scans, []
            self._stats["ticks"] += 1
        batches: list[tuple[BatchKind, BatchBuilder]] = []
        limit = self.publisher.payload_limit
        agent, now = self.settings.agent, self._clock.time_ms()
        for r_chunk in fit(
            readings,
            lambda c: protocol.encode_readings(
                protocol.ReadingsBatch(agent, WIDEST_SEQ, now, tuple(c))
            ),
            limit,
        ):
            batches.append(("readings", self._readings_builder(r_chunk)))
        for s_chunk in fit(
            scans,
            lambda c: protocol.encode_scans(
                protocol.ScansBatch(agent, WIDEST_SEQ, now, tuple(c))
            ),
            limit,
        ):
            batches.append(("scans", self._scans_builder(s_chunk)))
        if batches:
            try:
                self.outbox.append_many(batches)
            except OutboxError as exc:
                self._unwritten(readings, scans)
                self._rlog.log(logging.ERROR, "outbox", "cannot queue batch: %s", exc)
            else:
                with self._lock:
                    self._stats["readings_batches"] += sum(
                        k == "readings" for k, _ in batches
                    )
                    self._stats["scans_batches"] += sum(
                        k == "scans" for k, _ in batches
                    )
        self.publisher.set_sensors(self.sensors())

    def _unwritten(
        self, readings: list[protocol.Reading], scans: list[protocol.Scan]
    ) -> None:
        """Keep what could not be written for the next tick, within a memory bound."""
        with self._lock:
            self._stats["outbox_errors"] += 1
            room = MAX_UNWRITTEN_ITEMS - len(self._readings) - len(self._scans)
            keep_scans = scans[
                : max(0, room)
            ]  # scans first: they are never thinned either
            keep_readings = (
                readings[-max(0, room - len(keep_scans)) :]
                if room > len(keep_scans)
                else []
            )
            self._stats["dropped_items"] += (
                len(readings) + len(scans) - len(keep_scans) - len(keep_readings)
            )
            self._readings[:0] = keep_readings
            self._scans[:0] = keep_scans

    def _readings_builder(self, chunk: Sequence[protocol.Reading]) -> BatchBuilder:
        agent, clock = self.settings.agent, self._clock
        items = tuple(chunk)

        def build(seq: int) -> bytes:
            return protocol.encode_readings(
                protocol.ReadingsBatch(agent, seq, clock.time_ms(), items)
            )

        return build

    def _scans_builder(self, chunk: Sequence[protocol.Scan]) -> BatchBuilder:
        agent, clock = self.settings.agent, self._clock
        items = tuple(chunk)

        def build(seq: int) -> bytes:
            return protocol.encode_scans(
                protocol.ScansBatch(agent, seq, clock.time_ms(), items)
            )

        return build

    def sensors(self) -> list[protocol.SensorStatus]:
        """Health of every bin this agent serves and of its HID scanners, sorted by name."""
        with self._config_lock:
            bins = {reader.config.bin for reader in self._readers.values()}
        bins.update(self._hid_ids)
        with self._lock:
            return [
                self._health.get(b, protocol.SensorStatus(b, False, UNKNOWN_FAULT))
                for b in sorted(bins)
            ]

    # ------------------------------------------------------------ config (publisher thread)

    def apply_config(self, config: protocol.AgentConfig) -> None:
        """Apply the retained server config over the file's values, without restarting.

        Raises ValueError (one line) for a config the agent cannot apply; the one in
        force stays.
        """
        mapped: dict[str, str] = {}
        for mapping in config.bins:
            if not protocol.BIN_RE.match(mapping.bin):
                raise ValueError(
                    f"config maps port {mapping.port!r} to invalid bin {mapping.bin!r}"
                )
            if mapping.channel != 0:
                raise ValueError(
                    f"port {mapping.port!r}: channel {mapping.channel} (jitstock-edge "
                    "reads channel 0 only)"
                )
            key = self._config_key(mapping.port)
            if key in mapped:
                raise ValueError(f"config lists port {mapping.port!r} twice")
            mapped[key] = mapping.bin
        # the bin map: the file's, with the config's mappings on top
        wanted = {port: s.bin for port, s in self._file_scales.items()}
        wanted.update(mapped)
        owners: dict[str, str] = {}
        for port, bin_ in wanted.items():
            if bin_ in owners:
                raise ValueError(
                    f"config would feed bin {bin_!r} from two ports "
                    f"({owners[bin_]} and {port})"
                )
            owners[bin_] = port
        signal = replace(self.settings.signal)
        for name in _CONFIG_SIGNAL_FIELDS:
            value = getattr(config, name)
            if value is not None:
                setattr(signal, name, value)
        with self._config_lock:
            self._signal = signal
            for port in list(self._readers):
                if port not in wanted:
                    self._remove_reader(port)  # added by an earlier config only
            for port, bin_ in wanted.items():
                self._map_port(port, bin_)
        with self._lock:
            self._stats["configs_applied"] += 1
        log.info(
            "applied config: %d bin mappings, signal %s", len(config.bins), self._signal
        )

    def _config_key(self, port: str) -> str:
        """The reader a config's ``port`` names: a Modbus indicator is ``{port}#{unit_id}``
        (several share a port), or its bare port when it is the only one on it.

        A bare port must never reach :meth:`_map_port` as a port of its own: it would be
        opened as a stream scale beside the Modbus bus (and the indicator kept its bin).
        """
        if port in self._file_scales:
            return port
        units = self._modbus_units(port)
        if len(units) == 1:
            return units[0]
        if units:
            raise ValueError(
                f"config maps port {port!r}, a Modbus bus with {len(units)} "
                f"indicators: name one as {' or '.join(repr(u) for u in units)}"
            )
        bus, sep, unit = port.rpartition("#")
        if sep and self._modbus_units(bus):
            raise ValueError(
                f"config maps {port!r}: the file has no Modbus scale with unit id "
                f"{unit} on {bus!r} (a config cannot add one: its registers are in the file)"
            )
        return port  # a serial port the file does not list

    def _modbus_units(self, port: str) -> list[str]:
        """Keys of the file's Modbus scales on ``port``."""
        return sorted(
            k
            for k, s in self._file_scales.items()
            if s.protocol == "modbus" and s.port == port
        )

    def _scale_signal(self, port: str) -> SignalSettings:
        """Thresholds of the scale on ``port``: agent values, the scale's own keys on top."""
        own = self._file_scales.get(port)
        overrides = {} if own is None else own.signal_overrides()
        return scale_signal(self._signal, overrides)

    def _map_port(self, port: str, bin_: str) -> None:
        """Make the reader of ``port`` feed ``bin_`` with the current thresholds."""
        reader = self._readers.get(port)
        if reader is None:
            # a port the local file does not list: read it with the default protocol
            self._add_reader(ScalePortConfig(port=port, bin=bin_))
            if self._running:
                self._readers[port].start()
            return
        signal = self._scale_signal(port)
        if reader.settings != signal:
            reader.update(settings=signal)
        old = reader.config.bin
        if old != bin_:
            reader.update(config=replace(reader.config, bin=bin_))
            with self._lock:
                self._health.pop(old, None)
            log.info("port %s now feeds bin %s (was %s)", port, bin_, old)

    def _remove_reader(self, port: str) -> None:
        reader = self._readers.pop(port)
        reader.stop()
        with self._lock:
            self._health.pop(reader.config.bin, None)
        log.info("port %s (bin %s) no longer read", port, reader.config.bin)

    def _add_reader(self, config: ScalePortConfig) -> None:
        signal = self._scale_signal(config.key)
        if config.modbus is None:
            self._readers[config.key] = ScaleReader(config, signal, self, self._clock)
            return
        key = bus_key(config.port)
        bus = self._buses.get(key)
        if bus is None:
            bus = self._buses[key] = ModbusBus(
                config.port, config.baudrate, config.modbus
            )
        self._readers[config.key] = ModbusScaleReader(
            config, signal, self, bus, self._clock
        )
