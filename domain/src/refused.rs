//! Why a change to a setting (a registry, a target) was refused.

/// Why a change was refused; nothing changed.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The change is wrong where `path` (a JSON pointer into it) points.
    #[error("{message}")]
    Invalid {
        /// JSON pointer to the field.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A plugin or the database failed.
    #[error("{0}")]
    Failed(String),
}

/// A change wrong at `path`.
pub(crate) fn invalid(path: impl Into<String>, message: impl Into<String>) -> Refused {
    Refused::Invalid {
        path: path.into(),
        message: message.into(),
    }
}
