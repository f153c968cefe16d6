//! Discovery, merge, typing and validation.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use serde_path_to_error::Segment;

use super::diagnostic::{ConfigErrors, Diagnostic, KeyAt, Location};
use super::keys::{ConfigClass, KeySpec, Requirement, ValueKind};
use super::layer::{self, Entry, Layer, Report};
use super::source::{self, Content, Format, Role, SourceFile};
use super::types::{
    BaseConfig, CommonKeys, ExecutorCleanupConfig, ExecutorConfig, S3BaseConfig,
    S3DownloaderConfig, S3UploaderConfig, check_rotation_dateformat,
};
use super::{ConfigSources, LoadedConfig, ValueOrigin};

/// The YAML names of the keys every class has.
const COMMON: [&str; 5] = [
    "loggingFilename",
    "loggingDirectory",
    "loggingLevel",
    "loggingPattern",
    "hostname",
];

/// A class's merged input.
struct ClassInput {
    class: ConfigClass,
    entries: BTreeMap<&'static str, Entry>,
    /// The class's own file (the last one read), else where it would be.
    home: Location,
    home_format: Format,
}

impl ClassInput {
    fn is_set(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Where a message about `spec` points, how the key is spelled there, and the value.
    fn locate(&self, spec: &KeySpec, effective: &str) -> (Location, String, String) {
        match self.entries.get(spec.yaml) {
            Some(entry) => (
                entry.origin.at.clone(),
                entry.origin.key.clone(),
                entry.written.clone(),
            ),
            None => (
                self.home.clone(),
                layer::spelled(spec, self.home_format),
                effective.to_owned(),
            ),
        }
    }
}

/// Access to the common keys of any class struct.
trait ClassConfig: Serialize + DeserializeOwned + Default {
    fn common_mut(&mut self) -> &mut CommonKeys;
}

macro_rules! class_config {
    ($($type:ty),*) => {$(
        impl ClassConfig for $type {
            fn common_mut(&mut self) -> &mut CommonKeys {
                &mut self.common
            }
        }
    )*};
}

class_config!(
    BaseConfig,
    S3BaseConfig,
    ExecutorConfig,
    ExecutorCleanupConfig,
    S3UploaderConfig,
    S3DownloaderConfig
);

pub(crate) fn load(
    sources: &ConfigSources,
    classes: &[ConfigClass],
) -> Result<LoadedConfig, ConfigErrors> {
    let wanted: Vec<ConfigClass> = ConfigClass::ALL
        .into_iter()
        .filter(|class| *class == ConfigClass::Base || classes.contains(class))
        .collect();
    let mut report = Report::default();

    let mut files = Vec::new();
    for class in &wanted {
        for format in Format::DISCOVERED {
            files.push(SourceFile {
                path: source::per_class_path(&sources.config_dir, *class, format),
                format,
                role: Role::PerClass(*class),
                discovered: true,
            });
        }
    }
    for path in &sources.files {
        match source::classify(path) {
            Ok(file) => files.push(file),
            Err(problem) => report.problems.push(problem),
        }
    }

    let mut parsed = Vec::new();
    let mut files_read = Vec::new();
    for file in files {
        match source::read_bytes(&file.path, file.discovered) {
            Ok(None) => {}
            Ok(Some(bytes)) => {
                files_read.push(file.path.clone());
                match source::parse(&file.path, file.format, &bytes) {
                    Ok(content) => parsed.push((file, content)),
                    Err(problem) => report.problems.push(problem),
                }
            }
            Err(problem) => report.problems.push(problem),
        }
    }
    for (file, content) in &parsed {
        if file.role == Role::Consolidated {
            warn_unknown_consolidated(file, content, &mut report);
        }
    }

    let mut inputs = BTreeMap::new();
    for class in &wanted {
        let layers = layers_for(*class, &parsed, &mut report);
        check_conflicts(&layers, &mut report);
        inputs.insert(*class, merge(*class, &layers, &sources.config_dir));
    }

    let mut origins = BTreeMap::new();
    let no_base_files;
    let base_input = match inputs.get(&ConfigClass::Base) {
        Some(input) => input,
        None => {
            no_base_files = merge(ConfigClass::Base, &[], &sources.config_dir);
            &no_base_files
        }
    };
    let base: BaseConfig = decode(base_input, None, &mut origins, &mut report);
    let decode_class = |class: ConfigClass| inputs.get(&class);
    let s3: Option<S3BaseConfig> = decode_class(ConfigClass::S3Base)
        .map(|input| decode(input, Some(base_input), &mut origins, &mut report));
    let executor: Option<ExecutorConfig> = decode_class(ConfigClass::Executor)
        .map(|input| decode(input, Some(base_input), &mut origins, &mut report));
    let executor_cleanup: Option<ExecutorCleanupConfig> =
        decode_class(ConfigClass::ExecutorCleanup)
            .map(|input| decode(input, Some(base_input), &mut origins, &mut report));
    let s3uploader: Option<S3UploaderConfig> = decode_class(ConfigClass::S3Uploader)
        .map(|input| decode(input, Some(base_input), &mut origins, &mut report));
    let s3downloader: Option<S3DownloaderConfig> = decode_class(ConfigClass::S3Downloader)
        .map(|input| decode(input, Some(base_input), &mut origins, &mut report));

    let mut config = LoadedConfig {
        base,
        s3,
        executor,
        executor_cleanup,
        s3uploader,
        s3downloader,
        files_read,
        warnings: Vec::new(),
        origins,
    };
    inherit_common(&mut config, &inputs);
    if let (Some(_), Some(s3), Some(input)) = (
        &config.s3downloader,
        &config.s3,
        inputs.get(&ConfigClass::S3Base),
    ) {
        check_listener(s3, input, &mut report);
    }
    if let (Some(executor), Some(input)) = (&config.executor, inputs.get(&ConfigClass::Executor)) {
        check_additional_files(executor, input, &mut report);
    }

    if report.problems.is_empty() {
        config.warnings = report.warnings;
        Ok(config)
    } else {
        Err(ConfigErrors {
            problems: report.problems,
            warnings: report.warnings,
        })
    }
}

fn warn_unknown_consolidated(file: &SourceFile, content: &Content, report: &mut Report) {
    match content {
        Content::Properties(lines) => {
            for line in lines {
                if ConfigClass::route_property(&line.key).is_none() {
                    report.warnings.push(Diagnostic::UnknownKey {
                        at: Location {
                            file: file.path.clone(),
                            line: Some(line.line),
                        },
                        key: line.key.clone(),
                        hint: layer::unknown_hint(&line.key, Format::Properties, None, false),
                    });
                }
            }
        }
        Content::Tree(tree) => {
            let section = |class: ConfigClass| match file.format {
                Format::Toml => class.toml_table(),
                _ => class.yaml_section(),
            };
            for key in tree.keys() {
                if ConfigClass::ALL
                    .into_iter()
                    .any(|class| section(class) == key)
                {
                    continue;
                }
                let sections = ConfigClass::ALL.map(section);
                report.warnings.push(Diagnostic::UnknownKey {
                    at: Location::file(&file.path),
                    key: key.clone(),
                    hint: layer::closest(key, sections).map(|name| format!("did you mean {name}?")),
                });
            }
        }
    }
}

/// Every layer that sets keys of `class`, in merge order.
fn layers_for(
    class: ConfigClass,
    parsed: &[(SourceFile, Content)],
    report: &mut Report,
) -> Vec<Layer> {
    let mut layers = Vec::new();
    for (file, content) in parsed {
        let per_class = match file.role {
            Role::PerClass(owner) if owner == class => true,
            Role::PerClass(_) => continue,
            Role::Consolidated => false,
        };
        let entries = match content {
            Content::Properties(lines) if per_class => {
                let mut matched = Vec::new();
                for line in lines {
                    match class.find_property(&line.key) {
                        Some((spec, target)) => matched.push((line, spec, target)),
                        None => report.warnings.push(Diagnostic::UnknownKey {
                            at: Location {
                                file: file.path.clone(),
                                line: Some(line.line),
                            },
                            key: line.key.clone(),
                            hint: layer::unknown_hint(
                                &line.key,
                                Format::Properties,
                                Some(class),
                                true,
                            ),
                        }),
                    }
                }
                layer::from_properties(matched, &file.path, report)
            }
            Content::Properties(lines) => {
                let matched = lines.iter().filter_map(|line| {
                    ConfigClass::route_property(&line.key)
                        .filter(|(owner, _, _)| *owner == class)
                        .map(|(_, spec, target)| (line, spec, target))
                });
                layer::from_properties(matched, &file.path, report)
            }
            Content::Tree(tree) if per_class => {
                layer::from_tree(class, tree, &file.path, file.format, true, report)
            }
            Content::Tree(tree) => {
                let name = match file.format {
                    Format::Toml => class.toml_table(),
                    _ => class.yaml_section(),
                };
                match tree.get(name) {
                    None | Some(Value::Null) => continue,
                    Some(Value::Object(section)) => {
                        layer::from_tree(class, section, &file.path, file.format, false, report)
                    }
                    Some(other) => {
                        report.problems.push(Diagnostic::Invalid {
                            at: Location::file(&file.path),
                            key: name.to_owned(),
                            value: other.to_string(),
                            reason: "expected a mapping of keys to values".to_owned(),
                        });
                        continue;
                    }
                }
            }
        };
        layers.push(Layer {
            path: file.path.clone(),
            format: file.format,
            per_class,
            discovered: file.discovered,
            entries,
        });
    }
    layers
}

/// The same key in two per-class files of the config directory is ambiguous.
fn check_conflicts(layers: &[Layer], report: &mut Report) {
    let discovered: Vec<&Layer> = layers.iter().filter(|layer| layer.discovered).collect();
    for (index, later) in discovered.iter().enumerate() {
        for (key, entry) in &later.entries {
            if let Some(earlier) = discovered[..index]
                .iter()
                .find_map(|layer| layer.entries.get(key))
            {
                report.problems.push(Diagnostic::Conflict {
                    at: entry.origin.at.clone(),
                    key: entry.origin.key.clone(),
                    value: entry.written.clone(),
                    earlier: Box::new(KeyAt {
                        at: earlier.origin.at.clone(),
                        key: earlier.origin.key.clone(),
                    }),
                });
            }
        }
    }
}

/// Later layers replace earlier ones key by key.
fn merge(class: ConfigClass, layers: &[Layer], config_dir: &Path) -> ClassInput {
    let mut entries = BTreeMap::new();
    for layer in layers {
        for (key, entry) in &layer.entries {
            entries.insert(*key, entry.clone());
        }
    }
    let (home, home_format) = layers
        .iter()
        .rev()
        .find(|layer| layer.per_class)
        .map(|layer| (Location::file(&layer.path), layer.format))
        .unwrap_or_else(|| {
            (
                Location::file(source::per_class_path(config_dir, class, Format::Yaml)),
                Format::Yaml,
            )
        });
    ClassInput {
        class,
        entries,
        home,
        home_format,
    }
}

/// Types one class: the common keys and the class's own keys separately (so error paths
/// stay exact), then the checks that need the typed value.
fn decode<T: ClassConfig>(
    input: &ClassInput,
    base: Option<&ClassInput>,
    origins: &mut BTreeMap<(ConfigClass, &'static str), ValueOrigin>,
    report: &mut Report,
) -> T {
    let mut common_object = Map::new();
    let mut own_object = Map::new();
    for (key, entry) in &input.entries {
        let object = if COMMON.contains(key) {
            &mut common_object
        } else {
            &mut own_object
        };
        object.insert((*key).to_owned(), entry.value.clone());
    }
    let mut refused = Vec::new();
    let mut common: CommonKeys = deserialize_retry(common_object, input, &mut refused, report);
    let mut config: T = deserialize_retry(own_object, input, &mut refused, report);
    if common.logging_filename.is_none() && !input.is_set("loggingFilename") {
        common.logging_filename = input.class.default_logging_filename().map(str::to_owned);
    }
    if input.class == ConfigClass::Base && !input.is_set("loggingDirectory") {
        common.logging_directory = BaseConfig::default().common.logging_directory;
    }
    *config.common_mut() = common;

    for (key, entry) in &input.entries {
        origins.insert(
            (input.class, *key),
            ValueOrigin {
                file: entry.origin.at.file.clone(),
                line: entry.origin.at.line,
                key: entry.origin.key.clone(),
            },
        );
    }
    if let Some(base) = base {
        for key in COMMON {
            if let (false, Some(entry)) = (input.is_set(key), base.entries.get(key)) {
                if key == "loggingFilename" && input.class.default_logging_filename().is_some() {
                    continue;
                }
                origins.insert(
                    (input.class, key),
                    ValueOrigin {
                        file: entry.origin.at.file.clone(),
                        line: entry.origin.at.line,
                        key: entry.origin.key.clone(),
                    },
                );
            }
        }
    }

    if let Ok(Value::Object(effective)) = serde_json::to_value(&config) {
        warn_unknown_nested(input, &effective, &refused, report);
        check_values(input, &effective, report);
    }
    config
}

/// Deserializes, and on a type error records it, drops that key and tries again, so every
/// bad key is reported.
fn deserialize_retry<T: DeserializeOwned + Default>(
    mut object: Map<String, Value>,
    input: &ClassInput,
    refused: &mut Vec<&'static str>,
    report: &mut Report,
) -> T {
    loop {
        let value = Value::Object(object);
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(typed) => return typed,
            Err(error) => error,
        };
        let Value::Object(rest) = value else {
            return T::default();
        };
        object = rest;
        let segments: Vec<&Segment> = error.path().iter().collect();
        let top = match segments.first() {
            Some(Segment::Map { key }) => key.clone(),
            _ => String::new(),
        };
        // An explicit null leaves a key that cannot be absent at its default.
        if object.get(&top) == Some(&Value::Null) {
            object.remove(&top);
            continue;
        }
        let (Some(spec), Some(entry)) =
            (input.class.find_yaml(&top), input.entries.get(top.as_str()))
        else {
            report.problems.push(Diagnostic::Invalid {
                at: input.home.clone(),
                key: top,
                value: String::new(),
                reason: error.inner().to_string(),
            });
            return T::default();
        };
        let mut inner = &segments[1..];
        let mut origin = &entry.origin;
        let mut written = &entry.written;
        let part = match inner.first() {
            Some(Segment::Map { key }) => entry.parts.iter().find(|part| &part.name == key),
            _ => None,
        };
        if let Some(part) = part {
            origin = &part.origin;
            written = &part.written;
            inner = &inner[1..];
        }
        let reason = type_reason(
            spec,
            &path_text(inner, entry.format),
            segments.len() == 1,
            &error.inner().to_string(),
            object.get(spec.yaml),
        );
        report.invalid(origin, written, reason);
        refused.push(spec.yaml);
        if object.remove(spec.yaml).is_none() {
            return T::default();
        }
    }
}

fn path_text(segments: &[&Segment], format: Format) -> String {
    let mut text = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => text.push_str(&format!("[{index}]")),
            Segment::Map { key } if format == Format::Toml => {
                text.push('.');
                text.push_str(&layer::snake_case(key));
            }
            Segment::Map { key } => {
                text.push('.');
                text.push_str(key);
            }
            Segment::Enum { variant } => {
                text.push('.');
                text.push_str(variant);
            }
            Segment::Unknown => text.push_str(".?"),
        }
    }
    text.trim_start_matches('.').to_owned()
}

fn type_reason(
    spec: &KeySpec,
    inner: &str,
    at_top: bool,
    message: &str,
    value: Option<&Value>,
) -> String {
    match spec.kind {
        ValueKind::Integer if at_top => match value {
            Some(Value::Number(n)) if n.as_i64().is_some_and(|i| i < 0) => {
                "expected a non-negative integer".to_owned()
            }
            Some(Value::Number(n)) if n.is_i64() || n.is_u64() => "integer out of range".to_owned(),
            _ => spec.kind.expected(),
        },
        ValueKind::Bool
        | ValueKind::Integer
        | ValueKind::String
        | ValueKind::Path
        | ValueKind::Choice(_)
        | ValueKind::List => spec.kind.expected(),
        _ if inner.is_empty() => message.to_owned(),
        _ => format!("at {inner}: {message}"),
    }
}

/// Fields inside objects that the typed value does not have (a misspelt nested field would
/// otherwise vanish silently). Keys already refused for their type are skipped.
fn warn_unknown_nested(
    input: &ClassInput,
    effective: &Map<String, Value>,
    refused: &[&str],
    report: &mut Report,
) {
    for (key, entry) in &input.entries {
        let (Some(spec), Some(output)) = (input.class.find_yaml(key), effective.get(*key)) else {
            continue;
        };
        if refused.contains(key) {
            continue;
        }
        match (spec.kind, &entry.value, output) {
            (ValueKind::Json | ValueKind::FileList, given, known) => {
                compare_nested(given, known, String::new(), entry, report);
            }
            // Bucket names are the user's; only the fields inside each bucket are checked.
            (ValueKind::BucketCredentials, Value::Object(given), Value::Object(known)) => {
                for (bucket, credentials) in given {
                    if let Some(typed) = known.get(bucket) {
                        let path = format!(".{bucket}");
                        compare_nested(credentials, typed, path, entry, report);
                    }
                }
            }
            _ => {}
        }
    }
}

fn compare_nested(input: &Value, output: &Value, path: String, entry: &Entry, report: &mut Report) {
    let spell = |name: &str| {
        if entry.format == Format::Toml {
            layer::snake_case(name)
        } else {
            name.to_owned()
        }
    };
    match (input, output) {
        (Value::Object(given), Value::Object(known)) => {
            for (name, value) in given {
                if value.is_null() {
                    continue;
                }
                match known.get(name) {
                    Some(inner) => compare_nested(
                        value,
                        inner,
                        format!("{path}.{}", spell(name)),
                        entry,
                        report,
                    ),
                    None => {
                        let candidates: Vec<String> = known.keys().map(|k| spell(k)).collect();
                        let hint =
                            layer::closest(&spell(name), candidates.iter().map(String::as_str))
                                .map(|name| format!("did you mean {name}?"));
                        report.warnings.push(Diagnostic::UnknownKey {
                            at: entry.origin.at.clone(),
                            key: format!("{}{path}.{}", entry.origin.key, spell(name)),
                            hint,
                        });
                    }
                }
            }
        }
        (Value::Array(given), Value::Array(known)) => {
            for (index, (value, inner)) in given.iter().zip(known).enumerate() {
                compare_nested(value, inner, format!("{path}[{index}]"), entry, report);
            }
        }
        _ => {}
    }
}

fn is_empty(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(text)) => text.is_empty(),
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    }
}

fn value_text(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(text)) => text.clone(),
        Some(other) => other.to_string(),
    }
}

/// Required keys, directories that must exist, and Java's `@Min`/`@Max` bounds.
fn check_values(input: &ClassInput, effective: &Map<String, Value>, report: &mut Report) {
    for spec in input.class.keys() {
        let value = effective.get(spec.yaml);
        let text = value_text(value);
        if spec.requirement != Requirement::Optional && is_empty(value) {
            match input.entries.get(spec.yaml) {
                None => report.problems.push(Diagnostic::Required {
                    at: input.home.clone(),
                    key: layer::spelled(spec, input.home_format),
                }),
                Some(entry) => report.invalid(&entry.origin, &entry.written, "must not be empty"),
            }
            continue;
        }
        if spec.requirement == Requirement::ExistingDirectory {
            let reason = match std::fs::metadata(&text) {
                Ok(metadata) if metadata.is_dir() => None,
                Ok(_) => Some("is not a directory".to_owned()),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    Some("directory does not exist".to_owned())
                }
                Err(error) => Some(format!("cannot check the directory: {error}")),
            };
            if let Some(reason) = reason {
                let (at, key, written) = input.locate(spec, &text);
                report.problems.push(Diagnostic::Invalid {
                    at,
                    key,
                    value: written,
                    reason,
                });
            }
        }
        if let Some(number) = value.and_then(Value::as_u64) {
            let reason = match (spec.min, spec.max) {
                (Some(min), Some(max)) if number < min || number > max => {
                    Some(format!("must be between {min} and {max}"))
                }
                (Some(min), _) if number < min => Some(format!("must be at least {min}")),
                (_, Some(max)) if number > max => Some(format!("must be at most {max}")),
                _ => None,
            };
            if let Some(reason) = reason {
                let (at, key, written) = input.locate(spec, &text);
                report.problems.push(Diagnostic::Invalid {
                    at,
                    key,
                    value: written,
                    reason,
                });
            }
        }
    }
}

/// `logrotateAdditionalFiles` entries and the date formats that become parts of file names,
/// checked before any task runs.
fn check_additional_files(executor: &ExecutorConfig, input: &ClassInput, report: &mut Report) {
    if let Some(spec) = input.class.find_yaml("logrotateExtrasDateformat")
        && let Err(reason) = check_rotation_dateformat(&executor.logrotate_extras_dateformat)
    {
        let (at, key, value) = input.locate(spec, &executor.logrotate_extras_dateformat);
        report.problems.push(Diagnostic::Invalid {
            at,
            key,
            value,
            reason,
        });
    }
    let Some(spec) = input.class.find_yaml("logrotateAdditionalFiles") else {
        return;
    };
    for (index, file) in executor.logrotate_additional_files.iter().enumerate() {
        for problem in file.problems() {
            let (at, key, _) = input.locate(spec, "");
            report.problems.push(Diagnostic::Invalid {
                at,
                key: format!("{key}[{index}].{}", problem.field),
                value: problem.value,
                reason: problem.reason,
            });
        }
    }
}

/// The downloader needs a TCP port or a unix socket to listen on.
fn check_listener(s3: &S3BaseConfig, input: &ClassInput, report: &mut Report) {
    let port = s3.local_download_http_port.filter(|port| *port != 0);
    if port.is_some() || s3.local_download_socket.is_some() {
        return;
    }
    let Some(spec) = input.class.find_yaml("localDownloadHttpPort") else {
        return;
    };
    let (at, key, written) = input.locate(spec, "");
    report.problems.push(Diagnostic::Invalid {
        at,
        key,
        value: written,
        reason: "the downloader needs localDownloadHttpPort or localDownloadSocket".to_owned(),
    });
}

/// As in the Java daemons (docs/configuration.md, "Merge order"): a class's logging keys and hostname fall back to base's; logger levels are
/// base's with the class's applied over them.
fn inherit_common(config: &mut LoadedConfig, inputs: &BTreeMap<ConfigClass, ClassInput>) {
    let base = config.base.common.clone();
    let apply = |common: &mut CommonKeys, class: ConfigClass| {
        let Some(input) = inputs.get(&class) else {
            return;
        };
        if !input.is_set("loggingFilename") && class.default_logging_filename().is_none() {
            common.logging_filename.clone_from(&base.logging_filename);
        }
        if !input.is_set("loggingDirectory") {
            common.logging_directory.clone_from(&base.logging_directory);
        }
        let mut levels = base.logging_level.clone();
        levels.append(&mut common.logging_level);
        common.logging_level = levels;
        if !input.is_set("loggingPattern") {
            common.logging_pattern.clone_from(&base.logging_pattern);
        }
        if !input.is_set("hostname") {
            common.hostname.clone_from(&base.hostname);
        }
    };
    if let Some(s3) = &mut config.s3 {
        apply(&mut s3.common, ConfigClass::S3Base);
    }
    if let Some(executor) = &mut config.executor {
        apply(&mut executor.common, ConfigClass::Executor);
    }
    if let Some(cleanup) = &mut config.executor_cleanup {
        apply(&mut cleanup.common, ConfigClass::ExecutorCleanup);
    }
    if let Some(uploader) = &mut config.s3uploader {
        apply(&mut uploader.common, ConfigClass::S3Uploader);
    }
    if let Some(downloader) = &mut config.s3downloader {
        apply(&mut downloader.common, ConfigClass::S3Downloader);
    }
}
