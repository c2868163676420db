//! The guest's heap: wasi-libc's `malloc`, the allocator Rust's `std` uses
//! on WASI, linked without the rest of `std`.
//!
//! The crate is `no_std`, so the component imports only the WASI functions
//! the connector calls: `std` would bring in wasi-libc's start-up, stdio and
//! environment code, and with them 21 imports that every instantiation pays
//! for and that a connector has no use for. wasi-libc's `malloc`, `free`
//! and string routines (`memcmp`, ...) import nothing, so they are linked
//! from it as they are.
//!
//! Its heap starts in the initial memory above the data and grows only when
//! that is used up, so an everyday call never grows its memory: in a pooled
//! host, growing costs a call about 30 µs, because the pool makes the new
//! pages accessible and protects them again when the slot is reused
//! (`.cargo/config.toml` sets the initial memory; `tests/runtime.rs` checks
//! calls stay within it).

use core::alloc::{GlobalAlloc, Layout};
use core::ffi::c_void;
use core::ptr;

#[link(name = "c")]
unsafe extern "C" {
    fn malloc(size: usize) -> *mut c_void;
    fn calloc(count: usize, size: usize) -> *mut c_void;
    fn aligned_alloc(align: usize, size: usize) -> *mut c_void;
    fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
    fn free(ptr: *mut c_void);
}

/// What `malloc` aligns every block to on wasm32.
const MALLOC_ALIGN: usize = 16;

#[global_allocator]
static HEAP: Heap = Heap;

/// wasi-libc's allocator, as Rust's `std::alloc::System` uses it on WASI.
struct Heap;

// SAFETY: each method calls the C function of the same contract; blocks
// aligned beyond what `malloc` guarantees come from `aligned_alloc`, and
// are resized by copying, since `realloc` would not keep their alignment.
unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            if layout.align() <= MALLOC_ALIGN {
                malloc(layout.size()).cast()
            } else {
                aligned_alloc(layout.align(), layout.size()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            unsafe { calloc(layout.size(), 1).cast() }
        } else {
            let ptr = unsafe { self.alloc(layout) };
            if !ptr.is_null() {
                unsafe { ptr::write_bytes(ptr, 0, layout.size()) };
            }
            ptr
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _: Layout) {
        unsafe { free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            return unsafe { realloc(ptr.cast(), new_size).cast() };
        }
        // SAFETY: the caller guarantees `new_size` is valid for the alignment.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let moved = unsafe { self.alloc(new) };
        if !moved.is_null() {
            unsafe {
                ptr::copy_nonoverlapping(ptr, moved, layout.size().min(new_size));
                free(ptr.cast());
            }
        }
        moved
    }
}

/// The canonical ABI's allocator, which the host calls to pass strings and
/// lists into the guest. `std` components export wasi-libc's, which lives
/// in its generated WASI bindings (`wasip2.c`), not beside `malloc`; this
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
        core::arch::wasm32::unreachable()
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
