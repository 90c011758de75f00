// Module resolve hook: a bare import ("@aws-sdk/client-s3") that Node's ES module resolution cannot find
// from the importing file is looked up in each NODE_PATH folder named node_modules, in order, as CommonJS
// require() would. The first error is the one reported when no folder has the package.
import path from "node:path";
import { pathToFileURL } from "node:url";

const folders = (process.env.NODE_PATH || "").split(path.delimiter)
  .filter((folder) => path.basename(folder) === "node_modules");
const parents = folders.map((folder) => pathToFileURL(path.join(path.dirname(folder), "noop.js")).href);
const BARE = /^(?![./]|[a-zA-Z][a-zA-Z0-9+.-]*:)/;

export async function resolve(specifier, context, nextResolve) {
  try {
    return await nextResolve(specifier, context);
  } catch (error) {
    if (error?.code !== "ERR_MODULE_NOT_FOUND" || !BARE.test(specifier)) throw error;
    for (const parentURL of parents) {
      try {
        return await nextResolve(specifier, { ...context, parentURL });
      } catch {
        // not in this folder: try the next one
      }
    }
    throw error;
  }
}
