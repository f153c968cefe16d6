//! The start-up every daemon binary shares: `--check-config`, tracing, loading and logging the
//! configuration.

use std::io::Write as _;

use singularity_common::config::{self, ConfigArgs, ConfigClass, LoadedConfig};
use singularity_common::exit;

use crate::telemetry::{LogFormat, init_tracing, log_startup};

/// Runs the common start-up of a daemon: with `--check-config`, prints the report and returns
/// its exit code; otherwise initialises tracing, loads `classes`, logs the version, the files
/// read and every warning, and returns the configuration. `Err(code)` means "exit with `code`"
/// (0 after a successful `--check-config`, 78 for an invalid configuration, 1 when tracing
/// cannot start).
pub fn start_daemon(
    service: &str,
    version: &str,
    args: &ConfigArgs,
    classes: &[ConfigClass],
    format: LogFormat,
    default_filter: &str,
) -> Result<LoadedConfig, u8> {
    let sources = args.sources();
    if args.check_config {
        return Err(config::check_config(
            &sources,
            classes,
            &mut std::io::stdout().lock(),
            &mut std::io::stderr().lock(),
        ));
    }
    if let Err(error) = init_tracing(service, format, default_filter) {
        let _ = writeln!(std::io::stderr(), "{service}: {error}");
        return Err(exit::FAILURE);
    }
    let loaded = match config::load(&sources, classes) {
        Ok(loaded) => loaded,
        Err(errors) => {
            let _ = writeln!(std::io::stderr(), "{errors}");
            tracing::error!("the configuration is invalid");
            return Err(exit::CONFIG);
        }
    };
    log_startup(service, version, &loaded.files_read);
    for warning in &loaded.warnings {
        tracing::warn!("{warning}");
    }
    Ok(loaded)
}
