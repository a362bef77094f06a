//! Command-line flags, kept apart from the logic that uses them (plan.rs turns them into a checked plan).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ecrbuild",
    version,
    about = "Build a container image with the Docker daemon and push it to Amazon ECR. A failed build never pushes.",
    long_about = None,
    args_conflicts_with_subcommands = true,
    after_help = "Exit codes: 0 ok, 1 internal, 2 usage/config, 3 context, 4 daemon unreachable, 5 build failed, \
6 auth failed, 7 push failed, 8 verify failed, 9 scan findings, 10 repository not found, 11 image not found (export), \
12 bucket not found (export), 13 corrupt blob (export), 14 export failed (export), 130 SIGINT, 143 SIGTERM. \
With services, the most severe failure's code."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub build: BuildArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the build context without contacting the daemon.
    Context(ContextArgs),
    /// Join the images that `--platform P --defer-index` runs published under `<sha>-<os>-<arch>` into
    /// one OCI index under the SHA tag, and move `latest` as a build would. Needs no Docker daemon.
    Index(IndexArgs),
    /// Write an image from the registry into S3, a file or stdout, as `docker save` or an OCI layout
    /// would, streamed and verified (no Docker daemon needed).
    Export(ExportArgs),
    /// List the services of ecrbuild.toml: name, repository, Dockerfile, context.
    Services(ServicesArgs),
    /// Decide for each service of ecrbuild.toml whether a run would build it, reuse an image with the
    /// same inputs, or skip it (this commit is published); builds and pushes nothing.
    Plan(Box<PlanArgs>),
}

/// `ecrbuild services`.
#[derive(Debug, Args)]
pub struct ServicesArgs {
    /// The services file. Default: ecrbuild.toml in the current directory, else at the git top level.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
}

/// `ecrbuild plan`: the flags of a run, decided without building.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub build: BuildArgs,
}

/// `ecrbuild index`: the publishing flags of a build, and the platforms to join.
#[derive(Debug, Args)]
pub struct IndexArgs {
    /// The platforms of the index, comma-separated or repeated (e.g. linux/amd64,linux/arm64). Each must
    /// have been published under `<sha>-<os>-<arch>[-<variant>]` by a `--defer-index` run.
    #[arg(
        long = "platform",
        value_name = "OS/ARCH",
        value_delimiter = ',',
        required = true
    )]
    pub platforms: Vec<String>,

    /// Commit SHA (as for a build; default: the CI's variables, then git).
    #[arg(long, value_name = "SHA")]
    pub sha: Option<String>,

    /// Repository name inside the registry. Default: ECR_REPOSITORY.
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,

    /// Registry host[:port] (as for a build).
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,

    /// AWS region for ECR. Default: AWS_REGION, AWS_DEFAULT_REGION.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// How to get registry credentials.
    #[arg(long, value_enum, default_value_t = AuthMode::Ecr)]
    pub auth: AuthMode,

    /// Extra tag for the index (repeatable). IMAGE_TAG, when set, adds one more.
    #[arg(short = 't', long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// When to move `latest`: `auto` only forward in history, `force` always, `never`.
    #[arg(long, value_enum, default_value_t = LatestMode::Auto, value_name = "MODE")]
    pub latest: LatestMode,

    /// Do not move `latest` (same as --latest=never).
    #[arg(long, conflicts_with = "latest")]
    pub no_latest: bool,

    /// Branch being built. Default: from the CI's variables, else git.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,

    /// The branch whose builds move `latest`. Default: the CI's, else `main` or `master`.
    #[arg(long, value_name = "NAME")]
    pub default_branch: Option<String>,

    /// Attempts for each registry operation that fails transiently.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

    /// Stop retrying an operation after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub retry_max_time: u64,

    /// Skip reading the index back from the registry.
    #[arg(long)]
    pub no_verify: bool,

    /// Write the index digest (sha256:...) to this file.
    #[arg(long, value_name = "PATH")]
    pub digest_file: Option<PathBuf>,

    /// Result format on stdout.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Print only errors and warnings on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

impl IndexArgs {
    /// The same publishing flags as a build would take, so the plan resolves them by the same rules
    /// (SHA sources, registry, tags, when `latest` moves).
    pub fn publishing(&self) -> BuildArgs {
        let mut args = Cli::parse_from(["ecrbuild"]).build;
        args.platforms = self.platforms.clone();
        args.sha = self.sha.clone();
        args.repository = self.repository.clone();
        args.registry = self.registry.clone();
        args.region = self.region.clone();
        args.auth = self.auth;
        args.tags = self.tags.clone();
        args.latest = self.latest;
        args.no_latest = self.no_latest;
        args.branch = self.branch.clone();
        args.default_branch = self.default_branch.clone();
        args.retries = self.retries;
        args.retry_max_time = self.retry_max_time;
        args.no_verify = self.no_verify;
        args.digest_file = self.digest_file.clone();
        args.output = self.output;
        args.quiet = self.quiet;
        args
    }
}

/// What an export archive holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ArchiveFormat {
    /// What `docker save` writes: `docker load` loads it with its tag.
    Docker,
    /// An OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/…`).
    Oci,
}

/// How an export archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The image: `[REGISTRY/]REPOSITORY[:TAG|@DIGEST]` (the tag defaults to `latest`).
    #[arg(value_name = "REF")]
    pub reference: String,

    /// Where to write: `s3://BUCKET/KEY`, a file path, or `-` for stdout.
    #[arg(long, value_name = "DEST")]
    pub to: String,

    /// `docker` (what `docker save` writes) or `oci` (an OCI image layout).
    #[arg(long, value_enum, default_value_t = ArchiveFormat::Docker)]
    pub format: ArchiveFormat,

    /// Compression of the archive. Default: from the suffix of DEST (`.tar`, `.tar.gz`/`.tgz`,
    /// `.tar.zst`), else none.
    #[arg(long, value_enum, value_name = "ALGORITHM")]
    pub compress: Option<Compression>,

    /// The platform to export from a multi-platform image, `OS/ARCH[/VARIANT]`. Default: this host's.
    #[arg(
        long,
        value_name = "OS/ARCH[/VARIANT]",
        conflicts_with = "all_platforms"
    )]
    pub platform: Option<String>,

    /// Keep every platform of a multi-platform image (needs `--format oci`).
    #[arg(long)]
    pub all_platforms: bool,

    /// Registry host[:port] for a REF without one. Default: ECR_REGISTRY, else
    /// <AWS_ACCOUNT_ID>.dkr.ecr.<region>.amazonaws.com, else the ECR token's endpoint.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,

    /// AWS region for ECR and S3. Default: AWS_REGION, AWS_DEFAULT_REGION, then the AWS profile's region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// How to get registry credentials.
    #[arg(long, value_enum, default_value_t = AuthMode::Ecr)]
    pub auth: AuthMode,

    /// Encrypt the S3 object with this KMS key (SSE-KMS). Default: ECRBUILD_KMS_KEY_ID, else SSE-S3
    /// (AES256).
    #[arg(long, value_name = "KEY")]
    pub kms_key_id: Option<String>,

    /// Size of each S3 multipart part in MiB (S3 takes 5 to 5120; the last part may be smaller).
    #[arg(long, value_name = "MIB", default_value_t = 8)]
    pub part_size: u32,

    /// S3 parts uploaded at once. Memory is about (N + 1) x --part-size.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub parallel_uploads: u32,

    /// Attempts for each registry read and S3 request that fails transiently.
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

    /// Stop retrying an operation after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub retry_max_time: u64,

    /// Print only errors and warnings on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct ContextArgs {
    /// Print every path that would be sent to the daemon, one per line, in the order it is sent.
    #[arg(long)]
    pub list: bool,

    /// Dockerfile path, resolved against the current directory.
    #[arg(short = 'f', long = "file", default_value = "api/Dockerfile")]
    pub dockerfile: PathBuf,

    /// Build context directory.
    #[arg(long, default_value = ".")]
    pub context: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// ECR token from GetAuthorizationToken through the default AWS credential chain.
    Ecr,
    /// No credentials (local or public registries).
    None,
}

/// When `latest` moves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LatestMode {
    /// Only forward: when this commit is newer than the one `latest` holds (git ancestry, else commit time).
    Auto,
    /// Always point `latest` at this build.
    Force,
    /// Never tag or push `latest`.
    Never,
}

/// ECR scan severities, lowest to highest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
#[value(rename_all = "UPPER")]
pub enum Severity {
    Informational,
    Low,
    Medium,
    High,
    Critical,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
    /// `ecrbuild plan` only: append `matrix=<json>` (the services to build) and `builds=N` to
    /// $GITHUB_OUTPUT, and print the text table.
    GithubMatrix,
}

#[derive(Debug, Clone, Args)]
pub struct BuildArgs {
    /// Commit SHA to tag with (40 or 64 lowercase hex). Default: CODEBUILD_RESOLVED_SOURCE_VERSION, GITHUB_SHA,
    /// CI_COMMIT_SHA, then `git rev-parse HEAD` in the context directory.
    #[arg(long, value_name = "SHA")]
    pub sha: Option<String>,

    /// Dockerfile path, resolved against the current directory. Default: api/Dockerfile. Given, the
    /// single image is built even where an ecrbuild.toml declares services.
    #[arg(short = 'f', long = "file", value_name = "PATH")]
    pub dockerfile: Option<PathBuf>,

    /// The services file (ecrbuild.toml). Default: ecrbuild.toml in the current directory, else at the
    /// git top level; found and no -f given, every service (or those named by --service) is built.
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Only this service of ecrbuild.toml (repeatable).
    #[arg(long = "service", value_name = "NAME")]
    pub services: Vec<String>,

    /// Services built by the daemon at once. Default: the number of CPUs, at most 4. Registry-only
    /// work (reuse, skip) is not limited by it.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: Option<u16>,

    /// Stop the other services at the first failed one (by default they still publish).
    #[arg(long)]
    pub fail_fast: bool,

    /// Build every service even when the registry holds an image with the same inputs.
    #[arg(long)]
    pub rebuild: bool,

    /// Build context directory (the repository root, as in `docker build -f api/Dockerfile .`).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub context: PathBuf,

    /// Repository name inside the registry, e.g. `api` or `team/api`. Default: ECR_REPOSITORY.
    #[arg(long, value_name = "NAME")]
    pub repository: Option<String>,

    /// Registry host[:port]. Default: ECR_REGISTRY, else <AWS_ACCOUNT_ID>.dkr.ecr.<region>.amazonaws.com, else
    /// the ECR token's endpoint.
    #[arg(long, value_name = "HOST[:PORT]")]
    pub registry: Option<String>,

    /// AWS region for ECR. Default: AWS_REGION, AWS_DEFAULT_REGION, then the AWS profile's region.
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,

    /// How to get registry credentials.
    #[arg(long, value_enum, default_value_t = AuthMode::Ecr)]
    pub auth: AuthMode,

    /// Extra tag to apply and push after the SHA tag (repeatable). IMAGE_TAG, when set, adds one more.
    #[arg(short = 't', long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,

    /// When to move `latest`: `auto` only forward in history, `force` always, `never`.
    #[arg(long, value_enum, default_value_t = LatestMode::Auto, value_name = "MODE")]
    pub latest: LatestMode,

    /// Also tag with the first N characters of the SHA (N defaults to 7).
    #[arg(long, value_name = "N", num_args = 0..=1, default_missing_value = "7")]
    pub short_sha: Option<usize>,

    /// Also tag with the UTC build time, YYYYMMDD-HHMMSS.
    #[arg(long)]
    pub timestamp_tag: bool,

    /// Branch being built. Default: from the CI's variables, else `git rev-parse --abbrev-ref HEAD`.
    #[arg(long, value_name = "NAME")]
    pub branch: Option<String>,

    /// Pull/merge request number. Default: from the CI's variables. A PR build is tagged `pr-N`.
    #[arg(long = "pr", value_name = "N")]
    pub pull_request: Option<u64>,

    /// The branch whose builds move `latest`. Default: the CI's (GitLab), else `main` or `master`.
    #[arg(long, value_name = "NAME")]
    pub default_branch: Option<String>,

    /// Push pull/merge request builds too (by default they are built and tagged, not pushed).
    #[arg(long)]
    pub push_pr: bool,

    /// Image to use as a build cache source (repeatable); `latest` means this repository's latest. It is
    /// pulled with the same credentials first; a missing image only warns.
    #[arg(long = "cache-from", value_name = "REF")]
    pub cache_from: Vec<String>,

    /// Write CodePipeline's imagedefinitions.json here (needs --container-name).
    #[arg(long, value_name = "PATH", requires = "container_name")]
    pub imagedefinitions: Option<PathBuf>,

    /// Container name for imagedefinitions.json.
    #[arg(long, value_name = "NAME")]
    pub container_name: Option<String>,

    /// Write the pushed digest (sha256:...) to this file.
    #[arg(long, value_name = "PATH")]
    pub digest_file: Option<PathBuf>,

    /// After pushing, wait for the ECR image scan and print a summary by severity.
    #[arg(long)]
    pub wait_scan: bool,

    /// Seconds to wait for the scan.
    #[arg(long, value_name = "SECONDS", default_value_t = 600)]
    pub scan_timeout: u64,

    /// Fail (exit 9) when the scan finds vulnerabilities at or above this severity. Implies --wait-scan.
    #[arg(long, value_enum, value_name = "SEVERITY")]
    pub fail_on: Option<Severity>,

    /// Do not tag or push `latest` (same as --latest=never).
    #[arg(long, conflicts_with = "latest")]
    pub no_latest: bool,

    /// Build and push even if the SHA tag is already in the registry (fails on immutable repositories).
    #[arg(long)]
    pub force: bool,

    /// Before building, check credentials, the repository and whether the SHA is already published.
    /// With this flag none of that happens: every run builds and pushes.
    #[arg(long)]
    pub no_preflight: bool,

    /// Create the ECR repository (scan on push, AES256) if it is missing. Needs ecr:CreateRepository.
    #[arg(long)]
    pub create_repository: bool,

    /// Attempts for each registry operation that fails transiently (5xx, reset, timeout, throttling).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub retries: u32,

    /// Stop retrying an operation after this many seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 300)]
    pub retry_max_time: u64,

    /// Build and tag locally; push nothing.
    #[arg(long)]
    pub no_push: bool,

    /// Build-time variable (repeatable), as `docker build --build-arg`.
    #[arg(long = "build-arg", value_name = "KEY=VALUE")]
    pub build_args: Vec<String>,

    /// Target platform(s), comma-separated or repeated, e.g. linux/amd64,linux/arm64. Given, the image is
    /// built with BuildKit for that platform (TARGETPLATFORM, TARGETOS, TARGETARCH, BUILDPLATFORM set;
    /// `FROM --platform=$BUILDPLATFORM` stages run natively). Several platforms publish an OCI index under
    /// the SHA tag. Default: the daemon's own platform, with the classic builder.
    #[arg(long = "platform", value_name = "OS/ARCH", value_delimiter = ',')]
    pub platforms: Vec<String>,

    /// With one --platform: publish this platform's image under `<sha>-<os>-<arch>` only (no SHA tag, no
    /// `latest`), for `ecrbuild index` to join once every platform's host has built its own.
    #[arg(long)]
    pub defer_index: bool,

    /// Build stage to stop at.
    #[arg(long, value_name = "STAGE")]
    pub target: Option<String>,

    /// Image label (repeatable).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    pub labels: Vec<String>,

    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,

    /// Always try to pull newer versions of base images.
    #[arg(long)]
    pub pull: bool,

    /// Result format on stdout: `text` prints the pushed references, `json` one object (see README).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Seconds to wait for the daemon to accept the context and answer (large contexts need more).
    #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
    pub daemon_timeout: u64,

    /// Skip reading the pushed tags back from the registry (needs ecr:BatchGetImage otherwise).
    #[arg(long)]
    pub no_verify: bool,

    /// Print only errors and warnings on stderr.
    #[arg(short = 'q', long)]
    pub quiet: bool,

    /// Compress the context with gzip. Default: only for tcp:// daemons, never over a local socket.
    #[arg(long)]
    pub compress: bool,

    /// Send the whole context. Default: only what the Dockerfile's COPY/ADD read (the daemon gets the
    /// same files either way; ecrbuild falls back to the whole context when it cannot tell).
    #[arg(long)]
    pub full_context: bool,
}

impl BuildArgs {
    /// The Dockerfile: `-f`, else the default `api/Dockerfile`.
    pub fn dockerfile_path(&self) -> PathBuf {
        self.dockerfile
            .clone()
            .unwrap_or_else(|| PathBuf::from("api/Dockerfile"))
    }
}
