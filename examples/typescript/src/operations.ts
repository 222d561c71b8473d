// The example's operations. `npm run codegen` reads the graphql() calls below and writes their
// result and variable types to src/gql/, and their text, by hash, to the manifest.
import { graphql } from "./gql/gql.js";

export const SessionQuery = graphql(`
  query Session($uuid: ID!) {
    session(uuid: $uuid) {
      sessionUuid
      status
      channel
      recipient
      count
      createdAt
      attempts {
        attemptUuid
        channel
        status
        time
        charge
      }
      charges {
        totalCharge
        validationCharge
      }
    }
  }
`);

export const SessionsQuery = graphql(`
  query Sessions($filter: SessionFilter, $first: Int! = 20, $after: String) {
    sessions(filter: $filter, first: $first, after: $after) {
      edges {
        node {
          sessionUuid
          recipient
          status
          createdAt
        }
      }
      pageInfo {
        hasNextPage
        endCursor
      }
    }
  }
`);

export const StartVerificationMutation = graphql(`
  mutation StartVerification($input: StartVerificationInput!) {
    startVerification(input: $input) {
      sessionUuid
      replayed
      session {
        status
        channel
      }
    }
  }
`);

export const ValidateSessionMutation = graphql(`
  mutation ValidateSession($uuid: ID!, $otp: String!) {
    validateSession(uuid: $uuid, otp: $otp) {
      sessionUuid
      result
      message
      session {
        status
      }
    }
  }
`);
