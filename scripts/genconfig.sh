#!/usr/bin/env bash
# Regenerates etc/qinling.conf.sample from the option declarations in
# pkg/config. Run it after adding or changing an option; TestSampleUpToDate
# in pkg/config fails until you do.
set -euo pipefail

cd "$(dirname "$0")/.."
out=etc/qinling.conf.sample
# Write to a temporary file first so a failed build never leaves a
# truncated sample behind.
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
go run ./pkg/config/cmd/genconfig >"$tmp"
chmod 0644 "$tmp"
mv "$tmp" "$out"
echo "wrote $out"
