"""`lambdalet serve | invoke | logs | functions`: run the platform, or talk to a running one."""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import logging
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from lambdalet.limits import KEEP_ALIVE_S, MAX_CONNECTIONS

DEFAULT_ENDPOINT = "http://127.0.0.1:9000"


def _serve(args: argparse.Namespace) -> int:
    from lambdalet.api import FrontDoor, Settings

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    from lambdalet.environment import launcher

    uids = _uid_range(args.uid_range)
    if uids is None:
        print(f"--uid-range expects FIRST-LAST (two uids, FIRST > 0, FIRST <= LAST), got {args.uid_range!r}",
              file=sys.stderr)
        return 2
    try:
        isolation = launcher.configure(args.isolation, uids)
    except launcher.IsolationUnavailable as exc:
        logging.getLogger("lambdalet").error("cannot start: %s", exc)
        return 1
    interpreters: dict[str, str] = {}
    for item in args.runtime_interpreter or []:
        runtime, sep, path = item.partition("=")
        if not sep or not runtime or not path:
            print(f"--runtime-interpreter expects RUNTIME=PATH, got {item!r}", file=sys.stderr)
            return 2
        interpreters[runtime] = path
    settings = Settings(host=args.host, port=args.port, data_dir=args.data_dir, region=args.region,
                        account=args.account_id, max_concurrency=args.max_concurrency,
                        idle_timeout_s=args.idle_timeout, async_retry_delay_s=args.async_retry_delay,
                        interpreters=interpreters, memory_limit=not args.no_memory_limit,
                        keep_alive_s=args.keep_alive_timeout, max_connections=args.max_connections,
                        isolation=args.isolation, auth_file=args.auth)
    try:
        import uvloop
    except ImportError:
        uvloop = None
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None)
    with runner:
        return runner.run(_run_server(FrontDoor, settings, isolation))


def _uid_range(text: str) -> tuple[int, int] | None:
    first, sep, last = text.partition("-")
    if not sep or not first.isdigit() or not last.isdigit() or not 0 < int(first) <= int(last) < 2**32 - 1:
        return None
    return int(first), int(last)


async def _run_server(front_door_cls, settings, isolation: str = "") -> int:
    from lambdalet.api import ConfigError
    from lambdalet.scheduler import DataDirInUse, IsolationUnavailable

    log = logging.getLogger("lambdalet")
    # (first: a SIGTERM while starting, e.g. right after the health check answers, is a clean stop too)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        front = front_door_cls(settings)
    except ConfigError as exc:
        log.error("cannot start: %s", exc)
        return 2
    except DataDirInUse as exc:
        log.error("cannot start: %s", exc)
        return 1
    try:
        await front.start()
    except IsolationUnavailable as exc:
        log.error("cannot start: %s", exc)
        await front.close()
        return 1
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        return 1
    from lambdalet.environment import launcher

    # One line says what isolates functions here, and what is off.
    line = "; ".join(part for part in (isolation, front.network) if part)
    log.log(logging.WARNING if " off" in line else logging.INFO, "%s", line)
    try:
        await launcher.current().prepare()
    except BaseException:
        await front.close()
        raise
    # What start-up allocated lives as long as the server: the collector need not scan it again, and
    # a larger young generation collects a few times a second under load instead of every few invokes.
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 20, 20)
    host, port = front.address[0], front.address[1]
    log.info("lambdalet serving on http://%s:%s (data dir %s)%s", host, port, os.path.abspath(settings.data_dir),
             f"; every API call must be signed with a key of {settings.auth_file}" if settings.auth_file else "")
    try:
        await stop.wait()
    finally:
        log.info("stopping: ending every execution environment")
        await front.close()
    return 0


def _request(endpoint: str, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One call to a running lambdalet, signed (SigV4) when AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY
    are set, as a server started with --auth wants."""
    url = endpoint.rstrip("/") + path
    headers = headers or {}
    key_id, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if key_id and secret:
        from lambdalet.sigv4 import sign

        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        service = "logs" if headers.get("X-Amz-Target", "").startswith("Logs_") else "lambda"
        headers = sign(method, url, headers, body or b"", key_id, secret, os.environ.get("AWS_SESSION_TOKEN"),
                       region, service)
    req = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=960) as resp:
            return resp.status, dict(resp.headers.items()), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def _fail(status: int, body: bytes) -> int:
    try:
        doc = json.loads(body)
        print(f"error ({status}): {doc.get('message') or doc}", file=sys.stderr)
    except ValueError:
        print(f"error ({status}): {body.decode(errors='replace')}", file=sys.stderr)
    return 1


def _invoke(args: argparse.Namespace) -> int:
    payload = args.payload.encode() if args.payload is not None else sys.stdin.buffer.read() \
        if not sys.stdin.isatty() else b"{}"
    headers = {"X-Amz-Invocation-Type": args.invocation_type}
    if args.log:
        headers["X-Amz-Log-Type"] = "Tail"
    path = f"/2015-03-31/functions/{urllib.parse.quote(args.function, safe='')}/invocations"
    status, resp_headers, body = _request(args.endpoint, "POST", path, payload, headers)
    if status >= 300:
        return _fail(status, body)
    lower = {k.lower(): v for k, v in resp_headers.items()}
    if "x-amz-log-result" in lower:
        sys.stderr.write(base64.b64decode(lower["x-amz-log-result"]).decode(errors="replace"))
    sys.stdout.buffer.write(body + (b"\n" if body and not body.endswith(b"\n") else b""))
    return 1 if "x-amz-function-error" in lower else 0


def _logs_call(endpoint: str, operation: str, doc: dict) -> dict:
    status, _, body = _request(endpoint, "POST", "/", json.dumps(doc).encode(), {
        "X-Amz-Target": f"Logs_20140328.{operation}", "Content-Type": "application/x-amz-json-1.1"})
    if status != 200:
        raise SystemExit(_fail(status, body))
    return json.loads(body)


def _logs(args: argparse.Namespace) -> int:
    group = f"/aws/lambda/{args.function}"
    start = int((time.time() - args.since) * 1000) if args.since else 0
    seen: set[str] = set()  # events already printed at the newest timestamp
    while True:
        token = None
        while True:
            doc: dict = {"logGroupName": group, "startTime": start}
            if token:
                doc["nextToken"] = token
            result = _logs_call(args.endpoint, "FilterLogEvents", doc)
            for event in result["events"]:
                if event["eventId"] in seen:
                    continue
                if event["timestamp"] > start:
                    start, seen = event["timestamp"], set()
                seen.add(event["eventId"])
                stamp = time.strftime("%H:%M:%S", time.gmtime(event["timestamp"] / 1000))
                print(f"{stamp}.{event['timestamp'] % 1000:03d} {event['message'].rstrip(chr(10))}", flush=True)
            token = result.get("nextToken")
            if not token:
                break
        if not args.follow:
            return 0
        time.sleep(1)


def _functions(args: argparse.Namespace) -> int:
    status, _, body = _request(args.endpoint, "GET", "/2015-03-31/functions/?MaxItems=10000")
    if status != 200:
        return _fail(status, body)
    for fn in json.loads(body)["Functions"]:
        print(f"{fn['FunctionName']}\t{fn.get('Runtime')}\t{fn.get('Handler')}\t{fn['MemorySize']} MB\t"
              f"{fn['Timeout']} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lambdalet", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the platform in the foreground")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=9000, help="port for the API, logs and URLs (default 9000)")
    serve.add_argument("--data-dir", default=".lambdalet", help="functions, code and logs (default ./.lambdalet)")
    serve.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"),
                       help="region in ARNs and AWS_REGION (default us-east-1)")
    serve.add_argument("--account-id", default="000000000000", help="account id in ARNs")
    serve.add_argument("--max-concurrency", type=int, default=1000,
                       help="execution environments across all functions (default 1000)")
    serve.add_argument("--idle-timeout", type=float, default=600.0,
                       help="seconds before an idle execution environment is ended (default 600)")
    serve.add_argument("--async-retry-delay", type=float, default=60.0,
                       help="seconds before the first retry of a failed Event invocation (default 60)")
    serve.add_argument("--runtime-interpreter", action="append", metavar="RUNTIME=PATH",
                       help="interpreter for a built-in runtime, e.g. python3.12=/usr/bin/python3.12")
    serve.add_argument("--no-memory-limit", action="store_true",
                       help="do not confine functions to their MemorySize (cgroups, where available)")
    serve.add_argument("--keep-alive-timeout", type=float, default=KEEP_ALIVE_S,
                       help=f"seconds before an idle client connection is closed (default {KEEP_ALIVE_S:g})")
    serve.add_argument("--max-connections", type=int, default=MAX_CONNECTIONS,
                       help=f"open client connections; more are refused with 503 (default {MAX_CONNECTIONS})")
    serve.add_argument("--isolation", choices=("auto", "strict", "none"), default="auto",
                       help="sandbox each execution environment (namespaces, own uid, Lambda's filesystem and "
                            "limits): auto = where the host allows it, strict = refuse to start without, none = off")
    serve.add_argument("--uid-range", default="200000-265535", metavar="FIRST-LAST",
                       help="uids (and gids) given to sandboxed environments, one each, when the server runs as root "
                            "(default 200000-265535); without root each runs as uid 993 in a user namespace of its own")
    serve.add_argument("--auth", metavar="CREDENTIALS_FILE",
                       help="verify AWS SigV4 on every API call against the access keys of this AWS "
                            "shared-credentials file (required when --host is not a loopback address)")
    serve.add_argument("-v", "--verbose", action="store_true")
    serve.set_defaults(func=_serve)

    for name, func, helptext in (("invoke", _invoke, "invoke a function"),
                                 ("logs", _logs, "print a function's logs")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("function")
        p.add_argument("--endpoint", default=os.environ.get("LAMBDALET_ENDPOINT", DEFAULT_ENDPOINT))
        p.set_defaults(func=func)
        if name == "invoke":
            p.add_argument("--payload", help="JSON event (default: stdin, or {})")
            p.add_argument("--invocation-type", default="RequestResponse",
                           choices=["RequestResponse", "Event", "DryRun"])
            p.add_argument("--log", action="store_true", help="print the invocation's log tail to stderr")
        else:
            p.add_argument("--follow", "-f", action="store_true")
            p.add_argument("--since", type=float, default=0, help="only events from the last N seconds")

    fns = sub.add_parser("functions", help="list functions")
    fns.add_argument("--endpoint", default=os.environ.get("LAMBDALET_ENDPOINT", DEFAULT_ENDPOINT))
    fns.set_defaults(func=_functions)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
