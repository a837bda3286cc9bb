"""The example bootstraps of the spec (../shared/spec/), verbatim. They must work unchanged."""

ECHO_ONLY = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
"""

NEXT_THEN_EXIT = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
RESPONSE=$(curl -s "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
echo "The event data is: $RESPONSE"
"""

PRINT_RUNTIME_API = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
echo "AWS_LAMBDA_RUNTIME_API value: ${AWS_LAMBDA_RUNTIME_API}"
RESPONSE=$(curl -s "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
echo "The event data is: $RESPONSE"
"""

PROCESS_LIST = r"""#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
echo "AWS_LAMBDA_RUNTIME_API value: ${AWS_LAMBDA_RUNTIME_API}"
# list all process
echo "--- Process List ---"
for pid in /proc/[0-9]*; do
    p=${pid##*/}
    cmd=$(tr '\0' ' ' < "$pid/cmdline")
    echo "PID $p: $cmd"
done
# check which process is providing prot 9001
PORT=9001; \
HEX_PORT=$(printf ':%04X' $PORT); \
# 1. Extract Inodes (Supports both IPv4 and IPv6)
INODES=$(awk -v port="$HEX_PORT" '$2 ~ port {print $10}' /proc/net/tcp /proc/net/tcp6 | sort -u); \
\
if [ -z "$INODES" ]; then \
    echo "Port $PORT is not in use."; \
else \
    for INODE in $INODES; do \
        echo "--- Searching for Inode: $INODE ---"; \
        # 2. Iterate through fds to find the matching Socket Inode
        for FD in /proc/[0-9]*/fd/*; do \
            if [ -L "$FD" ] && [ "$(readlink $FD 2>/dev/null)" = "socket:[$INODE]" ]; then \
                # 3. Extract PID from the path
                PID=$(echo "$FD" | cut -d'/' -f3); \
                echo "[MATCH FOUND]"; \
                echo "PID: $PID"; \
                # 4. Fetch process info directly from /proc (Zero dependencies)
                echo -n "Process Name: "; cat /proc/$PID/comm; \
                echo -n "Command Line: "; tr '\0' ' ' < /proc/$PID/cmdline; echo -e "\n"; \
            fi \
        done \
    done \
fi
RESPONSE=$(curl -s "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
echo "The event data is: $RESPONSE"
"""

RESPOND_ONCE = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
HEADERS_FILE=$(mktemp)
RESPONSE=$(curl -sS -D "$HEADERS_FILE" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
# Get request id from next API header
REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS_FILE" | tr -d '[:cntrl:]' | awk '{print $2}')
echo "The event data is: $RESPONSE"
echo "The Request ID is: $REQUEST_ID"
LAMBDA_RESPONSE="{\\"message\\": \\"Hello from bootstrap!\\", \\"echo\\": $RESPONSE}"
curl -s -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response" -d "$LAMBDA_RESPONSE"
echo "Response sent successfully!"
"""

EVENT_LOOP = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
HEADERS_FILE=$(mktemp)
while true; do
  RESPONSE=$(curl -sS -D "$HEADERS_FILE" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  # Get request id from next API header
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS_FILE" | tr -d '[:cntrl:]' | awk '{print $2}')
  echo "The event data is: $RESPONSE"
  echo "The Request ID is: $REQUEST_ID"
  LAMBDA_RESPONSE="{\\"message\\": \\"Hello from bootstrap!\\", \\"echo\\": $RESPONSE}"
  curl -s -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response" -d "$LAMBDA_RESPONSE"
  echo "Response sent successfully!"
done
"""

INIT_EXIT_0 = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
exit 0
"""

INIT_EXIT_1 = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
exit 1
"""

INIT_SLEEP_15 = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed! sleep 15s"
sleep 15
echo "bootstrap sleep done"
"""

INIT_ERROR_EXIT = """#!/bin/sh
set -eu
echo "bootstrap is executed!"
# simulate an error caught in the bootstrap path, then notify Lambda by calling /init/error API
RESP="$(curl -sS -w "\\nHTTP %{http_code}\\n" \\
  -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/init/error" \\
  -H "Content-Type: application/json" \\
  -H "Lambda-Runtime-Function-Error-Type: Bootstrap.Unhandled" \\
  -d '{"errorMessage":"Failed to load function.","errorType":"InvalidFunctionException","stackTrace":[]}')"
echo "$RESP"
exit 1
"""

INIT_ERROR_THEN_NEXT = """#!/bin/sh
set -eu
echo "bootstrap is executed!"
# simulate an error caught in the bootstrap path, then notify Lambda by calling /init/error API
RESP="$(curl -sS -w "\\nHTTP %{http_code}\\n" \\
  -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/init/error" \\
  -H "Content-Type: application/json" \\
  -H "Lambda-Runtime-Function-Error-Type: Bootstrap.Unhandled" \\
  -d '{"errorMessage":"Failed to load function.","errorType":"InvalidFunctionException","stackTrace":[]}')"
echo "$RESP"
# call /next API after sending error report to Lambda service
RESPONSE=$(curl -s "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
echo "The event data is: $RESPONSE"
exit 1
"""

INVOKE_CRASH = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
RESPONSE=$(curl -s "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
echo "The event data is: $RESPONSE"
exit 1
"""

INVOKE_TIMEOUT = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
# request /next api
HEADERS_FILE=$(mktemp)
RESPONSE=$(curl -sS -D "$HEADERS_FILE" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS_FILE" | tr -d '[:cntrl:]' | awk '{print $2}')
echo "The event data is: $RESPONSE"
echo "The Request ID is: $REQUEST_ID"
# Sleep 10s to make lambda invocation stage timeout
sleep 10s
LAMBDA_RESPONSE="{\\"message\\": \\"Hello from bootstrap!\\", \\"echo\\": $RESPONSE}"
curl -s -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response" -d "$LAMBDA_RESPONSE"
echo "Response sent successfully!"
"""

NEXT_THREE_TIMES = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
echo "Call /next API for the first time"
HEADERS_FILE=$(mktemp)
RESPONSE=$(curl -sS -D "$HEADERS_FILE" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
# Get request id from next API header
REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS_FILE" | tr -d '[:cntrl:]' | awk '{print $2}')
echo "The event data is: $RESPONSE"
echo "The Request ID is: $REQUEST_ID"
echo "Call /next API for the second time"
HEADERS_FILE=$(mktemp)
RESPONSE=$(curl -sS -D "$HEADERS_FILE" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
# Get request id from next API header
REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS_FILE" | tr -d '[:cntrl:]' | awk '{print $2}')
echo "The event data is: $RESPONSE"
echo "The Request ID is: $REQUEST_ID"
echo "Call /next API for the second time"
HEADERS_FILE=$(mktemp)
RESPONSE=$(curl -sS -D "$HEADERS_FILE" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
# Get request id from next API header
REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS_FILE" | tr -d '[:cntrl:]' | awk '{print $2}')
echo "The event data is: $RESPONSE"
echo "The Request ID is: $REQUEST_ID"
"""

INVOCATION_ERROR_LOOP = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
HEADERS_FILE=$(mktemp)
while true; do
  echo "start to call /next api..."
  RESPONSE=$(curl -sS -D "$HEADERS_FILE" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  # Get request id from next API header
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS_FILE" | tr -d '[:cntrl:]' | awk '{print $2}')
  echo "The event data is: $RESPONSE"
  echo "The Request ID is: $REQUEST_ID"
  # simulate an error occurred when processing the event
  ERROR_JSON='{"errorMessage":"Error parsing event data.","errorType":"InvalidEventDataException","stackTrace":[]}'
  RESP=$(curl -sS -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/error" \\
  -H "Content-Type: application/json" \\
  -H "Lambda-Runtime-Function-Error-Type: Unhandled" \\
  -d "$ERROR_JSON")
  echo "Invocation error API response: $RESP"
done
"""

CRASH_AFTER_RESPONSE = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
HEADERS_FILE=$(mktemp)
while true; do
  echo "now to call /next API"
  RESPONSE=$(curl -sS -D "$HEADERS_FILE" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  # Get request id from next API header
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS_FILE" | tr -d '[:cntrl:]' | awk '{print $2}')
  echo "The event data is: $RESPONSE"
  echo "The Request ID is: $REQUEST_ID"
  LAMBDA_RESPONSE="{\\"message\\": \\"Hello from bootstrap!\\", \\"echo\\": $RESPONSE}"
  curl -s -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response" -d "$LAMBDA_RESPONSE"
  echo "Response sent successfully!"
  exit 1
done
"""

SLEEP_AFTER_RESPONSE = """#!/bin/sh
set -euo pipefail
echo "bootstrap is executed!"
HEADERS_FILE=$(mktemp)
while true; do
  echo "now to call /next API"
  RESPONSE=$(curl -sS -D "$HEADERS_FILE" "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/next")
  # Get request id from next API header
  REQUEST_ID=$(grep -Fi Lambda-Runtime-Aws-Request-Id "$HEADERS_FILE" | tr -d '[:cntrl:]' | awk '{print $2}')
  echo "The event data is: $RESPONSE"
  echo "The Request ID is: $REQUEST_ID"
  LAMBDA_RESPONSE="{\\"message\\": \\"Hello from bootstrap!\\", \\"echo\\": $RESPONSE}"
  curl -s -X POST "http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime/invocation/$REQUEST_ID/response" -d "$LAMBDA_RESPONSE"
  echo "Response sent successfully!, now to sleep 15s"
  sleep 15
  echo "sleep 15s over"
done
"""
