//! The subset of Go's `regexp` (RE2 syntax, `regexp.Compile` flags) that moby/patternmatcher can
//! produce when it translates a `.dockerignore` pattern into a regular expression.
//!
//! patternmatcher escapes `.+()$` (it means to escape `|{}` too, but its bitmap only works for
//! bytes below 64), turns `*`, `?` and `**` into `[^/]*`, `[^/]` and `(.*/)?`, and passes `[`, `]`,
//! `^` and every `\x` escape through untouched. So what reaches the regexp parser is: literals,
//! classes (ranges, `[:alpha:]`, `\d`), `^`/`$`/`\A`/`\z`/`\b`/`\B`, `\Q...\E`, escapes, `.`,
//! alternation with `|`, one kind of group, and `*`/`?`/`{n,m}` repetition. This module parses
//! exactly that, reports the errors Go reports, and matches with Go's semantics (unanchored
//! search, `.` does not match `\n`, `[^...]` does, invalid UTF-8 reads as U+FFFD). Unicode classes
//! (`\pL`) are rejected as unsupported rather than approximated.

const MAX_RUNE: u32 = 0x10FFFF;

/// Inclusive rune ranges.
type Ranges = Vec<(u32, u32)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegexError(pub String);

#[derive(Debug, Clone, Copy)]
enum Assertion {
    BeginText,
    EndText,
    WordBoundary,
    NotWordBoundary,
}

#[derive(Debug, Clone)]
struct Class {
    /// Sorted, merged, inclusive ranges (negation already applied).
    ranges: Vec<(u32, u32)>,
}

impl Class {
    fn contains(&self, rune: char) -> bool {
        let r = u32::from(rune);
        self.ranges.iter().any(|&(lo, hi)| lo <= r && r <= hi)
    }
}

#[derive(Debug, Clone)]
enum Node {
    Literal(char),
    Class(Class),
    AnyButNewline,
    Assert(Assertion),
    Group(Vec<Node>),
    Alternate(Vec<Vec<Node>>),
    /// `*`, `+`, `?` and `{min,max}`; `max: None` is unbounded.
    Repeat {
        inner: Box<Node>,
        min: u32,
        max: Option<u32>,
    },
}

impl Node {
    fn is_single_rune(&self) -> bool {
        matches!(
            self,
            Node::Literal(_) | Node::Class(_) | Node::AnyButNewline
        )
    }

    /// Only meaningful for single-rune nodes.
    fn matches_rune(&self, rune: char) -> bool {
        match self {
            Node::Literal(c) => *c == rune,
            Node::Class(class) => class.contains(rune),
            Node::AnyButNewline => rune != '\n',
            _ => false,
        }
    }
}

/// A compiled pattern. Matching is a position-set simulation, linear in the text for each node,
/// so no pattern can make it blow up.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    nodes: Vec<Node>,
}

impl Regex {
    pub(crate) fn parse(source: &str) -> Result<Regex, RegexError> {
        let mut parser = Parser { rest: source };
        let nodes = parser.parse_alternation(0)?;
        Ok(Regex { nodes })
    }

    /// Go's `Regexp.MatchString`: is there a match anywhere in `text`?
    pub(crate) fn is_match(&self, text: &[char]) -> bool {
        let start = vec![true; text.len() + 1];
        run_sequence(&self.nodes, &start, text).contains(&true)
    }
}

fn is_word(rune: Option<char>) -> bool {
    rune.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn holds(assertion: Assertion, text: &[char], at: usize) -> bool {
    let before = at.checked_sub(1).map(|i| text[i]);
    let after = text.get(at).copied();
    match assertion {
        Assertion::BeginText => at == 0,
        Assertion::EndText => at == text.len(),
        Assertion::WordBoundary => is_word(before) != is_word(after),
        Assertion::NotWordBoundary => is_word(before) == is_word(after),
    }
}

fn run_sequence(nodes: &[Node], start: &[bool], text: &[char]) -> Vec<bool> {
    let mut positions = start.to_vec();
    for node in nodes {
        if !positions.contains(&true) {
            break;
        }
        positions = step(node, &positions, text);
    }
    positions
}

/// Positions reachable after matching `node` once, starting from any position in `from`.
fn step(node: &Node, from: &[bool], text: &[char]) -> Vec<bool> {
    let mut to = vec![false; from.len()];
    match node {
        Node::Literal(_) | Node::Class(_) | Node::AnyButNewline => {
            for (at, &rune) in text.iter().enumerate() {
                if from[at] && node.matches_rune(rune) {
                    to[at + 1] = true;
                }
            }
        }
        Node::Assert(assertion) => {
            for (at, reachable) in from.iter().enumerate() {
                to[at] = *reachable && holds(*assertion, text, at);
            }
        }
        Node::Group(nodes) => to = run_sequence(nodes, from, text),
        Node::Alternate(alternatives) => {
            for alternative in alternatives {
                merge(&mut to, &run_sequence(alternative, from, text));
            }
        }
        Node::Repeat { inner, min, max } => {
            to = from.to_vec();
            for _ in 0..*min {
                to = step(inner, &to, text);
            }
            match max {
                None => to = closure(inner, to, text),
                Some(max) => {
                    for _ in *min..*max {
                        let more = step(inner, &to, text);
                        if !merge(&mut to, &more) {
                            break;
                        }
                    }
                }
            }
        }
    }
    to
}

/// Adds `from` into `into`; true if anything was added.
fn merge(into: &mut [bool], from: &[bool]) -> bool {
    let mut grew = false;
    for (slot, &value) in into.iter_mut().zip(from) {
        if value && !*slot {
            *slot = true;
            grew = true;
        }
    }
    grew
}

/// Zero or more repetitions of `inner` after the positions already in `positions`.
fn closure(inner: &Node, mut positions: Vec<bool>, text: &[char]) -> Vec<bool> {
    if inner.is_single_rune() {
        // One left-to-right sweep suffices for a single-rune node.
        for (at, &rune) in text.iter().enumerate() {
            if positions[at] && inner.matches_rune(rune) {
                positions[at + 1] = true;
            }
        }
        return positions;
    }
    loop {
        let next = step(inner, &positions, text);
        if !merge(&mut positions, &next) {
            return positions;
        }
    }
}

struct Parser<'a> {
    rest: &'a str,
}

fn error(message: impl Into<String>) -> RegexError {
    RegexError(message.into())
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.rest.chars().next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.rest = &self.rest[c.len_utf8()..];
        Some(c)
    }

    /// Alternatives separated by `|` (which patternmatcher fails to escape, see the module docs).
    fn parse_alternation(&mut self, depth: usize) -> Result<Vec<Node>, RegexError> {
        let mut alternatives = vec![self.parse_sequence(depth)?];
        while self.peek() == Some('|') {
            self.bump();
            alternatives.push(self.parse_sequence(depth)?);
        }
        if alternatives.len() == 1 {
            return Ok(alternatives.pop().unwrap_or_default());
        }
        Ok(vec![Node::Alternate(alternatives)])
    }

    fn parse_sequence(&mut self, depth: usize) -> Result<Vec<Node>, RegexError> {
        let mut nodes: Vec<Node> = Vec::new();
        let mut last_was_repeat = false;
        while let Some(c) = self.peek() {
            let mut is_repeat = false;
            match c {
                '|' => break,
                ')' if depth > 0 => break,
                ')' => return Err(error("unexpected `)`")),
                '(' => {
                    if self.rest.starts_with("(?") {
                        return Err(error("unsupported group syntax `(?`"));
                    }
                    self.bump();
                    let inner = self.parse_alternation(depth + 1)?;
                    if self.bump() != Some(')') {
                        return Err(error("missing closing `)`"));
                    }
                    nodes.push(Node::Group(inner));
                }
                '*' | '+' | '?' => {
                    self.bump();
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.repeat(&mut nodes, min, max, last_was_repeat, c.to_string())?;
                    is_repeat = true;
                }
                '{' => match parse_repeat_braces(self.rest) {
                    Some((min, max, rest)) => {
                        let operator = self.rest[..self.rest.len() - rest.len()].to_string();
                        let too_big = |n: i64| !(0..=1000).contains(&n);
                        if too_big(min) || max.is_some_and(|max| too_big(max) || min > max) {
                            return Err(error(format!("invalid repeat count `{operator}`")));
                        }
                        self.rest = rest;
                        let max = max.map(|max| max as u32);
                        self.repeat(&mut nodes, min as u32, max, last_was_repeat, operator)?;
                        is_repeat = true;
                    }
                    None => {
                        self.bump();
                        nodes.push(Node::Literal('{'));
                    }
                },
                '^' => {
                    self.bump();
                    nodes.push(Node::Assert(Assertion::BeginText));
                }
                '$' => {
                    self.bump();
                    nodes.push(Node::Assert(Assertion::EndText));
                }
                '.' => {
                    self.bump();
                    nodes.push(Node::AnyButNewline);
                }
                '[' => nodes.push(Node::Class(self.parse_class()?)),
                '\\' => self.parse_backslash(&mut nodes)?,
                _ => {
                    self.bump();
                    nodes.push(Node::Literal(c));
                }
            }
            last_was_repeat = is_repeat;
        }
        Ok(nodes)
    }

    /// Apply a repetition operator to the last node, with Go's checks.
    fn repeat(
        &mut self,
        nodes: &mut Vec<Node>,
        min: u32,
        max: Option<u32>,
        last_was_repeat: bool,
        operator: String,
    ) -> Result<(), RegexError> {
        if self.peek() == Some('?') {
            // Non-greedy: same language, and we only answer "does it match".
            self.bump();
        }
        if last_was_repeat {
            return Err(error(format!(
                "invalid nested repetition operator `{operator}`"
            )));
        }
        let Some(inner) = nodes.pop() else {
            return Err(error(format!(
                "missing argument to repetition operator `{operator}`"
            )));
        };
        nodes.push(Node::Repeat {
            inner: Box::new(inner),
            min,
            max,
        });
        Ok(())
    }

    fn parse_backslash(&mut self, nodes: &mut Vec<Node>) -> Result<(), RegexError> {
        let after = &self.rest[1..];
        match after.chars().next() {
            Some('A') => nodes.push(Node::Assert(Assertion::BeginText)),
            Some('z') => nodes.push(Node::Assert(Assertion::EndText)),
            Some('b') => nodes.push(Node::Assert(Assertion::WordBoundary)),
            Some('B') => nodes.push(Node::Assert(Assertion::NotWordBoundary)),
            Some('C') => return Err(error("invalid escape `\\C`")),
            Some('Q') => {
                let quoted = &after[1..];
                let (literal, rest) = quoted.split_once("\\E").unwrap_or((quoted, ""));
                nodes.extend(literal.chars().map(Node::Literal));
                self.rest = rest;
                return Ok(());
            }
            Some('p' | 'P') => return Err(unicode_class_error(after)),
            _ => {
                if let Some((class, rest)) = perl_class(self.rest) {
                    nodes.push(Node::Class(Class { ranges: class }));
                    self.rest = rest;
                    return Ok(());
                }
                let (rune, rest) = parse_escape(self.rest)?;
                nodes.push(Node::Literal(rune));
                self.rest = rest;
                return Ok(());
            }
        }
        self.rest = &after[1..];
        Ok(())
    }

    fn parse_class(&mut self) -> Result<Class, RegexError> {
        let whole = self.rest;
        let mut t = &self.rest[1..];
        let negated = t.starts_with('^');
        if negated {
            t = &t[1..];
        }
        let mut ranges: Vec<(u32, u32)> = Vec::new();
        let mut first = true;
        while t.is_empty() || !t.starts_with(']') || first {
            first = false;
            if t.len() > 2 && t.starts_with("[:") {
                if let Some((group, rest)) = posix_class(t)? {
                    ranges.extend(group);
                    t = rest;
                    continue;
                }
            }
            if t.starts_with("\\p") || t.starts_with("\\P") {
                return Err(unicode_class_error(&t[1..]));
            }
            if let Some((group, rest)) = perl_class(t) {
                ranges.extend(group);
                t = rest;
                continue;
            }
            let range_start = t;
            let (lo, rest) = parse_class_char(t, whole)?;
            t = rest;
            let mut hi = lo;
            if t.len() >= 2 && t.starts_with('-') && !t[1..].starts_with(']') {
                let (end, rest) = parse_class_char(&t[1..], whole)?;
                t = rest;
                hi = end;
                if hi < lo {
                    let text = &range_start[..range_start.len() - t.len()];
                    return Err(error(format!("invalid character class range `{text}`")));
                }
            }
            ranges.push((u32::from(lo), u32::from(hi)));
        }
        self.rest = &t[1..];
        let ranges = normalize(ranges);
        Ok(Class {
            ranges: if negated { complement(&ranges) } else { ranges },
        })
    }
}

/// Go's `parseRepeat`: `{n}`, `{n,}` or `{n,m}`; `None` if `s` is not of that form (then `{` is a
/// literal). Counts over 8 digits come back as -1, which the caller rejects.
fn parse_repeat_braces(s: &str) -> Option<(i64, Option<i64>, &str)> {
    let s = s.strip_prefix('{')?;
    let (min, s) = parse_int(s)?;
    let (max, s) = match s.strip_prefix(',') {
        None => (Some(min), s),
        Some(rest) if rest.starts_with('}') => (None, rest),
        Some(rest) => {
            let (max, rest) = parse_int(rest)?;
            (Some(max), rest)
        }
    };
    let rest = s.strip_prefix('}')?;
    let min = if max == Some(-1) { -1 } else { min };
    Some((min, max, rest))
}

/// Go's `parseInt` for repeat counts: no leading zeros; overflow (over 8 digits) gives -1.
fn parse_int(s: &str) -> Option<(i64, &str)> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || (digits >= 2 && s.starts_with('0')) {
        return None;
    }
    let mut value: i64 = 0;
    for digit in s[..digits].bytes() {
        if value >= 100_000_000 {
            value = -1;
            break;
        }
        value = value * 10 + i64::from(digit - b'0');
    }
    Some((value, &s[digits..]))
}

fn unicode_class_error(after_backslash: &str) -> RegexError {
    let mut chars = after_backslash.chars();
    let p = chars.next().unwrap_or('p');
    let name = chars.next().map(String::from).unwrap_or_default();
    if matches!(name.as_str(), "C" | "L" | "M" | "N" | "P" | "S" | "Z") {
        error(format!(
            "`\\{p}{name}` is a Unicode class in docker's regexp reading of this pattern, which ecrbuild does not support"
        ))
    } else {
        error(format!("invalid character class range `\\{p}{name}`"))
    }
}

fn parse_class_char<'a>(t: &'a str, whole: &str) -> Result<(char, &'a str), RegexError> {
    match t.chars().next() {
        None => Err(error(format!("missing closing `]` in `{whole}`"))),
        Some('\\') => parse_escape(t),
        Some(c) => Ok((c, &t[c.len_utf8()..])),
    }
}

fn range_group(table: &[(u32, u32)], negated: bool) -> Vec<(u32, u32)> {
    let ranges = table.to_vec();
    if negated {
        complement(&ranges)
    } else {
        ranges
    }
}

const DIGIT: &[(u32, u32)] = &[(0x30, 0x39)];
const SPACE_PERL: &[(u32, u32)] = &[(0x9, 0xa), (0xc, 0xd), (0x20, 0x20)];
const WORD: &[(u32, u32)] = &[(0x30, 0x39), (0x41, 0x5a), (0x5f, 0x5f), (0x61, 0x7a)];

/// `\d \D \s \S \w \W`, if `t` starts with one.
fn perl_class(t: &str) -> Option<(Ranges, &str)> {
    let table = match t.get(..2)? {
        "\\d" | "\\D" => DIGIT,
        "\\s" | "\\S" => SPACE_PERL,
        "\\w" | "\\W" => WORD,
        _ => return None,
    };
    let negated = t.as_bytes()[1].is_ascii_uppercase();
    Some((range_group(table, negated), &t[2..]))
}

/// `[:alpha:]`-style classes inside a bracket expression. Like Go, any `[:` followed later by `:]`
/// commits to a class name, and an unknown name is an error.
fn posix_class(t: &str) -> Result<Option<(Ranges, &str)>, RegexError> {
    let Some(end) = t[2..].find(":]") else {
        return Ok(None);
    };
    let name = &t[..end + 4];
    let rest = &t[end + 4..];
    let (negated, bare) = match name[2..name.len() - 2].strip_prefix('^') {
        Some(bare) => (true, bare),
        None => (false, &name[2..name.len() - 2]),
    };
    let table: &[(u32, u32)] = match bare {
        "alnum" => &[(0x30, 0x39), (0x41, 0x5a), (0x61, 0x7a)],
        "alpha" => &[(0x41, 0x5a), (0x61, 0x7a)],
        "ascii" => &[(0x0, 0x7f)],
        "blank" => &[(0x9, 0x9), (0x20, 0x20)],
        "cntrl" => &[(0x0, 0x1f), (0x7f, 0x7f)],
        "digit" => DIGIT,
        "graph" => &[(0x21, 0x7e)],
        "lower" => &[(0x61, 0x7a)],
        "print" => &[(0x20, 0x7e)],
        "punct" => &[(0x21, 0x2f), (0x3a, 0x40), (0x5b, 0x60), (0x7b, 0x7e)],
        "space" => &[(0x9, 0xd), (0x20, 0x20)],
        "upper" => &[(0x41, 0x5a)],
        "word" => WORD,
        "xdigit" => &[(0x30, 0x39), (0x41, 0x46), (0x61, 0x66)],
        _ => return Err(error(format!("invalid character class range `{name}`"))),
    };
    Ok(Some((range_group(table, negated), rest)))
}

/// Go's `parseEscape`: `s` starts with a backslash.
fn parse_escape(s: &str) -> Result<(char, &str), RegexError> {
    let t = &s[1..];
    let Some(c) = t.chars().next() else {
        return Err(error("trailing backslash at end of expression"));
    };
    let mut t = &t[c.len_utf8()..];
    let invalid = |consumed: &str| error(format!("invalid escape sequence `{consumed}`"));
    match c {
        '1'..='7' if !t.starts_with(|d: char| ('0'..='7').contains(&d)) => {}
        '0'..='7' => {
            let mut value = u32::from(c) - u32::from('0');
            for _ in 1..3 {
                match t.chars().next() {
                    Some(d @ '0'..='7') => {
                        value = value * 8 + (u32::from(d) - u32::from('0'));
                        t = &t[1..];
                    }
                    _ => break,
                }
            }
            return char::from_u32(value)
                .map(|r| (r, t))
                .ok_or_else(|| invalid(&s[..s.len() - t.len()]));
        }
        'x' => {
            let mut digits = t.chars();
            if let (Some(x), Some(y)) = (digits.next(), digits.next()) {
                if let (Some(x), Some(y)) = (x.to_digit(16), y.to_digit(16)) {
                    t = &t[2..];
                    return Ok((
                        char::from_u32(x * 16 + y).unwrap_or(char::REPLACEMENT_CHARACTER),
                        t,
                    ));
                }
            }
        }
        'a' => return Ok(('\x07', t)),
        'f' => return Ok(('\x0c', t)),
        'n' => return Ok(('\n', t)),
        'r' => return Ok(('\r', t)),
        't' => return Ok(('\t', t)),
        'v' => return Ok(('\x0b', t)),
        _ if c.is_ascii() && !c.is_ascii_alphanumeric() => return Ok((c, t)),
        _ => {}
    }
    Err(invalid(&s[..s.len() - t.len()]))
}

fn normalize(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

fn complement(ranges: &[(u32, u32)]) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut next = 0u32;
    for &(lo, hi) in &normalize(ranges.to_vec()) {
        if lo > next {
            out.push((next, lo - 1));
        }
        next = hi.saturating_add(1);
    }
    if next <= MAX_RUNE {
        out.push((next, MAX_RUNE));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(re: &str, text: &str) -> bool {
        Regex::parse(re)
            .unwrap()
            .is_match(&text.chars().collect::<Vec<_>>())
    }

    #[test]
    fn anchored_translations_match_like_go() {
        assert!(matches("^[^/]*\\.go$", "main.go"));
        assert!(!matches("^[^/]*\\.go$", "a/main.go"));
        assert!(matches("^(.*/)?x$", "x"));
        assert!(matches("^(.*/)?x$", "a/b/x"));
        assert!(
            !matches("^(.*/)?x$", "a\n/x"),
            "`.` does not match a newline"
        );
        assert!(matches("^[^/]$", "\n"), "a negated class matches a newline");
        assert!(matches("^a.*$", "abc/d"));
    }

    #[test]
    fn classes_follow_re2_rules() {
        assert!(matches("^[[:alpha:]]$", "q"));
        assert!(!matches("^[[:^alpha:]]$", "q"));
        assert!(matches("^[\\d]$", "7"));
        assert!(matches("^[!a]$", "!"), "`!` does not negate in RE2");
        assert!(matches("^[^a]$", "b"));
        assert!(matches("^[]a]$", "]"), "`]` first in a class is literal");
        assert!(matches("^[[^/]*]$", "^^]"), "a class never nests");
        assert!(Regex::parse("[z-a]").is_err());
        assert!(Regex::parse("[[:foo:]]").is_err());
        assert!(Regex::parse("[a").is_err());
        assert!(Regex::parse("[a-\\d]").is_err());
    }

    #[test]
    fn escapes_follow_re2_rules() {
        assert!(
            matches("^\\Qa*b$", "a*b$"),
            "\\Q quotes to the end, including `$`"
        );
        assert!(matches("^\\Qa*\\Eb$", "a*b"));
        assert!(matches("^a\\x41$", "aA"));
        assert!(matches("^\\101$", "A"));
        assert!(matches("^\\bfoo\\b$", "foo"));
        assert!(Regex::parse("\\y").is_err());
        assert!(Regex::parse("\\8").is_err());
        assert!(Regex::parse("\\1").is_err());
        assert!(Regex::parse("\\C").is_err());
        assert!(Regex::parse("\\pL").is_err());
        assert!(Regex::parse("a\\").is_err());
    }

    #[test]
    fn caret_inside_is_an_anchor() {
        assert!(matches("^^foo[^/]*$", "foobar"));
        assert!(!matches("^a^b$", "a^b"));
    }

    #[test]
    fn repetition_errors() {
        assert!(Regex::parse("*a").is_err());
        assert!(Regex::parse("a**").is_err());
        assert!(Regex::parse("a*{2}").is_err());
        assert!(Regex::parse("a|*").is_err());
        assert!(Regex::parse("a{1001}").is_err());
        assert!(Regex::parse("a{3,2}").is_err());
        assert!(Regex::parse("(a").is_err());
        assert!(Regex::parse("a)").is_err());
    }

    #[test]
    fn alternation_and_counted_repetition() {
        assert!(
            matches("^[^/]*\\.go|[^/]*\\.md$", "x/y.md"),
            "the `$` only binds the last branch"
        );
        assert!(matches("^[^/]*\\.go|[^/]*\\.md$", "a.gox"));
        assert!(!matches("^[^/]*\\.go|[^/]*\\.md$", "x/a.go"));
        assert!(matches("^a{2}$", "aa"));
        assert!(!matches("^a{2}$", "aaa"));
        assert!(matches("^a{2,}$", "aaaa"));
        assert!(matches("^a{1,2}b$", "ab"));
        assert!(
            matches("^a{,2}$", "a{,2}"),
            "`{{,2}}` is not a repeat, so it is literal"
        );
        assert!(
            matches("^a{01}$", "a{01}"),
            "leading zeros make `{{` literal"
        );
        assert!(
            matches("^x|$", "anything"),
            "an empty branch matches everywhere"
        );
    }
}
