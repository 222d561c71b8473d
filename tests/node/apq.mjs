// Apollo Client's automatic persisted queries (APQ) against a running gateway.
//
// Reads {url, headers, query, variables, repeat?, get?} as JSON on stdin; runs `query` `repeat`
// times (default 1) with one ApolloClient whose link is createPersistedQueryLink (sha256 from
// node:crypto) over an HttpLink (`get`: useGETForHashedQueries). Prints JSON:
// {results: [{data, errors}], sent: [{method, body, params, status, response}]}, where `sent`
// is every HTTP request the client made, as the fetch it was given saw it.
import { createHash } from "node:crypto";

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client/core/index.js";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries/index.js";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

const input = JSON.parse(await readStdin());
const sent = [];

async function recordingFetch(uri, options = {}) {
  const response = await fetch(uri, options);
  const text = await response.clone().text();
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = text;
  }
  const url = new URL(String(uri));
  sent.push({
    method: options.method ?? "POST",
    body: typeof options.body === "string" ? JSON.parse(options.body) : null,
    params: Object.fromEntries(url.searchParams),
    status: response.status,
    response: answer,
  });
  return response;
}

const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const link = createPersistedQueryLink({ sha256, useGETForHashedQueries: Boolean(input.get) }).concat(
  new HttpLink({ uri: input.url, headers: input.headers ?? {}, fetch: recordingFetch }),
);
const client = new ApolloClient({ link, cache: new InMemoryCache() });

const results = [];
for (let i = 0; i < (input.repeat ?? 1); i += 1) {
  try {
    const result = await client.query({
      query: gql(input.query),
      variables: input.variables ?? {},
      fetchPolicy: "no-cache",
      errorPolicy: "all",
    });
    const errors = (result.errors ?? []).map((e) => ({ message: e.message, extensions: e.extensions }));
    results.push({ data: result.data ?? null, errors });
  } catch (error) {
    results.push({ data: null, errors: [{ message: String(error?.message ?? error) }] });
  }
}
await client.stop();
process.stdout.write(JSON.stringify({ results, sent }));
