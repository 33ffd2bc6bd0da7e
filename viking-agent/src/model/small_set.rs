//! A set kept as a sorted vector, for indexes whose sets hold one or two elements: a
//! `BTreeSet` allocates a node of eleven slots for its first element (about 300 bytes for
//! a frontend), which at 10,000 services was 10 MB across the agent's name and VIP
//! indexes (heaptrack). Lookups, inserts and removals are binary searches.

/// A set of a few ordered elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmallSet<T>(Vec<T>);

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        Self(Vec::new())
    }
}

impl<T: Ord> SmallSet<T> {
    /// Adds `value`; returns whether it was not there.
    pub fn insert(&mut self, value: T) -> bool {
        match self.0.binary_search(&value) {
            Ok(_) => false,
            Err(at) => {
                // One more slot, not the four a first push would take.
                self.0.reserve_exact(1);
                self.0.insert(at, value);
                true
            }
        }
    }

    /// Removes `value`; returns whether it was there.
    pub fn remove(&mut self, value: &T) -> bool {
        match self.0.binary_search(value) {
            Ok(at) => {
                self.0.remove(at);
                self.0.shrink_to_fit();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the set has no element.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The elements in order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.0.iter()
    }
}

impl<'a, T> IntoIterator for &'a SmallSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::SmallSet;

    #[test]
    fn keeps_elements_sorted_and_unique() {
        let mut set = SmallSet::default();
        assert!(set.insert(3) && set.insert(1) && set.insert(2));
        assert!(!set.insert(2), "already there");
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [1, 2, 3]);
        assert!(set.remove(&2) && !set.remove(&2));
        assert_eq!((&set).into_iter().copied().collect::<Vec<_>>(), [1, 3]);
        assert!(set.remove(&1) && set.remove(&3) && set.is_empty());
    }
}
