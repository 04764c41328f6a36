//! The decoder's machinery: read `type`, then the variant's body, and name what
//! is wrong when either fails.
//!
//! The happy path parses twice with no allocation beyond the message's own
//! strings: a probe that borrows `type` and `request_id`, then the variant's
//! struct. Only on failure does it parse a third time, tracking the path to the
//! field at fault.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeOwned, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::error::{DecodeError, ErrorCode};

/// A value read only if it is a string; anything else is remembered by its kind.
enum Loose<'a> {
    Str(Cow<'a, str>),
    Other(&'static str),
}

impl<'de: 'a, 'a> Deserialize<'de> for Loose<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for V<'a> {
            type Value = Loose<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Loose<'a>, E> {
                Ok(Loose::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Loose<'a>, E> {
                Ok(Loose::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Loose<'a>, E> {
                Ok(Loose::Str(Cow::Owned(v)))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Loose<'a>, E> {
                Ok(Loose::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Loose<'a>, E> {
                Ok(Loose::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Loose<'a>, E> {
                Ok(Loose::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Loose<'a>, E> {
                Ok(Loose::Other("a number"))
            }
            fn visit_unit<E>(self) -> Result<Loose<'a>, E> {
                Ok(Loose::Other("null"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loose<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Loose::Other("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Loose<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Loose::Other("an object"))
            }
        }
        d.deserialize_any(V(std::marker::PhantomData))
    }
}

impl<'a> Loose<'a> {
    fn into_string(self) -> Option<String> {
        match self {
            Loose::Str(s) => Some(s.into_owned()),
            Loose::Other(_) => None,
        }
    }
}

/// The two fields every message is read for first.
#[derive(Deserialize)]
struct Probe<'a> {
    #[serde(rename = "type", default, borrow)]
    ty: Option<Loose<'a>>,
    #[serde(default, borrow)]
    request_id: Option<Loose<'a>>,
}

/// A message whose `type` has been read and whose body is still to be decoded.
pub(crate) struct Envelope<'a> {
    /// The whole frame.
    pub text: &'a str,
    /// The message's `type`.
    pub ty: Cow<'a, str>,
    request_id: Option<Loose<'a>>,
}

impl<'a> Envelope<'a> {
    /// Read `type` (and `request_id`, for error replies) from a frame.
    pub fn open(text: &'a str) -> Result<Self, DecodeError> {
        if !text.trim_start().starts_with('{') {
            return Err(not_an_object(text));
        }
        let probe: Probe<'a> = serde_json::from_str(text).map_err(|e| frame_error(&e))?;
        let request_id = probe.request_id;
        match probe.ty {
            Some(Loose::Str(ty)) => Ok(Envelope { text, ty, request_id }),
            Some(Loose::Other(kind)) => Err(with_request_id(
                DecodeError::new(
                    ErrorCode::MissingType,
                    format!("`type` must be a string, found {kind}"),
                )
                .field("type"),
                request_id,
            )),
            None => Err(with_request_id(
                DecodeError::new(ErrorCode::MissingType, "the message has no `type`").field("type"),
                request_id,
            )),
        }
    }

    /// Decode the body as `T`, naming the field at fault on failure.
    pub fn body<T: DeserializeOwned>(&self) -> Result<T, DecodeError> {
        serde_json::from_str(self.text).map_err(|_| self.explain::<T>())
    }

    /// The error for an unknown `type`.
    pub fn unknown_type(self) -> DecodeError {
        let message = format!("unknown message type `{}`", self.ty);
        self.fail(DecodeError::new(ErrorCode::UnknownType, message).field("type"))
    }

    /// Attach this message's `type` and `request_id` to an error.
    pub fn fail(self, mut error: DecodeError) -> DecodeError {
        error.message_type = Some(self.ty.into_owned());
        with_request_id(error, self.request_id)
    }

    /// The failure of `T`'s decoding, read again with the path to the field.
    #[cold]
    fn explain<T: DeserializeOwned>(&self) -> DecodeError {
        let mut de = serde_json::Deserializer::from_str(self.text);
        let error = match serde_path_to_error::deserialize::<_, T>(&mut de) {
            Ok(_) => DecodeError::new(ErrorCode::InvalidMessage, "the message could not be decoded"),
            Err(e) => {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if inner.is_syntax() || inner.is_eof() {
                    DecodeError::new(
                        ErrorCode::InvalidJson,
                        format!("invalid JSON: {}", strip_position(&inner)),
                    )
                } else {
                    field_error(if path == "." { "" } else { &path }, &inner)
                }
            }
        };
        DecodeError {
            message_type: Some(self.ty.to_string()),
            request_id: self.request_id.as_ref().and_then(|r| match r {
                Loose::Str(s) => Some(s.to_string()),
                Loose::Other(_) => None,
            }),
            ..error
        }
    }
}

fn with_request_id(mut error: DecodeError, request_id: Option<Loose<'_>>) -> DecodeError {
    error.request_id = request_id.and_then(Loose::into_string);
    error
}

/// The error for a frame that is not a JSON object: invalid JSON, or JSON of
/// another kind.
#[cold]
fn not_an_object(text: &str) -> DecodeError {
    if let Err(e) = serde_json::from_str::<IgnoredAny>(text) {
        return DecodeError::new(
            ErrorCode::InvalidJson,
            format!("invalid JSON: {}", strip_position(&e)),
        );
    }
    let kind = match text.trim_start().as_bytes().first() {
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b'n') => "null",
        Some(b't' | b'f') => "a boolean",
        _ => "a number",
    };
    DecodeError::new(
        ErrorCode::InvalidMessage,
        format!("a message must be a JSON object, found {kind}"),
    )
}

/// The error for an object whose probe failed: broken JSON, or a duplicate
/// `type` or `request_id`.
fn frame_error(e: &serde_json::Error) -> DecodeError {
    if e.is_data() {
        DecodeError::new(ErrorCode::InvalidMessage, strip_position(e))
    } else {
        DecodeError::new(
            ErrorCode::InvalidJson,
            format!("invalid JSON: {}", strip_position(e)),
        )
    }
}

/// The error for a field that is missing or wrong; `path` is where serde was.
fn field_error(path: &str, e: &serde_json::Error) -> DecodeError {
    let text = strip_position(e);
    if let Some(name) = text
        .strip_prefix("missing field `")
        .and_then(|rest| rest.strip_suffix('`'))
    {
        let field = join(path, name);
        return DecodeError::new(ErrorCode::MissingField, format!("`{field}` is required")).field(&field);
    }
    if path.is_empty() {
        DecodeError::new(ErrorCode::InvalidMessage, text)
    } else {
        DecodeError::new(ErrorCode::InvalidField, format!("`{path}`: {text}")).field(path)
    }
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

/// serde_json's message without its ` at line 1 column 42` suffix.
fn strip_position(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match text.rfind(" at line ") {
        Some(i) => text[..i].to_owned(),
        None => text,
    }
}

impl DecodeError {
    /// The same error, naming the field at fault.
    pub(crate) fn field(mut self, field: &str) -> Self {
        self.field = Some(field.to_owned());
        self
    }
}

/// Check a string field's length in characters.
pub(crate) fn check_len(value: &str, field: &str, max: usize) -> Result<(), DecodeError> {
    let ok = !value.is_empty() && (value.len() <= max || value.chars().count() <= max);
    if ok {
        Ok(())
    } else {
        Err(DecodeError::new(
            ErrorCode::InvalidField,
            format!("`{field}` must be a non-empty string of at most {max} characters"),
        )
        .field(field))
    }
}

/// A `Deserialize` impl that reads the value as JSON text and hands it to a
/// text decoder, so that `serde_json::from_str::<M>` and `M::decode` agree.
pub(crate) fn via_decoder<'de, D, M>(d: D, decode: fn(&str) -> Result<M, DecodeError>) -> Result<M, D::Error>
where
    D: Deserializer<'de>,
{
    let value = serde_json::Value::deserialize(d)?;
    let text = value.to_string();
    decode(&text).map_err(de::Error::custom)
}

/// Read a struct only from a JSON object.
///
/// Serde's derived structs also accept an array of their fields in order
/// (`"data": ["a1"]`); the contract, and so the schema, wants an object.
pub(crate) fn object<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct ObjectVisitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjectVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
}
