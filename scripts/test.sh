#!/usr/bin/env bash
# Install what the tests need (system tools and Python packages), then run the whole suite.
# Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

# System tools the tests drive for real: systemd-analyze (unit checks), promtool (metrics lint),
# aria2c, transmission-cli and qbittorrent-nox (BitTorrent clients besides libtorrent),
# redis-server (cluster mode), s3cmd (an S3 client), Node and npm (s3rver, a second S3 server),
# chromium (headless, the status page test).
need_apt=()
command -v systemd-analyze >/dev/null 2>&1 || need_apt+=(systemd)
command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
command -v aria2c >/dev/null 2>&1 || need_apt+=(aria2)
command -v s3cmd >/dev/null 2>&1 || need_apt+=(s3cmd)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
command -v transmission-cli >/dev/null 2>&1 || need_apt+=(transmission-cli)
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)  # the status page's browser test
command -v mkfs.xfs >/dev/null 2>&1 || need_apt+=(xfsprogs)  # reflinks on a loop-mounted XFS
# The WAN lab (tests/wan/, marker "wan"; skipped unless root with network namespaces):
# ip and tc, ping, curl, and two more real clients.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v ping >/dev/null 2>&1 || need_apt+=(iputils-ping)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v qbittorrent-nox >/dev/null 2>&1 || need_apt+=(qbittorrent-nox)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "missing system packages (install as root): ${need_apt[*]}" >&2
  fi
fi

# s3rver (npm): the suite's second S3 implementation besides moto; tests/conftest.py runs
# it from here (or from $S3RVER_BIN).
s3rver_dir="${XDG_CACHE_HOME:-$HOME/.cache}/s3torrent/node"
if [ ! -x "$s3rver_dir/node_modules/.bin/s3rver" ] && command -v npm >/dev/null 2>&1; then
  mkdir -p "$s3rver_dir"
  npm install --prefix "$s3rver_dir" --no-audit --no-fund --silent s3rver@3.7.1 >/dev/null
fi

python3 -m pip install -q -e '.[test]'
python3 -m ruff check httpshell seeder tracker tests benchmarks
python3 -m pytest "$@"
