//! Go's `regexp` (RE2 syntax, `regexp.Compile` flags), as far as moby/patternmatcher can reach it
//! when it translates a `.dockerignore` pattern into a regular expression.
//!
//! patternmatcher escapes `.+()$` (it means to escape `|{}` too, but its bitmap only works for
//! bytes below 64), turns `*`, `?` and `**` into `[^/]*`, `[^/]` and `(.*/)?`, and passes `[`, `]`,
//! `^` and every `\x` escape through untouched. So what reaches the regexp parser is: literals,
//! classes (ranges, `[:alpha:]`, `\d`), `^`/`$`/`\A`/`\z`/`\b`/`\B`, `\Q...\E`, escapes
//! (`\x41`, `\x{41}`, `\101`), `.`, alternation with `|`, one kind of group, and `*`/`+`/`?`/`{n,m}`
//! repetition. This module parses exactly that, with the checks and limits Go applies, and matches
//! with Go's semantics (unanchored search, `.` does not match `\n`, `[^...]` does, invalid UTF-8
//! reads as U+FFFD).
//!
//! Unicode classes (`\pL`, `\p{Greek}`) are refused as unsupported rather than approximated: Go's
//! tables follow the Unicode version of the Go release docker was built with. `\p{Any}` needs no
//! table and is supported. `(?` groups cannot come out of a `.dockerignore` pattern (`(` is
//! escaped) and are refused as unsupported too.
//!
//! Matching compiles the tree into a small program and runs it as a Thompson NFA (one pass over
//! the text, each instruction visited at most once per position), as Go does, so the time is
//! linear in the text whatever the pattern; counted repetitions are expanded, within Go's limits.
//!
//! `differential.rs` compares all of this with Go's own `regexp` on random patterns.
//!
//! Known difference: a surrogate escape (`\x{D800}`...`\x{DFFF}`) matches nothing here, as in
//! Go's backtracking and NFA matchers; but Go's one-pass matcher checks a literal prefix after `^` by
//! comparing bytes, and writes a surrogate there as U+FFFD; so in Go `^\x{D800}` matches the
//! bytes of U+FFFD when the pattern is one-pass. Following that would mean reproducing Go's
//! one-pass analysis, for an escape nobody writes in a `.dockerignore`.

const MAX_RUNE: u32 = 0x10FFFF;

/// Go's `maxHeight`: deeper parse trees are refused ("expression nests too deeply").
const MAX_HEIGHT: usize = 1000;

/// Go's `maxSize` (128 MiB of 40-byte instructions): larger programs are refused.
const MAX_SIZE: u64 = (128 << 20) / 40;

/// Go's bound on a counted repetition, and on nested counted repetitions multiplied together.
const MAX_REPEAT: u32 = 1000;

/// Inclusive rune ranges.
type Ranges = Vec<(u32, u32)>;

/// Why a pattern is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RegexError {
    pub(crate) message: String,
    /// Go accepts the construct, but this module does not implement it (Unicode classes,
    /// `(?` groups); the pattern is refused all the same.
    pub(crate) unsupported: bool,
}

impl std::fmt::Display for RegexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn error(message: impl Into<String>) -> RegexError {
    RegexError {
        message: message.into(),
        unsupported: false,
    }
}

fn unsupported(message: impl Into<String>) -> RegexError {
    RegexError {
        message: message.into(),
        unsupported: true,
    }
}

#[derive(Debug, Clone, Copy)]
enum Assertion {
    BeginText,
    EndText,
    WordBoundary,
    NotWordBoundary,
}

/// What one rune-consuming step accepts.
#[derive(Debug, Clone)]
enum RuneSet {
    /// One rune; may be a surrogate (`\x{D800}`), which Go accepts and which matches nothing.
    Literal(u32),
    /// Sorted, merged, inclusive ranges (negation already applied).
    Class(Ranges),
    AnyButNewline,
}

impl RuneSet {
    fn contains(&self, rune: char) -> bool {
        let r = u32::from(rune);
        match self {
            RuneSet::Literal(literal) => *literal == r,
            RuneSet::Class(ranges) => ranges.iter().any(|&(lo, hi)| lo <= r && r <= hi),
            RuneSet::AnyButNewline => rune != '\n',
        }
    }
}

/// A node of the parse tree, with Go's measures of it (kept up to date as the tree is built, so
/// that a tree Go would refuse is refused before it gets deep).
#[derive(Debug, Clone)]
struct Node {
    kind: Kind,
    /// Go's `calcHeight`.
    height: usize,
    /// Go's `calcSize`: the estimated number of instructions.
    size: u64,
}

#[derive(Debug, Clone)]
enum Kind {
    Rune(RuneSet),
    Assert(Assertion),
    Group(Vec<Node>),
    Alternate(Vec<Vec<Node>>),
    /// `*`, `+`, `?` and `{min,max}`; `max: None` is unbounded. `counted` marks the braces form,
    /// which Go checks against [`MAX_REPEAT`].
    Repeat {
        inner: Box<Node>,
        min: u32,
        max: Option<u32>,
        counted: bool,
    },
}

impl Node {
    fn new(kind: Kind) -> Result<Node, RegexError> {
        let (height, size) = match &kind {
            Kind::Rune(_) | Kind::Assert(_) => (1, 1),
            Kind::Group(nodes) => (1 + sequence_height(nodes), 2 + sequence_size(nodes)),
            Kind::Alternate(alternatives) => {
                let tallest = alternatives.iter().map(|a| sequence_height(a)).max();
                let sizes = alternatives.iter().map(|a| sequence_size(a));
                let count = alternatives.len() as u64;
                (1 + tallest.unwrap_or(1), sizes.sum::<u64>() + count - 1)
            }
            Kind::Repeat {
                inner, min, max, ..
            } => {
                let (min, max) = (u64::from(*min), max.map(u64::from));
                let size = match max {
                    None if min == 0 => 2 + inner.size,
                    None => 1 + min * inner.size,
                    Some(max) => max * inner.size + (max - min),
                };
                (1 + inner.height, size)
            }
        };
        if height > MAX_HEIGHT {
            return Err(error("expression nests too deeply"));
        }
        Ok(Node {
            kind,
            height,
            size: size.max(1),
        })
    }

    fn rune(set: RuneSet) -> Node {
        Node {
            kind: Kind::Rune(set),
            height: 1,
            size: 1,
        }
    }

    fn literal(rune: u32) -> Node {
        Node::rune(RuneSet::Literal(rune))
    }

    fn assert(assertion: Assertion) -> Node {
        Node {
            kind: Kind::Assert(assertion),
            height: 1,
            size: 1,
        }
    }
}

/// Go's height of a sequence: two or more nodes make a concatenation node of their own, and a
/// run of literals is one node.
fn sequence_height(nodes: &[Node]) -> usize {
    let mut literals = false;
    let mut items = 0;
    let mut tallest = 1;
    for node in nodes {
        let is_literal = matches!(node.kind, Kind::Rune(RuneSet::Literal(_)));
        if !(is_literal && literals) {
            items += 1;
        }
        literals = is_literal;
        tallest = tallest.max(node.height);
    }
    if items > 1 {
        tallest + 1
    } else {
        tallest
    }
}

/// Go's size of a sequence. (Go factors common prefixes out of alternatives first, so near the
/// limit an alternation may be refused here and not by Go.)
fn sequence_size(nodes: &[Node]) -> u64 {
    nodes.iter().map(|node| node.size).sum::<u64>().max(1)
}

/// A step of the compiled program.
#[derive(Debug, Clone)]
enum Inst {
    Rune(RuneSet),
    Assert(Assertion),
    /// Continue at both targets.
    Split(usize, usize),
    Jump(usize),
    Match,
}

/// A compiled pattern.
#[derive(Debug, Clone)]
pub(crate) struct Regex {
    program: Vec<Inst>,
    /// Starts with `^`: a match can only start at the beginning (every `.dockerignore` regexp).
    anchored: bool,
}

impl Regex {
    /// Go's `regexp.Compile`: the same patterns are accepted.
    pub(crate) fn parse(source: &str) -> Result<Regex, RegexError> {
        let nodes = Parser { rest: source }.parse()?;
        if sequence_height(&nodes) > MAX_HEIGHT {
            return Err(error("expression nests too deeply"));
        }
        if sequence_size(&nodes) > MAX_SIZE {
            return Err(error("expression too large"));
        }
        let mut program = Vec::new();
        compile_sequence(&nodes, &mut program);
        program.push(Inst::Match);
        let anchored = matches!(program[0], Inst::Assert(Assertion::BeginText));
        Ok(Regex { program, anchored })
    }

    /// Go's `Regexp.MatchString`: is there a match anywhere in `text`?
    pub(crate) fn is_match(&self, text: &[char]) -> bool {
        SCRATCH.with(|scratch| {
            let Scratch {
                current,
                next,
                stack,
            } = &mut *scratch.borrow_mut();
            current.reset(self.program.len());
            next.reset(self.program.len());
            self.run(text, current, next, stack)
        })
    }

    fn run<'a>(
        &self,
        text: &[char],
        mut current: &'a mut Threads,
        mut next: &'a mut Threads,
        stack: &mut Vec<usize>,
    ) -> bool {
        for at in 0..=text.len() {
            // Unanchored search: a new thread starts at every position, unless the pattern can
            // only match from the start.
            if (at == 0 || !self.anchored) && self.add(current, 0, text, at, stack) {
                return true;
            }
            if self.anchored && current.pcs.is_empty() {
                return false;
            }
            let Some(&rune) = text.get(at) else {
                break;
            };
            next.clear();
            for &pc in &current.pcs {
                if let Inst::Rune(set) = &self.program[pc] {
                    if set.contains(rune) && self.add(next, pc + 1, text, at + 1, stack) {
                        return true;
                    }
                }
            }
            std::mem::swap(&mut current, &mut next);
        }
        false
    }

    /// Add the thread at `pc` and everything it reaches without consuming a rune at `at`;
    /// true if that reaches the match.
    fn add(
        &self,
        threads: &mut Threads,
        pc: usize,
        text: &[char],
        at: usize,
        stack: &mut Vec<usize>,
    ) -> bool {
        stack.clear();
        stack.push(pc);
        while let Some(pc) = stack.pop() {
            if !threads.insert(pc) {
                continue;
            }
            match &self.program[pc] {
                Inst::Match => return true,
                Inst::Rune(_) => {}
                Inst::Assert(assertion) => {
                    if holds(*assertion, text, at) {
                        stack.push(pc + 1);
                    }
                }
                Inst::Jump(to) => stack.push(*to),
                Inst::Split(first, second) => {
                    stack.push(*second);
                    stack.push(*first);
                }
            }
        }
        false
    }
}

/// The buffers of [`Regex::is_match`], reused across calls: matching runs for every path and
/// pattern of a walk.
#[derive(Default)]
struct Scratch {
    current: Threads,
    next: Threads,
    stack: Vec<usize>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::default();
}

/// The instructions live at one position, each at most once.
#[derive(Default)]
struct Threads {
    pcs: Vec<usize>,
    seen: Vec<bool>,
}

impl Threads {
    fn reset(&mut self, len: usize) {
        self.pcs.clear();
        self.seen.clear();
        self.seen.resize(len, false);
    }

    fn insert(&mut self, pc: usize) -> bool {
        if self.seen[pc] {
            return false;
        }
        self.seen[pc] = true;
        self.pcs.push(pc);
        true
    }

    fn clear(&mut self) {
        for &pc in &self.pcs {
            self.seen[pc] = false;
        }
        self.pcs.clear();
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

fn compile_sequence(nodes: &[Node], program: &mut Vec<Inst>) {
    for node in nodes {
        compile(node, program);
    }
}

/// Recursive, but the tree is at most [`MAX_HEIGHT`] deep.
fn compile(node: &Node, program: &mut Vec<Inst>) {
    match &node.kind {
        Kind::Rune(set) => program.push(Inst::Rune(set.clone())),
        Kind::Assert(assertion) => program.push(Inst::Assert(*assertion)),
        Kind::Group(nodes) => compile_sequence(nodes, program),
        Kind::Alternate(alternatives) => {
            let mut jumps_to_end = Vec::new();
            let (last, others) = alternatives.split_last().expect("two or more alternatives");
            for alternative in others {
                let split = program.len();
                program.push(Inst::Split(split + 1, 0));
                compile_sequence(alternative, program);
                jumps_to_end.push(program.len());
                program.push(Inst::Jump(0));
                let next = program.len();
                program[split] = Inst::Split(split + 1, next);
            }
            compile_sequence(last, program);
            let end = program.len();
            for jump in jumps_to_end {
                program[jump] = Inst::Jump(end);
            }
        }
        Kind::Repeat {
            inner, min, max, ..
        } => match max {
            None if *min == 0 => {
                // inner*: loop back until the split leaves.
                let split = program.len();
                program.push(Inst::Split(split + 1, 0));
                compile(inner, program);
                program.push(Inst::Jump(split));
                let end = program.len();
                program[split] = Inst::Split(split + 1, end);
            }
            None => {
                // min - 1 copies, then inner+ (inner once, then maybe again), so that nested
                // `{1,}` do not double the program at each level.
                for _ in 1..*min {
                    compile(inner, program);
                }
                let start = program.len();
                compile(inner, program);
                let split = program.len();
                program.push(Inst::Split(start, split + 1));
            }
            Some(max) => {
                for _ in 0..*min {
                    compile(inner, program);
                }
                // Each optional copy may be the last one.
                let mut splits = Vec::new();
                for _ in *min..*max {
                    splits.push(program.len());
                    program.push(Inst::Split(0, 0));
                    compile(inner, program);
                }
                let end = program.len();
                for split in splits {
                    program[split] = Inst::Split(split + 1, end);
                }
            }
        },
    }
}

/// Go's `repeatIsValid`: nested counted repetitions may not multiply beyond `n` copies.
fn repeat_is_valid(node: &Node, mut n: u32) -> bool {
    match &node.kind {
        Kind::Repeat {
            inner,
            min,
            max,
            counted,
        } => {
            if *counted {
                if *max == Some(0) {
                    return true;
                }
                let m = max.unwrap_or(*min);
                if m > n {
                    return false;
                }
                n = n.checked_div(m).unwrap_or(n);
            }
            repeat_is_valid(inner, n)
        }
        Kind::Group(nodes) => nodes.iter().all(|node| repeat_is_valid(node, n)),
        Kind::Alternate(alternatives) => alternatives
            .iter()
            .flatten()
            .all(|node| repeat_is_valid(node, n)),
        Kind::Rune(_) | Kind::Assert(_) => true,
    }
}

/// A group being parsed: the alternatives before the last `|`, and the nodes after it.
#[derive(Default)]
struct Frame {
    alternatives: Vec<Vec<Node>>,
    nodes: Vec<Node>,
}

impl Frame {
    fn finish(mut self) -> Result<Vec<Node>, RegexError> {
        if self.alternatives.is_empty() {
            return Ok(self.nodes);
        }
        self.alternatives.push(self.nodes);
        Ok(vec![Node::new(Kind::Alternate(self.alternatives))?])
    }
}

struct Parser<'a> {
    rest: &'a str,
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

    /// The whole pattern. Groups are kept on an explicit stack, so no pattern can exhaust the
    /// call stack.
    fn parse(mut self) -> Result<Vec<Node>, RegexError> {
        let mut groups = vec![Frame::default()];
        // Like Go's `lastRepeat`: only a repetition operator right after another is an error.
        let mut last_was_repeat = false;
        while let Some(c) = self.peek() {
            let mut is_repeat = false;
            let frame = groups.last_mut().expect("the outermost frame stays");
            let nodes = &mut frame.nodes;
            match c {
                // Alternatives (which patternmatcher fails to escape, see the module docs).
                '|' => {
                    self.bump();
                    frame.alternatives.push(std::mem::take(nodes));
                }
                '(' => {
                    if self.rest.starts_with("(?") {
                        return Err(unsupported("`(?` groups are not supported"));
                    }
                    self.bump();
                    groups.push(Frame::default());
                }
                ')' => {
                    if groups.len() == 1 {
                        return Err(error("unexpected `)`"));
                    }
                    self.bump();
                    let inner = groups.pop().expect("an open group").finish()?;
                    let group = Node::new(Kind::Group(inner))?;
                    groups
                        .last_mut()
                        .expect("the outer frame")
                        .nodes
                        .push(group);
                }
                '*' | '+' | '?' => {
                    self.bump();
                    let (min, max) = match c {
                        '*' => (0, None),
                        '+' => (1, None),
                        _ => (0, Some(1)),
                    };
                    self.repeat(nodes, min, max, false, last_was_repeat, c.to_string())?;
                    is_repeat = true;
                }
                '{' => match parse_repeat_braces(self.rest) {
                    Some((min, max, rest)) => {
                        let operator = self.rest[..self.rest.len() - rest.len()].to_string();
                        let too_big = |n: i64| !(0..=i64::from(MAX_REPEAT)).contains(&n);
                        if too_big(min) || max.is_some_and(|max| too_big(max) || min > max) {
                            return Err(error(format!("invalid repeat count `{operator}`")));
                        }
                        self.rest = rest;
                        let max = max.map(|max| max as u32);
                        self.repeat(nodes, min as u32, max, true, last_was_repeat, operator)?;
                        is_repeat = true;
                    }
                    None => {
                        self.bump();
                        nodes.push(Node::literal(u32::from('{')));
                    }
                },
                '^' => {
                    self.bump();
                    nodes.push(Node::assert(Assertion::BeginText));
                }
                '$' => {
                    self.bump();
                    nodes.push(Node::assert(Assertion::EndText));
                }
                '.' => {
                    self.bump();
                    nodes.push(Node::rune(RuneSet::AnyButNewline));
                }
                '[' => {
                    let class = self.parse_class()?;
                    nodes.push(class);
                }
                '\\' => self.parse_backslash(nodes)?,
                _ => {
                    self.bump();
                    nodes.push(Node::literal(u32::from(c)));
                }
            }
            last_was_repeat = is_repeat;
        }
        if groups.len() > 1 {
            return Err(error("missing closing `)`"));
        }
        groups.pop().expect("the outermost frame").finish()
    }

    /// Apply a repetition operator to the last node, with Go's checks.
    fn repeat(
        &mut self,
        nodes: &mut Vec<Node>,
        min: u32,
        max: Option<u32>,
        counted: bool,
        last_was_repeat: bool,
        mut operator: String,
    ) -> Result<(), RegexError> {
        if self.peek() == Some('?') {
            // Non-greedy: same language, and we only answer "does it match".
            self.bump();
            operator.push('?');
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
        let node = Node::new(Kind::Repeat {
            inner: Box::new(inner),
            min,
            max,
            counted,
        })?;
        let large = min >= 2 || max.is_some_and(|max| max >= 2);
        if counted && large && !repeat_is_valid(&node, MAX_REPEAT) {
            return Err(error(format!("invalid repeat count `{operator}`")));
        }
        nodes.push(node);
        Ok(())
    }

    fn parse_backslash(&mut self, nodes: &mut Vec<Node>) -> Result<(), RegexError> {
        let after = &self.rest[1..];
        let assertion = match after.chars().next() {
            Some('A') => Assertion::BeginText,
            Some('z') => Assertion::EndText,
            Some('b') => Assertion::WordBoundary,
            Some('B') => Assertion::NotWordBoundary,
            Some('C') => return Err(error("invalid escape `\\C`")),
            Some('Q') => {
                let quoted = &after[1..];
                let (literal, rest) = quoted.split_once("\\E").unwrap_or((quoted, ""));
                nodes.extend(literal.chars().map(|c| Node::literal(u32::from(c))));
                self.rest = rest;
                return Ok(());
            }
            _ => {
                let (node, rest) = if let Some((class, rest)) = unicode_class(self.rest)? {
                    (Node::rune(RuneSet::Class(class)), rest)
                } else if let Some((class, rest)) = perl_class(self.rest) {
                    (Node::rune(RuneSet::Class(class)), rest)
                } else {
                    let (rune, rest) = parse_escape(self.rest)?;
                    (Node::literal(rune), rest)
                };
                nodes.push(node);
                self.rest = rest;
                return Ok(());
            }
        };
        nodes.push(Node::assert(assertion));
        self.rest = &after[1..];
        Ok(())
    }

    fn parse_class(&mut self) -> Result<Node, RegexError> {
        let whole = self.rest;
        let mut t = &self.rest[1..];
        let negated = t.starts_with('^');
        if negated {
            t = &t[1..];
        }
        let mut ranges: Ranges = Vec::new();
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
            if let Some((group, rest)) = unicode_class(t)? {
                ranges.extend(group);
                t = rest;
                continue;
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
            ranges.push((lo, hi));
        }
        self.rest = &t[1..];
        let ranges = normalize(ranges);
        Ok(Node::rune(RuneSet::Class(if negated {
            complement(&ranges)
        } else {
            ranges
        })))
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

/// Go's `parseUnicodeClass`: `\pN`, `\p{Name}`, `\PN`, `\P{Name}`, `\p{^Name}`, if `t` starts with
/// one. Only `Any` is supported; Go's other names (categories and scripts) are refused as
/// unsupported, and unknown names as invalid, as Go does.
fn unicode_class(t: &str) -> Result<Option<(Ranges, &str)>, RegexError> {
    let negated = match t.get(..2) {
        Some("\\p") => false,
        Some("\\P") => true,
        _ => return Ok(None),
    };
    let after = &t[2..];
    let (sequence, name, rest) = match after.chars().next() {
        Some('{') => match t.find('}') {
            Some(end) => (&t[..=end], &t[3..end], &t[end + 1..]),
            None => return Err(error(format!("invalid character class range `{t}`"))),
        },
        Some(c) => {
            let end = 2 + c.len_utf8();
            (&t[..end], &t[2..end], &t[end..])
        }
        None => (t, "", ""),
    };
    let (negated, name) = match name.strip_prefix('^') {
        Some(name) => (!negated, name),
        None => (negated, name),
    };
    if name == "Any" {
        let any = vec![(0, MAX_RUNE)];
        return Ok(Some((range_group(&any, negated), rest)));
    }
    if UNICODE_CATEGORIES.contains(&name) || UNICODE_SCRIPTS.contains(&name) {
        return Err(unsupported(format!(
            "`{sequence}` is a Unicode class, which is not supported here (Go's tables change \
             with the Unicode version of each Go release); list the characters instead"
        )));
    }
    Err(error(format!("invalid character class range `{sequence}`")))
}

fn parse_class_char<'a>(t: &'a str, whole: &str) -> Result<(u32, &'a str), RegexError> {
    match t.chars().next() {
        None => Err(error(format!("missing closing `]` in `{whole}`"))),
        Some('\\') => parse_escape(t),
        Some(c) => Ok((u32::from(c), &t[c.len_utf8()..])),
    }
}

fn range_group(table: &[(u32, u32)], negated: bool) -> Ranges {
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

/// Go's `parseEscape`: `s` starts with a backslash. The rune comes back as a number because
/// `\x{D800}` (a surrogate) is accepted and then matches nothing.
fn parse_escape(s: &str) -> Result<(u32, &str), RegexError> {
    let t = &s[1..];
    let Some(c) = t.chars().next() else {
        return Err(error("trailing backslash at end of expression"));
    };
    let mut t = &t[c.len_utf8()..];
    let invalid = |rest: &str| {
        error(format!(
            "invalid escape sequence `{}`",
            &s[..s.len() - rest.len()]
        ))
    };
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
            return Ok((value, t));
        }
        'x' if t.starts_with('{') => {
            // Any number of hex digits in braces, at least one, up to U+10FFFF.
            let digits = &t[1..];
            let mut value: u32 = 0;
            for (at, d) in digits.char_indices() {
                let after = &digits[at + d.len_utf8()..];
                match d {
                    '}' if at > 0 => return Ok((value, after)),
                    _ => match d.to_digit(16) {
                        Some(digit) if value * 16 + digit <= MAX_RUNE => value = value * 16 + digit,
                        _ => return Err(invalid(after)),
                    },
                }
            }
            return Err(invalid(""));
        }
        'x' => {
            let mut digits = t.chars();
            if let (Some(x), Some(y)) = (digits.next(), digits.next()) {
                if let (Some(x), Some(y)) = (x.to_digit(16), y.to_digit(16)) {
                    return Ok((x * 16 + y, &t[2..]));
                }
            }
        }
        'a' => return Ok((0x07, t)),
        'f' => return Ok((0x0c, t)),
        'n' => return Ok((u32::from('\n'), t)),
        'r' => return Ok((u32::from('\r'), t)),
        't' => return Ok((u32::from('\t'), t)),
        'v' => return Ok((0x0b, t)),
        _ if c.is_ascii() && !c.is_ascii_alphanumeric() => return Ok((u32::from(c), t)),
        _ => {}
    }
    Err(invalid(t))
}

fn normalize(mut ranges: Ranges) -> Ranges {
    ranges.sort_unstable();
    let mut merged: Ranges = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if lo <= last.1.saturating_add(1) => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

fn complement(ranges: &[(u32, u32)]) -> Ranges {
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

/// The names of Go's `unicode.Categories`.
const UNICODE_CATEGORIES: &[&str] = &[
    "C", "Cc", "Cf", "Co", "Cs", "L", "Ll", "Lm", "Lo", "Lt", "Lu", "M", "Mc", "Me", "Mn", "N",
    "Nd", "Nl", "No", "P", "Pc", "Pd", "Pe", "Pf", "Pi", "Po", "Ps", "S", "Sc", "Sk", "Sm", "So",
    "Z", "Zl", "Zp", "Zs",
];

/// The names of Go's `unicode.Scripts` (Unicode 13, Go 1.16 to 1.20), and the seven scripts
/// Unicode 14 and 15 added (Go 1.21 and later), which the Go that builds docker knows.
const UNICODE_SCRIPTS: &[&str] = &[
    "Adlam",
    "Ahom",
    "Anatolian_Hieroglyphs",
    "Arabic",
    "Armenian",
    "Avestan",
    "Balinese",
    "Bamum",
    "Bassa_Vah",
    "Batak",
    "Bengali",
    "Bhaiksuki",
    "Bopomofo",
    "Brahmi",
    "Braille",
    "Buginese",
    "Buhid",
    "Canadian_Aboriginal",
    "Carian",
    "Caucasian_Albanian",
    "Chakma",
    "Cham",
    "Cherokee",
    "Chorasmian",
    "Common",
    "Coptic",
    "Cuneiform",
    "Cypriot",
    "Cyrillic",
    "Deseret",
    "Devanagari",
    "Dives_Akuru",
    "Dogra",
    "Duployan",
    "Egyptian_Hieroglyphs",
    "Elbasan",
    "Elymaic",
    "Ethiopic",
    "Georgian",
    "Glagolitic",
    "Gothic",
    "Grantha",
    "Greek",
    "Gujarati",
    "Gunjala_Gondi",
    "Gurmukhi",
    "Han",
    "Hangul",
    "Hanifi_Rohingya",
    "Hanunoo",
    "Hatran",
    "Hebrew",
    "Hiragana",
    "Imperial_Aramaic",
    "Inherited",
    "Inscriptional_Pahlavi",
    "Inscriptional_Parthian",
    "Javanese",
    "Kaithi",
    "Kannada",
    "Katakana",
    "Kayah_Li",
    "Kharoshthi",
    "Khitan_Small_Script",
    "Khmer",
    "Khojki",
    "Khudawadi",
    "Lao",
    "Latin",
    "Lepcha",
    "Limbu",
    "Linear_A",
    "Linear_B",
    "Lisu",
    "Lycian",
    "Lydian",
    "Mahajani",
    "Makasar",
    "Malayalam",
    "Mandaic",
    "Manichaean",
    "Marchen",
    "Masaram_Gondi",
    "Medefaidrin",
    "Meetei_Mayek",
    "Mende_Kikakui",
    "Meroitic_Cursive",
    "Meroitic_Hieroglyphs",
    "Miao",
    "Modi",
    "Mongolian",
    "Mro",
    "Multani",
    "Myanmar",
    "Nabataean",
    "Nandinagari",
    "New_Tai_Lue",
    "Newa",
    "Nko",
    "Nushu",
    "Nyiakeng_Puachue_Hmong",
    "Ogham",
    "Ol_Chiki",
    "Old_Hungarian",
    "Old_Italic",
    "Old_North_Arabian",
    "Old_Permic",
    "Old_Persian",
    "Old_Sogdian",
    "Old_South_Arabian",
    "Old_Turkic",
    "Oriya",
    "Osage",
    "Osmanya",
    "Pahawh_Hmong",
    "Palmyrene",
    "Pau_Cin_Hau",
    "Phags_Pa",
    "Phoenician",
    "Psalter_Pahlavi",
    "Rejang",
    "Runic",
    "Samaritan",
    "Saurashtra",
    "Sharada",
    "Shavian",
    "Siddham",
    "SignWriting",
    "Sinhala",
    "Sogdian",
    "Sora_Sompeng",
    "Soyombo",
    "Sundanese",
    "Syloti_Nagri",
    "Syriac",
    "Tagalog",
    "Tagbanwa",
    "Tai_Le",
    "Tai_Tham",
    "Tai_Viet",
    "Takri",
    "Tamil",
    "Tangut",
    "Telugu",
    "Thaana",
    "Thai",
    "Tibetan",
    "Tifinagh",
    "Tirhuta",
    "Ugaritic",
    "Vai",
    "Wancho",
    "Warang_Citi",
    "Yezidi",
    "Yi",
    "Zanabazar_Square",
    // Unicode 14 and 15.
    "Cypro_Minoan",
    "Kawi",
    "Nag_Mundari",
    "Old_Uyghur",
    "Tangsa",
    "Toto",
    "Vithkuqi",
];

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

    fn message(re: &str) -> RegexError {
        Regex::parse(re).expect_err(re)
    }

    #[test]
    fn hex_escapes_in_braces() {
        assert!(matches("^\\x{41}$", "A"));
        assert!(matches("^\\x{0041}b$", "Ab"), "any number of digits");
        assert!(matches("^\\x{1F600}$", "😀"));
        assert!(matches("^\\x{10FFFF}$", "\u{10FFFF}"));
        assert!(matches("^[\\x{41}-\\x{5a}]+$", "XYZ"));
        assert!(
            matches("^\\x{41}{2}$", "AA"),
            "the braces of a repeat still follow"
        );
        for bad in [
            "\\x{}",
            "\\x{110000}",
            "\\x{41",
            "\\x{4G}",
            "\\x{ 41}",
            "\\x{-1}",
        ] {
            assert!(!message(bad).unsupported, "{bad}");
        }
    }

    #[test]
    fn surrogate_escapes_are_valid_and_match_nothing() {
        assert!(!matches("\\x{D800}", "\u{FFFD}"));
        assert!(matches("^a\\x{DFFF}?$", "a"));
        assert!(matches("^[^\\x{D800}]$", "x"));
    }

    #[test]
    fn unicode_classes() {
        assert!(matches("^\\p{Any}+$", "a\né/"));
        assert!(!matches("\\P{Any}", "abc"));
        assert!(!matches("\\p{^Any}", "abc"));
        assert!(matches("^[\\P{^Any}]$", "x"));
        for known in [
            "\\pL",
            "\\PL",
            "\\p{Lu}",
            "\\p{Greek}",
            "\\p{^Latin}",
            "[\\p{Han}a]",
            "\\p{Kawi}",
        ] {
            let err = message(known);
            assert!(err.unsupported, "{known}: {err}");
            assert!(err.message.contains("Unicode class"), "{known}: {err}");
        }
        for unknown in ["\\pQ", "\\p{Foo}", "\\p{greek}", "\\p{L", "\\p", "[\\p]"] {
            assert!(!message(unknown).unsupported, "{unknown}");
        }
    }

    #[test]
    fn nested_counted_repetitions_stay_within_a_thousand_copies() {
        assert!(Regex::parse("(a{2}){500}").is_ok());
        assert!(
            Regex::parse("(a{500}){0}").is_ok(),
            "`{{0}}` is not checked"
        );
        assert!(Regex::parse("(a*){1000}").is_ok());
        for bad in [
            "(a{2}){501}",
            "(a{500}){3}",
            "a{1000}\\Q\\E{2}",
            "((a{10}){10}){11}",
        ] {
            assert!(
                message(bad).message.contains("invalid repeat count"),
                "{bad}"
            );
        }
    }

    #[test]
    fn go_limits_on_depth_and_size() {
        let nested = |n: usize| format!("{}a{}", "(".repeat(n), ")".repeat(n));
        assert!(Regex::parse(&nested(999)).is_ok());
        assert!(message(&nested(1000)).message.contains("nests too deeply"));
        let chain = |n: usize| format!("^a{}$", "\\Q\\E{1,}".repeat(n));
        assert!(Regex::parse(&chain(998)).is_ok());
        assert!(message(&chain(999)).message.contains("nests too deeply"));
        assert!(message(&chain(8000)).message.contains("nests too deeply"));
        assert!(Regex::parse(&"a{1000}".repeat(3355)).is_ok());
        assert!(message(&"a{1000}".repeat(3356))
            .message
            .contains("too large"));
    }

    #[test]
    fn nested_repetitions_match_in_linear_time() {
        // A `.dockerignore` line can stack repetitions through `\Q\E`; each level used to
        // double the work.
        let pattern = format!("^a{}$", "\\Q\\E{1,}\\Q\\E*".repeat(40));
        let regex = Regex::parse(&pattern).unwrap();
        assert!(regex.program.len() < 300, "{}", regex.program.len());
        assert!(regex.is_match(&['a'; 200]));
        assert!(!regex.is_match(&[['a'; 200].as_slice(), &['b']].concat()));
    }
}

#[cfg(test)]
mod differential;
