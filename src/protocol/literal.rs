//! Zero-sized types that stand for one fixed JSON value.
//!
//! The seed's `execution_response` is discriminated by two fields, `status` and
//! `success`. Serde cannot tag an enum on a boolean, so each variant struct holds
//! these markers instead: they serialize to their one value, refuse any other on
//! input, and appear as literal types in the schema (`const`) and in TypeScript
//! (`true`, `"started"`), which is what lets a frontend narrow without casts.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::de::{self, Deserialize, Deserializer, Visitor};
use serde::ser::{Serialize, Serializer};
use ts_rs::TS;

macro_rules! literal {
    ($(#[$doc:meta])* $name:ident, bool = $value:literal) => {
        literal!(@common $(#[$doc])* $name, $value, stringify!($value));

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bool($value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        write!(f, "`{}`", $value)
                    }
                    fn visit_bool<E: de::Error>(self, v: bool) -> Result<$name, E> {
                        if v == $value {
                            Ok($name)
                        } else {
                            Err(E::invalid_value(de::Unexpected::Bool(v), &self))
                        }
                    }
                }
                d.deserialize_bool(V)
            }
        }
    };
    ($(#[$doc:meta])* $name:ident, str = $value:literal) => {
        literal!(@common $(#[$doc])* $name, $value, concat!("\"", $value, "\""));

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str($value)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        write!(f, "the string \"{}\"", $value)
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        if v == $value {
                            Ok($name)
                        } else {
                            Err(E::invalid_value(de::Unexpected::Str(v), &self))
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
    (@common $(#[$doc:meta])* $name:ident, $value:literal, $ts:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
        pub struct $name;

        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }
            fn inline_schema() -> bool {
                true
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "const": $value })
            }
        }

        impl TS for $name {
            type WithoutGenerics = Self;
            type OptionInnerType = Self;
            fn name(_: &ts_rs::Config) -> String {
                String::from($ts)
            }
            fn inline(cfg: &ts_rs::Config) -> String {
                <Self as TS>::name(cfg)
            }
        }
    };
}

literal!(
    /// The JSON value `true`.
    True, bool = true
);
literal!(
    /// The JSON value `false`.
    False, bool = false
);
literal!(
    /// The string `"started"`: an execution has been accepted and is running.
    Started, str = "started"
);
literal!(
    /// The string `"completed"`: an execution has ended, well or badly.
    Completed, str = "completed"
);
