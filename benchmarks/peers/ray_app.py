"""Ray Serve with ``@serve.batch``: ``python ray_app.py --port 8004`` (POST /generate {"seed": 7} -> PNG).

Ray gets the machine's cores (``num_cpus``); one replica, batches of up to 64 collected for up to 2 ms
(ganserve's dcgan queue delay)."""

from __future__ import annotations

import argparse
import time

import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response
from work import Generator


@serve.deployment(num_replicas=1, max_ongoing_requests=256)
class DCGAN:
    def __init__(self) -> None:
        self.generator = Generator()

    @serve.batch(max_batch_size=64, batch_wait_timeout_s=0.002)
    async def batch(self, seeds: list[int]) -> list[bytes]:
        return self.generator.pngs(seeds)

    async def __call__(self, request: Request) -> Response:
        seed = (await request.json())["seed"]
        return Response(await self.batch(seed), media_type="image/png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    ray.init(include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": args.port})
    serve.run(DCGAN.bind(), route_prefix="/generate")
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main()
