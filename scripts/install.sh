#!/usr/bin/env bash
# Installs everything feedray needs on a fresh Debian machine; safe to run again (each step
# is skipped when already done).
#   - Python 3.11 virtualenv .venv with the locked dependencies: requirements/cpu.lock on hosts
#     without an NVIDIA driver (fbgemm-gpu-cpu, faiss-cpu), requirements/gpu.lock otherwise
#     (fbgemm-gpu, faiss GPU build). Detected, not asked; FEEDRAY_VARIANT=cpu|gpu overrides.
#   - Redis 7 from Debian's redis-server package.
#   - Prometheus from Debian's prometheus package (the stack's optional metrics store).
#   - Chromium and chromedriver from Debian (the headless browser the dashboard test drives).
#   - Java 17 (Debian openjdk-17-jre-headless) when no Java 17+ is present, and Maven.
#   - Apache Kafka (org.apache.kafka:kafka_2.13 and its runtime dependencies) from Maven
#     Central into .feedray/dist/kafka/libs.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV="$ROOT/.venv"
KAFKA_DIST="${FEEDRAY_KAFKA__DISTRIBUTION_DIR:-$ROOT/.feedray/dist/kafka}"
STAMPS="$ROOT/.feedray/dist/stamps"
mkdir -p "$STAMPS"

log() { printf '[install] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

APT_UPDATED=0
apt_install() {
  if [ "$APT_UPDATED" = 0 ]; then as_root apt-get update -q >/dev/null; APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

# --- host variant -------------------------------------------------------------------------
if [ -n "${FEEDRAY_VARIANT:-}" ]; then
  VARIANT=$FEEDRAY_VARIANT
elif [ -e /proc/driver/nvidia/version ] || { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }; then
  VARIANT=gpu
else
  VARIANT=cpu
fi
LOCK="$ROOT/requirements/$VARIANT.lock"
log "host variant: $VARIANT ($LOCK)"

# --- system packages ----------------------------------------------------------------------
if ! command -v redis-server >/dev/null; then
  log "installing redis-server (Debian)"; apt_install redis-server
fi
java_major() { java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1; }
if ! command -v java >/dev/null || [ "$(java_major)" -lt 17 ]; then
  log "installing Java 17 (Debian openjdk-17-jre-headless)"; apt_install openjdk-17-jre-headless
fi
if ! command -v prometheus >/dev/null; then
  log "installing Prometheus (Debian)"; apt_install prometheus
fi
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "installing Chromium and chromedriver (Debian; the dashboard browser test)"
  apt_install chromium chromium-driver
fi
if ! command -v mvn >/dev/null; then
  log "installing Maven (Debian)"; apt_install maven
fi

# --- Apache Kafka from Maven Central --------------------------------------------------------
POM="$ROOT/scripts/kafka/pom.xml"
POM_SUM=$(sha256sum "$POM" | cut -c1-16)
if [ "$(cat "$STAMPS/kafka" 2>/dev/null)" != "$POM_SUM" ] || ! ls "$KAFKA_DIST"/libs/kafka_2.13-*.jar >/dev/null 2>&1; then
  log "fetching Apache Kafka jars from Maven Central into $KAFKA_DIST/libs"
  rm -rf "$KAFKA_DIST/libs"
  mvn -q -B -Dstyle.color=never -f "$POM" dependency:copy-dependencies -DincludeScope=runtime -DoutputDirectory="$KAFKA_DIST/libs"
  echo "$POM_SUM" > "$STAMPS/kafka"
fi

# --- Python -------------------------------------------------------------------------------
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
if ! command -v uv >/dev/null; then
  log "installing uv (PyPI)"; "$PYTHON" -m pip install -q --disable-pip-version-check uv
fi
UV=$(command -v uv || echo "$("$PYTHON" -m site --user-base)/bin/uv")
[ -x "$VENV/bin/python" ] || "$UV" venv -q --python "$PYTHON" "$VENV"
# "bytecode": the stamp of installs that compile bytecode (an older venv syncs once more).
LOCK_SUM=$( (cat "$LOCK"; cat "$ROOT/pyproject.toml"; echo bytecode) | sha256sum | cut -c1-16)
if [ "$(cat "$STAMPS/python-$VARIANT" 2>/dev/null)" != "$LOCK_SUM" ]; then
  log "syncing Python packages from $(basename "$LOCK")"
  # --compile-bytecode: every Ray worker imports ray.data, pandas, torch ... at start; from
  # source (no .pyc, or PYTHONDONTWRITEBYTECODE set) `import ray.data, pandas` took 3.4 s here
  # against 1.6 s from bytecode, paid again by each new worker and actor.
  "$UV" pip sync -q --compile-bytecode --python "$VENV/bin/python" "$LOCK"
  "$UV" pip install -q --python "$VENV/bin/python" --no-deps -e "$ROOT"
  rm -f "$STAMPS"/python-*
  echo "$LOCK_SUM" > "$STAMPS/python-$VARIANT"
fi
log "done: $("$VENV/bin/python" -c 'import torch, torchrec, fbgemm_gpu, faiss, ray; print(f"torch {torch.__version__}, torchrec {torchrec.__version__}, faiss {faiss.__version__}, ray {ray.__version__}")' 2>/dev/null | tail -n1)"
