//! Which configured route a request path belongs to.
//!
//! Envoy picks the upstream; the filter needs the same answer to know which route's features
//! apply. Both use segment-safe prefixes: `/gen` matches `/gen` and `/gen/…`, never `/genx`.

use crate::config::FilterRoute;
// In the leaf module so that feature settings (limits) can match paths without importing `config`.
pub use crate::config_base::prefix_matches;

/// The index of the most specific route for `path_and_query`, if any.
pub fn match_route(routes: &[FilterRoute], path_and_query: &str) -> Option<usize> {
    let path = path_and_query.split(['?', '#']).next().unwrap_or("");
    routes
        .iter()
        .enumerate()
        .filter(|(_, r)| prefix_matches(&r.prefix, path))
        .max_by_key(|(_, r)| r.prefix.len())
        .map(|(i, _)| i)
}

/// The part of the path after the route prefix, always starting with `/` (`/gen/v1/x` → `/v1/x`).
/// Features keyed on API paths (`/v1/chat/completions`) look at this.
pub fn route_path<'a>(prefix: &str, path_and_query: &'a str) -> &'a str {
    let path = path_and_query.split(['?', '#']).next().unwrap_or("");
    if prefix == "/" {
        return path;
    }
    match path.strip_prefix(prefix) {
        Some("") | None => "/",
        Some(rest) => rest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RouteKind;

    fn routes(prefixes: &[&str]) -> Vec<FilterRoute> {
        prefixes
            .iter()
            .map(|p| FilterRoute {
                prefix: p.to_string(),
                name: p.to_string(),
                kind: RouteKind::Openai,
            })
            .collect()
    }

    #[test]
    fn segment_safe_prefixes() {
        assert!(prefix_matches("/gen", "/gen"));
        assert!(prefix_matches("/gen", "/gen/x"));
        assert!(!prefix_matches("/gen", "/genx"));
        assert!(!prefix_matches("/gen", "/genx/hello"));
        assert!(prefix_matches("/", "/anything"));
    }

    #[test]
    fn most_specific_route_wins_and_query_is_ignored() {
        let r = routes(&["/", "/gen", "/gen/deep"]);
        assert_eq!(match_route(&r, "/gen/deep/x?key=1"), Some(2));
        assert_eq!(match_route(&r, "/gen/other?key=/gen/deep"), Some(1));
        assert_eq!(match_route(&r, "/genx/hello"), Some(0));
        assert_eq!(match_route(&r, "/v1/models"), Some(0));
    }

    #[test]
    fn no_root_means_unmatched_paths_have_no_route() {
        let r = routes(&["/gen"]);
        assert_eq!(match_route(&r, "/v1/models"), None);
    }

    #[test]
    fn route_path_strips_the_prefix() {
        assert_eq!(
            route_path("/gen", "/gen/v1/chat/completions?x=1"),
            "/v1/chat/completions"
        );
        assert_eq!(route_path("/gen", "/gen"), "/");
        assert_eq!(route_path("/", "/v1/embeddings"), "/v1/embeddings");
    }
}
