"""The local development environment: real binaries, started and stopped for you.

Used by ``agentstack dev`` and by the test suite alike, so that what a developer runs
by hand and what CI runs are the same code:

- :mod:`.toolchain` builds etcd, kube-apiserver, kube-controller-manager, kubectl and
  helm from the Go module proxy on first use, into a cache outside the repository;
- :mod:`.processes` supervises child processes (logs, readiness, clean stop);
- :mod:`.controlplane` starts a real Kubernetes control plane on loopback;
- :mod:`.redisserver` starts a real ``redis-server`` on a free loopback port;
- :mod:`.rediscluster` starts a real three-node Redis Cluster on loopback;
- :mod:`.fakellm` serves an OpenAI-compatible API on loopback, scripted by tests, that
  the real ``groq`` and ``openai`` SDKs talk to (no network in tests).
"""
