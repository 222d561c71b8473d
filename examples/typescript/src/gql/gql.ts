/* eslint-disable */
import * as types from './graphql.js';
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';

/**
 * Map of all GraphQL operations in the project.
 *
 * This map has several performance disadvantages:
 * 1. It is not tree-shakeable, so it will include all operations in the project.
 * 2. It is not minifiable, so the string of a GraphQL query will be multiple times inside the bundle.
 * 3. It does not support dead code elimination, so it will add unused operations.
 *
 * Therefore it is highly recommended to use the babel or swc plugin for production.
 * Learn more about it here: https://the-guild.dev/graphql/codegen/plugins/presets/preset-client#reducing-bundle-size
 */
type Documents = {
    "\n  query Session($uuid: ID!) {\n    session(uuid: $uuid) {\n      sessionUuid\n      status\n      channel\n      recipient\n      count\n      createdAt\n      attempts {\n        attemptUuid\n        channel\n        status\n        time\n        charge\n      }\n      charges {\n        totalCharge\n        validationCharge\n      }\n    }\n  }\n": typeof types.SessionDocument,
    "\n  query Sessions($filter: SessionFilter, $first: Int! = 20, $after: String) {\n    sessions(filter: $filter, first: $first, after: $after) {\n      edges {\n        node {\n          sessionUuid\n          recipient\n          status\n          createdAt\n        }\n      }\n      pageInfo {\n        hasNextPage\n        endCursor\n      }\n    }\n  }\n": typeof types.SessionsDocument,
    "\n  mutation StartVerification($input: StartVerificationInput!) {\n    startVerification(input: $input) {\n      sessionUuid\n      replayed\n      session {\n        status\n        channel\n      }\n    }\n  }\n": typeof types.StartVerificationDocument,
    "\n  mutation ValidateSession($uuid: ID!, $otp: String!) {\n    validateSession(uuid: $uuid, otp: $otp) {\n      sessionUuid\n      result\n      message\n      session {\n        status\n      }\n    }\n  }\n": typeof types.ValidateSessionDocument,
};
const documents: Documents = {
    "\n  query Session($uuid: ID!) {\n    session(uuid: $uuid) {\n      sessionUuid\n      status\n      channel\n      recipient\n      count\n      createdAt\n      attempts {\n        attemptUuid\n        channel\n        status\n        time\n        charge\n      }\n      charges {\n        totalCharge\n        validationCharge\n      }\n    }\n  }\n": types.SessionDocument,
    "\n  query Sessions($filter: SessionFilter, $first: Int! = 20, $after: String) {\n    sessions(filter: $filter, first: $first, after: $after) {\n      edges {\n        node {\n          sessionUuid\n          recipient\n          status\n          createdAt\n        }\n      }\n      pageInfo {\n        hasNextPage\n        endCursor\n      }\n    }\n  }\n": types.SessionsDocument,
    "\n  mutation StartVerification($input: StartVerificationInput!) {\n    startVerification(input: $input) {\n      sessionUuid\n      replayed\n      session {\n        status\n        channel\n      }\n    }\n  }\n": types.StartVerificationDocument,
    "\n  mutation ValidateSession($uuid: ID!, $otp: String!) {\n    validateSession(uuid: $uuid, otp: $otp) {\n      sessionUuid\n      result\n      message\n      session {\n        status\n      }\n    }\n  }\n": types.ValidateSessionDocument,
};

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 *
 *
 * @example
 * ```ts
 * const query = graphql(`query GetUser($id: ID!) { user(id: $id) { name } }`);
 * ```
 *
 * The query argument is unknown!
 * Please regenerate the types.
 */
export function graphql(source: string): unknown;

/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Session($uuid: ID!) {\n    session(uuid: $uuid) {\n      sessionUuid\n      status\n      channel\n      recipient\n      count\n      createdAt\n      attempts {\n        attemptUuid\n        channel\n        status\n        time\n        charge\n      }\n      charges {\n        totalCharge\n        validationCharge\n      }\n    }\n  }\n"): (typeof documents)["\n  query Session($uuid: ID!) {\n    session(uuid: $uuid) {\n      sessionUuid\n      status\n      channel\n      recipient\n      count\n      createdAt\n      attempts {\n        attemptUuid\n        channel\n        status\n        time\n        charge\n      }\n      charges {\n        totalCharge\n        validationCharge\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  query Sessions($filter: SessionFilter, $first: Int! = 20, $after: String) {\n    sessions(filter: $filter, first: $first, after: $after) {\n      edges {\n        node {\n          sessionUuid\n          recipient\n          status\n          createdAt\n        }\n      }\n      pageInfo {\n        hasNextPage\n        endCursor\n      }\n    }\n  }\n"): (typeof documents)["\n  query Sessions($filter: SessionFilter, $first: Int! = 20, $after: String) {\n    sessions(filter: $filter, first: $first, after: $after) {\n      edges {\n        node {\n          sessionUuid\n          recipient\n          status\n          createdAt\n        }\n      }\n      pageInfo {\n        hasNextPage\n        endCursor\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation StartVerification($input: StartVerificationInput!) {\n    startVerification(input: $input) {\n      sessionUuid\n      replayed\n      session {\n        status\n        channel\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation StartVerification($input: StartVerificationInput!) {\n    startVerification(input: $input) {\n      sessionUuid\n      replayed\n      session {\n        status\n        channel\n      }\n    }\n  }\n"];
/**
 * The graphql function is used to parse GraphQL queries into a document that can be used by GraphQL clients.
 */
export function graphql(source: "\n  mutation ValidateSession($uuid: ID!, $otp: String!) {\n    validateSession(uuid: $uuid, otp: $otp) {\n      sessionUuid\n      result\n      message\n      session {\n        status\n      }\n    }\n  }\n"): (typeof documents)["\n  mutation ValidateSession($uuid: ID!, $otp: String!) {\n    validateSession(uuid: $uuid, otp: $otp) {\n      sessionUuid\n      result\n      message\n      session {\n        status\n      }\n    }\n  }\n"];

export function graphql(source: string) {
  return (documents as any)[source] ?? {};
}

export type DocumentType<TDocumentNode extends DocumentNode<any, any>> = TDocumentNode extends DocumentNode<  infer TType,  any>  ? TType  : never;