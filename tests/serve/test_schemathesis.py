"""Fuzz every operation of the OpenAPI schema against a real gateway: no input may cause a 5xx.

The schema comes from the app factory (it does not depend on the models); the requests go to a real
uvicorn serving generators and a super-resolution model.
"""

from pathlib import Path

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from ganserve.serve.http import create_app
from ganserve.serve.settings import Settings
from tests.serve.helpers import RunningGateway

MAX_EXAMPLES = 15  # per operation and mode: a few seconds on an idle 2-core machine



@schemathesis.serializer("image/bmp")  # schemathesis knows png, jpeg, gif and webp uploads already
def _bmp(ctx: object, value: object) -> bytes:
    return value if isinstance(value, bytes) else str(value).encode()


schema = schemathesis.openapi.from_dict(create_app(Settings(model_repository=Path("unused"))).openapi())
# Valid inputs (reach the models) and invalid ones (must be refused with a 4xx, not crash).
schema.config.generation.update(modes=[schemathesis.GenerationMode.POSITIVE,
                                       schemathesis.GenerationMode.NEGATIVE])


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_no_input_causes_a_server_error(case: schemathesis.Case, full_gateway: RunningGateway) -> None:
    case.call_and_validate(base_url=full_gateway.http_url, checks=[not_a_server_error], timeout=30)
