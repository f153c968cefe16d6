//! `docs/configuration.md`, generated from the key table so the reference cannot drift.

use std::fmt::Write as _;

use super::keys::{ConfigClass, KeySpec, RETIRED_KEYS, Requirement, ValueKind};

const INTRO: &str = r#"# Configuration reference

<!-- Generated from crates/common/src/config/keys.rs.
     Regenerate with: cargo run -p singularity-common --example config-docs > docs/configuration.md -->

Every daemon reads the same configuration classes as its Java counterpart, under the same file
names and key names, so existing `/etc/singularity.*.yaml` files keep working. Two more
formats are accepted for the same keys: Java-style `.properties` (the spelling of the original
installation guide) and TOML.

| daemon | classes loaded |
|---|---|
| `singularity-executor` | base, s3base, executor |
| executor cleanup | base, s3base, executor, executor.cleanup |
| `singularity-s3-uploader` | base, s3base, s3uploader |
| `singularity-s3-downloader` | base, s3base, s3downloader |

## Files

For each class the config directory (default `/etc`) may hold
`singularity.<stem>.properties`, `singularity.<stem>.yaml` and `singularity.<stem>.toml`:

| class | stem | YAML section | TOML table |
|---|---|---|---|
| base | `base` | `base` | `[base]` |
| s3base | `s3base` | `s3` | `[s3]` |
| executor | `executor` | `executor` | `[executor]` |
| executor cleanup | `executor.cleanup` | `executorCleanup` | `[executor_cleanup]` |
| S3 uploader | `s3uploader` | `s3uploader` | `[s3uploader]` |
| S3 downloader | `s3downloader` | `s3downloader` | `[s3downloader]` |

- **YAML** files use the camelCase keys of the tables below.
- **TOML** files use the snake_case keys, nested fields included (`access_key`,
  `logrotate_frequency_override`); map keys that are names (buckets, loggers) are kept as
  written.
- In YAML, `null` leaves a key unset: an optional value absent, any other at its default.
- **`.properties`** files use the dotted keys. Each class has its prefix (`s3.`, `executor.`,
  `executor.cleanup.`, `s3uploader.`, `s3downloader.`; base keys are unprefixed). The names
  published in the Singularity installation guide are recognised as written there, including
  the misspelt `executor.s3.uplaoder.bucket`, and so are the names early Java releases read from
  `/etc/singularity.*.properties` (listed after the main spelling).

A consolidated file holds several classes: YAML sections (`base:`, `s3:`, `executor:`, …), TOML
tables, or `.properties` keys, each routed to the class that owns its name (the unprefixed
logging keys go to base). In a per-class `.properties` file a class also accepts the unprefixed
logging keys and `hostname` for itself, and the uploader's file accepts `s3.access.key`,
`s3.secret.key` and `s3.bucket.credentials.*` as its own credentials; these spellings are
marked *(own file)* below.

## Merge order

For each class:

1. the per-class files in the config directory. Setting the same key in two of them (say
   `singularity.executor.yaml` and `singularity.executor.properties`) is an error naming both;
2. each `--config FILE`, in the order given; a later file replaces earlier values key by key
   (a map such as `loggingLevel` is replaced as a whole). A file named `singularity.<stem>.<ext>`
   holds that class; any other name is consolidated. The extension gives the format:
   `.properties`, `.yaml` or `.yml`, `.toml`; anything else is an error.

This is the Java order (per-class file, then the `-DsingularityConfigFilename` consolidated file)
with more than one file allowed.

The logging keys and `hostname` of every class fall back to base's when the class does not set
them (`loggingFilename` only for classes without their own default); `loggingLevel` is base's
map with the class's entries applied over it.

## Command line

Every daemon takes:

| option | meaning |
|---|---|
| `--config-dir DIR` | directory of the per-class files (default `/etc`, environment `SINGULARITY_CONFIG_DIR`) |
| `--config FILE` | a file read after the directory's; may be repeated, later files win |
| `--check-config` | print the effective configuration and exit |

`--check-config` prints the effective configuration as one consolidated YAML document, with the
files read and, for each value that is not a default, where it was set; it exits 0. When the
configuration is invalid it prints every problem, one per line, and exits 78 (`EX_CONFIG`), as
the daemons themselves do at start-up:

```
/etc/singularity.executor.properties:12: executor.hard.kill.after.millis = soon: expected an integer
/etc/singularity.base.yaml: s3UploaderMetadataDirectory = /var/lib/singularity/s3: directory does not exist
/etc/singularity.executor.yaml: defaultRunAsUser = (unset): required
```

Unknown keys are warnings, never errors, and name the closest known key:

```
warning: /etc/singularity.executor.yaml: hardKilAfterMillis: unknown key (did you mean hardKillAfterMillis?)
```

## Credentials

Keys marked *credential* are never printed: `--check-config` and every message show `****` and
the last four characters (`****` alone for four characters or fewer). S3 credentials may be
left out entirely; the daemons then use the AWS default credential chain (environment, profile,
instance role).

## `.properties` values

Values are trimmed. By kind:

- flags: `true` or `false`, in any case;
- numbers: decimal integers;
- lists: comma-separated, empty items dropped (`singularity.hosts=host1:7099,host2:7099`), or a
  JSON list when the value starts with `[` (for items that contain commas);
- `executor.logrotate.extras.files`: comma-separated file names, or a JSON list whose items are
  names or objects;
- maps: one line per entry, `logging.level.<logger>=DEBUG` (with `root.log.level` and
  `hubspot.log.level` for the `ROOT` and `com.hubspot` loggers) and
  `s3.bucket.credentials.<bucket>.access.key` / `.secret.key`;
- objects and lists of objects (`executor.shell.commands`, `executor.docker.auth.config`,
  `s3uploader.s3.content.headers`, …): JSON text, continued over several lines with a trailing
  `\` if needed;
- an empty value leaves a number, path, choice or JSON value unset.

Comments start with `#` or `!`; `=`, `:` or whitespace separates key and value; `\` escapes and
continues lines, as in Java.

## Changes from the Java daemons

- `.properties` and TOML files, several `--config` files, and `--check-config`.
- Unknown keys are reported as warnings instead of being ignored silently.
- Keys marked *unused* are read and checked so existing files keep loading, but nothing uses
  them: logs are rotated in-process, so no logrotate binary is run and no logrotate conf, state
  or cron file is written (`logrotateCommand`, `logrotateStateFile`, `logrotateConfDirectory`,
  which need not exist any more, `logrotateHourlyConfDirectory`, `cronDirectory`,
  `ignoreLogrotateOutput`).
- Keys marked *addition* are new. The executor's `s3UploaderBucket` and `s3UploaderKeyPattern`
  were documented but ignored by Java; they now serve as fallbacks when a task's data names no
  bucket or pattern.
- `s3Endpoint` applies to uploads too, not only downloads.
- S3 credentials are never required: without them the AWS default credential chain is used.
- `defaultHealthcheckIntervalSeconds` is accepted beside Java's `defaultHealthcheckInternvalSeconds`.
"#;

fn loaded_by(class: ConfigClass) -> &'static str {
    match class {
        ConfigClass::Base | ConfigClass::S3Base => "every daemon",
        ConfigClass::Executor => "the executor and the executor cleanup",
        ConfigClass::ExecutorCleanup => "the executor cleanup job",
        ConfigClass::S3Uploader => "the S3 uploader",
        ConfigClass::S3Downloader => "the S3 downloader",
    }
}

fn title(class: ConfigClass) -> &'static str {
    match class {
        ConfigClass::Base => "base",
        ConfigClass::S3Base => "s3base",
        ConfigClass::Executor => "executor",
        ConfigClass::ExecutorCleanup => "executor cleanup",
        ConfigClass::S3Uploader => "S3 uploader",
        ConfigClass::S3Downloader => "S3 downloader",
    }
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|")
}

fn code(text: &str) -> String {
    format!("`{}`", cell(text))
}

fn properties_cell(class: ConfigClass, spec: &KeySpec) -> String {
    spec.properties
        .iter()
        .map(|spelling| {
            // A spelling an earlier class also lists routes there in a consolidated file.
            let routed_elsewhere = ConfigClass::ALL
                .into_iter()
                .take_while(|owner| *owner != class)
                .any(|owner| {
                    owner
                        .keys()
                        .any(|other| other.properties.contains(spelling))
                });
            if routed_elsewhere {
                format!("{} *(own file)*", code(spelling))
            } else {
                code(spelling)
            }
        })
        .collect::<Vec<_>>()
        .join("<br>")
}

fn meaning_cell(spec: &KeySpec) -> String {
    let mut marks = Vec::new();
    match (spec.requirement, spec.default.is_empty()) {
        (Requirement::Required, _) => marks.push("**required**".to_owned()),
        (Requirement::ExistingDirectory, true) => marks.push("**required, must exist**".to_owned()),
        (Requirement::ExistingDirectory, false) => marks.push("**must exist**".to_owned()),
        (Requirement::Optional, _) => {}
    }
    match (spec.min, spec.max) {
        (Some(min), Some(max)) => marks.push(format!("**{min} to {max}**")),
        (Some(min), None) => marks.push(format!("**at least {min}**")),
        (None, Some(max)) => marks.push(format!("**at most {max}**")),
        (None, None) => {}
    }
    if spec.addition {
        marks.push("*addition*".to_owned());
    }
    if spec.unused {
        marks.push("*unused*".to_owned());
    }
    if spec.secret {
        marks.push("*credential*".to_owned());
    }
    let mut text = String::new();
    if !marks.is_empty() {
        text.push_str(&marks.join(", "));
        text.push_str(": ");
    }
    text.push_str(spec.meaning);
    match spec.kind {
        ValueKind::Json => text.push_str(". In `.properties`: JSON"),
        ValueKind::FileList => {
            text.push_str(". In `.properties`: comma-separated names, or a JSON list")
        }
        _ => {}
    }
    cell(&text)
}

fn yaml_cell(spec: &KeySpec) -> String {
    std::iter::once(spec.yaml)
        .chain(spec.yaml_aliases.iter().copied())
        .map(code)
        .collect::<Vec<_>>()
        .join("<br>")
}

fn default_cell(spec: &KeySpec) -> String {
    if spec.default.is_empty() {
        "—".to_owned()
    } else {
        code(spec.default)
    }
}

/// The whole reference page.
pub fn reference_markdown() -> String {
    let mut out = String::from(INTRO);
    for class in ConfigClass::ALL {
        let _ = write!(
            out,
            "\n## {} (`singularity.{}.*`)\n\nLoaded by {}. YAML section `{}`, TOML table `[{}]`",
            title(class),
            class.stem(),
            loaded_by(class),
            class.yaml_section(),
            class.toml_table(),
        );
        if class == ConfigClass::Base {
            out.push_str(". Base keys have no `.properties` prefix.\n\n");
        } else {
            let _ = writeln!(
                out,
                ", `.properties` prefix `{}`.\n",
                class.properties_prefix()
            );
        }
        out.push_str("| properties | YAML | TOML | default | meaning |\n|---|---|---|---|---|\n");
        for spec in class.keys() {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                properties_cell(class, spec),
                yaml_cell(spec),
                code(spec.toml),
                default_cell(spec),
                meaning_cell(spec),
            );
        }
    }
    out.push_str(
        "\n## Retired keys\n\nThese keys were read by earlier Java releases and are no longer used. \
         They are reported as unknown keys, with the note below.\n\n\
         | class | key | note |\n|---|---|---|\n",
    );
    for retired in RETIRED_KEYS {
        let _ = writeln!(
            out,
            "| {} | {} | {} |",
            title(retired.class),
            retired
                .names
                .iter()
                .map(|name| code(name))
                .collect::<Vec<_>>()
                .join("<br>"),
            cell(retired.note),
        );
    }
    out
}
