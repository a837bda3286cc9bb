"""Every size, count and time limit lambdalet enforces, in one place (the README's "Limits" table).

Sizes are AWS Lambda's own where Lambda has one; the HTTP limits are what AWS's front ends and nginx
use. Each is enforced with an answer in AWS's shape (error code, message, status), never a hang.
"""

from __future__ import annotations

# -- invocations
MAX_PAYLOAD = 6 * 1024 * 1024 + 100  # 6291556 bytes: a synchronous invoke's request and response
ASYNC_MAX_PAYLOAD = 1_048_576  # an Event invoke's request
LOG_TAIL_BYTES = 4096  # LogType=Tail returns the last 4 KB of the invocation's log

# -- deployment packages
MAX_CODE_REQUEST = 70_167_211  # CreateFunction / UpdateFunctionCode request body
MAX_ZIP = 52_428_800  # a zip, decoded from its base64
MAX_UNZIPPED = 262_144_000  # a function's code (and layers) unpacked
MAX_ENV_BYTES = 4096  # a function's environment variables, keys and values together

# -- other API requests
MAX_API_REQUEST = 1 << 20  # any other JSON request body of the Lambda and Logs APIs

# -- HTTP, on the front door and on every Runtime API
MAX_HEAD_BYTES = 64 * 1024  # request line and headers together; more is 431
MAX_TRAILER_FIELDS = 1000  # trailer fields after a chunked body (not within the head's bytes); more is 431
KEEP_ALIVE_S = 60.0  # a front-door connection with no request in flight is closed after this long
MAX_CONNECTIONS = 1024  # open front-door connections; more are refused with 503
RUNTIME_API_KEEP_ALIVE_S = 960.0  # longer than the longest function timeout (900 s)
RUNTIME_API_MAX_CONNECTIONS = 64  # per execution environment (a runtime needs one or two)
