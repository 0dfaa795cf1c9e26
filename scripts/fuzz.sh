# shellcheck shell=bash
# The fuzz env: every Go native fuzz target in the tree, each run for a fixed
# budget. Sourced by ./tox after lib.sh.
#
# A target is any `func FuzzXxx(f *testing.F)` in an untagged _test.go file;
# they are found in the source, so a new one runs without being listed here.
# Their seed corpora (f.Add and testdata/fuzz/<FuzzXxx>/) also run as plain
# tests in the unit env. A failure leaves the input that broke the target in
# the package's testdata/fuzz/<FuzzXxx>/: fix the bug, commit that file as a
# regression seed.
#
#   FUZZ_TIME   budget per target, a -fuzztime value (default 10s; 5000x for
#               a number of inputs); 10s keeps the whole env within about
#               three minutes on two cores
#   FUZZ_ONLY   an extended regexp: only the targets whose name matches

register_env fuzz "go test -fuzz: every Fuzz target in the tree for FUZZ_TIME each (default 10s)"
env_fuzz() {
	require_go || return
	local budget=${FUZZ_TIME:-10s} targets dir name rc=0 ran=0
	targets=$(fuzz_targets)
	if [[ -z $targets ]]; then
		log "fuzz: no Fuzz targets found"
		return 1
	fi
	while read -r dir name; do
		if [[ -n ${FUZZ_ONLY:-} && ! $name =~ $FUZZ_ONLY ]]; then
			continue
		fi
		log "fuzz: $name ($dir) for $budget"
		fuzz_one "$dir" "$name" "$budget" || rc=1
		ran=$((ran + 1))
	done <<<"$targets"
	log "fuzz: ran $ran target(s)"
	((ran > 0)) || rc=1
	return $rc
}

# fuzz_one DIR NAME BUDGET fuzzes one target. Go 1.26's fuzz coordinator
# may end a duration budget with a bare "context deadline exceeded" and no
# failing input when a worker is mid-input at the deadline (fixed in Go
# 1.27): that run found nothing, so it counts as passed once the target's
# corpus, replayed as a plain test, passes too. A real finding always
# writes its input ("Failing input written to ...") and fails.
fuzz_one() {
	local dir=$1 name=$2 budget=$3 out rc=0
	out=$(mktemp)
	# The minimisation of a failing input is bounded too, so that a
	# failure cannot take the env past its budget by much.
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$budget" -fuzzminimizetime 10s \
		"${GO_TEST_ARGS[@]}" "$dir" 2>&1 | tee "$out" || rc=1
	if ((rc != 0)) && grep -q 'context deadline exceeded' "$out" &&
		! grep -qE 'Failing input written|panic:' "$out"; then
		log "fuzz: $name: the fuzzer's own end-of-budget race (found nothing); replaying its corpus"
		go test -count=1 -run "^${name}\$" "$dir" && rc=0
	fi
	rm -f "$out"
	return $rc
}

# fuzz_targets prints "PACKAGE_DIR TARGET" for every fuzz target in untagged
# test files (a tagged tier needs services the fuzz env does not start).
fuzz_targets() {
	local f
	go_files | grep '_test\.go$' | while read -r f; do
		grep -q '^//go:build' "$f" && continue
		grep -oE '^func Fuzz[A-Za-z0-9_]*\(' "$f" | sed -E "s#^func (Fuzz[A-Za-z0-9_]*)\\(#$(dirname "$f") \\1#"
	done | sort -u
}
