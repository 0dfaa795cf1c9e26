#!/usr/bin/env bash
# Regenerates the examples in docs/api.md: TestAPIDoc sends each example
# request to a real API server and rewrites the generated regions with what
# it answered. Run it after changing the API or the examples in
# qinling-api/internal/api/apidoc_test.go; the unit tier fails until you do.
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/local/go/bin"
QINLING_WRITE_APIDOC=1 go test -count=1 -run '^TestAPIDoc$' ./qinling-api/internal/api/
# Prove what was written is stable: the check run must pass as it is.
go test -count=1 -run '^TestAPIDoc' ./qinling-api/internal/api/
echo "wrote docs/api.md"
