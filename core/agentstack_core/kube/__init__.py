"""The one async Kubernetes client layer: every call a process makes outside Kopf's
watch goes through :class:`~.client.KubeClient` (one aiohttp session, a timeout on
every call, typed errors), configured by :mod:`.settings`, and reads the manifests it
gets back through the typed views of :mod:`.manifests`, :mod:`.reviews` and
:mod:`.stacks`."""
