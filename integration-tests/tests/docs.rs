//! The documentation holds together: every relative link in README.md and docs/*.md points to a
//! file that exists (and, into a Markdown page, to a heading that exists), the README's example
//! config renders, and `doc_block` (which the deploy tests read examples with) finds the right block.

// Test harness: a failed unwrap, expect or panic is a failed test, which is what it should be.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use llm_forward_integration_tests::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;

/// README.md and every docs/*.md, as paths relative to the workspace root.
fn pages() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut pages = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .map(|p| p.strip_prefix(&root).unwrap().to_path_buf())
        .collect();
    docs.sort();
    pages.extend(docs);
    pages
}

/// The lines of a Markdown text outside fenced code blocks.
fn prose_lines(markdown: &str) -> Vec<&str> {
    let mut in_fence = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
        } else if !in_fence {
            out.push(line);
        }
    }
    out
}

/// Link targets `[text](target)` outside code blocks and inline code spans.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(markdown) {
        // Drop inline code spans: `a](b)` inside backticks is not a link.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
            .join(" ");
        let mut rest = prose.as_str();
        while let Some(i) = rest.find("](") {
            rest = &rest[i + 2..];
            let end = rest.find(')').unwrap_or(rest.len());
            targets.push(rest[..end].trim().to_string());
            rest = &rest[end..];
        }
    }
    targets
}

/// GitHub's anchors for the headings of a page: lower case, punctuation dropped, spaces → `-`,
/// repeated headings numbered `-1`, `-2`, ….
fn anchors(markdown: &str) -> HashSet<String> {
    let mut seen = HashSet::new();
    for line in prose_lines(markdown) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        if hashes == 0 || !line[hashes..].starts_with(' ') {
            continue;
        }
        let slug: String = line[hashes..]
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
            .map(|c| if c == ' ' { '-' } else { c })
            .collect();
        let mut candidate = slug.clone();
        let mut n = 0;
        while seen.contains(&candidate) {
            n += 1;
            candidate = format!("{slug}-{n}");
        }
        seen.insert(candidate);
    }
    seen
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = workspace_root();
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(root.join(&page)).unwrap();
        let dir = page.parent().unwrap_or(Path::new(""));
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, anchor) = match target.split_once('#') {
                Some((f, a)) => (f, Some(a)),
                None => (target.as_str(), None),
            };
            let resolved = if file.is_empty() {
                page.clone()
            } else {
                dir.join(file)
            };
            let path = root.join(&resolved);
            if !path.exists() {
                broken.push(format!(
                    "{}: {target} (no file {})",
                    page.display(),
                    resolved.display()
                ));
                continue;
            }
            if let Some(anchor) = anchor.filter(|_| path.extension().is_some_and(|x| x == "md")) {
                let target_text = std::fs::read_to_string(&path).unwrap();
                if !anchors(&target_text).contains(anchor) {
                    broken.push(format!(
                        "{}: {target} (no heading #{anchor} in {})",
                        page.display(),
                        resolved.display()
                    ));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_sees_links_and_anchors() {
    let md = "# Title\n\nSee [a](docs/a.md#x-y) and `[no](code.md)`.\n```\n[no](fenced.md)\n# not a heading\n```\n## X, y\n## X, y\n";
    assert_eq!(link_targets(md), vec!["docs/a.md#x-y"]);
    let a = anchors(md);
    assert!(
        a.contains("title") && a.contains("x-y") && a.contains("x-y-1"),
        "{a:?}"
    );
    assert!(!a.contains("not-a-heading"));
}

#[test]
fn doc_block_takes_the_first_block_of_the_language_under_the_heading() {
    let md = "# Page\n## A\n```bash\necho a\n```\n```yaml\nk: a\n```\n### Sub\n```yaml\nk: sub\n```\n## B\n```yaml\nk: b\n```\n";
    assert_eq!(
        extract_doc_block(md, "## A", "yaml").as_deref(),
        Some("k: a\n")
    );
    assert_eq!(
        extract_doc_block(md, "## A", "").as_deref(),
        Some("echo a\n")
    );
    assert_eq!(
        extract_doc_block(md, "## B", "yaml").as_deref(),
        Some("k: b\n")
    );
    // A block below a deeper heading still belongs to the section; the next `##` ends it.
    assert_eq!(
        extract_doc_block(md, "### Sub", "yaml").as_deref(),
        Some("k: sub\n")
    );
    assert_eq!(extract_doc_block(md, "## A", "json"), None);
    assert_eq!(extract_doc_block(md, "## C", "yaml"), None);
}

#[test]
fn the_readme_example_config_renders() {
    let dir = TempDir::new("docs-readme-run");
    let config = doc_block("README.md", "## Run", "yaml");
    let path = dir.0.join("llm-forward.yaml");
    std::fs::write(&path, &config).unwrap();
    let out = Command::new(gateway_bin())
        .args(["render", "-c"])
        .arg(&path)
        .current_dir(&dir.0)
        .env_remove("LLM_FORWARD_CONFIG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rendered = String::from_utf8(out.stdout).unwrap();
    assert!(rendered.contains("127.0.0.1") && rendered.contains("api.openai.com"));
}
