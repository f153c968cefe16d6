//! `singularity-executor __exec`: the step between the executor and a task command that
//! must run as another user or with a soft open-files limit.
//!
//! The executor spawns its own binary with
//! `__exec [--user NAME --uid UID --gid GID] [--nofile N] -- PROGRAM ARGS...`, already in
//! the task's process group, working directory and environment. The helper sets the soft
//! `RLIMIT_NOFILE` (raising the hard limit too when it can, i.e. as root), then
//! `initgroups`, `setgid`, `setuid`, and finally `exec`s the program, so the task's main
//! pid is the program itself. The exec goes through the standard library, which restores
//! the default signal dispositions and mask first: the Rust runtime of this helper ignores
//! SIGPIPE, and a task must not inherit that. Nothing here needs `sudo` or unsafe code. On
//! failure it prints one line to stderr (the task's service log) and exits 127.

use std::ffi::{CString, OsString};
use std::io::{self, Write as _};
use std::num::{ParseIntError, TryFromIntError};
use std::os::unix::process::CommandExt as _;
use std::process::ExitCode;

use nix::errno::Errno;
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use nix::unistd::{Gid, Uid, initgroups, setgid, setuid};

use crate::run::RunAs;

/// The hidden subcommand.
pub const SUBCOMMAND: &str = "__exec";

/// Exit code when the helper cannot run the program (as a shell reports "not found").
pub const HELPER_FAILED: u8 = 127;

/// Arguments to give the executor binary so that it runs `argv` with these settings.
pub fn helper_args(run_as: Option<&RunAs>, nofile: Option<u64>, argv: &[&str]) -> Vec<String> {
    let mut args = vec![SUBCOMMAND.to_owned()];
    if let Some(user) = run_as {
        args.extend([
            "--user".to_owned(),
            user.name.clone(),
            "--uid".to_owned(),
            user.uid.to_string(),
            "--gid".to_owned(),
            user.gid.to_string(),
        ]);
    }
    if let Some(n) = nofile {
        args.extend(["--nofile".to_owned(), n.to_string()]);
    }
    args.push("--".to_owned());
    args.extend(argv.iter().map(|a| (*a).to_owned()));
    args
}

/// Why the helper cannot run the program; printed to the task's service log.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The arguments end before `--`.
    #[error("missing `--` before the program")]
    MissingSeparator,
    /// An option is not UTF-8.
    #[error("unexpected argument {argument:?}")]
    NotUtf8 {
        /// The argument.
        argument: OsString,
    },
    /// An option without its value.
    #[error("{option} needs a value")]
    MissingValue {
        /// The option.
        option: String,
    },
    /// A numeric option that is not a number.
    #[error("{option} {value:?}: {source}")]
    NotANumber {
        /// The option.
        option: String,
        /// Its value.
        value: String,
        /// The cause.
        source: ParseIntError,
    },
    /// A user or group id beyond 32 bits.
    #[error(transparent)]
    IdOutOfRange(#[from] TryFromIntError),
    /// An option the helper does not know.
    #[error("unknown option {option}")]
    UnknownOption {
        /// The option.
        option: String,
    },
    /// Only some of `--user`, `--uid`, `--gid`.
    #[error("--user, --uid and --gid go together")]
    IncompleteUser,
    /// Nothing after `--`.
    #[error("no program to run")]
    NoProgram,
    /// A user name with a NUL byte.
    #[error("invalid user name {name:?}")]
    InvalidUserName {
        /// The name.
        name: String,
    },
    /// `initgroups` failed.
    #[error("initgroups({user}, {gid}): {source}")]
    InitGroups {
        /// The user.
        user: String,
        /// Its primary group.
        gid: u32,
        /// The cause.
        source: Errno,
    },
    /// `setgid` failed.
    #[error("setgid({gid}): {source}")]
    SetGid {
        /// The group.
        gid: u32,
        /// The cause.
        source: Errno,
    },
    /// `setuid` failed.
    #[error("setuid({uid}): {source}")]
    SetUid {
        /// The user.
        uid: u32,
        /// The cause.
        source: Errno,
    },
    /// The open-files limit could not be read.
    #[error("getrlimit: {source}")]
    GetLimit {
        /// The cause.
        source: Errno,
    },
    /// The open-files limit could not be set.
    #[error("cannot set the open files limit to {limit}: {source}")]
    SetLimit {
        /// The limit asked for.
        limit: u64,
        /// The cause.
        source: Errno,
    },
    /// `exec` failed.
    #[error("cannot run {program:?}: {source}")]
    Exec {
        /// The program.
        program: OsString,
        /// The cause.
        source: io::Error,
    },
}

/// What the helper was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperRequest {
    /// Switch to this user.
    pub run_as: Option<RunAs>,
    /// Soft open-files limit.
    pub nofile: Option<u64>,
    /// Program and arguments.
    pub argv: Vec<OsString>,
}

/// Parses the arguments after `__exec`.
pub fn parse_args(args: impl IntoIterator<Item = OsString>) -> Result<HelperRequest, HelperError> {
    let mut args = args.into_iter();
    let (mut user, mut uid, mut gid, mut nofile) = (None, None, None, None);
    loop {
        let Some(arg) = args.next() else {
            return Err(HelperError::MissingSeparator);
        };
        let arg = arg
            .into_string()
            .map_err(|argument| HelperError::NotUtf8 { argument })?;
        if arg == "--" {
            break;
        }
        let value = args
            .next()
            .and_then(|v| v.into_string().ok())
            .ok_or_else(|| HelperError::MissingValue {
                option: arg.clone(),
            })?;
        let number = |v: &str| {
            v.parse::<u64>().map_err(|source| HelperError::NotANumber {
                option: arg.clone(),
                value: v.to_owned(),
                source,
            })
        };
        match arg.as_str() {
            "--user" => user = Some(value),
            "--uid" => uid = Some(u32::try_from(number(&value)?)?),
            "--gid" => gid = Some(u32::try_from(number(&value)?)?),
            "--nofile" => nofile = Some(number(&value)?),
            other => {
                return Err(HelperError::UnknownOption {
                    option: other.to_owned(),
                });
            }
        }
    }
    let run_as = match (user, uid, gid) {
        (Some(name), Some(uid), Some(gid)) => Some(RunAs { name, uid, gid }),
        (None, None, None) => None,
        _ => return Err(HelperError::IncompleteUser),
    };
    let argv: Vec<OsString> = args.collect();
    if argv.is_empty() {
        return Err(HelperError::NoProgram);
    }
    Ok(HelperRequest {
        run_as,
        nofile,
        argv,
    })
}

/// Runs the helper; returns only on failure.
pub fn main(args: impl IntoIterator<Item = OsString>) -> ExitCode {
    let error = match parse_args(args) {
        Ok(request) => match exec(&request) {
            Ok(never) => match never {},
            Err(error) => error,
        },
        Err(error) => error,
    };
    let _ = writeln!(
        std::io::stderr(),
        "singularity-executor {SUBCOMMAND}: {error}"
    );
    ExitCode::from(HELPER_FAILED)
}

fn exec(request: &HelperRequest) -> Result<std::convert::Infallible, HelperError> {
    if let Some(n) = request.nofile {
        set_nofile(n)?;
    }
    if let Some(user) = &request.run_as {
        let name =
            CString::new(user.name.as_bytes()).map_err(|_| HelperError::InvalidUserName {
                name: user.name.clone(),
            })?;
        let gid = Gid::from_raw(user.gid);
        initgroups(&name, gid).map_err(|source| HelperError::InitGroups {
            user: user.name.clone(),
            gid: user.gid,
            source,
        })?;
        setgid(gid).map_err(|source| HelperError::SetGid {
            gid: user.gid,
            source,
        })?;
        setuid(Uid::from_raw(user.uid)).map_err(|source| HelperError::SetUid {
            uid: user.uid,
            source,
        })?;
    }
    let (program, args) = request.argv.split_first().ok_or(HelperError::NoProgram)?;
    // Returns only on failure.
    let source = std::process::Command::new(program).args(args).exec();
    Err(HelperError::Exec {
        program: program.clone(),
        source,
    })
}

/// Sets the soft open-files limit to `n`. A hard limit below `n` is raised when allowed
/// (root); otherwise that is an error, as `ulimit -Sn` above the hard limit is.
fn set_nofile(n: u64) -> Result<(), HelperError> {
    let (_, hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|source| HelperError::GetLimit { source })?;
    let hard = hard.max(n);
    setrlimit(Resource::RLIMIT_NOFILE, n, hard)
        .map_err(|source| HelperError::SetLimit { limit: n, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(args: &[String]) -> Vec<OsString> {
        args.iter().map(OsString::from).collect()
    }

    #[test]
    fn arguments_round_trip() {
        let user = RunAs {
            name: "app".into(),
            uid: 1001,
            gid: 1002,
        };
        let args = helper_args(Some(&user), Some(4096), &["/bin/sh", "-c", "echo --user"]);
        assert_eq!(args[0], SUBCOMMAND);
        let request = parse_args(os(&args[1..])).expect("parses");
        assert_eq!(request.run_as, Some(user));
        assert_eq!(request.nofile, Some(4096));
        assert_eq!(
            request.argv,
            vec![
                OsString::from("/bin/sh"),
                OsString::from("-c"),
                OsString::from("echo --user")
            ]
        );
    }

    #[test]
    fn incomplete_arguments_are_refused() {
        assert!(
            parse_args(os(&[
                "--user".into(),
                "x".into(),
                "--".into(),
                "true".into()
            ]))
            .is_err()
        );
        assert!(parse_args(os(&["--nofile".into(), "10".into()])).is_err());
        assert!(parse_args(os(&["--".into()])).is_err());
    }
}
