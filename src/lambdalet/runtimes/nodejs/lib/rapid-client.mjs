// Client for the Lambda Runtime API (/2018-06-01): HTTP/1.1 over one keep-alive net.Socket with
// TCP_NODELAY. node:http costs several ms of start-up (with AWS's V8 flags node compiles its built-in
// modules from source) and a ClientRequest per call; the requests written here carry the same bytes.

import net from "node:net";
import { PlatformError } from "./errors.mjs";

const BASE = "/2018-06-01/runtime";
const CRLF = "\r\n";
const HEAD_END = Buffer.from("\r\n\r\n");
const LAST_CHUNK = "0\r\n";

function parseAddress(address) {
  const parts = String(address ?? "").split(":");
  const port = Number(parts[1]);
  if (parts.length !== 2 || !parts[0] || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new PlatformError(`Invalid AWS_LAMBDA_RUNTIME_API: ${address}`);
  }
  return { host: parts[0], port };
}

function hangUp() {
  const err = new Error("socket hang up");
  err.code = "ECONNRESET";
  return err;
}

export class RapidClient {
  constructor(address) {
    const { host, port } = parseAddress(address);
    this.host = host;
    this.port = port;
    this.hostLine = `Host: ${host}:${port}\r\nConnection: keep-alive\r\n\r\n`;
    this.socket = undefined;
    this.received = undefined; // bytes of the response being read
    this.waiter = undefined; // {resolve, reject} of the request in flight
    this.queue = Promise.resolve(); // requests go one at a time
  }

  connection() {
    if (this.socket && !this.socket.destroyed) return this.socket;
    const socket = net.connect(this.port, this.host);
    socket.setNoDelay(true);
    socket.on("data", (data) => this.onData(data));
    socket.on("error", (err) => this.onClose(socket, err));
    socket.on("close", () => this.onClose(socket, hangUp()));
    this.socket = socket;
    this.received = undefined;
    return socket;
  }

  onClose(socket, err) {
    if (this.socket !== socket) return;
    this.socket = undefined;
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.reject(err);
  }

  onData(data) {
    this.received = this.received ? Buffer.concat([this.received, data]) : data;
    if (!this.waiter) return;
    const res = parseResponse(this.received);
    if (!res) return;
    this.received = res.rest.length ? res.rest : undefined;
    const waiter = this.waiter;
    this.waiter = undefined;
    if (/\bclose\b/i.test(res.headers.connection ?? "")) {
      // The server ends this connection: the next request must not be written into it.
      const socket = this.socket;
      this.socket = undefined;
      socket.destroy();
    } else {
      this.socket.unref(); // an idle keep-alive connection must not keep the event loop alive
    }
    waiter.resolve(res);
  }

  /**
   * Run write(socket) as the next request; resolves with {status, headers, body} once its response
   * has been read.
   */
  exchange(write) {
    const run = () =>
      new Promise((resolve, reject) => {
        const socket = this.connection();
        socket.ref();
        this.waiter = { resolve, reject };
        write(socket);
      });
    const result = this.queue.then(run, run);
    this.queue = result.catch(() => {});
    return result;
  }

  /** Send a whole body; resolves with {status, headers, body}. */
  send(method, path, headers, body) {
    let head = `${method} ${path} HTTP/1.1\r\n`;
    for (const name in headers) head += `${name}: ${headers[name]}\r\n`;
    head += this.hostLine;
    return this.exchange((socket) => socket.write(body ? head + body : head));
  }

  /** Block for the next event: {headers (lower-cased), body (string)}. */
  async next() {
    const res = await this.send("GET", `${BASE}/invocation/next`, undefined, undefined);
    if (res.status !== 200) {
      throw new PlatformError(`Unexpected status code from /next: ${res.status} ${res.body}`);
    }
    return res;
  }

  postResponse(requestId, body) {
    return this.send("POST", `${BASE}/invocation/${requestId}/response`, jsonHeaders(body), body);
  }

  postError(requestId, doc) {
    const body = JSON.stringify(doc);
    const headers = { ...jsonHeaders(body), "Lambda-Runtime-Function-Error-Type": headerSafe(doc.errorType) };
    return this.send("POST", `${BASE}/invocation/${requestId}/error`, headers, body);
  }

  postInitError(doc) {
    const body = JSON.stringify(doc);
    const headers = { ...jsonHeaders(body), "Lambda-Runtime-Function-Error-Type": headerSafe(doc.errorType) };
    return this.send("POST", `${BASE}/init/error`, headers, body);
  }

  /** A streaming POST /response; its head goes out with the first write (so Content-Type can change). */
  streamingRequest(requestId) {
    return new StreamingPost(this, `${BASE}/invocation/${requestId}/response`);
  }
}

/**
 * A chunked POST (contract 1.7), one chunk per write, error trailers on fail. `response` resolves
 * when the Runtime API has answered, or rejects on a connection error.
 */
class StreamingPost {
  constructor(client, path) {
    this.client = client;
    this.path = path;
    this.contentType = "application/octet-stream";
    this.headSent = false;
    this.socket = undefined;
    this.pending = []; // writes made before the connection is ours
    this.response = client.exchange((socket) => {
      this.socket = socket;
      for (const [data, callback] of this.pending) socket.write(data, callback);
      this.pending = undefined;
    });
  }

  setContentType(type) {
    this.contentType = type;
  }

  head() {
    if (this.headSent) return "";
    this.headSent = true;
    const client = this.client;
    return (
      `POST ${this.path} HTTP/1.1\r\nHost: ${client.host}:${client.port}\r\n` +
      "Lambda-Runtime-Function-Response-Mode: streaming\r\n" +
      "Trailer: Lambda-Runtime-Function-Error-Type\r\n" +
      "Trailer: Lambda-Runtime-Function-Error-Body\r\n" +
      `Content-Type: ${this.contentType}\r\n` +
      "Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
    );
  }

  send(data, callback) {
    if (this.pending) this.pending.push([data, callback]);
    else this.socket.write(data, callback);
  }

  /** One chunk (an empty one only sends the head, as node:http does). */
  write(chunk, callback) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk, "utf8") : chunk;
    const head = this.head();
    if (bytes.length === 0) {
      if (head) this.send(head, callback);
      else if (callback) process.nextTick(callback);
      return;
    }
    const size = bytes.length.toString(16);
    this.send(Buffer.concat([Buffer.from(`${head}${size}\r\n`, "latin1"), bytes, Buffer.from(CRLF)]), callback);
  }

  /** The last chunk, with trailers when given ({name: value}). */
  end(callback, trailers) {
    let tail = this.head() + LAST_CHUNK;
    for (const name in trailers ?? {}) tail += `${name}: ${trailers[name]}\r\n`;
    this.send(tail + CRLF, callback);
  }
}

function jsonHeaders(body) {
  return { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body ?? "") };
}

function headerSafe(value) {
  return String(value).replace(/[^\t\x20-\x7e]/g, "");
}

/** One whole response at the start of buf: {status, headers, body, rest}, or undefined if incomplete. */
export function parseResponse(buf) {
  const headEnd = buf.indexOf(HEAD_END);
  if (headEnd < 0) return undefined;
  const lines = buf.toString("latin1", 0, headEnd).split(CRLF);
  const status = Number.parseInt(lines[0].split(" ")[1], 10);
  const headers = {};
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i];
    const colon = line.indexOf(":");
    if (colon <= 0) continue;
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    headers[name] = name in headers ? `${headers[name]}, ${value}` : value;
  }
  let start = headEnd + 4;
  if (/\bchunked\b/i.test(headers["transfer-encoding"] ?? "")) {
    const parts = [];
    for (;;) {
      const lineEnd = buf.indexOf(CRLF, start);
      if (lineEnd < 0) return undefined;
      const size = Number.parseInt(buf.toString("latin1", start, lineEnd), 16);
      if (size === 0) {
        // trailers (ignored) up to an empty line
        let at = lineEnd + 2;
        for (;;) {
          const end = buf.indexOf(CRLF, at);
          if (end < 0) return undefined;
          if (end === at) return done(status, headers, Buffer.concat(parts), buf.subarray(end + 2));
          at = end + 2;
        }
      }
      if (buf.length < lineEnd + 2 + size + 2) return undefined;
      parts.push(buf.subarray(lineEnd + 2, lineEnd + 2 + size));
      start = lineEnd + 2 + size + 2;
    }
  }
  const length = status === 204 || status === 304 ? 0 : Number.parseInt(headers["content-length"] ?? "0", 10) || 0;
  if (buf.length < start + length) return undefined;
  return done(status, headers, buf.subarray(start, start + length), buf.subarray(start + length));
}

function done(status, headers, body, rest) {
  return { status, headers, body: body.toString("utf8"), rest };
}
