//go:build tools

// Package interop builds the real servers and Go electors tenure's tests
// meet: kube-apiserver from k8s.io/kubernetes, and client-go's and Istio's
// leader electors (cmd/electors).
package interop

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
)
