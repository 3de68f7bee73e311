"""Development tools: run in tests, benchmarks and local work, never in the gateway image (the
Dockerfile leaves ``ganserve/dev/`` out of the build)."""
