#!/usr/bin/env bash
# The build steps of deploy/Dockerfile, in one script that the Dockerfile and CI both run
# (tests/e2e/test-deploy.sh image-build), so that CI checks the image's real steps rather
# than a copy of them.
#
#   deploy/build.sh build-deps          apt-get install what the build stage compiles with
#   deploy/build.sh runtime-deps        apt-get install what the runtime stage runs with
#   deploy/build.sh check-deps          apt-get install --simulate of both lists: every
#                                       package exists for this Debian (nothing installed)
#   deploy/build.sh build DESTDIR [BUILDDIR]
#                                       meson setup (prefix /usr, sysconfdir /etc: the one
#                                       documented install prefix), compile the program,
#                                       libtally and the librdkafka plugin, and install
#                                       them with the example /etc/tally/tally.conf into
#                                       DESTDIR; then checks the tree and runs
#                                       DESTDIR/usr/bin/tally --version
set -euo pipefail
cd "$(dirname "$0")/.."

build_packages=(gcc meson ninja-build pkg-config libglib2.0-dev libjson-glib-dev librdkafka-dev
  libsoup-3.0-dev libsystemd-dev libcrypt-dev)
# curl: the container's HEALTHCHECK asks /healthz. glib-networking: GIO's TLS, for
# [metrics] tls_cert_file (libsoup only recommends it). libcrypt1: bcrypt for
# [metrics] basic_auth_users.
runtime_packages=(libglib2.0-0 libjson-glib-1.0-0 librdkafka1 libsoup-3.0-0 libsystemd0
  glib-networking libcrypt1 ca-certificates curl)

apt_install() {
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
  rm -rf /var/lib/apt/lists/*
}

build() {
  local destdir=${1:?usage: deploy/build.sh build DESTDIR [BUILDDIR]}
  local builddir=${2:-$destdir.build}
  destdir=$(realpath -m "$destdir")
  rm -rf "$builddir"
  meson setup "$builddir" --prefix=/usr --sysconfdir=/etc --buildtype=release -Dsystemd=enabled
  # Only what is installed (not the test suites or benchmarks), then install without
  # rebuilding: every installed target is among these three.
  meson compile -C "$builddir" tally:executable tally:shared_library tally-rdkafka:shared_module
  meson install -C "$builddir" --no-rebuild --destdir "$destdir"

  local libdir f
  libdir=$(meson introspect "$builddir" --buildoptions | python3 -c \
    'import json, sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "libdir"))')
  for f in usr/bin/tally "usr/$libdir/libtally.so.0" "usr/$libdir/libtally-rdkafka.so" etc/tally/tally.conf; do
    [ -e "$destdir/$f" ] || { echo "build.sh: $f was not installed" >&2; exit 1; }
  done
  LD_LIBRARY_PATH="$destdir/usr/$libdir" "$destdir/usr/bin/tally" --version
  echo "build.sh: installed into $destdir: /usr/bin/tally, /usr/$libdir/libtally.so.0, /usr/$libdir/libtally-rdkafka.so, /etc/tally/tally.conf"
}

case "${1:-}" in
  build-deps) apt_install "${build_packages[@]}" ;;
  runtime-deps) apt_install "${runtime_packages[@]}" ;;
  check-deps) apt-get install -s -q --no-install-recommends "${build_packages[@]}" "${runtime_packages[@]}" >/dev/null
    echo "build.sh: ${#build_packages[@]} build and ${#runtime_packages[@]} runtime packages resolve" ;;
  build) shift; build "$@" ;;
  *) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
