//! supervisor — a process supervisor for containers.
//!
//! Data flows one way: kernel events → [`engine`] → [`event`] stream → sinks (log, metrics,
//! history, API).
//!
//! - [`config`]: TOML and supervisord `.conf` → validated [`config::Config`].
//! - [`engine`]: the single task that owns all program state; [`engine::handle`] is its door.
//! - [`event`]: the one event type and the bus that fans it out.
//! - [`output`]: child stdout/stderr → tagged lines on our stdout/stderr, or rotated files.

pub mod config;
pub mod engine;
pub mod event;
pub mod output;
