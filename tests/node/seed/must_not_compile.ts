// Deliberate type errors: `tsc --strict --noEmit -p tsconfig.must_not_compile.json`
// must reject this file, with an error on every line marked `// expect-error TSnnnn`
// and on no other line (typecheck.test.mjs checks both, and the code).
// Keep each marked statement on one line so the error lands on that line.
import type { ActionResult, ClientMessage, ServerMessage } from "../../../bindings/generated/index.js";

// An execute request needs an agent_id, in every format.
export const format2WithoutAgentId: ClientMessage = { type: "execute" }; // expect-error TS2322
export const format1WithoutAgentId: ClientMessage = { type: "websocket_execution" }; // expect-error TS2322
export const format3WithoutAgentId: ClientMessage = { type: "execute", data: {} }; // expect-error TS2322
export const agentIdNumber: ClientMessage = { type: "execute", agent_id: 42 }; // expect-error TS2322
export const unknownType: ClientMessage = { type: "reboot" }; // expect-error TS2322
export const cancelNoAgent: ClientMessage = { type: "cancel", agent_id: "a1" }; // expect-error TS2353
export const hello: ClientMessage = { type: "hello", protocol_version: "1" }; // expect-error TS2322
export const loadWithoutName: ClientMessage = { type: "command", command: "load_agent" }; // expect-error TS2322
export const unknownCommand: ClientMessage = { type: "command", command: "reboot" }; // expect-error TS2322

// A cancel must name the execution: by `execution_id` or by `request_id`.
export const cancelWithoutIds: ClientMessage = { type: "cancel" }; // expect-error TS2322

export function results(response: ServerMessage): number {
  if (response.type !== "execution_response") return 0;
  const data = response.data;
  const beforeNarrowing: ActionResult[] = data.results; // expect-error TS2339
  if (data.status === "started") {
    const whileStarted: ActionResult[] = data.results; // expect-error TS2339
    return whileStarted.length;
  }
  if (data.success) {
    const errorOnSuccess: string = data.error; // expect-error TS2339
    return errorOnSuccess.length;
  }
  // The failed branch: `results` may be absent (the actions that ran before the
  // failure, if any), so it is not an ActionResult[] to use as one.
  const resultsOnFailure: ActionResult[] = data.results; // expect-error TS2322
  const countOnFailure: number = data.results.length; // expect-error TS18048
  const executionCountOnFailure: number = data.execution_count; // expect-error TS2322
  return beforeNarrowing.length + resultsOnFailure.length + countOnFailure + executionCountOnFailure;
}
