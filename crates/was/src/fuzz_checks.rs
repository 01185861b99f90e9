//! The property the `config_values` fuzz target checks for ServerBindings
//! entries, shared with the test suite that replays the fuzz corpus.

use crate::model::Binding;

/// A binding parses or is refused; what parses prints as a binding that
/// parses to itself, and its URL prefix is one the listener accepts.
pub fn binding(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(binding) = Binding::parse(text) else {
        return;
    };
    let printed = binding.to_string();
    assert_eq!(
        Binding::parse(&printed).as_ref(),
        Ok(&binding),
        "{text:?} printed as {printed:?}"
    );
    let prefix = binding.prefix("/");
    if let Err(e) = listener::routing::UrlPrefix::parse(&prefix) {
        panic!("{text:?} gives the prefix {prefix:?}, which the listener refuses: {e:?}");
    }
}
