//! A small least-recently-used cache of compiled scripts, so a script that is sent again
//! and again (the common case for clients that poll) is parsed only once per sandbox.

use std::collections::HashMap;
use std::rc::Rc;

use rhai::AST;

/// Counters of a sandbox's compiled-script cache, for metrics and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Runs whose script was found already compiled.
    pub hits: u64,
    /// Runs whose script had to be compiled (including scripts that failed to parse).
    pub misses: u64,
    /// Compiled scripts held right now.
    pub entries: usize,
}

struct Entry {
    // `Rc` so a run can hold the AST while the cache itself is updated or evicted.
    ast: Rc<AST>,
    last_used: u64,
}

/// Bounded map from script text to its compiled [`AST`].
///
/// The key is the full script text (not a hash of it) so two different scripts can never
/// share an entry; `HashMap`'s default keyed SipHash keeps hostile script texts from
/// degrading it. Eviction scans for the least recently used entry: O(n) on a miss with
/// a full cache, which is cheap next to compiling the script (n is a few hundred).
pub(crate) struct AstCache {
    capacity: usize,
    entries: HashMap<Box<str>, Entry>,
    clock: u64,
    hits: u64,
    misses: u64,
}

impl AstCache {
    /// A cache holding at most `capacity` compiled scripts (`0` disables caching).
    pub(crate) fn new(capacity: usize) -> Self {
        AstCache {
            capacity,
            entries: HashMap::with_capacity(capacity.min(1024)),
            clock: 0,
            hits: 0,
            misses: 0,
        }
    }

    /// The compiled form of `script` if it is cached; counts a hit or a miss.
    pub(crate) fn get(&mut self, script: &str) -> Option<Rc<AST>> {
        self.clock += 1;
        match self.entries.get_mut(script) {
            Some(entry) => {
                entry.last_used = self.clock;
                self.hits += 1;
                Some(Rc::clone(&entry.ast))
            }
            None => {
                self.misses += 1;
                None
            }
        }
    }

    /// Remembers the compiled form of `script`, evicting the least recently used entry
    /// when the cache is full.
    pub(crate) fn insert(&mut self, script: &str, ast: Rc<AST>) {
        if self.capacity == 0 {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(script) {
            let oldest = self
                .entries
                .iter()
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(key, _)| key.clone());
            if let Some(key) = oldest {
                self.entries.remove(&key);
            }
        }
        self.entries.insert(
            script.into(),
            Entry {
                ast,
                last_used: self.clock,
            },
        );
    }

    pub(crate) fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits,
            misses: self.misses,
            entries: self.entries.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ast() -> Rc<AST> {
        Rc::new(AST::empty())
    }

    #[test]
    fn evicts_the_least_recently_used_entry() {
        let mut cache = AstCache::new(2);
        assert!(cache.get("a").is_none());
        cache.insert("a", ast());
        assert!(cache.get("b").is_none());
        cache.insert("b", ast());
        // Touch "a" so "b" becomes the oldest.
        assert!(cache.get("a").is_some());
        assert!(cache.get("c").is_none());
        cache.insert("c", ast());
        assert_eq!(cache.stats().entries, 2);
        assert!(cache.get("a").is_some());
        assert!(cache.get("c").is_some());
        assert!(cache.get("b").is_none());
        let stats = cache.stats();
        assert_eq!((stats.hits, stats.misses), (3, 4));
    }

    #[test]
    fn zero_capacity_caches_nothing() {
        let mut cache = AstCache::new(0);
        cache.insert("a", ast());
        assert!(cache.get("a").is_none());
        assert_eq!(cache.stats().entries, 0);
    }
}
