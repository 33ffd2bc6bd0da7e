//! The `--config` file as a source: polled for changes, each valid version sent as a
//! snapshot. A version that does not parse changes nothing; a service that is invalid
//! keeps its last good definition.

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::Arc,
    time::{Duration, SystemTime},
};

use tokio::sync::mpsc;

use super::{SourceChange, SourceId, Update};
use crate::{
    config::{Config, ConsulSettings, Parsed},
    model::{DesiredState, Limits, Service, ServiceName},
};

/// How often the file is checked; an edit is applied within this time plus the write.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);

/// Watches one config file.
#[derive(Debug)]
pub struct StaticFileSource {
    path: PathBuf,
    /// The services of the last good version, by name, to keep when a name turns invalid.
    last_good: HashMap<ServiceName, Vec<Arc<Service>>>,
    last_text: Option<String>,
    last_stamp: Option<(SystemTime, u64)>,
    limits: Limits,
    consul: Option<ConsulSettings>,
}

impl StaticFileSource {
    /// A source for `path`. `kernel` is what the kernel already serves (adopted from pins):
    /// it counts as the last good definition of each service, so a service that is invalid
    /// in the file at startup keeps being served as before.
    pub fn new(path: PathBuf, config: &Config, kernel: &DesiredState) -> Self {
        let mut source = Self {
            path,
            last_good: HashMap::new(),
            last_text: None,
            last_stamp: None,
            limits: config.limits,
            consul: config.consul.clone(),
        };
        source.remember(String::new(), kernel);
        source.last_text = None;
        source
    }

    /// Takes the version read at startup and returns the state to apply first.
    pub fn first(&mut self, text: String, parsed: Parsed) -> DesiredState {
        self.last_stamp = self.stamp();
        self.accept(text, parsed)
    }

    /// Polls the file until `tx` closes, sending a snapshot for every changed valid version.
    pub async fn watch(mut self, tx: mpsc::Sender<Update>) {
        let mut tick = tokio::time::interval(POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Some(state) = self.poll()
                && tx
                    .send(Update::Services { source: SourceId::StaticFile, change: SourceChange::Replace(state) })
                    .await
                    .is_err()
            {
                return;
            }
        }
    }

    fn stamp(&self) -> Option<(SystemTime, u64)> {
        let meta = std::fs::metadata(&self.path).ok()?;
        Some((meta.modified().ok()?, meta.len()))
    }

    /// Re-reads the file if it changed; returns the new desired state if there is one.
    fn poll(&mut self) -> Option<DesiredState> {
        let stamp = self.stamp();
        if stamp == self.last_stamp {
            return None;
        }
        self.last_stamp = stamp;
        let text = match std::fs::read_to_string(&self.path) {
            Ok(text) => text,
            Err(err) => {
                tracing::error!(path = %self.path.display(), "cannot read config ({err}); keeping the last good state");
                return None;
            }
        };
        if self.last_text.as_deref() == Some(text.as_str()) {
            return None;
        }
        match Config::parse(&text) {
            Ok(parsed) => Some(self.accept(text, parsed)),
            Err(err) => {
                tracing::error!(path = %self.path.display(), "{err}; keeping the last good state");
                self.last_text = Some(text);
                None
            }
        }
    }

    /// Takes a parsed version: reports its errors, keeps last good definitions of services
    /// that turned invalid, and remembers the result.
    fn accept(&mut self, text: String, parsed: Parsed) -> DesiredState {
        if parsed.config.limits != self.limits {
            tracing::warn!(
                "[limits] changed to {}; map sizes change only when the maps are recreated (uninstall, then run)",
                parsed.config.limits
            );
        }
        if parsed.config.consul != self.consul {
            tracing::warn!("[consul] changed; the new settings apply when the agent restarts");
        }
        let mut state = parsed.config.services;
        for error in &parsed.errors {
            tracing::error!(path = %self.path.display(), "{error}");
            let Some(name) = error.name.as_ref().filter(|_| !error.backend_only) else {
                continue;
            };
            for service in self.last_good.get(name.as_str()).into_iter().flatten() {
                state.services.entry(service.frontend).or_insert_with(|| {
                    tracing::warn!("keeping the last good definition of service {name:?} ({})", service.frontend);
                    service.clone()
                });
            }
        }
        self.remember(text, &state);
        state
    }

    fn remember(&mut self, text: String, state: &DesiredState) {
        self.last_text = Some(text);
        self.last_good.clear();
        for service in state.services.values() {
            self.last_good.entry(service.name.clone()).or_default().push(service.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source_for(text: &str) -> (StaticFileSource, tempfile::NamedTempFile) {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        let parsed = Config::parse(text).unwrap();
        let mut source = StaticFileSource::new(file.path().into(), &parsed.config, &DesiredState::default());
        source.first(text.into(), parsed);
        (source, file)
    }

    fn names(state: &DesiredState) -> Vec<(String, usize)> {
        state.services.values().map(|s| (s.name.to_string(), s.backends.len())).collect()
    }

    const GOOD: &str = r#"
[[service]]
name = "web"
vip = "240.0.0.10"
port = 80
backends = ["127.0.0.1:9001", "127.0.0.1:9002"]

[[service]]
name = "db"
vip = "240.0.0.11"
port = 5432
backends = ["127.0.0.1:9003"]
"#;

    #[test]
    fn an_invalid_service_keeps_its_last_good_definition() {
        let (mut source, _file) = source_for(GOOD);
        let edited = GOOD.replace("vip = \"240.0.0.10\"", "vip = \"10.0.0.10\"").replace("9003", "9004");
        let parsed = Config::parse(&edited).unwrap();
        assert_eq!(parsed.errors.len(), 1);
        let state = source.accept(edited, parsed);
        assert_eq!(names(&state), [("web".to_owned(), 2), ("db".to_owned(), 1)]);
        let db = state.services.values().find(|s| &*s.name == "db").unwrap();
        assert_eq!(db.backends[0].addr.port(), 9004, "the valid edit is applied");
    }

    #[test]
    fn an_unparsable_file_changes_nothing() {
        let (mut source, file) = source_for(GOOD);
        std::fs::write(file.path(), "[[service]\nname = ").unwrap();
        source.last_stamp = None;
        assert_eq!(source.poll(), None);
    }

    #[test]
    fn a_service_invalid_at_startup_keeps_what_the_kernel_serves() {
        let kernel = Config::parse(GOOD).unwrap().config.services;
        let file = tempfile::NamedTempFile::new().unwrap();
        let config = Config::parse(GOOD).unwrap().config;
        let mut source = StaticFileSource::new(file.path().into(), &config, &kernel);
        let edited = GOOD.replace("port = 80", "port = 0");
        let state = source.first(edited.clone(), Config::parse(&edited).unwrap());
        assert_eq!(names(&state), [("web".to_owned(), 2), ("db".to_owned(), 1)]);
    }

    #[test]
    fn a_removed_service_is_not_resurrected() {
        let (mut source, _file) = source_for(GOOD);
        let edited = GOOD.split("[[service]]").take(2).collect::<Vec<_>>().join("[[service]]");
        let parsed = Config::parse(&edited).unwrap();
        let state = source.accept(edited, parsed);
        assert_eq!(names(&state), [("web".to_owned(), 2)]);
    }
}
