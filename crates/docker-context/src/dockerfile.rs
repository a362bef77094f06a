//! Which parts of the context a Dockerfile can read. The classic builder reads the context only through
//! the sources of `COPY` and `ADD` (and through ONBUILD triggers, which run `COPY`/`ADD` of the child
//! build), so a build needs only the subtrees those sources name. Whatever cannot be pinned down without
//! running the build (a variable, `..`, a whole-context `.`, ONBUILD) means the whole context.
//!
//! Lines are read as moby's Dockerfile parser reads them: parser directives at the top (`escape`), `#`
//! comments only at the start of a line, continuation lines joined verbatim, comment and blank lines
//! dropped inside a continuation, flags first. Written by hand: no maintained crate parses Dockerfiles
//! with the classic builder's rules, and only four instructions matter here.

use std::collections::BTreeMap;

/// What a build needs from its context, as [`context_needs`] reads the Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextNeeds {
    /// The whole context, and why (a reason for people, such as "COPY . reads the whole context").
    Everything(String),
    /// Only these subtrees (plus the Dockerfile and `.dockerignore`). The base images' ONBUILD triggers
    /// must be checked before relying on it: a trigger runs `COPY`/`ADD` of this build.
    Subtrees {
        /// The subtrees `COPY` and `ADD` read, sorted, without duplicates.
        roots: Vec<SourceRoot>,
        /// The images the stages start `FROM` (build arguments applied), other than earlier
        /// stages and `scratch`: the images whose ONBUILD triggers to check.
        base_images: Vec<String>,
    },
}

/// A subtree of the context a `COPY`/`ADD` source reads: a cleaned relative path without `..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SourceRoot {
    /// The path, relative to the context root, `/`-separated, without wildcards (the part of the
    /// source above its first wildcard).
    pub path: String,
    /// The source had wildcards below this path: the builder resolves symlinks among the matches.
    pub wildcard: bool,
}

/// Which parts of the context `dockerfile` (its bytes) can read, given the build arguments the
/// build gets. Anything that cannot be pinned down without running the build (a variable it
/// cannot resolve, `..`, the whole context `.`, `ONBUILD`, a heredoc, a `FROM --platform` other
/// than `$BUILDPLATFORM`) comes back as [`ContextNeeds::Everything`] with the reason.
pub fn context_needs(dockerfile: &[u8], build_args: &BTreeMap<String, String>) -> ContextNeeds {
    match read(dockerfile, build_args) {
        Ok((mut roots, base_images)) => {
            roots.sort();
            roots.dedup();
            ContextNeeds::Subtrees { roots, base_images }
        }
        Err(reason) => ContextNeeds::Everything(reason),
    }
}

type Reading = Result<(Vec<SourceRoot>, Vec<String>), String>;

fn read(dockerfile: &[u8], build_args: &BTreeMap<String, String>) -> Reading {
    let text =
        std::str::from_utf8(dockerfile).map_err(|_| "the Dockerfile is not UTF-8".to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let escape = escape_directive(text)?;

    let mut roots = Vec::new();
    let mut base_images = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut global_args: BTreeMap<String, Option<String>> = BTreeMap::new();
    for line in logical_lines(text, escape) {
        let line = line.trim_start();
        let (instruction, rest) = match line.find(char::is_whitespace) {
            Some(at) => (&line[..at], line[at..].trim()),
            None => (line, ""),
        };
        match instruction.to_ascii_lowercase().as_str() {
            "arg" if stages.is_empty() => declare_global_args(rest, &mut global_args),
            "from" => {
                let (flags, args) = split_flags(rest);
                // The build host's platform is the daemon's own: the base image it holds (and whose
                // ONBUILD triggers are checked) is the one the stage uses. Any other may not be.
                let other_platform = flags.iter().any(|f| {
                    f.starts_with("--platform")
                        && !matches!(
                            f.split_once('=').map(|(_, v)| v.trim_matches('"')),
                            Some("$BUILDPLATFORM" | "${BUILDPLATFORM}")
                        )
                });
                if other_platform {
                    return Err("FROM --platform may select another base image".to_string());
                }
                let mut words = args.split_whitespace();
                let image = words
                    .next()
                    .ok_or_else(|| "a FROM without an image".to_string())?;
                let image = substitute(image, build_args, &global_args).ok_or_else(|| {
                    format!("FROM {image}: the image name uses a variable that cannot be resolved")
                })?;
                let known_stage = stages.iter().any(|s| s.eq_ignore_ascii_case(&image));
                if !known_stage && !image.eq_ignore_ascii_case("scratch") {
                    base_images.push(image);
                }
                let name = match (words.next(), words.next()) {
                    (Some(kw), Some(name)) if kw.eq_ignore_ascii_case("as") => name.to_string(),
                    _ => String::new(),
                };
                stages.push(name);
            }
            "onbuild" => {
                return Err(
                    "the Dockerfile has ONBUILD triggers (a child build may read anything)"
                        .to_string(),
                )
            }
            kind @ ("copy" | "add") => {
                let (flags, args) = split_flags(rest);
                if flags.iter().any(|f| f.starts_with("--from")) {
                    continue; // reads a stage or an image, not the context
                }
                let words = arguments(args)?;
                let Some((_, sources)) = words.split_last().filter(|(_, s)| !s.is_empty()) else {
                    return Err(format!(
                        "{} with fewer than two arguments",
                        kind.to_uppercase()
                    ));
                };
                for source in sources {
                    if kind == "add" && is_remote(source) {
                        continue;
                    }
                    roots.push(source_root(source)?);
                }
            }
            _ => {}
        }
    }
    Ok((roots, base_images))
}

/// The images a Dockerfile builds on: every `FROM` image and every `COPY --from` that names an
/// image rather than a stage, build arguments applied, each once, in order. `scratch` and stages are
/// not images. An image name that uses a variable without a value cannot be known without the build:
/// that is the `Err`, with the reason.
pub fn images_read(
    dockerfile: &[u8],
    build_args: &BTreeMap<String, String>,
) -> Result<Vec<String>, String> {
    let text =
        std::str::from_utf8(dockerfile).map_err(|_| "the Dockerfile is not UTF-8".to_string())?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let escape = escape_directive(text)?;
    let mut images: Vec<String> = Vec::new();
    let mut stages: Vec<String> = Vec::new();
    let mut global_args: BTreeMap<String, Option<String>> = BTreeMap::new();
    let mut add = |image: String, stages: &[String]| {
        let stage = stages.iter().any(|s| s.eq_ignore_ascii_case(&image))
            || (image.bytes().all(|b| b.is_ascii_digit())
                && image.parse::<usize>().is_ok_and(|n| n < stages.len()));
        if !stage && !image.eq_ignore_ascii_case("scratch") && !images.contains(&image) {
            images.push(image);
        }
    };
    for line in logical_lines(text, escape) {
        let line = line.trim_start();
        let (instruction, rest) = match line.find(char::is_whitespace) {
            Some(at) => (&line[..at], line[at..].trim()),
            None => (line, ""),
        };
        let unresolved =
            |image: &str| format!("{image}: the image name uses a variable that has no value");
        match instruction.to_ascii_lowercase().as_str() {
            "arg" if stages.is_empty() => declare_global_args(rest, &mut global_args),
            "from" => {
                let (_, args) = split_flags(rest);
                let mut words = args.split_whitespace();
                let image = words.next().ok_or("a FROM without an image")?;
                let resolved =
                    substitute(image, build_args, &global_args).ok_or_else(|| unresolved(image))?;
                add(resolved, &stages);
                let name = match (words.next(), words.next()) {
                    (Some(kw), Some(name)) if kw.eq_ignore_ascii_case("as") => name.to_string(),
                    _ => String::new(),
                };
                stages.push(name);
            }
            "copy" | "add" => {
                let (flags, _) = split_flags(rest);
                for flag in flags {
                    if let Some(from) = flag.strip_prefix("--from=") {
                        let from = from.trim_matches('"');
                        let resolved = substitute(from, build_args, &global_args)
                            .ok_or_else(|| unresolved(from))?;
                        add(resolved, &stages);
                    }
                }
            }
            _ => {}
        }
    }
    Ok(images)
}

/// Record the names (and defaults) an `ARG` before the first `FROM` declares: the only variables a
/// `FROM` line may use.
fn declare_global_args(rest: &str, global_args: &mut BTreeMap<String, Option<String>>) {
    for token in rest.split_whitespace() {
        let (name, value) = match token.split_once('=') {
            Some((name, value)) => (name, Some(value.to_string())),
            None => (token, None),
        };
        global_args.insert(name.to_string(), value);
    }
}

/// The `escape` parser directive (`\` unless set to a backtick). Directives are read only before the
/// first line that is not one.
fn escape_directive(text: &str) -> Result<char, String> {
    let mut escape = '\\';
    for line in text.lines() {
        let Some(body) = line.trim().strip_prefix('#') else {
            break;
        };
        let Some((name, value)) = body.split_once('=') else {
            break;
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric()) {
            break;
        }
        if name.eq_ignore_ascii_case("escape") {
            escape = match value.trim() {
                "\\" => '\\',
                "`" => '`',
                other => return Err(format!("unknown escape directive {other:?}")),
            };
        }
    }
    Ok(escape)
}

/// Instructions with their continuation lines joined (the escape character removed, the next line
/// appended as it is). Comment lines and blank lines never start an instruction and are dropped inside a
/// continuation.
fn logical_lines(text: &str, escape: char) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current: Option<String> = None;
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim_start();
        if trimmed.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let joined = current.get_or_insert_with(String::new);
        match continued(line, escape) {
            Some(head) => joined.push_str(head),
            None => {
                joined.push_str(line);
                lines.extend(current.take());
            }
        }
    }
    lines.extend(current);
    lines
}

/// `line` without its trailing escape character (and the blanks after it), if it continues.
fn continued(line: &str, escape: char) -> Option<&str> {
    let end = line.trim_end_matches([' ', '\t']);
    end.strip_suffix(escape)
}

/// Leading `--flag[=value]` words, and the rest.
fn split_flags(args: &str) -> (Vec<&str>, &str) {
    let mut flags = Vec::new();
    let mut rest = args.trim_start();
    while rest.starts_with("--") {
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        flags.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    (flags, rest)
}

/// The arguments of `COPY`/`ADD`: a JSON array of strings, else words split at whitespace (quotes are
/// not special there, as in the classic builder).
fn arguments(args: &str) -> Result<Vec<String>, String> {
    if args.contains("<<") {
        return Err("a heredoc in COPY or ADD".to_string());
    }
    if args.starts_with('[') {
        if let Ok(words) = serde_json::from_str::<Vec<String>>(args) {
            return Ok(words);
        }
    }
    Ok(args.split_whitespace().map(str::to_string).collect())
}

fn is_remote(source: &str) -> bool {
    source.starts_with("http://") || source.starts_with("https://")
}

/// The subtree a source reads, as the builder resolves it: a leading `/` or `./` is dropped, and with
/// wildcards, everything under the last directory before the first wildcard.
fn source_root(source: &str) -> Result<SourceRoot, String> {
    if source.contains('$') {
        return Err(format!(
            "COPY/ADD source {source:?} uses a variable, resolved only during the build"
        ));
    }
    if source.contains('\\') {
        return Err(format!(
            "COPY/ADD source {source:?} contains a backslash (an escape for wildcards)"
        ));
    }
    let mut parts = Vec::new();
    let mut wildcard = false;
    for part in source.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(format!("COPY/ADD source {source:?} contains ..")),
            _ if part.contains(['*', '?', '[']) => {
                wildcard = true;
                break;
            }
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err(format!(
            "COPY/ADD source {source:?} reads the whole context"
        ));
    }
    Ok(SourceRoot {
        path: parts.join("/"),
        wildcard,
    })
}

/// `$NAME`, `${NAME}` and `${NAME:-default}` in a FROM image, with the build arguments and the ARGs
/// declared before the first FROM; `None` for anything else or an unset variable.
fn substitute(
    image: &str,
    build_args: &BTreeMap<String, String>,
    global_args: &BTreeMap<String, Option<String>>,
) -> Option<String> {
    let value = |name: &str| -> Option<String> {
        let declared = global_args.get(name)?;
        build_args.get(name).cloned().or_else(|| declared.clone())
    };
    let mut out = String::new();
    let mut rest = image;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (expanded, after) = if let Some(inner) = rest.strip_prefix('{') {
            let end = inner.find('}')?;
            let body = &inner[..end];
            let expanded = match body.split_once(":-") {
                Some((name, default)) => value(name)
                    .filter(|v| !v.is_empty())
                    .unwrap_or_else(|| default.to_string()),
                None => value(body)?,
            };
            (expanded, &inner[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (value(&rest[..end])?, &rest[end..])
        };
        if expanded.contains('$') {
            return None;
        }
        out.push_str(&expanded);
        rest = after;
    }
    out.push_str(rest);
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(dockerfile: &str) -> ContextNeeds {
        context_needs(dockerfile.as_bytes(), &BTreeMap::new())
    }

    fn roots(dockerfile: &str) -> Vec<(String, bool)> {
        match needs(dockerfile) {
            ContextNeeds::Subtrees { roots, .. } => {
                roots.into_iter().map(|r| (r.path, r.wildcard)).collect()
            }
            ContextNeeds::Everything(reason) => panic!("everything: {reason}"),
        }
    }

    fn everything(dockerfile: &str) -> String {
        match needs(dockerfile) {
            ContextNeeds::Everything(reason) => reason,
            other => panic!("expected everything, got {other:?}"),
        }
    }

    #[test]
    fn copy_and_add_sources_are_the_roots() {
        assert_eq!(
            roots("FROM scratch\nCOPY a.txt /x\nadd dir/ sub/f /y/\nCOPY --chown=1:1 ./z /z\n"),
            vec![
                ("a.txt".into(), false),
                ("dir".into(), false),
                ("sub/f".into(), false),
                ("z".into(), false)
            ]
        );
    }

    #[test]
    fn continuation_lines_are_joined_as_the_parser_joins_them() {
        assert_eq!(
            roots("FROM scratch\nCOPY a \\\n# a comment\n\n     b /dest/\nCOPY c\\\nd /e\n"),
            vec![
                ("a".into(), false),
                ("b".into(), false),
                ("cd".into(), false)
            ]
        );
        // With a backtick escape, a backslash is an ordinary character (here: one the builder would
        // treat as a wildcard escape, so everything is sent).
        assert_eq!(
            roots("# escape=`\nFROM scratch\nCOPY a `\n  b /dest/\n"),
            vec![("a".into(), false), ("b".into(), false)]
        );
        assert!(everything("# escape=`\nFROM scratch\nCOPY a\\b /dest/\n").contains("backslash"));
    }

    #[test]
    fn json_form_keeps_spaces_and_whitespace_form_does_not_read_quotes() {
        assert_eq!(
            roots("FROM scratch\nCOPY [\"with space.txt\", \"other\", \"/d/\"]\n"),
            vec![("other".into(), false), ("with space.txt".into(), false)]
        );
        assert_eq!(
            roots("FROM scratch\nCOPY \"q.txt\" /d/\n"),
            vec![("\"q.txt\"".into(), false)]
        );
    }

    #[test]
    fn wildcards_read_the_directory_above_them() {
        assert_eq!(
            roots("FROM scratch\nCOPY src/*.go pkg/a?/x /d/\n"),
            vec![("pkg".into(), true), ("src".into(), true)]
        );
        assert!(everything("FROM scratch\nCOPY *.txt /d/\n").contains("whole context"));
    }

    #[test]
    fn stages_images_and_urls_are_not_context() {
        let found = needs(
            "ARG BASE=alpine:3\nFROM ${BASE} AS base\nFROM base\nCOPY --from=base /a /a\n\
             ADD https://example.com/x.tgz /x\nFROM scratch\nCOPY f /f\n",
        );
        assert_eq!(
            found,
            ContextNeeds::Subtrees {
                roots: vec![SourceRoot {
                    path: "f".into(),
                    wildcard: false
                }],
                base_images: vec!["alpine:3".into()],
            }
        );
    }

    #[test]
    fn what_cannot_be_pinned_down_means_everything() {
        for (dockerfile, reason) in [
            ("FROM scratch\nCOPY . /app\n", "whole context"),
            ("FROM scratch\nCOPY ./ /app\n", "whole context"),
            ("FROM scratch\nCOPY / /app\n", "whole context"),
            ("FROM scratch\nARG D=x\nCOPY $D /app\n", "variable"),
            ("FROM scratch\nCOPY ${D:-x} /app\n", "variable"),
            ("FROM scratch\nCOPY a/../b /app\n", ".."),
            ("FROM scratch\nONBUILD COPY . /app\n", "ONBUILD"),
            (
                "FROM --platform=linux/arm64 alpine\nCOPY a /a\n",
                "--platform",
            ),
            ("FROM $UNDECLARED\nCOPY a /a\n", "variable"),
            ("FROM scratch\nCOPY <<EOF /a\nx\nEOF\n", "heredoc"),
            ("FROM scratch\nCOPY onlyone\n", "fewer than two"),
            ("# escape=x\nFROM scratch\n", "escape directive"),
        ] {
            let got = everything(dockerfile);
            assert!(got.contains(reason), "{dockerfile:?}: {got}");
        }
        assert!(matches!(
            context_needs(b"FROM scratch\nCOPY \xff /x\n", &BTreeMap::new()),
            ContextNeeds::Everything(_)
        ));
    }

    #[test]
    fn from_variables_use_build_args_only_when_declared() {
        let mut args = BTreeMap::new();
        args.insert("IMG".to_string(), "busybox".to_string());
        // Declared without a default: the build argument gives it.
        let found = context_needs(b"ARG IMG\nFROM $IMG\nCOPY a /a\n", &args);
        assert!(
            matches!(&found, ContextNeeds::Subtrees { base_images, .. } if base_images == &["busybox".to_string()]),
            "{found:?}"
        );
        // Not declared before FROM: the builder does not expand it either.
        assert!(matches!(
            context_needs(b"FROM $IMG\nCOPY a /a\n", &args),
            ContextNeeds::Everything(_)
        ));
        assert_eq!(
            substitute(
                "${IMG:-alpine}:3",
                &BTreeMap::new(),
                &[("IMG".to_string(), None)].into_iter().collect()
            ),
            Some("alpine:3".to_string())
        );
    }

    #[test]
    fn images_read_lists_bases_and_copy_from_images_once() {
        let dockerfile = b"ARG GO=golang:1.22\nFROM ${GO} AS build\nCOPY . .\nFROM scratch\n\
COPY --from=build /a /a\nCOPY --from=0 /b /b\nCOPY --from=alpine:3 /c /c\nFROM golang:1.22\n";
        let images = images_read(dockerfile, &BTreeMap::new()).unwrap();
        assert_eq!(
            images,
            vec!["golang:1.22".to_string(), "alpine:3".to_string()]
        );
        let args = BTreeMap::from([("GO".to_string(), "local/go:1".to_string())]);
        let images = images_read(dockerfile, &args).unwrap();
        assert_eq!(images[0], "local/go:1");
    }

    #[test]
    fn images_read_refuses_an_image_it_cannot_name() {
        let reason = images_read(b"FROM ${NOPE}\n", &BTreeMap::new()).unwrap_err();
        assert!(reason.contains("${NOPE}"), "{reason}");
    }
}
