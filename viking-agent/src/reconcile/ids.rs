//! Allocation of service and backend ids (indexes into the kernel arrays).

/// A pool of ids `0..capacity`. Freed ids are reused last (the cursor moves on), so that a
/// connect racing with a removal is unlikely to see an id that already means something else.
/// The used ids are a bitmap: one bit per id (a set of 300,000 backend ids took 4.6 MB).
#[derive(Debug)]
pub struct IdPool {
    used: Vec<u64>,
    count: u32,
    next: u32,
    capacity: u32,
}

impl IdPool {
    /// An empty pool of `capacity` ids.
    pub fn new(capacity: u32) -> Self {
        Self { used: vec![0; capacity.div_ceil(64) as usize], count: 0, next: 0, capacity }
    }

    /// How many ids the pool has.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Marks `id` used (adopting state from the kernel); an id outside the pool is ignored.
    pub fn claim(&mut self, id: u32) {
        if id < self.capacity && !self.is_used(id) {
            self.set(id, true);
        }
        self.next = self.next.max(id.saturating_add(1)) % self.capacity.max(1);
    }

    /// A free id, or `None` when all `capacity` ids are used.
    pub fn allocate(&mut self) -> Option<u32> {
        if self.count >= self.capacity {
            return None;
        }
        // The first free id at or after the cursor, else the first free id from 0.
        let id = self.first_free(self.next, self.capacity).or_else(|| self.first_free(0, self.next))?;
        self.set(id, true);
        self.next = (id + 1) % self.capacity;
        Some(id)
    }

    /// Returns `id` to the pool.
    pub fn release(&mut self, id: u32) {
        if id < self.capacity && self.is_used(id) {
            self.set(id, false);
        }
    }

    fn is_used(&self, id: u32) -> bool {
        self.used[(id / 64) as usize] & (1 << (id % 64)) != 0
    }

    fn set(&mut self, id: u32, used: bool) {
        let word = &mut self.used[(id / 64) as usize];
        if used {
            *word |= 1 << (id % 64);
            self.count += 1;
        } else {
            *word &= !(1 << (id % 64));
            self.count -= 1;
        }
    }

    /// The first free id in `from..to`, a word (64 ids) at a time.
    fn first_free(&self, from: u32, to: u32) -> Option<u32> {
        let mut id = from;
        while id < to {
            let free = !self.used[(id / 64) as usize] >> (id % 64);
            if free == 0 {
                id = (id / 64 + 1) * 64;
                continue;
            }
            let found = id + free.trailing_zeros();
            return (found < to).then_some(found);
        }
        None
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

    #[test]
    fn ids_past_a_full_word_and_around_the_end_are_found() {
        let mut pool = IdPool::new(130);
        for _ in 0..129 {
            pool.allocate().unwrap();
        }
        assert_eq!(pool.allocate(), Some(129), "the last id, in a word of its own");
        assert_eq!(pool.allocate(), None);
        pool.release(70);
        pool.release(3);
        assert_eq!(pool.allocate(), Some(3), "the cursor wrapped: the first free id from 0");
        assert_eq!(pool.allocate(), Some(70));
        assert_eq!(pool.allocate(), None);
    }
}
