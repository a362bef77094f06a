//! Whether a `--platform` build needs emulation, checked before anything is built.
//!
//! BuildKit runs a stage on its own platform: `FROM --platform=$BUILDPLATFORM` on the build host's,
//! `FROM` without `--platform` on the target's. A `RUN` in a stage whose platform the host cannot execute
//! needs QEMU registered with binfmt_misc; without it the build fails deep inside with "exec format
//! error". So the Dockerfile's stages are read first, and a missing emulator fails the run at once
//! (exit 2), naming the stage, the platform and the fix. `COPY`, `ADD` and the like need no emulation.

use std::path::Path;

use crate::error::{Error, Result};
use crate::identity::Platform;

/// Where binfmt_misc lists the registered interpreters. `ECRBUILD_BINFMT_MISC_DIR` replaces it (for
/// tests: an empty directory is a host without QEMU).
pub const BINFMT_MISC_DIR: &str = "/proc/sys/fs/binfmt_misc";

/// The platform a stage runs on.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StagePlatform {
    /// `--platform=$BUILDPLATFORM`: the build host's.
    Build,
    /// No `--platform` (or `$TARGETPLATFORM`): the platform being built.
    Target,
    Fixed(Platform),
}

#[derive(Debug, Clone)]
struct Stage {
    /// `AS name`, else its position.
    name: String,
    platform: StagePlatform,
    runs: bool,
    /// Stages it reads: its base first when that is a stage, and `COPY --from` sources.
    needs: Vec<usize>,
    /// Based on a stage, without `--platform`: it runs where that stage runs.
    inherits: bool,
}

/// A stage that executes `RUN` on a platform the host cannot run natively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emulated {
    pub stage: String,
    pub platform: Platform,
}

/// The stages of `dockerfile` that the build of `target` (a platform) runs on a foreign platform, for
/// the stage `target_stage` (the last one when `None`).
pub fn emulated_stages(
    dockerfile: &str,
    target_stage: Option<&str>,
    host: &Platform,
    target: &Platform,
) -> Vec<Emulated> {
    let stages = read_stages(dockerfile);
    let Some(last) = stages.len().checked_sub(1) else {
        return Vec::new();
    };
    let start = target_stage
        .and_then(|name| find_stage(&stages, name))
        .unwrap_or(last);
    let mut seen = vec![false; stages.len()];
    let mut queue = vec![start];
    let mut found = Vec::new();
    while let Some(i) = queue.pop() {
        if std::mem::replace(&mut seen[i], true) {
            continue;
        }
        let stage = &stages[i];
        queue.extend(stage.needs.iter().copied());
        let platform = match resolved_platform(&stages, i) {
            StagePlatform::Build => host.clone(),
            StagePlatform::Target => target.clone(),
            StagePlatform::Fixed(p) => p,
        };
        if stage.runs && !host.runs_natively(&platform) {
            found.push(Emulated {
                stage: stage.name.clone(),
                platform,
            });
        }
    }
    found.sort_by(|a, b| a.stage.cmp(&b.stage));
    found
}

/// Fail when a stage needs an emulator that `binfmt_dir` does not list as enabled.
pub fn check(
    dockerfile: &str,
    target_stage: Option<&str>,
    host: &Platform,
    targets: &[Platform],
    binfmt_dir: &Path,
) -> Result<()> {
    for target in targets {
        for needed in emulated_stages(dockerfile, target_stage, host, target) {
            let interpreter = format!("qemu-{}", qemu_arch(&needed.platform.architecture));
            let entry = binfmt_dir.join(&interpreter);
            let enabled = std::fs::read_to_string(&entry)
                .is_ok_and(|text| text.lines().next() == Some("enabled"));
            if !enabled {
                return Err(Error::usage(
                    "--platform",
                    format!(
                        "stage {} runs RUN on {}, which this {host} host can only run under emulation, and no emulator is registered ({} is missing or disabled); nothing was built or pushed. Fix: register QEMU (apt-get install qemu-user-static binfmt-support, then update-binfmts --enable), or build {} natively on such a host with --defer-index, or cross-compile in a `FROM --platform=$BUILDPLATFORM` stage",
                        needed.stage,
                        needed.platform,
                        entry.display(),
                        needed.platform,
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// QEMU's name for an OCI architecture.
fn qemu_arch(architecture: &str) -> &str {
    match architecture {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "386" => "i386",
        "mips64le" => "mips64el",
        other => other,
    }
}

fn find_stage(stages: &[Stage], name: &str) -> Option<usize> {
    stages
        .iter()
        .position(|s| s.name.eq_ignore_ascii_case(name))
        .or_else(|| name.parse().ok().filter(|i: &usize| *i < stages.len()))
}

/// A stage based on another stage without `--platform` runs where that stage runs.
fn resolved_platform(stages: &[Stage], i: usize) -> StagePlatform {
    let mut i = i;
    for _ in 0..stages.len() {
        match &stages[i].platform {
            StagePlatform::Target => match stages[i].needs.first() {
                Some(&base) if base < i && stages[i].inherits => i = base,
                _ => return StagePlatform::Target,
            },
            other => return other.clone(),
        }
    }
    StagePlatform::Target
}

/// The stages, with continuation lines joined and comments dropped.
fn read_stages(dockerfile: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for line in instructions(dockerfile) {
        let (keyword, rest) = line
            .split_once(char::is_whitespace)
            .map_or((line.as_str(), ""), |(k, r)| (k, r.trim()));
        let (flags, args) = flags_and_args(rest);
        match keyword.to_ascii_lowercase().as_str() {
            "from" => {
                let mut words = args.split_whitespace();
                let base = words.next().unwrap_or_default();
                let name = match (words.next(), words.next()) {
                    (Some(kw), Some(name)) if kw.eq_ignore_ascii_case("as") => name.to_string(),
                    _ => stages.len().to_string(),
                };
                let platform =
                    flag(&flags, "platform").map_or(StagePlatform::Target, stage_platform);
                let base_stage = find_stage(&stages, base);
                let inherits = base_stage.is_some() && flag(&flags, "platform").is_none();
                stages.push(Stage {
                    name,
                    platform,
                    runs: false,
                    needs: base_stage.into_iter().collect(),
                    inherits,
                });
            }
            "run" => {
                if let Some(stage) = stages.last_mut() {
                    stage.runs = true;
                }
            }
            "copy" | "add" => {
                let source = flag(&flags, "from").and_then(|from| find_stage(&stages, from));
                if let (Some(source), Some(stage)) = (source, stages.last_mut()) {
                    stage.needs.push(source);
                }
            }
            _ => {}
        }
    }
    stages
}

fn stage_platform(value: &str) -> StagePlatform {
    let bare = value.trim_matches(|c| c == '{' || c == '}' || c == '$');
    match bare {
        "BUILDPLATFORM" => StagePlatform::Build,
        "TARGETPLATFORM" => StagePlatform::Target,
        _ => Platform::parse("FROM --platform", value)
            .map_or(StagePlatform::Target, StagePlatform::Fixed),
    }
}

/// The value of `--name=value` among `flags`.
fn flag<'a>(flags: &[&'a str], name: &str) -> Option<&'a str> {
    flags.iter().find_map(|f| {
        f.strip_prefix("--")?
            .strip_prefix(name)?
            .strip_prefix('=')
            .map(|v| v.trim_matches('"'))
    })
}

fn flags_and_args(rest: &str) -> (Vec<&str>, &str) {
    let mut flags = Vec::new();
    let mut rest = rest.trim_start();
    while rest.starts_with("--") {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        flags.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (flags, rest)
}

/// Instructions, one per entry: `\`-continued lines joined, comments and blank lines dropped.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(value: &str) -> Platform {
        Platform::parse("p", value).unwrap()
    }

    const CROSS: &str = "ARG GO_IMAGE=golang\nFROM --platform=$BUILDPLATFORM ${GO_IMAGE} AS build\nARG TARGETARCH\nRUN GOARCH=$TARGETARCH \\\n    go build -o /out/api .\n\nFROM scratch\nCOPY --from=build /out/api /api\n";

    #[test]
    fn a_cross_compiling_dockerfile_needs_no_emulation() {
        let host = platform("linux/amd64");
        assert!(emulated_stages(CROSS, None, &host, &platform("linux/arm64")).is_empty());
    }

    #[test]
    fn a_run_in_a_target_platform_stage_needs_it() {
        let file = "FROM debian AS tools\n# a comment\nRUN apt-get update\nFROM scratch\nCOPY --from=tools /bin/sh /sh\n";
        let host = platform("linux/amd64");
        let found = emulated_stages(file, None, &host, &platform("linux/arm64"));
        assert_eq!(
            found,
            [Emulated {
                stage: "tools".into(),
                platform: platform("linux/arm64")
            }]
        );
        // Natively, nothing is emulated.
        assert!(emulated_stages(file, None, &host, &platform("linux/amd64")).is_empty());
        // A stage that the target does not reach is not built.
        let unused = "FROM debian AS tools\nRUN true\nFROM scratch\nCOPY x /x\n";
        assert!(emulated_stages(unused, None, &host, &platform("linux/arm64")).is_empty());
        assert_eq!(
            emulated_stages(unused, Some("tools"), &host, &platform("linux/arm64")).len(),
            1
        );
    }

    #[test]
    fn stages_based_on_stages_inherit_their_platform() {
        let file = "FROM --platform=$BUILDPLATFORM debian AS base\nFROM base AS build\nRUN make\nFROM --platform=linux/arm64 base AS arm\nRUN true\nFROM scratch\nCOPY --from=build /a /a\nCOPY --from=arm /b /b\n";
        let host = platform("linux/amd64");
        let found = emulated_stages(file, None, &host, &platform("linux/amd64"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].stage, "arm");
    }

    #[test]
    fn the_check_reads_binfmt_misc() {
        let dir = std::env::temp_dir().join(format!("ecrbuild-binfmt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = "FROM debian AS tools\nRUN true\n";
        let (host, arm) = (platform("linux/amd64"), platform("linux/arm64"));
        let err = check(file, None, &host, std::slice::from_ref(&arm), &dir).unwrap_err();
        assert_eq!(err.exit_code(), crate::ExitCode::Usage);
        let text = err.to_string();
        for needle in [
            "stage tools",
            "linux/arm64",
            "qemu-aarch64",
            "update-binfmts",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        std::fs::write(dir.join("qemu-aarch64"), "disabled\ninterpreter /x\n").unwrap();
        assert!(check(file, None, &host, std::slice::from_ref(&arm), &dir).is_err());
        std::fs::write(dir.join("qemu-aarch64"), "enabled\ninterpreter /x\n").unwrap();
        assert!(check(file, None, &host, &[arm], &dir).is_ok());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
