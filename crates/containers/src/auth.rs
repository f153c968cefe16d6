//! Registry credentials for pulls (`dockerAuthConfig`): explicit ones, or the entry for the
//! image's registry in a docker config file (`~/.docker/config.json`).

use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use singularity_common::config::DockerAuthConfig;

use crate::engine::RegistryAuth;

/// Docker Hub's key in docker config files.
const DOCKER_HUB: &str = "https://index.docker.io/v1/";

/// Where pull credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthSource {
    /// The same credentials for every registry.
    Explicit(RegistryAuth),
    /// The `auths` of a docker config file, looked up per registry at pull time.
    DockerConfig(PathBuf),
}

impl AuthSource {
    /// The source `dockerAuthConfig` describes; `home` holds `.docker/config.json`.
    pub fn from_config(config: &DockerAuthConfig, home: Option<&Path>) -> Option<Self> {
        if config.from_docker_config {
            return home.map(|h| Self::DockerConfig(h.join(".docker").join("config.json")));
        }
        if config.username.is_none() && config.password.is_none() {
            return None;
        }
        Some(Self::Explicit(RegistryAuth {
            username: config.username.clone(),
            password: config.password.as_ref().map(|p| p.expose().to_owned()),
            auth: None,
            email: config.email.clone(),
            server_address: config.server_address.clone(),
        }))
    }

    /// The credentials for pulling `repository`; `None` pulls anonymously. An unreadable
    /// config file is logged and means anonymous.
    pub fn for_repository(&self, repository: &str) -> Option<RegistryAuth> {
        match self {
            Self::Explicit(auth) => Some(auth.clone()),
            Self::DockerConfig(path) => {
                let text = match std::fs::read_to_string(path) {
                    Ok(text) => text,
                    Err(error) => {
                        tracing::warn!(path = %path.display(), %error, "cannot read the docker config; pulling without credentials");
                        return None;
                    }
                };
                auth_from_docker_config(&text, registry_of(repository))
            }
        }
    }
}

/// The registry a repository lives in, as docker config files key it: the first path
/// component when it looks like a host (has a `.` or `:`, or is `localhost`), else Docker Hub.
pub fn registry_of(repository: &str) -> &str {
    match repository.split_once('/') {
        Some((first, _)) if first.contains(['.', ':']) || first == "localhost" => first,
        _ => DOCKER_HUB,
    }
}

/// The `auths` entry for `registry` in a docker config file, with `auth` decoded into user
/// and password (the engine wants them separately).
pub fn auth_from_docker_config(config: &str, registry: &str) -> Option<RegistryAuth> {
    let value: serde_json::Value = serde_json::from_str(config).ok()?;
    let auths = value.get("auths")?.as_object()?;
    let host = |key: &str| -> String {
        let key = key
            .trim_start_matches("https://")
            .trim_start_matches("http://");
        key.split('/').next().unwrap_or(key).to_owned()
    };
    let wanted = host(registry);
    let (key, entry) = auths
        .iter()
        .find(|(key, _)| key.as_str() == registry)
        .or_else(|| auths.iter().find(|(key, _)| host(key) == wanted))?;
    let encoded = entry.get("auth")?.as_str()?;
    let decoded = String::from_utf8(STANDARD.decode(encoded).ok()?).ok()?;
    let (username, password) = decoded.split_once(':')?;
    Some(RegistryAuth {
        username: Some(username.to_owned()),
        password: Some(password.to_owned()),
        auth: None,
        email: entry
            .get("email")
            .and_then(|e| e.as_str())
            .map(str::to_owned),
        server_address: Some(key.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"{"auths": {
        "127.0.0.1:5000": {"auth": "dXNlcjpwYXNzOndvcmQ="},
        "https://index.docker.io/v1/": {"auth": "aHViOnNlY3JldA=="}
    }}"#;

    #[test]
    fn registries_are_found_by_host() {
        assert_eq!(registry_of("127.0.0.1:5000/test/busybox"), "127.0.0.1:5000");
        assert_eq!(
            registry_of("registry.example.com/a/b"),
            "registry.example.com"
        );
        assert_eq!(registry_of("localhost/a"), "localhost");
        assert_eq!(registry_of("library/busybox"), DOCKER_HUB);
        assert_eq!(registry_of("busybox"), DOCKER_HUB);
    }

    #[test]
    fn docker_config_entries_are_decoded_per_registry() {
        let local = auth_from_docker_config(CONFIG, "127.0.0.1:5000").expect("entry");
        assert_eq!(local.username.as_deref(), Some("user"));
        assert_eq!(local.password.as_deref(), Some("pass:word"));
        let hub = auth_from_docker_config(CONFIG, DOCKER_HUB).expect("entry");
        assert_eq!(hub.username.as_deref(), Some("hub"));
        assert_eq!(auth_from_docker_config(CONFIG, "other.example.com"), None);
        assert_eq!(auth_from_docker_config("not json", DOCKER_HUB), None);
    }

    #[test]
    fn explicit_credentials_apply_to_every_registry() {
        let config = DockerAuthConfig {
            username: Some("u".into()),
            password: Some(singularity_common::config::Secret::new("p")),
            ..DockerAuthConfig::default()
        };
        let source = AuthSource::from_config(&config, None).expect("source");
        let auth = source.for_repository("any/thing").expect("auth");
        assert_eq!(auth.password.as_deref(), Some("p"));
        assert_eq!(
            AuthSource::from_config(&DockerAuthConfig::default(), None),
            None
        );
    }
}
