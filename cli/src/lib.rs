//! certship's command-line tool: the operator commands (`ops`), and `certship local`, which runs
//! the whole system on one machine.

pub mod demo;
pub mod follow;
pub mod local;
pub mod ops;
pub mod project;
