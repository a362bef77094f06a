//! One plan per service of `ecrbuild.toml`: each service's keys become the flags of a single-image
//! run, with the command line's flags applied to every service on top.

use std::collections::BTreeMap;

use crate::cli::BuildArgs;
use crate::config::{ServiceSpec, ServicesFile};
use crate::error::{Error, Result};

use super::{resolve, Plan, Workspace};

/// A service and the plan that builds it.
pub struct Service {
    pub name: String,
    pub plan: Plan,
}

/// How a run with several services behaves, from its flags.
#[derive(Debug, Clone, Copy)]
pub struct ServicesOptions {
    /// Daemon builds at once.
    pub jobs: usize,
    pub fail_fast: bool,
    /// Never reuse an image with the same inputs (`--rebuild`, `--no-cache`, `--force`).
    pub rebuild: bool,
}

impl ServicesOptions {
    pub fn from_args(args: &BuildArgs) -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, usize::from);
        ServicesOptions {
            jobs: args.jobs.map_or(cpus.min(4), usize::from),
            fail_fast: args.fail_fast,
            // --force rebuilds a published commit; an image with the same inputs must not stand in.
            rebuild: args.rebuild || args.no_cache || args.force,
        }
    }
}

/// The plans of the services `args.services` names (all when none), in name order.
pub fn resolve_services(
    args: &BuildArgs,
    file: &ServicesFile,
    workspace: &Workspace,
) -> Result<Vec<Service>> {
    refuse_single_image_flags(args)?;
    let chosen = file.select(&args.services)?;
    let one = chosen.len() == 1;
    let repositories = repositories_from_env(workspace.env.get(REPOSITORIES_ENV))?;
    for spec in &chosen {
        check_paths(file, spec)?;
    }
    chosen
        .into_iter()
        .map(|spec| {
            let mut args = service_args(args, spec);
            if let Some(repository) = repositories.get(spec.name.as_str()) {
                args.repository = Some((*repository).to_string());
            }
            let mut plan = resolve(&args, workspace).map_err(|e| in_service(&spec.name, e))?;
            if !one {
                // One $GITHUB_OUTPUT for several images would hold only the last one's lines.
                plan.output_files.github_output = None;
            }
            Ok(Service {
                name: spec.name.clone(),
                plan,
            })
        })
        .collect()
}

/// `service=repository ...`: the repositories the infrastructure created (the Terraform CodeBuild
/// project sets it), which win over the file's, since their names differ per environment.
pub const REPOSITORIES_ENV: &str = "ECRBUILD_SERVICE_REPOSITORIES";

fn repositories_from_env(value: Option<&str>) -> Result<BTreeMap<&str, &str>> {
    let mut repositories = BTreeMap::new();
    for pair in value.unwrap_or_default().split_whitespace() {
        match pair.split_once('=') {
            Some((service, repository)) if !service.is_empty() && !repository.is_empty() => {
                repositories.insert(service, repository);
            }
            _ => {
                return Err(Error::usage(
                    REPOSITORIES_ENV,
                    format!("{pair:?} is not service=repository (pairs are separated by spaces)"),
                ))
            }
        }
    }
    Ok(repositories)
}

/// A service's Dockerfile and context must exist: a wrong path is the file's error, said before
/// anything runs (not the single-image advice to fix `-f`).
fn check_paths(file: &ServicesFile, spec: &ServiceSpec) -> Result<()> {
    let missing = |key: &str, path: &std::path::Path, what: &str| Error::Config {
        file: file.path.display().to_string(),
        line: None,
        key: format!("services.{}.{key}", spec.name),
        detail: format!(
            "{} is not {what}; paths are relative to the directory of {}",
            path.display(),
            file.path.display()
        ),
    };
    if !spec.context.is_dir() {
        return Err(missing("context", &spec.context, "a directory"));
    }
    if !spec.dockerfile.is_file() {
        return Err(missing("dockerfile", &spec.dockerfile, "a file"));
    }
    Ok(())
}

/// The flags of a single-image run for `spec`: the file's values, then the command line's.
fn service_args(args: &BuildArgs, spec: &ServiceSpec) -> BuildArgs {
    let mut service = args.clone();
    service.dockerfile = Some(spec.dockerfile.clone());
    service.context = spec.context.clone();
    service.repository = Some(spec.repository.clone());
    service.registry = args.registry.clone().or_else(|| spec.registry.clone());
    service.target = args.target.clone().or_else(|| spec.target.clone());
    if args.platforms.is_empty() {
        service.platforms = spec.platforms.clone();
    }
    // The file's build arguments first: a later `KEY=VALUE` wins, so the command line's override.
    let from_file: BTreeMap<&String, &String> = spec.build_args.iter().collect();
    service.build_args = from_file
        .into_iter()
        .map(|(key, value)| format!("{key}={value}"))
        .chain(args.build_args.iter().cloned())
        .collect();
    service
}

/// Flags that name one image's outputs make no sense for several images at once.
fn refuse_single_image_flags(args: &BuildArgs) -> Result<()> {
    let several = args.services.len() != 1;
    let single: [(&str, bool); 4] = [
        ("--repository", args.repository.is_some()),
        ("--digest-file", several && args.digest_file.is_some()),
        (
            "--imagedefinitions",
            several && args.imagedefinitions.is_some(),
        ),
        ("--defer-index", several && args.defer_index),
    ];
    match single.iter().find(|(_, given)| *given) {
        Some(("--repository", _)) => Err(Error::usage(
            "--repository",
            "ecrbuild.toml gives each service its own repository (its `repository` key, else the service name); drop --repository, or pass -f to build one image",
        )),
        Some((flag, _)) => Err(Error::usage(
            *flag,
            "writes one image's result; with several services pick one with --service NAME, or read --output json",
        )),
        None => Ok(()),
    }
}

/// A plan error, said of the service it is about.
fn in_service(name: &str, error: Error) -> Error {
    match error {
        Error::Usage(mut invalid) => {
            invalid.input = format!("service {name}: {}", invalid.input);
            Error::Usage(invalid)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_from_the_environment_are_service_equals_repository() {
        let found = repositories_from_env(Some(" api=proj-dev-api  ui=proj-dev-ui ")).unwrap();
        assert_eq!(found.get("api"), Some(&"proj-dev-api"));
        assert_eq!(found.get("ui"), Some(&"proj-dev-ui"));
        assert!(repositories_from_env(None).unwrap().is_empty());
        let bad = repositories_from_env(Some("api")).unwrap_err().to_string();
        assert!(
            bad.contains(REPOSITORIES_ENV) && bad.contains("\"api\""),
            "{bad}"
        );
    }
}
