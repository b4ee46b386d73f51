//! A `.env` reader with python-dotenv's rules, which is what OpenAI-Forward users' files are written
//! for: `KEY=value`, optional `export`, `#` comments, single-quoted values taken literally and
//! double-quoted ones with escapes — both may span several lines (the shipped `.env` writes its
//! rate-limit JSON over several lines inside single quotes) — and `${VAR}` expansion in unquoted and
//! double-quoted values.

/// One `KEY=value` pair in file order, with the line it started on (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    pub value: String,
    pub line: usize,
}

/// Parse `.env` text. Malformed lines are reported with their line number and skipped, like
/// python-dotenv, which warns and goes on.
pub fn parse(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> (Vec<Entry>, Vec<String>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut warnings = Vec::new();
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    let mut line = 1;
    while i < chars.len() {
        // Skip blank space and comment lines.
        let start_line = line;
        let rest: String = chars[i..].iter().take_while(|c| **c != '\n').collect();
        let trimmed = rest.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            i += rest.chars().count() + 1;
            line += 1;
            continue;
        }
        let body = trimmed
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(trimmed);
        let Some(eq) = body.find('=') else {
            warnings.push(format!(
                "line {start_line}: no `=` in `{}`",
                truncate(trimmed)
            ));
            i += rest.chars().count() + 1;
            line += 1;
            continue;
        };
        let key = body[..eq].trim().to_string();
        // Position of the value's first char in `chars`.
        let offset_in_line = rest.find(body).unwrap_or(0) + eq + 1;
        let mut j = i + rest[..offset_in_line].chars().count();
        while j < chars.len() && (chars[j] == ' ' || chars[j] == '\t') {
            j += 1;
        }
        let (value, next) = match chars.get(j) {
            Some('\'') => read_quoted(&chars, j + 1, '\'', &mut line),
            Some('"') => {
                let (raw, next) = read_quoted(&chars, j + 1, '"', &mut line);
                (expand(&unescape(&raw), &entries, lookup), next)
            }
            _ => {
                let end = chars[j..]
                    .iter()
                    .position(|c| *c == '\n')
                    .map_or(chars.len(), |p| j + p);
                let raw: String = chars[j..end].iter().collect();
                // An unquoted value ends at ` #` (inline comment).
                let raw = match raw.find(" #") {
                    Some(p) => raw[..p].to_string(),
                    None => raw,
                };
                (expand(raw.trim(), &entries, lookup), end)
            }
        };
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
        {
            warnings.push(format!("line {start_line}: bad key `{}`", truncate(&key)));
        } else {
            entries.retain(|e| e.key != key);
            entries.push(Entry {
                key,
                value,
                line: start_line,
            });
        }
        // Continue after the end of the line the value ended on.
        let mut k = next;
        while k < chars.len() && chars[k] != '\n' {
            k += 1;
        }
        i = k + 1;
        line += 1;
    }
    (entries, warnings)
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Read until the closing quote (a backslash escapes it in double quotes); counts newlines.
fn read_quoted(chars: &[char], start: usize, quote: char, line: &mut usize) -> (String, usize) {
    let mut out = String::new();
    let mut k = start;
    while k < chars.len() {
        let c = chars[k];
        if c == '\\' && quote == '"' && k + 1 < chars.len() {
            out.push(c);
            out.push(chars[k + 1]);
            if chars[k + 1] == '\n' {
                *line += 1;
            }
            k += 2;
            continue;
        }
        if c == quote {
            return (out, k + 1);
        }
        if c == '\n' {
            *line += 1;
        }
        out.push(c);
        k += 1;
    }
    (out, k)
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some('r') => out.push('\r'),
            Some('"') => out.push('"'),
            Some('\\') => out.push('\\'),
            Some('\'') => out.push('\''),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// `${VAR}` from earlier entries, else the process environment, else empty.
fn expand(s: &str, earlier: &[Entry], lookup: &dyn Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(p) = rest.find("${") {
        out.push_str(&rest[..p]);
        match rest[p + 2..].find('}') {
            Some(end) => {
                let name = &rest[p + 2..p + 2 + end];
                let value = lookup(name).or_else(|| {
                    earlier
                        .iter()
                        .rev()
                        .find(|e| e.key == name)
                        .map(|e| e.value.clone())
                });
                out.push_str(&value.unwrap_or_default());
                rest = &rest[p + 2 + end + 1..];
            }
            None => {
                out.push_str(&rest[p..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_ok(text: &str) -> Vec<(String, String)> {
        let (entries, warnings) = parse(text, &|_| None);
        assert!(warnings.is_empty(), "{warnings:?}");
        entries.into_iter().map(|e| (e.key, e.value)).collect()
    }

    #[test]
    fn plain_values_comments_and_export() {
        let v = parse_ok("# comment\nA=1\n\nexport B = two words  # note\nC=\nD=x#not-a-comment\n");
        assert_eq!(
            v,
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "".into()),
                ("D".into(), "x#not-a-comment".into())
            ]
        );
    }

    #[test]
    fn multi_line_single_quoted_json_like_the_reference_env() {
        let text = "LOG_OPENAI=true\nREQ_RATE_LIMIT='{\n\"/v1/chat/completions\":[{\"level\":0,\"limit\":\"100/2minutes\"}],\n\"/v1/completions\":[{\"level\":0,\"limit\":\"60/minute;600/hour\"}]\n}'\nTIMEOUT=6\n";
        let (entries, warnings) = parse(text, &|_| None);
        assert!(warnings.is_empty());
        let rl = &entries[1];
        assert_eq!(rl.key, "REQ_RATE_LIMIT");
        assert_eq!(rl.line, 2);
        let json: serde_json::Value = serde_json::from_str(&rl.value).unwrap();
        assert_eq!(json["/v1/completions"][0]["limit"], "60/minute;600/hour");
        assert_eq!(entries[2].key, "TIMEOUT");
        assert_eq!(entries[2].line, 6);
    }

    #[test]
    fn double_quotes_unescape_and_expand() {
        let v = parse_ok("HOST=example.com\nURL=\"https://${HOST}/v1\\n\"\nLIT='${HOST}'\n");
        assert_eq!(v[1].1, "https://example.com/v1\n");
        assert_eq!(v[2].1, "${HOST}", "single quotes are literal");
    }

    #[test]
    fn process_environment_wins_in_expansion() {
        let (entries, _) = parse("A=${HOME_X}", &|k| {
            (k == "HOME_X").then(|| "/h".to_string())
        });
        assert_eq!(entries[0].value, "/h");
    }

    #[test]
    fn malformed_lines_warn_with_line_numbers() {
        let (entries, warnings) = parse("A=1\nnot a pair\nB=2\n", &|_| None);
        assert_eq!(entries.len(), 2);
        assert_eq!(warnings, vec!["line 2: no `=` in `not a pair`"]);
    }

    #[test]
    fn later_duplicates_win() {
        assert_eq!(parse_ok("A=1\nA=2\n"), vec![("A".into(), "2".into())]);
    }
}
