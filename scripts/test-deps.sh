#!/usr/bin/env bash
# Installs what the integration tests need, idempotently, on a fresh Debian machine:
#   - PostgreSQL 15 server binaries (/usr/lib/postgresql/15/bin) and MariaDB server binaries;
#     the tests start their own throwaway servers from these on loopback ports.
#   - systemd-analyze (Debian's systemd package), which the unit-file tests run offline.
#   - promtool (Debian's prometheus package) and PyYAML (python3-yaml), with which the tests
#     check deploy/: the Prometheus rules and their unit tests, the Kubernetes manifests.
#   - wrk, the load generator of tests/integration/load.rs and benches/load/.
#   - fuse-overlayfs and fuse3 (fusermount3): the disk-stall test's stallable state dir.
#   - iproute2 and libfaketime for the chaos suite (network namespaces, a skewed clock).
#   - podman with runc, catatonit (pods' infra image), mmdebstrap, acl (setfacl) and cargo-deb
#     for the podman tests (tests/integration/podman): Debian 12 containers booting systemd, the
#     .deb, the image and `podman kube play`. Their local images are built from Debian's
#     mirror by tests/integration/podman/images.sh, run here so the tests find them cached.
#   - a Python virtualenv with the pinned moto[server] (tests/fixtures/requirements.txt); the
#     tests start their own strict Route 53 / RDS emulators from it.
# Prints nothing but progress; exits non-zero if anything cannot be installed.
set -euo pipefail
cd "$(dirname "$0")/.."

DEPS_DIR="${QG_DEPS_DIR:-$HOME/.cache/quorumgate}"
mkdir -p "$DEPS_DIR"

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    apt_updated=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ ! -x /usr/lib/postgresql/15/bin/postgres ]; then
  echo "installing PostgreSQL 15 server binaries"
  apt_install postgresql-15
fi
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "installing MariaDB server binaries"
  apt_install mariadb-server
fi

if [ ! -x /usr/bin/systemd-analyze ]; then
  echo "installing systemd (for systemd-analyze)"
  apt_install systemd
fi

# The package also brings a Prometheus server (which systemd, where it runs, starts on :9090);
# the tests use only promtool.
if ! command -v promtool >/dev/null 2>&1; then
  echo "installing promtool (Debian's prometheus package)"
  apt_install prometheus
fi
if ! /usr/bin/python3 -c 'import yaml' >/dev/null 2>&1; then
  echo "installing PyYAML for Debian's python3"
  apt_install python3 python3-yaml
fi

# The chaos suite (tests/chaos, quorumgate-testkit): network namespaces and veth pairs with
# iproute2 (`ip netns`, run as root), and libfaketime to skew one agent's wall clock.
if ! command -v ip >/dev/null 2>&1; then
  echo "installing iproute2 (for the chaos suite's network namespaces)"
  apt_install iproute2
fi
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1 ]; then
  echo "installing libfaketime (for the chaos suite's clock-skew scenario)"
  apt_install faketime
fi

# The disk-stall test (tests/integration/disk_stall.rs) and bench put a state dir on
# fuse-overlayfs and stall it with SIGSTOP; it needs /dev/fuse (a kernel with FUSE) and root.
if ! command -v fuse-overlayfs >/dev/null 2>&1 || ! command -v fusermount3 >/dev/null 2>&1; then
  echo "installing fuse-overlayfs and fuse3 (for the disk-stall test)"
  apt_install fuse-overlayfs fuse3
fi

if ! command -v wrk >/dev/null 2>&1; then
  echo "installing wrk (HTTP load generator)"
  apt_install wrk
fi

# The podman tests. runc, not crun: crun refuses this host kind's hybrid cgroups.
need=()
for tool in podman runc catatonit mmdebstrap setfacl objcopy; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
if [ "${#need[@]}" -gt 0 ]; then
  echo "installing ${need[*]} (for the podman tests)"
  apt_install podman runc catatonit mmdebstrap acl binutils uidmap
fi
if ! cargo deb --version >/dev/null 2>&1; then
  echo "installing cargo-deb (builds the .deb the podman tests install)"
  cargo install cargo-deb --locked
fi
echo "building the podman tests' local images (cached by tests/integration/podman/images.sh's hash)"
CONTAINERS_CONF="$PWD/tests/integration/podman/containers.conf" \
  bash tests/integration/podman/images.sh >/dev/null

venv="$DEPS_DIR/moto-venv"
req=tests/fixtures/requirements.txt
stamp="$venv/.requirements.sha256"
want=$(sha256sum "$req" | cut -d' ' -f1)
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing the pinned moto emulator into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi
echo "test dependencies ready (moto python: $venv/bin/python)"
