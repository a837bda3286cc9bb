// Response streaming: awslambda.streamifyResponse, HttpResponseStream and the stream handed to handlers.

import { Writable } from "node:stream";
import { InvalidStreamingOperation } from "./errors.mjs";

export const HANDLER_STREAMING = Symbol.for("aws.lambda.runtime.handler.streaming");
export const HANDLER_HIGHWATERMARK = Symbol.for("aws.lambda.runtime.handler.streaming.highWaterMark");
export const STREAM_RESPONSE = "response";

const HTTP_INTEGRATION_TYPE = "application/vnd.awslambda.http-integration-response";
const DELIMITER = Buffer.alloc(8);
const PRELUDE = Symbol("lambdalet.prelude");

/** Mark handler as a response-streaming handler (awslambda.streamifyResponse). */
export function streamifyResponse(handler, options) {
  handler[HANDLER_STREAMING] = STREAM_RESPONSE;
  if (typeof options?.highWaterMark === "number") {
    handler[HANDLER_HIGHWATERMARK] = Number.parseInt(String(options.highWaterMark), 10);
  }
  return handler;
}

/** awslambda.HttpResponseStream: a prelude (statusCode, headers, cookies) ahead of the body bytes. */
export class HttpResponseStream {
  static from(stream, prelude) {
    stream.setContentType(HTTP_INTEGRATION_TYPE);
    stream[PRELUDE] = Buffer.from(JSON.stringify(prelude ?? {}), "utf8");
    return stream;
  }
}

/**
 * The Writable a streaming handler writes to, forwarding each chunk to the chunked POST `req` as it
 * comes. fail(err) ends the POST with the error trailers instead.
 */
export function createResponseStream(req, highWaterMark) {
  let started = false;
  let closed = false;
  const stream = new Writable({
    ...(highWaterMark !== undefined ? { highWaterMark } : {}),
    write(chunk, _encoding, callback) {
      if (closed) return callback();
      started = true;
      const prelude = stream[PRELUDE];
      if (prelude) {
        stream[PRELUDE] = undefined;
        req.write(prelude);
        req.write(DELIMITER);
      }
      req.write(chunk, () => callback());
    },
    final(callback) {
      if (!closed) {
        closed = true;
        req.end(() => callback());
      } else {
        callback();
      }
    },
  });
  const write = stream.write.bind(stream);
  const end = stream.end.bind(stream);
  stream.write = (chunk, ...rest) => write(asBytes(chunk), ...rest);
  stream.end = (chunk, ...rest) =>
    typeof chunk === "function" || chunk === undefined || chunk === null ? end(chunk, ...rest) : end(asBytes(chunk), ...rest);
  stream.setContentType = (type) => {
    if (started) throw new InvalidStreamingOperation("Cannot set content-type, too late.");
    req.setContentType(type);
  };
  /** End the POST with error trailers; false when the response already ended. */
  stream.fail = (doc) => {
    if (closed) return false;
    closed = true;
    started = true;
    req.end(undefined, {
      "Lambda-Runtime-Function-Error-Type": doc.errorType,
      "Lambda-Runtime-Function-Error-Body": Buffer.from(JSON.stringify(doc), "utf8").toString("base64"),
    });
    return true;
  };
  return stream;
}

function asBytes(chunk) {
  if (typeof chunk === "string" || chunk instanceof Uint8Array) return chunk;
  return JSON.stringify(chunk);
}
