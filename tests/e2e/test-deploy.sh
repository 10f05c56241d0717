#!/usr/bin/env bash
# Static checks of the deployment files in deploy/ (no Docker engine and no systemd as
# PID 1 are needed; nothing is started).
#
#   test-deploy.sh compose-config   `docker compose config` (or docker-compose v1) accepts
#                                   deploy/compose.yaml, and the parsed model has the
#                                   services, dependencies, mounts and topic commands
#                                   expected; deploy/tally.conf passes `tally check-config`
#                                   when the program has that command.
#   test-deploy.sh systemd-verify   `systemd-analyze verify` accepts deploy/tally.service,
#                                   which is Type=notify.
#   test-deploy.sh permissions      the key-file installed as the unit's own install comment
#                                   says is readable by an unprivileged uid in no group of
#                                   the file (what DynamicUser= gives): `tally check-config`
#                                   exits 0 as that uid; mode 0640 (the old comment) exits 78.
#   test-deploy.sh image-build      deploy/build.sh, the script deploy/Dockerfile's build stage
#                                   runs: its packages resolve (apt-get --simulate), it builds
#                                   and installs tally, libtally, the plugin and the example
#                                   key-file under prefix /usr into a DESTDIR, and the
#                                   Dockerfile calls it rather than a copy of its steps.
#   test-deploy.sh prometheus-grafana
#                                   `promtool check config deploy/prometheus.yml`; the Grafana
#                                   dashboard parses as JSON and every tally_* metric it
#                                   queries is one docs/operations.md lists.
#
# Exit status: 0 passed, 77 skipped (the checking tool is not installed), else failed.
set -euo pipefail

mode=${1:-}
root=${TALLY_SOURCE_ROOT:-$(cd "$(dirname "$0")/../.." && pwd)}
deploy="$root/deploy"

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }

# has TEXT FILE: FILE contains the line fragment TEXT.
has() { grep -qF -- "$1" "$2" || fail "compose model lacks: $1"; }

test_compose_config() {
  local compose=()
  if docker compose version >/dev/null 2>&1; then
    compose=(docker compose)
  elif command -v docker-compose >/dev/null 2>&1; then
    compose=(docker-compose)
  else
    echo "skip: neither 'docker compose' nor docker-compose is installed (scripts/setup installs docker-compose)"
    exit 77
  fi
  echo "using: ${compose[*]} ($("${compose[@]}" version --short 2>/dev/null || echo unknown))"

  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  "${compose[@]}" -f "$deploy/compose.yaml" config >"$work/model.yaml" 2>"$work/err" ||
    fail "compose rejected deploy/compose.yaml: $(cat "$work/err")"
  ok "compose accepts deploy/compose.yaml"
  "${compose[@]}" -f "$deploy/compose.yaml" config --services | sort >"$work/services"
  [ "$(cat "$work/services")" = "$(printf 'grafana\nkafka\nkafka-init\nprometheus\ntally')" ] ||
    fail "services are: $(tr '\n' ' ' <"$work/services")"
  ok "services kafka, kafka-init, tally, prometheus, grafana"

  local m="$work/model.yaml"
  has 'image: apache/kafka:' "$m"
  has 'KAFKA_PROCESS_ROLES: broker,controller' "$m"
  has 'condition: service_healthy' "$m"
  has 'condition: service_completed_successfully' "$m"
  has 'dockerfile: deploy/Dockerfile' "$m"
  has 'target: /etc/tally/tally.conf' "$m"
  has 'read_only: true' "$m"
  has '--topic tally-changelog' "$m"
  has 'cleanup.policy=compact' "$m"
  has '--topic tally-requests' "$m"
  has '--topic tally-snapshots' "$m"
  has '--topic tally-input' "$m"
  ok "model has KRaft broker, topic step, dependencies and read-only key-file mount"

  # The key-file the compose file mounts, checked by Tally itself when it can.
  local tally=${TALLY_EXE:-}
  if [ -n "$tally" ] && [ -x "$tally" ] && "$tally" --help 2>/dev/null | grep -qw check-config; then
    "$tally" check-config "$deploy/tally.conf" || fail "tally check-config deploy/tally.conf exits $?"
    ok "tally check-config deploy/tally.conf"
  else
    echo "note: tally has no check-config command yet; deploy/tally.conf not validated"
  fi
}

test_systemd_verify() {
  if ! command -v systemd-analyze >/dev/null 2>&1; then
    echo "skip: systemd-analyze is not installed"
    exit 77
  fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  # verify checks that ExecStart's program exists; put a stand-in where the unit expects
  # /usr/bin/tally by rewriting the path to a temporary executable.
  printf '#!/bin/sh\nexit 0\n' >"$work/tally"
  chmod +x "$work/tally"
  sed "s|/usr/bin/tally|$work/tally|g" "$deploy/tally.service" >"$work/tally.service"
  local out
  out=$(SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$work/tally.service" 2>&1) ||
    fail "systemd-analyze verify: $out"
  # verify exits 0 on some warnings; any line about our unit is a problem.
  if echo "$out" | grep -F "tally.service"; then
    fail "systemd-analyze verify reported the lines above"
  fi
  ok "systemd-analyze verify accepts deploy/tally.service"
  grep -qx 'DynamicUser=yes' "$deploy/tally.service" || fail "no DynamicUser=yes"
  grep -qx 'ProtectSystem=strict' "$deploy/tally.service" || fail "no ProtectSystem=strict"
  grep -qx 'NoNewPrivileges=yes' "$deploy/tally.service" || fail "no NoNewPrivileges=yes"
  grep -qx 'Restart=on-failure' "$deploy/tally.service" || fail "no Restart=on-failure"
  grep -qx 'Type=notify' "$deploy/tally.service" || fail "not Type=notify"
  grep -q '^ExecStart=/usr/bin/tally run --config /etc/tally/tally.conf$' "$deploy/tally.service" \
    || fail "ExecStart is not /usr/bin/tally with /etc/tally/tally.conf"
  ok "hardening, restart options and Type=notify present"
}

# The unit's install comment for the key-file, run into a scratch /etc, then read as a uid
# that owns nothing there and is in none of its groups, as DynamicUser= runs Tally.
test_permissions() {
  local tally=${TALLY_EXE:-$root/build/tally}
  [ "$(id -u)" = 0 ] || { echo "skip: needs root to act as another uid"; exit 77; }
  command -v setpriv >/dev/null || { echo "skip: setpriv (util-linux) is not installed"; exit 77; }
  local work line mode status
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  chmod 0755 "$work"
  line=$(grep -E '^#.*install .*-m [0-7]+ config/tally.conf /etc/tally/tally.conf' "$deploy/tally.service") \
    || fail "the unit has no install comment for the key-file"
  mode=$(echo "$line" | sed -E 's/.*install (-d -m [0-7]+ \/etc\/tally && )?install -m ([0-7]+) config\/tally.conf.*/\2/')
  [[ "$mode" =~ ^[0-7]+$ ]] || fail "cannot read the mode from: $line"
  install -d -m 0755 "$work/etc/tally"
  install -m "$mode" "$root/config/tally.conf" "$work/etc/tally/tally.conf"
  # The program and its libraries must be reachable by that uid too.
  install -d -m 0755 "$work/bin"
  cp -a "$(dirname "$tally")"/. "$work/bin/" 2>/dev/null || true
  chmod -R a+rX "$work/bin"
  as_dynamic_user() { setpriv --reuid=61234 --regid=61234 --clear-groups -- "$@"; }
  status=0
  as_dynamic_user env LD_LIBRARY_PATH="$work/bin" "$work/bin/$(basename "$tally")" check-config \
    "$work/etc/tally/tally.conf" >"$work/out" 2>&1 || status=$?
  [ "$status" = 0 ] || fail "mode $mode: check-config as uid 61234 exits $status: $(cat "$work/out")"
  ok "key-file installed with mode $mode (the unit's comment) is readable by a DynamicUser-like uid"
  chmod 0640 "$work/etc/tally/tally.conf"
  status=0
  as_dynamic_user env LD_LIBRARY_PATH="$work/bin" "$work/bin/$(basename "$tally")" check-config \
    "$work/etc/tally/tally.conf" >"$work/out" 2>&1 || status=$?
  [ "$status" = 78 ] || fail "mode 0640: expected exit 78, got $status"
  ok "mode 0640 root:root (the old comment) exits 78 for that uid, as the issue reported"
}

test_image_build() {
  command -v meson >/dev/null || { echo "skip: meson is not installed"; exit 77; }
  grep -q '^RUN deploy/build.sh build-deps$' "$deploy/Dockerfile" || fail "the Dockerfile does not run deploy/build.sh build-deps"
  grep -q '^RUN deploy/build.sh build /staging /build$' "$deploy/Dockerfile" || fail "the Dockerfile does not run deploy/build.sh build"
  grep -q 'build.sh runtime-deps' "$deploy/Dockerfile" || fail "the Dockerfile does not run deploy/build.sh runtime-deps"
  ! grep -qE '^RUN .*meson (setup|compile|install)' "$deploy/Dockerfile" || fail "the Dockerfile has meson steps of its own"
  ok "the Dockerfile's build steps are deploy/build.sh"
  if command -v apt-get >/dev/null; then
    "$deploy/build.sh" check-deps || fail "deploy/build.sh check-deps"
  fi
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' RETURN
  "$deploy/build.sh" build "$work/staging" "$work/build" >"$work/build.log" 2>&1 \
    || { tail -n 30 "$work/build.log" >&2; fail "deploy/build.sh build"; }
  tail -n 2 "$work/build.log"
  [ "$(stat -c %a "$work/staging/etc/tally/tally.conf")" = 644 ] || fail "/etc/tally/tally.conf is not 0644"
  ok "deploy/build.sh built and installed the program, libtally, the plugin and /etc/tally/tally.conf"
}

test_prometheus_grafana() {
  command -v promtool >/dev/null || { echo "skip: promtool (Debian's prometheus) is not installed"; exit 77; }
  promtool check config "$deploy/prometheus.yml" || fail "promtool check config deploy/prometheus.yml"
  ok "promtool check config deploy/prometheus.yml"
  python3 - "$deploy/grafana/dashboards/tally.json" "$root/docs/operations.md" <<'PY' || fail "dashboard"
import json, re, sys
d = json.load(open(sys.argv[1]))
docs = open(sys.argv[2]).read()
listed = set(re.findall(r"^\| `(tally_[a-z_]+)`", docs, re.M))
exprs = [t["expr"] for p in d["panels"] for t in p.get("targets", [])]
used = set()
for e in exprs:
    for m in re.findall(r"tally_[a-z_]+", e):
        used.add(re.sub(r"_(bucket|sum|count)$", "", m))
missing = sorted(used - listed)
if missing:
    sys.exit("dashboard queries metrics docs/operations.md does not list: %s" % missing)
print("dashboard: %d panels, %d queries over %d metrics, all documented" % (len(d["panels"]), len(exprs), len(used)))
PY
  ok "the Grafana dashboard parses and queries only documented metrics"
}

case "$mode" in
  compose-config) test_compose_config ;;
  systemd-verify) test_systemd_verify ;;
  permissions) test_permissions ;;
  image-build) test_image_build ;;
  prometheus-grafana) test_prometheus_grafana ;;
  *) fail "usage: $0 compose-config|systemd-verify|permissions|image-build|prometheus-grafana" ;;
esac
echo "PASS: $mode"
