//! The effective configuration as consolidated YAML, for `--check-config`.

use std::fmt::Write as _;

use serde::Serialize;
use serde_yaml_ng::{Mapping, Value};

use super::LoadedConfig;
use super::keys::ConfigClass;

pub(crate) fn render(config: &LoadedConfig) -> String {
    let mut out =
        String::from("# Effective configuration; credentials are redacted.\n# files read:\n");
    if config.files_read.is_empty() {
        out.push_str("#   (none: defaults only)\n");
    }
    for path in &config.files_read {
        let _ = writeln!(out, "#   {}", path.display());
    }
    for class in ConfigClass::ALL {
        let Some(section) = section(config, class) else {
            continue;
        };
        let _ = writeln!(out, "{}:", class.yaml_section());
        for spec in class.keys() {
            let Some(value) = section.get(spec.yaml).and_then(without_nulls) else {
                continue;
            };
            let mut single = Mapping::new();
            single.insert(Value::from(spec.yaml), value);
            let text = match serde_yaml_ng::to_string(&single) {
                Ok(text) => text,
                Err(error) => format!("# {}: cannot render: {error}\n", spec.yaml),
            };
            let origin = config
                .origin(class, spec.yaml)
                .map(|origin| match origin.line {
                    Some(line) => {
                        format!("  # from {}:{line} ({})", origin.file.display(), origin.key)
                    }
                    None => format!("  # from {} ({})", origin.file.display(), origin.key),
                });
            for (index, line) in text.lines().enumerate() {
                out.push_str("  ");
                out.push_str(line);
                if let (0, Some(origin)) = (index, &origin) {
                    out.push_str(origin);
                }
                out.push('\n');
            }
        }
    }
    out
}

fn to_mapping(value: &impl Serialize) -> Option<Mapping> {
    match serde_yaml_ng::to_value(value) {
        Ok(Value::Mapping(mapping)) => Some(mapping),
        _ => None,
    }
}

/// A class's fields in declaration order (YAML mappings keep insertion order).
fn section(config: &LoadedConfig, class: ConfigClass) -> Option<Mapping> {
    match class {
        ConfigClass::Base => to_mapping(&config.base),
        ConfigClass::S3Base => config.s3.as_ref().and_then(to_mapping),
        ConfigClass::Executor => config.executor.as_ref().and_then(to_mapping),
        ConfigClass::ExecutorCleanup => config.executor_cleanup.as_ref().and_then(to_mapping),
        ConfigClass::S3Uploader => config.s3uploader.as_ref().and_then(to_mapping),
        ConfigClass::S3Downloader => config.s3downloader.as_ref().and_then(to_mapping),
    }
}

/// Absent values are left out rather than shown as `null`.
fn without_nulls(value: &Value) -> Option<Value> {
    match value {
        Value::Null => None,
        Value::Mapping(mapping) => Some(Value::Mapping(
            mapping
                .iter()
                .filter_map(|(key, value)| without_nulls(value).map(|value| (key.clone(), value)))
                .collect(),
        )),
        Value::Sequence(items) => Some(Value::Sequence(
            items.iter().filter_map(without_nulls).collect(),
        )),
        other => Some(other.clone()),
    }
}
