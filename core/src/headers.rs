//! Reading request headers by name, whatever holds them: the filter's lazy view of Envoy's
//! serialised map (`filter/src/host/header_map.rs`) or a plain list of pairs (tests, the gateway).
//! Core code that needs a header (key locations, cache credential material) takes any
//! [`HeaderLookup`].

/// Header values by name. Names compare ASCII-case-insensitively (Envoy's are lower-case).
pub trait HeaderLookup {
    /// Calls `f` with each value of header `name`, in order, until it returns false.
    fn each_value<'a>(&'a self, name: &str, f: &mut dyn FnMut(&'a str) -> bool);

    /// The first value of header `name`.
    fn first(&self, name: &str) -> Option<&str> {
        let mut found = None;
        self.each_value(name, &mut |v| {
            found = Some(v);
            false
        });
        found
    }

    /// How many times header `name` occurs.
    fn count(&self, name: &str) -> usize {
        let mut n = 0;
        self.each_value(name, &mut |_| {
            n += 1;
            true
        });
        n
    }
}

impl HeaderLookup for [(String, String)] {
    fn each_value<'a>(&'a self, name: &str, f: &mut dyn FnMut(&'a str) -> bool) {
        for (k, v) in self {
            if k.eq_ignore_ascii_case(name) && !f(v) {
                return;
            }
        }
    }
}

impl HeaderLookup for Vec<(String, String)> {
    fn each_value<'a>(&'a self, name: &str, f: &mut dyn FnMut(&'a str) -> bool) {
        self.as_slice().each_value(name, f);
    }
}

impl<const N: usize> HeaderLookup for [(String, String); N] {
    fn each_value<'a>(&'a self, name: &str, f: &mut dyn FnMut(&'a str) -> bool) {
        self.as_slice().each_value(name, f);
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderLookup;

    #[test]
    fn lists_of_pairs_answer_by_name() {
        let pairs = vec![
            ("content-type".to_string(), "a".to_string()),
            ("x".to_string(), "1".to_string()),
            ("Content-Type".to_string(), "b".to_string()),
        ];
        assert_eq!(pairs.first("content-type"), Some("a"));
        assert_eq!(pairs.count("content-type"), 2);
        assert_eq!(pairs.first("y"), None);
        assert_eq!(pairs.count("y"), 0);
        let none: [(String, String); 0] = [];
        assert_eq!(none.first("x"), None);
    }
}
