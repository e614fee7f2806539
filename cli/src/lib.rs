//! certship's command-line tool: the operator commands (`commands`, over the AWS calls in `ops`),
//! and `certship local`, which drives the local cloud of the `certship-local` crate.

pub mod commands;
pub mod demo;
pub mod ops;
pub mod tag;
