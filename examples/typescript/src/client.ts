// A small typed client of plivo-verify-gateway. It sends a persisted document's id, never its
// text: codegen replaced each document with its hash and wrote the text to the manifest the
// gateway is deployed with (src/gql/persisted-documents.json).
import type { TypedDocumentNode } from "@graphql-typed-document-node/core";

/** One entry of a response's `errors`; `extensions.code` is stable (docs/errors.md). */
export interface GraphQLError {
  message: string;
  path?: ReadonlyArray<string | number>;
  extensions?: { code?: string; [key: string]: unknown };
}

/** A GraphQL response as the gateway sends it. */
interface GraphQLResponse<TData> {
  data?: TData | null;
  errors?: GraphQLError[];
}

const codeOf = (error: GraphQLError): string => error.extensions?.code ?? "ERROR";

/** The gateway answered with errors (or not with GraphQL at all); `codes` says which. */
export class GatewayError extends Error {
  override readonly name = "GatewayError";

  constructor(
    readonly status: number,
    readonly errors: readonly GraphQLError[],
  ) {
    const described = errors.map((error) => `${codeOf(error)}: ${error.message}`);
    super(described.join("; ") || `HTTP ${status} without a GraphQL response`);
  }

  get codes(): string[] {
    return this.errors.map(codeOf);
  }
}

export interface ClientOptions {
  /** The gateway's base URL, e.g. http://127.0.0.1:8000; requests go to its /graphql. */
  url: string;
  /** Sent as `Authorization: Bearer <key>`; none for a gateway run with GATEWAY_AUTH=none. */
  apiKey?: string | undefined;
  timeoutMs?: number;
}

export interface RequestOptions {
  /** For startVerification: a repeat with the same key returns the first result. */
  idempotencyKey?: string;
}

/** The id codegen gave `document`: "sha256:" and the hex digest of its text. */
export function documentId(document: TypedDocumentNode<unknown, never>): string {
  // The client preset's replaceDocumentWithHash mode leaves only this on the document.
  const hash = (document as { __meta__?: { hash?: unknown } }).__meta__?.hash;
  if (typeof hash !== "string") {
    throw new TypeError("not a persisted document: was it written with graphql() from src/gql?");
  }
  return hash;
}

export class GatewayClient {
  private readonly endpoint: string;

  constructor(private readonly options: ClientOptions) {
    this.endpoint = `${options.url.replace(/\/+$/, "")}/graphql`;
  }

  /** Runs `document` with `variables`: its data, typed, or a GatewayError. */
  async request<TData, TVariables>(
    document: TypedDocumentNode<TData, TVariables>,
    variables: TVariables,
    { idempotencyKey }: RequestOptions = {},
  ): Promise<TData> {
    const headers: Record<string, string> = {
      "content-type": "application/json",
      accept: "application/graphql-response+json, application/json",
    };
    if (this.options.apiKey) headers["authorization"] = `Bearer ${this.options.apiKey}`;
    if (idempotencyKey !== undefined) headers["idempotency-key"] = idempotencyKey;
    const response = await fetch(this.endpoint, {
      method: "POST",
      headers,
      body: JSON.stringify({ documentId: documentId(document), variables }),
      signal: AbortSignal.timeout(this.options.timeoutMs ?? 10_000),
    });
    // The body's shape is the schema's promise, checked at build time by codegen and tsc.
    const body = (await response.json().catch(() => null)) as GraphQLResponse<TData> | null;
    if (body?.errors?.length || body?.data == null) {
      throw new GatewayError(response.status, body?.errors ?? []);
    }
    return body.data;
  }
}
