// console.* patching: Lambda's text and JSON log records, on stdout or on the telemetry log fd.

import fs from "node:fs";
import util from "node:util";

export const LEVELS = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };
// Telemetry frame type bits per level (runtime-contract section 5); | 1 for text, | 0 for JSON.
const FRAME_LEVEL = { TRACE: 0x04, DEBUG: 0x08, INFO: 0x0c, WARN: 0x10, ERROR: 0x14, FATAL: 0x18 };
const FRAME_BASE = 0xa55a0002;

function errorFields(err) {
  return {
    errorType: err?.constructor?.name ?? "UnknownError",
    errorMessage: err.message,
    stackTrace: typeof err.stack === "string" ? err.stack.split("\n") : [],
  };
}

function replaceErrors(_key, value) {
  return value instanceof Error ? { ...value, ...errorFields(value) } : value;
}

export class Logger {
  /**
   * @param {object} store something with getRequestId() / getTenantId()
   * @param {object} [options] env (defaults to process.env)
   */
  constructor(store, options = {}) {
    const env = options.env ?? process.env;
    this.store = store;
    this.json = (env.AWS_LAMBDA_LOG_FORMAT ?? "").toUpperCase() === "JSON";
    const level = (env.AWS_LAMBDA_LOG_LEVEL ?? "").toUpperCase();
    this.minLevel = LEVELS[level] ?? LEVELS.TRACE;
    this.fd = undefined;
    const fd = env._LAMBDA_TELEMETRY_LOG_FD;
    if (fd !== undefined) {
      delete env._LAMBDA_TELEMETRY_LOG_FD;
      const parsed = Number.parseInt(fd, 10);
      if (Number.isInteger(parsed) && parsed >= 0) this.fd = parsed;
    }
  }

  enabled(level) {
    return LEVELS[level] >= this.minLevel;
  }

  /** One log record; message and params as console.log takes them. */
  log(level, message, ...params) {
    if (!this.enabled(level)) return;
    const timestamp = new Date();
    const record = this.json
      ? this.jsonRecord(timestamp, level, message, params)
      : this.textRecord(timestamp, level, message, params);
    this.write(level, timestamp, record);
  }

  /** A record with structured error fields (used for "Invoke Error" / init failures). */
  logError(title, err, jsonTail) {
    if (!this.enabled("ERROR")) return;
    const timestamp = new Date();
    let record;
    if (this.json) {
      const out = this.base(timestamp, "ERROR");
      out.message = title;
      if (err instanceof Error) {
        Object.assign(out, { errorType: err.name, errorMessage: err.message });
        out.stackTrace = typeof err.stack === "string" ? err.stack.split("\n") : [];
      } else {
        Object.assign(out, { errorType: typeof err, errorMessage: String(err), stackTrace: [] });
      }
      record = JSON.stringify(out);
    } else {
      record = this.textRecord(timestamp, "ERROR", title, [`\t${jsonTail}`]);
    }
    this.write("ERROR", timestamp, record);
  }

  base(timestamp, level) {
    const out = { timestamp: timestamp.toISOString(), level, requestId: this.store.getRequestId() };
    const tenantId = this.store.getTenantId?.();
    if (tenantId) out.tenantId = tenantId;
    return out;
  }

  textRecord(timestamp, level, message, params) {
    const text = util.format(message, ...params);
    return `${timestamp.toISOString()}\t${this.store.getRequestId()}\t${level}\t${text}`;
  }

  jsonRecord(timestamp, level, message, params) {
    const out = this.base(timestamp, level);
    if (params.length === 0) {
      out.message = message;
      try {
        return JSON.stringify(out, replaceErrors);
      } catch {
        out.message = util.format(message);
        return JSON.stringify(out);
      }
    }
    out.message = util.format(message, ...params);
    const err = params.find((p) => p instanceof Error);
    if (err) Object.assign(out, errorFields(err));
    return JSON.stringify(out);
  }

  write(level, timestamp, record) {
    if (this.fd !== undefined) {
      const body = Buffer.from(this.json ? record : `${record}\n`, "utf8");
      const frame = Buffer.allocUnsafe(16 + body.length);
      frame.writeUInt32BE((FRAME_BASE | FRAME_LEVEL[level] | (this.json ? 0 : 1)) >>> 0, 0);
      frame.writeUInt32BE(body.length, 4);
      frame.writeBigUInt64BE(BigInt(timestamp.getTime()) * 1000n, 8);
      body.copy(frame, 16);
      writeAll(this.fd, frame);
      return;
    }
    writeAll(1, Buffer.from(`${record.replace(/\n/g, "\r")}\n`, "utf8"));
  }
}

function writeAll(fd, buffer) {
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += fs.writeSync(fd, buffer, offset);
    } catch (err) {
      if (err.code !== "EAGAIN") return;
    }
  }
}

/** Replace console.trace/debug/info/warn/error/fatal/log with Lambda's logger. */
export function patchConsole(logger) {
  const noop = () => {};
  for (const level of Object.keys(LEVELS)) {
    const fn = logger.enabled(level) ? (message, ...params) => logger.log(level, message, ...params) : noop;
    console[level.toLowerCase()] = fn;
  }
  console.log = console.info;
}
