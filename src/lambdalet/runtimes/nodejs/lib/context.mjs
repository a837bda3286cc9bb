// The handler's context object, built from the /next response headers and the environment.

function parseJsonHeader(value, name) {
  if (value === undefined || value === "") return undefined;
  try {
    return JSON.parse(value);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.message}`);
  }
}

/**
 * @param {object} headers lower-cased /next response headers
 * @param {object} [legacy] {onDone(err, result)} for nodejs18.x-22.x: adds succeed/fail/done and
 *   callbackWaitsForEmptyEventLoop
 */
export function buildContext(headers, legacy) {
  const deadline = Number.parseInt(headers["lambda-runtime-deadline-ms"], 10);
  const env = process.env;
  const context = {
    clientContext: parseJsonHeader(headers["lambda-runtime-client-context"], "lambda-runtime-client-context"),
    identity: parseJsonHeader(headers["lambda-runtime-cognito-identity"], "lambda-runtime-cognito-identity"),
    invokedFunctionArn: headers["lambda-runtime-invoked-function-arn"],
    awsRequestId: headers["lambda-runtime-aws-request-id"],
    tenantId: headers["lambda-runtime-aws-tenant-id"],
    xRayTraceId: headers["lambda-runtime-trace-id"],
    functionName: env.AWS_LAMBDA_FUNCTION_NAME,
    functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
    memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
    logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
    logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
    getRemainingTimeInMillis() {
      return deadline - Date.now();
    },
  };
  if (legacy) {
    context.callbackWaitsForEmptyEventLoop = true;
    context.succeed = (result) => legacy.onDone(null, result, false);
    context.fail = (err) => legacy.onDone(err ?? "handled", undefined, false);
    context.done = (err, result) => legacy.onDone(err, result, false);
  }
  return context;
}
