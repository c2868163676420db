//! The SentinelOne connector for SOAR platforms.
//!
//! Built for `wasm32-wasip2`, this crate is a component implementing the
//! `soar:connector` WIT contract in `wit/`. Natively it is a library of the
//! same domain logic, which is how it is unit-tested:
//!
//! - [`console`] normalises the Management Hostname a user typed;
//! - [`token`] validates the API token and keeps it out of every message;
//! - [`api`] is the Management API client (retries, error mapping) over the
//!   [`transport::Transport`] trait;
//! - [`validate`] implements `validate-connection`;
//! - [`lenient`] reads console records straight from JSON, tolerating odd
//!   field types;
//! - [`hosts`] resolves a host selector to exactly one agent, and
//!   [`actions`] isolates or releases it, unless [`protected`] says the
//!   protected-hosts list names it;
//! - [`threats`] pulls threats exactly once per version, resumably;
//! - [`scrub`] clears the token from every result, even one the console
//!   echoed it into.
//!
//! Only the private `component` and `wasi_transport` modules, compiled for
//! wasm32 alone, touch the generated bindings and `wasi:http`; `heap` is
//! the guest's allocator.
//!
//! For wasm32 the crate is `no_std` (with `alloc`), so the component
//! imports nothing from WASI beyond what the connector calls.

#![cfg_attr(target_arch = "wasm32", no_std)]
#![warn(missing_docs)]

extern crate alloc;

pub mod actions;
pub mod api;
pub mod body;
pub mod console;
pub mod error;
pub mod hosts;
pub mod info;
pub mod lenient;
pub mod protected;
pub mod retry;
pub mod scrub;
pub mod threats;
pub mod time;
pub mod token;
pub mod transport;
pub mod validate;

#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(target_arch = "wasm32")]
mod heap;
#[cfg(target_arch = "wasm32")]
mod wasi_transport;

pub use error::{Error, Result};
