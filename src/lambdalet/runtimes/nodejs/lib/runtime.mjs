// The invoke loop: /next, run the handler, post the response or error; plus init and crash handling.

import { finished } from "node:stream/promises";
import {
  CallbackHandlerDeprecated,
  JSONStringifyError,
  NodeJsExit,
  UnhandledPromiseRejection,
  UnmarshalError,
  errorDocument,
  loggedErrorJson,
} from "./errors.mjs";
import { buildContext } from "./context.mjs";
import { loadHandler } from "./handler-loader.mjs";
import { InvokeStore } from "./invoke-store.mjs";
import { Logger, patchConsole } from "./logging.mjs";
import { RapidClient } from "./rapid-client.mjs";
import { HttpResponseStream, createResponseStream, streamifyResponse } from "./streaming.mjs";

export const CALLBACK_DEPRECATED_MESSAGE =
  "ERROR: AWS Lambda has removed support for callback-based function handlers starting with Node.js 24. " +
  "You need to modify this function to use a supported handler signature to use Node.js 24 or later. " +
  "For more information see https://docs.aws.amazon.com/lambda/latest/dg/nodejs-handler.html.";
const NODEJS_EXIT_MESSAGE =
  "The Lambda runtime client detected an unexpected Node.js exit code. This is most commonly caused by " +
  "a Promise that was never settled. For more information, see " +
  "https://docs.aws.amazon.com/lambda/latest/dg/nodejs-handler.html#nodejs-handler-sync";
const EXIT = Symbol("beforeExit");

/** The Node.js major version of the runtime (AWS_EXECUTION_ENV=AWS_Lambda_nodejsNN.x), or 24. */
export function runtimeMajor(executionEnv) {
  const match = /nodejs(\d+)\.x/.exec(executionEnv ?? "");
  return match ? Number(match[1]) : 24;
}

function isPromise(value) {
  return value !== null && (typeof value === "object" || typeof value === "function") && typeof value.then === "function";
}

/** Resolves with EXIT when the event loop runs out of work (nothing else keeps the process alive). */
function loopDrained() {
  let listener;
  const promise = new Promise((resolve) => {
    listener = () => resolve(EXIT);
    process.once("beforeExit", listener);
  });
  return { promise, cancel: () => process.removeListener("beforeExit", listener) };
}

export class Runtime {
  constructor(env = process.env) {
    this.env = env;
    this.major = runtimeMajor(env.AWS_EXECUTION_ENV);
    this.legacy = this.major < 24; // callbacks, context.succeed/done, "undefined" request id outside invokes
    this.store = new InvokeStore(this.legacy ? undefined : "-");
    this.logger = new Logger(this.store, { env });
    this.client = undefined;
    this.current = undefined; // {id, answered, stream}
    this.initialised = false;
  }

  setupGlobals() {
    const optOut = ["1", "true"].includes(this.env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA ?? "");
    if (optOut) return;
    globalThis.awslambda = {
      ...globalThis.awslambda,
      streamifyResponse,
      HttpResponseStream,
      InvokeStore: globalThis.awslambda?.InvokeStore ?? this.store,
    };
  }

  installCrashHandlers() {
    process.on("uncaughtException", (err) => this.crash("Uncaught Exception", err, err, 129));
    process.on("unhandledRejection", (reason) => {
      const err = new UnhandledPromiseRejection(String(reason), { cause: reason });
      if (reason instanceof Error && reason.stack) err.stack = reason.stack;
      this.crash("Unhandled Promise Rejection", reason, err, 128);
    });
  }

  async start() {
    patchConsole(this.logger);
    this.setupGlobals();
    this.installCrashHandlers();
    try {
      this.client = new RapidClient(this.env.AWS_LAMBDA_RUNTIME_API);
    } catch (err) {
      this.logger.logError("Init Error", err, loggedErrorJson(err));
      process.exit(1);
    }
    let loaded;
    try {
      if (!this.env._HANDLER) throw new Error("_HANDLER environment variable is not set");
      loaded = await loadHandler(this.env.LAMBDA_TASK_ROOT || process.cwd(), this.env._HANDLER);
      if (!this.legacy && !loaded.streaming && loaded.handler.length >= 3) {
        throw new CallbackHandlerDeprecated(CALLBACK_DEPRECATED_MESSAGE);
      }
    } catch (err) {
      await this.failInit(err);
      return;
    }
    this.initialised = true;
    this.loaded = loaded;
    this.callbackStyle = this.legacy && !loaded.streaming && loaded.handler.length >= 3;
    await this.loop();
  }

  async failInit(err) {
    this.logger.logError(this.legacy ? "Uncaught Exception" : "Init Error", err, loggedErrorJson(err));
    try {
      await this.client.postInitError(errorDocument(err));
    } finally {
      process.exit(1);
    }
  }

  async loop() {
    for (;;) {
      let next;
      try {
        next = await this.client.next();
      } catch (err) {
        this.logger.logError("Runtime Error", err, loggedErrorJson(err));
        process.exit(1);
      }
      await this.invoke(next.headers, next.body);
    }
  }

  async invoke(headers, body) {
    const id = headers["lambda-runtime-aws-request-id"];
    const traceId = headers["lambda-runtime-trace-id"];
    this.current = { id, answered: false, stream: undefined };
    this.store.begin(id, traceId, headers["lambda-runtime-aws-tenant-id"]);
    if (traceId) this.env._X_AMZN_TRACE_ID = traceId;
    else delete this.env._X_AMZN_TRACE_ID;

    let event;
    let context;
    const legacy = this.legacy ? { onDone: () => {} } : undefined; // context.succeed/fail/done
    try {
      context = buildContext(headers, legacy);
      try {
        event = JSON.parse(body);
      } catch (err) {
        throw new UnmarshalError(`Unable to parse event body as JSON: ${err.message}`);
      }
    } catch (err) {
      await this.postError(err);
      return;
    }
    if (this.loaded.streaming) {
      await this.invokeStreaming(event, context);
    } else if (this.callbackStyle) {
      await this.invokeCallback(event, context, legacy);
    } else {
      await this.invokeBuffered(event, context, legacy);
    }
  }

  async invokeBuffered(event, context, legacy) {
    const drained = loopDrained();
    let outcome;
    if (legacy) {
      // context.succeed/fail/done answer a promise-style handler too (first call wins).
      outcome = new Promise((resolve) => {
        legacy.onDone = (err, result) => resolve(err ? { err } : { result });
      });
    }
    let result;
    try {
      const running = Promise.resolve(this.loaded.handler(event, context));
      const racers = outcome ? [running, outcome.then(wrapOutcome), drained.promise] : [running, drained.promise];
      result = await Promise.race(racers);
    } catch (err) {
      drained.cancel();
      await this.postError(err);
      return;
    }
    drained.cancel();
    if (result === EXIT) {
      await this.postError(new NodeJsExit(NODEJS_EXIT_MESSAGE));
      return;
    }
    if (result instanceof Outcome) {
      if (result.err !== undefined) await this.postError(result.err);
      else await this.postResult(result.value);
      return;
    }
    await this.postResult(result);
  }

  /** nodejs18.x-22.x handler(event, context, callback). */
  async invokeCallback(event, context, legacy) {
    const drained = loopDrained();
    const answer = new Promise((resolve) => {
      let settled = false;
      legacy.onDone = (err, result, fromCallback) => {
        if (settled) return;
        settled = true;
        const outcome = err !== null && err !== undefined ? new Outcome(err, undefined) : new Outcome(undefined, result);
        if (fromCallback && context.callbackWaitsForEmptyEventLoop) {
          drained.promise.then(() => resolve(outcome));
        } else {
          drained.cancel();
          resolve(outcome);
        }
      };
      drained.promise.then(() => {
        if (!settled) {
          settled = true;
          resolve(new Outcome(undefined, null)); // never called back: null once the loop drains
        }
      });
    });
    const callback = (err, result) => legacy.onDone(err, result, true);
    try {
      const returned = this.loaded.handler(event, context, callback);
      if (isPromise(returned)) {
        returned.then(
          (value) => legacy.onDone(null, value, false),
          (err) => legacy.onDone(err ?? new Error("handled"), undefined, false),
        );
      }
    } catch (err) {
      legacy.onDone(err, undefined, false);
    }
    const outcome = await answer;
    if (outcome.err !== undefined) await this.postError(outcome.err);
    else await this.postResult(outcome.value);
  }

  async invokeStreaming(event, context) {
    const req = this.client.streamingRequest(context.awsRequestId);
    const response = req.response.then(
      () => {},
      (err) => this.logger.logError("Runtime Error", err, loggedErrorJson(err)),
    );
    const stream = createResponseStream(req, this.loaded.highWaterMark);
    this.current.stream = stream;
    this.current.response = response;
    try {
      const returned = this.loaded.handler(event, stream, context);
      if (!isPromise(returned)) throw new Error("Streaming does not support non-async handlers.");
      const value = await returned;
      if (value !== undefined) console.warn("Streaming handlers ignore return values.");
      if (!stream.writableEnded) throw new Error("Response stream is not finished.");
      await finished(stream);
      this.current.answered = true;
    } catch (err) {
      this.current.answered = true;
      this.logger.logError("Invoke Error", err, loggedErrorJson(err));
      stream.fail(errorDocument(err));
    }
    await response;
  }

  async postResult(result) {
    let body;
    try {
      body = JSON.stringify(result === undefined ? null : result);
      if (body === undefined) body = "null";
    } catch (cause) {
      await this.postError(new JSONStringifyError("Unable to stringify response body", { cause }));
      return;
    }
    this.current.answered = true;
    await this.client.postResponse(this.current.id, body).catch((err) => {
      this.logger.logError("Runtime Error", err, loggedErrorJson(err));
    });
  }

  async postError(err) {
    this.current.answered = true;
    this.logger.logError("Invoke Error", err, loggedErrorJson(err));
    await this.client.postError(this.current.id, errorDocument(err)).catch((postErr) => {
      this.logger.logError("Runtime Error", postErr, loggedErrorJson(postErr));
    });
  }

  /** An uncaught exception or unhandled rejection: fail the invoke in flight (or init), then exit. */
  async crash(title, logged, err, code) {
    if (this.crashing) return;
    this.crashing = true;
    this.logger.logError(title, logged, loggedErrorJson(logged));
    const doc = errorDocument(err);
    try {
      if (!this.initialised) {
        if (this.client) await this.client.postInitError(doc);
      } else if (this.current && !this.current.answered) {
        this.current.answered = true;
        const stream = this.current.stream;
        if (stream) {
          if (stream.fail(doc)) {
            await Promise.race([this.current.response, new Promise((resolve) => setTimeout(resolve, 1000))]);
          }
        } else {
          await this.client.postError(this.current.id, doc);
        }
      }
    } catch {
      // the process is going away either way
    }
    process.exit(code);
  }
}

class Outcome {
  constructor(err, value) {
    this.err = err;
    this.value = value;
  }
}

function wrapOutcome(o) {
  return o.err !== undefined ? new Outcome(o.err, undefined) : new Outcome(undefined, o.result);
}
