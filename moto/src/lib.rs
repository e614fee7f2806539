//! moto server as certship runs it: started from the project's virtualenv by one launcher (the
//! ready-line protocol of `scripts/moto_server.py`), and spoken to through one typed client of
//! certship's extension (`scripts/certship_moto.py`). The local cloud and the tests both use it.
//! Beside it, a local ACME CA (Pebble) that validates DNS-01 against moto's Route53 ([`pebble`]).

pub mod acme_front;
pub mod extension;
pub mod http;
pub mod launch;
pub mod pebble;

pub use acme_front::AcmeFront;
pub use extension::{Extension, Renewed};
pub use launch::{MotoOptions, MotoServer};
pub use pebble::{AcmeCa, AcmeCaOptions};
