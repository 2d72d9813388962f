//! supervisor — a process supervisor for containers.
//!
//! Data flows one way: kernel events → [`engine`] → [`event`] stream → sinks (log, metrics,
//! history, API).
//!
//! - [`config`]: TOML and supervisord `.conf` → validated [`config::Config`].
//! - [`engine`]: the single task that owns all program state; [`engine::handle`] is its door.
//! - [`event`]: the one event type and the bus that fans it out.
//! - [`output`]: child stdout/stderr → tagged lines on our stdout/stderr, or rotated files.
//! - [`metrics`]: the Prometheus registry, fed by the event stream, rendered at scrape time.
//! - [`http`]: `/metrics`, `/healthz`, `/readyz` and the read-only JSON API.
//! - [`probe`]: the eBPF forensics probe (who signalled a program, how it exited, OOM kills).
//! - [`control`]: the control socket (`supervisor status|start|stop|...`), server side.
//! - [`client`]: the control subcommands of the CLI, client side.
//! - [`xmlrpc`]: supervisord's XML-RPC (`/RPC2`) for the stock `supervisorctl`.

pub mod cli;
pub mod client;
pub mod config;
pub mod control;
pub mod engine;
pub mod event;
pub mod http;
pub mod metrics;
pub mod output;
pub mod probe;
pub mod run;
pub mod xmlrpc;
