//! certship's command-line tool: `certship local` runs the whole system on one machine; the
//! operator commands (issue 6) build on the same modules.

pub mod demo;
pub mod follow;
pub mod local;
pub mod project;
