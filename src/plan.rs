//! Plan phase: turn flags and environment into a fully checked plan before anything is touched.
//! Pure: the environment and git are passed in, so every rule here is unit-tested.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::time::SystemTime;

use crate::ci::{self, CiContext, CiSystem, LocalGit};
use crate::cli::{AuthMode, BuildArgs, OutputFormat};
pub use crate::cli::{LatestMode, Severity};
use crate::error::{Error, Result};
use crate::push::retry::RetryPolicy;

/// Environment variables the plan reads, captured once so resolution is a pure function.
#[derive(Debug, Default, Clone)]
pub struct Env {
    vars: HashMap<String, String>,
}

impl Env {
    pub fn from_process() -> Self {
        Env {
            vars: std::env::vars().collect(),
        }
    }

    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Env {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    /// A variable's value; empty counts as unset, as CI systems often export empty variables.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// Where each SHA source comes from, in order of precedence after `--sha`.
pub const SHA_ENV_VARS: [&str; 3] = [
    "CODEBUILD_RESOLVED_SOURCE_VERSION",
    "GITHUB_SHA",
    "CI_COMMIT_SHA",
];

/// A full commit id: 40 (SHA-1) or 64 (SHA-256) lowercase hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Sha(String);

impl Sha {
    pub fn parse(source: &str, value: &str) -> Result<Sha> {
        let value = value.trim();
        let hex = value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if (value.len() == 40 || value.len() == 64) && hex {
            return Ok(Sha(value.to_string()));
        }
        let hint = if value.bytes().any(|b| b.is_ascii_uppercase()) && value.len() == 40 {
            " (it has uppercase letters; git prints lowercase)"
        } else if value.len() < 40 && !value.is_empty() && hex {
            " (it looks abbreviated; pass the full `git rev-parse HEAD`)"
        } else {
            ""
        };
        Err(Error::usage(
            source,
            format!(
                "{value:?} is not a commit SHA: expected 40 or 64 lowercase hex characters{hint}"
            ),
        ))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Sha {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An image tag, checked against the registry grammar `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tag(String);

impl Tag {
    pub fn parse(source: &str, value: &str) -> Result<Tag> {
        let bytes = value.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_');
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if first_ok && rest_ok && bytes.len() <= 128 {
            Ok(Tag(value.to_string()))
        } else {
            Err(Error::usage(
                source,
                format!(
                    "{value:?} is not a valid tag: use 1 to 128 of A-Z a-z 0-9 _ . - , not starting with . or -"
                ),
            ))
        }
    }

    pub fn latest() -> Tag {
        Tag("latest".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Registry host with optional port, e.g. `123456789012.dkr.ecr.us-east-1.amazonaws.com` or `127.0.0.1:5000`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Registry(String);

impl Registry {
    pub fn parse(source: &str, value: &str) -> Result<Registry> {
        let trimmed = value
            .trim()
            .trim_start_matches("https://")
            .trim_start_matches("http://")
            .trim_end_matches('/');
        let (host, port) = match trimmed.rsplit_once(':') {
            Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
            _ => (trimmed, None),
        };
        let host_ok = !host.is_empty()
            && host.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        let port_ok = port.is_none_or(|p| p.parse::<u16>().is_ok_and(|n| n > 0));
        if host_ok && port_ok {
            Ok(Registry(trimmed.to_ascii_lowercase()))
        } else {
            Err(Error::usage(
                source,
                format!("{value:?} is not a registry host: expected HOST or HOST:PORT, e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com or 127.0.0.1:5000"),
            ))
        }
    }

    /// The ECR registry of an account and region.
    pub fn ecr(account: &str, region: &str) -> Registry {
        Registry(format!("{account}.dkr.ecr.{region}.amazonaws.com"))
    }

    pub fn host(&self) -> &str {
        &self.0
    }

    /// Loopback registries speak plain HTTP (the daemon treats 127.0.0.0/8 as insecure too).
    pub fn is_loopback(&self) -> bool {
        let host = self.0.rsplit_once(':').map_or(self.0.as_str(), |(h, _)| h);
        host == "localhost" || host.starts_with("127.") || host == "[::1]"
    }
}

impl fmt::Display for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Repository path inside a registry, checked against the distribution grammar (lowercase components).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository(String);

impl Repository {
    pub fn parse(source: &str, value: &str) -> Result<Repository> {
        let component_ok = |c: &str| {
            let b = c.as_bytes();
            !b.is_empty()
                && b.first()
                    .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
                && b.last()
                    .is_some_and(|x| x.is_ascii_lowercase() || x.is_ascii_digit())
                && b.iter().all(|x| {
                    x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-')
                })
        };
        if !value.is_empty() && value.len() <= 256 && value.split('/').all(component_ok) {
            Ok(Repository(value.to_string()))
        } else {
            Err(Error::usage(
                source,
                format!("{value:?} is not a repository name: use lowercase letters, digits and . _ - in /-separated parts, e.g. api or team/api"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where the registry comes from when it was not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistrySource {
    Known(Registry),
    /// Taken from the ECR token's proxy endpoint once the token is fetched.
    FromEcrToken,
}

/// A full image reference `registry/repository:tag`.
pub fn reference(registry: &Registry, repository: &Repository, tag: &Tag) -> String {
    format!("{registry}/{}:{tag}", repository.as_str())
}

/// Everything a run needs, checked. Built only through [`resolve`].
#[derive(Debug, Clone)]
pub struct Plan {
    pub sha: Sha,
    pub registry: RegistrySource,
    pub repository: Repository,
    pub region: Option<String>,
    pub auth: AuthMode,
    /// The tags in push order: the SHA tag first, then `latest` (unless disabled), then extras.
    pub tags: Vec<Tag>,
    pub context_dir: PathBuf,
    pub dockerfile: PathBuf,
    pub build_args: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    pub target: Option<String>,
    pub no_cache: bool,
    pub pull: bool,
    /// Send the whole context, not only what COPY/ADD read.
    pub full_context: bool,
    pub push: bool,
    pub verify: bool,
    pub latest: LatestMode,
    /// Rebuild and push even when the SHA tag is already published.
    pub force: bool,
    pub preflight: bool,
    pub create_repository: bool,
    pub retry: RetryPolicy,
    pub output: OutputFormat,
    /// Files the result is written to.
    pub outputs: Outputs,
    /// Wait for the image scan after pushing, when set.
    pub scan: Option<ScanPlan>,
    pub cache_from: Vec<String>,
    pub daemon_timeout_secs: u64,
    pub compress: Option<bool>,
    /// What the CI (or git) says about this build.
    pub ci: CiContext,
    /// Decisions worth telling the user (why latest is not moved, why nothing is pushed).
    pub notes: Vec<String>,
}

/// Where to write the result besides stdout.
#[derive(Debug, Clone, Default)]
pub struct Outputs {
    /// CodePipeline's imagedefinitions.json: (path, container name).
    pub imagedefinitions: Option<(PathBuf, String)>,
    pub digest_file: Option<PathBuf>,
    /// `$GITHUB_OUTPUT` in GitHub Actions.
    pub github_output: Option<PathBuf>,
}

/// How to wait for the ECR scan.
#[derive(Debug, Clone, Copy)]
pub struct ScanPlan {
    pub timeout_secs: u64,
    pub fail_on: Option<Severity>,
}

impl Plan {
    pub fn sha_tag(&self) -> Tag {
        Tag(self.sha.as_str().to_string())
    }

    /// Tags pushed after the SHA tag succeeded.
    pub fn follow_up_tags(&self) -> &[Tag] {
        &self.tags[1..]
    }
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
    let sha = resolve_sha(args.sha.as_deref(), env, workspace.head)?;

    let repository = match args.repository.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => Repository::parse("--repository", r)?,
        None => {
            return Err(Error::usage(
                "--repository",
                "no repository: pass --repository NAME or set ECR_REPOSITORY",
            ))
        }
    };

    let region = args
        .region
        .clone()
        .or_else(|| env.get("AWS_REGION").map(str::to_string))
        .or_else(|| env.get("AWS_DEFAULT_REGION").map(str::to_string));
    if let Some(r) = &region {
        let ok = !r.is_empty()
            && r.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !ok {
            return Err(Error::usage(
                "--region",
                format!("{r:?} is not an AWS region, e.g. ap-northeast-1"),
            ));
        }
    }

    let registry = match args.registry.as_deref().filter(|r| !r.is_empty()) {
        Some(r) => RegistrySource::Known(Registry::parse("--registry", r)?),
        None => match (env.get("AWS_ACCOUNT_ID"), region.as_deref()) {
            (Some(account), Some(region)) => {
                if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::usage(
                        "AWS_ACCOUNT_ID",
                        format!("{account:?} is not a 12-digit AWS account id"),
                    ));
                }
                RegistrySource::Known(Registry::ecr(account, region))
            }
            _ if args.auth == AuthMode::Ecr => RegistrySource::FromEcrToken,
            _ => return Err(Error::usage(
                "--registry",
                "no registry: with --auth none, pass --registry HOST[:PORT] or set ECR_REGISTRY",
            )),
        },
    };

    let mut ci = ci::detect(env, workspace.local_git);
    if let Some(branch) = args.branch.clone().filter(|b| !b.is_empty()) {
        ci.branch = Some(branch);
    }
    if args.pull_request.is_some() {
        ci.pull_request = args.pull_request;
    }
    if let Some(default) = args.default_branch.clone().filter(|b| !b.is_empty()) {
        ci.default_branch = Some(default);
    }
    let mut notes = Vec::new();

    let latest_mode = if args.no_latest {
        LatestMode::Never
    } else {
        args.latest
    };
    let on_default_branch = match (&ci.branch, &ci.default_branch) {
        (None, _) => true,
        (Some(branch), Some(default)) => branch == default,
        (Some(branch), None) => branch == "main" || branch == "master",
    };
    let tag_latest = match latest_mode {
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
    };

    let mut tags = vec![Tag(sha.as_str().to_string())];
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
            crate::report::utc_timestamp(workspace.now, "compact"),
        ));
    }
    if let Some(pr) = ci.pull_request {
        extra.push(("pull request", format!("pr-{pr}")));
    }
    extra.extend(args.tags.iter().map(|t| ("--tag", t.clone())));
    if let Some(image_tag) = env.get("IMAGE_TAG") {
        extra.push(("IMAGE_TAG", image_tag.to_string()));
    }
    for (source, value) in extra {
        let tag = Tag::parse(source, &value)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }

    let push = !args.no_push && (ci.pull_request.is_none() || args.push_pr);
    if !args.no_push && !push {
        notes.push(
            "pull/merge request build: built and tagged, not pushed (pass --push-pr to push)"
                .to_string(),
        );
    }

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
    // The user's labels win over the automatic ones.
    labels.extend(parse_key_values("--label", &args.labels)?);

    let fail_on = args.fail_on;
    let context_dir = args.context.clone();
    Ok(Plan {
        sha,
        registry,
        repository,
        region,
        auth: args.auth,
        tags,
        context_dir,
        dockerfile: args.dockerfile.clone(),
        build_args: parse_key_values("--build-arg", &args.build_args)?,
        labels,
        target: args.target.clone().filter(|t| !t.is_empty()),
        no_cache: args.no_cache,
        pull: args.pull,
        full_context: args.full_context,
        cache_from: args.cache_from.clone(),
        push,
        verify: !args.no_verify,
        latest: latest_mode,
        force: args.force,
        preflight: !args.no_preflight,
        create_repository: args.create_repository,
        retry: RetryPolicy {
            attempts: args.retries.max(1),
            max_total: std::time::Duration::from_secs(args.retry_max_time),
            ..RetryPolicy::default()
        },
        output: args.output,
        outputs: Outputs {
            imagedefinitions: args
                .imagedefinitions
                .clone()
                .zip(args.container_name.clone()),
            digest_file: args.digest_file.clone(),
            github_output: (ci.system == CiSystem::GitHubActions)
                .then(|| env.get("GITHUB_OUTPUT").map(PathBuf::from))
                .flatten(),
        },
        scan: (args.wait_scan || fail_on.is_some()).then_some(ScanPlan {
            timeout_secs: args.scan_timeout,
            fail_on,
        }),
        daemon_timeout_secs: args.daemon_timeout.max(1),
        compress: args.compress.then_some(true),
        ci,
        notes,
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
    fn sha_accepts_40_and_64_lowercase_hex() {
        assert!(Sha::parse("--sha", SHA).is_ok());
        assert!(Sha::parse("--sha", &"a".repeat(64)).is_ok());
    }

    #[test]
    fn sha_rejects_short_upper_and_junk_with_a_hint() {
        let short = Sha::parse("--sha", "abc1234").unwrap_err().to_string();
        assert!(short.contains("abbreviated"), "{short}");
        let upper = Sha::parse("--sha", &SHA.to_uppercase())
            .unwrap_err()
            .to_string();
        assert!(upper.contains("uppercase"), "{upper}");
        assert!(Sha::parse("--sha", "HEAD").is_err());
        assert!(Sha::parse("--sha", &"a".repeat(41)).is_err());
        assert!(Sha::parse("--sha", "").is_err());
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
        let tags: Vec<&str> = plan.tags.iter().map(Tag::as_str).collect();
        assert_eq!(tags, [SHA, "latest", "v1", "3.0.0"]);
        assert_eq!(plan.follow_up_tags().len(), 3);
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
        assert_eq!(plan.tags, vec![Tag(SHA.into())]);
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
            plan.registry,
            RegistrySource::Known(Registry(
                "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com".into()
            ))
        );
        let plan = resolve_in(&a, &Env::default()).unwrap();
        assert_eq!(plan.registry, RegistrySource::FromEcrToken);
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
    fn registry_and_repository_grammar() {
        assert!(Registry::parse("r", "127.0.0.1:5000")
            .unwrap()
            .is_loopback());
        assert!(
            !Registry::parse("r", "123456789012.dkr.ecr.us-east-1.amazonaws.com")
                .unwrap()
                .is_loopback()
        );
        assert_eq!(
            Registry::parse("r", "https://Example.com/").unwrap().host(),
            "example.com"
        );
        assert!(Registry::parse("r", "exa mple.com").is_err());
        assert!(Registry::parse("r", "example.com:99999").is_err());
        assert!(Repository::parse("r", "team/api-v2").is_ok());
        assert!(Repository::parse("r", "API").is_err());
        assert!(Repository::parse("r", "api/").is_err());
        assert!(Repository::parse("r", "").is_err());
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
        assert_eq!(plan.build_args["GO_IMAGE"], "x");
        assert_eq!(plan.labels["a"], "b=c");
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
}
