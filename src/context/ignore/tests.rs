use super::*;

fn hex_decode(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

/// Temporary differential driver against a local Go oracle (not part of the suite).
#[test]
#[ignore]
fn oracle_driver() {
    let input = std::fs::read_to_string(std::env::var("ORACLE_IN").unwrap()).unwrap();
    let mut out = String::new();
    for line in input.lines() {
        let (patterns, paths) = line.split_once('|').unwrap();
        let patterns: Vec<Vec<u8>> = patterns
            .split(',')
            .filter(|p| !p.is_empty())
            .map(hex_decode)
            .collect();
        let rules = match IgnoreRules::from_patterns(&patterns) {
            Ok(rules) => rules,
            Err(_) => {
                out.push_str("ERR\n");
                continue;
            }
        };
        let mut results = Vec::new();
        for path in paths.split(',') {
            let path = hex_decode(path);
            let or_parent = rules.is_excluded(&path);
            let legacy = rules.is_excluded_legacy(&path);
            let mut state: Option<MatchState> = None;
            let mut verdict = false;
            let components: Vec<&[u8]> = path.split(|&b| b == b'/').collect();
            for n in 1..=components.len() {
                let prefix = components[..n].join(&b'/');
                let (v, s) = rules.match_entry(&prefix, state.as_ref());
                verdict = v;
                state = Some(s);
            }
            results.push(format!("{}{}{}", or_parent as u8, legacy as u8, verdict as u8));
        }
        out.push_str(&results.join(","));
        out.push('\n');
    }
    std::fs::write(std::env::var("ORACLE_OUT").unwrap(), out).unwrap();
}
