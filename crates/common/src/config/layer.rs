//! Turning one file's keys for one class into a layer: canonical (camelCase) key → JSON value,
//! with where each value came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::diagnostic::{Diagnostic, Location};
use super::keys::{ConfigClass, KeySpec, PropertyTarget, ValueKind};
use super::source::{Format, PropertyLine};
use super::types::redact;

/// Where a value was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) at: Location,
    /// The key as written in that file.
    pub(crate) key: String,
}

/// One `.properties` line that set one entry of a map-valued key.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    /// Logger or bucket name.
    pub(crate) name: String,
    pub(crate) origin: Origin,
    pub(crate) written: String,
}

/// The value of one key in one file.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) value: Value,
    pub(crate) origin: Origin,
    /// The value as written, credentials redacted.
    pub(crate) written: String,
    pub(crate) parts: Vec<Part>,
    pub(crate) format: Format,
}

/// The keys one file sets for one class.
#[derive(Debug, Clone)]
pub(crate) struct Layer {
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
    pub(crate) per_class: bool,
    pub(crate) discovered: bool,
    pub(crate) entries: BTreeMap<&'static str, Entry>,
}

/// Problems and warnings collected while loading.
#[derive(Debug, Default)]
pub(crate) struct Report {
    pub(crate) problems: Vec<Diagnostic>,
    pub(crate) warnings: Vec<Diagnostic>,
}

impl Report {
    pub(crate) fn invalid(&mut self, origin: &Origin, written: &str, reason: impl Into<String>) {
        self.problems.push(Diagnostic::Invalid {
            at: origin.at.clone(),
            key: origin.key.clone(),
            value: written.to_owned(),
            reason: reason.into(),
        });
    }
}

/// The key as a file of `format` spells it.
pub(crate) fn spelled(spec: &KeySpec, format: Format) -> String {
    match format {
        Format::Yaml => spec.yaml.to_owned(),
        Format::Toml => spec.toml.to_owned(),
        Format::Properties => spec.property().to_owned(),
    }
}

/// A layer from a YAML or TOML mapping (a per-class file or one section).
pub(crate) fn from_tree(
    class: ConfigClass,
    tree: &Map<String, Value>,
    path: &Path,
    format: Format,
    per_class: bool,
    report: &mut Report,
) -> BTreeMap<&'static str, Entry> {
    let mut entries = BTreeMap::new();
    for (key, raw) in tree {
        let spec = match format {
            Format::Toml => class.find_toml(key),
            _ => class.find_yaml(key),
        };
        let Some(spec) = spec else {
            report.warnings.push(Diagnostic::UnknownKey {
                at: Location::file(path),
                key: key.clone(),
                hint: unknown_hint(key, format, Some(class), per_class),
            });
            continue;
        };
        let value = coerce(spec.kind, camel_keys(spec.kind, raw.clone(), format));
        entries.insert(
            spec.yaml,
            Entry {
                written: written_json(spec, raw),
                value,
                origin: Origin {
                    at: Location::file(path),
                    key: key.clone(),
                },
                parts: Vec::new(),
                format,
            },
        );
    }
    entries
}

/// A layer from `.properties` lines already matched to this class's keys.
pub(crate) fn from_properties<'a>(
    lines: impl IntoIterator<Item = (&'a PropertyLine, &'static KeySpec, PropertyTarget)>,
    path: &Path,
    report: &mut Report,
) -> BTreeMap<&'static str, Entry> {
    let mut entries: BTreeMap<&'static str, Entry> = BTreeMap::new();
    for (line, spec, target) in lines {
        let origin = Origin {
            at: Location {
                file: path.to_owned(),
                line: Some(line.line),
            },
            key: line.key.clone(),
        };
        let text = line.value.trim();
        let written = if spec.secret {
            written_secret_text(spec, text)
        } else {
            text.to_owned()
        };
        match target {
            PropertyTarget::Whole => match from_property_text(spec.kind, text) {
                Ok(value) => {
                    entries.insert(
                        spec.yaml,
                        Entry {
                            value,
                            origin,
                            written,
                            parts: Vec::new(),
                            format: Format::Properties,
                        },
                    );
                }
                Err(reason) => report.invalid(&origin, &written, reason.to_string()),
            },
            PropertyTarget::Logger(name) => {
                let entry = map_entry(&mut entries, spec, &origin);
                if let Value::Object(map) = &mut entry.value {
                    map.insert(name.clone(), Value::String(text.to_owned()));
                }
                add_part(entry, name, origin, written);
            }
            PropertyTarget::Bucket { bucket, field } => {
                let entry = map_entry(&mut entries, spec, &origin);
                if let Value::Object(map) = &mut entry.value {
                    let credentials = map
                        .entry(bucket.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    if let Value::Object(credentials) = credentials {
                        credentials.insert(field.to_owned(), Value::String(text.to_owned()));
                    }
                }
                add_part(entry, bucket, origin, written);
            }
        }
    }
    for entry in entries.values_mut() {
        if !entry.parts.is_empty() {
            entry.written = entry
                .parts
                .iter()
                .map(|part| format!("{}={}", part.origin.key, part.written))
                .collect::<Vec<_>>()
                .join(", ");
        }
    }
    entries
}

fn map_entry<'e>(
    entries: &'e mut BTreeMap<&'static str, Entry>,
    spec: &'static KeySpec,
    origin: &Origin,
) -> &'e mut Entry {
    entries.entry(spec.yaml).or_insert_with(|| Entry {
        value: Value::Object(Map::new()),
        origin: origin.clone(),
        written: String::new(),
        parts: Vec::new(),
        format: Format::Properties,
    })
}

fn add_part(entry: &mut Entry, name: String, origin: Origin, written: String) {
    entry.parts.retain(|part| part.origin.key != origin.key);
    entry.parts.push(Part {
        name,
        origin,
        written,
    });
}

/// Why a `.properties` value does not fit its key's kind.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PropertyValueError {
    /// Not of the kind at all.
    #[error("{}", kind.expected())]
    Expected {
        /// The key's kind.
        kind: ValueKind,
    },
    /// A list written as JSON that does not parse.
    #[error("expected a JSON list: {source}")]
    JsonList {
        /// The parser's error.
        source: serde_json::Error,
    },
    /// A JSON value that does not parse.
    #[error("expected JSON: {source}")]
    Json {
        /// The parser's error.
        source: serde_json::Error,
    },
}

/// Converts a `.properties` value to JSON by the key's kind.
pub(crate) fn from_property_text(kind: ValueKind, text: &str) -> Result<Value, PropertyValueError> {
    let expected = || PropertyValueError::Expected { kind };
    match kind {
        ValueKind::Bool => parse_bool(text).map(Value::Bool).ok_or_else(expected),
        ValueKind::Integer => {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            parse_integer(text).ok_or_else(expected)
        }
        ValueKind::String => Ok(Value::String(text.to_owned())),
        ValueKind::Path | ValueKind::Choice(_) => Ok(if text.is_empty() {
            Value::Null
        } else {
            Value::String(text.to_owned())
        }),
        ValueKind::List | ValueKind::FileList => {
            if text.starts_with('[') {
                return serde_json::from_str(text)
                    .map_err(|source| PropertyValueError::JsonList { source });
            }
            Ok(Value::Array(
                text.split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Value::String(item.to_owned()))
                    .collect(),
            ))
        }
        ValueKind::Json => {
            if text.is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(text).map_err(|source| PropertyValueError::Json { source })
        }
        ValueKind::LogLevels | ValueKind::BucketCredentials => Err(expected()),
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    if text.eq_ignore_ascii_case("true") {
        Some(true)
    } else if text.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn parse_integer(text: &str) -> Option<Value> {
    let text = text.strip_prefix('+').unwrap_or(text);
    if let Ok(value) = text.parse::<i64>() {
        return Some(Value::from(value));
    }
    text.parse::<u64>().ok().map(Value::from)
}

/// Scalar coercions Jackson applies to YAML: `"15"` for a number, `"true"` for a flag, a
/// number for a string.
fn coerce(kind: ValueKind, value: Value) -> Value {
    match (kind, value) {
        (ValueKind::Bool, Value::String(text)) => match parse_bool(text.trim()) {
            Some(flag) => Value::Bool(flag),
            None => Value::String(text),
        },
        (ValueKind::Integer, Value::String(text)) => {
            parse_integer(text.trim()).unwrap_or(Value::String(text))
        }
        (
            ValueKind::String | ValueKind::Path | ValueKind::Choice(_),
            value @ (Value::Number(_) | Value::Bool(_)),
        ) => Value::String(value.to_string()),
        (_, value) => value,
    }
}

/// TOML spells nested field names in snake_case; the structs read camelCase. Map keys that
/// are names (loggers, buckets) stay as written.
fn camel_keys(kind: ValueKind, value: Value, format: Format) -> Value {
    if format != Format::Toml {
        return value;
    }
    match (kind, value) {
        (ValueKind::Json | ValueKind::FileList, value) => camel_all(value),
        (ValueKind::BucketCredentials, Value::Object(buckets)) => Value::Object(
            buckets
                .into_iter()
                .map(|(bucket, credentials)| (bucket, camel_all(credentials)))
                .collect(),
        ),
        (_, value) => value,
    }
}

fn camel_all(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| (camel_case(&key), camel_all(value)))
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(camel_all).collect()),
        other => other,
    }
}

/// `compress_cmd` → `compressCmd`.
pub(crate) fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// `compressCmd` → `compress_cmd`.
pub(crate) fn snake_case(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 4);
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Field names whose values are credentials, in both spellings.
const SECRET_FIELDS: &[&str] = &[
    "accessKey",
    "secretKey",
    "access_key",
    "secret_key",
    "password",
    "token",
];

/// A value as written, for messages: strings bare, the rest as compact JSON, credentials
/// redacted.
pub(crate) fn written_json(spec: &KeySpec, value: &Value) -> String {
    let value = if spec.secret {
        redact_value(value, true)
    } else {
        value.clone()
    };
    match value {
        Value::String(text) => text,
        other => shorten(other.to_string()),
    }
}

/// Long JSON values are cut in messages; the key and reason say what is wrong.
fn shorten(text: String) -> String {
    const LIMIT: usize = 100;
    match text.char_indices().nth(LIMIT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text,
    }
}

fn written_secret_text(spec: &KeySpec, text: &str) -> String {
    match spec.kind {
        ValueKind::Json => match serde_json::from_str::<Value>(text) {
            Ok(value) => written_json(spec, &value),
            Err(_) => redact(text),
        },
        _ => redact(text),
    }
}

fn redact_value(value: &Value, top: bool) -> Value {
    match value {
        Value::String(text) if top => Value::String(redact(text)),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let value = match value {
                        Value::String(text) if SECRET_FIELDS.contains(&key.as_str()) => {
                            Value::String(redact(text))
                        }
                        other => redact_value(other, false),
                    };
                    (key.clone(), value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| redact_value(v, false)).collect()),
        other => other.clone(),
    }
}

/// The hint of an unknown-key warning: the class the key belongs to, or the closest known key
/// in the same spelling family.
pub(crate) fn unknown_hint(
    key: &str,
    format: Format,
    class: Option<ConfigClass>,
    per_class: bool,
) -> Option<String> {
    if let Some(retired) = super::keys::RETIRED_KEYS
        .iter()
        .find(|retired| class.is_none_or(|c| c == retired.class) && retired.names.contains(&key))
    {
        return Some(retired.note.to_owned());
    }
    if let Some(class) = class {
        let owner = ConfigClass::ALL.into_iter().find(|other| {
            *other != class
                && match format {
                    Format::Yaml => other.find_yaml(key).is_some(),
                    Format::Toml => other.find_toml(key).is_some(),
                    Format::Properties => other.find_property(key).is_some(),
                }
        });
        if let Some(owner) = owner {
            return Some(if per_class {
                format!(
                    "it belongs in singularity.{}.{}",
                    owner.stem(),
                    format.extension()
                )
            } else {
                let section = match format {
                    Format::Toml => owner.toml_table(),
                    _ => owner.yaml_section(),
                };
                format!("it belongs in the {section} section")
            });
        }
    }
    let own: Vec<ConfigClass> = match class {
        Some(class) => vec![class],
        None => ConfigClass::ALL.to_vec(),
    };
    if let Some(name) = closest(key, own.iter().flat_map(|class| names(*class, format))) {
        return Some(format!("did you mean {name}?"));
    }
    // A misspelt key of another class.
    let class = class?;
    ConfigClass::ALL
        .into_iter()
        .filter(|other| *other != class)
        .find_map(|other| closest(key, names(other, format)).map(|name| (other, name)))
        .map(|(other, name)| {
            let place = if per_class {
                format!("singularity.{}.{}", other.stem(), format.extension())
            } else {
                let section = match format {
                    Format::Toml => other.toml_table(),
                    _ => other.yaml_section(),
                };
                format!("the {section} section")
            };
            format!("did you mean {name}? it belongs in {place}")
        })
}

/// Every spelling of `class`'s keys in `format`.
fn names(class: ConfigClass, format: Format) -> impl Iterator<Item = &'static str> {
    class.keys().flat_map(move |spec| {
        let names: Vec<&'static str> = match format {
            Format::Yaml => std::iter::once(spec.yaml)
                .chain(spec.yaml_aliases.iter().copied())
                .collect(),
            Format::Toml => vec![spec.toml],
            Format::Properties => spec.properties.to_vec(),
        };
        names
    })
}

/// The most similar candidate, if it is similar enough to be a likely typo.
pub(crate) fn closest<'a>(
    key: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let key = key.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|candidate| {
            let shape = candidate.split('<').next().unwrap_or(candidate);
            let score =
                strsim::normalized_damerau_levenshtein(&key, &candidate.to_ascii_lowercase()).max(
                    strsim::normalized_damerau_levenshtein(&key, &shape.to_ascii_lowercase()),
                );
            (score, candidate)
        })
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, candidate)| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_text_converts_by_kind() {
        let text = |kind, text| from_property_text(kind, text).map_err(|e| e.to_string());
        assert_eq!(text(ValueKind::Bool, "TRUE"), Ok(Value::Bool(true)));
        assert_eq!(
            text(ValueKind::Bool, "yes"),
            Err("expected true or false".to_owned())
        );
        assert_eq!(text(ValueKind::Integer, "42"), Ok(Value::from(42)));
        assert_eq!(
            text(ValueKind::Integer, "4x"),
            Err("expected an integer".to_owned())
        );
        assert_eq!(
            text(ValueKind::List, " a, ,b ,"),
            Ok(serde_json::json!(["a", "b"]))
        );
        assert_eq!(
            text(ValueKind::List, r#"["a,b", "c"]"#),
            Ok(serde_json::json!(["a,b", "c"]))
        );
        assert_eq!(text(ValueKind::Path, ""), Ok(Value::Null));
        assert!(text(ValueKind::Json, "{oops").is_err());
    }

    #[test]
    fn case_conversions_round_trip() {
        assert_eq!(
            camel_case("logrotate_frequency_override"),
            "logrotateFrequencyOverride"
        );
        assert_eq!(
            snake_case("logrotateFrequencyOverride"),
            "logrotate_frequency_override"
        );
    }

    #[test]
    fn secrets_are_redacted_inside_values() {
        let spec = ConfigClass::S3Base
            .find_yaml("s3BucketCredentials")
            .unwrap();
        let value =
            serde_json::json!({"logs": {"accessKey": "AKIA12345678", "secretKey": "s3cr3tvalue"}});
        assert_eq!(
            written_json(spec, &value),
            r#"{"logs":{"accessKey":"****5678","secretKey":"****alue"}}"#
        );
    }

    #[test]
    fn close_keys_are_suggested() {
        assert_eq!(
            unknown_hint(
                "hardKilAfterMillis",
                Format::Yaml,
                Some(ConfigClass::Executor),
                true
            ),
            Some("did you mean hardKillAfterMillis?".to_owned())
        );
        assert_eq!(
            unknown_hint(
                "executor.s3.uploader.buckt",
                Format::Properties,
                None,
                false
            ),
            Some("did you mean executor.s3.uploader.bucket?".to_owned())
        );
        assert_eq!(
            unknown_hint(
                "s3UploaderMetadataDirectory",
                Format::Yaml,
                Some(ConfigClass::Executor),
                true
            ),
            Some("it belongs in singularity.base.yaml".to_owned())
        );
        assert_eq!(
            unknown_hint("zzz", Format::Toml, Some(ConfigClass::Executor), true),
            None
        );
    }
}
