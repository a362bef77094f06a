//! The failure classes of a run and their exit codes. Each class has one documented, distinct code
//! (README "Exit codes"), so a CI step can tell a bad config from a failed build from a registry outage.

use std::fmt;

use crate::context::ContextError;

/// Process exit codes. Stable: scripts depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    Success = 0,
    /// A bug or an unexpected condition; the message says what.
    Internal = 1,
    /// Bad flags, bad environment, an invalid SHA or tag.
    Usage = 2,
    /// The build context could not be read (missing Dockerfile, unreadable file, bad .dockerignore).
    Context = 3,
    /// No Docker daemon answered.
    DaemonUnreachable = 4,
    /// The daemon reported a failed build. Nothing was pushed.
    BuildFailed = 5,
    /// Registry or ECR credentials were missing or rejected.
    AuthFailed = 6,
    /// The registry did not accept the push (after retries).
    PushFailed = 7,
    /// A pushed tag does not resolve to the digest that was pushed.
    VerifyFailed = 8,
    /// Image scan found vulnerabilities at or above `--fail-on`.
    ScanFindings = 9,
    /// The repository does not exist in the registry.
    RepositoryNotFound = 10,
    /// Stopped by SIGINT (128 + 2).
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15).
    Terminated = 143,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// A named input that failed validation, and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub input: String,
    pub problem: String,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.input, self.problem)
    }
}

/// Which signal stopped the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    Interrupt,
    Terminate,
}

/// Every way a run can fail. `main` maps each to its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(Invalid),

    #[error(transparent)]
    Context(#[from] ContextError),

    #[error("cannot reach the Docker daemon at {host}: {detail}; start dockerd or point DOCKER_HOST at a running daemon")]
    DaemonUnreachable { host: String, detail: String },

    #[error("build failed: {message}; nothing was pushed")]
    BuildFailed { message: String },

    #[error("authentication failed for {target}: {detail}")]
    AuthFailed { target: String, detail: String },

    #[error("push of {reference} failed: {detail}")]
    PushFailed { reference: String, detail: String },

    #[error("verification failed: {reference} resolves to {actual}, but {expected} was pushed")]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },

    #[error("verification failed for {reference}: {detail}")]
    VerifyFailed { reference: String, detail: String },

    #[error("repository {repository} does not exist in {registry}; create it first (terraform apply in terraform/ creates it), or check --repository and --region")]
    RepositoryNotFound {
        repository: String,
        registry: String,
    },

    #[error("image scan of {reference} found {summary} at or above {threshold}")]
    ScanFindings {
        reference: String,
        summary: String,
        threshold: String,
    },

    #[error("stopped by {}; nothing more was pushed", match .0 { Signal::Interrupt => "SIGINT", Signal::Terminate => "SIGTERM" })]
    Interrupted(Signal),

    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn usage(input: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Usage(Invalid {
            input: input.into(),
            problem: problem.into(),
        })
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) => ExitCode::Usage,
            Error::Context(_) => ExitCode::Context,
            Error::DaemonUnreachable { .. } => ExitCode::DaemonUnreachable,
            Error::BuildFailed { .. } => ExitCode::BuildFailed,
            Error::AuthFailed { .. } => ExitCode::AuthFailed,
            Error::PushFailed { .. } => ExitCode::PushFailed,
            Error::DigestMismatch { .. } | Error::VerifyFailed { .. } => ExitCode::VerifyFailed,
            Error::RepositoryNotFound { .. } => ExitCode::RepositoryNotFound,
            Error::ScanFindings { .. } => ExitCode::ScanFindings,
            Error::Interrupted(Signal::Interrupt) => ExitCode::Interrupted,
            Error::Interrupted(Signal::Terminate) => ExitCode::Terminated,
            Error::Internal(_) => ExitCode::Internal,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_are_distinct() {
        let codes = [
            ExitCode::Success,
            ExitCode::Internal,
            ExitCode::Usage,
            ExitCode::Context,
            ExitCode::DaemonUnreachable,
            ExitCode::BuildFailed,
            ExitCode::AuthFailed,
            ExitCode::PushFailed,
            ExitCode::VerifyFailed,
            ExitCode::ScanFindings,
            ExitCode::RepositoryNotFound,
            ExitCode::Interrupted,
            ExitCode::Terminated,
        ];
        let mut seen: Vec<u8> = codes.iter().map(|c| c.code()).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), codes.len());
    }

    #[test]
    fn usage_error_names_the_input() {
        let err = Error::usage("--sha", "must be 40 or 64 lowercase hex characters");
        assert_eq!(err.exit_code(), ExitCode::Usage);
        assert!(err.to_string().starts_with("--sha: "));
    }
}
