#!/usr/bin/env bash
# Puts DuckDB's official libduckdb.so 1.5.6 into $1 (default: .duckdb/).
# Source: the npm package @duckdb/node-bindings-linux-x64, which ships the official library. The
# tarball is checked against its pinned sha512 (the registry's `dist.integrity`) before use.
set -euo pipefail
dest=${1:-.duckdb}
version=1.5.6
pkg="@duckdb/node-bindings-linux-x64@${version}-r.1"
integrity="sha512-IXcrZJE6kEqM0Z4wwdVnGBHX/frOS33VPNAwDXQ/Q+Fs84b058Qe94chrCCIcNJlG8Y3UHIUU4eBeCQxW5mN1Q=="
[ -f "$dest/libduckdb.so" ] && exit 0
mkdir -p "$dest"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
tgz=$(ls "$tmp"/*.tgz)
got="sha512-$(python3 -c 'import base64,hashlib,sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1],"rb").read()).digest()).decode())' "$tgz")"
if [ "$got" != "$integrity" ]; then
  echo "fetch-libduckdb: $pkg does not match its pinned integrity" >&2
  echo "  expected $integrity" >&2
  echo "  got      $got" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$tmp" package/libduckdb.so
mv "$tmp/package/libduckdb.so" "$dest/libduckdb.so"
echo "libduckdb ${version} (integrity checked) -> $dest/libduckdb.so"
