import type { CodegenConfig } from "@graphql-codegen/cli";

// The gateway's contract is schema.graphql at the repository's root (`make schema` writes it);
// the operations are the graphql() calls in src/. `npm run codegen` writes src/gql/: the types,
// the typed graphql() function, and persisted-documents.json, the manifest the gateway is given.
const config: CodegenConfig = {
  schema: "../../schema.graphql",
  documents: ["src/**/*.ts", "!src/gql/**"],
  ignoreNoDocuments: false,
  generates: {
    "src/gql/": {
      preset: "client",
      presetConfig: {
        fragmentMasking: false,
        // Each document is replaced by its hash in the bundle; the text is only in the manifest.
        persistedDocuments: { mode: "replaceDocumentWithHash", hashAlgorithm: "sha256" },
      },
      config: {
        // Both scalars are strings on the wire: an ISO 8601 time, and money with Plivo's
        // precision kept. A scalar the schema adds later must be named here (strictScalars).
        scalars: { DateTime: "string", Decimal: "string" },
        strictScalars: true,
        useTypeImports: true,
        importExtension: ".js", // ES modules under Node need the extension
        enumType: "string-literal",
      },
    },
  },
};

export default config;
