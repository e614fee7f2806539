//! Captures every log line (all levels, the SDK's included) written on the current thread while
//! a guard is alive, so tests can prove what is never logged. One global TRACE subscriber writes
//! into a per-thread buffer: per-thread subscribers would race on tracing's global callsite
//! cache and miss lines.

use std::cell::RefCell;
use std::io::Write;
use std::sync::{Arc, Mutex, Once};

type Buffer = Arc<Mutex<Vec<u8>>>;

thread_local! {
    static CURRENT: RefCell<Option<Buffer>> = const { RefCell::new(None) };
}

struct ThreadWriter;

impl Write for ThreadWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        CURRENT.with(|current| {
            if let Some(buffer) = current.borrow().as_ref() {
                buffer
                    .lock()
                    .expect("log buffer poisoned")
                    .extend_from_slice(data);
            }
        });
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Log lines captured since [`capture`]; capture stops when this is dropped.
pub struct Captured {
    buffer: Buffer,
}

impl Captured {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buffer.lock().expect("log buffer poisoned")).into_owned()
    }
}

impl Drop for Captured {
    fn drop(&mut self) {
        CURRENT.with(|current| current.borrow_mut().take());
    }
}

/// Starts capturing logs at TRACE on this thread (use a current-thread runtime).
pub fn capture() -> Captured {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .with_writer(|| ThreadWriter)
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other global subscriber in tests");
    });
    let buffer = Buffer::default();
    CURRENT.with(|current| *current.borrow_mut() = Some(buffer.clone()));
    Captured { buffer }
}
