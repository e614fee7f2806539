//! moto server as certship runs it: started from the project's virtualenv by one launcher (the
//! ready-line protocol of `scripts/moto_server.py`), and spoken to through one typed client of
//! certship's extension (`scripts/certship_moto.py`). The local cloud and the tests both use it.

pub mod extension;
pub mod http;
pub mod launch;

pub use extension::{Extension, Renewed};
pub use launch::{MotoOptions, MotoServer};
