//! Configuration of the agent daemons: typed, read from `.properties`, YAML or TOML, and
//! validated before any work starts.
//!
//! Each daemon loads a few classes (see [`ConfigClass`]): base and s3base always, then its
//! own. For each class, `load` reads the per-class files in the config directory
//! (`/etc/singularity.<stem>.{properties,yaml,toml}`), then each `--config` file in order,
//! later files replacing earlier ones key by key. A `--config` file named like a per-class
//! file holds that class; any other name is consolidated: YAML sections (`base:`, `s3:`,
//! `executor:`, `executorCleanup:`, `s3uploader:`, `s3downloader:`), TOML tables (the same,
//! with `executor_cleanup`), or `.properties` keys routed to their class by name.
//!
//! Every problem is collected and reported as `file: key = value: reason`, with the key as
//! that file spells it; unknown keys are warnings naming the closest known key. The full key
//! reference is `docs/configuration.md`, generated from [`keys`] by the `config-docs`
//! example.
//!
//! ```no_run
//! use singularity_common::config::{self, ConfigClass, ConfigSources};
//!
//! let sources = ConfigSources::default();
//! match config::load(&sources, ConfigClass::FOR_S3_UPLOADER) {
//!     Ok(loaded) => println!("{}", config::render_effective(&loaded)),
//!     Err(errors) => eprintln!("{errors}"),
//! }
//! ```

mod diagnostic;
pub mod docs;
pub mod keys;
mod layer;
mod load;
mod render;
mod source;
pub use source::MAX_CONFIG_FILE_BYTES;
pub mod types;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

pub use diagnostic::{ConfigErrors, Diagnostic, KeyAt, Location};
pub use keys::{ConfigClass, KeySpec, Requirement, ValueKind};
pub use types::*;

use crate::exit;

/// Where configuration is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSources {
    /// Directory searched for per-class files.
    pub config_dir: PathBuf,
    /// Files read after the directory's, in order; later ones win.
    pub files: Vec<PathBuf>,
}

impl Default for ConfigSources {
    fn default() -> Self {
        Self {
            config_dir: PathBuf::from(DEFAULT_CONFIG_DIR),
            files: Vec::new(),
        }
    }
}

/// The directory searched when `--config-dir` is not given.
pub const DEFAULT_CONFIG_DIR: &str = "/etc";

/// The configuration options every daemon takes.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ConfigArgs {
    /// Directory holding the singularity.CLASS.properties, .yaml or .toml files.
    #[arg(
        long = "config-dir",
        value_name = "DIR",
        default_value = DEFAULT_CONFIG_DIR,
        env = "SINGULARITY_CONFIG_DIR"
    )]
    pub config_dir: PathBuf,

    /// A config file read after the directory's, later ones winning; may be repeated.
    /// Named singularity.CLASS.EXT it holds one class, otherwise sections for several.
    #[arg(long = "config", value_name = "FILE")]
    pub config: Vec<PathBuf>,

    /// Print the effective configuration (credentials redacted) and exit: 0 when it is
    /// valid, 78 after listing every problem when it is not.
    #[arg(long = "check-config")]
    pub check_config: bool,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The options every daemon takes: where its configuration is, and how it logs.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct DaemonArgs {
    /// Where the configuration is read from, and `--check-config`.
    #[command(flatten)]
    pub config: ConfigArgs,

    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, env = "SINGULARITY_LOG_FORMAT")]
    pub log_format: LogFormat,
}

impl ConfigArgs {
    /// The sources these options name.
    pub fn sources(&self) -> ConfigSources {
        ConfigSources {
            config_dir: self.config_dir.clone(),
            files: self.config.clone(),
        }
    }
}

/// Where an effective value was set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueOrigin {
    /// The file.
    pub file: PathBuf,
    /// The line, for `.properties` files.
    pub line: Option<usize>,
    /// The key as written in that file.
    pub key: String,
}

/// The effective configuration of one daemon.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedConfig {
    /// Always loaded.
    pub base: BaseConfig,
    /// Loaded when asked for.
    pub s3: Option<S3BaseConfig>,
    /// Loaded when asked for.
    pub executor: Option<ExecutorConfig>,
    /// Loaded when asked for.
    pub executor_cleanup: Option<ExecutorCleanupConfig>,
    /// Loaded when asked for.
    pub s3uploader: Option<S3UploaderConfig>,
    /// Loaded when asked for.
    pub s3downloader: Option<S3DownloaderConfig>,
    /// Every file read, in merge order.
    pub files_read: Vec<PathBuf>,
    /// Unknown keys.
    pub warnings: Vec<Diagnostic>,
    /// Where each value that is not a default came from, by class and YAML key name.
    pub origins: BTreeMap<(ConfigClass, &'static str), ValueOrigin>,
}

impl LoadedConfig {
    /// Where `key` (YAML spelling) of `class` was set; `None` for defaults.
    pub fn origin(&self, class: ConfigClass, key: &str) -> Option<&ValueOrigin> {
        self.origins
            .iter()
            .find(|((c, k), _)| *c == class && *k == key)
            .map(|(_, origin)| origin)
    }
}

/// Loads base plus `classes`, or returns every problem found.
pub fn load(
    sources: &ConfigSources,
    classes: &[ConfigClass],
) -> Result<LoadedConfig, ConfigErrors> {
    load::load(sources, classes)
}

/// The effective configuration as one consolidated YAML document, credentials redacted, each
/// value that is not a default annotated with where it was set.
pub fn render_effective(config: &LoadedConfig) -> String {
    render::render(config)
}

/// `--check-config`: prints the effective configuration to `out` and returns
/// [`exit::OK`], or prints the warnings and every problem to `err` and returns
/// [`exit::CONFIG`]. Warnings go to `err` in both cases.
pub fn check_config(
    sources: &ConfigSources,
    classes: &[ConfigClass],
    out: &mut impl Write,
    err: &mut impl Write,
) -> u8 {
    match load(sources, classes) {
        Ok(config) => {
            for warning in &config.warnings {
                // A closed stderr must not hide a valid configuration.
                let _ = writeln!(err, "warning: {warning}");
            }
            match out
                .write_all(render_effective(&config).as_bytes())
                .and_then(|()| out.flush())
            {
                Ok(()) => exit::OK,
                Err(error) => {
                    let _ = writeln!(err, "cannot print the configuration: {error}");
                    exit::FAILURE
                }
            }
        }
        Err(errors) => {
            let count = errors.problems.len();
            let _ = writeln!(err, "{errors}");
            let _ = writeln!(
                err,
                "the configuration is invalid: {count} problem{}",
                if count == 1 { "" } else { "s" }
            );
            exit::CONFIG
        }
    }
}
