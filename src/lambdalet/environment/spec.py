"""What an execution environment needs to know about its function, and where its logs go."""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from lambdalet.credentials import Credentials
from lambdalet.environment.managed import PROVIDED_RUNTIMES, LaunchSpec, RuntimeContext, launch_spec

RUNTIMES_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtimes")
INIT_TIMEOUT_S = 10.0
LAMBDA_BOOTSTRAPS = ("/var/task/bootstrap", "/opt/bootstrap")  # as Lambda names them when none is found
XRAY_DAEMON = ("127.0.0.1", "2000")  # AWS's is link-local; nothing listens here, and UDP to it is harmless

# Reserved variables (AWS rejects them at CreateFunction; lambdalet never lets user values win).
RESERVED_VARIABLES = frozenset({
    "_HANDLER", "_X_AMZN_TRACE_ID", "AWS_DEFAULT_REGION", "AWS_REGION", "AWS_EXECUTION_ENV",
    "AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION",
    "AWS_LAMBDA_INITIALIZATION_TYPE", "AWS_LAMBDA_LOG_GROUP_NAME", "AWS_LAMBDA_LOG_STREAM_NAME",
    "AWS_ACCESS_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
    "AWS_LAMBDA_RUNTIME_API", "LAMBDA_TASK_ROOT", "LAMBDA_RUNTIME_DIR",
})


class LogSink(Protocol):
    """Where log events go (the log store)."""

    def append(self, group: str, stream: str, message: str, ts_ms: int) -> None: ...

    def extend(self, group: str, stream: str, ts_ms: int, messages: tuple[str, ...]) -> None: ...


@dataclass
class FunctionSpec:
    """One function version as an environment runs it."""

    name: str
    arn: str
    runtime: str
    handler: str
    memory_mb: int
    timeout_s: int
    task_root: str
    opt_dir: str
    region: str
    revision_id: str
    variables: Mapping[str, str] = field(default_factory=dict)
    interpreters: Mapping[str, str] = field(default_factory=dict)
    endpoint_url: str = ""  # the lambdalet server, for boto3 inside functions
    memory_limit: bool = True  # enforce memory_mb with a cgroup where the machine allows it
    version: str = "$LATEST"  # or the number of a published version
    initialization_type: str = "on-demand"  # "provisioned-concurrency": initialized ahead of any invoke
    ephemeral_mb: int = 512  # EphemeralStorage: the size of /tmp (in a sandbox)

    @property
    def pool_key(self) -> str:
        """The scheduler's key for this version's environments: the name for $LATEST, else name:version."""
        return self.name if self.version == "$LATEST" else f"{self.name}:{self.version}"

    @property
    def log_group(self) -> str:
        return f"/aws/lambda/{self.name}"

    def launch(self) -> LaunchSpec | None:
        if self.runtime in PROVIDED_RUNTIMES:
            return None
        return launch_spec(RuntimeContext(
            runtime=self.runtime, task_root=self.task_root, handler=self.handler,
            user_env=self.variables, interpreters=self.interpreters, memory_mb=self.memory_mb,
            opt_dir=self.opt_dir, region=self.region,
        ))

    def bootstrap_candidates(self) -> list[str]:
        return [os.path.join(self.task_root, "bootstrap"), os.path.join(self.opt_dir, "bootstrap")]

    def find_bootstrap(self) -> str | None:
        """The first bootstrap that exists as a file, in Lambda's search order."""
        for path in self.bootstrap_candidates():
            try:
                if stat.S_ISREG(os.stat(path).st_mode):
                    return path
            except OSError:
                continue
        return None

    def base_environment(self, runtime_api: str, log_stream: str, tmp_dir: str,
                         credentials: Credentials) -> dict[str, str]:
        """The process environment Lambda gives a runtime: user variables, then the reserved ones
        (credentials: the environment's own temporary AWS credentials).

        AWS's paths (/var/task, /var/runtime, /opt, /tmp) are where lambdalet really keeps them; the
        host's PATH stands for /var/lang/bin:/usr/local/bin:/usr/bin/:/bin. No HOME, as on Lambda."""
        env = {k: v for k, v in self.variables.items() if k not in RESERVED_VARIABLES}
        env.setdefault("PATH", os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin") + f":{self.opt_dir}/bin")
        env.setdefault("LD_LIBRARY_PATH", self.library_path())
        env.setdefault("LANG", "en_US.UTF-8")
        env.setdefault("TZ", ":UTC")
        env.setdefault("TMPDIR", tmp_dir)
        env.setdefault("AWS_XRAY_CONTEXT_MISSING", "LOG_ERROR")
        env.setdefault("AWS_XRAY_DAEMON_ADDRESS", ":".join(XRAY_DAEMON))
        env.update({
            "PWD": self.task_root,
            "_AWS_XRAY_DAEMON_ADDRESS": XRAY_DAEMON[0],
            "_AWS_XRAY_DAEMON_PORT": XRAY_DAEMON[1],
            "AWS_LAMBDA_RUNTIME_API": runtime_api,
            "_HANDLER": self.handler or "",
            "LAMBDA_TASK_ROOT": self.task_root,
            "LAMBDA_RUNTIME_DIR": self.runtime_dir(),
            "AWS_LAMBDA_FUNCTION_NAME": self.name,
            "AWS_LAMBDA_FUNCTION_VERSION": self.version,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(self.memory_mb),
            "AWS_LAMBDA_LOG_GROUP_NAME": self.log_group,
            "AWS_LAMBDA_LOG_STREAM_NAME": log_stream,
            "AWS_LAMBDA_INITIALIZATION_TYPE": self.initialization_type,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            **credentials.variables(),
        })
        if self.endpoint_url:
            env.setdefault("AWS_ENDPOINT_URL_LAMBDA", self.endpoint_url)
            env.setdefault("AWS_ENDPOINT_URL_CLOUDWATCH_LOGS", self.endpoint_url)
            env.setdefault("AWS_ENDPOINT_URL_LOGS", self.endpoint_url)
        env.pop("AWS_LAMBDA_MAX_CONCURRENCY", None)  # switches the official clients to another mode
        return env

    def library_path(self) -> str:
        """AWS's LD_LIBRARY_PATH, /var/lang/lib:/lib64:/usr/lib64:/var/runtime:/var/runtime/lib:/var/task:
        /var/task/lib:/opt/lib, at lambdalet's paths (the host's interpreters need no /var/lang/lib)."""
        runtime, task = self.runtime_dir(), self.task_root
        return f"/lib64:/usr/lib64:{runtime}:{runtime}/lib:{task}:{task}/lib:{self.opt_dir}/lib"

    def runtime_dir(self) -> str:
        if self.runtime.startswith("python"):
            return os.path.join(RUNTIMES_DIR, "python")
        if self.runtime.startswith("nodejs"):
            return os.path.join(RUNTIMES_DIR, "nodejs")
        return self.opt_dir
