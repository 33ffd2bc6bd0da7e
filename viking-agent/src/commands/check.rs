//! `viking-agent check`: what a config file would serve and every error in it, without
//! touching the kernel.

use std::path::Path;

use serde::Serialize;

use crate::config::{Config, ServiceError};

/// A service the file would serve.
#[derive(Debug, Serialize)]
struct Checked {
    name: String,
    frontend: String,
    algorithm: &'static str,
    backends: Vec<String>,
}

/// A rejected service or backend, field by field.
#[derive(Debug, Serialize)]
struct Rejected<'a> {
    index: usize,
    name: Option<&'a str>,
    field: &'a str,
    value: &'a str,
    reason: String,
    backend_only: bool,
    message: String,
}

impl<'a> From<&'a ServiceError> for Rejected<'a> {
    fn from(error: &'a ServiceError) -> Self {
        Self {
            index: error.index,
            name: error.name.as_deref(),
            field: &error.field,
            value: &error.value,
            reason: error.reason.to_string(),
            backend_only: error.backend_only,
            message: error.to_string(),
        }
    }
}

/// Checks the file at `path`, printing a line per service and error (or JSON); fails when
/// a service or backend is rejected, or the file cannot be used at all.
pub fn check(path: &Path, json: bool) -> anyhow::Result<()> {
    let parsed = Config::load(path)?;
    let services: Vec<Checked> = parsed
        .config
        .services
        .services
        .values()
        .map(|service| Checked {
            name: service.name.to_string(),
            frontend: service.frontend.to_string(),
            algorithm: service.algorithm.name(),
            backends: service.backends.iter().map(ToString::to_string).collect(),
        })
        .collect();
    if json {
        let errors: Vec<Rejected<'_>> = parsed.errors.iter().map(Rejected::from).collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "services": services, "errors": errors }))?);
    } else {
        for service in &services {
            println!(
                "{} {} {} -> [{}]",
                service.name,
                service.frontend,
                service.algorithm,
                service.backends.join(", ")
            );
        }
        for error in &parsed.errors {
            println!("error: {error}");
        }
    }
    anyhow::ensure!(parsed.errors.is_empty(), "{} error(s) in {}", parsed.errors.len(), path.display());
    Ok(())
}
