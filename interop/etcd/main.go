// Command etcd is etcd's own server main (go.etcd.io/etcd/server/v3's
// etcdmain), built here at the version go.mod requires, so the test matrix
// can run tenure-etcd on an etcd release no Debian or PyPI package ships.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
