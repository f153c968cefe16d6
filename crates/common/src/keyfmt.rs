//! S3 key formatting, in Singularity's two stages.
//!
//! Stage 1 ([`format_task_key_pattern`]) runs when the executor or the cleanup writes upload
//! metadata: it expands the task-level tokens `%requestId`, `%group`, `%tag`, `%deployId`,
//! `%host` and `%taskId`. Stage 2 ([`format_upload_key`]) runs in the uploader for each file:
//! `%filename`, `%fileext`, `%guid`, `%host`, `%Y`, `%m`, `%d`, `%H`, `%s`, `%index`.
//!
//! Each token is a plain text replacement of all its occurrences, applied one after the other
//! in that fixed order, exactly as Singularity does. The order shows through: text inserted by
//! one token can contain a later token (a file named `a%sb` gets the mtime spliced in), and a
//! stage-1 token left unexpanded is partly eaten by stage 2 (`%deployId` becomes `<day>eployId`).

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

use crate::naming::DEFAULT_REQUEST_GROUP;
use crate::task_id::TaskId;

/// The values of the stage-1 tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskKeyTokens {
    /// `%requestId`.
    pub request_id: String,
    /// `%group`; `default` when `None`.
    pub group: Option<String>,
    /// `%tag` (the logging tag); empty when `None`.
    pub tag: Option<String>,
    /// `%deployId`.
    pub deploy_id: String,
    /// `%host`: the task id's sanitized host.
    pub host: String,
    /// `%taskId`: the full task id string.
    pub task_id: String,
}

impl TaskKeyTokens {
    /// The tokens of a task, with its request group and logging tag.
    pub fn new(task_id: &TaskId, group: Option<&str>, tag: Option<&str>) -> Self {
        TaskKeyTokens {
            request_id: task_id.request_id.clone(),
            group: group.map(str::to_owned),
            tag: tag.map(str::to_owned),
            deploy_id: task_id.deploy_id.clone(),
            host: task_id.sanitized_host.clone(),
            task_id: task_id.to_string(),
        }
    }
}

/// Stage 1: expands `%requestId`, `%group`, `%tag`, `%deployId`, `%host`, `%taskId`, in that
/// order.
pub fn format_task_key_pattern(pattern: &str, tokens: &TaskKeyTokens) -> String {
    pattern
        .replace("%requestId", &tokens.request_id)
        .replace(
            "%group",
            tokens.group.as_deref().unwrap_or(DEFAULT_REQUEST_GROUP),
        )
        .replace("%tag", tokens.tag.as_deref().unwrap_or(""))
        .replace("%deployId", &tokens.deploy_id)
        .replace("%host", &tokens.host)
        .replace("%taskId", &tokens.task_id)
}

/// The values of the stage-2 tokens for one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadKeyContext<'a> {
    /// The file's basename (after compression, with its `.gz`). A path is cut to its last
    /// `/`-separated component.
    pub filename: &'a str,
    /// The file's modification time, epoch milliseconds.
    pub mtime_millis: i64,
    /// The uploader's hostname; `%host` is left as is without one.
    pub hostname: Option<&'a str>,
    /// The file's 0-based position in the current pass.
    pub index: usize,
    /// The `%guid` value; a fresh random UUID when `None`.
    pub guid: Option<String>,
}

/// Stage 2 in the local time zone, as the uploader runs it.
pub fn format_upload_key(pattern: &str, ctx: &UploadKeyContext<'_>) -> String {
    format_upload_key_in(pattern, ctx, &chrono::Local)
}

/// Stage 2 with the date tokens taken in `tz`.
///
/// An mtime outside chrono's range (hundreds of thousands of years) is taken as the epoch.
pub fn format_upload_key_in<Tz: TimeZone>(
    pattern: &str,
    ctx: &UploadKeyContext<'_>,
    tz: &Tz,
) -> String {
    let filename = ctx.filename.rsplit('/').next().unwrap_or(ctx.filename);
    let mut key = pattern.replace("%filename", filename);
    if let Some(dot) = filename.rfind('.') {
        key = key.replace("%fileext", &filename[dot..]);
    }
    if key.contains("%guid") {
        let guid = ctx
            .guid
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        key = key.replace("%guid", &guid);
    }
    if let Some(hostname) = ctx.hostname {
        key = key.replace("%host", hostname);
    }
    let time = DateTime::<Utc>::from_timestamp_millis(ctx.mtime_millis)
        .unwrap_or_default()
        .with_timezone(tz);
    key.replace("%Y", &format!("{:04}", time.year()))
        .replace("%m", &format!("{:02}", time.month()))
        .replace("%d", &format!("{:02}", time.day()))
        .replace("%H", &format!("{:02}", time.hour()))
        .replace("%s", &ctx.mtime_millis.to_string())
        .replace("%index", &ctx.index.to_string())
}

/// The part of a key pattern before any per-file token: the pattern cut at the first of
/// `%index`, `%s`, `%filename`, `%fileext`. Singularity lists a task's logs by this prefix.
pub fn key_prefix_for_listing(pattern: &str) -> &str {
    let cut = ["%index", "%s", "%filename", "%fileext"]
        .iter()
        .filter_map(|token| pattern.find(token))
        .min()
        .unwrap_or(pattern.len());
    &pattern[..cut]
}
