//! Per-thread allocation accounting, which lets the sandbox cap a script's memory.
//!
//! Rhai checks the size of a string, array or map when a value is built, but not when an
//! element is assigned by index (`a[i] = v`, `m[k] = v`), so the data-size limits alone
//! cannot bound what a script holds. [`CountingAllocator`] wraps the system allocator and
//! keeps, for each thread, the bytes allocated minus the bytes freed by that thread. The
//! [`Sandbox`](crate::Sandbox) reads that number at the start of a run and after every
//! operation, and stops the script once it grew by more than
//! [`ScriptLimits::max_memory_bytes`](crate::ScriptLimits::max_memory_bytes).
//!
//! # Why per-thread live bytes
//!
//! A script runs from start to end on one thread, and everything it builds is allocated
//! on that thread while it runs. So the growth of that thread's live bytes during the run
//! is the memory the script holds, and nothing else is counted against it: not the other
//! scripts running on other threads at the same time, not the server's network buffers.
//! A process-wide counter would mix all of those together, and would need an atomic shared
//! by every core on every allocation; a thread-local [`Cell`] costs one add on a
//! cache line no other core touches.
//!
//! Memory allocated on one thread and freed on another (a job handed to a script thread,
//! an answer handed back) makes the absolute counters drift: up on the allocating
//! thread, down on the freeing one. That is why the sandbox only ever compares the counter
//! with its own value at the start of the run: a run's data is allocated and freed on its
//! thread, and what other threads freed before the run cancels out.
//!
//! # Installing it
//!
//! A library cannot choose the allocator: the program does, once, in its binary crate.
//! `circle-server` and `circle-worker` do; an embedder that runs scripts with this crate
//! must do so too, or the memory limit is not enforced ([`is_counting`] tells, and
//! [`EmbeddedExecutor::new`](crate::EmbeddedExecutor::new) logs a warning):
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: circle_executor::memory::CountingAllocator =
//!     circle_executor::memory::CountingAllocator::new();
//!
//! fn main() {
//!     assert!(circle_executor::memory::is_counting());
//!     // … start the executor; its scripts' memory is now capped.
//! }
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::OnceLock;

thread_local! {
    /// Bytes allocated minus bytes freed by this thread (through [`CountingAllocator`]).
    ///
    /// `const`-initialised and of a type without a destructor, so that reaching it from
    /// inside the allocator never allocates (no lazy initialisation) and never registers a
    /// thread-exit destructor: the allocator is called while threads are created and torn
    /// down, when a lazily built or already destroyed slot could recurse or panic.
    /// `isize` and wrapping arithmetic because cross-thread frees (see the module docs)
    /// can make it go negative; only differences are meaningful.
    static LIVE_BYTES: Cell<isize> = const { Cell::new(0) };
}

/// Adds `bytes` (negative to subtract) to this thread's live-byte count.
#[inline(always)]
fn add_live(bytes: isize) {
    // `try_with` rather than `with`: if the slot is unreachable (a thread being torn down
    // on a platform that destroys even destructor-less slots), the allocation must still
    // succeed; missing its count only makes that dying thread's number inexact.
    let _ = LIVE_BYTES.try_with(|live| live.set(live.get().wrapping_add(bytes)));
}

/// `layout.size()` as a signed byte count. Lossless: a [`Layout`]'s size never exceeds
/// `isize::MAX`.
#[inline(always)]
fn signed(size: usize) -> isize {
    size as isize
}

/// The system allocator, counting the live bytes of each thread (see the
/// [module documentation](self)).
///
/// Install it as the program's global allocator to make
/// [`ScriptLimits::max_memory_bytes`](crate::ScriptLimits::max_memory_bytes) effective:
///
/// ```
/// #[global_allocator]
/// static ALLOCATOR: circle_executor::memory::CountingAllocator =
///     circle_executor::memory::CountingAllocator::new();
/// # fn main() { assert!(circle_executor::memory::is_counting()); }
/// ```
///
/// Every allocation and free costs one thread-local add on top of the system allocator's
/// own work.
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator {
    /// Private, so the only way to build one is [`CountingAllocator::new`] (or `Default`),
    /// and fields can be added later.
    _private: (),
}

impl CountingAllocator {
    /// The counting allocator, usable in a `static`.
    pub const fn new() -> Self {
        CountingAllocator { _private: () }
    }
}

// SAFETY: every method forwards to `System` with the exact arguments it was given, so the
// memory handed out and taken back is `System`'s and `System`'s guarantees hold
// unchanged. The bookkeeping around it touches only a destructor-less thread-local `Cell`:
// it neither allocates nor unwinds, so it cannot recurse into the allocator or panic.
unsafe impl GlobalAlloc for CountingAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: our caller upholds `GlobalAlloc::alloc`'s contract (a non-zero-size
        // layout), which is all `System.alloc` requires.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            add_live(signed(layout.size()));
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`: the caller's contract is `System.alloc_zeroed`'s.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            add_live(signed(layout.size()));
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: our caller guarantees `ptr` was allocated by this allocator with
        // `layout`; this allocator's blocks are `System`'s blocks with the same layout.
        unsafe { System.dealloc(ptr, layout) };
        add_live(-signed(layout.size()));
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: our caller guarantees `ptr` is a block of this allocator (so of
        // `System`) allocated with `layout`, and that `new_size` is non-zero and does not
        // overflow `isize` when rounded to `layout.align()`: `System.realloc`'s contract.
        let new_ptr = unsafe { System.realloc(ptr, layout, new_size) };
        // On failure the old block is left as it was, so nothing changed.
        if !new_ptr.is_null() {
            add_live(signed(new_size).wrapping_sub(signed(layout.size())));
        }
        new_ptr
    }
}

/// Bytes allocated minus bytes freed by the calling thread so far, as counted by
/// [`CountingAllocator`].
///
/// Only the difference between two readings on the same thread means something (memory
/// freed by another thread than the one that allocated it makes the absolute value drift;
/// see the [module documentation](self)). Always `0` when the process did not install
/// [`CountingAllocator`] as its global allocator (see [`is_counting`]). One thread-local
/// read: cheap enough to call after every script operation.
#[inline]
pub fn thread_live_bytes() -> isize {
    LIVE_BYTES.try_with(Cell::get).unwrap_or(0)
}

/// Whether this process installed [`CountingAllocator`] as its `#[global_allocator]`, so
/// that [`thread_live_bytes`] moves and the memory limit can be enforced.
///
/// Found out once (by making one small allocation and watching the counter) and then
/// remembered: the global allocator cannot change while a process runs.
pub fn is_counting() -> bool {
    static COUNTING: OnceLock<bool> = OnceLock::new();
    *COUNTING.get_or_init(|| {
        const PROBE_BYTES: usize = 64;
        let before = thread_live_bytes();
        // `black_box` so the compiler cannot elide the allocation (it may remove an unused
        // heap allocation, which would make the probe read "not counting").
        let probe = std::hint::black_box(Vec::<u8>::with_capacity(PROBE_BYTES));
        let grown = thread_live_bytes().wrapping_sub(before);
        drop(probe);
        grown >= signed(PROBE_BYTES)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The unit tests run without `CountingAllocator` installed (tests/memory.rs installs
    // it), so these drive it by hand.

    #[test]
    fn counts_what_it_allocates_and_frees() {
        let allocator = CountingAllocator::new();
        let layout = Layout::from_size_align(1000, 8).unwrap();
        let before = thread_live_bytes();
        // SAFETY: a non-zero-size layout; every block is freed below with its own layout.
        unsafe {
            let a = allocator.alloc(layout);
            assert!(!a.is_null());
            assert_eq!(thread_live_bytes() - before, 1000);
            let z = allocator.alloc_zeroed(layout);
            assert!(!z.is_null());
            assert_eq!(*z, 0);
            assert_eq!(thread_live_bytes() - before, 2000);
            let grown = allocator.realloc(a, layout, 5000);
            assert!(!grown.is_null());
            assert_eq!(thread_live_bytes() - before, 6000);
            let shrunk = allocator.realloc(grown, Layout::from_size_align(5000, 8).unwrap(), 10);
            assert!(!shrunk.is_null());
            assert_eq!(thread_live_bytes() - before, 1010);
            allocator.dealloc(shrunk, Layout::from_size_align(10, 8).unwrap());
            allocator.dealloc(z, layout);
        }
        assert_eq!(thread_live_bytes(), before);
    }

    #[test]
    fn counts_per_thread() {
        let allocator = CountingAllocator::new();
        let layout = Layout::from_size_align(4096, 8).unwrap();
        let before = thread_live_bytes();
        // SAFETY: a non-zero-size layout, freed with the same layout.
        let block = unsafe { allocator.alloc(layout) } as usize;
        assert_ne!(block, 0);
        // Freed on another thread: that thread's count goes down, ours stays up.
        let other = std::thread::spawn(move || {
            let before = thread_live_bytes();
            // SAFETY: `block` came from `allocator.alloc(layout)` and is freed only here.
            unsafe { allocator.dealloc(block as *mut u8, layout) };
            thread_live_bytes() - before
        })
        .join()
        .unwrap();
        assert_eq!(other, -4096);
        assert_eq!(thread_live_bytes() - before, 4096);
    }

    #[test]
    fn not_counting_without_the_global_allocator() {
        // The unit-test binary keeps the default allocator: ordinary allocations (this
        // `String`) leave the counter alone, and the probe sees it.
        let before = thread_live_bytes();
        let text = std::hint::black_box("x".repeat(10_000));
        assert_eq!(thread_live_bytes(), before);
        drop(text);
        assert!(!is_counting());
    }
}
