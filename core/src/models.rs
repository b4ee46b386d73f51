//! Model-name patterns: which models a forward-key level may use, and which upstream serves a model.
//!
//! A pattern is an exact name (`gpt-4`), a prefix wildcard (`gpt-*`, `qwen*`), or `*` for every
//! model. `*` is allowed only as the last character, so a pattern never needs a matching engine and
//! its meaning is obvious from reading it. Matching is case-sensitive, like the model names
//! upstreams accept (`qwen2:7b`, `gpt-4o`).

use std::fmt;

/// Why a pattern (or a routing rule) is invalid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternError {
    pub pattern: String,
    pub reason: &'static str,
}

impl fmt::Display for PatternError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "model pattern `{}`: {}", self.pattern, self.reason)
    }
}

impl std::error::Error for PatternError {}

/// A pattern in a list that failed, located by its 0-based index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatternListError {
    pub index: usize,
    pub error: PatternError,
}

impl fmt::Display for PatternListError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "entry [{}]: {}", self.index, self.error)
    }
}

impl std::error::Error for PatternListError {}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Kind {
    Exact(String),
    /// Everything starting with the string; `""` is `*`, every model.
    Prefix(String),
}

/// One model-name pattern: `gpt-4`, `gpt-*`, `qwen*` or `*`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelPattern {
    kind: Kind,
}

impl ModelPattern {
    /// Parses a pattern; surrounding whitespace is ignored. Empty patterns and `*` anywhere but at
    /// the end (`*-turbo`, `gpt-*-mini`, `gpt-**`) are errors.
    pub fn parse(s: &str) -> Result<ModelPattern, PatternError> {
        let p = s.trim();
        let err = |reason| PatternError {
            pattern: s.to_string(),
            reason,
        };
        if p.is_empty() {
            return Err(err("empty pattern"));
        }
        let (body, wildcard) = match p.strip_suffix('*') {
            Some(body) => (body, true),
            None => (p, false),
        };
        if body.contains('*') {
            return Err(err(
                "`*` is only allowed as the last character (`gpt-*`), or alone (`*`)",
            ));
        }
        let kind = if wildcard {
            Kind::Prefix(body.to_string())
        } else {
            Kind::Exact(body.to_string())
        };
        Ok(ModelPattern { kind })
    }

    /// The pattern matching every model.
    pub fn any() -> ModelPattern {
        ModelPattern {
            kind: Kind::Prefix(String::new()),
        }
    }

    pub fn matches(&self, model: &str) -> bool {
        match &self.kind {
            Kind::Exact(name) => model == name,
            Kind::Prefix(prefix) => model.starts_with(prefix.as_str()),
        }
    }

    pub fn is_exact(&self) -> bool {
        matches!(self.kind, Kind::Exact(_))
    }

    /// True for `*`.
    pub fn is_any(&self) -> bool {
        matches!(&self.kind, Kind::Prefix(p) if p.is_empty())
    }

    /// Precedence when several patterns match: exact names first, then longer prefixes.
    fn rank(&self) -> (bool, usize) {
        match &self.kind {
            Kind::Exact(name) => (true, name.len()),
            Kind::Prefix(prefix) => (false, prefix.len()),
        }
    }
}

impl fmt::Display for ModelPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Exact(name) => write!(f, "{name}"),
            Kind::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

impl std::str::FromStr for ModelPattern {
    type Err = PatternError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ModelPattern::parse(s)
    }
}

fn parse_list<S: AsRef<str>>(patterns: &[S]) -> Result<Vec<ModelPattern>, PatternListError> {
    patterns
        .iter()
        .enumerate()
        .map(|(index, p)| {
            ModelPattern::parse(p.as_ref()).map_err(|error| PatternListError { index, error })
        })
        .collect()
}

/// The models a forward-key level may use: allowed when any pattern matches.
/// An empty set allows nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelSet(Vec<ModelPattern>);

impl ModelSet {
    /// Parses a list such as `LEVEL_MODELS["1"]`; the first bad pattern is reported by index.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<ModelSet, PatternListError> {
        parse_list(patterns).map(ModelSet)
    }

    pub fn new(patterns: Vec<ModelPattern>) -> ModelSet {
        ModelSet(patterns)
    }

    /// Every model (`*`).
    pub fn all() -> ModelSet {
        ModelSet(vec![ModelPattern::any()])
    }

    /// The set for a forward-key level, with OpenAI-Forward's rule that **level 0 may use every
    /// model** whatever is listed for it. For levels ≥ 1, `listed` is `LEVEL_MODELS[level]`; a level
    /// without an entry allows nothing (OpenAI-Forward crashed with a 500 there; config validation
    /// should reject such a config before it gets here).
    pub fn for_level(level: u32, listed: Option<ModelSet>) -> ModelSet {
        if level == 0 {
            return ModelSet::all();
        }
        listed.unwrap_or_default()
    }

    pub fn allows(&self, model: &str) -> bool {
        self.0.iter().any(|p| p.matches(model))
    }

    pub fn allows_all(&self) -> bool {
        self.0.iter().any(ModelPattern::is_any)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn patterns(&self) -> &[ModelPattern] {
        &self.0
    }
}

/// One routing rule: requests for models matching `pattern` go to upstream `target`, with the
/// body's `model` replaced by `rename` when set (`gpt-3.5-turbo` → `qwen2:7b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRoute {
    pub pattern: ModelPattern,
    pub target: usize,
    pub rename: Option<String>,
}

/// Picks the upstream (and optional new model name) for a request's model.
///
/// Precedence: an exact name beats any wildcard; among wildcards the longer prefix wins (`gpt-4*`
/// beats `gpt-*` beats `*`); equal rank falls back to config order (the first rule wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelRouter {
    /// Sorted by precedence once, so `route` is a first-match scan.
    rules: Vec<ModelRoute>,
}

impl ModelRouter {
    pub fn new(rules: Vec<ModelRoute>) -> ModelRouter {
        let mut rules = rules;
        // Stable sort: rules of equal rank keep their config order.
        rules.sort_by_key(|r| std::cmp::Reverse(r.pattern.rank()));
        ModelRouter { rules }
    }

    /// Builds a router from `(pattern, target, rename)` triples; errors name the rule's index.
    /// An empty (or whitespace) rename is an error: it would send `"model": ""` upstream.
    pub fn parse<'a, I>(rules: I) -> Result<ModelRouter, PatternListError>
    where
        I: IntoIterator<Item = (&'a str, usize, Option<&'a str>)>,
    {
        let mut parsed = Vec::new();
        for (index, (pattern, target, rename)) in rules.into_iter().enumerate() {
            let pat =
                ModelPattern::parse(pattern).map_err(|error| PatternListError { index, error })?;
            let rename = match rename.map(str::trim) {
                Some("") => {
                    let error = PatternError {
                        pattern: pattern.to_string(),
                        reason: "rename target is empty",
                    };
                    return Err(PatternListError { index, error });
                }
                other => other.map(str::to_string),
            };
            parsed.push(ModelRoute {
                pattern: pat,
                target,
                rename,
            });
        }
        Ok(ModelRouter::new(parsed))
    }

    /// `(target index, new model name)` for `model`, or `None` when no rule matches.
    pub fn route(&self, model: &str) -> Option<(usize, Option<&str>)> {
        self.rules
            .iter()
            .find(|r| r.pattern.matches(model))
            .map(|r| (r.target, r.rename.as_deref()))
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules in precedence order (not config order).
    pub fn rules(&self) -> &[ModelRoute] {
        &self.rules
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn pat(s: &str) -> ModelPattern {
        ModelPattern::parse(s).unwrap()
    }

    #[test]
    fn exact_patterns() {
        let p = pat("gpt-4");
        assert!(p.is_exact());
        assert!(p.matches("gpt-4"));
        assert!(!p.matches("gpt-4o"));
        assert!(!p.matches("GPT-4"), "case-sensitive");
        assert!(!p.matches("gpt-"));
        assert_eq!(p.to_string(), "gpt-4");
        assert!(pat("  qwen2:7b ").matches("qwen2:7b"));
    }

    #[test]
    fn prefix_wildcards() {
        let p = pat("gpt-*");
        assert!(!p.is_exact());
        assert!(p.matches("gpt-4"));
        assert!(p.matches("gpt-"));
        assert!(p.matches("gpt-3.5-turbo"));
        assert!(!p.matches("gpt4"));
        assert!(!p.matches("chatgpt-4o"));
        assert_eq!(p.to_string(), "gpt-*");
        let q = pat("qwen*");
        assert!(q.matches("qwen"));
        assert!(q.matches("qwen2:7b"));
        assert!(!q.matches("Qwen2"));
    }

    #[test]
    fn star_matches_everything() {
        let p = pat("*");
        assert!(p.is_any());
        assert!(p.matches(""));
        assert!(p.matches("anything"));
        assert_eq!(p, ModelPattern::any());
        assert_eq!(p.to_string(), "*");
        assert!(!pat("a*").is_any());
    }

    #[test]
    fn invalid_patterns() {
        for bad in ["*-turbo", "gpt-*-mini", "gpt-**", "**", "*a*"] {
            let e = ModelPattern::parse(bad).unwrap_err();
            assert_eq!(e.pattern, bad);
            assert!(e.to_string().contains("last character"), "{e}");
        }
        assert_eq!(
            ModelPattern::parse(" ").unwrap_err().reason,
            "empty pattern"
        );
        assert!("gpt-*".parse::<ModelPattern>().is_ok());
    }

    #[test]
    fn model_sets() {
        let s = ModelSet::parse(&["gpt-4", "qwen*"]).unwrap();
        assert!(s.allows("gpt-4"));
        assert!(s.allows("qwen2:7b"));
        assert!(!s.allows("gpt-4o"));
        assert!(!s.allows_all());
        assert_eq!(s.patterns().len(), 2);
        assert!(!ModelSet::default().allows("gpt-4"));
        assert!(ModelSet::default().is_empty());
        assert!(ModelSet::all().allows("whatever"));
        assert!(ModelSet::all().allows_all());
        assert_eq!(ModelSet::new(vec![pat("x")]).patterns(), &[pat("x")]);
    }

    #[test]
    fn model_set_errors_name_the_index() {
        let e = ModelSet::parse(&["gpt-4", "ok*", "b*d"]).unwrap_err();
        assert_eq!(e.index, 2);
        assert_eq!(e.error.pattern, "b*d");
        assert!(
            e.to_string().contains("[2]") && e.to_string().contains("b*d"),
            "{e}"
        );
    }

    #[test]
    fn level_zero_allows_every_model() {
        let listed = ModelSet::parse(&["gpt-4"]).unwrap();
        assert!(ModelSet::for_level(0, Some(listed.clone())).allows("gpt-3.5-turbo"));
        assert!(ModelSet::for_level(0, None).allows("anything"));
        let l1 = ModelSet::for_level(1, Some(listed));
        assert!(l1.allows("gpt-4"));
        assert!(!l1.allows("gpt-3.5-turbo"));
        assert!(
            !ModelSet::for_level(2, None).allows("gpt-4"),
            "unlisted level allows nothing"
        );
    }

    fn router(rules: &[(&'static str, usize, Option<&'static str>)]) -> ModelRouter {
        ModelRouter::parse(rules.iter().copied()).unwrap()
    }

    #[test]
    fn router_routes_and_renames() {
        let r = router(&[("gpt-3.5-turbo", 1, Some("qwen2:7b")), ("gpt-*", 0, None)]);
        assert_eq!(r.route("gpt-3.5-turbo"), Some((1, Some("qwen2:7b"))));
        assert_eq!(r.route("gpt-4"), Some((0, None)));
        assert_eq!(r.route("claude-3"), None);
        assert!(!r.is_empty());
        assert!(ModelRouter::default().is_empty());
        assert_eq!(ModelRouter::default().route("gpt-4"), None);
    }

    #[test]
    fn exact_beats_wildcard_regardless_of_order() {
        let r = router(&[("*", 9, None), ("gpt-*", 2, None), ("gpt-4", 1, None)]);
        assert_eq!(r.route("gpt-4"), Some((1, None)));
        assert_eq!(r.route("gpt-4o"), Some((2, None)));
        assert_eq!(r.route("llama3"), Some((9, None)));
        // Exact beats a wildcard even when the wildcard's prefix is longer than the name.
        let r = router(&[("gpt-4-turbo*", 3, None), ("gpt-4", 1, None)]);
        assert_eq!(r.route("gpt-4"), Some((1, None)));
    }

    #[test]
    fn longer_prefix_beats_shorter() {
        let r = router(&[("g*", 1, None), ("gpt-4*", 3, None), ("gpt-*", 2, None)]);
        assert_eq!(r.route("gpt-4o"), Some((3, None)));
        assert_eq!(r.route("gpt-3.5"), Some((2, None)));
        assert_eq!(r.route("gemini"), Some((1, None)));
        assert_eq!(r.rules()[0].pattern, pat("gpt-4*"));
    }

    #[test]
    fn equal_rank_keeps_config_order() {
        let r = router(&[("gpt-4", 5, Some("a")), ("gpt-4", 6, Some("b"))]);
        assert_eq!(r.route("gpt-4"), Some((5, Some("a"))));
        let r = router(&[("qwen*", 7, None), ("qwen*", 8, None), ("gpt*", 9, None)]);
        assert_eq!(r.route("qwen2"), Some((7, None)));
        // Many rules of equal rank (long enough that an unstable sort would reorder them).
        let names = ["a*", "abc*", "ab*", "abc"];
        let r = ModelRouter::parse((0..64).map(|i| (names[i % 4], i, None))).unwrap();
        assert_eq!(r.route("ax"), Some((0, None)));
        assert_eq!(r.route("abcd"), Some((1, None)));
        assert_eq!(r.route("abx"), Some((2, None)));
        assert_eq!(r.route("abc"), Some((3, None)));
        let order: Vec<usize> = r.rules().iter().map(|rule| rule.target).collect();
        let expected: Vec<usize> = [3, 1, 2, 0]
            .iter()
            .flat_map(|&k| (0..64).filter(move |i| i % 4 == k))
            .collect();
        assert_eq!(order, expected, "equal ranks keep config order");
        let r = router(&[("abc*", 1, None), ("xyz*", 2, None)]);
        assert_eq!(r.route("abcd"), Some((1, None)));
        assert_eq!(r.route("xyzw"), Some((2, None)));
    }

    #[test]
    fn router_errors_name_the_rule() {
        let e = ModelRouter::parse([("gpt-4", 0, None), ("*x", 1, None)]).unwrap_err();
        assert_eq!(e.index, 1);
        let e = ModelRouter::parse([("gpt-4", 0, Some("  "))]).unwrap_err();
        assert_eq!((e.index, e.error.reason), (0, "rename target is empty"));
        let r = ModelRouter::parse([("gpt-4", 0, Some(" qwen2:7b "))]).unwrap();
        assert_eq!(r.route("gpt-4"), Some((0, Some("qwen2:7b"))));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn parse_never_panics(s in "\\PC{0,20}") {
                let _ = ModelPattern::parse(&s);
            }

            #[test]
            fn prefix_pattern_matches_iff_starts_with(prefix in "[a-z0-9.:-]{0,6}", model in "[a-z0-9.:-]{0,10}") {
                let p = ModelPattern::parse(&format!("{prefix}*")).unwrap();
                prop_assert_eq!(p.matches(&model), model.starts_with(&prefix));
                prop_assert_eq!(ModelPattern::parse(&p.to_string()).unwrap(), p);
            }

            #[test]
            fn router_picks_the_most_specific_match(model in "[a-c]{0,4}", rules in proptest::collection::vec(("[a-c]{0,3}", any::<bool>()), 0..8)) {
                let texts: Vec<String> = rules.iter().map(|(p, w)| if *w { format!("{p}*") } else { p.clone() }).collect();
                let triples: Vec<(&str, usize, Option<&str>)> =
                    texts.iter().enumerate().filter(|(_, t)| !t.is_empty()).map(|(i, t)| (t.as_str(), i, None)).collect();
                let r = ModelRouter::parse(triples.iter().copied()).unwrap();
                // Reference: scan in config order, keep the best (exact, prefix length) seen first.
                let mut best: Option<((bool, usize), usize)> = None;
                for (t, i, _) in &triples {
                    let p = ModelPattern::parse(t).unwrap();
                    let better = match best {
                        None => true,
                        Some((rank, _)) => p.rank() > rank,
                    };
                    if p.matches(&model) && better {
                        best = Some((p.rank(), *i));
                    }
                }
                prop_assert_eq!(r.route(&model).map(|(i, _)| i), best.map(|(_, i)| i));
            }
        }
    }
}
