// Package cli holds the acceptance test that drives qinling-go with the real
// OpenStack client: Debian's /usr/bin/openstack with python-qinlingclient,
// auth type none, against an all-in-one server from pkg/testutil, or with
// QINLING_REAL_STACK=1 against the devstack stack with Keystone password auth
// (openrc-demo; openrc-admin for the admin-only runtime commands).
//
// Built only with the `cli` tag (./tox -e cli). Each openstack call costs
// seconds, so the scenario is one serial walk through the spine of the API in
// about thirty calls, asserting on everything the client prints.
package cli
