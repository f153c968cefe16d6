//! Finding config files, telling their format and role from their name, and parsing them.

use std::io;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::diagnostic::{Diagnostic, Location};
use super::keys::ConfigClass;

/// The three input formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Properties,
    Yaml,
    Toml,
}

impl Format {
    /// Extensions looked for in the config directory, in merge order.
    pub(crate) const DISCOVERED: [Format; 3] = [Format::Properties, Format::Yaml, Format::Toml];

    pub(crate) fn extension(self) -> &'static str {
        match self {
            Self::Properties => "properties",
            Self::Yaml => "yaml",
            Self::Toml => "toml",
        }
    }

    fn from_extension(extension: &str) -> Option<Self> {
        match extension {
            "properties" => Some(Self::Properties),
            "yaml" | "yml" => Some(Self::Yaml),
            "toml" => Some(Self::Toml),
            _ => None,
        }
    }
}

/// What a file holds: one class, or sections for several.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    PerClass(ConfigClass),
    Consolidated,
}

/// A file to read.
#[derive(Debug, Clone)]
pub(crate) struct SourceFile {
    pub(crate) path: PathBuf,
    pub(crate) format: Format,
    pub(crate) role: Role,
    /// Found in the config directory (rather than given with `--config`).
    pub(crate) discovered: bool,
}

/// `<dir>/singularity.<stem>.<ext>`.
pub(crate) fn per_class_path(dir: &Path, class: ConfigClass, format: Format) -> PathBuf {
    dir.join(format!(
        "singularity.{}.{}",
        class.stem(),
        format.extension()
    ))
}

/// Format and role of a `--config` file, from its name.
pub(crate) fn classify(path: &Path) -> Result<SourceFile, Diagnostic> {
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let format = name
        .rsplit_once('.')
        .and_then(|(_, extension)| Format::from_extension(extension))
        .ok_or_else(|| Diagnostic::UnknownFormat {
            at: Location::file(path),
        })?;
    let stem = name
        .strip_prefix("singularity.")
        .and_then(|rest| rest.rsplit_once('.'))
        .map(|(stem, _)| stem);
    let role = ConfigClass::ALL
        .into_iter()
        .find(|class| Some(class.stem()) == stem)
        .map_or(Role::Consolidated, Role::PerClass);
    Ok(SourceFile {
        path: path.to_owned(),
        format,
        role,
        discovered: false,
    })
}

/// One `key=value` line of a `.properties` file.
#[derive(Debug, Clone)]
pub(crate) struct PropertyLine {
    pub(crate) key: String,
    pub(crate) value: String,
    pub(crate) line: usize,
}

/// A parsed file.
#[derive(Debug, Clone)]
pub(crate) enum Content {
    Properties(Vec<PropertyLine>),
    /// YAML or TOML, as a JSON object.
    Tree(Map<String, Value>),
}

/// Configuration files larger than this are refused unread: real ones are a few KiB, and a
/// daemon running as root should not load whatever a wrong path points at into memory.
pub const MAX_CONFIG_FILE_BYTES: u64 = 1 << 20;

/// Reads a file. `Ok(None)` when it does not exist and `missing_ok`. Only regular files (or
/// symlinks to them) of at most [`MAX_CONFIG_FILE_BYTES`] are read: a FIFO or a device would
/// block or never end.
pub(crate) fn read_bytes(path: &Path, missing_ok: bool) -> Result<Option<Vec<u8>>, Diagnostic> {
    use std::io::Read as _;
    let unreadable = |error: String| Diagnostic::Unreadable {
        at: Location::file(path),
        error,
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(error) if missing_ok && error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(unreadable(error.to_string())),
    };
    // A directory is opened and read like a file: read(2) reports it.
    if !meta.is_file() && !meta.is_dir() {
        return Err(unreadable("not a regular file".to_owned()));
    }
    let too_large = || {
        unreadable(format!(
            "larger than {MAX_CONFIG_FILE_BYTES} bytes, the limit for a configuration file"
        ))
    };
    if meta.len() > MAX_CONFIG_FILE_BYTES {
        return Err(too_large());
    }
    let file = std::fs::File::open(path).map_err(|error| unreadable(error.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| unreadable(error.to_string()))?;
    if bytes.len() as u64 > MAX_CONFIG_FILE_BYTES {
        return Err(too_large());
    }
    Ok(Some(bytes))
}

/// Parses a file's bytes in its format. Syntax errors carry the line the parser reported.
pub(crate) fn parse(path: &Path, format: Format, bytes: &[u8]) -> Result<Content, Diagnostic> {
    match format {
        Format::Properties => parse_properties(path, bytes).map(Content::Properties),
        Format::Yaml => parse_yaml(path, utf8(path, bytes)?).map(Content::Tree),
        Format::Toml => parse_toml(path, utf8(path, bytes)?).map(Content::Tree),
    }
}

fn syntax(path: &Path, line: Option<usize>, message: impl Into<String>) -> Diagnostic {
    Diagnostic::Syntax {
        at: Location {
            file: path.to_owned(),
            line,
        },
        message: message.into(),
    }
}

fn utf8<'a>(path: &Path, bytes: &'a [u8]) -> Result<&'a str, Diagnostic> {
    std::str::from_utf8(bytes).map_err(|error| {
        let line = line_of(bytes, error.valid_up_to());
        syntax(path, Some(line), "not valid UTF-8")
    })
}

fn line_of(bytes: &[u8], offset: usize) -> usize {
    bytes[..offset.min(bytes.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

fn parse_properties(path: &Path, bytes: &[u8]) -> Result<Vec<PropertyLine>, Diagnostic> {
    let mut lines = Vec::new();
    // Decoded here, as the parser would (malformed sequences become U+FFFD): the parser's own
    // streaming decoder panics on a sequence cut short by the end of the file.
    let (text, _, _) = encoding_rs::UTF_8.decode(bytes);
    let iter =
        java_properties::PropertiesIter::new_with_encoding(text.as_bytes(), encoding_rs::UTF_8);
    for line in iter {
        let line = line.map_err(|error| {
            // The crate appends " (line_number = N)"; the line goes in front instead.
            let text = error.to_string();
            let message = text
                .rsplit_once(" (line_number = ")
                .map_or(text.as_str(), |(message, _)| message)
                .to_owned();
            syntax(path, error.line_number(), message)
        })?;
        let number = line.line_number();
        if let java_properties::LineContent::KVPair(key, value) = line.consume_content() {
            lines.push(PropertyLine {
                key,
                value,
                line: number,
            });
        }
    }
    Ok(lines)
}

/// Flow collections (`[`, `{`) nested deeper than this are refused before parsing: no
/// configuration needs more, and the YAML parser's time grows with the square of the depth.
const MAX_YAML_FLOW_DEPTH: usize = 64;

/// The line where flow collections first nest deeper than `limit`, skipping quoted strings
/// and comments (brackets inside block scalars count too: harmless for real configs).
fn yaml_flow_too_deep(text: &str, limit: usize) -> Option<usize> {
    let (mut depth, mut line) = (0usize, 1usize);
    let (mut single, mut double, mut comment, mut escaped) = (false, false, false, false);
    let mut previous = '\n';
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            comment = false;
        } else if comment {
        } else if double {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => double = false,
                _ => {}
            }
        } else if single {
            single = c != '\'';
        } else {
            match c {
                '#' if previous.is_whitespace() => comment = true,
                '"' => double = true,
                '\'' => single = true,
                '[' | '{' => {
                    depth += 1;
                    if depth > limit {
                        return Some(line);
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        previous = c;
    }
    None
}

fn parse_yaml(path: &Path, text: &str) -> Result<Map<String, Value>, Diagnostic> {
    if let Some(line) = yaml_flow_too_deep(text, MAX_YAML_FLOW_DEPTH) {
        return Err(syntax(
            path,
            Some(line),
            format!("collections nested more than {MAX_YAML_FLOW_DEPTH} levels deep"),
        ));
    }
    let value: serde_yaml_ng::Value = serde_yaml_ng::from_str(text).map_err(|error| {
        let line = error.location().map(|location| location.line());
        let message = error.to_string();
        let message = message
            .rsplit_once(" at line ")
            .map_or(message.as_str(), |(message, _)| message)
            .to_owned();
        syntax(path, line, message)
    })?;
    match yaml_to_json(value) {
        Value::Null => Ok(Map::new()),
        Value::Object(map) => Ok(map),
        _ => Err(syntax(
            path,
            Some(1),
            "expected a mapping of keys to values",
        )),
    }
}

fn yaml_to_json(value: serde_yaml_ng::Value) -> Value {
    use serde_yaml_ng::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(n.to_string()), Value::Number)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(mapping) => Value::Object(
            mapping
                .into_iter()
                .map(|(key, value)| (yaml_key(key), yaml_to_json(value)))
                .collect(),
        ),
        Y::Tagged(tagged) => yaml_to_json(tagged.value),
    }
}

fn yaml_key(key: serde_yaml_ng::Value) -> String {
    match yaml_to_json(key) {
        Value::String(s) => s,
        Value::Null => "null".to_owned(),
        other => other.to_string(),
    }
}

fn parse_toml(path: &Path, text: &str) -> Result<Map<String, Value>, Diagnostic> {
    let table: toml::Table = toml::from_str(text).map_err(|error| {
        let line = error
            .span()
            .map(|span| line_of(text.as_bytes(), span.start));
        syntax(path, line, error.message().trim_end())
    })?;
    Ok(table
        .into_iter()
        .map(|(key, value)| (key, toml_to_json(value)))
        .collect())
}

fn toml_to_json(value: toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s),
        toml::Value::Integer(i) => Value::from(i),
        toml::Value::Float(f) => serde_json::Number::from_f64(f)
            .map_or_else(|| Value::String(f.to_string()), Value::Number),
        toml::Value::Boolean(b) => Value::Bool(b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.into_iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(
            table
                .into_iter()
                .map(|(key, value)| (key, toml_to_json(value)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_properties_file_cut_inside_a_utf8_sequence_is_read() {
        let lines = parse_properties(Path::new("x.properties"), b"a=b\xc2").unwrap();
        assert_eq!(lines[0].key, "a");
        assert_eq!(lines[0].value, "b\u{fffd}");
    }

    #[test]
    fn flow_depth_skips_strings_and_comments() {
        assert_eq!(yaml_flow_too_deep("a: [[1], {b: [2]}]\n", 3), None);
        assert_eq!(yaml_flow_too_deep("a: [[[1]]]\n", 2), Some(1));
        assert_eq!(yaml_flow_too_deep("a: '[[[['\nb: \"[[[\\\"[\"\n", 2), None);
        assert_eq!(yaml_flow_too_deep("a: 1 # [[[[\nb: [[[x]]]\n", 2), Some(2));
        assert_eq!(yaml_flow_too_deep("url: http://x/#[[[\n", 2), Some(1));
    }

    #[test]
    fn names_tell_role_and_format() {
        let file = classify(Path::new("/x/singularity.executor.cleanup.yml")).unwrap();
        assert_eq!(file.role, Role::PerClass(ConfigClass::ExecutorCleanup));
        assert_eq!(file.format, Format::Yaml);
        let file = classify(Path::new("/x/singularity.executor.toml")).unwrap();
        assert_eq!(file.role, Role::PerClass(ConfigClass::Executor));
        let file = classify(Path::new("/x/singularity.yaml")).unwrap();
        assert_eq!(file.role, Role::Consolidated);
        let file = classify(Path::new("/x/agent.properties")).unwrap();
        assert_eq!(file.role, Role::Consolidated);
        assert_eq!(file.format, Format::Properties);
        assert!(classify(Path::new("/x/singularity.json")).is_err());
        assert!(classify(Path::new("/x/singularity")).is_err());
    }

    #[test]
    fn properties_keep_line_numbers_across_continuations() {
        let text = "# comment\n! bang comment\na = 1\nb: two \\\n   lines\nc three\n";
        let lines = parse_properties(Path::new("f"), text.as_bytes()).unwrap();
        let got: Vec<_> = lines
            .iter()
            .map(|l| (l.key.as_str(), l.value.as_str(), l.line))
            .collect();
        assert_eq!(
            got,
            [("a", "1", 3), ("b", "two lines", 4), ("c", "three", 6)]
        );
    }

    #[test]
    fn yaml_and_toml_errors_carry_the_line() {
        let error = parse_yaml(Path::new("f.yaml"), "a: 1\nb: [\n").unwrap_err();
        let Diagnostic::Syntax { at, .. } = error else {
            panic!("{error:?}")
        };
        assert!(at.line.is_some());
        let error = parse_toml(Path::new("f.toml"), "a = 1\nb = = 2\n").unwrap_err();
        let Diagnostic::Syntax { at, .. } = error else {
            panic!("{error:?}")
        };
        assert_eq!(at.line, Some(2));
    }
}
