//! The JSON Schema (draft 2020-12): one root per direction of the wire.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::protocol::{AgentInput, AgentOutput, ClientMessage, ServerMessage};

/// The base of every schema's `$id`.
pub const SCHEMA_ID_BASE: &str = "https://agentwire.dev/schema/v1/";

/// One root schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchemaRoot {
    /// What a client may send: `ClientMessage`, as the server accepts it.
    Client,
    /// What the server sends: `ServerMessage`, as the server writes it.
    Server,
    /// What a `process` agent reads (`AgentInput`) and writes (`AgentOutput`).
    AgentIo,
}

impl SchemaRoot {
    /// Every root.
    pub const ALL: [SchemaRoot; 3] = [SchemaRoot::Client, SchemaRoot::Server, SchemaRoot::AgentIo];

    /// The file name under `schema/`.
    pub fn file_name(self) -> &'static str {
        match self {
            SchemaRoot::Client => "client_message.schema.json",
            SchemaRoot::Server => "server_message.schema.json",
            SchemaRoot::AgentIo => "agent_io.schema.json",
        }
    }

    /// The schema's `$id`.
    pub fn id(self) -> String {
        format!("{SCHEMA_ID_BASE}{}", self.file_name())
    }
}

/// The root schema, with every union member a named `$defs` entry.
pub fn root_schema(root: SchemaRoot) -> Value {
    let settings = match root {
        SchemaRoot::Server => SchemaSettings::draft2020_12().for_serialize(),
        SchemaRoot::Client | SchemaRoot::AgentIo => SchemaSettings::draft2020_12().for_deserialize(),
    };
    let mut generator = settings.into_generator();
    let (title, description, body) = match root {
        SchemaRoot::Client => (
            "ClientMessage",
            "A message a client sends to an agentwire server: one WebSocket text frame.",
            json!({"$ref": reference::<ClientMessage>(&mut generator)}),
        ),
        SchemaRoot::Server => (
            "ServerMessage",
            "A message an agentwire server sends to a client: one WebSocket text frame.",
            json!({"$ref": reference::<ServerMessage>(&mut generator)}),
        ),
        SchemaRoot::AgentIo => (
            "AgentIo",
            "A JSON line between an agentwire server and a `process` agent: `AgentInput` on the \
             agent's stdin, `AgentOutput` on its stdout.",
            json!({"anyOf": [
                {"$ref": reference::<AgentInput>(&mut generator)},
                {"$ref": reference::<AgentOutput>(&mut generator)},
            ]}),
        ),
    };
    let mut defs = generator.take_definitions(true);
    name_union_members(&mut defs);
    if root == SchemaRoot::Server {
        defs.values_mut().for_each(no_null_when_omitted);
    }

    let mut schema = Map::new();
    schema.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    schema.insert("$id".into(), json!(root.id()));
    schema.insert("title".into(), json!(title));
    schema.insert("description".into(), json!(description));
    if let Value::Object(body) = body {
        schema.extend(body);
    }
    schema.insert("$defs".into(), Value::Object(defs.into_iter().collect()));
    let mut schema = Value::Object(schema);
    bound_integers(&mut schema);
    schema
}

/// Give every 32-bit integer its bounds: `format` is only an annotation to most
/// validators, and the decoder rejects what does not fit.
fn bound_integers(node: &mut Value) {
    match node {
        Value::Object(map) => {
            let bounds = match map.get("format").and_then(Value::as_str) {
                Some("uint32") => Some((0i64, i64::from(u32::MAX))),
                Some("int32") => Some((i64::from(i32::MIN), i64::from(i32::MAX))),
                _ => None,
            };
            if let Some((min, max)) = bounds {
                map.insert("minimum".into(), json!(min));
                map.insert("maximum".into(), json!(max));
            }
            map.values_mut().for_each(bound_integers);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integers),
        _ => {}
    }
}

/// Take `null` out of every property the server omits when it has no value.
///
/// schemars lets every `Option` be `null`, but the server skips a `None`
/// rather than writing `null` (the wire convention): a property that may be
/// absent (not `required`) is never `null` in what the server sends. A
/// property that is always written keeps its `null` if it has one.
fn no_null_when_omitted(node: &mut Value) {
    let Value::Object(map) = node else {
        if let Value::Array(items) = node {
            items.iter_mut().for_each(no_null_when_omitted);
        }
        return;
    };
    let required: Vec<String> = match map.get("required") {
        Some(Value::Array(names)) => names
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    };
    if let Some(Value::Object(properties)) = map.get_mut("properties") {
        for (name, property) in properties.iter_mut() {
            if !required.contains(name) {
                forbid_null(property);
            }
        }
    }
    for (key, value) in map.iter_mut() {
        match (key.as_str(), value) {
            // A map of names to schemas, not a schema: a property named
            // `required` or `properties` must not be read as a keyword.
            ("properties", Value::Object(properties)) => {
                properties.values_mut().for_each(no_null_when_omitted);
            }
            (_, value) => no_null_when_omitted(value),
        }
    }
}

/// Remove `null` from one property's schema: from its `type` list, or from its
/// `anyOf` (a lone member left is merged into the property).
fn forbid_null(property: &mut Value) {
    let Value::Object(map) = property else { return };
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let single = types.remove(0);
            map.insert("type".into(), single);
        }
    }
    if let Some(Value::Array(members)) = map.get_mut("anyOf") {
        members.retain(|m| m.get("type").and_then(Value::as_str) != Some("null"));
        if members.len() == 1
            && let Some(Value::Object(member)) = members.pop()
        {
            map.remove("anyOf");
            for (k, v) in member {
                map.entry(k).or_insert(v);
            }
        }
    }
}

fn reference<T: JsonSchema>(generator: &mut schemars::SchemaGenerator) -> String {
    let schema = generator.subschema_for::<T>();
    schema
        .get("$ref")
        .and_then(Value::as_str)
        .expect("top-level messages are named definitions")
        .to_owned()
}

/// Move every inline member of a tagged union into `$defs`, named by its
/// `title` or by the union's name and its tag (`ClientMessageCancel`), so that
/// generators in other languages name them rather than inventing `Variant1`.
fn name_union_members(defs: &mut Map<String, Value>) {
    let names: Vec<String> = defs.keys().cloned().collect();
    for union_name in names {
        let mut lifted = Vec::new();
        let Some(union) = defs.get_mut(&union_name) else {
            continue;
        };
        for key in ["anyOf", "oneOf"] {
            let Some(members) = union.get_mut(key).and_then(Value::as_array_mut) else {
                continue;
            };
            for member in members.iter_mut() {
                let Some(name) = member_name(&union_name, member) else {
                    continue;
                };
                let schema = std::mem::replace(member, json!({"$ref": format!("#/$defs/{name}")}));
                lifted.push((name, schema));
            }
        }
        for (name, schema) in lifted {
            let previous = defs.insert(name.clone(), schema);
            assert!(previous.is_none(), "two schema definitions are named {name}");
        }
    }
}

fn member_name(union_name: &str, member: &Value) -> Option<String> {
    if let Some(title) = member.get("title").and_then(Value::as_str) {
        return Some(title.to_owned());
    }
    let properties = member.get("properties")?.as_object()?;
    let tag = properties.values().find_map(|p| p.get("const")?.as_str())?;
    Some(format!("{union_name}{}", pascal_case(tag)))
}

fn pascal_case(snake: &str) -> String {
    snake
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                .unwrap_or_default()
        })
        .collect()
}
