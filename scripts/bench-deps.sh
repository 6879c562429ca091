#!/usr/bin/env bash
# Installs what benches/probes/probe_bench.py needs and the tests do not, idempotently, on a
# Debian machine: nginx (the HTTP targets), Prometheus's blackbox_exporter (the peer measured
# against) and a Prometheus server (the way users drive the exporter). Nothing is started or
# enabled here: the bench starts its own copies on loopback, with configs in a temp dir.
# Prints nothing but progress; exits non-zero if anything cannot be installed.
set -euo pipefail

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx (nginx-light)"
  apt_install nginx-light
fi
if [ ! -x /usr/bin/prometheus-blackbox-exporter ]; then
  echo "installing prometheus-blackbox-exporter"
  apt_install prometheus-blackbox-exporter
fi
if [ ! -x /usr/bin/prometheus ]; then
  echo "installing prometheus"
  apt_install prometheus
fi
echo "bench dependencies ready"
