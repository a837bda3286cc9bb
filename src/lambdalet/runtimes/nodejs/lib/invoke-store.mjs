// The per-invoke context store (awslambda.InvokeStore): one mutable context, as in single-concurrency Lambda.

const REQUEST_ID = Symbol.for("_AWS_LAMBDA_REQUEST_ID");
const X_RAY_TRACE_ID = Symbol.for("_AWS_LAMBDA_X_RAY_TRACE_ID");
const TENANT_ID = Symbol.for("_AWS_LAMBDA_TENANT_ID");
const PROTECTED = new Set([REQUEST_ID, X_RAY_TRACE_ID, TENANT_ID]);

export class InvokeStore {
  constructor(noRequestId) {
    this.context = undefined;
    this.noRequestId = noRequestId;
  }

  getContext() {
    return this.context;
  }

  getRequestId() {
    return this.context?.[REQUEST_ID] ?? this.noRequestId;
  }

  getXRayTraceId() {
    return this.context?.[X_RAY_TRACE_ID];
  }

  getTenantId() {
    return this.context?.[TENANT_ID];
  }

  get(key) {
    return this.context?.[key];
  }

  set(key, value) {
    if (PROTECTED.has(key)) {
      throw new Error(`Cannot modify protected Lambda context field: ${String(key)}`);
    }
    if (this.context) this.context[key] = value;
  }

  /** Run fn with a fresh context; it stays current until the next run (logs after the invoke keep the id). */
  run(ctx, fn) {
    this.context = { ...ctx };
    return fn();
  }

  /** Start an invoke's context (request id, trace id, tenant id). */
  begin(requestId, traceId, tenantId) {
    this.context = { [REQUEST_ID]: requestId, [X_RAY_TRACE_ID]: traceId, [TENANT_ID]: tenantId };
  }
}
