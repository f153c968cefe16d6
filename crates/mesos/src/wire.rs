//! Serde helpers reproducing stout's protobuf <-> JSON mapping
//! (docs/mesos-executor-api.md, "JSON mapping and framing").
//!
//! * `bytes` fields are standard base64 strings;
//! * numbers may also arrive as numeric strings (stout accepts both);
//! * an unknown enum name in an optional field is dropped, not an error.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serializer};
use std::str::FromStr;

/// Standard alphabet; padding written, but accepted with or without on read.
const B64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Encodes bytes the way stout writes a `bytes` field.
pub fn encode_base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Decodes a `bytes` field.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64.decode(text)
}

/// `bytes` field (required).
pub mod b64 {
    use super::*;

    /// Writes the bytes as a base64 string.
    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode_base64(bytes))
    }

    /// Reads a base64 string.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        decode_base64(&text).map_err(|e| D::Error::custom(format!("invalid base64: {e}")))
    }
}

/// `bytes` field (optional).
pub mod opt_b64 {
    use super::*;

    /// Writes the bytes as a base64 string, or nothing.
    pub fn serialize<S: Serializer>(bytes: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match bytes {
            Some(b) => s.serialize_str(&encode_base64(b)),
            None => s.serialize_none(),
        }
    }

    /// Reads a base64 string, or nothing.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => decode_base64(&text)
                .map(Some)
                .map_err(|e| D::Error::custom(format!("invalid base64: {e}"))),
            None => Ok(None),
        }
    }
}

fn number_from_value<T, E>(value: serde_json::Value) -> Result<T, E>
where
    T: FromStr + DeserializeOwned,
    E: serde::de::Error,
{
    match value {
        serde_json::Value::String(text) => text
            .trim()
            .parse::<T>()
            .map_err(|_| E::custom(format!("expected a number, got {text:?}"))),
        other => T::deserialize(other).map_err(E::custom),
    }
}

/// A number (any width, integer or float) that may also be a numeric string.
pub fn num<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + DeserializeOwned,
{
    number_from_value(serde_json::Value::deserialize(d)?)
}

/// Optional form of [`num`]; `null` is absent.
pub fn opt_num<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr + DeserializeOwned,
{
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        value => number_from_value(value).map(Some),
    }
}

/// Optional enum: an unknown name is dropped (proto2 behaviour), so the field reads as absent.
pub fn opt_enum<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        value @ serde_json::Value::String(_) => Ok(T::deserialize(value).ok()),
        other => Err(D::Error::custom(format!(
            "expected an enum name, got {other}"
        ))),
    }
}

/// Optional bool that may also be the string `"true"` / `"false"`.
pub fn opt_bool<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::Bool(b) => Ok(Some(b)),
        serde_json::Value::String(s) if s == "true" => Ok(Some(true)),
        serde_json::Value::String(s) if s == "false" => Ok(Some(false)),
        other => Err(D::Error::custom(format!("expected a boolean, got {other}"))),
    }
}
