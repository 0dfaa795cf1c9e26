# shellcheck shell=bash
# Shared helpers for ./tox and the env scripts. Sourced, never executed.
#
# An env is a function named env_<name> (a "-" in the name is "_" in the
# function's), registered with register_env so `./tox -l` can describe it.
# run_envs runs a comma-separated list of them.

export PATH="$PATH:/usr/local/go/bin"
# No VCS stamping: a fresh clone or a tree without commits must build the same.
export GOFLAGS="${GOFLAGS:--buildvcs=false}"

# Extra arguments for `go test`, set by `./tox ... -- ARGS`.
GO_TEST_ARGS=()

# test_tags: build tags that select test tiers, which `lint` vets the tree
# with one at a time: ours, plus any single-word //go:build tag in the tree
# (e.g. a later `integration` tier), minus GOOS/GOARCH names and `ignore`.
test_tags() {
	{
		printf '%s\n' functional cli
		go_files | xargs -r grep -hoE '^//go:build [a-z][a-z0-9_]*$' | awk '{print $2}'
	} | grep -vxE 'ignore|linux|darwin|windows|freebsd|netbsd|openbsd|unix|amd64|arm64|386|arm|cgo|race' | sort -u
}

# tagged_packages TAG [LISTING]: the packages that build tag TAG changes, one
# import path a line. When TAG only adds test files or packages of its own
# (the case of every tier's tag so far), these are the packages with such
# files: every other package builds and tests exactly as without TAG, so a
# tier or a vet under TAG need not run it again (its tests are the unit
# tier's, which runs them with -race). When TAG changes the non-test files of
# a package that exists without it, every package that imports that one may
# change as well: then it prints ./..., all of them. LISTING is
# package_files's output without a tag, for a caller that asks for several.
tagged_packages() {
	local plain=${2:-}
	[[ -n $plain ]] || plain=$(package_files)
	awk -F'|' '
		NR == FNR { lib[$1] = $2; seen[$0] = 1; next }
		($1 in lib) && lib[$1] != $2 { changed = 1 }
		!($0 in seen) { out[++n] = $1 }
		END { if (changed) print "./..."; else for (i = 1; i <= n; i++) print out[i] }
	' <(echo "$plain") <(package_files "$1")
}

# package_files [TAG]: each package of the module with its files (built with
# TAG), as "import path|non-test files|test files".
package_files() {
	go list -e ${1:+-tags "$1"} -f '{{.ImportPath}}|{{.GoFiles}} {{.CgoFiles}}|{{.TestGoFiles}} {{.XTestGoFiles}}' ./...
}

ENV_NAMES=()
declare -A ENV_HELP=()
declare -A ENV_NEEDS_BIN=()

# register_env NAME HELP [bin]: declare env_NAME and its one-line description;
# "bin" marks envs that run the server binaries (built once, before them).
register_env() {
	ENV_NAMES+=("$1")
	ENV_HELP[$1]=$2
	[[ ${3:-} == bin ]] && ENV_NEEDS_BIN[$1]=1
	return 0
}

list_envs() {
	local name
	for name in "${ENV_NAMES[@]}"; do
		printf '%-15s %s\n' "$name" "${ENV_HELP[$name]}"
	done
}

log() { printf 'tox: %s\n' "$*" >&2; }

# run_envs "a,b,c": run each env in order; report and return non-zero if any failed.
run_envs() {
	local name names failed=() passed=() rc
	IFS=, read -r -a names <<<"$1"
	for name in "${names[@]}"; do
		if [[ -z ${ENV_HELP[$name]+x} ]]; then
			log "unknown env '$name' (./tox -l lists them)"
			return 2
		fi
	done
	for name in "${names[@]}"; do
		if [[ -n ${ENV_NEEDS_BIN[$name]:-} ]]; then
			build_binaries || log "build failed; envs that need the server will fail"
			break
		fi
	done
	for name in "${names[@]}"; do
		log "=== $name: ${ENV_HELP[$name]}"
		local t0=$SECONDS
		# A subshell keeps an env's cd and variables to itself. bash ignores
		# `set -e` inside an `||` list, so envs check each step themselves.
		rc=0
		(set -euo pipefail; "env_${name//-/_}") || rc=$?
		if ((rc == 0)); then
			passed+=("$name")
			log "=== $name: ok ($((SECONDS - t0))s)"
		else
			failed+=("$name")
			log "=== $name: FAILED (exit $rc, $((SECONDS - t0))s)"
		fi
	done
	log "summary: ok: ${passed[*]:-none}; failed: ${failed[*]:-none} (${SECONDS}s in all)"
	((${#failed[@]} == 0))
}

require_go() {
	command -v go >/dev/null || { log "go not found (expected /usr/local/go/bin/go)"; return 1; }
}

# go_files: every Go source file of the module, except testdata and vendor.
go_files() {
	find . -path ./.git -prune -o -name vendor -prune -o -name testdata -prune \
		-o -type f -name '*.go' -print
}

# build_binaries: build qinling-api (and qinling-engine, if its main package
# exists) once per ./tox run into a private directory and export it as
# QINLING_TEST_BIN, which pkg/testutil.Binaries uses instead of building again.
# An already set QINLING_TEST_BIN holding qinling-api is used as it is.
# Called by run_envs in the parent shell, so every env sees the same build.
build_binaries() {
	if [[ -n ${QINLING_TEST_BIN:-} ]]; then
		[[ -x ${QINLING_TEST_BIN}/qinling-api ]] && return 0
		log "QINLING_TEST_BIN=$QINLING_TEST_BIN has no qinling-api"
		unset QINLING_TEST_BIN
		return 1
	fi
	if [[ ! -d qinling-api ]]; then
		log "no ./qinling-api main package: the server is not in this tree yet"
		return 1
	fi
	local dir pkgs=(./qinling-api)
	[[ -d qinling-engine ]] && pkgs+=(./qinling-engine)
	dir=$(mktemp -d "${TMPDIR:-/tmp}/qinling-tox-bin.XXXXXX")
	TOX_BIN_DIR=$dir
	trap cleanup_tox EXIT
	log "building ${pkgs[*]} into $dir"
	go build -o "$dir/" "${pkgs[@]}" || return 1
	export QINLING_TEST_BIN=$dir
}

cleanup_tox() {
	if [[ -n ${TOX_BIN_DIR:-} && -d ${TOX_BIN_DIR} ]]; then
		rm -rf -- "$TOX_BIN_DIR"
	fi
}

# need_binaries: for envs that start servers; fails if build_binaries did.
need_binaries() {
	if [[ -z ${QINLING_TEST_BIN:-} ]]; then
		log "server binaries were not built (see the build error above)"
		return 1
	fi
}
