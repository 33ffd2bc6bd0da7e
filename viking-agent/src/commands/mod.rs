//! The CLI verbs, one module each.

pub mod env;
pub mod maps;
pub mod run;
pub mod uninstall;
