//! What the template tests share: the project root and the template after the SAM transform.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    certship_testkit::moto::project_root()
}

/// The translated template (`scripts/translate_template.py`, samtranslator offline), once per
/// test binary. `venv_python` runs `make venv` first, so a missing virtualenv or samtranslator
/// is a failure, not a skip.
pub fn translated() -> &'static Value {
    static TRANSLATED: OnceLock<Value> = OnceLock::new();
    TRANSLATED.get_or_init(|| {
        let python = certship_testkit::moto::venv_python().expect("the project's .venv");
        let out = Command::new(&python)
            .arg(root().join("scripts/translate_template.py"))
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
        assert!(
            out.status.success(),
            "scripts/translate_template.py failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("the translation is JSON")
    })
}
