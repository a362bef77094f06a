//! Differential test: random regular expressions and inputs, answered by Go's own `regexp`
//! package (the oracle in `tests/go_regexp_oracle`, built with the local `go`) and by this
//! module. Any difference fails the test with the smallest case that still differs.
//!
//! It is a unit test, not an integration test, so that the matcher stays private: the crate's
//! public API is the `.dockerignore` rules, and exposing the regexp engine, even hidden from the
//! docs, would let others depend on it.
//!
//! - Without `go` on the PATH the test prints why and passes (CI installs `golang-go`).
//! - `GO_REGEXP_FUZZ_SEED=<n>` replays a run (each run prints its seed; the default seed changes
//!   with the clock), `GO_REGEXP_FUZZ_CASES=<n>` sets the number of patterns.
//! - Patterns Go accepts and this module refuses as unsupported (Unicode classes, `(?` groups) are
//!   counted, not failed: refusing them is deliberate.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use proptest::prelude::Rng as _;
use proptest::test_runner::{RngAlgorithm, TestRng};

use super::Regex;
use crate::gostr::decode_runes;

const DEFAULT_CASES: usize = 10_000;
/// Far longer than a case takes with a matcher that is linear in the input.
const SLOW: Duration = Duration::from_secs(10);
const INPUTS_PER_CASE: usize = 12;

#[test]
fn agrees_with_gos_regexp() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mut oracle) = Oracle::start(dir.path()) else {
        return;
    };
    let seed = env_number("GO_REGEXP_FUZZ_SEED").unwrap_or_else(clock_seed);
    let cases = env_number("GO_REGEXP_FUZZ_CASES").unwrap_or(DEFAULT_CASES);
    println!("go_regexp differential: {cases} patterns, GO_REGEXP_FUZZ_SEED={seed}");

    let mut rng = Rng::new(seed);
    let batch: Vec<Case> = (0..cases).map(|_| Case::random(&mut rng)).collect();
    let answers = oracle.ask_all(&batch);
    // Compared on another thread, so that a case go_regexp never finishes fails the test (Go's
    // matcher is linear in the input, and so must this one be).
    let (sender, verdicts) = mpsc::channel();
    let worker_batch = batch.clone();
    std::thread::spawn(move || {
        for (case, go) in worker_batch.iter().zip(&answers) {
            if sender.send((compare(case, go), go.clone())).is_err() {
                return;
            }
        }
    });
    let mut unsupported = 0;
    let mut accepted = 0;
    for case in &batch {
        let Ok((verdict, go)) = verdicts.recv_timeout(SLOW) else {
            panic!(
                "go_regexp took more than {SLOW:?} on one case (GO_REGEXP_FUZZ_SEED={seed}):\n  \
                 pattern: {:?}\n  inputs: {:?}",
                case.pattern,
                case.inputs
                    .iter()
                    .map(|i| String::from_utf8_lossy(i))
                    .collect::<Vec<_>>()
            );
        };
        match verdict {
            Verdict::Same => accepted += usize::from(matches!(go, Answer::Matches(_))),
            Verdict::Unsupported => unsupported += 1,
            Verdict::Differs(_) => {
                let (case, difference) = shrink(&mut oracle, case.clone());
                panic!(
                    "go_regexp differs from Go's regexp (GO_REGEXP_FUZZ_SEED={seed}):\n  \
                     pattern: {:?}\n  {difference}",
                    case.pattern
                );
            }
        }
    }
    println!(
        "go_regexp differential: {cases} patterns agree ({accepted} valid, {} invalid), \
         {unsupported} refused on purpose as unsupported",
        cases - accepted - unsupported
    );
}

fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, not {value:?}")),
    )
}

fn clock_seed() -> u64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    nanos as u64 ^ u64::from(std::process::id())
}

/// A pattern and inputs to match it against (inputs are bytes: file names need not be UTF-8).
#[derive(Debug, Clone)]
struct Case {
    pattern: String,
    inputs: Vec<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Rejected(String),
    /// Whether each input matches.
    Matches(Vec<bool>),
}

enum Verdict {
    Same,
    Unsupported,
    Differs(String),
}

fn compare(case: &Case, go: &Answer) -> Verdict {
    let ours = Regex::parse(&case.pattern);
    match (go, ours) {
        (Answer::Rejected(_), Err(_)) => Verdict::Same,
        (Answer::Matches(_), Err(err)) if err.unsupported => Verdict::Unsupported,
        (Answer::Matches(_), Err(err)) => {
            Verdict::Differs(format!("Go accepts it, go_regexp refuses it: {err}"))
        }
        (Answer::Rejected(reason), Ok(_)) => {
            Verdict::Differs(format!("go_regexp accepts it, Go refuses it: {reason}"))
        }
        (Answer::Matches(expected), Ok(regex)) => {
            assert_eq!(expected.len(), case.inputs.len(), "one answer per input");
            for (input, &expected) in case.inputs.iter().zip(expected) {
                if regex.is_match(&decode_runes(input)) != expected {
                    return Verdict::Differs(format!(
                        "input {:?} ({}): Go says {}, go_regexp says {}",
                        String::from_utf8_lossy(input),
                        hex(input),
                        describe(expected),
                        describe(!expected)
                    ));
                }
            }
            Verdict::Same
        }
    }
}

fn describe(matched: bool) -> &'static str {
    if matched {
        "match"
    } else {
        "no match"
    }
}

/// The smallest case that still differs: first the one input that differs (or none, if the
/// pattern's acceptance differs), then shorter patterns, then a shorter input.
fn shrink(oracle: &mut Oracle, mut case: Case) -> (Case, String) {
    let differs = |oracle: &mut Oracle, case: &Case| {
        let go = oracle.ask(case);
        match compare(case, &go) {
            Verdict::Differs(difference) => Some(difference),
            Verdict::Same | Verdict::Unsupported => None,
        }
    };
    let mut difference = differs(oracle, &case).expect("the case differs");
    let fewer_inputs = std::iter::once(Vec::new())
        .chain(case.inputs.iter().map(|input| vec![input.clone()]))
        .map(|inputs| Case {
            pattern: case.pattern.clone(),
            inputs,
        })
        .find(|candidate| differs(oracle, candidate).is_some());
    if let Some(smaller) = fewer_inputs {
        case = smaller;
    }
    let mut budget: usize = 3000;
    loop {
        let chars: Vec<char> = case.pattern.chars().collect();
        let shorter_patterns = (1..=chars.len()).rev().flat_map(|width| {
            let chars = &chars;
            (0..=chars.len() - width).map(move |start| {
                let kept = chars[..start].iter().chain(&chars[start + width..]);
                kept.collect::<String>()
            })
        });
        let input = case.inputs.first().cloned().unwrap_or_default();
        let shorter_inputs = (0..input.len()).map(|at| {
            let mut shorter = input.clone();
            shorter.remove(at);
            shorter
        });
        let candidates = shorter_patterns
            .map(|pattern| Case {
                pattern,
                inputs: case.inputs.clone(),
            })
            .chain(shorter_inputs.map(|input| Case {
                pattern: case.pattern.clone(),
                inputs: vec![input],
            }));
        let mut tried = 0;
        let smaller = candidates
            .take(budget)
            .inspect(|_| tried += 1)
            .find_map(|candidate| differs(oracle, &candidate).map(|found| (candidate, found)));
        budget -= tried;
        match smaller {
            Some((smaller, found)) => {
                case = smaller;
                difference = found;
            }
            None => return (case, difference),
        }
    }
}

/// The Go program, built once, answering one case per line.
struct Oracle {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Oracle {
    /// Build and start the oracle; `None`, after saying why, when `go` is not installed.
    fn start(dir: &Path) -> Option<Oracle> {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go_regexp_oracle");
        let binary = dir.join("go_regexp_oracle");
        let mut build = Command::new("go");
        build
            .args(["build", "-o"])
            .arg(&binary)
            .arg(".")
            .current_dir(&source)
            .env("GOTOOLCHAIN", "local")
            .env("GOFLAGS", "-mod=mod");
        if std::env::var_os("HOME").is_none() && std::env::var_os("GOCACHE").is_none() {
            build.env("GOCACHE", dir.join("gocache"));
        }
        match build.output() {
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                // Straight to stderr: the test harness would hide a println! of a passing test.
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED go_regexp differential test: `go` is not installed, so Go's regexp \
                     cannot be asked (install golang-go to run it)"
                );
                return None;
            }
            Err(err) => panic!("cannot run `go build`: {err}"),
            Ok(output) => assert!(
                output.status.success(),
                "`go build` of {} failed:\n{}",
                source.display(),
                String::from_utf8_lossy(&output.stderr)
            ),
        }
        let mut child = Command::new(&binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the Go regexp oracle");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("oracle stdout"));
        Some(Oracle {
            child,
            stdin,
            stdout,
        })
    }

    fn line(case: &Case) -> String {
        let mut line = hex(case.pattern.as_bytes());
        for input in &case.inputs {
            line.push(' ');
            line.push_str(&hex(input));
        }
        line.push('\n');
        line
    }

    fn read_answer(&mut self) -> Answer {
        let mut line = String::new();
        self.stdout.read_line(&mut line).expect("read the oracle");
        let line = line.trim_end_matches('\n');
        if let Some(bits) = line.strip_prefix("ok ") {
            Answer::Matches(bits.bytes().map(|b| b == b'1').collect())
        } else if let Some(reason) = line.strip_prefix("err ") {
            Answer::Rejected(reason.to_string())
        } else {
            panic!("unexpected answer from the Go oracle: {line:?}")
        }
    }

    /// One case at a time, while shrinking.
    fn ask(&mut self, case: &Case) -> Answer {
        let stdin = self.stdin.as_mut().expect("oracle stdin");
        stdin.write_all(Oracle::line(case).as_bytes()).unwrap();
        stdin.flush().unwrap();
        self.read_answer()
    }

    /// The whole batch: written from another thread, so that neither side blocks on a full pipe.
    fn ask_all(&mut self, cases: &[Case]) -> Vec<Answer> {
        let mut stdin = self.stdin.take().expect("oracle stdin");
        let text: String = cases.iter().map(Oracle::line).collect();
        let writer = std::thread::spawn(move || {
            stdin.write_all(text.as_bytes()).unwrap();
            stdin.flush().unwrap();
            stdin
        });
        let answers = cases.iter().map(|_| self.read_answer()).collect();
        self.stdin = Some(writer.join().expect("oracle writer"));
        answers
    }
}

impl Drop for Oracle {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// proptest's seedable generator (ChaCha), with the few draws the generators need.
struct Rng(TestRng);

impl Rng {
    fn new(seed: u64) -> Rng {
        let mut bytes = [0; 32];
        bytes[..8].copy_from_slice(&seed.to_le_bytes());
        Rng(TestRng::from_seed(RngAlgorithm::ChaCha, &bytes))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }
}

/// Characters of literals and inputs: path characters, regexp metacharacters, multi-byte runes,
/// U+FFFD and a newline.
const CHARS: &[char] = &[
    'a', 'b', 'c', 'x', 'A', 'Z', '0', '9', '_', '-', '/', '.', ' ', '\n', 'é', '日', '😀',
    '\u{FFFD}', '{', '}', ',', '[', ']', '^', '$', '\\', '!', '#', ':', 'Q', 'E', 'k', '*', '?',
    '|', '(', ')', '+',
];

/// Escapes, valid and not, as `.dockerignore` users write them. No lone surrogate (`\x{D800}`):
/// see "Known difference" in go_regexp.rs.
const ESCAPES: &[&str] = &[
    "\\.",
    "\\*",
    "\\\\",
    "\\[",
    "\\]",
    "\\(",
    "\\)",
    "\\{",
    "\\}",
    "\\|",
    "\\^",
    "\\$",
    "\\-",
    "\\ ",
    "\\_",
    "\\#",
    "\\/",
    "\\!",
    "\\x41",
    "\\x2f",
    "\\x{41}",
    "\\x{2F}",
    "\\x{e9}",
    "\\x{1F600}",
    "\\x{10FFFF}",
    "\\x{110000}",
    "\\x{}",
    "\\x{FFFD}",
    "\\x{0}",
    "\\x{00000041}",
    "\\x{41",
    "\\x4",
    "\\xZZ",
    "\\x",
    "\\101",
    "\\0",
    "\\08",
    "\\12",
    "\\377",
    "\\1",
    "\\8",
    "\\a",
    "\\f",
    "\\n",
    "\\r",
    "\\t",
    "\\v",
    "\\d",
    "\\D",
    "\\s",
    "\\S",
    "\\w",
    "\\W",
    "\\b",
    "\\B",
    "\\A",
    "\\z",
    "\\pL",
    "\\PL",
    "\\pN",
    "\\p{Greek}",
    "\\p{^Latin}",
    "\\P{Lu}",
    "\\p{Any}",
    "\\P{Any}",
    "\\p{^Any}",
    "\\pZ",
    "\\p{Foo}",
    "\\pX",
    "\\p{",
    "\\p",
    "\\C",
    "\\y",
    "\\é",
    "\\e",
    "\\Qa.b\\E",
    "\\Q*\\E",
    "\\Q\\E",
    "\\Qab",
    "\\E",
    "\\",
];

/// Bracket expressions, valid and not.
const CLASSES: &[&str] = &[
    "[^/]",
    "[a-c]",
    "[^a-c]",
    "[abc]",
    "[]a]",
    "[^]a]",
    "[a-]",
    "[-a]",
    "[a-b-c]",
    "[[:alpha:]]",
    "[[:^digit:]x]",
    "[[:word:]]",
    "[[:foo:]]",
    "[[:]",
    "[\\d]",
    "[\\w-]",
    "[^\\n]",
    "[\\x41-\\x{5A}]",
    "[\\x{D800}-\\x{DFFF}]",
    "[^\\x{0}-\\x{10FFFF}]",
    "[é-ü]",
    "[z-a]",
    "[a",
    "[]",
    "[^]",
    "[\\pL]",
    "[\\p{Any}]",
    "[^\\P{Any}]",
    "[\\Q]",
    "[\\b]",
    "[.]",
    "[*]",
    "[[]",
    "[\\]]",
    "[a-\\d]",
    "[^\\x{FFFD}]",
    "[\\x{FFFD}]",
];

impl Case {
    fn random(rng: &mut Rng) -> Case {
        let pattern = if rng.chance(40) {
            docker_shaped(rng)
        } else {
            alternation(rng, 0)
        };
        let inputs = (0..INPUTS_PER_CASE)
            .map(|_| random_input(rng, &pattern))
            .collect();
        Case { pattern, inputs }
    }
}

/// What patternmatcher makes of a `.dockerignore` pattern: anchored, with `[^/]*`, `[^/]`,
/// `(.*/)?`, escaped dots and whatever the user's escapes and classes pass through.
fn docker_shaped(rng: &mut Rng) -> String {
    let mut pattern = String::from("^");
    for _ in 0..rng.below(6) {
        let piece = match rng.below(9) {
            0 => "[^/]*".to_string(),
            1 => "[^/]".to_string(),
            2 => "(.*/)?".to_string(),
            3 => "\\.".to_string(),
            4 => rng.pick(ESCAPES).to_string(),
            5 => rng.pick(CLASSES).to_string(),
            6 => repetition(rng),
            7 => "/".to_string(),
            _ => literal(rng),
        };
        pattern.push_str(&piece);
    }
    if rng.chance(90) {
        pattern.push('$');
    }
    pattern
}

fn alternation(rng: &mut Rng, depth: usize) -> String {
    let mut pattern = sequence(rng, depth);
    while rng.chance(15) {
        pattern.push('|');
        pattern.push_str(&sequence(rng, depth));
    }
    pattern
}

fn sequence(rng: &mut Rng, depth: usize) -> String {
    let mut pattern = String::new();
    for _ in 0..rng.below(5) {
        pattern.push_str(&atom(rng, depth));
        if rng.chance(30) {
            pattern.push_str(&repetition(rng));
        }
    }
    pattern
}

fn atom(rng: &mut Rng, depth: usize) -> String {
    match rng.below(14) {
        0..=3 => literal(rng),
        4 => ".".to_string(),
        5 => rng.pick(ESCAPES).to_string(),
        6 => rng.pick(CLASSES).to_string(),
        7 => random_class(rng),
        8 if depth < 3 => format!("({})", alternation(rng, depth + 1)),
        9 if depth < 3 && rng.chance(20) => {
            let open = rng.pick(&["(?:", "(?i)", "(?P<n>", "(?s:", "(?"]);
            format!("{open}{})", alternation(rng, depth + 1))
        }
        10 => rng
            .pick(&["^", "$", "(", ")", "|", "{", "}", "[", "]"])
            .to_string(),
        // Repetitions stacked through an empty `\Q\E` are allowed: Go nests them, and so can a
        // `.dockerignore` line. Deep nesting must not slow the matcher down.
        11 => {
            let mut nested = literal(rng);
            if rng.chance(80) {
                for _ in 0..=rng.below(3) {
                    nested.push_str("\\Q\\E");
                    nested.push_str(&repetition(rng));
                }
            } else {
                // Deep, and valid: Go limits only counted repetitions of 2 or more.
                for _ in 0..=rng.below(30) {
                    nested.push_str("\\Q\\E");
                    nested.push_str(rng.pick(&["*", "+", "?", "{0,}", "{1,}", "{0,1}", "*?"]));
                }
            }
            nested
        }
        _ => literal(rng),
    }
}

fn literal(rng: &mut Rng) -> String {
    rng.pick(CHARS).to_string()
}

fn random_class(rng: &mut Rng) -> String {
    let mut class = String::from("[");
    if rng.chance(30) {
        class.push('^');
    }
    for _ in 0..=rng.below(3) {
        match rng.below(4) {
            0 => {
                class.push_str(rng.pick(&["a-z", "0-9", "A-c", "\\d", "\\W", "[:space:]", "é-日"]))
            }
            1 => class.push_str(rng.pick(ESCAPES)),
            _ => class.push(rng.pick(CHARS)),
        }
    }
    if rng.chance(95) {
        class.push(']');
    }
    class
}

fn repetition(rng: &mut Rng) -> String {
    let operator = match rng.below(12) {
        0..=2 => "*".to_string(),
        3 => "+".to_string(),
        4 => "?".to_string(),
        5 => format!("{{{}}}", rng.below(5)),
        6 => format!("{{{},}}", rng.below(4)),
        7 => {
            let min = rng.below(4);
            format!("{{{},{}}}", min, min + rng.below(4))
        }
        8 => rng
            .pick(&[
                "{1000}",
                "{1001}",
                "{0,1000}",
                "{3,2}",
                "{,2}",
                "{01}",
                "{99999999999}",
                "{",
                "{2",
                "{2,",
                "{}",
                "{500}",
            ])
            .to_string(),
        9 => "**".to_string(),
        _ => "*?".to_string(),
    };
    if rng.chance(5) {
        operator + "?"
    } else {
        operator
    }
}

/// Random strings, the pattern's own characters in random order, or its text with the
/// metacharacters left out and a few characters changed (these match far more often), with the
/// odd invalid UTF-8 byte.
fn random_input(rng: &mut Rng, pattern: &str) -> Vec<u8> {
    let pattern_chars: Vec<char> = pattern
        .chars()
        .filter(|c| !"\\[]()*+?{}|^$".contains(*c))
        .collect();
    let mut input = String::new();
    if !pattern_chars.is_empty() && rng.chance(40) {
        for &c in &pattern_chars {
            match rng.below(10) {
                0 => {}
                1 => input.push(rng.pick(CHARS)),
                2 => input.extend([c, c]),
                _ => input.push(c),
            }
        }
    } else {
        for _ in 0..rng.below(10) {
            if !pattern_chars.is_empty() && rng.chance(50) {
                input.push(rng.pick(&pattern_chars));
            } else {
                input.push(rng.pick(CHARS));
            }
        }
    }
    let mut input = input.into_bytes();
    if rng.chance(10) {
        let at = rng.below(input.len() + 1);
        let invalid: &[u8] = rng.pick(&[&b"\xff"[..], b"\xc3", b"\xed\xa0\x80", b"\xe2\x82"]);
        input.splice(at..at, invalid.iter().copied());
    }
    input
}
