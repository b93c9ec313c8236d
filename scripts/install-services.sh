#!/usr/bin/env bash
# Make sure the real services the test suite talks to are installed.
# Idempotent: installs only what is missing. On Debian as root it uses apt-get;
# anywhere else it names the packages to install and fails.
set -euo pipefail

need=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || need+=(influxdb)
[ -x /usr/bin/chromium ] || need+=(chromium)
# the MQTT TLS tests make their own CA and broker certificate with the openssl CLI
command -v openssl >/dev/null 2>&1 || [ -x /usr/bin/openssl ] || need+=(openssl)
command -v pg_ctlcluster >/dev/null 2>&1 || command -v psql >/dev/null 2>&1 || need+=(postgresql)
# tests/deploy checks the edge's systemd unit with systemd-analyze verify (no running systemd needed)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing test services: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's packages try to start their daemons; the tests start their own.
  exit 0
fi

echo "The test suite needs these system packages: ${need[*]}" >&2
echo "Install them (Debian/Ubuntu: sudo apt-get install ${need[*]}) and run make test again." >&2
exit 1
