//! ecrbuild: build a container image with the Docker daemon and push it to a registry (Amazon ECR by
//! default), with a build-then-push gate enforced by types.
//!
//! Phases, one module each: [`plan`] → [`context`] → [`build`] → [`auth`] → [`push`] → [`verify`] →
//! [`report`]. [`pipeline`] runs them in order.

pub mod auth;
pub mod build;
pub mod ci;
pub mod cli;
pub mod config;
pub use docker_context as context;
pub mod daemon;
pub mod env;
pub mod error;
pub mod export;
pub mod git;
pub mod identity;
pub mod inputs;
pub mod pipeline;
pub mod plan;
pub mod push;
pub mod registry;
pub mod report;
pub mod retry;
pub mod scan;
pub mod verify;

pub use error::{Error, ExitCode, Result};
