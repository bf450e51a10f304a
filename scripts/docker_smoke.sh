#!/usr/bin/env bash
# make docker-smoke: prove the guardbot image for real with podman (no Docker engine needed).
#
#  1. podman, buildah and debootstrap (apt-get, as root) and a containers.conf with runtime runc
#     and lowered nofile/nproc ulimits;
#  2. a stand-in python:3.11-slim (Debian bookworm minbase + python3/pip from Debian) when the
#     real one cannot be pulled; then the real Dockerfile, built with --pull=never, docker
#     format (keeps HEALTHCHECK) and the host's CA bundle mounted read-only for pip's TLS;
#  3. the image's size (fails above SIZE_MAX_MB), `guardbot version` and the bundled replay
#     (`run`) inside the image;
#  4. the bot long-running (paper mode polling the local emulator, run from the same image),
#     read-only root, tmpfs /tmp, no-new-privileges, a named volume for /data: wait for the
#     HEALTHCHECK to report healthy, set the kill switch, SIGTERM -> clean exit within 10 s,
#     state on the volume, start again -> state restored (paper account resumed, halt kept).
#
# Needs root (rootful podman). Not part of `make test`/CI. Environment knobs:
#   SMOKE_DIR (default /var/tmp/guardbot-smoke)  work folder, keeps the stand-in rootfs
#   SMOKE_PORT (default 18765)                  emulator port on the host network
#   MIRROR (default http://deb.debian.org/debian)
#   KEEP=1                                       leave containers and the volume behind
#   SIZE_MAX_MB (default 350)                    fail when the image is larger
set -euo pipefail

cd "$(dirname "$0")/.."
SMOKE_DIR=${SMOKE_DIR:-/var/tmp/guardbot-smoke}
PORT=${SMOKE_PORT:-18765}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
IMAGE=guardbot:smoke
BASE=docker.io/library/python:3.11-slim
VOLUME=guardbot-smoke-data
BOT=guardbot-smoke-bot
EMU=guardbot-smoke-emulator
CA=/etc/ssl/certs/ca-certificates.crt

step() { printf '\n=== %s\n' "$*"; }
die() { printf 'docker-smoke FAILED: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" != 0 ]; then
    die "run as root (rootful podman; apt-get for podman/buildah/debootstrap)"
fi

step "tools"
missing=()
for tool in podman buildah debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if ! command -v runc >/dev/null; then missing+=(runc); fi
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
podman --version
mkdir -p "$SMOKE_DIR"
cat >"$SMOKE_DIR/containers.conf" <<'EOF'
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF="$SMOKE_DIR/containers.conf"

cleanup() {
    if [ "${KEEP:-0}" = 1 ]; then return; fi
    local name
    for name in "$BOT" "$EMU"; do
        podman rm --force --ignore --volumes --time 0 "$name" >/dev/null 2>&1 || true
    done
    podman volume rm -f "$VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT
cleanup

step "base image $BASE"
if podman image exists "$BASE"; then
    echo "present (pulled or built earlier)"
else
    rootfs="$SMOKE_DIR/rootfs"
    if [ ! -x "$rootfs/usr/bin/python3" ]; then
        rm -rf "$rootfs"
        debootstrap --variant=minbase \
            --include=python3,python3-pip,python3-venv,ca-certificates \
            bookworm "$rootfs" "$MIRROR"
    fi
    # What the Dockerfile relies on from python:3.11-slim: `python` on PATH, pip allowed to
    # install system-wide (no PEP 668 marker), groupadd/useradd (passwd, in minbase).
    ln -sf python3 "$rootfs/usr/bin/python"
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
    # What Debian's slim images leave out (dpkg path-exclude in debian:bookworm-slim, which
    # python:3.11-slim is built on): the downloaded .debs, documentation but the copyright
    # files, man and info pages, translations.
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/man/* \
        "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
    find "$rootfs"/usr/share/doc -mindepth 1 ! -name copyright ! -type d -delete
    tar -C "$rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        - "$BASE"
    echo "stand-in $BASE built from debootstrap bookworm ($(chroot "$rootfs" python3 --version))"
fi

step "build $IMAGE from the Dockerfile (--pull=never)"
podman build --pull=never --format docker -v "$CA:$CA:ro" -t "$IMAGE" .
health_cmd=$(podman image inspect --format '{{json .Config.Healthcheck}}' "$IMAGE")
echo "HEALTHCHECK in image: $health_cmd"
case "$health_cmd" in *guardbot*health*) ;; *) die "image has no HEALTHCHECK" ;; esac

step "image size"
base_mb=$(( $(podman image inspect --format '{{.Size}}' "$BASE") / 1000000 ))
image_mb=$(( $(podman image inspect --format '{{.Size}}' "$IMAGE") / 1000000 ))
echo "base $BASE: $base_mb MB; $IMAGE: $image_mb MB (guardbot and its dependencies: $((image_mb - base_mb)) MB)"
podman history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | cut -c1-110 | head -12
if [ "$image_mb" -gt "${SIZE_MAX_MB:-350}" ]; then
    die "image is $image_mb MB, above ${SIZE_MAX_MB:-350} MB"
fi

step "guardbot version"
out=$(podman run --rm "$IMAGE" version)
echo "$out"
case "$out" in "guardbot "*) ;; *) die "unexpected version output: $out" ;; esac

step "bundled replay (the image's default command)"
podman volume create "$VOLUME" >/dev/null
podman run --rm --read-only --tmpfs /tmp --security-opt no-new-privileges \
    -v "$VOLUME:/data" "$IMAGE" run | sed -n '/replay report/,$p'

step "emulator (same image) on 127.0.0.1:$PORT"
podman run -d --name "$EMU" --network host --read-only --tmpfs /tmp --no-healthcheck \
    --entrypoint python "$IMAGE" -m bot.emulator --port "$PORT" \
    --price BTC/USDT:USDT=60000 >/dev/null
for _ in $(seq 1 30); do
    if podman logs "$EMU" 2>&1 | grep "emulator" >/dev/null; then break; fi
    sleep 1
done
podman logs "$EMU" 2>&1 | sed -n 1,3p

start_bot() {
    podman run -d --name "$BOT" --network host --read-only --tmpfs /tmp \
        --security-opt no-new-privileges -v "$VOLUME:/data" \
        -e GUARDBOT_FEED__KIND=poll -e GUARDBOT_FEED__POLL_S=2 \
        -e GUARDBOT_STATE__HEARTBEAT_S=2 \
        -e GUARDBOT_EXCHANGE__API_URL="http://127.0.0.1:$PORT" \
        "$IMAGE" run >/dev/null
}

wait_healthy() {
    # Without systemd timers podman does not schedule HEALTHCHECKs: run the image's check by
    # hand (podman healthcheck run executes the HEALTHCHECK command and records the status).
    for _ in $(seq 1 60); do
        if podman healthcheck run "$BOT" >/dev/null 2>&1; then
            status=$(podman inspect --format '{{.State.Health.Status}}' "$BOT" 2>/dev/null ||
                podman inspect --format '{{.State.Healthcheck.Status}}' "$BOT")
            echo "health status: $status"
            [ "$status" = healthy ] && return 0
        fi
        if [ "$(podman inspect --format '{{.State.Running}}' "$BOT")" != true ]; then
            podman logs "$BOT" 2>&1 | tail -n 30
            die "bot container exited before turning healthy"
        fi
        sleep 2
    done
    podman logs "$BOT" 2>&1 | tail -n 30
    die "bot never turned healthy"
}

stop_bot() {
    local t0 t1 code
    t0=$(date +%s.%N)
    podman stop -t 10 "$BOT" >/dev/null
    t1=$(date +%s.%N)
    code=$(podman inspect --format '{{.State.ExitCode}}' "$BOT")
    elapsed=$(python3 -c "print(f'{$t1 - $t0:.1f}')")
    echo "SIGTERM -> exit code $code after ${elapsed}s"
    [ "$code" = 0 ] || { podman logs "$BOT" 2>&1 | tail -n 30; die "exit code $code (137 = killed)"; }
    python3 -c "import sys; sys.exit(0 if $t1 - $t0 < 10 else 1)" || die "stop took ${elapsed}s"
}

step "bot: paper mode polling the emulator, read-only root, volume $VOLUME"
start_bot
wait_healthy
podman exec "$BOT" guardbot halt --reason "docker-smoke kill switch"
for _ in $(seq 1 30); do
    if podman exec "$BOT" cat /data/state/heartbeat.json | grep '"halted": "manual"' >/dev/null; then
        break
    fi
    sleep 1
done
podman exec "$BOT" cat /data/state/heartbeat.json
echo
first_run=$(podman exec "$BOT" python -c \
    "import json; print(json.load(open('/data/state/heartbeat.json'))['run_id'])")

step "SIGTERM"
stop_bot
podman logs "$BOT" 2>&1 | grep -E '"event": "(bot_stopping|engine_stopped)"' || true
podman rm "$BOT" >/dev/null

step "state kept on the volume"
podman run --rm -v "$VOLUME:/data" --entrypoint ls "$IMAGE" -l /data/state
podman run --rm -v "$VOLUME:/data" "$IMAGE" health --max-age 1e9 || true

step "start again: state restored"
start_bot
wait_healthy
podman logs "$BOT" 2>&1 | grep -E 'paper_resumed' ||
    die "second start did not resume the paper account"
beat=$(podman exec "$BOT" cat /data/state/heartbeat.json)
echo "$beat"
case "$beat" in *'"halted": "manual"'*) ;; *) die "kill switch not restored" ;; esac
runs=$(podman exec "$BOT" python -c "import sqlite3
db = sqlite3.connect('file:/data/state/guardbot.sqlite?mode=ro', uri=True)
for row in db.execute('SELECT run_id, status, ended_at IS NOT NULL FROM runs ORDER BY started_at'):
    print(*row)")
echo "runs in the store:"
echo "$runs"
case "$runs" in *"$first_run stopped 1"*) ;; *) die "first run $first_run not in the store" ;; esac
stop_bot

step "docker-smoke passed"
