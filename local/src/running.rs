//! Finding the certship checkout whose files the local cloud provisions, and the record of a
//! running local cloud that `certship local` commands read.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const MARKER: &str = "ssm-documents/install-certificate-linux.yaml";

/// `explicit`, or the nearest directory at or above the current one that holds certship's files.
pub fn project_dir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(dir) = explicit {
        if !dir.join(MARKER).exists() {
            bail!("{} is not a certship checkout (no {MARKER})", dir.display());
        }
        return Ok(dir.to_path_buf());
    }
    let cwd = std::env::current_dir().context("reading the current directory")?;
    cwd.ancestors()
        .find(|dir| dir.join(MARKER).exists())
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "no certship checkout at or above {}; run from the repository or pass --project-dir",
                cwd.display()
            )
        })
}

/// What a running `certship local up` publishes for the other commands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RunningCloud {
    pub pid: u32,
    pub endpoint: String,
    pub region: String,
    pub state_machine_arn: String,
    /// The ACME issuance workflow (empty in the record of a cloud from before it).
    #[serde(default)]
    pub acme_state_machine_arn: String,
    /// The ACME certificates' registry (empty in the record of a cloud from before it).
    #[serde(default)]
    pub acme_table_name: String,
    pub table_name: String,
    #[serde(default)]
    pub evidence_table_name: String,
    pub hosts_dir: PathBuf,
}

impl RunningCloud {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("cloud.json")
    }

    /// The running cloud, or `None` when none runs. A cloud runs while its process holds the
    /// state directory's lock; a record left by a process that died is removed.
    pub fn read(state_dir: &Path) -> Option<Self> {
        let path = Self::path(state_dir);
        let text = std::fs::read_to_string(&path).ok()?;
        let cloud: Self = serde_json::from_str(&text).ok()?;
        if CloudLock::held(state_dir) && process_alive(cloud.pid) {
            Some(cloud)
        } else {
            let _ = std::fs::remove_file(&path);
            None
        }
    }

    /// Like [`read`](Self::read), with an error saying how to start one.
    pub fn require(state_dir: &Path) -> Result<Self> {
        Self::read(state_dir)
            .context("no local cloud is running; start one with `certship local up --detach`")
    }

    pub fn write(&self, state_dir: &Path) -> Result<()> {
        std::fs::create_dir_all(state_dir)?;
        let path = Self::path(state_dir);
        let temporary = path.with_extension("json.tmp");
        std::fs::write(&temporary, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&temporary, &path)?;
        Ok(())
    }

    pub fn remove(state_dir: &Path) {
        let _ = std::fs::remove_file(Self::path(state_dir));
    }
}

/// The state directory's lock, held by the one process that runs a local cloud there for as long
/// as it runs; the kernel releases it when that process ends, however it ends.
pub struct CloudLock {
    _file: std::fs::File,
}

impl CloudLock {
    fn open(state_dir: &Path) -> Result<std::fs::File> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let path = state_dir.join("cloud.lock");
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))
    }

    fn try_lock(file: &std::fs::File) -> bool {
        use std::os::fd::AsRawFd;
        // SAFETY: flock on a descriptor this process owns; no memory is shared.
        unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0 }
    }

    /// Takes the lock, or `None` when another process holds it.
    pub fn acquire(state_dir: &Path) -> Result<Option<Self>> {
        let file = Self::open(state_dir)?;
        Ok(Self::try_lock(&file).then_some(Self { _file: file }))
    }

    /// Whether some process holds the lock now.
    pub fn held(state_dir: &Path) -> bool {
        match Self::open(state_dir) {
            Ok(file) => !Self::try_lock(&file),
            Err(_) => false,
        }
    }
}

pub fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_process_at_a_time_holds_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!CloudLock::held(dir.path()));
        let lock = CloudLock::acquire(dir.path()).unwrap().expect("the lock");
        assert!(CloudLock::held(dir.path()));
        assert!(CloudLock::acquire(dir.path()).unwrap().is_none());
        drop(lock);
        assert!(!CloudLock::held(dir.path()));
    }

    #[test]
    fn a_record_without_its_lock_is_not_a_running_cloud() {
        let dir = tempfile::tempdir().unwrap();
        let lock = CloudLock::acquire(dir.path()).unwrap().unwrap();
        let cloud = RunningCloud {
            pid: std::process::id(),
            endpoint: "http://127.0.0.1:1".into(),
            region: "us-east-1".into(),
            state_machine_arn: "arn".into(),
            acme_state_machine_arn: "acme-arn".into(),
            acme_table_name: "acme-t".into(),
            table_name: "t".into(),
            evidence_table_name: "e".into(),
            hosts_dir: dir.path().join("hosts"),
        };
        cloud.write(dir.path()).unwrap();
        assert_eq!(RunningCloud::read(dir.path()), Some(cloud.clone()));

        drop(lock);
        assert_eq!(RunningCloud::read(dir.path()), None);
        assert!(!RunningCloud::path(dir.path()).exists());
        assert!(RunningCloud::require(dir.path()).is_err());
    }
}
