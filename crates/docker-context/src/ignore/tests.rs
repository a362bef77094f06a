use super::*;

fn rules(lines: &str) -> IgnoreRules {
    IgnoreRules::parse(lines.as_bytes()).unwrap_or_else(|e| panic!("{lines:?}: {e}"))
}

fn excluded(lines: &str, path: &str) -> bool {
    rules(lines).is_excluded(path.as_bytes())
}

fn parse_error(lines: &str) -> ParseError {
    match IgnoreRules::parse(lines.as_bytes()) {
        Ok(_) => panic!("{lines:?} should be rejected"),
        Err(err) => err,
    }
}

fn texts(rules: &IgnoreRules) -> Vec<String> {
    rules
        .patterns
        .iter()
        .map(|p| {
            format!(
                "{}{}",
                if p.exception { "!" } else { "" },
                String::from_utf8_lossy(&p.text)
            )
        })
        .collect()
}

/// The verdict the tar walk reaches for `path`, handing each directory's state to its child.
fn walk_verdict(rules: &IgnoreRules, path: &str) -> bool {
    let components: Vec<&str> = path.split('/').collect();
    let mut state: Option<MatchState> = None;
    let mut verdict = false;
    for n in 1..=components.len() {
        let (v, s) = rules.match_entry(components[..n].join("/").as_bytes(), state.as_ref());
        verdict = v;
        state = Some(s);
    }
    verdict
}

// --- reading the file -------------------------------------------------------------------------

#[test]
fn bom_is_stripped_from_the_first_line_only() {
    let r = rules("\u{feff}a\n\u{feff}b\n");
    assert_eq!(texts(&r), ["a", "\u{feff}b"]);
    assert!(r.is_excluded(b"a"));
}

#[test]
fn comments_only_start_in_column_zero() {
    let r = rules("# comment\n #not-a-comment\nfoo # trailing text is part of the pattern\n");
    assert_eq!(
        texts(&r),
        [
            "#not-a-comment",
            "foo # trailing text is part of the pattern"
        ]
    );
    assert!(r.is_excluded(b"#not-a-comment"));
}

#[test]
fn lines_are_trimmed_and_blank_lines_skipped() {
    let r = rules("\n   \n\t  spaced  \t\r\n\u{a0}nbsp\u{3000}\n\r\n");
    assert_eq!(texts(&r), ["spaced", "nbsp"]);
}

#[test]
fn crlf_line_endings_are_accepted() {
    let r = rules("a\r\n!b\r\nc");
    assert_eq!(texts(&r), ["a", "!b", "c"]);
}

#[test]
fn exceptions_are_trimmed_after_the_bang() {
    let r = rules("*\n!  keep.txt \n");
    assert_eq!(texts(&r), ["*", "!keep.txt"]);
    assert!(!r.is_excluded(b"keep.txt"));
    assert!(r.is_excluded(b"other"));
}

#[test]
fn paths_are_cleaned_like_filepath_clean() {
    let r = rules("/foo\n./bar\nbaz/\nqux//quux\na/../b\n./\n//root\n!/x/./y/\n/\n");
    assert_eq!(
        texts(&r),
        ["foo", "bar", "baz", "qux/quux", "b", ".", "root", "!x/y", "/"]
    );
    assert!(r.is_excluded(b"foo"));
    assert!(r.is_excluded(b"bar"));
    assert!(r.is_excluded(b"baz/file"));
    assert!(r.is_excluded(b"qux/quux"));
}

#[test]
fn dot_and_root_patterns_match_nothing() {
    // Docker's docs: "for historical reasons, the pattern `.` is ignored".
    assert!(!excluded(".\n", "a"));
    assert!(!excluded("/\n", "a"));
    assert!(!excluded("./\n", "a/b"));
}

#[test]
fn error_names_the_line_counting_comments_and_blanks() {
    let err = parse_error("# c\n\nok\n[unclosed\n");
    assert_eq!(err.line, 4);
    assert_eq!(err.source.pattern, "[unclosed");
    assert!(
        err.to_string()
            .starts_with("line 4: bad pattern \"[unclosed\""),
        "{err}"
    );
    assert!(
        err.source.reason.contains("not closed"),
        "{}",
        err.source.reason
    );
}

#[test]
fn lone_bang_is_an_error() {
    assert_eq!(parse_error("a\n!\n").line, 2);
    assert_eq!(parse_error("! \n").line, 1);
    // `!/` cleans to `!` inside patternmatcher.
    assert_eq!(parse_error("!/\n").line, 1);
}

#[test]
fn overlong_line_is_an_error() {
    let long = "a".repeat(70_000);
    let err = parse_error(&format!("ok\n{long}\n"));
    assert_eq!(err.line, 2);
    let fits = "b".repeat(65_535);
    assert_eq!(rules(&format!("{fits}\n")).len(), 1);
}

// --- pattern syntax ---------------------------------------------------------------------------

#[test]
fn malformed_patterns_rejected_like_filepath_match() {
    for bad in [
        "[", "a[", "[a", "[]", "[]a]", "[^]", "[a-]", "[-a]", "[a-b-c]", "[\\", "[a\\", "a\\",
        "\\", "x*[", "*.go*[", "[z-", "[\u{80}",
    ] {
        let err = IgnoreRules::from_patterns([bad]).map(|_| ()).unwrap_err();
        assert_eq!(err.line, 1, "{bad:?}");
    }
    // Invalid UTF-8 inside a class.
    assert!(IgnoreRules::from_patterns([b"[\xff]".as_slice()]).is_err());
}

#[test]
fn malformed_regexps_rejected() {
    // Accepted by filepath.Match but not by Go's regexp compiler, which docker also runs.
    for bad in [
        "[z-a]",
        "\\y*",
        "[[:foo:]]",
        "a{2}{3}*",
        "[a-\\d]",
        "\\8",
        "\\pZ*",
    ] {
        let err = IgnoreRules::from_patterns([bad]).map(|_| ()).unwrap_err();
        assert!(
            err.source.reason.contains("regular expression"),
            "{bad:?}: {err}"
        );
    }
}

#[test]
fn odd_but_valid_patterns_are_accepted() {
    for ok in [
        "a]",
        "]",
        "\\*",
        "[!a]",
        "[^a]",
        "[\\]]",
        "a|b",
        "{",
        "x{2}",
        "^a",
        "$",
        "é?",
        "\\Q*",
        "[[:alpha:]]",
    ] {
        assert!(IgnoreRules::from_patterns([ok]).is_ok(), "{ok:?}");
    }
}

// --- matching ---------------------------------------------------------------------------------

#[test]
fn star_and_question_mark_never_cross_a_slash() {
    assert!(excluded("*.txt", "a.txt"));
    assert!(!excluded("*.txt", "dir/a.txt"));
    assert!(excluded("a*c", "abbbc"));
    assert!(!excluded("a*c", "ab/c"));
    assert!(excluded("a?c", "abc"));
    assert!(!excluded("a?c", "a/c"));
    assert!(!excluded("a?c", "ac"));
    assert!(excluded("*", "anything"));
    assert!(excluded("*", "dir/child"), "the parent `dir` matches");
}

#[test]
fn question_mark_matches_one_character() {
    assert!(excluded("?", "é"));
    assert!(excluded("?", "😀"));
    assert!(!excluded("??", "é"));
    let r = IgnoreRules::from_patterns(["a?b"]).unwrap();
    assert!(
        r.is_excluded(b"a\xffb"),
        "an invalid byte counts as one character"
    );
    assert!(!r.is_excluded(b"a\xff\xfeb"));
}

#[test]
fn character_classes() {
    assert!(excluded("[abc].txt", "b.txt"));
    assert!(!excluded("[abc].txt", "d.txt"));
    assert!(excluded("file[0-9]", "file7"));
    assert!(!excluded("file[0-9]", "filex"));
    assert!(excluded("[^a]x", "bx"));
    assert!(!excluded("[^a]x", "ax"));
    assert!(excluded("[\\]]", "]"));
    assert!(excluded("[é-ë]", "ê"));
}

#[test]
fn bang_class_is_not_a_negation() {
    // patternmatcher hands `[...]` to Go's regexp, where `!` is an ordinary member.
    assert!(excluded("[!a]", "!"));
    assert!(excluded("[!a]", "a"));
    assert!(!excluded("[!a]", "b"));
}

#[test]
fn double_star_at_start_middle_and_end() {
    assert!(excluded("**/*.go", "main.go"));
    assert!(excluded("**/*.go", "a/b/main.go"));
    assert!(!excluded("**/*.go", "main.go.txt"));
    assert!(excluded("**/foo", "foo"));
    assert!(excluded("**/foo", "a/b/foo"));
    assert!(excluded("a/**/b", "a/b"));
    assert!(excluded("a/**/b", "a/x/y/b"));
    assert!(!excluded("a/**/b", "x/a/b"));
    assert!(excluded("a/**", "a/x"));
    assert!(excluded("a/**", "a/x/y"));
    assert!(
        !excluded("a/**", "a"),
        "`a/**` matches what is inside `a`, not `a`"
    );
    assert!(excluded("**", "anything/at/all"));
    assert!(
        excluded("foo**", "foobar/x"),
        "a trailing `**` is a plain prefix"
    );
    assert!(
        excluded("**foo", "a/barfoo"),
        "a leading `**` is a plain suffix"
    );
    assert!(
        !excluded("**foo*", "a/barfoox"),
        "… unless a wildcard follows"
    );
}

#[test]
fn backslash_escapes() {
    assert!(excluded("\\*", "*"));
    assert!(!excluded("\\*", "a"));
    assert!(excluded("a\\?", "a?"));
    assert!(!excluded("a\\?", "ab"));
    assert!(excluded("\\[x]", "[x]"));
    assert!(excluded("a\\\\b", "a\\b"));
}

#[test]
fn a_pattern_matching_a_parent_excludes_everything_below() {
    assert!(excluded("build", "build"));
    assert!(excluded("build", "build/out/bin"));
    assert!(
        !excluded("build", "src/build"),
        "patterns are anchored at the root"
    );
    assert!(excluded("*/build", "src/build/x"));
}

#[test]
fn last_matching_pattern_wins() {
    assert!(!excluded("*.log\n!keep.log\n", "keep.log"));
    assert!(excluded("!keep.log\n*.log\n", "keep.log"));
    assert!(excluded("*.log\n!keep.log\nkeep.log\n", "keep.log"));
}

#[test]
fn exceptions_reach_inside_excluded_directories() {
    assert!(!excluded("dir\n!dir/keep\n", "dir/keep"));
    assert!(excluded("dir\n!dir/keep\n", "dir/other"));
    assert!(excluded("dir\n!dir/keep\n", "dir"));
}

#[test]
fn docker_docs_examples() {
    let r = rules("# comment\n*/temp*\n*/*/temp*\ntemp?\n");
    assert!(r.is_excluded(b"somedir/temporary.txt"));
    assert!(r.is_excluded(b"somedir/temp"));
    assert!(r.is_excluded(b"somedir/subdir/temporary.txt"));
    assert!(r.is_excluded(b"tempa"));
    assert!(r.is_excluded(b"tempb"));
    assert!(
        !r.is_excluded(b"temporary.txt"),
        "`*/temp*` needs one directory level"
    );
    assert!(!r.is_excluded(b"temp"), "`temp?` needs one more character");
    assert!(!r.is_excluded(b"a/b/c/temp"), "three levels is not covered");

    let r = rules("**/*.go\n");
    assert!(r.is_excluded(b"main.go") && r.is_excluded(b"cmd/x/main.go"));

    let r = rules("*.md\n!README.md\n");
    assert!(r.is_excluded(b"CHANGELOG.md"));
    assert!(!r.is_excluded(b"README.md"));
    assert!(
        !r.is_excluded(b"docs/guide.md"),
        "`*.md` is only right under the root"
    );

    let r = rules("*.md\n!README*.md\nREADME-secret.md\n");
    assert!(r.is_excluded(b"CHANGELOG.md"));
    assert!(!r.is_excluded(b"README.md"));
    assert!(!r.is_excluded(b"README-public.md"));
    assert!(r.is_excluded(b"README-secret.md"));

    let r = rules("*.md\nREADME-secret.md\n!README*.md\n");
    assert!(
        !r.is_excluded(b"README-secret.md"),
        "the middle line has no effect"
    );
    assert!(!r.is_excluded(b"README.md"));
    assert!(r.is_excluded(b"CHANGELOG.md"));
}

#[test]
fn regexp_leaks_of_patternmatcher() {
    // `|` is not escaped: the `^`/`$` anchors end up on different branches.
    assert!(excluded("x*|b", "ab"));
    assert!(excluded("x*|b", "deep/dir/b"));
    assert!(excluded("x*|b", "xyz"));
    assert!(!excluded("x*|b", "c"));
    assert!(
        excluded("a|b", "a|b"),
        "without a wildcard it is an exact match"
    );
    assert!(!excluded("a|b", "a"));
    // `{n}` is a regexp repetition once the pattern has a wildcard.
    assert!(excluded("x{2}*", "xxa"));
    assert!(!excluded("x{2}*", "x"));
    // `^` is an anchor, and `\Q` quotes the rest, including the final `$`.
    assert!(excluded("^foo*", "foobar"));
    assert!(!excluded("^foo*", "^foo"));
    assert!(excluded("\\Qab", "ab$x"));
    assert!(!excluded("\\Qab", "ab"));
    // A class swallows the `[^/]` that `*` becomes.
    assert!(excluded("[*]", "]"));
    assert!(!excluded("[*]", "*"));
}

#[test]
fn hex_escape_in_braces_is_valid() {
    // `{` and `}` reach Go's regexp unescaped, so `\x{41}` is the escape for `A`.
    let r = rules("\\x{41}*\n");
    assert!(r.is_excluded(b"Ab"));
    assert!(!r.is_excluded(b"x{41}"));
}

#[test]
fn unicode_classes_are_refused_as_unsupported_and_unknown_names_as_invalid() {
    for known in ["\\p{Greek}*", "\\pL*", "[\\p{Lu}]*"] {
        let reason = parse_error(&format!("{known}\n")).source.reason;
        assert!(reason.contains("Unicode class"), "{known}: {reason}");
        assert!(!reason.contains("invalid"), "{known}: {reason}");
    }
    let reason = parse_error("\\p{Foo}*\n").source.reason;
    assert!(reason.contains("which is invalid"), "{reason}");
    // `\p{Any}` needs no Unicode table.
    assert!(excluded("\\p{Any}*", "é"));
}

#[test]
fn stacked_repetitions_match_quickly() {
    // Each `\Q\E{1,}` repeats what comes before it; a matcher that re-runs the inner repetition
    // for each level takes exponential time on this line.
    let line = format!("a{}\n", "\\Q\\E{1,}".repeat(200));
    let r = rules(&line);
    assert!(r.is_excluded(&[b'a'; 300]));
    assert!(!r.is_excluded(b"ab"));
    let nested = format!("a{}\n", "\\Q\\E{1,}".repeat(1000));
    assert!(parse_error(&nested)
        .source
        .reason
        .contains("nests too deeply"));
}

#[test]
fn nested_counted_repetitions_are_limited_like_go() {
    let reason = parse_error("a{1000}\\Q\\E{2}*\n").source.reason;
    assert!(reason.contains("invalid repeat count"), "{reason}");
    assert!(excluded("a{500}\\Q\\E{2}*", &"a".repeat(1000)));
}

#[test]
fn non_utf8_patterns_and_paths() {
    let r = IgnoreRules::from_patterns([b"caf\xe9".as_slice(), b"*.\xff".as_slice()]).unwrap();
    assert!(r.is_excluded(b"caf\xe9"));
    assert!(!r.is_excluded("café".as_bytes()));
    assert!(r.is_excluded(b"x.\xff"));
    // In a regexp, an invalid byte reads as U+FFFD, so it matches any invalid byte.
    assert!(r.is_excluded(b"x.\xfe"));
}

// --- the walk's matcher and the descend rule ---------------------------------------------------

#[test]
fn walk_matcher_inherits_parent_matches() {
    // Docker's tar walk re-includes `d/x` here even though the last pattern excludes `d`:
    // the final `d` was skipped while `d` itself was being matched, so the child never sees it.
    let r = rules("d\n!d/x\nd\n");
    assert!(!walk_verdict(&r, "d/x"));
    assert!(r.is_excluded(b"d/x"));
    assert!(walk_verdict(&r, "d/y"));
    assert!(walk_verdict(&r, "d"));
}

#[test]
fn walk_matcher_agrees_on_ordinary_rules() {
    let r = rules("*.md\n!README.md\nbuild\n!build/keep\n");
    for path in [
        "a.md",
        "README.md",
        "x/a.md",
        "build",
        "build/keep",
        "build/other",
        "src/a",
    ] {
        assert_eq!(
            walk_verdict(&r, path),
            r.is_excluded(path.as_bytes()),
            "{path}"
        );
    }
}

#[test]
fn excluded_directory_is_reopened_only_for_a_literal_exception_inside() {
    let r = rules("dir\n!dir/sub/keep\n!other*\n!**/x\n");
    assert!(r.exception_may_reinclude_inside(b"dir"));
    assert!(r.exception_may_reinclude_inside(b"dir/sub"));
    assert!(r.exception_may_reinclude_inside(b"dir/sub/keep"));
    assert!(!r.exception_may_reinclude_inside(b"di"));
    assert!(!r.exception_may_reinclude_inside(b"dir/su"));
    assert!(
        !r.exception_may_reinclude_inside(b"elsewhere"),
        "`!**/x` is read literally"
    );
    assert!(!rules("dir\n").has_exceptions());
}

#[test]
fn legacy_matcher_checks_a_single_parent() {
    // The CLI decides whether to re-include the Dockerfile with this matcher.
    let r = rules("**/api\n");
    assert!(r.is_excluded_legacy(b"x/api/Dockerfile"));
    assert!(
        !r.is_excluded_legacy(b"a/b/api/Dockerfile"),
        "only the 2-component prefix `a/b` is checked"
    );
    assert!(r.is_excluded(b"a/b/api/Dockerfile"));
    assert!(rules("api\n").is_excluded_legacy(b"api/Dockerfile"));
}

#[test]
fn pushed_exception_is_read_as_a_pattern() {
    let mut r = rules("*\n");
    r.push_exception(b"Dockerfile").unwrap();
    assert!(!r.is_excluded(b"Dockerfile"));
    assert_eq!(r.patterns.last().map(|p| p.line), Some(0));
    assert!(r.push_exception(b"Docker[file").is_err());
}

#[test]
fn deciding_line_points_at_the_last_effective_pattern() {
    let r = rules("# header\n*.md\n!README.md\n\nbuild\n");
    assert_eq!(r.deciding_line(b"a.md"), Some(2));
    assert_eq!(r.deciding_line(b"README.md"), Some(3));
    assert_eq!(r.deciding_line(b"build/x"), Some(5));
    assert_eq!(r.deciding_line(b"src/main.rs"), None);
}
