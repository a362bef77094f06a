//! Byte-string helpers that behave like the Go standard library functions the docker CLI uses
//! (`utf8.DecodeRune`, `strings.TrimSpace`, `filepath.Clean`, `filepath.Rel`). File names and
//! `.dockerignore` lines are bytes on Linux, so these never assume valid UTF-8.

pub(crate) const REPLACEMENT: char = char::REPLACEMENT_CHARACTER;

/// Go's `utf8.DecodeRune`: an invalid or truncated sequence decodes as U+FFFD of width 1.
pub(crate) fn decode_rune(bytes: &[u8]) -> (char, usize) {
    let Some(&lead) = bytes.first() else {
        return (REPLACEMENT, 0);
    };
    let width = match lead {
        0x00..=0x7F => return (char::from(lead), 1),
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => return (REPLACEMENT, 1),
    };
    match bytes.get(..width).map(std::str::from_utf8) {
        Some(Ok(text)) => text.chars().next().map_or((REPLACEMENT, 1), |c| (c, width)),
        _ => (REPLACEMENT, 1),
    }
}

/// Go's `utf8.DecodeLastRune`.
fn decode_last_rune(bytes: &[u8]) -> (char, usize) {
    let Some(&last) = bytes.last() else {
        return (REPLACEMENT, 0);
    };
    if last < 0x80 {
        return (char::from(last), 1);
    }
    let end = bytes.len();
    let limit = end.saturating_sub(4);
    let mut start = end - 1;
    while start > limit {
        start -= 1;
        if bytes[start] & 0xC0 != 0x80 {
            break;
        }
    }
    let (rune, width) = decode_rune(&bytes[start..end]);
    if start + width != end {
        return (REPLACEMENT, 1);
    }
    (rune, width)
}

/// Decode bytes into runes the way Go's regexp engine reads its input.
pub(crate) fn decode_runes(mut bytes: &[u8]) -> Vec<char> {
    let mut runes = Vec::with_capacity(bytes.len());
    while !bytes.is_empty() {
        let (rune, width) = decode_rune(bytes);
        runes.push(rune);
        bytes = &bytes[width..];
    }
    runes
}

/// Go's `unicode.IsSpace`; an invalid byte (U+FFFD) is not space.
fn is_go_space(rune: char, width: usize) -> bool {
    !(rune == REPLACEMENT && width == 1) && rune.is_whitespace()
}

/// Go's `strings.TrimSpace` on bytes.
pub(crate) fn trim_space(mut bytes: &[u8]) -> &[u8] {
    while !bytes.is_empty() {
        let (rune, width) = decode_rune(bytes);
        if !is_go_space(rune, width) {
            break;
        }
        bytes = &bytes[width..];
    }
    while !bytes.is_empty() {
        let (rune, width) = decode_last_rune(bytes);
        if !is_go_space(rune, width) {
            break;
        }
        bytes = &bytes[..bytes.len() - width];
    }
    bytes
}

/// Go's `filepath.Clean` for `/`-separated paths: collapse `//`, drop `.`, resolve `..` lexically,
/// drop a trailing `/`; an empty result becomes `.`.
pub(crate) fn clean(path: &[u8]) -> Vec<u8> {
    if path.is_empty() {
        return b".".to_vec();
    }
    let rooted = path[0] == b'/';
    let n = path.len();
    let mut out: Vec<u8> = Vec::with_capacity(n);
    let mut read = 0;
    let mut dotdot = 0;
    if rooted {
        out.push(b'/');
        read = 1;
        dotdot = 1;
    }
    while read < n {
        let at_separator = |i: usize| i == n || path[i] == b'/';
        if path[read] == b'/' || (path[read] == b'.' && at_separator(read + 1)) {
            // Empty element or `.`: drop it.
            read += 1;
        } else if path[read] == b'.'
            && read + 1 < n
            && path[read + 1] == b'.'
            && at_separator(read + 2)
        {
            read += 2;
            if out.len() > dotdot {
                let mut write = out.len() - 1;
                while write > dotdot && out[write] != b'/' {
                    write -= 1;
                }
                out.truncate(write);
            } else if !rooted {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(b"..");
                dotdot = out.len();
            }
        } else {
            if (rooted && out.len() != 1) || (!rooted && !out.is_empty()) {
                out.push(b'/');
            }
            while read < n && path[read] != b'/' {
                out.push(path[read]);
                read += 1;
            }
        }
    }
    if out.is_empty() {
        out.push(b'.');
    }
    out
}

/// Go's `filepath.Rel` for two absolute, clean paths: `target` relative to `base`, using `..`
/// when `target` is outside `base`.
pub(crate) fn rel(base: &[u8], target: &[u8]) -> Vec<u8> {
    let split = |p: &[u8]| -> Vec<Vec<u8>> {
        p.split(|&b| b == b'/')
            .filter(|part| !part.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    };
    let base_parts = split(base);
    let target_parts = split(target);
    let common = base_parts
        .iter()
        .zip(&target_parts)
        .take_while(|(a, b)| a == b)
        .count();
    let mut parts: Vec<Vec<u8>> = vec![b"..".to_vec(); base_parts.len() - common];
    parts.extend(target_parts[common..].iter().cloned());
    if parts.is_empty() {
        return b".".to_vec();
    }
    parts.join(&b'/')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_matches_go_filepath_clean() {
        let cases: &[(&str, &str)] = &[
            ("", "."),
            (".", "."),
            ("./", "."),
            ("/", "/"),
            ("//", "/"),
            ("abc", "abc"),
            ("abc/", "abc"),
            ("./abc", "abc"),
            ("abc//def", "abc/def"),
            ("abc/./def", "abc/def"),
            ("abc/../def", "def"),
            ("abc/..", "."),
            ("..", ".."),
            ("../..", "../.."),
            ("../abc/..", ".."),
            ("/..", "/"),
            ("/../abc", "/abc"),
            ("/abc/", "/abc"),
            ("a/b/../../..", ".."),
            ("!foo/", "!foo"),
            ("**/", "**"),
            ("abc/def/../../..//x", "../x"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input.as_bytes()), want.as_bytes(), "clean({input:?})");
        }
    }

    #[test]
    fn trim_space_is_unicode_aware_and_byte_safe() {
        assert_eq!(trim_space(b"  a b \t\r\n"), b"a b");
        assert_eq!(trim_space("\u{a0}x\u{3000}".as_bytes()), b"x");
        assert_eq!(trim_space(b" \xff "), b"\xff");
        assert_eq!(trim_space(b"\xe3\x80"), b"\xe3\x80");
        assert_eq!(trim_space(b"   "), b"");
    }

    #[test]
    fn decode_matches_go_utf8() {
        assert_eq!(decode_runes("aé€😀".as_bytes()), vec!['a', 'é', '€', '😀']);
        // Truncated and invalid sequences decode one byte at a time.
        assert_eq!(decode_runes(b"\xf0\x9f\x98"), vec![REPLACEMENT; 3]);
        assert_eq!(decode_runes(b"\xed\xa0\x80"), vec![REPLACEMENT; 3]);
        assert_eq!(decode_runes(b"\xc0\xaf"), vec![REPLACEMENT; 2]);
    }

    #[test]
    fn rel_uses_dotdot_outside_base() {
        assert_eq!(rel(b"/a/b", b"/a/b/c/d"), b"c/d");
        assert_eq!(rel(b"/a/b", b"/a/x/y"), b"../x/y");
        assert_eq!(rel(b"/a/b", b"/a/b"), b".");
        assert_eq!(rel(b"/", b"/x"), b"x");
    }
}
