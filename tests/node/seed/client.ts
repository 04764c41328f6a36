// The JavaScript client of seed 004 ("Cliente JavaScript (para frontend)"),
// rewritten in TypeScript against the generated bindings. Apart from the types,
// the only change is `response.data || {}` becoming `response.data`: `data` is
// required, and `{}` would hide the fields the narrowing below relies on.
// `narrowed` at the end is an addition that pins the narrowed types.
// It must type-check under `tsc --strict` with no cast, no `any` and no `!`.
import type { ActionResult, ClientMessage, ServerMessage } from "../../../bindings/generated/index.js";

// Conectar al servidor WebSocket
const ws = new WebSocket('ws://localhost:8765');

// Manejar eventos de conexión
ws.onopen = () => {
  console.log('Conectado al servidor');

  // Solicitar ejecución de un agente
  const message: ClientMessage = {
    type: 'execute',
    agent_id: '8191feef-546d-46a8-a26f-b92073882f5c'
  };

  ws.send(JSON.stringify(message));
};

// Recibir mensajes del servidor
ws.onmessage = (event) => {
  const response: ServerMessage = JSON.parse(event.data);
  console.log('Respuesta recibida:', response);

  // Manejar diferentes estados de la respuesta
  if (response.type === 'execution_response') {
    const data = response.data;

    if (data.status === 'started') {
      // La ejecución ha comenzado
      console.log('Ejecución iniciada, esperando resultados...');
    }
    else if (data.status === 'completed') {
      // La ejecución ha finalizado
      if (data.success) {
        console.log(`Ejecución completada: ${data.execution_count} acciones ejecutadas`);
        // Procesar resultados
        if (data.results && data.results.length > 0) {
          data.results.forEach((result, i) => {
            console.log(`Resultado ${i+1}:`, result);
          });
        }
      } else {
        console.error('Error en la ejecución:', data.error);
      }
    }
  } else if (response.type === 'error') {
    console.error('Error:', response.data?.message || 'Error desconocido');
  }
};

// Manejar errores y cierre de conexión
ws.onerror = (error) => {
  console.error('Error de WebSocket:', error);
};

ws.onclose = (event) => {
  console.log('Conexión cerrada:', event.code, event.reason);
};

// The narrowing the seed relies on, pinned: after `status === 'completed'` and
// `success`, `results` is an `ActionResult[]` and `execution_count` a number; on
// the other side, `error` is a string. (Assignments to annotated variables fail
// to compile if the bindings ever widen these types.)
export function narrowed(response: ServerMessage): string {
  if (response.type !== 'execution_response') return response.type;
  const data = response.data;
  if (data.status !== 'completed') return data.message;
  if (data.success) {
    const results: ActionResult[] = data.results;
    const count: number = data.execution_count;
    return `${count} ${results.map((r) => r.function_name).join(',')}`;
  }
  const error: string = data.error;
  return error;
}
