#!/usr/bin/env bash
# verify-layering.sh — import rules that internal/ cannot express (docs/architecture.md says which package does what):
#   * orchestrator/... and storage/... must not import pkg/db or pkg/rpc:
#     backends stay usable without the database and the RPC bus;
#   * pkg/... must not import qinling-api/... or qinling-engine/...:
#     shared code never reaches into a binary.
# Checked on the full (transitive, non-test) dependency list of each package.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$PATH:/usr/local/go/bin"
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

MODULE=$(go list -m)
status=0

# check PATTERN FORBIDDEN...: fail for each package under PATTERN whose
# dependencies include a FORBIDDEN package or one beneath it.
check() {
	local pattern=$1
	shift
	[[ -d ${pattern%/...} ]] || return 0
	local line pkg deps bad forbidden dep
	while IFS= read -r line; do
		pkg=${line%%:*}
		deps=${line#*:}
		for forbidden in "$@"; do
			for dep in $deps; do
				if [[ $dep == "$MODULE/$forbidden" || $dep == "$MODULE/$forbidden/"* ]]; then
					echo "layering: $pkg imports $dep (rule: ${pattern} must not import $forbidden)" >&2
					status=1
				fi
			done
		done
	done < <(go list -e -f '{{.ImportPath}}:{{join .Deps " "}}' "./$pattern")
}

check orchestrator/... pkg/db pkg/rpc
check storage/... pkg/db pkg/rpc
check pkg/... qinling-api qinling-engine

if ((status == 0)); then
	echo "layering: ok" >&2
fi
exit $status
