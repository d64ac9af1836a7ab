# Shared by bin/run and bin/test: a virtualenv with the project installed, and local
# Redis / PostgreSQL started (and installed from the system's packages) when missing.
# shellcheck shell=bash

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
PY="$VENV/bin/python"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# Run a command as root: directly when we are root, through sudo when it needs no password.
as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else return 1
  fi
}

APT_UPDATED=""
apt_install() {
  command -v apt-get >/dev/null || return 1
  if [ -z "$APT_UPDATED" ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || return 1
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_venv() {
  local extras="$1"
  command -v python3 >/dev/null || die "python3 (3.11 or newer) is required"
  python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
    || die "Python 3.11 or newer is required (found $(python3 --version))"
  if [ ! -x "$PY" ]; then
    say "creating virtualenv in ${VENV#"$ROOT"/}"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
      rm -rf "$VENV"
      say "installing python3-venv"
      apt_install python3-venv || die "python3 -m venv failed; install your distribution's python3-venv package"
      python3 -m venv "$VENV" || die "python3 -m venv failed"
    fi
  fi
  # Reinstall only when pyproject.toml changed since the last install.
  local stamp="$VENV/.chatman-$extras" digest
  digest="$(cat "$ROOT/pyproject.toml" | "$PY" -c 'import hashlib,sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$digest" ]; then
    say "installing Chatman and its dependencies ($extras)"
    "$PY" -m pip install -q --upgrade pip >/dev/null
    "$PY" -m pip install -q -e "$ROOT[$extras]" >"$VENV/pip.log" 2>&1 \
      || { tail -n 30 "$VENV/pip.log" >&2; die "pip install failed (log: $VENV/pip.log)"; }
    echo "$digest" > "$stamp"
  fi
}

redis_answers() { "$PY" - "$1" <<'PY'
import sys, redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=1).ping()
except Exception:
    sys.exit(1)
PY
}

# Prints host and port of a redis:// URL.
redis_host_port() { "$PY" -c 'import sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); print(u.hostname or "127.0.0.1", u.port or 6379)' "$1"; }

is_local_host() { case "$1" in 127.*|localhost|::1) return 0;; *) return 1;; esac; }

ensure_redis_binary() {
  command -v redis-server >/dev/null && return 0
  say "installing redis-server"
  apt_install redis-server || die "redis-server is not installed and could not be installed here; install Redis or set REDIS_URL to a running one"
}

# The admin's browser tests drive Debian's Chromium (playwright cannot download its own here).
CHROMIUM="${CHROMIUM:-/usr/bin/chromium}"
ensure_chromium() {
  [ -x "$CHROMIUM" ] && return 0
  say "installing chromium (for the admin UI's browser tests)"
  apt_install chromium || die "chromium is not installed and could not be installed here; install it or set CHROMIUM to a Chromium binary"
}

postgres_answers() { "$PY" - "$1" <<'PY'
import sys, psycopg
url = sys.argv[1].replace("postgresql+psycopg://", "postgresql://")
try:
    psycopg.connect(url, connect_timeout=2).close()
except Exception:
    sys.exit(1)
PY
}

# Make the test database reachable: start the local cluster, installing PostgreSQL when it
# is missing, then give the postgres role the password in the URL and create the database.
ensure_postgres() {
  local url="$1"
  postgres_answers "$url" && return 0
  local host
  host="$("$PY" -c 'import sys; from urllib.parse import urlsplit; print(urlsplit(sys.argv[1]).hostname or "127.0.0.1")' "$url")"
  is_local_host "$host" || die "PostgreSQL at $host does not answer ($url)"
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    say "installing PostgreSQL"
    apt_install postgresql || die "PostgreSQL is not installed and could not be installed here; run with CHATMAN_TEST_BACKENDS=sqlite or set TEST_DATABASE_URL"
  fi
  local version
  version="$(ls /etc/postgresql | sort -V | tail -n 1)"
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start 2>/dev/null || true
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 && break; sleep 0.5; done
  postgres_answers "$url" && return 0
  local user password dbname
  read -r user password dbname < <("$PY" -c 'import sys; from urllib.parse import urlsplit; u = urlsplit(sys.argv[1]); print(u.username or "postgres", u.password or "postgres", u.path.lstrip("/") or "test")' "$url")
  as_root su postgres -c "psql -q -c \"ALTER USER $user WITH PASSWORD '$password'\"" >/dev/null 2>&1 \
    || as_root su postgres -c "psql -q -c \"CREATE USER $user SUPERUSER PASSWORD '$password'\"" >/dev/null 2>&1 || true
  as_root su postgres -c "createdb -O $user $dbname" >/dev/null 2>&1 || true
  postgres_answers "$url" || die "PostgreSQL does not accept $url; set TEST_DATABASE_URL, or CHATMAN_TEST_BACKENDS=sqlite"
}
