//! Plan phase: turn flags and environment into a fully checked plan before anything is touched.
//! Pure: the environment and git are passed in, so every rule here is unit-tested.
//!
//! The plan is made of each phase's own options ([`BuildOptions`], [`PublishOptions`], [`ScanPlan`],
//! [`OutputFiles`]) plus the image's identity; each phase is handed only its part.

mod services;
pub use services::{resolve_services, Service, ServicesOptions};

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::build::BuildOptions;
use crate::ci::{self, CiContext, CiSystem, LocalGit};
use crate::cli::{AuthMode, BuildArgs, LatestMode, OutputFormat};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::identity::{Platform, Registry, Repository, Sha, Tag};
use crate::push::PublishOptions;
use crate::report::{utc_timestamp, OutputFiles, TimeLayout};
use crate::retry::RetryPolicy;
use crate::scan::ScanPlan;

/// Where each SHA source comes from, in order of precedence after `--sha`.
pub const SHA_ENV_VARS: [&str; 3] = [
    "CODEBUILD_RESOLVED_SOURCE_VERSION",
    "GITHUB_SHA",
    "CI_COMMIT_SHA",
];

/// Where the registry comes from when it was not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrySource {
    Known(Registry),
    /// Taken from the ECR token's proxy endpoint once the token is fetched.
    FromEcrToken,
}

/// Which image this run makes: the commit and where it is published.
#[derive(Debug, Clone)]
pub struct Identity {
    pub sha: Sha,
    pub registry: RegistrySource,
    pub repository: Repository,
}

/// How to reach the registry's credentials.
#[derive(Debug, Clone)]
pub struct Access {
    pub auth: AuthMode,
    pub region: Option<String>,
}

/// Everything a run needs, checked. Built only through [`resolve`].
#[derive(Debug, Clone)]
pub struct Plan {
    pub identity: Identity,
    pub access: Access,
    pub build: BuildOptions,
    pub publish: PublishOptions,
    /// Wait for the image scan after pushing, when set.
    pub scan: Option<ScanPlan>,
    /// The result's format on stdout.
    pub output: OutputFormat,
    /// Files the result is written to.
    pub output_files: OutputFiles,
    /// What the CI (or git) says about this build.
    pub ci: CiContext,
    /// Decisions worth telling the user (why latest is not moved, why nothing is pushed).
    pub notes: Vec<String>,
    /// `--platform`, each once, in the order given. Empty: the daemon's own platform, classic builder.
    pub platforms: Vec<Platform>,
    /// `--defer-index`: publish the one platform's image under its platform tag only.
    pub defer_index: bool,
}

/// `--platform` values, each once.
fn resolve_platforms(values: &[String]) -> Result<Vec<Platform>> {
    let mut platforms: Vec<Platform> = Vec::new();
    for value in values {
        let platform = Platform::parse("--platform", value)?;
        if platforms.contains(&platform) {
            return Err(Error::usage(
                "--platform",
                format!("{platform} is given twice"),
            ));
        }
        platforms.push(platform);
    }
    Ok(platforms)
}

/// A value and the name of where it came from, for error messages: the flag, or the environment
/// variable (then also the flag that overrides it).
struct Sourced {
    source: String,
    value: String,
}

/// A flag's value, else an environment variable's.
fn flag_or_env(flag: &str, value: Option<&str>, env: &Env, vars: &[&str]) -> Option<Sourced> {
    if let Some(value) = value.filter(|v| !v.is_empty()) {
        return Some(Sourced {
            source: flag.to_string(),
            value: value.to_string(),
        });
    }
    vars.iter().find_map(|var| {
        env.get(var).map(|value| Sourced {
            source: format!("{var} (or {flag})"),
            value: value.to_string(),
        })
    })
}

fn parse_key_values(flag: &str, items: &[String]) -> Result<BTreeMap<String, String>> {
    let mut map = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => {
                map.insert(k.to_string(), v.to_string());
            }
            _ => return Err(Error::usage(flag, format!("{item:?} must be KEY=VALUE"))),
        }
    }
    Ok(map)
}

/// Resolve the commit SHA: `--sha`, then the CI variables, then git.
pub fn resolve_sha(
    flag: Option<&str>,
    env: &Env,
    git_head: &dyn Fn() -> Option<String>,
) -> Result<Sha> {
    if let Some(value) = flag {
        return Sha::parse("--sha", value);
    }
    for var in SHA_ENV_VARS {
        if let Some(value) = env.get(var) {
            return Sha::parse(var, value);
        }
    }
    match git_head() {
        Some(head) => Sha::parse("git rev-parse HEAD", &head),
        None => Err(Error::usage(
            "--sha",
            "no commit SHA: pass --sha $(git rev-parse HEAD), or run inside a git checkout or a CI that sets CODEBUILD_RESOLVED_SOURCE_VERSION, GITHUB_SHA or CI_COMMIT_SHA",
        )),
    }
}

/// What a plan reads besides the flags: the environment, git (asked only when needed) and the clock.
pub struct Workspace<'a> {
    pub env: &'a Env,
    /// `git rev-parse HEAD` in the context directory.
    pub head: &'a dyn Fn() -> Option<String>,
    /// Branch and remote of the checkout, for runs outside CI.
    pub local_git: &'a dyn Fn() -> LocalGit,
    pub now: SystemTime,
}

/// Check every input and produce the plan.
pub fn resolve(args: &BuildArgs, workspace: &Workspace) -> Result<Plan> {
    let env = workspace.env;
    let (identity, access) = resolve_identity(args, workspace)?;
    let ci = resolve_ci(args, workspace);
    let mut notes = Vec::new();
    let latest = if args.no_latest {
        LatestMode::Never
    } else {
        args.latest
    };
    let platforms = resolve_platforms(&args.platforms)?;
    let (latest, tags) = match (args.defer_index, platforms.as_slice()) {
        (false, _) => {
            let tag_latest = takes_latest(latest, &ci, &mut notes);
            (
                latest,
                resolve_tags(args, workspace, &identity.sha, &ci, tag_latest)?,
            )
        }
        (true, [platform]) => {
            notes.push(format!(
                "--defer-index: publishing the {platform} image under its platform tag only; `ecrbuild index` publishes the SHA tag, latest and the other tags"
            ));
            (
                LatestMode::Never,
                vec![Tag::of_platform(&identity.sha, platform)],
            )
        }
        (true, _) => {
            return Err(Error::usage(
                "--defer-index",
                "needs exactly one --platform: each host publishes its own platform's image, and `ecrbuild index` joins them",
            ))
        }
    };
    let push = !args.no_push && (ci.pull_request.is_none() || args.push_pr);
    if !args.no_push && !push {
        notes.push(
            "pull/merge request build: built and tagged, not pushed (pass --push-pr to push)"
                .to_string(),
        );
    }
    let publish = PublishOptions {
        tags,
        push,
        latest,
        force: args.force,
        preflight: !args.no_preflight,
        create_repository: args.create_repository,
        verify: !args.no_verify,
        retry: RetryPolicy {
            attempts: args.retries.max(1),
            max_total: Duration::from_secs(args.retry_max_time),
            ..RetryPolicy::default()
        },
    };
    let output_files = OutputFiles {
        imagedefinitions: args
            .imagedefinitions
            .clone()
            .zip(args.container_name.clone()),
        digest_file: args.digest_file.clone(),
        github_output: (ci.system == CiSystem::GitHubActions)
            .then(|| env.get("GITHUB_OUTPUT").map(PathBuf::from))
            .flatten(),
    };
    Ok(Plan {
        identity,
        access,
        build: build_options(args, env, &ci)?,
        publish,
        scan: (args.wait_scan || args.fail_on.is_some()).then_some(ScanPlan {
            timeout_secs: args.scan_timeout,
            fail_on: args.fail_on,
        }),
        output: args.output,
        output_files,
        ci,
        notes,
        platforms,
        defer_index: args.defer_index,
    })
}

/// The commit, the repository, the registry, and how to authenticate to it.
fn resolve_identity(args: &BuildArgs, workspace: &Workspace) -> Result<(Identity, Access)> {
    let env = workspace.env;
    let sha = resolve_sha(args.sha.as_deref(), env, workspace.head)?;
    let repository = match flag_or_env(
        "--repository",
        args.repository.as_deref(),
        env,
        &["ECR_REPOSITORY"],
    ) {
        Some(found) => Repository::parse(&found.source, &found.value)?,
        None => {
            return Err(Error::usage(
                "--repository",
                "no repository: pass --repository NAME or set ECR_REPOSITORY",
            ))
        }
    };
    let region = resolve_region(args.region.as_deref(), env)?;
    let registry = resolve_registry(args.registry.as_deref(), args.auth, env, region.as_deref())?;
    Ok((
        Identity {
            sha,
            registry,
            repository,
        },
        Access {
            auth: args.auth,
            region,
        },
    ))
}

/// `--region`, else `AWS_REGION`/`AWS_DEFAULT_REGION` (`None`: the AWS profile's), checked.
pub fn resolve_region(flag: Option<&str>, env: &Env) -> Result<Option<String>> {
    let region = flag_or_env("--region", flag, env, &["AWS_REGION", "AWS_DEFAULT_REGION"]);
    if let Some(Sourced { source, value }) = &region {
        let ok = value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(Error::usage(
                source,
                format!("{value:?} is not an AWS region, e.g. ap-northeast-1"),
            ));
        }
    }
    Ok(region.map(|r| r.value))
}

/// `--registry`/`ECR_REGISTRY`, else the account's ECR registry, else the one the ECR token names.
pub fn resolve_registry(
    flag: Option<&str>,
    auth: AuthMode,
    env: &Env,
    region: Option<&str>,
) -> Result<RegistrySource> {
    if let Some(found) = flag_or_env("--registry", flag, env, &["ECR_REGISTRY"]) {
        return Ok(RegistrySource::Known(Registry::parse(
            &found.source,
            &found.value,
        )?));
    }
    match (env.get("AWS_ACCOUNT_ID"), region) {
        (Some(account), Some(region)) => {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(Error::usage(
                    "AWS_ACCOUNT_ID",
                    format!("{account:?} is not a 12-digit AWS account id"),
                ));
            }
            Ok(RegistrySource::Known(Registry::ecr(account, region)))
        }
        _ if auth == AuthMode::Ecr => Ok(RegistrySource::FromEcrToken),
        _ => Err(Error::usage(
            "--registry",
            "no registry: with --auth none, pass --registry HOST[:PORT] or set ECR_REGISTRY",
        )),
    }
}

/// What the CI says, with the flags' overrides.
fn resolve_ci(args: &BuildArgs, workspace: &Workspace) -> CiContext {
    let mut ci = ci::detect(workspace.env, workspace.local_git);
    if let Some(branch) = args.branch.clone().filter(|b| !b.is_empty()) {
        ci.branch = Some(branch);
    }
    if args.pull_request.is_some() {
        ci.pull_request = args.pull_request;
    }
    if let Some(default) = args.default_branch.clone().filter(|b| !b.is_empty()) {
        ci.default_branch = Some(default);
    }
    ci
}

/// Whether this run tags `latest`; the reason goes to `notes` when it does not.
fn takes_latest(mode: LatestMode, ci: &CiContext, notes: &mut Vec<String>) -> bool {
    let on_default_branch = match (&ci.branch, &ci.default_branch) {
        (None, _) => true,
        (Some(branch), Some(default)) => branch == default,
        (Some(branch), None) => branch == "main" || branch == "master",
    };
    match mode {
        LatestMode::Never => false,
        LatestMode::Force => true,
        LatestMode::Auto if ci.pull_request.is_some() => {
            notes.push("a pull/merge request build never moves latest".to_string());
            false
        }
        LatestMode::Auto if !on_default_branch => {
            notes.push(format!(
                "branch {} is not the default branch ({}): latest stays where it is",
                ci.branch.as_deref().unwrap_or("?"),
                ci.default_branch.as_deref().unwrap_or("main or master")
            ));
            false
        }
        LatestMode::Auto => true,
    }
}

/// The tags in push order: the SHA tag, `latest` when taken, then the extra tags without duplicates.
fn resolve_tags(
    args: &BuildArgs,
    workspace: &Workspace,
    sha: &Sha,
    ci: &CiContext,
    tag_latest: bool,
) -> Result<Vec<Tag>> {
    let mut tags = vec![Tag::of_commit(sha)];
    if tag_latest {
        tags.push(Tag::latest());
    }
    let mut extra: Vec<(&str, String)> = Vec::new();
    if let Some(n) = args.short_sha {
        if !(4..=sha.as_str().len()).contains(&n) {
            return Err(Error::usage(
                "--short-sha",
                format!("{n} is out of range: use 4 to {}", sha.as_str().len()),
            ));
        }
        extra.push(("--short-sha", sha.as_str()[..n].to_string()));
    }
    if args.timestamp_tag {
        extra.push((
            "--timestamp-tag",
            utc_timestamp(workspace.now, TimeLayout::Compact),
        ));
    }
    if let Some(pr) = ci.pull_request {
        extra.push(("pull request", format!("pr-{pr}")));
    }
    extra.extend(args.tags.iter().map(|t| ("--tag", t.clone())));
    if let Some(image_tag) = workspace.env.get("IMAGE_TAG") {
        extra.push(("IMAGE_TAG", image_tag.to_string()));
    }
    for (source, value) in extra {
        let tag = Tag::parse(source, &value)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

/// The build's inputs, with the labels the CI gives (the user's labels win).
fn build_options(args: &BuildArgs, env: &Env, ci: &CiContext) -> Result<BuildOptions> {
    let mut labels = BTreeMap::new();
    if let Some(source) = &ci.source {
        labels.insert(
            "org.opencontainers.image.source".to_string(),
            source.clone(),
        );
    }
    if let Some(version) = ci
        .git_tag
        .clone()
        .or_else(|| env.get("IMAGE_TAG").map(str::to_string))
    {
        labels.insert("org.opencontainers.image.version".to_string(), version);
    }
    labels.extend(parse_key_values("--label", &args.labels)?);
    Ok(BuildOptions {
        context_dir: args.context.clone(),
        dockerfile: args.dockerfile_path(),
        build_args: parse_key_values("--build-arg", &args.build_args)?,
        labels,
        target: args.target.clone().filter(|t| !t.is_empty()),
        no_cache: args.no_cache,
        pull: args.pull,
        full_context: args.full_context,
        cache_from: args.cache_from.clone(),
        daemon_timeout: Duration::from_secs(args.daemon_timeout.max(1)),
        compress: args.compress.then_some(true),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

    fn args(extra: &[&str]) -> BuildArgs {
        let mut argv = vec!["ecrbuild"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().build
    }

    fn no_git() -> Option<String> {
        None
    }

    fn no_local() -> LocalGit {
        LocalGit::default()
    }

    fn resolve_in(a: &BuildArgs, env: &Env) -> Result<Plan> {
        resolve(
            a,
            &Workspace {
                env,
                head: &no_git,
                local_git: &no_local,
                now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_768_142_222),
            },
        )
    }

    #[test]
    fn sha_precedence_flag_then_codebuild_then_github_then_gitlab_then_git() {
        let other = "f".repeat(40);
        let env = Env::from_pairs([("GITHUB_SHA", other.as_str()), ("CI_COMMIT_SHA", SHA)]);
        assert_eq!(resolve_sha(Some(SHA), &env, &no_git).unwrap().as_str(), SHA);
        assert_eq!(resolve_sha(None, &env, &no_git).unwrap().as_str(), other);
        let env = Env::from_pairs([("CI_COMMIT_SHA", SHA)]);
        assert_eq!(resolve_sha(None, &env, &no_git).unwrap().as_str(), SHA);
        let env = Env::from_pairs([
            ("CODEBUILD_RESOLVED_SOURCE_VERSION", SHA),
            ("GITHUB_SHA", other.as_str()),
        ]);
        assert_eq!(resolve_sha(None, &env, &no_git).unwrap().as_str(), SHA);
        let from_git = resolve_sha(None, &Env::default(), &|| Some(format!("{other}\n"))).unwrap();
        assert_eq!(from_git.as_str(), other);
        let err = resolve_sha(None, &Env::default(), &no_git)
            .unwrap_err()
            .to_string();
        assert!(err.contains("git rev-parse HEAD"), "{err}");
    }

    #[test]
    fn invalid_ci_variable_is_named_in_the_error() {
        let env = Env::from_pairs([("GITHUB_SHA", "refs/heads/main")]);
        let err = resolve_sha(None, &env, &no_git).unwrap_err().to_string();
        assert!(err.starts_with("GITHUB_SHA:"), "{err}");
    }

    #[test]
    fn tags_are_sha_then_latest_then_extras_without_duplicates() {
        let env = Env::from_pairs([("IMAGE_TAG", "3.0.0")]);
        let a = args(&[
            "--sha",
            SHA,
            "--repository",
            "api",
            "--registry",
            "127.0.0.1:5000",
            "-t",
            "v1",
            "-t",
            "latest",
        ]);
        let plan = resolve_in(&a, &env).unwrap();
        let tags: Vec<&str> = plan.publish.tags.iter().map(Tag::as_str).collect();
        assert_eq!(tags, [SHA, "latest", "v1", "3.0.0"]);
        assert_eq!(plan.publish.follow_up_tags().len(), 3);
    }

    #[test]
    fn platforms_are_parsed_once_each_and_defer_index_takes_one() {
        let base = [
            "--sha",
            SHA,
            "--repository",
            "api",
            "--registry",
            "r.example",
        ];
        let with = |extra: &[&str]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            resolve_in(&args(&all), &Env::default())
        };
        let plan = with(&["--platform", "linux/amd64,linux/arm64"]).unwrap();
        let named: Vec<String> = plan.platforms.iter().map(|p| p.to_string()).collect();
        assert_eq!(named, ["linux/amd64", "linux/arm64"]);
        assert_eq!(plan.publish.tags[0].as_str(), SHA);
        let plan = with(&["--platform", "linux/amd64", "--platform", "linux/arm64"]).unwrap();
        assert_eq!(plan.platforms.len(), 2);
        let err = with(&["--platform", "linux/arm64,linux/arm64"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("given twice"), "{err}");

        let plan = with(&["--platform", "linux/arm64", "--defer-index", "-t", "v1"]).unwrap();
        let tags: Vec<&str> = plan.publish.tags.iter().map(Tag::as_str).collect();
        assert_eq!(tags, [format!("{SHA}-linux-arm64")]);
        assert_eq!(plan.publish.latest, LatestMode::Never);
        assert!(plan.defer_index);
        for extra in [
            &["--defer-index"][..],
            &["--defer-index", "--platform", "linux/amd64,linux/arm64"],
        ] {
            let err = with(extra).unwrap_err();
            assert_eq!(err.exit_code(), crate::ExitCode::Usage);
            assert!(err.to_string().starts_with("--defer-index: "), "{err}");
        }
    }

    #[test]
    fn index_takes_the_publishing_flags_of_a_build() {
        let cli = Cli::try_parse_from([
            "ecrbuild",
            "index",
            "--sha",
            SHA,
            "--platform",
            "linux/amd64,linux/arm64",
            "--repository",
            "api",
            "--registry",
            "127.0.0.1:5000",
            "--auth",
            "none",
        ])
        .unwrap();
        let Some(crate::cli::Command::Index(index)) = cli.command else {
            panic!("not the index command")
        };
        let plan = resolve_in(&index.publishing(), &Env::default()).unwrap();
        assert_eq!(plan.platforms.len(), 2);
        let tags: Vec<&str> = plan.publish.tags.iter().map(Tag::as_str).collect();
        assert_eq!(tags, [SHA, "latest"]);
        assert!(Cli::try_parse_from(["ecrbuild", "index", "--sha", SHA]).is_err());
    }

    #[test]
    fn no_latest_drops_latest() {
        let a = args(&[
            "--sha",
            SHA,
            "--repository",
            "api",
            "--registry",
            "r.example",
            "--no-latest",
        ]);
        let plan = resolve_in(&a, &Env::default()).unwrap();
        let only_sha = vec![Tag::parse("t", SHA).unwrap()];
        assert_eq!(plan.publish.tags, only_sha);
    }

    #[test]
    fn bad_tag_is_rejected_naming_its_source() {
        let a = args(&[
            "--sha",
            SHA,
            "--repository",
            "api",
            "--registry",
            "r.example",
            "--tag=-bad",
        ]);
        let err = resolve_in(&a, &Env::default()).unwrap_err().to_string();
        assert!(err.starts_with("--tag: \"-bad\""), "{err}");
        let env = Env::from_pairs([("IMAGE_TAG", "a/b")]);
        let a = args(&[
            "--sha",
            SHA,
            "--repository",
            "api",
            "--registry",
            "r.example",
        ]);
        let err = resolve_in(&a, &env).unwrap_err().to_string();
        assert!(err.starts_with("IMAGE_TAG:"), "{err}");
        assert!(Tag::parse("t", &"a".repeat(129)).is_err());
        assert!(Tag::parse("t", &"a".repeat(128)).is_ok());
    }

    #[test]
    fn registry_defaults_to_the_accounts_ecr_then_the_token() {
        let env = Env::from_pairs([
            ("AWS_ACCOUNT_ID", "123456789012"),
            ("AWS_REGION", "ap-northeast-1"),
        ]);
        let a = args(&["--sha", SHA, "--repository", "api"]);
        let plan = resolve_in(&a, &env).unwrap();
        assert_eq!(
            plan.identity.registry,
            RegistrySource::Known(Registry::ecr("123456789012", "ap-northeast-1"))
        );
        let plan = resolve_in(&a, &Env::default()).unwrap();
        assert_eq!(plan.identity.registry, RegistrySource::FromEcrToken);
        let a = args(&["--sha", SHA, "--repository", "api", "--auth", "none"]);
        let err = resolve_in(&a, &Env::default()).unwrap_err().to_string();
        assert!(err.starts_with("--registry:"), "{err}");
    }

    #[test]
    fn bad_account_id_is_rejected() {
        let env = Env::from_pairs([("AWS_ACCOUNT_ID", "12345"), ("AWS_REGION", "us-east-1")]);
        let a = args(&["--sha", SHA, "--repository", "api"]);
        let err = resolve_in(&a, &env).unwrap_err().to_string();
        assert!(err.starts_with("AWS_ACCOUNT_ID:"), "{err}");
    }

    #[test]
    fn missing_repository_names_the_flag_and_variable() {
        let a = args(&["--sha", SHA, "--registry", "r.example"]);
        let err = resolve_in(&a, &Env::default()).unwrap_err().to_string();
        assert!(err.contains("ECR_REPOSITORY"), "{err}");
    }

    #[test]
    fn build_args_and_labels_need_key_value() {
        let a = args(&[
            "--sha",
            SHA,
            "--repository",
            "api",
            "--registry",
            "r.example",
            "--build-arg",
            "GO_IMAGE=x",
            "--label",
            "a=b=c",
        ]);
        let plan = resolve_in(&a, &Env::default()).unwrap();
        assert_eq!(plan.build.build_args["GO_IMAGE"], "x");
        assert_eq!(plan.build.labels["a"], "b=c");
        let a = args(&[
            "--sha",
            SHA,
            "--repository",
            "api",
            "--registry",
            "r.example",
            "--build-arg",
            "NOVALUE",
        ]);
        let err = resolve_in(&a, &Env::default()).unwrap_err().to_string();
        assert!(err.starts_with("--build-arg:"), "{err}");
    }

    #[test]
    fn empty_env_values_count_as_unset() {
        let env = Env::from_pairs([("GITHUB_SHA", ""), ("CI_COMMIT_SHA", SHA)]);
        assert_eq!(resolve_sha(None, &env, &no_git).unwrap().as_str(), SHA);
    }

    #[test]
    fn values_from_the_environment_are_named_by_their_variable() {
        let a = args(&["--sha", SHA, "--registry", "r.example"]);
        let env = Env::from_pairs([("ECR_REPOSITORY", "Bad Repo")]);
        let err = resolve_in(&a, &env).unwrap_err().to_string();
        assert!(
            err.starts_with("ECR_REPOSITORY (or --repository): \"Bad Repo\""),
            "{err}"
        );
        let a = args(&["--sha", SHA, "--repository", "Bad Repo", "--registry", "r"]);
        let err = resolve_in(&a, &Env::default()).unwrap_err().to_string();
        assert!(err.starts_with("--repository: "), "{err}");

        let a = args(&["--sha", SHA, "--repository", "api"]);
        let env = Env::from_pairs([("AWS_REGION", "Tokyo")]);
        let err = resolve_in(&a, &env).unwrap_err().to_string();
        assert!(err.starts_with("AWS_REGION (or --region): "), "{err}");
        let env = Env::from_pairs([("AWS_DEFAULT_REGION", "eu west")]);
        let err = resolve_in(&a, &env).unwrap_err().to_string();
        assert!(
            err.starts_with("AWS_DEFAULT_REGION (or --region): "),
            "{err}"
        );

        let env = Env::from_pairs([("ECR_REGISTRY", "bad host!")]);
        let err = resolve_in(&a, &env).unwrap_err().to_string();
        assert!(err.starts_with("ECR_REGISTRY (or --registry): "), "{err}");
        // The flag wins over the variable.
        let a = args(&[
            "--sha",
            SHA,
            "--repository",
            "api",
            "--registry",
            "r.example",
        ]);
        let plan = resolve_in(&a, &env).unwrap();
        assert_eq!(
            plan.identity.registry,
            RegistrySource::Known(Registry::parse("t", "r.example").unwrap())
        );
    }
}
