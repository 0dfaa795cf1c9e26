// Package chaos holds the chaos suite (./tox -e chaos): thousands of
// asynchronous executions submitted by concurrent clients while processes
// of the service are killed and restarted, then a check that every
// execution the API accepted ended, ran at most once and returned its own
// token. docs/reliability.md ("Chaos suite") describes it and keeps its
// latest figures.
//
// Built only with the `chaos` tag. TestChaosAllInOne runs a private
// all-in-one server (kill -9 and restart on the same state);
// TestChaosDevstack runs against the devstack stack when
// QINLING_REAL_STACK=1 (devstack/stack.sh with two engines or more).
package chaos
