//! The scripted runtime: a fixed list of built-in actions, and a deterministic
//! chat. No I/O beyond the agent's memory; good for demos and tests.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{AgentError, AgentEvent, AgentRuntime, BoxFuture, RunContext, ScriptedAction, ScriptedConfig};
use crate::protocol::{ActionResult, AgentMessageType, AgentResponse};

/// The memory key under which the scripted chat keeps what it was asked to
/// remember (a JSON array of strings).
const CHAT_MEMORY_KEY: &str = "chat.remembered";

/// Runs a [`ScriptedConfig`]: its actions in order, each over a built-in
/// function.
///
/// | function | params | result |
/// |---|---|---|
/// | `echo` | anything | the params object; with no params, the run's `input` (or `{}` when there is none) |
/// | `sleep` | `ms`: integer | `{"slept_ms": ms}` after waiting `ms` milliseconds (cancelled when the run is dropped) |
/// | `fail` | `message`?: string | a failed action with `message` (default `failed`); the run fails with `execution_failed` |
/// | `memory_set` | `key`: string, `value`?: any (default `null`) | `{"key": key}`, after storing `value` in the agent's memory |
/// | `memory_get` | `key`: string | the stored value, or `null` |
///
/// An unknown function, or params of the wrong type, is a failed action and
/// fails the run. Every reported action carries its params (omitted when empty).
///
/// Chat answers with an `internal_monologue` (`User said: …`), a
/// `function_message` (`Running send_message(message='…')`) and the
/// `assistant_message` itself, which is `You said: …`, except for:
///
/// - `remember <text>`: appends `<text>` to the agent's memory (key
///   `chat.remembered`) and answers `I will remember: <text>`;
/// - `what do you remember` (any case, `?` optional): lists what was remembered;
/// - `who are you` (any case, `?` optional): the configured `persona`, when set.
#[derive(Clone, Debug, Default)]
pub struct ScriptedRuntime {
    config: ScriptedConfig,
}

impl ScriptedRuntime {
    /// The runtime's name on the wire.
    pub const NAME: &'static str = "scripted";

    /// A runtime for this script.
    pub fn new(config: ScriptedConfig) -> Self {
        ScriptedRuntime { config }
    }

    /// The script it runs.
    pub fn config(&self) -> &ScriptedConfig {
        &self.config
    }

    async fn run(&self, ctx: RunContext) -> Result<(), AgentError> {
        for action in &self.config.actions {
            let params = (!action.params.is_empty()).then(|| action.params.clone());
            let (reported, outcome) = match call(action, &ctx).await {
                Ok(result) => (ActionResult::ok(&action.function_name, params, result), Ok(())),
                Err(message) => (
                    ActionResult::failed(&action.function_name, params, &message),
                    Err(AgentError::failed(message)),
                ),
            };
            ctx.emit(AgentEvent::Action(reported)).await?;
            outcome?;
        }
        Ok(())
    }

    async fn answer(&self, ctx: RunContext, message: String) -> Result<(), AgentError> {
        let reply = self.reply(&ctx, &message);
        let say = |kind, text: String| AgentEvent::Say(AgentResponse::new(kind, text));
        ctx.emit(say(
            AgentMessageType::InternalMonologue,
            format!("User said: {message}"),
        ))
        .await?;
        ctx.emit(say(
            AgentMessageType::FunctionMessage,
            format!("Running send_message(message='{}')", quote(&reply)),
        ))
        .await?;
        ctx.emit(say(AgentMessageType::AssistantMessage, reply)).await
    }

    /// The assistant's answer to `message`, remembering as a side effect.
    fn reply(&self, ctx: &RunContext, message: &str) -> String {
        let trimmed = message.trim();
        let question = trimmed.trim_end_matches('?').trim_end().to_lowercase();
        if let Some(text) = strip_prefix_ignore_case(trimmed, "remember ") {
            let text = text.trim();
            let mut remembered = remembered(ctx);
            remembered.push(Value::String(text.to_owned()));
            ctx.memory
                .set(&ctx.agent_id, CHAT_MEMORY_KEY, Value::Array(remembered));
            return format!("I will remember: {text}");
        }
        if question == "what do you remember" {
            let items: Vec<String> = remembered(ctx)
                .iter()
                .map(|item| match item {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
                .collect();
            return if items.is_empty() {
                "I don't remember anything yet.".to_owned()
            } else {
                format!("I remember: {}", items.join("; "))
            };
        }
        if question == "who are you"
            && let Some(persona) = &self.config.persona
        {
            return persona.clone();
        }
        format!("You said: {message}")
    }
}

impl AgentRuntime for ScriptedRuntime {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn execute<'a>(&'a self, ctx: RunContext) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(self.run(ctx))
    }

    fn chat<'a>(&'a self, ctx: RunContext, message: String) -> BoxFuture<'a, Result<(), AgentError>> {
        Box::pin(self.answer(ctx, message))
    }
}

/// Run one built-in function: its result, or why it failed.
async fn call(action: &ScriptedAction, ctx: &RunContext) -> Result<Value, String> {
    let params = &action.params;
    match action.function_name.as_str() {
        "echo" if params.is_empty() => Ok(ctx.input.clone().unwrap_or_else(|| Value::Object(Map::new()))),
        "echo" => Ok(Value::Object(params.clone())),
        "sleep" => {
            let ms = params
                .get("ms")
                .and_then(Value::as_u64)
                .ok_or("sleep needs `ms`, a non-negative integer (milliseconds)")?;
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(json!({ "slept_ms": ms }))
        }
        "fail" => Err(params
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("failed")
            .to_owned()),
        "memory_set" => {
            let key = key(params, "memory_set")?;
            let value = params.get("value").cloned().unwrap_or(Value::Null);
            ctx.memory.set(&ctx.agent_id, key, value);
            Ok(json!({ "key": key }))
        }
        "memory_get" => {
            let key = key(params, "memory_get")?;
            Ok(ctx.memory.get(&ctx.agent_id, key).unwrap_or(Value::Null))
        }
        other => Err(format!(
            "unknown function `{other}` (expected echo, sleep, fail, memory_set or memory_get)"
        )),
    }
}

fn key<'p>(params: &'p Map<String, Value>, function: &str) -> Result<&'p str, String> {
    params
        .get("key")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("{function} needs `key`, a string"))
}

/// What the chat was asked to remember so far.
fn remembered(ctx: &RunContext) -> Vec<Value> {
    match ctx.memory.get(&ctx.agent_id, CHAT_MEMORY_KEY) {
        Some(Value::Array(items)) => items,
        _ => Vec::new(),
    }
}

fn strip_prefix_ignore_case<'s>(text: &'s str, prefix: &str) -> Option<&'s str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &text[prefix.len()..])
}

/// `text` inside single quotes, as Python's repr would write it.
fn quote(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('\'', "\\'")
        .replace('\n', "\\n")
}
