// lambdalet's Node.js runtime: the entry point the bootstrap starts (node ... index.mjs).

import { Runtime } from "./lib/runtime.mjs";

await new Runtime().start();
