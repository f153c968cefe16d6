//! The user a task runs as.

use std::path::PathBuf;

use nix::unistd::{User, geteuid};
use singularity_common::records::SingularityTaskExecutorData;

use super::LaunchError;
use crate::run::RunAs;

/// The user to switch to: `executorData.user`, else `defaultRunAsUser`; `None` when that is
/// the executor's own user (or neither is set).
pub fn resolve_user(
    data: &SingularityTaskExecutorData,
    default_user: &str,
) -> Result<Option<(RunAs, PathBuf)>, LaunchError> {
    let wanted = data
        .executor_data
        .user
        .as_deref()
        .filter(|u| !u.is_empty())
        .unwrap_or(default_user);
    if wanted.is_empty() {
        return Ok(None);
    }
    let euid = geteuid();
    let me = User::from_uid(euid).ok().flatten();
    if me.as_ref().is_some_and(|me| me.name == wanted) {
        return Ok(None);
    }
    let user = User::from_name(wanted)
        .map_err(|source| LaunchError::LookUpUser {
            user: wanted.to_owned(),
            source,
        })?
        .ok_or_else(|| LaunchError::UnknownUser {
            user: wanted.to_owned(),
        })?;
    if user.uid == euid {
        return Ok(None);
    }
    if !euid.is_root() {
        return Err(LaunchError::NotRoot {
            user: wanted.to_owned(),
            euid: euid.as_raw(),
        });
    }
    Ok(Some((
        RunAs {
            name: user.name.clone(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        },
        user.dir,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::parse_executor_data;
    use crate::launch::tests::task;

    #[test]
    fn the_executor_user_needs_no_switch() {
        let data = parse_executor_data(&task(Some(r#"{"cmd":"x"}"#))).expect("valid");
        let me = User::from_uid(geteuid())
            .ok()
            .flatten()
            .expect("current user");
        assert!(resolve_user(&data, &me.name).expect("resolves").is_none());
        assert!(resolve_user(&data, "").expect("resolves").is_none());
        assert!(matches!(
            resolve_user(&data, "no-such-user-se-test"),
            Err(LaunchError::UnknownUser { .. })
        ));
    }
}
