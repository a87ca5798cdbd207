"""The control plane of ``mm-trio run``: a JSON API, an event stream and Prometheus metrics
on loopback, behind a bearer token (SPEC §11); the CLI verbs are its clients."""
