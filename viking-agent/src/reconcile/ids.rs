//! Allocation of service and backend ids (indexes into the kernel arrays).

use std::collections::BTreeSet;

/// A pool of ids `0..capacity`. Freed ids are reused last (the cursor moves on), so that a
/// connect racing with a removal is unlikely to see an id that already means something else.
#[derive(Debug)]
pub struct IdPool {
    used: BTreeSet<u32>,
    next: u32,
    capacity: u32,
}

impl IdPool {
    /// An empty pool of `capacity` ids.
    pub fn new(capacity: u32) -> Self {
        Self { used: BTreeSet::new(), next: 0, capacity }
    }

    /// How many ids the pool has.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Marks `id` used (adopting state from the kernel).
    pub fn claim(&mut self, id: u32) {
        self.used.insert(id);
        self.next = self.next.max(id.saturating_add(1)) % self.capacity.max(1);
    }

    /// A free id, or `None` when all `capacity` ids are used.
    pub fn allocate(&mut self) -> Option<u32> {
        if self.used.len() as u64 >= u64::from(self.capacity) {
            return None;
        }
        // The first free id at or after the cursor, else the first free id from 0.
        let from_cursor = (self.next..self.capacity).find(|id| !self.used.contains(id));
        let id = from_cursor.or_else(|| (0..self.next).find(|id| !self.used.contains(id)))?;
        self.used.insert(id);
        self.next = (id + 1) % self.capacity;
        Some(id)
    }

    /// Returns `id` to the pool.
    pub fn release(&mut self, id: u32) {
        self.used.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_every_id_once_then_reports_exhaustion() {
        let mut pool = IdPool::new(3);
        let mut got: Vec<u32> = (0..3).map(|_| pool.allocate().unwrap()).collect();
        got.sort();
        assert_eq!(got, [0, 1, 2]);
        assert_eq!(pool.allocate(), None);
    }

    #[test]
    fn freed_ids_are_reused_after_the_others() {
        let mut pool = IdPool::new(4);
        let a = pool.allocate().unwrap();
        let _b = pool.allocate().unwrap();
        pool.release(a);
        assert_ne!(pool.allocate(), Some(a), "a just-freed id is not handed out first");
        assert_eq!(pool.allocate(), Some(3));
        assert_eq!(pool.allocate(), Some(a), "wraps around to the freed id");
    }

    #[test]
    fn claimed_ids_are_skipped() {
        let mut pool = IdPool::new(3);
        pool.claim(0);
        pool.claim(2);
        assert_eq!(pool.allocate(), Some(1));
        assert_eq!(pool.allocate(), None);
    }
}
