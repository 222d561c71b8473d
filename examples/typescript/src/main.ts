// A tiny demo of the typed client; it prints one JSON object a line.
//   node dist/main.js                     the docs' example session and a page of verified ones
//   node dist/main.js session UUID        another session, and the page
//   node dist/main.js verify +14155550123 start a verification, then read codes from stdin
// GATEWAY_URL (default http://127.0.0.1:8000) and GATEWAY_API_KEY (none with `make demo`).
import { randomUUID } from "node:crypto";
import { createInterface } from "node:readline";
import type { ResultOf } from "@graphql-typed-document-node/core";

import { GatewayClient, GatewayError } from "./client.js";
import {
  SessionQuery,
  SessionsQuery,
  StartVerificationMutation,
  ValidateSessionMutation,
} from "./operations.js";

// Plivo's API reference example, seeded in the gateway's simulator.
const DOCS_EXAMPLE_UUID = "60ea68db-b123-46d9-9eb2-1201d516dbbd";

type Session = NonNullable<ResultOf<typeof SessionQuery>["session"]>;

function print(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function charged(session: Session): string[] {
  return session.attempts.map((attempt) => `${attempt.channel} ${attempt.charge ?? "-"}`);
}

async function read(client: GatewayClient, uuid: string): Promise<void> {
  const { session } = await client.request(SessionQuery, { uuid });
  print({ session, charged: session && charged(session) });
  const { sessions } = await client.request(SessionsQuery, {
    filter: { status: "VERIFIED" },
    first: 5,
  });
  print({ sessions: sessions.edges.map((edge) => edge.node), pageInfo: sessions.pageInfo });
}

async function verify(client: GatewayClient, recipient: string): Promise<void> {
  const { startVerification } = await client.request(
    StartVerificationMutation,
    { input: { recipient, channel: "SMS" } },
    { idempotencyKey: randomUUID() },
  );
  print({ startVerification });
  const uuid = startVerification.sessionUuid;
  process.stderr.write("code: ");
  try {
    for await (const line of createInterface({ input: process.stdin })) {
      const { validateSession } = await client.request(ValidateSessionMutation, {
        uuid,
        otp: line.trim(),
      });
      print({ validateSession });
      if (validateSession.result !== "WRONG_CODE") return;
      process.stderr.write("wrong code; code: ");
    }
  } finally {
    process.stdin.destroy(); // readline leaves it open, which would keep node running
  }
}

async function main([command, argument]: string[]): Promise<void> {
  const client = new GatewayClient({
    url: process.env["GATEWAY_URL"] ?? "http://127.0.0.1:8000",
    apiKey: process.env["GATEWAY_API_KEY"],
  });
  if (command === "verify" && argument) return verify(client, argument);
  if (command === undefined || command === "session") {
    return read(client, argument ?? DOCS_EXAMPLE_UUID);
  }
  throw new Error("usage: main.js [session [UUID] | verify RECIPIENT]");
}

main(process.argv.slice(2)).catch((error: unknown) => {
  const what = error instanceof GatewayError ? `gateway: ${error.message}` : String(error);
  process.stderr.write(`${what}\n`);
  process.exitCode = 1;
});
