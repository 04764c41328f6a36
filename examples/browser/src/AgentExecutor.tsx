// The seed's `AgentExecutor` component, on the typed client: the hook does the
// WebSocket, the request, and the state (idle → connecting → running →
// completed | error); the component only renders it.
import { useAgentExecution } from "agentwire/react";

const LABELS = {
  idle: "press Execute to run the agent",
  connecting: "connecting to the server…",
  running: "the agent is running…",
  completed: "the agent finished",
  error: "the run failed",
} as const;

export function AgentExecutor({ agentId, url }: { agentId: string; url: string }) {
  const { status, results, error, progress, executionId, execute, cancel } = useAgentExecution(agentId, { url });
  const busy = status === "connecting" || status === "running";
  return (
    <section className="executor">
      <h2>Agent execution</h2>
      <div className="buttons">
        <button type="button" data-testid="execute" onClick={() => void execute()} disabled={busy || agentId === ""}>
          Execute
        </button>
        {status === "running" && (
          <button type="button" data-testid="cancel" onClick={() => void cancel()}>
            Cancel
          </button>
        )}
      </div>
      <p className={`status status-${status}`}>
        Status: <strong data-testid="status">{status}</strong> <span>{LABELS[status]}</span>
      </p>
      {executionId !== null && (
        <p className="execution-id">
          Execution: <code data-testid="execution-id">{executionId}</code>
        </p>
      )}
      {status === "running" && <p data-testid="progress">{progress.length} action(s) so far…</p>}
      {status === "error" && error !== null && (
        <p className="error" data-testid="error" role="alert">
          Error: <span data-testid="error-message">{error.message}</span> (<code data-testid="error-code">{error.code}</code>)
        </p>
      )}
      {(status === "completed" || (status === "error" && results.length > 0)) && (
        <div className="results">
          <h3>
            {status === "completed" ? "Results" : "Actions before the failure"} ({results.length} action
            {results.length === 1 ? "" : "s"})
          </h3>
          {results.length === 0 ? (
            <p>No action was run.</p>
          ) : (
            <ol data-testid="results">
              {results.map((r, i) => (
                <li key={i} data-testid="result">
                  <strong className="function-name">{r.function_name}</strong>:{" "}
                  {r.error !== undefined ? (
                    <span className="action-error">failed: {r.error}</span>
                  ) : (
                    <code className="result-value">{JSON.stringify(r.result ?? null)}</code>
                  )}
                </li>
              ))}
            </ol>
          )}
        </div>
      )}
    </section>
  );
}
