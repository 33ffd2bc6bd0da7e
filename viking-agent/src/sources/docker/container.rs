//! Docker's view of a container (`docker inspect`, a `create` event) as a [`Container`].

use std::collections::{BTreeMap, HashMap};

use bollard::models::ContainerInspectResponse;

use crate::model::{Container, NomadTask};

/// The container of `docker inspect`, running in cgroup `cgroup_id`.
pub fn from_inspect(inspect: &ContainerInspectResponse, cgroup_id: u64) -> Container {
    let config = inspect.config.as_ref();
    let labels: BTreeMap<String, String> =
        config.and_then(|c| c.labels.clone()).unwrap_or_default().into_iter().collect();
    let env = config.and_then(|c| c.env.clone()).unwrap_or_default();
    let nomad = nomad_task(&labels, &env);
    Container {
        id: inspect.id.clone().unwrap_or_default(),
        name: inspect.name.clone().unwrap_or_default().trim_start_matches('/').to_owned(),
        image: config.and_then(|c| c.image.clone()).unwrap_or_default(),
        cgroup_id,
        labels,
        env,
        nomad,
    }
}

/// A just-created container from its `create` event and the id of the cgroup prepared for
/// it. dockerd puts the container's labels in the event's attributes, beside `image` and
/// `name` (which win over labels of those names); the environment is not in the event, so
/// env declarations and a Nomad identity from env arrive at `start`.
pub fn from_create_event(id: &str, attributes: &HashMap<String, String>, cgroup_id: u64) -> Container {
    let labels: BTreeMap<String, String> = attributes
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "image" | "name"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let nomad = nomad_task(&labels, &[]);
    Container {
        id: id.to_owned(),
        name: attributes.get("name").cloned().unwrap_or_default(),
        image: attributes.get("image").cloned().unwrap_or_default(),
        cgroup_id,
        labels,
        env: Vec::new(),
        nomad,
    }
}

/// Nomad sets both labels (`com.hashicorp.nomad.*`, docker driver) and env
/// (`NOMAD_ALLOC_ID`, `NOMAD_TASK_NAME`); either is enough.
fn nomad_task(labels: &BTreeMap<String, String>, env: &[String]) -> Option<NomadTask> {
    let from_env = |key: &str| env.iter().find_map(|kv| kv.strip_prefix(key)?.strip_prefix('=')).map(str::to_owned);
    let alloc_id = labels.get("com.hashicorp.nomad.alloc_id").cloned().or_else(|| from_env("NOMAD_ALLOC_ID"))?;
    let task = labels.get("com.hashicorp.nomad.task_name").cloned().or_else(|| from_env("NOMAD_TASK_NAME"))?;
    Some(NomadTask { task, alloc_id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nomad_identity_from_labels_or_env() {
        let labels: BTreeMap<String, String> = [
            ("com.hashicorp.nomad.alloc_id".to_owned(), "a1".to_owned()),
            ("com.hashicorp.nomad.task_name".to_owned(), "web".to_owned()),
        ]
        .into();
        assert_eq!(nomad_task(&labels, &[]), Some(NomadTask { task: "web".into(), alloc_id: "a1".into() }));
        let env = vec!["NOMAD_ALLOC_ID=a2".to_owned(), "NOMAD_TASK_NAME=db".to_owned()];
        assert_eq!(nomad_task(&BTreeMap::new(), &env), Some(NomadTask { task: "db".into(), alloc_id: "a2".into() }));
        assert_eq!(nomad_task(&BTreeMap::new(), &[]), None);
    }

    #[test]
    fn a_create_event_carries_labels_image_and_name() {
        let attributes: HashMap<String, String> = [
            ("image", "redis:7"),
            ("name", "cache-1"),
            ("viking.connect_to", "db"),
            ("com.hashicorp.nomad.alloc_id", "a1"),
            ("com.hashicorp.nomad.task_name", "cache"),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .into();
        let container = from_create_event("abc", &attributes, 42);
        assert_eq!(
            (container.name.as_str(), container.image.as_str(), container.cgroup_id),
            ("cache-1", "redis:7", 42)
        );
        assert_eq!(
            container.labels.keys().collect::<Vec<_>>(),
            ["com.hashicorp.nomad.alloc_id", "com.hashicorp.nomad.task_name", "viking.connect_to"]
        );
        assert_eq!(container.display_name(), "cache/a1");
    }
}
