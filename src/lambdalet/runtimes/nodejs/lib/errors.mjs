// Error classes the runtime reports, and the error document posted to the Runtime API.

function named(name) {
  return class extends Error {
    constructor(message, options) {
      super(message, options);
      this.name = name;
    }
  };
}

export const MalformedHandlerName = named("Runtime.MalformedHandlerName");
export const ImportModuleError = named("Runtime.ImportModuleError");
export const UserCodeSyntaxError = named("Runtime.UserCodeSyntaxError");
export const HandlerNotFound = named("Runtime.HandlerNotFound");
export const MalformedStreamingHandler = named("Runtime.MalformedStreamingHandler");
export const InvalidStreamingOperation = named("Runtime.InvalidStreamingOperation");
export const CallbackHandlerDeprecated = named("Runtime.CallbackHandlerDeprecated");
export const JSONStringifyError = named("Runtime.JSONStringifyError");
export const UnhandledPromiseRejection = named("Runtime.UnhandledPromiseRejection");
export const NodeJsExit = named("Runtime.NodeJsExit");
export const UnmarshalError = named("Runtime.UnmarshalError");
export const PlatformError = named("Runtime.PlatformError");

function stackLines(err) {
  return typeof err?.stack === "string" ? err.stack.split("\n") : [];
}

function clean(text) {
  return String(text).replace(/\x7F/g, "%7F");
}

/** The document Lambda returns for a failed invoke: {errorType, errorMessage, trace}. */
export function errorDocument(err) {
  try {
    if (err instanceof Error || (err && typeof err === "object" && typeof err.stack === "string")) {
      return {
        errorType: clean(err.name ?? "Error"),
        errorMessage: clean(err.message ?? ""),
        trace: stackLines(err).map(clean),
      };
    }
    return { errorType: typeof err, errorMessage: clean(String(err)), trace: [] };
  } catch {
    return { errorType: "handled", errorMessage: "callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack", trace: [] };
  }
}

/** The JSON appended (after a tab) to "Invoke Error" / "Uncaught Exception" log lines. */
export function loggedErrorJson(err) {
  if (!(err instanceof Error)) {
    const doc = errorDocument(err);
    return JSON.stringify({ errorType: doc.errorType, errorMessage: doc.errorMessage, stack: [] });
  }
  const out = { errorType: err.name, errorMessage: err.message };
  for (const key of Object.keys(err)) {
    if (!(key in out)) out[key] = err[key];
  }
  out.stack = stackLines(err);
  try {
    return JSON.stringify(out);
  } catch {
    return JSON.stringify({ errorType: err.name, errorMessage: err.message, stack: out.stack });
  }
}
