//! `certship local demo`: the whole workflow on a local cloud of its own.

use anyhow::{Result, bail};
use certship_local::LocalOptions;
use certship_local::running::CloudLock;
use std::path::Path;

pub async fn run(project: &Path, state: &Path) -> Result<()> {
    let Some(_lock) = CloudLock::acquire(state)? else {
        bail!(
            "a local cloud is running in {}; the demo starts its own, so stop that one first with `certship local down`",
            state.display()
        );
    };
    std::fs::create_dir_all(state)?;
    let log_path = state.join("demo.log");
    let log = std::fs::File::create(&log_path)?;
    super::init_logs(std::sync::Mutex::new(log), false);
    println!("(the functions' logs go to {})", log_path.display());
    let mut options = LocalOptions::new(project);
    options.state_dir = state.to_path_buf();
    crate::demo::run(options).await
}
