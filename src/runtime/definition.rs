//! Agent definitions: the agents TOML file, and the JSON the store keeps.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::{AgentRuntime, ProcessRuntime, ScriptedRuntime};
use crate::protocol::{AgentInfo, MAX_AGENT_ID_CHARS};

/// An agent definition, as written in the agents TOML file (one `[[agent]]`
/// table) and as stored in the database (JSON, the same keys).
///
/// ```toml
/// [[agent]]
/// id = "8191feef-546d-46a8-a26f-b92073882f5c"
/// name = "demo"
/// runtime = "scripted"
/// actions = [{ function_name = "echo", params = { text = "hello" } }]
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentDefinition {
    /// The id clients pass as `agent_id` (1–256 characters).
    pub id: String,
    /// The agent's name, for `load_agent` / `agent_name` and listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The runtime and its settings (`runtime = "scripted"` or `"process"`).
    #[serde(flatten)]
    pub runtime: RuntimeConfig,
}

/// Which runtime runs an agent, with that runtime's settings. The key
/// `runtime` names the variant; the settings stand beside it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "runtime", rename_all = "snake_case")]
pub enum RuntimeConfig {
    /// Built-in actions run in order; see [`ScriptedRuntime`].
    Scripted(ScriptedConfig),
    /// An external program speaking JSON lines; see [`ProcessRuntime`].
    Process(ProcessConfig),
}

/// The settings of a scripted agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScriptedConfig {
    /// The actions one execution runs, in order.
    #[serde(default)]
    pub actions: Vec<ScriptedAction>,
    /// Who the agent says it is in chat (its answer to "who are you?").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persona: Option<String>,
}

/// One action of a scripted agent: a built-in function and its parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScriptedAction {
    /// The built-in function: `echo`, `sleep`, `fail`, `memory_set`,
    /// `memory_get`. Also accepted under the key `function`.
    #[serde(alias = "function")]
    pub function_name: String,
    /// Its parameters.
    #[serde(default)]
    pub params: Map<String, Value>,
}

impl ScriptedAction {
    /// An action calling `function_name` with `params`.
    pub fn new(function_name: impl Into<String>, params: Map<String, Value>) -> Self {
        ScriptedAction {
            function_name: function_name.into(),
            params,
        }
    }
}

/// The settings of a process agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessConfig {
    /// The program and its arguments (no shell). Relative paths are resolved
    /// against the server's working directory; the program is looked up in
    /// `PATH`.
    pub command: Vec<String>,
    /// Environment variables for the program. The program gets these, plus the
    /// server's `PATH`, `HOME` and `LANG`, and nothing else.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// How long one run may take, in milliseconds (default 30 000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u32>,
    /// How many bytes the program may write to stdout in one run (default
    /// 1 MiB). A run that writes more fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_bytes: Option<u32>,
}

impl ProcessConfig {
    /// A process agent running `command` with the default settings.
    pub fn new<I, S>(command: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ProcessConfig {
            command: command.into_iter().map(Into::into).collect(),
            ..ProcessConfig::default()
        }
    }
}

impl RuntimeConfig {
    /// The runtime's name on the wire: `scripted` or `process`.
    pub fn name(&self) -> &'static str {
        match self {
            RuntimeConfig::Scripted(_) => ScriptedRuntime::NAME,
            RuntimeConfig::Process(_) => ProcessRuntime::NAME,
        }
    }
}

impl AgentDefinition {
    /// The runtime that runs this agent.
    pub fn runtime(&self) -> Arc<dyn AgentRuntime> {
        match &self.runtime {
            RuntimeConfig::Scripted(config) => Arc::new(ScriptedRuntime::new(config.clone())),
            RuntimeConfig::Process(config) => Arc::new(ProcessRuntime::new(config.clone())),
        }
    }

    /// The runtime's name on the wire (`AgentInfo.runtime`).
    pub fn runtime_name(&self) -> &'static str {
        self.runtime.name()
    }

    /// How `list_agents` describes this agent.
    pub fn info(&self) -> AgentInfo {
        AgentInfo::new(self.id.clone(), self.name.clone(), self.runtime_name())
    }

    /// The store's record of this agent.
    pub fn to_stored(&self) -> Result<crate::store::StoredAgent, String> {
        Ok(crate::store::StoredAgent {
            id: self.id.clone(),
            name: self.name.clone(),
            runtime: self.runtime_name().to_owned(),
            definition: serde_json::to_value(self).map_err(|e| e.to_string())?,
        })
    }

    /// Check what serde cannot: the id is 1–256 characters, and a process
    /// agent has a program to run.
    pub fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() {
            return Err("`id` must not be empty".into());
        }
        if self.id.chars().count() > MAX_AGENT_ID_CHARS {
            return Err(format!("`id` must be at most {MAX_AGENT_ID_CHARS} characters"));
        }
        if let RuntimeConfig::Process(config) = &self.runtime {
            match config.command.first() {
                None => return Err("`command` must name a program".into()),
                Some(program) if program.is_empty() => {
                    return Err("`command`'s first element (the program) must not be empty".into());
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// Keys an `[[agent]]` table may have besides its runtime's settings.
const COMMON_KEYS: &[&str] = &["id", "name", "runtime"];
/// The settings of each runtime.
const SCRIPTED_KEYS: &[&str] = &["actions", "persona"];
const PROCESS_KEYS: &[&str] = &["command", "env", "timeout_ms", "max_output_bytes"];

/// Parse an agents file: a list of `[[agent]]` tables.
///
/// ```toml
/// [[agent]]
/// id = "py-agent"
/// runtime = "process"
/// command = ["python3", "examples/agents/echo_agent.py"]
/// ```
///
/// Stricter than the JSON form: an unknown key (a typo) is an error, as are a
/// duplicate id and an invalid definition (see [`AgentDefinition::validate`]).
/// Errors name the agent and the key at fault.
pub fn parse_agents_toml(text: &str) -> Result<Vec<AgentDefinition>, String> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
    if let Some(key) = table.keys().find(|key| *key != "agent") {
        return Err(format!(
            "unknown top-level key `{key}` (agents are `[[agent]]` tables)"
        ));
    }
    let agents = match table.get("agent") {
        None => return Ok(Vec::new()),
        Some(toml::Value::Array(agents)) => agents,
        Some(_) => return Err("`agent` must be an array of tables (`[[agent]]`)".into()),
    };
    let mut seen = HashSet::new();
    let mut definitions = Vec::with_capacity(agents.len());
    for (index, agent) in agents.iter().enumerate() {
        let number = index + 1;
        let toml::Value::Table(fields) = agent else {
            return Err(format!("agent #{number}: must be a table"));
        };
        let label = match fields.get("id").and_then(toml::Value::as_str) {
            Some(id) => format!("agent #{number} (`{id}`)"),
            None => format!("agent #{number}"),
        };
        let definition = parse_agent(fields).map_err(|e| format!("{label}: {e}"))?;
        if !seen.insert(definition.id.clone()) {
            return Err(format!("{label}: duplicate id"));
        }
        definitions.push(definition);
    }
    Ok(definitions)
}

/// One `[[agent]]` table.
fn parse_agent(fields: &toml::Table) -> Result<AgentDefinition, String> {
    let string = |key: &str| match fields.get(key) {
        None => Ok(None),
        Some(toml::Value::String(value)) => Ok(Some(value.clone())),
        Some(_) => Err(format!("`{key}` must be a string")),
    };
    let id = string("id")?.ok_or("missing key `id`")?;
    let name = string("name")?;
    let runtime = string("runtime")?.ok_or("missing key `runtime` (`scripted` or `process`)")?;
    let settings_keys = match runtime.as_str() {
        "scripted" => SCRIPTED_KEYS,
        "process" => PROCESS_KEYS,
        other => {
            return Err(format!(
                "unknown runtime `{other}` (expected `scripted` or `process`)"
            ));
        }
    };
    let mut settings = toml::Table::new();
    for (key, value) in fields {
        if COMMON_KEYS.contains(&key.as_str()) {
            continue;
        }
        if !settings_keys.contains(&key.as_str()) {
            let expected: Vec<&str> = COMMON_KEYS.iter().chain(settings_keys).copied().collect();
            return Err(format!(
                "unknown key `{key}` for runtime `{runtime}` (expected one of: {})",
                expected.join(", ")
            ));
        }
        settings.insert(key.clone(), value.clone());
    }
    let settings = toml::Value::Table(settings);
    let runtime = match runtime.as_str() {
        "scripted" => RuntimeConfig::Scripted(settings_from(settings)?),
        _ => RuntimeConfig::Process(settings_from(settings)?),
    };
    let definition = AgentDefinition { id, name, runtime };
    definition.validate()?;
    Ok(definition)
}

/// A runtime's settings, with the path of the key at fault in errors.
fn settings_from<T: serde::de::DeserializeOwned>(settings: toml::Value) -> Result<T, String> {
    serde_path_to_error::deserialize(settings).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.message().to_owned()
        } else {
            format!("`{path}`: {}", inner.message())
        }
    })
}
