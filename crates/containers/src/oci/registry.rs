//! Registry pulls without a daemon, over the OCI distribution API (`oci-client`): the
//! manifest (a multi-platform index resolves to this host's platform), the configuration and
//! each layer blob, digests checked, then the layers unpacked into the [`ImageStore`].
//! Loopback registries (`localhost`, `127.*`) are spoken to in plain HTTP, as Docker treats
//! them; every other registry over HTTPS.

use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth as ClientAuth;
use oci_client::{Client, Reference};

use super::OciError;
use super::layers::apply_layer;
use super::store::{ImageStore, StoredImage};
use crate::RegistryAuth;
use crate::image::{PullPolicy, with_attempts};

/// [`pull`] with `policy.attempts` attempts inside `policy.timeout`, as Docker pulls are
/// made: only a transient failure (the network, a 5xx or 429 answer) is tried again.
pub async fn pull_with_policy(
    store: &ImageStore,
    reference: &str,
    auth: Option<&RegistryAuth>,
    policy: PullPolicy,
) -> Result<StoredImage, OciError> {
    let transient = |error: &OciError| {
        matches!(
            error,
            OciError::Pull {
                transient: true,
                ..
            }
        )
    };
    with_attempts(
        reference,
        policy,
        || pull(store, reference, auth),
        transient,
    )
    .await
    .unwrap_or_else(|| {
        Err(OciError::Pull {
            image: reference.to_owned(),
            reason: format!("no answer within {}s", policy.timeout.as_secs()),
            transient: true,
        })
    })
}

/// Pulls `reference` into `store` (the layers only when the store lacks the image) with
/// `auth` when given; returns the stored image.
pub async fn pull(
    store: &ImageStore,
    reference: &str,
    auth: Option<&RegistryAuth>,
) -> Result<StoredImage, OciError> {
    let fail = |reason: String| OciError::Pull {
        image: reference.to_owned(),
        reason,
        transient: false,
    };
    let failed = |error: OciDistributionError| OciError::Pull {
        image: reference.to_owned(),
        transient: is_transient(&error),
        reason: error.to_string(),
    };
    let parsed: Reference = reference
        .parse()
        .map_err(|e| fail(format!("invalid reference: {e}")))?;
    let registry = parsed.resolve_registry().to_owned();
    let protocol = if is_loopback(&registry) {
        ClientProtocol::HttpsExcept(vec![registry.clone()])
    } else {
        ClientProtocol::Https
    };
    let client = Client::new(ClientConfig {
        protocol,
        ..ClientConfig::default()
    });
    let credentials = client_auth(auth);
    let (manifest, _digest, config) = client
        .pull_manifest_and_config(&parsed, &credentials)
        .await
        .map_err(failed)?;
    let id = manifest.config.digest.clone();
    if let Some(image) = store.get(&id)? {
        return Ok(image);
    }
    let downloads = tempfile::Builder::new()
        .prefix("pull-")
        .tempdir_in(prepare_tmp(store)?)
        .map_err(|source| OciError::Store {
            what: "create a directory in",
            path: store.dir().join("tmp"),
            source,
        })?;
    let mut files = Vec::new();
    for (index, layer) in manifest.layers.iter().enumerate() {
        let path = downloads.path().join(format!("layer-{index}"));
        let file = tokio::fs::File::create(&path)
            .await
            .map_err(|source| OciError::Store {
                what: "create",
                path: path.clone(),
                source,
            })?;
        client
            .pull_blob(&parsed, layer, file)
            .await
            .map_err(|e| OciError::Pull {
                image: reference.to_owned(),
                transient: is_transient(&e),
                reason: format!("layer {}: {e}", layer.digest),
            })?;
        files.push((layer.digest.clone(), path));
    }
    let store = store.clone();
    let image = tokio::task::spawn_blocking(move || {
        let image = store.unpack(&id, config.as_bytes(), |rootfs, budget| {
            for (digest, path) in &files {
                let file = std::fs::File::open(path).map_err(|source| OciError::Store {
                    what: "open",
                    path: path.clone(),
                    source,
                })?;
                apply_layer(file, rootfs, digest, budget)?;
            }
            Ok(())
        });
        drop(downloads);
        image
    })
    .await
    .map_err(|e| fail(e.to_string()))??;
    Ok(image)
}

fn prepare_tmp(store: &ImageStore) -> Result<std::path::PathBuf, OciError> {
    let tmp = store.dir().join("tmp");
    std::fs::create_dir_all(&tmp).map_err(|source| OciError::Store {
        what: "create",
        path: tmp.clone(),
        source,
    })?;
    Ok(tmp)
}

/// Whether `registry` (`host[:port]`) is on the loopback interface.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => registry,
    };
    host == "localhost" || host.starts_with("127.") || host == "[::1]"
}

/// Whether another attempt may fare better.
fn is_transient(error: &OciDistributionError) -> bool {
    match error {
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => true,
        OciDistributionError::ServerError { code, .. } => *code >= 500 || *code == 429,
        _ => false,
    }
}

/// The credentials `oci-client` takes: user and password, or the base64 `user:password`
/// docker config files store; anonymous otherwise.
fn client_auth(auth: Option<&RegistryAuth>) -> ClientAuth {
    let Some(auth) = auth else {
        return ClientAuth::Anonymous;
    };
    if let (Some(user), Some(password)) = (&auth.username, &auth.password) {
        return ClientAuth::Basic(user.clone(), password.clone());
    }
    auth.auth
        .as_deref()
        .and_then(|encoded| {
            base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .ok()
        })
        .and_then(|decoded| String::from_utf8(decoded).ok())
        .and_then(|pair| {
            pair.split_once(':')
                .map(|(u, p)| ClientAuth::Basic(u.to_owned(), p.to_owned()))
        })
        .unwrap_or(ClientAuth::Anonymous)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_plain_http() {
        assert!(is_loopback("127.0.0.1:5000"));
        assert!(is_loopback("localhost:5000"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("registry.example.com:5000"));
        assert!(!is_loopback("docker.io"));
    }

    #[test]
    fn credentials_from_either_form() {
        let mut auth = RegistryAuth {
            username: Some("u".into()),
            password: Some("p".into()),
            auth: None,
            email: None,
            server_address: None,
        };
        assert!(
            matches!(client_auth(Some(&auth)), ClientAuth::Basic(u, p) if u == "u" && p == "p")
        );
        auth.username = None;
        auth.password = None;
        auth.auth = Some(base64::engine::general_purpose::STANDARD.encode("a:b:c"));
        assert!(
            matches!(client_auth(Some(&auth)), ClientAuth::Basic(u, p) if u == "a" && p == "b:c")
        );
        assert!(matches!(client_auth(None), ClientAuth::Anonymous));
    }
}
