// agentwire/react: the seed's `AgentExecutor` logic as a hook, on the typed client.
import { useEffect, useRef, useState, useSyncExternalStore } from "react";
import type { JsonValue } from "../generated/index.js";
import { AgentExecution, type AgentExecutionOptions, type AgentExecutionState } from "./execution.js";

export type { AgentExecutionOptions, AgentExecutionState, AgentExecutionStatus } from "./execution.js";

/** What {@link useAgentExecution} returns: the state, and what to do. */
export interface UseAgentExecutionResult extends AgentExecutionState {
  /** Run the agent (ignored while running); `input` overrides `options.input`. Never rejects. */
  execute: (input?: JsonValue) => Promise<void>;
  /** Cancel the running execution; it ends in `error` with code `cancelled`. Never rejects. */
  cancel: () => Promise<void>;
}

/**
 * Run an agent from a component and render its state:
 * `status` (`idle` | `connecting` | `running` | `completed` | `error`),
 * `results`, `error`, `progress`, `executionId`, and `execute()` / `cancel()`.
 *
 * Give `options.url` (the hook opens a client on the first `execute` and
 * closes it on unmount) or `options.client` (a shared, connected client).
 *
 * ```tsx
 * const { status, results, error, execute } = useAgentExecution(agentId, { url: "ws://localhost:8765" });
 * ```
 */
export function useAgentExecution(agentId: string, options: AgentExecutionOptions): UseAgentExecutionResult {
  const latest = useRef({ agentId, options });
  latest.current = { agentId, options };
  const [execution] = useState(() => new AgentExecution(() => latest.current));
  const state = useSyncExternalStore(execution.subscribe, execution.getSnapshot, execution.getSnapshot);
  useEffect(() => execution.release, [execution]);
  return { ...state, execute: execution.execute, cancel: execution.cancel };
}
