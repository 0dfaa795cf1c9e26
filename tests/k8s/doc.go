//go:build k8s

// Package k8s holds the tests of the kubernetes orchestrator on a real
// single-node Kubernetes: the cluster devstack/stack.sh builds and runs with
// QINLING_ORCHESTRATOR=kubernetes. ./tox -e k8s brings that stack up, runs
// this package with -tags k8s, takes the stack down and checks that the
// machine is exactly as before. The stack is found through STACK_DIR and its
// stack.env (KUBECONFIG_ADMIN, KUBECONFIG_QINLING, K8S_NAMESPACE,
// K8S_*_IMAGE, ...).
//
// cluster_test.go checks the cluster alone, with /usr/bin/kubectl: the node
// is Ready with the devstack images, a pod of each image runs, the host
// reaches pod IPs, and the qinling identity has the rights the engines need
// and no more. The other files drive qinling-go's API on that stack.
package k8s
