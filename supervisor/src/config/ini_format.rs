//! (being written)
use super::{Config, ConfigError};
use std::path::Path;

pub fn parse(path: &Path, _text: &str) -> Result<Config, ConfigError> {
    Err(ConfigError::invalid(path, 1, "-", "this format is not implemented yet"))
}
