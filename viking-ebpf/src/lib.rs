//! Present so that `viking-agent` can declare a build-dependency on this crate (cargo then
//! rebuilds the agent when the programs change). The programs are in `main.rs`.
#![no_std]
