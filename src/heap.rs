//! The guest's heap: `dlmalloc`, the allocator Rust's own `std` uses on
//! wasm32, fed first with the linear memory the component starts with.
//!
//! The crate is `no_std`, so the component imports only the WASI functions
//! the connector calls: `std` would bring in wasi-libc and with it 21
//! imports (environment, stdio, exit, ...) that every instantiation pays
//! for and that a connector has no use for.
//!
//! dlmalloc's own wasm32 allocator takes every region with `memory.grow`
//! outside `wasm32-unknown-unknown`, leaving the initial memory above the
//! data unused. Here its first region is that initial memory instead, so an
//! everyday call never grows its memory: in a pooled host, growing costs a
//! call about 30 µs, because the pool makes the new pages accessible and
//! protects them again when the slot is reused (`.cargo/config.toml` sets
//! the initial memory; `tests/runtime.rs` checks calls stay within it).

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::{Cell, UnsafeCell};
use core::ptr;

use dlmalloc::Dlmalloc;

const PAGE: usize = 64 * 1024;

// wasi-libc's string routines (`memcmp`, `bcmp`, ...), which Rust's `core`
// calls and `std` would otherwise link in. Only the members used are linked,
// and none of them imports anything.
#[link(name = "c")]
unsafe extern "C" {}

unsafe extern "C" {
    /// The first byte above the stack and the data, from the linker.
    static __heap_base: u8;
    /// The end of the initial linear memory, from the linker.
    static __heap_end: u8;
}

#[global_allocator]
static HEAP: Heap = Heap(UnsafeCell::new(Dlmalloc::new_with_allocator(Memory {
    initial_taken: Cell::new(false),
})));

/// dlmalloc over this instance's linear memory.
struct Heap(UnsafeCell<Dlmalloc<Memory>>);

// SAFETY: a component instance runs on one thread (wasm32-wasip2 has no
// threads), and the allocator calls nothing that allocates, so `HEAP` is
// never used from two places at once.
unsafe impl Sync for Heap {}

// SAFETY: each method hands its arguments to the dlmalloc method of the same
// contract.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { (*self.0.get()).malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        unsafe { (*self.0.get()).calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { (*self.0.get()).free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        unsafe { (*self.0.get()).realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}

/// Where dlmalloc's regions come from: the initial memory first, then
/// `memory.grow`, whose pages follow on, so the regions merge.
struct Memory {
    initial_taken: Cell<bool>,
}

// SAFETY: regions are handed out once each and never taken back; the
// initial one lies above the stack and the data, and grown pages are new.
unsafe impl dlmalloc::Allocator for Memory {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        if self.initial_taken.replace(true) {
            return grow(size);
        }
        let (base, end) = (
            ptr::addr_of!(__heap_base) as usize,
            ptr::addr_of!(__heap_end) as usize,
        );
        let initial = end.saturating_sub(base);
        if initial >= size {
            return (base as *mut u8, initial, 0);
        }
        // Too small on its own: extend it with pages that follow it.
        match grow(size - initial) {
            (grown, more, _) if grown as usize == end => (base as *mut u8, initial + more, 0),
            other => other,
        }
    }

    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
        false
    }

    fn free(&self, _: *mut u8, _: usize) -> bool {
        false
    }

    fn can_release_part(&self, _: u32) -> bool {
        false
    }

    /// A fresh instance's memory above the data is zero, and so are grown
    /// pages.
    fn allocates_zeros(&self) -> bool {
        true
    }

    fn page_size(&self) -> usize {
        PAGE
    }
}

/// At least `size` new bytes at the end of linear memory, or null when the
/// host refuses to grow it (its memory limit).
fn grow(size: usize) -> (*mut u8, usize, u32) {
    let pages = size.div_ceil(PAGE);
    match wasm32::memory_grow(0, pages) {
        usize::MAX => (ptr::null_mut(), 0, 0),
        previous => ((previous * PAGE) as *mut u8, pages * PAGE, 0),
    }
}

/// The canonical ABI's allocator, which the host calls to pass strings and
/// lists into the guest. wasi-libc provides it to `std` components; this
/// is the same contract over [`HEAP`].
///
/// # Safety
/// The host passes a block this function returned (or null with
/// `old_len` 0), with the size and alignment it was allocated with.
#[unsafe(no_mangle)]
unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    if new_len == 0 {
        // A valid, aligned, dangling pointer for an empty list.
        return align as *mut u8;
    }
    let Ok(layout) = Layout::from_size_align(old_len.max(new_len), align) else {
        wasm32::unreachable()
    };
    // SAFETY: the layouts are valid and non-empty; `old_ptr` is ours.
    let ptr = unsafe {
        if old_len == 0 {
            HEAP.alloc(Layout::from_size_align_unchecked(new_len, align))
        } else {
            HEAP.realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        alloc::alloc::handle_alloc_error(layout)
    }
    ptr
}
