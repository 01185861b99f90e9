//! The property the `wql` fuzz target checks, shared with the test suite
//! that replays its corpus.

/// Any text parses or is refused with a position inside (or just past)
/// the text; what parses prints as a query that parses to the same.
pub fn wql(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match crate::wql::parse_statement(text) {
        Ok(query) => {
            let printed = query.to_string();
            // The canonical spacing can make a query at the limit longer.
            if printed.chars().count() > crate::wql::MAX_QUERY_CHARS {
                return;
            }
            let again = crate::wql::parse_statement(&printed)
                .unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}, which fails: {e}"));
            assert_eq!(again, query, "{text:?} printed as {printed:?}");
        }
        Err(e) => {
            let limit = text.chars().count().min(crate::wql::MAX_QUERY_CHARS) + 1;
            if let Some(p) = e.position {
                assert!(p >= 1 && p <= limit, "{text:?}: position {p} outside: {e}");
            }
        }
    }
}
