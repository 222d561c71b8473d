// Composes subgraphs into a supergraph with Apollo's own composer (@apollo/composition), offline.
//
// stdin:  {"subgraphs": [{"name": "...", "url": "...", "sdl": "..."}]}
// stdout: {"errors": ["message", ...], "hints": ["message", ...], "supergraphSdl": "..." | null}
// A subgraph whose SDL does not parse is a composition error of its own, never a crash.
import { composeServices } from "@apollo/composition";
import { parse } from "graphql";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

const { subgraphs } = JSON.parse(await readStdin());
const errors = [];
const services = [];
for (const { name, url, sdl } of subgraphs) {
  try {
    services.push({ name, url, typeDefs: parse(sdl) });
  } catch (error) {
    errors.push(`[${name}] ${error.message}`);
  }
}
let result = { errors: [], hints: [] };
if (errors.length === 0) result = composeServices(services);
process.stdout.write(
  JSON.stringify({
    errors: [...errors, ...(result.errors ?? []).map((error) => error.message)],
    hints: (result.hints ?? []).map((hint) => hint.toString()),
    supergraphSdl: result.supergraphSdl ?? null,
  }),
);
