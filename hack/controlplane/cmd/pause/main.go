// Command pause is the sandbox ("infra") container of every pod on the dev node: it
// holds the pod's namespaces open, reaps the zombies of processes that share its PID
// namespace, and exits on SIGINT or SIGTERM. No registry is reachable here, so the
// node cannot pull registry.k8s.io/pause; this is packed into a local image instead.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 4)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
