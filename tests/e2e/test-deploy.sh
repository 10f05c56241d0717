#!/usr/bin/env bash
# Static checks of the deployment files in deploy/ (no Docker engine and no systemd as
# PID 1 are needed; nothing is started).
#
#   test-deploy.sh compose-config   `docker compose config` (or docker-compose v1) accepts
#                                   deploy/compose.yaml, and the parsed model has the
#                                   services, dependencies, mounts and topic commands
#                                   expected; deploy/tally.conf passes `tally check-config`
#                                   when the program has that command.
#   test-deploy.sh systemd-verify   `systemd-analyze verify` accepts deploy/tally.service.
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
  [ "$(cat "$work/services")" = "$(printf 'kafka\nkafka-init\ntally')" ] ||
    fail "services are: $(tr '\n' ' ' <"$work/services")"
  ok "services kafka, kafka-init, tally"

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
  ok "hardening and restart options present"
}

case "$mode" in
  compose-config) test_compose_config ;;
  systemd-verify) test_systemd_verify ;;
  *) fail "usage: $0 compose-config|systemd-verify" ;;
esac
echo "PASS: $mode"
