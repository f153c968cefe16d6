//! Artifact signature verification: S3 artifacts are matched with the signatures naming them
//! (`artifactFilename`), and `artifactSignatureVerificationCommand` checks each pair, reading
//! both files from the artifact cache.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::path::Path;
use std::process::Stdio;

use singularity_common::records::{RemoteArtifact, S3Artifact, S3ArtifactSignature};

use super::{StagingContext, StagingError};

const ARTIFACT_PATH: &str = "{artifactPath}";
const SIGNATURE_PATH: &str = "{artifactSignaturePath}";

/// Checks `signatures` against `artifacts`, as Singularity does: unmatched signatures and
/// unsigned artifacts fail only when configured to; without signatures nothing runs; a pair
/// whose artifact is not in the cache is skipped with a warning; a rejected signature fails
/// when `failTaskOnInvalidArtifactSignature` is set. The command's output is appended to
/// `<taskDir>/<signatureVerifyOut>`.
pub(crate) async fn verify(
    ctx: &StagingContext,
    artifacts: &[S3Artifact],
    signatures: &[S3ArtifactSignature],
) -> Result<(), StagingError> {
    let mut by_filename: BTreeMap<&str, &S3Artifact> = BTreeMap::new();
    for artifact in artifacts {
        if by_filename.contains_key(artifact.filename.as_str()) {
            tracing::warn!(filename = %artifact.filename, "duplicate artifact file name; using the first");
        } else {
            by_filename.insert(&artifact.filename, artifact);
        }
    }
    let mut by_artifact: BTreeMap<&str, &S3ArtifactSignature> = BTreeMap::new();
    for signature in signatures {
        if by_artifact.contains_key(signature.artifact_filename.as_str()) {
            tracing::warn!(artifact = %signature.artifact_filename, "duplicate signature for one artifact; using the first");
        } else {
            by_artifact.insert(&signature.artifact_filename, signature);
        }
    }

    let unmatched: Vec<String> = by_artifact
        .keys()
        .filter(|name| !by_filename.contains_key(*name))
        .map(|name| (*name).to_owned())
        .collect();
    if !unmatched.is_empty() {
        if ctx.executor.fail_on_signature_with_no_matching_artifact {
            return Err(StagingError::SignatureWithoutArtifact {
                filenames: unmatched,
            });
        }
        tracing::warn!(signatures = ?unmatched, "no matching artifact(s) found for signature(s)");
    }
    let unsigned: Vec<String> = by_filename
        .keys()
        .filter(|name| !by_artifact.contains_key(*name))
        .map(|name| (*name).to_owned())
        .collect();
    if !unsigned.is_empty() {
        if ctx.executor.fail_on_artifact_with_no_matching_signature {
            return Err(StagingError::ArtifactWithoutSignature {
                filenames: unsigned,
            });
        }
        if !signatures.is_empty() {
            tracing::warn!(artifacts = ?unsigned, "no signature(s) found for artifact(s)");
        }
    }
    if signatures.is_empty() {
        return Ok(());
    }

    for signature in signatures {
        if let Some(artifact) = by_filename.get(signature.artifact_filename.as_str()) {
            check_pair(ctx, artifact, signature).await?;
        }
    }
    Ok(())
}

async fn check_pair(
    ctx: &StagingContext,
    artifact: &S3Artifact,
    signature: &S3ArtifactSignature,
) -> Result<(), StagingError> {
    let cache = &ctx.s3.artifact_cache_directory;
    let artifact_path = cache.join(artifact.cache_name());
    let signature_path = cache.join(signature.cache_name());
    if !tokio::fs::try_exists(&artifact_path).await.unwrap_or(false) {
        tracing::warn!(
            artifact = %artifact_path.display(),
            signature = %signature.filename,
            "artifact not in the cache; not verifying its signature"
        );
        return Ok(());
    }
    let command = command_line(
        &ctx.executor.artifact_signature_verification_command,
        &artifact_path,
        &signature_path,
    );
    let Some((program, args)) = command.split_first() else {
        return Err(StagingError::VerificationCommand {
            command,
            source: std::io::Error::other("artifactSignatureVerificationCommand is empty"),
        });
    };
    let output_path = ctx.task_dir.join(&ctx.executor.signature_verify_out);
    let spawn_error = |source| StagingError::VerificationCommand {
        command: command.clone(),
        source,
    };
    let output = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&output_path)
        .map_err(|e| StagingError::io("open", &output_path, e))?;
    let errors = output
        .try_clone()
        .map_err(|e| StagingError::io("open", &output_path, e))?;
    let status = tokio::process::Command::new(program)
        .args(args)
        .current_dir(&ctx.task_dir)
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .kill_on_drop(true)
        .status()
        .await
        .map_err(spawn_error)?;
    if status.success() {
        tracing::info!(
            signature = %signature.filename,
            artifact = %signature.artifact_filename,
            "artifact signature is valid"
        );
        return Ok(());
    }
    tracing::error!(
        signature = %signature.filename,
        artifact = %signature.artifact_filename,
        %status,
        "failed to validate artifact signature"
    );
    if ctx.executor.fail_task_on_invalid_artifact_signature {
        return Err(StagingError::InvalidSignature {
            artifact: artifact_path,
            status: status.to_string(),
            output: output_path,
        });
    }
    Ok(())
}

fn command_line(template: &[String], artifact: &Path, signature: &Path) -> Vec<String> {
    let artifact = artifact.to_string_lossy();
    let signature = signature.to_string_lossy();
    template
        .iter()
        .map(|arg| {
            arg.replace(ARTIFACT_PATH, &artifact)
                .replace(SIGNATURE_PATH, &signature)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_replaced() {
        let template = vec![
            "/usr/bin/gpg".to_owned(),
            "--verify".to_owned(),
            "{artifactSignaturePath}".to_owned(),
            "x={artifactPath}".to_owned(),
        ];
        assert_eq!(
            command_line(&template, Path::new("/c/a.tgz"), Path::new("/c/a.tgz.asc")),
            ["/usr/bin/gpg", "--verify", "/c/a.tgz.asc", "x=/c/a.tgz"]
        );
    }
}
