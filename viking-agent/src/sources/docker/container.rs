//! What the agent knows about one running container.

use std::{collections::BTreeMap, io, os::unix::fs::MetadataExt, path::Path};

use bollard::models::ContainerInspectResponse;

/// A running container as the policy needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// Docker's id.
    pub id: String,
    /// Docker's name, without the leading `/`.
    pub name: String,
    /// Id of the cgroup its processes run in: what the kernel programs see.
    pub cgroup_id: u64,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Environment, `KEY=value`.
    pub env: Vec<String>,
    /// The Nomad task it runs, when Nomad started it.
    pub nomad: Option<NomadTask>,
}

/// Nomad's identity of a task container: like Nomad, Viking keys it by name and alloc id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NomadTask {
    /// The task name.
    pub task: String,
    /// The allocation id.
    pub alloc_id: String,
}

impl Container {
    /// How logs name the container: `task/alloc` for Nomad tasks, the Docker name otherwise.
    pub fn display_name(&self) -> String {
        match &self.nomad {
            Some(nomad) => format!("{}/{}", nomad.task, nomad.alloc_id),
            None => self.name.clone(),
        }
    }

    /// Builds the container from `docker inspect`; `None` when it is not running (no pid).
    pub fn from_inspect(inspect: &ContainerInspectResponse, cgroup2_root: &Path) -> io::Result<Option<Self>> {
        let Some(pid) = inspect.state.as_ref().and_then(|s| s.pid).filter(|pid| *pid > 0) else {
            return Ok(None);
        };
        let config = inspect.config.as_ref();
        let labels: BTreeMap<String, String> =
            config.and_then(|c| c.labels.clone()).unwrap_or_default().into_iter().collect();
        let env = config.and_then(|c| c.env.clone()).unwrap_or_default();
        let nomad = nomad_task(&labels, &env);
        Ok(Some(Self {
            id: inspect.id.clone().unwrap_or_default(),
            name: inspect.name.clone().unwrap_or_default().trim_start_matches('/').to_owned(),
            cgroup_id: cgroup_id_of(pid, cgroup2_root)?,
            labels,
            env,
            nomad,
        }))
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

/// The cgroup v2 id of a process: the inode of its directory in the cgroup2 hierarchy,
/// from the `0::<path>` line of `/proc/<pid>/cgroup`.
pub fn cgroup_id_of(pid: i64, cgroup2_root: &Path) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let path = text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("pid {pid} has no cgroup v2 path")))?;
    Ok(std::fs::metadata(cgroup2_root.join(path.trim_start_matches('/')))?.ino())
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
    fn this_process_has_a_cgroup_id() {
        let root = viking_common::cgroup2::root().unwrap();
        let id = cgroup_id_of(i64::from(std::process::id()), &root).unwrap();
        assert!(id > 0);
    }
}
