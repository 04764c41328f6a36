//! The result of one action an agent took.

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use ts_rs::TS;

/// One action an agent ran: the function, its parameters, and its result or error.
///
/// Exactly one of `result` and `error` is present. On input the function's name is
/// also accepted under the key `function` (what the original agent code wrote);
/// on output it is always `function_name` (what the seed's frontend reads).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema, TS)]
#[schemars(transform = accept_function_alias)]
#[non_exhaustive]
pub struct ActionResult {
    /// The name of the function the agent called.
    pub function_name: String,
    /// The arguments it was called with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub params: Option<Map<String, Value>>,
    /// What the function returned (any JSON value, `null` included). Absent when
    /// `error` is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Value")]
    #[ts(optional, as = "Option<Value>")]
    pub result: Option<Value>,
    /// Why the function failed. Absent when `result` is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub error: Option<String>,
    /// A note from the agent about this action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub message: Option<String>,
}

impl ActionResult {
    /// An action that returned `result`.
    pub fn ok(function_name: impl Into<String>, params: Option<Map<String, Value>>, result: Value) -> Self {
        ActionResult {
            function_name: function_name.into(),
            params,
            result: Some(result),
            error: None,
            message: None,
        }
    }

    /// An action that failed with `error`.
    pub fn failed(
        function_name: impl Into<String>,
        params: Option<Map<String, Value>>,
        error: impl Into<String>,
    ) -> Self {
        ActionResult {
            function_name: function_name.into(),
            params,
            result: None,
            error: Some(error.into()),
            message: None,
        }
    }

    /// The same action with a note attached.
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = Some(message.into());
        self
    }
}

/// The accepting side of [`ActionResult`]: the `function` alias, and `result: null`
/// kept as a result rather than read as absent.
#[derive(Deserialize)]
struct ActionResultInput {
    #[serde(alias = "function")]
    function_name: String,
    #[serde(default)]
    params: Option<Map<String, Value>>,
    #[serde(default, deserialize_with = "present")]
    result: Option<Value>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// A present field is `Some`, even when its value is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl<'de> Deserialize<'de> for ActionResult {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let input = ActionResultInput::deserialize(d)?;
        match (&input.result, &input.error) {
            (Some(_), Some(_)) => Err(serde::de::Error::custom(
                "an action has either `result` or `error`, not both",
            )),
            (None, None) => Err(serde::de::Error::custom("an action needs `result` or `error`")),
            _ => Ok(ActionResult {
                function_name: input.function_name,
                params: input.params,
                result: input.result,
                error: input.error,
                message: input.message,
            }),
        }
    }
}

/// The schema says what the decoder accepts: `function` in place of
/// `function_name` (exactly one of them), and exactly one of `result` and `error`.
fn accept_function_alias(schema: &mut schemars::Schema) {
    if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|name| name != "function_name");
    }
    if let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        properties.insert(
            "function".into(),
            serde_json::json!({
                "description": "Alias of `function_name`, accepted on input (what the original agent code wrote).",
                "type": "string"
            }),
        );
    }
    schema.insert(
        "allOf".into(),
        serde_json::json!([
            {"oneOf": [{"required": ["function_name"]}, {"required": ["function"]}]},
            {"oneOf": [{"required": ["result"]}, {"required": ["error"]}]}
        ]),
    );
}
