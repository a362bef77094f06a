//! Which CI runs us, and what it says about the commit: branch, pull/merge request, default branch,
//! source URL, git tag. Each system's own variables, so the same command line works in CodeBuild,
//! GitHub Actions, GitLab CI and on a laptop. Flags override everything here.

use crate::env::Env;
use crate::identity::is_sha_tag;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CiSystem {
    CodeBuild,
    GitHubActions,
    GitLab,
    None,
}

impl CiSystem {
    pub fn name(self) -> &'static str {
        match self {
            CiSystem::CodeBuild => "AWS CodeBuild",
            CiSystem::GitHubActions => "GitHub Actions",
            CiSystem::GitLab => "GitLab CI",
            CiSystem::None => "no CI",
        }
    }
}

/// What the CI (or git) says about this build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiContext {
    pub system: CiSystem,
    /// The branch being built; `None` when unknown (detached HEAD, a StartBuild without a branch).
    pub branch: Option<String>,
    /// The pull/merge request number, when this is a PR/MR build.
    pub pull_request: Option<u64>,
    pub default_branch: Option<String>,
    /// The git tag being built (`v1.2.3`), when the build is for a tag.
    pub git_tag: Option<String>,
    /// Web URL of the source repository, for `org.opencontainers.image.source`.
    pub source: Option<String>,
}

/// What git in the context directory can tell, for runs outside CI.
#[derive(Debug, Clone, Default)]
pub struct LocalGit {
    pub branch: Option<String>,
    pub remote_url: Option<String>,
}

/// Detect the CI system and read its variables. `local` is only used outside CI.
pub fn detect(env: &Env, local: impl FnOnce() -> LocalGit) -> CiContext {
    if env.get("CODEBUILD_BUILD_ID").is_some()
        || env.get("CODEBUILD_RESOLVED_SOURCE_VERSION").is_some()
    {
        codebuild(env)
    } else if env.get("GITHUB_ACTIONS") == Some("true") {
        github(env)
    } else if env.get("GITLAB_CI").is_some() {
        gitlab(env)
    } else {
        let git = local();
        CiContext {
            system: CiSystem::None,
            branch: git.branch.filter(|b| b != "HEAD"),
            pull_request: None,
            default_branch: None,
            git_tag: None,
            source: git.remote_url.as_deref().and_then(web_url),
        }
    }
}

fn codebuild(env: &Env) -> CiContext {
    // CODEBUILD_WEBHOOK_TRIGGER is `branch/<name>`, `tag/<name>` or `pr/<number>` for webhook builds.
    let trigger = env.get("CODEBUILD_WEBHOOK_TRIGGER").unwrap_or_default();
    let head_branch = env
        .get("CODEBUILD_WEBHOOK_HEAD_REF")
        .and_then(|r| r.strip_prefix("refs/heads/"))
        .map(str::to_string);
    let (branch, pull_request, git_tag) = if let Some(name) = trigger.strip_prefix("branch/") {
        (Some(name.to_string()), None, None)
    } else if let Some(number) = trigger.strip_prefix("pr/") {
        (head_branch, number.parse().ok(), None)
    } else if let Some(name) = trigger.strip_prefix("tag/") {
        (None, None, Some(name.to_string()))
    } else {
        // A StartBuild with a branch as source version (`refs/heads/main` or `main`) names it.
        let from_version = env.get("CODEBUILD_SOURCE_VERSION").and_then(|v| {
            let v = v.strip_prefix("refs/heads/").unwrap_or(v);
            (!is_sha_tag(v) && !v.starts_with("pr/") && !v.contains("refs/")).then(|| v.to_string())
        });
        (head_branch.or(from_version), None, None)
    };
    CiContext {
        system: CiSystem::CodeBuild,
        branch,
        pull_request,
        default_branch: None,
        git_tag,
        source: env.get("CODEBUILD_SOURCE_REPO_URL").and_then(web_url),
    }
}

fn github(env: &Env) -> CiContext {
    let reference = env.get("GITHUB_REF").unwrap_or_default();
    let event = env.get("GITHUB_EVENT_NAME").unwrap_or_default();
    let is_pr = event.starts_with("pull_request");
    let pull_request = if is_pr {
        // refs/pull/<number>/merge
        reference
            .strip_prefix("refs/pull/")
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.parse().ok())
    } else {
        None
    };
    let branch = if is_pr {
        env.get("GITHUB_HEAD_REF").map(str::to_string)
    } else {
        reference.strip_prefix("refs/heads/").map(str::to_string)
    };
    let source = match (env.get("GITHUB_SERVER_URL"), env.get("GITHUB_REPOSITORY")) {
        (Some(server), Some(repository)) => {
            Some(format!("{}/{repository}", server.trim_end_matches('/')))
        }
        _ => None,
    };
    CiContext {
        system: CiSystem::GitHubActions,
        branch,
        pull_request,
        default_branch: env.get("ECRBUILD_DEFAULT_BRANCH").map(str::to_string),
        git_tag: reference.strip_prefix("refs/tags/").map(str::to_string),
        source,
    }
}

fn gitlab(env: &Env) -> CiContext {
    let pull_request = env.get("CI_MERGE_REQUEST_IID").and_then(|n| n.parse().ok());
    let branch = env
        .get("CI_COMMIT_BRANCH")
        .or_else(|| env.get("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME"))
        .map(str::to_string);
    CiContext {
        system: CiSystem::GitLab,
        branch,
        pull_request,
        default_branch: env.get("CI_DEFAULT_BRANCH").map(str::to_string),
        git_tag: env.get("CI_COMMIT_TAG").map(str::to_string),
        source: env.get("CI_PROJECT_URL").map(str::to_string),
    }
}

/// A browsable https URL for a git remote, without credentials: `git@github.com:o/r.git` and
/// `https://user:token@github.com/o/r.git` both become `https://github.com/o/r`.
pub fn web_url(remote: &str) -> Option<String> {
    let remote = remote.trim();
    let (host, path) = if let Some(rest) = remote.strip_prefix("git@") {
        rest.split_once(':')?
    } else {
        let rest = remote
            .strip_prefix("https://")
            .or_else(|| remote.strip_prefix("http://"))
            .or_else(|| remote.strip_prefix("ssh://"))?;
        let rest = rest.rsplit_once('@').map_or(rest, |(_, after)| after);
        rest.split_once('/')?
    };
    let host = host.split(':').next()?;
    let path = path.trim_end_matches('/').trim_end_matches(".git");
    (!host.is_empty() && !path.is_empty()).then(|| format!("https://{host}/{path}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> LocalGit {
        LocalGit::default()
    }

    #[test]
    fn codebuild_webhook_branch_pr_and_tag() {
        let env = Env::from_pairs([
            ("CODEBUILD_BUILD_ID", "p:1"),
            ("CODEBUILD_WEBHOOK_TRIGGER", "branch/main"),
            ("CODEBUILD_SOURCE_REPO_URL", "https://github.com/o/r.git"),
        ]);
        let ci = detect(&env, none);
        assert_eq!(ci.system, CiSystem::CodeBuild);
        assert_eq!(ci.branch.as_deref(), Some("main"));
        assert_eq!(ci.source.as_deref(), Some("https://github.com/o/r"));

        let env = Env::from_pairs([
            ("CODEBUILD_BUILD_ID", "p:1"),
            ("CODEBUILD_WEBHOOK_TRIGGER", "pr/42"),
            ("CODEBUILD_WEBHOOK_HEAD_REF", "refs/heads/feature"),
        ]);
        let ci = detect(&env, none);
        assert_eq!(ci.pull_request, Some(42));
        assert_eq!(ci.branch.as_deref(), Some("feature"));

        let env = Env::from_pairs([
            ("CODEBUILD_BUILD_ID", "p:1"),
            ("CODEBUILD_WEBHOOK_TRIGGER", "tag/v1.2.3"),
        ]);
        assert_eq!(detect(&env, none).git_tag.as_deref(), Some("v1.2.3"));
    }

    #[test]
    fn codebuild_start_build_with_a_branch_source_version() {
        let env = Env::from_pairs([
            ("CODEBUILD_BUILD_ID", "p:1"),
            ("CODEBUILD_SOURCE_VERSION", "refs/heads/main"),
        ]);
        assert_eq!(detect(&env, none).branch.as_deref(), Some("main"));
        let sha = "a".repeat(40);
        let env = Env::from_pairs([
            ("CODEBUILD_BUILD_ID", "p:1"),
            ("CODEBUILD_SOURCE_VERSION", sha.as_str()),
        ]);
        assert_eq!(detect(&env, none).branch, None);
    }

    #[test]
    fn github_push_pull_request_and_tag() {
        let env = Env::from_pairs([
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF", "refs/heads/main"),
            ("GITHUB_EVENT_NAME", "push"),
            ("GITHUB_SERVER_URL", "https://github.com"),
            ("GITHUB_REPOSITORY", "o/r"),
        ]);
        let ci = detect(&env, none);
        assert_eq!(ci.system, CiSystem::GitHubActions);
        assert_eq!(ci.branch.as_deref(), Some("main"));
        assert_eq!(ci.pull_request, None);
        assert_eq!(ci.source.as_deref(), Some("https://github.com/o/r"));

        let env = Env::from_pairs([
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF", "refs/pull/7/merge"),
            ("GITHUB_EVENT_NAME", "pull_request"),
            ("GITHUB_HEAD_REF", "fix"),
        ]);
        let ci = detect(&env, none);
        assert_eq!(ci.pull_request, Some(7));
        assert_eq!(ci.branch.as_deref(), Some("fix"));

        let env = Env::from_pairs([
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_REF", "refs/tags/v2.0.0"),
        ]);
        assert_eq!(detect(&env, none).git_tag.as_deref(), Some("v2.0.0"));
    }

    #[test]
    fn gitlab_branch_merge_request_and_default_branch() {
        let env = Env::from_pairs([
            ("GITLAB_CI", "true"),
            ("CI_COMMIT_BRANCH", "master"),
            ("CI_DEFAULT_BRANCH", "master"),
            ("CI_PROJECT_URL", "https://gitlab.com/g/p"),
        ]);
        let ci = detect(&env, none);
        assert_eq!(ci.system, CiSystem::GitLab);
        assert_eq!(ci.branch.as_deref(), Some("master"));
        assert_eq!(ci.default_branch.as_deref(), Some("master"));
        assert_eq!(ci.source.as_deref(), Some("https://gitlab.com/g/p"));

        let env = Env::from_pairs([
            ("GITLAB_CI", "true"),
            ("CI_MERGE_REQUEST_IID", "12"),
            ("CI_MERGE_REQUEST_SOURCE_BRANCH_NAME", "feat"),
        ]);
        let ci = detect(&env, none);
        assert_eq!(ci.pull_request, Some(12));
        assert_eq!(ci.branch.as_deref(), Some("feat"));
    }

    #[test]
    fn outside_ci_git_answers() {
        let ci = detect(&Env::default(), || LocalGit {
            branch: Some("main".into()),
            remote_url: Some("git@github.com:o/r.git".into()),
        });
        assert_eq!(ci.system, CiSystem::None);
        assert_eq!(ci.branch.as_deref(), Some("main"));
        assert_eq!(ci.source.as_deref(), Some("https://github.com/o/r"));
        let detached = detect(&Env::default(), || LocalGit {
            branch: Some("HEAD".into()),
            remote_url: None,
        });
        assert_eq!(detached.branch, None);
    }

    #[test]
    fn remote_urls_lose_their_credentials() {
        assert_eq!(
            web_url("https://x-access-token:SECRET@github.com/o/r.git").as_deref(),
            Some("https://github.com/o/r")
        );
        assert_eq!(
            web_url("ssh://git@gitlab.com:22/g/p.git").as_deref(),
            Some("https://gitlab.com/g/p")
        );
        assert_eq!(web_url("/local/path"), None);
    }
}
