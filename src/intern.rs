//! One shared copy of each value many records repeat: what keeps a 100,000-candidate
//! run's plan and mock ATS from holding the same contract names, requisitions and
//! stage names once per candidate.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::Hash;

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
