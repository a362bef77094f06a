//! The export's inputs, checked before anything is contacted: the image reference, the destination,
//! the format and compression, the platform, encryption and the upload's bounds. Pure: the environment
//! is passed in, and every rule is unit-tested. Errors name the input that is wrong.

use std::path::PathBuf;
use std::time::Duration;

use crate::cli::{ArchiveFormat, Compression, ExportArgs};
use crate::env::Env;
use crate::error::{Error, Result};
use crate::identity::{Platform, Registry, Repository, Tag};
use crate::plan::{resolve_region, resolve_registry, Access, RegistrySource};
use crate::retry::RetryPolicy;

use super::layout::host_platform;
use super::s3::{Encryption, S3Target, UploadOptions};

/// What a reference names inside its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    Tag(Tag),
    /// `sha256:<64 hex>`.
    Digest(String),
}

/// A checked image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: RegistrySource,
    pub repository: Repository,
    pub pick: Pick,
}

/// Where the archive goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    S3(S3Target),
    File(PathBuf),
    Stdout,
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::S3(target) => write!(f, "{target}"),
            Destination::File(path) => write!(f, "{}", path.display()),
            Destination::Stdout => f.write_str("stdout"),
        }
    }
}

/// Which platforms of a multi-platform image are exported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Platforms {
    One(Platform),
    All,
}

/// Everything an export needs, checked. Built only through [`resolve`].
#[derive(Debug, Clone)]
pub struct ExportPlan {
    pub image: ImageRef,
    pub access: Access,
    pub destination: Destination,
    pub format: ArchiveFormat,
    pub compression: Compression,
    pub platforms: Platforms,
    pub upload: UploadOptions,
    /// `AWS_ENDPOINT_URL_S3`, else `AWS_ENDPOINT_URL`: an S3 stand-in or a VPC endpoint.
    pub s3_endpoint: Option<String>,
    pub retry: RetryPolicy,
    pub quiet: bool,
}

/// Check every input of `ecrbuild export`.
pub fn resolve(args: &ExportArgs, env: &Env) -> Result<ExportPlan> {
    let (reference_registry, repository, pick) = parse_reference(&args.reference)?;
    let region = resolve_region(args.region.as_deref(), env)?
        .or_else(|| reference_registry.as_ref().and_then(ecr_region));
    let registry = match reference_registry {
        Some(registry) => RegistrySource::Known(registry),
        None => resolve_registry(args.registry.as_deref(), args.auth, env, region.as_deref())?,
    };
    let destination = parse_destination(&args.to)?;
    if args.all_platforms && args.format != ArchiveFormat::Oci {
        return Err(Error::usage(
            "--all-platforms",
            "only an OCI layout holds several platforms: add --format oci, or pick one with --platform",
        ));
    }
    let platforms = match (&args.platform, args.all_platforms) {
        (_, true) => Platforms::All,
        (Some(value), false) => Platforms::One(Platform::parse("--platform", value)?),
        (None, false) => Platforms::One(host_platform()),
    };
    let retry = RetryPolicy {
        attempts: args.retries.max(1),
        max_total: Duration::from_secs(args.retry_max_time),
        ..RetryPolicy::default()
    };
    Ok(ExportPlan {
        image: ImageRef {
            registry,
            repository,
            pick,
        },
        access: Access {
            auth: args.auth,
            region,
        },
        compression: compression(args.compress, &destination)?,
        destination,
        format: args.format,
        platforms,
        upload: upload_options(args)?,
        s3_endpoint: env
            .get("AWS_ENDPOINT_URL_S3")
            .or_else(|| env.get("AWS_ENDPOINT_URL"))
            .map(str::to_string),
        retry,
        quiet: args.quiet,
    })
}

fn upload_options(args: &ExportArgs) -> Result<UploadOptions> {
    if !(1..=5120).contains(&args.part_size) {
        return Err(Error::usage(
            "--part-size",
            format!("{} MiB is not between 1 and 5120 (S3 takes 5 MiB or more for every part but the last)", args.part_size),
        ));
    }
    if !(1..=64).contains(&args.parallel_uploads) {
        return Err(Error::usage(
            "--parallel-uploads",
            format!("{} is not between 1 and 64", args.parallel_uploads),
        ));
    }
    let encryption = match &args.kms_key_id {
        Some(key) if key.trim().is_empty() => return Err(Error::usage("--kms-key-id", "is empty")),
        Some(key) => Encryption::Kms(key.clone()),
        None => Encryption::Aes256,
    };
    Ok(UploadOptions {
        part_size: args.part_size as usize * 1024 * 1024,
        parallel: args.parallel_uploads as usize,
        encryption,
    })
}

/// `[REGISTRY/]REPOSITORY[:TAG|@DIGEST]`. The first component is a registry when it has a `.` or a
/// `:`, or is `localhost` (the docker CLI's rule).
pub fn parse_reference(value: &str) -> Result<(Option<Registry>, Repository, Pick)> {
    const INPUT: &str = "REF";
    let value = value.trim();
    let (rest, digest) = match value.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (value, None),
    };
    let (registry, path) = match rest.split_once('/') {
        Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(Registry::parse(INPUT, first)?), path)
        }
        _ => (None, rest),
    };
    // A `:` after the last `/` separates the tag.
    let (repository, tag) = match path.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, Some(tag)),
        _ => (path, None),
    };
    let repository = Repository::parse(INPUT, repository)?;
    let pick = match (tag, digest) {
        (_, Some(digest)) => {
            if !is_sha256_digest(digest) {
                return Err(Error::usage(
                    INPUT,
                    format!("{digest:?} is not a digest: expected sha256: and 64 lowercase hex characters"),
                ));
            }
            Pick::Digest(digest.to_string())
        }
        (Some(tag), None) => Pick::Tag(Tag::parse(INPUT, tag)?),
        (None, None) => Pick::Tag(Tag::latest()),
    };
    Ok((registry, repository, pick))
}

/// `sha256:` and 64 lowercase hex characters: the only digests an archive names files after.
pub fn is_sha256_digest(value: &str) -> bool {
    value.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The region of an ECR registry host, `<account>.dkr.ecr.<region>.amazonaws.com[.cn]`.
fn ecr_region(registry: &Registry) -> Option<String> {
    let mut labels = registry.host().split('.');
    let (_, dkr, ecr, region) = (
        labels.next()?,
        labels.next()?,
        labels.next()?,
        labels.next()?,
    );
    (dkr == "dkr" && ecr == "ecr").then(|| region.to_string())
}

/// `s3://BUCKET/KEY`, `-`, or a file path.
pub fn parse_destination(value: &str) -> Result<Destination> {
    const INPUT: &str = "--to";
    if value == "-" {
        return Ok(Destination::Stdout);
    }
    if let Some(rest) = value.strip_prefix("s3://") {
        let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-');
        if !bucket_ok {
            return Err(Error::usage(
                INPUT,
                format!("{bucket:?} is not an S3 bucket name: 3 to 63 of a-z 0-9 . -"),
            ));
        }
        if key.is_empty() || key.ends_with('/') || key.len() > 1024 {
            return Err(Error::usage(
                INPUT,
                format!("{value:?} names no object: expected s3://BUCKET/KEY, e.g. s3://{bucket}/exports/api.tar"),
            ));
        }
        return Ok(Destination::S3(S3Target {
            bucket: bucket.to_string(),
            key: key.to_string(),
        }));
    }
    if value.is_empty() || value.ends_with('/') {
        return Err(Error::usage(
            INPUT,
            format!(
                "{value:?} is not a file: expected s3://BUCKET/KEY, a file path, or - for stdout"
            ),
        ));
    }
    Ok(Destination::File(PathBuf::from(value)))
}

/// `--compress`, else what the destination's suffix says; a flag that contradicts the suffix is an error.
fn compression(flag: Option<Compression>, destination: &Destination) -> Result<Compression> {
    let name = match destination {
        Destination::S3(target) => target.key.as_str(),
        Destination::File(path) => path.to_str().unwrap_or_default(),
        Destination::Stdout => "",
    };
    let from_suffix = if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        Some(Compression::Gzip)
    } else if name.ends_with(".tar.zst") || name.ends_with(".tar.zstd") {
        Some(Compression::Zstd)
    } else if name.ends_with(".tar") {
        Some(Compression::None)
    } else {
        None
    };
    match (flag, from_suffix) {
        (Some(flag), Some(suffix)) if flag != suffix => Err(Error::usage(
            "--compress",
            format!(
                "{flag:?} contradicts the suffix of --to {name:?} ({suffix:?}); change one of them"
            ),
        )),
        (Some(flag), _) => Ok(flag),
        (None, Some(suffix)) => Ok(suffix),
        (None, None) => Ok(Compression::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> ExportArgs {
        let mut argv = vec!["ecrbuild", "export"];
        argv.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(argv).command {
            Some(crate::cli::Command::Export(args)) => args,
            other => panic!("not an export: {other:?}"),
        }
    }

    fn env() -> Env {
        Env::from_pairs([
            ("AWS_REGION", "eu-west-1"),
            ("AWS_ACCOUNT_ID", "123456789012"),
        ])
    }

    #[test]
    fn a_reference_splits_into_registry_repository_and_tag_or_digest() {
        let (registry, repository, pick) = parse_reference("127.0.0.1:5000/team/api:v1").unwrap();
        assert_eq!(registry.unwrap().host(), "127.0.0.1:5000");
        assert_eq!(repository.as_str(), "team/api");
        assert_eq!(pick, Pick::Tag(Tag::parse("t", "v1").unwrap()));

        let digest = format!("sha256:{}", "a".repeat(64));
        let (registry, repository, pick) = parse_reference(&format!("api@{digest}")).unwrap();
        assert!(registry.is_none());
        assert_eq!(repository.as_str(), "api");
        assert_eq!(pick, Pick::Digest(digest));

        let (_, repository, pick) = parse_reference("team/api").unwrap();
        assert_eq!(repository.as_str(), "team/api");
        assert_eq!(pick, Pick::Tag(Tag::latest()));
    }

    #[test]
    fn bad_references_name_ref() {
        for bad in ["Api:v1", "api@sha256:abc", "api:", "api@md5:00", ""] {
            let err = parse_reference(bad).unwrap_err().to_string();
            assert!(err.starts_with("REF: "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn the_region_comes_from_an_ecr_host_when_nothing_else_gives_it() {
        let plan = resolve(
            &args(&[
                "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/api:v1",
                "--to",
                "x.tar",
            ]),
            &Env::default(),
        )
        .unwrap();
        assert_eq!(plan.access.region.as_deref(), Some("ap-northeast-1"));
        let plan = resolve(&args(&["api:v1", "--to", "x.tar"]), &env()).unwrap();
        assert_eq!(
            plan.image.registry,
            RegistrySource::Known(Registry::ecr("123456789012", "eu-west-1"))
        );
    }

    #[test]
    fn destinations_are_s3_objects_files_or_stdout() {
        assert_eq!(
            parse_destination("s3://my-bucket/exports/a.tar").unwrap(),
            Destination::S3(S3Target {
                bucket: "my-bucket".into(),
                key: "exports/a.tar".into()
            })
        );
        assert_eq!(parse_destination("-").unwrap(), Destination::Stdout);
        assert_eq!(
            parse_destination("out/a.tar").unwrap(),
            Destination::File("out/a.tar".into())
        );
        for bad in [
            "s3://my-bucket",
            "s3://my-bucket/",
            "s3://B/k",
            "s3://ab/k",
            "",
            "dir/",
        ] {
            let err = parse_destination(bad).unwrap_err().to_string();
            assert!(err.starts_with("--to: "), "{bad:?}: {err}");
        }
    }

    #[test]
    fn compression_follows_the_suffix_unless_a_flag_says_otherwise() {
        let of = |to: &str, extra: &[&str]| {
            let mut argv = vec![
                "api:v1",
                "--to",
                to,
                "--auth",
                "none",
                "--registry",
                "r:5000",
            ];
            argv.extend_from_slice(extra);
            resolve(&args(&argv), &Env::default()).map(|p| p.compression)
        };
        assert_eq!(of("a.tar", &[]).unwrap(), Compression::None);
        assert_eq!(of("s3://bkt/a.tar.gz", &[]).unwrap(), Compression::Gzip);
        assert_eq!(of("a.tgz", &[]).unwrap(), Compression::Gzip);
        assert_eq!(of("a.tar.zst", &[]).unwrap(), Compression::Zstd);
        assert_eq!(of("-", &["--compress", "zstd"]).unwrap(), Compression::Zstd);
        assert_eq!(of("-", &[]).unwrap(), Compression::None);
        assert_eq!(
            of("a.img", &["--compress", "gzip"]).unwrap(),
            Compression::Gzip
        );
        let err = of("a.tar.gz", &["--compress", "none"])
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("--compress: "), "{err}");
    }

    #[test]
    fn all_platforms_needs_an_oci_layout_and_platforms_parse() {
        let base = [
            "api:v1",
            "--to",
            "a.tar",
            "--auth",
            "none",
            "--registry",
            "r:5000",
        ];
        let err = resolve(
            &args(&[&base[..], &["--all-platforms"]].concat()),
            &Env::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("--all-platforms: "), "{err}");
        let plan = resolve(
            &args(&[&base[..], &["--all-platforms", "--format", "oci"]].concat()),
            &Env::default(),
        )
        .unwrap();
        assert_eq!(plan.platforms, Platforms::All);
        let plan = resolve(
            &args(&[&base[..], &["--platform", "linux/arm64/v8"]].concat()),
            &Env::default(),
        )
        .unwrap();
        assert_eq!(
            plan.platforms,
            Platforms::One(Platform::parse("p", "linux/arm64/v8").unwrap())
        );
        let err = resolve(
            &args(&[&base[..], &["--platform", "arm64"]].concat()),
            &Env::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("--platform: "), "{err}");
    }

    #[test]
    fn upload_bounds_and_encryption_are_checked() {
        let base = [
            "api:v1",
            "--to",
            "s3://bkt/a.tar",
            "--auth",
            "none",
            "--registry",
            "r:5000",
        ];
        let plan = resolve(&args(&base), &Env::default()).unwrap();
        assert_eq!(plan.upload.part_size, 8 << 20);
        assert_eq!(plan.upload.encryption, Encryption::Aes256);
        let plan = resolve(
            &args(&[&base[..], &["--kms-key-id", "alias/x"]].concat()),
            &Env::default(),
        )
        .unwrap();
        assert_eq!(plan.upload.encryption, Encryption::Kms("alias/x".into()));
        let err = resolve(
            &args(&[&base[..], &["--part-size", "0"]].concat()),
            &Env::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("--part-size: "), "{err}");
    }
}
