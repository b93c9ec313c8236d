"""The tables of `jitstock bench ingest --shape resend` and `--shape steady`."""

from __future__ import annotations

from typing import Any


def print_result(result: dict[str, Any]) -> None:
    """The tables of a run."""
    b = result.get("baseline_do_nothing_subscriber")
    if b:
        print(
            f"do-nothing subscriber at {b['target_readings_s']:,}/s: received {b['received']:,}, "
            f"lost {b['lost']}, {b['subscriber_cpu_us_per_reading']} us/reading"
        )
    for s in result.get("servers", []):
        print(f"[{s['server']}] {s['tree']} {s.get('env') or ''}")
        st = s.get("steady")
        if st is not None:
            print(
                f"  steady {st['target_readings_s']:,}/s re-send load: "
                f"{st['cpu_pct_of_core']} % of a core over the {st['window_s']:.0f} s "
                f"after {st['after_s']:.0f} s; SIGTERM exit {s.get('sigterm_exit_s')} s"
            )
            continue
        t = s["trigger_run"]
        tr = t["trigger"]
        print(
            f"  idle CPU: {s.get('idle_cpu_pct_of_core')} % of a core "
            f"(after {s.get('startup_busy_s')} s of start-up work)"
        )
        print(
            f"  {t['target_readings_s']:,}/s resend load: applied {t['applied']:,}/{t['sent']:,} (history points {t.get('history_points', 0):,}), "
            f"lag p50/p99 {t['lag_p50_s']}/{t['lag_p99_s']} s, server {t['server_cpu_us_per_reading']} us/reading "
            f"({t['server_cores']} cores), influxd {t['influxd_cpu_us_per_reading']}, "
            f"mosquitto {t['mosquitto_cpu_us_per_reading']}"
        )
        print(
            f"  trigger ({tr['received']}/{tr['crossings']} received, {tr['orders']} orders): "
            f"p50 {tr['p50_ms']} ms p99 {tr['p99_ms']} ms max {tr['max_ms']} ms; "
            f"decide p50/p99 {tr['decide_p50_ms']}/{tr['decide_p99_ms']} ms, "
            f"send p50/p99 {tr['send_p50_ms']}/{tr['send_p99_ms']} ms "
            f"(flush start -> claimed {tr.get('claim_p50_ms')}/{tr.get('claim_p99_ms')} ms, "
            f"claimed -> received {tr.get('out_p50_ms')}/{tr.get('out_p99_ms')} ms)"
        )
        for p in s.get("sweep", []):
            print(
                f"  sweep {p['target_readings_s']:>7,}/s: {'ok ' if p['sustained'] else 'NO '} "
                f"lag p99 {p['lag_p99_s']} s, {p['server_cpu_us_per_reading']} us/reading, "
                f"{p['server_cores']} cores, trigger p50/p99 {p['trigger']['p50_ms']}/"
                f"{p['trigger']['p99_ms']} ms ({p['trigger']['received']}/{p['trigger']['crossings']})"
            )
        print(
            f"  max sustained: {s.get('max_sustained_readings_s', 0):,}/s published "
            f"(target {s.get('max_sustained_target_readings_s', 0):,}/s; every rate "
            f"sustained up to {s.get('sustained_below_first_failure_readings_s', 0):,}/s, "
            f"first failure {s.get('lowest_failed_target_readings_s')}); "
            f"SIGTERM exit {s.get('sigterm_exit_s')} s"
        )
