//! Raw → validated. Every section is checked, every error collected.

use std::path::Path;

use super::raw::RawConfig;
use super::{ConfigErrors, Runtime};

pub fn validate(raw: &RawConfig, base_dir: &Path) -> Result<Runtime, ConfigErrors> {
    let _ = (raw, base_dir);
    todo!("config helper")
}
