// A lambda-bridge Node.js worker: aws-lambda-ric's run() on the handler, as Lambda's /var/runtime/index.mjs
// calls it (the package's own bin/index.mjs also prints a line that Lambda's runtime does not print).
// ES modules ignore NODE_PATH; Lambda's Node.js runtimes still find layers' packages and the SDK from them,
// so bare imports that fail are retried from the NODE_PATH folders (nodejs_resolve.mjs, a module hook).
import { register } from "node:module";
import path from "node:path";
import { pathToFileURL } from "node:url";

register("./nodejs_resolve.mjs", import.meta.url);
const ric = path.join(process.env.LAMBDA_RUNTIME_DIR, "node_modules", "aws-lambda-ric", "dist", "index.mjs");
const { run } = await import(pathToFileURL(ric).href);
await run(process.env.LAMBDA_TASK_ROOT, process.argv[2]);
