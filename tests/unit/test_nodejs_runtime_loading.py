"""Handler loading by lambdalet's Node.js runtime: ESM/CJS, lookup order, nested names, init errors.

Each test runs the real runtime (node) against a stub Runtime API on a real socket.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from test_nodejs_runtime_stub import Event, RunResult, run_runtime

pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
INIT_ERROR = "/2018-06-01/runtime/init/error"


def invoke_one(tmp_path: Path, files: dict[str, str], handler: str, **kw: object) -> dict:
    result = run_runtime(tmp_path, files, handler, [Event("req-1", b'{"x":1}')], **kw)  # type: ignore[arg-type]
    assert [a.path for a in result.answers] == ["/2018-06-01/runtime/invocation/req-1/response"], result.output
    return json.loads(result.answers[0].body)


def init_error(tmp_path: Path, files: dict[str, str], handler: str, **kw: object) -> tuple[dict, RunResult]:
    result = run_runtime(tmp_path, files, handler, [Event("req-1")], expect_answers=1, expect_exit=True,
                         **kw)  # type: ignore[arg-type]
    assert result.returncode == 1, result.output
    assert [a.path for a in result.answers] == [INIT_ERROR], result.output
    assert not any(r.path.endswith("/next") for r in result.requests)
    doc = json.loads(result.answers[0].body)
    assert result.answers[0].header("Lambda-Runtime-Function-Error-Type") == doc["errorType"]
    assert set(doc) == {"errorType", "errorMessage", "trace"}
    return doc, result


def test_esm_handler(tmp_path: Path) -> None:
    files = {"index.mjs": "export const handler = async (event) => ({ esm: true, event });"}
    assert invoke_one(tmp_path, files, "index.handler") == {"esm": True, "event": {"x": 1}}


def test_cjs_handler(tmp_path: Path) -> None:
    files = {"index.js": "exports.handler = async (event) => ({ cjs: typeof require, event });"}
    assert invoke_one(tmp_path, files, "index.handler") == {"cjs": "function", "event": {"x": 1}}


def test_cjs_module_exports_object_and_sync_handler(tmp_path: Path) -> None:
    files = {"app.cjs": "module.exports = { run(event) { return event.x + 1; } };"}
    assert invoke_one(tmp_path, files, "app.run") == 2


def test_js_file_in_type_module_package(tmp_path: Path) -> None:
    files = {"package.json": '{"type":"module"}', "index.js": "export async function handler() { return 'm'; }"}
    assert invoke_one(tmp_path, files, "index.handler") == "m"


def test_subfolder_handler(tmp_path: Path) -> None:
    files = {"src/api/index.mjs": "export const handler = async () => import.meta.url.endsWith('/src/api/index.mjs');"}
    assert invoke_one(tmp_path, files, "src/api/index.handler") is True


def test_nested_handler_name(tmp_path: Path) -> None:
    files = {"index.mjs": "export const a = { b: { handler: async () => 'deep' } };"}
    assert invoke_one(tmp_path, files, "index.a.b.handler") == "deep"


def test_default_export_object(tmp_path: Path) -> None:
    files = {"index.mjs": "export default { handler: async () => 'from default' };"}
    assert invoke_one(tmp_path, files, "index.handler") == "from default"


def test_lookup_order_extensionless_js_mjs_cjs(tmp_path: Path) -> None:
    files = {
        "index": "exports.handler = async () => 'extensionless';",
        "index.js": "exports.handler = async () => 'js';",
        "index.mjs": "export const handler = async () => 'mjs';",
        "index.cjs": "exports.handler = async () => 'cjs';",
    }
    assert invoke_one(tmp_path / "a", files, "index.handler") == "extensionless"
    del files["index"]
    assert invoke_one(tmp_path / "b", files, "index.handler") == "js"
    del files["index.js"]
    assert invoke_one(tmp_path / "c", files, "index.handler") == "mjs"
    del files["index.mjs"]
    assert invoke_one(tmp_path / "d", files, "index.handler") == "cjs"


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path) -> None:
    for sub in "abcd":
        (tmp_path / sub).mkdir()


def test_node_modules_package_fallback(tmp_path: Path) -> None:
    files = {"node_modules/pkg/package.json": '{"name":"pkg","main":"main.js"}',
             "node_modules/pkg/main.js": "exports.handler = async () => 'package';"}
    assert invoke_one(tmp_path, files, "pkg.handler") == "package"


def test_top_level_await_init(tmp_path: Path) -> None:
    files = {"index.mjs": "const v = await new Promise(r => setTimeout(() => r(42), 50));\n"
                          "export const handler = async () => v;"}
    assert invoke_one(tmp_path, files, "index.handler") == 42


def test_require_from_node_path_layer_style(tmp_path: Path) -> None:
    # NODE_PATH includes the task root, so CommonJS code can require top-level task files by bare name.
    files = {"index.js": "const lib = require('shared'); exports.handler = async () => lib.v;",
             "shared.js": "exports.v = 'via NODE_PATH';"}
    assert invoke_one(tmp_path, files, "index.handler") == "via NODE_PATH"


def test_malformed_handler_dotdot(tmp_path: Path) -> None:
    doc, _ = init_error(tmp_path, {"index.mjs": ""}, "../index.handler")
    assert doc["errorType"] == "Runtime.MalformedHandlerName"
    assert doc["errorMessage"] == ("'../index.handler' is not a valid handler name. Use absolute paths when "
                                   "specifying root directories in handler names.")


def test_malformed_handler_no_dot(tmp_path: Path) -> None:
    doc, _ = init_error(tmp_path, {"index.mjs": ""}, "index")
    assert (doc["errorType"], doc["errorMessage"]) == ("Runtime.MalformedHandlerName", "Bad handler")


def test_import_module_error_missing_file(tmp_path: Path) -> None:
    doc, result = init_error(tmp_path, {}, "missing.handler")
    assert doc["errorType"] == "Runtime.ImportModuleError"
    assert doc["errorMessage"].startswith("Error: Cannot find module 'missing'")
    # logged as one record (text format: \n became \r), with the Uncaught Exception title on <= 22
    assert "\tERROR\tUncaught Exception \t{\"errorType\":\"Runtime.ImportModuleError\"" in result.output


def test_import_module_error_missing_dependency(tmp_path: Path) -> None:
    doc, _ = init_error(tmp_path, {"index.js": "require('not-installed'); exports.handler = () => 1;"},
                        "index.handler")
    assert doc["errorType"] == "Runtime.ImportModuleError"
    assert "Cannot find module 'not-installed'" in doc["errorMessage"]


def test_user_code_syntax_error(tmp_path: Path) -> None:
    doc, _ = init_error(tmp_path, {"index.mjs": "export const handler = async () => {;"}, "index.handler")
    assert doc["errorType"] == "Runtime.UserCodeSyntaxError"
    assert doc["errorMessage"].startswith("SyntaxError: ")


def test_handler_not_exported(tmp_path: Path) -> None:
    doc, _ = init_error(tmp_path, {"index.mjs": "export const other = 1;"}, "index.handler")
    assert doc == {**doc, "errorType": "Runtime.HandlerNotFound",
                   "errorMessage": "index.handler is undefined or not exported"}


def test_handler_not_a_function(tmp_path: Path) -> None:
    doc, _ = init_error(tmp_path, {"index.mjs": "export const handler = 42;"}, "index.handler")
    assert doc == {**doc, "errorType": "Runtime.HandlerNotFound", "errorMessage": "index.handler is not a function"}


def test_error_thrown_at_module_load(tmp_path: Path) -> None:
    doc, result = init_error(tmp_path, {"index.mjs": "class Boom extends Error { name = 'BoomError' }\n"
                                                     "throw new Boom('at init');"}, "index.handler",
                             runtime="nodejs24.x")
    assert (doc["errorType"], doc["errorMessage"]) == ("BoomError", "at init")
    assert doc["trace"][0] == "BoomError: at init"
    assert "\t-\tERROR\tInit Error \t{" in result.output  # nodejs24.x: "-" outside an invoke
