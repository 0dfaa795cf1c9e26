# shellcheck shell=bash
# Static envs: lint (check only), fmt (its fix) and genconfig. Sourced by ./tox
# after lib.sh.

register_env lint "gofmt -l, go vet (untagged and with each test tag), layering rules, config sample up to date"
env_lint() {
	require_go || return
	local rc=0 tag unformatted

	unformatted=$(go_files | xargs -r gofmt -l)
	if [[ -n $unformatted ]]; then
		log "gofmt: these files need formatting (./tox -e fmt fixes them):"
		printf '  %s\n' $unformatted >&2
		rc=1
	fi

	go vet ./... || rc=1
	local pkgs plain
	plain=$(package_files)
	for tag in $(test_tags); do
		# Only what the tag changes: the rest is what go vet ./... just vetted.
		mapfile -t pkgs < <(tagged_packages "$tag" "$plain")
		((${#pkgs[@]})) || continue
		log "go vet -tags $tag ${pkgs[*]}"
		go vet -tags "$tag" "${pkgs[@]}" || rc=1
	done

	scripts/verify-layering.sh || rc=1
	check_config_sample || rc=1
	check_shell || rc=1
	return $rc
}

# check_shell: every shell script parses (bash -n), and passes shellcheck
# when the machine has it (Debian's shellcheck package; not required).
check_shell() {
	local f rc=0 scripts=(tox .ci/run scripts/*.sh devstack/*.sh devstack/lib/*.sh devstack/settings)
	for f in "${scripts[@]}"; do
		[[ -f $f ]] || continue
		bash -n "$f" || { log "bash -n $f failed"; rc=1; }
	done
	if command -v shellcheck >/dev/null; then
		# SC2034: the libraries set variables that the scripts sourcing them use.
		shellcheck -x -S warning -e SC2034 "${scripts[@]}" || rc=1
	fi
	return $rc
}

register_env fmt "gofmt -w every Go file (the fix for lint's gofmt check)"
env_fmt() {
	require_go || return
	go_files | xargs -r gofmt -w
}

register_env genconfig "regenerate etc/qinling.conf.sample with scripts/genconfig.sh"
env_genconfig() {
	if [[ ! -f scripts/genconfig.sh ]]; then
		log "no scripts/genconfig.sh in this tree; nothing to generate"
		return 0
	fi
	bash scripts/genconfig.sh
}

# check_config_sample: when the generator exists, the checked-in sample must be
# what it generates. scripts/genconfig.sh rewrites the sample in place, so run
# it against a copy of the tree's sample and put the original back whatever
# happens.
check_config_sample() {
	[[ -d pkg/config/cmd/genconfig ]] || return 0
	local sample=etc/qinling.conf.sample saved rc=0
	if [[ ! -f scripts/genconfig.sh ]]; then
		log "pkg/config/cmd/genconfig exists but scripts/genconfig.sh does not"
		return 1
	fi
	if [[ ! -f $sample ]]; then
		log "$sample is missing: run ./tox -e genconfig"
		return 1
	fi
	saved=$(mktemp)
	cp -p "$sample" "$saved"
	if ! bash scripts/genconfig.sh >/dev/null; then
		log "scripts/genconfig.sh failed"
		rc=1
	elif ! diff -u "$saved" "$sample" >&2; then
		log "$sample is out of date: run ./tox -e genconfig and commit the result"
		rc=1
	fi
	cp -p "$saved" "$sample"
	rm -f "$saved"
	return $rc
}

register_env apidoc "regenerate docs/api.md's examples from real requests (scripts/apidoc.sh); the unit tier checks them"
env_apidoc() {
	require_go || return
	bash scripts/apidoc.sh
}
