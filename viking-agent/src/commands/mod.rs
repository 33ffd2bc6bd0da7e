//! The CLI verbs, one module each.

pub mod check;
pub mod env;
pub mod maps;
pub mod monitor;
pub mod run;
pub mod status;
pub mod uninstall;
