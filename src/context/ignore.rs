//! `.dockerignore` rules with the semantics of the docker CLI (moby/patternmatcher).

/// A malformed pattern.
#[derive(Debug, thiserror::Error)]
#[error("bad pattern {pattern:?}: {reason}")]
pub struct PatternError {
    pub pattern: String,
    pub reason: String,
}

pub struct IgnoreRules {}
