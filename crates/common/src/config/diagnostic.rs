//! Problems and warnings, each printed as one line naming the file, the key as written there,
//! the value and the reason.

use std::fmt;
use std::path::PathBuf;

/// A file, and a line in it when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file.
    pub file: PathBuf,
    /// 1-based line.
    pub line: Option<usize>,
}

impl Location {
    pub(crate) fn file(file: impl Into<PathBuf>) -> Self {
        Self {
            file: file.into(),
            line: None,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}", self.file.display()),
            None => write!(f, "{}", self.file.display()),
        }
    }
}

/// A key as written at a location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyAt {
    /// The file and line.
    pub at: Location,
    /// The key as written there.
    pub key: String,
}

/// One problem or warning about the configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Diagnostic {
    /// A file could not be read.
    #[error("{at}: cannot read: {error}")]
    Unreadable {
        /// The file.
        at: Location,
        /// The I/O error, as text.
        error: String,
    },
    /// A `--config` file whose extension names no known format.
    #[error("{at}: unknown format: the name must end in .properties, .yaml, .yml or .toml")]
    UnknownFormat {
        /// The file.
        at: Location,
    },
    /// A file that does not parse.
    #[error("{at}: syntax error: {message}")]
    Syntax {
        /// The file and the line of the error.
        at: Location,
        /// What the parser said.
        message: String,
    },
    /// A value of the wrong type, out of range, or naming a missing directory.
    #[error("{at}: {key} = {value}: {reason}")]
    Invalid {
        /// Where the value was set.
        at: Location,
        /// The key as written there.
        key: String,
        /// The value as written there (credentials redacted).
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// A required key that no file sets.
    #[error("{at}: {key} = (unset): required")]
    Required {
        /// The class's own file, or where it would be.
        at: Location,
        /// The key, spelled as that file would spell it.
        key: String,
    },
    /// The same key in two per-class files of one class.
    #[error("{at}: {key} = {value}: also set in {} as {}", earlier.at, earlier.key)]
    Conflict {
        /// The later file.
        at: Location,
        /// The key as written there.
        key: String,
        /// The value as written there.
        value: String,
        /// Where the key was set first.
        earlier: Box<KeyAt>,
    },
    /// A key no class knows (a warning).
    #[error("{at}: {key}: unknown key{}", hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default())]
    UnknownKey {
        /// Where it was written.
        at: Location,
        /// The key as written.
        key: String,
        /// `did you mean X?`, or the class the key belongs to.
        hint: Option<String>,
    },
}

/// Every problem found while loading, and the warnings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// Problems: any one of them makes the configuration invalid.
    pub problems: Vec<Diagnostic>,
    /// Warnings (unknown keys).
    pub warnings: Vec<Diagnostic>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for warning in &self.warnings {
            writeln!(f, "warning: {warning}")?;
        }
        for (index, problem) in self.problems.iter().enumerate() {
            if index > 0 {
                writeln!(f)?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}
