"""The one image every component runs on, built from ``manifests/Dockerfile``. Change the tag here only."""

IMAGE = "ghcr.io/raserec/raserec:0.1.0"
