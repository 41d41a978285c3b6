#!/usr/bin/env bash
# Puts DuckDB's official libduckdb.so 1.5.6 (+ duckdb.h) into $1 (default: .duckdb/).
# Source: the npm package @duckdb/node-bindings-linux-x64, which ships the official library.
set -euo pipefail
dest=${1:-.duckdb}
version=1.5.6
pkg="@duckdb/node-bindings-linux-x64@${version}-r.1"
[ -f "$dest/libduckdb.so" ] && exit 0
mkdir -p "$dest"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
if (cd "$tmp" && npm pack --silent "$pkg" >/dev/null 2>&1); then
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/libduckdb.so
  mv "$tmp/package/libduckdb.so" "$dest/libduckdb.so"
else
  echo "npm registry unreachable; trying DuckDB's release download" >&2
  curl -fsSL -o "$tmp/lib.zip" \
    "https://github.com/duckdb/duckdb/releases/download/v${version}/libduckdb-linux-amd64.zip"
  (cd "$tmp" && python3 -m zipfile -e lib.zip .)
  mv "$tmp/libduckdb.so" "$dest/libduckdb.so"
fi
echo "libduckdb ${version} -> $dest/libduckdb.so"
