// CoreDNS for hack/local-k8s.sh: the release's own main (coremain.Run) with only the plugins the local
// cluster's Corefile uses (hack/local-k8s/addons.yaml). The full plugin set links every cloud provider's
// SDK and takes several times longer to build; this is the "compile-time configuration" CoreDNS
// documents for custom builds. Built by hack/local-k8s.sh, cached in ~/.cache/dynamo-kv/coredns-<version>.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
)

// The plugins in the order CoreDNS runs them (the order of its plugin.cfg).
func init() {
	dnsserver.Directives = []string{"ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}
}

func main() {
	coremain.Run()
}
