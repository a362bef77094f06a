//! `.dockerignore` rules with the semantics of the docker CLI: the file is read like moby's
//! `ignorefile.ReadAll`, patterns are compiled like moby/patternmatcher, and the walk uses the same
//! matcher calls as docker/cli and moby's tar archiver.
//!
//! Written by hand on purpose: no maintained Rust crate implements these rules, and the `ignore`
//! crate has gitignore semantics (there `foo` matches at any depth and `*` can match `a/b`).
//!
//! How a pattern is read (each step mirrors the CLI):
//! - line 1 loses a UTF-8 BOM; a line starting with `#` is a comment; lines are trimmed (Unicode
//!   spaces); a leading `!` marks an exception; the rest is cleaned like Go's `filepath.Clean`
//!   (`./a`, `a/`, `a//b` are `a`, `a`, `a/b`) and one leading `/` is dropped;
//! - the pattern must be valid for Go's `filepath.Match` (unclosed `[`, `[]`, a trailing `\` are
//!   errors), and then it is translated into a Go regular expression: `*` is `[^/]*`, `?` is `[^/]`,
//!   `**` is `(.*/)?` (or "any suffix"/"any prefix" at either end), `\x` escapes `x`, and `[...]` is
//!   passed through to the regexp engine, which is why `[!a]` is *not* a negation there. `|`, `{`,
//!   `}` and `^` reach the regexp engine as operators too (see `go_regexp.rs`). Patterns the
//!   regexp engine rejects are errors (docker reports them lazily; we report them up front);
//! - a path is excluded when the last pattern that matches it (or one of its parent directories) is
//!   not an exception.

use std::cell::OnceCell;

use super::go_regexp::Regex;
use super::gostr::{clean, decode_rune, decode_runes, trim_space, REPLACEMENT};

/// The longest `.dockerignore` line Go's `bufio.Scanner` accepts (64 KiB buffer, newline included).
const MAX_LINE_BYTES: usize = 64 * 1024 - 1;
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// A pattern docker would reject, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad pattern {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written (trimmed; invalid UTF-8 shown as U+FFFD).
    pub pattern: String,
    /// What is wrong with it, and how to write it instead.
    pub reason: String,
}

/// A `.dockerignore` line docker would reject.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {source}")]
pub struct ParseError {
    /// The 1-based line number, counting comments and blank lines.
    pub line: usize,
    /// The pattern on that line and what is wrong with it.
    pub source: PatternError,
}

/// The compiled patterns of one `.dockerignore` file, in file order.
///
/// Paths are relative to the context root, `/`-separated, as bytes (file names need not be
/// UTF-8).
#[derive(Debug, Clone, Default)]
pub struct IgnoreRules {
    patterns: Vec<Pattern>,
    has_exceptions: bool,
}

#[derive(Debug, Clone)]
struct Pattern {
    /// 1-based `.dockerignore` line; 0 for the exceptions the CLI adds itself.
    line: usize,
    exception: bool,
    /// Cleaned pattern text without the leading `!`.
    text: Vec<u8>,
    component_count: usize,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
    Exact,
    /// Pattern ends in `**`: any path starting with the text before it.
    Prefix,
    /// Pattern starts with `**`: any path ending with the text after it.
    Suffix,
    Regex(Regex),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Suffix,
    Regex,
}

/// Per-pattern "matched" flags of a directory, handed down to its children during the walk
/// (moby's `MatchInfo`).
#[derive(Debug, Clone)]
pub(crate) struct MatchState(Vec<bool>);

/// A path being matched; its runes are decoded at most once, and only if a regexp needs them.
struct Subject<'a> {
    bytes: &'a [u8],
    runes: OnceCell<Vec<char>>,
}

impl<'a> Subject<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Subject {
            bytes,
            runes: OnceCell::new(),
        }
    }

    fn runes(&self) -> &[char] {
        self.runes.get_or_init(|| decode_runes(self.bytes))
    }
}

impl Pattern {
    fn matches(&self, subject: &Subject<'_>) -> bool {
        let path = subject.bytes;
        match &self.matcher {
            Matcher::Exact => path == self.text.as_slice(),
            Matcher::Prefix => path.starts_with(&self.text[..self.text.len() - 2]),
            Matcher::Suffix => {
                let suffix = &self.text[2..];
                path.ends_with(suffix) || (suffix.first() == Some(&b'/') && path == &suffix[1..])
            }
            Matcher::Regex(regex) => regex.is_match(subject.runes()),
        }
    }
}

impl IgnoreRules {
    /// Parse the contents of a `.dockerignore` file, as the docker CLI reads it. The first line
    /// docker would reject is an error.
    pub fn parse(content: &[u8]) -> Result<IgnoreRules, ParseError> {
        let mut rules = IgnoreRules::default();
        for (index, raw_line) in lines(content).enumerate() {
            let line = index + 1;
            if raw_line.len() > MAX_LINE_BYTES {
                return Err(ParseError {
                    line,
                    source: PatternError {
                        pattern: display(&raw_line[..40]) + "…",
                        reason: format!(
                            "the line is longer than {MAX_LINE_BYTES} bytes, which the docker CLI rejects; split it up"
                        ),
                    },
                });
            }
            let mut bytes = raw_line.strip_suffix(b"\r").unwrap_or(raw_line);
            if index == 0 {
                bytes = bytes.strip_prefix(UTF8_BOM).unwrap_or(bytes);
            }
            if bytes.starts_with(b"#") {
                continue;
            }
            let trimmed = trim_space(bytes);
            if trimmed.is_empty() {
                continue;
            }
            let (exception, body) = match trimmed.strip_prefix(b"!") {
                Some(rest) => (true, trim_space(rest)),
                None => (false, trimmed),
            };
            let mut pattern = Vec::with_capacity(body.len() + 1);
            if exception {
                pattern.push(b'!');
            }
            if !body.is_empty() {
                let cleaned = clean(body);
                let without_root = match cleaned.strip_prefix(b"/") {
                    Some(rest) if !rest.is_empty() => rest,
                    _ => &cleaned,
                };
                pattern.extend_from_slice(without_root);
            }
            rules
                .push(&pattern, line, trimmed)
                .map_err(|source| ParseError { line, source })?;
        }
        Ok(rules)
    }

    /// Compile already-read patterns (moby's `patternmatcher.New`); `line` in errors is the
    /// 1-based position in `patterns`.
    pub fn from_patterns<P: AsRef<[u8]>>(
        patterns: impl IntoIterator<Item = P>,
    ) -> Result<IgnoreRules, ParseError> {
        let mut rules = IgnoreRules::default();
        for (index, pattern) in patterns.into_iter().enumerate() {
            let pattern = pattern.as_ref();
            rules
                .push(pattern, index + 1, pattern)
                .map_err(|source| ParseError {
                    line: index + 1,
                    source,
                })?;
        }
        Ok(rules)
    }

    /// Append `!<path>`, as the CLI does for a Dockerfile or `.dockerignore` that is excluded.
    /// The path is read as a pattern, exactly like the CLI does.
    pub(crate) fn push_exception(&mut self, path: &[u8]) -> Result<(), PatternError> {
        let mut pattern = b"!".to_vec();
        pattern.extend_from_slice(path);
        self.push(&pattern, 0, &pattern)
    }

    /// Number of patterns.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.patterns.len()
    }

    /// True when at least one pattern is an exception (`!...`).
    pub(crate) fn has_exceptions(&self) -> bool {
        self.has_exceptions
    }

    fn push(&mut self, raw: &[u8], line: usize, shown: &[u8]) -> Result<(), PatternError> {
        let trimmed = trim_space(raw);
        if trimmed.is_empty() {
            return Ok(());
        }
        let fail = |reason: String| PatternError {
            pattern: display(shown),
            reason,
        };
        let cleaned = clean(trimmed);
        let (exception, text) = match cleaned.strip_prefix(b"!") {
            Some([]) => {
                return Err(fail(
                    "a lone `!` is not a pattern; write `!path` to re-include a path".into(),
                ))
            }
            Some(rest) => (true, rest.to_vec()),
            None => (false, cleaned),
        };
        check_glob_syntax(&text).map_err(fail)?;
        let matcher = compile(&text).map_err(fail)?;
        self.has_exceptions |= exception;
        self.patterns.push(Pattern {
            line,
            exception,
            component_count: text.split(|&b| b == b'/').count(),
            text,
            matcher,
        });
        Ok(())
    }

    /// Is `path` (relative to the context root, `/`-separated) excluded? A path is excluded when
    /// the last pattern matching it or one of its parent directories is not an exception
    /// (moby's `MatchesOrParentMatches`, as the CLI's context check uses it).
    pub fn is_excluded(&self, path: &[u8]) -> bool {
        let path = clean(path);
        if path == b"." {
            return false;
        }
        let subject = Subject::new(&path);
        let parents = parent_prefixes(&path);
        let parents: Vec<Subject<'_>> = parents.iter().map(|p| Subject::new(p)).collect();
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exception != matched {
                continue;
            }
            if pattern.matches(&subject) || parents.iter().any(|parent| pattern.matches(parent)) {
                matched = !pattern.exception;
            }
        }
        matched
    }

    /// The line of the pattern that decides `path`'s fate under [`is_excluded`](Self::is_excluded)
    /// (the last one that changed the verdict), or `None` if no pattern matched. For `--list`-style
    /// debugging; line 0 is an exception the CLI adds for the Dockerfile or `.dockerignore`.
    pub fn deciding_line(&self, path: &[u8]) -> Option<usize> {
        let path = clean(path);
        let subject = Subject::new(&path);
        let parents = parent_prefixes(&path);
        let parents: Vec<Subject<'_>> = parents.iter().map(|p| Subject::new(p)).collect();
        let mut matched = false;
        let mut line = None;
        for pattern in &self.patterns {
            if pattern.exception != matched {
                continue;
            }
            if pattern.matches(&subject) || parents.iter().any(|parent| pattern.matches(parent)) {
                matched = !pattern.exception;
                line = Some(pattern.line);
            }
        }
        line
    }

    /// moby's deprecated `Matches`, which only looks at one parent prefix (as long as the
    /// pattern). The CLI still uses it to decide whether the Dockerfile and `.dockerignore` need a
    /// `!` exception appended.
    pub(crate) fn is_excluded_legacy(&self, path: &[u8]) -> bool {
        let file = clean(path);
        if file == b"." {
            return false;
        }
        let subject = Subject::new(&file);
        let parent = go_dir(&file);
        let parent_parts: Vec<&[u8]> = parent.split(|&b| b == b'/').collect();
        let mut matched = false;
        for pattern in &self.patterns {
            if pattern.exception != matched {
                continue;
            }
            let mut hit = pattern.matches(&subject);
            if !hit && parent != b"." && pattern.component_count <= parent_parts.len() {
                let prefix = parent_parts[..pattern.component_count].join(&b'/');
                hit = pattern.matches(&Subject::new(&prefix));
            }
            if hit {
                matched = !pattern.exception;
            }
        }
        matched
    }

    /// moby's `MatchesUsingParentResults`, which the tar archiver uses while walking: a pattern
    /// that matched the parent directory counts as matched, and only top-level entries (no parent
    /// state) fall back to checking parent prefixes. Returns the verdict and the state to hand to
    /// this entry's children.
    pub(crate) fn match_entry(
        &self,
        path: &[u8],
        parent: Option<&MatchState>,
    ) -> (bool, MatchState) {
        let subject = Subject::new(path);
        let mut parent_subjects: Option<Vec<Vec<u8>>> = None;
        let mut state = vec![false; self.patterns.len()];
        let mut matched = false;
        for (index, pattern) in self.patterns.iter().enumerate() {
            let mut hit = parent.is_some_and(|p| p.0.get(index).copied().unwrap_or(false));
            if !hit {
                if pattern.exception != matched {
                    continue;
                }
                hit = pattern.matches(&subject);
                if !hit && parent.is_none() {
                    let prefixes = parent_subjects.get_or_insert_with(|| parent_prefixes(path));
                    hit = prefixes.iter().any(|p| pattern.matches(&Subject::new(p)));
                }
            }
            state[index] = hit;
            if hit {
                matched = !pattern.exception;
            }
        }
        (matched, MatchState(state))
    }

    /// Whether an excluded directory must still be walked: moby does so when some exception
    /// pattern, read literally, lies inside it (`!dir/keep` for `dir`). Wildcards are not
    /// expanded here, so `!**/keep` never reopens an excluded directory.
    pub(crate) fn exception_may_reinclude_inside(&self, dir: &[u8]) -> bool {
        self.patterns.iter().any(|pattern| {
            pattern.exception
                && pattern.text.starts_with(dir)
                && (pattern.text.len() == dir.len() || pattern.text[dir.len()] == b'/')
        })
    }
}

/// Lines as Go's `bufio.ScanLines` yields them (without `\n`; the caller drops one `\r`).
fn lines(content: &[u8]) -> impl Iterator<Item = &[u8]> {
    let body = content.strip_suffix(b"\n").unwrap_or(content);
    let empty = content.is_empty();
    body.split(|&b| b == b'\n').filter(move |_| !empty)
}

fn display(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Go's `filepath.Dir` for a clean relative or absolute path.
fn go_dir(path: &[u8]) -> Vec<u8> {
    match path.iter().rposition(|&b| b == b'/') {
        Some(slash) => clean(&path[..=slash]),
        None => b".".to_vec(),
    }
}

/// The parent directories of `path`, outermost first, as moby computes them
/// (`filepath.Dir` split on `/` and re-joined).
fn parent_prefixes(path: &[u8]) -> Vec<Vec<u8>> {
    let parent = go_dir(path);
    if parent == b"." {
        return Vec::new();
    }
    let parts: Vec<&[u8]> = parent.split(|&b| b == b'/').collect();
    (1..=parts.len()).map(|n| parts[..n].join(&b'/')).collect()
}

/// Reject what Go's `filepath.Match` rejects (moby calls `filepath.Match(pattern, ".")` on every
/// pattern): every chunk between stars is checked, classes must be closed and non-empty, a range
/// needs both ends, and a backslash needs something to escape.
fn check_glob_syntax(mut pattern: &[u8]) -> Result<(), String> {
    while !pattern.is_empty() {
        while let Some(rest) = pattern.strip_prefix(b"*") {
            pattern = rest;
        }
        let mut in_class = false;
        let mut end = 0;
        while end < pattern.len() {
            match pattern[end] {
                b'\\' if end + 1 < pattern.len() => end += 1,
                b'[' => in_class = true,
                b']' => in_class = false,
                b'*' if !in_class => break,
                _ => {}
            }
            end += 1;
        }
        check_chunk(&pattern[..end])?;
        pattern = &pattern[end..];
    }
    Ok(())
}

fn check_chunk(mut chunk: &[u8]) -> Result<(), String> {
    while let Some(&first) = chunk.first() {
        match first {
            b'[' => {
                chunk = &chunk[1..];
                if let Some(rest) = chunk.strip_prefix(b"^") {
                    chunk = rest;
                }
                let mut ranges = 0;
                loop {
                    if ranges > 0 {
                        if let Some(rest) = chunk.strip_prefix(b"]") {
                            chunk = rest;
                            break;
                        }
                    }
                    chunk = class_char(chunk, ranges == 0)?;
                    if let Some(rest) = chunk.strip_prefix(b"-") {
                        chunk = class_char(rest, false)?;
                    }
                    ranges += 1;
                }
            }
            b'\\' => {
                if chunk.len() < 2 {
                    return Err(
                        "the pattern ends with a lone `\\`; write `\\\\` to match a backslash"
                            .into(),
                    );
                }
                chunk = &chunk[2..];
            }
            _ => chunk = &chunk[1..],
        }
    }
    Ok(())
}

/// One (possibly escaped) character of a `[...]` class; returns what follows it.
fn class_char(chunk: &[u8], first: bool) -> Result<&[u8], String> {
    const UNCLOSED: &str =
        "the character class `[` is not closed; write `\\[` to match a literal `[`";
    let mut rest = match chunk.first() {
        None => return Err(UNCLOSED.into()),
        Some(b']') if first => {
            return Err(
                "`[]` is an empty character class; write `\\[\\]` to match literal brackets".into(),
            )
        }
        Some(b']') | Some(b'-') => return Err(
            "a character class has a `-` or `]` where a character is expected (use `\\-` or `\\]`)"
                .into(),
        ),
        Some(b'\\') => &chunk[1..],
        Some(_) => chunk,
    };
    if rest.is_empty() {
        return Err(UNCLOSED.into());
    }
    let (rune, width) = decode_rune(rest);
    if rune == REPLACEMENT && width == 1 {
        return Err("a character class contains bytes that are not valid UTF-8".into());
    }
    rest = &rest[width..];
    if rest.is_empty() {
        return Err(UNCLOSED.into());
    }
    Ok(rest)
}

/// moby/patternmatcher's translation of a pattern into exact/prefix/suffix/regexp matching.
fn compile(text: &[u8]) -> Result<Matcher, String> {
    let mut runes = decode_runes(text);
    if runes.first() == Some(&'\u{FEFF}') {
        // Go's text/scanner skips a BOM at the start of its input.
        runes.remove(0);
    }
    let mut regex = String::from("^");
    let mut kind = Kind::Exact;
    let mut pos = 0;
    let mut iteration = 0;
    while pos < runes.len() {
        let ch = runes[pos];
        pos += 1;
        match ch {
            '*' if runes.get(pos) == Some(&'*') => {
                pos += 1;
                if runes.get(pos) == Some(&'/') {
                    pos += 1;
                }
                if pos == runes.len() {
                    if kind == Kind::Exact {
                        kind = Kind::Prefix;
                    } else {
                        regex.push_str(".*");
                        kind = Kind::Regex;
                    }
                } else {
                    regex.push_str("(.*/)?");
                    kind = Kind::Regex;
                }
                if iteration == 0 {
                    kind = Kind::Suffix;
                }
            }
            '*' => {
                regex.push_str("[^/]*");
                kind = Kind::Regex;
            }
            '?' => {
                regex.push_str("[^/]");
                kind = Kind::Regex;
            }
            // patternmatcher means to escape `.+()|{}$`, but its bitmap only works for bytes
            // below 64, so `|`, `{` and `}` reach the regexp engine as operators.
            '.' | '+' | '(' | ')' | '$' => {
                regex.push('\\');
                regex.push(ch);
            }
            '\\' => match runes.get(pos) {
                Some(&escaped) => {
                    regex.push('\\');
                    regex.push(escaped);
                    pos += 1;
                    kind = Kind::Regex;
                }
                None => regex.push('\\'),
            },
            '[' | ']' => {
                regex.push(ch);
                kind = Kind::Regex;
            }
            _ => regex.push(ch),
        }
        iteration += 1;
    }
    Ok(match kind {
        Kind::Exact => Matcher::Exact,
        Kind::Prefix => Matcher::Prefix,
        Kind::Suffix => Matcher::Suffix,
        Kind::Regex => {
            regex.push('$');
            let compiled = Regex::parse(&regex).map_err(|err| {
                if err.unsupported {
                    format!("docker reads this pattern as the regular expression `{regex}`: {err}")
                } else {
                    format!(
                        "docker reads this pattern as the regular expression `{regex}`, which is invalid ({err}); \
                         escape the character with `\\` or rewrite the pattern"
                    )
                }
            })?;
            Matcher::Regex(compiled)
        }
    })
}

#[cfg(test)]
mod tests;
