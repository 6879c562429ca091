#!/usr/bin/env bash
# Builds the local images the podman tests run on, from Debian's mirror alone (no registry is
# reachable here), and keeps them in podman's storage under tags keyed by this script's hash, so
# a second run only checks that they exist. Run by scripts/test-deps.sh and again by each
# podman test (a no-op when cached; a lock serialises concurrent callers).
#
#   localhost/quorumgate-test-systemd:KEY  Debian 12 minbase + systemd, dbus: the "bastion",
#                                          booted with /sbin/init as PID 1.
#   localhost/quorumgate-test-base:KEY     the runtime base for the Dockerfile's BASE argument,
#                                          the same content as distroless cc-debian12:nonroot:
#                                          glibc, libgcc, CA roots, tzdata, netbase, passwd with
#                                          nonroot (65532), no shell, no package manager.
#   localhost/quorumgate-test-busybox:KEY  busybox-static: the Kubernetes example's init
#                                          container and, as `httpd -f -p 8080 -h /www` serving
#                                          /www/healthz ("ok"), the app beside the sidecar.
#
# Prints the three tags (systemd, base, busybox), one a line, on stdout.
set -euo pipefail

KEY=$(sha256sum "$0" | cut -c1-12)
CACHE="${QG_DEPS_DIR:-$HOME/.cache/quorumgate}/podman"
mkdir -p "$CACHE"
SUITE=bookworm
systemd_tag="localhost/quorumgate-test-systemd:$KEY"
base_tag="localhost/quorumgate-test-base:$KEY"
busybox_tag="localhost/quorumgate-test-busybox:$KEY"

exec 9>"$CACHE/images.lock"
flock -w 900 9

have() { podman image exists "$1"; }

if ! have "$systemd_tag"; then
  echo "building $systemd_tag (mmdebstrap minbase + systemd)" >&2
  mmdebstrap --quiet --variant=minbase --include=systemd,systemd-sysv,dbus \
    --customize-hook='rm -f "$1"/etc/machine-id && : > "$1"/etc/machine-id' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/*' \
    "$SUITE" - \
    | podman import --quiet --change 'CMD ["/sbin/init"]' --change 'STOPSIGNAL SIGRTMIN+3' - "$systemd_tag" >/dev/null
fi

# The extract variant unpacks the packages and runs no maintainer script and no hook: the rest
# is done here on a directory, then imported.
work=$(mktemp -d "$CACHE/root.XXXXXX")
trap 'rm -rf "$work"' EXIT

if ! have "$base_tag"; then
  echo "building $base_tag (mmdebstrap extract: libc6, libgcc-s1, ca-certificates, tzdata, netbase)" >&2
  root="$work/base"
  mmdebstrap --quiet --variant=extract --include=libc6,libgcc-s1,ca-certificates,tzdata,netbase \
    "$SUITE" "$root"
  mkdir -p "$root/etc/ssl/certs"
  cat "$root"/usr/share/ca-certificates/mozilla/*.crt > "$root/etc/ssl/certs/ca-certificates.crt"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' > "$root/etc/group"
  install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
  install -d -m 0700 "$root/root"
  install -d -m 1777 "$root/tmp"
  rm -rf "$root"/usr/share/man "$root"/usr/share/info "$root"/usr/share/lintian \
    "$root"/usr/share/locale "$root"/var/cache/apt "$root"/var/lib/apt "$root"/var/lib/dpkg \
    "$root"/var/log/*
  tar -C "$root" --numeric-owner -c . | podman import --quiet - "$base_tag" >/dev/null
fi

if ! have "$busybox_tag"; then
  echo "building $busybox_tag (busybox-static)" >&2
  root="$work/busybox"
  mmdebstrap --quiet --variant=extract --include=busybox-static "$SUITE" "$root"
  for a in sh rm cat ls id httpd sleep; do ln -sf busybox "$root/bin/$a"; done
  install -d -m 0755 "$root/www"
  install -d -m 1777 "$root/tmp"
  echo ok > "$root/www/healthz"
  rm -rf "$root"/usr/share "$root"/var/cache/apt "$root"/var/lib/apt "$root"/var/lib/dpkg
  tar -C "$root" --numeric-owner -c . \
    | podman import --quiet --change 'ENV PATH=/bin' --change 'CMD ["/bin/httpd", "-f", "-p", "8080", "-h", "/www"]' - "$busybox_tag" >/dev/null
fi

# Older generations of these images (an earlier version of this script) only take disk space.
podman images --format '{{.Repository}}:{{.Tag}}' \
  | grep -E '^localhost/quorumgate-test-(systemd|base|busybox):' | grep -v ":$KEY\$" \
  | while read -r old; do podman rmi "$old" >/dev/null 2>&1 || true; done || true

printf '%s\n' "$systemd_tag" "$base_tag" "$busybox_tag"
