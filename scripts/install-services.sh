#!/usr/bin/env bash
# Make sure the real services the test suite talks to are installed.
# Idempotent: installs only what is missing. On Debian as root it uses apt-get;
# anywhere else it names the packages to install and fails.
set -euo pipefail

missing() {
  need=()
  command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
  command -v influxd >/dev/null 2>&1 || [ -x /usr/bin/influxd ] || need+=(influxdb)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  # the MQTT TLS tests make their own CA and broker certificate with the openssl CLI
  command -v openssl >/dev/null 2>&1 || [ -x /usr/bin/openssl ] || need+=(openssl)
  command -v pg_ctlcluster >/dev/null 2>&1 || command -v psql >/dev/null 2>&1 || need+=(postgresql)
  # tests/deploy checks the systemd units with systemd-analyze verify (no running systemd needed)
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  # jitstock admin backup/restore shell out to pg_dump/pg_restore; the server install test
  # runs docs/install-server.md's curl lines against InfluxDB
  command -v pg_dump >/dev/null 2>&1 || need+=(postgresql-client)
  command -v curl >/dev/null 2>&1 || need+=(curl)
}

missing
if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  # Two `make test` started at once (two clones, or CI beside a developer) must not
  # both run apt-get: the second would fail on apt's lock. One installs, the other
  # waits here, then finds nothing missing.
  exec 9>/var/lock/jitstock-install-services.lock
  flock -w 1800 9
  missing
  if [ ${#need[@]} -eq 0 ]; then
    exit 0
  fi
  echo "installing test services: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # and wait, rather than fail, while something else outside jitstock holds apt's locks
  apt-get -o DPkg::Lock::Timeout=600 update -qq
  apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # Debian's packages try to start their daemons; the tests start their own.
  exit 0
fi

echo "The test suite needs these system packages: ${need[*]}" >&2
echo "Install them (Debian/Ubuntu: sudo apt-get install ${need[*]}) and run make test again." >&2
exit 1
