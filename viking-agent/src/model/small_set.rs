//! A set kept as a sorted vector, for indexes whose sets hold one or two elements: a
//! `BTreeSet` allocates a node of eleven slots for its first element (about 300 bytes for
//! a frontend), which at 10,000 services was 10 MB across the agent's name and VIP
//! indexes (heaptrack). A single element is kept inline, with no allocation at all (at
//! 100,000 services, 8 MB less across the merge, served-service and DNS indexes). Lookups,
//! inserts and removals are binary searches.

/// A set of a few ordered elements.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmallSet<T>(Elements<T>);

/// Always in its one form per size, so that the derived equality is set equality.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Elements<T> {
    /// Exactly one element.
    One(T),
    /// None, or two and more, sorted.
    Many(Vec<T>),
}

impl<T> Default for SmallSet<T> {
    fn default() -> Self {
        Self(Elements::Many(Vec::new()))
    }
}

impl<T: Ord> SmallSet<T> {
    /// Adds `value`; returns whether it was not there.
    pub fn insert(&mut self, value: T) -> bool {
        match &mut self.0 {
            Elements::Many(values) if values.is_empty() => self.0 = Elements::One(value),
            Elements::One(one) if *one == value => return false,
            Elements::One(_) => {
                let Elements::One(one) = std::mem::take(&mut self.0) else { unreachable!("matched above") };
                let mut values = Vec::with_capacity(2);
                values.extend(if one < value { [one, value] } else { [value, one] });
                self.0 = Elements::Many(values);
            }
            Elements::Many(values) => match values.binary_search(&value) {
                Ok(_) => return false,
                Err(at) => {
                    // One more slot, not double.
                    values.reserve_exact(1);
                    values.insert(at, value);
                }
            },
        }
        true
    }

    /// Removes `value`; returns whether it was there.
    pub fn remove(&mut self, value: &T) -> bool {
        match &mut self.0 {
            Elements::One(one) if one == value => self.0 = Elements::default(),
            Elements::One(_) => return false,
            Elements::Many(values) => match values.binary_search(value) {
                Ok(at) => {
                    values.remove(at);
                    if values.len() == 1 {
                        self.0 = Elements::One(values.remove(0));
                    } else {
                        values.shrink_to_fit();
                    }
                }
                Err(_) => return false,
            },
        }
        true
    }
}

impl<T> SmallSet<T> {
    /// Whether the set has no element.
    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    /// The elements in order.
    pub fn iter(&self) -> std::slice::Iter<'_, T> {
        self.as_slice().iter()
    }

    fn as_slice(&self) -> &[T] {
        match &self.0 {
            Elements::One(one) => std::slice::from_ref(one),
            Elements::Many(values) => values,
        }
    }
}

impl<T> Default for Elements<T> {
    fn default() -> Self {
        Self::Many(Vec::new())
    }
}

impl<'a, T> IntoIterator for &'a SmallSet<T> {
    type Item = &'a T;
    type IntoIter = std::slice::Iter<'a, T>;

    fn into_iter(self) -> Self::IntoIter {
        self.iter()
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

    #[test]
    fn equal_sets_compare_equal_however_they_were_built() {
        let mut grown = SmallSet::default();
        assert!(grown.insert(5) && grown.insert(2) && !grown.insert(5));
        assert!(grown.remove(&2), "back to one element");
        let mut one = SmallSet::default();
        one.insert(5);
        assert_eq!(grown, one);
        assert!(one.remove(&5) && !one.remove(&5));
        assert_eq!(one, SmallSet::default());
        assert!(one.insert(1) && one.insert(0));
        assert_eq!(one.iter().copied().collect::<Vec<_>>(), [0, 1], "the second element goes first");
    }
}
