//! One shared copy of each value many records repeat: what keeps a 100,000-candidate
//! run's plan and mock ATS from holding the same contract names, requisitions and
//! stage names once per candidate, and the one-word [`Text`] they share them as.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

/// The copy of `value` in `set`, made with `make` and kept there the first time.
pub(crate) fn shared<K, Q>(set: &mut HashSet<K>, value: &Q, make: impl FnOnce(&Q) -> K) -> K
where
    K: Borrow<Q> + Hash + Eq + Clone,
    Q: Hash + Eq + ?Sized,
{
    if let Some(shared) = set.get(value) {
        return shared.clone();
    }
    let shared = make(value);
    set.insert(shared.clone());
    shared
}

/// A shared, immutable text, read as a `&str`, that serialises as the string it
/// holds: the plan's ids and names, and the mock ATS's copies of the same ids.
///
/// One word wide (an [`arcstr::ArcStr`] keeps its length beside the count, where an
/// `Arc<str>` is a pointer and a length): a planned event holds eight texts, and a
/// 100,000-candidate plan 200,000 events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Text(arcstr::ArcStr);

impl Text {
    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `self` and `other` are one shared copy, not merely equal.
    pub fn is_same(&self, other: &Text) -> bool {
        arcstr::ArcStr::ptr_eq(&self.0, &other.0)
    }
}

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<&str> for Text {
    fn from(text: &str) -> Self {
        Text(arcstr::ArcStr::from(text))
    }
}

impl From<String> for Text {
    fn from(text: String) -> Self {
        Text(arcstr::ArcStr::from(text))
    }
}

impl From<Text> for String {
    fn from(text: Text) -> Self {
        text.0.to_string()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        *self.0 == **other
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn equal_values_get_one_copy() {
        let mut set: HashSet<Arc<str>> = HashSet::new();
        let first = shared(&mut set, "contract.a", |t| Arc::from(t));
        let again = shared(&mut set, &String::from("contract.a")[..], |t| Arc::from(t));
        let other = shared(&mut set, "contract.b", |t| Arc::from(t));
        assert!(
            Arc::ptr_eq(&first, &again),
            "the same text is one allocation"
        );
        assert!(!Arc::ptr_eq(&first, &other));
        assert_eq!(
            (&*first, &*other, set.len()),
            ("contract.a", "contract.b", 2)
        );
    }
}
