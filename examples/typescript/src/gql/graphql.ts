/* eslint-disable */
/** Internal type. DO NOT USE DIRECTLY. */
type Exact<T extends { [key: string]: unknown }> = { [K in keyof T]: T[K] };
/** Internal type. DO NOT USE DIRECTLY. */
export type Incremental<T> = T | { [P in keyof T]?: P extends ' $fragmentName' | '__typename' ? T[P] : never };
import type { TypedDocumentNode as DocumentNode } from '@graphql-typed-document-node/core';
/** How a code was sent. */
export type Channel =
  | 'SMS'
  | 'UNKNOWN'
  | 'VOICE';

/** Plivo's list filters; times are ISO 8601 with an offset. */
export type SessionFilter = {
  appUuid?: string | number | null | undefined;
  /** An international number: country code and number, with a leading + or 00 or neither (+14155550199, 0014155550199 and 14155550199 are one number). */
  recipient?: string | null | undefined;
  sessionTime?: string | null | undefined;
  sessionTimeGt?: string | null | undefined;
  sessionTimeGte?: string | null | undefined;
  sessionTimeLt?: string | null | undefined;
  sessionTimeLte?: string | null | undefined;
  status?: SessionStatus | null | undefined;
  /** A subaccount's auth id (SA...), to list its sessions. */
  subaccount?: string | null | undefined;
};

/** Where a verification stands; VERIFIED and EXPIRED are terminal. */
export type SessionStatus =
  | 'EXPIRED'
  | 'IN_PROGRESS'
  | 'UNKNOWN'
  | 'VERIFIED';

/** What Plivo's create call takes; the callback URL is the gateway's. */
export type StartVerificationInput = {
  /** Android SMS Retriever hash. */
  appHash?: string | null | undefined;
  appUuid?: string | number | null | undefined;
  brandName?: string | null | undefined;
  channel?: Channel;
  /** 4 to 8 digits. */
  codeLength?: number | null | undefined;
  dtmf?: number | null | undefined;
  fraudCheck?: string | null | undefined;
  locale?: string | null | undefined;
  /** A code of your own (4 to 8 digits) instead of Plivo's. */
  otp?: string | null | undefined;
  /** An international number: country code and number, with a leading + or 00 or neither (+14155550199, 0014155550199 and 14155550199 are one number). */
  recipient: string;
};

/** How a validation ended: only VERIFIED verifies the session (with this code). */
export type ValidationResult =
  /** The session was verified earlier; this code was not checked. */
  | 'ALREADY_VERIFIED'
  /** The session has expired. */
  | 'EXPIRED'
  /** Plivo has no such session. */
  | 'NOT_FOUND'
  /** Too many validation attempts for this session. */
  | 'TOO_MANY_ATTEMPTS'
  /** The code is correct; the session is verified. */
  | 'VERIFIED'
  /** The code is wrong. */
  | 'WRONG_CODE';

export type SessionQueryVariables = Exact<{
  uuid: string | number;
}>;


export type SessionQuery = { session: { sessionUuid: string, status: SessionStatus, channel: Channel, recipient: string, count: number, createdAt: string, attempts: Array<{ attemptUuid: string | null, channel: Channel, status: string, time: string, charge: string | null }>, charges: { totalCharge: string, validationCharge: string } } | null };

export type SessionsQueryVariables = Exact<{
  filter?: SessionFilter | null | undefined;
  first?: number;
  after?: string | null | undefined;
}>;


export type SessionsQuery = { sessions: { edges: Array<{ node: { sessionUuid: string, recipient: string, status: SessionStatus, createdAt: string } }>, pageInfo: { hasNextPage: boolean, endCursor: string | null } } };

export type StartVerificationMutationVariables = Exact<{
  input: StartVerificationInput;
}>;


export type StartVerificationMutation = { startVerification: { sessionUuid: string, replayed: boolean, session: { status: SessionStatus, channel: Channel } | null } };

export type ValidateSessionMutationVariables = Exact<{
  uuid: string | number;
  otp: string;
}>;


export type ValidateSessionMutation = { validateSession: { sessionUuid: string, result: ValidationResult, message: string, session: { status: SessionStatus } | null } };


export const SessionDocument = {"__meta__":{"hash":"sha256:454443b57716f72e9a9a53f7a798f24d8db68cd1ac121af263f6f75d413d724f"}} as unknown as DocumentNode<SessionQuery, SessionQueryVariables>;
export const SessionsDocument = {"__meta__":{"hash":"sha256:0cbdf864fe39eb4dd7928127bba1e637b8fc1f62853d1ae69516029089ca6118"}} as unknown as DocumentNode<SessionsQuery, SessionsQueryVariables>;
export const StartVerificationDocument = {"__meta__":{"hash":"sha256:ed5f8a5e23575463c1f1ed50946a2a859aa2772e1ffb170e4a27ce6d27b7cafc"}} as unknown as DocumentNode<StartVerificationMutation, StartVerificationMutationVariables>;
export const ValidateSessionDocument = {"__meta__":{"hash":"sha256:04dda3e36ff5ae2f7dc6a54b98a853a36df1eebbc8f5a6c64dded6cf27e3ca37"}} as unknown as DocumentNode<ValidateSessionMutation, ValidateSessionMutationVariables>;