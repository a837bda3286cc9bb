// Client for the Lambda Runtime API (/2018-06-01), over one keep-alive connection with TCP_NODELAY.

import http from "node:http";
import { PlatformError } from "./errors.mjs";

const BASE = "/2018-06-01/runtime";

function parseAddress(address) {
  const parts = String(address ?? "").split(":");
  const port = Number(parts[1]);
  if (parts.length !== 2 || !parts[0] || !Number.isInteger(port) || port < 0 || port > 65535) {
    throw new PlatformError(`Invalid AWS_LAMBDA_RUNTIME_API: ${address}`);
  }
  return { host: parts[0], port };
}

export class RapidClient {
  constructor(address) {
    const { host, port } = parseAddress(address);
    this.host = host;
    this.port = port;
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  request(method, path, headers) {
    const req = http.request({ host: this.host, port: this.port, method, path, headers, agent: this.agent });
    req.on("socket", (socket) => socket.setNoDelay(true));
    return req;
  }

  /** Send a whole body; resolves with {status, headers, body}. */
  send(method, path, headers, body) {
    return new Promise((resolve, reject) => {
      const req = this.request(method, path, headers);
      req.on("error", reject);
      req.on("response", (res) => collect(res).then(resolve, reject));
      req.end(body);
    });
  }

  /** Block for the next event: {headers (lower-cased), body (string)}. */
  async next() {
    const res = await this.send("GET", `${BASE}/invocation/next`, {}, undefined);
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

  /** A streaming POST /response; headers are sent with the first write (so Content-Type can change). */
  streamingRequest(requestId) {
    const req = this.request("POST", `${BASE}/invocation/${requestId}/response`, undefined);
    req.setHeader("Lambda-Runtime-Function-Response-Mode", "streaming");
    req.setHeader("Trailer", ["Lambda-Runtime-Function-Error-Type", "Lambda-Runtime-Function-Error-Body"]);
    req.setHeader("Content-Type", "application/octet-stream");
    req.setHeader("Transfer-Encoding", "chunked");
    return req;
  }
}

function jsonHeaders(body) {
  return { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body ?? "") };
}

function headerSafe(value) {
  return String(value).replace(/[^\t\x20-\x7e]/g, "");
}

function collect(res) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    res.on("data", (chunk) => chunks.push(chunk));
    res.on("error", reject);
    res.on("end", () =>
      resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString("utf8") }),
    );
  });
}
