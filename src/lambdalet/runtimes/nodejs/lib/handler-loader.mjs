// Resolving _HANDLER ("src/index.handler") to the user's function.

import fs from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";
import {
  HandlerNotFound,
  ImportModuleError,
  MalformedHandlerName,
  MalformedStreamingHandler,
  UserCodeSyntaxError,
} from "./errors.mjs";
import { HANDLER_HIGHWATERMARK, HANDLER_STREAMING, STREAM_RESPONSE } from "./streaming.mjs";

const requireFromHere = createRequire(import.meta.url);
const EXTENSIONS = ["", ".js", ".mjs", ".cjs"];

/** Split "dir/module.nested.name" into {moduleRoot, moduleName, handlerName}. */
export function parseHandlerString(handler) {
  if (handler.includes("..")) {
    throw new MalformedHandlerName(
      `'${handler}' is not a valid handler name. Use absolute paths when specifying root directories in handler names.`,
    );
  }
  const base = path.basename(handler);
  const moduleRoot = handler.substring(0, handler.length - base.length);
  const match = /^([^.]*)\.(.*)$/.exec(base);
  if (!match) throw new MalformedHandlerName("Bad handler");
  return { moduleRoot, moduleName: match[1], handlerName: match[2] };
}

function isFile(candidate) {
  try {
    return fs.statSync(candidate).isFile();
  } catch {
    return false;
  }
}

/** Load the module: the first of "", .js, .mjs, .cjs that exists (import()), else require.resolve. */
export async function loadModule(appRoot, moduleRoot, moduleName) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);
  try {
    for (const ext of EXTENSIONS) {
      if (isFile(base + ext)) return await import(pathToFileURL(base + ext).href);
    }
    const resolved = requireFromHere.resolve(moduleName, {
      paths: [appRoot, path.join(appRoot, moduleRoot)],
    });
    return requireFromHere(resolved);
  } catch (err) {
    if (err instanceof SyntaxError) throw new UserCodeSyntaxError(String(err), { cause: err });
    if (err?.code === "MODULE_NOT_FOUND" || err?.code === "ERR_MODULE_NOT_FOUND") {
      throw new ImportModuleError(String(err), { cause: err });
    }
    throw err;
  }
}

function findIn(handlerName, container) {
  return handlerName
    .split(".")
    .reduce((value, key) => (value && (typeof value === "object" || typeof value === "function") ? value[key] : undefined), container);
}

/** The handler function named handlerName in module (or its default export). */
export function resolveHandler(module, handlerName, handlerString) {
  let handler = findIn(handlerName, module);
  if (!handler && module && typeof module === "object" && "default" in module) {
    handler = findIn(handlerName, module.default);
  }
  if (!handler) throw new HandlerNotFound(`${handlerString} is undefined or not exported`);
  if (typeof handler !== "function") throw new HandlerNotFound(`${handlerString} is not a function`);
  return handler;
}

/** Load _HANDLER from appRoot: {handler, streaming, highWaterMark}. */
export async function loadHandler(appRoot, handlerString) {
  const { moduleRoot, moduleName, handlerName } = parseHandlerString(handlerString);
  const module = await loadModule(appRoot, moduleRoot, moduleName);
  const handler = resolveHandler(module, handlerName, handlerString);
  const tag = handler[HANDLER_STREAMING];
  if (tag !== undefined && tag !== STREAM_RESPONSE) {
    throw new MalformedStreamingHandler("Only response streaming is supported.");
  }
  return {
    handler,
    streaming: tag === STREAM_RESPONSE,
    highWaterMark: handler[HANDLER_HIGHWATERMARK],
  };
}
