//! The chat family's handlers: `command` (create or load an agent) and
//! `user_message` (one step, fanned out to every connection on the agent).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use super::Shared;
use super::connection::ConnState;
use crate::protocol::{
    AgentResponseEnd, AgentResponseError, AgentResponseStart, ChatCommand, CommandResponse, ServerMessage,
    UserMessage,
};
use crate::runtime::{AgentDefinition, AgentEvent, RunContext, RuntimeConfig, ScriptedConfig};

/// A connection's chat state: its current agent and the task forwarding that
/// agent's steps to it.
#[derive(Default)]
pub(crate) struct ChatState {
    current: Mutex<Option<(String, JoinHandle<()>)>>,
}

impl ChatState {
    fn current(&self) -> Option<String> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(id, _)| id.clone())
    }

    /// Stop receiving the current agent's steps.
    pub fn leave(&self) {
        if let Some((_, forwarder)) = self.current.lock().unwrap_or_else(|e| e.into_inner()).take() {
            forwarder.abort();
        }
    }
}

/// Make `agent_id` the connection's current agent and subscribe it to the
/// agent's steps.
fn join(shared: &Shared, conn: &Arc<ConnState>, agent_id: &str) {
    let mut current = conn.chat.current.lock().unwrap_or_else(|e| e.into_inner());
    if current.as_ref().is_some_and(|(id, _)| id == agent_id) {
        return;
    }
    if let Some((_, old)) = current.take() {
        old.abort();
    }
    let mut steps = shared.room(agent_id).subscribe();
    let outbox = conn.outbox.clone();
    let forwarder = tokio::spawn(async move {
        loop {
            match steps.recv().await {
                Ok(frame) => {
                    if !outbox.send_text(frame).await {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "a slow connection missed chat messages");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    *current = Some((agent_id.to_owned(), forwarder));
}

pub(crate) async fn command(shared: &Arc<Shared>, conn: &Arc<ConnState>, command: ChatCommand) {
    let response = match command {
        ChatCommand::CreateAgent(create) => {
            let n = shared.created_agents.fetch_add(1, Ordering::Relaxed) + 1;
            let name = create.config.name.clone().unwrap_or_else(|| format!("agent_{n}"));
            let definition = AgentDefinition {
                id: uuid::Uuid::new_v4().to_string(),
                name: Some(name.clone()),
                runtime: RuntimeConfig::Scripted(ScriptedConfig {
                    actions: Vec::new(),
                    persona: create.config.persona.clone(),
                }),
            };
            match persist(shared, &definition).await {
                Ok(()) => {
                    let agent = shared.register(&definition);
                    join(shared, conn, &agent.info.agent_id);
                    CommandResponse::new(
                        "OK: Agent initialized",
                        Some(agent.info.agent_id.clone()),
                        create.request_id,
                    )
                }
                Err(e) => CommandResponse::new(
                    format!("Error: Failed to init agent - {e}"),
                    None,
                    create.request_id,
                ),
            }
        }
        ChatCommand::LoadAgent(load) => match shared.agent(&load.name) {
            Some(agent) => {
                join(shared, conn, &agent.info.agent_id);
                CommandResponse::new(
                    format!("OK: Agent '{}' loaded", load.name),
                    Some(agent.info.agent_id.clone()),
                    load.request_id,
                )
            }
            None => CommandResponse::new(
                format!(
                    "Error: Failed to load agent '{}' - no agent has that name or id",
                    load.name
                ),
                None,
                load.request_id,
            ),
        },
    };
    conn.outbox.send(&ServerMessage::CommandResponse(response)).await;
}

async fn persist(shared: &Shared, definition: &AgentDefinition) -> Result<(), String> {
    let stored = definition.to_stored()?;
    shared.store.upsert_agent(stored).await.map_err(|e| e.to_string())
}

pub(crate) async fn user_message(shared: &Arc<Shared>, conn: &Arc<ConnState>, message: UserMessage) {
    let named = message.agent_id.as_deref().or(message.agent_name.as_deref());
    let agent = match named {
        Some(name) => shared.agent(name),
        None => conn.chat.current().and_then(|id| shared.agent(&id)),
    };
    let Some(agent) = agent else {
        let text = match named {
            Some(name) => format!("No agent named {name}"),
            None => "No agent has been initialized".to_owned(),
        };
        let error = AgentResponseError::new(text, message.request_id.clone());
        conn.outbox.send(&ServerMessage::AgentResponseError(error)).await;
        return;
    };
    let agent_id = agent.info.agent_id.clone();
    join(shared, conn, &agent_id);
    let room = shared.room(&agent_id);
    let shared = shared.clone();
    tokio::spawn(async move {
        // One step at a time per agent: ordering and no clobbered state.
        let _step = agent.step_lock.lock().await;
        shared.metrics.chat_step();
        let request_id = message.request_id.clone();
        let publish = |message: ServerMessage| {
            let _ = room.send(Utf8Bytes::from(message.encode()));
        };
        // Queued in order behind the step's other writes; nobody waits for the commit.
        shared
            .store
            .append_chat(&agent_id, "user", None, &message.message)
            .detach();
        publish(ServerMessage::AgentResponseStart(AgentResponseStart {
            request_id: request_id.clone(),
        }));

        let (events, mut rx) = mpsc::channel(64);
        let step_id = uuid::Uuid::new_v4().to_string();
        let ctx = RunContext::new(step_id, &agent_id, None, shared.memory(), events);
        let runner = agent.runtime.chat(ctx, message.message);
        tokio::pin!(runner);
        let mut said = Vec::new();
        let result = loop {
            tokio::select! {
                Some(event) = rx.recv() => if let AgentEvent::Say(mut response) = event {
                    response.request_id = request_id.clone();
                    said.push(response.clone());
                    publish(ServerMessage::AgentResponse(response));
                },
                result = &mut runner => break result,
            }
        };
        while let Ok(event) = rx.try_recv() {
            if let AgentEvent::Say(mut response) = event {
                response.request_id = request_id.clone();
                said.push(response.clone());
                publish(ServerMessage::AgentResponse(response));
            }
        }
        for response in &said {
            let kind = serde_json::to_value(response.message_type).ok();
            let kind = kind.as_ref().and_then(|v| v.as_str());
            shared
                .store
                .append_chat(&agent_id, "agent", kind, &response.message)
                .detach();
        }
        match result {
            Ok(()) => {
                publish(ServerMessage::AgentResponseEnd(AgentResponseEnd { request_id }));
            }
            Err(e) => publish(ServerMessage::AgentResponseError(AgentResponseError::new(
                e.message, request_id,
            ))),
        }
    });
}
