// Package functional holds the black-box tests of qinling-go's v1 REST API.
//
// They are built only with the `functional` tag (./tox -e functional): each
// test binary starts real all-in-one servers through pkg/testutil (SQLite,
// embedded etcd, the local orchestrator running real Python workers) and
// speaks HTTP to them exactly as python-qinlingclient does. What they assert
// is the wire contract docs/api.md describes: upstream's v1 API as
// python-qinlingclient uses it. They never import server packages.
package functional
