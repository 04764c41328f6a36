// The React component of seed 004 ("Ejemplo de componente React"), rewritten in
// TypeScript against the generated bindings. Apart from the types, the only
// change is `response.data || {}` becoming `response.data` (`data` is required),
// the request checked with `satisfies ClientMessage` (not a cast), and the
// `export` at the end. It must type-check under `tsc --strict` with no
// cast, no `any` and no `!`.
import React, { useState, useEffect, useRef } from 'react';
import type { ActionResult, ClientMessage, ServerMessage } from '../../../bindings/generated/index.js';

type Status = 'idle' | 'connecting' | 'running' | 'completed' | 'error';

function AgentExecutor({ agentId }: { agentId: string }) {
  const [status, setStatus] = useState<Status>('idle'); // idle, connecting, running, completed, error
  const [results, setResults] = useState<ActionResult[]>([]);
  const [error, setError] = useState<string | null>(null);
  const wsRef = useRef<WebSocket | null>(null);

  const executeAgent = () => {
    setStatus('connecting');
    setError(null);

    // Crear nueva conexión WebSocket
    const ws = new WebSocket('ws://localhost:8765');
    wsRef.current = ws;

    ws.onopen = () => {
      setStatus('running');

      // Enviar solicitud de ejecución
      ws.send(JSON.stringify({
        type: 'execute',
        agent_id: agentId
      } satisfies ClientMessage));
    };

    ws.onmessage = (event) => {
      const response: ServerMessage = JSON.parse(event.data);

      if (response.type === 'execution_response') {
        const data = response.data;

        if (data.status === 'completed') {
          if (data.success) {
            setResults(data.results || []);
            setStatus('completed');
          } else {
            setError(data.error);
            setStatus('error');
          }

          // Cerrar la conexión
          ws.close();
        }
      } else if (response.type === 'error') {
        setError(response.data?.message || 'Error desconocido');
        setStatus('error');
      }
    };

    ws.onerror = () => {
      setError('Error de conexión con el servidor');
      setStatus('error');
    };

    ws.onclose = () => {
      if (status === 'running') {
        setError('La conexión se cerró inesperadamente');
        setStatus('error');
      }
    };
  };

  // Limpiar la conexión al desmontar el componente
  useEffect(() => {
    return () => {
      if (wsRef.current && wsRef.current.readyState < 2) {
        wsRef.current.close();
      }
    };
  }, []);

  return (
    <div>
      <h2>Ejecución del Agente</h2>

      <button
        onClick={executeAgent}
        disabled={status === 'connecting' || status === 'running'}
      >
        Ejecutar Agente
      </button>

      {status === 'connecting' && <p>Conectando al servidor...</p>}
      {status === 'running' && <p>Ejecutando agente...</p>}
      {status === 'error' && <p className="error">Error: {error}</p>}

      {status === 'completed' && (
        <div>
          <h3>Resultados ({results.length} acciones)</h3>
          {results.length === 0 ? (
            <p>No se ejecutó ninguna acción</p>
          ) : (
            <ul>
              {results.map((result, index) => (
                <li key={index}>
                  <strong>Función:</strong> {result.function_name}
                  <br />
                  <strong>Resultado:</strong> {JSON.stringify(result.result)}
                </li>
              ))}
            </ul>
          )}
        </div>
      )}
    </div>
  );
}

export default AgentExecutor;
