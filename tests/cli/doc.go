// Package cli holds the acceptance test that drives qinling-go with the real
// OpenStack client: Debian's /usr/bin/openstack with python-qinlingclient,
// auth type none, against an all-in-one server from pkg/testutil, or with
// QINLING_REAL_STACK=1 against the devstack stack with Keystone password auth
// (openrc-demo for what a member does; openrc-admin for the admin-only
// commands: runtime create/delete, pool show, function scaleup/scaledown/
// detach, worker list and version detach).
//
// Built only with the `cli` tag (./tox -e cli, ./tox -e devstack,cli-real).
// TestCLI runs every one of the plugin's 40 commands, asserting on what each
// prints (-f json) and, for those that print only a message, on the effect
// seen through a show or list. Each openstack call costs a second or more,
// so independent groups (functions and executions, versions and aliases,
// workers, webhooks, job updates) run in parallel, and the cron job, which
// needs two minute boundaries, is started first and checked last. The
// other tests (packages in the store, functions from Swift) run beside it.
package cli
