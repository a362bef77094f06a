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
    /// `export`: the tag, digest or platform is not in the repository.
    ImageNotFound = 11,
    /// `export`: the S3 bucket does not exist.
    BucketNotFound = 12,
    /// `export`: a blob's content does not match its digest or size.
    BlobCorrupt = 13,
    /// `export`: the registry could not be read or the destination written (after retries).
    ExportFailed = 14,
    /// Stopped by SIGINT (128 + 2).
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15).
    Terminated = 143,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }

    /// Which failure a run with several services reports (higher wins): being stopped, then a bug,
    /// then what stops every service (credentials, repository, daemon, config), then one service's own
    /// failure (context, push, verify, build, scan).
    pub fn severity(self) -> u8 {
        use ExitCode as C;
        const MOST_SEVERE_FIRST: [ExitCode; 12] = [
            C::Interrupted,
            C::Terminated,
            C::Internal,
            C::AuthFailed,
            C::RepositoryNotFound,
            C::DaemonUnreachable,
            C::Usage,
            C::Context,
            C::PushFailed,
            C::VerifyFailed,
            C::BuildFailed,
            C::ScanFindings,
        ];
        let rank = MOST_SEVERE_FIRST.iter().position(|c| *c == self);
        rank.map_or(1, |r| (MOST_SEVERE_FIRST.len() - r + 1) as u8)
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

/// What kind of failure a registry or daemon call met, decided where it is seen (the HTTP status, the
/// I/O error kind, the daemon's error code). Retries look only at this, never at message text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A state that passes: 5xx, 429, a reset or refused connection, a timeout. Worth another attempt.
    Transient,
    /// 401 or 403: the credentials were refused.
    CredentialsRefused,
    /// 404: the repository, tag or blob is not there.
    NotFound,
    /// Anything else: another attempt gets the same answer.
    Permanent,
}

impl FailureKind {
    /// The kind of an HTTP status a registry answered with.
    pub fn from_status(status: u16) -> Self {
        match status {
            401 | 403 => FailureKind::CredentialsRefused,
            404 => FailureKind::NotFound,
            // 408 Request Timeout and 429 Too Many Requests pass; so do the server's own failures.
            408 | 429 | 500..=599 => FailureKind::Transient,
            _ => FailureKind::Permanent,
        }
    }

    /// The kind of an I/O error met while talking to a registry or the daemon.
    pub fn from_io(kind: std::io::ErrorKind) -> Self {
        use std::io::ErrorKind as K;
        match kind {
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::TimedOut
            | K::UnexpectedEof
            | K::Interrupted
            | K::WouldBlock => FailureKind::Transient,
            K::PermissionDenied => FailureKind::CredentialsRefused,
            K::NotFound => FailureKind::NotFound,
            _ => FailureKind::Permanent,
        }
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

    /// A bad `ecrbuild.toml`: where (file, 1-based line when known, dotted key when known) and what.
    #[error("{}{detail}", config_location(.file, *.line, .key))]
    Config {
        file: String,
        line: Option<usize>,
        key: String,
        detail: String,
    },

    #[error(transparent)]
    Context(#[from] ContextError),

    #[error("cannot reach the Docker daemon at {host}: {detail}; start dockerd or point DOCKER_HOST at a running daemon")]
    DaemonUnreachable { host: String, detail: String },

    #[error("build failed: {message}; nothing was pushed")]
    BuildFailed { message: String },

    #[error("authentication failed for {target}: {detail}")]
    AuthFailed { target: String, detail: String },

    #[error("push of {reference} failed: {detail}")]
    PushFailed {
        reference: String,
        detail: String,
        kind: FailureKind,
    },

    #[error("verification failed: {reference} resolves to {actual}, but {expected} was pushed")]
    DigestMismatch {
        reference: String,
        expected: String,
        actual: String,
    },

    #[error("verification failed for {reference}: {detail}")]
    VerifyFailed {
        reference: String,
        detail: String,
        kind: FailureKind,
    },

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

    #[error("{reference} is not in the registry: {detail}")]
    ImageNotFound { reference: String, detail: String },

    #[error("S3 bucket {bucket} does not exist ({action} answered NoSuchBucket); check the bucket in --to and the region")]
    BucketNotFound { bucket: String, action: String },

    #[error("blob {digest} of {reference} is corrupt: {detail}; nothing was exported")]
    BlobCorrupt {
        reference: String,
        digest: String,
        detail: String,
    },

    #[error("export to {target} failed: {detail}")]
    ExportFailed {
        target: String,
        detail: String,
        kind: FailureKind,
    },

    #[error("stopped by {}; nothing more was pushed", match .0 { Signal::Interrupt => "SIGINT", Signal::Terminate => "SIGTERM" })]
    Interrupted(Signal),

    #[error("{0}")]
    Internal(String),

    /// Some services of ecrbuild.toml failed (the others are published): `failed` names each with
    /// its error; the exit code is the most severe of theirs.
    #[error("{} of {total} services failed: {failed}", .code_of.len())]
    ServicesFailed {
        total: usize,
        failed: String,
        code_of: Vec<ExitCode>,
    },
}

impl Error {
    pub fn usage(input: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Usage(Invalid {
            input: input.into(),
            problem: problem.into(),
        })
    }

    /// Whether the failure may pass if tried again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Error::PushFailed {
                kind: FailureKind::Transient,
                ..
            } | Error::VerifyFailed {
                kind: FailureKind::Transient,
                ..
            } | Error::ExportFailed {
                kind: FailureKind::Transient,
                ..
            }
        )
    }

    pub fn exit_code(&self) -> ExitCode {
        match self {
            Error::Usage(_) | Error::Config { .. } => ExitCode::Usage,
            Error::Context(_) => ExitCode::Context,
            Error::DaemonUnreachable { .. } => ExitCode::DaemonUnreachable,
            Error::BuildFailed { .. } => ExitCode::BuildFailed,
            Error::AuthFailed { .. } => ExitCode::AuthFailed,
            Error::PushFailed { .. } => ExitCode::PushFailed,
            Error::DigestMismatch { .. } | Error::VerifyFailed { .. } => ExitCode::VerifyFailed,
            Error::RepositoryNotFound { .. } => ExitCode::RepositoryNotFound,
            Error::ScanFindings { .. } => ExitCode::ScanFindings,
            Error::ImageNotFound { .. } => ExitCode::ImageNotFound,
            Error::BucketNotFound { .. } => ExitCode::BucketNotFound,
            Error::BlobCorrupt { .. } => ExitCode::BlobCorrupt,
            Error::ExportFailed { .. } => ExitCode::ExportFailed,
            Error::Interrupted(Signal::Interrupt) => ExitCode::Interrupted,
            Error::Interrupted(Signal::Terminate) => ExitCode::Terminated,
            Error::Internal(_) => ExitCode::Internal,
            Error::ServicesFailed { code_of, .. } => code_of
                .iter()
                .copied()
                .max_by_key(|code| code.severity())
                .unwrap_or(ExitCode::Internal),
        }
    }
}

/// `file:line: key: ` of a config error, leaving out what is not known.
fn config_location(file: &str, line: Option<usize>, key: &str) -> String {
    let line = line.map(|l| format!(":{l}")).unwrap_or_default();
    let key = if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    };
    format!("{file}{line}: {key}")
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
            ExitCode::ImageNotFound,
            ExitCode::BucketNotFound,
            ExitCode::BlobCorrupt,
            ExitCode::ExportFailed,
            ExitCode::Interrupted,
            ExitCode::Terminated,
        ];
        let unique: std::collections::HashSet<u8> = codes.iter().map(|c| c.code()).collect();
        assert_eq!(unique.len(), codes.len());
        assert_eq!(ExitCode::ExportFailed.code(), 14);
        assert!(Error::ExportFailed {
            target: "s3://b/k".into(),
            detail: "d".into(),
            kind: FailureKind::Transient
        }
        .is_transient());
    }

    #[test]
    fn usage_error_names_the_input() {
        let err = Error::usage("--sha", "must be 40 or 64 lowercase hex characters");
        assert_eq!(err.exit_code(), ExitCode::Usage);
        assert!(err.to_string().starts_with("--sha: "));
    }

    #[test]
    fn config_error_names_file_line_and_key() {
        let config = |line, key: &str| Error::Config {
            file: "ecrbuild.toml".into(),
            line,
            key: key.into(),
            detail: "unknown key".into(),
        };
        let err = config(Some(7), "services.cart.dockerfil");
        assert_eq!(err.exit_code(), ExitCode::Usage);
        assert_eq!(
            err.to_string(),
            "ecrbuild.toml:7: services.cart.dockerfil: unknown key"
        );
        assert_eq!(config(None, "").to_string(), "ecrbuild.toml: unknown key");
        assert!(!config(Some(1), "k").is_transient());
    }

    #[test]
    fn http_statuses_are_classified() {
        for status in [500, 502, 503, 504, 429, 408] {
            assert_eq!(
                FailureKind::from_status(status),
                FailureKind::Transient,
                "{status}"
            );
        }
        assert_eq!(
            FailureKind::from_status(401),
            FailureKind::CredentialsRefused
        );
        assert_eq!(
            FailureKind::from_status(403),
            FailureKind::CredentialsRefused
        );
        assert_eq!(FailureKind::from_status(404), FailureKind::NotFound);
        for status in [400, 405, 409, 413, 415, 422] {
            assert_eq!(
                FailureKind::from_status(status),
                FailureKind::Permanent,
                "{status}"
            );
        }
    }

    #[test]
    fn io_error_kinds_are_classified() {
        use std::io::ErrorKind as K;
        for kind in [
            K::ConnectionRefused,
            K::ConnectionReset,
            K::ConnectionAborted,
            K::BrokenPipe,
            K::TimedOut,
            K::UnexpectedEof,
        ] {
            assert_eq!(
                FailureKind::from_io(kind),
                FailureKind::Transient,
                "{kind:?}"
            );
        }
        assert_eq!(
            FailureKind::from_io(K::PermissionDenied),
            FailureKind::CredentialsRefused
        );
        assert_eq!(FailureKind::from_io(K::NotFound), FailureKind::NotFound);
        assert_eq!(FailureKind::from_io(K::InvalidData), FailureKind::Permanent);
    }

    #[test]
    fn only_transient_push_and_verify_failures_are_retried() {
        let push = |kind| Error::PushFailed {
            reference: "r/a:t".into(),
            detail: "d".into(),
            kind,
        };
        assert!(push(FailureKind::Transient).is_transient());
        assert!(!push(FailureKind::Permanent).is_transient());
        assert!(!push(FailureKind::NotFound).is_transient());
        let verify = Error::VerifyFailed {
            reference: "r/a:t".into(),
            detail: "d".into(),
            kind: FailureKind::Transient,
        };
        assert!(verify.is_transient());
        // The message says "503", but the kind decides.
        assert!(!Error::AuthFailed {
            target: "r".into(),
            detail: "503 transient".into()
        }
        .is_transient());
    }

    #[test]
    fn services_report_the_most_severe_failure() {
        let failed = |codes: Vec<ExitCode>| Error::ServicesFailed {
            total: 5,
            failed: "x".into(),
            code_of: codes,
        };
        let both = failed(vec![ExitCode::BuildFailed, ExitCode::AuthFailed]);
        assert_eq!(both.exit_code(), ExitCode::AuthFailed);
        let build = failed(vec![ExitCode::ScanFindings, ExitCode::BuildFailed]);
        assert_eq!(build.exit_code(), ExitCode::BuildFailed);
        assert!(ExitCode::Interrupted.severity() > ExitCode::Internal.severity());
        assert!(ExitCode::PushFailed.severity() > ExitCode::BuildFailed.severity());
    }
}
