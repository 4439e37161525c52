#!/usr/bin/env bash
# Make sure a Docker engine answers, installing and starting Debian's engine where none does.
#
# Used by .ci/run and `make docker` (a prerequisite of `make images` and `make study`).
#   - If `docker info` answers: nothing to do (tools still installed if missing, as root).
#   - Otherwise, as root: apt-get install docker.io, docker-compose and debootstrap where
#     missing, start dockerd in the background (log: /var/log/dockerd.log) and wait until
#     `docker info` answers, failing loudly after DOCKER_WAIT_S seconds (default 60).
# Environment: DOCKER_WAIT_S (seconds to wait), DOCKERD_LOG (log file), DOCKERD_ARGS (extra
# dockerd arguments), DOCKER_HOST (a unix:// socket to serve instead of the default).
set -euo pipefail

wait_s="${DOCKER_WAIT_S:-60}"
log="${DOCKERD_LOG:-/var/log/dockerd.log}"

say() { echo "ensure-docker: $*"; }
die() { echo "ensure-docker: error: $*" >&2; exit 1; }

engine_answers() { docker info >/dev/null 2>&1; }

install_missing() {
    local missing=()
    command -v docker >/dev/null 2>&1 || missing+=(docker.io)
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
    [ "${#missing[@]}" -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        say "missing ${missing[*]}; installing them needs root (apt-get install ${missing[*]})"
        return 0
    fi
    # shellcheck disable=SC2207  # deduplicate the package names
    missing=($(printf '%s\n' "${missing[@]}" | sort -u))
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

start_engine() {
    [ "$(id -u)" -eq 0 ] || die "no Docker engine answers and starting dockerd needs root"
    command -v dockerd >/dev/null 2>&1 || die "dockerd is not installed (apt-get install docker.io)"

    local pidfile=/var/run/docker.pid
    local args=()
    if [ -n "${DOCKER_HOST:-}" ]; then
        args+=(--host "$DOCKER_HOST")
    fi
    # shellcheck disable=SC2206  # word splitting of DOCKERD_ARGS is intended
    args+=(${DOCKERD_ARGS:-})
    # A pid file left by an engine that was killed makes dockerd refuse to start.
    if [ -f "$pidfile" ] && ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
        say "removing stale $pidfile"
        rm -f "$pidfile"
    fi
    mkdir -p "$(dirname "$log")"
    say "starting dockerd (log: $log)"
    # setsid: the engine outlives this script and an interrupted make.
    setsid nohup dockerd "${args[@]}" >>"$log" 2>&1 </dev/null &
    local pid=$!

    local waited=0
    until engine_answers; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 30 "$log" >&2 || true
            die "dockerd exited before answering; see $log"
        fi
        if [ "$waited" -ge "$wait_s" ]; then
            tail -n 30 "$log" >&2 || true
            die "dockerd did not answer within ${wait_s} s; see $log"
        fi
        sleep 1
        waited=$((waited + 1))
    done
    say "engine answers after ${waited} s (dockerd pid $pid)"
}

if engine_answers; then
    [ "$(id -u)" -eq 0 ] && install_missing
    say "engine answers"
    exit 0
fi
install_missing
start_engine
