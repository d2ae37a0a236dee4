#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
#   - Python packages into .venv (the project with its [test] extra)
#   - Debian's chromium (browser tests) and postgresql (store tests on a real server)
#   - starts PostgreSQL and creates a throwaway database for the tests
# Safe to run again: each step checks before it installs or creates anything.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
AS_POSTGRES="runuser -u postgres --"
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; AS_POSTGRES="sudo -u postgres"; fi

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v pg_ctlcluster >/dev/null 2>&1 || need_apt+=(postgresql)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

echo "== Python packages"
if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip 'setuptools>=77' >/dev/null  # tests/test_wheel.py builds without isolation
.venv/bin/python -m pip install -q -e '.[test]'

echo "== PostgreSQL"
if [ -z "${DIGEST_TEST_POSTGRES_URL:-}" ]; then
  version=$(ls /usr/lib/postgresql | sort -n | tail -1)
  if ! pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$version main"; then
    $SUDO pg_createcluster "$version" main >/dev/null
  fi
  $SUDO pg_ctlcluster "$version" main start 2>/dev/null || true
  for _ in $(seq 1 30); do
    $AS_POSTGRES psql -qAtc "select 1" >/dev/null 2>&1 && break
    sleep 1
  done
  $AS_POSTGRES psql -qAtc "select 1 from pg_roles where rolname='digest'" | grep -q 1 ||
    $AS_POSTGRES psql -qc "create role digest login password 'digest' createdb" >/dev/null
  $AS_POSTGRES psql -qAtc "select 1 from pg_database where datname='digest_test'" | grep -q 1 ||
    $AS_POSTGRES psql -qc "create database digest_test owner digest" >/dev/null
  export DIGEST_TEST_POSTGRES_URL="postgresql+psycopg://digest:digest@127.0.0.1:5432/digest_test"
fi
export DIGEST_TEST_REQUIRE_POSTGRES=1 DIGEST_TEST_REQUIRE_BROWSER=1

echo "== lint"
.venv/bin/ruff check .
.venv/bin/ruff format --check .

echo "== types (mypy --strict over digest/, configured in pyproject.toml)"
.venv/bin/mypy

echo "== the README's first command, in a scratch copy of the repo's config, posts and readers"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp -r config.toml posts examples "$scratch"/
(
  cd "$scratch"
  export DIGEST_SECRET=readme-smoke-test-secret-0123456789
  unset DIGEST_CONFIG DIGEST_DATABASE_URL
  "$OLDPWD"/.venv/bin/digest subscribers import examples/subscribers.csv >/dev/null
  "$OLDPWD"/.venv/bin/digest send --as-of 2026-01-09 >/dev/null
  "$OLDPWD"/.venv/bin/digest send --as-of 2026-01-09 >/dev/null   # a rerun sends nothing twice
  "$OLDPWD"/.venv/bin/digest preview --as-of 2026-01-09 --categories US,Europe --out build/ >/dev/null
  sent=$(ls build/outbox/*.eml | wc -l)
  [ "$sent" = 5 ] || { echo "README command: expected 5 emails in build/outbox, found $sent"; exit 1; }
  [ -s build/digest.html ] && [ -s build/digest.txt ] && [ -s build/manifest.json ]
)
echo "ok: 5 readers got one email each; preview written"

echo "== tests"
exec .venv/bin/python -m pytest "$@"
