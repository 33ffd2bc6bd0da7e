//! The CLI verbs, one module each.

pub mod maps;
pub mod run;
pub mod uninstall;
