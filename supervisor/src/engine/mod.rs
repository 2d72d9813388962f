//! The engine: one task that owns every program's state.
pub mod handle;
